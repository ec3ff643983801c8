# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""clip_tree_with_norm: clipping with a norm the caller supplies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optaxclip

GRADS = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0])}  # norm 5


def _np(tree):
  return {k: np.asarray(v) for k, v in tree.items()}


def test_same_as_clip_tree_by_global_norm_with_the_measured_norm():
  rng = np.random.default_rng(0)
  for scale in (0.01, 1.0, 100.0):
    tree = {
      "x": jnp.asarray(scale * rng.normal(size=(3, 4)), jnp.float32),
      "y": jnp.asarray(scale * rng.normal(size=(5,)), jnp.float32),
    }
    want, norm = optaxclip.clip_tree_by_global_norm(tree, 1.0)
    got = optaxclip.clip_tree_with_norm(tree, 1.0, norm)
    for k in tree:
      np.testing.assert_array_equal(got[k], want[k])


def test_uses_the_given_norm_not_the_tree_s():
  # The tree's own norm is 5; the caller says 10: factor 1 / 10.
  out = _np(optaxclip.clip_tree_with_norm(GRADS, 1.0, 10.0))
  np.testing.assert_allclose(out["a"], [0.3, 0.0], rtol=1e-6)
  np.testing.assert_allclose(out["b"], [0.4], rtol=1e-6)
  # The caller says 0.5 (below the threshold): unchanged, though |g| = 5.
  out = _np(optaxclip.clip_tree_with_norm(GRADS, 1.0, 0.5))
  np.testing.assert_array_equal(out["a"], [3.0, 0.0])


def test_boundaries():
  # Equal to the threshold: left alone (exactly, not scaled by 1/(1+eps)).
  out = optaxclip.clip_tree_with_norm(GRADS, 5.0, 5.0)
  np.testing.assert_array_equal(out["b"], [4.0])
  # A zero norm never divides by zero.
  out = optaxclip.clip_tree_with_norm(GRADS, 1.0, 0.0)
  np.testing.assert_array_equal(out["a"], [3.0, 0.0])
  # A zero threshold zeroes the tree.
  out = optaxclip.clip_tree_with_norm(GRADS, 0.0, 5.0)
  np.testing.assert_array_equal(out["b"], [0.0])


def test_nonfinite_policies():
  for bad in (jnp.nan, jnp.inf):
    out = optaxclip.clip_tree_with_norm(GRADS, 1.0, bad)
    np.testing.assert_array_equal(out["a"], [0.0, 0.0])
  out = optaxclip.clip_tree_with_norm(
    GRADS, 1.0, jnp.nan, nonfinite="propagate"
  )
  assert np.isnan(np.asarray(out["b"])).all()
  out = optaxclip.clip_tree_with_norm(
    GRADS, 1.0, jnp.inf, nonfinite="propagate"
  )
  np.testing.assert_array_equal(out["a"], [0.0, 0.0])  # 1 / inf = 0
  with pytest.raises(FloatingPointError, match="clip_tree_with_norm"):
    optaxclip.clip_tree_with_norm(GRADS, 1.0, jnp.inf, nonfinite="error")


def test_jit_dtypes_and_errors():
  f = jax.jit(optaxclip.clip_tree_with_norm)
  out = f(GRADS, 1.0, jnp.float32(10.0))
  np.testing.assert_allclose(out["b"], [0.4], rtol=1e-6)
  half = jnp.array([3.0, 4.0], jnp.bfloat16)
  out = optaxclip.clip_tree_with_norm(half, 1.0, 5.0)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), [0.6, 0.8], 1e-2)
  with pytest.raises(ValueError, match="scalar"):
    optaxclip.clip_tree_with_norm(GRADS, 1.0, jnp.ones(2))
  with pytest.raises(ValueError, match="max_norm"):
    optaxclip.clip_tree_with_norm(GRADS, -1.0, 5.0)
  with pytest.raises(TypeError):
    optaxclip.clip_tree_with_norm(jnp.array([1, 2]), 1.0, 5.0)
