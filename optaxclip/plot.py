# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Figures of gradient statistics (needs matplotlib: ``optaxclip[examples]``).

Every function returns a :class:`matplotlib.figure.Figure` and, given
``path=``, also saves it (PNG unless the extension says otherwise) at
``figsize`` x ``dpi`` pixels. The figures are built with matplotlib's
object-oriented API, without :mod:`matplotlib.pyplot`, so they need no
display and no backend choice, and they are not kept alive by pyplot: a
notebook shows a returned figure, a script saves it.

Histories are :class:`optaxclip.StatsHistory` objects; ``name=None`` picks
the first clipper (or, for :func:`layer_heatmap`, the first monitor) found
in the history.

Example:
  >>> import numpy as np, optaxclip, optaxclip.plot
  >>> h = optaxclip.StatsHistory()
  >>> for t in range(100):
  ...   n = 1.0 + np.sin(t / 5.0) ** 2
  ...   h.append(t, {"clip_by_global_norm": {"norm_before": n,
  ...       "norm_after": min(n, 1.5), "threshold": 1.5,
  ...       "clipped": float(n > 1.5)}}, loss=1.0 / (t + 1))
  >>> fig = optaxclip.plot.norm_history(h)
  >>> fig.get_size_inches() * fig.dpi
  array([800., 450.])
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from optaxclip import _diagnostics

_FIGSIZE = (8.0, 4.5)
_DPI = 100


def _figure(figsize, dpi, nrows: int = 1, ncols: int = 1):
  """A constrained-layout Figure and its axes, without pyplot."""
  try:
    from matplotlib.figure import Figure
  except ImportError as e:
    raise ImportError(
      "optaxclip.plot needs matplotlib, which is an optional dependency: "
      "pip install 'optaxclip[examples]' (or pip install matplotlib)."
    ) from e
  fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
  axes = fig.subplots(nrows, ncols, squeeze=False)
  return fig, axes


def _save(fig, path: str | os.PathLike | None):
  if path is not None:
    parent = os.path.dirname(os.fspath(path))
    if parent:
      os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi)
  return fig


def _history(history: Any, fn: str) -> _diagnostics.StatsHistory:
  if isinstance(history, _diagnostics.CalibrationReport):
    return history.history
  if not isinstance(history, _diagnostics.StatsHistory):
    raise TypeError(
      f"optaxclip.plot.{fn}: expected a StatsHistory, got "
      f"{type(history).__name__}."
    )
  return history


def _pick(
  history: _diagnostics.StatsHistory, name: str | None, kind: str, fn: str
) -> str:
  """The clipper or monitor to draw: ``name``, or the first one found."""
  found = history._clippers() if kind == "clipper" else history._monitors()
  if name is None:
    if not found:
      raise ValueError(
        f"optaxclip.plot.{fn}: no {kind} statistics in this history (keys: "
        f"{history.keys()[:8]}). Append optaxclip.stats(opt_state) to it."
      )
    return found[0]
  if name not in history._fields():
    raise ValueError(
      f"optaxclip.plot.{fn}: no statistics named {name!r} in this history; "
      f"it has {sorted(history._fields())}."
    )
  return name


def _sorted(history: _diagnostics.StatsHistory, *keys: str):
  """Steps in increasing order and the series of ``keys`` in that order."""
  steps = history.steps
  order = np.argsort(steps, kind="stable")
  return steps[order], [history.series(k)[order] for k in keys]


def _positive(v: np.ndarray) -> np.ndarray:
  """``v`` with non-positive and non-finite values as NaN (log axes)."""
  v = np.asarray(v, np.float64)
  return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def _wants_log(values: Sequence[np.ndarray]) -> bool:
  """Log scale when every finite value is positive and they span 10x."""
  allv = np.concatenate([np.ravel(v) for v in values]) if values else []
  allv = np.asarray(allv, np.float64)
  allv = allv[np.isfinite(allv)]
  return bool(allv.size and allv.min() > 0 and allv.max() / allv.min() > 10)


