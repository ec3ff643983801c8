# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""clip_spikes, stable_spam_clip and skip_on_spike against NumPy references.

Each reference below is a float64 NumPy loop written from the papers'
equations, run on the same recorded gradient sequence (spikes, a quiet
stretch, NaN/Inf steps, an all-zero step) as the jit-compiled
transformation, which runs the whole sequence in one ``lax.scan``. Where a
float32 decision can legitimately differ from the float64 one (a value
within rounding of its bound), the comparison allows exactly those.
"""

from __future__ import annotations

import functools

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optaxclip

T = 120  # steps in the recorded sequence


def recorded_grads(seed=0):
  """A gradient sequence: noise, spikes, a quiet stretch, NaN/Inf, zeros."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((T, 5, 3))
  b = 0.1 * rng.standard_normal((T, 4))
  a[40:70] *= 1e-3  # quiet stretch
  b[40:70] *= 1e-3
  a[30, 1, 2] *= 1e3  # element spikes
  b[35] *= 50
  a[75, 0, 0] = 1e4
  b[90, 2] = -500.0
  a[50, 2, 1] = np.nan  # non-finite steps
  b[80, 0] = np.inf
  a[81, 1, 1] = -np.inf
  a[100] = 0.0  # an all-zero step
  b[100] = 0.0
  return {"a": a.astype(np.float32), "b": b.astype(np.float32)}


def flat(tree, t=None):
  """The leaves of step t (or all steps) as one float64 vector (per step)."""
  leaves = jax.tree.leaves(tree)
  if t is None:
    return np.concatenate(
      [np.asarray(x, np.float64).reshape(x.shape[0], -1) for x in leaves], 1
    )
  return np.concatenate([np.asarray(x[t], np.float64).ravel() for x in leaves])


@functools.cache
def _scanner(tx):
  """A jitted ``lax.scan`` of ``tx.update``, one per transformation."""

  def body(params, s, x):
    g, loss = x
    extra = {} if loss is None else {"loss": loss}
    u, s = tx.update(g, s, params, **extra)
    return s, (u, optaxclip.stats(s))

  return jax.jit(
    lambda s, xs, params: jax.lax.scan(functools.partial(body, params), s, xs)
  )


def run_scan(tx, grads, *, losses=None, state=None, params=None):
  """All steps of ``tx.update`` in one jitted ``lax.scan``.

  Returns:
    ``(final_state, updates, stats)``; updates and statistics stacked along
    the step axis.
  """
  if state is None:
    state = tx.init(jax.tree.map(lambda x: jnp.zeros_like(x[0]), grads))
  final, (updates, stats) = _scanner(tx)(state, (grads, losses), params)
  return final, updates, stats


def f32(x):
  """A hyperparameter as the references hold it: a Python float.

  The transformations take ``1 - beta`` (and the bias corrections) before
  the cast to float32, as the papers' code and Optax do, so the float64
  references use the unrounded values. (Rounding beta first would make
  ``1 - 0.999`` differ from 0.001 by 1.3e-5 relative: issue 18, item 14.)
  """
  return float(x)


def roundtrip(template, state):
  """Saves and restores a state with flax.serialization (msgpack bytes)."""
  return flax.serialization.from_bytes(
    template, flax.serialization.to_bytes(state)
  )


# ---------------------------------------------------------------------------
# clip_spikes (SPAM)
# ---------------------------------------------------------------------------


def ref_clip_spikes(gs, theta, beta2, warmup):
  """SPAM's spike clip, float64, from the paper's equations.

  ``gs``: [T, n] gradients. Returns the per-step outputs, clipped fractions,
  the number of elements within rounding of their bound per step, the
  running non-finite count, and the final v and count.
  """
  v = np.zeros(gs.shape[1])
  count = 0
  nonfinite = 0
  outs, fracs, ambiguous, bad = [], [], [], []
  for g in gs:
    if not np.all(np.isfinite(g)):
      nonfinite += 1
      outs.append(np.zeros_like(g))
      fracs.append(1.0)
      ambiguous.append(0)
      bad.append(nonfinite)
      continue
    if count >= warmup:
      bound_sq = theta * v
      mask = g**2 > bound_sq
      close = np.abs(g**2 - bound_sq) <= 1e-4 * bound_sq
      clipped = np.where(mask, np.sign(g) * np.sqrt(bound_sq), g)
    else:
      mask = close = np.zeros(g.shape, bool)
      clipped = g
    v = beta2 * v + (1 - beta2) * clipped**2
    count += 1
    outs.append(clipped)
    fracs.append(mask.mean())
    ambiguous.append(int(close.sum()))
    bad.append(nonfinite)
  return (
    np.array(outs),
    np.array(fracs),
    np.array(ambiguous),
    np.array(bad),
    v,
    count,
  )


