# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of monitor_norms, StatsHistory, suggest_threshold, calibrate and
diagnose."""

from __future__ import annotations

import itertools
import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optaxclip
from optaxclip import _diagnostics

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _tree(seed: int = 0):
  """A small model-like tree with nested dicts, a list and a root-level leaf."""
  rng = np.random.default_rng(seed)
  return {
    "encoder": {
      "layers_0": {
        "kernel": rng.normal(size=(4, 3)),
        "bias": rng.normal(size=3),
      },
      "layers_1": {
        "kernel": rng.normal(size=(3, 3)),
        "bias": rng.normal(size=3),
      },
    },
    "head": [rng.normal(size=(3, 2)), rng.normal(size=())],
    "scale": rng.normal(size=(5,)),
  }


def _f32(tree):
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def _np_norm(arrays, ord):
  flat = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in arrays])
  if ord == 2:
    return float(np.sqrt(np.sum(flat**2)))
  if ord == 1:
    return float(np.sum(np.abs(flat)))
  return float(np.max(np.abs(flat), initial=0.0))


LEAF_PATHS = {
  "encoder/layers_0/kernel": lambda t: [t["encoder"]["layers_0"]["kernel"]],
  "encoder/layers_0/bias": lambda t: [t["encoder"]["layers_0"]["bias"]],
  "encoder/layers_1/kernel": lambda t: [t["encoder"]["layers_1"]["kernel"]],
  "encoder/layers_1/bias": lambda t: [t["encoder"]["layers_1"]["bias"]],
  "head/0": lambda t: [t["head"][0]],
  "head/1": lambda t: [t["head"][1]],
  "scale": lambda t: [t["scale"]],
}


def _monitor_stats(state, name="monitor_norms"):
  return optaxclip.stats(state)[name]


# ---------------------------------------------------------------------------
# monitor_norms
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ord", [1, 2, "inf"])
def test_monitor_leaf_norms_match_numpy(ord):
  grads = _tree(1)
  tx = optaxclip.monitor_norms(ord=ord)
  out, state = jax.jit(tx.update)(_f32(grads), tx.init(_f32(grads)))
  chex.assert_trees_all_equal(out, _f32(grads))  # passed through unchanged
  s = _monitor_stats(state)
  assert set(s.norms) == set(LEAF_PATHS)
  for path, get in LEAF_PATHS.items():
    np.testing.assert_allclose(
      s.norms[path], _np_norm(get(grads), ord), rtol=1e-5, err_msg=path
    )
  every = jax.tree.leaves(grads)
  np.testing.assert_allclose(s.global_norm, _np_norm(every, ord), rtol=1e-5)
  assert s.global_norm.dtype == jnp.float32
  assert s.step.dtype == jnp.int32 and int(s.step) == 1
  assert all(v.dtype == jnp.float32 for v in s.norms.values())


def test_monitor_layer_groups_match_numpy():
  grads = _tree(2)
  tx = optaxclip.monitor_norms(by="layer")
  _, state = tx.update(_f32(grads), tx.init(_f32(grads)))
  s = _monitor_stats(state)
  t = grads
  expected = {
    "encoder/layers_0": [
      t["encoder"]["layers_0"][k] for k in ("kernel", "bias")
    ],
    "encoder/layers_1": [
      t["encoder"]["layers_1"][k] for k in ("kernel", "bias")
    ],
    "head": t["head"],
    "scale": [t["scale"]],  # a top-level leaf is its own layer
  }
  assert set(s.norms) == set(expected)
  for path, arrays in expected.items():
    np.testing.assert_allclose(s.norms[path], _np_norm(arrays, 2), rtol=1e-5)


def test_monitor_rules_mapping_and_sequence():
  grads = _tree(3)
  t = grads
  tx = optaxclip.monitor_norms(
    by={"encoder/**/kernel": "kernels", "encoder/**": "enc_rest", "head": 1.0}
  )
  _, state = tx.update(_f32(grads), tx.init(_f32(grads)))
  s = _monitor_stats(state)
  enc = t["encoder"]
  expected = {
    "kernels": [enc["layers_0"]["kernel"], enc["layers_1"]["kernel"]],
    "enc_rest": [enc["layers_0"]["bias"], enc["layers_1"]["bias"]],
    "head": t["head"],  # a non-string value: named by its pattern
    "(other)": [t["scale"]],  # leaves no rule matches
  }
  assert set(s.norms) == set(expected)
  for path, arrays in expected.items():
    np.testing.assert_allclose(s.norms[path], _np_norm(arrays, 2), rtol=1e-5)

  seq = optaxclip.monitor_norms(by=["encoder", "head"])
  _, state = seq.update(_f32(grads), seq.init(_f32(grads)))
  assert set(_monitor_stats(state).norms) == {"encoder", "head", "(other)"}

  pairs = optaxclip.monitor_norms(by=[("encoder/**", 1.0), ("**", "rest")])
  _, state = pairs.update(_f32(grads), pairs.init(_f32(grads)))
  assert set(_monitor_stats(state).norms) == {"encoder/**", "rest"}


def test_monitor_rule_matching_nothing_is_an_error():
  tx = optaxclip.monitor_norms(by=["decoder/**"])
  with pytest.raises(ValueError, match="match no parameter path"):
    tx.init(_f32(_tree()))


def test_monitor_root_array_and_empty_tree():
  tx = optaxclip.monitor_norms()
  _, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
  s = _monitor_stats(state)
  assert list(s.norms) == ["(root)"]
  np.testing.assert_allclose(s.norms["(root)"], 5.0)
  _, state = tx.update({}, tx.init({}))
  s = _monitor_stats(state)
  assert len(s.norms) == 0 and float(s.global_norm) == 0.0


def test_monitor_ema_matches_numpy_recursion_and_skips_nonfinite():
  beta = 0.8
  tx = optaxclip.monitor_norms(ema=beta)
  params = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
  state = tx.init(params)
  s0 = _monitor_stats(state)
  assert all(np.isnan(v) for v in s0.ema.values())
  rng = np.random.default_rng(0)
  ema = {"a": math.nan, "b": math.nan}
  g_ema = math.nan
  update = jax.jit(tx.update)
  for t in range(8):
    g = {"a": rng.normal(size=2), "b": rng.normal(size=3)}
    if t == 4:
      g["a"][0] = np.nan  # a non-finite step never enters the EMA
    _, state = update(_f32(g), state)
    norms = {k: _np_norm([v], 2) for k, v in g.items()}
    total = _np_norm(list(g.values()), 2)
    for k, n in norms.items():
      if math.isfinite(n):
        ema[k] = n if math.isnan(ema[k]) else beta * ema[k] + (1 - beta) * n
    if math.isfinite(total):
      g_ema = total if math.isnan(g_ema) else beta * g_ema + (1 - beta) * total
    s = _monitor_stats(state)
    for k in ema:
      np.testing.assert_allclose(s.ema[k], ema[k], rtol=1e-5)
    np.testing.assert_allclose(s.global_ema, g_ema, rtol=1e-5)
  assert int(s.nonfinite_count) == 1
  assert int(s.step) == 8


def test_monitor_without_ema_has_same_structure_and_nan_emas():
  params = _f32(_tree())
  states = [
    optaxclip.monitor_norms(ema=e).init(params) for e in (None, 0.5, 0.99)
  ]
  structs = {jax.tree.structure(s) for s in states}
  assert len(structs) == 1
  tx = optaxclip.monitor_norms()
  _, state = tx.update(params, tx.init(params))
  s = _monitor_stats(state)
  assert all(np.isnan(v) for v in s.ema.values())
  assert np.isnan(s.global_ema)


def test_monitor_under_inject_hyperparams_scan_and_chain():
  params = _f32(_tree())
  tx = optax.chain(
    optax.inject_hyperparams(optaxclip.monitor_norms)(ema=0.9),
    optax.sgd(0.1),
  )
  state = tx.init(params)

  def body(state, g):
    _, state = tx.update(g, state, params)
    return state, optaxclip.stats(state)["monitor_norms"].global_norm

  grads = jax.tree.map(lambda x: jnp.stack([x, 2 * x, 3 * x]), params)
  state, norms = jax.lax.scan(body, state, grads)
  base = _np_norm(jax.tree.leaves(params), 2)
  np.testing.assert_allclose(norms, [base, 2 * base, 3 * base], rtol=1e-5)
  s = optaxclip.stats(state)["monitor_norms"]
  assert isinstance(s, optaxclip.MonitorStats)
  # EMA from 1x, then 2x, then 3x with decay 0.9.
  want = 0.9 * (0.9 * base + 0.1 * 2 * base) + 0.1 * 3 * base
  np.testing.assert_allclose(s.global_ema, want, rtol=1e-5)


def test_monitor_low_precision_and_many_leaves():
  # More leaves than one bucket holds; float16 squares overflow float16.
  n = 600
  params = {f"p{i}": jnp.full((3,), 300.0, jnp.float16) for i in range(n)}
  tx = optaxclip.monitor_norms()
  state = tx.init(params)
  # The paths are tree structure: each per-path field is one vector leaf.
  assert len(jax.tree.leaves(state)) == 6
  _, state = jax.jit(tx.update)(params, state)
  s = _monitor_stats(state)
  assert len(s.norms) == n and s.norms.array().shape == (n,)
  np.testing.assert_allclose(s.norms["p123"], 300.0 * math.sqrt(3), rtol=1e-3)
  np.testing.assert_allclose(s.global_norm, 300.0 * math.sqrt(3 * n), rtol=1e-3)


def test_path_map_reads_like_a_dict():
  m = optaxclip.PathMap(("a", "b/c"), jnp.array([1.0, 2.0]))
  assert dict(m) == {"a": 1.0, "b/c": 2.0}
  assert list(m) == ["a", "b/c"] and len(m) == 2 and "b/c" in m
  assert repr(m) == "PathMap({'a': 1, 'b/c': 2})"
  leaves, treedef = jax.tree.flatten(m)
  assert len(leaves) == 1
  back = jax.tree.unflatten(treedef, [jnp.array([3.0, 4.0])])
  assert back.paths == ("a", "b/c") and float(back["b/c"]) == 4.0
  ((path, _),) = jax.tree.leaves_with_path(m)
  assert jax.tree_util.keystr(path) == ".vector"
  with pytest.raises(KeyError):
    m["d"]


def test_monitor_state_checkpoints_with_flax_serialization():
  serialization = pytest.importorskip(
    "flax.serialization", exc_type=ModuleNotFoundError
  )
  params = {"a": jnp.ones(2), "b": jnp.ones(3)}
  tx = optax.chain(optaxclip.monitor_norms(ema=0.5), optax.adam(0.1))
  _, state = tx.update(params, tx.init(params), params)
  blob = serialization.to_bytes(state)
  back = serialization.from_bytes(tx.init(params), blob)
  back = jax.tree.map(jnp.asarray, back)
  chex.assert_trees_all_equal_structs(back, state)
  chex.assert_trees_all_equal(back, state)
  assert set(_monitor_stats(back).norms) == {"a", "b"}


def test_monitor_errors():
  with pytest.raises(ValueError, match="unknown by"):
    optaxclip.monitor_norms(by="tensor")
  with pytest.raises(TypeError, match="`by`"):
    optaxclip.monitor_norms(by=3)
  with pytest.raises(ValueError, match="ema"):
    optaxclip.monitor_norms(ema=1.5)
  with pytest.raises(TypeError, match="name"):
    optaxclip.monitor_norms(name="")
  tx = optaxclip.monitor_norms()
  with pytest.raises(TypeError, match="int32"):
    tx.update({"a": jnp.ones(2, jnp.int32)}, tx.init({"a": jnp.ones(2)}))
  with pytest.raises(ValueError, match="differ from those at init"):
    tx.update({"b": jnp.ones(2)}, tx.init({"a": jnp.ones(2)}))


def test_monitor_with_nnx_optimizer_uses_clean_paths():
  nnx = pytest.importorskip("flax.nnx", exc_type=ModuleNotFoundError)

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.encoder = nnx.Linear(3, 4, rngs=rngs)
      self.head = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
      return self.head(jax.nn.relu(self.encoder(x)))

  model = Model(nnx.Rngs(0))
  tx = optax.chain(optaxclip.monitor_norms(by="layer"), optax.sgd(0.1))
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jnp.ones((2, 3))
  grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
  opt.update(model, grads)
  s = optaxclip.stats(opt.opt_state)["monitor_norms"]
  assert set(s.norms) == {"encoder", "head"}
  g = nnx.to_pure_dict(grads)
  want = _np_norm([g["head"]["kernel"], g["head"]["bias"]], 2)
  np.testing.assert_allclose(s.norms["head"], want, rtol=1e-5)


# ---------------------------------------------------------------------------
# StatsHistory
# ---------------------------------------------------------------------------


def _trained_history(n=5):
  tx = optax.chain(
    optaxclip.monitor_norms(),
    optaxclip.clip_by_global_norm(1.0),
    optax.sgd(0.1),
  )
  params = {"dense": {"kernel": jnp.zeros(2), "bias": jnp.zeros(())}}
  state = tx.init(params)
  h = optaxclip.StatsHistory()
  for t in range(n):
    g = {"dense": {"kernel": jnp.array([3.0, 4.0]) * t, "bias": jnp.array(1.0)}}
    _, state = tx.update(g, state, params)
    h.append(t, optaxclip.stats(state), loss=jnp.asarray(1.0 / (t + 1)))
  return h


def test_history_keys_and_series():
  h = _trained_history()
  keys = h.keys()
  assert "clip_by_global_norm/norm_before" in keys
  assert "clip_by_global_norm/step" in keys
  assert "monitor_norms/norms/dense/kernel" in keys
  assert "monitor_norms/ema/dense/bias" in keys
  assert "monitor_norms/global_norm" in keys
  assert "loss" in keys
  chex.assert_trees_all_close(
    h.series("monitor_norms/norms/dense/kernel"), 5.0 * np.arange(5)
  )
  want = np.sqrt(25.0 * np.arange(5) ** 2 + 1)
  chex.assert_trees_all_close(
    h.series("clip_by_global_norm/norm_before"), want, rtol=1e-6
  )
  chex.assert_trees_all_close(h.series("loss"), 1 / np.arange(1, 6), rtol=1e-6)
  np.testing.assert_array_equal(h.steps, np.arange(5))
  assert h.steps.dtype == np.int64 and h.series("loss").dtype == np.float64
  assert len(h) == 5 and "loss" in h and "nope" not in h
  assert np.isnan(h.series("nope")).all()


def test_history_merges_rows_of_the_same_step_and_fills_nan():
  h = optaxclip.StatsHistory()
  h.append(0, loss=1.0)
  h.append(10, loss=0.5)
  h.append(10, val_loss=0.7)
  h.append(20, loss=0.25, extra={"a": 1, "b": np.array([1.0, 2.0])})
  np.testing.assert_array_equal(h.steps, [0, 10, 20])
  np.testing.assert_array_equal(h.series("val_loss"), [np.nan, 0.7, np.nan])
  np.testing.assert_array_equal(h.series("extra/b/1"), [np.nan, np.nan, 2.0])
  assert h.keys() == ["loss", "val_loss", "extra/a", "extra/b/0", "extra/b/1"]
  assert repr(h) == "StatsHistory(3 steps, 5 keys)"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_history_round_trip(tmp_path, fmt):
  h = _trained_history()
  h.append(5, loss=np.nan, grad=np.inf)
  h.append(6, grad=-np.inf)
  path = tmp_path / f"h.{fmt}"
  getattr(h, f"to_{fmt}")(path)
  back = getattr(optaxclip.StatsHistory, f"from_{fmt}")(path)
  assert back.keys() == h.keys()
  np.testing.assert_array_equal(back.steps, h.steps)
  for k in h.keys():  # noqa: SIM118 (a method, not a dict)
    np.testing.assert_array_equal(back.series(k), h.series(k), err_msg=k)
    np.testing.assert_array_equal(back._present(k), h._present(k), err_msg=k)


def test_history_files_are_plain(tmp_path):
  h = optaxclip.StatsHistory()
  h.append(0, loss=0.5, g=np.nan)
  h.append(1, loss=0.25)
  h.to_jsonl(tmp_path / "h.jsonl")
  lines = (tmp_path / "h.jsonl").read_text().splitlines()
  assert [json.loads(x) for x in lines] == [
    {"step": 0, "loss": 0.5, "g": "nan"},
    {"step": 1, "loss": 0.25},
  ]
  h.to_csv(tmp_path / "h.csv")
  text = (tmp_path / "h.csv").read_text().splitlines()
  assert text == ["step,loss,g", "0,0.5,nan", "1,0.25,"]
  (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
  with pytest.raises(ValueError, match="step"):
    optaxclip.StatsHistory.from_csv(tmp_path / "bad.csv")


def test_history_accepts_stats_returned_by_a_jitted_step():
  tx = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.sgd(0.1))
  params = jnp.zeros(2)

  @jax.jit
  def step(state, g):
    _, state = tx.update(g, state, params)
    return state, optaxclip.stats(state)

  state = tx.init(params)
  h = optaxclip.StatsHistory()
  state, s = step(state, jnp.array([3.0, 4.0]))
  h.append(jnp.asarray(7), s)
  assert h.series("clip_by_global_norm/clipped")[0] == 1.0
  np.testing.assert_array_equal(h.steps, [7])


# ---------------------------------------------------------------------------
# suggest_threshold
# ---------------------------------------------------------------------------


def test_suggest_mean_multiple_percentile_mean_std_on_a_known_sample():
  norms = np.arange(1.0, 101.0)  # mean 50.5, population std sqrt(833.25)
  s = optaxclip.suggest_threshold(norms, "mean_multiple", factor=1.5)
  assert isinstance(s, optaxclip.ThresholdSuggestion)
  assert s.value == pytest.approx(75.75)
  assert s.clip_fraction == pytest.approx(0.25)  # 76..100
  assert s.n == 100 and s.method == "mean_multiple" and s.rule == "1.5 x mean"

  s = optaxclip.suggest_threshold(norms, "percentile", p=10)
  assert s.value == pytest.approx(np.percentile(norms, 10))  # 10.9
  assert s.clip_fraction == pytest.approx(0.9)

  s = optaxclip.suggest_threshold(norms, "mean_std", k=1)
  assert s.value == pytest.approx(50.5 + math.sqrt(833.25))
  assert s.clip_fraction == pytest.approx(0.21)  # 80..100


def test_suggest_on_known_distributions():
  rng = np.random.default_rng(0)
  expo = rng.exponential(2.0, 200_000)
  s = optaxclip.suggest_threshold(expo, factor=2.0)
  assert s.value == pytest.approx(4.0, rel=0.01)
  assert s.clip_fraction == pytest.approx(math.exp(-2), abs=0.003)
  normal = rng.normal(10.0, 1.0, 200_000)
  s = optaxclip.suggest_threshold(normal, "mean_std", k=2.0)
  assert s.value == pytest.approx(12.0, abs=0.02)
  assert s.clip_fraction == pytest.approx(0.02275, abs=0.002)
  s = optaxclip.suggest_threshold(normal, "percentile", p=97.5)
  assert s.value == pytest.approx(11.96, abs=0.02)
  assert s.clip_fraction == pytest.approx(0.025, abs=1e-4)


def test_suggest_ignores_nonfinite_and_handles_per_layer_and_all():
  norms = np.array([1.0, 2.0, np.nan, 3.0, np.inf])
  s = optaxclip.suggest_threshold(norms, factor=1.0)
  assert s.value == pytest.approx(2.0) and s.n == 3
  assert s.clip_fraction == pytest.approx(1 / 3)
  every = optaxclip.suggest_threshold(norms, "all")
  assert list(every) == ["mean_multiple", "percentile", "mean_std"]
  per = optaxclip.suggest_threshold(
    {"a": [1.0, 1.0], "b": np.full((2, 2), 4.0)}, factor=2.0
  )
  assert per["a"].value == 2.0 and per["b"].value == 8.0
  per_all = optaxclip.suggest_threshold({"a": [1.0, 3.0]}, "all")
  assert per_all["a"]["percentile"].value == pytest.approx(1.2)
  assert "would clip" in str(per_all["a"]["mean_std"])


def test_suggest_errors():
  with pytest.raises(ValueError, match="unknown method"):
    optaxclip.suggest_threshold([1.0], "median")
  with pytest.raises(ValueError, match="no finite norm"):
    optaxclip.suggest_threshold([np.nan])
  with pytest.raises(ValueError, match="for 'b'"):
    optaxclip.suggest_threshold({"a": [1.0], "b": []})
  with pytest.raises(ValueError, match="`p`"):
    optaxclip.suggest_threshold([1.0], "percentile", p=101)
  with pytest.raises(ValueError, match="`factor`"):
    optaxclip.suggest_threshold([1.0], factor=0)


# ---------------------------------------------------------------------------
# calibrate
# ---------------------------------------------------------------------------


def _linear_problem():
  x = jax.random.normal(jax.random.key(0), (32, 3))
  batch = {"x": x, "y": x @ jnp.array([1.0, -2.0, 0.5])}

  def loss(params, batch):
    pred = batch["x"] @ params["dense"]["w"] + params["dense"]["b"]
    return jnp.mean((pred - batch["y"]) ** 2)

  params = {"dense": {"w": jnp.zeros(3), "b": jnp.zeros(())}, "s": jnp.ones(2)}
  return jax.grad(loss), params, batch


def test_calibrate_records_the_norms_of_a_plain_adam_warmup():
  grad_fn, params, batch = _linear_problem()
  report = optaxclip.calibrate(
    grad_fn, params, itertools.repeat(batch), n_steps=5
  )
  assert report.n_steps == 5 and report.global_norms.shape == (5,)
  assert set(report.layer_norms) == {"dense", "s"}
  # Reference: the same warm-up done by hand in float64 NumPy terms.
  opt = optax.adam(1e-4)
  p, st = params, opt.init(params)
  for t in range(5):
    g = grad_fn(p, batch)
    want = _np_norm(jax.tree.leaves(g), 2)
    np.testing.assert_allclose(report.global_norms[t], want, rtol=1e-5)
    np.testing.assert_allclose(
      report.layer_norms["dense"][t],
      _np_norm(jax.tree.leaves(g["dense"]), 2),
      rtol=1e-5,
    )
    u, st = opt.update(g, st, p)
    p = optax.apply_updates(p, u)
  np.testing.assert_array_equal(report.layer_norms["s"], 0.0)
  assert set(report.suggestions) == {"mean_multiple", "percentile", "mean_std"}
  s = report.suggestions["mean_multiple"]
  assert s.value == pytest.approx(5 * report.global_norms.mean())
  assert set(report.layer_suggestions) == {"dense", "s"}
  kinds = [f.kind for f in report.findings]
  assert kinds == ["zero"] and report.findings[0].paths == ("s",)
  text = str(report)
  assert "5 warm-up steps" in text and "5 x mean" in text and "'s'" in text
  assert len(report.history) == 5


def test_calibrate_skips_nonfinite_steps_and_stops_with_the_batches():
  grad_fn, params, batch = _linear_problem()
  bad = dict(batch, y=batch["y"].at[0].set(jnp.nan))
  batches = [batch, bad, batch]
  report = optaxclip.calibrate(
    grad_fn, params, batches, n_steps=10, optimizer=optax.sgd(0.01)
  )
  assert report.n_steps == 3
  g = report.global_norms
  assert np.isnan(g[1]) and np.isfinite(g[[0, 2]]).all()
  # The NaN step was not applied: step 2 sees the parameters after step 0.
  p1 = optax.apply_updates(
    params, jax.tree.map(lambda x: -0.01 * x, grad_fn(params, batch))
  )
  want = _np_norm(jax.tree.leaves(grad_fn(p1, batch)), 2)
  np.testing.assert_allclose(g[2], want, rtol=1e-5)
  assert "nonfinite" in [f.kind for f in report.findings]
  assert "1 non-finite steps" in str(report)


def test_calibrate_records_clippers_in_the_optimizer_and_validates():
  grad_fn, params, batch = _linear_problem()
  opt = optax.chain(optaxclip.clip_by_global_norm(1e-6), optax.adam(1e-3))
  report = optaxclip.calibrate(
    grad_fn, params, itertools.repeat(batch), n_steps=12, optimizer=opt
  )
  assert "clip_by_global_norm/clipped" in report.history
  assert "tight" in [f.kind for f in optaxclip.diagnose(report)]
  with pytest.raises(ValueError, match="n_steps"):
    optaxclip.calibrate(grad_fn, params, [batch], n_steps=0)
  with pytest.raises(ValueError, match="no batch"):
    optaxclip.calibrate(grad_fn, params, [], n_steps=3)


def test_calibrate_nnx_recipe():
  nnx = pytest.importorskip("flax.nnx", exc_type=ModuleNotFoundError)
  model = nnx.Sequential(
    nnx.Linear(3, 8, rngs=nnx.Rngs(0)),
    nnx.Linear(8, 1, rngs=nnx.Rngs(1)),
  )
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  x = jax.random.normal(jax.random.key(1), (16, 3))
  batch = {"x": x, "y": x.sum(-1, keepdims=True)}

  def grad_fn(params, batch):
    def loss_fn(params):
      m = nnx.merge(graphdef, params, rest)
      return jnp.mean((m(batch["x"]) - batch["y"]) ** 2)

    return jax.grad(loss_fn)(params)

  report = optaxclip.calibrate(
    grad_fn, params, itertools.repeat(batch), n_steps=4
  )
  assert set(report.layer_norms) == {"layers/0", "layers/1"}
  assert np.isfinite(report.global_norms).all()


# ---------------------------------------------------------------------------
# diagnose
# ---------------------------------------------------------------------------


def _history_of(norms_by_path, n=60, clippers=None, name="monitor_norms"):
  """A history whose monitor records ``norms_by_path[path](t)``."""
  h = optaxclip.StatsHistory()
  for t in range(n):
    stats = {name: {"norms": {p: f(t) for p, f in norms_by_path.items()}}}
    for cname, fields in (clippers or {}).items():
      stats[cname] = {k: f(t) for k, f in fields.items()}
    h.append(t, stats)
  return h


def _const(value):
  return lambda t: value


def _noise(seed=0):
  rng = np.random.default_rng(seed)
  return lambda t: float(rng.lognormal(0.0, 0.3))


def test_diagnose_healthy_history_has_no_findings():
  h = _history_of({f"layers_{i}/kernel": _noise(i) for i in range(5)})
  assert optaxclip.diagnose(h) == []


def test_diagnose_exploding_and_vanishing_over_time():
  h = _history_of(
    {"up/kernel": lambda t: 1.15**t, "down/kernel": lambda t: 0.85**t}
    | {"ok": _noise()}
  )
  found = {f.kind: f for f in optaxclip.diagnose(h)}
  assert set(found) == {"exploding", "vanishing"}
  assert found["exploding"].paths == ("up/kernel",)
  assert found["vanishing"].paths == ("down/kernel",)
  assert "'up/kernel'" in str(found["exploding"])
  assert "x1.15 per step" in str(found["exploding"])
  assert "grew geometrically" in found["exploding"].message


@pytest.mark.parametrize("kind", ["vanishing", "exploding"])
def test_diagnose_geometric_trend_with_depth(kind):
  ratio = 0.3 if kind == "vanishing" else 1 / 0.3
  # Vanishing: the first layers (index 0) get the smallest gradients.
  paths = {
    f"blocks/layers_{i}/kernel": _const(ratio ** (8 - i)) for i in range(9)
  }
  paths["blocks/head/kernel"] = lambda t: 1.0
  h = _history_of(paths)
  findings = optaxclip.diagnose(h)
  assert [f.kind for f in findings] == [kind]
  f = findings[0]
  assert f.paths[0] == "blocks/layers_0/kernel"
  assert f.paths[-1] == "blocks/layers_8/kernel"
  assert "'blocks/layers_{i}/kernel' (i = 0..8)" in f.message
  assert "If the index counts from the input" in f.message


def test_diagnose_depth_with_explicit_order():
  order = ["embed", "mid", "deep", "out"]
  h = _history_of({p: _const(10.0**i) for i, p in enumerate(order)})
  (f,) = optaxclip.diagnose(h, order=order)
  assert f.kind == "vanishing" and f.paths == tuple(order)
  assert "vanish on their way back" in f.message
  (f,) = optaxclip.diagnose(h, order=order[::-1])
  assert f.kind == "exploding"
  assert optaxclip.diagnose(h) == []  # no indexed family without `order`


def test_diagnose_zero_gradients():
  h = _history_of(
    {
      "embed/table": lambda t: 0.0,
      "gate": lambda t: 0.0 if t % 3 == 0 else 1.0,
      "ok": _noise(),
    }
  )
  findings = optaxclip.diagnose(h)
  assert [f.kind for f in findings] == ["zero", "zero"]
  assert findings[0].paths == ("embed/table",)
  assert "every recorded step" in findings[0].message
  assert findings[1].paths == ("gate",)
  assert "'gate' at 20 of 60" in findings[1].message


def test_diagnose_nonfinite_names_the_first_paths():
  def blows_up(t0):
    return lambda t: np.nan if t >= t0 else 1.0

  h = _history_of(
    {"decoder/out": blows_up(30), "decoder/in": blows_up(31), "ok": _noise()}
  )
  (f,) = [f for f in optaxclip.diagnose(h) if f.kind == "nonfinite"]
  assert f.paths == ("decoder/out",)
  assert "at 30 of 60 recorded steps, first at step 30" in f.message
  assert "2 paths in all" in f.message
  assert optaxclip.diagnose(h)[0].kind == "nonfinite"  # most severe first


def test_diagnose_nonfinite_steps_of_clippers_come_from_their_count():
  # clip_by_value keeps NaN norms by design; only counted steps are bad.
  tx = optax.chain(optaxclip.clip_by_value(1.0), optax.sgd(0.1))
  params = jnp.zeros(2)
  state = tx.init(params)
  h = optaxclip.StatsHistory()
  for t in range(12):
    g = jnp.array([jnp.nan if t == 7 else 0.5, 0.25])
    _, state = tx.update(g, state, params)
    h.append(t, optaxclip.stats(state))
  findings = [f for f in optaxclip.diagnose(h) if f.kind == "nonfinite"]
  assert len(findings) == 1
  assert "at 1 of 12 recorded steps, first at step 7" in findings[0].message


def test_diagnose_nonfinite_survives_a_jsonl_round_trip(tmp_path):
  h = _history_of({"a": lambda t: np.inf if t == 5 else 1.0})
  h.to_jsonl(tmp_path / "h.jsonl")
  back = optaxclip.StatsHistory.from_jsonl(tmp_path / "h.jsonl")
  assert optaxclip.diagnose(back) == optaxclip.diagnose(h)
  assert optaxclip.diagnose(back)[0].kind == "nonfinite"


@pytest.mark.parametrize(
  "rate, kind", [(1.0, "tight"), (0.0, "loose"), (0.3, None)]
)
def test_diagnose_clip_rates(rate, kind):
  rng = np.random.default_rng(0)
  clip = {
    "clip_by_global_norm": {
      "norm_before": lambda t: 2.0,
      "threshold": lambda t: 1.0 if rate else 100.0,
      "clipped": lambda t: float(rng.random() < rate),
    },
    # A skipping wrapper that never skipped is not a "loose" clipper.
    "skip_nonfinite": {
      "norm_before": lambda t: 2.0,
      "clipped": lambda t: 0.0,
      "skip_count": lambda t: 0.0,
    },
  }
  h = _history_of({"a": _noise()}, clippers=clip)
  findings = optaxclip.diagnose(h)
  assert [f.kind for f in findings] == ([kind] if kind else [])
  if kind:
    assert findings[0].paths == ("clip_by_global_norm",)
    assert "clip_by_global_norm clipped" in findings[0].message
    assert "median norm 2" in findings[0].message


def test_diagnose_on_real_training_statistics():
  """A monitored run whose gradient is scaled up 20% each step explodes."""
  tx = optax.chain(optaxclip.monitor_norms(by="layer"), optax.sgd(0.0))
  params = {"a": {"w": jnp.ones(3)}, "b": {"w": jnp.ones(2)}}
  state = tx.init(params)
  update = jax.jit(tx.update)
  h = optaxclip.StatsHistory()
  for t in range(40):
    g = {"a": {"w": jnp.ones(3) * 1.2**t}, "b": {"w": jnp.ones(2)}}
    _, state = update(g, state, params)
    h.append(t, optaxclip.stats(state))
  (f,) = optaxclip.diagnose(h)
  assert f.kind == "exploding" and "a" in f.paths
  assert "the global norm (monitor_norms)" in f.paths


def test_diagnose_errors_and_finding_str():
  with pytest.raises(TypeError, match="StatsHistory"):
    optaxclip.diagnose({"loss": [1.0]})
  with pytest.raises(ValueError, match="growth"):
    optaxclip.diagnose(optaxclip.StatsHistory(), growth=0.5)
  f = optaxclip.Finding("zero", ("a",), "'a' had a zero gradient.")
  assert str(f) == "'a' had a zero gradient."


def test_natural_order_of_paths():
  paths = ["layers_10", "layers_2", "layers_1"]
  assert sorted(paths, key=_diagnostics._natural_key) == [
    "layers_1",
    "layers_2",
    "layers_10",
  ]


# ---------------------------------------------------------------------------
# Hardening (issue 18, items 5, 6, 9, 10): names with "/", nonsense input
# ---------------------------------------------------------------------------

SLASH_NAMES = ["enc/clip", "a/b/c", "enc/threshold/x", "norms"]


@pytest.mark.parametrize("name", SLASH_NAMES)
@pytest.mark.parametrize("source", ["append", "csv", "jsonl"])
def test_diagnose_and_plots_read_every_name_that_name_accepts(
  name, source, tmp_path
):
  """A clipper whose name holds "/" is reported under that name."""
  tx = optax.chain(
    optaxclip.clip_by_global_norm(0.1, name=name),
    optaxclip.monitor_norms(by="leaf", name="mon/x"),
    optax.sgd(0.1),
  )
  params = {"enc": {"w": jnp.ones(2)}}
  state = tx.init(params)
  h = optaxclip.StatsHistory()
  for t in range(20):
    _, state = tx.update({"enc": {"w": jnp.array([3.0, 4.0])}}, state)
    h.append(t, optaxclip.stats(state))
  if source != "append":
    path = tmp_path / f"h.{source}"
    getattr(h, f"to_{source}")(path)
    h = getattr(optaxclip.StatsHistory, f"from_{source}")(path)
  if source != "append" and name == "enc/threshold/x":
    # A file keeps no names: a segment that is a statistics field ends the
    # name. Documented in StatsHistory.
    return
  assert set(h._clippers()) == {name}
  assert h._monitors() == ["mon/x"]
  (f,) = optaxclip.diagnose(h)
  assert f.kind == "tight" and f.paths == (name,)
  assert f.message.startswith(f"{name} clipped 100.0% of 20")


@pytest.mark.parametrize(
  "norms", [[-1.0, -2.0, -3.0], [1.0, 2.0, -0.5], {"a": [1.0], "b": [-1.0]}]
)
@pytest.mark.parametrize("method", ["mean_multiple", "percentile", "all"])
def test_suggest_rejects_negative_norms(norms, method):
  with pytest.raises(ValueError, match="negative"):
    optaxclip.suggest_threshold(norms, method)


def test_suggestions_are_valid_thresholds_of_a_clipper():
  """Whatever the (valid) norms, every suggestion builds a clipper."""
  for norms in ([0.0, 0.0], [1e-30, 2.0], [0.0, 5.0, 1e30]):
    for s in optaxclip.suggest_threshold(norms, "all").values():
      assert s.value >= 0
      optaxclip.clip_by_global_norm(s.value)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"min_steps": -1}, "min_steps"),
    ({"min_steps": 0}, "min_steps"),
    ({"min_steps": 2.5}, "min_steps"),
    ({"clip_low": 0.9, "clip_high": 0.1}, "below"),
    ({"clip_low": 0.5, "clip_high": 0.5}, "below"),
    ({"clip_low": -0.1}, "clip_low"),
    ({"clip_high": 1.5}, "clip_high"),
    ({"clip_low": math.nan}, "clip_low"),
    ({"order": ["a", "no/such/path"]}, "no/such/path"),
    ({"order": ["a", "b", "a"]}, "repeats"),
    ({"order": "a"}, "sequence"),
  ],
)
def test_diagnose_rejects_nonsense_arguments(kwargs, match):
  h = _history_of({"a": _noise(), "b": _noise()})
  with pytest.raises((ValueError, TypeError), match=match):
    optaxclip.diagnose(h, **kwargs)


def test_diagnose_order_suggests_the_closest_path_and_needs_a_monitor():
  h = _history_of({"enc/kernel": _noise(), "dec/kernel": _noise()})
  with pytest.raises(ValueError, match="did you mean 'enc/kernel'"):
    optaxclip.diagnose(h, order=["enc/kernal", "dec/kernel"])
  empty = optaxclip.StatsHistory()
  empty.append(0, loss=1.0)
  with pytest.raises(ValueError, match="no per-path norms"):
    optaxclip.diagnose(empty, order=["enc/kernel"])


@pytest.mark.parametrize(
  "step", [1.7, -0.5, math.nan, math.inf, "3", None, np.ones(2), True]
)
def test_history_step_must_be_an_integer(step):
  h = optaxclip.StatsHistory()
  with pytest.raises(ValueError, match="integer"):
    h.append(step, loss=1.0)
  assert len(h) == 0


def test_history_step_accepts_integers_and_whole_numbers():
  h = optaxclip.StatsHistory()
  for step in (0, np.int64(1), jnp.int32(2), 3.0, np.float32(4.0)):
    h.append(step, loss=1.0)
  np.testing.assert_array_equal(h.steps, [0, 1, 2, 3, 4])


@pytest.mark.parametrize(
  "lines, match",
  [
    (['{"step": 0, "loss": 1.0}', '{"loss": 2.0}'], "line 2: .*'step'"),
    (['{"step": 0}', "", "not json"], "line 3: not JSON"),
    (['{"step": 1.5, "loss": 1.0}'], "line 1: `step` must be an integer"),
    (['{"step": 0, "loss": "abc"}'], "line 1: the value of 'loss'"),
    (['{"step": 0, "loss": [1, 2]}'], "line 1: the value of 'loss'"),
    (["[1, 2]"], "line 1: expected an object"),
  ],
)
def test_history_from_jsonl_errors_name_the_line(tmp_path, lines, match):
  path = tmp_path / "h.jsonl"
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=match):
    optaxclip.StatsHistory.from_jsonl(path)


@pytest.mark.parametrize(
  "text, match",
  [
    ("step,loss\n0,1.0\nx,2.0\n", "line 3: the value of 'step'"),
    ("step,loss\n0,abc\n", "line 2: the value of 'loss'"),
    ("step,loss\n0.5,1.0\n", "line 2: `step` must be an integer"),
    ("step,loss\n0,1.0,7\n", "line 2: 3 cells"),
  ],
)
def test_history_from_csv_errors_name_the_line(tmp_path, text, match):
  path = tmp_path / "h.csv"
  path.write_text(text)
  with pytest.raises(ValueError, match=match):
    optaxclip.StatsHistory.from_csv(path)


def test_calibrate_with_only_nonfinite_gradients_returns_a_report():
  grad_fn, params, batch = _linear_problem()
  bad = dict(batch, y=batch["y"].at[0].set(jnp.nan))
  report = optaxclip.calibrate(grad_fn, params, [bad] * 4, n_steps=4)
  assert report.n_steps == 4
  assert np.isnan(report.global_norms).all()
  assert report.suggestions == {}
  text = str(report)
  assert "non-finite at all 4 warm-up steps" in text
  assert "no finite value" in text
  assert "nonfinite" in [f.kind for f in report.findings]
