# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""``make demo``: a character LSTM on Shakespeare with and without clipping.

Trains the same small LSTM five times at aggressive learning rates and
prints what clipping did:

1. SGD at a learning rate where plain SGD blows up, without clipping;
2. the same with ``clip_by_global_norm`` (the AWD-LSTM recipe: SGD with a
   small global clip);
3. Adam at a high learning rate, without clipping;
4. the same chained with ``clip_by_global_norm`` (``optax.chain(clip,
   adam)``, the chain users write);
5. the same Adam with the clip moved after ``scale_by_adam``
   (``--clip-after``): clipping the gradient cannot bound Adam's step, which
   divides by the gradient's own running scale; clipping the update can.

The settings come from the sweep in ``examples/RESULTS.md``. The output is a
side-by-side table (validation bits per character, loss spikes, largest
gradient norm, clip rate, time), a text sample of every run and one
comparison plot.

Usage::

  python -m examples.demo                 # 2-4 minutes on 2 CPU cores
  python -m examples.demo --steps 600     # longer, clearer
  python -m examples.demo --text-file my.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import optaxclip
from examples.char_lm import train as char_lm
from examples.char_lm.input_pipeline import load_text
from examples.common import cli
from examples.common import plots
from examples.common import trainer
from examples.common.data import REPO_ROOT
from examples.common.trainer import fmt_number as _num


@dataclasses.dataclass(frozen=True)
class Run:
  """One demo run: a label and the char-LM flags that differ."""

  label: str
  optimizer: str
  lr: float
  clip: str = "none"
  clip_after: str | None = None

  @property
  def clipping(self) -> str:
    if self.clip_after:
      return f"after {self.optimizer}: {self.clip_after}"
    return self.clip


def runs(args: argparse.Namespace) -> list[Run]:
  """The five runs of the demo, from the command-line settings."""
  out = [
    Run("SGD", "sgd", args.sgd_lr),
    Run("SGD + clip", "sgd", args.sgd_lr, args.sgd_clip),
    Run("Adam", "adam", args.adam_lr),
    Run("Adam + clip", "adam", args.adam_lr, args.adam_clip),
  ]
  if args.adam_after and args.adam_after != "none":
    out.append(
      Run(
        "Adam + update clip", "adam", args.adam_lr, clip_after=args.adam_after
      )
    )
  return out


def _runs(text: str) -> tuple[int, ...]:
  """An argparse type: comma-separated run numbers among 1..5."""
  try:
    chosen = sorted({int(i) for i in text.split(",") if i.strip()})
  except ValueError:
    chosen = []
  if not chosen or chosen[0] < 1 or chosen[-1] > 5:
    raise argparse.ArgumentTypeError(
      f"{text!r}: give comma-separated numbers among 1..5"
    )
  return tuple(chosen)


