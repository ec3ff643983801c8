# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The command-line flags every example shares, and their checks.

Every bad input to an example's command line ends in a one-line usage error
and exit code 2, never a traceback. A task gets this by building its parser
with :func:`parser` and following three rules:

1. **Numbers** use the checking types below instead of ``int`` / ``float``:
   :func:`positive_int`, :func:`nonnegative_int`, :func:`positive_float`,
   :func:`nonnegative_float`, :func:`fraction` (strictly between 0 and 1)
   and :func:`probability` (0 inclusive to 1 exclusive). Each rejects
   non-finite and out-of-range values at parse time::

     g.add_argument("--seq-len", type=cli.positive_int, default=100,
                    help="window length")

2. **Files** are declared with ``type=cli.text_file``. The parser then
   rejects, before any data is loaded, a path that is missing, a directory,
   binary (a NUL byte), not UTF-8 or empty. The value stays the path string,
   so loaders keep taking ``args.text_file``; they read it with
   :func:`examples.common.data.read_text_file`, which applies the same
   checks when a task is used from Python::

     g.add_argument("--text-file", type=cli.text_file, default=None,
                    help="train on this UTF-8 text")

3. **Checks that need the data** (a file with no usable line, a text
   shorter than one window, ``--heads`` not dividing ``--hidden``) raise
   :class:`examples.common.data.DataError` or :class:`UsageError` from
   ``build_task``, and ``main`` builds the task inside
   :func:`usage_errors`::

     def main(argv=None):
       p = make_parser()
       args = cli.parse(p, argv, "my_task")
       with cli.usage_errors(p):
         task = build_task(args)
       ...

:func:`parse` itself rejects bad ``--clip`` / ``--clip-after`` / ``--skip`` /
``--optimizer`` specs (unknown names, bad or repeated keywords, a string
where a number is expected, an optimizer that fails one step on a test
tree) and an empty spec (write ``none``). Every option needs a help string;
``tests/test_examples_cli.py`` checks all of this for every task under
``examples/`` that has a ``train.main``, so a new task is covered without
new tests.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import sys
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path

import jax

from examples.common import data
from examples.common import strategies
from examples.common.data import REPO_ROOT
from examples.common.rnn import CELLS
from examples.common.rnn import NORMS

CLIP_HELP = (
  "gradient-stage clipping strategy, NAME[:ARG,...,KEY=VALUE,...], any "
  "public optaxclip strategy (see --list-strategies), or `none`; values are "
  "Python literals, e.g. clip_by_global_norm:1.0 or zclip:z_thresh=2.0"
)


class UsageError(ValueError):
  """A bad combination of flags found while building a task (one line)."""


def _number(kind, text: str):
  try:
    return kind(text)
  except ValueError:
    name = "an integer" if kind is int else "a number"
    raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None


def _checked(kind, ok, what: str):
  def convert(text: str):
    value = _number(kind, text)
    if not (math.isfinite(value) and ok(value)):
      raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value

  convert.__name__ = what.replace(" ", "_")
  return convert


