# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Shared machinery of every optaxclip strategy.

Every clipper is the same three steps with a different middle:

1. **measure**: a norm of the updates (global, per leaf, per group or per
   unit), accumulated in float32 (float64 for float64 leaves) and, where an
   ``axis_name`` is given, reduced across devices;
2. **decide**: a threshold, from the hyperparameters, a schedule or the
   strategy's own state (that is the strategy's business);
3. **apply**: multiply by ``min(1, threshold / norm)``, honour the non-finite
   policy and record :class:`ClipStats`.

Steps 1 and 3 live here and nowhere else, as do argument validation, the
parameter-path utilities used by the per-layer strategies and monitors, and
:func:`stats`, which finds every clipper's statistics in any optimizer state.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optaxclip import _xla

# ---------------------------------------------------------------------------
# Types and constants
# ---------------------------------------------------------------------------

NonFinitePolicy = Literal["zero", "propagate", "error"]
NONFINITE_POLICIES: tuple[str, ...] = ("zero", "propagate", "error")
Ord = Literal[1, 2, "inf"]
ThresholdOrSchedule = jax.typing.ArrayLike | Callable[[jax.Array], jax.Array]


class ClipStats(NamedTuple):
  """What a clipper did on its last step; scalars only.

  Every optaxclip clipper keeps one of these in its state, under its name
  (``state.stats == {name: ClipStats(...)}``), so the name is part of the
  state's tree structure rather than a leaf. Read them all at once with
  :func:`optaxclip.stats`.

  A field that a strategy does not compute on its way holds NaN rather than
  costing an extra pass over the gradients (for example the norms of
  :func:`optaxclip.clip_by_value`).

  Attributes:
    norm_before: norm of the incoming updates (the strategy's ``ord``).
    norm_after: norm of the outgoing updates, derived from the scale factors,
      never measured a second time.
    threshold: threshold applied on this step (NaN where it differs per leaf
      or unit).
    scale: factor the updates were multiplied by; for per-leaf or per-unit
      strategies, the smallest one. 0 when the step was zeroed.
    clipped: 0 or 1 for one global decision; otherwise the fraction of
      leaves, groups, units or elements that were clipped.
    nonfinite_count: number of steps so far whose updates were non-finite.
    step: number of updates applied so far.
  """

  norm_before: jax.Array
  norm_after: jax.Array
  threshold: jax.Array
  scale: jax.Array
  clipped: jax.Array
  nonfinite_count: jax.Array
  step: jax.Array


class ClipState(NamedTuple):
  """State of a clipper whose only state is its statistics.

  Attributes:
    stats: ``{name: ClipStats}``; the name is the clipper's ``name=``.
  """

  stats: dict[str, ClipStats]


# Statistics types that `stats()` collects; wrappers with more to say
# register theirs with `register_stats_type`.
_STATS_TYPES: list[type] = [ClipStats]


def register_stats_type(cls: type) -> type:
  """Makes :func:`stats` collect instances of ``cls`` (a NamedTuple)."""
  if cls not in _STATS_TYPES:
    _STATS_TYPES.append(cls)
  return cls


def _f32(x) -> jax.Array:
  return jnp.asarray(x, jnp.float32)


def init_stats() -> ClipStats:
  """The statistics of a clipper that has not stepped yet."""
  # Fields may share a buffer: every init_fn is `unshared`, which copies
  # repeated arrays so that the state can be donated.
  nan = jnp.full([], jnp.nan, jnp.float32)
  return ClipStats(
    norm_before=nan,
    norm_after=nan,
    threshold=nan,
    scale=jnp.ones([], jnp.float32),
    clipped=jnp.zeros([], jnp.float32),
    nonfinite_count=jnp.zeros([], jnp.int32),
    step=jnp.zeros([], jnp.int32),
  )