@pytest.mark.parametrize(
  "kwargs",
  [{}, {"threshold": 20.0, "beta2": 0.9, "warmup_steps": 5}],
  ids=["defaults", "aggressive"],
)
def test_clip_spikes_matches_reference(kwargs):
  grads = recorded_grads()
  tx = optaxclip.clip_spikes(**kwargs)
  final, updates, stats = run_scan(tx, grads)
  s = stats["clip_spikes"]
  theta = f32(kwargs.get("threshold", 5000.0))
  beta2 = f32(kwargs.get("beta2", 0.999))
  warmup = kwargs.get("warmup_steps", 20)
  gs = flat(grads)
  want, frac, ambiguous, bad, v, count = ref_clip_spikes(
    gs, theta, beta2, warmup
  )
  got = flat(updates)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-30)
  n = gs.shape[1]
  assert np.all(np.abs(np.asarray(s.clipped) - frac) <= ambiguous / n + 1e-7)
  np.testing.assert_array_equal(s.nonfinite_count, bad)
  np.testing.assert_array_equal(s.step, np.arange(1, T + 1))
  finite = np.all(np.isfinite(gs), 1)
  norm_in = np.sqrt(np.sum(np.where(np.isfinite(gs), gs, 0) ** 2, 1))
  np.testing.assert_allclose(
    np.asarray(s.norm_before)[finite], norm_in[finite], rtol=1e-5
  )
  assert not np.any(np.isfinite(np.asarray(s.norm_before)[~finite]))
  np.testing.assert_allclose(
    s.norm_after, np.sqrt(np.sum(want**2, 1)), rtol=1e-5
  )
  # scale: the smallest element factor, 0 on a zeroed step.
  safe = np.where(gs != 0, np.abs(gs), 1)
  ratio = np.where(gs != 0, np.abs(want) / safe, 1)
  want_scale = np.where(
    finite, np.min(np.where(finite[:, None], ratio, 1), 1), 0
  )
  np.testing.assert_allclose(s.scale, want_scale, rtol=2e-5)
  assert int(final.count) == count
  np.testing.assert_allclose(
    flat(jax.tree.map(lambda x: x[None], final.nu))[0], v, rtol=2e-5
  )
  # The planted spikes were clipped after warm-up in both runs.
  assert frac[30] > 0 and frac[75] > 0 and frac[90] > 0


def test_clip_spikes_warmup_and_steady_run_untouched():
  rng = np.random.default_rng(1)
  grads = {"g": jnp.asarray(rng.standard_normal((200, 64)), jnp.float32)}
  _, updates, stats = run_scan(optaxclip.clip_spikes(), grads)
  # Gaussian gradients never exceed sqrt(5000 v) ~ 10 sigma: untouched.
  chex.assert_trees_all_equal(updates, grads)
  assert float(jnp.max(stats["clip_spikes"].clipped)) == 0.0
  # On the last warm-up step (the 20th) a huge element passes ...
  spiky = {"g": grads["g"].at[19, 0].set(1e4)}
  _, updates, stats = run_scan(optaxclip.clip_spikes(), spiky)
  assert float(updates["g"][19, 0]) == 1e4
  assert float(stats["clip_spikes"].clipped[19]) == 0
  # ... on the next step it is cut.
  spiky = {"g": grads["g"].at[20, 0].set(1e4)}
  _, updates, stats = run_scan(optaxclip.clip_spikes(), spiky)
  assert float(updates["g"][20, 0]) < 1e2
  assert float(stats["clip_spikes"].clipped[20]) == pytest.approx(1 / 64)


