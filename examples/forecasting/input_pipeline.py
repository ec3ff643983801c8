# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Real series shipped with statsmodels, and forecasting windows.

* ``co2``: Mauna Loa atmospheric CO2 (ppm) from flask samples, weekly
  1958-2001 (Keeling & Whorf, Scripps Institution of Oceanography),
  averaged to 526 months with the few missing months interpolated;
  season 12.
* ``sunspots``: yearly mean sunspot numbers 1700-2008 (NOAA National
  Geophysical Data Center), 309 years; "season" 11, the solar cycle.
* ``elnino``: monthly sea-surface temperature of the Nino 1+2 region
  1950-2010 (NOAA ERSST.V3B), 732 months; season 12.

A window of ``input_len`` values ending at time ``t`` (the forecast origin)
predicts the next ``horizon`` values. Inputs and targets are taken relative
to the value at ``t`` and divided by the training series' standard
deviation, so a trend (CO2 rises all the time) does not push test windows
outside the range the model was trained on.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from examples.common import data

SERIES = {"co2": 12, "sunspots": 11, "elnino": 12}


def load_series(name: str) -> np.ndarray:
  """One of :data:`SERIES` as float64, oldest first."""
  import statsmodels.api as sm

  if name == "co2":
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    return weekly.resample("MS").mean().interpolate().to_numpy(np.float64)
  if name == "sunspots":
    df = sm.datasets.sunspots.load_pandas().data
    return df["SUNACTIVITY"].to_numpy(np.float64)
  if name == "elnino":
    df = sm.datasets.elnino.load_pandas().data
    return df.drop(columns="YEAR").to_numpy(np.float64).ravel()
  raise ValueError(f"unknown series {name!r}; expected one of {list(SERIES)}")


def load_series_file(path: str | os.PathLike) -> np.ndarray:
  """Your own series: one number per line, or the last column of a CSV.

  Lines whose last cell is not a number (a header) are skipped.

  Raises:
    examples.common.data.DataError: the file is not usable text (see
      :func:`~examples.common.data.read_text_file`), a value is NaN or
      infinite (the message gives the line), or no line holds a number.
  """
  values = []
  text = data.read_text_file(path)
  for number, line in enumerate(text.splitlines(), 1):
    cell = line.strip().split(",")[-1].strip()
    try:
      value = float(cell)
    except ValueError:
      continue  # a header
    if not math.isfinite(value):
      raise data.DataError(
        f"{str(path)!r} line {number}: {cell!r} is not a finite number"
      )
    values.append(value)
  if not values:
    raise data.DataError(f"{str(path)!r} holds no number (one per line)")
  return np.asarray(values, np.float64)


def seasonal_naive(y: np.ndarray, origin: int, horizon: int, season: int):
  """The value one season (or a whole number of seasons) back, per step."""
  k = np.arange(1, horizon + 1)
  back = season * np.ceil(k / season).astype(int)
  return y[origin + k - back]


@dataclasses.dataclass
class Windows:
  """Forecasting windows of a series, split in time.

  Attributes:
    y: the series.
    season: its season length.
    input_len: values in a window.
    horizon: values to forecast.
    scale: the normalising standard deviation (training part).
    train: forecast origins whose targets end before the validation part.
    val: origins whose first target is in the validation part and last
      target before the test part.
    test: origins whose first target is in the test part.
  """

  y: np.ndarray
  season: int
  input_len: int
  horizon: int
  scale: float
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray

  @classmethod
  def make(
    cls,
    y: np.ndarray,
    season: int,
    input_len: int,
    horizon: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
  ) -> Windows:
    n = len(y)
    test_start = n - max(int(n * test_fraction), horizon)
    val_start = test_start - max(int(n * val_fraction), horizon)
    first = max(input_len, season) - 1  # seasonal naive needs a season
    origins = np.arange(first, n - horizon)
    train = origins[origins + horizon < val_start]
    val = origins[(origins + 1 >= val_start) & (origins + horizon < test_start)]
    test = origins[origins + 1 >= test_start]
    if not len(train) or not len(val) or not len(test):
      raise data.DataError(
        f"series of {n} values is too short for windows of {input_len} and "
        f"a horizon of {horizon}"
      )
    scale = float(np.std(y[:val_start])) or 1.0
    return cls(y, season, input_len, horizon, scale, train, val, test)

  def batch(self, origins: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs ``[b, input_len, 3]`` (value and season phase) and targets."""
    t = np.asarray(origins)[:, None]
    idx = t - self.input_len + 1 + np.arange(self.input_len)
    last = self.y[t]
    x = (self.y[idx] - last) / self.scale
    phase = 2 * np.pi * (idx % self.season) / self.season
    feats = np.stack([x, np.sin(phase), np.cos(phase)], -1)
    fut = self.y[t + 1 + np.arange(self.horizon)]
    return {
      "x": feats.astype(np.float32),
      "y": ((fut - last) / self.scale).astype(np.float32),
      "last": last[:, 0].astype(np.float32),
    }

  def targets(self, origins: np.ndarray) -> np.ndarray:
    t = np.asarray(origins)[:, None]
    return self.y[t + 1 + np.arange(self.horizon)]

  def naive(self, origins: np.ndarray) -> np.ndarray:
    return np.stack(
      [
        seasonal_naive(self.y, int(t), self.horizon, self.season)
        for t in origins
      ]
    )
