# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""An encoder-decoder LSTM/GRU with attention.

The encoder is a bidirectional recurrent layer over the source. The decoder
is a recurrent layer over the target prefix whose outputs attend to the
encoder states (Luong et al., `Effective Approaches to Attention-based
Neural Machine Translation <https://arxiv.org/abs/1508.04025>`_, 2015,
"general" scores, without input feeding): attention comes after the
recurrence, so training runs the decoder over the whole target with one
``nnx.RNN`` call, and decoding (:mod:`examples.common.decoding`: greedy or
beam search) steps its cell one token at a time. Dropout (Srivastava et al.,
2014) applies to the embeddings and to the attentional state before the
output layer, in training only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from examples.common.rnn import RNNStack


def dropout(x, rate: float, key):
  """Inverted dropout of ``x`` (identity when ``key`` is None)."""
  if key is None or rate <= 0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


class Seq2Seq(nnx.Module):
  """Bidirectional encoder, attentional decoder.

  Args:
    src_vocab: source vocabulary size.
    tgt_vocab: target vocabulary size.
    embed: embedding size.
    hidden: hidden size (each encoder direction and the decoder).
    layers: recurrent layers of the decoder and of each encoder direction.
    cell: ``"lstm"`` or ``"gru"``.
    norm: ``"none"`` or ``"layernorm"``.
    dropout: dropout rate in training (see the module docstring).
    rngs: initialisation keys.
  """

  def __init__(
    self,
    src_vocab: int,
    tgt_vocab: int,
    embed: int = 64,
    hidden: int = 128,
    layers: int = 1,
    cell: str = "lstm",
    norm: str = "none",
    dropout: float = 0.0,
    *,
    rngs: nnx.Rngs,
  ):
    self.cell_kind, self.hidden, self.dropout = cell, hidden, dropout
    self.src_embed = nnx.Embed(src_vocab, embed, rngs=rngs)
    self.tgt_embed = nnx.Embed(tgt_vocab, embed, rngs=rngs)
    self.enc_fwd = RNNStack(embed, hidden, layers, cell, norm, rngs=rngs)
    self.enc_bwd = RNNStack(
      embed, hidden, layers, cell, norm, reverse=True, rngs=rngs
    )
    self.enc_proj = nnx.Linear(2 * hidden, hidden, rngs=rngs)
    self.bridge = nnx.Linear(2 * hidden, hidden, rngs=rngs)
    self.decoder = RNNStack(embed, hidden, layers, cell, norm, rngs=rngs)
    self.score = nnx.Linear(hidden, hidden, use_bias=False, rngs=rngs)
    self.combine = nnx.Linear(2 * hidden, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, tgt_vocab, rngs=rngs)

  def encode(self, src, src_len, key=None):
    """Encoder memory ``[batch, src, hidden]``, its mask and the decoder's
    initial state (``key``: dropout key, training only)."""
    x = dropout(self.src_embed(src), self.dropout, key)
    _, f = self.enc_fwd(x, seq_lengths=src_len)
    _, b = self.enc_bwd(x, seq_lengths=src_len)
    h = jnp.concatenate([f, b], -1)
    mask = jnp.arange(src.shape[1])[None, :] < src_len[:, None]
    pooled = jnp.sum(h * mask[..., None], 1) / jnp.maximum(
      jnp.sum(mask, 1, keepdims=True), 1
    )
    h0 = jnp.tanh(self.bridge(pooled))
    carry = self.decoder.init_carry(src.shape[:1])
    if self.cell_kind == "lstm":
      carry = tuple((c, h0) for c, _ in carry)
    else:
      carry = tuple(h0 for _ in carry)
    return self.enc_proj(h), mask, carry

  def attend(self, dec, memory, mask, key=None):
    """Attentional outputs: logits ``[batch, time, vocab]``."""
    scores = jnp.einsum("bth,bsh->bts", self.score(dec), memory)
    scores = jnp.where(mask[:, None, :], scores, -1e9)
    weights = jax.nn.softmax(scores.astype(jnp.float32), -1)
    context = jnp.einsum("bts,bsh->bth", weights.astype(memory.dtype), memory)
    h = jnp.tanh(self.combine(jnp.concatenate([dec, context], -1)))
    return self.out(dropout(h, self.dropout, key))

  def __call__(self, src, src_len, tgt_in, key=None):
    """Teacher-forced logits of the target ``[batch, tgt, vocab]``
    (``key``: dropout key, training only)."""
    keys = (None,) * 3 if key is None else tuple(jax.random.split(key, 3))
    memory, mask, carry = self.encode(src, src_len, keys[0])
    emb = dropout(self.tgt_embed(tgt_in), self.dropout, keys[1])
    _, dec = self.decoder(emb, carry)
    return self.attend(dec, memory, mask, keys[2])

  def decode_step(self, memory, mask, carry, token):
    """One decoding step: logits of the next token and new state."""
    x = self.tgt_embed(token)
    new = []
    for layer, c in zip(self.decoder.layers, carry):
      c, x = layer.cell(c, x)
      new.append(c)
    return self.attend(x[:, None], memory, mask)[:, 0], tuple(new)
