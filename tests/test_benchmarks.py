# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Smoke test of ``benchmarks/overhead.py`` (never a timed test)."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _overhead():
  path = ROOT / "benchmarks" / "overhead.py"
  spec = importlib.util.spec_from_file_location("_oc_overhead", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def test_quick_run_writes_markdown_and_json(tmp_path):
  overhead = _overhead()
  out = tmp_path / "overhead"
  results = overhead.main(
    [
      "--quick",
      "--variants",
      "adam,optaxclip.clip_by_global_norm",
      "--out",
      str(out),
    ]
  )
  (res,) = results
  rows = {r["variant"]: r for r in res["rows"]}
  assert set(rows) == {"adam", "optaxclip.clip_by_global_norm"}
  for r in rows.values():
    assert r["error"] is None
    assert math.isfinite(r["step_x"]) and r["step_x"] > 0
    assert math.isfinite(r["compile_x"]) and r["compile_x"] > 0
  assert rows["adam"]["step_x"] == 1.0
  md = (tmp_path / "overhead.md").read_text()
  assert "| optaxclip.clip_by_global_norm | grad |" in md
  data = json.loads((tmp_path / "overhead.json").read_text())
  assert data["results"][0]["leaves"] == 4


def test_every_registry_case_is_a_variant():
  overhead = _overhead()
  names = {v.name for v in overhead.all_variants()}
  for case in overhead._load_registry():
    if case.name != "clip_by_global_norm":
      assert case.name in names
  assert {"adam", "optax.clip_by_global_norm"} <= names
  # Element-wise strategies are reported against their floor.
  floors = {v.name: v.floor for v in overhead.all_variants() if v.floor}
  for name, floor in floors.items():
    assert floor == f"floor:{name}" and floor in names
