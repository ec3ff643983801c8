# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Speech recognition with a bidirectional RNN and CTC: task and CLI.

Example::

  python -m examples.speech --clip clip_by_global_norm:1.0
  python -m examples.speech --cell gru --clip zclip --lr 1e-2
  python -m examples.speech --data-file my_recordings.tsv   # wav<TAB>text
"""

from __future__ import annotations

import argparse
import wave
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from examples.common import cli
from examples.common import data
from examples.common import trainer
from examples.speech import input_pipeline
from examples.speech.input_pipeline import CharTable
from examples.speech.input_pipeline import Corpus
from examples.speech.input_pipeline import Encoded
from examples.speech.input_pipeline import Normalizer
from examples.speech.models import CTCModel
from examples.speech.models import greedy_decode


def make_parser() -> argparse.ArgumentParser:
  p = cli.parser(
    "Train a bidirectional LSTM/GRU with CTC on speech synthesised by eSpeak "
    "NG (many accents, voices, rates, pitches and noise levels) and report "
    "the character and word error rates on held-out speakers.",
    prog="python -m examples.speech",
    lr=3e-3,
    steps=1200,
    hidden=96,
    layers=2,
    eval_every=300,
    ckpt_every=300,
    cell="gru",
  )
  g = p.add_argument_group("speech")
  g.add_argument(
    "--data-file",
    default=None,
    help="your own recordings: a list of path.wav<TAB>transcript[<TAB>"
    "speaker] lines (16-bit mono PCM, paths relative to the list); the "
    "speakers are split into training, validation and test speakers",
  )
  g.add_argument(
    "--train-size",
    type=cli.positive_int,
    default=input_pipeline.DEFAULT_SIZES[0],
    help="synthesised training utterances",
  )
  g.add_argument(
    "--val-size",
    type=cli.positive_int,
    default=input_pipeline.DEFAULT_SIZES[1],
    help="synthesised validation utterances (held-out speakers)",
  )
  g.add_argument(
    "--test-size",
    type=cli.positive_int,
    default=input_pipeline.DEFAULT_SIZES[2],
    help="synthesised test utterances (other held-out speakers)",
  )
  g.add_argument(
    "--corpus-seed",
    type=cli.nonnegative_int,
    default=input_pipeline.DEFAULT_SEED,
    help="seed of the corpus's texts, speakers, rates, pitches and noise",
  )
  g.add_argument(
    "--n-mels", type=cli.positive_int, default=40, help="mel bands"
  )
  g.add_argument(
    "--stride",
    type=cli.positive_int,
    default=3,
    help="feature frames (10 ms) per step",
  )
  g.add_argument(
    "--buckets",
    type=cli.positive_int,
    default=4,
    help="length groups of the training utterances; a batch is padded to "
    "its group's longest utterance",
  )
  g.add_argument(
    "--dropout",
    type=cli.probability,
    default=0.1,
    help="dropout rate on the inputs of every recurrent layer and the output",
  )
  g.add_argument(
    "--samples",
    type=cli.nonnegative_int,
    default=6,
    help="test transcripts to print",
  )
  for action in p._actions:  # shared flags without a help text of their own
    if action.help is None and action.dest in _HELP:
      action.help = _HELP[action.dest]
  return p


_HELP = {
  "seed": "seed of the initialisation, the batches and dropout",
  "cell": "recurrent cell of every layer",
  "hidden": "hidden units of each direction of each recurrent layer",
  "layers": "bidirectional recurrent layers",
  "eval_every": "steps between evaluations (validation loss and CER, test "
  "CER and WER)",
  "ckpt_every": "steps between checkpoints",
  "no_plots": "do not draw loss.png, grad_norm.png and clip_rate.png",
}


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  """Usage errors for this task's own flags (argparse ``error``: exit 2)."""
  if args.data_file is not None:
    f = Path(args.data_file)
    if not f.is_file():
      p.error(f"--data-file {args.data_file}: no such file")
    if not f.read_text(encoding="utf-8", errors="replace").strip():
      p.error(f"--data-file {args.data_file} is empty")
  for flag in (
    "train_size",
    "val_size",
    "test_size",
    "n_mels",
    "stride",
    "buckets",
  ):
    if getattr(args, flag) < 1:
      p.error(f"--{flag.replace('_', '-')} must be at least 1")
  if not 0.0 <= args.dropout < 1.0:
    p.error("--dropout must be in [0, 1)")


