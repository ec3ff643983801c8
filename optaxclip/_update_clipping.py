# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Update-stage clipping: Clippy, relative to the weights."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optaxclip import _norms
from optaxclip import _scaling
from optaxclip import _shapes
from optaxclip import _stats
from optaxclip import _validation


class ClippyState(NamedTuple):
  """State of :func:`clippy`.

  Attributes:
    factors: the last step's factor :math:`s` of every leaf, float32 of
      shape ``[number of leaves]`` in ``jax.tree.leaves`` order (an array,
      not a pytree, so that :func:`optax.tree.map_params` does not take it
      for parameters); 0 on a zeroed step. Read it per leaf with
      ``jax.tree.unflatten(jax.tree.structure(params), list(factors))``.
    stats: ``{name: ClipStats}``.
  """

  factors: jax.Array
  stats: dict[str, _stats.ClipStats]


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  zero update elements  impose no bound
  w_i = 0, absolute = 0 any non-zero :math:`u_i` gives :math:`s = 0`: the
                        leaf is zeroed (``absolute > 0`` keeps :math:`s > 0`)
  relative = inf        only elements whose weight is 0 are bounded (by
                        ``absolute``)
  NaN / Inf updates     ``nonfinite="zero"`` (default): zero updates, step
                        counted, factors 0; ``"propagate"``: a leaf with a
                        NaN becomes NaN; ``"error"``: raises
  bf16 / f16 leaves     bounds and factors in float32, product cast back
  no ``params``         ``ValueError`` asking for them
  integer leaves        ``TypeError``
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def clippy(
  relative: _validation.ThresholdOrSchedule = 0.1,
  absolute: _validation.ThresholdOrSchedule = 1e-7,
  *,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "clippy",
) -> optax.GradientTransformationExtraArgs:
  r"""Clippy: shrinks each leaf's update so no weight moves too far.

  Place it **after** the optimizer (and learning rate), on the update
  :math:`u` that :func:`optax.apply_updates` adds to the weights :math:`w`.
  Each leaf is multiplied by the largest :math:`s \in [0, 1]` for which
  every element moves by at most a fraction of its weight plus a constant:

  .. math::

    s = \min\Big(1,\ \min_{i:\, u_i \ne 0}
        \frac{\lambda_{\text{rel}} |w_i| + \lambda_{\text{abs}}}{|u_i|}\Big),
    \qquad u \leftarrow s\, u .

  This is an :math:`L_\infty`-type test on the update, so a spike in a few
  coordinates shrinks the whole leaf, which L2 clipping of the gradient
  hardly notices. The direction within a leaf is kept.

  The paper couples it with Adagrad, e.g.
  ``optax.chain(optax.adagrad(lr), clippy())``; any optimizer works. The
  optimizer's state sees the unclipped gradient, which is the reference
  code's default (``clip_accumulator_update=False``). Its third bound, a
  multiple of the inverse square root of Adagrad's accumulator
  (``accumulator_relative_threshold``, 0 by default), is not offered here,
  since this transformation does not see the optimizer's state.

  Defaults are the reference code's ``variable_relative_threshold=0.1`` and
  ``absolute_threshold=1e-7``.

  Args:
    relative: :math:`\lambda_{\text{rel}} \ge 0`, the largest move as a
      fraction of :math:`|w_i|` (a number, traced value or schedule).
    absolute: :math:`\lambda_{\text{abs}} \ge 0`, the part of the bound that
      does not depend on the weight, so weights at zero can move.
    nonfinite: policy for non-finite updates: ``"zero"`` (default),
      ``"propagate"`` or ``"error"``.
    axis_name: a mapped axis name, or a tuple of names, under
      :func:`jax.shard_map` across which the updates and parameters are
      split; norms and statistics are then reduced across it, each leaf
      over the axes it varies along (see :func:`optaxclip.clip_by_global_norm`).
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` that needs ``params``,
    with a :class:`ClippyState`. Its statistics: ``scale`` = the smallest
    :math:`s` over the leaves (each leaf's :math:`s` is in
    :attr:`ClippyState.factors`), ``clipped`` = the fraction of leaves with
    :math:`s < 1`, the global L2 norms before and after (derived from the
    leaf norms and factors), ``threshold`` NaN (it is per element).

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> params = {"w": jnp.array([1.0, 10.0])}
    >>> tx = optax.chain(optax.sgd(1.0), optaxclip.clippy(0.1, 0.0))
    >>> grads = {"w": jnp.array([0.5, 0.5])}   # would move w[0] by 50 %
    >>> u, state = tx.update(grads, tx.init(params), params)
    >>> u["w"]   # s = 0.1 * 1 / 0.5 = 0.2
    Array([-0.1, -0.1], dtype=float32)
    >>> float(state[1].factors[0])   # one factor per leaf
    0.2

  References:
    Tang et al., `Improving Training Stability for Multitask Ranking Models
    in Recommender Systems <https://arxiv.org/abs/2302.09178>`_, 2023
  """
  fn = "clippy"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_threshold(relative, "relative", fn)
  _validation.check_threshold(absolute, "absolute", fn)
  _validation.check_nonfinite(nonfinite, fn)
  _validation.check_name(name)
  f32 = jnp.float32

  @_stats.unshared
  def init_fn(params):
    _validation.require_params(params, fn)
    return ClippyState(
      factors=jnp.ones([len(jax.tree.leaves(params))], f32),
      stats=_stats.named(name, _stats.init_stats()),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _validation.require_params(params, fn)
    leaves, treedef = jax.tree.flatten(updates)
    _validation.check_leaves(leaves, fn)
    p_leaves = _shapes.matching_leaves(fn, "params", leaves, treedef, params)
    if len(leaves) != state.factors.shape[0]:
      raise ValueError(
        f"optaxclip.{fn}: the updates have {len(leaves)} leaves but the "
        f"state was initialised for {state.factors.shape[0]}; init it with "
        "parameters of the same structure as the updates."
      )
    prev = _stats.unnamed(state.stats)
    if not leaves:
      stats = _stats.next_stats(
        prev, finite=jnp.array(True), norm_before=0.0, norm_after=0.0
      )
      return updates, ClippyState(state.factors, _stats.named(name, stats))
    rel = _validation.resolve(relative, prev.step)
    abs_ = _validation.resolve(absolute, prev.step)
    axes = _norms.layout(axis_name, partition_specs, fn, updates, params)
    powers = _norms.stack_scalars(_norms.leaf_powers(leaves, 2, axis_name=axes))
    total = _norms.combine(powers, 2)
    norm = _norms.root(total, 2)
    finite = _scaling.good_step(jnp.isfinite(total), rel, abs_)
    _scaling.check_finite(
      finite, nonfinite, fn, name, norm, prev.step, jnp.stack([rel, abs_])
    )
    keep = _scaling.keep_mask(finite, nonfinite)
    local = []
    for u, w in zip(leaves, p_leaves):
      dt = _norms.acc_dtype(u.dtype)
      mag = jnp.abs(u).astype(dt)
      w_mag = jnp.abs(w).astype(dt)
      # 0 * inf would be NaN: a zero weight allows no relative move at all.
      bound = jnp.where(w_mag == 0, 0, jnp.asarray(rel, dt) * w_mag)
      bound = bound + jnp.asarray(abs_, dt)
      zero = mag == 0
      ratio = jnp.where(zero, 1, bound / jnp.where(zero, 1, mag))
      # In the leaf's precision: a float32 factor would underflow to 0 for
      # float64 updates far larger than their weights (1e100 against 1).
      local.append(jnp.minimum(1, jnp.min(ratio, initial=1)))
    factors = [
      f if keep is not None else _scaling.nan_unless_valid(f, rel, abs_)
      for f in _norms.across(local, "min", axes)
    ]
    (applied,) = _scaling.compute_once(factors)
    out = [_scaling.scale_leaf(u, s, keep) for u, s in zip(leaves, applied)]
    s = _norms.stack_scalars(factors, f32)
    power = powers.astype(f32)
    norm_after = _norms.root(jnp.sum(power * s**2), 2)
    scale = jnp.min(s)
    frac = jnp.mean((s < 1).astype(f32))
    if keep is not None:
      s = jnp.where(keep, s, 0.0)
      norm_after = jnp.where(keep, norm_after, 0.0)
      scale = jnp.where(keep, scale, 0.0)
      frac = jnp.where(keep, frac, 1.0)
    stats = _stats.next_stats(
      prev,
      finite=finite,
      norm_before=norm,
      norm_after=norm_after,
      scale=scale,
      clipped=frac,
    )
    return jax.tree.unflatten(treedef, out), ClippyState(
      factors=s,
      stats=_stats.named(name, stats),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
