# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of optaxclip.plot: every figure renders to a PNG without a display."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import optaxclip

# Skip only when matplotlib (an optional extra) is not installed; the
# package's own optaxclip.plot is imported plainly, so a broken import fails.
mpl_image = pytest.importorskip(
  "matplotlib.image", exc_type=ModuleNotFoundError
)

from optaxclip import plot  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(n=60, seed=0, name="clip_by_global_norm", threshold=1.5):
  """A history with a clipper, a monitor of 3 layers and two losses."""
  rng = np.random.default_rng(seed)
  h = optaxclip.StatsHistory()
  nonfinite = 0
  for t in range(n):
    norm = float(rng.lognormal(0.3, 0.4))
    if t == 30:
      norm = np.nan
      nonfinite += 1
    stats = {
      name: {
        "norm_before": norm,
        "norm_after": min(norm, threshold),
        "threshold": threshold,
        "clipped": float(norm > threshold) if np.isfinite(norm) else 1.0,
        "nonfinite_count": nonfinite,
      },
      "monitor_norms": {
        "norms": {
          f"layers_{i}/kernel": 0.5**i * (1 + 0.1 * t) for i in range(3)
        }
        | {"unused": 0.0},
        "global_norm": norm,
      },
    }
    h.append(t, stats, loss=1.0 / (t + 1))
    if t % 10 == 9:
      h.append(t, val_loss=1.2 / (t + 1))
  return h


def _check_png(path, width, height):
  with open(path, "rb") as f:
    data = f.read()
  assert data[:8] == PNG_MAGIC and len(data) > 1000
  img = mpl_image.imread(path)
  assert img.shape[:2] == (height, width)


def test_norm_history(tmp_path):
  path = tmp_path / "norms.png"
  fig = plot.norm_history(_history(), path=path)
  _check_png(path, 800, 450)
  ax = fig.axes[0]
  assert ax.get_yscale() == "log" and ax.get_title() == "clip_by_global_norm"
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert labels[:3] == ["norm before", "norm after", "threshold"]
  assert any(lab.startswith("clipped (") for lab in labels)
  assert "non-finite" in labels


def test_norm_history_marks_only_counted_nonfinite_steps():
  # clip_by_value records NaN norms by design: they are not non-finite steps.
  tx = optaxclip.clip_by_value(1.0)
  state = tx.init(np.zeros(2))
  h = optaxclip.StatsHistory()
  for t in range(6):
    g = np.array([np.nan if t == 4 else 2.0, 0.5], np.float32)
    _, state = tx.update(g, state)
    h.append(t, optaxclip.stats(state))
  fig = plot.norm_history(h)
  red = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "non-finite"]
  assert len(red) == 1 and red[0].get_xdata()[0] == 4


def test_norm_history_of_a_monitor_and_custom_size(tmp_path):
  h = optaxclip.StatsHistory()
  for t in range(5):
    h.append(t, {"mon": {"norms": {"a": 1.0}, "global_norm": t + 1.0}})
  path = tmp_path / "sub" / "mon.png"  # parent folders are created
  fig = plot.norm_history(h, path=path, figsize=(4, 3), dpi=50)
  _check_png(path, 200, 150)
  assert fig.axes[0].get_lines()[0].get_label() == "global norm"


def test_clip_rate(tmp_path):
  path = tmp_path / "rate.png"
  fig = plot.clip_rate(_history(), window=10, path=path)
  _check_png(path, 800, 450)
  ax = fig.axes[0]
  assert ax.get_title().startswith("clip_by_global_norm: clip rate (overall ")
  assert ax.get_ylim() == pytest.approx((-0.02, 1.02))
  rolling = ax.get_lines()[1].get_ydata()
  assert np.nanmax(rolling) <= 1.0 and np.nanmin(rolling) >= 0.0
  with pytest.raises(ValueError, match="window"):
    plot.clip_rate(_history(), window=0)


def test_rolling_mean_skips_nan():
  v = np.array([1.0, np.nan, 0.0, 1.0])
  np.testing.assert_allclose(plot._rolling_mean(v, 2), [1.0, 1.0, 0.0, 0.5])


def test_layer_heatmap(tmp_path):
  path = tmp_path / "heat.png"
  fig = plot.layer_heatmap(_history(), path=path, figsize=(6, 4))
  _check_png(path, 600, 400)
  ax = fig.axes[0]
  ticks = [t.get_text() for t in ax.get_yticklabels()]
  assert ticks == [
    "layers_0/kernel",
    "layers_1/kernel",
    "layers_2/kernel",
    "unused",
  ]
  data = ax.get_images()[0].get_array()
  assert data.shape == (4, 60)
  assert data.mask[3].all()  # zero norms are masked (grey), not -inf
  np.testing.assert_allclose(data[0, 0] - data[1, 0], np.log10(2))


def test_layer_heatmap_many_paths_default_size():
  h = optaxclip.StatsHistory()
  for t in range(3):
    h.append(t, {"m": {"norms": {f"p{i}": 1.0 + i for i in range(80)}}})
  fig = plot.layer_heatmap(h)
  assert tuple(fig.get_size_inches()) == (9.0, 12.0)
  assert fig.axes[0].get_ylabel() == "80 paths (natural order)"