def loss_fn(model, batch, carry, key):
  """CTC loss per target character of a batch."""
  logits, steps = model(batch["feats"], batch["frames"], key)
  per_seq = _ctc(logits, steps, batch["labels"], batch["label_len"])
  chars = jnp.maximum(jnp.sum(batch["label_len"]), 1)
  return jnp.sum(per_seq) / chars, (carry, {})


def _ctc(logits, steps, labels, label_len):
  t, n = logits.shape[1], labels.shape[1]
  logit_pad = (jnp.arange(t)[None, :] >= steps[:, None]).astype(jnp.float32)
  label_pad = (jnp.arange(n)[None, :] >= label_len[:, None]).astype(jnp.float32)
  return optax.ctc_loss(
    logits.astype(jnp.float32), logit_pad, labels, label_pad, blank_id=0
  )


@nnx.jit
def _forward(model, feats, frames, labels, label_len):
  logits, steps = model(feats, frames)
  return _ctc(logits, steps, labels, label_len), jnp.argmax(logits, -1), steps


def transcribe(model, enc: Encoded, chars: CharTable, batch_size: int):
  """Per-utterance CTC loss and greedy transcripts of every utterance."""
  losses, hyps = [], []
  for ib, w in trainer.padded_batches((np.arange(len(enc)),), batch_size):
    b = enc.batch(ib)
    loss, best, steps = _forward(
      model,
      *trainer.shard_batch(
        (b["feats"], b["frames"], b["labels"], b["label_len"])
      ),
    )
    k = int(w.sum())
    losses.append(np.asarray(loss)[:k])
    ids = greedy_decode(np.asarray(best)[:k], np.asarray(steps)[:k])
    hyps.extend(chars.decode(i) for i in ids)
  return np.concatenate(losses), hyps


def error_rates(refs: list[str], hyps: list[str]) -> tuple[float, float]:
  """Corpus character and word error rates (jiwer)."""
  import jiwer

  return float(jiwer.cer(refs, hyps)), float(jiwer.wer(refs, hyps))


def snr_name(snr: float) -> str:
  return "clean" if not np.isfinite(snr) else f"snr{snr:g}"


def evaluate(model, val: Encoded, test: Encoded, chars, batch_size: int):
  """Validation loss and CER; test CER and WER, overall and per noise."""
  vl, vh = transcribe(model, val, chars, batch_size)
  _, th = transcribe(model, test, chars, batch_size)
  v_cer, _ = error_rates(val.texts, vh)
  t_cer, t_wer = error_rates(test.texts, th)
  out = {
    "val_loss": float(vl.sum() / max(val.label_len.sum(), 1)),
    "val_cer": v_cer,
    "test_cer": t_cer,
    "test_wer": t_wer,
  }
  for snr in sorted(set(test.snr.tolist()), reverse=True):
    sel = np.flatnonzero(test.snr == snr)
    cer, wer = error_rates([test.texts[i] for i in sel], [th[i] for i in sel])
    out[f"test_cer_{snr_name(snr)}"] = cer
    out[f"test_wer_{snr_name(snr)}"] = wer
  return out


def result_table(ev: dict, test: Encoded) -> list[str]:
  """A Markdown table of the test error rates by noise level."""
  lines = ["| test noise | utterances | CER | WER |", "|---|---|---|---|"]
  for snr in sorted(set(test.snr.tolist()), reverse=True):
    name = snr_name(snr)
    n = int(np.sum(test.snr == snr))
    label = "clean" if name == "clean" else f"{snr:g} dB SNR"
    lines.append(
      f"| {label} | {n} | {ev[f'test_cer_{name}']:.3f} | "
      f"{ev[f'test_wer_{name}']:.3f} |"
    )
  lines.append(
    f"| all | {len(test)} | {ev['test_cer']:.3f} | {ev['test_wer']:.3f} |"
  )
  return lines


