# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Measuring: norms of updates, accumulated in float32.

The global norm, per-leaf and per-unit norms of a pytree, accumulated in
float32 (float64 for float64 leaves), and the one cross-device reduction
(a ``psum``, or ``pmax`` for the L-infinity norm, over ``axis_name``). How
the reductions are laid out for a compiler lives in ``_xla``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optaxclip import _paths
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


@jax.custom_jvp
def _sqrt(x: jax.Array) -> jax.Array:
  """``sqrt(x)``, whose derivative at 0 is 0 rather than infinite."""
  return jnp.sqrt(x)


@_sqrt.defjvp
def _sqrt_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  y = jnp.sqrt(x)
  zero = x == 0
  return y, jnp.where(zero, 0, t / (2 * jnp.where(zero, 1, y)))


def root(power: jax.Array, ord: _validation.Ord) -> jax.Array:
  """Norm from a power; the square root has a finite gradient at 0.

  The guard lives in the derivative only (a custom JVP), so the program
  that is not differentiated holds one square root per norm.
  """
  if ord != 2:
    return power
  return _sqrt(power)


def _as_axes(axis_name) -> tuple[Any, ...]:
  """``axis_name`` (a name or a tuple of names) as a tuple; None: ()."""
  if axis_name is None:
    return ()
  return tuple(axis_name) if isinstance(axis_name, tuple) else (axis_name,)


def _manual_axes() -> frozenset:
  """Mesh axes that are manual here (inside ``shard_map``), else empty."""
  mesh = jax.sharding.get_abstract_mesh()
  return frozenset(() if mesh.empty else mesh.manual_axes)


def _manual_axis_type(x: Any) -> tuple[frozenset, frozenset]:
  """(varying, unreduced) axis names of ``x``'s type inside ``shard_map``.

  jax 0.10 spells them ``typeof(x).manual_axis_type.varying`` and
  ``.unreduced``; older releases ``typeof(x).vma`` (no unreduced).
  """
  aval = jax.typeof(x)
  mat = getattr(aval, "manual_axis_type", None)
  if mat is not None:
    return (
      frozenset(mat.varying),
      frozenset(getattr(mat, "unreduced", ())),
    )
  return frozenset(getattr(aval, "vma", ())), frozenset()


def _probe_axes(axes: tuple[Any, ...]) -> tuple[Any, ...]:
  """The axes of ``axes`` that are manual here and of size > 1."""
  mesh = jax.sharding.get_abstract_mesh()
  manual = _manual_axes()
  return tuple(a for a in axes if a in manual and mesh.shape[a] > 1)


def _vma_tracked(probe: tuple[Any, ...]) -> bool:
  """Whether the varying-axes types are tracked for the manual ``probe``.

  Under ``shard_map(..., check_vma=False)`` (and ``jax.pmap``, which runs
  on it) every value's varying set is empty, so a replicated leaf cannot be
  told from a split one. A no-op cast of a constant to varying shows it: it
  keeps the axes when the types are tracked, and is dropped otherwise (and
  from the compiled program either way, as its result is unused).
  """
  if not probe:
    return True
  marker = jax.lax.pcast(jnp.zeros([], jnp.float32), probe, to="varying")
  return set(probe) <= _manual_axis_type(marker)[0]


def _check_vma_on(axes: tuple[Any, ...]) -> None:
  """Raises unless the varying-axes types are tracked for manual ``axes``."""
  probe = _probe_axes(axes)
  if not _vma_tracked(probe):
    raise ValueError(
      f"optaxclip: axis_name={probe!r} under jax.shard_map with "
      "check_vma=False needs partition_specs=: without check_vma JAX does "
      "not track which values are split and which are replicated along the "
      "axes, so a norm over them cannot be exact. Pass partition_specs= "
      "(the in_specs the updates entered shard_map with), or use "
      "check_vma=True (shard_map's default; jax.pmap cannot)."
    )


