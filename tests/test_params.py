# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of weight clipping: clip_params and max_norm_constraint."""

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

import optaxclip
from optaxclip import _stats

SHAPES = {"w": (3, 4), "b": (4,), "s": (), "k": (2, 2, 3)}
UNIT_AXES = {0: (), 1: (0,), 2: (0,), 3: (0,)}


def f64(x):
  return np.asarray(x, np.float64)


def make(rng, scale=1.0, dtype=np.float32):
  return {
    k: jnp.asarray(scale * rng.standard_normal(s), dtype)
    for k, s in SHAPES.items()
  }


def run(tx, updates, params):
  u, state = tx.update(updates, tx.init(params), params)
  return u, _stats.unnamed(state.stats)


@jax.jit
def clip_params_jit(updates, params, lo, hi):
  return run(optaxclip.clip_params(lo, hi), updates, params)


@jax.jit
def max_norm_jit(updates, params, c):
  return run(optaxclip.max_norm_constraint(c), updates, params)


def unit_norms(x, axes):
  a = np.abs(np.asarray(x).astype(np.complex128))  # complex-safe
  return np.sqrt(np.sum(a**2, axis=axes, keepdims=True))


# ---------------------------------------------------------------------------
# clip_params
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("lo, hi", [(-0.5, 0.5), (-0.01, 0.01), (0.0, 2.0)])
def test_clip_params_matches_numpy(rng, lo, hi):
  params, updates = make(rng, 0.5), make(rng)
  u, s = clip_params_jit(updates, params, jnp.float32(lo), jnp.float32(hi))
  new = {k: f64(params[k]) + f64(updates[k]) for k in SHAPES}
  want = {k: np.clip(new[k], lo, hi) - f64(params[k]) for k in SHAPES}
  chex.assert_trees_all_close(jax.tree.map(f64, u), want, atol=1e-6)
  chex.assert_trees_all_equal_dtypes(u, updates)
  flat = np.concatenate([v.ravel() for v in new.values()])
  assert float(s.clipped) == pytest.approx(np.mean((flat < lo) | (flat > hi)))
  assert np.isnan(float(s.norm_before)) and np.isnan(float(s.scale))
  applied = optax.apply_updates(params, u)
  for x in jax.tree.leaves(applied):
    assert np.all(f64(x) >= lo - 1e-6) and np.all(f64(x) <= hi + 1e-6)


def test_clip_params_hand_computed_wgan():
  tx = optax.chain(optax.sgd(1.0), optaxclip.clip_params(-0.01, 0.01))
  params = jnp.asarray([0.0, 0.005, -0.009])
  u, _ = tx.update(jnp.asarray([-1.0, 0.001, 0.5]), tx.init(params), params)
  chex.assert_trees_all_close(
    optax.apply_updates(params, u), jnp.asarray([0.01, 0.004, -0.01])
  )


@hypothesis.given(
  seed=st.integers(0, 2**16),
  lo=st.floats(-2.0, 2.0),
  width=st.floats(0.0, 3.0),
  scale=st.sampled_from([0.01, 1.0, 100.0]),
)
def test_property_clip_params(seed, lo, width, scale):
  rng = np.random.default_rng(seed)
  params, updates = make(rng), make(rng, scale)
  lo32, hi32 = np.float32(lo), np.float32(lo + width)
  u, _ = clip_params_jit(updates, params, lo32, hi32)
  for k in SHAPES:
    w, du, got = f64(params[k]), f64(updates[k]), f64(u[k])
    new = w + got
    slack = 4e-7 * np.maximum(np.abs(w), abs(lo) + width) + 1e-30
    assert np.all(new >= lo32 - slack) and np.all(new <= hi32 + slack)
    # Inside the box the update is unchanged (up to float32 rounding of
    # (w + u) - w); outside it lands on the nearer bound.
    inside = (w + du >= lo32) & (w + du <= hi32)
    np.testing.assert_allclose(got[inside], du[inside], atol=slack.max())
    np.testing.assert_allclose(new[w + du > hi32], hi32, atol=slack.max())
    np.testing.assert_allclose(new[w + du < lo32], lo32, atol=slack.max())


def test_clip_params_degenerate_bounds(rng):
  params, updates = make(rng), make(rng)
  u, s = clip_params_jit(updates, params, jnp.float32(0.3), jnp.float32(0.3))
  for x in jax.tree.leaves(optax.apply_updates(params, u)):
    np.testing.assert_allclose(x, 0.3, atol=1e-6)
  assert float(s.clipped) == 1.0
  u, s = run(optaxclip.clip_params(-math.inf, math.inf), updates, params)
  chex.assert_trees_all_close(u, updates, atol=1e-6)
  assert float(s.clipped) == 0.0


