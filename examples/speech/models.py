# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""A bidirectional LSTM/GRU acoustic model for CTC, and greedy decoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from examples.common.rnn import bidirectional_layers
from examples.common.rnn import zeros_carry


def _dropout(x, rate: float, key):
  if key is None or rate <= 0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


class CTCModel(nnx.Module):
  """Frame stacking, ``nnx.Bidirectional`` recurrent layers, per-step logits.

  Every ``stride`` consecutive feature frames are concatenated into one
  input step (10 ms frames, stride 2: 20 ms steps), projected to
  ``hidden`` units and run through bidirectional LSTM/GRU layers
  (``seq_lengths`` keeps the padding out of both directions); a linear
  layer gives the logits of the blank (class 0) and the characters.

  Args:
    n_mels: feature size of one frame.
    classes: output classes, the CTC blank included.
    hidden: hidden size of each direction.
    layers: bidirectional layers.
    stride: frames stacked into one step.
    cell: ``"lstm"`` or ``"gru"``.
    norm: ``"none"`` or ``"layernorm"``.
    dropout: dropout rate between layers.
    rngs: initialisation keys.
  """

  def __init__(
    self,
    n_mels: int,
    classes: int,
    hidden: int = 128,
    layers: int = 2,
    stride: int = 2,
    cell: str = "lstm",
    norm: str = "none",
    dropout: float = 0.1,
    *,
    rngs: nnx.Rngs,
  ):
    self.cell_kind, self.hidden = cell, hidden
    self.stride, self.dropout = stride, dropout
    self.proj = nnx.Linear(n_mels * stride, hidden, rngs=rngs)
    self.layers = bidirectional_layers(
      cell, hidden, hidden, layers, norm, rngs=rngs
    )
    self.out = nnx.Linear(2 * hidden, classes, rngs=rngs)

  def steps(self, frames):
    """Valid output steps of inputs with ``frames`` valid frames."""
    return (frames + self.stride - 1) // self.stride

  def __call__(self, feats, frames, key=None):
    """Logits ``[batch, steps, classes]`` and the valid steps ``[batch]``.

    Args:
      feats: features ``[batch, frames, n_mels]``, frames a multiple of the
        stride, zero-padded.
      frames: valid frames ``[batch]``.
      key: a PRNG key to apply dropout (training), or None.
    """
    b, t, d = feats.shape
    x = feats.reshape(b, t // self.stride, d * self.stride)
    lengths = self.steps(frames)
    x = jnp.tanh(self.proj(x))
    keys = (
      jax.random.split(key, len(self.layers) + 1)
      if key is not None
      else [None] * (len(self.layers) + 1)
    )
    for layer, k in zip(self.layers, keys):
      carry = (
        zeros_carry(self.cell_kind, (b,), self.hidden),
        zeros_carry(self.cell_kind, (b,), self.hidden),
      )
      x = layer(
        _dropout(x, self.dropout, k), initial_carry=carry, seq_lengths=lengths
      )
    return self.out(_dropout(x, self.dropout, keys[-1])), lengths


def greedy_decode(best: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
  """Best-path CTC decoding: merge repeated labels, then drop blanks (0).

  Args:
    best: the arg-max class of every step, ``[batch, steps]``.
    lengths: the valid steps of each row.

  Returns:
    The label ids of each row.

  >>> greedy_decode(np.array([[0, 3, 3, 0, 3, 5, 5, 0]]), np.array([8]))
  [[3, 3, 5]]
  """
  out = []
  for row, n in zip(np.asarray(best), np.asarray(lengths)):
    row = row[: int(n)]
    keep = np.ones(len(row), bool)
    keep[1:] = row[1:] != row[:-1]
    out.append([int(c) for c in row[keep] if c != 0])
  return out