def length_buckets(
  frames: np.ndarray, n: int, stride: int
) -> list[tuple[np.ndarray, int]]:
  """Utterances grouped by length: ``(indices, padded frames)`` per group.

  The utterances are sorted by length and cut into ``n`` groups of equal
  size; a batch is drawn from one group and padded to that group's longest
  utterance (rounded up to the stride), so short utterances do not pay for
  the longest one. The step compiles once per group.
  """
  order = np.argsort(frames, kind="stable")
  out = []
  for part in np.array_split(order, min(n, len(order))):
    cap = int(frames[part].max())
    out.append((np.sort(part), -(-cap // stride) * stride))
  return out


def load_corpus(args) -> Corpus:
  """The corpus the flags ask for (synthesised once, or --data-file)."""
  if args.data_file:
    return input_pipeline.load_list(args.data_file, args.n_mels, args.seed)
  from examples.speech.features import FeatureConfig

  return input_pipeline.load_synthetic(
    (args.train_size, args.val_size, args.test_size),
    args.corpus_seed,
    FeatureConfig(n_mels=args.n_mels),
    args.data_dir,
  )


def build_task(args, corpus: Corpus | None = None) -> trainer.Task:
  """The speech task for parsed ``args`` (``corpus`` overrides the data)."""
  if corpus is None:
    corpus = load_corpus(args)
  tr, va, te = (corpus.indices(s) for s in input_pipeline.SPLITS)
  if not (len(tr) and len(va) and len(te)):
    raise SystemExit(
      f"{corpus.name}: need training, validation and test utterances, got "
      f"{len(tr)}, {len(va)} and {len(te)}"
    )
  chars = CharTable.from_texts(corpus.texts[i] for i in tr)
  norm = Normalizer.fit([corpus.feats[i] for i in tr])
  longest = max(len(f) for f in corpus.feats)
  max_frames = -(-longest // args.stride) * args.stride
  max_label = max(len(t) for t in corpus.texts)
  enc = {
    s: Encoded(corpus, i, chars, norm, max_frames, max_label)
    for s, i in zip(input_pipeline.SPLITS, (tr, va, te))
  }
  train, val, test = enc["train"], enc["val"], enc["test"]
  model = CTCModel(
    corpus.feats[0].shape[1],
    len(chars),
    args.hidden,
    args.layers,
    args.stride,
    args.cell,
    args.norm,
    args.dropout,
    rngs=nnx.Rngs(args.seed),
  )

  buckets = length_buckets(train.frames, args.buckets, args.stride)
  weights = np.asarray([len(m) for m, _ in buckets], np.float64)
  weights /= weights.sum()

  def train_batch(step):
    rng = np.random.default_rng([args.seed, step])
    members, cap = buckets[rng.choice(len(buckets), p=weights)]
    b = train.batch(members[rng.integers(0, len(members), args.batch_size)])
    b["feats"] = b["feats"][:, :cap]
    return b

  def report(model, ev):
    held = sorted(set(test.speakers))
    lines = [
      f"data: {corpus.name}, {len(train)} training utterances from "
      f"{len(set(train.speakers))} speakers; {len(test)} test utterances "
      f"from {len(held)} held-out speakers",
      *result_table(ev, test),
    ]
    k = min(args.samples, len(test))
    if k:
      sub = Encoded(corpus, te[:k], chars, norm, max_frames, max_label)
      _, hyps = transcribe(model, sub, chars, args.batch_size)
      lines.append("test samples (speaker, noise: reference => hypothesis):")
      for i in range(k):
        lines.append(
          f"  [{test.speakers[i]}, {snr_name(test.snr[i])}] "
          f"{test.texts[i]!r} => {hyps[i]!r}"
        )
    return lines

  return trainer.Task(
    name="speech",
    model=model,
    loss_fn=loss_fn,
    train_batch=train_batch,
    evaluate=lambda m: evaluate(m, val, test, chars, args.batch_size),
    meta={
      "chars": chars.to_json(),
      "norm_mean": norm.mean.tolist(),
      "norm_std": norm.std.tolist(),
      "max_frames": max_frames,
    },
    report=report,
    metric="test_cer",
    lower_is_better=True,
  )


def load_or_exit(p: argparse.ArgumentParser, args) -> Corpus:
  """:func:`load_corpus`; a bad ``--data-file`` is a usage error (exit 2)."""
  try:
    return load_corpus(args)
  except data.DataUnavailable as e:
    raise SystemExit(str(e)) from None
  except (ValueError, OSError, EOFError, wave.Error) as e:
    if not args.data_file:
      raise
    p.error(f"--data-file {args.data_file}: {str(e).splitlines()[0]}")


def main(argv: Sequence[str] | None = None) -> trainer.RunResult:
  p = make_parser()
  args = cli.parse(p, argv, "speech")
  check_args(p, args)
  task = build_task(args, load_or_exit(p, args))
  result = trainer.train(task, args)
  trainer.summary(result, task.metric)
  return result
