# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Compile one variant of ``overhead.py`` + Adam in this process, once.

At 10,000 leaves XLA's CPU compiler needs 10-21 GB for one step of a
strategy + Adam, and a process that compiles several variants keeps the
peak of the largest (a run of Adam, then ``clip_by_tensor_norm``, in one
process was killed by the kernel on a 24 GB machine). This script compiles
one variant per process, so that a shell loop measures them one after the
other with all the memory each needs::

  for v in adam clip_by_tensor_norm floor:clip_by_tensor_norm; do
    python benchmarks/compile_one.py "$v" --leaves 10000 >> out.jsonl
  done

It prints one JSON line: the compile's wall and process CPU time, the
process's peak resident memory, and the optimized program's instruction
count (``HLO x`` in ``overhead.py``). Ratios between lines come from
separate processes run one after the other, not interleaved: compare
them with the noise band of ``overhead.py``'s interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import sys
import time
from collections.abc import Sequence

import jax
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _cli
import overhead


def compile_once(name: str, leaves: int, size: int) -> dict:
  """Compiles ``name`` + Adam on ``size`` parameters in ``leaves`` leaves."""
  variants = {v.name: v for v in overhead.all_variants()}
  if name not in variants:
    raise KeyError(name)
  tx = variants[name].build()
  params = overhead.make_params(size, leaves)
  state = tx.init(params)

  def step(grads, state, params):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  t0, c0 = time.perf_counter(), time.process_time()
  compiled = jax.jit(step).lower(params, state, params).compile()
  wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
  return {
    "variant": name,
    "leaves": leaves,
    "parameters": sum(x.size for x in jax.tree.leaves(params)),
    "compile_wall_s": round(wall, 2),
    "compile_cpu_s": round(cpu, 2),
    "max_rss_gib": round(rss / 2**20, 2),
    "hlo_instructions": overhead.program_ops(compiled.as_text()),
    "jax": jax.__version__,
    "backend": jax.default_backend(),
  }


def _count(text: str) -> int:
  try:
    n = overhead._count(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a count") from None
  if n < 1:
    raise argparse.ArgumentTypeError(f"{text!r} is not a positive count")
  return n


def main(argv: Sequence[str] | None = None) -> dict:
  p = _cli.Parser(description=__doc__.split("\n\n")[0])
  p.add_argument("variant", help="a variant name of overhead.py --variants")
  p.add_argument("--leaves", type=_count, default=10000, help="leaf count")
  p.add_argument(
    "--size", type=_count, default="20M", help="total parameter count"
  )
  args = p.parse_args(argv)
  if args.size < args.leaves:
    p.error(f"--size {args.size} is below --leaves {args.leaves}")
  try:
    row = compile_once(args.variant, args.leaves, args.size)
  except KeyError:
    p.error(f"unknown variant {args.variant!r} (overhead.py --variants list)")
  print(json.dumps(row), flush=True)
  return row


if __name__ == "__main__":
  main()
