# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Character language model on Shakespeare: the task and its command line.

Example::

  python -m examples.char_lm --model lstm --clip clip_by_global_norm:1.0 \\
      --lr 3e-3 --steps 2000
  python -m examples.char_lm --optimizer sgd --lr 5 --clip none --steps 600
  python -m examples.char_lm --bptt 50 --norm layernorm
  python -m examples.char_lm --model transformer --text-file my_corpus.txt
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from examples.char_lm.input_pipeline import CharData
from examples.char_lm.input_pipeline import load_text
from examples.char_lm.models import CharRNN
from examples.char_lm.models import CharTransformer
from examples.common import cli
from examples.common import trainer

MODELS = ("lstm", "gru", "transformer")


def add_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
  g = p.add_argument_group("character language model")
  g.add_argument("--model", choices=MODELS, default="lstm", help="the model")
  g.add_argument(
    "--embed", type=cli.positive_int, default=64, help="embedding width"
  )
  g.add_argument(
    "--heads", type=cli.positive_int, default=4, help="transformer heads"
  )
  g.add_argument(
    "--seq-len", type=cli.positive_int, default=100, help="window length"
  )
  g.add_argument(
    "--bptt",
    type=cli.nonnegative_int,
    default=0,
    help="truncated BPTT: carry the recurrent state across batches and "
    "backpropagate through this many steps (0: independent random windows "
    "of --seq-len)",
  )
  g.add_argument(
    "--text-file",
    type=cli.text_file,
    default=None,
    help="train on this UTF-8 text instead of Shakespeare",
  )
  g.add_argument(
    "--val-fraction",
    type=cli.fraction,
    default=0.05,
    help="final fraction of the text held out for validation",
  )
  g.add_argument(
    "--eval-windows",
    type=cli.positive_int,
    default=128,
    help="validation windows per evaluation",
  )
  g.add_argument(
    "--eval-len",
    type=cli.positive_int,
    default=100,
    help="length of a validation window",
  )
  g.add_argument(
    "--sample-len",
    type=cli.nonnegative_int,
    default=300,
    help="characters sampled at the end (0: none)",
  )
  g.add_argument(
    "--temperature",
    type=cli.nonnegative_float,
    default=0.8,
    help="sampling temperature (0: greedy)",
  )
  g.add_argument("--prompt", default="ROMEO.", help="the sample's prompt")
  g.add_argument(
    "--precision",
    choices=("float32", "float16"),
    default="float32",
    help="float16: parameters and gradients in float16 with dynamic loss "
    "scaling (jmp) and skip_nonfinite; plots the loss scale and the skipped "
    "steps (a short loop: no checkpoints, --bptt, --skip or --resume)",
  )
  g.add_argument(
    "--loss-scale",
    type=cli.positive_float,
    default=2.0**15,
    help="--precision float16: the initial dynamic loss scale (halved on "
    "every overflow step, doubled after 2000 finite ones)",
  )
  return p


def make_parser() -> argparse.ArgumentParser:
  return add_args(
    cli.parser(
      "Train a character language model (LSTM, GRU or Transformer) on "
      "Shakespeare with an optaxclip clipping strategy.",
      prog="python -m examples.char_lm",
      lr=3e-3,
      steps=2000,
      hidden=128,
    )
  )


def build_model(args, vocab_size: int) -> nnx.Module:
  rngs = nnx.Rngs(args.seed)
  if args.model == "transformer":
    if args.bptt:
      raise cli.UsageError("--bptt applies to the recurrent models only")
    if args.hidden % args.heads:
      raise cli.UsageError(
        f"--hidden {args.hidden} is not a multiple of --heads {args.heads}"
      )
    return CharTransformer(
      vocab_size,
      args.hidden,
      args.heads,
      args.layers,
      max_len=max(args.seq_len, args.eval_len),
      rngs=rngs,
    )
  return CharRNN(
    vocab_size,
    args.embed,
    args.hidden,
    args.layers,
    args.model,
    args.norm,
    rngs=rngs,
  )


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-token negative log-likelihood, computed in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), targets
  )


def loss_fn(model, batch, carry, key):
  """Mean next-character cross-entropy (nats) of a batch."""
  del key
  if carry is not None:  # truncated BPTT: reset the streams that restart
    keep = 1.0 - batch["reset"][:, None]
    carry = jax.tree.map(lambda c: c * keep, carry)
  logits, new_carry = model(batch["x"], carry)
  loss = jnp.mean(token_nll(logits, batch["y"]))
  return loss, (new_carry if carry is not None else None, {})


@nnx.jit
def _eval_batch(model, x, y, w):
  logits, _ = model(x)
  return jnp.sum(token_nll(logits, y) * w[:, None])


