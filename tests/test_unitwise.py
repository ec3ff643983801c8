# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of unit-wise adaptive gradient clipping (AGC)."""

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

# One leaf of every rank with a default unit convention, Flax layouts.
SHAPES = {
  "scalar": (),
  "bias": (4,),
  "dense": (3, 4),
  "conv1d": (3, 2, 4),
  "conv2d": (2, 2, 3, 4),
  "conv3d": (2, 1, 2, 2, 3),
}
DEFAULT_AXES = {0: (), 1: (0,), 2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}


def f64(x):
  return np.asarray(x, np.float64)


def make(rng, scale=1.0, dtype=np.float32):
  return {
    k: jnp.asarray(scale * rng.standard_normal(s), dtype)
    for k, s in SHAPES.items()
  }


def unit_norms(x, axes):
  return np.sqrt(np.sum(f64(x) ** 2, axis=axes, keepdims=True))


def ref_agc(grads, params, lam, eps=1e-3, axis=None):
  """NumPy float64 AGC: (clipped, unit factors, unit clipped flags)."""
  out, factors, flags = {}, [], []
  for k, g in grads.items():
    axes = DEFAULT_AXES[np.ndim(g)] if axis is None else axis
    gn = unit_norms(g, axes)
    wn = np.maximum(unit_norms(params[k], axes), eps)
    limit = lam * wn
    f = np.where(gn > limit, limit / np.where(gn > 0, gn, 1), 1.0)
    out[k] = f64(g) * f
    factors.append(f.ravel())
    flags.append((gn > limit).ravel())
  return out, np.concatenate(factors), np.concatenate(flags)


def agc(grads, params, *args, **kw):
  tx = optaxclip.adaptive_grad_clip(*args, **kw)
  u, state = tx.update(grads, tx.init(params), params)
  return u, _stats.unnamed(state.stats)


@jax.jit
def agc_jit(grads, params, lam):
  return agc(grads, params, lam)


@jax.jit
def optax_agc_jit(grads, params, lam):
  tx = optax.adaptive_grad_clip(lam)
  return tx.update(grads, tx.init(params), params)[0]


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.0, 0.05, 0.5, 5.0])
def test_matches_numpy_with_default_units(rng, lam):
  grads, params = make(rng), make(rng, scale=2.0)
  u, s = agc_jit(grads, params, jnp.float32(lam))
  want, factors, flags = ref_agc(grads, params, lam)
  chex.assert_trees_all_close(jax.tree.map(f64, u), want, rtol=2e-6)
  chex.assert_trees_all_equal_dtypes(u, grads)
  assert float(s.clipped) == pytest.approx(flags.mean())
  np.testing.assert_allclose(s.scale, factors.min(), rtol=1e-6)
  assert np.isnan(float(s.threshold))
  g_all = np.concatenate([f64(x).ravel() for x in grads.values()])
  u_all = np.concatenate([f64(x).ravel() for x in u.values()])
  np.testing.assert_allclose(s.norm_before, np.linalg.norm(g_all), rtol=1e-6)
  np.testing.assert_allclose(s.norm_after, np.linalg.norm(u_all), rtol=1e-5)


def test_explicit_axis_for_out_in_layout(rng):
  # PyTorch-style (out, in) kernels: a unit is a row, its norm over axis 1.
  g = {"w": jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)}
  p = {"w": jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)}
  u, _ = agc(g, p, 0.3, axis=1)
  want, _, flags = ref_agc(g, p, 0.3, axis=(1,))
  chex.assert_trees_all_close(jax.tree.map(f64, u), want, rtol=2e-6)
  assert flags.shape == (4,)
  # Default for rank 2 reduces over axis 0 instead: a different result.
  u0, _ = agc(g, p, 0.3)
  assert not np.allclose(u0["w"], u["w"])
  u_t, _ = agc(g, p, 0.3, axis=(-1,))  # negative axes count from the end
  chex.assert_trees_all_equal(u_t, u)


@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])
def test_agrees_with_optax(rng, scale):
  grads, params = make(rng, scale), make(rng)
  for lam in (0.01, 0.1, 1.0):
    ours, _ = agc_jit(grads, params, jnp.float32(lam))
    theirs = optax_agc_jit(grads, params, jnp.float32(lam))
    chex.assert_trees_all_close(ours, theirs, rtol=2e-6, atol=1e-7)
  for axis in (1, (0, 1)):
    g = {"w": grads["conv1d"]}
    p = {"w": params["conv1d"]}
    ours, _ = agc(g, p, 0.1, axis=axis)
    tx = optax.adaptive_grad_clip(0.1, axis=axis)
    chex.assert_trees_all_close(ours, tx.update(g, tx.init(p), p)[0], rtol=2e-6)


