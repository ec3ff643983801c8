# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of clip_by_layer: path rules, prefix trees, group norms."""

from __future__ import annotations

import math

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optaxclip
from optaxclip import _paths
from optaxclip import _stats


def f64(x):
  return np.asarray(x, np.float64)


def np_norm(leaves, ord=2):
  a = np.concatenate([np.abs(f64(x)).ravel() for x in leaves])
  if ord == "inf":
    return float(a.max(initial=0.0))
  return float(a.sum()) if ord == 1 else float(np.sqrt(np.sum(a**2)))


def factor(norm, t):
  return t / norm if norm > t else 1.0


def update(tx, grads, params=None):
  u, state = tx.update(grads, tx.init(grads if params is None else params))
  return u, _stats.unnamed(state.stats)


def paths_and_leaves(tree):
  return dict(zip(_paths.leaf_paths(tree), jax.tree.leaves(tree)))


def grads_tree(rng):
  return {
    "enc": {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)},
    "dec": {
      "w": rng.standard_normal((4, 2)) * 10,
      "b": rng.standard_normal(2),
    },
    "head": [rng.standard_normal(3), rng.standard_normal(())],
  }


@pytest.fixture
def grads(rng):
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads_tree(rng))


# ---------------------------------------------------------------------------
# Path rules
# ---------------------------------------------------------------------------


def expected_tensor_norm(grads, threshold_of_path):
  out = {}
  for path, x in paths_and_leaves(grads).items():
    out[path] = f64(x) * factor(np_norm([x]), threshold_of_path(path))
  return out


def test_rules_first_match_wins(grads):
  rules = {"**/b": 0.1, "enc/**": 1.0, "dec/*": 2.0, "head": 0.5}
  u, s = update(optaxclip.clip_by_layer(rules), grads)

  def threshold(path):
    if path.endswith("/b"):
      return 0.1  # first rule, though enc/** and dec/* match too
    return {"enc": 1.0, "dec": 2.0, "head": 0.5}[path.split("/")[0]]

  want = expected_tensor_norm(grads, threshold)
  got = paths_and_leaves(u)
  assert list(got) == list(want)
  for p in want:
    np.testing.assert_allclose(got[p], want[p], rtol=1e-6, err_msg=p)
  n_clipped = sum(
    np_norm([x]) > threshold(p) for p, x in paths_and_leaves(grads).items()
  )
  assert float(s.clipped) == pytest.approx(n_clipped / 6)
  assert np.isnan(float(s.threshold))  # thresholds differ per leaf


def test_sequence_of_pairs_and_default(grads):
  rules = [("dec/w", 0.25), ("**/w", 0.5)]
  u, _ = update(optaxclip.clip_by_layer(rules, default=1e-3), grads)

  def threshold(path):
    return {"dec/w": 0.25, "enc/w": 0.5}.get(path, 1e-3)

  want = expected_tensor_norm(grads, threshold)
  for p, x in paths_and_leaves(u).items():
    np.testing.assert_allclose(x, want[p], rtol=1e-6, err_msg=p)


def test_star_stays_in_one_segment(grads):
  grads = {"enc": {"inner": {"w": grads["enc"]["w"]}, "b": grads["enc"]["b"]}}
  # '*' cannot span enc/inner/w: the rule matches nothing.
  with pytest.raises(ValueError, match=r"\['enc/\*/\*/w'\] match no"):
    update(optaxclip.clip_by_layer({"enc/*/*/w": 1.0, "enc/*/w": 1.0}), grads)
  u, _ = update(
    optaxclip.clip_by_layer({"enc/*/w": 0.1}, default=math.inf), grads
  )
  np.testing.assert_allclose(np_norm([u["enc"]["inner"]["w"]]), 0.1, 1e-6)
  chex.assert_trees_all_equal(u["enc"]["b"], grads["enc"]["b"])
  u, _ = update(optaxclip.clip_by_layer({"**/w": 0.1, "**": math.inf}), grads)
  np.testing.assert_allclose(np_norm([u["enc"]["inner"]["w"]]), 0.1, 1e-6)


def test_unmatched_rules_and_paths_are_listed(grads):
  with pytest.raises(ValueError, match=r"\['nope/\*\*', 'x'\] match no"):
    update(
      optaxclip.clip_by_layer({"enc": 1.0, "nope/**": 1.0, "x": 2.0}), grads
    )
  with pytest.raises(ValueError, match="no rule matches 'dec/b', 'dec/w'"):
    update(optaxclip.clip_by_layer({"enc": 1.0, "head": 2.0}), grads)
  # Reported at init when init gets the parameters...
  tx = optaxclip.clip_by_layer({"enc": 1.0})
  with pytest.raises(ValueError, match="no rule matches"):
    tx.init(grads)
  # ...and at the first update otherwise.
  state = tx.init(None)
  with pytest.raises(ValueError, match="no rule matches"):
    tx.update(grads, state)


