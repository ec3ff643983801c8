# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Seeing and choosing: norm monitors, threshold rules, calibration, diagnosis.

Everything here reads statistics that the transformations already keep:

* :func:`monitor_norms` records per-leaf or per-layer gradient norms (and
  optional EMAs) in its state and passes the updates through unchanged;
* :class:`StatsHistory` accumulates :func:`optaxclip.stats` on the host and
  exports CSV or JSON lines;
* :func:`suggest_threshold` turns observed norms into thresholds by the
  rules of the literature, each with the fraction of steps it would clip;
* :func:`calibrate` runs a few warm-up steps and reports all of the above;
* :func:`diagnose` writes plain-sentence findings (vanishing or exploding
  norms, zero or non-finite gradients, clip rates near 0 or 1).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import math
import os
import re
import sys
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optaxclip import _norms
from optaxclip import _paths
from optaxclip import _stats
from optaxclip import _validation

# ---------------------------------------------------------------------------
# monitor_norms
# ---------------------------------------------------------------------------

_ROOT = "(root)"
_OTHER = "(other)"
_BY_MODES = ("leaf", "layer")


@jax.tree_util.register_pytree_with_keys_class
class PathMap(Mapping):
  """A read-only ``{path: scalar}`` mapping stored as one vector.

  The paths are static tree structure (the pytree's auxiliary data) and the
  values are a single array leaf of shape ``[len(paths)]``. A monitor of
  thousands of leaves therefore adds one output to a jitted step instead of
  thousands of scalars, which compiles several times faster and transfers in
  one piece; it still reads like a dict: ``norms["dense/kernel"]``,
  ``dict(norms)``, ``norms.items()``.

  Attributes:
    paths: the keys, in order.
    vector: the values, one vector (the only leaf).
  """

  __slots__ = ("_index", "paths", "vector")

  def __init__(self, paths: Sequence[str], vector: Any):
    self.paths = tuple(paths)
    self.vector = vector  # anything while JAX rebuilds trees; else [n]
    self._index = {p: i for i, p in enumerate(self.paths)}

  def tree_flatten_with_keys(self):
    return ((jax.tree_util.GetAttrKey("vector"), self.vector),), self.paths

  def tree_flatten(self):
    return (self.vector,), self.paths

  @classmethod
  def tree_unflatten(cls, paths, children):
    return cls(paths, children[0])

  def array(self) -> jax.Array:
    """The values as one array (unwrapped from Flax NNX variables)."""
    return _stats._unwrap(self.vector)

  def __getitem__(self, path: str) -> jax.Array:
    return self.array()[self._index[path]]

  def __iter__(self):
    return iter(self.paths)

  def __len__(self) -> int:
    return len(self.paths)

  def __contains__(self, path: object) -> bool:
    return path in self._index

  def __eq__(self, other: object) -> bool:
    """Same paths and equal values (as dicts of scalars compare)."""
    if not isinstance(other, PathMap):
      return NotImplemented
    if self.paths != other.paths:
      return False
    a, b = self.vector, other.vector
    return a is b or bool(np.all(a == b))

  __hash__ = None  # type: ignore[assignment]  # mutable-like, as dict

  def __repr__(self) -> str:
    try:
      vals = np.asarray(self.array()).tolist()
      body = ", ".join(f"{p!r}: {v:.4g}" for p, v in zip(self.paths, vals))
    except Exception:  # traced, or not an array
      body = ", ".join(repr(p) for p in self.paths)
    return f"PathMap({{{body}}})"


def _register_with_flax() -> None:
  """Teaches ``flax.serialization`` PathMap, if the user has imported it.

  Called when a monitor is built and initialised, so that
  ``flax.serialization.to_bytes`` of an optimizer state works without
  optaxclip importing flax itself. Orbax needs nothing: it reads the pytree.
  """
  ser = sys.modules.get("flax.serialization")
  if ser is None or PathMap in getattr(ser, "_STATE_DICT_REGISTRY", {}):
    return

  def to_state(m: PathMap) -> dict[str, Any]:
    return {"vector": ser.to_state_dict(m.vector)}

  def from_state(target: PathMap, state: dict[str, Any]) -> PathMap:
    vec = ser.from_state_dict(target.vector, state["vector"], name="vector")
    return PathMap(target.paths, vec)

  ser.register_serialization_state(PathMap, to_state, from_state)


@_stats.register_stats_type
class MonitorStats(NamedTuple):
  """What :func:`monitor_norms` saw on its last step.

  The per-path fields are :class:`PathMap` objects: read-only mappings
  keyed by parameter path (or group name) whose paths are part of the
  state's tree structure, never leaves, and whose values are one float32
  vector.

  Attributes:
    norms: ``{path: norm}`` of the last step's updates.
    ema: ``{path: EMA of the norm}``; NaN everywhere when ``ema=None``, and
      NaN for a path until its first finite norm.
    global_norm: norm of all the updates together.
    global_ema: EMA of ``global_norm`` (NaN when ``ema=None``).
    nonfinite_count: steps so far whose updates were NaN or Inf. A float64
      norm beyond the float32 range (about 3.4e38) is recorded as ``inf``
      in ``norms`` / ``global_norm`` (the statistics are float32) but is
      not counted here, since nothing was non-finite.
    step: number of updates seen so far.

  The counters are int32 and saturate at 2**31 - 1 (as
  :func:`optax.safe_increment`); they never wrap.
  """

  norms: PathMap
  ema: PathMap
  global_norm: jax.Array
  global_ema: jax.Array
  nonfinite_count: jax.Array
  step: jax.Array


class MonitorState(NamedTuple):
  """State of :func:`monitor_norms`.

  Attributes:
    stats: ``{name: MonitorStats}``; the name is the monitor's ``name=``.
  """

  stats: dict[str, MonitorStats]


def _check_by(by: Any, fn: str) -> Any:
  """Validates ``by``: a mode string or ordered path rules."""
  if isinstance(by, str):
    return _validation.check_choice(by, "by", fn, _BY_MODES)
  if isinstance(by, Mapping):
    rules = list(by.items())
  elif isinstance(by, Sequence):
    # Patterns, or (pattern, group name or value) pairs as clip_by_layer's.
    rules = [
      tuple(r) if isinstance(r, tuple) and len(r) == 2 else (r, r) for r in by
    ]
  else:
    raise TypeError(
      f"optaxclip.{fn}: `by` must be 'leaf', 'layer', a mapping of path "
      f"patterns to group names or a sequence of patterns, got {by!r}."
    )
  if not rules or not all(isinstance(p, str) for p, _ in rules):
    raise TypeError(
      f"optaxclip.{fn}: `by` rules must be a non-empty mapping or sequence "
      f"of path-pattern strings, got {by!r}."
    )
  return [(p, g if isinstance(g, str) else p) for p, g in rules]


def _layer_of(path: str) -> str:
  head, sep, _ = path.rpartition("/")
  return head if sep else (path or _ROOT)


def _group_leaves(paths: list[str], by: Any, fn: str):
  """Static assignment of leaves to named groups.

  Returns:
    ``(names, group_of_leaf)``: group names in order of first appearance and
    each leaf's index into them.
  """
  if by == "leaf":
    keys = [p or _ROOT for p in paths]
  elif by == "layer":
    keys = [_layer_of(p) for p in paths]
  elif not paths:  # e.g. the placeholder of optax.tree.map_params
    keys = []
  else:
    which = _paths.assign_rules(paths, [p for p, _ in by], fn, has_default=True)
    keys = [by[k][1] if k >= 0 else _OTHER for k in which]
  index: dict[str, int] = {}
  group_of_leaf = [index.setdefault(k, len(index)) for k in keys]
  return list(index), group_of_leaf


