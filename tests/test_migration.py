# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""docs/migration.md: one test per row of the mapping table.

Each test computes the PyTorch / Keras / TensorFlow result by hand from the
documented formula (neither library is needed) and checks the stated
difference, or the stated equivalence, against optaxclip numerically:

* torch.nn.utils.clip_grads_with_norm_ (used by clip_grad_norm_):
  ``clip_coef = max_norm / (total_norm + 1e-6)``, clamped to at most 1, and
  the gradients are always multiplied by it;
* tf.clip_by_global_norm: ``scale = clip_norm * min(1 / use_norm,
  1 / clip_norm) + (use_norm - use_norm)`` (NaN everywhere for a NaN or
  infinite norm);
* tf.clip_by_norm / Keras ``clipnorm``: ``t * clip_norm / max(norm(t),
  clip_norm)``, per variable;
* torch.clamp / Keras ``clipvalue``: element-wise, NaN stays NaN, +-inf
  becomes +-bound.
"""

import inspect

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optaxclip


def torch_factor(max_norm: float, total_norm: float) -> float:
  """clip_grads_with_norm_'s factor, by hand (float64)."""
  return min(max_norm / (total_norm + 1e-6), 1.0)


def tf_global_scale(clip_norm: float, use_norm: float) -> float:
  """tf.clip_by_global_norm's scale, by hand (float64)."""
  with np.errstate(divide="ignore", invalid="ignore"):
    u = np.float64(use_norm)
    return clip_norm * min(1.0 / u, 1.0 / clip_norm) + (u - u)


def _update(tx, grads):
  u, state = tx.update(grads, tx.init(grads))
  return u, optaxclip.stats(state)


# Row: clip_grad_norm_ -> clip_by_global_norm / clip_tree_by_global_norm ---


def test_row_factor_has_no_epsilon():
  # A norm of 2e-6 against max_norm 1e-6: torch scales by 1e-6 / 3e-6 = 1/3,
  # optaxclip by 1e-6 / 2e-6 = 1/2.
  g = jnp.array([1.2e-6, 1.6e-6])  # norm 2e-6
  assert torch_factor(1e-6, 2e-6) == pytest.approx(1 / 3)
  clipped, norm = optaxclip.clip_tree_by_global_norm(g, 1e-6)
  assert float(norm) == pytest.approx(2e-6, rel=1e-6)
  np.testing.assert_allclose(clipped, np.asarray(g) / 2, rtol=1e-6)
  u, s = _update(optaxclip.clip_by_global_norm(1e-6), g)
  np.testing.assert_allclose(u, np.asarray(g) / 2, rtol=1e-6)
  assert float(s["clip_by_global_norm"].scale) == pytest.approx(0.5, 1e-6)
  # At ordinary scales the two agree to about 1e-6 relative: |g| = 5, c = 1.
  assert torch_factor(1.0, 5.0) == pytest.approx(0.2, rel=1e-6)
  clipped, _ = optaxclip.clip_tree_by_global_norm(jnp.array([3.0, 4.0]), 1.0)
  np.testing.assert_allclose(clipped, [0.6, 0.8], rtol=1e-6)


def test_row_norm_equal_to_max_norm_is_left_alone():
  # torch always multiplies: at total_norm == max_norm = 1e-3 the factor is
  # 1e-3 / (1e-3 + 1e-6) = 0.999. optaxclip clips only when norm > max_norm.
  g = jnp.array([6e-4, 8e-4])  # norm 1e-3 (in float32: within 1 ulp)
  norm = float(optaxclip.global_norm(g))
  assert torch_factor(norm, norm) == pytest.approx(0.999, abs=1e-6)
  u, s = _update(optaxclip.clip_by_global_norm(norm), g)
  np.testing.assert_array_equal(u, g)  # bit for bit
  assert float(s["clip_by_global_norm"].clipped) == 0.0
  assert float(s["clip_by_global_norm"].scale) == 1.0
  # Keras / TF give factor 1 there too: clip_norm / max(norm, clip_norm).
  assert tf_global_scale(norm, norm) == pytest.approx(1.0)


