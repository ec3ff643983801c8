# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Value, global-norm, per-tensor-norm and block-RMS clipping."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optaxclip import _norms
from optaxclip import _scaling
from optaxclip import _stats
from optaxclip import _validation


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  max_delta = 0         zero updates
  max_delta = inf       updates unchanged
  zero gradients        unchanged
  NaN / Inf elements    ``nonfinite="zero"`` (default): zero updates, step
                        counted in ``nonfinite_count``; ``"propagate"``:
                        NaN stays NaN, Inf becomes the bound;
                        ``"error"``: ``FloatingPointError``
  complex leaves        ``TypeError``: the order of complex numbers is
                        undefined; use a norm-based strategy
  integer leaves        ``TypeError`` naming the dtype
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def clip_by_value(
  max_delta: _validation.ThresholdOrSchedule,
  *,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "clip_by_value",
) -> optax.GradientTransformationExtraArgs:
  r"""Clips every element of the updates to ``[-max_delta, max_delta]``.

  .. math::

    u_i \leftarrow \min(\max(u_i, -\delta), \delta)

  This is TensorFlow's ``clipvalue``, PyTorch's ``clip_grad_value_`` and
  :func:`optax.clip`. It changes the direction of the update; the
  norm-based strategies do not.

  Args:
    max_delta: the bound :math:`\delta \ge 0`, or a schedule of the step.
    nonfinite: what a NaN or Inf element does: ``"zero"`` (default) zeroes
      this step's updates and counts it; ``"propagate"`` keeps NaN and clips
      Inf to :math:`\pm\delta` (PyTorch's behaviour); ``"error"`` raises.
    axis_name: a mapped axis name, or a tuple of names, under
      :func:`jax.shard_map`. The clipping is element-wise and needs no
      cross-device reduction; only the non-finite check (so that every
      device zeroes the same step) and the ``clipped`` fraction are
      reduced across it.
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`. Its statistics have
    ``clipped`` = the fraction of elements clipped, ``threshold`` = the
    bound, and NaN norms (they are not computed).

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> tx = optaxclip.clip_by_value(1.0)
    >>> u, state = tx.update(jnp.array([-3.0, 0.5, 2.0]), tx.init(None))
    >>> u
    Array([-1. ,  0.5,  1. ], dtype=float32)
    >>> round(float(optaxclip.stats(state)["clip_by_value"].clipped), 3)
    0.667

  References:
    Mikolov, `Statistical Language Models Based on Neural Networks
    <https://www.fit.vut.cz/study/phd-thesis/283/.en>`_, 2012
  """
  fn = "clip_by_value"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_threshold(max_delta, "max_delta", fn)
  _validation.check_nonfinite(nonfinite, fn)

  def apply(updates, params, prev):
    del params
    leaves, treedef = jax.tree.flatten(updates)
    _validation.check_leaves(leaves, fn, allow_complex=False)
    delta = _validation.resolve(max_delta, prev.step)
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    finite = jnp.logical_not(_norms.any_nonfinite(leaves, axis_name=axes))
    finite = _scaling.good_step(finite, delta)
    _scaling.check_finite(finite, nonfinite, fn, name, None, prev.step, delta)
    keep = _scaling.keep_mask(finite, nonfinite)
    out = []
    for x in leaves:
      d = jnp.asarray(delta).astype(x.dtype)
      y = jnp.clip(x, -d, d)
      if keep is None:
        out.append(_scaling.nan_unless_valid(y, delta))
      else:
        out.append(jnp.where(keep, y, jnp.zeros((), y.dtype)))
    frac = _norms.count_where(
      leaves,
      lambda x: jnp.abs(x) > jnp.asarray(delta, x.dtype),
      axis_name=axes,
    )
    return jax.tree.unflatten(treedef, out), _stats.next_stats(
      prev,
      finite=finite,
      threshold=delta,
      scale=jnp.nan,
      clipped=frac if keep is None else jnp.where(keep, frac, 1.0),
    )

  return _stats.stateless_clipper(name, apply)


