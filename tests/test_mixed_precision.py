# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Mixed precision: bf16/f16 end to end and dynamic loss scaling with jmp.

The recipe of ``docs/at_scale.md``: scale the loss with
``jmp.DynamicLossScale``, unscale the gradients and cast them back to the
parameters' dtype, skip an overflow step with ``optaxclip.skip_nonfinite``
around the clip + optimizer chain (the only skip mechanism), and adjust the
scale with ``jmp.all_finite`` on the unscaled gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optaxclip

jmp = pytest.importorskip("jmp")


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_norms_in_float32_and_finite_updates_near_float16_max(dtype):
  # 400 elements of 6e4: the norm, 1.2e6, overflows float16 (max 65504);
  # accumulated in float32 it is exact and the clipped update is finite.
  g = {"w": jnp.full((20, 20), 6e4, dtype), "b": jnp.full((3,), -6e4, dtype)}
  tx = optaxclip.clip_by_global_norm(1.0)
  u, state = jax.jit(tx.update)(g, tx.init(g))
  s = optaxclip.stats(state)["clip_by_global_norm"]
  want = np.sqrt(403) * float(jnp.asarray(6e4, dtype))
  assert s.norm_before.dtype == jnp.float32
  np.testing.assert_allclose(float(s.norm_before), want, rtol=1e-6)
  for x in jax.tree.leaves(u):
    assert x.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(x)))
  np.testing.assert_allclose(float(optaxclip.global_norm(u)), 1.0, rtol=1e-2)


def _model_loss(params, x, y):
  h = jnp.tanh(x @ params["w1"] + params["b1"])
  return jnp.mean((h @ params["w2"] - y) ** 2)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_dynamic_loss_scaling_recipe(dtype):
  rng = np.random.default_rng(0)
  params = {
    "w1": jnp.asarray(rng.normal(size=(4, 8)) * 0.5, dtype),
    "b1": jnp.zeros(8, dtype),
    "w2": jnp.asarray(rng.normal(size=(8, 1)) * 0.5, dtype),
  }
  x = jnp.asarray(rng.normal(size=(32, 4)), dtype)
  y = jnp.asarray(np.sin(rng.normal(size=(32, 1))), dtype)
  # Adam's default eps=1e-8 is 0 in float16: where the second moment
  # underflows its update is 0/0 = NaN and every step would be skipped.
  tx = optaxclip.skip_nonfinite(
    optax.chain(optaxclip.autoclip(percentile=90.0), optax.adam(1e-2, eps=1e-3))
  )
  opt_state = tx.init(params)
  # 2**30 overflows float16 (and, times the gradients, nothing in bf16):
  # the first float16 steps must be skipped and the scale halved.
  scale = jmp.DynamicLossScale(
    jnp.asarray(2.0**30, jnp.float32), period=5, min_loss_scale=jnp.ones([])
  )

  @jax.jit
  def step(params, opt_state, scale):
    def scaled_loss(p):
      return scale.scale(_model_loss(p, x, y))

    grads = jax.grad(scaled_loss)(params)
    # unscale returns float32 for float16 input: cast back.
    grads = jax.tree.map(
      lambda g, p: g.astype(p.dtype), scale.unscale(grads), params
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    finite = jmp.all_finite(grads)
    return (
      optax.apply_updates(params, updates),
      opt_state,
      scale.adjust(finite),
      finite,
    )

  losses, scales, finites = [], [], []
  loss0 = float(_model_loss(params, x, y))
  for _ in range(60):
    adam_before = opt_state.inner_state
    params, opt_state, scale, finite = step(params, opt_state, scale)
    finites.append(bool(finite))
    scales.append(float(scale.loss_scale))
    losses.append(float(_model_loss(params, x, y)))
    if not finite:
      # A skipped step leaves the clipper's statistics and Adam untouched.
      jax.tree.map(
        np.testing.assert_array_equal, opt_state.inner_state, adam_before
      )
  assert all(p.dtype == dtype for p in jax.tree.leaves(params))
  assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
  skipped = int(optaxclip.stats(opt_state)["skip_nonfinite"].skip_count)
  assert skipped == finites.count(False)
  if dtype == jnp.float16:
    assert not finites[0] and scales[0] == 2.0**29
    assert skipped >= 10  # 2**30 -> about 2**14 takes about 16 halvings
    # After a run of 5 finite steps (period=5) the scale doubles: the
    # first time exactly 5 steps after the first finite one.
    i = finites.index(True)
    assert all(finites[i : i + 5])
    assert scales[i + 4] == 2 * scales[i + 3]
  else:
    assert skipped == 0
  # The autoclip statistics counted only the applied steps.
  ac = optaxclip.stats(opt_state)["autoclip"]
  assert int(ac.step) == 60 - skipped
  assert losses[-1] < 0.7 * loss0
