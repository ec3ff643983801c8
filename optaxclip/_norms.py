# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Measuring: norms of updates, accumulated in float32.

The global norm, per-leaf and per-unit norms of a pytree, accumulated in
float32 (float64 for float64 leaves), and the one cross-device reduction
(a ``psum``, or ``pmax`` for the L-infinity norm, over ``axis_name``). How
the reductions are laid out for a compiler lives in ``_xla``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optaxclip import _validation
from optaxclip import _xla


def acc_dtype(dtype: Any) -> np.dtype:
  """Accumulation dtype of a leaf: float32, or float64 for 64-bit leaves."""
  real = np.dtype(jnp.finfo(dtype).dtype)
  return np.dtype(jnp.promote_types(real, jnp.float32))


def _cast(x: jax.Array, dtype: Any) -> jax.Array:
  """``x.astype(dtype)``, skipped (not traced) when it is a no-op."""
  return x if x.dtype == dtype else x.astype(dtype)


def _elementwise_power(x: jax.Array, ord: _validation.Ord) -> jax.Array:
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


def _op(ord: _validation.Ord) -> str:
  return "max" if ord == "inf" else "sum"


def _leaf_power(x: jax.Array, ord: _validation.Ord, axis=None, keepdims=False):
  """sum |x|^2 (ord 2), sum |x| (ord 1) or max |x| (ord inf), in acc dtype."""
  v = _elementwise_power(x, ord)
  if ord == "inf":
    return _xla.max_keeping_nan(v, axis, keepdims)
  return jnp.sum(v, axis=axis, keepdims=keepdims)


def root(power: jax.Array, ord: _validation.Ord) -> jax.Array:
  """Norm from a power; the square root has a finite gradient at 0."""
  if ord != 2:
    return power
  zero = power == 0
  return jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, power)))


def _cross_device(value: jax.Array, op: str, axis_name) -> jax.Array:
  """The one place where a norm is reduced across devices.

  ``psum`` of powers (``op="sum"``), ``pmax`` for the L-infinity norm
  (``op="max"``), over the mapped axis ``axis_name`` (None: no reduction).
  """
  if axis_name is None:
    return value
  if op == "max":
    return jax.lax.pmax(value, axis_name)
  return jax.lax.psum(value, axis_name)


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
  return _cross_device(total, op, axis_name)


def global_power(
  leaves: Sequence[jax.Array], ord: _validation.Ord, *, axis_name=None
) -> jax.Array:
  """Power (see :func:`_leaf_power`) of all leaves together, one scalar."""
  return global_reduce(
    leaves,
    lambda x: _elementwise_power(x, ord),
    _op(ord),
    axis_name=axis_name,
  )


def tree_norm(
  tree: Any, ord: _validation.Ord = 2, *, axis_name=None
) -> jax.Array:
  """Global norm of a pytree, accumulated in float32 (float64 for f64)."""
  return root(
    global_power(jax.tree.leaves(tree), ord, axis_name=axis_name), ord
  )


def leaf_powers(
  leaves: Sequence[jax.Array], ord: _validation.Ord, *, axis_name=None
) -> list[jax.Array]:
  """Power of each leaf, as a list of scalars (same order as ``leaves``)."""
  out = _xla.reduce_each(
    leaves, functools.partial(_elementwise_power, ord=ord), _op(ord)
  )
  return [_cross_device(p, _op(ord), axis_name) for p in out]


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


def unit_power(x: jax.Array, axis, ord: _validation.Ord, fn: str) -> jax.Array:
  """Per-unit power of a leaf, with kept dims so it broadcasts against x."""
  axes = default_unit_axes(x.ndim, fn) if axis is None else axis
  axes = tuple(a % x.ndim for a in axes) if x.ndim else ()
  return _leaf_power(x, ord, axis=axes, keepdims=True)


def stack_scalars(values: Sequence[Any], dtype: Any = None) -> jax.Array:
  """Scalars (one per leaf or group) as one vector, built once if many."""
  return _xla.stack_once(values, dtype)


def combine(
  powers: Sequence[jax.Array] | jax.Array, ord: _validation.Ord
) -> jax.Array:
  """Combines partial powers: a sum (ord 1, 2) or a max (ord inf)."""
  if isinstance(powers, (list, tuple)):
    if not powers:
      return jnp.zeros([], jnp.float32)
    powers = stack_scalars(powers)
  return jnp.max(powers, initial=0) if ord == "inf" else jnp.sum(powers)


def count_where(
  leaves: Sequence[jax.Array], predicate: Callable[[jax.Array], jax.Array]
) -> jax.Array:
  """Fraction of all elements for which ``predicate`` holds (float32)."""
  n = sum(int(np.prod(jnp.shape(x))) for x in leaves)
  if n == 0:
    return jnp.zeros([], jnp.float32)
  hits = global_reduce(leaves, lambda x: predicate(x).astype(jnp.float32))
  return hits / n


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


def tie(leaves: Sequence[Any], powers: Sequence[jax.Array]) -> list[Any]:
  """Each leaf unchanged, kept with the reduction of its own power."""
  return _xla.tie(leaves, powers)