@_norms.documents_partition_specs
def monitor_norms(
  *,
  by: Any = "leaf",
  ema: jax.typing.ArrayLike | None = None,
  ord: _validation.Ord | None = None,
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "monitor_norms",
) -> optax.GradientTransformationExtraArgs:
  r"""Records gradient norms per leaf or per layer; updates pass unchanged.

  For each group :math:`g` of leaves (a leaf, a layer, or the leaves matched
  by one rule) it records

  .. math::

    n_g = \big\lVert (u^{(l)})_{l \in g} \big\rVert_p, \qquad
    m_g \leftarrow \beta\, m_g + (1 - \beta)\, n_g,

  where the EMA :math:`m_g` starts at the first finite :math:`n_g` and a
  non-finite norm never enters it. The norms come from the same per-leaf
  reductions as the per-tensor clippers (small leaves in buckets, equal
  mid-sized leaves 16 to a kernel), and the updates pass through untouched.
  With Adam at 20M parameters on a 2-core CPU it added nothing measurable to
  the step at 10 and 300 leaves (0.92-1.03x). At 3000 leaves it measured
  0.9-1.5x across runs (see ``benchmarks/README.md``). Read the norms with
  :func:`optaxclip.stats`, keyed by path, and accumulate them on the host
  with :class:`StatsHistory`.

  The state's structure holds the parameter paths, so it depends on the
  parameters' structure (never on hyperparameter values):
  :func:`optax.tree.map_params`, which initialises with a placeholder that
  has no leaves, cannot map over it. To build sharding specs of such a
  state, use ``jax.eval_shape(tx.init, params)``; the monitor's vectors are
  small and can be replicated.

  Args:
    by: how leaves are grouped: ``"leaf"`` (default, one norm per leaf,
      named by its path), ``"layer"`` (leaves sharing their path without the
      last segment, e.g. ``dense/kernel`` and ``dense/bias`` form
      ``dense``), or ordered path rules as in
      :func:`optaxclip.clip_by_layer`: a sequence of patterns (each names its
      group), or a mapping (or sequence of pairs) of patterns to group names
      (a non-string value, such as a threshold, names the group by its
      pattern). The first
      matching rule wins; leaves no rule matches form the group
      ``"(other)"``. A top-level array's path is ``"(root)"``.
    ema: decay :math:`\beta \in [0, 1]` of the per-group EMAs, or None (no
      EMA: the ``ema`` fields hold NaN, so the state's structure is the
      same either way).
    ord: the norm: ``None`` or 2 for L2 (default), 1, or ``"inf"``. It is
      structural: ``None`` keeps :func:`optax.inject_hyperparams` from
      turning it into an array.
    axis_name: a mapped axis name (``shard_map``) across which the updates
      are sharded; the norms are reduced across it.
    partition_specs: PARTITION_SPECS
    name: key of this monitor's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`MonitorState` holding ``{name: MonitorStats}``.

  Raises:
    ValueError: a rule that matches no path (at ``init``/``update``), or
      updates whose paths differ from those of the ``init`` parameters.

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> params = {"dense": {"kernel": jnp.zeros(2), "bias": jnp.zeros(())}}
    >>> tx = optax.chain(optaxclip.monitor_norms(ema=0.9), optax.sgd(0.1))
    >>> grads = {"dense": {"kernel": jnp.array([3.0, 4.0]),
    ...                    "bias": jnp.array(12.0)}}
    >>> _, state = tx.update(grads, tx.init(params))
    >>> s = optaxclip.stats(state)["monitor_norms"]
    >>> {k: float(v) for k, v in s.norms.items()}
    {'dense/bias': 12.0, 'dense/kernel': 5.0}
    >>> float(s.global_norm), float(s.ema["dense/kernel"])
    (13.0, 5.0)

  Edge cases:
    ===================== ==================================================
    Case                  Result
    ===================== ==================================================
    NaN / Inf gradients   recorded as such in ``norms`` / ``global_norm``;
                          the EMAs keep their previous value and
                          ``nonfinite_count`` counts the step
    zero gradients        norms 0 (the EMAs move towards 0)
    no leaves             empty ``PathMap`` fields, ``global_norm`` 0
    bf16 / f16 leaves     norms accumulated in float32
    integer leaves        ``TypeError`` naming the dtype
    ===================== ==================================================
  """
  fn = "monitor_norms"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  by = _check_by(by, fn)
  if ema is not None:
    _validation.check_threshold(ema, "ema", fn, allow_schedule=False, upper=1.0)
  ord = _validation.check_ord(ord, fn)
  _validation.check_name(name)
  _register_with_flax()

  def plan(tree):
    with_paths = jax.tree.leaves_with_path(tree)
    paths = [_paths.path_str(p) for p, _ in with_paths]
    leaves = [x for _, x in with_paths]
    names, group_of_leaf = _group_leaves(paths, by, fn)
    return leaves, names, group_of_leaf

  @_stats.unshared
  def init_fn(params):
    _register_with_flax()
    _, names, _ = plan(params)
    nan = jnp.full([], jnp.nan, jnp.float32)
    nans = jnp.full([len(names)], jnp.nan, jnp.float32)
    s = MonitorStats(
      norms=PathMap(names, nans),
      ema=PathMap(names, nans),
      global_norm=nan,
      global_ema=nan,
      nonfinite_count=jnp.zeros([], jnp.int32),
      step=jnp.zeros([], jnp.int32),
    )
    return MonitorState(_stats.named(name, s))

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    prev = _stats.unnamed(state.stats)
    leaves, names, group_of_leaf = plan(updates)
    if tuple(names) != prev.norms.paths:
      raise ValueError(
        f"optaxclip.{fn} (name={name!r}): the updates' groups "
        f"{sorted(names)[:6]} differ from those at init "
        f"{sorted(prev.norms.paths)[:6]}; call `init` with parameters of the "
        "same structure as the updates."
      )
    _validation.check_leaves(leaves, fn)
    if leaves:
      axes = _norms.layout(axis_name, partition_specs, fn, updates)
      per_leaf = _norms.leaf_powers(leaves, ord, axis_name=axes)
      # Passed through unchanged, but tied to the norms (see `_norms.tie`).
      updates = jax.tree.unflatten(
        jax.tree.structure(updates), _norms.tie(leaves, per_leaf)
      )
      powers = _norms.stack_scalars(per_leaf)
    else:
      powers = jnp.zeros([0], jnp.float32)
    if len(names) == len(leaves):  # one leaf per group, in order
      gpow = powers
    else:
      seg = np.asarray(group_of_leaf, np.int32)
      reduce = jax.ops.segment_max if ord == "inf" else jax.ops.segment_sum
      gpow = reduce(powers, seg, len(names))
      if ord == "inf":
        gpow = jnp.maximum(gpow, 0)
    norms = _stats.f32(_norms.root(gpow, ord))
    wide = _norms.root(_norms.combine(gpow, ord), ord)  # the leaves' precision
    total = _stats.f32(wide)

    def smooth(old, new):
      if ema is None:
        return old
      beta = jnp.asarray(ema, jnp.float32)
      mixed = jnp.where(jnp.isnan(old), new, beta * old + (1 - beta) * new)
      return jnp.where(jnp.isfinite(new), mixed, old)

    new = MonitorStats(
      norms=PathMap(names, norms),
      ema=PathMap(names, smooth(prev.ema.array(), norms)),
      global_norm=total,
      global_ema=smooth(prev.global_ema, total),
      # Counts non-finite updates, not float64 norms beyond float32 (which
      # are recorded as inf); saturates at the int32 maximum.
      nonfinite_count=jnp.where(
        jnp.isfinite(wide),
        prev.nonfinite_count,
        optax.safe_increment(prev.nonfinite_count),
      ),
      step=optax.safe_increment(prev.step),
    )
    (new,) = _stats.compute_together(
      new
    )  # one kernel per shape, not one per field
    return updates, MonitorState(_stats.named(name, new))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------------------
