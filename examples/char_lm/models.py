# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Character language models: an LSTM/GRU stack and a causal Transformer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from examples.common.rnn import RNNStack


class CharRNN(nnx.Module):
  """Embedding, a stack of ``nnx.RNN`` layers and a softmax over characters.

  Args:
    vocab: alphabet size.
    embed: embedding size.
    hidden: hidden size of each recurrent layer.
    layers: number of recurrent layers.
    cell: ``"lstm"`` or ``"gru"``.
    norm: ``"none"`` or ``"layernorm"`` (layer-normalised cells).
    rngs: initialisation keys.
  """

  def __init__(
    self,
    vocab: int,
    embed: int = 64,
    hidden: int = 128,
    layers: int = 1,
    cell: str = "lstm",
    norm: str = "none",
    *,
    rngs: nnx.Rngs,
  ):
    self.embed = nnx.Embed(vocab, embed, rngs=rngs)
    self.rnn = RNNStack(embed, hidden, layers, cell, norm, rngs=rngs)
    self.head = nnx.Linear(hidden, vocab, rngs=rngs)

  def init_carry(self, batch: int):
    """The zero recurrent state of a batch."""
    return self.rnn.init_carry((batch,))

  def __call__(self, tokens: jax.Array, carry=None):
    """Logits ``[batch, time, vocab]`` and the final recurrent state."""
    carry, h = self.rnn(self.embed(tokens), carry)
    return self.head(h), carry


class Block(nnx.Module):
  """A pre-norm Transformer block: causal self-attention, then an MLP."""

  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(dim, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
      heads, dim, decode=False, deterministic=True, rngs=rngs
    )
    self.ln2 = nnx.LayerNorm(dim, rngs=rngs)
    self.up = nnx.Linear(dim, 4 * dim, rngs=rngs)
    self.down = nnx.Linear(4 * dim, dim, rngs=rngs)

  def __call__(self, x, mask):
    x = x + self.attn(self.ln1(x), mask=mask)
    return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))


class CharTransformer(nnx.Module):
  """A small decoder-only (causal) Transformer over characters.

  Args:
    vocab: alphabet size.
    dim: model width.
    heads: attention heads.
    layers: Transformer blocks.
    max_len: longest context (learned position embeddings).
    rngs: initialisation keys.
  """

  def __init__(
    self,
    vocab: int,
    dim: int = 128,
    heads: int = 4,
    layers: int = 2,
    max_len: int = 128,
    *,
    rngs: nnx.Rngs,
  ):
    self.max_len = max_len
    self.tok = nnx.Embed(vocab, dim, rngs=rngs)
    self.pos = nnx.Embed(max_len, dim, rngs=rngs)
    self.blocks = nnx.List(
      [Block(dim, heads, rngs=rngs) for _ in range(layers)]
    )
    self.ln = nnx.LayerNorm(dim, rngs=rngs)
    self.head = nnx.Linear(dim, vocab, rngs=rngs)

  def __call__(self, tokens: jax.Array, carry=None):
    """Logits ``[batch, time, vocab]``; ``carry`` is unused (None)."""
    del carry
    t = tokens.shape[-1]
    if t > self.max_len:
      raise ValueError(f"sequence of {t} > max_len {self.max_len}")
    x = self.tok(tokens) + self.pos(jnp.arange(t))
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.head(self.ln(x)), None
