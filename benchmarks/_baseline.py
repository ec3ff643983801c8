# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The package at another git ref, loaded side by side as ``optaxclip_base``.

A refactor is judged against the code before it, measured in the same
process and the same rounds (the machines are too noisy to compare against
recorded figures). :func:`load` extracts ``optaxclip/`` at a git ref with
``git archive`` into a temporary directory, renames the package to
``optaxclip_base`` (every ``optaxclip`` import inside it rewritten) and
imports it; :func:`rebind` finds the public factory of the same name in it.

Used by ``overhead.py`` and ``train_step.py`` through ``--baseline REF``,
which adds a ``base:<variant>`` for every strategy variant.
"""

from __future__ import annotations

import atexit
import importlib
import io
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from types import ModuleType
from typing import Any

import optaxclip

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAME = "optaxclip_base"
PREFIX = "base:"
# main just before the accelerator-ready refactor of _core.py (issue 15).
DEFAULT_REF = "b2923f5"

_IMPORT = re.compile(r"\boptaxclip\b")


def _git(*args: str) -> bytes:
  try:
    return subprocess.run(
      ["git", "-C", str(ROOT), *args], check=True, capture_output=True
    ).stdout
  except FileNotFoundError:
    raise SystemExit("--baseline needs git, which is not installed") from None
  except subprocess.CalledProcessError as e:
    msg = e.stderr.decode(errors="replace").strip().splitlines()
    raise SystemExit(
      f"--baseline: git {' '.join(args)} failed: {msg[-1] if msg else e}"
    ) from None


def load(ref: str) -> tuple[ModuleType, str]:
  """Imports ``optaxclip/`` at git ``ref`` as module ``optaxclip_base``.

  Args:
    ref: a commit, branch or tag of this repository.

  Returns:
    The module and the full commit hash ``ref`` names.

  Raises:
    SystemExit: a one-line message when git or the ref is missing, or when
      a baseline is already loaded from another ref.
  """
  commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}").decode().strip()
  loaded = sys.modules.get(NAME)
  if loaded is not None:
    if getattr(loaded, "__baseline_commit__", None) != commit:
      raise SystemExit(
        f"--baseline: {NAME} is already loaded from another commit"
      )
    return loaded, commit
  archive = _git("archive", "--format=tar", commit, "optaxclip")
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="optaxclip_base_"))
  atexit.register(shutil.rmtree, tmp, ignore_errors=True)
  with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
    tar.extractall(tmp, filter="data")
  pkg = tmp / NAME
  (tmp / "optaxclip").rename(pkg)
  for path in pkg.rglob("*.py"):
    path.write_text(_IMPORT.sub(NAME, path.read_text()))
  sys.path.insert(0, str(tmp))
  try:
    module = importlib.import_module(NAME)
  finally:
    sys.path.remove(str(tmp))
  module.__baseline_commit__ = commit
  return module, commit


def public_name(obj: Any) -> str | None:
  """The name ``optaxclip`` exports ``obj`` under (None if it does not)."""
  for name in getattr(optaxclip, "__all__", ()):
    if getattr(optaxclip, name, None) is obj:
      return name
  return None


def rebind(obj: Any, module: ModuleType) -> Any | None:
  """``module``'s public object of the same name as ``optaxclip``'s ``obj``.

  ``obj`` itself when ``module`` is ``optaxclip``; None when ``obj`` is not
  public in ``optaxclip`` or ``module`` has no object of that name (a
  strategy added after the baseline has nothing to compare with).
  """
  if module is optaxclip:
    return obj
  name = public_name(obj)
  return getattr(module, name, None) if name else None
