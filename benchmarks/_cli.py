# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The benchmarks' argument parser: bad input gets one line, exit code 2."""

from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
  """An ``ArgumentParser`` whose usage errors are one line (exit code 2).

  The full usage stays behind ``--help``.
  """

  def __init__(self, **kwargs):
    kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
    super().__init__(**kwargs)

  def error(self, message: str):
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def die(message: str) -> None:
  """Exits with a one-line usage error (for checks made after parsing)."""
  print(f"{sys.argv[0]}: error: {message}", file=sys.stderr)
  raise SystemExit(2)