def next_stats(
  prev: ClipStats,
  *,
  finite: jax.Array,
  norm_before: Any = jnp.nan,
  norm_after: Any = jnp.nan,
  threshold: Any = jnp.nan,
  scale: Any = 1.0,
  clipped: Any = 0.0,
  also: Sequence[Any] = (),
) -> Any:
  """Statistics after one step, computed in one kernel; in the state's dtypes.

  Each statistic written out by a kernel of its own would cost compile
  time: XLA's CPU backend compiles a scalar kernel in about 5-10 ms, and
  the seven fields cost 1.3x Adam's whole compile time at 10 leaves. They
  are the outputs of one variadic reduction instead (see `_pack`), together
  with ``also``.

  Args:
    prev: the previous statistics.
    finite: whether this step's norm is finite.
    norm_before: the fields of :class:`ClipStats` (NaN: not computed).
    norm_after: see ``norm_before``.
    threshold: see ``norm_before``.
    scale: see ``norm_before``.
    clipped: see ``norm_before``.
    also: a few further scalars to compute in the same kernel (the factor
      and keep mask that scale the leaves, the strategy's other new state);
      not one per leaf: a reduction with thousands of outputs takes
      minutes to compile.

  Returns:
    The :class:`ClipStats`; with ``also``, ``(stats, *also)``.
  """
  stats = ClipStats(
    norm_before=_f32(norm_before),
    norm_after=_f32(norm_after),
    threshold=_f32(threshold),
    scale=_f32(scale),
    clipped=_f32(clipped),
    nonfinite_count=prev.nonfinite_count
    + jnp.logical_not(finite).astype(jnp.int32),
    step=optax.safe_increment(prev.step),
  )
  packed = _xla.compute_together(stats, *also)
  return packed if also else packed[0]


def pack(*values: Any) -> tuple[Any, ...]:
  """``values`` unchanged, computed together (statistics written out)."""
  return _xla.compute_together(*values)


def named(name: str, value: Any) -> dict[str, Any]:
  """``{name: value}``: how a clipper files its statistics in its state."""
  return {name: value}


def unnamed(mapping: Mapping[str, Any]) -> Any:
  """The single value of a ``{name: value}`` mapping made by :func:`named`."""
  (value,) = mapping.values()
  return value


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


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
  if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
    raise TypeError(f"{where} must be a number, got {value!r}.")
  if np.iscomplexobj(arr):
    raise TypeError(f"{where} must be a real number, got {value!r}.")
  if arr.ndim != 0:
    raise ValueError(
      f"{where} must be a scalar, got an array of shape {arr.shape}. "
      "For different thresholds per layer use optaxclip.clip_by_layer."
    )
  v = float(arr)
  rng = "> 0" if positive else ">= 0"
  if upper is not None:
    rng += f" and <= {upper}"
  if math.isnan(v) or v < 0 or (positive and v == 0):
    hint = "" if positive else " (0 zeroes the updates, inf disables it)"
    raise ValueError(f"{where} must be {rng}{hint}, got {value!r}.")
  if upper is not None and v > upper:
    raise ValueError(f"{where} must be {rng}, got {value!r}.")


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


def resolve(value: ThresholdOrSchedule, step: jax.Array) -> jax.Array:
  """A hyperparameter's value at ``step``: calls it if it is a schedule."""
  return value(step) if callable(value) else value


def require_params(params: Any, fn: str) -> None:
  """Raises the usual error of a strategy that needs ``params``."""
  if params is None:
    raise ValueError(
      f"optaxclip.{fn} needs the parameters: call "
      "`update(updates, state, params)` (nnx.Optimizer does this for you)."
    )


# ---------------------------------------------------------------------------
# Leaves and dtypes
# ---------------------------------------------------------------------------


def acc_dtype(dtype: Any) -> np.dtype:
  """Accumulation dtype of a leaf: float32, or float64 for 64-bit leaves."""
  real = np.dtype(jnp.finfo(dtype).dtype)
  return np.dtype(jnp.promote_types(real, jnp.float32))


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


def _elementwise_power(x: jax.Array, ord: Ord) -> jax.Array:
  """|x|^2 (ord 2) or |x| (ord 1, inf) elementwise, in the acc dtype."""
  # lax rather than jnp: no nested jit per leaf (cheaper to trace and to
  # compile when there are thousands of leaves); the values are the same.
  acc = acc_dtype(x.dtype)
  if jnp.iscomplexobj(x):
    re = _cast(jax.lax.real(x), acc)
    im = _cast(jax.lax.imag(x), acc)
    if ord == 2:
      return re * re + im * im
    return jax.lax.abs(x).astype(acc)
  y = _cast(x, acc)
  return y * y if ord == 2 else jax.lax.abs(y)


def _cast(x: jax.Array, dtype: Any) -> jax.Array:
  """``x.astype(dtype)``, skipped (not traced) when it is a no-op."""
  return x if x.dtype == dtype else x.astype(dtype)


def _op(ord: Ord) -> str:
  return "max" if ord == "inf" else "sum"


