# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""optax.MultiSteps: clipping sees the accumulated gradient.

Every registry strategy is also run inside MultiSteps by the conformance
suite (``test_multisteps_equals_mean_gradient``); these tests check the
numbers against NumPy for a global and an adaptive clipper.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optaxclip

K = 3


def _grads(n, seed=0):
  rng = np.random.default_rng(seed)
  return [
    {
      "w": rng.normal(size=(4, 3)).astype(np.float32) * (1 + 5 * (i % 2)),
      "b": rng.normal(size=(3,)).astype(np.float32),
    }
    for i in range(n)
  ]


def _norm64(tree):
  return np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in tree))


def _mean_norms(grads):
  out = []
  for j in range(0, len(grads), K):
    chunk = grads[j : j + K]
    mean = [sum(g[k] for g in chunk) / K for k in ("b", "w")]
    out.append(_norm64(mean))
  return out


def test_clip_sees_the_accumulated_gradient():
  params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
  tx = optax.MultiSteps(
    optax.chain(optaxclip.clip_by_global_norm(1.0), optax.sgd(1.0)),
    every_k_schedule=K,
  )
  state = tx.init(params)
  grads = _grads(2 * K)
  step = jax.jit(tx.update)
  seen = []
  for i, g in enumerate(grads):
    u, state = step(g, state, params)
    s = optaxclip.stats(state)["clip_by_global_norm"]
    if (i + 1) % K:
      assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(u))
    else:
      seen.append(float(s.norm_before))
      # The update is the clipped mean: norm min(1, ||mean||).
      np.testing.assert_allclose(
        _norm64(jax.tree.leaves(u)), min(1.0, seen[-1]), rtol=1e-5
      )
    assert int(s.step) == (i + 1) // K
  np.testing.assert_allclose(seen, _mean_norms(grads), rtol=1e-5)
  # Not the norms of the single gradients.
  single = [_norm64([g["b"], g["w"]]) for g in grads]
  assert not np.allclose(seen, single[K - 1 :: K], rtol=1e-2)


def test_adaptive_state_changes_only_on_applied_steps():
  params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
  tx = optax.MultiSteps(
    optax.chain(optaxclip.autoclip(50.0, window=4), optax.adam(1e-2)),
    every_k_schedule=K,
  )
  state = tx.init(params)
  grads = _grads(4 * K, seed=1)
  step = jax.jit(tx.update)
  for i, g in enumerate(grads):
    before = state.inner_opt_state
    _, state = step(g, state, params)
    if (i + 1) % K:
      jax.tree.map(np.testing.assert_array_equal, state.inner_opt_state, before)
  ac = state.inner_opt_state[0]
  # The window holds the 4 norms of the accumulated (mean) gradients.
  np.testing.assert_allclose(
    np.sort(np.asarray(ac.history)), np.sort(_mean_norms(grads)), rtol=1e-5
  )
  assert int(optaxclip.stats(state)["autoclip"].step) == 4
