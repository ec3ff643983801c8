# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Compile time and step time of a full training step, every strategy + Adam.

The model is the char-LM example's causal Transformer
(``examples/char_lm/models.py``, ``CharTransformer``) at width 384 with 6
blocks: about 10.8M float32 parameters in 102 leaves. One step is
``jax.value_and_grad`` of the cross-entropy and the optimizer update
(``tx.update`` then :func:`optax.apply_updates`) in one ``jax.jit``,
parameters and optimizer state donated; the parameters are a plain dict
(``nnx.to_pure_dict``), merged into the module inside the step.

Variants are those of ``benchmarks/overhead.py``: Adam alone, every entry
of ``tests/conformance.py``'s registry (gradient-stage strategies before
Adam, update-stage ones after it, wrappers around it; a ``loss`` extra
argument gets the step's loss), ``optax.clip_by_global_norm``, the floor of
``clip_by_global_norm`` (Adam plus one read of the gradients), and with
``--baseline REF`` the same strategies from the package at git ``REF``.

Each round, in an order rotated from round to round, compiles every variant
afresh (``jax.clear_caches()``, then ``jax.jit(step).lower(...).compile()``,
timed), then times ``--reps`` steps of each, interleaved (one step of each
variant in turn, the order rotated every repetition), each step waited for
with ``block_until_ready``. Reported per variant:

* compile: the lowest over rounds, divided by Adam alone's lowest; and the
  range of the per-round ratios (each over Adam in the same round);
* step: the ``--quantile`` (default 0.2) of all its steps, divided by Adam
  alone's; and the range of the per-round ratios: the noise band.

Run ``python benchmarks/train_step.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optaxclip

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
  if _p not in sys.path:
    sys.path.insert(0, _p)

import _baseline  # noqa: E402
import _cli  # noqa: E402
import overhead  # noqa: E402

from examples.char_lm.models import CharTransformer  # noqa: E402

BASELINE = overhead.BASELINE
OURS = overhead.OURS
FLOOR = f"floor:{OURS}"
# The registry's path rules (``thresholds``) name the conformance tests'
# leaves ("w*"); here they name the Transformer's (clip_by_layer raises on
# a rule that matches nothing).
RULES = {"blocks/*/attn": 0.5, "blocks/*/up": 0.5}


@dataclasses.dataclass(frozen=True)
class Model:
  """The Transformer's size and the batch it trains on."""

  dim: int = 384
  layers: int = 6
  heads: int = 6
  vocab: int = 128
  batch: int = 32
  seq: int = 256


QUICK = Model(dim=32, layers=1, heads=2, vocab=32, batch=2, seq=16)


def build(model: Model) -> tuple[Any, dict[str, Any], jax.Array, jax.Array]:
  """``(graphdef, params, inputs, targets)``: the model and one batch."""
  net = CharTransformer(
    model.vocab,
    model.dim,
    model.heads,
    model.layers,
    max_len=model.seq,
    rngs=nnx.Rngs(0),
  )
  graphdef, state = nnx.split(net, nnx.Param)
  params = nnx.to_pure_dict(state)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, model.vocab, (model.batch, model.seq + 1))
  tokens = jnp.asarray(tokens, jnp.int32)
  return graphdef, params, tokens[:, :-1], tokens[:, 1:]