def _leaf_power(x: jax.Array, ord: Ord, axis=None, keepdims=False):
  """sum |x|^2 (ord 2), sum |x| (ord 1) or max |x| (ord inf), in acc dtype."""
  v = _elementwise_power(x, ord)
  if ord == "inf":
    return _xla.max_keeping_nan(v, axis, keepdims)
  return jnp.sum(v, axis=axis, keepdims=keepdims)


def stack_scalars(values: Sequence[Any], dtype: Any = None) -> jax.Array:
  """Scalars (one per leaf or group) as one vector, built once if many."""
  return _xla.stack_once(values, dtype)


def combine(powers: Sequence[jax.Array] | jax.Array, ord: Ord) -> jax.Array:
  """Combines partial powers: a sum (ord 1, 2) or a max (ord inf)."""
  if isinstance(powers, (list, tuple)):
    if not powers:
      return jnp.zeros([], jnp.float32)
    powers = stack_scalars(powers)
  return jnp.max(powers, initial=0) if ord == "inf" else jnp.sum(powers)


def root(power: jax.Array, ord: Ord) -> jax.Array:
  """Norm from a power; the square root has a finite gradient at 0."""
  if ord != 2:
    return power
  zero = power == 0
  return jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, power)))


def _cross_device(power: jax.Array, ord: Ord, axis_name) -> jax.Array:
  """The one place where a norm is reduced across devices."""
  if axis_name is None:
    return power
  if ord == "inf":
    return jax.lax.pmax(power, axis_name)
  return jax.lax.psum(power, axis_name)


def global_reduce(
  leaves: Sequence[jax.Array],
  elementwise: Callable[[jax.Array], jax.Array],
  op: str = "sum",
  *,
  axis_name=None,
) -> jax.Array:
  """Reduces ``elementwise(leaf)`` over all leaves to one scalar.

  Args:
    leaves: the leaves.
    elementwise: maps a leaf to the values to reduce (same shape).
    op: ``"sum"`` or ``"max"``.
    axis_name: optional mapped axis to reduce across devices too.
  """
  if not leaves:
    total = jnp.zeros([], jnp.float32)
  else:
    total = _xla.reduce_all(leaves, elementwise, op)
  if axis_name is not None:
    red = jax.lax.pmax if op == "max" else jax.lax.psum
    total = red(total, axis_name)
  return total


def global_power(
  leaves: Sequence[jax.Array], ord: Ord, *, axis_name=None
) -> jax.Array:
  """Power (see :func:`_leaf_power`) of all leaves together, one scalar."""
  return global_reduce(
    leaves,
    lambda x: _elementwise_power(x, ord),
    _op(ord),
    axis_name=axis_name,
  )


def leaf_powers(
  leaves: Sequence[jax.Array], ord: Ord, *, axis_name=None
) -> list[jax.Array]:
  """Power of each leaf, as a list of scalars (same order as ``leaves``)."""
  out = _xla.reduce_each(
    leaves, functools.partial(_elementwise_power, ord=ord), _op(ord)
  )
  return [_cross_device(p, ord, axis_name) for p in out]


def tree_norm(tree: Any, ord: Ord = 2, *, axis_name=None) -> jax.Array:
  """Global norm of a pytree, accumulated in float32 (float64 for f64)."""
  return root(
    global_power(jax.tree.leaves(tree), ord, axis_name=axis_name), ord
  )


def default_unit_axes(ndim: int, fn: str) -> tuple[int, ...]:
  """Optax's unit-wise convention: which axes a unit's norm reduces over.

  Rank <= 1: the whole leaf; rank 2 or 3: axis 0; rank 4: axes 0-2;
  rank 5: axes 0-3. With Flax's (in, out) kernels, the units are the outputs.
  """
  if ndim <= 1:
    return tuple(range(ndim))
  if ndim in (2, 3):
    return (0,)
  if ndim in (4, 5):
    return tuple(range(ndim - 1))
  raise ValueError(
    f"optaxclip.{fn}: no default unit axes for a leaf of rank {ndim}; pass "
    "`axis=` (the axes each unit's norm reduces over)."
  )


def unit_power(x: jax.Array, axis, ord: Ord, fn: str) -> jax.Array:
  """Per-unit power of a leaf, with kept dims so it broadcasts against x."""
  axes = default_unit_axes(x.ndim, fn) if axis is None else axis
  axes = tuple(a % x.ndim for a in axes) if x.ndim else ()
  return _leaf_power(x, ord, axis=axes, keepdims=True)


