# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""clippy against a NumPy float64 reference, and its guarantees."""

from __future__ import annotations

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optaxclip

T = 60


def f32(x):
  """A hyperparameter rounded to float32, as the transformation holds it."""
  return float(np.float32(x))


def recorded_run(seed=0):
  """Updates and weights per step: noise, spikes, zero weights, NaN, zeros."""
  rng = np.random.default_rng(seed)
  w = {
    "k": rng.uniform(-1, 1, (T, 4, 3)),
    "b": rng.uniform(-0.1, 0.1, (T, 3)),
  }
  w["b"][:, 0] = 0.0  # a weight at zero: only `absolute` bounds it
  u = {
    "k": 0.01 * rng.standard_normal((T, 4, 3)),
    "b": 0.001 * rng.standard_normal((T, 3)),
  }
  u["k"][10, 2, 1] = 5.0  # a spike in one coordinate
  u["b"][20] *= 100.0
  u["k"][30, 0, 0] = np.nan
  u["b"][40, 1] = -np.inf
  u["k"][50] = 0.0
  u["b"][50] = 0.0
  cast = lambda t: {k: v.astype(np.float32) for k, v in t.items()}
  return cast(u), cast(w)


def ref_clippy(us, ws, relative, absolute):
  """Per-leaf s = min(1, min_{u_i != 0} (rel |w_i| + abs) / |u_i|), float64.

  ``us``, ``ws``: lists over leaves of [T, ...] arrays. Returns the outputs,
  the factors [T, leaves] and the running non-finite count.
  """
  outs = [[] for _ in us]
  factors, bad, n_bad = [], [], 0
  for t in range(us[0].shape[0]):
    ut = [np.asarray(u[t], np.float64) for u in us]
    wt = [np.asarray(w[t], np.float64) for w in ws]
    if not all(np.all(np.isfinite(u)) for u in ut):
      n_bad += 1
      for k, u in enumerate(ut):
        outs[k].append(np.zeros_like(u))
      factors.append(np.zeros(len(ut)))
      bad.append(n_bad)
      continue
    fs = []
    for k, (u, w) in enumerate(zip(ut, wt)):
      bound = relative * np.abs(w) + absolute
      nz = u != 0
      s = min(1.0, np.min(bound[nz] / np.abs(u[nz]), initial=1.0))
      fs.append(s)
      outs[k].append(s * u)
    factors.append(np.array(fs))
    bad.append(n_bad)
  return [np.array(o) for o in outs], np.array(factors), np.array(bad)


def run_scan(tx, updates, params):
  """All steps of ``tx.update`` (params given per step) in one lax.scan."""

  def body(s, x):
    u, p = x
    u, s = tx.update(u, s, p)
    return s, (u, s.factors, optaxclip.stats(s))

  init = tx.init(jax.tree.map(lambda x: x[0], params))
  return jax.jit(lambda s, xs: jax.lax.scan(body, s, xs))(
    init, (updates, params)
  )


@pytest.mark.parametrize(
  "relative, absolute", [(0.1, 1e-7), (0.01, 1e-4)], ids=["defaults", "tight"]
)
def test_clippy_matches_reference(relative, absolute):
  updates, params = recorded_run()
  tx = optaxclip.clippy(relative, absolute)
  _, (out, factors, stats) = run_scan(tx, updates, params)
  s = stats["clippy"]
  leaves_u, leaves_w = jax.tree.leaves(updates), jax.tree.leaves(params)
  want, want_f, bad = ref_clippy(
    leaves_u, leaves_w, f32(relative), f32(absolute)
  )
  for got, w in zip(jax.tree.leaves(out), want):
    np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-30)
  np.testing.assert_allclose(factors, want_f, rtol=1e-6)
  np.testing.assert_allclose(s.scale, want_f.min(1), rtol=1e-6)
  finite = bad == np.concatenate([[0], bad[:-1]])
  want_clipped = np.where(finite, (want_f < 1).mean(1), 1.0)
  np.testing.assert_allclose(s.clipped, want_clipped)
  np.testing.assert_array_equal(s.nonfinite_count, bad)
  norm_out = np.sqrt(sum(np.sum(w.reshape(T, -1) ** 2, 1) for w in want))
  np.testing.assert_allclose(s.norm_after, norm_out, rtol=1e-5)
  assert np.all(np.isnan(np.asarray(s.threshold)))
  # The planted one-coordinate spike shrank its whole leaf.
  assert want_f[10, 1] < 0.05 and want_f[20, 0] < 1