def test_clip_spikes_nonfinite_policies():
  g = jnp.array([1.0, jnp.nan])
  tx = optaxclip.clip_spikes(warmup_steps=0)
  state = tx.init(g)
  u, s1 = tx.update(g, state)
  chex.assert_trees_all_equal(u, jnp.zeros(2))
  chex.assert_trees_all_equal(s1.nu, state.nu)
  assert int(s1.count) == 0
  assert int(optaxclip.stats(s1)["clip_spikes"].nonfinite_count) == 1
  tx = optaxclip.clip_spikes(nonfinite="propagate")
  u, s2 = tx.update(g, tx.init(g))
  assert np.isnan(float(u[1])) and float(u[0]) == 1.0
  chex.assert_trees_all_equal(s2.nu, jnp.zeros(2))
  tx = optaxclip.clip_spikes(nonfinite="error")
  with pytest.raises(FloatingPointError, match="non-finite"):
    tx.update(g, tx.init(g))


def test_clip_spikes_keeps_state_in_float32_for_bf16():
  g = jnp.ones((3,), jnp.bfloat16)
  tx = optaxclip.clip_spikes()
  state = tx.init(g)
  assert state.nu.dtype == jnp.float32
  u, state = tx.update(g, state)
  assert u.dtype == jnp.bfloat16 and state.nu.dtype == jnp.float32


def test_clip_spikes_inject_hyperparams_takes_effect():
  tx = optax.inject_hyperparams(optaxclip.clip_spikes)(
    threshold=5000.0, warmup_steps=2
  )
  step = jax.jit(tx.update)
  state = tx.init(jnp.zeros(2))
  for _ in range(3):
    _, state = step(jnp.ones(2), state)
  spike = jnp.array([1.0, 1e3])
  clipped, _ = step(spike, state)
  state.hyperparams["threshold"] = jnp.asarray(jnp.inf)
  free, _ = step(spike, state)
  assert float(clipped[1]) < 100 and float(free[1]) == 1e3


# ---------------------------------------------------------------------------
# stable_spam_clip (AdaClip + AdaGN)
# ---------------------------------------------------------------------------


def ref_stable_spam(leaves_seq, gamma1, gamma2, theta, eps):
  """Stable-SPAM's AdaClip then AdaGN per tensor, float64.

  ``leaves_seq``: list over leaves of [T, ...] arrays. Returns the per-step
  outputs (list over leaves), AdaClip fractions, ambiguous element counts,
  and the final per-leaf EMAs and count.
  """
  n_leaves = len(leaves_seq)
  m_max = np.zeros(n_leaves)
  m_n = np.zeros(n_leaves)
  v_n = np.zeros(n_leaves)
  t = 0
  outs = [[] for _ in range(n_leaves)]
  fracs, ambiguous = [], []
  size = sum(x[0].size for x in leaves_seq)
  for step in range(leaves_seq[0].shape[0]):
    gs = [np.asarray(x[step], np.float64) for x in leaves_seq]
    if not all(np.all(np.isfinite(g)) for g in gs):
      for k, g in enumerate(gs):
        outs[k].append(np.zeros_like(g))
      fracs.append(1.0)
      ambiguous.append(0)
      continue
    t += 1
    n_clip = n_close = 0
    for k, g in enumerate(gs):
      peak = np.max(np.abs(g))
      m_max[k] = theta * m_max[k] + (1 - theta) * peak
      m_hat = m_max[k] / (1 - theta**t)
      mask = np.abs(g) > m_hat
      n_clip += mask.sum()
      n_close += np.sum(np.abs(np.abs(g) - m_hat) <= 1e-5 * m_hat)
      gt = g.copy()
      gt[mask] = g[mask] / peak * m_hat
      norm = np.linalg.norm(gt)
      m_n[k] = gamma1 * m_n[k] + (1 - gamma1) * norm
      v_n[k] = gamma2 * v_n[k] + (1 - gamma2) * norm**2
      c = (m_n[k] / (1 - gamma1**t)) / (np.sqrt(v_n[k] / (1 - gamma2**t)) + eps)
      outs[k].append(gt / norm * c if norm > 0 else gt)
    fracs.append(n_clip / size)
    ambiguous.append(int(n_close))
  outs = [np.array(o) for o in outs]
  return outs, np.array(fracs), np.array(ambiguous), (m_max, m_n, v_n, t)


