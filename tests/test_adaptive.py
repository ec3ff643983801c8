# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of autoclip, zclip and adagc.

Each algorithm is re-implemented below in NumPy float64, step by step from
the papers' equations (as the docstrings state them), and run on the same
recorded gradient sequences as the jit-compiled transformation (one
``lax.scan`` over the steps). The sequences have spikes, NaN steps, a long
quiet stretch and steps where one leaf's gradient is exactly zero.
"""

from __future__ import annotations

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optaxclip
from optaxclip import _adaptive

T = 240
SPIKES = (40, 41, 90, 205, 230)
NANS = (15, 60, 150)
QUIET = (100, 200)  # constant direction, norm 1 +- 1e-3
ZERO_B = (5, 70, 71, 160)  # leaf "b" exactly zero


def record(seed=0, spikes=SPIKES, nans=NANS, quiet=QUIET, zero_b=ZERO_B):
  """A recorded gradient sequence: ``{"a": (T, 3), "b": (T, 2, 2)}``."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((T, 3))
  b = 0.5 * rng.standard_normal((T, 2, 2))
  scale = np.exp(rng.normal(0.0, 0.3, T))
  lo, hi = quiet
  a[lo:hi], b[lo:hi] = a[lo], b[lo]
  scale[lo:hi] = (1 + 1e-3 * rng.standard_normal(hi - lo)) / np.sqrt(
    np.sum(a[lo] ** 2) + np.sum(b[lo] ** 2)
  )
  a, b = a * scale[:, None], b * scale[:, None, None]
  for t in spikes:
    a[t] *= 60.0
    b[t] *= 20.0
  for t in nans:
    a[t, 1] = np.nan
  for t in zero_b:
    b[t] = 0.0
  return {"a": a.astype(np.float32), "b": b.astype(np.float32)}


def leaf_norms(grads) -> np.ndarray:
  """(T, leaves) float64 L2 norms of each leaf."""
  cols = [
    np.sqrt(np.sum(np.reshape(np.asarray(g, np.float64), (len(g), -1)) ** 2, 1))
    for g in jax.tree.leaves(grads)
  ]
  return np.stack(cols, axis=1)


def global_norms(grads) -> np.ndarray:
  return np.sqrt(np.sum(leaf_norms(grads) ** 2, axis=1))


def run(tx, grads, params=None):
  """All steps in one jitted ``lax.scan``; (updates, states) per step."""

  @jax.jit
  def go(grads):
    def body(state, g):
      u, state = tx.update(g, state, params)
      return state, (u, state)

    example = jax.tree.map(lambda g: g[0], grads)
    _, out = jax.lax.scan(body, tx.init(example), grads)
    return out

  updates, states = go(grads)
  return jax.tree.map(np.asarray, updates), jax.tree.map(np.asarray, states)


def factor_of(norm, threshold):
  """Factor of a global clip: min(1, thr / n); 0 for a non-finite norm."""
  if not np.isfinite(norm):
    return 0.0
  return threshold / norm if norm > threshold else 1.0


def close(got, want, rtol=1e-5, atol=0.0):
  np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


# ---------------------------------------------------------------------------
# NumPy float64 references
# ---------------------------------------------------------------------------


def ref_autoclip(norms, p, window=None):
  """AutoClip, Alg. 1: threshold = P_p of the finite norms so far."""
  history, thr, fac = [], [], []
  for n in norms:
    if np.isfinite(n):
      history.append(n)
    h = history if window is None else history[-window:]
    t = np.percentile(h, p) if h else np.nan
    thr.append(t)
    fac.append(factor_of(n, t))
  return np.array(thr), np.array(fac)