@nnx.jit
def _rnn_step(model, carry, tokens):
  logits, carry = model(tokens, carry)
  return logits[:, -1], carry


@nnx.jit
def _transformer_last(model, window, length):
  logits, _ = model(window)
  return jnp.take(logits[0], length - 1, axis=0)


def evaluate(model, windows: dict, batch_size: int) -> dict[str, float]:
  """Validation loss (nats/char) and bits per character."""
  total, count = 0.0, 0
  for xb, yb, wb in trainer.padded_batches(
    (windows["x"], windows["y"]), batch_size
  ):
    total += float(_eval_batch(model, *trainer.shard_batch((xb, yb, wb))))
    count += int(wb.sum()) * yb.shape[1]
  loss = total / max(count, 1)
  return {"val_loss": loss, "val_bpc": loss / math.log(2)}


def sample(
  model,
  vocab,
  prompt: str,
  length: int,
  temperature: float,
  seed: int = 0,
) -> str:
  """Generates ``length`` characters after ``prompt``.

  Temperature 0 is greedy decoding; higher values flatten the distribution.
  """
  rng = np.random.default_rng(seed)
  ids = list(vocab.encode(prompt or "\n"))

  def pick(logits):
    logits = np.asarray(logits, np.float64)
    if temperature <= 0:
      return int(np.argmax(logits))
    z = logits / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))

  out = []
  if isinstance(model, CharTransformer):
    L = model.max_len
    for _ in range(length):
      ctx = ids[-L:]
      window = np.zeros((1, L), np.int32)
      window[0, : len(ctx)] = ctx
      nxt = pick(_transformer_last(model, jnp.asarray(window), len(ctx)))
      ids.append(nxt)
      out.append(nxt)
  else:
    carry = model.init_carry(1)
    logits, carry = _rnn_step(model, carry, jnp.asarray([ids], jnp.int32))
    for _ in range(length):
      nxt = pick(logits[0])
      out.append(nxt)
      logits, carry = _rnn_step(model, carry, jnp.asarray([[nxt]], jnp.int32))
  return prompt + vocab.decode(out)


def build_task(args, text: str | None = None) -> trainer.Task:
  """The char-LM task for parsed ``args`` (``text`` overrides the data)."""
  if text is None:
    text = load_text(args.text_file, args.data_dir)
  data = CharData(text, args.val_fraction)
  model = build_model(args, len(data.vocab))
  eval_len = args.eval_len
  if args.model == "transformer":
    eval_len = min(eval_len, model.max_len)
  windows = data.val_windows(args.eval_windows, eval_len)
  bptt = args.bptt

  if bptt:

    def train_batch(step):
      b = data.stream_windows(step, args.batch_size, bptt)
      start = data.is_stream_start(step, args.batch_size, bptt)
      b["reset"] = np.full(args.batch_size, float(start), np.float32)
      return b

    def init_carry():
      return model.init_carry(args.batch_size)

  else:

    def train_batch(step):
      return data.random_windows(step, args.batch_size, args.seq_len, args.seed)

    init_carry = None

  train_batch(0)  # a text shorter than one window fails here, not in step 1

  def report(model, ev):
    if args.sample_len <= 0:
      return []
    text = sample(
      model,
      data.vocab,
      args.prompt,
      args.sample_len,
      args.temperature,
      args.seed,
    )
    return [f"sample (temperature {args.temperature}):", *text.splitlines()]

  return trainer.Task(
    name="char_lm",
    model=model,
    loss_fn=loss_fn,
    train_batch=train_batch,
    evaluate=lambda m: evaluate(m, windows, args.batch_size),
    init_carry=init_carry,
    meta={"vocab": data.vocab.to_json()},
    report=report,
    metric="val_bpc",
  )


def main(argv: Sequence[str] | None = None) -> trainer.RunResult | dict:
  p = make_parser()
  args = cli.parse(p, argv, "char_lm")
  if args.precision == "float16":
    for flag, value in (
      ("--bptt", args.bptt),
      ("--skip", args.skip),
      ("--resume", args.resume),
    ):
      if value:
        p.error(f"{flag} does not apply to --precision float16")
    if not (args.loss_scale >= 1 and math.isfinite(args.loss_scale)):
      p.error(f"--loss-scale must be >= 1, got {args.loss_scale}")
    from examples.char_lm import float16

    with cli.usage_errors(p):
      task = build_task(args)
    return float16.train(task, args)
  with cli.usage_errors(p):
    task = build_task(args)
  result = trainer.train(task, args)
  trainer.summary(result, task.metric)
  return result