def _varying_axes(x: Any, axis_name) -> tuple[Any, ...]:
  """The axes of ``axis_name`` along which ``x`` varies, to reduce over.

  Inside ``jax.shard_map`` (manual axes), read from ``x``'s type: a leaf
  split along an axis varies along it, a replicated one does not (it is
  counted once). An axis that is not a manual mesh axis (``jax.vmap``'s
  ``axis_name``) is taken as varying for every leaf. A leaf that is
  ``unreduced`` along an axis (partial sums still to be added) has no norm
  until it is reduced: that raises.
  """
  axes = _as_axes(axis_name)
  manual = _manual_axes()
  if not manual:
    return axes
  varying, unreduced = _manual_axis_type(x)
  pending = [a for a in axes if a in unreduced]
  if pending:
    raise ValueError(
      f"optaxclip: a leaf is unreduced along {pending!r} (partial sums); "
      "its norm is not defined until it is reduced (jax.lax.psum)."
    )
  return tuple(a for a in axes if a not in manual or a in varying)


PARTITION_SPECS_DOC = """partition_specs: the layout of the updates inside
      :func:`jax.shard_map`: a pytree of :class:`jax.sharding.PartitionSpec`
      matching them (a tree prefix works, as in ``in_specs``), usually the
      ``in_specs`` they entered with. Each leaf is then reduced over exactly
      the axes of ``axis_name`` its spec names (absent: replicated, counted
      once); a unit-wise norm reduces only over the axes that split a
      dimension the unit spans. Required under ``check_vma=False``, where
      the types cannot tell; optional under ``check_vma=True``, and checked
      against the types there (a contradiction raises ``ValueError``).
      Parameters, where read, are taken to have the same specs. A spec
      ``unreduced`` along ``axis_name`` raises, as such a type does. Needs
      ``axis_name``."""


UNIT_AXIS_NAME_DOC = """axis_name: a mapped axis name, or a tuple of names,
      under :func:`jax.shard_map`. ``shard_map``'s types say that a leaf is
      split, not along which dimension: a leaf (update or parameter) split
      along it needs ``partition_specs`` (without, ``ValueError``); a unit
      spanning a split dimension is then reduced across devices, one in a
      split dimension it does not span is not. Replicated leaves need
      nothing. Under :func:`jax.jit` with ``NamedSharding`` XLA does it."""


def documents_partition_specs(f: Callable) -> Callable:
  """Writes :data:`PARTITION_SPECS_DOC` into ``f``'s docstring, once.

  The docstring names the argument as ``partition_specs: PARTITION_SPECS``.
  A unit-wise strategy's may also name ``axis_name: UNIT_AXIS_NAME``, for
  :data:`UNIT_AXIS_NAME_DOC`.
  """
  marker = "partition_specs: PARTITION_SPECS"
  if f.__doc__ is None or marker not in f.__doc__:
    raise AssertionError(f"{f.__name__}'s docstring lacks {marker!r}")
  f.__doc__ = f.__doc__.replace(marker, PARTITION_SPECS_DOC).replace(
    "axis_name: UNIT_AXIS_NAME", UNIT_AXIS_NAME_DOC
  )
  return f


def _is_spec(x: Any) -> bool:
  return x is None or isinstance(x, jax.sharding.PartitionSpec)


def check_partition_specs(partition_specs: Any, axis_name, fn: str) -> None:
  """Checks ``partition_specs`` when a strategy is made (static).

  Raises ``ValueError`` when it is given without ``axis_name``, or when a
  leaf of it is not a :class:`jax.sharding.PartitionSpec` (naming its path).
  """
  if partition_specs is None:
    return
  if axis_name is None:
    raise ValueError(
      f"optaxclip.{fn}: partition_specs= needs axis_name= (the shard_map "
      "axes to reduce the norms over)."
    )
  for path, spec in jax.tree.leaves_with_path(
    partition_specs, is_leaf=_is_spec
  ):
    if not isinstance(spec, jax.sharding.PartitionSpec):
      raise ValueError(
        f"optaxclip.{fn}: partition_specs must be a pytree of "
        "jax.sharding.PartitionSpec, but at "
        f"{_paths.path_str(path) or '(root)'!r} it has {spec!r} (a "
        "replicated leaf is P())."
      )


