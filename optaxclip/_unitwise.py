# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Unit-wise adaptive gradient clipping (AGC)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from optaxclip import _norms
from optaxclip import _scaling
from optaxclip import _shapes
from optaxclip import _stats
from optaxclip import _validation


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  clipping = 0          zero updates
  clipping = inf        updates unchanged
  zero parameters       a unit's weight norm is floored at ``eps``
  zero gradients        unchanged; no division by zero
  NaN / Inf gradients   ``nonfinite`` policy, as for the global clippers:
                        ``"zero"`` (default) zeroes the step and counts it
  no ``params``         ``ValueError`` asking for them
  params of other shape ``ValueError`` naming the leaf and both shapes
  axis out of range     ``ValueError`` naming the leaf (never wraps)
  rank > 5 leaves       ``ValueError`` asking for ``axis=``
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def adaptive_grad_clip(
  clipping: _validation.ThresholdOrSchedule,
  *,
  eps: jax.typing.ArrayLike = 1e-3,
  axis: int | tuple[int, ...] | None = None,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "adaptive_grad_clip",
) -> optax.GradientTransformationExtraArgs:
  r"""Unit-wise adaptive gradient clipping (AGC), relative to the weights.

  For each unit :math:`i` (an output neuron or channel) of each leaf,

  .. math::

    G_i \leftarrow \begin{cases}
      \lambda \dfrac{\lVert W_i \rVert^\star}{\lVert G_i \rVert} G_i
        & \text{if } \dfrac{\lVert G_i \rVert}{\lVert W_i \rVert^\star}
          > \lambda \\
      G_i & \text{otherwise,}
    \end{cases}
    \qquad \lVert W_i \rVert^\star = \max(\lVert W_i \rVert, \epsilon).

  ``axis=None`` follows Optax's unit-wise convention: rank <= 1 leaves are
  one unit; rank 2 or 3 reduce over axis 0; rank 4 over axes 0-2; rank 5
  over axes 0-3, which makes the output units of Flax's ``(in, out)``
  kernels the units. A ``(out, in)`` layout (PyTorch-style) needs
  ``axis=1``. The paper recommends not clipping the final linear layer: wrap
  this with :func:`optax.masked` for that. Agrees with
  :func:`optax.adaptive_grad_clip` on finite inputs.

  Args:
    clipping: :math:`\lambda \ge 0`, the largest allowed ratio of gradient
      norm to weight norm per unit, or a schedule (the paper uses 0.01 at
      batch sizes of about 4096 and larger values at smaller batches).
    eps: :math:`\epsilon`, the floor of a unit's weight norm.
    axis: the axes each unit's norm reduces over (static), or None. Each
      axis must be valid for every leaf's rank (``-rank <= a < rank``, no
      repeats); it never wraps around.
    nonfinite: policy for non-finite gradients: ``"zero"`` (default),
      ``"propagate"`` or ``"error"``.
    axis_name: UNIT_AXIS_NAME
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` that needs ``params``.
    Its statistics' ``clipped`` is the fraction of units clipped, ``scale``
    the smallest unit factor, and ``threshold`` is NaN (it is per unit).

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> params = {"w": jnp.array([[3.0, 1.0], [4.0, 0.0]])}  # norms 5, 1
    >>> grads = {"w": jnp.array([[3.0, 0.1], [4.0, 0.0]])}   # norms 5, 0.1
    >>> tx = optaxclip.adaptive_grad_clip(0.2)   # at most 0.2 * weight norm
    >>> u, _ = tx.update(grads, tx.init(params), params)
    >>> u["w"]
    Array([[0.6, 0.1],
           [0.8, 0. ]], dtype=float32)

  References:
    Brock et al., `High-Performance Large-Scale Image Recognition Without
    Normalization <https://arxiv.org/abs/2102.06171>`_, 2021
  """
  fn = "adaptive_grad_clip"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_threshold(clipping, "clipping", fn)
  _validation.check_threshold(eps, "eps", fn, allow_schedule=False)
  axis = _validation.check_axis(axis, fn)
  _validation.check_nonfinite(nonfinite, fn)

  def apply(updates, params, prev):
    _validation.require_params(params, fn)
    leaves, treedef = jax.tree.flatten(updates)
    _validation.check_leaves(leaves, fn)
    p_leaves = _shapes.matching_leaves(fn, "params", leaves, treedef, params)
    _shapes.check_unit_axes(fn, axis, leaves, treedef)
    axes = _norms.layout(axis_name, partition_specs, fn, updates, params)
    lam = _validation.resolve(clipping, prev.step)
    g_pow, units = _norms.unit_powers(leaves, axis, 2, fn, axes)
    p_pow, _ = _norms.unit_powers(p_leaves, axis, 2, fn, axes)
    factors, clipped, total, after = [], [], [], []
    for gp, pp in zip(g_pow, p_pow):
      w = jnp.maximum(_norms.root(pp, 2), eps)
      f, c = _scaling.clip_factor(_norms.root(gp, 2), lam * w, nonfinite)
      factors.append(f)
      clipped.append(c)
      total.append(jnp.sum(gp))
      after.append(jnp.sum(gp * f**2))
    total = _norms.across(total, "sum", units)
    after = _norms.across(after, "sum", units)
    power = _norms.combine(total, 2)
    finite = _scaling.good_step(jnp.isfinite(power), lam)
    norm = _norms.root(power, 2)
    _scaling.check_finite(finite, nonfinite, fn, name, norm, prev.step, lam)
    keep = _scaling.keep_mask(finite, nonfinite)
    out = [_scaling.scale_leaf(g, f, keep) for g, f in zip(leaves, factors)]
    frac = _stats.fraction_true(clipped, units)
    scale = _stats.min_factor(factors, units)
    norm_after = _norms.root(_norms.combine(after, 2), 2)
    if keep is not None:
      norm_after = jnp.where(keep, norm_after, 0)
      scale = jnp.where(keep, scale, 0)
      frac = jnp.where(keep, frac, 1.0)
    return jax.tree.unflatten(treedef, out), _stats.next_stats(
      prev,
      finite=finite,
      norm_before=norm,
      norm_after=norm_after,
      scale=scale,
      clipped=frac,
    )

  return _stats.stateless_clipper(name, apply)
