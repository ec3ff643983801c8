# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Applying: the clip factor, scaling, and the non-finite policy.

Every clipper is the same three steps with a different middle:

1. **measure**: a norm of the updates (``_norms``);
2. **decide**: a threshold, from the hyperparameters, a schedule or the
   strategy's own state (the strategy's business);
3. **apply**: multiply by ``min(1, threshold / norm)`` in float32, honour
   the non-finite policy and record :class:`~optaxclip.ClipStats`
   (this module and ``_stats``).

Values that many per-leaf kernels read (factors, keep masks) are computed
once through :func:`compute_once`; how depends on the platform (``_xla``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optaxclip import _norms
from optaxclip import _stats
from optaxclip import _validation
from optaxclip import _xla


def clip_factor(
  norm,
  threshold,
  policy: _validation.NonFinitePolicy = "zero",
  keep=None,
):
  """``min(1, threshold / norm)``, never dividing by zero.

  A norm equal to the threshold is left alone. Under ``"propagate"`` a
  non-finite norm gives ``threshold / norm`` (NaN for NaN, 0 for inf), as
  :func:`optax.clip_by_global_norm` does, and a negative or NaN threshold
  gives NaN; otherwise a NaN norm gives 1 and the caller zeroes the step
  through ``keep`` (see :func:`keep_mask` and :func:`threshold_valid`).

  Written as one division at the end, ``where(clipped, threshold, 1) /
  where(clipped, norm, 1)``, so that the value is one expression of the
  norm and the threshold.

  Args:
    norm: a norm (or an array of them).
    threshold: the threshold(s), broadcast against ``norm``.
    policy: the non-finite policy.
    keep: optional boolean; where False the factor is 0.

  Returns:
    ``(factor, clipped)``, in the norm's dtype and as a boolean.
  """
  at_run_time = isinstance(threshold, jax.Array)
  threshold = jnp.asarray(threshold, jnp.result_type(norm))
  clipped = norm > threshold
  big = clipped
  if policy == "propagate":
    big = jnp.logical_or(clipped, ~jnp.isfinite(norm))
  num = jnp.where(big, threshold, 1)
  if policy == "propagate" and at_run_time:
    num = jnp.where(threshold >= 0, num, jnp.nan)
  if keep is not None:
    num = jnp.where(keep, num, 0)
  return num / jnp.where(big, norm, 1), clipped


@functools.cache
def _scale_dtypes(dtype: Any) -> tuple[np.dtype, np.dtype]:
  """(compute dtype, its real dtype) of :func:`scale_leaf` for a leaf dtype."""
  compute = np.dtype(jnp.promote_types(dtype, jnp.float32))
  return compute, np.dtype(jnp.finfo(compute).dtype)


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
  out = _norms._cast(
    _norms._cast(x, compute) * _norms._cast(jnp.asarray(factor), real), x.dtype
  )
  return out if keep is None else zero_where(jnp.logical_not(keep), out)


# ``x`` with zeros where ``pred`` holds, broadcast with x's sharding.
zero_where = _xla.zero_where


def _raise_nonfinite(fn: str, name: str, norm, step, threshold=None) -> None:
  if threshold is not None and not np.all(np.asarray(threshold) >= 0):
    what = (
      f"threshold {np.asarray(threshold)} is negative or NaN (from a "
      "schedule or an injected hyperparameter)"
    )
    fix = "Make the schedule or hyperparameter return values >= 0."
  else:
    what = (
      "non-finite (NaN or Inf) updates"
      if norm is None
      else f"non-finite gradient norm {norm}"
    )
    fix = (
      "Find the source of the NaN/Inf (e.g. jax.config.update("
      "'jax_debug_nans', True)), or use nonfinite='zero' / "
      "optaxclip.skip_nonfinite to skip such steps."
    )
  raise FloatingPointError(
    f"optaxclip.{fn} (name={name!r}): {what} at step {int(step)} with "
    f"nonfinite='error'. {fix}"
  )


def check_finite(
  finite: jax.Array,
  policy: _validation.NonFinitePolicy,
  fn: str,
  name: str,
  norm,
  step,
  threshold=None,
) -> None:
  """Raises (through a host callback) when ``policy == "error"``.

  The callback runs only on a bad step: non-finite updates, or a threshold
  that arrived at run time negative or NaN (see :func:`threshold_valid`;
  pass the threshold for the message). Called eagerly it raises
  :class:`FloatingPointError` at once; under ``jit`` the error surfaces when
  the step's results are next used on the host, as a ``JaxRuntimeError``
  whose message contains the one above. This conditional around the
  callback is the one ``nonfinite="error"`` keeps on every platform.

  Args:
    finite: whether the step is good (boolean scalar).
    policy: the non-finite policy.
    fn: public function name, for the message.
    name: the clipper's name, for the message.
    norm: the norm, for the message (None: not measured).
    step: the step, for the message.
    threshold: the threshold(s) applied, for the message (optional).
  """
  if policy != "error":
    return
  if not _validation._is_traced(finite):  # eager: raise right here
    if not bool(finite):
      _raise_nonfinite(fn, name, norm, step, threshold)
    return
  cb = functools.partial(_raise_nonfinite, fn, name)
  jax.lax.cond(
    finite,
    lambda: None,
    lambda: jax.debug.callback(cb, norm, step, threshold),
  )


def threshold_valid(*thresholds: Any) -> jax.Array | None:
  """Whether thresholds that arrive at run time are >= 0 (not NaN).

  A threshold given as a number is checked when the clipper is built; one
  from a schedule, or set in :func:`optax.inject_hyperparams`'s state, is
  only known at run time. A negative one would reverse the updates, a NaN
  one turn clipping off. The result joins the step's finiteness (no extra
  conditional or callback): under ``"zero"`` the step's updates are zero
  and it is counted in ``nonfinite_count``, under ``"error"`` the clipper
  raises, under ``"propagate"`` the updates are NaN.

  Returns:
    A boolean scalar, or None when every threshold is a Python or NumPy
    number (already checked).
  """
  arrays = [t for t in thresholds if isinstance(t, jax.Array)]
  if not arrays:
    return None
  return jnp.all(jnp.stack([jnp.all(t >= 0) for t in arrays]))


def good_step(finite: jax.Array, *thresholds: Any) -> jax.Array:
  """``finite``, and False if a run-time threshold is negative or NaN.

  What a strategy passes to :func:`check_finite`, :func:`keep_mask` and
  :func:`~optaxclip._stats.next_stats` as the step's finiteness; see
  :func:`threshold_valid`.
  """
  valid = threshold_valid(*thresholds)
  return finite if valid is None else jnp.logical_and(finite, valid)


def nan_unless_valid(x: jax.Array, *thresholds: Any) -> jax.Array:
  """``x``, or NaN where a run-time threshold is negative or NaN.

  For ``"propagate"`` in strategies whose result is not a
  :func:`clip_factor` (which does this itself).
  """
  valid = threshold_valid(*thresholds)
  return x if valid is None else jnp.where(valid, x, jnp.nan).astype(x.dtype)


def keep_mask(
  finite: jax.Array, policy: _validation.NonFinitePolicy, *, once: bool = True
):
  """Where a step's outputs are kept: None (all) under ``"propagate"``.

  With ``once`` (the default) the mask is passed through `compute_once`, for
  per-leaf loops whose kernels would otherwise copy its computation; a
  caller that passes it through `next_stats` (``also=``), which computes it
  once too, passes ``once=False``.
  """
  if policy == "propagate":
    return None
  return _xla.compute_once(finite)[0] if once else finite


# Values that many per-leaf kernels read (a factor, a keep mask, per-leaf
# factors), computed once before them; how is a matter for the platform.
compute_once = _xla.compute_once
compute_each_once = _xla.compute_each_once


# A step of ``fn(updates, state, ...)`` whose new state is the old one where
# ``keep`` holds (the skip wrappers), chosen without a conditional.
run_keeping_state = _xla.run_keeping_state


def clip_global(
  updates: Any,
  norm: jax.Array,
  threshold: Any,
  prev: _stats.ClipStats,
  *,
  policy: _validation.NonFinitePolicy,
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
  finite = good_step(jnp.isfinite(norm), threshold)
  check_finite(finite, policy, fn, name, norm, prev.step, threshold)
  keep = keep_mask(finite, policy, once=False)
  factor, clipped = clip_factor(norm, threshold, policy, keep)
  # The factor and mask that the leaves' kernels read come out of the
  # statistics' kernel, computed once (see `next_stats`): the factor as
  # the ``scale`` statistic when that is its dtype (one output; XLA's CPU
  # backend computes a division read by several outputs in a kernel of its
  # own), as an output of its own otherwise (float64).
  same = jnp.result_type(factor) == jnp.float32
  stats, keep, *extra = _stats.next_stats(
    prev,
    finite=finite,
    norm_before=norm,
    norm_after=_norm_after(norm, threshold, clipped, keep),
    threshold=threshold,
    scale=factor,
    clipped=jnp.logical_or(clipped, ~finite),
    also=(keep, *also) if same else (keep, factor, *also),
  )
  applied = stats.scale if same else extra.pop(0)
  out = jax.tree.map(lambda x: scale_leaf(x, applied, keep), updates)
  return (out, stats, tuple(extra)) if also else (out, stats)


def _norm_after(norm, threshold, clipped, keep) -> jax.Array:
  """``norm * factor`` without the factor: the threshold where clipped.

  (Reading the factor here too would make it a value with two readers,
  which XLA's CPU backend computes in a scalar kernel of its own.)
  """
  threshold = jnp.asarray(threshold, norm.dtype)
  after = jnp.where(clipped, threshold, norm)
  if keep is None:  # "propagate": NaN where norm * factor is NaN
    good = jnp.logical_and(jnp.isfinite(norm), threshold >= 0)
    return jnp.where(good, after, jnp.nan)
  return jnp.where(keep, after, 0)


def clip_groups(
  updates: Any,
  group_of_leaf: Sequence[int],
  thresholds: Sequence[Any],
  prev: _stats.ClipStats,
  *,
  ord: _validation.Ord,
  policy: _validation.NonFinitePolicy,
  fn: str,
  name: str,
  axis_name=None,
) -> tuple[Any, _stats.ClipStats]:
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
    return updates, _stats.next_stats(
      prev, finite=jnp.array(True), norm_before=0.0, norm_after=0.0
    )
  powers = _norms.leaf_powers(leaves, ord, axis_name=axis_name)
  members: list[list[int]] = [[] for _ in range(n_groups)]
  for i, g in enumerate(group_of_leaf):
    members[g].append(i)
  gpow = [_norms.combine([powers[i] for i in m], ord) for m in members]
  dt = jnp.result_type(*gpow)
  gpow = [jnp.asarray(p, dt) for p in gpow]
  thr = [jnp.asarray(t, dt) for t in thresholds]
  # Each leaf is scaled by its own group's scalar chain, not by a slice of a
  # vector: the kernels of equal-shaped leaves stay identical (XLA compiles
  # one for all) and the chain fuses into them. The statistics repeat the
  # same operations on the stacked vector.
  applied = [
    clip_factor(_norms.root(p, ord), t, policy)[0]
    for p, t in zip(gpow, thresholds)
  ]
  # A factor that reads several leaves' norms is computed once, not copied
  # into each member's kernels (see `compute_once`; not through `next_stats`,
  # which is for a few values: a reduction with an output per group would
  # not compile in reasonable time for thousands of groups).
  multi = [g for g, m in enumerate(members) if len(m) > 1]
  for g, f in zip(multi, compute_once(*[applied[g] for g in multi])):
    applied[g] = f
  gpow, thr = _norms.stack_scalars(gpow), _norms.stack_scalars(thr)
  factor, clipped = clip_factor(_norms.root(gpow, ord), thr, policy)
  total = _norms.combine(gpow, ord)
  norm_before = _norms.root(total, ord)
  finite = good_step(jnp.isfinite(total), *thresholds)
  check_finite(finite, policy, fn, name, norm_before, prev.step, thr)
  keep = keep_mask(finite, policy, once=False)
  after_pow = gpow * (factor**2 if ord == 2 else factor)
  norm_after = _norms.root(_norms.combine(after_pow, ord), ord)
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
  stats, keep = _stats.next_stats(
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
  threshold < 0 or NaN  a bad step, as NaN gradients under each policy
  at run time           (from a schedule or inject_hyperparams' state)
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
