# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""per_example_clip and per_example_grads (DP-SGD)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optaxclip

B = 6


def _grads(seed=0, b=B):
  rng = np.random.default_rng(seed)
  # Scales so that some examples are clipped and some are not.
  scale = np.array([0.05, 0.3, 1.0, 3.0, 0.01, 10.0])[:b]
  return {
    "w": (rng.normal(size=(b, 3, 4)) * scale[:, None, None]).astype(np.float32),
    "b": (rng.normal(size=(b, 4)) * scale[:, None]).astype(np.float32),
  }


def _reference(grads, c, per_layer=False):
  """NumPy float64 DP-SGD aggregation without noise (Abadi et al. Alg. 1)."""
  g = {k: np.asarray(v, np.float64) for k, v in grads.items()}
  b = next(iter(g.values())).shape[0]
  keys = sorted(g)
  out = {k: np.zeros(g[k].shape[1:]) for k in keys}
  clipped = 0
  for i in range(b):
    ex = {k: g[k][i] for k in keys}
    if not all(np.all(np.isfinite(v)) for v in ex.values()):
      continue
    if per_layer is False:
      n = np.sqrt(sum(np.sum(v**2) for v in ex.values()))
      f = {k: min(1.0, c / n) if n > 0 else 1.0 for k in keys}
      clipped += n > c
    else:
      cs = (
        per_layer
        if isinstance(per_layer, dict)
        else {k: c / np.sqrt(len(keys)) for k in keys}
      )
      f = {}
      for k in keys:
        n = np.sqrt(np.sum(ex[k] ** 2))
        f[k] = min(1.0, cs[k] / n) if n > 0 else 1.0
      clipped += any(f[k] < 1 for k in keys)
    for k in keys:
      out[k] += f[k] * ex[k]
  return {k: v / b for k, v in out.items()}, clipped / b


@pytest.mark.parametrize(
  "per_layer", [False, True, {"w": 0.6, "b": 0.8}], ids=["global", "K", "tree"]
)
def test_matches_numpy_float64(per_layer):
  grads = _grads()
  tx = optaxclip.per_example_clip(1.0, per_layer=per_layer)
  state = tx.init(None)
  out, state = jax.jit(tx.update)(grads, state)
  want, frac = _reference(grads, 1.0, per_layer)
  for k in want:
    np.testing.assert_allclose(out[k], want[k], rtol=1e-5, atol=1e-7)
    assert out[k].dtype == np.float32
  s = optaxclip.stats(state)["per_example_clip"]
  assert 0 < frac < 1
  np.testing.assert_allclose(s.clipped, frac, rtol=1e-6)
  assert float(s.threshold) == 1.0
  assert int(s.nonfinite_count) == 0 and int(s.step) == 1


def test_agrees_with_optax_global_sum_divided_by_batch():
  # Optax's per_example_global_norm_clip returns the SUM of the clipped
  # examples and the number clipped; ours divides by the batch size.
  grads = _grads(1)
  leaves = jax.tree.leaves(grads)
  for c in (0.0, 0.5, 2.0, np.inf):
    summed, n_clipped = optax.per_example_global_norm_clip(leaves, c)
    tx = optaxclip.per_example_clip(c)
    out, state = tx.update(grads, tx.init(None))
    for a, o in zip(summed, jax.tree.leaves(out)):
      np.testing.assert_allclose(o, np.asarray(a) / B, rtol=1e-6, atol=1e-8)
    s = optaxclip.stats(state)["per_example_clip"]
    assert float(s.clipped) * B == pytest.approx(int(n_clipped))


def test_agrees_with_optax_layer_uniform():
  grads = _grads(2)
  leaves = jax.tree.leaves(grads)
  summed, _ = optax.per_example_layer_norm_clip(leaves, 1.5, uniform=True)
  tx = optaxclip.per_example_clip(1.5, per_layer=True)
  out, _ = tx.update(grads, tx.init(None))
  for a, o in zip(summed, jax.tree.leaves(out)):
    np.testing.assert_allclose(o, np.asarray(a) / B, rtol=1e-6, atol=1e-8)


