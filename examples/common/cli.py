# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The command-line flags every example shares."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from examples.common import strategies
from examples.common.data import REPO_ROOT
from examples.common.rnn import CELLS
from examples.common.rnn import NORMS

CLIP_HELP = (
  "gradient-stage clipping strategy, NAME[:ARG,...,KEY=VALUE,...], any "
  "public optaxclip strategy (see --list-strategies), or `none`; values are "
  "Python literals, e.g. clip_by_global_norm:1.0 or zclip:z_thresh=2.0"
)


def parser(
  description: str, prog: str | None = None, **defaults
) -> argparse.ArgumentParser:
  """An argument parser with the shared flags; ``defaults`` override them."""
  p = argparse.ArgumentParser(
    prog=prog,
    description=description,
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  g = p.add_argument_group("optimisation and clipping")
  g.add_argument("--clip", default="clip_by_global_norm:1.0", help=CLIP_HELP)
  g.add_argument(
    "--clip-after",
    default=None,
    help="update-stage strategy applied after the optimizer (same syntax), "
    "e.g. clip_by_global_norm:0.01 to bound Adam's step",
  )
  g.add_argument(
    "--skip",
    default=None,
    help="wrap the whole chain: `nonfinite` (optaxclip.skip_nonfinite), "
    "`spike` (optaxclip.skip_on_spike) or WRAPPER[:ARGS]",
  )
  g.add_argument(
    "--optimizer",
    default="adam",
    help="any Optax optimizer taking a learning rate, NAME[:KEY=VALUE,...], "
    "e.g. sgd, adam, adamw:weight_decay=0.01",
  )
  g.add_argument("--lr", type=float, default=3e-3, help="learning rate")
  g.add_argument("--steps", type=int, default=1000, help="training steps")
  g.add_argument("--batch-size", type=int, default=32, help="global batch")
  g.add_argument("--seed", type=int, default=0)
  g.add_argument(
    "--list-strategies",
    action="store_true",
    help="print the strategies, wrappers and optimizers, then exit",
  )
  m = p.add_argument_group("model")
  m.add_argument("--cell", choices=CELLS, default="lstm")
  m.add_argument("--hidden", type=int, default=128)
  m.add_argument("--layers", type=int, default=1)
  m.add_argument(
    "--norm",
    choices=NORMS,
    default="none",
    help="layernorm: layer-normalised recurrent cells",
  )
  r = p.add_argument_group("run")
  r.add_argument(
    "--workdir",
    default=None,
    help="where metrics, checkpoints and plots go (default: "
    "runs/<task>/<settings>)",
  )
  r.add_argument(
    "--resume",
    action="store_true",
    help="continue from the checkpoint in --workdir",
  )
  r.add_argument("--data-dir", default=None, help="download cache")
  r.add_argument("--eval-every", type=int, default=250)
  r.add_argument("--ckpt-every", type=int, default=500)
  r.add_argument("--no-progress", action="store_true", help="no tqdm bar")
  r.add_argument("--no-plots", action="store_true")
  p.set_defaults(**defaults)
  return p


def parse(
  p: argparse.ArgumentParser, argv: Sequence[str] | None, task: str
) -> argparse.Namespace:
  """Parses ``argv``; handles --list-strategies and bad specs; sets workdir."""
  args = p.parse_args(argv)
  if args.list_strategies:
    print(strategies.describe())
    sys.exit(0)
  try:  # fail on a bad spec before loading any data
    strategies.build_tx(
      clip=args.clip,
      optimizer=args.optimizer,
      learning_rate=args.lr,
      clip_after=args.clip_after,
      skip=args.skip,
    )
  except strategies.SpecError as e:
    p.error(str(e))
  if args.workdir is None:
    args.workdir = str(REPO_ROOT / "runs" / task / run_name(args))
  return args


def _slug(text: str | None) -> str:
  return re.sub(r"[^A-Za-z0-9.=_-]+", "_", str(text)).strip("_")


def run_name(args: argparse.Namespace) -> str:
  """A directory name from the settings that distinguish runs."""
  parts = [getattr(args, "model", None) or args.cell]
  parts.append(f"{_slug(args.optimizer)}-lr{args.lr:g}")
  parts.append(_slug(args.clip or "none"))
  if args.clip_after:
    parts.append("after-" + _slug(args.clip_after))
  if args.skip:
    parts.append("skip-" + _slug(args.skip))
  if args.norm != "none":
    parts.append(args.norm)
  if getattr(args, "bptt", None):
    parts.append(f"bptt{args.bptt}")
  return "-".join(parts)


def resolve_path(path: str | None) -> Path | None:
  return None if path is None else Path(path).expanduser().resolve()
