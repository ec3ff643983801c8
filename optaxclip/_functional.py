# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Clipping with a norm the caller already has (PyTorch's
``clip_grads_with_norm_``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optaxclip import _scaling
from optaxclip import _stats
from optaxclip import _validation


def clip_tree_with_norm(
  tree: Any,
  max_norm: jax.typing.ArrayLike,
  total_norm: jax.typing.ArrayLike,
  *,
  nonfinite: _validation.NonFinitePolicy = "zero",
) -> Any:
  r"""Scales a pytree by ``min(1, max_norm / total_norm)``, norm given.

  .. math::

    u \leftarrow u \cdot \min\Big(1, \frac{c}{n}\Big)

  with :math:`n` = ``total_norm`` supplied by the caller rather than
  measured: a norm you computed anyway (for logging, or across devices or
  micro-batches, or of a larger tree than the one you clip). This is the
  counterpart of PyTorch's ``torch.nn.utils.clip_grads_with_norm_``; with
  ``total_norm = optaxclip.global_norm(tree)`` it gives the same result as
  :func:`clip_tree_by_global_norm`. The factor is optaxclip's, not
  PyTorch's: no ``1e-6`` is added to the norm, and a norm equal to
  ``max_norm`` is left alone (see the migration guide).

  Args:
    tree: a pytree of floating-point arrays.
    max_norm: the threshold :math:`c \ge 0`.
    total_norm: the norm :math:`n` to clip by, a scalar.
    nonfinite: what a NaN or Inf ``total_norm`` does: ``"zero"`` (default)
      returns a zero tree; ``"propagate"`` multiplies by
      ``max_norm / total_norm`` (NaN, or 0 for Inf), as
      :func:`optax.clip_by_global_norm` does; ``"error"`` raises
      ``FloatingPointError`` (under ``jit``, a ``JaxRuntimeError`` carrying
      it).

  Returns:
    The scaled tree, in the leaves' dtypes (scaled at float32 precision).

  Raises:
    ValueError: a negative ``max_norm``, or a ``total_norm`` that is not a
      scalar.
    TypeError: integer leaves.

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0])}
    >>> norm = optaxclip.global_norm(grads)  # 5, e.g. also logged
    >>> out = optaxclip.clip_tree_with_norm(grads, 1.0, norm)
    >>> out["a"], out["b"]
    (Array([0.6, 0. ], dtype=float32), Array([0.8], dtype=float32))
    >>> optaxclip.clip_tree_with_norm(jnp.array([3.0, 4.0]), 1.0, 10.0)
    Array([0.3, 0.4], dtype=float32)

  Edge cases:
    ======================== ===========================================
    Case                     Result
    ======================== ===========================================
    total_norm <= max_norm   the tree unchanged (equality included)
    total_norm = 0           unchanged; nothing divides by zero
    max_norm = 0             zero tree (when total_norm > 0)
    NaN / Inf total_norm     ``"zero"``: zero tree; ``"propagate"``: NaN
                             tree (NaN norm) or finite elements zeroed
                             (Inf norm); ``"error"``:
                             ``FloatingPointError``
    bf16 / f16 leaves        scaled in float32, cast back to the leaf
                             dtype
    integer leaves           ``TypeError`` naming the dtype
    ======================== ===========================================
  """
  fn = "clip_tree_with_norm"
  _validation.check_threshold(max_norm, "max_norm", fn, allow_schedule=False)
  _validation.check_nonfinite(nonfinite, fn)
  if jnp.ndim(total_norm) != 0:
    raise ValueError(
      f"optaxclip.{fn}: `total_norm` must be a scalar, got shape "
      f"{jnp.shape(total_norm)}."
    )
  leaves = jax.tree.leaves(tree)
  _validation.check_leaves(leaves, fn)
  norm = jnp.asarray(total_norm)
  norm = norm.astype(jnp.promote_types(norm.dtype, jnp.float32))
  clipped, _ = _scaling.clip_global(
    tree, norm, max_norm, _stats.init_stats(), policy=nonfinite, fn=fn, name=fn
  )
  return clipped
