# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Recording: :class:`ClipStats`, the clippers' state, and :func:`stats`.

Every clipper keeps ``{name: ClipStats}`` in its state; :func:`stats`
finds them in any optimizer state. Statistics types with more fields are
built from the same field list by :func:`stats_type`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optaxclip import _norms
from optaxclip import _paths
from optaxclip import _validation
from optaxclip import _xla


class ClipStats(NamedTuple):
  """What a clipper did on its last step; scalars only.

  Every optaxclip clipper keeps one of these in its state, under its name
  (``state.stats == {name: ClipStats(...)}``), so the name is part of the
  state's tree structure rather than a leaf. Read them all at once with
  :func:`optaxclip.stats`.

  A field that a strategy does not compute on its way holds NaN rather than
  costing an extra pass over the gradients (for example the norms of
  :func:`optaxclip.clip_by_value`).

  Attributes:
    norm_before: norm of the incoming updates (the strategy's ``ord``).
    norm_after: norm of the outgoing updates, derived from the scale factors,
      never measured a second time.
    threshold: threshold applied on this step (NaN where it differs per leaf
      or unit).
    scale: factor the updates were multiplied by; for per-leaf or per-unit
      strategies, the smallest one. 0 when the step was zeroed.
    clipped: 0 or 1 for one global decision; otherwise the fraction of
      leaves, groups, units or elements that were clipped.
    nonfinite_count: number of steps so far whose updates were non-finite
      (int32; saturates at 2**31 - 1, never wraps).
    step: number of updates applied so far.
  """

  norm_before: jax.Array
  norm_after: jax.Array
  threshold: jax.Array
  scale: jax.Array
  clipped: jax.Array
  nonfinite_count: jax.Array
  step: jax.Array


class ClipState(NamedTuple):
  """State of a clipper whose only state is its statistics.

  Attributes:
    stats: ``{name: ClipStats}``; the name is the clipper's ``name=``.
  """

  stats: dict[str, ClipStats]


# Statistics types that `stats()` collects; strategies and wrappers with
# more to say build theirs with `stats_type`, which registers them.
_STATS_TYPES: list[type] = [ClipStats]


def register_stats_type(cls: type) -> type:
  """Makes :func:`stats` collect instances of ``cls`` (a NamedTuple)."""
  if cls not in _STATS_TYPES:
    _STATS_TYPES.append(cls)
  return cls


def f32(x: Any) -> jax.Array:
  """``x`` as a float32 array (hyperparameters and statistics)."""
  return jnp.asarray(x, jnp.float32)


def stats_type(name: str, doc: str, *fields: str, base: type = ClipStats):
  """A statistics type: ``base``'s fields, then ``fields``; registered.

  A flat NamedTuple (field access, ``_replace`` and checkpoints work as for
  :class:`ClipStats`) whose fields start with those of ``base``, so that a
  wrapper's or a strategy's richer statistics never copy the shared ones.
  Every field is a scalar ``jax.Array``.

  Args:
    name: the class name.
    doc: its docstring (with an Attributes section for every field).
    *fields: the further field names, in order.
    base: the statistics type whose fields come first.

  Returns:
    The class, registered with :func:`register_stats_type`.
  """
  names = (*base._fields, *fields)
  undocumented = [f for f in names if f"\n    {f}:" not in doc]
  if undocumented:
    raise TypeError(f"{name}: no Attributes entry for {undocumented}")
  cls = NamedTuple(name, [(f, jax.Array) for f in names])
  cls.__doc__ = doc
  cls.__module__ = "optaxclip"  # public: pickled as optaxclip.<name>
  return register_stats_type(cls)


def init_stats() -> ClipStats:
  """The statistics of a clipper that has not stepped yet."""
  # Fields may share a buffer: every init_fn is `unshared`, which copies
  # repeated arrays so that the state can be donated.
  nan = jnp.full([], jnp.nan, jnp.float32)
  return ClipStats(
    norm_before=nan,
    norm_after=nan,
    threshold=nan,
    scale=jnp.ones([], jnp.float32),
    clipped=jnp.zeros([], jnp.float32),
    nonfinite_count=jnp.zeros([], jnp.int32),
    step=jnp.zeros([], jnp.int32),
  )


def next_stats(
  prev: ClipStats,
  *,
  finite: jax.Array,
  norm_before: Any = jnp.nan,
  norm_after: Any = jnp.nan,
  threshold: Any = jnp.nan,
  scale: Any = 1.0,
  clipped: Any = 0.0,
  also: Sequence[Any] = (),
) -> Any:
  """Statistics after one step, computed in one kernel; in the state's dtypes.

  Each statistic written out by a kernel of its own would cost compile
  time: XLA's CPU backend compiles a scalar kernel in about 5-10 ms, and
  the seven fields cost 1.3x Adam's whole compile time at 10 leaves. On
  the CPU they are the outputs of one variadic reduction instead, together
  with ``also`` (see `_xla.compute_together`).

  Args:
    prev: the previous statistics.
    finite: whether this step's norm is finite.
    norm_before: the fields of :class:`ClipStats` (NaN: not computed).
    norm_after: see ``norm_before``.
    threshold: see ``norm_before``.
    scale: see ``norm_before``.
    clipped: see ``norm_before``.
    also: a few further scalars to compute in the same kernel (the factor
      and keep mask that scale the leaves, the strategy's other new state);
      not one per leaf: a reduction with thousands of outputs takes
      minutes to compile.

  Returns:
    The :class:`ClipStats`; with ``also``, ``(stats, *also)``.
  """
  stats = ClipStats(
    norm_before=f32(norm_before),
    norm_after=f32(norm_after),
    threshold=f32(threshold),
    scale=f32(scale),
    clipped=f32(clipped),
    nonfinite_count=jnp.where(
      finite, prev.nonfinite_count, optax.safe_increment(prev.nonfinite_count)
    ),
    step=optax.safe_increment(prev.step),
  )
  packed = _xla.compute_together(stats, *also)
  return packed if also else packed[0]