@_scaling.edge_cases(_scaling.NORM_EDGE_CASES)
@_norms.documents_partition_specs
def clip_by_global_norm(
  max_norm: _validation.ThresholdOrSchedule,
  *,
  ord: _validation.Ord | None = None,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "clip_by_global_norm",
) -> optax.GradientTransformationExtraArgs:
  r"""Rescales the whole pytree so that its global norm is at most ``max_norm``.

  .. math::

    n = \Big\lVert \big(\lVert u^{(1)}\rVert, \dots,
        \lVert u^{(L)}\rVert\big) \Big\rVert_p, \qquad
    u \leftarrow u \cdot \min\Big(1, \frac{c}{n}\Big)

  The direction of the update is preserved. The norm is accumulated in
  float32 (float64 for float64 leaves) whatever the leaves' dtype, computed
  once, and kept in the statistics with the factor and the clip decision,
  so logging the pre-clip norm costs nothing (Optax's own version keeps no
  state and, for float16, overflows above elements of about 256).

  Args:
    max_norm: the threshold :math:`c \ge 0`, or a schedule of the step
      (e.g. a warm-up); traced values from :func:`optax.inject_hyperparams`
      work too.
    ord: the norm: ``None`` or 2 for L2 (default), 1, or ``"inf"``. It is
      structural: ``None`` keeps :func:`optax.inject_hyperparams` from
      turning it into an array.
    nonfinite: policy for a non-finite norm: ``"zero"`` (default),
      ``"propagate"`` or ``"error"``; see the table below.
    axis_name: a mapped axis name, or a tuple of names (under
      :func:`jax.shard_map`), across which the gradients are laid out. Each
      leaf's partial norm is reduced only over the axes it varies along,
      read from its type (``jax.typeof(x).manual_axis_type.varying``): a
      split leaf is summed across devices, a replicated one (e.g. a bias
      with spec ``P()``, or a data-parallel gradient already summed) is
      counted once; one ``psum`` per distinct set of axes. This needs
      ``shard_map``'s default ``check_vma=True``: with ``check_vma=False``
      the types are not tracked, and the layout must come from
      ``partition_specs`` (without it, ``ValueError``). A leaf
      ``unreduced`` along the axes (partial sums) raises too: reduce it
      first. An axis that is not a ``shard_map``
      axis (``jax.vmap``'s ``axis_name``) counts every leaf as split. Not
      needed under ``jit`` with sharded arrays, where XLA does it.
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> tx = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.sgd(1.0))
    >>> params = {"a": jnp.zeros(2), "b": jnp.zeros(())}
    >>> grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array(4.0)}
    >>> updates, state = tx.update(grads, tx.init(params))
    >>> updates["a"], updates["b"]
    (Array([-0.6, -0. ], dtype=float32), Array(-0.8, dtype=float32))
    >>> float(optaxclip.stats(state)["clip_by_global_norm"].norm_before)
    5.0

  References:
    Pascanu et al., `On the difficulty of training recurrent neural networks
    <https://arxiv.org/abs/1211.5063>`_, 2013
  """
  fn = "clip_by_global_norm"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_threshold(max_norm, "max_norm", fn)
  ord = _validation.check_ord(ord, fn)
  _validation.check_nonfinite(nonfinite, fn)

  def apply(updates, params, prev):
    del params
    leaves = jax.tree.leaves(updates)
    _validation.check_leaves(leaves, fn)
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    norm = _norms.root(_norms.global_power(leaves, ord, axis_name=axes), ord)
    threshold = _validation.resolve(max_norm, prev.step)
    return _scaling.clip_global(
      updates, norm, threshold, prev, policy=nonfinite, fn=fn, name=name
    )

  return _stats.stateless_clipper(name, apply)


