# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""An LSTM/GRU forecaster: a recurrent stack, then a linear multi-step head."""

from __future__ import annotations

from flax import nnx

from examples.common.rnn import RNNStack


class Forecaster(nnx.Module):
  """Reads a window, predicts the next ``horizon`` values at once.

  Args:
    features: input features per time step.
    hidden: hidden size.
    horizon: number of values forecast.
    layers: recurrent layers.
    cell: ``"lstm"`` or ``"gru"``.
    norm: ``"none"`` or ``"layernorm"``.
    rngs: initialisation keys.
  """

  def __init__(
    self,
    features: int,
    hidden: int,
    horizon: int,
    layers: int = 1,
    cell: str = "lstm",
    norm: str = "none",
    *,
    rngs: nnx.Rngs,
  ):
    self.rnn = RNNStack(features, hidden, layers, cell, norm, rngs=rngs)
    self.head = nnx.Linear(hidden, horizon, rngs=rngs)

  def __call__(self, x):
    """Forecasts ``[batch, horizon]`` from windows ``[batch, time, feat]``."""
    _, h = self.rnn(x)
    return self.head(h[:, -1])
