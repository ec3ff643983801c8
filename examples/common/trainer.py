# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The training loop every example shares.

A task hands the loop a :class:`Task`: an NNX model, a loss, a function
giving the batch of any step, and an evaluation. The loop

* chains the ``--clip`` strategy with the ``--optimizer`` (plus
  ``--clip-after`` and ``--skip``) and builds
  ``nnx.Optimizer(model, tx, wrt=nnx.Param)``;
* compiles one train step with :func:`jax.jit` over the split model and
  optimizer state (the state is donated, so it is updated in place). The
  step returns the loss, the global gradient norm, the norm of the applied
  update and ``optaxclip.stats(optimizer.opt_state)``: the statistics come
  back as outputs of the step, with no host callback;
* shards every batch over all local devices along a ``data`` mesh axis
  (data parallelism: parameters replicated, batch split), so the same
  command uses one CPU or eight TPU cores;
* logs every step as JSON lines (``metrics.jsonl``), shows a tqdm bar,
  evaluates every ``--eval-every`` steps, saves a checkpoint every
  ``--ckpt-every`` steps and at the end, and resumes from it with
  ``--resume``: batches and dropout keys are functions of the step, so a
  resumed run sees the same data it would have seen;
* draws the loss, gradient-norm and clip-rate plots and prints a summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import optaxclip
from examples.common import checkpoint
from examples.common import metrics
from examples.common import plots
from examples.common import strategies
from optaxclip import _stats

# ---------------------------------------------------------------------------
# Data parallelism
# ---------------------------------------------------------------------------


def mesh() -> Mesh:
  """A one-axis mesh, ``data``, over every local device."""
  return Mesh(np.asarray(jax.devices()), ("data",))


def shard_batch(tree: Any, m: Mesh | None = None) -> Any:
  """Puts arrays on the devices, split along their leading (batch) axis."""
  m = m or mesh()
  n = m.devices.size

  def put(x):
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim == 0 or x.shape[0] % n:
      return jax.device_put(x, NamedSharding(m, P()))
    return jax.device_put(x, NamedSharding(m, P("data")))

  return jax.tree.map(put, tree)


def unique_buffers(tree: Any) -> Any:
  """Copies the leaves that are the same array as an earlier leaf.

  An optimizer may initialise two state fields with one array (and an LSTM
  state may be ``(zeros, zeros)``); a donated argument must not hold one
  buffer twice. The library's own helper, which its ``init`` functions use.
  """
  return _stats.unique_buffers(tree)


def replicate(tree: Any, m: Mesh | None = None) -> Any:
  """Puts arrays on every device (parameters and optimizer state)."""
  m = m or mesh()
  return jax.device_put(unique_buffers(tree), NamedSharding(m, P()))


def padded_batches(arrays, batch_size: int):
  """Yields ``(*batch, weights)`` of ``batch_size`` rows over ``arrays``.

  The last batch is padded by repeating its final row, with weight 0, so
  every batch has the same shape and the step compiles once.
  """
  n = len(arrays[0])
  for i in range(0, n, batch_size):
    chunk = [np.asarray(a[i : i + batch_size]) for a in arrays]
    k = len(chunk[0])
    w = np.zeros(batch_size, np.float32)
    w[:k] = 1.0
    if k < batch_size:
      chunk = [
        np.concatenate([c, np.repeat(c[-1:], batch_size - k, 0)]) for c in chunk
      ]
    yield (*chunk, w)


def check_batch_size(batch_size: int) -> None:
  n = jax.device_count()
  if batch_size % n:
    raise SystemExit(
      f"--batch-size {batch_size} must be a multiple of the {n} devices the "
      "batch is split over."
    )


# ---------------------------------------------------------------------------
# Tasks and results
# ---------------------------------------------------------------------------

LossFn = Callable[[nnx.Module, Any, Any, jax.Array], tuple[jax.Array, Any]]


@dataclasses.dataclass
class Task:
  """What a task gives the training loop.

  Attributes:
    name: the task's name, for messages.
    model: the NNX model, initialised.
    loss_fn: ``(model, batch, carry, key) -> (loss, (carry, aux))``: the mean
      training loss of a batch; ``carry`` is the recurrent state carried
      between batches (None unless truncated BPTT), ``aux`` a dict of scalar
      metrics to log, ``key`` a PRNG key for dropout.
    train_batch: ``step -> batch``, a dict of NumPy arrays whose leading axis
      is the batch; a deterministic function of the step.
    evaluate: ``model -> {metric: float}``; must contain ``val_loss``.
    init_carry: ``() -> carry`` for the first batch, or None.
    meta: JSON-able data saved with checkpoints (e.g. the vocabulary).
    report: ``(model, eval_metrics) -> lines`` printed at the end (samples,
      predictions), or None.
    metric: the headline metric among the evaluation's keys.
    lower_is_better: how to read it.
    learning_rate: an Optax schedule (step -> rate) used instead of the
      constant ``--lr``, e.g. warmup and decay to ``--lr``; None: ``--lr``.
  """

  name: str
  model: nnx.Module
  loss_fn: LossFn
  train_batch: Callable[[int], dict[str, np.ndarray]]
  evaluate: Callable[[nnx.Module], dict[str, float]]
  init_carry: Callable[[], Any] | None = None
  meta: dict = dataclasses.field(default_factory=dict)
  report: Callable[[nnx.Module, dict], list[str]] | None = None
  metric: str = "val_loss"
  lower_is_better: bool = True
  learning_rate: Any = None