@dataclasses.dataclass(frozen=True)
class Layout:
  """Which axes each leaf is reduced over, resolved from partition specs.

  Passed instead of ``axis_name`` to the reductions of this module, for
  values aligned with the leaves it was resolved for (one per leaf, in
  ``jax.tree.leaves`` order).

  Attributes:
    axes: ``axis_name``, as a tuple.
    leaf_axes: for each leaf, the axes of ``axes`` its spec names (in the
      order of ``axes``): those it is split along.
    dim_axes: for each leaf, for each of its dimensions, the axes of
      ``axes`` that split that dimension; None for values derived from the
      leaves (unit norms), which have no dimensions to speak of.
  """

  axes: tuple[Any, ...]
  leaf_axes: tuple[tuple[Any, ...], ...]
  dim_axes: tuple[tuple[tuple[Any, ...], ...], ...] | None = None


def _spec_dims(
  spec: Any, x: Any, where: str, axes: tuple[Any, ...], fn: str
) -> tuple[tuple[Any, ...], ...]:
  """The axes of ``axes`` splitting each dimension of ``x``, per its spec."""
  mesh = jax.sharding.get_abstract_mesh()
  mesh_axes = () if mesh.empty else tuple(mesh.axis_names)
  known = set(axes) | set(mesh_axes)
  pending = [a for a in axes if a in getattr(spec, "unreduced", ())]
  if pending:
    raise ValueError(
      f"optaxclip.{fn}: partition_specs says the leaf {where} is unreduced "
      f"along {pending!r} (partial sums); its norm is not defined until it "
      "is reduced (jax.lax.psum)."
    )
  ndim = jnp.ndim(x)
  entries = tuple(getattr(spec, "partitions", spec))
  if len(entries) > ndim:
    raise ValueError(
      f"optaxclip.{fn}: partition_specs gives the leaf {where} the spec "
      f"{spec} of {len(entries)} dimensions, but the leaf has rank {ndim} "
      f"(shape {jnp.shape(x)})."
    )
  dims = []
  for entry in (*entries, *(None,) * (ndim - len(entries))):
    names = () if entry is None else entry
    names = names if isinstance(names, tuple) else (names,)
    unknown = [a for a in names if a not in known]
    if unknown:
      raise ValueError(
        f"optaxclip.{fn}: partition_specs gives the leaf {where} the spec "
        f"{spec}, which names {unknown[0]!r}: neither in axis_name="
        f"{axes!r} nor an axis of the mesh ({mesh_axes})."
      )
    dims.append(tuple(a for a in axes if a in names))
  return tuple(dims)