@pytest.mark.parametrize(
  "kwargs",
  [{}, {"gamma1": 0.5, "gamma2": 0.99, "theta": 0.9}],
  ids=["defaults", "other"],
)
def test_stable_spam_matches_reference(kwargs):
  grads = recorded_grads(seed=3)
  tx = optaxclip.stable_spam_clip(**kwargs)
  final, updates, stats = run_scan(tx, grads)
  s = stats["stable_spam_clip"]
  args = {"gamma1": 0.7, "gamma2": 0.9, "theta": 0.999, **kwargs}
  leaves = jax.tree.leaves(grads)
  want, frac, ambiguous, (m_max, m_n, v_n, t) = ref_stable_spam(
    leaves, f32(args["gamma1"]), f32(args["gamma2"]), f32(args["theta"]), 1e-8
  )
  for got, w in zip(jax.tree.leaves(updates), want):
    np.testing.assert_allclose(got, w, rtol=5e-5, atol=1e-7)
  size = sum(x[0].size for x in leaves)
  assert np.all(np.abs(np.asarray(s.clipped) - frac) <= ambiguous / size + 1e-7)
  np.testing.assert_allclose(final.max_ema, m_max, rtol=1e-5)
  np.testing.assert_allclose(final.norm_ema, m_n, rtol=1e-5)
  np.testing.assert_allclose(final.sq_norm_ema, v_n, rtol=1e-5)
  assert int(final.count) == t == T - 3  # three non-finite steps
  finite = np.all(np.isfinite(flat(grads)), 1)
  norm_out = np.sqrt(sum(np.sum(w.reshape(T, -1) ** 2, 1) for w in want))
  np.testing.assert_allclose(s.norm_after, norm_out, rtol=5e-5, atol=1e-7)
  assert np.all(np.asarray(s.scale)[~finite] == 0)
  # The element spikes of steps 30 and 75 were cut by AdaClip.
  assert frac[30] > 0 and frac[75] > 0


def test_stable_spam_spike_shrinks_the_leaf():
  rng = np.random.default_rng(2)
  g = rng.standard_normal((60, 32)).astype(np.float32)
  g[50] *= 100.0  # a whole-tensor norm spike
  g[45, 3] = 1e3  # one element spike
  _, updates, stats = run_scan(optaxclip.stable_spam_clip(), {"g": g})
  norms = np.linalg.norm(np.asarray(updates["g"]), axis=1)
  # Steady steps keep a norm near 1, and so does the 100x spike: AdaClip
  # cuts its elements to the tracked maximum, AdaGN its norm to c ~ 1.
  assert np.all(np.abs(norms[10:45] - 1) < 0.2)
  assert norms[50] < 1.5 and np.linalg.norm(g[50]) > 300
  clipped = np.asarray(stats["stable_spam_clip"].clipped)
  assert clipped[45] > 0
  out = np.asarray(updates["g"][45])
  # The element is cut to the bias-corrected EMA of the peak, which early in
  # a run (t = 46) still carries about peak / t of this very spike.
  before = abs(g[45, 3]) / np.median(np.abs(g[45]))
  after = abs(out[3]) / np.median(np.abs(out))
  assert after < before / 20


def test_stable_spam_nonfinite_leaves_state_alone():
  tx = optaxclip.stable_spam_clip()
  g = {"a": jnp.ones(3), "b": jnp.array([1.0, jnp.inf])}
  state = tx.init(g)
  u, new = tx.update(g, state)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, g))
  chex.assert_trees_all_equal(new[:4], state[:4])
  with pytest.raises(FloatingPointError):
    tx = optaxclip.stable_spam_clip(nonfinite="error")
    tx.update(g, tx.init(g))


# ---------------------------------------------------------------------------
# skip_on_spike
# ---------------------------------------------------------------------------