@_scaling.edge_cases(_scaling.NORM_EDGE_CASES)
@_norms.documents_partition_specs
def clip_by_tensor_norm(
  max_norm: _validation.ThresholdOrSchedule,
  *,
  ord: _validation.Ord | None = None,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "clip_by_tensor_norm",
) -> optax.GradientTransformationExtraArgs:
  r"""Clips each leaf by its own norm (Keras ``clipnorm``).

  .. math::

    u^{(l)} \leftarrow u^{(l)} \cdot
      \min\Big(1, \frac{c}{\lVert u^{(l)} \rVert_p}\Big)
    \quad \text{for every leaf } l

  Small leaves keep their size however large the others are, which global
  clipping does not give; the update's direction changes across leaves.
  The statistics report the global norm before and after (derived from the
  leaf norms), the smallest leaf factor as ``scale`` and the fraction of
  leaves clipped as ``clipped``.

  Args:
    max_norm: the per-leaf threshold :math:`c \ge 0`, or a schedule.
    ord: the norm: ``None`` or 2 for L2 (default), 1, or ``"inf"``. It is
      structural: ``None`` keeps :func:`optax.inject_hyperparams` from
      turning it into an array.
    nonfinite: policy for a non-finite norm (any leaf): ``"zero"``
      (default), ``"propagate"`` or ``"error"``.
    axis_name: mapped axis to reduce the leaf norms over (``shard_map``).
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> tx = optaxclip.clip_by_tensor_norm(1.0)
    >>> grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.1, 0.0])}
    >>> u, state = tx.update(grads, tx.init(grads))
    >>> u["a"], u["b"]
    (Array([0.6, 0.8], dtype=float32), Array([0.1, 0. ], dtype=float32))
    >>> float(optaxclip.stats(state)["clip_by_tensor_norm"].clipped)
    0.5
  """
  fn = "clip_by_tensor_norm"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_threshold(max_norm, "max_norm", fn)
  ord = _validation.check_ord(ord, fn)
  _validation.check_nonfinite(nonfinite, fn)

  def apply(updates, params, prev):
    del params
    leaves = jax.tree.leaves(updates)
    _validation.check_leaves(leaves, fn)
    threshold = _validation.resolve(max_norm, prev.step)
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    return _scaling.clip_groups(
      updates,
      list(range(len(leaves))),
      [threshold] * len(leaves),
      prev,
      ord=ord,
      policy=nonfinite,
      fn=fn,
      name=name,
      axis_name=axes,
    )

  return _stats.stateless_clipper(name, apply)


@_scaling.edge_cases(_scaling.NORM_EDGE_CASES)
@_norms.documents_partition_specs
def clip_by_block_rms(
  threshold: _validation.ThresholdOrSchedule,
  *,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "clip_by_block_rms",
) -> optax.GradientTransformationExtraArgs:
  r"""Caps the root-mean-square of each leaf (Adafactor's update clipping).

  .. math::

    \operatorname{rms}(u^{(l)}) = \sqrt{\tfrac{1}{n_l}\textstyle\sum_i
      |u^{(l)}_i|^2}, \qquad
    u^{(l)} \leftarrow \frac{u^{(l)}}
      {\max\big(1, \operatorname{rms}(u^{(l)}) / d\big)}

  Equivalently, each leaf's L2 norm is clipped to :math:`d\sqrt{n_l}`, which
  is how it is computed (one norm per leaf, shared with
  :func:`clip_by_tensor_norm`). Matches :func:`optax.clip_by_block_rms`.
  Adafactor applies it to the *update* with :math:`d = 1`: chain it after
  the optimizer for that.

  Args:
    threshold: the RMS bound :math:`d \ge 0`, or a schedule.
    nonfinite: policy for a non-finite norm: ``"zero"`` (default),
      ``"propagate"`` or ``"error"``.
    axis_name: a mapped axis name, or a tuple of names, under
      :func:`jax.shard_map` across which the gradients are split; norms and
      statistics are then reduced across it, each leaf over the axes it
      varies along (see :func:`optaxclip.clip_by_global_norm`).
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose statistics'
    norms are global L2 norms and ``threshold`` is NaN (it differs per leaf).

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> tx = optaxclip.clip_by_block_rms(1.0)
    >>> u, _ = tx.update(jnp.array([2.0, 2.0, 2.0, 2.0]), tx.init(None))
    >>> u
    Array([1., 1., 1., 1.], dtype=float32)

  References:
    Shazeer & Stern, `Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost <https://arxiv.org/abs/1804.04235>`_, 2018
  """
  fn = "clip_by_block_rms"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_threshold(threshold, "threshold", fn)
  _validation.check_nonfinite(nonfinite, fn)

  def apply(updates, params, prev):
    del params
    leaves = jax.tree.leaves(updates)
    _validation.check_leaves(leaves, fn)
    d = _validation.resolve(threshold, prev.step)
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    # Global sizes: a leaf split across devices has n_l of the whole.
    sizes = [float(n) for n in _norms.leaf_sizes(leaves, axes)]
    updates, new = _scaling.clip_groups(
      updates,
      list(range(len(leaves))),
      [d * np.sqrt(n) for n in sizes],
      prev,
      ord=2,
      policy=nonfinite,
      fn=fn,
      name=name,
      axis_name=axes,
    )
    return updates, new._replace(threshold=jnp.asarray(d, jnp.float32))

  return _stats.stateless_clipper(name, apply)


