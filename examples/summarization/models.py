# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The summarizer: the translation example's attentional encoder-decoder.

A package description is summarized by the same model that translates:
a bidirectional LSTM/GRU encoder over the document's subword pieces and a
recurrent decoder with Luong attention over them
(:class:`examples.translation.models.Seq2Seq`, ``--model attention``), or
the same model with a copy mechanism (:class:`PointerSeq2Seq`, ``--model
pointer``, the default). Both decode with the shared
:mod:`examples.common.decoding` (greedy or beam search).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from examples.common.decoding import greedy
from examples.translation.models import Seq2Seq

__all__ = ["PointerSeq2Seq", "Seq2Seq", "greedy"]


class PointerSeq2Seq(Seq2Seq):
  """The encoder-decoder with a copy mechanism (pointer-generator).

  Synopses reuse many words of their descriptions, so each step mixes the
  decoder's vocabulary distribution with a copy distribution: the
  attention weights over the source pieces, scattered onto their ids
  (See, Liu and Manning, `Get To The Point: Summarization with
  Pointer-Generator Networks <https://arxiv.org/abs/1704.04368>`_, 2017,
  eq. 8-9, without coverage)::

    p(w) = p_gen * softmax(out(h))[w] + (1 - p_gen) * sum_{i: x_i = w} a_i
    p_gen = sigmoid(w_c . context + w_d . dec + w_x . embed(y_prev) + b)

  Source and target share one vocabulary. The outputs are the
  log-probabilities ``log p(w)``, so the softmax cross-entropy of the
  translation loss and the argmax of greedy decoding apply unchanged
  (``log_softmax`` of normalised log-probabilities is the identity).

  Args:
    vocab: the shared vocabulary size.
    embed: embedding size.
    hidden: hidden size.
    layers: recurrent layers.
    cell: ``"lstm"`` or ``"gru"``.
    norm: ``"none"`` or ``"layernorm"``.
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
    super().__init__(vocab, vocab, embed, hidden, layers, cell, norm, rngs=rngs)
    self.vocab = vocab
    self.gate = nnx.Linear(2 * hidden + embed, 1, rngs=rngs)

  def encode(self, src, src_len):
    """As :meth:`Seq2Seq.encode`; the memory also carries the source ids."""
    memory, mask, carry = super().encode(src, src_len)
    return (memory, src), mask, carry

  def mix(self, dec, emb, memory, mask):
    """Log-probabilities ``[batch, time, vocab]`` of the mixture."""
    memory, src = memory
    scores = jnp.einsum("bth,bsh->bts", self.score(dec), memory)
    scores = jnp.where(mask[:, None, :], scores, -1e9)
    weights = jax.nn.softmax(scores.astype(jnp.float32), -1)
    context = jnp.einsum("bts,bsh->bth", weights.astype(memory.dtype), memory)
    h = jnp.tanh(self.combine(jnp.concatenate([dec, context], -1)))
    p_vocab = jax.nn.softmax(self.out(h).astype(jnp.float32), -1)
    p_gen = jax.nn.sigmoid(
      self.gate(jnp.concatenate([context, dec, emb], -1)).astype(jnp.float32)
    )
    # Scatter-add the attention weights onto the source ids (repeated ids
    # add up); cheaper than a one-hot [batch, src, vocab] product.
    p_copy = jax.vmap(
      lambda w, ids: (
        jnp.zeros((w.shape[0], self.vocab), w.dtype).at[:, ids].add(w)
      )
    )(weights, src)
    return jnp.log(p_gen * p_vocab + (1.0 - p_gen) * p_copy + 1e-9)

  def __call__(self, src, src_len, tgt_in):
    """Teacher-forced log-probabilities of the target."""
    memory, mask, carry = self.encode(src, src_len)
    emb = self.tgt_embed(tgt_in)
    _, dec = self.decoder(emb, carry)
    return self.mix(dec, emb, memory, mask)

  def decode_step(self, memory, mask, carry, token):
    """One decoding step: log-probabilities of the next token, new state."""
    emb = self.tgt_embed(token)
    x, new = emb, []
    for layer, c in zip(self.decoder.layers, carry):
      c, x = layer.cell(c, x)
      new.append(c)
    return self.mix(x[:, None], emb[:, None], memory, mask)[:, 0], tuple(new)