def make_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m examples.demo",
    description=__doc__.split("\n\n")[0],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument(
    "--steps", type=cli.positive_int, default=300, help="steps per run"
  )
  p.add_argument(
    "--hidden", type=cli.positive_int, default=128, help="LSTM units"
  )
  p.add_argument(
    "--embed", type=cli.positive_int, default=64, help="embedding width"
  )
  p.add_argument(
    "--batch-size", type=cli.positive_int, default=32, help="global batch"
  )
  p.add_argument(
    "--seq-len", type=cli.positive_int, default=100, help="window length"
  )
  p.add_argument(
    "--seed", type=cli.nonnegative_int, default=0, help="random seed"
  )
  p.add_argument(
    "--sgd-lr",
    type=cli.positive_float,
    default=30.0,
    help="learning rate of the SGD runs (1, 2)",
  )
  p.add_argument(
    "--sgd-clip",
    default="clip_by_global_norm:0.25",
    help="clipping strategy of run 2 (" + cli.CLIP_HELP + ")",
  )
  p.add_argument(
    "--adam-lr",
    type=cli.positive_float,
    default=0.1,
    help="learning rate of the Adam runs (3, 4, 5)",
  )
  p.add_argument(
    "--adam-clip",
    default="clip_by_global_norm:1.0",
    help="clipping strategy of run 4 (same syntax)",
  )
  p.add_argument(
    "--adam-after",
    default="clip_by_global_norm:2.0",
    help="update-stage clip for the fifth run (`none` to skip it)",
  )
  p.add_argument(
    "--runs",
    type=_runs,
    default=(1, 2, 3, 4, 5),
    help="which of the five runs to train (1-based, comma-separated)",
  )
  p.add_argument(
    "--eval-windows",
    type=cli.positive_int,
    default=128,
    help="validation windows per run",
  )
  p.add_argument(
    "--sample-len",
    type=cli.nonnegative_int,
    default=200,
    help="characters sampled after each run (0: none)",
  )
  p.add_argument(
    "--text-file",
    type=cli.text_file,
    default=None,
    help="train on this UTF-8 text instead of Shakespeare",
  )
  p.add_argument("--data-dir", default=None, help="download cache")
  p.add_argument(
    "--workdir",
    default=str(REPO_ROOT / "runs" / "demo"),
    help="where the table, plot and runs go",
  )
  p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
  return p


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """Parses ``argv``; a bad spec, number or file is a usage error."""
  p = make_parser()
  args = p.parse_args(argv)
  cli.check_batch_size(p, args.batch_size)
  for lr, optimizer, clip, after in (
    (args.sgd_lr, "sgd", args.sgd_clip, None),
    (args.adam_lr, "adam", args.adam_clip, args.adam_after),
  ):
    cli.check_specs(
      p, clip=clip, optimizer=optimizer, learning_rate=lr, clip_after=after
    )
  return args


def _run_args(args, run: Run, index: int) -> argparse.Namespace:
  argv = [
    "--model", "lstm",
    "--optimizer", run.optimizer,
    "--lr", repr(run.lr),
    "--clip", run.clip,
    "--steps", str(args.steps),
    "--hidden", str(args.hidden),
    "--embed", str(args.embed),
    "--batch-size", str(args.batch_size),
    "--seq-len", str(args.seq_len),
    "--seed", str(args.seed),
    "--eval-windows", str(args.eval_windows),
    "--eval-every", str(args.steps),
    "--ckpt-every", str(args.steps),
    "--sample-len", str(args.sample_len),
    "--workdir", str(Path(args.workdir) / f"{index}-{_slug(run.label)}"),
    "--no-plots",
  ]  # fmt: skip
  if run.clip_after:
    argv += ["--clip-after", run.clip_after]
  if args.no_progress:
    argv.append("--no-progress")
  return char_lm.make_parser().parse_args(argv)


