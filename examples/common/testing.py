# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Helpers for the examples' tests: fixture archives and run checks."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from examples.common import metrics

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def fixture(name: str) -> Path:
  """Path of a file in ``tests/fixtures``."""
  return FIXTURES / name


def make_tar(path: Path, members: dict[str, bytes]) -> Path:
  """Writes a ``.tar.gz`` holding ``members`` (name -> bytes)."""
  with tarfile.open(path, "w:gz") as tf:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tf.addfile(info, io.BytesIO(data))
  return path


def train_rows(workdir: Path) -> list[dict]:
  """The training rows of a run's ``metrics.jsonl``."""
  rows = metrics.read_jsonl(Path(workdir) / "metrics.jsonl")
  return [r for r in rows if r.get("split") == "train"]


def loss_fell(losses, k: int = 3, factor: float = 0.9) -> bool:
  """Whether the mean of the last ``k`` losses is below ``factor`` times
  the mean of the first ``k``."""
  losses = np.asarray(losses, np.float64)
  return bool(losses[-k:].mean() < factor * losses[:k].mean())


def argv(**flags) -> list[str]:
  """``--flag value`` arguments from keywords (``True`` for bare flags)."""
  out = []
  for k, v in flags.items():
    flag = "--" + k.replace("_", "-")
    if v is True:
      out.append(flag)
    elif v is not None and v is not False:
      out += [flag, str(v)]
  return out