@_norms.documents_partition_specs
def global_norm(
  tree: Any,
  ord: _validation.Ord = 2,
  *,
  axis_name: Any = None,
  partition_specs: Any = None,
):
  r"""Global norm of a pytree, accumulated in float32 (float64 for f64).

  The same measurement every optaxclip clipper uses: low-precision leaves
  are upcast before squaring, so float16 gradients with elements near 6e4
  give a finite, correct norm, and complex leaves contribute :math:`|z|^2`.

  Args:
    tree: a pytree of floating-point arrays.
    ord: 2 (default), 1 or ``"inf"``.
    axis_name: optional mapped axis to reduce across (``shard_map``).
    partition_specs: PARTITION_SPECS

  Returns:
    A scalar array (float32, or float64 if a leaf is float64).

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> optaxclip.global_norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])})
    Array(5., dtype=float32)
    >>> optaxclip.global_norm(jnp.full(4, 6e4, jnp.float16))
    Array(120000., dtype=float32)
  """
  fn = "global_norm"
  ord = _validation.check_ord(ord, fn)
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  leaves = jax.tree.leaves(tree)
  _validation.check_leaves(leaves, fn)
  axes = _norms.layout(axis_name, partition_specs, fn, tree)
  return _norms.root(_norms.global_power(leaves, ord, axis_name=axes), ord)


@_norms.documents_partition_specs
def clip_tree_by_global_norm(
  tree: Any,
  max_norm: jax.typing.ArrayLike,
  *,
  ord: _validation.Ord = 2,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
) -> tuple[Any, jax.Array]:
  r"""Functional global-norm clipping: returns ``(clipped_tree, norm)``.

  The counterpart of PyTorch's ``clip_grad_norm_`` and TensorFlow's
  ``tf.clip_by_global_norm`` for custom loops, with the same numerics as
  :func:`clip_by_global_norm`. The returned norm is the one before clipping.

  Args:
    tree: a pytree of floating-point arrays.
    max_norm: the threshold (>= 0).
    ord: 2 (default), 1 or ``"inf"``.
    nonfinite: ``"zero"`` (default: a non-finite norm gives a zero tree),
      ``"propagate"`` or ``"error"``.
    axis_name: optional mapped axis to reduce across (``shard_map``).
    partition_specs: PARTITION_SPECS

  Returns:
    ``(clipped_tree, norm_before)``.

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> clipped, norm = optaxclip.clip_tree_by_global_norm(
    ...     jnp.array([3.0, 4.0]), 1.0)
    >>> clipped, norm
    (Array([0.6, 0.8], dtype=float32), Array(5., dtype=float32))
  """
  fn = "clip_tree_by_global_norm"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_threshold(max_norm, "max_norm", fn, allow_schedule=False)
  ord = _validation.check_ord(ord, fn)
  _validation.check_nonfinite(nonfinite, fn)
  leaves = jax.tree.leaves(tree)
  _validation.check_leaves(leaves, fn)
  axes = _norms.layout(axis_name, partition_specs, fn, tree)
  norm = _norms.root(_norms.global_power(leaves, ord, axis_name=axes), ord)
  clipped, _ = _scaling.clip_global(
    tree, norm, max_norm, _stats.init_stats(), policy=nonfinite, fn=fn, name=fn
  )
  return clipped, norm