def ref_sketch_percentile(history, p, alpha=0.01, lo=1e-20, hi=1e20):
  """DDSketch (Masson et al. 2019) estimate of P_p, fixed bucket range.

  A norm x > 0 falls in bucket i = ceil(log_gamma x), clamped to the range,
  and is represented by 2 gamma^i / (gamma + 1); representatives are clamped
  to the exact min and max, which replace the first and last; P_p
  interpolates between ranks as NumPy does. As representatives are monotone
  in x, that is np.percentile of them.
  """
  x = np.asarray(history, np.float64)
  gamma = (1 + alpha) / (1 - alpha)
  i_min = np.ceil(np.log(lo) / np.log(gamma))
  i_max = np.ceil(np.log(hi) / np.log(gamma))
  with np.errstate(divide="ignore"):
    i = np.clip(np.ceil(np.log(x) / np.log(gamma)), i_min, i_max)
  rep = np.sort(np.where(x > 0, 2 * gamma**i / (gamma + 1), 0.0))
  rep = np.clip(rep, x.min(), x.max())
  rep[0], rep[-1] = x.min(), x.max()  # the extremes are kept exactly
  return np.percentile(rep, p)


def ref_zclip(
  norms,
  *,
  alpha=0.97,
  z_thresh=2.5,
  max_grad_norm=1.0,
  eps=1e-6,
  warmup_steps=25,
  mode="zscore",
  clip_option="adaptive_scaling",
  clip_factor=1.0,
  skip_update_on_spike=False,
):
  """ZClip, from the equations of Kumar et al. 2025 (issue 3's table)."""
  cap = np.inf if max_grad_norm is None else max_grad_norm
  buf, mean, var = [], 0.0, 0.0
  out = {k: [] for k in ("thr", "fac", "spike", "z", "mean", "var")}
  for n in norms:
    finite = np.isfinite(n)
    if len(buf) < warmup_steps:
      z, spike, thr = np.nan, False, cap
      if finite:
        buf.append(n)
        if len(buf) == warmup_steps:
          mean, var = np.mean(buf), np.var(buf)
    else:
      std = np.sqrt(var)
      z = (n - mean) / (std + eps)
      if mode == "zscore":
        spike = z > z_thresh
        if clip_option == "adaptive_scaling":
          target = (mean + z_thresh**2 * std / z) * clip_factor
        else:
          target = mean
      else:
        target = mean + z_thresh * std
        spike = n > target
      spike = bool(spike and finite)
      thr = min(target if spike else np.inf, cap)
      if finite and not (skip_update_on_spike and spike):
        x = target if spike else n
        mean = alpha * mean + (1 - alpha) * x
        var = alpha * var + (1 - alpha) * (x - mean) ** 2
    out["thr"].append(thr)
    out["fac"].append(factor_of(n, thr))
    out["spike"].append(float(spike))
    out["z"].append(z)
    out["mean"].append(mean)
    out["var"].append(var)
  return {k: np.array(v, np.float64) for k, v in out.items()}


def ref_adagc(
  norms, *, beta=0.98, lambda_abs=1.0, lambda_rel=1.05, warmup_steps=100
):
  """AdaGC, from the equations of Wang et al. 2025 (per leaf)."""
  steps, n_leaves = norms.shape
  gamma = np.full(n_leaves, np.inf)
  count = 0
  fac, gam, thr = [], [], []
  for t in range(steps):
    n = norms[t]
    g = np.sqrt(np.sum(n**2))
    if not np.isfinite(g):
      fac.append(np.zeros(n_leaves))
      gam.append(gamma.copy())
      thr.append(lambda_abs if count < warmup_steps else np.nan)
      continue
    if count < warmup_steps:
      h = min(1.0, lambda_abs / g)
      f = np.full(n_leaves, h)
      thr.append(lambda_abs)
    else:
      limit = lambda_rel * gamma
      f = np.where(n > limit, limit / np.where(n > 0, n, 1), 1.0)
      thr.append(np.nan)
    clipped = f * n
    for i in range(n_leaves):
      if clipped[i] > 0:
        if count < warmup_steps:
          gamma[i] = min(gamma[i], clipped[i])
        elif np.isinf(gamma[i]):
          gamma[i] = clipped[i]
        else:
          gamma[i] = beta * gamma[i] + (1 - beta) * clipped[i]
    count += 1
    fac.append(f)
    gam.append(gamma.copy())
  return np.array(fac), np.array(gam), np.array(thr)