def _rolling_mean(v: np.ndarray, window: int) -> np.ndarray:
  """Mean of the finite values among the last ``window`` ones."""
  ok = np.isfinite(v)
  c = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
  n = np.concatenate([[0], np.cumsum(ok)])
  lo = np.maximum(np.arange(1, v.size + 1) - window, 0)
  hi = np.arange(1, v.size + 1)
  cnt = n[hi] - n[lo]
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(cnt > 0, (c[hi] - c[lo]) / np.maximum(cnt, 1), np.nan)


def norm_history(
  history: Any,
  *,
  name: str | None = None,
  path: str | os.PathLike | None = None,
  figsize: tuple[float, float] = _FIGSIZE,
  dpi: int = _DPI,
  title: str | None = None,
):
  """Gradient norm before and after clipping over steps, on a log scale.

  The threshold is drawn dashed, clipped steps are marked with a cross on
  the norm before clipping, and steps with a non-finite norm with a red
  vertical line. For a monitor (``name`` of a :func:`optaxclip.monitor_norms`)
  its global norm and EMA are drawn instead.

  Args:
    history: a :class:`optaxclip.StatsHistory` (or a calibration report).
    name: the clipper (or monitor) to draw; default the first clipper found,
      else the first monitor.
    path: where to save the figure, if anywhere.
    figsize: size in inches.
    dpi: dots per inch (the PNG is ``figsize * dpi`` pixels).
    title: the axes' title; default the name.

  Returns:
    The :class:`matplotlib.figure.Figure`.

  Example:
    >>> import optaxclip, optaxclip.plot
    >>> h = optaxclip.StatsHistory()
    >>> for t in range(20):
    ...   h.append(t, {"clip": {"norm_before": t + 1.0,
    ...       "norm_after": min(t + 1.0, 8.0), "threshold": 8.0,
    ...       "clipped": float(t + 1 > 8)}})
    >>> fig = optaxclip.plot.norm_history(h, name="clip")
    >>> fig.axes[0].get_yscale()
    'log'
  """
  fn = "norm_history"
  history = _history(history, fn)
  if name is None and not history._clippers():
    name = _pick(history, None, "monitor", fn)
  name = _pick(history, name, "clipper", fn)
  fields = history._fields()[name]
  fig, axes = _figure(figsize, dpi)
  ax = axes[0, 0]
  if "" in fields.get("norm_before", ()):
    keys = [f"{name}/{f}" for f in ("norm_before", "norm_after", "threshold")]
    keys.append(f"{name}/clipped")
    labels = ("norm before", "norm after", "threshold")
  else:  # a monitor
    keys = [f"{name}/global_norm", f"{name}/global_ema", "", ""]
    labels = ("global norm", "EMA", "")
  steps, series = _sorted(history, *(k for k in keys if k))
  series += [np.full(steps.size, np.nan)] * (4 - len(series))
  before, after, threshold, clipped = series
  ax.plot(steps, _positive(before), lw=1.2, label=labels[0])
  if np.isfinite(after).any():
    ax.plot(steps, _positive(after), lw=1.0, alpha=0.8, label=labels[1])
  if np.isfinite(threshold).any():
    ax.step(
      steps,
      _positive(threshold),
      where="post",
      ls="--",
      color="k",
      lw=1.0,
      label=labels[2],
    )
  hit = np.isfinite(clipped) & (clipped > 0) & np.isfinite(before)
  if hit.any():
    ax.scatter(
      steps[hit],
      _positive(before[hit]),
      marker="x",
      s=18,
      color="tab:red",
      zorder=3,
      label=f"clipped ({int(hit.sum())} of {steps.size} steps)",
    )
  if "" in fields.get("norm_before", ()):
    # A clipper's non-finite steps are those that raised nonfinite_count
    # (some clippers record NaN norms by design).
    nf = _diagnostics._clipper_nonfinite(history, name, fields)
    bad_steps = nf.steps[nf.values.astype(bool)]
  else:
    nf = _diagnostics._get(history, keys[0], name)
    bad_steps = nf.steps[~np.isfinite(nf.values)]
  for k, t in enumerate(np.sort(bad_steps)):
    ax.axvline(
      t,
      color="tab:red",
      alpha=0.3,
      lw=1,
      label="non-finite" if k == 0 else None,
    )
  if np.isfinite(_positive(np.concatenate([before, after, threshold]))).any():
    ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("gradient norm")
  ax.set_title(title if title is not None else name)
  ax.grid(True, which="major", alpha=0.3)
  ax.legend(loc="best", fontsize="small")
  return _save(fig, path)