def test_hand_computed():
  params = {"w": jnp.asarray([[3.0, 1.0], [4.0, 0.0]])}  # unit norms 5, 1
  grads = {"w": jnp.asarray([[0.6, 0.0], [0.8, 1.0]])}  # unit norms 1, 1
  u, s = agc(grads, params, 0.5)  # limits 2.5 and 0.5
  chex.assert_trees_all_close(u["w"], jnp.asarray([[0.6, 0.0], [0.8, 0.5]]))
  assert float(s.clipped) == 0.5 and float(s.scale) == 0.5


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@hypothesis.given(
  seed=st.integers(0, 2**16),
  lam=st.floats(0.0, 2.0),
  g_exp=st.integers(-3, 3),
  k=st.integers(-4, 4),
)
def test_property_unit_bound_direction_equivariance(seed, lam, g_exp, k):
  rng = np.random.default_rng(seed)
  grads, params = make(rng, 10.0**g_exp), make(rng)
  lam32 = jnp.float32(lam)
  u, _ = agc_jit(grads, params, lam32)
  for name, g in grads.items():
    axes = DEFAULT_AXES[np.ndim(g)]
    limit = float(lam32) * np.maximum(unit_norms(params[name], axes), 1e-3)
    gn, un = unit_norms(g, axes), unit_norms(u[name], axes)
    assert np.all(un <= limit * (1 + 1e-6) + 1e-30), name
    # Each unit is scaled by one factor in [0, 1]; below the limit, 1.
    with np.errstate(invalid="ignore", divide="ignore"):
      c = np.where(gn > 0, un / gn, 1.0)
    assert np.all((c >= 0) & (c <= 1 + 1e-6))
    np.testing.assert_allclose(u[name], f64(g) * c, rtol=1e-5, atol=1e-30)
    below = gn <= limit * (1 - 1e-5)
    np.testing.assert_array_equal(
      np.broadcast_to(below, g.shape) * f64(u[name]),
      np.broadcast_to(below, g.shape) * f64(g),
    )
  # Idempotent, and clip(a g; a lam) = a clip(g; lam) for a power of two.
  again, _ = agc_jit(u, params, lam32)
  chex.assert_trees_all_close(again, u, rtol=1e-6, atol=0)
  a = 2.0**k
  scaled, _ = agc_jit(jax.tree.map(lambda x: x * a, grads), params, lam32 * a)
  chex.assert_trees_all_close(
    scaled, jax.tree.map(lambda x: x * a, u), rtol=1e-6, atol=0
  )


# ---------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------


def test_zero_and_inf_clipping(rng):
  grads, params = make(rng), make(rng)
  u, s = agc(grads, params, 0.0)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, grads))
  assert float(s.clipped) == 1.0
  u, s = agc(grads, params, math.inf)
  chex.assert_trees_all_equal(u, grads)
  assert float(s.clipped) == 0.0


def test_zero_gradients_and_zero_params(rng):
  grads, params = make(rng), make(rng)
  zeros = jax.tree.map(jnp.zeros_like, grads)
  u, s = agc(zeros, params, 0.1)
  chex.assert_trees_all_equal(u, zeros)
  assert float(s.norm_before) == 0 and float(s.clipped) == 0
  # Zero weights: each unit's norm is floored at eps.
  for eps in (1e-3, 0.5):
    u, _ = agc(grads, zeros, 0.1, eps=eps)
    want, _, _ = ref_agc(grads, jax.tree.map(f64, zeros), 0.1, eps=eps)
    chex.assert_trees_all_close(jax.tree.map(f64, u), want, rtol=2e-6)
    for x in u.values():
      axes = DEFAULT_AXES[np.ndim(x)]
      assert np.all(unit_norms(x, axes) <= 0.1 * eps * (1 + 1e-6))


def test_needs_params():
  tx = optaxclip.adaptive_grad_clip(0.1)
  g = {"w": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match="adaptive_grad_clip needs the param"):
    tx.update(g, tx.init(g))


def test_rank_6_needs_axis():
  g = {"w": jnp.ones((1, 1, 1, 1, 1, 2))}
  with pytest.raises(ValueError, match="axis="):
    agc(g, g, 0.1)
  u, _ = agc(g, g, 0.1, axis=(0, 1, 2, 3, 4))
  chex.assert_trees_all_close(u, jax.tree.map(lambda x: 0.1 * x, g))


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_nonfinite_policies(rng, bad):
  grads, params = make(rng), make(rng)
  grads["dense"] = grads["dense"].at[0, 0].set(float(bad))
  u, s = agc(grads, params, 0.1)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, grads))
  assert int(s.nonfinite_count) == 1 and float(s.clipped) == 1
  assert float(s.scale) == 0
  u, s = agc(grads, params, 0.1, nonfinite="propagate")
  # Only the unit holding the bad element is affected (as optax).
  col = np.asarray(u["dense"])[:, 0]
  assert not np.all(np.isfinite(col))
  assert np.all(np.isfinite(np.asarray(u["dense"])[:, 1:]))
  assert np.all(np.isfinite(f64(u["bias"])))
  with pytest.raises(FloatingPointError, match="adaptive_grad_clip"):
    agc(grads, params, 0.1, nonfinite="error")