@dataclasses.dataclass
class RunResult:
  """What a run did, for summaries and comparison tables."""

  task: str
  workdir: Path
  steps: int
  eval: dict[str, float]
  history: Any
  losses: np.ndarray
  grad_norms: np.ndarray
  clip_name: str | None
  clip_rate: float
  spikes: int
  wall_time: float
  train_time: float
  files: list[Path]
  report: list[str]
  model: nnx.Module | None = None

  @property
  def max_grad_norm(self) -> float:
    g = self.grad_norms
    if not len(g):
      return math.nan
    return float(np.max(np.where(np.isfinite(g), g, np.inf)))

  @property
  def diverged(self) -> bool:
    return bool(len(self.losses)) and not np.isfinite(self.losses[-1])

  def to_json(self) -> dict:
    """The headline numbers, JSON-safe (non-finite values as strings)."""
    out = {
      "task": self.task,
      "steps": self.steps,
      **dict(self.eval.items()),
      "clip_name": self.clip_name,
      "clip_rate": self.clip_rate,
      "spikes": self.spikes,
      "max_grad_norm": self.max_grad_norm,
      "diverged": self.diverged,
      "final_train_loss": float(self.losses[-1]) if len(self.losses) else None,
      "wall_time_s": round(self.wall_time, 1),
      "train_time_s": round(self.train_time, 1),
    }
    return {
      k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v)
      for k, v in out.items()
    }


def fmt_number(x: float, spec: str) -> str:
  """``format(x, spec)``, or ``"nan"`` for a non-finite ``x`` (tables)."""
  return format(x, spec) if math.isfinite(x) else "nan"