def layout(axis_name, partition_specs: Any, fn: str, tree: Any, *others):
  """``axis_name``, or the :class:`Layout` of ``tree`` given its specs.

  The one place where ``partition_specs`` is read. Without it, returns
  ``axis_name`` unchanged: each value's axes are then read from its type
  (:func:`_varying_axes`). With it, the spec prefix is broadcast to the
  leaves of ``tree`` and each leaf is reduced over the axes of
  ``axis_name`` its spec names. Where the types are tracked
  (``check_vma=True``), every leaf of ``tree`` and of ``others`` (trees of
  the same structure, e.g. the parameters) must vary along exactly those
  axes: a spec that contradicts the types raises.

  Args:
    axis_name: a name or a tuple of names.
    partition_specs: a pytree prefix of ``tree`` of ``PartitionSpec``s, or
      None.
    fn: the strategy's name, for errors.
    tree: the updates.
    *others: trees with the structure of ``tree`` said to share its specs.

  Returns:
    ``axis_name``, or a :class:`Layout` of ``jax.tree.leaves(tree)``.
  """
  if partition_specs is None or axis_name is None:
    return axis_name
  axes = _as_axes(axis_name)
  try:
    specs = jax.tree.broadcast(partition_specs, tree, is_leaf=_is_spec)
  except ValueError as e:
    msg = str(e).replace("broadcast_prefix prefix_tree", "partition_specs")
    raise ValueError(
      f"optaxclip.{fn}: partition_specs is not a tree prefix of the "
      f"updates: {msg}"
    ) from None
  with_path = jax.tree.leaves_with_path(tree)
  treedef = jax.tree.structure(tree)
  spec_leaves = treedef.flatten_up_to(specs)
  wheres = [repr(_paths.path_str(p) or "(root)") for p, _ in with_path]
  dims = tuple(
    _spec_dims(spec, x, where, axes, fn)
    for spec, (_, x), where in zip(spec_leaves, with_path, wheres)
  )
  leaf_axes = tuple(
    tuple(a for a in axes if any(a in d for d in ds)) for ds in dims
  )
  probe = _probe_axes(axes)
  if probe and _vma_tracked(probe):
    for t in (tree, *others):
      for x, claim, where in zip(treedef.flatten_up_to(t), leaf_axes, wheres):
        typed = {a for a in _varying_axes(x, axes) if a in probe}
        said = {a for a in claim if a in probe}
        if typed != said:
          raise ValueError(
            f"optaxclip.{fn}: partition_specs has the leaf {where} split "
            f"along {sorted(said)} (of {probe}), but inside shard_map its "
            f"type varies along {sorted(typed)}: the spec does not "
            "describe the values. Pass the in_specs the updates entered "
            "shard_map with (a gradient of a replicated parameter is "
            "replicated under check_vma=True)."
          )
  return Layout(axes, leaf_axes, dims)


def _value_axes(values: Sequence[Any], axis_name) -> list[tuple[Any, ...]]:
  """For each value, the axes of ``axis_name`` to reduce it over.

  From a :class:`Layout` (values aligned with its leaves), else from the
  values' types (which must be tracked: see :func:`_check_vma_on`).
  """
  if isinstance(axis_name, Layout):
    if len(values) != len(axis_name.leaf_axes):
      raise AssertionError(
        f"optaxclip: {len(values)} values for a layout of "
        f"{len(axis_name.leaf_axes)} leaves"
      )
    return list(axis_name.leaf_axes)
  axes = _as_axes(axis_name)
  _check_vma_on(axes)
  return [_varying_axes(x, axes) for x in values]


def _by_axes(
  leaves: Sequence[Any], axis_name
) -> dict[tuple[Any, ...], list[int]]:
  """Leaf indices grouped by the axes each is reduced over (in order)."""
  groups: dict[tuple[Any, ...], list[int]] = {}
  for i, axes in enumerate(_value_axes(leaves, axis_name)):
    groups.setdefault(axes, []).append(i)
  return groups


def check_unsplit(leaves: Sequence[Any], axis_name, fn: str) -> None:
  """Raises if a leaf varies along ``axis_name`` (unit-wise, no specs).

  A unit's norm reduces over some dimensions of a leaf: whether to reduce
  across devices depends on which dimension is split, which the types
  inside ``shard_map`` do not say (only whether the leaf varies).
  """
  if axis_name is None:
    return
  split = [axes for axes in _by_axes(leaves, axis_name) if axes]
  if split:
    raise ValueError(
      f"optaxclip.{fn}: some leaves (updates or parameters) vary along "
      f"{split[0]!r} under shard_map, and unit-wise norms of a split leaf "
      "need to know which dimension is split, which the types do not say. "
      "Pass partition_specs= (the in_specs of the updates), replicate "
      "those leaves, or run under jax.jit with NamedSharding (no "
      "shard_map), where XLA reduces them."
    )