def clip_rate(
  history: Any,
  *,
  name: str | None = None,
  window: int = 50,
  path: str | os.PathLike | None = None,
  figsize: tuple[float, float] = _FIGSIZE,
  dpi: int = _DPI,
):
  """Fraction of steps clipped, as a moving average over ``window`` steps.

  For per-leaf or per-unit clippers, ``clipped`` is itself a fraction (of
  leaves or units) and is averaged the same way.

  Args:
    history: a :class:`optaxclip.StatsHistory`.
    name: the clipper; default the first one found.
    window: number of recorded steps in the moving average (>= 1).
    path: where to save the figure, if anywhere.
    figsize: size in inches.
    dpi: dots per inch.

  Returns:
    The :class:`matplotlib.figure.Figure`.

  Example:
    >>> import optaxclip, optaxclip.plot
    >>> h = optaxclip.StatsHistory()
    >>> for t in range(40):
    ...   h.append(t, {"clip": {"norm_before": 1.0, "clipped": t % 4 == 0}})
    >>> fig = optaxclip.plot.clip_rate(h, window=8)
    >>> fig.axes[0].get_title()
    'clip: clip rate (overall 25.0%)'
  """
  fn = "clip_rate"
  if isinstance(window, bool) or not isinstance(window, int) or window < 1:
    raise ValueError(
      f"optaxclip.plot.{fn}: `window` must be an int >= 1, got {window!r}."
    )
  history = _history(history, fn)
  name = _pick(history, name, "clipper", fn)
  steps, (clipped,) = _sorted(history, f"{name}/clipped")
  fig, axes = _figure(figsize, dpi)
  ax = axes[0, 0]
  ok = np.isfinite(clipped)
  ax.plot(
    steps[ok], clipped[ok], lw=0.6, alpha=0.3, color="tab:gray", label="step"
  )
  ax.plot(
    steps,
    _rolling_mean(clipped, window),
    lw=1.6,
    color="tab:red",
    label=f"mean of {window} steps",
  )
  overall = float(np.mean(clipped[ok])) if ok.any() else math.nan
  ax.set_ylim(-0.02, 1.02)
  ax.set_xlabel("step")
  ax.set_ylabel("fraction clipped")
  ax.set_title(f"{name}: clip rate (overall {100 * overall:.1f}%)")
  ax.grid(True, alpha=0.3)
  ax.legend(loc="best", fontsize="small")
  return _save(fig, path)