# StatsHistory
# ---------------------------------------------------------------------------


def _flatten_stats(prefix: str, value: Any, out: dict[str, Any]) -> None:
  """Flattens statistics to ``{"a/b/c": scalar}`` (arrays as they are)."""
  if isinstance(value, PathMap):
    out[prefix] = value  # expanded after the transfer, in one piece
  elif isinstance(value, Mapping):
    for k, v in value.items():
      _flatten_stats(f"{prefix}/{k}" if prefix else str(k), v, out)
  elif hasattr(value, "_fields"):  # a NamedTuple such as ClipStats
    for f in value._fields:
      _flatten_stats(f"{prefix}/{f}" if prefix else f, getattr(value, f), out)
  elif value is not None:
    out[prefix] = value


def _to_floats(flat: Mapping[str, Any]) -> dict[str, float]:
  """Host floats of flattened statistics, fetched in one transfer."""
  raw = [v.array() if isinstance(v, PathMap) else v for v in flat.values()]
  values = jax.device_get(raw)
  out: dict[str, float] = {}
  for (key, orig), v in zip(flat.items(), values):
    a = np.asarray(v)
    if isinstance(orig, PathMap):
      for p, x in zip(orig.paths, a.ravel()):
        out[f"{key}/{p}"] = float(x)
      continue
    if a.size == 1:
      out[key] = float(a.reshape(()).real)
    else:
      for i, x in enumerate(a.ravel()):
        out[f"{key}/{i}"] = float(np.real(x))
  return out


def _stats_fields() -> frozenset[str]:
  """Field names of every public statistics type (``ClipStats``, ...)."""
  import optaxclip  # here: the package imports this module

  out: set[str] = set()
  for name in optaxclip.__all__:
    obj = getattr(optaxclip, name, None)
    if name.endswith("Stats") and hasattr(obj, "_fields"):
      out.update(obj._fields)
  return frozenset(out)


def _to_float(v: Any, key: str, where: str) -> float:
  """A stored value as a float ("nan", "inf" included), or a ValueError."""
  try:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
      raise TypeError
    return float(v)
  except (TypeError, ValueError):
    raise ValueError(
      f"optaxclip.StatsHistory{where}: the value of {key!r} is not a number: "
      f"{v!r}."
    ) from None


def _encode(v: float) -> float | str:
  return v if math.isfinite(v) else repr(v)  # "nan", "inf", "-inf"


def _check_step(step: Any, where: str = "") -> int:
  """``step`` as an int; a ValueError for a fraction, NaN or non-scalar."""
  try:
    a = np.asarray(step)
  except Exception:  # any object that is not array-like
    a = np.asarray(None)
  ok = a.shape == () and a.dtype.kind in "iuf"
  if ok and a.dtype.kind == "f":
    ok = bool(np.isfinite(a)) and float(a) == int(a)
  if not ok:
    raise ValueError(
      f"optaxclip.StatsHistory{where}: `step` must be an integer, got {step!r}."
    )
  return int(a)


