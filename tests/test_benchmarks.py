# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Smoke test of ``benchmarks/overhead.py`` (never a timed test)."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

import chex
import jax
import jax.numpy as jnp
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
  assert set(rows) == {
    "adam",
    "optaxclip.clip_by_global_norm",
    "floor:optaxclip.clip_by_global_norm",  # comes with it
  }
  ours = rows["optaxclip.clip_by_global_norm"]
  assert math.isfinite(ours["step_x_floor"]) and ours["step_x_floor"] > 0
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
  # Element-wise and norm-based strategies are reported against their
  # floor; strategies with the same floor share one variant, named after
  # the first of them.
  variants = overhead.all_variants()
  floors = {v.name: v.floor for v in variants if v.floor}
  assert floors["optaxclip.clip_by_global_norm"] == (
    "floor:optaxclip.clip_by_global_norm"
  )
  assert floors["zclip"] == floors["optaxclip.clip_by_global_norm"]
  # Without the non-finite policy's select: the plain global floor.
  assert floors[overhead.PROPAGATE] == "floor:optax.clip_by_global_norm"
  assert floors["adagc"] == "floor:clip_by_tensor_norm"
  assert floors["clip_spikes"] == "floor:clip_spikes"
  for floor in floors.values():
    assert floor in names and floor.removeprefix("floor:") in floors
  assert sum(v.stage == "floor" for v in variants) == len(set(floors.values()))


def test_a_global_floor_reads_the_gradients_once_and_changes_nothing():
  overhead = _overhead()
  tx = overhead._floor_transform(overhead.Floor(passes=1, reduce="global"))
  g = {"a": jnp.arange(6.0).reshape(2, 3), "b": -jnp.ones(4)}
  out, _ = jax.jit(tx.update)(g, tx.init(g))
  chex.assert_trees_all_equal(out, g)
  # Its factor depends on a reduction over every leaf, known only at run
  # time: a NaN anywhere zeroes every leaf (NaN >= 0 is False).
  bad, _ = jax.jit(tx.update)({**g, "b": g["b"].at[0].set(jnp.nan)}, ())
  assert float(jnp.abs(bad["a"]).sum()) == 0.0


def test_a_zeroing_floor_zeroes_inf_where_a_factor_of_0_gives_nan():
  overhead = _overhead()
  g = {"a": jnp.arange(6.0).reshape(2, 3), "b": -jnp.ones(4)}
  g_inf = {**g, "b": g["b"].at[1].set(jnp.inf)}
  for zero in (False, True):
    tx = overhead._floor_transform(
      overhead.Floor(passes=1, reduce="global", zero=zero)
    )
    chex.assert_trees_all_equal(jax.jit(tx.update)(g, ())[0], g)
    out, _ = jax.jit(tx.update)(g_inf, ())
    assert bool(jnp.isnan(out["b"][1])) != zero  # inf * 0 is NaN
    if zero:
      chex.assert_trees_all_equal(out, jax.tree.map(jnp.zeros_like, g))


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


def test_compile_one_measures_one_variant_per_process(capsys):
  path = ROOT / "benchmarks" / "compile_one.py"
  spec = importlib.util.spec_from_file_location("_oc_compile_one", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  rows = {
    v: module.main([v, "--leaves", "4", "--size", "4k"])
    for v in ("adam", "clip_by_tensor_norm")
  }
  printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
  assert printed == list(rows.values())
  for r in rows.values():
    assert r["leaves"] == 4 and r["compile_cpu_s"] > 0
    assert r["max_rss_gib"] > 0
  # The clip adds its norms, factors and statistics to Adam's program.
  adam, clip = rows["adam"], rows["clip_by_tensor_norm"]
  assert clip["hlo_instructions"] > adam["hlo_instructions"] > 0
  for bad in (["nope"], ["adam", "--leaves", "0"], ["adam", "--size", "x"]):
    with pytest.raises(SystemExit) as e:
      module.main(bad)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0]