# ---------------------------------------------------------------------------
# Step-by-step agreement
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "p, window",
  [(10.0, 16), (50.0, 1), (90.0, T + 10), (0.0, 7), (100.0, 7)],
)
def test_autoclip_window_matches_numpy_percentile(p, window):
  grads = record()
  norms = global_norms(grads)
  _, states = run(optaxclip.autoclip(p, window=window), grads)
  stats = states.stats["autoclip"]
  want_thr, want_fac = ref_autoclip(norms, p, window)
  close(stats.threshold, want_thr)
  close(stats.scale, want_fac)
  close(stats.norm_before, norms)
  assert stats.nonfinite_count[-1] == len(NANS)
  if window == 1:  # the threshold is this step's own norm: never clips
    assert np.all(stats.clipped[np.isfinite(norms)] == 0)


@pytest.mark.parametrize("window", [1, 5, 64])
def test_autoclip_window_with_ties_zeros_and_nans(window):
  rng = np.random.default_rng(7)
  values = rng.choice([0.0, 1.0, 2.0, 3.0, 3.0, np.nan], size=T)
  grads = {"w": values[:, None].astype(np.float32)}
  _, states = run(optaxclip.autoclip(30.0, window=window), grads)
  want_thr, want_fac = ref_autoclip(values, 30.0, window)
  close(states.stats["autoclip"].threshold, want_thr, rtol=1e-6)
  close(states.stats["autoclip"].scale, want_fac, rtol=1e-6)
  valid = np.sort(values[np.isfinite(values)][-window:])
  close(states.ordered[-1][: len(valid)], valid, rtol=0)


@pytest.mark.parametrize("p", [10.0, 50.0, 0.0, 100.0])
def test_autoclip_streaming_is_the_sketch_and_within_one_percent(p):
  grads = record(seed=1)
  norms = global_norms(grads)
  _, states = run(optaxclip.autoclip(p), grads)
  stats = states.stats["autoclip"]
  finite = norms[np.isfinite(norms)]
  sketch, exact = [], []
  for t in range(T):
    seen = finite[: np.sum(np.isfinite(norms[: t + 1]))]
    sketch.append(ref_sketch_percentile(seen, p))
    exact.append(np.percentile(seen, p))
  close(stats.threshold, sketch, rtol=2e-6)
  # The documented guarantee: within a relative 1 % of the exact value.
  err = np.abs(stats.threshold - np.array(exact)) / np.array(exact)
  assert np.max(err) <= 0.01 + 1e-6
  if p in (0.0, 100.0):  # min and max are tracked exactly
    close(stats.threshold, exact, rtol=1e-6)
  close(stats.scale, [factor_of(n, t) for n, t in zip(norms, sketch)], 2e-6)


ZCLIP_CONFIGS = [
  {"warmup_steps": 10, "max_grad_norm": None},
  {
    "warmup_steps": 10,
    "max_grad_norm": 1.0,
    "z_thresh": 2.0,
    "clip_factor": 0.7,
  },
  {
    "warmup_steps": 25,
    "max_grad_norm": None,
    "clip_option": "mean",
    "alpha": 0.9,
  },
  {"warmup_steps": 5, "max_grad_norm": 3.0, "mode": "percentile"},
  {"warmup_steps": 10, "max_grad_norm": None, "skip_update_on_spike": True},
  {
    "warmup_steps": 1,
    "max_grad_norm": 0.5,
    "mode": "percentile",
    "z_thresh": 0.0,
  },
]


@pytest.mark.parametrize("cfg", ZCLIP_CONFIGS, ids=lambda c: str(c))
def test_zclip_matches_reference(cfg):
  grads = record(seed=2)
  norms = global_norms(grads)
  _, states = run(optaxclip.zclip(**cfg), grads)
  stats = states.stats["zclip"]
  want = ref_zclip(norms, **cfg)
  np.testing.assert_array_equal(stats.spike, want["spike"])
  close(stats.threshold, want["thr"])
  close(stats.scale, want["fac"])
  close(states.mean, want["mean"])
  close(states.var, want["var"], rtol=1e-4, atol=1e-9)
  post = ~np.isnan(want["z"]) & (np.abs(want["z"]) < 1e4)
  close(stats.zscore[post], want["z"][post], rtol=1e-3, atol=1e-3)
  assert stats.spike_count[-1] == want["spike"].sum() > 0
  assert stats.nonfinite_count[-1] == len(NANS)