def test_clip_params_nonfinite_policies(rng):
  params, updates = make(rng), make(rng)
  updates["w"] = updates["w"].at[0, 0].set(jnp.nan).at[1, 1].set(jnp.inf)
  u, s = run(optaxclip.clip_params(-1.0, 1.0), updates, params)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, updates))
  assert int(s.nonfinite_count) == 1 and float(s.clipped) == 1.0
  u, s = run(
    optaxclip.clip_params(-1.0, 1.0, nonfinite="propagate"), updates, params
  )
  assert np.isnan(float(u["w"][0, 0]))
  new = float(params["w"][1, 1] + u["w"][1, 1])
  assert new == pytest.approx(1.0)  # Inf is clipped into range
  with pytest.raises(FloatingPointError, match="clip_params"):
    run(optaxclip.clip_params(-1.0, 1.0, nonfinite="error"), updates, params)


def test_clip_params_arguments(rng):
  with pytest.raises(ValueError, match="larger than max_value"):
    optaxclip.clip_params(1.0, -1.0)
  for bad in (math.nan, np.ones(2), "a"):
    with pytest.raises(ValueError, match="`min_value`"):
      optaxclip.clip_params(bad, 1.0)
    with pytest.raises(ValueError, match="`max_value`"):
      optaxclip.clip_params(-1.0, bad)
  with pytest.raises(ValueError, match="unknown nonfinite"):
    optaxclip.clip_params(-1.0, 1.0, nonfinite="nope")
  params, updates = make(rng), make(rng)
  tx = optaxclip.clip_params(-1.0, 1.0)
  with pytest.raises(ValueError, match="clip_params needs the parameters"):
    tx.update(updates, tx.init(params))
  z = {"z": jnp.ones(2, jnp.complex64)}
  with pytest.raises(TypeError, match="complex"):
    run(tx, z, z)
  i = {"i": jnp.arange(2)}
  with pytest.raises(TypeError, match="int32"):
    run(tx, i, i)


def test_clip_params_schedules_and_low_precision(rng):
  sched = optax.linear_schedule(0.1, 1.0, transition_steps=1)
  tx = optaxclip.clip_params(lambda step: -sched(step), sched)
  params = jax.tree.map(jnp.zeros_like, make(rng))
  updates = jax.tree.map(lambda x: jnp.full_like(x, 5.0), params)
  state = tx.init(params)
  for bound in (0.1, 1.0):
    u, state = tx.update(updates, state, params)
    for x in jax.tree.leaves(u):
      np.testing.assert_allclose(x, bound, rtol=1e-6)
  p16 = {"w": jnp.asarray([0.999, -0.5], jnp.bfloat16)}
  u16 = {"w": jnp.asarray([0.5, 0.25], jnp.bfloat16)}
  u, _ = run(optaxclip.clip_params(-1.0, 1.0), u16, p16)
  assert u["w"].dtype == jnp.bfloat16
  np.testing.assert_allclose(
    f64(p16["w"]) + f64(u["w"]), [1.0, -0.25], atol=1e-2
  )


# ---------------------------------------------------------------------------
# max_norm_constraint
# ---------------------------------------------------------------------------


def ref_max_norm(updates, params, c, axis=None):
  out, factors = {}, []
  for k, u in updates.items():
    axes = UNIT_AXES[np.ndim(u)] if axis is None else axis
    new = f64(params[k]) + f64(u)
    n = unit_norms(new, axes)
    f = np.where(n > c, c / np.where(n > 0, n, 1), 1.0)
    out[k] = new * f - f64(params[k])
    factors.append(f.ravel())
  return out, np.concatenate(factors)


@pytest.mark.parametrize("c", [0.0, 0.5, 2.0, 1e3])
def test_max_norm_matches_numpy(rng, c):
  params, updates = make(rng), make(rng, 0.5)
  u, s = max_norm_jit(updates, params, jnp.float32(c))
  want, factors = ref_max_norm(updates, params, c)
  chex.assert_trees_all_close(jax.tree.map(f64, u), want, atol=1e-6)
  chex.assert_trees_all_equal_dtypes(u, updates)
  assert float(s.clipped) == pytest.approx(np.mean(factors < 1))
  np.testing.assert_allclose(s.scale, factors.min(), rtol=1e-6)
  assert float(s.threshold) == pytest.approx(c)
  for k, x in optax.apply_updates(params, u).items():
    norms = unit_norms(x, UNIT_AXES[np.ndim(x)])
    assert np.all(norms <= c * (1 + 1e-6) + 1e-6), k


def test_max_norm_hand_computed_and_axis():
  w = jnp.zeros((2, 2))
  u, _ = run(
    optaxclip.max_norm_constraint(1.0),
    jnp.asarray([[3.0, 0.1], [4.0, 0.1]]),
    w,
  )
  chex.assert_trees_all_close(u, jnp.asarray([[0.6, 0.1], [0.8, 0.1]]))
  # axis=1: the units are rows.
  u, _ = run(
    optaxclip.max_norm_constraint(1.0, axis=1),
    jnp.asarray([[3.0, 4.0], [0.1, 0.1]]),
    w,
  )
  chex.assert_trees_all_close(u, jnp.asarray([[0.6, 0.8], [0.1, 0.1]]))


