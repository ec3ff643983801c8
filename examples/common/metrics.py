# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Metrics: JSON-lines logs, a history of scalars, loss-spike counting."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import optaxclip

# A step's training loss is a spike when it is non-finite, or when it
# exceeds the median m of the previous SPIKE_WINDOW finite losses by more
# than both (SPIKE_RATIO - 1) * m and SPIKE_SIGMAS robust standard
# deviations (1.4826 * the median absolute deviation): the first condition
# ignores small bumps, the second the ordinary noise of small batches.
SPIKE_RATIO = 1.2
SPIKE_SIGMAS = 3.0
SPIKE_WINDOW = 50
_SPIKE_MIN_HISTORY = 3


def _host_float(x: Any) -> float:
  try:
    return float(np.asarray(x))
  except (TypeError, ValueError):
    return math.nan


def flatten_stats(stats: Any, prefix: str = "") -> dict[str, float]:
  """``{name: ClipStats}`` to ``{"name/field": float}``.

  Nested mappings and named tuples (e.g. per-layer norms of a monitor) give
  longer keys (``"monitor_norms/norms/rnn/kernel"``); an array of several
  values gives one key per element.
  """
  out: dict[str, float] = {}
  if hasattr(stats, "_asdict"):
    stats = stats._asdict()
  if isinstance(stats, Mapping):
    for k, v in stats.items():
      out.update(flatten_stats(v, f"{prefix}/{k}" if prefix else str(k)))
    return out
  if stats is None:
    return out
  a = np.asarray(stats)
  if a.size == 1:
    out[prefix] = _host_float(a.reshape(()))
  else:
    for i, v in enumerate(a.ravel()):
      out[f"{prefix}/{i}"] = _host_float(v)
  return out


class _History:
  """Fallback for ``optaxclip.StatsHistory`` (same methods).

  Rows of scalars by step; :meth:`series` gives NaN where a row lacks a key.
  """

  def __init__(self):
    self._rows: list[dict[str, float]] = []

  def append(self, step: int, stats: Mapping[str, Any] | None = None, **kw):
    row = {"step": float(step)}
    if stats:
      row.update(flatten_stats(stats))
    row.update({k: _host_float(v) for k, v in kw.items()})
    self._rows.append(row)

  @property
  def steps(self) -> np.ndarray:
    return np.asarray([r["step"] for r in self._rows], np.int64)

  @property
  def keys(self) -> list[str]:
    seen: dict[str, None] = {}
    for r in self._rows:
      seen.update(dict.fromkeys(r))
    seen.pop("step", None)
    return list(seen)

  def series(self, key: str) -> np.ndarray:
    return np.asarray([r.get(key, math.nan) for r in self._rows], np.float64)

  def to_jsonl(self, path: str | os.PathLike) -> None:
    with open(path, "w") as f:
      for r in self._rows:
        f.write(json.dumps(_clean(r)) + "\n")

  def to_csv(self, path: str | os.PathLike) -> None:
    keys = ["step", *self.keys]
    with open(path, "w") as f:
      f.write(",".join(keys) + "\n")
      for r in self._rows:
        f.write(",".join(repr(r.get(k, math.nan)) for k in keys) + "\n")


def new_history() -> Any:
  """An ``optaxclip.StatsHistory`` if this optaxclip has it, else a fallback."""
  cls = getattr(optaxclip, "StatsHistory", None)
  if cls is not None:
    try:
      return cls()
    except Exception:
      pass
  return _History()


def history_series(history: Any, key: str) -> tuple[np.ndarray, np.ndarray]:
  """``(steps, values)`` of one key, keeping only the finite entries."""
  try:
    values = np.asarray(history.series(key), np.float64)
  except (KeyError, ValueError):
    return np.zeros(0, np.int64), np.zeros(0)
  steps = np.asarray(history.steps)
  if len(steps) != len(values):
    steps = np.arange(len(values))
  keep = np.isfinite(values)
  return steps[keep], values[keep]


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
  """JSON-safe values: NaN and infinities become strings."""
  out = {}
  for k, v in row.items():
    if isinstance(v, float) and not math.isfinite(v):
      v = str(v)
    out[k] = v
  return out


class JsonlWriter:
  """Appends one JSON object per line to a file, flushing each line.

  On resume, :meth:`truncate_after` drops the lines of steps after the
  checkpoint so the log has no duplicates.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._f = open(self.path, "a")  # noqa: SIM115 - closed in close()

  def write(self, row: Mapping[str, Any]) -> None:
    self._f.write(json.dumps(_clean(row)) + "\n")
    self._f.flush()

  def close(self) -> None:
    self._f.close()

  @staticmethod
  def truncate_after(path: str | os.PathLike, step: int) -> list[dict]:
    """Keeps the rows with ``step <= step``; returns them."""
    path = Path(path)
    if not path.is_file():
      return []
    rows = read_jsonl(path)
    kept = [r for r in rows if int(r.get("step", 0)) <= step]
    with open(path, "w") as f:
      for r in kept:
        f.write(json.dumps(r) + "\n")
    return kept


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  """The rows of a JSON-lines file (``"nan"`` strings back to floats)."""
  rows = []
  with open(path) as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        for k, v in row.items():
          if v in ("nan", "inf", "-inf"):
            row[k] = float(v)
        rows.append(row)
  return rows


class SpikeCounter:
  """Counts loss spikes online (see ``SPIKE_RATIO`` / ``SPIKE_WINDOW``)."""

  def __init__(self):
    self.recent: list[float] = []
    self.count = 0

  def update(self, loss: float) -> bool:
    """Records one loss; returns whether it was a spike."""
    spike = False
    if not math.isfinite(loss):
      spike = True
    elif len(self.recent) >= _SPIKE_MIN_HISTORY:
      recent = np.asarray(self.recent)
      m = float(np.median(recent))
      sigma = 1.4826 * float(np.median(np.abs(recent - m)))
      spike = loss - m > max((SPIKE_RATIO - 1) * abs(m), SPIKE_SIGMAS * sigma)
    if math.isfinite(loss):
      self.recent.append(loss)
      del self.recent[:-SPIKE_WINDOW]
    self.count += spike
    return spike


def count_spikes(losses: Sequence[float]) -> int:
  """Number of spikes in a sequence of training losses."""
  c = SpikeCounter()
  for x in losses:
    c.update(float(x))
  return c.count