def test_nnx_lstm_paths():
  class Seq2Seq(nnx.Module):
    def __init__(self, rngs):
      self.encoder = nnx.RNN(nnx.LSTMCell(3, 4, rngs=rngs))
      self.out = nnx.Linear(4, 2, rngs=rngs)

  params = nnx.state(Seq2Seq(nnx.Rngs(0)), nnx.Param)
  paths = _paths.leaf_paths(params)
  assert "encoder/cell/ii/kernel" in paths and "out/kernel" in paths
  rng = np.random.default_rng(0)
  grads = jax.tree.map(
    lambda p: jnp.asarray(rng.standard_normal(p.shape) * 3, p.dtype), params
  )
  rules = {
    "encoder/cell/i?/kernel": 0.1,  # ii, ig, io; not if_
    "encoder/cell/h*/bias": 0.01,
    "encoder/**": 1.0,
  }
  tx = optaxclip.clip_by_layer(rules, default=0.5)
  u, state = tx.update(grads, tx.init(params))
  assert jax.tree.structure(u) == jax.tree.structure(grads)

  def threshold(path):
    cell = path.split("/")[2] if path.startswith("encoder") else None
    if cell in ("ii", "ig", "io") and path.endswith("kernel"):
      return 0.1
    if cell and cell.startswith("h") and path.endswith("bias"):
      return 0.01
    return 1.0 if cell else 0.5

  want = expected_tensor_norm(grads, threshold)
  for p, x in paths_and_leaves(u).items():
    np.testing.assert_allclose(x, want[p], rtol=1e-5, err_msg=p)
  assert threshold("encoder/cell/if_/kernel") == 1.0
  assert "clip_by_layer" in optaxclip.stats(state)


# ---------------------------------------------------------------------------
# Prefix trees
# ---------------------------------------------------------------------------


def test_prefix_tree(grads):
  thresholds = {"enc": 1.0, "dec": {"w": 0.5, "b": 2.0}, "head": [0.1, 0.2]}
  u, _ = update(optaxclip.clip_by_layer(thresholds), grads)

  def threshold(path):
    top, rest = path.split("/", 1)
    if top == "enc":
      return 1.0
    if top == "dec":
      return {"w": 0.5, "b": 2.0}[rest]
    return [0.1, 0.2][int(rest)]

  want = expected_tensor_norm(grads, threshold)
  for p, x in paths_and_leaves(u).items():
    np.testing.assert_allclose(x, want[p], rtol=1e-6, err_msg=p)


def test_prefix_tree_group_norm(grads):
  u, s = update(
    optaxclip.clip_by_layer(
      {"enc": 0.5, "dec": {"w": 1.0, "b": 1.0}, "head": 1e6},
      strategy="group_norm",
    ),
    grads,
  )
  # {"dec": {"w": 1.0, "b": 1.0}} is two groups; {"enc": 0.5} is one.
  np.testing.assert_allclose(np_norm(jax.tree.leaves(u["enc"])), 0.5, 1e-6)
  for k in ("w", "b"):
    want = min(1.0, np_norm([grads["dec"][k]]))
    np.testing.assert_allclose(np_norm([u["dec"][k]]), want, rtol=1e-6)
  chex.assert_trees_all_equal(u["head"], grads["head"])
  assert float(s.clipped) == pytest.approx(
    np.mean(
      [np_norm(jax.tree.leaves(grads["enc"])) > 0.5]
      + [np_norm([grads["dec"][k]]) > 1.0 for k in ("w", "b")]
      + [False]
    )
  )


def test_mismatched_threshold_tree(grads):
  for bad in (
    {"enc": 1.0, "dec": {"w": 0.5, "q": 2.0}, "head": 1.0},
    {"enc": 1.0, "dec": 1.0, "head": [1.0, 2.0, 3.0]},
    {"enc": [1.0, 2.0], "dec": 1.0, "head": 1.0},
  ):
    with pytest.raises(ValueError, match="threshold tree does not match"):
      update(optaxclip.clip_by_layer(bad), grads)


# ---------------------------------------------------------------------------
# Group norms
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ord", [1, 2, "inf"])
def test_group_norm_clips_each_rule_jointly(grads, ord):
  rules = {"enc/**": 0.5, "**/b": 0.05}
  tx = optaxclip.clip_by_layer(
    rules, default=2.0, strategy="group_norm", ord=ord
  )
  u, s = update(tx, grads)
  by_path = paths_and_leaves(grads)
  groups = {
    "enc": ["enc/b", "enc/w"],
    "b": ["dec/b"],
    "rest": ["dec/w", "head/0", "head/1"],
  }
  thresholds = {"enc": 0.5, "b": 0.05, "rest": 2.0}
  got = paths_and_leaves(u)
  clipped = []
  for g, members in groups.items():
    n = np_norm([by_path[p] for p in members], ord)
    f = factor(n, thresholds[g])
    clipped.append(f < 1)
    for p in members:
      np.testing.assert_allclose(got[p], f64(by_path[p]) * f, rtol=1e-6)
  assert float(s.clipped) == pytest.approx(np.mean(clipped))
  np.testing.assert_allclose(
    s.norm_before, np_norm(list(by_path.values()), ord), rtol=1e-6
  )
  np.testing.assert_allclose(
    s.norm_after, np_norm(list(got.values()), ord), rtol=1e-5
  )