positive_int = _checked(int, lambda v: v > 0, "a positive integer")
nonnegative_int = _checked(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _checked(float, lambda v: v > 0, "a finite positive number")
nonnegative_float = _checked(
  float, lambda v: v >= 0, "a finite non-negative number"
)
fraction = _checked(float, lambda v: 0 < v < 1, "a number in (0, 1)")
probability = _checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def text_file(path: str) -> str:
  """An argparse type: a readable, non-empty UTF-8 text file (the path)."""
  try:
    data.read_text_file(path)
  except data.DataError as e:
    raise argparse.ArgumentTypeError(str(e)) from None
  return path


def one_line(message: object) -> str:
  """The message on one line (continuation lines joined with ``; ``)."""
  lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
  return "; ".join(lines) or type(message).__name__


@contextlib.contextmanager
def usage_errors(p: argparse.ArgumentParser) -> Iterator[None]:
  """Turns the data and flag errors of building a task into usage errors.

  :class:`~examples.common.data.DataError`, :class:`UsageError` and
  :class:`~examples.common.strategies.SpecError` become ``p.error`` (one
  line, exit code 2); :class:`~examples.common.data.DataUnavailable` (a
  download failed, not a bad input) exits with code 1 and its message,
  which says which command to run.
  """
  try:
    yield
  except (data.DataError, UsageError, strategies.SpecError) as e:
    p.error(one_line(e))
  except data.DataUnavailable as e:
    p.exit(1, f"{p.prog}: {e}\n")


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
  g.add_argument(
    "--lr", type=positive_float, default=3e-3, help="learning rate"
  )
  g.add_argument(
    "--steps", type=positive_int, default=1000, help="training steps"
  )
  g.add_argument(
    "--batch-size", type=positive_int, default=32, help="global batch"
  )
  g.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
  g.add_argument(
    "--list-strategies",
    action="store_true",
    help="print the strategies, wrappers and optimizers, then exit",
  )
  m = p.add_argument_group("model")
  m.add_argument("--cell", choices=CELLS, default="lstm", help="recurrent cell")
  m.add_argument(
    "--hidden", type=positive_int, default=128, help="hidden units"
  )
  m.add_argument(
    "--layers", type=positive_int, default=1, help="stacked layers"
  )
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
  r.add_argument(
    "--eval-every",
    type=positive_int,
    default=250,
    help="evaluate every this many steps",
  )
  r.add_argument(
    "--ckpt-every",
    type=positive_int,
    default=500,
    help="checkpoint every this many steps",
  )
  r.add_argument("--no-progress", action="store_true", help="no tqdm bar")
  r.add_argument(
    "--no-plots", action="store_true", help="write no plots at the end"
  )
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
  check_batch_size(p, args.batch_size)
  check_specs(
    p,
    clip=args.clip,
    optimizer=args.optimizer,
    learning_rate=args.lr,
    clip_after=args.clip_after,
    skip=args.skip,
  )
  if args.workdir is None:
    args.workdir = str(REPO_ROOT / "runs" / task / run_name(args))
  return args


def check_batch_size(p: argparse.ArgumentParser, batch_size: int) -> None:
  """``p.error`` unless the batch splits evenly over the devices."""
  n = jax.device_count()
  if batch_size % n:
    p.error(
      f"--batch-size {batch_size} must be a multiple of the {n} devices "
      "the batch is split over"
    )


def check_specs(
  p: argparse.ArgumentParser,
  *,
  clip: str | None,
  optimizer: str,
  learning_rate: float,
  clip_after: str | None = None,
  skip: str | None = None,
) -> None:
  """``p.error`` unless the specs build and the optimizer takes one step.

  Fails on a bad spec before any data is loaded: unknown names, bad or
  repeated keywords, an empty spec, a string where a number is expected,
  and an optimizer whose arguments only fail in its first update (it is run
  once on a two-element test tree).
  """
  try:
    strategies.build_tx(
      clip=clip,
      optimizer=optimizer,
      learning_rate=learning_rate,
      clip_after=clip_after,
      skip=skip,
    )
    strategies.check_optimizer(optimizer, learning_rate)
  except strategies.SpecError as e:
    p.error(one_line(e))


def number_list(
  p: argparse.ArgumentParser, flag: str, text: str, hi: float = math.inf
) -> list[float]:
  """The comma-separated numbers of ``flag``, each in ``(0, hi]``.

  A comparison's ``--lrs 3e-3,3e-2`` or ``--fractions 0.5,1``; anything
  else (no number, a word, zero, a negative or non-finite value, one above
  ``hi``) is ``p.error``.

  >>> number_list(argparse.ArgumentParser(), "--lrs", "3e-3, 0.03")
  [0.003, 0.03]
  """
  try:
    out = [float(x) for x in text.split(",") if x.strip()]
  except ValueError:
    p.error(f"{flag} {text!r}: give comma-separated numbers")
  if not out or not all(0 < x <= hi and math.isfinite(x) for x in out):
    p.error(f"{flag} {text!r}: give numbers in (0, {hi:g}]")
  return out


def clip_list(
  p: argparse.ArgumentParser, flag: str, specs: str | Sequence[str]
) -> list[str]:
  """A comparison's clipping specs, each checked to build with Adam.

  Args:
    p: the parser whose ``error`` reports a bad spec (one line, exit 2).
    flag: the flag's name, for the message.
    specs: ``;``-separated specs (``"none;clip_by_global_norm:1.0"``) or a
      list of them.

  Returns:
    The specs, stripped; at least one.
  """
  if isinstance(specs, str):
    specs = specs.split(";")
  out = [s.strip() for s in specs if s.strip()]
  if not out:
    p.error(f"{flag}: give at least one spec (`none` for no clipping)")
  for spec in out:
    try:
      strategies.build_tx(clip=spec, optimizer="adam", learning_rate=1e-3)
    except strategies.SpecError as e:
      p.error(f"{flag} {spec}: {one_line(e)}")
  return out


def _slug(text: str | None) -> str:
  return re.sub(r"[^A-Za-z0-9.=_-]+", "_", str(text)).strip("_")


def comparison_name(clip: str, lr: float) -> str:
  """The directory name of one run of a comparison.

  >>> comparison_name("zclip:max_grad_norm=None", 0.003)
  'lr0.003-zclip_max_grad_norm=None'
  """
  return f"lr{lr:g}-{_slug(clip)}"


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
