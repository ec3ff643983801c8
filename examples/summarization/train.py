# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Summarizing Debian package descriptions with an attentional
encoder-decoder, scored with ROUGE against a lead baseline.

Example::

  python -m examples.summarization                  # fetches bookworm once
  python -m examples.summarization --clip zclip --lr 1e-2
  python -m examples.summarization --data-file Translation-en \\
      --packages-file Packages
  python -m examples.summarization.compare          # the clipping comparison
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from examples.common import cli
from examples.common import data
from examples.common import trainer
from examples.summarization import input_pipeline as ip
from examples.summarization.models import PointerSeq2Seq
from examples.summarization.models import Seq2Seq
from examples.summarization.models import greedy
from examples.translation.train import loss_fn

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
MODELS = ("pointer", "attention")


def make_parser() -> argparse.ArgumentParser:
  p = cli.parser(
    "Train an encoder-decoder GRU/LSTM with attention to write the one-line "
    "synopsis of a Debian package from its long description (bookworm "
    "Translation-en, split by source package), and report ROUGE-1/2/L "
    "(rouge-score) next to a lead baseline.",
    prog="python -m examples.summarization",
    lr=3e-3,
    steps=1200,
    batch_size=64,
    hidden=128,
    eval_every=500,
    ckpt_every=500,
    cell="gru",
  )
  g = p.add_argument_group("summarization")
  g.add_argument(
    "--model",
    choices=MODELS,
    default="pointer",
    help="attention: the translation example's encoder-decoder; pointer: "
    "the same with a copy mechanism (See et al., 2017)",
  )
  g.add_argument(
    "--data-file",
    default=None,
    help="a Translation-en file you already have (plain, .gz, .xz, .lz4, "
    ".bz2 or .zst); default: fetch bookworm's into --data-dir once",
  )
  g.add_argument(
    "--packages-file",
    default=None,
    help="the Packages index matching --data-file, for the split by source "
    "package; without it every binary package is its own group",
  )
  g.add_argument("--mirror", default=ip.MIRROR, help="Debian mirror to fetch")
  g.add_argument("--suite", default=ip.SUITE, help="Debian release to fetch")
  g.add_argument(
    "--vocab-size",
    type=cli.positive_int,
    default=4000,
    help="SentencePiece BPE pieces",
  )
  g.add_argument(
    "--embed",
    type=cli.positive_int,
    default=64,
    help="embedding size of the pieces",
  )
  g.add_argument(
    "--src-len", type=cli.positive_int, default=64, help="document pieces read"
  )
  g.add_argument(
    "--tgt-len",
    type=cli.positive_int,
    default=20,
    help="summary pieces trained on and generated (</s> included)",
  )
  g.add_argument(
    "--test-size",
    type=cli.positive_int,
    default=1000,
    help="held-out documents for ROUGE (whole source packages)",
  )
  g.add_argument(
    "--val-size",
    type=cli.positive_int,
    default=1000,
    help="documents for val_loss",
  )
  g.add_argument(
    "--max-docs",
    type=cli.nonnegative_int,
    default=0,
    help="use at most this many (0: all)",
  )
  g.add_argument(
    "--lead-words",
    type=cli.nonnegative_int,
    default=0,
    help="length of the lead baseline in words (0: the median synopsis "
    "length of the training set)",
  )
  g.add_argument(
    "--eval-batch-size",
    type=cli.positive_int,
    default=256,
    help="documents per batch when decoding and scoring",
  )
  g.add_argument(
    "--samples",
    type=cli.nonnegative_int,
    default=4,
    help="test samples printed at the end",
  )
  return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  """Usage errors (exit 2) for bad files and sizes, before any work."""
  for flag in ("data_file", "packages_file"):
    path = getattr(args, flag)
    name = "--" + flag.replace("_", "-")
    if path is None:
      continue
    f = Path(path).expanduser()
    if not f.is_file():
      p.error(f"{name} {path}: no such file")
    if f.stat().st_size == 0:
      p.error(f"{name} {path}: the file is empty")
  if args.packages_file and not args.data_file:
    p.error("--packages-file needs --data-file")
  # The other sizes are positive (or non-negative) by their argparse types.
  if args.tgt_len < 2:
    p.error("--tgt-len must be at least 2 (a piece and </s>)")
  if args.vocab_size < 8:
    p.error("--vocab-size must be at least 8")


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def rouge(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
  """Mean ROUGE-1/2/L F1 (x100) with ``rouge-score``'s default tokenizer
  (lower-cased alphanumeric words) and its Porter stemmer."""
  from rouge_score import rouge_scorer

  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  totals = dict.fromkeys(ROUGE_TYPES, 0.0)
  for h, r in zip(hyps, refs, strict=True):
    s = scorer.score(r, h)
    for k in ROUGE_TYPES:
      totals[k] += s[k].fmeasure
  n = max(len(refs), 1)
  return {k: 100.0 * v / n for k, v in totals.items()}


@nnx.jit
def _nll(model, batch, weights):
  logits = model(batch["src"], batch["src_len"], batch["tgt_in"])
  nll = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), batch["tgt_out"]
  )
  mask = (batch["tgt_out"] != ip.PAD_ID) * weights[:, None]
  return jnp.sum(nll * mask), jnp.sum(mask)


def val_loss(model, enc: ip.Encoded, batch_size: int) -> float:
  """Mean token cross-entropy of the summaries of ``enc``."""
  total, count = 0.0, 0.0
  for idx, w in trainer.padded_batches((np.arange(len(enc)),), batch_size):
    s, n = _nll(model, *trainer.shard_batch((enc.batch(idx), w)))
    total, count = total + float(s), count + float(n)
  return total / max(count, 1.0)