# Values written out together (statistics, new scalar state), see
# `next_stats`; how is a matter for the platform.
compute_together = _xla.compute_together


def named(name: str, value: Any) -> dict[str, Any]:
  """``{name: value}``: how a clipper files its statistics in its state."""
  return {name: value}


def unnamed(mapping: Mapping[str, Any]) -> Any:
  """The single value of a ``{name: value}`` mapping made by :func:`named`."""
  (value,) = mapping.values()
  return value


def min_factor(factors: Sequence[jax.Array], axis_name=None) -> jax.Array:
  """Smallest element over a list of factor arrays, as float32 (1 if none).

  With ``axis_name``, over all devices (see :func:`_norms.across`).
  """
  if not factors:
    return jnp.ones([], jnp.float32)
  mins = [jnp.min(f, initial=1) for f in factors]
  return jnp.min(
    _norms.stack_scalars(_norms.across(mins, "min", axis_name), jnp.float32)
  )


def fraction_true(flags: Sequence[jax.Array], axis_name=None) -> jax.Array:
  """Fraction of True elements over a list of boolean arrays (float32).

  With ``axis_name``, over all devices (see :func:`_norms.global_size`).
  """
  n = _norms.global_size(flags, axis_name)
  if n == 0:
    return jnp.zeros([], jnp.float32)
  hits = [jnp.sum(f, dtype=jnp.float32) for f in flags]
  hits = _norms.stack_scalars(_norms.across(hits, "sum", axis_name))
  return jnp.sum(hits) / n


def _unwrap(x: Any) -> Any:
  """Unwraps Flax NNX variables (``OptArray`` etc.) without importing flax."""
  get = getattr(x, "get_value", None)
  if get is not None and type(x).__module__.startswith("flax"):
    return get()
  return x


def stats(opt_state: Any) -> dict[str, Any]:
  """Statistics of every optaxclip clipper inside an optimizer state.

  Looks through any nesting: :func:`optax.chain`, :func:`optax.named_chain`,
  :func:`optax.inject_hyperparams`, :class:`optax.MultiSteps`,
  :func:`optax.masked`, :func:`optax.partition`, wrappers such as
  :func:`optaxclip.skip_nonfinite`, and the ``opt_state`` of a Flax
  ``nnx.Optimizer`` (its variable wrappers are unwrapped). Works on concrete
  and traced states alike, so a jitted step can return it.

  Duplicate names are made unique in traversal order: ``clip_by_global_norm``,
  ``clip_by_global_norm_1``, ...

  Args:
    opt_state: an optimizer state.

  Returns:
    ``{name: ClipStats}`` (or the richer statistics type of a strategy that
    has one), in traversal order.

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> tx = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.sgd(0.1))
    >>> state = tx.init({"w": jnp.zeros(2)})
    >>> _, state = tx.update({"w": jnp.array([3.0, 4.0])}, state)
    >>> s = optaxclip.stats(state)["clip_by_global_norm"]
    >>> float(s.norm_before), float(s.norm_after), float(s.clipped)
    (5.0, 1.0, 1.0)
  """
  types = tuple(_STATS_TYPES)
  found = jax.tree.leaves_with_path(
    opt_state, is_leaf=lambda x: isinstance(x, types)
  )
  out: dict[str, Any] = {}
  for path, node in found:
    if not isinstance(node, types):
      continue
    base = _paths._key_str(path[-1]) if path else type(node).__name__
    key, k = base, 0
    while key in out:
      k += 1
      key = f"{base}_{k}"
    out[key] = type(node)(*(_unwrap(f) for f in node))
  return out


ApplyFn = Callable[[Any, Any, ClipStats], tuple[Any, ClipStats]]


def stateless_clipper(
  name: str, apply: ApplyFn
) -> optax.GradientTransformationExtraArgs:
  """Wires ``apply(updates, params, prev_stats)`` into a transformation.

  The state is a :class:`ClipState` holding ``{name: ClipStats}``; unknown
  extra arguments are accepted and ignored.
  """
  _validation.check_name(name)

  @unshared
  def init_fn(params):
    del params
    return ClipState(named(name, init_stats()))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    updates, new = apply(updates, params, unnamed(state.stats))
    return updates, ClipState(named(name, new))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def unique_buffers(tree: Any) -> Any:
  """``tree`` with every array that repeats an earlier leaf copied.

  A tree that holds one array in several leaves cannot be donated to a
  jitted step (``donate_argnums``): XLA refuses to donate the same buffer
  twice. Everything else is returned as is.
  """
  seen: set[int] = set()

  def fresh(x):
    if isinstance(x, jax.Array) and not _validation._is_traced(x):
      if id(x) in seen:
        return jnp.array(x, copy=True)
      seen.add(id(x))
    return x

  return jax.tree.map(fresh, tree)


def unshared(init_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
  """Decorates an ``init`` so that no two state leaves share a buffer.

  See :func:`unique_buffers`: the state can then be donated.
  """

  @functools.wraps(init_fn)
  def wrapped(params):
    return unique_buffers(init_fn(params))

  return wrapped
