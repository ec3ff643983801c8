# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Sentence sentiment with a bidirectional RNN: the task and command line.

Example::

  python -m examples.sentiment --cell lstm --clip clip_by_global_norm:1.0
  python -m examples.sentiment --clip autoclip:percentile=10 --lr 1e-2
  python -m examples.sentiment --text-file labelled.tsv   # label<TAB>text
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from examples.common import cli
from examples.common import data
from examples.common import trainer
from examples.sentiment.input_pipeline import Encoded
from examples.sentiment.input_pipeline import Examples
from examples.sentiment.input_pipeline import load_text_file
from examples.sentiment.input_pipeline import load_vader
from examples.sentiment.input_pipeline import stratified_split
from examples.sentiment.models import BiRNNClassifier


def make_parser() -> argparse.ArgumentParser:
  p = cli.parser(
    "Train a bidirectional LSTM/GRU sentiment classifier on the VADER "
    "ground-truth sentences (tweets, movie, Amazon and NYT snippets).",
    prog="python -m examples.sentiment",
    lr=3e-3,
    steps=1500,
    hidden=64,
    eval_every=250,
  )
  g = p.add_argument_group("sentiment")
  g.add_argument(
    "--embed", type=cli.positive_int, default=64, help="embedding width"
  )
  g.add_argument(
    "--max-len", type=cli.positive_int, default=48, help="tokens kept"
  )
  g.add_argument(
    "--vocab-size",
    type=cli.positive_int,
    default=20000,
    help="largest vocabulary (specials included)",
  )
  g.add_argument(
    "--dropout", type=cli.probability, default=0.3, help="dropout rate"
  )
  g.add_argument(
    "--text-file",
    type=cli.text_file,
    default=None,
    help="your own data: label<TAB>text[<TAB>domain] lines",
  )
  return p


def loss_fn(model, batch, carry, key):
  """Mean cross-entropy of a batch; also returns the batch accuracy."""
  logits = model(batch["ids"], batch["lengths"], key)
  loss = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), batch["labels"]
  ).mean()
  acc = jnp.mean(jnp.argmax(logits, -1) == batch["labels"])
  return loss, (carry, {"train_acc": acc})


@nnx.jit
def _predict(model, ids, lengths, labels):
  logits = model(ids, lengths)
  nll = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), labels
  )
  return nll, jnp.argmax(logits, -1)


def predict(model, enc: Encoded, batch_size: int):
  """Per-example loss and predicted class."""
  nll, pred = [], []
  idx = np.arange(len(enc))
  for ib, w in trainer.padded_batches((idx,), batch_size):
    b = enc.batch(ib)
    n, p = _predict(
      model, *trainer.shard_batch((b["ids"], b["lengths"], b["labels"]))
    )
    k = int(w.sum())
    nll.append(np.asarray(n)[:k])
    pred.append(np.asarray(p)[:k])
  return np.concatenate(nll), np.concatenate(pred)


def evaluate(model, val: Encoded, test: Encoded, names, batch_size: int):
  """Validation loss/accuracy, test accuracy overall and per domain."""
  vl, vp = predict(model, val, batch_size)
  _, tp = predict(model, test, batch_size)
  out = {
    "val_loss": float(vl.mean()),
    "val_acc": float(np.mean(vp == val.labels)),
    "test_acc": float(np.mean(tp == test.labels)),
  }
  for d, name in enumerate(names):
    sel = test.domains == d
    if sel.any():
      out[f"test_acc_{name}"] = float(np.mean(tp[sel] == test.labels[sel]))
  return out


def build_task(args, examples: Examples | None = None) -> trainer.Task:
  """The sentiment task for parsed ``args`` (``examples`` overrides data)."""
  if examples is None:
    if args.text_file:
      examples = load_text_file(args.text_file)
    else:
      examples = load_vader(args.data_dir)
  tr, va, te = stratified_split(examples, seed=args.seed)
  if not (len(tr) and len(va) and len(te)):
    raise data.DataError(
      f"{len(examples)} labelled examples are too few for a train, "
      "validation and test split (at least 10 are needed)"
    )
  train_ex = examples.subset(tr)
  vocab = data.TokenVocab.build(
    (data.word_tokens(t) for t in train_ex.texts), args.vocab_size, 2
  )
  train = Encoded(train_ex, vocab, args.max_len)
  val = Encoded(examples.subset(va), vocab, args.max_len)
  test = Encoded(examples.subset(te), vocab, args.max_len)
  model = BiRNNClassifier(
    len(vocab),
    2,
    args.embed,
    args.hidden,
    args.layers,
    args.cell,
    args.norm,
    args.dropout,
    rngs=nnx.Rngs(args.seed),
  )
  names = examples.domain_names

  def train_batch(step):
    rng = np.random.default_rng([args.seed, step])
    return train.batch(rng.integers(0, len(train), args.batch_size))

  def report(model, ev):
    lines = [
      "test accuracy by domain: "
      + ", ".join(
        f"{n} {ev[f'test_acc_{n}']:.3f}" for n in names if f"test_acc_{n}" in ev
      )
    ]
    _, pred = predict(model, test, args.batch_size)
    test_texts = examples.subset(te).texts
    lines.append("predicted / true label, test sentences:")
    for i in range(min(4, len(test_texts))):
      mark = "+" if pred[i] else "-"
      true = "+" if test.labels[i] else "-"
      lines.append(f"[{mark}/{true}] {test_texts[i][:90]}")
    return lines

  return trainer.Task(
    name="sentiment",
    model=model,
    loss_fn=loss_fn,
    train_batch=train_batch,
    evaluate=lambda m: evaluate(m, val, test, names, args.batch_size),
    meta={"vocab": vocab.to_json(), "domains": list(names)},
    report=report,
    metric="test_acc",
    lower_is_better=False,
  )


def main(argv: Sequence[str] | None = None) -> trainer.RunResult:
  p = make_parser()
  args = cli.parse(p, argv, "sentiment")
  with cli.usage_errors(p):
    task = build_task(args)
  result = trainer.train(task, args)
  trainer.summary(result, task.metric)
  return result