def summarize(model, enc: ip.Encoded, sp, batch_size: int, length: int):
  """Greedy summaries (text) of every document in ``enc``."""
  out = []
  for idx, w in trainer.padded_batches((np.arange(len(enc)),), batch_size):
    b = enc.batch(idx)
    ids = greedy(
      model,
      *trainer.shard_batch((b["src"], b["src_len"])),
      length=length,
      bos=ip.BOS_ID,
    )
    for row in np.asarray(ids)[: int(w.sum())].tolist():
      row = row[: row.index(ip.EOS_ID)] if ip.EOS_ID in row else row
      out.append(sp.decode([i for i in row if i > ip.UNK_ID]))
  return out


def table(
  model_scores: dict, lead_scores: dict, lead_words: int, model_name: str
) -> list[str]:
  """The result table: ROUGE F1 of the model and of the lead baseline."""
  lines = ["| system | ROUGE-1 | ROUGE-2 | ROUGE-L |", "|---|---|---|---|"]
  for name, s in (
    (f"{model_name} model (greedy)", model_scores),
    (f"lead-{lead_words} baseline", lead_scores),
  ):
    lines.append(
      f"| {name} | " + " | ".join(f"{s[k]:.2f}" for k in ROUGE_TYPES) + " |"
    )
  return lines


# ---------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------


def build_task(args, corpus: ip.Corpus | None = None) -> trainer.Task:
  """The summarization task for parsed ``args`` (``corpus`` overrides the
  data files and the fetch)."""
  if corpus is None:
    corpus = ip.load_corpus(
      args.data_file, args.packages_file, args.data_dir, args.mirror, args.suite
    )
  docs = corpus.docs
  if args.max_docs:
    keep = np.random.default_rng(args.seed).permutation(len(docs))
    docs = [docs[i] for i in np.sort(keep[: args.max_docs])]
  train_d, val_d, test_d = ip.split_by_source(
    docs, args.test_size, args.val_size, args.seed
  )
  if not train_d or not val_d:
    raise ValueError(
      f"{len(docs)} documents are too few for --test-size {args.test_size} "
      f"and --val-size {args.val_size} (whole source packages)"
    )
  sp = ip.cached_tokenizer(
    ip.tokenizer_texts(train_d, 8 * args.src_len),
    args.vocab_size,
    args.data_dir,
  )
  workdir = Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "spm.model").write_bytes(sp.serialized_model_proto())
  train, val, test = (
    ip.Encoded(d, sp, args.src_len, args.tgt_len)
    for d in (train_d, val_d, test_d)
  )
  refs = [d.summary for d in test_d]
  lead_words = args.lead_words or int(
    np.median([len(d.summary.split()) for d in train_d])
  )
  leads = [ip.lead(d.document, lead_words) for d in test_d]
  lead_scores = rouge(leads, refs)
  v = sp.get_piece_size()
  dims = (args.embed, args.hidden, args.layers, args.cell, args.norm)
  if args.model == "pointer":
    model = PointerSeq2Seq(v, *dims, rngs=nnx.Rngs(args.seed))
  else:
    model = Seq2Seq(v, v, *dims, rngs=nnx.Rngs(args.seed))

  def train_batch(step):
    r = np.random.default_rng([args.seed, step])
    return train.batch(r.integers(0, len(train), args.batch_size))

  def evaluate(model):
    hyps = summarize(model, test, sp, args.eval_batch_size, args.tgt_len)
    scores = rouge(hyps, refs)
    return {
      "val_loss": val_loss(model, val, args.eval_batch_size),
      **{f"test_{k}": v for k, v in scores.items()},
      **{f"lead_{k}": v for k, v in lead_scores.items()},
    }

  def report(model, ev):
    split = "source package" if corpus.by_source else "binary package"
    lines = [
      f"data: {corpus.origin}",
      f"{corpus.counts['stanzas']:,} stanzas, {corpus.counts['distinct_md5']:,}"
      f" distinct descriptions, {len(docs):,} used; split by {split}: "
      f"{len(train):,} train / {len(val):,} val / {len(test):,} test; "
      f"{sp.get_piece_size()} BPE pieces",
      "",
      *table(
        {k: ev[f"test_{k}"] for k in ROUGE_TYPES},
        lead_scores,
        lead_words,
        args.model,
      ),
      "",
    ]
    k = min(args.samples, len(test))
    if k:
      sub = ip.Encoded(test_d[:k], sp, args.src_len, args.tgt_len)
      hyps = summarize(model, sub, sp, args.eval_batch_size, args.tgt_len)
      for d, h, ld in zip(test_d[:k], hyps, leads[:k]):
        doc = textwrap.shorten(d.document, 240, placeholder=" ...")
        lines += [
          f"[{d.package}] {doc}",
          f"    reference: {d.summary}",
          f"    generated: {h}",
          f"    lead:      {ld}",
        ]
    return lines

  return trainer.Task(
    name="summarization",
    model=model,
    loss_fn=loss_fn,
    train_batch=train_batch,
    evaluate=evaluate,
    meta={
      "origin": corpus.origin,
      "tokenizer": "spm.model",
      "lead_words": lead_words,
      "splits": [len(train), len(val), len(test)],
    },
    report=report,
    metric="test_rougeL",
    lower_is_better=False,
  )


def main(argv: Sequence[str] | None = None) -> trainer.RunResult:
  p = make_parser()
  args = cli.parse(p, argv, "summarization")
  check_args(p, args)
  try:
    task = build_task(args)
  except data.DataUnavailable as e:
    raise SystemExit(str(e)) from None
  except ValueError as e:
    p.error(str(e))
  result = trainer.train(task, args)
  trainer.summary(result, task.metric, lower_is_better=False)
  return result