# ---------------------------------------------------------------------------
# Scaling and the non-finite policy
# ---------------------------------------------------------------------------


def clip_factor(norm, threshold, policy: NonFinitePolicy = "zero"):
  """``min(1, threshold / norm)``, computed once, never dividing by zero.

  A norm equal to the threshold is left alone. Under ``"propagate"`` a
  non-finite norm gives ``threshold / norm`` (NaN for NaN, 0 for inf), as
  :func:`optax.clip_by_global_norm` does.

  Returns:
    ``(factor, clipped)``, in the norm's dtype and as a boolean.
  """
  threshold = jnp.asarray(threshold, jnp.result_type(norm))
  clipped = norm > threshold
  factor = jnp.where(clipped, threshold / jnp.where(clipped, norm, 1), 1)
  if policy == "propagate":
    factor = jnp.where(jnp.isfinite(norm), factor, threshold / norm)
  return factor, clipped


def scale_leaf(x: jax.Array, factor, keep=None) -> jax.Array:
  """``x * factor`` at float32 (or wider) precision, cast back to x.dtype.

  Args:
    x: a leaf.
    factor: a scalar, or an array that broadcasts against ``x``.
    keep: optional boolean; where False the result is zero (not NaN).
  """
  # Per leaf this is traced thousands of times: no-op casts are skipped and
  # lax.select stands for jnp.where (no nested jit); the values are the same.
  compute, real = _scale_dtypes(jnp.result_type(x))
  out = _cast(_cast(x, compute) * _cast(jnp.asarray(factor), real), x.dtype)
  return out if keep is None else zero_where(jnp.logical_not(keep), out)


def zero_where(pred: jax.Array, x: jax.Array) -> jax.Array:
  """``x`` with zeros where the scalar (or broadcastable) ``pred`` holds.

  ``lax.select`` rather than ``jnp.where`` (no nested jit per leaf); the
  predicate is broadcast with the leaf's sharding.
  """
  return _xla._zero_where(pred, x)


@functools.cache
def _scale_dtypes(dtype: Any) -> tuple[np.dtype, np.dtype]:
  """(compute dtype, its real dtype) of :func:`scale_leaf` for a leaf dtype."""
  compute = np.dtype(jnp.promote_types(dtype, jnp.float32))
  return compute, np.dtype(jnp.finfo(compute).dtype)


def _raise_nonfinite(fn: str, name: str, norm, step) -> None:
  raise FloatingPointError(
    f"optaxclip.{fn} (name={name!r}): non-finite gradient norm {norm} at "
    f"step {int(step)} with nonfinite='error'. Find the source of the NaN/Inf "
    "(e.g. jax.config.update('jax_debug_nans', True)), or use "
    "nonfinite='zero' / optaxclip.skip_nonfinite to skip such steps."
  )


def check_finite(
  finite: jax.Array, policy: NonFinitePolicy, fn: str, name: str, norm, step
) -> None:
  """Raises (through a host callback) when ``policy == "error"``.

  The callback runs only on a non-finite step. Called eagerly it raises
  :class:`FloatingPointError` at once; under ``jit`` the error surfaces when
  the step's results are next used on the host, as a ``JaxRuntimeError``
  whose message contains the one above.
  """
  if policy != "error":
    return
  if not _is_traced(finite):  # eager: raise right here
    if not bool(finite):
      _raise_nonfinite(fn, name, norm, step)
    return
  cb = functools.partial(_raise_nonfinite, fn, name)
  jax.lax.cond(finite, lambda: None, lambda: jax.debug.callback(cb, norm, step))


def keep_mask(finite: jax.Array, policy: NonFinitePolicy, *, once: bool = True):
  """Where a step's outputs are kept: None (all) under ``"propagate"``.

  With ``once`` (the default) the mask is passed through `materialize`, for
  per-leaf loops whose kernels would otherwise copy its computation; a
  caller that passes it through `next_stats` (``also=``), which computes it
  once too, passes ``once=False``.
  """
  if policy == "propagate":
    return None
  return _xla.compute_once(finite)[0] if once else finite


def materialize(*values: Any) -> Any:
  """``values`` unchanged, computed once, before the kernels that read them."""
  return _xla.compute_once(*values)


def materialize_each(vector: jax.Array) -> tuple[jax.Array, ...]:
  """The elements of a small vector as scalars, each computed once."""
  return _xla.compute_each_once(vector)


