# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The LSTM forecaster: statsmodels series, windows, exact resume."""

from __future__ import annotations

import jax
import numpy as np
import pytest

pytest.importorskip("flax", exc_type=ModuleNotFoundError)
pytest.importorskip("statsmodels", exc_type=ModuleNotFoundError)

from flax import nnx

from examples.common import trainer
from examples.common.testing import argv
from examples.common.testing import loss_fell
from examples.common.testing import train_rows
from examples.forecasting import input_pipeline
from examples.forecasting import train as forecasting

# A seasonal series with a trend, for the training tests.
T = np.arange(160)
SERIES = 0.05 * T + np.sin(2 * np.pi * T / 12) + 0.1 * np.cos(T)


def test_statsmodels_series_are_real_and_offline():
  co2 = input_pipeline.load_series("co2")
  assert len(co2) == 526 and 310 < co2[0] < 320 and co2[-1] > 365
  sun = input_pipeline.load_series("sunspots")
  assert len(sun) == 309 and sun.min() >= 0
  assert len(input_pipeline.load_series("elnino")) == 61 * 12
  with pytest.raises(ValueError, match="unknown series"):
    input_pipeline.load_series("nope")


def test_windows_and_seasonal_naive(tmp_path):
  y = np.arange(100.0)
  assert input_pipeline.seasonal_naive(y, 50, 3, 12).tolist() == [39, 40, 41]
  assert input_pipeline.seasonal_naive(y, 50, 14, 12)[-1] == 40  # 2 seasons
  w = input_pipeline.Windows.make(SERIES, 12, 24, 6)
  assert w.train.max() + 6 < w.val.min() + 6 <= w.test.min()
  b = w.batch(w.train[:4])
  assert b["x"].shape == (4, 24, 3) and b["y"].shape == (4, 6)
  np.testing.assert_allclose(b["x"][:, -1, 0], 0.0)  # relative to the origin
  f = tmp_path / "s.csv"
  f.write_text("date,value\n2020,1.5\n2021,2.5\n")
  assert input_pipeline.load_series_file(f).tolist() == [1.5, 2.5]


def _args(workdir, **flags):
  base = {
    "hidden": 16,
    "batch_size": 8,
    "lr": 1e-2,
    "season": 12,
    "input_len": 24,
    "horizon": 6,
    "no_progress": True,
    "no_plots": True,
    "workdir": workdir,
    "eval_every": 8,
    "ckpt_every": 8,
    "clip": "clip_by_global_norm:1.0",
  }
  return forecasting.make_parser().parse_args(argv(**{**base, **flags}))


def _params(result):
  return jax.tree.leaves(nnx.state(result.model, nnx.Param))


def test_resume_is_exact_and_loss_falls(tmp_path):
  full = trainer.train(
    forecasting.build_task(_args(tmp_path / "a", steps=16), SERIES),
    _args(tmp_path / "a", steps=16),
  )
  args = _args(tmp_path / "b", steps=8)
  trainer.train(forecasting.build_task(args, SERIES), args)
  args = _args(tmp_path / "b", steps=16, resume=True)
  resumed = trainer.train(forecasting.build_task(args, SERIES), args)
  for a, b in zip(_params(full), _params(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  rows_a, rows_b = train_rows(tmp_path / "a"), train_rows(tmp_path / "b")
  assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
  assert loss_fell(full.losses)
  for key in ("test_rmse", "naive_rmse", "skill"):
    assert np.isfinite(resumed.eval[key])