def make_step(graphdef: Any, tx: optax.GradientTransformation, extra: dict):
  """The training step: loss, gradients and the update in one function.

  ``extra`` holds the variant's extra ``update`` arguments; a ``loss`` in it
  is replaced by the step's loss.
  """

  def loss_fn(params, inputs, targets):
    logits, _ = nnx.merge(graphdef, params)(inputs)
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, targets
    ).mean()

  def step(params, opt_state, inputs, targets):
    loss, grads = jax.value_and_grad(loss_fn)(params, inputs, targets)
    args = {k: loss if k == "loss" else v for k, v in extra.items()}
    updates, opt_state = tx.update(grads, opt_state, params, **args)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def variants(
  base=None, wanted: str = "all", first: tuple[str, ...] = ()
) -> list[overhead.Variant]:
  """overhead.py's variants and their floors.

  Args:
    base: the package before a change (``_baseline.load``), or None.
    wanted: ``"all"`` or comma-separated names (see ``overhead.select``).
    first: names to put first, in this order (the first round times them
      first, so that a run cut short by ``--budget`` still has them).
  """
  cases = {c.name: c for c in overhead._load_registry()}
  out = []
  for v in overhead.all_variants(base):
    case = cases.get(v.name.removeprefix(_baseline.PREFIX))
    if case is not None and "thresholds" in case.kwargs:
      module = base if v.name.startswith(_baseline.PREFIX) else optaxclip
      kwargs = {**case.kwargs, "thresholds": RULES}
      case = dataclasses.replace(case, kwargs=kwargs)
      v = dataclasses.replace(v, build=overhead._from_case(case, module).build)
    out.append(v)
  rank = {n: i for i, n in enumerate(first)}
  out = sorted(out, key=lambda v: rank.get(v.name, len(rank)))
  return overhead.select(out, wanted)


@dataclasses.dataclass
class Samples:
  """Raw measurements of one variant: per round, compile and step times."""

  compile_s: dict[int, float] = dataclasses.field(default_factory=dict)
  compile_cpu_s: dict[int, float] = dataclasses.field(default_factory=dict)
  step_s: dict[int, list[float]] = dataclasses.field(default_factory=dict)
  error: str | None = None
  # Instructions in the optimized program (overhead.program_ops).
  program_ops: int | None = None


def _error(e: Exception) -> str:
  return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


def run(
  model: Model,
  chosen: list[overhead.Variant],
  rounds: int,
  reps: int,
  log: Callable[[str], None],
  deadline: float | None = None,
  min_reps: int = 3,
  warm_up: bool = True,
) -> dict[str, Samples]:
  """Compiles and times every variant, ``rounds`` times, interleaved.

  Past ``deadline`` (``time.monotonic()``) no compile, no round and no
  repetition beyond the first ``min_reps`` starts (so every compiled
  variant is timed); what was measured is kept. ``warm_up``: compile and
  run the first variant once, untimed, before the first round.
  """
  graphdef, params, inputs, targets = build(model)
  samples = {v.name: Samples() for v in chosen}
  # One untimed compile and step first: the process's first compile pays
  # one-time set-up costs that would fall on whichever variant came first.
  if warm_up:
    tx = chosen[0].build()
    warm = jax.jit(make_step(graphdef, tx, {}))
    jax.block_until_ready(warm(params, tx.init(params), inputs, targets))
    del warm

  def late() -> bool:
    return deadline is not None and time.monotonic() > deadline

  for r in range(rounds):
    k = r % len(chosen)
    order = chosen[k:] + chosen[:k]
    live = []  # (variant, compiled step, [params, state])
    for v in order:
      s = samples[v.name]
      if s.error:
        continue
      if late():
        break
      try:
        tx = v.build()
        extra = {
          n: jnp.asarray(x, jnp.float32) if isinstance(x, float) else x
          for n, x in v.extra_args.items()
        }
        p = jax.tree.map(jnp.copy, params)
        # Copies: an init may share one array between fields (donated twice).
        state = jax.tree.map(jnp.copy, tx.init(p))
        jax.clear_caches()
        t0, c0 = time.perf_counter(), time.process_time()
        compiled = (
          jax.jit(make_step(graphdef, tx, extra), donate_argnums=(0, 1))
          .lower(p, state, inputs, targets)
          .compile()
        )
        s.compile_s[r] = time.perf_counter() - t0
        s.compile_cpu_s[r] = time.process_time() - c0
        if s.program_ops is None:
          s.program_ops = overhead.program_ops(compiled.as_text())
        p, state, loss = compiled(p, state, inputs, targets)  # warm-up
        jax.block_until_ready((p, state, loss))
        live.append((v, compiled, [p, state]))
        log(f"  round {r + 1}/{rounds} {v.name}: compile {s.compile_s[r]:.2f}s")
      except Exception as e:
        s.error = _error(e)
        log(f"  round {r + 1}/{rounds} {v.name}: {s.error}")
    for i in range(reps):
      if i >= min_reps and late():
        break
      j = i % max(1, len(live))
      for v, compiled, carry in live[j:] + live[:j]:
        t0 = time.perf_counter()
        p, state, loss = compiled(carry[0], carry[1], inputs, targets)
        jax.block_until_ready((p, state, loss))
        samples[v.name].step_s.setdefault(r, []).append(
          time.perf_counter() - t0
        )
        carry[:] = [p, state]
    for v, _, _ in live:
      steps = samples[v.name].step_s.get(r)
      if steps:
        log(
          f"  round {r + 1}/{rounds} {v.name}: step "
          f"{1e3 * float(np.quantile(steps, 0.2)):.2f}ms (q0.2 of {len(steps)})"
        )
    del live
    gc.collect()
    if late():
      log(f"  time budget spent in round {r + 1}/{rounds}")
      break
  for s in samples.values():
    if not s.compile_s and not s.error:
      s.error = "not run: time budget spent"
  return samples


