# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The one-command accelerator check: ``make bench-accelerator``.

Run on a lent GPU machine (no network; its ``python3`` has jax with CUDA,
optax, flax, chex, pytest and hypothesis; the repository runs with
``PYTHONPATH=.`` and nothing is installed)::

  PYTHONPATH=. python3 benchmarks/accelerator.py --out OUT

It sets ``JAX_PLATFORMS=cuda`` before jax is imported and stops with an
error unless ``jax.default_backend()`` is ``"gpu"``. ``--smoke`` rehearses
every stage on the CPU, at tiny sizes, in about a minute.

Stages, each with its share of ``--budget`` (seconds; 270 by default, so
that the whole check fits in 5 minutes; 60 with ``--smoke``); past its
share a stage starts nothing new and reports what it measured (a compile
under way finishes first, hence the margin below 300 s):

a. ``conformance``: ``tests/test_conformance.py`` in a pytest subprocess
   with ``JAX_PLATFORMS=cuda`` set explicitly (the root ``conftest.py``
   would otherwise choose the CPU), output in ``conformance.txt``;
b. ``overhead``: ``benchmarks/overhead.py``'s step and compile ratios to
   Adam alone of every strategy at 20M float32 parameters in 10 and 300
   leaves, and in 3,000 leaves for ``clip_by_global_norm``,
   ``clip_by_tensor_norm`` and ``adagc``, with their floors; at 10 and 300
   leaves also ``floor:read-once`` (Adam plus one read of the gradients, no
   conditional): the GPU floor of ``clip_by_global_norm``;
c. ``train_step``: ``benchmarks/train_step.py``'s full training step (the
   10.8M-parameter Transformer) for every strategy + Adam.

