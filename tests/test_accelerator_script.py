# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Smoke tests of ``benchmarks/train_step.py``, ``benchmarks/accelerator.py``
and the ``--baseline`` loader (never timed tests: they check what the
scripts write, not how fast anything is)."""

from __future__ import annotations

import importlib
import json
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optaxclip

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
OURS = "optaxclip.clip_by_global_norm"


@pytest.fixture(scope="module")
def scripts():
  """The benchmark modules, imported from benchmarks/."""
  sys.path.insert(0, str(BENCH))
  try:
    yield {
      name: importlib.import_module(name)
      for name in ("_baseline", "overhead", "train_step", "accelerator")
    }
  finally:
    sys.path.remove(str(BENCH))


def _check_ratios(rows, names):
  by = {r["variant"]: r for r in rows}
  assert set(names) <= set(by)
  assert by["adam"]["step_x"] == 1.0 and by["adam"]["compile_x"] == 1.0
  for name in names:
    r = by[name]
    assert r["error"] is None, r
    for key in ("step_x", "compile_x"):
      assert math.isfinite(r[key]) and r[key] > 0, (name, key, r[key])
    lo, hi = r["step_x_range"]
    assert 0 < lo <= hi
  return by


def test_train_step_model_at_full_size_is_the_issues(scripts):
  ts = scripts["train_step"]
  _, params, inputs, targets = jax.eval_shape(lambda: ts.build(ts.Model()))
  leaves = jax.tree.leaves(params)
  assert len(leaves) == 102
  assert 10_000_000 < sum(x.size for x in leaves) < 11_500_000
  assert inputs.shape == targets.shape == (32, 256)


def test_accelerator_smoke_writes_each_stage(scripts, tmp_path):
  """Both benchmark stages (train_step.py --quick among them), one variant."""
  acc, ts = scripts["accelerator"], scripts["train_step"]
  # A budget no shared machine spends: nothing is cut.
  args = ["--smoke", "--budget", "3600", "--variants", OURS]
  data = acc.main(
    [*args, "--stages", "overhead,train_step", "--out", str(tmp_path)]
  )
  files = sorted(p.name for p in tmp_path.iterdir())
  assert files == [
    "accelerator.json",
    "accelerator.md",
    "overhead.json",
    "overhead.md",
    "train_step.json",
    "train_step.md",
  ]
  assert data["meta"]["smoke"] and data["meta"]["jax"] == jax.__version__
  overhead = json.loads((tmp_path / "overhead.json").read_text())
  leaves = [r["leaves"] for r in overhead["results"]]
  assert leaves == [4, 12, 24]
  for res in overhead["results"]:
    names = {r["variant"] for r in res["rows"]}
    # The GPU floor joins at few leaves only.
    assert ("floor:read-once" in names) == (res["leaves"] < 24)
    _check_ratios(res["rows"], ["adam", OURS])
  head = data["stages"]["overhead"]["headline"]
  assert [h["leaves"] for h in head] == [4, 12, 24]
  assert math.isfinite(head[0]["step_x_read_once"])
  result = json.loads((tmp_path / "train_step.json").read_text())
  # Adam alone and the floor of clip_by_global_norm come with it.
  by = _check_ratios(result["rows"], ["adam", OURS, ts.FLOOR])
  assert math.isfinite(by[OURS]["step_x_floor"])
  assert result["meta"]["leaves"] == 22 and result["meta"]["model"]["dim"] == 32
  assert f"| {OURS} | grad |" in (tmp_path / "train_step.md").read_text()
  md = (tmp_path / "accelerator.md").read_text()
  assert "## overhead" in md and "## train_step" in md
  assert "## conformance" not in md


def test_accelerator_refuses_a_cpu_without_smoke(scripts, tmp_path):
  with pytest.raises(SystemExit, match="not gpu"):
    scripts["accelerator"].main(["--out", str(tmp_path)])
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
  "script, args, message",
  [
    ("accelerator.py", ["--stages", "bogus"], "--stages: unknown"),
    ("accelerator.py", ["--budget", "-1"], "--budget must be positive"),
    ("train_step.py", ["--heads", "5"], "does not divide"),
    ("train_step.py", ["--rounds", "0"], "0 is not positive"),
    ("train_step.py", ["--quantile", "2"], "not in [0, 1]"),
    ("overhead.py", ["--leaves", "ten"], "expected counts"),
  ],
)
def test_bad_arguments_give_one_line_and_exit_2(
  scripts, capsys, script, args, message
):
  module = scripts[script.removesuffix(".py")]
  with pytest.raises(SystemExit) as e:
    module.parse_args(args)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and message in err, err


def test_accelerator_cli_error_needs_no_jax():
  """The usage error comes before jax is imported (no GPU needed)."""
  proc = subprocess.run(
    [sys.executable, str(BENCH / "accelerator.py"), "--stages", "x"],
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 2
  assert proc.stderr.count("\n") == 1 and "--stages" in proc.stderr


def test_baseline_loads_the_package_at_a_ref_side_by_side(scripts):
  base_mod = scripts["_baseline"]
  try:
    base, commit = base_mod.load("HEAD")
  except SystemExit as e:  # no git, or not a git checkout
    pytest.skip(str(e))
  assert len(commit) == 40 and base.__name__ == "optaxclip_base"
  assert base.clip_by_global_norm is not optaxclip.clip_by_global_norm
  assert base_mod.rebind(optaxclip.adagc, base) is base.adagc
  assert base_mod.rebind(optaxclip.adagc, optaxclip) is optaxclip.adagc
  g = {"a": jnp.arange(6.0).reshape(2, 3), "b": -jnp.ones(4)}
  for module in (optaxclip, base):
    tx = module.clip_by_global_norm(1.0)
    out, _ = tx.update(g, tx.init(g))
    norm = np.sqrt(sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(g)))
    np.testing.assert_allclose(out["a"], g["a"] / norm, rtol=1e-6)
  # Every strategy variant gets its base: twin, compared with one floor.
  variants = scripts["overhead"].all_variants(base)
  by = {v.name: v for v in variants}
  mine = [
    v
    for v in variants
    if v.stage not in ("baseline", "floor")
    and not v.name.startswith((base_mod.PREFIX, "optax."))
  ]
  assert len(mine) >= 20
  optax_refs = [v for v in variants if v.name.startswith("optax.")]
  assert len(optax_refs) == 2  # clip_by_global_norm and clip_by_block_rms
  assert (
    len(variants)
    == len(by)
    == 1
    + len(optax_refs)
    + 2 * len(mine)
    + sum(v.stage == "floor" for v in variants)
  )  # Adam alone, optax's clips, ours and their twins, the floors
  for v in mine:
    twin = by.get(base_mod.PREFIX + v.name)
    assert twin is not None and twin.floor == v.floor, v.name
  with pytest.raises(SystemExit, match="no-such-ref"):
    base_mod.load("no-such-ref")
