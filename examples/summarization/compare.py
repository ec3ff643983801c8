# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The clipping comparison for summarization.

Trains the summarizer with no clipping, with ``clip_by_global_norm`` and
with an adaptive clipper (``zclip`` without its fixed cap, so that it clips
only spikes against its own running statistics), each at the default
learning rate and at a high one, on the same data, tokenizer and seed, and
prints ROUGE-1/2/L of each run next to the lead baseline, with the largest
gradient norm, the clip rate and the loss spikes. Writes
``compare_results.json`` and ``comparison.png`` (loss and gradient norm of
every run) in ``--workdir``.

Usage::

  python -m examples.summarization.compare                  # 6 short runs
  python -m examples.summarization.compare --steps 1200 --train-flags ''
  python -m examples.summarization.compare --lrs 3e-3,1e-1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

from examples.common import cli
from examples.common import data
from examples.common import plots
from examples.common import trainer
from examples.common.data import REPO_ROOT
from examples.common.trainer import fmt_number as _num
from examples.summarization import input_pipeline as ip
from examples.summarization import train as summ

CLIPS = "none;clip_by_global_norm:1.0;zclip:max_grad_norm=None"


def make_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m examples.summarization.compare",
    description=__doc__.split("\n\n")[0],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument(
    "--clips",
    default=CLIPS,
    help="`;`-separated --clip specs of the runs (see python -m "
    "examples.summarization --list-strategies)",
  )
  p.add_argument(
    "--lrs", default="3e-3,3e-2", help="comma-separated Adam learning rates"
  )
  p.add_argument(
    "--steps", type=cli.positive_int, default=300, help="steps of every run"
  )
  p.add_argument(
    "--train-flags",
    default="--batch-size 32",
    help="more flags for every run, e.g. '--hidden 64 --batch-size 32'",
  )
  p.add_argument(
    "--data-file",
    type=cli.text_file,
    default=None,
    help="a Translation-en file you already have (default: fetch it)",
  )
  p.add_argument(
    "--packages-file",
    type=cli.text_file,
    default=None,
    help="the Packages list of the same release (source packages)",
  )
  p.add_argument(
    "--data-dir", default=None, help="dataset cache (default: data/)"
  )
  p.add_argument(
    "--workdir",
    default=str(REPO_ROOT / "runs" / "summ-compare"),
    help="where the runs, the table and the plots go",
  )
  p.add_argument("--no-progress", action="store_true", help="no progress bars")
  return p


def _run_args(args, clip: str, lr: float, workdir: Path) -> argparse.Namespace:
  argv = [
    "--clip", clip,
    "--lr", repr(lr),
    "--steps", str(args.steps),
    "--eval-every", str(args.steps),
    "--ckpt-every", str(args.steps),
    "--workdir", str(workdir),
    "--samples", "2",
    "--no-plots",
    *args.train_flags.split(),
  ]  # fmt: skip
  for flag in ("data_file", "packages_file", "data_dir"):
    if getattr(args, flag):
      argv += ["--" + flag.replace("_", "-"), getattr(args, flag)]
  if args.no_progress:
    argv.append("--no-progress")
  return summ.make_parser().parse_args(argv)


def table(rows: list[tuple[str, float, trainer.RunResult]]) -> str:
  """The comparison as a Markdown table, lead baseline last."""

  def cells(r: trainer.RunResult) -> list[str]:
    return [
      _num(r.eval.get(f"test_{k}", math.nan), ".2f") for k in summ.ROUGE_TYPES
    ]

  metrics = ["ROUGE-1", "ROUGE-2", "ROUGE-L"]
  lines = trainer.comparison_table(metrics, rows, cells)
  if rows:
    ev = rows[0][2].eval
    lines.append(
      "| lead baseline | - | "
      + " | ".join(f"{ev[f'lead_{k}']:.2f}" for k in summ.ROUGE_TYPES)
      + " | - | - | - | - | - |"
    )
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None):
  p = make_parser()
  args = p.parse_args(argv)
  clips = cli.clip_list(p, "--clips", args.clips)
  lrs = cli.number_list(p, "--lrs", args.lrs)
  first = _run_args(args, clips[0], lrs[0], Path(args.workdir))
  summ.check_args(p, first)
  try:
    corpus = ip.load_corpus(args.data_file, args.packages_file, args.data_dir)
  except data.DataUnavailable as e:
    raise SystemExit(str(e)) from None
  except ValueError as e:
    p.error(str(e))
  out = Path(args.workdir)
  rows = []
  t0 = time.perf_counter()
  for lr in lrs:
    for clip in clips:
      name = cli.comparison_name(clip, lr)
      run_args = _run_args(args, clip, lr, out / name)
      print(f"\n== {name}: Adam lr {lr:g}, --clip {clip}")
      result = trainer.train(summ.build_task(run_args, corpus), run_args)
      trainer.summary(result, "test_rougeL", lower_is_better=False)
      rows.append((clip, lr, result))
  total = time.perf_counter() - t0
  text = table(rows)
  print("\n" + text + f"\n\nAll runs: {total:.0f}s.")
  plots.compare_runs(
    {f"{c} lr {lr:g}": r.history for c, lr, r in rows},
    str(out / "comparison.png"),
    keys=("loss", "grad_norm"),
    window=10,
  )
  (out / "compare_results.json").write_text(
    json.dumps(
      {
        "settings": vars(args),
        "total_time_s": round(total, 1),
        "runs": [{"clip": c, "lr": lr, **r.to_json()} for c, lr, r in rows],
      },
      indent=1,
    )
  )
  print(f"Plot: {out / 'comparison.png'}")
  return rows


if __name__ == "__main__":
  main()
