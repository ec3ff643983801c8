# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The summarizer: the translation example's attentional encoder-decoder.

A package description is summarized by the same model that translates:
a bidirectional LSTM/GRU encoder over the document's subword pieces and a
recurrent decoder with Luong attention over them
(:class:`examples.translation.models.Seq2Seq`). This module adds greedy
decoding of a batch in one compiled :func:`jax.lax.scan`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from examples.translation.models import Seq2Seq

__all__ = ["Seq2Seq", "greedy"]


@nnx.jit(static_argnames=("length", "bos"))
def greedy(model: Seq2Seq, src, src_len, *, length: int, bos: int):
  """Greedy decoding: ``[batch, length]`` token ids, one argmax a step.

  Args:
    model: the encoder-decoder.
    src: source ids ``[batch, src]``.
    src_len: their lengths ``[batch]``.
    length: the number of tokens to generate.
    bos: the start token.
  """
  memory, mask, carry = model.encode(src, src_len)
  token = jnp.full(src.shape[:1], bos, jnp.int32)

  def body(state, _):
    carry, token = state
    logits, carry = model.decode_step(memory, mask, carry, token)
    token = jnp.argmax(logits, -1).astype(jnp.int32)
    return (carry, token), token

  _, tokens = jax.lax.scan(body, (carry, token), None, length=length)
  return tokens.T