def layer_heatmap(
  history: Any,
  *,
  name: str | None = None,
  path: str | os.PathLike | None = None,
  field: str = "norms",
  figsize: tuple[float, float] | None = None,
  dpi: int = _DPI,
):
  """Per-layer gradient norms over steps, as a heat map of log10(norm).

  One row per path recorded by a :func:`optaxclip.monitor_norms` (sorted
  naturally, so ``layers_2`` precedes ``layers_10``), one column per
  recorded step. Zero and non-finite norms are grey. Vanishing gradients
  show as rows that darken with depth, exploding ones as rows that brighten
  over time.

  Args:
    history: a :class:`optaxclip.StatsHistory`.
    name: the monitor; default the first one found.
    path: where to save the figure, if anywhere.
    field: ``"norms"`` (default) or ``"ema"``.
    figsize: size in inches; default 9 wide and tall enough for the rows.
    dpi: dots per inch.

  Returns:
    The :class:`matplotlib.figure.Figure`.

  Example:
    >>> import optaxclip, optaxclip.plot
    >>> h = optaxclip.StatsHistory()
    >>> for t in range(10):
    ...   h.append(t, {"monitor_norms": {"norms": {
    ...       f"layers_{i}/kernel": 2.0 ** -i for i in range(12)}}})
    >>> fig = optaxclip.plot.layer_heatmap(h)
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()][:3]
    ['layers_0/kernel', 'layers_1/kernel', 'layers_2/kernel']
  """
  fn = "layer_heatmap"
  history = _history(history, fn)
  name = _pick(history, name, "monitor", fn)
  paths = [p for p in history._fields()[name].get(field, ()) if p]
  if not paths:
    raise ValueError(
      f"optaxclip.plot.{fn}: {name!r} has no per-path {field!r} statistics."
    )
  paths.sort(key=_diagnostics._natural_key)
  steps, rows = _sorted(history, *(f"{name}/{field}/{p}" for p in paths))
  data = np.log10(_positive(np.stack(rows)))
  if figsize is None:
    figsize = (9.0, float(np.clip(1.5 + 0.22 * len(paths), 3.0, 12.0)))
  fig, axes = _figure(figsize, dpi)
  ax = axes[0, 0]
  x0, x1 = (steps[0], steps[-1]) if steps.size else (0, 1)
  if x1 == x0:
    x1 = x0 + 1
  from matplotlib import colormaps

  masked = np.ma.masked_invalid(data)
  img = ax.imshow(
    masked,
    aspect="auto",
    interpolation="nearest",
    origin="upper",
    extent=(x0, x1, len(paths) - 0.5, -0.5),
    cmap=colormaps["viridis"].with_extremes(bad="0.8"),
  )
  if len(paths) <= 60:
    ax.set_yticks(range(len(paths)))
    ax.set_yticklabels(paths, fontsize="x-small" if len(paths) > 20 else None)
  else:
    ax.set_ylabel(f"{len(paths)} paths (natural order)")
  ax.set_xlabel("step")
  ax.set_title(f"{name}: log10 gradient {field} per path")
  fig.colorbar(img, ax=ax, label="log10 norm")
  return _save(fig, path)


def _suggestion_items(suggestions: Any) -> list[tuple[str, float]]:
  """(label, value) pairs from the accepted ``suggestions`` forms."""
  if suggestions is None:
    return []
  if isinstance(suggestions, _diagnostics.ThresholdSuggestion):
    suggestions = [suggestions]
  elif isinstance(suggestions, Mapping):
    suggestions = [
      v if isinstance(v, _diagnostics.ThresholdSuggestion) else (str(k), v)
      for k, v in suggestions.items()
    ]
  elif isinstance(suggestions, (int, float)):
    suggestions = [("threshold", suggestions)]
  out = []
  for s in suggestions:
    if isinstance(s, _diagnostics.ThresholdSuggestion):
      label = f"{s.rule} = {s.value:.3g} (clips {100 * s.clip_fraction:.0f}%)"
      out.append((label, s.value))
    elif isinstance(s, tuple):
      out.append((f"{s[0]} = {float(s[1]):.3g}", float(s[1])))
    else:
      out.append((f"{float(s):.3g}", float(s)))
  return out


