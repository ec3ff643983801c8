# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Argument checks and the types of hyperparameters.

Every check raises at construction time with a message that names the
public function and the argument. Traced values (from
:func:`optax.inject_hyperparams`) and schedules are accepted unchecked here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

NonFinitePolicy = Literal["zero", "propagate", "error"]


NONFINITE_POLICIES: tuple[str, ...] = ("zero", "propagate", "error")


Ord = Literal[1, 2, "inf"]


ThresholdOrSchedule = jax.typing.ArrayLike | Callable[[jax.Array], jax.Array]


def _is_traced(x: Any) -> bool:
  return isinstance(x, jax.core.Tracer)


def check_threshold(
  value: Any,
  arg: str,
  fn: str,
  *,
  allow_schedule: bool = True,
  positive: bool = False,
  upper: float | None = None,
) -> None:
  """Validates a numeric hyperparameter when it is a concrete number.

  Traced values (from :func:`optax.inject_hyperparams`) and schedules are
  accepted unchecked: they are never branched on in Python.

  Args:
    value: the hyperparameter.
    arg: its argument name, for the message.
    fn: the public function name, for the message.
    allow_schedule: whether a callable of the step is accepted.
    positive: require ``value > 0`` instead of ``value >= 0``.
    upper: an inclusive upper bound, if any.

  Raises:
    TypeError: a non-numeric value, or a schedule where none is accepted.
    ValueError: a non-scalar, NaN or out-of-range value.
  """
  where = f"optaxclip.{fn}: `{arg}`"
  if callable(value):
    if not allow_schedule:
      raise TypeError(f"{where} must be a number, got the callable {value!r}.")
    return
  if _is_traced(value):
    return
  if isinstance(value, bool) or value is None:
    raise TypeError(f"{where} must be a number, got {value!r}.")
  try:
    arr = np.asarray(value)
  except Exception as e:  # pragma: no cover - exotic inputs
    raise TypeError(f"{where} must be a number, got {value!r}.") from e
  # jnp's dtype tests know bfloat16 and the other ml_dtypes (NumPy's don't).
  if arr.dtype == object or not jnp.issubdtype(arr.dtype, jnp.number):
    raise TypeError(f"{where} must be a number, got {value!r}.")
  if jnp.issubdtype(arr.dtype, jnp.complexfloating):
    raise TypeError(f"{where} must be a real number, got {value!r}.")
  clip = _is_clip_threshold(arg, positive, upper)
  if arr.ndim != 0:
    hint = " For different thresholds per layer use optaxclip.clip_by_layer."
    raise ValueError(
      f"{where} must be a scalar, got an array of shape {arr.shape}."
      f"{hint if clip else ''}"
    )
  v = float(arr)
  rng = "> 0" if positive else ">= 0"
  if upper is not None:
    rng += f" and <= {upper}"
  if math.isnan(v) or v < 0 or (positive and v == 0):
    hint = " (0 zeroes the updates, inf disables it)" if clip else ""
    raise ValueError(f"{where} must be {rng}{hint}, got {value!r}.")
  if upper is not None and v > upper:
    raise ValueError(f"{where} must be {rng}, got {value!r}.")


# The arguments that are a clipping threshold: 0 zeroes the updates and inf
# disables the clipper, and per-layer values belong to clip_by_layer. The
# error hints say so for these only.
_CLIP_THRESHOLDS = frozenset(
  {"max_norm", "max_delta", "threshold", "clipping", "max_grad_norm"}
)


def _is_clip_threshold(arg: str, positive: bool, upper: float | None) -> bool:
  name = arg.split("[")[0]
  return (
    not positive
    and upper is None
    and (name in _CLIP_THRESHOLDS or name in ("thresholds", "default"))
  )


def check_choice(value: Any, arg: str, fn: str, choices: Sequence[Any]) -> Any:
  """Checks that ``value`` is one of ``choices``; returns it."""
  if value not in choices:
    raise ValueError(
      f"optaxclip.{fn}: unknown {arg}={value!r}; expected one of "
      f"{', '.join(repr(c) for c in choices)}."
    )
  return value