def _q(xs: list[float], q: float) -> float:
  return float(np.quantile(xs, q)) if xs else math.nan


def summarize(
  chosen: list[overhead.Variant], samples: dict[str, Samples], q: float
) -> list[dict[str, Any]]:
  """One row per variant: times and ratios to Adam alone (see the module)."""

  def step_of(s: Samples) -> float:
    return _q([x for xs in s.step_s.values() for x in xs], q)

  def per_round(s: Samples) -> dict[int, float]:
    return {r: _q(xs, q) for r, xs in s.step_s.items() if xs}

  def compile_of(s: Samples, cpu: bool = False) -> float:
    xs = s.compile_cpu_s if cpu else s.compile_s
    return min(xs.values()) if xs else math.nan

  base = samples[BASELINE]
  rows = []
  for v in chosen:
    s = samples[v.name]
    row = {
      "variant": v.name,
      "stage": v.stage,
      "step_ms": 1e3 * step_of(s),
      "step_x": step_of(s) / step_of(base),
      "step_x_range": overhead._span(
        overhead.round_ratios(per_round(s), per_round(base))
      ),
      "compile_s": compile_of(s),
      "compile_x": compile_of(s) / compile_of(base),
      "compile_x_range": overhead._span(
        overhead.round_ratios(s.compile_s, base.compile_s)
      ),
      "compile_cpu_x": compile_of(s, True) / compile_of(base, True),
      "compile_cpu_x_range": overhead._span(
        overhead.round_ratios(s.compile_cpu_s, base.compile_cpu_s)
      ),
      "floor": v.floor,
      "step_x_floor": None,
      "compile_cpu_x_floor": None,
      "program_x": (
        s.program_ops / base.program_ops
        if s.program_ops and base.program_ops
        else None
      ),
      "error": s.error,
    }
    if v.floor and samples.get(v.floor) and samples[v.floor].step_s:
      floor = samples[v.floor]
      row["step_x_floor"] = step_of(s) / step_of(floor)
      row["compile_cpu_x_floor"] = compile_of(s, True) / compile_of(floor, True)
    now = samples.get(v.name.removeprefix(_baseline.PREFIX))
    if v.name.startswith(_baseline.PREFIX) and now and now.step_s and s.step_s:
      row["step_x_current"] = step_of(now) / step_of(s)
      row["compile_x_current"] = compile_of(now) / compile_of(s)
      row["compile_cpu_x_current"] = compile_of(now, True) / compile_of(s, True)
      row["step_x_current_range"] = overhead._span(
        overhead.round_ratios(per_round(now), per_round(s))
      )
      row["compile_x_current_range"] = overhead._span(
        overhead.round_ratios(now.compile_s, s.compile_s)
      )
    rows.append(row)
  return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
  """The report as Markdown."""
  f, rng = overhead._fmt, overhead.fmt_range
  m = meta["model"]
  lines = [
    "# optaxclip full training step benchmark",
    "",
    f"`{meta['command']}`",
    "",
    f"{meta['date']}; jax {meta['jax']}, optax {meta['optax']}, flax "
    f"{meta['flax']}; {meta['backend']} ({meta['device']}, {meta['cpus']} "
    f"CPUs).",
    "",
    f"Model: causal Transformer (`examples/char_lm` `CharTransformer`), "
    f"width {m['dim']}, {m['layers']} blocks, {m['heads']} heads, vocab "
    f"{m['vocab']}: {meta['params']:,} float32 parameters in "
    f"{meta['leaves']} leaves; batch {m['batch']} x {m['seq']} tokens. "
    f"Step = `value_and_grad` + update in one `jax.jit`, donated. "
    f"{meta['rounds']} rounds; per round every variant compiled afresh, then "
    f"{meta['reps']} steps of each, interleaved.",
    "",
    "Compile: `jax.jit(step).lower(...).compile()` after "
    "`jax.clear_caches()`, "
    f"lowest over rounds. Step: quantile {meta['quantile']} of all steps. "
    "`x Adam` divides by Adam alone's figure from the same rounds; `range` "
    "is the lowest and highest of the per-round ratios (each over Adam in "
    "the same round): the noise band. `x floor`: the step over that of "
    "the strategy's floor, Adam plus the extra passes over the gradients "
    "that its algorithm cannot avoid (benchmarks/README.md, floors). "
    "`cpu x`: the compile ratio in process CPU time (lowest over rounds), "
    "less sensitive to other load on the machine; `cpu x floor`: the same "
    "over the floor's compile. `HLO x`: instructions in the optimized "
    "program over Adam's (no timing noise).",
  ]
  if meta.get("baseline"):
    lines += [
      "",
      f"`base:<name>`: the same strategy from the package at "
      f"`{meta['baseline']}`, interleaved with the current code's.",
    ]
  lines += [
    "",
    "| variant | stage | step ms | x Adam | range | x floor | compile s "
    "| x Adam | range | cpu x | range | cpu x floor | HLO x |",
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ]
  for r in rows:
    if r["error"] and not math.isfinite(r["compile_s"]):
      lines.append(
        f"| {r['variant']} | {r['stage']} | error: {r['error']} "
        "| | | | | | | | | | |"
      )
      continue
    lines.append(
      f"| {r['variant']} | {r['stage']} | {f(r['step_ms'], '.1f')} "
      f"| {f(r['step_x'], '.3f')} | {rng(r['step_x_range'], '.3f')} "
      f"| {f(r['step_x_floor'], '.3f')} | {f(r['compile_s'], '.2f')} "
      f"| {f(r['compile_x'], '.2f')} | {rng(r['compile_x_range'])} "
      f"| {f(r['compile_cpu_x'], '.2f')} | {rng(r['compile_cpu_x_range'])} "
      f"| {f(r['compile_cpu_x_floor'], '.2f')} "
      f"| {f(r['program_x'], '.3f')} |"
    )
  lines += overhead.base_table(rows)
  return "\n".join(lines) + "\n"


