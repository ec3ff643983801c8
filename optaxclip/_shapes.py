# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Shape checks shared by the strategies: nothing is broadcast silently.

A strategy's output has exactly the gradients' tree, shapes and dtypes. Its
inputs that mirror the gradients (``params``, per-element state such as
``clip_spikes``' ``nu``) and its static ``axis`` are checked here, at trace
time (shapes are static: no run-time cost), and a mismatch is a
``ValueError`` naming the strategy, the leaf's path and both shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from optaxclip import _paths


def _path(leaves: Sequence[Any], treedef: Any, i: int) -> str:
  """The path of leaf ``i`` (computed only for an error message)."""
  tree = jax.tree.unflatten(treedef, list(leaves))
  path = _paths.path_str(jax.tree.leaves_with_path(tree)[i][0])
  return path or "<root>"


def matching_leaves(
  fn: str,
  what: str,
  leaves: Sequence[Any],
  treedef: Any,
  other: Any,
  hint: str = "",
) -> list[Any]:
  """The leaves of ``other``, each of the shape of the gradient leaf.

  Args:
    fn: the strategy's name, for the message.
    what: what ``other`` is (``"params"``, ``"the state's nu"``).
    leaves: the gradients' leaves.
    treedef: the gradients' tree structure.
    other: a tree with the gradients' structure and shapes.
    hint: a sentence appended to the message (how to fix it).

  Returns:
    ``treedef.flatten_up_to(other)``.

  Raises:
    ValueError: ``other`` has another tree structure, or a leaf of another
      shape than the gradient leaf at the same path.
  """
  hint = f" {hint}" if hint else ""
  try:
    others = treedef.flatten_up_to(other)
  except (ValueError, TypeError) as e:
    raise ValueError(
      f"optaxclip.{fn}: {what} do not have the gradients' tree structure "
      f"({e}).{hint}"
    ) from None
  for i, (g, o) in enumerate(zip(leaves, others)):
    gs, os = jax.numpy.shape(g), jax.numpy.shape(o)
    if gs != os:
      raise ValueError(
        f"optaxclip.{fn}: {what} at {_path(leaves, treedef, i)!r}: shape "
        f"{os}, but the gradient there has shape {gs}.{hint}"
      )
  return others


def check_vector(
  fn: str, what: str, array: Any, shape: tuple[int, ...], hint: str = ""
) -> None:
  """A state array must have ``shape`` (e.g. one entry per leaf)."""
  got = jax.numpy.shape(array)
  if got != tuple(shape):
    hint = f" {hint}" if hint else ""
    raise ValueError(
      f"optaxclip.{fn}: {what} has shape {got}, expected {tuple(shape)}.{hint}"
    )


def check_unit_axes(
  fn: str,
  axis: tuple[int, ...] | None,
  leaves: Sequence[Any],
  treedef: Any,
) -> None:
  """Every axis is valid for every leaf's rank, without repeats.

  ``axis=None`` (the default unit convention) is always valid. An explicit
  axis ``a`` must satisfy ``-rank <= a < rank`` for every leaf; it never
  wraps around.

  Raises:
    ValueError: naming the leaf's path, its shape and the strategy.
  """
  if axis is None:
    return
  for i, x in enumerate(leaves):
    shape = jax.numpy.shape(x)
    rank = len(shape)
    bad = [a for a in axis if not -rank <= a < rank]
    if bad or len({a % rank for a in axis}) != len(axis):
      what = (
        f"axis {bad[0]} is out of range"
        if bad
        else f"the axes {tuple(axis)} repeat an axis"
      )
      raise ValueError(
        f"optaxclip.{fn}: {what} for the leaf "
        f"{_path(leaves, treedef, i)!r} of shape {shape} (rank {rank}). "
        "Pass axes valid for every leaf, or apply this strategy to the "
        "leaves of one rank with optax.masked / optax.partition."
      )
