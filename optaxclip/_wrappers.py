# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Wrappers that decide whether a whole inner step happens."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optaxclip import _norms
from optaxclip import _scaling
from optaxclip import _stats
from optaxclip import _validation

SkipStats = _stats.stats_type(
  "SkipStats",
  """Statistics of a skipping wrapper (the fields of ClipStats, and more).

  Attributes:
    norm_before: global L2 norm of the incoming gradients.
    norm_after: global L2 norm of the gradients passed on to the inner
      transformation: ``norm_before``, or 0 when the step was skipped.
    threshold: the value a step is compared against (NaN if none).
    scale: 1 when the step was applied, 0 when skipped.
    clipped: 1 when this step was skipped, else 0.
    nonfinite_count: steps skipped so far because of NaN/Inf.
    step: number of steps seen so far (skipped or not).
    skip_count: steps skipped so far, for any reason.
    consecutive_skips: skips in a row up to this step (0 after a good step).

  The counters are int32 and saturate at 2**31 - 1 (as
  :func:`optax.safe_increment`); they never wrap.
  """,
  "skip_count",
  "consecutive_skips",
)


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
  return SkipStats(
    *_stats.init_stats(), skip_count=zero, consecutive_skips=zero
  )


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
  base = _stats.next_stats(
    _stats.ClipStats(*prev[:7]),
    finite=jnp.logical_not(nonfinite),
    norm_before=norm_before,
    norm_after=jnp.where(skipped, 0.0, norm_after),
    threshold=threshold,
    scale=1 - skipped_i,
    clipped=skipped_i,
  )
  return SkipStats(
    *base,
    # The counters saturate at the int32 maximum (optax.safe_increment).
    skip_count=jnp.where(
      skipped, optax.safe_increment(prev.skip_count), prev.skip_count
    ),
    consecutive_skips=jnp.where(
      skipped, optax.safe_increment(prev.consecutive_skips), 0
    ),
  )


def guarded_update(
  inner: optax.GradientTransformation,
  skip_before: jax.Array,
  updates: Any,
  inner_state: Any,
  params: Any,
  extra_args: dict[str, Any],
  *,
  check_updates: bool,
  axis_name: Any = None,
) -> tuple[Any, Any, jax.Array, jax.Array]:
  """Runs ``inner`` unless a step must be skipped; the skip machinery.

  A skipped step returns zero updates and the old inner state, untouched;
  ``inner`` then sees zero gradients, so NaN gradients never reach its
  arithmetic. Each state leaf is chosen between new and old by a select,
  with no conditional (on the CPU, where each new state leaf is computed:
  see :func:`_scaling.run_keeping_state`), so that an accepted step costs
  what the inner step costs, plus a select that XLA fuses into it.

  Args:
    inner: the wrapped transformation.
    skip_before: a boolean decided from the incoming gradients.
    updates: incoming gradients.
    inner_state: the wrapped state.
    params: parameters (or None).
    extra_args: extra arguments, forwarded to ``inner``.
    check_updates: also skip when the inner step's updates are not finite
      (static). They are then computed once more before the state is
      chosen, and checked with :func:`_norms.any_nonfinite`.
    axis_name: mapped axes (``shard_map``) over which that check is made,
      so that every device skips the same steps.

  Returns:
    ``(updates, inner_state, skipped, bad_updates)``; ``bad_updates``
    says the inner step's updates were not finite (always False without
    ``check_updates``).
  """
  inner = optax.with_extra_args_support(inner)

  def zeroed(skip):
    return jax.tree.map(lambda g: _scaling.zero_where(skip, g), updates)

  skipped = skip_before
  bad_out = jnp.array(False)
  if check_updates:
    trial, _ = inner.update(
      zeroed(skip_before), inner_state, params, **extra_args
    )
    out_leaves = jax.tree.leaves(trial)
    _validation.check_leaves(out_leaves, "skip wrapper")
    bad_out = _norms.any_nonfinite(
      out_leaves, computed=True, axis_name=axis_name
    )
    skipped = jnp.logical_or(skip_before, bad_out)
  # The mask reads every leaf's norm: computed once (see `compute_once`).
  (skipped,) = _scaling.compute_once(skipped)
  u, s, u_def, state_def = _scaling.run_keeping_state(
    lambda g, st, p, e: inner.update(g, st, p, **e),
    (zeroed(skipped), inner_state, params, extra_args),
    skipped,
  )
  _validation.check_leaves(u, "skip wrapper")
  u = [_scaling.zero_where(skipped, x) for x in u]
  return (
    jax.tree.unflatten(u_def, u),
    jax.tree.unflatten(state_def, s),
    skipped,
    bad_out,
  )


