# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""An encoder-decoder LSTM/GRU with attention.

The encoder is a bidirectional recurrent layer over the source. The decoder
is a recurrent layer over the target prefix whose outputs attend to the
encoder states (Luong et al., `Effective Approaches to Attention-based
Neural Machine Translation <https://arxiv.org/abs/1508.04025>`_, 2015,
"general" scores, without input feeding): attention comes after the
recurrence, so training runs the decoder over the whole target with one
``nnx.RNN`` call, and greedy decoding steps its cell one token at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from examples.common.rnn import RNNStack


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
    *,
    rngs: nnx.Rngs,
  ):
    self.cell_kind, self.hidden = cell, hidden
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

  def encode(self, src, src_len):
    """Encoder memory ``[batch, src, hidden]``, its mask and the decoder's
    initial state."""
    x = self.src_embed(src)
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

  def attend(self, dec, memory, mask):
    """Attentional outputs: logits ``[batch, time, vocab]``."""
    scores = jnp.einsum("bth,bsh->bts", self.score(dec), memory)
    scores = jnp.where(mask[:, None, :], scores, -1e9)
    weights = jax.nn.softmax(scores.astype(jnp.float32), -1)
    context = jnp.einsum("bts,bsh->bth", weights.astype(memory.dtype), memory)
    h = jnp.tanh(self.combine(jnp.concatenate([dec, context], -1)))
    return self.out(h)

  def __call__(self, src, src_len, tgt_in):
    """Teacher-forced logits of the target ``[batch, tgt, vocab]``."""
    memory, mask, carry = self.encode(src, src_len)
    _, dec = self.decoder(self.tgt_embed(tgt_in), carry)
    return self.attend(dec, memory, mask)

  def decode_step(self, memory, mask, carry, token):
    """One greedy-decoding step: logits of the next token and new state."""
    x = self.tgt_embed(token)
    new = []
    for layer, c in zip(self.decoder.layers, carry):
      c, x = layer.cell(c, x)
      new.append(c)
    return self.attend(x[:, None], memory, mask)[:, 0], tuple(new)