def tie(leaves: Sequence[Any], powers: Sequence[jax.Array]) -> list[Any]:
  """Each leaf unchanged, kept with the reduction of its own power."""
  return _xla.tie(leaves, powers)


def run_keeping_state(fn, args, keep):
  """``fn(*args)`` with the old state (``args[1]``) kept where ``keep``.

  Returns ``(update_leaves, state_leaves, update_treedef, state_treedef)``.
  """
  return _xla.run_keeping_state(fn, args, keep)


def _one_division(norm, threshold, clipped, keep) -> jax.Array:
  """The factor of :func:`clip_factor` (0 where ``keep`` is False).

  The same value, written as one division at the end: XLA then computes it
  once, whereas the selects of :func:`clip_factor` are cheap enough that it
  copies them into every kernel that scales a leaf (thousands of kernels
  for thousands of leaves, a measurable compile cost).
  """
  threshold = jnp.asarray(threshold, jnp.result_type(norm))
  if keep is None:  # "propagate": threshold / norm when not finite too
    big = jnp.logical_or(clipped, ~jnp.isfinite(norm))
    return jnp.where(big, threshold, 1) / jnp.where(big, norm, 1)
  big = jnp.logical_and(clipped, keep)
  num = jnp.where(keep, jnp.where(clipped, threshold, 1), 0)
  return num / jnp.where(big, norm, 1)


def clip_global(
  updates: Any,
  norm: jax.Array,
  threshold: Any,
  prev: ClipStats,
  *,
  policy: NonFinitePolicy,
  fn: str,
  name: str,
  also: Sequence[Any] = (),
) -> tuple[Any, ...]:
  """Rescales a whole pytree by one factor; the apply step of global clips.

  Args:
    updates: the pytree.
    norm: its norm, from :func:`tree_norm` (measured once, by the caller).
    threshold: the threshold to clip the norm to.
    prev: the clipper's previous statistics.
    policy: the non-finite policy.
    fn: public function name, for errors.
    name: the clipper's name, for errors.
    also: the strategy's other new scalar state, computed in the same
      kernel as the statistics (see :func:`next_stats`).

  Returns:
    ``(clipped_updates, stats)``; with ``also``, ``(clipped_updates,
    stats, also)``, ``also`` as a tuple.
  """
  factor, clipped = clip_factor(norm, threshold, policy)
  finite = jnp.isfinite(norm)
  check_finite(finite, policy, fn, name, norm, prev.step)
  keep = keep_mask(finite, policy, once=False)
  applied = _one_division(norm, threshold, clipped, keep)
  if keep is not None:
    factor = jnp.where(keep, factor, 0)
  # The factor and mask that the leaves' kernels read come out of the
  # statistics' kernel, computed once (see `next_stats`).
  stats, applied, keep, *extra = next_stats(
    prev,
    finite=finite,
    norm_before=norm,
    norm_after=norm * factor
    if keep is None
    else jnp.where(keep, norm * factor, 0),
    threshold=threshold,
    scale=factor,
    clipped=jnp.logical_or(clipped, ~finite),
    also=(applied, keep, *also),
  )
  out = jax.tree.map(lambda x: scale_leaf(x, applied, keep), updates)
  return (out, stats, tuple(extra)) if also else (out, stats)


