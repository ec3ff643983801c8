# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""A bidirectional LSTM/GRU sentence classifier."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from examples.common.rnn import bidirectional_layers
from examples.common.rnn import zeros_carry


def _dropout(x, rate: float, key):
  if key is None or rate <= 0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


class BiRNNClassifier(nnx.Module):
  """Embedding, ``nnx.Bidirectional`` recurrent layers, pooling, softmax.

  Each layer runs a forward and a backward ``nnx.RNN`` over the padded
  sentence (``seq_lengths`` keeps the padding out of both directions) and
  concatenates them. The top layer's outputs are mean- and max-pooled over
  the valid positions.

  Args:
    vocab: vocabulary size.
    classes: number of classes.
    embed: embedding size.
    hidden: hidden size of each direction.
    layers: bidirectional layers.
    cell: ``"lstm"`` or ``"gru"``.
    norm: ``"none"`` or ``"layernorm"``.
    dropout: dropout rate on the embeddings and the pooled features.
    rngs: initialisation keys.
  """

  def __init__(
    self,
    vocab: int,
    classes: int = 2,
    embed: int = 64,
    hidden: int = 64,
    layers: int = 1,
    cell: str = "lstm",
    norm: str = "none",
    dropout: float = 0.3,
    *,
    rngs: nnx.Rngs,
  ):
    self.cell_kind, self.hidden, self.dropout = cell, hidden, dropout
    self.embed = nnx.Embed(vocab, embed, rngs=rngs)
    self.layers = bidirectional_layers(
      cell, embed, hidden, layers, norm, rngs=rngs
    )
    self.hidden_layer = nnx.Linear(4 * hidden, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, classes, rngs=rngs)

  def __call__(self, ids, lengths, key=None):
    """Class logits ``[batch, classes]``.

    Args:
      ids: token ids ``[batch, time]``, padded with 0.
      lengths: valid lengths ``[batch]``.
      key: a PRNG key to apply dropout (training), or None.
    """
    k1, k2 = jax.random.split(key) if key is not None else (None, None)
    x = _dropout(self.embed(ids), self.dropout, k1)
    batch = ids.shape[:1]
    for layer in self.layers:
      carry = (
        zeros_carry(self.cell_kind, batch, self.hidden),
        zeros_carry(self.cell_kind, batch, self.hidden),
      )
      x = layer(x, initial_carry=carry, seq_lengths=lengths)
    mask = (jnp.arange(ids.shape[1])[None, :] < lengths[:, None])[..., None]
    mean = jnp.sum(x * mask, 1) / jnp.maximum(jnp.sum(mask, 1), 1)
    mx = jnp.max(jnp.where(mask, x, -1e9), 1)
    h = jax.nn.relu(self.hidden_layer(jnp.concatenate([mean, mx], -1)))
    return self.out(_dropout(h, self.dropout, k2))