def norm_histogram(
  norms: Any,
  *,
  suggestions: Any = None,
  path: str | os.PathLike | None = None,
  bins: int = 40,
  figsize: tuple[float, float] = _FIGSIZE,
  dpi: int = _DPI,
  title: str | None = None,
):
  """Histogram of observed norms with suggested thresholds drawn on it.

  Bins are logarithmic when the norms span more than a factor of 10.

  Args:
    norms: observed norms (any array), or a
      :class:`optaxclip.CalibrationReport` (its global norms, and its
      suggestions unless ``suggestions`` is given). Non-finite values are
      left out.
    suggestions: thresholds to draw: a
      :class:`optaxclip.ThresholdSuggestion`, a dict of them (as returned by
      ``suggest_threshold(..., "all")``), a dict of label to value, a
      sequence of any of these, or a number.
    path: where to save the figure, if anywhere.
    bins: number of bins.
    figsize: size in inches.
    dpi: dots per inch.
    title: the axes' title.

  Returns:
    The :class:`matplotlib.figure.Figure`.

  Example:
    >>> import numpy as np, optaxclip, optaxclip.plot
    >>> norms = np.random.default_rng(0).lognormal(0.0, 0.5, 500)
    >>> s = optaxclip.suggest_threshold(norms, "all")
    >>> fig = optaxclip.plot.norm_histogram(norms, suggestions=s)
    >>> len(fig.axes[0].get_lines())
    3
  """
  if isinstance(norms, _diagnostics.CalibrationReport):
    if suggestions is None:
      suggestions = norms.suggestions
    norms = norms.global_norms
  a = np.asarray(norms, np.float64).ravel()
  a = a[np.isfinite(a)]
  fig, axes = _figure(figsize, dpi)
  ax = axes[0, 0]
  items = _suggestion_items(suggestions)
  if a.size:
    pos = a[a > 0]
    use_log = pos.size == a.size and _wants_log([a])
    if use_log:
      edges = np.geomspace(pos.min(), pos.max(), bins + 1)
      ax.set_xscale("log")
    else:
      edges = bins
    ax.hist(a, bins=edges, color="tab:blue", alpha=0.7, label=f"{a.size} steps")
  colors = ("tab:red", "tab:orange", "tab:green", "tab:purple", "tab:brown")
  for k, (label, value) in enumerate(items):
    if math.isfinite(value) and (ax.get_xscale() != "log" or value > 0):
      ax.axvline(value, color=colors[k % len(colors)], ls="--", label=label)
  ax.set_xlabel("gradient norm")
  ax.set_ylabel("steps")
  ax.set_title(title if title is not None else "gradient norms")
  ax.legend(loc="best", fontsize="small")
  return _save(fig, path)


def loss_curves(
  history: Any,
  *,
  keys: Sequence[str] = ("loss", "val_loss"),
  path: str | os.PathLike | None = None,
  log: bool | None = None,
  figsize: tuple[float, float] = _FIGSIZE,
  dpi: int = _DPI,
):
  """Scalars such as the training and validation loss over steps.

  Keys the history lacks are skipped; a key recorded at few steps (e.g. a
  validation loss) is drawn with markers.

  Args:
    history: a :class:`optaxclip.StatsHistory`.
    keys: the scalars to draw.
    path: where to save the figure, if anywhere.
    log: log y axis; default when the values are positive and span 10x.
    figsize: size in inches.
    dpi: dots per inch.

  Returns:
    The :class:`matplotlib.figure.Figure`.

  Raises:
    ValueError: none of ``keys`` is in the history.

  Example:
    >>> import optaxclip, optaxclip.plot
    >>> h = optaxclip.StatsHistory()
    >>> for t in range(30):
    ...   h.append(t, loss=1.0 / (t + 1))
    >>> h.append(29, val_loss=0.05)
    >>> fig = optaxclip.plot.loss_curves(h)
    >>> [l.get_label() for l in fig.axes[0].get_lines()]
    ['loss', 'val_loss']
  """
  fn = "loss_curves"
  history = _history(history, fn)
  present = [k for k in keys if k in history]
  if not present:
    known = history.keys()
    scalars = [k for k in known if "/" not in k] or known[:8]
    raise ValueError(
      f"optaxclip.plot.{fn}: none of {list(keys)} is in the history; it "
      f"has {scalars}."
    )
  steps, series = _sorted(history, *present)
  fig, axes = _figure(figsize, dpi)
  ax = axes[0, 0]
  for key, v in zip(present, series):
    ok = np.isfinite(v)
    sparse = ok.sum() < 0.5 * steps.size
    ax.plot(
      steps[ok], v[ok], marker="o" if sparse else None, ms=3, lw=1.2, label=key
    )
  if log if log is not None else _wants_log(series):
    ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_title(", ".join(present))
  ax.grid(True, alpha=0.3)
  ax.legend(loc="best", fontsize="small")
  return _save(fig, path)