ADAGC_CONFIGS = [
  {"warmup_steps": 20},
  {"warmup_steps": 0, "beta": 0.9, "lambda_rel": 1.2},
  {"warmup_steps": 30, "lambda_abs": 0.5, "beta": 0.99, "lambda_rel": 1.04},
]


@pytest.mark.parametrize("cfg", ADAGC_CONFIGS, ids=lambda c: str(c))
def test_adagc_matches_reference(cfg):
  grads = record(seed=3)
  norms = leaf_norms(grads)
  updates, states = run(optaxclip.adagc(**cfg), grads)
  want_fac, want_gamma, want_thr = ref_adagc(norms, **cfg)
  got_norms = leaf_norms(updates)
  close(got_norms, np.nan_to_num(want_fac * norms), atol=1e-6)
  close(states.gamma, want_gamma)
  close(states.stats["adagc"].threshold, want_thr)
  # Steps with a zero leaf leave that leaf's gamma as it was.
  for t in ZERO_B:
    if t > 0:
      assert states.gamma[t, 1] == states.gamma[t - 1, 1]


# ---------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------


def steady(n_steps, spike_at=None, spike=50.0, seed=0, noise=0.05):
  """Norms 1 +- ``noise`` (uniform) in a fixed direction, and a spike."""
  rng = np.random.default_rng(seed)
  direction = rng.standard_normal(4)
  direction /= np.linalg.norm(direction)
  norms = 1 + rng.uniform(-noise, noise, n_steps)
  if spike_at is not None:
    norms[spike_at] = spike
  return {"w": (norms[:, None] * direction).astype(np.float32)}


def test_zclip_leaves_a_steady_run_alone_and_clips_a_spike():
  grads = steady(120, spike_at=100)
  for cap in (None, 10.0):
    updates, states = run(optaxclip.zclip(max_grad_norm=cap), grads)
    stats = states.stats["zclip"]
    scale = stats.scale
    assert np.all(scale[:100] == 1.0)  # warm-up and steady run: untouched
    assert stats.spike[100] == 1 and stats.spike_count[-1] == 1
    out = np.linalg.norm(updates["w"][100])
    assert 0.95 < out < 1.1, out  # back to about mean + z^2 sigma / z
    assert np.all(scale[101:] == 1.0)  # and the spike left no trace


def test_zclip_cap_clips_without_touching_the_statistics():
  grads = steady(60, seed=1)
  grads = {"w": grads["w"] * 4.0}  # norms about 4, cap 1
  _, capped = run(optaxclip.zclip(max_grad_norm=1.0), grads)
  _, free = run(optaxclip.zclip(max_grad_norm=None), grads)
  assert np.all(capped.stats["zclip"].clipped == 1)
  close(capped.mean, free.mean, rtol=0)
  close(capped.var, free.var, rtol=0)


def test_adagc_clips_only_the_spiking_leaf_and_leaves_steady_run_alone():
  # Exactly steady norms (0.6 and 0.06): the warm-up minimum is the norm
  # itself, so lambda_rel = 1.05 leaves a 5 % margin. (With noisy norms the
  # running minimum starts gamma low and AdaGC clips until gamma has risen,
  # by at most a factor 1 + (1 - beta)(lambda_rel - 1) per step.)
  g = steady(150, seed=2, noise=0.0)["w"] * 0.6
  grads = {"x": g.copy(), "y": 0.1 * g[:, :2]}
  grads["x"][120] *= 30.0
  updates, states = run(optaxclip.adagc(warmup_steps=100), grads)
  stats = states.stats["adagc"]
  assert np.all(stats.clipped[:120] == 0)
  assert stats.clipped[120] == 0.5  # one leaf of two
  limit = 1.05 * states.gamma[119, 0]
  close(np.linalg.norm(updates["x"][120]), limit, rtol=1e-5)
  np.testing.assert_array_equal(updates["y"][120], grads["y"][120])
  assert np.all(stats.clipped[121:] == 0)
  assert leaf_norms(grads)[120, 0] > 20 * limit