@_norms.documents_partition_specs
def skip_nonfinite(
  inner: optax.GradientTransformation,
  *,
  check_updates: bool = True,
  axis_name: Any = None,
  partition_specs: Any = None,
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

  How: the decision is made before the inner step writes anything. On a
  skipped step ``inner`` sees zero gradients, and each leaf of its new
  state is chosen between new and old right where the inner step computes
  it, so the accepted step's updates read the chosen state and XLA writes
  every state leaf once, in place (on the CPU the inner step is traced and
  evaluated equation by equation for this). There is no conditional: on a
  GPU or TPU the choice is a select on the inner step's outputs; no GPU
  measurement has shown that a conditional would be faster. With
  ``check_updates`` the inner updates are computed once more before the
  choice, only to be checked.

  Cost (CPU backend, 20M parameters in 10 leaves, state donated, ratios to
  Adam alone measured side by side; ``benchmarks/README.md``, finding 3):
  1.6x Adam's step with ``check_updates=True``, 1.2x without; selecting the
  outputs after the inner step had cost 4.6-6x, because XLA then copied the
  whole state into fresh buffers every step.

  Args:
    inner: the transformation to guard. Its state must keep its structure
      from step to step (every optax transformation's does).
    check_updates: also skip a step whose gradients are finite but whose
      inner updates are not (for example Adam in float16 whose ``eps``
      rounds to 0), static. With False only the gradients are checked.
    axis_name: a mapped axis name, or a tuple of names, under
      :func:`jax.shard_map` across which the gradients are split; norms and
      statistics are then reduced across it, each leaf over the axes it
      varies along (see :func:`optaxclip.clip_by_global_norm`).
    partition_specs: PARTITION_SPECS
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
  finite gradients but  the same: the inner step is discarded (with
  non-finite update     ``check_updates=False``: passed on, not counted)
  zero gradients        passed to ``inner`` as usual
  empty pytree          passed through
  ===================== ==================================================
  """
  _validation.check_name(name)
  if not isinstance(inner, optax.GradientTransformation):
    raise TypeError(
      "optaxclip.skip_nonfinite: `inner` must be an optax "
      f"GradientTransformation, got {type(inner).__name__}."
    )
  _validation.check_flag(check_updates, "check_updates", "skip_nonfinite")
  _norms.check_partition_specs(partition_specs, axis_name, "skip_nonfinite")

  @_stats.unshared
  def init_fn(params):
    return SkipState(inner.init(params), _stats.named(name, init_skip_stats()))

  def update_fn(updates, state, params=None, **extra_args):
    leaves = jax.tree.leaves(updates)
    _validation.check_leaves(leaves, "skip_nonfinite")
    axes = _norms.layout(axis_name, partition_specs, "skip_nonfinite", updates)
    in_norm = _norms.root(_norms.global_power(leaves, 2, axis_name=axes), 2)
    bad_in = ~jnp.isfinite(in_norm)
    new_updates, inner_state, skipped, _ = guarded_update(
      inner,
      bad_in,
      updates,
      state.inner_state,
      params,
      extra_args,
      check_updates=check_updates,
      axis_name=axes,
    )
    new = next_skip_stats(
      _stats.unnamed(state.stats),
      skipped=skipped,
      nonfinite=skipped,
      norm_before=in_norm,
      norm_after=in_norm,
    )
    return new_updates, SkipState(inner_state, _stats.named(name, new))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
