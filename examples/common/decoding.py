# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Greedy and beam-search decoding of encoder-decoder models.

Both work on any model with two methods (the translation and summarization
examples' :class:`~examples.translation.models.Seq2Seq` and its pointer
variant):

* ``encode(src, src_len) -> (memory, mask, carry)``: the encoder output,
  any pytree whose leaves have the batch as leading axis;
* ``decode_step(memory, mask, carry, token) -> (logits, carry)``: the
  scores ``[batch, vocab]`` of the next token (logits or log-probabilities)
  and the new decoder state.

Each decodes a whole batch for a fixed number of steps inside one
:func:`jax.lax.scan`, so it compiles once per shape.

**Beam search.** Each sentence keeps the ``beam`` prefixes of highest
log-probability. At every step each prefix is extended by every token and
the ``beam`` best of the ``beam * vocab`` extensions survive. A prefix that
has emitted ``</s>`` is finished: it stays in the beam with its score
frozen (it extends only by padding, at no cost). After the last step the
output is the beam whose score, divided by the length penalty of Wu et al.
(`Google's Neural Machine Translation System
<https://arxiv.org/abs/1609.08144>`_, 2016, eq. 14)::

  lp(Y) = ((5 + |Y|) / 6) ** alpha

is highest (``|Y|`` counts ``</s>``). ``alpha = 0`` picks the most probable
beam; a larger ``alpha`` favours longer outputs. With ``beam = 1`` the search
is greedy decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["beam_search", "greedy", "length_penalty", "strip"]


@nnx.jit(static_argnames=("length", "bos"))
def greedy(model, src, src_len, *, length: int, bos: int):
  """Greedy decoding: ``[batch, length]`` token ids, one argmax a step.

  Args:
    model: the encoder-decoder (see the module docstring).
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


def length_penalty(length, alpha: float):
  """GNMT's length penalty ``((5 + length) / 6) ** alpha``."""
  return ((5.0 + length) / 6.0) ** alpha


@nnx.jit(static_argnames=("length", "bos", "eos", "beam"))
def beam_search(
  model,
  src,
  src_len,
  *,
  length: int,
  bos: int,
  eos: int,
  beam: int = 4,
  alpha: float = 0.6,
):
  """Beam search: the best of ``beam`` hypotheses of every source.

  Args:
    model: the encoder-decoder (see the module docstring).
    src: source ids ``[batch, src]``.
    src_len: their lengths ``[batch]``.
    length: the number of tokens to generate.
    bos: the start token.
    eos: the end token; a beam that emits it is finished.
    beam: the number of hypotheses kept per source.
    alpha: the length-penalty exponent used to pick the final beam.

  Returns:
    ``(tokens, scores)``: ``[batch, length]`` ids (after ``eos`` come
    ``eos`` tokens) and the log-probability of each output.
  """
  b, k = src.shape[0], beam
  memory, mask, carry = model.encode(src, src_len)
  # Beam-major copies of the encoder output and state: row i*k + j.
  tile = lambda x: jnp.repeat(x, k, axis=0)
  memory, mask, carry = jax.tree.map(tile, (memory, mask, carry))
  scores = jnp.tile(jnp.asarray([0.0] + [-jnp.inf] * (k - 1)), (b, 1))
  state = (
    carry,
    jnp.full((b * k,), bos, jnp.int32),  # last token of every beam
    scores,  # [b, k] log-probabilities
    jnp.zeros((b, k), bool),  # finished
    jnp.zeros((b, k), jnp.int32),  # lengths (with </s>)
    jnp.zeros((b, k, length), jnp.int32),  # the tokens so far
  )

  def body(state, t):
    carry, token, scores, done, lengths, seqs = state
    logits, carry = model.decode_step(memory, mask, carry, token)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    v = logp.shape[-1]
    logp = logp.reshape(b, k, v)
    # A finished beam extends only by </s>, at no cost.
    frozen = jnp.where(jnp.arange(v) == eos, 0.0, -jnp.inf)
    logp = jnp.where(done[..., None], frozen, logp)
    cand = (scores[..., None] + logp).reshape(b, k * v)
    scores, idx = jax.lax.top_k(cand, k)
    src_beam, token = idx // v, (idx % v).astype(jnp.int32)
    pick = lambda x: jnp.take_along_axis(x, src_beam, 1)
    done, lengths = pick(done), pick(lengths)
    seqs = jnp.take_along_axis(seqs, src_beam[..., None], 1)
    seqs = seqs.at[:, :, t].set(token)
    lengths = lengths + (~done).astype(jnp.int32)
    done = done | (token == eos)
    rows = (jnp.arange(b)[:, None] * k + src_beam).reshape(-1)
    carry = jax.tree.map(lambda x: x[rows], carry)
    return (carry, token.reshape(-1), scores, done, lengths, seqs), None

  state, _ = jax.lax.scan(body, state, jnp.arange(length))
  _, _, scores, _, lengths, seqs = state
  best = jnp.argmax(scores / length_penalty(lengths, alpha), -1)
  tokens = jnp.take_along_axis(seqs, best[:, None, None], 1)[:, 0]
  return tokens, jnp.take_along_axis(scores, best[:, None], 1)[:, 0]


def strip(ids: Sequence[int], eos: int, pad: int = 0) -> list[int]:
  """The tokens before the first ``eos``, without padding."""
  ids = list(ids)
  if eos in ids:
    ids = ids[: ids.index(eos)]
  return [i for i in ids if i != pad]