def test_adagc_zero_leaf_is_never_clipped_to_zero():
  g = steady(40, seed=3)["w"]
  grads = {"x": g, "y": np.zeros_like(g)}
  grads["y"][30:] = g[30:]  # "y" wakes up after the warm-up
  updates, states = run(optaxclip.adagc(warmup_steps=10), grads)
  assert np.isinf(states.gamma[29, 1])
  np.testing.assert_array_equal(updates["y"][30], grads["y"][30])
  close(states.gamma[30, 1], np.linalg.norm(g[30]))
  assert np.all(np.linalg.norm(updates["y"][31:], axis=1) > 0.5)


def test_autoclip_clips_a_planted_spike_to_the_percentile():
  grads = steady(50, spike_at=45)
  norms = global_norms(grads)
  updates, states = run(optaxclip.autoclip(50.0, window=20), grads)
  want = np.percentile(norms[26:46], 50.0)
  close(np.linalg.norm(updates["w"][45]), want, rtol=1e-5)
  close(states.stats["autoclip"].threshold[45], want, rtol=1e-5)


@pytest.mark.parametrize("factory", ["autoclip", "zclip", "adagc"])
def test_nonfinite_step_leaves_the_statistics_unchanged(factory):
  tx = {
    "autoclip": optaxclip.autoclip(window=4),
    "zclip": optaxclip.zclip(warmup_steps=3),
    "adagc": optaxclip.adagc(warmup_steps=3),
  }[factory]
  g = {"w": jnp.arange(1.0, 4.0)}
  state = tx.init(g)
  for k in range(5):
    _, state = tx.update({"w": g["w"] * (k + 1)}, state)
  u, after = tx.update({"w": jnp.array([1.0, jnp.nan, 0.0])}, state)
  np.testing.assert_array_equal(u["w"], np.zeros(3))
  for name in after._fields:
    if name != "stats":
      np.testing.assert_array_equal(getattr(after, name), getattr(state, name))
  s = optaxclip.stats(after)[factory]
  assert int(s.nonfinite_count) == 1 and float(s.scale) == 0.0


def test_nonfinite_error_raises_eagerly():
  tx = optaxclip.zclip(nonfinite="error")
  with pytest.raises(FloatingPointError, match="zclip"):
    tx.update(jnp.array([jnp.inf]), tx.init(None))


def test_schedules_for_the_caps():
  sched = optax.linear_schedule(1.0, 3.0, 2)
  g = jnp.array([30.0, 40.0])
  for tx, name in (
    (optaxclip.zclip(max_grad_norm=sched, warmup_steps=5), "zclip"),
    (optaxclip.adagc(lambda_abs=sched, warmup_steps=5), "adagc"),
  ):
    state = tx.init(g)
    got = []
    for _ in range(3):
      _, state = tx.update(g, state)
      got.append(float(optaxclip.stats(state)[name].threshold))
    assert got == [1.0, 2.0, 3.0]


def test_adagc_warmup_steps_can_be_injected():
  tx = optax.inject_hyperparams(optaxclip.adagc)(warmup_steps=2)
  g = {"a": jnp.array([3.0, 4.0])}
  state = tx.init(g)
  state.hyperparams["warmup_steps"] = jnp.asarray(50)
  for _ in range(3):
    _, state = tx.update(g, state)
  # Still in the (now longer) warm-up: the global threshold is reported.
  s = optaxclip.stats(state)["adagc"]
  assert float(s.threshold) == 1.0