def unit_powers(
  leaves: Sequence[jax.Array], axis, ord: _validation.Ord, fn: str, axis_name
) -> tuple[list[jax.Array], Any]:
  """Per-unit powers of each leaf (see :func:`unit_power`), exact across
  devices; and how values shaped like them are reduced further.

  With a :class:`Layout`, a unit's power is reduced across the axes that
  split a dimension the unit spans (one collective per such set of axes);
  a dimension split along the others holds other units, so that needs
  none. The second result is then the :class:`Layout` of the unit powers
  (each split along the axes of its other dimensions), for the statistics
  (:func:`across`, :func:`global_size`). Without one, every leaf must be
  replicated along ``axis_name`` (:func:`check_unsplit`), and the second
  result is ``axis_name``.
  """
  powers = [unit_power(x, axis, ord, fn) for x in leaves]
  if not isinstance(axis_name, Layout):
    check_unsplit(leaves, axis_name, fn)
    return powers, axis_name
  over, kept = [], []
  for x, dims in zip(leaves, axis_name.dim_axes):
    spanned = set(_unit_axes(x.ndim, axis, fn))
    over.append(tuple(a for a in axis_name.axes if _splits(dims, spanned, a)))
    others = set(range(x.ndim)) - spanned
    kept.append(tuple(a for a in axis_name.axes if _splits(dims, others, a)))
  groups: dict[tuple[Any, ...], list[int]] = {}
  for i, axes in enumerate(over):
    if axes:
      groups.setdefault(axes, []).append(i)
  for axes, idx in groups.items():
    reduced = _cross_device([powers[i] for i in idx], _op(ord), axes)
    for i, p in zip(idx, reduced):
      powers[i] = p
  return powers, Layout(axis_name.axes, tuple(kept))


def _splits(dims: tuple[tuple[Any, ...], ...], which: set, a: Any) -> bool:
  """Whether axis ``a`` splits one of the dimensions ``which``."""
  return any(a in dims[d] for d in which)


def _cross_device(value: jax.Array, op: str, axes: tuple[Any, ...]):
  """The one place where a norm is reduced across devices.

  ``psum`` of powers (``op="sum"``), ``pmax`` for the L-infinity norm
  (``op="max"``), ``pmin`` for smallest factors (``op="min"``), over the
  mapped axes ``axes`` (empty: no reduction).
  """
  if not axes:
    return value
  name = axes[0] if len(axes) == 1 else axes
  if op == "max":
    return jax.lax.pmax(value, name)
  if op == "min":
    return jax.lax.pmin(value, name)
  return jax.lax.psum(value, name)


def across(values: Sequence[jax.Array], op: str, axis_name) -> list[Any]:
  """Local scalars, each reduced across devices along the axes it varies.

  ``values`` are per-leaf partial results (a scalar reduced from a leaf
  keeps the leaf's varying axes). Values varying along the same axes are
  stacked and reduced by one collective; invariant ones are left alone.
  """
  if axis_name is None or not values:
    return list(values)
  out: list[Any] = list(values)
  for axes, idx in _by_axes(values, axis_name).items():
    if not axes:
      continue
    if len(idx) == 1:
      out[idx[0]] = _cross_device(values[idx[0]], op, axes)
      continue
    vector = _cross_device(stack_scalars([values[i] for i in idx]), op, axes)
    for k, i in enumerate(idx):
      out[i] = vector[k]
  return out


def global_size(leaves: Sequence[Any], axis_name=None) -> int:
  """Number of elements of all leaves, on all devices (static).

  A leaf counts its local size times the sizes of the axes of
  ``axis_name`` it is reduced over (its shards); a replicated leaf once.
  """
  return sum(leaf_sizes(leaves, axis_name))


def leaf_sizes(leaves: Sequence[Any], axis_name=None) -> list[int]:
  """Number of elements of each leaf, on all devices (see
  :func:`global_size`)."""
  if axis_name is None:
    return [int(np.prod(jnp.shape(x))) for x in leaves]
  sizes = []
  for x, axes in zip(leaves, _value_axes(leaves, axis_name)):
    n = int(np.prod(jnp.shape(x)))
    for a in axes:
      n *= jax.lax.axis_size(a)
    sizes.append(n)
  return sizes