def test_clippy_bounds_every_weight_move_with_adagrad():
  """Each element moves by at most relative * |w| + absolute, every step."""
  rng = np.random.default_rng(3)
  target = jnp.asarray(rng.uniform(-2, 2, (16,)), jnp.float32)
  rel, abs_ = 0.05, 1e-3

  def loss(w, t):
    return jnp.sum((w - target) ** 2) * (1 + 100 * (t % 17 == 0))

  tx = optax.chain(optax.adagrad(1.0), optaxclip.clippy(rel, abs_))
  w = 0.5 * target  # no weight has to cross zero

  def body(carry, t):
    w, s = carry
    u, s = tx.update(jax.grad(loss)(w, t), s, w)
    return (optax.apply_updates(w, u), s), (u, w, s[1].factors[0])

  (w_end, _), (us, ws, factors) = jax.jit(
    lambda w: jax.lax.scan(body, (w, tx.init(w)), jnp.arange(300))
  )(w)
  bound = f32(rel) * np.abs(np.asarray(ws, np.float64)) + f32(abs_)
  assert np.all(np.abs(np.asarray(us, np.float64)) <= bound * (1 + 1e-6))
  assert float(jnp.min(factors)) < 0.5  # the bound was active
  assert float(jnp.max(jnp.abs(w_end - target))) < 1e-2  # still converges


def test_clippy_small_updates_untouched():
  rng = np.random.default_rng(4)
  w = {"a": jnp.asarray(rng.uniform(1, 2, (20,)), jnp.float32)}
  u = {"a": jnp.asarray(0.01 * rng.standard_normal((5, 20)), jnp.float32)}
  _, (out, factors, stats) = run_scan(
    optaxclip.clippy(), u, jax.tree.map(lambda x: jnp.stack([x] * 5), w)
  )
  chex.assert_trees_all_equal(out, u)
  assert np.all(np.asarray(factors) == 1)
  assert np.all(np.asarray(stats["clippy"].clipped) == 0)


def test_clippy_edge_cases():
  tx = optaxclip.clippy(0.1, 0.0)
  w = jnp.array([0.0, 1.0])
  u, state = tx.update(jnp.array([1e-3, 0.0]), tx.init(w), w)
  chex.assert_trees_all_equal(u, jnp.zeros(2))  # w = 0, absolute = 0
  assert float(state.factors[0]) == 0.0
  tx = optaxclip.clippy(float("inf"), 1e-3)
  u, state = tx.update(jnp.array([1.0, 5.0]), tx.init(w), w)
  np.testing.assert_allclose(u, [1e-3, 5e-3], rtol=1e-6)
  assert not np.any(np.isnan(np.asarray(state.factors)))


def test_clippy_nonfinite_policies():
  w = {"a": jnp.ones(2), "b": jnp.ones(3)}
  g = {"a": jnp.array([0.5, jnp.nan]), "b": jnp.full(3, 0.01)}
  tx = optaxclip.clippy()
  u, s = tx.update(g, tx.init(w), w)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, w))
  assert float(optaxclip.stats(s)["clippy"].scale) == 0.0
  tx = optaxclip.clippy(nonfinite="propagate")
  u, _ = tx.update(g, tx.init(w), w)
  assert np.all(np.isnan(np.asarray(u["a"])))
  chex.assert_trees_all_equal(u["b"], g["b"])
  tx = optaxclip.clippy(nonfinite="error")
  with pytest.raises(FloatingPointError):
    tx.update(g, tx.init(w), w)


def test_clippy_validation():
  with pytest.raises(ValueError, match="relative"):
    optaxclip.clippy(-0.1)
  with pytest.raises(ValueError, match="absolute"):
    optaxclip.clippy(absolute=float("nan"))
  with pytest.raises(ValueError, match="nonfinite"):
    optaxclip.clippy(nonfinite="ignore")
  tx = optaxclip.clippy()
  with pytest.raises(ValueError, match="param"):
    tx.init(None)
  w = jnp.ones(2)
  with pytest.raises(ValueError, match="param"):
    tx.update(w, tx.init(w))
  with pytest.raises(ValueError, match="leaves"):
    tx.update({"a": w, "b": w}, tx.init(w), {"a": w, "b": w})
  i = jnp.ones(2, jnp.int32)
  with pytest.raises(TypeError, match="dtype"):
    tx.update(i, tx.init(w), w)


def test_clippy_inject_hyperparams_and_checkpoint():
  tx = optax.chain(
    optax.adam(0.5),
    optax.inject_hyperparams(optaxclip.clippy)(relative=0.1, absolute=1e-3),
  )
  rng = np.random.default_rng(6)
  grads = jnp.asarray(rng.standard_normal((20, 8)), jnp.float32)
  step = jax.jit(tx.update)

  def train(w, s, lo, hi):
    for i in range(lo, hi):
      u, s = step(grads[i], s, w)
      w = optax.apply_updates(w, u)
    return w, s

  w0 = jnp.ones(8)
  w10, s10 = train(w0, tx.init(w0), 0, 10)
  want = train(w10, s10, 10, 20)
  blob = flax.serialization.to_bytes((w10, s10))
  restored = flax.serialization.from_bytes((w0, tx.init(w0)), blob)
  chex.assert_trees_all_equal(train(*restored, 10, 20), want)
  # A traced change of `relative` takes effect.
  s10[1].hyperparams["relative"] = jnp.asarray(0.0, jnp.float32)
  u, _ = step(grads[10], s10, w10)
  assert float(jnp.max(jnp.abs(u))) <= f32(1e-3) * (1 + 1e-6)