def test_state_size_is_fixed():
  grads = record(seed=4)
  for tx in (
    optaxclip.autoclip(),
    optaxclip.autoclip(window=8),
    optaxclip.zclip(),
    optaxclip.adagc(),
  ):
    init = tx.init(jax.tree.map(lambda g: g[0], grads))
    sizes = sum(np.size(x) for x in jax.tree.leaves(init))
    assert sizes < 5000, sizes
  assert _adaptive.SKETCH_BUCKETS == 4607


# ---------------------------------------------------------------------------
# Save and restore mid-run
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "make",
  [
    lambda: optaxclip.autoclip(),
    lambda: optaxclip.autoclip(30.0, window=5),
    lambda: optaxclip.zclip(warmup_steps=4, max_grad_norm=None),
    lambda: optaxclip.adagc(warmup_steps=4),
  ],
  ids=["autoclip", "autoclip_window", "zclip", "adagc"],
)
def test_checkpoint_restore_continues_bit_identically(make):
  tx = optax.chain(make(), optax.adam(1e-2))
  grads = record(seed=5)
  params = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}

  @jax.jit
  def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  def train(p, s, lo, hi):
    for t in range(lo, hi):
      p, s = step(p, s, {k: v[t] for k, v in grads.items()})
    return p, s

  mid = train(params, tx.init(params), 0, 12)
  want = train(*mid, 12, 24)
  blob = flax.serialization.to_bytes(mid)
  restored = flax.serialization.from_bytes((params, tx.init(params)), blob)
  got = train(*restored, 12, 24)
  for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "call, error, match",
  [
    (lambda: optaxclip.autoclip(101.0), ValueError, "percentile"),
    (lambda: optaxclip.autoclip(-1.0), ValueError, "percentile"),
    (lambda: optaxclip.autoclip(window=0), ValueError, "window"),
    (lambda: optaxclip.autoclip(window=2.5), TypeError, "window"),
    (lambda: optaxclip.autoclip(window=jnp.asarray(4)), TypeError, "static"),
    (lambda: optaxclip.autoclip(lambda s: 10.0), TypeError, "percentile"),
    (lambda: optaxclip.zclip(alpha=1.5), ValueError, "alpha"),
    (lambda: optaxclip.zclip(z_thresh=-1.0), ValueError, "z_thresh"),
    (lambda: optaxclip.zclip(max_grad_norm=-1.0), ValueError, "max_grad"),
    (lambda: optaxclip.zclip(warmup_steps=0), ValueError, "warmup_steps"),
    (lambda: optaxclip.zclip(warmup_steps=jnp.asarray(3)), TypeError, "static"),
    (lambda: optaxclip.zclip(mode="z"), ValueError, "mode"),
    (lambda: optaxclip.zclip(clip_option="max"), ValueError, "clip_option"),
    (lambda: optaxclip.zclip(skip_update_on_spike=1), TypeError, "bool"),
    (lambda: optaxclip.zclip(nonfinite="skip"), ValueError, "nonfinite"),
    (lambda: optaxclip.adagc(beta=2.0), ValueError, "beta"),
    (lambda: optaxclip.adagc(lambda_rel=0.0), ValueError, "lambda_rel"),
    (lambda: optaxclip.adagc(lambda_abs=0.0), ValueError, "lambda_abs"),
    (lambda: optaxclip.adagc(warmup_steps=-1), ValueError, "warmup_steps"),
    (lambda: optaxclip.adagc(warmup_steps=1.5), TypeError, "warmup_steps"),
  ],
)
def test_validation_errors_are_clear(call, error, match):
  with pytest.raises(error, match=match):
    call()


def test_adagc_needs_the_tree_it_was_initialised_with():
  tx = optaxclip.adagc()
  state = tx.init({"a": jnp.zeros(2)})
  with pytest.raises(ValueError, match="initialised for 1 leaves"):
    tx.update({"a": jnp.ones(2), "b": jnp.ones(2)}, state)


def test_integer_leaves_are_rejected():
  for tx in (optaxclip.autoclip(), optaxclip.zclip(), optaxclip.adagc()):
    with pytest.raises(TypeError, match="int32"):
      tx.update(jnp.arange(3), tx.init(jnp.arange(3)))