def test_norm_histogram_with_suggestions(tmp_path):
  norms = np.random.default_rng(0).lognormal(0.0, 1.0, 400)
  s = optaxclip.suggest_threshold(norms, "all")
  path = tmp_path / "hist.png"
  fig = plot.norm_histogram(norms, suggestions=s, path=path)
  _check_png(path, 800, 450)
  ax = fig.axes[0]
  assert ax.get_xscale() == "log"  # the norms span more than 10x
  xs = sorted(line.get_xdata()[0] for line in ax.get_lines())
  assert xs == pytest.approx(sorted(v.value for v in s.values()))
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert any("10th percentile" in lab and "clips 90%" in lab for lab in labels)
  # Other accepted forms of suggestions.
  fig = plot.norm_histogram(norms, suggestions={"mine": 2.0})
  assert fig.axes[0].get_lines()[0].get_label() == "mine = 2"
  fig = plot.norm_histogram(norms, suggestions=3.0)
  assert len(fig.axes[0].get_lines()) == 1
  fig = plot.norm_histogram(np.full(5, 2.0))  # linear bins
  assert fig.axes[0].get_xscale() == "linear"


def test_norm_histogram_of_a_calibration_report():
  import itertools

  import jax
  import jax.numpy as jnp

  grad_fn = jax.grad(lambda p, b: jnp.sum((p["w"] * b) ** 2))
  report = optaxclip.calibrate(
    grad_fn, {"w": jnp.ones(3)}, itertools.repeat(jnp.ones(3)), n_steps=5
  )
  fig = plot.norm_histogram(report)
  assert len(fig.axes[0].get_lines()) == 3
  fig = plot.norm_history(report)  # the report's history (a monitor)
  assert fig.axes[0].get_title() == "calibrate"


def test_loss_curves(tmp_path):
  path = tmp_path / "loss.png"
  fig = plot.loss_curves(_history(), path=path)
  _check_png(path, 800, 450)
  ax = fig.axes[0]
  lines = {line.get_label(): line for line in ax.get_lines()}
  assert set(lines) == {"loss", "val_loss"}
  assert lines["val_loss"].get_marker() == "o"  # sparse: drawn with markers
  assert len(lines["val_loss"].get_xdata()) == 6
  assert ax.get_yscale() == "log"
  fig = plot.loss_curves(_history(), keys=("loss", "missing"), log=False)
  assert fig.axes[0].get_yscale() == "linear"
  with pytest.raises(ValueError, match="none of"):
    plot.loss_curves(_history(), keys=("accuracy",))


def test_compare_runs(tmp_path):
  runs = {
    "global": _history(seed=0),
    "autoclip": _history(seed=1, name="autoclip"),
    "no stats": optaxclip.StatsHistory(),
  }
  runs["no stats"].append(0, loss=1.0)
  runs["no stats"].append(1, loss=0.5)
  path = tmp_path / "compare.png"
  fig = plot.compare_runs(
    runs,
    keys=("loss", "<name>/norm_before", "<name>/clipped", "absent"),
    window=5,
    path=path,
  )
  _check_png(path, 1350, 700)  # 3 panels a row, 2 rows
  titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
  assert titles == ["loss", "<name>/norm_before", "<name>/clipped", "absent"]
  panels = [ax for ax in fig.axes if ax.get_visible()]
  assert [ln.get_label() for ln in panels[0].get_lines()] == list(runs)
  assert [ln.get_label() for ln in panels[1].get_lines()] == [
    "global",
    "autoclip",
  ]
  assert panels[0].get_yscale() == "log"  # loss spans 60x
  assert panels[2].get_yscale() == "linear"  # clip rates include 0
  # One run: the resolved key is the title.
  fig = plot.compare_runs({"a": runs["global"]})
  assert [ax.get_title() for ax in fig.axes] == [
    "loss",
    "clip_by_global_norm/norm_before",
  ]
  with pytest.raises(TypeError, match="dict"):
    plot.compare_runs([runs["global"]])


def test_name_selection_and_errors():
  h = _history()
  h.append(100, {"second": {"norm_before": 1.0, "clipped": 0.0}})
  assert plot.norm_history(h).axes[0].get_title() == "clip_by_global_norm"
  assert plot.norm_history(h, name="second").axes[0].get_title() == "second"
  with pytest.raises(ValueError, match="no statistics named 'nope'"):
    plot.clip_rate(h, name="nope")
  empty = optaxclip.StatsHistory()
  empty.append(0, loss=1.0)
  with pytest.raises(ValueError, match="no clipper statistics"):
    plot.clip_rate(empty)
  with pytest.raises(ValueError, match="no monitor statistics"):
    plot.layer_heatmap(empty)
  with pytest.raises(TypeError, match="StatsHistory"):
    plot.norm_history({"loss": [1.0]})


def test_missing_matplotlib_gives_a_clear_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
  with pytest.raises(ImportError, match=r"optaxclip\[examples\]"):
    plot.loss_curves(_history())


def test_renders_without_a_display_or_pyplot(tmp_path):
  """A fresh process with no display and no backend set writes the PNG and
  never imports pyplot."""
  code = textwrap.dedent(
    f"""
    import sys
    import optaxclip, optaxclip.plot
    h = optaxclip.StatsHistory()
    for t in range(5):
      h.append(t, loss=1.0 / (t + 1))
    optaxclip.plot.loss_curves(h, path={str(tmp_path / "x.png")!r})
    assert "matplotlib.pyplot" not in sys.modules
    """
  )
  env = {
    k: v
    for k, v in os.environ.items()
    if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")
  }
  env["JAX_PLATFORMS"] = "cpu"
  subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
  _check_png(tmp_path / "x.png", 800, 450)