@hypothesis.given(
  seed=st.integers(0, 2**16),
  c=st.floats(0.0, 5.0),
  scale=st.sampled_from([0.01, 1.0, 100.0]),
)
def test_property_max_norm(seed, c, scale):
  rng = np.random.default_rng(seed)
  params, updates = make(rng), make(rng, scale)
  c32 = float(np.float32(c))
  u, _ = max_norm_jit(updates, params, jnp.float32(c))
  for k in SHAPES:
    axes = UNIT_AXES[len(SHAPES[k])]
    new = f64(params[k]) + f64(u[k])
    before = unit_norms(f64(params[k]) + f64(updates[k]), axes)
    after = unit_norms(new, axes)
    mag = np.abs(f64(params[k])).max() + np.abs(f64(updates[k])).max()
    assert np.all(after <= c32 + 1e-6 * mag), k
    # Each unit of the new weights points the same way as before.
    ratio = np.where(before > 0, after / np.where(before > 0, before, 1), 1)
    want = (f64(params[k]) + f64(updates[k])) * ratio
    np.testing.assert_allclose(new, want, atol=1e-6 * mag)


def test_max_norm_edge_cases(rng):
  params, updates = make(rng), make(rng)
  u, _ = max_norm_jit(updates, params, jnp.float32(0.0))
  chex.assert_trees_all_close(u, jax.tree.map(jnp.negative, params))
  u, s = run(optaxclip.max_norm_constraint(math.inf), updates, params)
  chex.assert_trees_all_close(u, updates, atol=1e-6)
  assert float(s.clipped) == 0.0
  zeros = jax.tree.map(jnp.zeros_like, params)
  u, s = run(optaxclip.max_norm_constraint(1.0), zeros, zeros)
  chex.assert_trees_all_equal(u, zeros)
  assert float(s.clipped) == 0.0


def test_max_norm_nonfinite_and_arguments(rng):
  params, updates = make(rng), make(rng)
  updates["b"] = updates["b"].at[0].set(jnp.nan)
  u, s = run(optaxclip.max_norm_constraint(1.0), updates, params)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, updates))
  assert int(s.nonfinite_count) == 1 and float(s.scale) == 0
  u, _ = run(
    optaxclip.max_norm_constraint(1.0, nonfinite="propagate"), updates, params
  )
  assert np.all(np.isnan(f64(u["b"])))
  with pytest.raises(FloatingPointError, match="max_norm_constraint"):
    run(optaxclip.max_norm_constraint(1.0, nonfinite="error"), updates, params)
  for bad in (-1.0, math.nan, np.ones(3)):
    with pytest.raises(ValueError, match="`max_norm`"):
      optaxclip.max_norm_constraint(bad)
  with pytest.raises(TypeError, match="`axis`"):
    optaxclip.max_norm_constraint(1.0, axis="0")
  tx = optaxclip.max_norm_constraint(1.0)
  with pytest.raises(ValueError, match="needs the parameters"):
    tx.update(updates, tx.init(params))
  with pytest.raises(ValueError, match="axis="):
    g = {"x": jnp.ones((1,) * 6)}
    run(tx, g, g)


def test_max_norm_dtypes(rng):
  p = {"w": jnp.asarray(rng.standard_normal((3, 2)), jnp.bfloat16)}
  u = {"w": jnp.asarray(rng.standard_normal((3, 2)) * 5, jnp.bfloat16)}
  got, _ = run(optaxclip.max_norm_constraint(1.0), u, p)
  assert got["w"].dtype == jnp.bfloat16
  new = f64(p["w"]) + f64(got["w"])
  assert np.all(unit_norms(new, (0,)) <= 1.0 + 2e-2)
  z = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
  zu = {"w": jnp.asarray(z * 5, jnp.complex64)}
  zp = {"w": jnp.zeros((3, 2), jnp.complex64)}
  got, _ = run(optaxclip.max_norm_constraint(1.0), zu, zp)
  assert got["w"].dtype == jnp.complex64
  np.testing.assert_allclose(unit_norms(got["w"], (0,)), 1.0, rtol=1e-5)
  with jax.enable_x64(True):
    p64 = {"w": jnp.asarray(rng.standard_normal((3, 2)), jnp.float64)}
    u64 = {"w": jnp.asarray(rng.standard_normal((3, 2)) * 5, jnp.float64)}
    got, _ = run(optaxclip.max_norm_constraint(1.0 + 1e-10), u64, p64)
    assert got["w"].dtype == jnp.float64
    want, _ = ref_max_norm(u64, p64, 1.0 + 1e-10)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-12, atol=1e-15)
