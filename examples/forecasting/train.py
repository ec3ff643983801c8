# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Forecasting a real series with an LSTM, against the seasonal-naive method.

Example::

  python -m examples.forecasting --series co2 --clip clip_by_global_norm:1.0
  python -m examples.forecasting --series sunspots --clip zclip
  python -m examples.forecasting --series-file my_series.csv --season 7
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from examples.common import cli
from examples.common import trainer
from examples.forecasting.input_pipeline import SERIES
from examples.forecasting.input_pipeline import Windows
from examples.forecasting.input_pipeline import load_series
from examples.forecasting.input_pipeline import load_series_file
from examples.forecasting.models import Forecaster


def make_parser() -> argparse.ArgumentParser:
  p = cli.parser(
    "Train an LSTM/GRU forecaster on a real series from statsmodels "
    "(Mauna Loa CO2, sunspots, El Nino) and compare its RMSE with the "
    "seasonal-naive forecast.",
    prog="python -m examples.forecasting",
    lr=3e-3,
    steps=1500,
    hidden=64,
    eval_every=250,
  )
  g = p.add_argument_group("forecasting")
  g.add_argument(
    "--series",
    choices=tuple(SERIES),
    default="co2",
    help="the statsmodels series",
  )
  g.add_argument(
    "--series-file",
    type=cli.text_file,
    default=None,
    help="your own series (one per line)",
  )
  g.add_argument(
    "--season", type=cli.positive_int, default=None, help="season length"
  )
  g.add_argument(
    "--input-len",
    type=cli.positive_int,
    default=None,
    help="values in a window (default: 4 seasons)",
  )
  g.add_argument(
    "--horizon",
    type=cli.positive_int,
    default=None,
    help="values forecast (default: 1 season)",
  )
  return p


def loss_fn(model, batch, carry, key):
  """Mean squared error of the normalised forecast."""
  del key
  err = model(batch["x"]) - batch["y"]
  return jnp.mean(jnp.square(err)), (carry, {})


@nnx.jit
def _forecast(model, x):
  return model(x)


def forecast(model, w: Windows, origins: np.ndarray, batch_size: int):
  """Forecasts in the series' units, ``[len(origins), horizon]``."""
  out = []
  for ob, wt in trainer.padded_batches((origins,), batch_size):
    b = w.batch(ob)
    pred = np.asarray(_forecast(model, trainer.shard_batch(b["x"])))
    k = int(wt.sum())
    out.append(pred[:k] * w.scale + b["last"][:k, None])
  return np.concatenate(out)


def rmse(a, b) -> float:
  return float(np.sqrt(np.mean(np.square(np.asarray(a) - np.asarray(b)))))


def evaluate(model, w: Windows, batch_size: int) -> dict[str, float]:
  """Validation loss; test RMSE of the model and of the seasonal naive."""
  vp = forecast(model, w, w.val, batch_size)
  tp = forecast(model, w, w.test, batch_size)
  val_loss = float(np.mean(np.square((vp - w.targets(w.val)) / w.scale)))
  test_rmse = rmse(tp, w.targets(w.test))
  naive = rmse(w.naive(w.test), w.targets(w.test))
  return {
    "val_loss": val_loss,
    "test_rmse": test_rmse,
    "naive_rmse": naive,
    "skill": 1.0 - test_rmse / naive if naive > 0 else math.nan,
  }


def build_task(args, series: np.ndarray | None = None) -> trainer.Task:
  """The forecasting task for parsed ``args`` (``series`` overrides data)."""
  name = args.series
  if series is None:
    if args.series_file:
      series, name = load_series_file(args.series_file), args.series_file
    else:
      series = load_series(args.series)
  season = args.season or SERIES.get(args.series, 12)
  input_len = args.input_len or 4 * season
  horizon = args.horizon or season
  w = Windows.make(series, season, input_len, horizon)
  model = Forecaster(
    3,
    args.hidden,
    horizon,
    args.layers,
    args.cell,
    args.norm,
    rngs=nnx.Rngs(args.seed),
  )

  def train_batch(step):
    rng = np.random.default_rng([args.seed, step])
    return w.batch(rng.choice(w.train, args.batch_size))

  def report(model, ev):
    pred = forecast(model, w, w.test[-1:], args.batch_size)[0]
    truth = w.targets(w.test[-1:])[0]
    naive = w.naive(w.test[-1:])[0]
    fmt = lambda v: " ".join(f"{x:.1f}" for x in v)
    return [
      f"series: {name}, {len(series)} values, season {season}, "
      f"{len(w.train)} training windows, {len(w.test)} test windows",
      f"test RMSE {ev['test_rmse']:.3f} vs seasonal naive "
      f"{ev['naive_rmse']:.3f} (skill {ev['skill']:+.1%})",
      f"last window, truth:    {fmt(truth)}",
      f"            forecast: {fmt(pred)}",
      f"            naive:    {fmt(naive)}",
    ]

  return trainer.Task(
    name="forecasting",
    model=model,
    loss_fn=loss_fn,
    train_batch=train_batch,
    evaluate=lambda m: evaluate(m, w, args.batch_size),
    meta={"series": str(name), "season": season, "scale": w.scale},
    report=report,
    metric="test_rmse",
  )


def main(argv: Sequence[str] | None = None) -> trainer.RunResult:
  p = make_parser()
  args = cli.parse(p, argv, "forecasting")
  with cli.usage_errors(p):
    task = build_task(args)
  result = trainer.train(task, args)
  trainer.summary(result, task.metric)
  return result
