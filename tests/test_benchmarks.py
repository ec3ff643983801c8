# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Smoke test of ``benchmarks/overhead.py`` (never a timed test)."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

import pytest

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


def test_xla_options_are_parsed_applied_and_recorded(tmp_path):
  overhead = _overhead()
  assert overhead._option("a=true") == ("a", True)
  assert overhead._option(" b = 3 ") == ("b", 3)
  assert overhead._option("c=0.5") == ("c", 0.5)
  assert overhead._option("d=fast") == ("d", "fast")
  with pytest.raises(SystemExit, match="expected KEY=VALUE"):
    overhead._option("no-equals-sign")
  out = tmp_path / "opts"
  option = "xla_cpu_copy_insertion_use_region_analysis"
  base = ["--quick", "--variants", "adam", "--out", str(out)]
  (res,) = overhead.main([*base, "--xla-option", f"{option}=true"])
  assert res["rows"][0]["error"] is None
  data = json.loads((tmp_path / "opts.json").read_text())
  assert data["meta"]["compiler_options"] == {option: True}
  assert f"`{option}=True`" in (tmp_path / "opts.md").read_text()
  # An option XLA does not know fails the variant's compile, and says so.
  (res,) = overhead.main([*base, "--xla-option", "xla_no_such_option=1"])
  assert "xla_no_such_option" in res["rows"][0]["error"]