def check_static(value: Any, arg: str, fn: str) -> Any:
  """Rejects a JAX array for a structural (static) argument, clearly.

  :func:`optax.inject_hyperparams` turns every numeric argument into an
  array unless it is listed in ``static_args``; a structural argument (a
  norm order, a window size, a number of warm-up steps) cannot be one.
  """
  if isinstance(value, (jax.Array, jax.core.Tracer)):
    raise TypeError(
      f"optaxclip.{fn}: `{arg}` is a structural argument and cannot be a "
      f"JAX array (got {value!r}). With optax.inject_hyperparams, list it in "
      f"static_args, e.g. optax.inject_hyperparams(optaxclip.{fn}, "
      f"static_args=({arg!r},))."
    )
  return value


def check_flag(value: Any, arg: str, fn: str) -> None:
  """Raises unless ``value`` is a bool (a static switch)."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(
      f"optaxclip.{fn}: `{arg}` must be True or False (a static bool), "
      f"got {value!r}."
    )


def check_ord(ord: Any, fn: str) -> Ord:
  """Normalises a norm order: 1, 2 or ``"inf"`` (``inf`` is accepted)."""
  check_static(ord, "ord", fn)
  if ord is None:
    return 2
  if isinstance(ord, (int, float)) and not isinstance(ord, bool):
    if ord == math.inf:
      return "inf"
    if ord in (1, 2):
      return int(ord)  # type: ignore[return-value]
  if ord in ("inf", "Inf", "INF"):
    return "inf"
  raise ValueError(
    f"optaxclip.{fn}: unknown ord={ord!r}; expected 1, 2 or 'inf' (math.inf)."
  )


def check_nonfinite(policy: Any, fn: str) -> NonFinitePolicy:
  """Checks the ``nonfinite`` argument."""
  return check_choice(policy, "nonfinite", fn, NONFINITE_POLICIES)


def check_axis(axis: Any, fn: str) -> tuple[int, ...] | None:
  """Normalises a static unit axis argument to a tuple of ints or None."""
  check_static(axis, "axis", fn)
  if axis is None:
    return None
  if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
    return (int(axis),)
  if isinstance(axis, Sequence) and all(
    isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis
  ):
    return tuple(int(a) for a in axis)
  raise TypeError(
    f"optaxclip.{fn}: `axis` must be None, an int or a tuple of ints, got "
    f"{axis!r}."
  )


def check_name(name: Any) -> str:
  """A clipper's ``name`` must be a non-empty string."""
  if not isinstance(name, str) or not name:
    raise TypeError(
      f"optaxclip: `name` must be a non-empty string, got {name!r}."
    )
  return name


def check_leaves(
  leaves: Sequence[Any], fn: str, *, allow_complex: bool = True
) -> None:
  """Raises a clear TypeError for leaves a clipper cannot handle."""
  for x in leaves:
    dt = jnp.result_type(x)
    if jnp.issubdtype(dt, jnp.complexfloating):
      if not allow_complex:
        raise TypeError(
          f"optaxclip.{fn} does not support complex leaves (got {dt}); "
          "clip the real and imaginary parts yourself, or use a norm-based "
          "strategy, which supports complex gradients."
        )
    elif not jnp.issubdtype(dt, jnp.floating):
      raise TypeError(
        f"optaxclip.{fn}: got a leaf of dtype {dt} with shape "
        f"{jnp.shape(x)}; gradients must be floating point. Cast it, or "
        "exclude it with optax.masked / optax.partition."
      )


def require_params(params: Any, fn: str) -> None:
  """Raises the usual error of a strategy that needs ``params``."""
  if params is None:
    raise ValueError(
      f"optaxclip.{fn} needs the parameters: call "
      "`update(updates, state, params)` (nnx.Optimizer does this for you)."
    )


def resolve(value: ThresholdOrSchedule, step: jax.Array) -> jax.Array:
  """A hyperparameter's value at ``step``: calls it if it is a schedule."""
  # A schedule's value is an array even if it returns a Python number, so
  # that it is checked at run time (`_scaling.threshold_valid`).
  return jnp.asarray(value(step)) if callable(value) else value