def clip_groups(
  updates: Any,
  group_of_leaf: Sequence[int],
  thresholds: Sequence[Any],
  prev: ClipStats,
  *,
  ord: Ord,
  policy: NonFinitePolicy,
  fn: str,
  name: str,
  axis_name=None,
) -> tuple[Any, ClipStats]:
  """Clips groups of leaves, each by its own joint norm and threshold.

  A group of one leaf is per-tensor clipping; a group of every leaf is global
  clipping. The statistics' norms are of the whole tree, derived from the
  group norms (no second pass); ``clipped`` is the fraction of groups
  clipped. A non-finite norm anywhere makes the whole step non-finite.

  Args:
    updates: the pytree.
    group_of_leaf: for each leaf of ``jax.tree.leaves(updates)``, its group.
    thresholds: one threshold per group.
    prev: previous statistics.
    ord: norm order.
    policy: non-finite policy.
    fn: public function name, for errors.
    name: clipper name, for errors.
    axis_name: optional mapped axis to reduce norms over.

  Returns:
    ``(clipped_updates, stats)``.
  """
  leaves, treedef = jax.tree.flatten(updates)
  n_groups = len(thresholds)
  if not leaves:
    return updates, next_stats(
      prev, finite=jnp.array(True), norm_before=0.0, norm_after=0.0
    )
  powers = leaf_powers(leaves, ord, axis_name=axis_name)
  members: list[list[int]] = [[] for _ in range(n_groups)]
  for i, g in enumerate(group_of_leaf):
    members[g].append(i)
  gpow = [combine([powers[i] for i in m], ord) for m in members]
  dt = jnp.result_type(*gpow)
  gpow = [jnp.asarray(p, dt) for p in gpow]
  thr = [jnp.asarray(t, dt) for t in thresholds]
  # Each leaf is scaled by its own group's scalar chain, not by a slice of a
  # vector: the kernels of equal-shaped leaves stay identical (XLA compiles
  # one for all) and the chain fuses into them. The statistics repeat the
  # same operations on the stacked vector.
  applied = [clip_factor(root(p, ord), t, policy)[0] for p, t in zip(gpow, thr)]
  # A factor that reads several leaves' norms is computed once, not copied
  # into each member's kernels (see `materialize`; not through `next_stats`,
  # which is for a few values: a reduction with an output per group would
  # not compile in reasonable time for thousands of groups).
  multi = [g for g, m in enumerate(members) if len(m) > 1]
  for g, f in zip(multi, materialize(*[applied[g] for g in multi])):
    applied[g] = f
  gpow, thr = stack_scalars(gpow), stack_scalars(thr)
  factor, clipped = clip_factor(root(gpow, ord), thr, policy)
  total = combine(gpow, ord)
  norm_before = root(total, ord)
  finite = jnp.isfinite(total)
  check_finite(finite, policy, fn, name, norm_before, prev.step)
  keep = keep_mask(finite, policy, once=False)
  after_pow = gpow * (factor**2 if ord == 2 else factor)
  norm_after = root(combine(after_pow, ord), ord)
  scale = jnp.min(factor) if n_groups else jnp.ones([], dt)
  uniform = (
    thr[0]
    if n_groups and all(t is thresholds[0] for t in thresholds)
    else jnp.nan
  )
  if keep is not None:
    norm_after = jnp.where(keep, norm_after, 0)
    scale = jnp.where(keep, scale, 0)
  # The keep mask comes out of the statistics' kernel: computed once, not
  # copied into each leaf's kernels (see `next_stats`).
  stats, keep = next_stats(
    prev,
    finite=finite,
    norm_before=norm_before,
    norm_after=norm_after,
    threshold=uniform,
    scale=scale,
    clipped=jnp.where(finite, jnp.mean(clipped.astype(jnp.float32)), 1.0),
    also=(keep,),
  )
  out = [scale_leaf(x, applied[g], keep) for x, g in zip(leaves, group_of_leaf)]
  return jax.tree.unflatten(treedef, out), stats


def min_factor(factors: Sequence[jax.Array]) -> jax.Array:
  """Smallest element over a list of factor arrays, as float32 (1 if none)."""
  if not factors:
    return jnp.ones([], jnp.float32)
  return jnp.min(
    stack_scalars([jnp.min(f, initial=1) for f in factors], jnp.float32)
  )


def fraction_true(flags: Sequence[jax.Array]) -> jax.Array:
  """Fraction of True elements over a list of boolean arrays (float32)."""
  n = sum(int(np.prod(jnp.shape(f))) for f in flags)
  if n == 0:
    return jnp.zeros([], jnp.float32)
  hits = stack_scalars([jnp.sum(f, dtype=jnp.float32) for f in flags])
  return jnp.sum(hits) / n


def any_nonfinite(
  leaves: Sequence[jax.Array], *, computed: bool = False
) -> jax.Array:
  """True when any element of any leaf is NaN or infinite.

  Args:
    leaves: the leaves.
    computed: the leaves are computed in the same step and not yet in
      memory (an inner optimizer's updates), rather than read from memory.
      One L1 reduction would then make YNNPACK take in the whole
      computation and run it op by op through memory (fresh buffers every
      step, finding 3 of ``benchmarks/README.md``). Instead each leaf's
      ``x * 0`` (0, or NaN where ``x`` is not finite) is fenced off into
      one fused loop and summed, and each leaf waits for the previous sum,
      so that one temporary buffer serves every leaf in turn.

  Returns:
    A boolean scalar. Without ``computed``, an L1 norm that overflows
    float32 also counts as non-finite.
  """
  if not leaves:
    return jnp.array(False)
  if not computed:
    return jnp.logical_not(jnp.isfinite(global_power(leaves, 1)))
  return _xla.any_nonfinite_computed(leaves)


