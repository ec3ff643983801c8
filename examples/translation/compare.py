# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The clipping comparison and the data curves of the translation example.

``clip`` (the default) trains the translator with no clipping, with
``clip_by_global_norm`` and with an adaptive clipper (``zclip`` without its
fixed cap, so that it clips only spikes against its own running
statistics), each at the default learning rate and at a high one, on the
same data, tokenizers and seed, and prints test BLEU, the largest gradient
norm, the clip rate and the loss spikes of each run.

``curves`` trains on a fraction of the training pairs (same test set) for
each of ``--fractions`` and evaluates every ``--eval-every`` steps: test
BLEU against steps (the learning curve) and against the number of training
pairs (the data-size curve).

Both write ``results.json``, ``table.md`` and a plot (``comparison.png`` or
``curves.png``) in ``--workdir``.

Usage::

  python -m examples.translation.compare                 # 6 runs
  python -m examples.translation.compare --lrs 3e-3,3e-2 --steps 1000
  python -m examples.translation.compare curves          # 3 runs
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from examples.common import cli
from examples.common import data
from examples.common import metrics
from examples.common import plots
from examples.common import trainer
from examples.common.data import REPO_ROOT
from examples.common.trainer import fmt_number as _num
from examples.translation import train as tr
from examples.translation.input_pipeline import load_pairs

CLIPS = "none;clip_by_global_norm:1.0;zclip:max_grad_norm=None"


def make_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m examples.translation.compare",
    description=__doc__.split("\n\n")[0],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument(
    "mode",
    nargs="?",
    choices=("clip", "curves"),
    default="clip",
    help="clip: the clipping comparison; curves: BLEU against steps and "
    "against the number of training pairs",
  )
  p.add_argument(
    "--clips",
    default=CLIPS,
    help="`;`-separated --clip specs of the runs (clip mode; see python -m "
    "examples.translation --list-strategies)",
  )
  p.add_argument(
    "--lrs",
    default="3e-3,3e-2",
    help="comma-separated Adam peak learning rates (clip mode)",
  )
  p.add_argument(
    "--fractions",
    default="0.25,0.5,1",
    help="comma-separated fractions of the training pairs (curves mode)",
  )
  p.add_argument(
    "--steps", type=cli.positive_int, default=1500, help="steps of every run"
  )
  p.add_argument(
    "--eval-every",
    type=cli.positive_int,
    default=500,
    help="evaluate every this many steps (curves mode)",
  )
  p.add_argument(
    "--train-flags",
    default="",
    help="more flags for every run, e.g. '--hidden 128 --beam 1'",
  )
  p.add_argument(
    "--data-dir", default=None, help="dataset cache (default: data/)"
  )
  p.add_argument(
    "--workdir",
    default=None,
    help="where the runs, the table and the plots go (default: "
    "runs/translation-compare or runs/translation-curves)",
  )
  p.add_argument("--no-progress", action="store_true", help="no progress bars")
  return p


def _run_args(args, workdir: Path, **flags) -> argparse.Namespace:
  argv = [
    "--steps", str(args.steps),
    "--ckpt-every", str(args.steps),
    "--workdir", str(workdir),
    "--samples", "2",
    "--no-plots",
  ]  # fmt: skip
  for k, v in flags.items():
    argv += ["--" + k.replace("_", "-"), str(v)]
  argv += shlex.split(args.train_flags)
  if args.data_dir:
    argv += ["--data-dir", args.data_dir]
  if args.no_progress:
    argv.append("--no-progress")
  p = tr.make_parser()
  run = cli.parse(p, argv, "translation")
  tr.check_args(p, run)
  return run


def clip_table(rows: list[tuple[str, float, trainer.RunResult]]) -> str:
  """The clipping comparison as a Markdown table."""

  def cells(r: trainer.RunResult) -> list[str]:
    return [
      _num(r.eval.get(k, math.nan), ".2f")
      for k in ("test_bleu", "test_bleu_greedy")
    ]

  metrics = ["test BLEU", "greedy BLEU"]
  return "\n".join(trainer.comparison_table(metrics, rows, cells))


