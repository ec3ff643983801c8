# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Weight (parameter) clipping: constraints on ``params + updates``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optaxclip import _norms
from optaxclip import _scaling
from optaxclip import _shapes
from optaxclip import _stats
from optaxclip import _validation


def _check_bounds(lo, hi, fn):
  for v, arg in ((lo, "min_value"), (hi, "max_value")):
    if callable(v) or _validation._is_traced(v):
      continue
    a = np.asarray(v)
    if a.ndim or not jnp.issubdtype(a.dtype, jnp.number) or np.isnan(a):
      raise ValueError(
        f"optaxclip.{fn}: `{arg}` must be a real scalar, got {v!r}."
      )
  concrete = not any(callable(v) or _validation._is_traced(v) for v in (lo, hi))
  if concrete and float(lo) > float(hi):
    raise ValueError(
      f"optaxclip.{fn}: min_value={lo!r} is larger than max_value={hi!r}."
    )


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  min = max             every parameter is moved to that value
  min = -inf, max = inf updates unchanged
  NaN / Inf updates     ``nonfinite="zero"`` (default): zero updates, step
                        counted; ``"propagate"``: NaN flows on (Inf is
                        clipped into range); ``"error"``: raises
  complex leaves        ``TypeError``
  no ``params``         ``ValueError`` asking for them
  params of other shape ``ValueError`` naming the leaf and both shapes
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def clip_params(
  min_value: _validation.ThresholdOrSchedule,
  max_value: _validation.ThresholdOrSchedule,
  *,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "clip_params",
) -> optax.GradientTransformationExtraArgs:
  r"""Weight clipping: changes the update so the new weights stay in range.

  .. math::

    u \leftarrow \operatorname{clip}(w + u, a, b) - w

  so that :func:`optax.apply_updates` gives weights in :math:`[a, b]`. Chain
  it **last**, after the optimizer and learning rate. The WGAN critic's
  weight clipping (:math:`a = -0.01, b = 0.01`) is the classic use.

  Args:
    min_value: the lower bound :math:`a` (a number, traced value or
      schedule).
    max_value: the upper bound :math:`b \ge a`.
    nonfinite: ``"zero"`` (default), ``"propagate"`` or ``"error"``, for
      non-finite updates.
    axis_name: a mapped axis name, or a tuple of names, under
      :func:`jax.shard_map` across which the updates and parameters are
      split; norms and statistics are then reduced across it, each leaf
      over the axes it varies along (see :func:`optaxclip.clip_by_global_norm`).
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` that needs ``params``;
    ``clipped`` in its statistics is the fraction of weights that hit a
    bound, and its norms are NaN (not computed).

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> tx = optax.chain(optax.sgd(1.0), optaxclip.clip_params(-0.01, 0.01))
    >>> params = jnp.array([0.0, 0.005])
    >>> u, _ = tx.update(jnp.array([-1.0, 0.001]), tx.init(params), params)
    >>> optax.apply_updates(params, u)
    Array([0.01 , 0.004], dtype=float32)

  References:
    Arjovsky et al., `Wasserstein GAN <https://arxiv.org/abs/1701.07875>`_,
    2017
  """
  fn = "clip_params"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _check_bounds(min_value, max_value, fn)
  _validation.check_nonfinite(nonfinite, fn)

  def apply(updates, params, prev):
    _validation.require_params(params, fn)
    leaves, treedef = jax.tree.flatten(updates)
    _validation.check_leaves(leaves, fn, allow_complex=False)
    p_leaves = _shapes.matching_leaves(fn, "params", leaves, treedef, params)
    lo = _validation.resolve(min_value, prev.step)
    hi = _validation.resolve(max_value, prev.step)
    axes = _norms.layout(axis_name, partition_specs, fn, updates, params)
    finite = jnp.logical_not(_norms.any_nonfinite(leaves, axis_name=axes))
    _scaling.check_finite(finite, nonfinite, fn, name, None, prev.step)
    keep = _scaling.keep_mask(finite, nonfinite)
    out, new_w = [], []
    for u, p in zip(leaves, p_leaves):
      c = jnp.promote_types(u.dtype, jnp.float32)
      w = p.astype(c) + u.astype(c)
      new_w.append(w)
      y = (jnp.clip(w, lo, hi) - p.astype(c)).astype(u.dtype)
      out.append(y if keep is None else jnp.where(keep, y, 0).astype(u.dtype))
    frac = _norms.count_where(
      new_w, lambda w: (w < lo) | (w > hi), axis_name=axes
    )
    return jax.tree.unflatten(treedef, out), _stats.next_stats(
      prev,
      finite=finite,
      scale=jnp.nan,
      clipped=frac if keep is None else jnp.where(keep, frac, 1.0),
    )

  return _stats.stateless_clipper(name, apply)


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  max_norm = 0          every unit's new weights become zero
  max_norm = inf        updates unchanged
  zero weights          no division by zero; unchanged
  NaN / Inf updates     ``nonfinite`` policy (default ``"zero"``)
  no ``params``         ``ValueError`` asking for them
  params of other shape ``ValueError`` naming the leaf and both shapes
  axis out of range     ``ValueError`` naming the leaf (never wraps)
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def max_norm_constraint(
  max_norm: _validation.ThresholdOrSchedule,
  *,
  axis: int | tuple[int, ...] | None = None,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "max_norm_constraint",
) -> optax.GradientTransformationExtraArgs:
  r"""Max-norm weight constraint: rescales units whose new norm is too large.

  With :math:`w' = w + u`, each unit :math:`i` of each leaf is projected
  back onto the ball of radius :math:`c`,

  .. math::

    w'_i \leftarrow w'_i \min\Big(1, \frac{c}{\lVert w'_i \rVert}\Big),
    \qquad u \leftarrow w' - w .

  Units follow the same convention as :func:`adaptive_grad_clip` (``axis``
  = the axes a unit's norm reduces over; by default the output units of
  Flax kernels). Chain it last, after the optimizer.

  Args:
    max_norm: the largest allowed unit norm :math:`c \ge 0`, or a schedule
      (Srivastava et al. report values of 3 to 4 with dropout).
    axis: the axes each unit's norm reduces over (static), or None. Each
      axis must be valid for every leaf's rank (``-rank <= a < rank``, no
      repeats); it never wraps around.
    nonfinite: ``"zero"`` (default), ``"propagate"`` or ``"error"``.
    axis_name: UNIT_AXIS_NAME
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` that needs ``params``;
    ``clipped`` is the fraction of units rescaled.

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> tx = optaxclip.max_norm_constraint(1.0)
    >>> w = jnp.zeros((2, 2))
    >>> u, _ = tx.update(jnp.array([[3.0, 0.1], [4.0, 0.1]]), tx.init(w), w)
    >>> optax.apply_updates(w, u)
    Array([[0.6, 0.1],
           [0.8, 0.1]], dtype=float32)

  References:
    Srivastava et al., `Dropout: A Simple Way to Prevent Neural Networks
    from Overfitting <https://jmlr.org/papers/v15/srivastava14a.html>`_, 2014
  """
  fn = "max_norm_constraint"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_threshold(max_norm, "max_norm", fn)
  axis = _validation.check_axis(axis, fn)
  _validation.check_nonfinite(nonfinite, fn)

  def apply(updates, params, prev):
    _validation.require_params(params, fn)
    leaves, treedef = jax.tree.flatten(updates)
    _validation.check_leaves(leaves, fn)
    p_leaves = _shapes.matching_leaves(fn, "params", leaves, treedef, params)
    _shapes.check_unit_axes(fn, axis, leaves, treedef)
    axes = _norms.layout(axis_name, partition_specs, fn, updates, params)
    c = _validation.resolve(max_norm, prev.step)
    out, factors, clipped, powers = [], [], [], []
    dts = [jnp.promote_types(u.dtype, jnp.float32) for u in leaves]
    new_w = [
      p.astype(dt) + u.astype(dt) for u, p, dt in zip(leaves, p_leaves, dts)
    ]
    unit_pw, units = _norms.unit_powers(new_w, axis, 2, fn, axes)
    for u, p, w, pw in zip(leaves, p_leaves, new_w, unit_pw):
      f, cl = _scaling.clip_factor(_norms.root(pw, 2), c, nonfinite)
      out.append(
        (_scaling.scale_leaf(w, f) - p.astype(w.dtype)).astype(u.dtype)
      )
      factors.append(f)
      clipped.append(cl)
      powers.append(jnp.sum(pw))
    powers = _norms.across(powers, "sum", units)
    finite = jnp.isfinite(_norms.combine(powers, 2))
    finite = _scaling.good_step(finite, c)
    _scaling.check_finite(finite, nonfinite, fn, name, None, prev.step, c)
    keep = _scaling.keep_mask(finite, nonfinite)
    if keep is not None:
      out = [jnp.where(keep, y, jnp.zeros((), y.dtype)) for y in out]
    frac = _stats.fraction_true(clipped, units)
    scale = _stats.min_factor(factors, units)
    return jax.tree.unflatten(treedef, out), _stats.next_stats(
      prev,
      finite=finite,
      threshold=c,
      scale=scale if keep is None else jnp.where(keep, scale, 0),
      clipped=frac if keep is None else jnp.where(keep, frac, 1.0),
    )

  return _stats.stateless_clipper(name, apply)