def count_where(
  leaves: Sequence[jax.Array], predicate: Callable[[jax.Array], jax.Array]
) -> jax.Array:
  """Fraction of all elements for which ``predicate`` holds (float32)."""
  n = sum(int(np.prod(jnp.shape(x))) for x in leaves)
  if n == 0:
    return jnp.zeros([], jnp.float32)
  hits = global_reduce(leaves, lambda x: predicate(x).astype(jnp.float32))
  return hits / n


NORM_EDGE_CASES = """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  threshold = 0         zero updates (``clipped`` = 1)
  threshold = inf       updates unchanged
  norm = threshold      unchanged: clipping needs norm > threshold
  zero gradients        unchanged; the factor never divides by zero
  NaN / Inf gradients   ``nonfinite="zero"`` (default): zero updates from
                        this clipper, step counted in ``nonfinite_count``;
                        ``"propagate"``: as optax (a NaN norm makes every
                        leaf NaN, an Inf norm zeroes finite elements);
                        ``"error"``: ``FloatingPointError`` (eagerly), or a
                        ``JaxRuntimeError`` carrying it under ``jit``
  bf16 / f16 leaves     norm accumulated and factor applied in float32,
                        product cast back: output dtypes = input dtypes
  integer leaves        ``TypeError`` naming the dtype
  ===================== =================================================="""


def edge_cases(table: str) -> Callable[[Callable], Callable]:
  """Appends an edge-case table to a strategy's docstring."""

  def deco(f: Callable) -> Callable:
    f.__doc__ = (
      (f.__doc__ or "").rstrip() + "\n\n  Edge cases:\n" + table + "\n"
    )
    return f

  return deco


# ---------------------------------------------------------------------------
# Transformation builders
# ---------------------------------------------------------------------------

ApplyFn = Callable[[Any, Any, ClipStats], tuple[Any, ClipStats]]