@hypothesis.given(
  t_enc=st.floats(0.0, 5.0), t_rest=st.floats(0.0, 5.0), seed=st.integers(0, 9)
)
def test_property_group_norm_bounds(t_enc, t_rest, seed):
  g = jax.tree.map(
    lambda x: jnp.asarray(x, jnp.float32),
    grads_tree(np.random.default_rng(seed)),
  )
  u, _ = _group_jit(g, jnp.float32(t_enc), jnp.float32(t_rest))
  enc = np_norm(jax.tree.leaves(u["enc"]))
  rest = np_norm(jax.tree.leaves({k: u[k] for k in ("dec", "head")}))
  assert enc <= np.float32(t_enc) * (1 + 1e-6) + 1e-30
  assert rest <= np.float32(t_rest) * (1 + 1e-6) + 1e-30
  # Each group is a positive multiple of its input: direction preserved.
  for key in ("enc", "dec"):
    x = np.concatenate([f64(v).ravel() for v in jax.tree.leaves(g[key])])
    y = np.concatenate([f64(v).ravel() for v in jax.tree.leaves(u[key])])
    c = float(x @ y / (x @ x))
    np.testing.assert_allclose(y, c * x, atol=1e-6 * np.abs(x).max())


@jax.jit
def _group_jit(g, t_enc, t_rest):
  # Traced thresholds in the rules: accepted and never branched on.
  tx = optaxclip.clip_by_layer(
    {"enc": t_enc}, default=t_rest, strategy="group_norm"
  )
  return update(tx, g)


# ---------------------------------------------------------------------------
# Arguments, schedules, non-finite values
# ---------------------------------------------------------------------------


def test_bad_arguments():
  with pytest.raises(ValueError, match=r"`thresholds\['enc'\]`"):
    optaxclip.clip_by_layer({"enc": -1.0})
  with pytest.raises(ValueError, match="`thresholds`"):
    optaxclip.clip_by_layer({"enc": {"w": math.nan}})
  with pytest.raises(ValueError, match="`default`"):
    optaxclip.clip_by_layer({"enc": 1.0}, default=-2.0)
  with pytest.raises(ValueError, match="unknown strategy='global'"):
    optaxclip.clip_by_layer({"enc": 1.0}, strategy="global")
  with pytest.raises(ValueError, match="unknown ord"):
    optaxclip.clip_by_layer({"enc": 1.0}, ord=3)
  with pytest.raises(ValueError, match="unknown nonfinite"):
    optaxclip.clip_by_layer({"enc": 1.0}, nonfinite="skip")


def test_schedules_per_rule(grads):
  sched = optax.linear_schedule(0.1, 1.1, transition_steps=1)
  tx = optaxclip.clip_by_layer({"enc/w": sched}, default=math.inf)
  state = tx.init(grads)
  for want in (0.1, 1.1):
    u, state = tx.update(grads, state)
    np.testing.assert_allclose(np_norm([u["enc"]["w"]]), want, rtol=1e-6)


def test_nonfinite_policies(grads):
  bad = {**grads, "head": [jnp.asarray([1.0, jnp.nan, 0.0]), grads["head"][1]]}
  u, s = update(optaxclip.clip_by_layer({"enc": 1.0}, default=1.0), bad)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, bad))
  assert int(s.nonfinite_count) == 1
  u, _ = update(
    optaxclip.clip_by_layer({"enc": 1.0}, default=1.0, nonfinite="propagate"),
    bad,
  )
  assert np.all(np.isnan(f64(u["head"][0])))
  np.testing.assert_allclose(np_norm([u["enc"]["w"]]), 1.0, rtol=1e-6)
  tx = optaxclip.clip_by_layer({"enc": 1.0}, default=1.0, nonfinite="error")
  with pytest.raises(FloatingPointError, match="clip_by_layer"):
    update(tx, bad)


def test_complex_and_integer_leaves():
  g = {"z": jnp.asarray([3 + 4j, 0j], jnp.complex64), "r": jnp.ones(2)}
  u, _ = update(optaxclip.clip_by_layer({"z": 1.0}, default=10.0), g)
  np.testing.assert_allclose(u["z"], [0.6 + 0.8j, 0j], rtol=1e-6)
  assert u["z"].dtype == jnp.complex64
  with pytest.raises(TypeError, match="int32"):
    update(optaxclip.clip_by_layer({"i": 1.0}), {"i": jnp.arange(3)})