class StatsHistory:
  """Host-side record of statistics and scalars, one row per step.

  A jitted training step returns ``optaxclip.stats(opt_state)`` with its
  loss (no host callbacks); one line per step accumulates it here. Each
  statistics field is stored as ``"<name>/<field>"`` (e.g.
  ``"clip_by_global_norm/norm_before"``), each per-path entry of a monitor
  as ``"<name>/<field>/<path>"`` (e.g. ``"monitor_norms/norms/dense/bias"``)
  and each scalar under its keyword (``"loss"``). Appending twice with the
  same step fills in the same row, so validation metrics can arrive later.

  A clipper's name may hold ``/`` (``name="enc/clip"`` is stored as
  ``"enc/clip/norm_before"``, ...): :func:`diagnose` and :mod:`optaxclip.plot`
  report it under its full name. A history read back from a file no longer
  knows the names, so there the name ends before the first segment that is
  a statistics field (``norm_before``, ``threshold``, ``norms``, ...); a
  name with such a segment (``"enc/threshold/x"``) reads back split there.

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> tx = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.sgd(0.1))
    >>> state = tx.init(jnp.zeros(2))
    >>> history = optaxclip.StatsHistory()
    >>> for step in range(3):
    ...   _, state = tx.update(jnp.array([3.0, 4.0]) * step, state)
    ...   history.append(step, optaxclip.stats(state), loss=1.0 / (step + 1))
    >>> history.append(2, val_loss=0.25)
    >>> history.series("clip_by_global_norm/norm_before")
    array([ 0.,  5., 10.])
    >>> history.series("val_loss")
    array([ nan,  nan, 0.25])
    >>> history.steps
    array([0, 1, 2])
  """

  def __init__(self) -> None:
    self._steps: list[int] = []
    self._rows: list[dict[str, float]] = []
    self._row_of_step: dict[int, int] = {}
    self._keys: dict[str, None] = {}
    self._names: dict[str, None] = {}  # the names of appended statistics

  def append(
    self, step: Any, stats: Mapping[str, Any] | None = None, **scalars: Any
  ) -> None:
    """Records one step.

    Args:
      step: the training step: an int or an integer scalar array (a float
        is accepted only when it is a whole number: ``1.7`` is an error).
      stats: the dict returned by :func:`optaxclip.stats` (arrays on any
        device; fetched in one transfer and converted to floats).
      **scalars: other values of this step, e.g. ``loss=...``; a dict value
        is flattened like the statistics.
    """
    flat: dict[str, Any] = {}
    if stats is not None:
      _flatten_stats("", stats, flat)
      for name in stats:
        self._names.setdefault(str(name), None)
    for k, v in scalars.items():
      _flatten_stats(k, v, flat)
    self._add_row(_check_step(step), _to_floats(flat))

  def _add_row(self, step: int, flat: Mapping[str, float]) -> None:
    i = self._row_of_step.get(step)
    if i is None:
      i = self._row_of_step[step] = len(self._rows)
      self._steps.append(step)
      self._rows.append({})
    self._rows[i].update(flat)
    for k in flat:
      self._keys.setdefault(k, None)

  @property
  def steps(self) -> np.ndarray:
    """The recorded steps, in the order they were first appended."""
    return np.asarray(self._steps, dtype=np.int64)

  def keys(self) -> list[str]:
    """Every recorded key, in order of first appearance."""
    return list(self._keys)

  def series(self, key: str) -> np.ndarray:
    """Values of ``key`` at every step (float64; NaN where a step lacks it)."""
    return np.fromiter(
      (r.get(key, math.nan) for r in self._rows), np.float64, len(self._rows)
    )

  def _present(self, key: str) -> np.ndarray:
    """Whether each step recorded ``key`` (a recorded NaN counts)."""
    return np.fromiter((key in r for r in self._rows), bool, len(self._rows))

  def __len__(self) -> int:
    return len(self._rows)

  def __contains__(self, key: object) -> bool:
    return key in self._keys

  def __repr__(self) -> str:
    return f"StatsHistory({len(self)} steps, {len(self._keys)} keys)"

  def to_csv(self, path: str | os.PathLike) -> None:
    """Writes a CSV file: a ``step`` column, then one column per key.

    A missing value is an empty cell; non-finite values are ``nan``,
    ``inf`` and ``-inf``.
    """
    keys = self.keys()
    with open(path, "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["step", *keys])
      for s, r in zip(self._steps, self._rows):
        w.writerow([s, *(repr(r[k]) if k in r else "" for k in keys)])

  @classmethod
  def from_csv(cls, path: str | os.PathLike) -> StatsHistory:
    """Reads a file written by :meth:`to_csv`."""
    out = cls()
    with open(path, newline="") as f:
      rows = csv.reader(f)
      header = next(rows, None)
      if not header or header[0] != "step":
        raise ValueError(f"{path}: not a StatsHistory CSV (no 'step' column).")
      keys = header[1:]
      for row in rows:
        where = f".from_csv: {path} line {rows.line_num}"
        if not row:
          continue
        if len(row) > len(header):
          raise ValueError(
            f"optaxclip.StatsHistory{where}: {len(row)} cells, but the "
            f"header has {len(header)}."
          )
        vals = {
          k: _to_float(v, k, where) for k, v in zip(keys, row[1:]) if v != ""
        }
        out._add_row(_check_step(_to_float(row[0], "step", where), where), vals)
      for k in keys:
        out._keys.setdefault(k, None)
    return out

  def to_jsonl(self, path: str | os.PathLike) -> None:
    """Writes one JSON object per step: ``{"step": 3, "loss": 0.1, ...}``.

    Non-finite values are written as the strings ``"nan"``, ``"inf"`` and
    ``"-inf"`` (plain JSON has no such numbers); missing keys are omitted.
    """
    with open(path, "w") as f:
      for s, r in zip(self._steps, self._rows):
        row = {"step": s, **{k: _encode(v) for k, v in r.items()}}
        f.write(json.dumps(row, allow_nan=False) + "\n")

  @classmethod
  def from_jsonl(cls, path: str | os.PathLike) -> StatsHistory:
    """Reads a file written by :meth:`to_jsonl`."""
    out = cls()
    with open(path) as f:
      for number, line in enumerate(f, 1):
        if not line.strip():
          continue
        where = f".from_jsonl: {path} line {number}"
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(
            f"optaxclip.StatsHistory{where}: not JSON ({e.msg})."
          ) from None
        if not isinstance(row, dict) or "step" not in row:
          raise ValueError(
            f"optaxclip.StatsHistory{where}: expected an object with a "
            f"'step' key, as to_jsonl writes, got {line.strip()[:80]!r}."
          )
        step = _check_step(row.pop("step"), where)
        out._add_row(step, {k: _to_float(v, k, where) for k, v in row.items()})
    return out

  # Helpers for diagnose() and optaxclip.plot -------------------------------

  def _fields(self) -> dict[str, dict[str, list[str]]]:
    """``{name: {field: [path, ...]}}`` of the statistics keys.

    Scalar fields have the path list ``[""]``; keys without a ``/`` (user
    scalars such as ``loss``) are left out.
    """
    out: dict[str, dict[str, list[str]]] = {}
    known = _stats_fields()
    names = sorted(self._names, key=len, reverse=True)
    for key in self._keys:
      parts = key.split("/")
      if len(parts) < 2:
        continue
      # A name may hold "/" (``name="enc/clip"``). The names appended with
      # ``stats`` are known; for a history read from a file, the field is
      # the first segment after the name that is a statistics field.
      at = next(
        (n.count("/") + 1 for n in names if key.startswith(n + "/")),
        None,
      )
      if at is None or at >= len(parts):
        at = next((i for i in range(1, len(parts)) if parts[i] in known), 1)
      name, field = "/".join(parts[:at]), parts[at]
      path = "/".join(parts[at + 1 :])
      out.setdefault(name, {}).setdefault(field, []).append(path)
    return out

  def _clippers(self) -> list[str]:
    """Names whose statistics have a scalar ``norm_before`` (clippers)."""
    return [
      n for n, f in self._fields().items() if "" in f.get("norm_before", ())
    ]

  def _monitors(self) -> list[str]:
    """Names whose statistics have per-path ``norms`` (monitors)."""
    return [
      n for n, f in self._fields().items() if any(p for p in f.get("norms", ()))
    ]


# ---------------------------------------------------------------------------
# suggest_threshold
# ---------------------------------------------------------------------------

METHODS: tuple[str, ...] = ("mean_multiple", "percentile", "mean_std")


class ThresholdSuggestion(NamedTuple):
  """A suggested threshold and what it would have done.

  Attributes:
    method: ``"mean_multiple"``, ``"percentile"`` or ``"mean_std"``.
    value: the threshold.
    clip_fraction: fraction of the observed (finite) norms above ``value``,
      i.e. of the steps it would have clipped.
    n: number of finite norms it was computed from.
    rule: the rule in words, e.g. ``"5 x mean"``.
  """

  method: str
  value: float
  clip_fraction: float
  n: int
  rule: str

  def __str__(self) -> str:
    return (
      f"{self.rule}: {self.value:.4g} (would clip "
      f"{100 * self.clip_fraction:.1f}% of {self.n} steps)"
    )


def _finite(norms: Any) -> np.ndarray:
  a = np.asarray(norms, dtype=np.float64).ravel()
  return a[np.isfinite(a)]


def _suggest_one(
  a: np.ndarray, method: str, factor: float, p: float, k: float
) -> ThresholdSuggestion:
  if method == "mean_multiple":
    value, rule = factor * a.mean(), f"{factor:g} x mean"
  elif method == "percentile":
    value, rule = float(np.percentile(a, p)), f"{p:g}th percentile"
  else:
    value, rule = a.mean() + k * a.std(), f"mean + {k:g} std"
  value = float(value)
  return ThresholdSuggestion(
    method, value, float(np.mean(a > value)), int(a.size), rule
  )


def suggest_threshold(
  norms: Any,
  method: str = "mean_multiple",
  *,
  factor: float = 5.0,
  p: float = 10.0,
  k: float = 3.0,
) -> Any:
  r"""Suggests a clipping threshold from observed gradient norms.

  The rules of the literature, each returned with the fraction of the
  observed steps it would have clipped (a norm strictly above the
  threshold is clipped, as in every optaxclip clipper):

  ================= =================================== ====================
  method            threshold                           typical clip rate
  ================= =================================== ====================
  ``mean_multiple`` :math:`c\,\bar n` (``factor`` c,    only spikes
                    default 5)
  ``percentile``    the ``p``-th percentile (linear     :math:`1 - p/100`:
                    interpolation; default p = 10)      90% at p = 10
  ``mean_std``      :math:`\bar n + k\,\sigma_n`        only outliers
                    (population std; default k = 3)
  ================= =================================== ====================

  Pascanu et al. (2013) pick the threshold from the average norm and report
  convergence for anything from 0.5x to 10x it; Seetharaman et al. (2020)
  summarise practice as 5-10x the average, which is what ``mean_multiple``
  gives. Their own AutoClip uses the 10th percentile of the norms seen so far
  and re-evaluates it every step, so it clips most steps by design: as a
  *fixed* threshold ``p=10`` clips about 90% of the observed steps, and a
  high percentile (``p=90`` to ``99``) clips only the largest ones; use
  :func:`optaxclip.autoclip` for the adaptive rule. ``mean_std`` is the
  z-score rule of spike detectors (e.g. ZClip) applied once. Norms measured
  early in training are larger than later ones, so thresholds from a
  warm-up are on the generous side.

  Args:
    norms: observed norms: an array of any shape (e.g.
      ``history.series("clip_by_global_norm/norm_before")``), or a mapping
      of path to such arrays for per-layer thresholds. Non-finite values are
      ignored.
    method: ``"mean_multiple"`` (default), ``"percentile"``, ``"mean_std"``
      or ``"all"``.
    factor: multiple of the mean for ``"mean_multiple"`` (> 0).
    p: percentile in [0, 100] for ``"percentile"``.
    k: number of standard deviations for ``"mean_std"`` (>= 0).

  Returns:
    A :class:`ThresholdSuggestion`; with ``method="all"``, a dict of them
    keyed by method; for mapping input, a dict of those keyed by path.

  Raises:
    ValueError: an unknown method, bad parameters, a negative norm, or no
      finite norm.

  Example:
    >>> import numpy as np, optaxclip
    >>> norms = np.arange(1.0, 11.0)  # 1, 2, ..., 10; mean 5.5
    >>> s = optaxclip.suggest_threshold(norms, "mean_multiple", factor=1.0)
    >>> s.value, s.clip_fraction
    (5.5, 0.5)
    >>> print(optaxclip.suggest_threshold(norms, "percentile", p=90))
    90th percentile: 9.1 (would clip 10.0% of 10 steps)
    >>> sorted(optaxclip.suggest_threshold(norms, "all"))
    ['mean_multiple', 'mean_std', 'percentile']

  References:
    Pascanu et al., `On the difficulty of training recurrent neural networks
    <https://arxiv.org/abs/1211.5063>`_, 2013

    Seetharaman et al., `AutoClip: Adaptive Gradient Clipping for Source
    Separation Networks <https://arxiv.org/abs/2007.14469>`_, 2020

    Kumar et al., `ZClip: Adaptive Spike Mitigation for LLM Pre-Training
    <https://arxiv.org/abs/2504.02507>`_, 2025
  """
  fn = "suggest_threshold"
  _validation.check_choice(method, "method", fn, (*METHODS, "all"))
  _validation.check_threshold(
    factor, "factor", fn, allow_schedule=False, positive=True
  )
  _validation.check_threshold(p, "p", fn, allow_schedule=False, upper=100.0)
  _validation.check_threshold(k, "k", fn, allow_schedule=False)
  factor, p, k = float(factor), float(p), float(k)

  def one(values: Any, where: str) -> Any:
    a = _finite(values)
    if a.size == 0:
      raise ValueError(
        f"optaxclip.{fn}: no finite norm{where} to suggest a threshold from."
      )
    if a.min() < 0:
      raise ValueError(
        f"optaxclip.{fn}: norms are >= 0, but the norms{where} hold "
        f"{int(np.sum(a < 0))} negative values (the smallest {a.min():g}); "
        "pass the recorded norms (e.g. a `norm_before` series)."
      )
    if method == "all":
      return {m: _suggest_one(a, m, factor, p, k) for m in METHODS}
    return _suggest_one(a, method, factor, p, k)

  if isinstance(norms, Mapping):
    return {path: one(v, f" for {path!r}") for path, v in norms.items()}
  return one(norms, "")


# ---------------------------------------------------------------------------
# diagnose
# ---------------------------------------------------------------------------


class Finding(NamedTuple):
  """One finding of :func:`diagnose`; ``str(finding)`` is its sentence.

  Attributes:
    kind: ``"nonfinite"``, ``"exploding"``, ``"vanishing"``, ``"zero"``,
      ``"tight"`` (clip rate near 1) or ``"loose"`` (clip rate near 0).
    paths: the parameter paths (or clipper names) concerned.
    message: the finding in plain sentences.
  """

  kind: str
  paths: tuple[str, ...]
  message: str

  def __str__(self) -> str:
    return self.message


_KIND_ORDER = ("nonfinite", "exploding", "vanishing", "zero", "tight", "loose")


def _natural_key(s: str) -> list[Any]:
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _names(items: Sequence[str], n: int = 4) -> str:
  """'a', 'b' and 3 more."""
  shown = [f"'{x}'" for x in items[:n]]
  rest = len(items) - len(shown)
  if rest > 0:
    return ", ".join(shown) + f" and {rest} more"
  if len(shown) > 1:
    return ", ".join(shown[:-1]) + " and " + shown[-1]
  return shown[0] if shown else ""


def _loglinear(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
  """Slope of log(y) against x and the fit's R^2 (y > 0)."""
  ly = np.log(y)
  if np.ptp(x) == 0:
    return 0.0, 0.0
  slope, icept = np.polyfit(x, ly, 1)
  ss = np.sum((ly - ly.mean()) ** 2)
  r2 = 1.0 - np.sum((ly - (slope * x + icept)) ** 2) / ss if ss > 0 else 0.0
  return float(slope), float(r2)


def _fmt(v: float) -> str:
  return f"{v:.3g}"


class _Series(NamedTuple):
  label: str  # a parameter path, or "the global norm" etc.
  steps: np.ndarray  # steps where the key was recorded
  values: np.ndarray  # values there (may be non-finite)


def _get(history: StatsHistory, key: str, label: str) -> _Series:
  mask = history._present(key)
  return _Series(label, history.steps[mask], history.series(key)[mask])


def _time_trend(s: _Series, min_steps: int):
  """(ratio last/first, per-step factor, first, last) of a geometric trend."""
  ok = np.isfinite(s.values) & (s.values > 0)
  x, y = s.steps[ok].astype(np.float64), s.values[ok]
  if y.size < min_steps:
    return None
  q = max(1, y.size // 4)
  first, last = float(np.median(y[:q])), float(np.median(y[-q:]))
  slope, r2 = _loglinear(x, y)
  if r2 < 0.5:
    return None
  return last / first, math.exp(slope), first, last, int(x[0]), int(x[-1])


def _depth_families(paths: Sequence[str]) -> dict[str, dict[int, str]]:
  """Families of paths differing in one integer: ``{template: {i: path}}``."""
  fams: dict[str, dict[int, str]] = {}
  for path in paths:
    for m in re.finditer(r"\d+", path):
      tmpl = path[: m.start()] + "{i}" + path[m.end() :]
      fams.setdefault(tmpl, {})[int(m.group())] = path
  return {t: f for t, f in fams.items() if len(f) >= 3}


def _depth_finding(
  label: str,
  ordered: Sequence[str],
  positions: np.ndarray,
  typical: Mapping[str, float],
  growth: float,
  explicit: bool,
) -> Finding | None:
  y = np.array([typical[p] for p in ordered])
  ok = np.isfinite(y) & (y > 0)
  if ok.sum() < 3:
    return None
  x, y = positions[ok].astype(np.float64), y[ok]
  slope, r2 = _loglinear(x, y)
  span = math.exp(slope * (x[-1] - x[0]))
  if r2 < 0.8 or not (span >= growth or span <= 1 / growth):
    return None
  first, last = ordered[0], ordered[-1]
  ratio = max(span, 1 / span)
  per = math.exp(slope)
  grows = span > 1  # larger towards the last path: smaller towards the first
  trend = (
    f"Gradient norms of {label} change geometrically with depth, about "
    f"x{per:.3g} per layer: the median norm of '{first}' is "
    f"{_fmt(typical[first])} against {_fmt(typical[last])} for '{last}' "
    f"({ratio:.3g}x {'smaller' if grows else 'larger'})."
  )
  kind = "vanishing" if grows else "exploding"
  verb = "vanish" if grows else "explode"
  if explicit:
    advice = f" Gradients {verb} on their way back to the first layers: " + (
      "consider residual connections, normalisation or another initialisation."
      if grows
      else "lower the learning rate, or clip per layer "
      "(optaxclip.clip_by_layer)."
    )
  else:
    advice = (
      f" If the index counts from the input, gradients {verb} on their way "
      "back to the first layers."
    )
  return Finding(kind, tuple(ordered), trend + advice)


def diagnose(
  history: Any,
  *,
  order: Sequence[str] | None = None,
  growth: float = 100.0,
  clip_low: float = 0.01,
  clip_high: float = 0.95,
  min_steps: int = 10,
) -> list[Finding]:
  r"""Plain-sentence findings about a training run's gradient statistics.

  It reads the statistics recorded in a :class:`StatsHistory` (from
  :func:`monitor_norms` and any optaxclip clipper) and reports:

  * **non-finite** gradients: the recorded steps with a NaN or Inf norm and
    the paths that were non-finite first;
  * **exploding / vanishing over time**: norms (global or per path) whose
    logarithm follows a straight line in the step (:math:`R^2 \ge 0.5`) and
    that changed by at least ``growth`` times between the first and last
    quarter of the recorded steps;
  * **exploding / vanishing with depth**: among paths that differ only in
    one integer (``layers_0/kernel``, ``layers_1/kernel``, ...), or along
    ``order``, median norms whose logarithm is linear in the index
    (:math:`R^2 \ge 0.8`) and change by at least ``growth`` times from the
    first to the last;
  * **zero** gradients: paths whose norm is exactly 0 at every recorded step
    (unused or frozen parameters) or at some of them;
  * **clip rates** near 1 (``"tight"``: the threshold rescales almost every
    step and acts as a learning rate) or near 0 (``"loose"``: it never acts;
    fine for a guard against rare spikes).

  Args:
    history: a :class:`StatsHistory`, or a :class:`CalibrationReport`.
    order: optional paths (as recorded by a monitor) from the input to the
      output of the network, for the depth check; without it, indexed
      families of paths are used and the sentence says which way is assumed.
    growth: smallest change (a ratio >= 1) that counts as geometric growth
      or decay.
    clip_low: a mean clip rate at or below this is "loose" (in [0, 1],
      below ``clip_high``).
    clip_high: a mean clip rate at or above this is "tight" (in [0, 1]).
    min_steps: fewest recorded steps for the time-trend and clip-rate
      checks (an int >= 1).

  Returns:
    A list of :class:`Finding`, most severe first; empty when nothing was
    found.

  Raises:
    ValueError: ``growth`` < 1, ``min_steps`` < 1, a clip rate outside
      [0, 1] or ``clip_low >= clip_high``, or a path in ``order`` that no
      monitor recorded (the message suggests the closest recorded path).

  Example:
    >>> import numpy as np, optaxclip
    >>> h = optaxclip.StatsHistory()
    >>> for t in range(50):
    ...   h.append(t, {"monitor_norms": {"norms": {
    ...       "encoder/kernel": 1.2 ** t, "embed/table": 0.0}}})
    >>> for f in optaxclip.diagnose(h):
    ...   print(f.kind, f.paths)
    exploding ('encoder/kernel',)
    zero ('embed/table',)
  """
  if isinstance(history, CalibrationReport):
    history = history.history
  if not isinstance(history, StatsHistory):
    raise TypeError(
      "optaxclip.diagnose: expected a StatsHistory or a CalibrationReport, "
      f"got {type(history).__name__}."
    )
  _validation.check_threshold(
    growth, "growth", "diagnose", allow_schedule=False
  )
  if growth < 1:
    raise ValueError(
      f"optaxclip.diagnose: `growth` must be >= 1, got {growth}."
    )
  _check_diagnose_args(clip_low, clip_high, min_steps)
  fields = history._fields()
  if order is not None:
    order = _check_order(order, history, fields)
  findings: list[Finding] = []

  # Series to examine: per-path monitor norms and global norms.
  # A monitor always measures, so a NaN it recorded is a NaN gradient; a
  # clipper may not measure (NaN norms by design), so its non-finite steps
  # are those that raised its nonfinite_count.
  path_series: list[_Series] = []
  global_series: list[_Series] = []
  bad_series: list[_Series] = []
  for name in history._monitors():
    paths = sorted((p for p in fields[name]["norms"] if p), key=_natural_key)
    path_series += [_get(history, f"{name}/norms/{p}", p) for p in paths]
    if "" in fields[name].get("global_norm", ()):
      label = f"the global norm ({name})"
      s = _get(history, f"{name}/global_norm", label)
      global_series.append(s)
      bad_series.append(s._replace(values=~np.isfinite(s.values)))
  for name in history._clippers():
    label = f"the norm before {name}"
    global_series.append(_get(history, f"{name}/norm_before", label))
    bad_series.append(_clipper_nonfinite(history, name, fields[name]))

  findings += _nonfinite_findings(path_series, bad_series)
  findings += _trend_findings(path_series + global_series, growth, min_steps)
  findings += _depth_findings(history, fields, order, growth)
  findings += _zero_findings(path_series, global_series)
  findings += _clip_findings(history, fields, clip_low, clip_high, min_steps)
  findings.sort(key=lambda f: _KIND_ORDER.index(f.kind))
  return findings


def _check_diagnose_args(clip_low: Any, clip_high: Any, min_steps: Any):
  fn = "optaxclip.diagnose"
  if (
    not isinstance(min_steps, (int, np.integer))
    or isinstance(min_steps, bool)
    or min_steps < 1
  ):
    raise ValueError(
      f"{fn}: `min_steps` must be an int >= 1, got {min_steps!r}."
    )
  for name, v in (("clip_low", clip_low), ("clip_high", clip_high)):
    _validation.check_threshold(v, name, "diagnose", allow_schedule=False)
    if not 0 <= float(v) <= 1:
      raise ValueError(
        f"{fn}: `{name}` is a clip rate in [0, 1], got {float(v)}."
      )
  if float(clip_low) >= float(clip_high):
    raise ValueError(
      f"{fn}: `clip_low` ({float(clip_low)}) must be below `clip_high` "
      f"({float(clip_high)})."
    )


def _check_order(order: Any, history: StatsHistory, fields) -> list[str]:
  """``order`` as a list of recorded monitor paths, or a ValueError."""
  fn = "optaxclip.diagnose"
  if isinstance(order, str) or not isinstance(order, Iterable):
    raise TypeError(
      f"{fn}: `order` must be a sequence of paths, got {order!r}."
    )
  order = [str(p) for p in order]
  if len(set(order)) != len(order):
    raise ValueError(f"{fn}: `order` repeats a path: {order}.")
  known = {p for n in history._monitors() for p in fields[n]["norms"] if p}
  missing = [p for p in order if p not in known]
  if missing:
    if not known:
      raise ValueError(
        f"{fn}: `order` names paths, but the history has no per-path norms "
        "(record monitor_norms statistics)."
      )
    hints = [
      f"{p!r} (did you mean {close[0]!r}?)" if close else repr(p)
      for p in missing
      for close in [difflib.get_close_matches(p, sorted(known), n=1)]
    ]
    raise ValueError(
      f"{fn}: paths in `order` that no monitor recorded: "
      f"{', '.join(hints)}. Recorded: "
      f"{_names(sorted(known, key=_natural_key), 8)}."
    )
  return order


def _clipper_nonfinite(history: StatsHistory, name: str, fields) -> _Series:
  """Steps at which a clipper met non-finite updates (True/False values)."""
  if "" in fields.get("nonfinite_count", ()):
    s = _get(history, f"{name}/nonfinite_count", name)
    order = np.argsort(s.steps, kind="stable")
    count = s.values[order]
    rose = np.diff(count, prepend=count[:1]) > 0
    return _Series(name, s.steps[order], rose)
  s = _get(history, f"{name}/norm_before", name)
  return _Series(name, s.steps, np.isinf(s.values))


def _nonfinite_findings(paths: list[_Series], bad: list[_Series]):
  """``paths``: per-path norms; ``bad``: other series, True where bad."""
  first: dict[str, int] = {}
  bad_steps: set[int] = set()
  for s in paths:
    hit = ~np.isfinite(s.values)
    if hit.any():
      bad_steps.update(int(t) for t in s.steps[hit])
      first[s.label] = int(s.steps[hit][0])
  for s in bad:
    bad_steps.update(int(t) for t in s.steps[s.values.astype(bool)])
  if not bad_steps:
    return []
  n_steps = len({int(t) for s in paths + bad for t in s.steps})
  t0 = min(bad_steps)
  msg = (
    f"Non-finite gradients (NaN or Inf) at {len(bad_steps)} of {n_steps} "
    f"recorded steps, first at step {t0}."
  )
  culprits: list[str] = []
  if first:
    t1 = min(first.values())
    culprits = sorted(
      (p for p, t in first.items() if t == t1), key=_natural_key
    )
    msg += (
      f" The first paths affected (step {t1}) were {_names(culprits)}"
      f" ({len(first)} path{'s' if len(first) > 1 else ''} in all)."
    )
  msg += (
    " Find the operation with jax.config.update('jax_debug_nans', True), or "
    "skip such steps with optaxclip.skip_nonfinite."
  )
  return [Finding("nonfinite", tuple(culprits), msg)]


def _trend_findings(series: list[_Series], growth: float, min_steps: int):
  out = []
  for kind in ("exploding", "vanishing"):
    hits = []
    for s in series:
      t = _time_trend(s, min_steps)
      if t is None:
        continue
      ratio = t[0]
      if (kind == "exploding" and ratio >= growth) or (
        kind == "vanishing" and ratio <= 1 / growth
      ):
        hits.append((s, t))
    if not hits:
      continue
    hits.sort(key=lambda h: -abs(math.log(h[1][0])))
    parts = []
    for s, (_, per, a, b, t0, t1) in hits[:3]:
      who = s.label if s.label.startswith("the ") else f"'{s.label}'"
      parts.append(
        f"{who} from {_fmt(a)} to {_fmt(b)} (x{per:.4g} per step, steps "
        f"{t0}-{t1})"
      )
    more = f", and {len(hits) - 3} more" if len(hits) > 3 else ""
    verb = "grew" if kind == "exploding" else "shrank"
    msg = f"Gradient norms {verb} geometrically over training: " + "; ".join(
      parts
    )
    msg += more + "."
    if kind == "exploding":
      msg += (
        " The gradients are exploding: lower the learning rate, or clip "
        "(e.g. optaxclip.clip_by_global_norm with a threshold from "
        "optaxclip.suggest_threshold)."
      )
    else:
      msg += (
        " If the loss has stopped improving, the gradients are vanishing "
        "(saturated activations, dead units, too small an initialisation); "
        "if it has converged, this is expected."
      )
    labels = tuple(s.label for s, _ in hits)
    out.append(Finding(kind, labels, msg))
  return out


def _depth_findings(history, fields, order, growth):
  out = []
  for name in history._monitors():
    paths = [p for p in fields[name]["norms"] if p]
    typical = {}
    for p in paths:
      v = history.series(f"{name}/norms/{p}")
      v = v[np.isfinite(v)]
      typical[p] = float(np.median(v)) if v.size else math.nan
    if order is not None:
      ordered = [p for p in order if p in typical]
      if len(ordered) >= 3:
        f = _depth_finding(
          f"the {len(ordered)} given layers",
          ordered,
          np.arange(len(ordered)),
          typical,
          growth,
          explicit=True,
        )
        if f is not None:
          out.append(f)
      continue
    for tmpl, fam in _depth_families(paths).items():
      idx = sorted(fam)
      f = _depth_finding(
        f"'{tmpl}' (i = {idx[0]}..{idx[-1]})",
        [fam[i] for i in idx],
        np.asarray(idx),
        typical,
        growth,
        explicit=False,
      )
      if f is not None:
        out.append(f)
  return out


def _zero_findings(paths: list[_Series], globals_: list[_Series]):
  always, sometimes = [], []
  for s in paths:
    if not s.values.size:
      continue
    zero = s.values == 0
    if zero.all():
      always.append(s.label)
    elif zero.any():
      sometimes.append((s.label, int(zero.sum()), s.values.size))
  out = []
  if always:
    out.append(
      Finding(
        "zero",
        tuple(always),
        f"{_names(always)} had a zero gradient at every recorded step: "
        "the parameter does not reach the loss (unused, detached by "
        "stop_gradient, or frozen).",
      )
    )
  if sometimes:
    desc = ", ".join(f"'{p}' at {k} of {n}" for p, k, n in sometimes[:4])
    more = f" and {len(sometimes) - 4} more" if len(sometimes) > 4 else ""
    out.append(
      Finding(
        "zero",
        tuple(p for p, _, _ in sometimes),
        f"Some gradients were exactly zero at some steps ({desc}{more} "
        "recorded steps): e.g. rarely used embeddings, dead units, or "
        "steps zeroed upstream.",
      )
    )
  for s in globals_:
    k = int(np.sum(s.values == 0))
    if k:
      out.append(
        Finding(
          "zero",
          (),
          f"The whole gradient was zero at {k} of {s.values.size} recorded "
          f"steps ({s.label}): check the loss and the data of those steps.",
        )
      )
  return out


def _clip_findings(history, fields, low, high, min_steps):
  out = []
  for name in history._clippers():
    f = fields[name]
    # Skipping wrappers record skips, not clips: a low rate is their norm.
    if "" not in f.get("clipped", ()) or "skip_count" in f:
      continue
    rate_s = _get(history, f"{name}/clipped", name)
    rates = rate_s.values[np.isfinite(rate_s.values)]
    if rates.size < min_steps:
      continue
    rate = float(rates.mean())
    norm = history.series(f"{name}/norm_before")
    norm = norm[np.isfinite(norm)]
    thr = (
      history.series(f"{name}/threshold")
      if "" in fields[name].get("threshold", ())
      else np.array([])
    )
    thr = thr[np.isfinite(thr)]
    compare = ""
    if norm.size and thr.size:
      t_med, n_med = float(np.median(thr)), float(np.median(norm))
      compare = (
        f" The median threshold is {_fmt(t_med)} and the median norm "
        f"{_fmt(n_med)}"
      )
      if t_med > 0 and n_med > 0:
        r = n_med / t_med
        compare += (
          f" ({_fmt(r)} times the threshold)."
          if r >= 1
          else f" ({_fmt(1 / r)} times below the threshold)."
        )
      else:
        compare += "."
    if rate >= high:
      msg = (
        f"{name} clipped {100 * rate:.1f}% of {rates.size} recorded steps: "
        "its threshold is too tight, so almost every update is rescaled and "
        "the threshold acts as the learning rate (normalised gradient "
        f"descent).{compare} Raise it (optaxclip.suggest_threshold on the "
        "recorded norms), unless intended (AutoClip with a low percentile "
        "clips most steps by design)."
      )
      out.append(Finding("tight", (name,), msg))
    elif rate <= low:
      msg = (
        f"{name} clipped {100 * rate:.1f}% of {rates.size} recorded steps: "
        f"its threshold is loose and has no effect.{compare} That is fine "
        "for a guard against rare spikes (and by design for spike "
        "detectors); to bound typical steps, lower it."
      )
      out.append(Finding("loose", (name,), msg))
  return out


# ---------------------------------------------------------------------------
# calibrate
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class CalibrationReport:
  """What :func:`calibrate` measured and suggests; ``str()`` is readable.

  Attributes:
    n_steps: warm-up steps taken.
    global_norms: global gradient norm at each step (float64).
    layer_norms: ``{path: norms}`` per group of the ``by=`` grouping.
    suggestions: ``{method: ThresholdSuggestion}`` for the global norm;
      empty when no warm-up step had a finite norm (``str()`` says so).
    layer_suggestions: ``{path: {method: ThresholdSuggestion}}``.
    findings: :func:`diagnose` of the warm-up.
    history: the :class:`StatsHistory` of the warm-up (for the plots).
  """

  n_steps: int
  global_norms: np.ndarray
  layer_norms: dict[str, np.ndarray]
  suggestions: dict[str, ThresholdSuggestion]
  layer_suggestions: dict[str, dict[str, ThresholdSuggestion]]
  findings: list[Finding]
  history: StatsHistory

  def __str__(self) -> str:
    g = self.global_norms
    fin = g[np.isfinite(g)]
    lines = [
      f"optaxclip.calibrate: {self.n_steps} warm-up steps, "
      f"{len(self.layer_norms)} parameter groups",
      f"Global gradient norm: median {_fmt(np.median(fin))}, mean "
      f"{_fmt(fin.mean())}, min {_fmt(fin.min())}, max {_fmt(fin.max())}"
      f" ({g.size - fin.size} non-finite steps)"
      if fin.size
      else "Global gradient norm: no finite value",
      "",
      "Suggested thresholds for the global norm:",
    ]
    if not self.suggestions:
      lines.append(
        f"  none: the gradients were non-finite at all {self.n_steps} "
        "warm-up steps, so there is no norm to suggest a threshold from. "
        "Fix the NaN/Inf first (see the findings; optaxclip.skip_nonfinite "
        "or nonfinite='zero' guard the training meanwhile)."
      )
    w = max([len(s.rule) for s in self.suggestions.values()] + [4])
    if self.suggestions:
      lines.append(f"  {'rule':<{w}}  {'value':>10}  would clip")
    for s in self.suggestions.values():
      lines.append(
        f"  {s.rule:<{w}}  {s.value:>10.4g}  {100 * s.clip_fraction:>9.1f}%"
      )
    if self.layer_norms:
      lines += ["", "Per group (norm median and max; suggested thresholds):"]
      pw = max(len(p) for p in self.layer_norms)
      methods = list(next(iter(self.layer_suggestions.values()), {}))
      head = "".join(f"  {m:>13}" for m in methods)
      lines.append(f"  {'path':<{pw}}  {'median':>10}  {'max':>10}{head}")
      for p in sorted(self.layer_norms, key=_natural_key):
        v = self.layer_norms[p]
        v = v[np.isfinite(v)]
        med = (
          f"{np.median(v):>10.4g}  {v.max():>10.4g}"
          if v.size
          else (f"{'nan':>10}  {'nan':>10}")
        )
        sug = self.layer_suggestions.get(p, {})
        cells = "".join(f"  {sug[m].value:>13.4g}" for m in methods if m in sug)
        lines.append(f"  {p:<{pw}}  {med}{cells}")
    lines += ["", "Findings:"]
    lines += [f"  - {f}" for f in self.findings] or ["  none"]
    return "\n".join(lines)


def calibrate(
  grad_fn: Callable[[Any, Any], Any],
  params: Any,
  batches: Iterable[Any],
  *,
  n_steps: int = 100,
  optimizer: optax.GradientTransformation | None = None,
  by: Any = "layer",
  factor: float = 5.0,
  p: float = 10.0,
  k: float = 3.0,
) -> CalibrationReport:
  """Measures gradient norms over a short warm-up and suggests thresholds.

  ``grad_fn(params, batch) -> grads`` is jitted and run for up to
  ``n_steps`` batches, updating ``params`` with a plain ``optimizer``
  (default Adam at learning rate 1e-4) so the norms are those of the first
  steps of training rather than of the initialisation alone. A step with
  non-finite gradients is recorded and not applied. The global and per-group
  norms (grouped by ``by``, as in :func:`monitor_norms`) then go through
  :func:`suggest_threshold` (every method) and :func:`diagnose`. The caller's
  ``params`` are not modified.

  With Flax NNX, split the model into its graph and parameters and merge
  them inside ``grad_fn``:

  .. code-block:: python

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def grad_fn(params, batch):
      def loss_fn(params):
        model = nnx.merge(graphdef, params, rest)
        return loss(model(batch["x"]), batch["y"])
      return jax.grad(loss_fn)(params)

    report = optaxclip.calibrate(grad_fn, params, batches, n_steps=200)
    print(report)

  Args:
    grad_fn: the user's gradient function of ``(params, batch)``.
    params: initial parameters (a pytree).
    batches: an iterable of batches (e.g. the training loader; use
      ``itertools.repeat(batch)`` for one batch); stops early if exhausted.
    n_steps: number of warm-up steps (> 0).
    optimizer: the optimizer of the warm-up; optaxclip clippers in it are
      recorded too. Default ``optax.adam(1e-4)``.
    by: grouping of the per-group norms: ``"layer"`` (default), ``"leaf"``
      or path rules (see :func:`monitor_norms`).
    factor: ``suggest_threshold``'s multiple of the mean.
    p: ``suggest_threshold``'s percentile.
    k: ``suggest_threshold``'s number of standard deviations.

  Returns:
    A :class:`CalibrationReport`.

  Example:
    >>> import itertools, jax, jax.numpy as jnp, optaxclip
    >>> def grad_fn(params, batch):
    ...   loss = lambda p: jnp.mean((batch["x"] @ p["w"] + p["b"]
    ...                              - batch["y"]) ** 2)
    ...   return jax.grad(loss)(params)
    >>> key = jax.random.key(0)
    >>> x = jax.random.normal(key, (64, 3))
    >>> batch = {"x": x, "y": x @ jnp.array([1.0, -2.0, 0.5])}
    >>> params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    >>> report = optaxclip.calibrate(grad_fn, params, itertools.repeat(batch),
    ...                              n_steps=20, by="leaf")
    >>> report.n_steps, sorted(report.layer_norms)
    (20, ['b', 'w'])
    >>> s = report.suggestions["mean_multiple"]
    >>> bool(s.value > 0), s.clip_fraction
    (True, 0.0)
  """
  fn = "calibrate"
  if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
    raise ValueError(
      f"optaxclip.{fn}: `n_steps` must be a positive int, got {n_steps!r}."
    )
  if optimizer is None:
    optimizer = optax.adam(1e-4)
  mon_name = "calibrate"
  tx = optax.chain(monitor_norms(by=by, name=mon_name), optimizer)

  @jax.jit
  def step(params, opt_state, batch):
    grads = grad_fn(params, batch)
    updates, new_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    all_stats = _stats.stats(new_state)
    ok = jnp.isfinite(new_state[0].stats[mon_name].global_norm)
    keep = lambda new, old: jax.tree.map(
      lambda a, b: jnp.where(ok, a, b), new, old
    )
    return keep(new_params, params), keep(new_state, opt_state), all_stats

  opt_state = tx.init(params)
  history = StatsHistory()
  taken = 0
  for batch in batches:
    if taken >= n_steps:
      break
    params, opt_state, s = step(params, opt_state, batch)
    history.append(taken, s)
    taken += 1
  if taken == 0:
    raise ValueError(f"optaxclip.{fn}: `batches` yielded no batch.")

  global_norms = history.series(f"{mon_name}/global_norm")
  prefix = f"{mon_name}/norms/"
  layer_norms = {
    key[len(prefix) :]: history.series(key)
    for key in history._keys
    if key.startswith(prefix)
  }
  kw = {"factor": factor, "p": p, "k": k}
  suggestions = (  # none when every step was non-finite (the report says so)
    suggest_threshold(global_norms, "all", **kw)
    if np.isfinite(global_norms).any()
    else {}
  )
  layer_suggestions = {
    path: suggest_threshold(v, "all", **kw)
    for path, v in layer_norms.items()
    if np.isfinite(v).any()
  }
  return CalibrationReport(
    n_steps=taken,
    global_norms=global_norms,
    layer_norms=layer_norms,
    suggestions=suggestions,
    layer_suggestions=layer_suggestions,
    findings=diagnose(history),
    history=history,
  )