def test_row_returns_the_norm_before_clipping():
  # torch's clip_grad_norm_ returns the total norm before clipping; so does
  # clip_tree_by_global_norm, and the stats keep it as norm_before.
  g = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
  _, norm = optaxclip.clip_tree_by_global_norm(g, 1.0)
  assert float(norm) == 5.0
  _, s = _update(optaxclip.clip_by_global_norm(1.0), g)
  assert float(s["clip_by_global_norm"].norm_before) == 5.0
  assert float(s["clip_by_global_norm"].norm_after) == pytest.approx(1.0)


# Row: non-finite gradients (error_if_nonfinite=False, torch's default) ----


def test_row_nonfinite_default_zeroes_propagate_matches_torch():
  g_nan = jnp.array([1.0, jnp.nan])
  g_inf = jnp.array([1.0, jnp.inf])
  # torch: a NaN norm gives a NaN factor (NaN everywhere); an infinite norm
  # gives factor 1 / (inf + 1e-6) = 0: finite entries 0, the inf entry NaN.
  want_nan = np.array([1.0, np.nan]) * (1.0 / (np.nan + 1e-6))
  with np.errstate(invalid="ignore"):
    want_inf = np.array([1.0, np.inf]) * torch_factor(1.0, np.inf)
  np.testing.assert_array_equal(want_nan, [np.nan, np.nan])
  np.testing.assert_array_equal(want_inf, [0.0, np.nan])
  prop = optaxclip.clip_by_global_norm(1.0, nonfinite="propagate")
  np.testing.assert_array_equal(_update(prop, g_nan)[0], want_nan)
  np.testing.assert_array_equal(_update(prop, g_inf)[0], want_inf)
  # optaxclip's default: the step's updates are zero, and it is counted.
  for g in (g_nan, g_inf):
    u, s = _update(optaxclip.clip_by_global_norm(1.0), g)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert int(s["clip_by_global_norm"].nonfinite_count) == 1


def test_row_error_if_nonfinite_is_nonfinite_error():
  tx = optaxclip.clip_by_global_norm(1.0, nonfinite="error")
  with pytest.raises(FloatingPointError, match="non-finite"):
    tx.update(jnp.array([1.0, jnp.inf]), tx.init(jnp.zeros(2)))
  with pytest.raises(FloatingPointError):
    optaxclip.clip_tree_by_global_norm(
      jnp.array([jnp.nan]), 1.0, nonfinite="error"
    )


# Row: get_total_norm -> global_norm -------------------------------------


def test_row_total_norm_accumulates_in_float32():
  g = jnp.full(4, 6e4, jnp.float16)  # norm 1.2e5 > float16's max 65504
  # torch returns the norm in the gradients' dtype: float16 overflows.
  with np.errstate(over="ignore"):
    assert np.isinf(np.float16(np.sqrt(4 * 6e4**2)))
  norm = optaxclip.global_norm(g)
  assert norm.dtype == jnp.float32
  assert float(norm) == pytest.approx(1.2e5, rel=1e-3)
  # norm_type 1 and inf map to ord=1 and ord="inf"; other p are refused.
  v = {"a": jnp.array([3.0, -4.0]), "b": jnp.array([-12.0])}
  assert float(optaxclip.global_norm(v, 1)) == 19.0
  assert float(optaxclip.global_norm(v, "inf")) == 12.0
  assert float(optaxclip.global_norm(v)) == 13.0
  with pytest.raises(ValueError):
    optaxclip.global_norm(v, 3)


# Row: clip_grads_with_norm_ -> clip_tree_with_norm ----------------------


def test_row_clip_with_a_given_norm():
  g = jnp.array([3.0, 4.0])
  # Given total_norm 10 (not the tree's 5), max_norm 1: torch 1/(10+1e-6).
  want = np.array([3.0, 4.0]) * torch_factor(1.0, 10.0)
  got = optaxclip.clip_tree_with_norm(g, 1.0, 10.0)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(got, [0.3, 0.4], rtol=1e-7)
  # The epsilon matters at small norms: 1/3 (torch) vs 1/2 (optaxclip).
  got = optaxclip.clip_tree_with_norm(g, 1e-6, 2e-6)
  np.testing.assert_allclose(got, np.array([3.0, 4.0]) / 2, rtol=1e-6)
  # tf.clip_by_global_norm(t, c, use_norm=n) is the same mapping.
  assert tf_global_scale(1.0, 10.0) == pytest.approx(0.1)


