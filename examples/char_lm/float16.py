# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""``--precision float16``: the char-LM in float16 with dynamic loss scaling.

The recipe of ``docs/at_scale.md``: parameters and gradients in float16, the
loss scaled by ``jmp.DynamicLossScale``, the gradients unscaled and cast
back to float16, ``optaxclip.skip_nonfinite`` around the clip + optimizer
chain as the only skip mechanism (an overflow step is skipped before any
clipper or adaptive statistic sees it), and the scale adjusted with
``jmp.all_finite``. Writes ``metrics.jsonl`` (loss, loss scale, skipped) and
``loss_scale.png`` (the loss scale and the skipped steps) to ``--workdir``.
A short loop of its own: no checkpoints, no truncated BPTT.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optaxclip
from examples.common import metrics
from examples.common import plots
from examples.common import strategies
from examples.common import trainer

# Adam's default eps=1e-8 is 0 in float16: where the second moment
# underflows, the update is 0/0 = NaN and every step would be skipped.
FLOAT16_EPS = 1e-3


def build_tx(args) -> optax.GradientTransformationExtraArgs:
  """``skip_nonfinite(chain(clip, optimizer, clip_after))`` for float16."""
  optimizer = args.optimizer
  name, _, kwargs = strategies.parse_spec(optimizer)
  if name in ("adam", "adamw", "lion", "rmsprop") and "eps" not in kwargs:
    sep = "," if ":" in optimizer else ":"
    optimizer = f"{optimizer}{sep}eps={FLOAT16_EPS}"
  inner = strategies.build_tx(
    clip=args.clip,
    optimizer=optimizer,
    learning_rate=args.lr,
    clip_after=args.clip_after,
  )
  return optaxclip.skip_nonfinite(inner)


def to_float16(model: nnx.Module) -> None:
  """Casts the model's parameters to float16 in place."""
  params = nnx.state(model, nnx.Param)
  nnx.update(model, jax.tree.map(lambda x: x.astype(jnp.float16), params))


def train(task: trainer.Task, args) -> dict:
  """``args.steps`` float16 steps; returns the final metrics."""
  import jmp

  workdir = Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  model = task.model
  to_float16(model)
  optimizer = nnx.Optimizer(model, build_tx(args), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  scale = jmp.DynamicLossScale(jnp.asarray(args.loss_scale, jnp.float32))

  @jax.jit
  def step_fn(state, scale, batch):
    model, optimizer = nnx.merge(graphdef, state)

    def scaled(model):
      loss, _ = task.loss_fn(model, batch, None, None)
      return scale.scale(loss), loss

    grads, loss = nnx.grad(scaled, has_aux=True)(model)
    grads = jax.tree.map(lambda g: g.astype(jnp.float16), scale.unscale(grads))
    optimizer.update(model, grads)
    finite = jmp.all_finite(grads)
    return nnx.state((model, optimizer)), scale.adjust(finite), loss, finite

  writer = metrics.JsonlWriter(workdir / "metrics.jsonl")
  steps, scales, skipped, losses = [], [], [], []
  for i in range(args.steps):
    batch = trainer.shard_batch(task.train_batch(i))
    state, scale, loss, finite = step_fn(state, scale, batch)
    row = {
      "step": i + 1,
      "split": "train",
      "loss": float(loss),
      "loss_scale": float(scale.loss_scale),
      "skipped": int(not bool(finite)),
    }
    writer.write(row)
    steps.append(i + 1)
    scales.append(row["loss_scale"])
    skipped.append(row["skipped"])
    losses.append(row["loss"])
  model, optimizer = nnx.merge(graphdef, state)
  ev = {k: float(v) for k, v in task.evaluate(model).items()}
  stats = optaxclip.stats(optimizer.opt_state)
  out = {
    **ev,
    "steps": args.steps,
    "skipped_steps": int(stats["skip_nonfinite"].skip_count),
    "final_loss_scale": scales[-1] if scales else args.loss_scale,
    "param_dtypes": sorted(
      {str(x.dtype) for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
    ),
  }
  writer.write({"step": args.steps, "split": "eval", **ev})
  (workdir / "float16.json").write_text(json.dumps(out, indent=1))
  if not args.no_plots:
    plot(steps, scales, skipped, losses, workdir / "loss_scale.png")
  print(json.dumps(out))
  return out


def plot(steps, scales, skipped, losses, path) -> None:
  """The loss scale (log scale), the skipped steps, and the loss."""
  plt = plots._plt()
  fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
  ax1.semilogy(steps, scales, color="C0", label="loss scale")
  bad = [s for s, k in zip(steps, skipped) if k]
  ax1.plot(
    bad,
    [scales[s - 1] for s in bad],
    "x",
    color="C3",
    label=f"skipped step ({len(bad)})",
  )
  ax1.set_ylabel("loss scale")
  ax1.legend()
  ax2.plot(steps, np.where(np.asarray(skipped) > 0, np.nan, losses), "C1")
  ax2.set_ylabel("training loss (applied steps)")
  ax2.set_xlabel("step")
  fig.suptitle("char-LM in float16 with dynamic loss scaling (jmp)")
  plots._save(fig, path)