def stateless_clipper(
  name: str, apply: ApplyFn
) -> optax.GradientTransformationExtraArgs:
  """Wires ``apply(updates, params, prev_stats)`` into a transformation.

  The state is a :class:`ClipState` holding ``{name: ClipStats}``; unknown
  extra arguments are accepted and ignored.
  """
  check_name(name)

  @unshared
  def init_fn(params):
    del params
    return ClipState(named(name, init_stats()))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    updates, new = apply(updates, params, unnamed(state.stats))
    return updates, ClipState(named(name, new))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def unshared(init_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
  """Decorates an ``init`` so that no two state leaves share a buffer.

  A state built by reusing one array in several fields cannot be donated to
  a jitted step (``donate_argnums``): XLA refuses to donate the same buffer
  twice. Repeated arrays are copied; everything else is returned as is.
  """

  @functools.wraps(init_fn)
  def wrapped(params):
    seen: set[int] = set()

    def fresh(x):
      if isinstance(x, jax.Array) and not _is_traced(x):
        if id(x) in seen:
          return jnp.array(x, copy=True)
        seen.add(id(x))
      return x

    return jax.tree.map(fresh, init_fn(params))

  return wrapped


def check_name(name: Any) -> str:
  """A clipper's ``name`` must be a non-empty string."""
  if not isinstance(name, str) or not name:
    raise TypeError(
      f"optaxclip: `name` must be a non-empty string, got {name!r}."
    )
  return name


# ---------------------------------------------------------------------------
# Parameter paths
# ---------------------------------------------------------------------------


def _key_str(k: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def path_str(path: Sequence[Any]) -> str:
  """A leaf's path: keys joined by ``/``, indices as numbers.

  NNX's trailing ``value`` attribute is dropped, so the kernel of an NNX
  LSTM cell reads ``encoder/cell/ii/kernel``.
  """
  keys = list(path)
  last = keys[-1] if keys else None
  if isinstance(last, jax.tree_util.GetAttrKey) and last.name == "value":
    keys = keys[:-1]
  return "/".join(_key_str(k) for k in keys)


def leaf_paths(tree: Any) -> list[str]:
  """Paths of the leaves of ``tree``, in ``jax.tree.leaves`` order."""
  return [path_str(p) for p, _ in jax.tree.leaves_with_path(tree)]


@functools.lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
  out = []
  i = 0
  while i < len(pattern):
    if pattern.startswith("**", i):
      out.append(".*")
      i += 2
    elif pattern[i] == "*":
      out.append("[^/]*")
      i += 1
    elif pattern[i] == "?":
      out.append("[^/]")
      i += 1
    else:
      out.append(re.escape(pattern[i]))
      i += 1
  # A pattern also matches everything below a matching prefix of segments.
  return re.compile("".join(out) + "(?:/.*)?")


def match_path(pattern: str, path: str) -> bool:
  """Whether a path pattern matches a leaf path.

  ``*`` matches within one segment, ``**`` across segments, ``?`` one
  character; a pattern that matches a leading run of whole segments matches
  every leaf below it (``"encoder"`` matches ``"encoder/cell/ii/kernel"``).
  """
  return _pattern_regex(pattern).fullmatch(path) is not None


def assign_rules(
  paths: Sequence[str], patterns: Sequence[str], fn: str, *, has_default: bool
) -> list[int]:
  """Index of the first matching pattern for each path (-1: the default).

  Raises:
    ValueError: a pattern that matches no path, or (without a default) a
      path that no pattern matches. The message lists them.
  """
  out = []
  used = [False] * len(patterns)
  for p in paths:
    k = next((j for j, pat in enumerate(patterns) if match_path(pat, p)), -1)
    if k >= 0:
      used[k] = True
    out.append(k)
  unused = [pat for pat, u in zip(patterns, used) if not u]
  if unused:
    raise ValueError(
      f"optaxclip.{fn}: rule(s) {unused} match no parameter path. Paths are "
      f"keys joined by '/', e.g. {_sample(paths)}; '*' matches within a "
      "segment and '**' across segments. Fix or remove the rule."
    )
  missing = [p for p, k in zip(paths, out) if k < 0]
  if missing and not has_default:
    raise ValueError(
      f"optaxclip.{fn}: no rule matches {_sample(missing, 8)}"
      f"{' and more' if len(missing) > 8 else ''}; add a rule for them or "
      "pass `default=`."
    )
  return out


def _sample(paths: Sequence[str], n: int = 4) -> str:
  return ", ".join(repr(p) for p in list(paths)[:n]) or "(no leaves)"


# ---------------------------------------------------------------------------
# Reading statistics back
# ---------------------------------------------------------------------------


def _unwrap(x: Any) -> Any:
  """Unwraps Flax NNX variables (``OptArray`` etc.) without importing flax."""
  get = getattr(x, "get_value", None)
  if get is not None and type(x).__module__.startswith("flax"):
    return get()
  return x


def stats(opt_state: Any) -> dict[str, Any]:
  """Statistics of every optaxclip clipper inside an optimizer state.

  Looks through any nesting: :func:`optax.chain`, :func:`optax.named_chain`,
  :func:`optax.inject_hyperparams`, :class:`optax.MultiSteps`,
  :func:`optax.masked`, :func:`optax.partition`, wrappers such as
  :func:`optaxclip.skip_nonfinite`, and the ``opt_state`` of a Flax
  ``nnx.Optimizer`` (its variable wrappers are unwrapped). Works on concrete
  and traced states alike, so a jitted step can return it.

  Duplicate names are made unique in traversal order: ``clip_by_global_norm``,
  ``clip_by_global_norm_1``, ...

  Args:
    opt_state: an optimizer state.

  Returns:
    ``{name: ClipStats}`` (or the richer statistics type of a strategy that
    has one), in traversal order.

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> tx = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.sgd(0.1))
    >>> state = tx.init({"w": jnp.zeros(2)})
    >>> _, state = tx.update({"w": jnp.array([3.0, 4.0])}, state)
    >>> s = optaxclip.stats(state)["clip_by_global_norm"]
    >>> float(s.norm_before), float(s.norm_after), float(s.clipped)
    (5.0, 1.0, 1.0)
  """
  types = tuple(_STATS_TYPES)
  found = jax.tree.leaves_with_path(
    opt_state, is_leaf=lambda x: isinstance(x, types)
  )
  out: dict[str, Any] = {}
  for path, node in found:
    if not isinstance(node, types):
      continue
    base = _key_str(path[-1]) if path else type(node).__name__
    key, k = base, 0
    while key in out:
      k += 1
      key = f"{base}_{k}"
    out[key] = type(node)(*(_unwrap(f) for f in node))
  return out