def test_low_and_high_precision(rng):
  # float16 gradients near 6e4: unit norms stay finite (float32 sums).
  g = {"w": jnp.full((8, 2), 6e4, jnp.float16)}
  p = {"w": jnp.ones((8, 2), jnp.float16)}
  u, s = agc(g, p, 0.5)
  assert u["w"].dtype == jnp.float16
  chex.assert_tree_all_finite(u)
  np.testing.assert_allclose(unit_norms(u["w"], (0,)), 0.5 * 8**0.5, 1e-3)
  assert np.isfinite(float(s.norm_before))
  with jax.enable_x64(True):
    g = {"w": jnp.asarray(rng.standard_normal((3, 2)), jnp.float64)}
    p = {"w": jnp.asarray(rng.standard_normal((3, 2)), jnp.float64)}
    lam = 0.1 + 1e-10
    u, _ = agc(g, p, lam)
    assert u["w"].dtype == jnp.float64
    want, _, _ = ref_agc(g, p, lam)
    np.testing.assert_allclose(u["w"], want["w"], rtol=1e-13)


def test_complex_gradients(rng):
  z = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
  g = {"w": jnp.asarray(z, jnp.complex64)}
  p = {"w": jnp.ones((3, 2), jnp.float32)}
  u, _ = agc(g, p, 0.2)
  assert u["w"].dtype == jnp.complex64
  gn = np.sqrt(np.sum(np.abs(z) ** 2, axis=0, keepdims=True))
  limit = 0.2 * math.sqrt(3)
  np.testing.assert_allclose(u["w"], z * np.minimum(1, limit / gn), rtol=1e-5)


def test_bad_arguments():
  with pytest.raises(TypeError, match="int32"):
    g = {"w": jnp.arange(3)}
    agc(g, g, 0.1)
  with pytest.raises(ValueError, match="`clipping`"):
    optaxclip.adaptive_grad_clip(-0.1)
  with pytest.raises(ValueError, match="`clipping`"):
    optaxclip.adaptive_grad_clip(np.ones(2))
  with pytest.raises(ValueError, match="`eps`"):
    optaxclip.adaptive_grad_clip(0.1, eps=math.nan)
  with pytest.raises(TypeError, match="`eps`"):
    optaxclip.adaptive_grad_clip(0.1, eps=lambda step: 1e-3)
  with pytest.raises(TypeError, match="`axis`"):
    optaxclip.adaptive_grad_clip(0.1, axis=0.5)
  with pytest.raises(ValueError, match="unknown nonfinite"):
    optaxclip.adaptive_grad_clip(0.1, nonfinite="drop")


def test_schedule(rng):
  grads, params = make(rng), make(rng)
  tx = optaxclip.adaptive_grad_clip(optax.linear_schedule(0.0, 1e6, 1))
  state = tx.init(params)
  u, state = tx.update(grads, state, params)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, grads))
  u, state = tx.update(grads, state, params)
  chex.assert_trees_all_equal(u, grads)


def test_gradient_matches_finite_differences(rng):
  with jax.enable_x64(True):
    w = jnp.asarray(rng.standard_normal((3, 2)))
    p = {"w": jnp.asarray(rng.standard_normal((3, 2)))}

    def f(x, lam):
      u, _ = agc({"w": x}, p, lam)
      return jnp.sum(u["w"] * w)

    grad_f = jax.jit(jax.grad(f, argnums=(0, 1)))
    f = jax.jit(f)

    for x, lam in [
      (jnp.asarray(rng.standard_normal((3, 2))), 0.3),
      (jnp.asarray(rng.standard_normal((3, 2))), 50.0),
      (jnp.zeros((3, 2)), 0.3),
    ]:
      gx, glam = grad_f(x, lam)
      assert np.all(np.isfinite(gx)) and np.isfinite(float(glam))
      h = 1e-6
      fd = np.zeros(6)
      for i in range(6):
        e = jnp.zeros(6).at[i].set(h).reshape(3, 2)
        fd[i] = (f(x + e, lam) - f(x - e, lam)) / (2 * h)
      np.testing.assert_allclose(np.ravel(gx), fd, rtol=1e-6, atol=1e-8)
      fd_lam = (f(x, lam + h) - f(x, lam - h)) / (2 * h)
      np.testing.assert_allclose(glam, fd_lam, rtol=1e-6, atol=1e-8)