def _positive(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"{value} is not positive")
  return value


def _fraction(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
  if not 0 <= value <= 1:
    raise argparse.ArgumentTypeError(f"{value} is not in [0, 1]")
  return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  d = Model()
  ap = _cli.Parser(description=__doc__.split("\n\n")[0])
  for name, help_ in [
    ("dim", "model width"),
    ("layers", "Transformer blocks"),
    ("heads", "attention heads (must divide --dim)"),
    ("vocab", "vocabulary size"),
    ("batch", "sequences per batch"),
    ("seq", "tokens per sequence"),
  ]:
    ap.add_argument(
      f"--{name}", type=_positive, default=getattr(d, name), help=help_
    )
  ap.add_argument(
    "--variants",
    default="all",
    help="comma-separated variant names (Adam alone is always added); "
    "'list' prints them",
  )
  ap.add_argument(
    "--rounds", type=_positive, default=None, help="rounds (default 3)"
  )
  ap.add_argument(
    "--reps",
    type=_positive,
    default=None,
    help="timed steps per variant and round (default 10)",
  )
  ap.add_argument(
    "--quantile", type=_fraction, default=0.2, help="step-time quantile"
  )
  ap.add_argument(
    "--baseline",
    metavar="REF",
    nargs="?",
    const=_baseline.DEFAULT_REF,
    default=None,
    help="also time every strategy from the package at git REF (default "
    f"{_baseline.DEFAULT_REF}) as base:<name>, interleaved",
  )
  ap.add_argument(
    "--budget",
    type=float,
    default=None,
    metavar="SECONDS",
    help="start no compile or step after this many seconds",
  )
  ap.add_argument(
    "--quick",
    action="store_true",
    help="smoke test: a tiny model (width 32, 1 block, batch 2 x 16), "
    "by default 2 rounds of 3 steps, no warm-up compile (the first "
    "variant's compile pays the process's one-time costs)",
  )
  ap.add_argument(
    "--out",
    default=str(HERE / "results" / "train_step"),
    help="output path without suffix: writes OUT.md and OUT.json",
  )
  args = ap.parse_args(argv)
  if args.quick:
    for name in ("dim", "layers", "heads", "vocab", "batch", "seq"):
      setattr(args, name, getattr(QUICK, name))
  default = (2, 3) if args.quick else (3, 10)
  args.rounds = args.rounds or default[0]
  args.reps = args.reps or default[1]
  if args.dim % args.heads:
    ap.error(f"--heads {args.heads} does not divide --dim {args.dim}")
  if args.budget is not None and args.budget <= 0:
    ap.error("--budget must be positive")
  return args


def main(
  argv: list[str] | None = None, first: tuple[str, ...] = ()
) -> dict[str, Any]:
  """Runs the benchmark; returns ``{"meta", "rows", "samples"}``.

  ``first``: variant names timed first (see :func:`variants`).
  """
  args = parse_args(argv)

  def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

  if args.variants == "list":
    for v in variants():
      print(f"{v.name:32s} {v.stage}")
    return {}
  base = commit = None
  if args.baseline:
    base, commit = _baseline.load(args.baseline)
  chosen = variants(base, args.variants, first)
  model = Model(
    args.dim, args.layers, args.heads, args.vocab, args.batch, args.seq
  )
  deadline = None if args.budget is None else time.monotonic() + args.budget
  _, params, _, _ = build(model)
  leaves = jax.tree.leaves(params)
  log(
    f"{sum(x.size for x in leaves):,} parameters in {len(leaves)} leaves, "
    f"{len(chosen)} variants"
  )
  samples = run(
    model, chosen, args.rounds, args.reps, log, deadline, warm_up=not args.quick
  )
  rows = summarize(chosen, samples, args.quantile)
  meta = {
    "command": "python benchmarks/train_step.py "
    + " ".join(sys.argv[1:] if argv is None else argv),
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    "jax": jax.__version__,
    "optax": optax.__version__,
    "flax": getattr(sys.modules.get("flax"), "__version__", "?"),
    "backend": jax.default_backend(),
    "device": jax.devices()[0].device_kind,
    "cpus": os.cpu_count(),
    "machine": platform.machine(),
    "model": dataclasses.asdict(model),
    "params": int(sum(x.size for x in leaves)),
    "leaves": len(leaves),
    "rounds": args.rounds,
    "reps": args.reps,
    "quantile": args.quantile,
    "baseline": f"{args.baseline} ({commit[:12]})" if commit else None,
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  md, js = out.parent / f"{out.name}.md", out.parent / f"{out.name}.json"
  result = {
    "meta": meta,
    "rows": rows,
    "samples": {k: dataclasses.asdict(s) for k, s in samples.items()},
  }
  md.write_text(markdown(rows, meta))
  js.write_text(json.dumps(result, indent=1))
  log(f"wrote {md} and {js}")
  return result


if __name__ == "__main__":
  main()