def recorded_skip_run(seed=0):
  """Gradients and losses with planted spikes, NaN steps and a shift."""
  rng = np.random.default_rng(seed)
  g = rng.standard_normal((T, 6, 4)).astype(np.float32)
  loss = (3.0 - 0.01 * np.arange(T) + 0.05 * rng.standard_normal(T)).astype(
    np.float32
  )
  g[30] *= 8.0  # gradient-norm spike
  loss[45] += 5.0  # loss spike
  g[50, 0, 0] = np.nan  # non-finite gradient
  loss[60] = np.nan  # non-finite loss
  g[70, 1] = np.inf
  g[80] *= 1e-3  # a sudden drop is no reason to skip
  g[95:] *= 10.0  # a lasting shift: skipped until max_consecutive_skips
  return {"g": g}, loss


def ref_skip_on_spike(
  gs, losses, *, window, sigma, min_history, lr, decay, max_skips=None
):
  """skip_on_spike around SGD with momentum, float64.

  The inner optimizer is ``optax.sgd(lr, momentum=decay)``: trace
  m <- g + decay * m, update -lr * m. Returns per-step updates, skip flags,
  thresholds, the final momentum and the windows.
  """
  norms_w, losses_w = [], []
  m = np.zeros(gs.shape[1:])
  out, skipped, thr, lthr, nonfinite = [], [], [], [], []
  consecutive = 0
  n_bad = 0
  for g, loss in zip(gs, losses):
    g = g.astype(np.float64)
    norm = np.sqrt(np.sum(g**2))
    bad = not (np.isfinite(norm) and np.isfinite(loss))
    spike = False
    t_n = t_l = np.nan
    for w, x, which in ((norms_w, norm, "n"), (losses_w, loss, "l")):
      if len(w) >= min_history:
        mean, std = np.mean(w), np.std(w)
        band = mean + sigma * max(std, 1e-6 * abs(mean))
        if np.isfinite(x):
          assert abs(x - band) > 1e-4 * abs(band), "ambiguous decision"
        spike |= bool(x > band)
        if which == "n":
          t_n = band
        else:
          t_l = band
    if max_skips is not None and consecutive >= max_skips:
      spike = False
    skip = bad or spike
    n_bad += bad
    if skip:
      out.append(np.zeros_like(g))
      consecutive += 1
    else:
      m = g + decay * m
      out.append(-lr * m)
      consecutive = 0
      norms_w = [*norms_w, norm][-window:]
      losses_w = [*losses_w, float(loss)][-window:]
    skipped.append(skip)
    thr.append(t_n)
    lthr.append(t_l)
    nonfinite.append(n_bad)
  return (
    np.array(out),
    np.array(skipped),
    np.array(thr),
    np.array(lthr),
    np.array(nonfinite),
    m,
    norms_w,
  )