def compare_runs(
  histories: Mapping[str, Any],
  *,
  keys: Sequence[str] = ("loss", "<name>/norm_before"),
  path: str | os.PathLike | None = None,
  window: int = 1,
  figsize: tuple[float, float] | None = None,
  dpi: int = _DPI,
):
  """Several runs side by side: one panel per key, one line per run.

  In a key, ``<name>`` stands for each run's first clipper, so
  ``"<name>/norm_before"`` compares the pre-clip norms of runs with
  different strategies. A run lacking a key is left out of that panel. A
  panel's y axis is logarithmic when its values are positive and span 10x.

  Args:
    histories: ``{run label: StatsHistory}``.
    keys: the keys to compare, one panel each.
    path: where to save the figure, if anywhere.
    window: moving-average window (recorded steps) to smooth noisy curves;
      1 draws them raw.
    figsize: size in inches; default 4.5 wide per panel (at most 3 a row)
      and 3.5 tall per row.
    dpi: dots per inch.

  Returns:
    The :class:`matplotlib.figure.Figure`.

  Example:
    >>> import optaxclip, optaxclip.plot
    >>> runs = {}
    >>> for label, scale in (("a", 1.0), ("b", 10.0)):
    ...   h = runs[label] = optaxclip.StatsHistory()
    ...   for t in range(20):
    ...     h.append(t, {"clip": {"norm_before": scale * (t + 1)}},
    ...              loss=scale / (t + 1))
    >>> fig = optaxclip.plot.compare_runs(runs)
    >>> [ax.get_title() for ax in fig.axes]
    ['loss', 'clip/norm_before']
  """
  fn = "compare_runs"
  if not isinstance(histories, Mapping) or not histories:
    raise TypeError(
      f"optaxclip.plot.{fn}: expected a non-empty dict of label to "
      "StatsHistory."
    )
  if isinstance(window, bool) or not isinstance(window, int) or window < 1:
    raise ValueError(
      f"optaxclip.plot.{fn}: `window` must be an int >= 1, got {window!r}."
    )
  runs = {str(k): _history(h, fn) for k, h in histories.items()}
  keys = list(keys)
  if not keys:
    raise ValueError(f"optaxclip.plot.{fn}: `keys` is empty.")
  ncols = min(3, len(keys))
  nrows = math.ceil(len(keys) / ncols)
  if figsize is None:
    figsize = (4.5 * ncols, 3.5 * nrows)
  fig, axes = _figure(figsize, dpi, nrows, ncols)
  for i, key in enumerate(keys):
    ax = axes[i // ncols, i % ncols]
    drawn, shown = [], set()
    for label, h in runs.items():
      k = key
      if "<name>" in key:
        clippers = h._clippers()
        if not clippers:
          continue
        k = key.replace("<name>", clippers[0])
      if k not in h:
        continue
      steps, (v,) = _sorted(h, k)
      if window > 1:
        v = _rolling_mean(v, window)
      ok = np.isfinite(v)
      ax.plot(steps[ok], v[ok], lw=1.2, label=label)
      drawn.append(v)
      shown.add(k)
    if drawn and _wants_log(drawn):
      ax.set_yscale("log")
    ax.set_title(shown.pop() if len(shown) == 1 else key)
    ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)
    if drawn:
      ax.legend(loc="best", fontsize="small")
    else:
      ax.text(0.5, 0.5, "no run has this key", ha="center", va="center")
  for j in range(len(keys), nrows * ncols):
    axes[j // ncols, j % ncols].set_visible(False)
  return _save(fig, path)