def comparison_table(
  metrics: Sequence[str],
  rows: Sequence[tuple[str, float, RunResult]],
  cells: Callable[[RunResult], Sequence[str]],
) -> list[str]:
  """A clipping comparison as Markdown table lines.

  Columns: the ``--clip`` spec, Adam's learning rate, ``metrics`` (their
  headers; ``cells(result)`` gives their values), then what every task
  reports: validation loss, largest gradient norm, clip rate, loss spikes
  and wall time.

  Args:
    metrics: the task's metric column headers.
    rows: ``(clip spec, learning rate, result)`` per run.
    cells: the metric cells of a result, one per header.
  """
  head = ["clipping", "Adam lr", *metrics, "val loss", "max grad norm"]
  head += ["clip rate", "loss spikes", "time"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for clip, lr, r in rows:
    rate = "-" if r.clip_name is None else f"{r.clip_rate:.0%}"
    row = [f"`{clip}`", f"{lr:g}", *cells(r)]
    row += [fmt_number(r.eval.get("val_loss", math.nan), ".3f")]
    row += [fmt_number(r.max_grad_norm, ".3g"), rate, str(r.spikes)]
    row += [f"{r.wall_time:.0f}s"]
    lines.append("| " + " | ".join(row) + " |")
  return lines


# ---------------------------------------------------------------------------
# The train step
# ---------------------------------------------------------------------------


def make_train_step(graphdef, loss_fn: LossFn, seed: int):
  """The jit-compiled step: ``(state, carry, batch, step) -> ...``.

  Returns:
    A function returning ``(state, carry, outputs, stats)``: the new model
    and optimizer state, the new recurrent state, ``{"loss", "grad_norm",
    "update_norm", ...aux}`` and ``optaxclip.stats(optimizer.opt_state)``.
  """

  def step_fn(state, carry, batch, step):
    model, optimizer = nnx.merge(graphdef, state)
    key = jax.random.fold_in(jax.random.key(seed), step)

    def loss_of(model):
      return loss_fn(model, batch, carry, key)

    (loss, (new_carry, aux)), grads = nnx.value_and_grad(loss_of, has_aux=True)(
      model
    )
    # Leaves are immutable arrays: `before` keeps the values of this step.
    before = jax.tree.leaves(nnx.state(model, nnx.Param))
    optimizer.update(model, grads, loss=loss, value=loss)
    after = jax.tree.leaves(nnx.state(model, nnx.Param))
    delta = [b - a for a, b in zip(before, after)]
    out = {
      "loss": loss,
      "grad_norm": optaxclip.global_norm(grads),
      "update_norm": optaxclip.global_norm(delta),
      **aux,
    }
    new_carry = jax.lax.stop_gradient(new_carry)
    stats = optaxclip.stats(optimizer.opt_state)
    return nnx.state((model, optimizer)), new_carry, out, stats

  return jax.jit(step_fn, donate_argnums=(0, 1))


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> dict:
  return {
    k: v
    for k, v in vars(args).items()
    if isinstance(v, (str, int, float, bool, type(None)))
  }


def _clip_name(stats: dict) -> str | None:
  return next(iter(stats), None)


def _rebuild_history(rows: list[dict]) -> Any:
  history = metrics.new_history()
  for row in rows:
    row = dict(row)
    step = int(row.pop("step"))
    row.pop("split", None)
    stats: dict[str, dict] = {}
    for k in [k for k in row if "/" in k]:
      name, field = k.rsplit("/", 1)
      stats.setdefault(name, {})[field] = row.pop(k)
    scalars = {k: v for k, v in row.items() if _is_num(v)}
    history.append(step, stats=_namedtuples(stats) or None, **scalars)
  return history


def _is_num(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def train(task: Task, args: argparse.Namespace) -> RunResult:
  """Trains ``task`` with the settings of ``args`` (see :mod:`.cli`).

  Args:
    task: the task.
    args: the parsed flags: ``clip``, ``clip_after``, ``skip``,
      ``optimizer``, ``lr``, ``steps``, ``batch_size``, ``seed``,
      ``workdir``, ``resume``, ``eval_every``, ``ckpt_every``,
      ``no_progress``, ``no_plots``.

  Returns:
    A :class:`RunResult`; ``task.model`` holds the trained weights.
  """
  t_start = time.perf_counter()
  check_batch_size(args.batch_size)
  workdir = Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  ckdir = workdir / "checkpoint"
  metrics_path = workdir / "metrics.jsonl"

  tx = strategies.build_tx(
    clip=args.clip,
    optimizer=args.optimizer,
    learning_rate=args.lr if task.learning_rate is None else task.learning_rate,
    clip_after=args.clip_after,
    skip=args.skip,
  )
  model = task.model
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  carry = task.init_carry() if task.init_carry else None

  start, history, rows = 0, metrics.new_history(), []
  if args.resume and checkpoint.exists(ckdir):
    trees, meta = checkpoint.restore(ckdir, {"state": state, "carry": carry})
    state, carry, start = trees["state"], trees["carry"], int(meta["step"])
    rows = metrics.JsonlWriter.truncate_after(metrics_path, start)
    history = _rebuild_history(rows)
    print(f"Resuming {task.name} from step {start} ({ckdir}).")
  elif metrics_path.exists():
    metrics_path.unlink()
  m = mesh()
  state = replicate(state, m)
  carry = shard_batch(unique_buffers(carry), m)
  step_fn = make_train_step(graphdef, task.loss_fn, args.seed)
  writer = metrics.JsonlWriter(metrics_path)
  (workdir / "config.json").write_text(json.dumps(_config(args), indent=1))

  def current_model():
    return nnx.merge(graphdef, state)[0]

  def evaluate(step):
    ev = {k: float(v) for k, v in task.evaluate(current_model()).items()}
    writer.write({"step": step, "split": "eval", **ev})
    history.append(step, **ev)
    return ev

  def save(step):
    checkpoint.save(
      ckdir,
      {"state": state, "carry": carry},
      {"step": step, "task": task.name, "config": _config(args), **task.meta},
    )

  train_rows = [r for r in rows if r.get("split") == "train"]
  losses = [float(r["loss"]) for r in train_rows]
  grad_norms = [float(r["grad_norm"]) for r in train_rows]
  spikes = metrics.SpikeCounter()
  for v in losses:
    spikes.update(v)
  bar = _progress(start, args.steps, args.no_progress, task.name)
  last_eval: dict[str, float] = {}
  clip_name, pending = None, None
  max_g = max([0.0, *grad_norms])
  clip_sum, clip_n = 0.0, 0
  t_train = time.perf_counter()

  def consume(item):
    nonlocal clip_name, max_g, clip_sum, clip_n
    s, out, stats = jax.device_get(item)
    stats = {k: v._asdict() for k, v in stats.items()}
    clip_name = clip_name or _clip_name(stats)
    row = {k: float(v) for k, v in out.items()}
    flat = metrics.flatten_stats(stats)
    writer.write({"step": s, "split": "train", **row, **flat})
    history.append(s, stats=_namedtuples(stats), **row)
    spikes.update(row["loss"])
    losses.append(row["loss"])
    g = row["grad_norm"]
    grad_norms.append(g)
    max_g = max(max_g, g) if math.isfinite(g) else math.inf
    if clip_name is not None:
      c = flat.get(f"{clip_name}/clipped", math.nan)
      if math.isfinite(c):
        clip_sum, clip_n = clip_sum + c, clip_n + 1
    if bar is not None and (s % 10 == 0 or s == args.steps):
      post = {"loss": f"{row['loss']:.3f}", "|g|": f"{g:.3g}"}
      post["max|g|"] = f"{max_g:.3g}"
      if clip_n:
        post["clip"] = f"{clip_sum / clip_n:.0%}"
      post["spikes"] = spikes.count
      bar.set_postfix(post, refresh=False)

  for step in range(start + 1, args.steps + 1):
    batch = shard_batch(task.train_batch(step - 1), m)
    state, carry, out, stats = step_fn(state, carry, batch, np.int32(step))
    if pending is not None:
      consume(pending)
    pending = (step, out, stats)
    if bar is not None:
      bar.update(1)
    is_last = step == args.steps
    if step % args.eval_every == 0 or is_last:
      consume(pending)
      pending = None
      last_eval = evaluate(step)
      if bar is not None:
        bar.write(f"step {step}: " + _fmt(last_eval))
    if step % args.ckpt_every == 0 or is_last:
      if pending is not None:
        consume(pending)
        pending = None
      save(step)
  if pending is not None:
    consume(pending)
  train_time = time.perf_counter() - t_train
  if bar is not None:
    bar.close()
  if not last_eval:  # resumed at the end: evaluate anyway
    last_eval = evaluate(args.steps)
  writer.close()

  if clip_name is None and train_rows:
    clip_name = next(
      (k.rsplit("/", 1)[0] for k in train_rows[-1] if "/" in k), None
    )
  nnx.update((model, optimizer), state)
  files = [metrics_path, ckdir]
  if not args.no_plots:
    files += draw_plots(history, workdir, clip_name)
  report = task.report(model, last_eval) if task.report else []
  if clip_name is None:
    rate = math.nan
  else:
    c = metrics.history_series(history, f"{clip_name}/clipped")[1]
    rate = float(np.mean(c)) if len(c) else math.nan
  result = RunResult(
    task=task.name,
    workdir=workdir,
    steps=args.steps,
    eval=last_eval,
    history=history,
    losses=np.asarray(losses),
    grad_norms=np.asarray(grad_norms),
    clip_name=clip_name,
    clip_rate=rate,
    spikes=spikes.count,
    wall_time=time.perf_counter() - t_start,
    train_time=train_time,
    files=files,
    report=report,
    model=model,
  )
  (workdir / "summary.json").write_text(json.dumps(result.to_json(), indent=1))
  return result


def _namedtuples(stats: dict[str, dict]) -> dict[str, Any]:
  return {
    k: optaxclip.ClipStats(**v)
    if set(v) == set(optaxclip.ClipStats._fields)
    else v
    for k, v in stats.items()
  }


def _fmt(d: dict[str, float]) -> str:
  return ", ".join(f"{k} {v:.4g}" for k, v in d.items())


def _progress(start: int, total: int, disabled: bool, name: str):
  if disabled:
    return None
  from tqdm.auto import tqdm

  return tqdm(
    total=total, initial=start, desc=name, dynamic_ncols=True, leave=True
  )


def draw_plots(
  history: Any, workdir: Path, clip_name: str | None
) -> list[Path]:
  """``loss.png``, ``grad_norm.png`` and, with a clipper, ``clip_rate.png``."""
  out = [workdir / "loss.png", workdir / "grad_norm.png"]
  plots.loss_curves(history, str(out[0]))
  plots.norm_history(history, str(out[1]), name=clip_name)
  if clip_name is not None:
    out.append(workdir / "clip_rate.png")
    plots.clip_rate(history, str(out[2]), name=clip_name)
  return out


def summary(result: RunResult, metric: str, lower_is_better: bool = True):
  """Prints the end-of-run summary."""
  ev = result.eval
  print()
  print(f"== {result.task}: {result.steps} steps in {result.wall_time:.0f}s")
  print(f"   {metric}: {ev.get(metric, math.nan):.4g}   ({_fmt(ev)})")
  rate = result.clip_rate
  clip = "no clipper" if result.clip_name is None else f"{rate:.1%}"
  print(
    f"   clip rate: {clip}   max grad norm: {result.max_grad_norm:.3g}   "
    f"loss spikes: {result.spikes}"
    + ("   (diverged: non-finite loss)" if result.diverged else "")
  )
  for line in result.report:
    print("   " + line)
  print("   files: " + ", ".join(str(f) for f in result.files))


def jnp_mean_where(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``x`` over the entries where ``mask`` is true."""
  mask = mask.astype(x.dtype)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1)