Files written to ``--out`` (7 at most), each rewritten as soon as its stage
(or, for ``overhead``, each leaf count) ends, so that a run cut short keeps
what came before: ``accelerator.md`` and ``accelerator.json`` (the versions,
the device, each stage's status and the headline figures),
``conformance.txt``, ``overhead.md``/``.json``, ``train_step.md``/``.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import re
import signal
import subprocess
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
  if _p not in sys.path:
    sys.path.insert(0, _p)

import _cli  # noqa: E402

STAGES = ("conformance", "overhead", "train_step")
# Each stage's share of the budget.
SHARES = {"conformance": 0.27, "overhead": 0.48, "train_step": 0.25}
# The 3,000-leaf configuration times only these (with Adam and floors).
MANY_LEAVES = ("optaxclip.clip_by_global_norm", "clip_by_tensor_norm", "adagc")
# Timed first, so that a stage cut short still has them.
FIRST = (
  "adam",
  "optaxclip.clip_by_global_norm",
  "floor:optaxclip.clip_by_global_norm",
  "floor:read-once",
  "zclip",
  "adagc",
  "clip_by_tensor_norm",
  "stable_spam_clip",
  "autoclip",
  "clip_by_layer_rules",
)


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What each stage measures."""

  size: int = 20_000_000
  leaves: tuple[int, ...] = (10, 300)
  many_leaves: int = 3000
  repeats: int = 2
  steps: int = 20
  train_args: tuple[str, ...] = ("--rounds", "2", "--reps", "10")
  pytest_args: tuple[str, ...] = ()


SMOKE = Sizes(
  size=4096,
  leaves=(4, 12),
  many_leaves=24,
  repeats=1,
  steps=2,
  train_args=("--quick", "--rounds", "1", "--reps", "2"),
  # Two checks of one strategy: the stage, not the suite, is rehearsed.
  pytest_args=("-k", "clip_by_value and (jit_traces or zero_gradients)"),
)


def parse_args(argv: list[str] | None = None):
  ap = _cli.Parser(description=__doc__.split("\n\n")[0])
  ap.add_argument(
    "--out",
    default=str(HERE / "results" / "accelerator"),
    help="directory for the results (created; at most 7 files)",
  )
  ap.add_argument(
    "--smoke",
    action="store_true",
    help="rehearse every stage on the CPU at tiny sizes (about a minute)",
  )
  ap.add_argument(
    "--stages",
    default=",".join(STAGES),
    help=f"comma-separated stages to run, of {', '.join(STAGES)}",
  )
  ap.add_argument(
    "--budget",
    type=float,
    default=None,
    metavar="SECONDS",
    help="total time (default 270, with --smoke 60); each stage gets its "
    "share of what is left and then starts nothing new",
  )
  ap.add_argument(
    "--variants",
    default="all",
    help="restrict the overhead and train_step stages to these variants "
    "(comma-separated names; Adam and the floors are always added)",
  )
  args = ap.parse_args(argv)
  args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
  unknown = sorted(set(args.stages) - set(STAGES))
  if unknown or not args.stages:
    ap.error(f"--stages: unknown {unknown or 'empty'}; known: {STAGES}")
  if args.budget is None:
    args.budget = 60.0 if args.smoke else 270.0
  if not args.budget > 0:
    ap.error("--budget must be positive")
  return args


class Report:
  """``accelerator.md`` and ``.json``, rewritten after every stage."""

  def __init__(self, out: pathlib.Path, meta: dict[str, Any]):
    self.out = out
    self.data: dict[str, Any] = {"meta": meta, "stages": {}}

  def stage(self, name: str, **fields: Any) -> None:
    self.data["stages"].setdefault(name, {}).update(fields)
    self.write()

  def write(self) -> None:
    (self.out / "accelerator.json").write_text(json.dumps(self.data, indent=1))
    (self.out / "accelerator.md").write_text(self.markdown())

  def markdown(self) -> str:
    meta = self.data["meta"]
    lines = [
      "# optaxclip accelerator check",
      "",
      f"`{meta['command']}`",
      "",
      f"{meta['date']}; {meta['device']} ({meta['backend']}); jax "
      f"{meta['jax']}, jaxlib {meta['jaxlib']}, optax {meta['optax']}, "
      f"flax {meta['flax']}, numpy {meta['numpy']}, python "
      f"{meta['python']}; budget {meta['budget_s']:.0f} s"
      + (" (smoke: CPU rehearsal at tiny sizes)" if meta["smoke"] else "")
      + ".",
    ]
    for name in STAGES:
      st = self.data["stages"].get(name)
      if st is None:
        continue
      lines += ["", f"## {name}", "", f"{st.get('status', '')}"]
      lines += st.get("lines", [])
    if "seconds" in self.data:
      lines += ["", f"Total: {self.data['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def _metadata(args, jax) -> dict[str, Any]:
  import flax
  import numpy as np
  import optax

  info = ""
  with contextlib.suppress(Exception):
    info = jax.print_environment_info(return_string=True)
  device = jax.devices()[0]
  return {
    "command": "python3 benchmarks/accelerator.py " + " ".join(args.argv),
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    "smoke": args.smoke,
    "budget_s": args.budget,
    "backend": jax.default_backend(),
    "device": getattr(device, "device_kind", str(device)),
    "devices": len(jax.devices()),
    "jax": jax.__version__,
    "jaxlib": getattr(jax.lib, "__version__", jax.__version__),
    "optax": optax.__version__,
    "flax": flax.__version__,
    "numpy": np.__version__,
    "python": platform.python_version(),
    "environment": info,
  }


def stage_conformance(args, sizes: Sizes, report: Report, budget: float):
  """Runs the conformance suite in a subprocess on the chosen platform."""
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu" if args.smoke else "cuda"
  # The parent holds part of the GPU; the child allocates as it goes.
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  env["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
  )
  cmd = [
    sys.executable,
    "-m",
    "pytest",
    "tests/test_conformance.py",
    "-v",
    "--tb=line",
    "-p",
    "no:cacheprovider",
    "-p",
    "no:xdist",
    *sizes.pytest_args,
  ]
  path = args.out / "conformance.txt"
  t0 = time.monotonic()
  with path.open("w") as f:
    f.write(f"$ JAX_PLATFORMS={env['JAX_PLATFORMS']} {' '.join(cmd)}\n")
    f.flush()
    proc = subprocess.Popen(
      cmd,
      cwd=ROOT,
      env=env,
      stdout=f,
      stderr=subprocess.STDOUT,
      start_new_session=True,
    )
    try:
      rc = proc.wait(timeout=budget)
      cut = False
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      rc, cut = proc.wait(), True
  text = path.read_text()
  counts = {
    k: len(re.findall(rf" {k.upper()}( |$)", text, re.M))
    for k in ("passed", "failed", "skipped", "error")
  }
  final = [ln for ln in text.splitlines() if re.match(r"=+ .* in [\d.]+s", ln)]
  failed = re.findall(r"^(tests/\S+) FAILED", text, re.M)
  status = (
    f"cut after {budget:.0f} s (the budget); so far "
    if cut
    else f"pytest exit code {rc}; "
  ) + ", ".join(f"{v} {k}" for k, v in counts.items())
  lines = ["", f"Summary: `{final[-1].strip('= ')}`" if final else ""]
  if failed:
    lines += ["", "Failed:", ""] + [f"- `{t}`" for t in failed[:40]]
  report.stage(
    "conformance",
    status=status,
    seconds=round(time.monotonic() - t0, 1),
    counts=counts,
    returncode=None if cut else rc,
    cut=cut,
    failed=failed,
    lines=lines,
  )


def _ordered(variants: list, names=FIRST) -> list:
  rank = {n: i for i, n in enumerate(names)}
  return sorted(variants, key=lambda v: rank.get(v.name, len(rank)))


def stage_overhead(args, sizes: Sizes, report: Report, budget: float):
  """Step and compile ratios to Adam at 20M parameters, all leaf counts."""
  import jax
  import overhead

  every = overhead.select(overhead.all_variants(), args.variants)
  configs = [
    (n, _ordered([*every, overhead.read_once_variant()])) for n in sizes.leaves
  ]
  few = [v for v in every if v.name in MANY_LEAVES or v.stage == "baseline"]
  floors = {v.floor for v in few if v.floor}
  few += [v for v in every if v.name in floors]
  configs.append((sizes.many_leaves, _ordered(few)))
  # Shares of the stage's budget, by the expected cost of each configuration.
  weight = {sizes.leaves[0]: 0.3, sizes.leaves[-1]: 0.4}
  results, lines = [], []
  t0 = time.monotonic()

  def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

  for n, chosen in configs:
    share = weight.get(n, 0.3) * budget
    end = min(t0 + budget, time.monotonic() + share)
    shape = overhead.leaf_shape(sizes.size, n)
    log(f"overhead: {sizes.size:,} parameters in {n} leaves of {shape}")
    samples = overhead.run_config(
      sizes.size, n, chosen, sizes.repeats, sizes.steps, log, None, end
    )
    rows = overhead.summarize(chosen, samples)
    results.append(
      {
        "size": shape[0] * shape[1] * n,
        "leaves": n,
        "leaf_shape": list(shape),
        "rows": rows,
        "samples": {k: dataclasses.asdict(s) for k, s in samples.items()},
      }
    )
    meta = {
      **report.data["meta"],
      "cpus": os.cpu_count(),
      "machine": platform.machine(),
      "repeats": sizes.repeats,
      "steps": sizes.steps,
      "compiler_options": {},
    }
    (args.out / "overhead.md").write_text(overhead.markdown(results, meta))
    (args.out / "overhead.json").write_text(
      json.dumps({"meta": meta, "results": results}, indent=1)
    )
    lines += _overhead_lines(overhead, results[-1])
    report.stage(
      "overhead",
      status=f"{len(results)} of {len(configs)} leaf counts done "
      f"({time.monotonic() - t0:.0f} s); tables in overhead.md",
      headline=[_headline(overhead, r) for r in results],
      lines=lines,
    )
    del samples
    jax.clear_caches()


def _row(res: dict, name: str) -> dict | None:
  return next((r for r in res["rows"] if r["variant"] == name), None)


def _headline(overhead, res: dict) -> dict[str, Any]:
  """clip_by_global_norm's step against Adam and both floors."""
  ours = _row(res, overhead.OURS) or {}
  once = _row(res, overhead.READ_ONCE) or {}
  out = {
    "leaves": res["leaves"],
    "step_x_adam": ours.get("step_x"),
    "step_x_floor": ours.get("step_x_floor"),
    "compile_x_adam": ours.get("compile_x"),
    "read_once_x_adam": once.get("step_x"),
  }
  if ours.get("step_ms") and once.get("step_ms"):
    out["step_x_read_once"] = ours["step_ms"] / once["step_ms"]
  return out


def _f(x, spec=".2f") -> str:
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "-"
  return format(x, spec)


def _overhead_lines(overhead, res: dict) -> list[str]:
  h = _headline(overhead, res)
  return [
    "",
    f"{res['size']:,} parameters in {res['leaves']:,} leaves: "
    f"`clip_by_global_norm` + Adam step {_f(h['step_x_adam'], '.3f')}x Adam, "
    f"{_f(h.get('step_x_read_once'), '.3f')}x its GPU floor "
    f"(`floor:read-once`, {_f(h['read_once_x_adam'], '.3f')}x Adam; target: "
    f"within 1.10x), {_f(h['step_x_floor'], '.3f')}x the CPU-shaped floor; "
    f"compile {_f(h['compile_x_adam'])}x Adam.",
    "",
    "| + Adam | step x Adam | range | compile x Adam | range |",
    "|---|--:|--:|--:|--:|",
    *(
      f"| {r['variant']} | {_f(r['step_x'], '.3f')} "
      f"| {_fmt_range(r.get('step_x_range'), '.3f')} "
      f"| {_f(r['compile_x'])} | {_fmt_range(r.get('compile_x_range'))} |"
      if not r["error"]
      else f"| {r['variant']} | {r['error']} | | | |"
      for r in res["rows"]
    ),
  ]


def stage_train_step(args, sizes: Sizes, report: Report, budget: float):
  """The full training step of every strategy + Adam."""
  import train_step

  argv = [
    *sizes.train_args,
    "--budget",
    f"{budget:.1f}",
    "--variants",
    args.variants,
    "--out",
    str(args.out / "train_step"),
  ]
  t0 = time.monotonic()
  result = train_step.main(argv, first=FIRST)
  rows = result["rows"]
  ok = [
    r
    for r in rows
    if math.isfinite(r["compile_x"]) and r["stage"] not in ("floor", "baseline")
  ]
  worst = max(ok, key=lambda r: r["compile_x"], default=None)
  ours = next((r for r in rows if r["variant"] == train_step.OURS), {})
  m = result["meta"]
  lines = [
    "",
    f"{m['params']:,} parameters in {m['leaves']} leaves, batch "
    f"{m['model']['batch']} x {m['model']['seq']}: `clip_by_global_norm` + "
    f"Adam step {_f(ours.get('step_x'), '.3f')}x Adam (target: within 1.01x); "
    f"highest compile ratio {_f(worst and worst['compile_x'])}x "
    f"(`{worst and worst['variant']}`; target: at most 1.3x).",
    "",
    "| + Adam | step x Adam | range | compile x Adam | range |",
    "|---|--:|--:|--:|--:|",
    *(
      f"| {r['variant']} | {_f(r['step_x'], '.3f')} "
      f"| {_fmt_range(r.get('step_x_range'), '.3f')} | {_f(r['compile_x'])} "
      f"| {_fmt_range(r.get('compile_x_range'))} |"
      if math.isfinite(r["compile_x"])
      else f"| {r['variant']} | {r['error']} | | | |"
      for r in rows
    ),
  ]
  report.stage(
    "train_step",
    status=f"done in {time.monotonic() - t0:.0f} s; tables in train_step.md",
    lines=lines,
  )


def _fmt_range(span, spec=".2f") -> str:
  return f"{format(span[0], spec)}-{format(span[1], spec)}" if span else "-"


def main(argv: list[str] | None = None) -> dict[str, Any]:
  """Runs the stages; returns the ``accelerator.json`` contents."""
  args = parse_args(argv)
  args.argv = sys.argv[1:] if argv is None else list(argv)
  args.out = pathlib.Path(args.out)
  start = time.monotonic()
  if "jax" not in sys.modules:
    os.environ["JAX_PLATFORMS"] = "cpu" if args.smoke else "cuda"
    # Leave GPU memory for the conformance subprocess.
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")
  import jax

  try:
    backend = jax.default_backend()
  except Exception as e:  # no such platform: RuntimeError, AssertionError
    backend = f"none ({type(e).__name__}: {str(e)[:200]})".replace("\n", " ")
  if not args.smoke and backend != "gpu":
    raise SystemExit(
      f"accelerator.py: jax's backend is {backend}, not gpu "
      f"(JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS')}); use --smoke for "
      "a CPU rehearsal"
    )
  sizes = SMOKE if args.smoke else Sizes()
  args.out.mkdir(parents=True, exist_ok=True)
  report = Report(args.out, _metadata(args, jax))
  report.write()
  stages = {
    "conformance": stage_conformance,
    "overhead": stage_overhead,
    "train_step": stage_train_step,
  }
  chosen = [s for s in STAGES if s in args.stages]
  for name in chosen:
    left = args.budget - (time.monotonic() - start)
    later = sum(SHARES[s] for s in chosen[chosen.index(name) + 1 :])
    budget = max(5.0, left * SHARES[name] / (SHARES[name] + later))
    print(f"== {name} ({budget:.0f} s)", file=sys.stderr, flush=True)
    try:
      stages[name](args, sizes, report, budget)
    except Exception as e:  # a stage's failure must not lose the others
      report.stage(name, status=f"failed: {type(e).__name__}: {e}"[:500])
      print(f"{name} failed: {e!r}", file=sys.stderr, flush=True)
  report.data["seconds"] = round(time.monotonic() - start, 1)
  report.write()
  print(f"wrote {args.out}", file=sys.stderr)
  return report.data


if __name__ == "__main__":
  main()