def curve_table(rows: list[tuple[float, int, list[dict]]]) -> str:
  """BLEU at every evaluation (columns) of every data fraction (rows)."""
  steps = sorted({e["step"] for _, _, evals in rows for e in evals})
  head = "| training pairs | " + " | ".join(f"step {s}" for s in steps) + " |"
  lines = [head, "|" + "---|" * (len(steps) + 1)]
  for frac, n, evals in rows:
    by_step = {e["step"]: e["test_bleu"] for e in evals}
    lines.append(
      f"| {n:,} ({frac:.0%}) | "
      + " | ".join(_num(by_step.get(s, math.nan), ".2f") for s in steps)
      + " |"
    )
  return "\n".join(lines)


def _curves_plot(rows, path: Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
  for _, n, evals in rows:
    a.plot(
      [e["step"] for e in evals],
      [e["test_bleu"] for e in evals],
      marker="o",
      label=f"{n:,} pairs",
    )
  a.set(xlabel="step", ylabel="test BLEU", title="learning curve")
  a.legend()
  b.plot(
    [n for _, n, _ in rows],
    [evals[-1]["test_bleu"] for _, _, evals in rows],
    marker="o",
  )
  b.set(xlabel="training pairs", ylabel="final test BLEU", title="data size")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: Sequence[str] | None = None):
  p = make_parser()
  args = p.parse_args(argv)
  name = "translation-" + ("compare" if args.mode == "clip" else "curves")
  out = Path(args.workdir or REPO_ROOT / "runs" / name)
  clips = cli.clip_list(p, "--clips", args.clips)
  lrs = cli.number_list(p, "--lrs", args.lrs)
  fractions = cli.number_list(p, "--fractions", args.fractions, hi=1.0)
  _run_args(args, out / "check")  # bad --train-flags: a usage error now
  with cli.usage_errors(p):
    pairs, source = load_pairs(data_dir=args.data_dir)
  rows: list = []
  t0 = time.perf_counter()
  if args.mode == "clip":
    for lr in lrs:
      for clip in clips:
        name = cli.comparison_name(clip, lr)
        run = _run_args(args, out / name, clip=clip, lr=lr)
        run.eval_every = args.steps
        print(f"\n== {name}: Adam lr {lr:g}, --clip {clip}", flush=True)
        result = trainer.train(tr.build_task(run, pairs, source), run)
        trainer.summary(result, "test_bleu", lower_is_better=False)
        rows.append((clip, lr, result))
    text = clip_table(rows)
    plots.compare_runs(
      {f"{c} lr {lr:g}": r.history for c, lr, r in rows},
      str(out / "comparison.png"),
      keys=("loss", "grad_norm"),
      window=10,
    )
    runs = [{"clip": c, "lr": lr, **r.to_json()} for c, lr, r in rows]
  else:
    for frac in fractions:
      name = f"fraction{frac:g}"
      run = _run_args(
        args, out / name, train_fraction=frac, eval_every=args.eval_every
      )
      print(f"\n== {name}: {frac:.0%} of the training pairs", flush=True)
      task = tr.build_task(run, pairs, source)
      result = trainer.train(task, run)
      trainer.summary(result, "test_bleu", lower_is_better=False)
      evals = [
        r
        for r in metrics.read_jsonl(out / name / "metrics.jsonl")
        if r.get("split") == "eval"
      ]
      rows.append((frac, task.meta["splits"][0], evals))
    text = curve_table(rows)
    _curves_plot(rows, out / "curves.png")
    runs = [{"fraction": f, "train_pairs": n, "evals": e} for f, n, e in rows]
  total = time.perf_counter() - t0
  print("\n" + text + f"\n\nAll runs: {total:.0f}s.")
  (out / "table.md").write_text(text + "\n")
  (out / "results.json").write_text(
    json.dumps(
      {"settings": vars(args), "total_time_s": round(total, 1), "runs": runs},
      indent=1,
    )
  )
  print(f"Table and plot in {out}")
  return rows


if __name__ == "__main__":
  try:
    main()
  except data.DataUnavailable as e:
    raise SystemExit(str(e)) from None