@pytest.mark.parametrize("max_skips", [None, 5])
def test_skip_on_spike_matches_reference(max_skips):
  grads, losses = recorded_skip_run()
  cfg = {"window": 16, "sigma_factor": 4.0, "min_history": 8}
  tx = optaxclip.skip_on_spike(
    optax.sgd(0.1, momentum=0.9), max_consecutive_skips=max_skips, **cfg
  )
  final, updates, stats = run_scan(tx, grads, losses=jnp.asarray(losses))
  s = stats["skip_on_spike"]
  want, skipped, thr, lthr, nonfinite, m, norms_w = ref_skip_on_spike(
    grads["g"],
    losses,
    window=16,
    sigma=4.0,
    min_history=8,
    lr=0.1,
    decay=0.9,
    max_skips=max_skips,
  )
  np.testing.assert_array_equal(np.asarray(s.clipped) == 1, skipped)
  np.testing.assert_allclose(updates["g"], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(s.threshold, thr, rtol=1e-5)
  np.testing.assert_allclose(s.loss_threshold, lthr, rtol=1e-5)
  np.testing.assert_array_equal(s.nonfinite_count, nonfinite)
  np.testing.assert_array_equal(s.skip_count, np.cumsum(skipped))
  np.testing.assert_allclose(s.loss, losses, rtol=0)
  # The planted events: spikes and non-finite steps skipped, the drop not.
  assert skipped[[30, 45, 50, 60, 70]].all() and not skipped[80]
  if max_skips is None:
    assert skipped[95:].all()  # the shift is never accepted
  else:
    assert not skipped[95:].all() and skipped[95:].any()
  # The inner momentum saw exactly the accepted steps.
  np.testing.assert_allclose(
    final.inner_state[0].trace["g"], m, rtol=1e-5, atol=1e-6
  )
  count = int(final.norm_count)
  assert count == min(16, len(norms_w)) == 16
  pos = int(final.norm_pos)
  window = np.roll(np.asarray(final.norm_window), -pos)
  np.testing.assert_allclose(window, norms_w, rtol=1e-5)


def test_skip_on_spike_without_loss_watches_the_norm():
  grads, _ = recorded_skip_run()
  tx = optaxclip.skip_on_spike(optax.sgd(0.1), window=16, min_history=8)
  final, _, stats = run_scan(tx, grads)
  s = stats["skip_on_spike"]
  skipped = np.asarray(s.clipped) == 1
  assert skipped[[30, 50, 70]].all() and not skipped[45]
  assert np.all(np.isnan(np.asarray(s.loss)))
  assert int(final.loss_count) == 0


def test_skip_on_spike_steady_run_is_untouched():
  rng = np.random.default_rng(5)
  grads = {"g": jnp.asarray(rng.standard_normal((150, 32)), jnp.float32)}
  losses = jnp.asarray(2 + 0.1 * rng.standard_normal(150), jnp.float32)
  tx = optaxclip.skip_on_spike(optax.sgd(1.0))
  _, updates, stats = run_scan(tx, grads, losses=losses)
  chex.assert_trees_all_close(updates, jax.tree.map(jnp.negative, grads))
  assert int(stats["skip_on_spike"].skip_count[-1]) == 0


def test_skip_on_spike_leaves_adam_state_untouched():
  tx = optaxclip.skip_on_spike(optax.adam(0.1), window=4, min_history=2)
  params = jnp.zeros(3)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for loss in (1.0, 1.1, 0.9):
    _, state = step(jnp.ones(3), state, params, loss=loss)
  u, new = step(jnp.ones(3), state, params, loss=100.0)
  chex.assert_trees_all_equal(u, jnp.zeros(3))
  chex.assert_trees_all_equal(new.inner_state, state.inner_state)
  chex.assert_trees_all_equal(new.loss_window, state.loss_window)
  s = optaxclip.stats(new)["skip_on_spike"]
  assert isinstance(s, optaxclip.SpikeSkipStats)
  assert (int(s.skip_count), int(s.nonfinite_count)) == (1, 0)
  assert int(s.consecutive_skips) == 1 and float(s.loss) == 100.0


def test_skip_on_spike_validation():
  sgd = optax.sgd(0.1)
  with pytest.raises(TypeError, match="GradientTransformation"):
    optaxclip.skip_on_spike(lambda g: g)
  with pytest.raises(ValueError, match="window"):
    optaxclip.skip_on_spike(sgd, window=1)
  with pytest.raises(ValueError, match="window"):
    optaxclip.skip_on_spike(sgd, window=3.0)
  with pytest.raises(ValueError, match="min_history"):
    optaxclip.skip_on_spike(sgd, window=8, min_history=9)
  with pytest.raises(ValueError, match="watch"):
    optaxclip.skip_on_spike(sgd, watch=("grad_norm", "accuracy"))
  with pytest.raises(ValueError, match="watch"):
    optaxclip.skip_on_spike(sgd, watch=())
  with pytest.raises(ValueError, match="sigma_factor"):
    optaxclip.skip_on_spike(sgd, sigma_factor=-1.0)
  with pytest.raises(ValueError, match="max_consecutive_skips"):
    optaxclip.skip_on_spike(sgd, max_consecutive_skips=0)
  tx = optaxclip.skip_on_spike(sgd, watch="loss")
  with pytest.raises(ValueError, match="loss="):
    tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
  tx = optaxclip.skip_on_spike(sgd)
  with pytest.raises(ValueError, match="scalar"):
    tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), loss=jnp.ones(2))


