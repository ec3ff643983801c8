# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Wrappers that decide whether a whole inner step happens."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optaxclip import _core


@_core.register_stats_type
class SkipStats(NamedTuple):
  """Statistics of a skipping wrapper (the fields of ClipStats, and more).

  Attributes:
    norm_before: global L2 norm of the incoming gradients.
    norm_after: global L2 norm of the outgoing updates (0 when skipped).
    threshold: the value a step is compared against (NaN if none).
    scale: 1 when the step was applied, 0 when skipped.
    clipped: 1 when this step was skipped, else 0.
    nonfinite_count: steps skipped so far because of NaN/Inf.
    step: number of steps seen so far (skipped or not).
    skip_count: steps skipped so far, for any reason.
    consecutive_skips: skips in a row up to this step (0 after a good step).
  """

  norm_before: jax.Array
  norm_after: jax.Array
  threshold: jax.Array
  scale: jax.Array
  clipped: jax.Array
  nonfinite_count: jax.Array
  step: jax.Array
  skip_count: jax.Array
  consecutive_skips: jax.Array


class SkipState(NamedTuple):
  """State of a skipping wrapper.

  Attributes:
    inner_state: the wrapped transformation's state; unchanged by a skipped
      step.
    stats: ``{name: SkipStats}``.
  """

  inner_state: Any
  stats: dict[str, SkipStats]


def init_skip_stats() -> SkipStats:
  """Statistics of a skipping wrapper before its first step."""
  zero = jnp.zeros([], jnp.int32)
  return SkipStats(*_core.init_stats(), skip_count=zero, consecutive_skips=zero)


def next_skip_stats(
  prev: SkipStats,
  *,
  skipped: jax.Array,
  nonfinite: jax.Array,
  norm_before: Any,
  norm_after: Any,
  threshold: Any = jnp.nan,
) -> SkipStats:
  """Statistics after one step of a skipping wrapper."""
  skipped_i = skipped.astype(jnp.int32)
  base = _core.next_stats(
    _core.ClipStats(*prev[:7]),
    finite=jnp.logical_not(nonfinite),
    norm_before=norm_before,
    norm_after=jnp.where(skipped, 0.0, norm_after),
    threshold=threshold,
    scale=1 - skipped_i,
    clipped=skipped_i,
  )
  return SkipStats(
    *base,
    skip_count=prev.skip_count + skipped_i,
    consecutive_skips=jnp.where(skipped, prev.consecutive_skips + 1, 0),
  )


def guarded_update(
  inner: optax.GradientTransformation,
  skip_before: jax.Array,
  updates: Any,
  inner_state: Any,
  params: Any,
  extra_args: dict[str, Any],
) -> tuple[Any, Any, jax.Array, jax.Array]:
  """Runs ``inner`` unless a step must be skipped; the skip machinery.

  The inner update is computed under :func:`jax.lax.cond` only when
  ``skip_before`` is False; afterwards its output is checked for NaN/Inf,
  and a non-finite output is skipped too. A skipped step returns zero
  updates and the old inner state, untouched.

  Args:
    inner: the wrapped transformation.
    skip_before: a boolean decided from the incoming gradients.
    updates: incoming gradients.
    inner_state: the wrapped state.
    params: parameters (or None).
    extra_args: extra arguments, forwarded to ``inner``.

  Returns:
    ``(updates, inner_state, skipped, out_norm)``; ``out_norm`` is the
    global L2 norm of the inner step's updates (measured to check them).
  """
  inner = optax.with_extra_args_support(inner)

  def run(_):
    return inner.update(updates, inner_state, params, **extra_args)

  out_shape = jax.eval_shape(run, None)

  def skip(_):
    # zeros_like of the abstract output keeps its sharding (and weak type),
    # which both branches of the cond must agree on.
    zeros = jax.tree.map(jnp.zeros_like, out_shape[0])
    return zeros, inner_state

  new_updates, new_state = jax.lax.cond(skip_before, skip, run, None)
  out_leaves = jax.tree.leaves(new_updates)
  _core.check_leaves(out_leaves, "skip wrapper")
  out_norm = _core.root(_core.global_power(out_leaves, 2), 2)
  # The mask reads every leaf's norm: computed once (see `materialize`).
  (skipped,) = _core.materialize(
    jnp.logical_or(skip_before, ~jnp.isfinite(out_norm))
  )
  new_updates = jax.tree.map(
    lambda u: jnp.where(skipped, jnp.zeros((), u.dtype), u), new_updates
  )
  new_state = jax.tree.map(
    lambda new, old: jnp.where(skipped, old, new), new_state, inner_state
  )
  return new_updates, new_state, skipped, out_norm