def global_reduce(
  leaves: Sequence[jax.Array],
  elementwise: Callable[[jax.Array], jax.Array],
  op: str = "sum",
  *,
  axis_name=None,
) -> jax.Array:
  """Reduces ``elementwise(leaf)`` over all leaves to one scalar.

  Across devices (``axis_name``), each leaf counts once: leaves are
  grouped by the axes they vary along (see :func:`_varying_axes`), and each
  group's partial result is reduced over its own axes only (one
  ``psum``/``pmax`` per group; none for replicated leaves).

  Args:
    leaves: the leaves.
    elementwise: maps a leaf to the values to reduce (same shape).
    op: ``"sum"`` or ``"max"``.
    axis_name: optional mapped axis (a name or a tuple of names) to reduce
      across devices too.
  """
  if not leaves:
    return jnp.zeros([], jnp.float32)
  if axis_name is None:
    return _xla.reduce_all(leaves, elementwise, op)
  parts = [
    _cross_device(
      _xla.reduce_all([leaves[i] for i in idx], elementwise, op), op, axes
    )
    for axes, idx in _by_axes(leaves, axis_name).items()
  ]
  return parts[0] if len(parts) == 1 else _xla._combine(parts, op)


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
  """Power of each leaf, as a list of scalars (same order as ``leaves``).

  With ``axis_name``, leaves that vary along the same axes are reduced
  across devices together (one ``psum``/``pmax`` of their stacked powers),
  replicated leaves not at all; see :func:`global_reduce`.
  """
  elementwise = functools.partial(_elementwise_power, ord=ord)
  if axis_name is None or not leaves:
    return _xla.reduce_each(leaves, elementwise, _op(ord))
  out: list[Any] = [None] * len(leaves)
  # Reduced group by group, so that no leaf is concatenated with a leaf of
  # another layout (which would make a replicated one look split).
  for idx in _by_axes(leaves, axis_name).values():
    powers = _xla.reduce_each([leaves[i] for i in idx], elementwise, _op(ord))
    for i, p in zip(idx, powers):
      out[i] = p
  return across(out, _op(ord), axis_name)


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


def _unit_axes(ndim: int, axis, fn: str) -> tuple[int, ...]:
  """The (non-negative) dimensions a unit's norm reduces over."""
  axes = default_unit_axes(ndim, fn) if axis is None else axis
  return tuple(a % ndim for a in axes) if ndim else ()


def unit_power(x: jax.Array, axis, ord: _validation.Ord, fn: str) -> jax.Array:
  """Per-unit power of a leaf, with kept dims so it broadcasts against x."""
  return _leaf_power(x, ord, axis=_unit_axes(x.ndim, axis, fn), keepdims=True)


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
  leaves: Sequence[jax.Array],
  predicate: Callable[[jax.Array], jax.Array],
  *,
  axis_name=None,
) -> jax.Array:
  """Fraction of all elements for which ``predicate`` holds (float32)."""
  n = global_size(leaves, axis_name)
  if n == 0:
    return jnp.zeros([], jnp.float32)
  hits = global_reduce(
    leaves, lambda x: predicate(x).astype(jnp.float32), axis_name=axis_name
  )
  return hits / n


def any_nonfinite(
  leaves: Sequence[jax.Array], *, computed: bool = False, axis_name=None
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
    A boolean scalar, the same on every device of ``axis_name`` (a mapped
    axis or tuple of axes, see :func:`global_reduce`). Without
    ``computed``, an L1 norm that overflows float32 also counts as
    non-finite.
  """
  if not leaves:
    return jnp.array(False)
  if not computed:
    power = global_power(leaves, 1, axis_name=axis_name)
    return jnp.logical_not(jnp.isfinite(power))
  bad = _xla.any_nonfinite_computed(leaves)
  if axis_name is None:
    return bad
  bad = bad.astype(jnp.float32)
  if isinstance(axis_name, Layout):
    # One flag for all leaves: a max over every axis (idempotent).
    return _cross_device(bad, "max", axis_name.axes) > 0
  return across([bad], "max", axis_name)[0] > 0


def tie(leaves: Sequence[Any], powers: Sequence[jax.Array]) -> list[Any]:
  """Each leaf unchanged, kept with the reduction of its own power."""
  return _xla.tie(leaves, powers)
