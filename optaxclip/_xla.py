# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Compiler workarounds, each one function, chosen per platform.

Every function here computes a plain, documented value; only *how* the
program computes it depends on the platform, and the platform is chosen at
lowering time with :func:`jax.lax.platform_dependent` (which traces every
form and lowers the one for the target; lowered for one platform it is a
``stablehlo.case`` on a constant index, which XLA folds).

The CPU forms work around measured behaviour of XLA's CPU backend (jax
0.10.2, the 2-core development machine, 20M float32 parameters, Adam;
numbers from ``benchmarks/README.md``, "Findings", and the git log). On
every other platform (CUDA, ROCm, TPU) the plain form is used: plain
per-leaf reductions, no packing, no bucket concatenation, and values that
many kernels read go through :func:`jax.lax.optimization_barrier` (which
XLA's GPU compiler expands only after fusion), never through a
conditional. ``tests/test_lowering.py`` checks that CUDA and TPU programs
carry no conditional decided at run time; ``tests/test_xla_cpu.py`` pins
the CPU forms' effect on the CPU-compiled program.

Strategy modules do not call this module: they use the helpers of
``_norms``, ``_scaling`` and ``_stats``, which do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

# How many leaves' reductions the CPU forms plan together (`_plan`,
# `_leaf_plan`): every reduction kernel costs compile time and a dispatch,
# copying a large leaf costs memory traffic.
#
# * leaves of one shape, dtype and sharding, each of at most
#   `_GROUP_ELEMENTS` elements, are summed elementwise, `_GROUP_LEAVES` at a
#   time, and each sum is reduced once: one kernel reads 16 leaves in place;
# * the other leaves of at most `_SMALL_LEAF` elements without explicit
#   sharding are concatenated in buckets of at most `_BUCKET_LEAVES` leaves
#   and `_BUCKET_ELEMENTS` elements and reduced once per bucket. XLA's CPU
#   backend hands reductions of 4096 or more float32 elements to YNNPACK: a
#   larger leaf reduces fast on its own, whereas its copy is a temporary
#   buffer paged in afresh every step (3000 leaves of 6656 elements with
#   2^16 as the limit: 80 MB and 20,600 page faults per step, twice Adam's
#   CPU time; finding 6);
# * per-leaf norms: leaves of one shape, dtype and sharding between
#   `_SMALL_LEAF` and `_TOGETHER_ELEMENTS` elements are reduced 16 at a
#   time by one variadic reduction (monitor_norms + Adam at 3000 leaves of
#   6656 elements compiled in 1.92x Adam's CPU time instead of 2.50x, same
#   step time; finding 7). Larger leaves stay with YNNPACK (XLA's own loop
#   took 1.15x Adam's step at 300 leaves of 66560 elements, against 0.98x).
_SMALL_LEAF = 1 << 12
_TOGETHER_ELEMENTS = 1 << 14
_BUCKET_ELEMENTS = 1 << 20
_BUCKET_LEAVES = 256
_GROUP_LEAVES = 16
_GROUP_ELEMENTS = 1 << 18
# More per-leaf scalars than this are stacked into a vector once, see
# `stack_once`.
_MANY_SCALARS = 32


def _per_platform(cpu: Callable, default: Callable, *args: Any) -> Any:
  """``cpu(*args)`` on the CPU, ``default(*args)`` everywhere else."""
  return jax.lax.platform_dependent(*args, cpu=cpu, default=default)


def _barrier(leaves: list[jax.Array]) -> list[jax.Array]:
  return list(jax.lax.optimization_barrier(list(leaves)))


# ---------------------------------------------------------------------------
# Values computed once
# ---------------------------------------------------------------------------


def compute_once(*values: Any) -> tuple[Any, ...]:
  """``values`` unchanged, computed once, before the kernels that read them.

  A factor derived from many leaves' norms (a global factor, or one per
  leaf) is a chain of small scalar operations. Left alone, XLA copies that
  chain into every kernel that scales a leaf, so compile time grows with
  leaves x chain length, quadratically when the chain reads every leaf's
  norm.

  CPU: through a conditional whose branches both return the values. XLA's
  CPU backend drops optimisation barriers before fusion, but fuses nothing
  across a conditional: ``adagc`` + Adam at 300 leaves compiled in 117 s
  without it, 13 s with it (Adam alone 1.3 s; finding 1). Elsewhere:
  :func:`jax.lax.optimization_barrier` (never nothing: with nothing in its
  place ``adagc`` + Adam at 150 leaves compiled in 6.1 s instead of 2.4 s
  on the CPU).

  Args:
    *values: pytrees of small arrays; ``None`` passes through.

  Returns:
    The values, as a tuple in the same order.
  """
  leaves, treedef = jax.tree.flatten(values)
  if not leaves:
    return values
  out = _per_platform(
    lambda ls: _through_cond(ls, lambda v: v), _barrier, leaves
  )
  return jax.tree.unflatten(treedef, out)


def compute_each_once(vector: jax.Array) -> tuple[jax.Array, ...]:
  """The elements of a small vector as scalars, computed once.

  :func:`compute_once` for a vector of per-leaf (or per-group) factors: its
  elements reach the kernels as separate scalar operands, so the kernel
  that scales leaf ``i`` does not slice element ``i`` itself. XLA compiles
  one kernel for all fusions with the same body, and a slice makes every
  body unique: ``adagc`` + Adam at 300 leaves compiled in 8.8 s with a
  slice in every kernel, 5.9 s with this (Adam alone 1.5 s; finding 4).

  CPU: the vector is a conditional's operand and is unstacked inside it
  (unstacked before, each slice was a kernel into which XLA copied the
  vector's computation). Elsewhere: unstacked, then an optimisation
  barrier.

  Args:
    vector: a 1-D array.

  Returns:
    Its elements, in order.
  """
  if not vector.shape[0]:
    return ()

  def cpu(v):
    return _through_cond([v], lambda x: list(jnp.unstack(x[0])))

  def default(v):
    return _barrier(list(jnp.unstack(v)))

  return tuple(_per_platform(cpu, default, vector))


def _through_cond(leaves: list[jax.Array], inside: Callable) -> Any:
  """``inside(leaves)``, computed inside a conditional (CPU only).

  The leaves are the conditional's operands, so XLA computes each once;
  ``inside`` runs in the branches, whose outputs the readers read.
  """
  # True unless the probe is NaN (either branch returns the values); a
  # float, so that XLA cannot fold ``probe == probe`` and drop the cond.
  probe = jnp.ravel(leaves[0])[:1].astype(jnp.float32)
  pred = jnp.all(probe == probe)
  return jax.lax.cond(
    pred,
    inside,
    lambda v: inside([jnp.where(True, x, x) for x in v]),
    leaves,
  )


def stack_once(values: Sequence[Any], dtype: Any = None) -> jax.Array:
  """Scalars (one per leaf or group) as one vector, built once if many.

  XLA fuses the stacking of scalars into every kernel that reads the
  vector, so a statistic computed from thousands of per-leaf norms becomes
  a kernel with thousands of operands: ``monitor_norms`` + Adam at 3,000
  leaves compiled in 39.6 s, 27.6 s with the vector built once (Adam alone
  19.0-19.6 s; CPU, finding 8). Beyond `_MANY_SCALARS` values the vector
  goes through :func:`compute_once` (on every platform, in its form).

  Args:
    values: scalars.
    dtype: the vector's dtype (default: the values' result type).

  Returns:
    A 1-D array of ``len(values)`` elements.
  """
  dt = jnp.result_type(*values) if dtype is None else dtype
  vector = jnp.stack([jnp.asarray(v, dt) for v in values])
  return compute_once(vector)[0] if len(values) > _MANY_SCALARS else vector


def compute_together(*values: Any) -> tuple[Any, ...]:
  """``values`` unchanged, for values that are written out (statistics).

  CPU: computed in one kernel per shape, as the outputs of one variadic
  reduction (see `_pack`). XLA's CPU backend compiles each scalar kernel in
  about 7-10 ms, so the seven statistics, each written by a kernel of its
  own, cost 1.32x Adam's whole compile at 10 leaves; packed,
  ``clip_by_global_norm`` + Adam compiled in 1.43-1.48x Adam's time instead
  of 1.76-1.84x (finding 5). Values packed with statistics that the leaves'
  kernels read (a factor, a keep mask) are computed once as well.
  Elsewhere: an optimisation barrier (no packing), so that those values
  are computed once there too.

  Args:
    *values: pytrees of small arrays; ``None`` passes through.

  Returns:
    The values, as a tuple in the same order.
  """
  leaves, treedef = jax.tree.flatten(values)
  if not leaves:
    return values
  return jax.tree.unflatten(treedef, _per_platform(_pack, _barrier, leaves))


def _identity(dtype: Any) -> jax.Array:
  """The identity of :func:`_pack`'s reduction for ``dtype``."""
  zero = jnp.zeros([], dtype)  # False for booleans
  return -zero if jnp.issubdtype(dtype, jnp.inexact) else zero


def _pair(a: Sequence[jax.Array], b: Sequence[jax.Array]) -> list[jax.Array]:
  return [
    jnp.logical_or(x, y) if x.dtype == jnp.bool_ else x + y
    for x, y in zip(a, b)
  ]


@jax.custom_jvp
def _pack(leaves: list[jax.Array]) -> list[jax.Array]:
  """The arrays, unchanged, as the outputs of variadic reductions (CPU).

  Each value is paired with its identity (``x + -0 == x`` exactly,
  ``x or False == x``) on a new axis of length two, and one reduction over
  that axis returns all values of a shape (a reduction's operands share
  one; statistics are all scalars). XLA fuses the computations of the
  values into that one kernel, and fuses nothing past it: a multi-output
  fusion is not copied into its readers. Only results that are used stay
  results, so this is for values that are written out (statistics), not a
  replacement for :func:`compute_once`.
  """
  out: list[Any] = [None] * len(leaves)

  # Operands share one shape, and XLA allows one floating-point precision
  # per reduction: one group per (shape, float dtype); integers and
  # booleans join a group of their shape.
  def inexact(x):
    return jnp.issubdtype(x.dtype, jnp.inexact)

  first_float: dict[tuple[int, ...], np.dtype] = {}
  for x in leaves:
    if inexact(x):
      first_float.setdefault(x.shape, np.dtype(x.dtype))
  groups: dict[tuple[Any, Any], list[int]] = {}
  for i, x in enumerate(leaves):
    dtype = np.dtype(x.dtype) if inexact(x) else first_float.get(x.shape)
    groups.setdefault((x.shape, dtype), []).append(i)
  for (shape, _), idx in groups.items():
    values = [leaves[i] for i in idx]
    inits = [_identity(x.dtype) for x in values]
    operands = [
      jnp.stack([x, jnp.broadcast_to(z, shape)]) for x, z in zip(values, inits)
    ]
    for i, y in zip(idx, jax.lax.reduce(operands, inits, _pair, (0,))):
      out[i] = y
  return out


@_pack.defjvp
def _pack_jvp(primals, tangents):
  (leaves,), (dots,) = primals, tangents
  return _pack(leaves), dots


# ---------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------


def max_keeping_nan(v: jax.Array, axis=None, keepdims=False) -> jax.Array:
  """``jnp.max(v, axis, initial=0)`` of non-negative ``v``, NaN kept.

  CPU: XLA's CPU backend hands float32 max-reductions of 4096 or more
  elements to YNNPACK, which skips NaN (jax 0.10.2): a NaN gradient would
  then give a finite L-infinity norm. Non-negative floats are ordered like
  their bit patterns read as integers, with NaN (sign bit cleared) above
  inf, so the maximum is taken over those integers. Elsewhere: XLA's max,
  which propagates NaN.
  """
  if not jnp.issubdtype(v.dtype, jnp.floating):
    return jnp.max(v, axis=axis, keepdims=keepdims, initial=0)
  return _per_platform(
    lambda x: _max_bits(x, axis, keepdims),
    lambda x: jnp.max(x, axis=axis, keepdims=keepdims, initial=0),
    v,
  )


def _max_bits(v: jax.Array, axis=None, keepdims=False) -> jax.Array:
  if not jnp.issubdtype(v.dtype, jnp.floating):
    return jnp.max(v, axis=axis, keepdims=keepdims, initial=0)
  top = jnp.max(_ordered_bits(v), axis=axis, keepdims=keepdims, initial=0)
  return jax.lax.bitcast_convert_type(top, v.dtype)


def _ordered_bits(v: jax.Array) -> jax.Array:
  """``max(v, 0)`` as integers ordered like the floats, NaN on top."""
  ity = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[v.dtype.itemsize]
  bits = jax.lax.bitcast_convert_type(jax.lax.max(v, jnp.zeros_like(v)), ity)
  return jax.lax.bitwise_and(bits, jnp.array(np.iinfo(ity).max, ity))


def _plain_reduce(v: jax.Array, op: str) -> jax.Array:
  if op == "max":
    return jnp.max(v, initial=0)
  return jnp.sum(v)


def _cpu_reduce(v: jax.Array, op: str) -> jax.Array:
  return _max_bits(v) if op == "max" else jnp.sum(v)


def _join(op: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
  return jax.lax.max if op == "max" else jax.lax.add


def _combine(parts: Sequence[jax.Array], op: str) -> jax.Array:
  vector = stack_once(parts)
  return jnp.max(vector, initial=0) if op == "max" else jnp.sum(vector)


def reduce_all(
  leaves: Sequence[jax.Array],
  elementwise: Callable[[jax.Array], jax.Array],
  op: str = "sum",
) -> jax.Array:
  """``elementwise(leaf)`` reduced over all leaves to one scalar.

  CPU: leaves of one shape are first combined elementwise (16 at a time),
  the other small leaves concatenated in buckets, and only large leaves of
  unique shape reduced one by one (see `_GROUP_LEAVES`), so the number of
  reduction kernels stays small however many leaves there are; a group's
  elementwise sum is kept out of YNNPACK (see `_fence`). Elsewhere: one
  plain reduction per leaf.

  Args:
    leaves: the leaves (at least one).
    elementwise: maps a leaf to the values to reduce (same shape); for
      ``"max"`` they must be non-negative.
    op: ``"sum"`` or ``"max"`` (NaN kept, see :func:`max_keeping_nan`).
  """

  def default(ls):
    return _combine([_plain_reduce(elementwise(x), op) for x in ls], op)

  def cpu(ls):
    groups, buckets, singles = _plan(ls)
    join = _join(op)
    parts = [_cpu_reduce(elementwise(ls[i]), op) for i in singles]
    for g in groups:
      acc = elementwise(ls[g[0]])
      for i in g[1:]:
        acc = join(acc, elementwise(ls[i]))
      parts.append(_cpu_reduce(_fence(acc), op))
    for bucket in buckets:
      by_dtype: dict[Any, list[int]] = {}
      for i in bucket:
        by_dtype.setdefault(jnp.result_type(ls[i]), []).append(i)
      for b in by_dtype.values():
        # Elementwise after the concatenation: XLA splits a reduction of a
        # concatenation back into one reduction per operand.
        flat = jnp.concatenate([jnp.ravel(ls[i]) for i in b])
        parts.append(_cpu_reduce(elementwise(flat), op))
    return _combine(parts, op)

  return _per_platform(cpu, default, list(leaves))


def reduce_each(
  leaves: Sequence[jax.Array],
  elementwise: Callable[[jax.Array], jax.Array],
  op: str = "sum",
) -> list[jax.Array]:
  """``elementwise(leaf)`` reduced per leaf, as a list of scalars.

  CPU: small leaves are reduced together per bucket with one segment
  reduction, mid-sized leaves of one shape 16 at a time by one variadic
  reduction, so thousands of leaves cost a few hundred kernels at most
  (`_leaf_plan`). Elsewhere: one plain reduction per leaf.

  Args:
    leaves: the leaves.
    elementwise: maps a leaf to the values to reduce (same shape); for
      ``"max"`` they must be non-negative.
    op: ``"sum"`` or ``"max"`` (NaN kept).
  """
  if not leaves:
    return []

  def default(ls):
    return [_plain_reduce(elementwise(x), op) for x in ls]

  def cpu(ls):
    out: list[Any] = [None] * len(ls)
    buckets, together, singles = _leaf_plan(ls)
    for i in singles:
      out[i] = _cpu_reduce(elementwise(ls[i]), op)
    for g in together:
      vals = [elementwise(ls[i]) for i in g]
      for i, v in zip(g, _reduce_together(vals, op)):
        out[i] = v
    for b in buckets:
      flat = jnp.concatenate([elementwise(jnp.ravel(ls[i])) for i in b])
      sizes = [int(np.prod(jnp.shape(ls[i]))) for i in b]
      seg = np.repeat(np.arange(len(b)), sizes)
      if op == "max":
        vals = jax.ops.segment_max(flat, seg, len(b), indices_are_sorted=True)
        vals = jnp.maximum(vals, 0)
      else:
        vals = jax.ops.segment_sum(flat, seg, len(b), indices_are_sorted=True)
      for k, i in enumerate(b):
        out[i] = vals[k]
    return out

  return list(_per_platform(cpu, default, list(leaves)))


def _reduce_together(values: Sequence[jax.Array], op: str) -> list[jax.Array]:
  """Each of several same-shaped arrays reduced to a scalar, in one kernel.

  One variadic ``lax.reduce`` with a result per array: XLA reads them all
  in one loop, in place. ``op`` is ``"sum"`` or ``"max"`` (of non-negative
  values, NaN kept as in :func:`max_keeping_nan`).
  """
  dtype = values[0].dtype
  if op == "max":
    values = [_ordered_bits(v) for v in values]
  out = jax.lax.reduce(
    list(values),
    [jnp.zeros((), v.dtype) for v in values],
    lambda a, b: tuple(map(_join(op), a, b)),
    tuple(range(values[0].ndim)),
  )
  if op == "max":
    return [jax.lax.bitcast_convert_type(t, dtype) for t in out]
  return list(out)


def _fence(x: jax.Array) -> jax.Array:
  """``x`` unchanged (NaN stays NaN), as an op XLA keeps in one kernel (CPU).

  On the CPU backend a reduction of 4096 or more float32 elements becomes a
  YNNPACK call, which also takes in the elementwise ops before it and runs
  them one at a time, each through memory. A clamp to [-inf, inf] is not
  one it takes, so the elementwise sum of a group stays one fused loop.
  """
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return x
  inf = jnp.array(jnp.inf, x.dtype)
  return jax.lax.clamp(-inf, x, inf)


def _replicated(x: jax.Array) -> bool:
  """Whether a traced leaf carries no explicit sharding (safe to concat)."""
  try:
    spec = jax.typeof(x).sharding.spec
  except Exception:  # no sharding information: nothing to conflict with
    return True
  return all(s is None for s in spec)


def _acc_key(x: jax.Array) -> np.dtype:
  """The accumulation dtype of a leaf, as buckets are keyed by it."""
  real = np.dtype(jnp.finfo(jnp.result_type(x)).dtype)
  return np.dtype(jnp.promote_types(real, jnp.float32))


def _buckets(leaves: Sequence[jax.Array]) -> tuple[list[list[int]], list[int]]:
  """Splits leaf indices into buckets of small leaves and large singletons.

  Small real leaves without explicit sharding are grouped, per accumulation
  dtype, into buckets of at most `_BUCKET_LEAVES` leaves and
  `_BUCKET_ELEMENTS` elements; everything else is reduced on its own.
  """
  open_: dict[Any, list[int]] = {}
  sizes: dict[Any, int] = {}
  buckets: list[list[int]] = []
  singles: list[int] = []
  for i, x in enumerate(leaves):
    n = int(np.prod(jnp.shape(x), dtype=np.int64))
    if n > _SMALL_LEAF or jnp.iscomplexobj(x) or not _replicated(x) or n == 0:
      singles.append(i)
      continue
    key = _acc_key(x)
    cur = open_.setdefault(key, [])
    if cur and (
      len(cur) >= _BUCKET_LEAVES or sizes[key] + n > _BUCKET_ELEMENTS
    ):
      buckets.append(cur)
      cur = open_[key] = []
      sizes[key] = 0
    cur.append(i)
    sizes[key] = sizes.get(key, 0) + n
  buckets.extend(b for b in open_.values() if b)
  return buckets, singles


def _sharding_key(x: jax.Array) -> Any:
  """What must match for two leaves to be combined elementwise."""
  try:
    sharding = jax.typeof(x).sharding
    hash(sharding)
  except Exception:  # no (hashable) sharding information
    return None
  return sharding


def _groups(
  leaves: Sequence[jax.Array], max_elements: int = _GROUP_ELEMENTS
) -> tuple[list[list[int]], list[int]]:
  """Groups of leaves that can be reduced together, and the others.

  A group holds 2 to `_GROUP_LEAVES` leaves of one shape, dtype and
  sharding, each of at most ``max_elements`` (non-zero) elements.
  Returns ``(groups, others)`` as lists of leaf indices, in leaf order.
  """
  by_key: dict[Any, list[int]] = {}
  others: list[int] = []
  for i, x in enumerate(leaves):
    shape = jnp.shape(x)
    n = math.prod(shape)
    if n == 0 or n > max_elements:
      others.append(i)
      continue
    key = (shape, jnp.result_type(x), _sharding_key(x))
    by_key.setdefault(key, []).append(i)
  groups = []
  for idx in by_key.values():
    if len(idx) == 1:
      others.append(idx[0])
    else:
      k = _GROUP_LEAVES
      groups += [idx[j : j + k] for j in range(0, len(idx), k)]
  # A trailing group of one is just a leaf.
  others += [g[0] for g in groups if len(g) == 1]
  return [g for g in groups if len(g) > 1], sorted(others)


def _plan(
  leaves: Sequence[jax.Array],
) -> tuple[list[list[int]], list[list[int]], list[int]]:
  """``(groups, buckets, singles)``: how `reduce_all` reduces leaves (CPU)."""
  groups, others = _groups(leaves)
  buckets, singles = _buckets([leaves[i] for i in others])
  return (
    groups,
    [[others[k] for k in b] for b in buckets],
    [others[k] for k in singles],
  )


def _leaf_plan(
  leaves: Sequence[jax.Array],
) -> tuple[list[list[int]], list[list[int]], list[int]]:
  """``(buckets, together, singles)``: how `reduce_each` reduces (CPU)."""
  buckets, rest = _buckets(leaves)
  mid = [
    i
    for i in rest
    if jnp.issubdtype(jnp.result_type(leaves[i]), jnp.floating)
    and math.prod(jnp.shape(leaves[i])) > _SMALL_LEAF
  ]
  groups, _ = _groups([leaves[i] for i in mid], _TOGETHER_ELEMENTS)
  together = [[mid[k] for k in g] for g in groups]
  taken = {i for g in together for i in g}
  return buckets, together, [i for i in rest if i not in taken]


# ---------------------------------------------------------------------------
# Pass-through and checks
# ---------------------------------------------------------------------------


def tie(leaves: Sequence[Any], powers: Sequence[jax.Array]) -> list[Any]:
  """Each leaf unchanged; on the CPU, data-dependent on its own power.

  CPU: ``where(power < 0, 0, leaf)``, which is the leaf itself since a
  power is >= 0 or NaN. A transformation that only measures
  (``monitor_norms``) returns its updates through this: when nothing
  downstream reads a reduction, XLA's CPU backend keeps the reduction's
  elementwise part (the squares) out of it and writes it to memory, which
  cost 2.3-2.7x Adam's step at 20M parameters; with the dependency the
  squares stay in the reduction's loop (1.00-1.05x; finding 2). Leaves
  reduced together by one variadic reduction keep their squares in its
  loop without the tie, which would only cost a select per element.
  Elsewhere: the leaves as they are.

  Args:
    leaves: the leaves (None leaves pass through).
    powers: one scalar per leaf.

  Returns:
    The leaves, in order.
  """
  present = [
    i
    for i, x in enumerate(leaves)
    if x is not None and jnp.issubdtype(jnp.result_type(x), jnp.floating)
  ]
  _, together, _ = _leaf_plan([leaves[i] for i in present])
  free = {present[k] for g in together for k in g}
  tied = [i for i, x in enumerate(leaves) if x is not None and i not in free]
  if not tied:
    return list(leaves)

  def cpu(xs, ps):
    return [zero_where(p < 0, x) for x, p in zip(xs, ps)]

  def default(xs, ps):
    del ps
    return list(xs)

  out = list(leaves)
  new = _per_platform(
    cpu, default, [leaves[i] for i in tied], [powers[i] for i in tied]
  )
  for i, x in zip(tied, new):
    out[i] = x
  return out


def zero_where(pred: jax.Array, x: jax.Array) -> jax.Array:
  """``x`` with zeros where the scalar (or broadcastable) ``pred`` holds.

  Not a workaround (``_scaling.zero_where`` is this), but the CPU forms
  here use it. ``lax.select`` rather than ``jnp.where`` (no nested jit per
  leaf); the predicate is broadcast with the leaf's sharding.
  """
  sharding = None if _replicated(x) else jax.typeof(x).sharding
  pred = jnp.broadcast_to(pred, jnp.shape(x), out_sharding=sharding)
  return jax.lax.select(pred, jnp.zeros_like(x), x)


def any_nonfinite_computed(leaves: Sequence[jax.Array]) -> jax.Array:
  """True when an element of leaves computed in this step is NaN or Inf.

  For leaves not yet in memory (an inner optimizer's updates). Each leaf's
  ``x * 0`` is 0, or NaN where ``x`` is not finite; the sum over all of
  them is finite exactly when every element is.

  CPU: one L1 reduction over such leaves makes YNNPACK take in the whole
  computation and run it op by op through fresh buffers (70,000 page faults
  per step; finding 3). So each leaf's ``x * 0`` is fenced into one fused
  loop (`_fence`) and summed, and each leaf waits for the previous sum, so
  that one temporary buffer serves every leaf in turn (``skip_nonfinite``
  + Adam at 10 leaves: 1.63x Adam's step, against 5.4-7.8x). Elsewhere:
  one plain sum per leaf.

  Args:
    leaves: the leaves (at least one).

  Returns:
    A boolean scalar.
  """

  def zeros(x):
    zero = x * jnp.zeros([], x.dtype)
    return zero.real + zero.imag if jnp.iscomplexobj(zero) else zero

  def cpu(xs):
    acc = jnp.zeros([], jnp.float32)
    for x in xs:
      zero = zeros(x) + (acc * 0).astype(jnp.result_type(zeros(x)))
      acc = acc + jnp.sum(_fence(zero), dtype=jnp.float32)
    return acc

  def default(xs):
    parts = [jnp.sum(zeros(x), dtype=jnp.float32) for x in xs]
    return jnp.sum(jnp.stack(parts))

  total = _per_platform(cpu, default, list(leaves))
  return jnp.logical_not(jnp.isfinite(total))


def run_keeping_state(
  fn: Callable[..., tuple[Any, Any]],
  args: tuple[Any, ...],
  keep: jax.Array,
) -> tuple[list[Any], list[Any], Any, Any]:
  """``fn(*args)``, each new state leaf replaced by the old one if ``keep``.

  ``fn(updates, state, ...)`` returns ``(updates, state)``; ``args[1]`` is
  the old state. The new state's leaves are ``where(keep, old, new)``.

  CPU: the choice is made where each new state leaf is computed. ``fn`` is
  traced and evaluated equation by equation (as
  :func:`jax.core.eval_jaxpr` does), and the moment an equation produces
  state leaf ``j`` its value is replaced by the choice for every later use,
  the updates' computation included. XLA then writes each state leaf once,
  in place, as in the unwrapped step. Choosing on the outputs instead
  leaves the new state read twice, and XLA's CPU backend copied the whole
  state into fresh buffers every step: a skip wrapper + Adam cost 4.6-7.8x
  Adam's step, 1.1-1.8x with this (finding 3). Elsewhere: the choice is
  made on the outputs (``fn``'s updates are computed from the new state,
  equal to the chosen one unless ``keep``).

  Args:
    fn: ``(updates, state, params, extra_args) -> (updates, state)``.
    args: its arguments; leaves that are not arrays stay Python values.
    keep: a boolean scalar.

  Returns:
    ``(update_leaves, state_leaves, update_treedef, state_treedef)``.

  Raises:
    ValueError: if ``fn`` returns a state of another structure.
  """
  flat, treedef = jax.tree.flatten(args)
  dynamic = [i for i, x in enumerate(flat) if _is_array(x)]
  state_def = jax.tree.structure(args[1])
  trees: list[Any] = []

  def call(xs):
    full = jax.tree.unflatten(treedef, _fill(flat, dynamic, xs))
    updates, state = fn(*full)
    u, u_def = jax.tree.flatten(updates)
    s, s_def = jax.tree.flatten(state)
    if s_def != state_def:
      raise ValueError(
        "optaxclip: the wrapped transformation returned a state of "
        f"structure {s_def}, but its state has structure {state_def}; a "
        "skip wrapper can only guard transformations whose state keeps "
        "its structure."
      )
    if not trees:
      trees.append((len(u), u_def))
    return u, s

  def choose(k, old, j, new):
    if new is old[j]:
      return new
    return jnp.where(k, old[j], new)

  def old_state(xs):
    full = jax.tree.unflatten(treedef, _fill(flat, dynamic, xs))
    return jax.tree.leaves(full[1])

  def default(xs, k):
    old = old_state(xs)
    u, s = call(xs)
    return u + [choose(k, old, j, x) for j, x in enumerate(s)]

  def cpu(xs, k):
    old = old_state(xs)

    u, s = _evaluate_choosing(
      lambda *ys: call(ys), xs, lambda j, x: choose(k, old, j, x)
    )
    return u + s

  out = _per_platform(cpu, default, [flat[i] for i in dynamic], keep)
  n_u, u_def = trees[0]
  return list(out[:n_u]), list(out[n_u:]), u_def, state_def


def _fill(flat: list[Any], dynamic: list[int], xs: Sequence[Any]) -> list[Any]:
  full = list(flat)
  for i, x in zip(dynamic, xs):
    full[i] = x
  return full


def _is_array(x: Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _evaluate_choosing(
  flat_fn: Callable[..., list[Any]],
  xs: Sequence[Any],
  select: Callable[[int, jax.Array], jax.Array],
) -> tuple[list[Any], list[Any]]:
  """Evaluates ``flat_fn`` equation by equation, choosing state leaves.

  ``flat_fn`` returns two lists: update leaves and state leaves. The
  moment an equation produces
  the value of state leaf ``j``, that value is replaced by ``select(j,
  value)`` for every later use, and for the output.
  """
  closed, shapes = jax.make_jaxpr(flat_fn, return_shape=True)(*xs)
  n_u = len(shapes[0])
  jaxpr = closed.jaxpr
  outs = jaxpr.outvars
  first: dict[Any, int] = {}
  for j, v in enumerate(outs[n_u:]):
    if isinstance(v, jcore.Var):
      first.setdefault(v, j)
  env: dict[Any, Any] = {}
  raw: dict[Any, Any] = {}

  def write(v, x):
    if v in first:
      raw[v] = x
      x = select(first[v], x)
    env[v] = x

  def read(v):
    return v.val if isinstance(v, jcore.Literal) else env[v]

  for v, x in zip(jaxpr.constvars, closed.consts):
    env[v] = x
  for v, x in zip(jaxpr.invars, xs):
    write(v, x)
  for eqn in jaxpr.eqns:
    params = eqn.primitive.get_bind_params(eqn.params)
    with eqn.ctx.manager:
      ans = eqn.primitive.bind(*map(read, eqn.invars), **params)
    if not eqn.primitive.multiple_results:
      ans = [ans]
    for v, x in zip(eqn.outvars, ans):
      write(v, x)
  state = []
  for j, v in enumerate(outs[n_u:]):
    if isinstance(v, jcore.Var) and first[v] == j:
      state.append(env[v])
    else:  # a literal, or a value that is also an earlier state leaf
      state.append(select(j, raw[v] if isinstance(v, jcore.Var) else v.val))
  return [read(v) for v in outs[:n_u]], state