def test_nan_and_inf_examples_contribute_zero_and_are_counted():
  grads = _grads(3)
  grads["w"][1, 0, 0] = np.nan
  grads["b"][4, 2] = np.inf
  tx = optaxclip.per_example_clip(1.0)
  out, state = tx.update(grads, tx.init(None))
  want, _ = _reference(grads, 1.0)
  for k in want:
    assert np.all(np.isfinite(out[k]))
    np.testing.assert_allclose(out[k], want[k], rtol=1e-5, atol=1e-7)
  s = optaxclip.stats(state)["per_example_clip"]
  assert int(s.nonfinite_count) == 2
  assert np.isfinite(float(s.norm_before))
  # Optax lets the NaN example through: its sum is NaN.
  summed, _ = optax.per_example_global_norm_clip(jax.tree.leaves(grads), 1.0)
  assert not np.all(np.isfinite(summed[1]))
  # Cumulative count of dropped examples.
  _, state = tx.update(grads, state)
  assert int(optaxclip.stats(state)["per_example_clip"].nonfinite_count) == 4


def test_every_example_nan_gives_zero_update():
  grads = jax.tree.map(lambda x: np.full_like(x, np.nan), _grads())
  tx = optaxclip.per_example_clip(1.0)
  out, state = tx.update(grads, tx.init(None))
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(out))
  assert int(optaxclip.stats(state)["per_example_clip"].nonfinite_count) == B


def test_noise_has_std_sigma_times_c():
  # Zero gradients: the output is noise / B, std sigma*C/B per element.
  b, c, sigma = 4, 2.0, 1.5
  grads = {"w": jnp.zeros((b, 100, 200)), "v": jnp.zeros((b, 10))}
  tx = optaxclip.per_example_clip(c, noise_multiplier=sigma, seed=7)
  state = tx.init(None)
  out, state2 = jax.jit(tx.update)(grads, state)
  x = np.asarray(out["w"]).ravel() * b
  # 20,000 draws: the sample std is within 1.5% of the truth (about 7
  # standard errors), the mean within 5 standard errors of zero.
  assert np.std(x) == pytest.approx(sigma * c, rel=0.015)
  assert abs(np.mean(x)) < 5 * sigma * c / np.sqrt(x.size)
  # Leaves get independent noise, steps fresh noise; a seed reproduces.
  assert not np.allclose(out["v"][:5], out["w"][0, :5])
  again, _ = tx.update(grads, state2)
  assert not np.allclose(again["w"], out["w"])
  same, _ = jax.jit(tx.update)(grads, tx.init(None))
  np.testing.assert_array_equal(same["w"], out["w"])
  # Signal plus noise: the noise is added to the clipped sum.
  g = _grads()
  noisy, _ = tx.update(g, state)
  clean, _ = optaxclip.per_example_clip(c).update(g, state)
  diff = (np.asarray(noisy["w"]) - np.asarray(clean["w"])) * B
  assert np.std(diff) == pytest.approx(sigma * c, rel=0.5)


def test_low_precision_leaves_keep_their_dtype():
  grads = jax.tree.map(lambda x: jnp.asarray(x * 1e3, jnp.float16), _grads())
  tx = optaxclip.per_example_clip(1.0, noise_multiplier=1.0)
  out, state = tx.update(grads, tx.init(None))
  assert all(x.dtype == jnp.float16 for x in jax.tree.leaves(out))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out))
  s = optaxclip.stats(state)["per_example_clip"]
  assert int(s.nonfinite_count) == 0


def test_inject_hyperparams_and_chain_with_adam():
  tx = optax.chain(
    optax.inject_hyperparams(optaxclip.per_example_clip)(l2_norm_clip=1.0),
    optax.adam(1e-2),
  )
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
  state = tx.init(params)
  u, state = jax.jit(tx.update)(_grads(), state, params)
  assert jax.tree.map(jnp.shape, u) == jax.tree.map(jnp.shape, params)