# ---------------------------------------------------------------------------
# Checkpointing mid-run: bit-identical continuation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "make",
  [
    lambda: optax.chain(optaxclip.clip_spikes(warmup_steps=5), optax.adam(0.1)),
    lambda: optax.chain(optaxclip.stable_spam_clip(), optax.adam(0.1)),
    lambda: optaxclip.skip_on_spike(
      optax.adam(0.1), window=8, min_history=4, sigma_factor=3.0
    ),
  ],
  ids=["clip_spikes", "stable_spam_clip", "skip_on_spike"],
)
def test_checkpoint_mid_run_is_bit_identical(make):
  grads, losses = recorded_skip_run(seed=4)
  grads = {"g": grads["g"][:60]}
  losses = jnp.asarray(losses[:60])
  tx = make()
  half = lambda tree, sl: jax.tree.map(lambda x: x[sl], tree)
  whole, u_whole, _ = run_scan(tx, grads, losses=losses)
  mid, _, _ = run_scan(tx, half(grads, slice(0, 30)), losses=losses[:30])
  template = tx.init(jax.tree.map(lambda x: jnp.zeros_like(x[0]), grads))
  restored = roundtrip(template, jax.device_get(mid))
  chex.assert_trees_all_equal_structs(restored, mid)
  end, u_end, _ = run_scan(
    tx, half(grads, slice(30, 60)), losses=losses[30:], state=restored
  )
  chex.assert_trees_all_equal(end, whole)
  chex.assert_trees_all_equal(u_end, half(u_whole, slice(30, 60)))
  # A restored state holds NumPy arrays; an eager step must accept them.
  g30 = jax.tree.map(lambda x: x[30], grads)
  eager = tx.update(g30, restored, None, loss=losses[30])
  jitted = jax.jit(tx.update)(g30, mid, None, loss=losses[30])
  chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# Validation and schedules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda: optaxclip.clip_spikes(-1.0), "threshold"),
    (lambda: optaxclip.clip_spikes(beta2=1.0), "beta2"),
    (lambda: optaxclip.clip_spikes(beta2=-0.1), "beta2"),
    (lambda: optaxclip.clip_spikes(warmup_steps=-1), "warmup_steps"),
    (lambda: optaxclip.clip_spikes(warmup_steps=2.5), "warmup_steps"),
    (lambda: optaxclip.clip_spikes(nonfinite="skip"), "nonfinite"),
    (lambda: optaxclip.stable_spam_clip(gamma1=1.0), "gamma1"),
    (lambda: optaxclip.stable_spam_clip(gamma2=1.5), "gamma2"),
    (lambda: optaxclip.stable_spam_clip(theta=float("nan")), "theta"),
    (lambda: optaxclip.stable_spam_clip(eps=-1e-8), "eps"),
  ],
)
def test_validation_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_type_errors():
  with pytest.raises(TypeError, match="number"):
    optaxclip.clip_spikes(beta2="0.9")
  with pytest.raises(TypeError, match="warmup_steps"):
    optaxclip.clip_spikes(warmup_steps="20")
  optaxclip.clip_spikes(warmup_steps=20.0)  # an integral float is fine
  with pytest.raises(TypeError, match="dtype"):
    tx = optaxclip.clip_spikes()
    tx.update(jnp.ones(2, jnp.int32), tx.init(jnp.ones(2, jnp.int32)))
  with pytest.raises(TypeError, match="complex"):
    tx = optaxclip.stable_spam_clip()
    g = jnp.ones(2, jnp.complex64)
    tx.update(g, tx.init(g))


@pytest.mark.parametrize(
  "factory", [optaxclip.clip_by_global_norm, optaxclip.clip_by_tensor_norm]
)
def test_norm_clippers_accept_a_schedule(factory):
  """A threshold warm-up: an optax schedule of the step as max_norm."""
  schedule = optax.linear_schedule(0.1, 1.0, transition_steps=9)
  tx = factory(schedule)
  grads = {"a": jnp.full((10, 3), 4.0), "b": jnp.full((10, 4), 3.0)}
  _, updates, stats = run_scan(tx, grads)
  (s,) = stats.values()
  want = np.asarray(jax.vmap(schedule)(jnp.arange(10)))
  np.testing.assert_allclose(s.threshold, want, rtol=1e-6)
  if factory is optaxclip.clip_by_global_norm:
    norm = np.sqrt(
      sum(np.sum(np.asarray(x) ** 2, 1) for x in jax.tree.leaves(updates))
    )
    np.testing.assert_allclose(norm, want, rtol=1e-5)
  else:
    for x in jax.tree.leaves(updates):
      np.testing.assert_allclose(
        np.linalg.norm(np.asarray(x), axis=1), want, rtol=1e-5
      )
