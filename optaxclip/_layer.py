# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Per-layer clipping with thresholds chosen by parameter path."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import optax

from optaxclip import _norms
from optaxclip import _paths
from optaxclip import _scaling
from optaxclip import _stats
from optaxclip import _validation

_STRATEGIES = ("tensor_norm", "group_norm")


def _is_scalar(v: Any) -> bool:
  if callable(v) or isinstance(v, (numbers.Real, jax.core.Tracer)):
    return True
  return hasattr(v, "shape") and np.ndim(v) == 0


def _as_rules(thresholds: Any) -> list[tuple[str, Any]] | None:
  """The ordered (pattern, threshold) rules, or None for a pytree prefix."""
  if isinstance(thresholds, Mapping):
    items = list(thresholds.items())
  elif isinstance(thresholds, Sequence) and not isinstance(thresholds, str):
    items = list(thresholds)
    if not all(isinstance(r, tuple) and len(r) == 2 for r in items):
      return None
  else:
    return None
  if all(isinstance(k, str) and _is_scalar(v) for k, v in items):
    return items
  return None


def _prefix_groups(thresholds, updates, fn):
  """Groups and thresholds from a pytree prefix of the updates."""
  try:
    per_leaf = jax.tree.broadcast(thresholds, updates)
  except (ValueError, TypeError) as e:
    raise ValueError(
      f"optaxclip.{fn}: the threshold tree does not match the gradients: "
      f"{e}. Pass a pytree prefix of the gradients (one threshold per "
      "subtree) or a mapping of path patterns to thresholds, e.g. "
      "{'encoder/**': 1.0, '**/bias': 0.1}."
    ) from None
  groups: list[int] = []
  values: list[Any] = []
  # Each leaf of the prefix tree is one group: find which prefix leaf each
  # update leaf came from by broadcasting the prefix leaves' indices.
  idx_tree = jax.tree.map(lambda _: object(), thresholds)
  ids = jax.tree.leaves(jax.tree.broadcast(idx_tree, updates))
  order: dict[int, int] = {}
  for marker, t in zip(ids, jax.tree.leaves(per_leaf)):
    k = order.setdefault(id(marker), len(order))
    if k == len(values):
      values.append(t)
    groups.append(k)
  return groups, values