def _slug(text: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def table(results: list[tuple[Run, trainer.RunResult]]) -> str:
  """The side-by-side comparison as a Markdown table."""
  head = (
    "| run | optimizer, lr | clipping | val bits/char | loss spikes "
    "| max grad norm | clip rate | time |"
  )
  lines = [head, "|" + "---|" * 8]
  for run, r in results:
    bpc = r.eval.get("val_bpc", math.nan)
    shown = _num(bpc, ".3f") + (" (diverged)" if r.diverged else "")
    rate = "-" if r.clip_name is None else _num(100 * r.clip_rate, ".0f") + "%"
    lines.append(
      f"| {run.label} | {run.optimizer} {run.lr:g} | {run.clipping} | "
      f"{shown} | {r.spikes} | {_num(r.max_grad_norm, '.3g')} | {rate} | "
      f"{r.wall_time:.0f}s |"
    )
  return "\n".join(lines)


def verdict(results: list[tuple[Run, trainer.RunResult]]) -> list[str]:
  """What the numbers say, worked out from them (nothing hard-coded)."""

  def bpc(r):
    v = r.eval.get("val_bpc", math.nan)
    return v if math.isfinite(v) else math.inf

  by = {run.label: r for run, r in results}
  out = []
  sgd, sgd_c = by.get("SGD"), by.get("SGD + clip")
  if sgd and sgd_c:
    if bpc(sgd) > bpc(sgd_c) + 0.5:
      out.append(
        f"SGD: without clipping the run blew up ({_num(bpc(sgd), '.2f')} "
        f"bits/char, {sgd.spikes} loss spikes, gradient norm up to "
        f"{_num(sgd.max_grad_norm, '.3g')}); with the clip it trained "
        f"({_num(bpc(sgd_c), '.2f')} bits/char)."
      )
    else:
      out.append(
        f"SGD: clipping made little difference at these settings "
        f"({_num(bpc(sgd), '.2f')} vs {_num(bpc(sgd_c), '.2f')} bits/char)."
      )
  adams = [(run, r) for run, r in results if run.optimizer == "adam"]
  if adams:
    best_run, best = min(adams, key=lambda rr: bpc(rr[1]))
    plain = by.get("Adam")
    if (
      plain is not None and best is not plain and bpc(best) < bpc(plain) - 0.05
    ):
      out.append(
        f"Adam: best was '{best_run.label}' ({_num(bpc(best), '.2f')} vs "
        f"{_num(bpc(plain), '.2f')} bits/char without clipping)."
      )
    else:
      out.append(
        "Adam: no clipping variant beat plain Adam by more than 0.05 "
        "bits/char at this scale."
      )
    clip = by.get("Adam + clip")
    if clip is not None and clip.max_grad_norm > 100:
      out.append(
        "Clipping the gradient before Adam still let a gradient norm of "
        f"{_num(clip.max_grad_norm, '.3g')} through: Adam divides by the "
        "gradient's running scale, so a clipped gradient can still make a "
        "full-size step."
      )
  return out


def main(
  argv: Sequence[str] | None = None,
) -> list[tuple[Run, trainer.RunResult]]:
  p = make_parser()
  args = parse(argv)
  t0 = time.perf_counter()
  with cli.usage_errors(p):
    text = load_text(args.text_file, args.data_dir)
  t_data = time.perf_counter() - t0
  print(
    f"Shakespeare: {len(text):,} characters (loaded in {t_data:.1f}s). "
    f"optaxclip {optaxclip.__version__}."
  )
  every = runs(args)
  chosen = [i for i in args.runs if i <= len(every)]
  if not chosen:
    p.error("--runs: run 5 is off (--adam-after none); choose among 1..4")
  plan = [every[i - 1] for i in chosen]
  print(
    f"Training a {args.hidden}-unit character LSTM {len(plan)} times, "
    f"{args.steps} steps of {args.batch_size} x {args.seq_len} characters."
  )
  results = []
  t_train = time.perf_counter()
  for i, run in zip(chosen, plan):
    print(
      f"\n[{i}/{len(every)}] {run.label}: {run.optimizer} lr {run.lr:g}, "
      f"clipping: {run.clipping}"
    )
    run_args = _run_args(args, run, i)
    with cli.usage_errors(p):
      task = char_lm.build_task(run_args, text=text)
    results.append((run, trainer.train(task, run_args)))
  train_time = time.perf_counter() - t_train

  out = Path(args.workdir)
  out.mkdir(parents=True, exist_ok=True)
  print("\n" + table(results))
  print(
    f"\nTraining time, all runs (compilation and evaluation included): "
    f"{train_time:.0f}s."
  )
  for line in verdict(results):
    print("* " + line)
  print("\nSamples (temperature 0.8):")
  for run, r in results:
    sample = "\n    ".join(r.report[1:]) if r.report else ""
    print(f"--- {run.label}:\n    {sample}")
  plot = out / "comparison.png"
  plots.compare_runs(
    {run.label: r.history for run, r in results},
    str(plot),
    keys=("loss", "grad_norm", "update_norm"),
    window=10,
  )
  summary = {
    "settings": vars(args),
    "train_time_s": round(train_time, 1),
    "runs": [
      {"label": run.label, **dataclasses.asdict(run), **r.to_json()}
      for run, r in results
    ],
  }
  (out / "demo_results.json").write_text(json.dumps(summary, indent=1))
  print(f"\nComparison plot: {plot}\nNumbers: {out / 'demo_results.json'}")
  return results


if __name__ == "__main__":
  main()