def test_bad_input_is_a_clear_error():
  tx = optaxclip.per_example_clip(1.0)
  with pytest.raises(ValueError, match="leading batch axis"):
    tx.update({"a": jnp.ones((3, 2)), "b": jnp.ones((4,))}, tx.init(None))
  with pytest.raises(ValueError, match="combined norm"):
    optaxclip.per_example_clip(1.0, per_layer={"w": 1.0, "b": 1.0})
  with pytest.raises(ValueError, match="structure"):
    t = optaxclip.per_example_clip(1.0, per_layer={"w": 0.5})
    t.update(_grads(), t.init(None))
  with pytest.raises(ValueError, match="noise_multiplier"):
    optaxclip.per_example_clip(1.0, noise_multiplier=-1.0)
  with pytest.raises(ValueError, match="microbatch_size"):
    optaxclip.per_example_grads(lambda p, x: 0.0, 1.0, {}, microbatch_size=0)


def _loss(params, ex):
  pred = jnp.tanh(ex["x"] @ params["w"]) @ params["v"]
  return jnp.mean((pred - ex["y"]) ** 2)


def test_per_example_grads_match_a_loop_and_microbatches():
  rng = np.random.default_rng(0)
  params = {
    "w": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),
    "v": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
  }
  batch = {
    "x": jnp.asarray(rng.normal(size=(7, 3)), jnp.float32),
    "y": jnp.asarray(rng.normal(size=(7,)), jnp.float32),
  }
  got = optaxclip.per_example_grads(_loss, params, batch)
  for i in range(7):
    one = jax.tree.map(lambda x, i=i: x[i : i + 1], batch)
    want = jax.grad(_loss)(params, one)
    for k in params:
      np.testing.assert_allclose(got[k][i], want[k], rtol=1e-5, atol=1e-6)
  micro = optaxclip.per_example_grads(_loss, params, batch, microbatch_size=3)
  for k in params:
    np.testing.assert_allclose(micro[k], got[k], rtol=1e-6, atol=1e-7)


def test_nnx_model_trains_with_nnx_optimizer():
  nnx = pytest.importorskip("flax.nnx")
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  tx = optax.chain(
    optaxclip.per_example_clip(0.5, noise_multiplier=0.1), optax.sgd(0.1)
  )
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  rng = np.random.default_rng(0)
  batch = {
    "x": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32),
    "y": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32),
  }

  def loss(m, ex):
    return jnp.mean((m(ex["x"]) - ex["y"]) ** 2)

  grads = optaxclip.per_example_grads(loss, model, batch)
  assert grads["kernel"][...].shape == (8, 3, 2)
  before = np.asarray(model.kernel[...]).copy()
  opt.update(model, grads)
  assert model.kernel[...].shape == (3, 2)
  assert not np.allclose(model.kernel[...], before)
  # Plain-JAX per-example gradients of the same model agree.
  graphdef, params = nnx.split(model, nnx.Param)
  plain = optaxclip.per_example_grads(
    lambda p, ex: loss(nnx.merge(graphdef, p), ex), params, batch
  )
  np.testing.assert_allclose(
    optaxclip.per_example_grads(loss, model, batch)["bias"][...],
    plain["bias"][...],
    rtol=1e-6,
  )


def test_privacy_accounting_with_dp_accounting():
  # The docs' recipe (docs/at_scale.md): epsilon of DP-SGD with Poisson
  # sampling rate q, noise multiplier sigma, n steps, at delta.
  dp_accounting = pytest.importorskip("dp_accounting")
  q, sigma, steps, delta = 0.01, 1.1, 1000, 1e-5
  event = dp_accounting.SelfComposedDpEvent(
    dp_accounting.PoissonSampledDpEvent(
      q, dp_accounting.GaussianDpEvent(sigma)
    ),
    steps,
  )
  rdp = dp_accounting.rdp.RdpAccountant()
  rdp.compose(event)
  pld = dp_accounting.pld.PLDAccountant()
  pld.compose(event)
  assert rdp.get_epsilon(delta) == pytest.approx(1.71, abs=0.01)
  assert pld.get_epsilon(delta) == pytest.approx(1.52, abs=0.01)
