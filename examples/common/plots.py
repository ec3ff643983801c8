# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""PNG plots of a run: ``optaxclip.plot`` when present, matplotlib otherwise.

Each function first tries the library's figure (``optaxclip.plot``) and
falls back to a plain matplotlib figure with the same content when that
module is missing, lacks the function or cannot draw this history (for
example the gradient norm of a run without a clipper, which has no clip
statistics). Files are always written with the Agg backend.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from examples.common.metrics import history_series


def _plt():
  import matplotlib

  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt

  return plt


def _library(fn: str):
  try:
    mod = importlib.import_module("optaxclip.plot")
  except Exception:
    return None
  return getattr(mod, fn, None)


def _try_library(fn: str, *args, **kwargs) -> bool:
  f = _library(fn)
  if f is None:
    return False
  try:
    fig = f(*args, **kwargs)
  except Exception as e:
    warnings.warn(
      f"optaxclip.plot.{fn} failed ({type(e).__name__}: {e}); drawing the "
      "figure with matplotlib instead.",
      stacklevel=3,
    )
    return False
  del fig  # library figures are not held by pyplot: nothing to close
  path = kwargs.get("path")
  return path is None or os.path.exists(path)


def _save(fig, path):
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  _plt().close(fig)


def smooth(y: np.ndarray, window: int = 25) -> np.ndarray:
  """Trailing moving average that ignores non-finite values."""
  y = np.asarray(y, np.float64)
  ok = np.isfinite(y)
  c = np.cumsum(np.where(ok, y, 0.0))
  n = np.cumsum(ok)
  lo = np.maximum(np.arange(len(y)) - window, -1)
  tot = c - np.where(lo >= 0, c[np.maximum(lo, 0)], 0)
  cnt = n - np.where(lo >= 0, n[np.maximum(lo, 0)], 0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def loss_curves(
  history: Any, path: str, keys: Sequence[str] = ("loss", "val_loss")
) -> None:
  """Training (raw and smoothed) and validation loss against the step."""
  if _try_library("loss_curves", history, keys=tuple(keys), path=path):
    return
  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 4))
  for k in keys:
    s, v = history_series(history, k)
    if not len(v):
      continue
    if k == "loss" and len(v) > 50:
      ax.plot(s, v, alpha=0.25, lw=0.8, color="C0")
      ax.plot(s, smooth(v), color="C0", label="train loss (smoothed)")
    else:
      ax.plot(s, v, marker="o" if len(v) < 50 else None, label=k)
  ax.set_xlabel("step")
  ax.set_ylabel("loss")
  ax.set_yscale("log")
  ax.grid(alpha=0.3)
  ax.legend()
  _save(fig, path)


def norm_history(history: Any, path: str, name: str | None = None) -> None:
  """Gradient norm before and after clipping, with the threshold."""
  if name is not None and _try_library(
    "norm_history", history, name=name, path=path
  ):
    return
  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 4))
  s, g = history_series(history, "grad_norm")
  ax.plot(s, g, lw=0.8, label="gradient norm")
  if name is not None:
    for field, style in (("norm_after", "-"), ("threshold", "--")):
      s2, v = history_series(history, f"{name}/{field}")
      if len(v):
        label = "after clipping" if field == "norm_after" else "threshold"
        ax.plot(s2, v, style, lw=0.8, label=f"{label} ({name})")
  ax.set_xlabel("step")
  ax.set_ylabel("global L2 norm")
  ax.set_yscale("log")
  ax.grid(alpha=0.3)
  ax.legend()
  _save(fig, path)


def clip_rate(history: Any, path: str, name: str, window: int = 50) -> None:
  """Fraction of recent steps (or of units) that were clipped."""
  if _try_library("clip_rate", history, name=name, path=path):
    return
  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 3))
  s, c = history_series(history, f"{name}/clipped")
  ax.plot(s, smooth(c, window))
  ax.set_ylim(-0.02, 1.02)
  ax.set_xlabel("step")
  ax.set_ylabel(f"clip rate ({window}-step mean)")
  ax.set_title(name)
  ax.grid(alpha=0.3)
  _save(fig, path)


def compare_runs(
  runs: Mapping[str, Any],
  path: str,
  keys: Sequence[str] = ("loss", "grad_norm"),
  title: str | None = None,
  window: int = 25,
) -> None:
  """One panel per key, one line per run (smoothed over ``window`` steps)."""
  if title is None and _try_library(
    "compare_runs", dict(runs), keys=tuple(keys), path=path, window=window
  ):
    return
  plt = _plt()
  fig, axes = plt.subplots(
    1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False
  )
  for ax, k in zip(axes[0], keys):
    for i, (label, h) in enumerate(runs.items()):
      s, v = history_series(h, k)
      if not len(v):
        continue
      y = smooth(v, window) if len(v) > 2 * window else v
      ax.plot(s, y, color=f"C{i}", label=label, lw=1.0)
    ax.set_xlabel("step")
    ax.set_ylabel(k)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=8)
  if title:
    fig.suptitle(title)
  _save(fig, path)
