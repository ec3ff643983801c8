# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Parameter paths and the glob rules that select them.

Used by the per-layer strategies and the monitors: a leaf's path is its
keys joined by ``/``; a rule is a glob (``*`` within a segment, ``**``
across segments) that also matches every leaf below a matching prefix.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import jax


def _key_str(k: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def path_str(path: Sequence[Any]) -> str:
  """A leaf's path: keys joined by ``/``, indices as numbers.

  NNX's trailing ``value`` attribute is dropped, so the kernel of an NNX
  LSTM cell reads ``encoder/cell/ii/kernel``.
  """
  keys = list(path)
  last = keys[-1] if keys else None
  if isinstance(last, jax.tree_util.GetAttrKey) and last.name == "value":
    keys = keys[:-1]
  return "/".join(_key_str(k) for k in keys)


def leaf_paths(tree: Any) -> list[str]:
  """Paths of the leaves of ``tree``, in ``jax.tree.leaves`` order."""
  return [path_str(p) for p, _ in jax.tree.leaves_with_path(tree)]


@functools.lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
  out = []
  i = 0
  while i < len(pattern):
    if pattern.startswith("**", i):
      out.append(".*")
      i += 2
    elif pattern[i] == "*":
      out.append("[^/]*")
      i += 1
    elif pattern[i] == "?":
      out.append("[^/]")
      i += 1
    else:
      out.append(re.escape(pattern[i]))
      i += 1
  # A pattern also matches everything below a matching prefix of segments.
  return re.compile("".join(out) + "(?:/.*)?")


def match_path(pattern: str, path: str) -> bool:
  """Whether a path pattern matches a leaf path.

  ``*`` matches within one segment, ``**`` across segments, ``?`` one
  character; a pattern that matches a leading run of whole segments matches
  every leaf below it (``"encoder"`` matches ``"encoder/cell/ii/kernel"``).
  """
  return _pattern_regex(pattern).fullmatch(path) is not None


def assign_rules(
  paths: Sequence[str], patterns: Sequence[str], fn: str, *, has_default: bool
) -> list[int]:
  """Index of the first matching pattern for each path (-1: the default).

  Raises:
    ValueError: a pattern that matches no path, or (without a default) a
      path that no pattern matches. The message lists them.
  """
  out = []
  used = [False] * len(patterns)
  for p in paths:
    k = next((j for j, pat in enumerate(patterns) if match_path(pat, p)), -1)
    if k >= 0:
      used[k] = True
    out.append(k)
  unused = [pat for pat, u in zip(patterns, used) if not u]
  if unused:
    raise ValueError(
      f"optaxclip.{fn}: rule(s) {unused} match no parameter path. Paths are "
      f"keys joined by '/', e.g. {_sample(paths)}; '*' matches within a "
      "segment and '**' across segments. Fix or remove the rule."
    )
  missing = [p for p, k in zip(paths, out) if k < 0]
  if missing and not has_default:
    raise ValueError(
      f"optaxclip.{fn}: no rule matches {_sample(missing, 8)}"
      f"{' and more' if len(missing) > 8 else ''}; add a rule for them or "
      "pass `default=`."
    )
  return out


def _sample(paths: Sequence[str], n: int = 4) -> str:
  return ", ".join(repr(p) for p in list(paths)[:n]) or "(no leaves)"