@_scaling.edge_cases(_scaling.NORM_EDGE_CASES)
@_norms.documents_partition_specs
def clip_by_layer(
  thresholds: Any,
  *,
  default: _validation.ThresholdOrSchedule | None = None,
  strategy: str = "tensor_norm",
  ord: _validation.Ord | None = None,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "clip_by_layer",
) -> optax.GradientTransformationExtraArgs:
  r"""Clips with a different threshold per layer, chosen by parameter path.

  ``thresholds`` is either

  * a **pytree prefix** of the gradients, one threshold per subtree (e.g.
    ``{"encoder": 1.0, "decoder": 5.0}`` for gradients with those two
    top-level keys), or
  * an ordered **mapping of path patterns** to thresholds (a ``dict`` or a
    sequence of ``(pattern, threshold)`` pairs). The first matching rule
    wins; ``default`` covers the leaves no rule matches.

  A path is the leaf's keys joined by ``/`` with sequence indices as numbers
  and NNX's trailing ``value`` dropped: an NNX LSTM kernel is
  ``encoder/cell/ii/kernel``. In a pattern ``*`` matches within one segment,
  ``**`` across segments, and a pattern matching a leading run of segments
  matches everything below it.

  With ``strategy="tensor_norm"`` each leaf is clipped by its own norm to
  its rule's threshold,

  .. math::

    u^{(l)} \leftarrow u^{(l)}
      \min\big(1, c_{r(l)} / \lVert u^{(l)} \rVert\big);

  with ``strategy="group_norm"`` the leaves matched by one rule (or one
  prefix subtree, or the default) are clipped together by their joint norm.

  Args:
    thresholds: a pytree prefix of the gradients, or a mapping / sequence of
      ``(pattern, threshold)`` rules. Thresholds are >= 0 numbers, traced
      values or schedules.
    default: threshold for leaves no rule matches; without it such a leaf is
      an error.
    strategy: ``"tensor_norm"`` (default) or ``"group_norm"``.
    ord: the norm: ``None`` or 2 for L2 (default), 1, or ``"inf"``. It is
      structural: ``None`` keeps :func:`optax.inject_hyperparams` from
      turning it into an array.
    nonfinite: policy for a non-finite norm: ``"zero"`` (default),
      ``"propagate"`` or ``"error"``.
    axis_name: a mapped axis name, or a tuple of names, under
      :func:`jax.shard_map` across which the gradients are split; norms and
      statistics are then reduced across it, each leaf over the axes it
      varies along (see :func:`optaxclip.clip_by_global_norm`).
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``clipped`` in its
    statistics is the fraction of leaves (or groups) clipped.

  Raises:
    ValueError: at ``init``/``update``, a rule that matches no leaf, a leaf
      with no rule and no default, or a threshold tree that is not a prefix
      of the gradients; the message lists the offending rules or paths.

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> grads = {"enc": {"w": jnp.array([3.0, 4.0])},
    ...          "out": {"w": jnp.array([6.0, 8.0]), "b": jnp.array([0.5])}}
    >>> tx = optaxclip.clip_by_layer({"enc/**": 1.0, "**/b": 0.1},
    ...                              default=5.0)
    >>> u, _ = tx.update(grads, tx.init(grads))
    >>> u["enc"]["w"], u["out"]["w"]
    (Array([0.6, 0.8], dtype=float32), Array([3., 4.], dtype=float32))
    >>> u["out"]["b"]
    Array([0.1], dtype=float32)
  """
  fn = "clip_by_layer"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_choice(strategy, "strategy", fn, _STRATEGIES)
  ord = _validation.check_ord(ord, fn)
  _validation.check_nonfinite(nonfinite, fn)
  if default is not None:
    _validation.check_threshold(default, "default", fn)
  rules = _as_rules(thresholds)
  if rules is not None:
    for pat, t in rules:
      _validation.check_threshold(t, f"thresholds[{pat!r}]", fn)
  else:
    for t in jax.tree.leaves(thresholds):
      _validation.check_threshold(t, "thresholds", fn)

  def plan(updates):
    """Static (trace-time) assignment of leaves to groups and thresholds."""
    if rules is not None:
      paths = _paths.leaf_paths(updates)
      which = _paths.assign_rules(
        paths, [p for p, _ in rules], fn, has_default=default is not None
      )
      values = [t for _, t in rules] + [default]
      rule_of_leaf = [k if k >= 0 else len(rules) for k in which]
    else:
      rule_of_leaf, values = _prefix_groups(thresholds, updates, fn)
      if default is not None:
        values = [*values, default]
    if strategy == "tensor_norm":
      return list(range(len(rule_of_leaf))), [values[r] for r in rule_of_leaf]
    used = sorted(set(rule_of_leaf))
    remap = {r: k for k, r in enumerate(used)}
    return [remap[r] for r in rule_of_leaf], [values[r] for r in used]

  def apply(updates, params, prev):
    del params
    leaves = jax.tree.leaves(updates)
    _validation.check_leaves(leaves, fn)
    groups, values = plan(updates)
    values = [_validation.resolve(v, prev.step) for v in values]
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    return _scaling.clip_groups(
      updates,
      groups,
      values,
      prev,
      ord=ord,
      policy=nonfinite,
      fn=fn,
      name=name,
      axis_name=axes,
    )

  base = _stats.stateless_clipper(name, apply)

  def init_fn(params):
    # Report bad rules at init, not at the first step. A tree without
    # leaves (the placeholder of optax.tree.map_params) has nothing to check.
    if jax.tree.leaves(params):
      plan(params)
    return base.init(params)

  return optax.GradientTransformationExtraArgs(init_fn, base.update)
