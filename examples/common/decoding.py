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

**Beam search** (as in Wu et al., `Google's Neural Machine Translation
System <https://arxiv.org/abs/1609.08144>`_, 2016, section 7). Each
sentence keeps ``beam`` *alive* prefixes. At every step each is extended by
every token and the ``2 * beam`` best extensions by log-probability are
taken: those that end with ``</s>`` are *finished* and scored with the
length penalty of eq. 14::

  score(Y) = log P(Y) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha

(``|Y|`` counts ``</s>``); the ``beam`` best finished hypotheses are kept,
and the ``beam`` best unfinished extensions stay alive. The output is the
best finished hypothesis, or the best alive one (cut at ``length``) for a
sentence with none. ``alpha = 0`` compares plain log-probabilities; a
larger ``alpha`` favours longer outputs. Extending ``2 * beam`` candidates
keeps ``beam`` alive prefixes even when up to ``beam`` of them end.
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
  """Beam search: the best hypothesis of every source.

  Args:
    model: the encoder-decoder (see the module docstring).
    src: source ids ``[batch, src]``.
    src_len: their lengths ``[batch]``.
    length: the number of tokens to generate.
    bos: the start token.
    eos: the end token; a hypothesis that emits it is finished.
    beam: the number of hypotheses kept per source.
    alpha: the length-penalty exponent.

  Returns:
    ``(tokens, scores)``: ``[batch, length]`` ids (``</s>`` then padding
    0 after a finished output) and the log-probability of each output.
  """
  b, k = src.shape[0], beam
  memory, mask, carry = model.encode(src, src_len)
  # Beam-major copies of the encoder output and state: row i*k + j.
  memory, mask, carry = jax.tree.map(
    lambda x: jnp.repeat(x, k, axis=0), (memory, mask, carry)
  )
  neg = jnp.full((b, k), -jnp.inf)
  seqs = jnp.zeros((b, k, length), jnp.int32)
  state = (
    carry,
    jnp.full((b * k,), bos, jnp.int32),  # last token of every alive beam
    neg.at[:, 0].set(0.0),  # alive log-probabilities
    seqs,  # alive tokens
    neg,  # finished: normalised scores
    neg,  # finished: log-probabilities
    seqs,  # finished tokens
  )

  def gather(x, idx):  # x [b, n, ...], idx [b, m] -> [b, m, ...]
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, 1)

  def body(state, t):
    carry, token, alive, seqs, fin, fin_logp, fin_seqs = state
    logits, carry = model.decode_step(memory, mask, carry, token)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    v = logp.shape[-1]
    cand = (alive[..., None] + logp.reshape(b, k, v)).reshape(b, k * v)
    scores, idx = jax.lax.top_k(cand, 2 * k)
    parent, token = idx // v, (idx % v).astype(jnp.int32)
    seqs = gather(seqs, parent).at[:, :, t].set(token)  # [b, 2k, length]
    ended = token == eos
    # Finished: the best `k` of the old and the new ones.
    norm = jnp.where(ended, scores / length_penalty(t + 1.0, alpha), -jnp.inf)
    fin, top = jax.lax.top_k(jnp.concatenate([fin, norm], 1), k)
    fin_logp = gather(jnp.concatenate([fin_logp, scores], 1), top)
    fin_seqs = gather(jnp.concatenate([fin_seqs, seqs], 1), top)
    # Alive: the best `k` extensions that did not end.
    alive, top = jax.lax.top_k(jnp.where(ended, -jnp.inf, scores), k)
    seqs, token = gather(seqs, top), gather(token, top)
    rows = (jnp.arange(b)[:, None] * k + gather(parent, top)).reshape(-1)
    carry = jax.tree.map(lambda x: x[rows], carry)
    state = (carry, token.reshape(-1), alive, seqs, fin, fin_logp, fin_seqs)
    return state, None

  state, _ = jax.lax.scan(body, state, jnp.arange(length))
  _, _, alive, seqs, fin, fin_logp, fin_seqs = state
  any_fin = jnp.isfinite(fin[:, 0])
  tokens = jnp.where(any_fin[:, None], fin_seqs[:, 0], seqs[:, 0])
  return tokens, jnp.where(any_fin, fin_logp[:, 0], alive[:, 0])


def strip(ids: Sequence[int], eos: int, pad: int = 0) -> list[int]:
  """The tokens before the first ``eos``, without padding."""
  ids = list(ids)
  if eos in ids:
    ids = ids[: ids.index(eos)]
  return [i for i in ids if i != pad]
