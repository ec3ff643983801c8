# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The clipping comparison for speech recognition: ``python -m
examples.speech.compare``.

Trains the CTC model once per (learning rate, clipping) pair on the same
synthesised corpus, and prints the test character and word error rates on
the held-out speakers, the largest gradient norm, the clip rate and the
loss spikes of each run as a Markdown table. By default: no clipping,
``clip_by_global_norm:1.0`` and the adaptive ``autoclip`` (clip at the 10th
percentile of the gradient norms seen so far; Seetharaman et al., 2020,
https://arxiv.org/abs/2007.14469), at the default learning rate (3e-3) and
at a ten times higher one, 600 steps each. Every other flag of
``python -m examples.speech`` applies to all runs.

Writes ``compare.json`` and ``grad_norm_lr<LR>.png`` (training loss and
gradient norm of the runs at one learning rate, one line per run) in
``--workdir`` (default ``runs/speech/compare``); each run has its own
directory below it.

Example::

  python -m examples.speech.compare
  python -m examples.speech.compare --lrs 3e-3,1e-2 --steps 1200 \\
      --compare-clip none --compare-clip zclip:max_grad_norm=None
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path

from examples.common import cli
from examples.common import data
from examples.common import plots
from examples.common import trainer
from examples.speech import train as speech

DEFAULT_CLIPS = ("none", "clip_by_global_norm:1.0", "autoclip")


def make_parser() -> argparse.ArgumentParser:
  p = speech.make_parser()
  p.prog = "python -m examples.speech.compare"
  p.description = (
    "Compare clipping strategies on the speech task: one run per learning "
    "rate and clipping, then a table of the test error rates."
  )
  g = p.add_argument_group("comparison")
  g.add_argument(
    "--lrs",
    default="3e-3,3e-2",
    help="comma-separated learning rates, each run with every clipping",
  )
  g.add_argument(
    "--compare-clip",
    action="append",
    default=None,
    help="a clipping spec to compare (repeat the flag; default: "
    + ", ".join(DEFAULT_CLIPS)
    + "); --clip is ignored",
  )
  p.set_defaults(
    steps=600,
    eval_every=600,
    ckpt_every=600,
    workdir=str(data.REPO_ROOT / "runs" / "speech" / "compare"),
  )
  return p


def parse(
  argv: Sequence[str] | None,
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
  p = make_parser()
  args = cli.parse(p, argv, "speech")
  speech.check_args(p, args)
  args.lr_list = cli.number_list(p, "--lrs", args.lrs)
  args.clips = cli.clip_list(
    p, "--compare-clip", args.compare_clip or DEFAULT_CLIPS
  )
  return p, args


def table(rows: list[dict]) -> str:
  """The comparison as a Markdown table."""
  lines = [
    "| lr | clipping | test CER | test WER | val CER | max grad norm "
    "| clip rate | loss spikes | time |",
    "|" + "---|" * 9,
  ]
  for r in rows:
    rate = "-" if r["clip_rate"] is None else f"{r['clip_rate']:.0%}"
    clip = f"`{r['clip']}`"
    if r.get("clip_after"):
      clip += f", after Adam `{r['clip_after']}`"
    lines.append(
      f"| {r['lr']:g} | {clip} | {r['test_cer']:.3f} | "
      f"{r['test_wer']:.3f} | {r['val_cer']:.3f} | {r['max_grad_norm']:.3g} "
      f"| {rate} | {r['spikes']} | {r['wall_time_s']:.0f}s |"
    )
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
  p, args = parse(argv)
  corpus = speech.load_or_exit(p, args)
  root = Path(args.workdir)
  rows, histories = [], {}
  for lr in args.lr_list:
    for spec in args.clips:
      run = copy.copy(args)
      run.lr, run.clip = lr, spec
      run.workdir = str(root / cli.comparison_name(spec, lr))
      print(f"--- lr {lr:g}, clip {spec}")
      result = trainer.train(speech.build_task(run, corpus), run)
      ev = result.eval
      rows.append(
        {
          "lr": lr,
          "clip": spec,
          "clip_after": args.clip_after,
          "test_cer": ev["test_cer"],
          "test_wer": ev["test_wer"],
          "val_cer": ev["val_cer"],
          "max_grad_norm": result.max_grad_norm,
          "clip_rate": None
          if math.isnan(result.clip_rate)
          else result.clip_rate,
          "spikes": result.spikes,
          "diverged": result.diverged,
          "wall_time_s": result.wall_time,
          "workdir": run.workdir,
        }
      )
      histories.setdefault(lr, {})[spec] = result.history
      print(table(rows[-1:]).splitlines()[-1])
  root.mkdir(parents=True, exist_ok=True)
  settings = {
    k: v
    for k, v in vars(args).items()
    if isinstance(v, (str, int, float, bool, type(None))) and k != "clip"
  }
  (root / "compare.json").write_text(
    json.dumps({"settings": settings, "runs": rows}, indent=1)
  )
  if not args.no_plots:
    for lr, runs in histories.items():
      plots.compare_runs(runs, str(root / f"grad_norm_lr{lr:g}.png"))
  print()
  print(f"Speech, {args.steps} steps per run, test on held-out speakers:")
  print(table(rows))
  return rows


if __name__ == "__main__":
  main()