# Row: clip_grad_value_ / Keras clipvalue -> clip_by_value ---------------


def test_row_clip_value_nonfinite():
  g = jnp.array([-3.0, 0.5, jnp.inf, jnp.nan])
  # torch.clamp / keras.ops.clip: NaN stays NaN, inf becomes the bound.
  want = np.array([-1.0, 0.5, 1.0, np.nan])
  prop = optaxclip.clip_by_value(1.0, nonfinite="propagate")
  np.testing.assert_array_equal(_update(prop, g)[0], want)
  u, s = _update(optaxclip.clip_by_value(1.0), g)
  np.testing.assert_array_equal(u, np.zeros(4))
  assert int(s["clip_by_value"].nonfinite_count) == 1
  # Finite gradients: identical.
  u, _ = _update(optaxclip.clip_by_value(1.0), g[:2])
  np.testing.assert_array_equal(u, [-1.0, 0.5])


# Row: foreach ------------------------------------------------------------


def test_row_no_foreach_argument():
  # One jitted program handles every leaf; there is no foreach switch, and
  # passing one is an error rather than silently ignored.
  for fn in (optaxclip.clip_by_global_norm, optaxclip.clip_tree_by_global_norm):
    assert "foreach" not in inspect.signature(fn).parameters
  with pytest.raises(TypeError):
    optaxclip.clip_by_global_norm(1.0, foreach=True)


# Rows: Keras clipnorm (per variable) vs global_clipnorm (global) ---------


def test_row_keras_clipnorm_is_per_variable():
  g = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.1, 0.0])}
  # clipnorm=1: each variable by its own norm, t * 1 / max(norm(t), 1).
  want_a = np.array([3.0, 4.0]) / 5.0
  want_b = g["b"]  # norm 0.1 < 1: unchanged
  u, _ = _update(optaxclip.clip_by_tensor_norm(1.0), g)
  np.testing.assert_allclose(u["a"], want_a, rtol=1e-6)
  np.testing.assert_array_equal(u["b"], want_b)
  # global_clipnorm=1: one factor for both, 1 / sqrt(25.01).
  scale = tf_global_scale(1.0, np.sqrt(25.01))
  u, _ = _update(optaxclip.clip_by_global_norm(1.0), g)
  np.testing.assert_allclose(u["a"], np.array([3.0, 4.0]) * scale, 1e-6)
  np.testing.assert_allclose(u["b"], np.array([0.1, 0.0]) * scale, 1e-6)
  assert not np.allclose(u["b"], want_b)  # the two really differ


def test_row_tf_global_norm_nonfinite_is_all_nan():
  g = jnp.array([1.0, jnp.inf])
  # TF: an infinite global norm sets every entry to NaN.
  scale = tf_global_scale(1.0, np.inf)
  assert np.isnan(scale)
  # optaxclip: zeros by default; "propagate" zeroes the finite entries.
  u, _ = _update(optaxclip.clip_by_global_norm(1.0), g)
  np.testing.assert_array_equal(u, [0.0, 0.0])
  prop = optaxclip.clip_by_global_norm(1.0, nonfinite="propagate")
  np.testing.assert_array_equal(_update(prop, g)[0], [0.0, np.nan])


def test_row_keras_clips_before_the_optimizer():
  # Keras applies clipnorm / global_clipnorm / clipvalue to the gradients
  # before the optimizer's update: optax.chain(clip, optimizer).
  g = jnp.array([30.0, 40.0])
  tx = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.sgd(0.1))
  u, _ = tx.update(g, tx.init(jnp.zeros(2)))
  np.testing.assert_allclose(u, [-0.06, -0.08], rtol=1e-6)