def skip_nonfinite(
  inner: optax.GradientTransformation,
  *,
  name: str = "skip_nonfinite",
) -> optax.GradientTransformationExtraArgs:
  r"""Skips a whole step, inner state included, when anything is NaN/Inf.

  Wraps a transformation (typically a whole chain ending in the optimizer).
  A step whose incoming gradients or outgoing updates contain NaN or Inf
  yields zero updates, and the inner state (Adam's moments and count,
  clippers' statistics) is left exactly as it was, so the bad step leaves
  no trace. This is what the ``nonfinite="zero"`` policy of a clipper cannot
  do on its own: a clipper that zeroes its output still lets a following
  Adam advance its count and decay its moments.

  .. math::

    (u, s) \leftarrow \begin{cases}
      \text{inner}(g, s) & \text{if } g \text{ and its update are finite}\\
      (0, s) & \text{otherwise}
    \end{cases}

  Skips and consecutive skips are counted in its :class:`SkipStats`,
  returned by :func:`optaxclip.stats` under ``name``. The check on the
  incoming gradients uses their global norm (accumulated in float32), so
  elements so large that their squares overflow float32 (about 1.8e19)
  also count as non-finite.

  Cost: keeping the old inner state until the step is known to be good
  means holding it and the new one at once. On the CPU backend, with the
  state donated to the jitted step, XLA copies the inner state into fresh
  buffers every step: 4.6-6x Adam's step at 20M parameters (see
  ``benchmarks/README.md``, finding 3). An unwrapped chain pays none of
  this, so wrap only runs that need the guarantee.

  Args:
    inner: the transformation to guard.
    name: key of its statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`SkipState`.

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> tx = optaxclip.skip_nonfinite(optax.adam(0.1))
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> u, state = tx.update(jnp.array([1.0, jnp.nan]), state, params)
    >>> u, int(state.inner_state[0].count)
    (Array([0., 0.], dtype=float32), 0)
    >>> int(optaxclip.stats(state)["skip_nonfinite"].skip_count)
    1

  Edge cases:

  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  NaN / Inf gradients   zero updates, inner state unchanged, counted
  finite gradients but  the same: the inner step is discarded
  non-finite update
  zero gradients        passed to ``inner`` as usual
  empty pytree          passed through
  ===================== ==================================================
  """
  _core.check_name(name)
  if not isinstance(inner, optax.GradientTransformation):
    raise TypeError(
      "optaxclip.skip_nonfinite: `inner` must be an optax "
      f"GradientTransformation, got {type(inner).__name__}."
    )

  @_core.unshared
  def init_fn(params):
    return SkipState(inner.init(params), _core.named(name, init_skip_stats()))

  def update_fn(updates, state, params=None, **extra_args):
    leaves = jax.tree.leaves(updates)
    _core.check_leaves(leaves, "skip_nonfinite")
    in_norm = _core.root(_core.global_power(leaves, 2), 2)
    bad_in = ~jnp.isfinite(in_norm)
    new_updates, inner_state, skipped, out_norm = guarded_update(
      inner, bad_in, updates, state.inner_state, params, extra_args
    )
    new = next_skip_stats(
      _core.unnamed(state.stats),
      skipped=skipped,
      nonfinite=skipped,
      norm_before=in_norm,
      norm_after=out_norm,
    )
    return new_updates, SkipState(inner_state, _core.named(name, new))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
