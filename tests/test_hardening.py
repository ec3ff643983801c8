# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Classes of bad input that must never give a silent wrong result.

Issue 18: counters that would wrap at 2**31 steps, overflow of float64
leaves in float32 state, and shapes, states and axes that do not match the
gradients.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conformance import REGISTRY

import optaxclip

MAX = int(np.iinfo(np.int32).max)


# ---------------------------------------------------------------------------
# Counters saturate at the int32 maximum (optax.safe_increment)
# ---------------------------------------------------------------------------


def _set_fields(state, names, value):
  """``state`` with every int32 scalar leaf named in ``names`` set."""

  def set_one(path, x):
    last = str(path[-1]).lstrip(".").strip("[]'\"") if path else ""
    if last in names and jnp.asarray(x).dtype == jnp.int32 and not x.shape:
      return jnp.asarray(value, jnp.int32)
    return x

  return jax.tree_util.tree_map_with_path(set_one, state)


def _int_leaves(state):
  return [
    int(x)
    for x in jax.tree.leaves(state)
    if jnp.asarray(x).dtype == jnp.int32 and not jnp.shape(x)
  ]


GOOD = jnp.array([3.0, 4.0])
NAN = jnp.array([jnp.nan, 1.0])
SPIKE = jnp.array([3e3, 4e3])

# factory, counters set to MAX - 1, warm-up inputs, inputs that count.
COUNTERS = {
  "zclip/spike_count": (
    lambda: optaxclip.zclip(warmup_steps=3, max_grad_norm=None),
    ("spike_count",),
    [GOOD, GOOD * 1.01, GOOD * 0.99],
    [SPIKE, SPIKE],
  ),
  "monitor_norms/nonfinite_count": (
    optaxclip.monitor_norms,
    ("nonfinite_count",),
    [],
    [NAN, NAN],
  ),
  "skip_nonfinite/skip_count": (
    lambda: optaxclip.skip_nonfinite(optax.sgd(0.1)),
    ("skip_count", "consecutive_skips"),
    [],
    [NAN, NAN],
  ),
  "clip_spikes/count": (optaxclip.clip_spikes, ("count",), [], [GOOD, GOOD]),
  "stable_spam_clip/count": (
    optaxclip.stable_spam_clip,
    ("count",),
    [],
    [GOOD, GOOD],
  ),
  "adagc/count": (optaxclip.adagc, ("count",), [], [GOOD, GOOD]),
  "clip_by_global_norm/step": (
    lambda: optaxclip.clip_by_global_norm(1.0),
    ("step",),
    [],
    [GOOD, GOOD],
  ),
  "clip_by_global_norm/nonfinite_count": (
    lambda: optaxclip.clip_by_global_norm(1.0),
    ("nonfinite_count",),
    [],
    [NAN, NAN],
  ),
}


@pytest.mark.parametrize(
  "case",
  [pytest.param(k, marks=getattr(v, "marks", ())) for k, v in COUNTERS.items()],
)
def test_counters_saturate_instead_of_wrapping(case):
  spec = COUNTERS[case]
  make, names, warm, counted = getattr(spec, "values", spec)
  tx = make()
  params = jnp.zeros(2)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for g in warm:
    _, state = update(g, state, params)
  state = _set_fields(state, names, MAX - 1)
  for g in counted:
    u, state = update(g, state, params)
    assert all(v >= 0 for v in _int_leaves(state)), _int_leaves(state)
  if counted[-1] is not NAN:
    assert np.all(np.isfinite(u))
  got = {}

  def read(path, x):
    last = str(path[-1]).lstrip(".").strip("[]'\"") if path else ""
    if last in names and jnp.asarray(x).dtype == jnp.int32 and not x.shape:
      got.setdefault(last, []).append(int(x))

  jax.tree_util.tree_map_with_path(read, state)
  assert got and all(v == [MAX] * len(v) for v in got.values()), got


def test_autoclip_streaming_sketch_freezes_at_the_int32_maximum():
  """At 2**31 finite norms the streaming threshold stays finite."""
  tx = optaxclip.autoclip(50.0)
  update = jax.jit(tx.update)
  state = tx.init(jnp.zeros(2))
  for _ in range(3):
    _, state = update(GOOD, state)
  # As if 2**31 - 2 norms of 5 had been seen.
  state = state._replace(
    count=jnp.asarray(MAX - 1, jnp.int32),
    history=jnp.where(state.history > 0, MAX - 1, 0).astype(jnp.int32),
  )
  for g in (GOOD, GOOD * 2, GOOD * 100):
    u, state = update(g, state)
    s = optaxclip.stats(state)["autoclip"]
    np.testing.assert_allclose(float(s.threshold), 5.0, rtol=0.01)
    np.testing.assert_allclose(np.linalg.norm(u), 5.0, rtol=0.01)
  assert int(state.count) == MAX
  assert int(state.history.min()) >= 0 and int(state.history.max()) == MAX


# ---------------------------------------------------------------------------
# Shapes, states and axes are checked, never broadcast or wrapped
# ---------------------------------------------------------------------------

PARAM_CASES = [c for c in REGISTRY if c.needs_params]


def _build(case, **override):
  kwargs = {**case.kwargs, **override}
  if case.wrapper:
    return case.factory(case.inner(), **kwargs)
  return case.factory(**kwargs)


def test_the_registry_has_the_params_strategies():
  names = {c.factory.__name__ for c in PARAM_CASES}
  assert {"clip_params", "max_norm_constraint", "adaptive_grad_clip"} <= names
  assert "clippy" in names


@pytest.mark.parametrize("case", PARAM_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize(
  "p_shape, g_shape", [((3, 1), (3,)), ((1, 3), (3,)), ((3,), (2, 3))]
)
def test_params_of_another_shape_are_an_error(case, p_shape, g_shape):
  tx = _build(case)
  params = {"enc": {"w": jnp.ones(p_shape)}, "b": jnp.ones(2)}
  grads = {"enc": {"w": jnp.ones(g_shape)}, "b": jnp.ones(2)}
  state = tx.init(params)
  name = case.factory.__name__
  want = (
    rf"{name}.*'enc/w'.*{re.escape(str(p_shape))}.*{re.escape(str(g_shape))}"
  )
  with pytest.raises(ValueError, match=want):
    tx.update(grads, state, params, **case.extra_args)
  with pytest.raises(ValueError, match=want):
    jax.jit(lambda g, s, p: tx.update(g, s, p, **case.extra_args))(
      grads, state, params
    )


@pytest.mark.parametrize("case", REGISTRY, ids=lambda c: c.name)
def test_a_state_of_other_shapes_is_an_error_or_unused(case):
  """A state initialised for (1,) never reshapes gradients of shape (3,)."""
  tx = _build(case)
  small = {"w": jnp.ones(1)}
  grads = {"w": jnp.array([1.0, -2.0, 3.0])}
  state = tx.init(small)
  try:
    u, _ = tx.update(grads, state, grads, **case.extra_args)
  except ValueError as e:
    assert "(1,)" in str(e) and "(3,)" in str(e), e
    assert case.factory.__name__ in str(e), e
    return
  assert jax.tree.structure(u) == jax.tree.structure(grads)
  assert u["w"].shape == (3,) and u["w"].dtype == grads["w"].dtype


def test_clip_spikes_state_mismatch_names_the_leaf_and_shapes():
  tx = optaxclip.clip_spikes()
  state = tx.init({"a": jnp.ones(1)})
  with pytest.raises(ValueError, match=r"clip_spikes.*nu.*'a'.*\(1,\).*\(3,\)"):
    tx.update({"a": jnp.ones(3)}, state)


@pytest.mark.parametrize("window", [None, 4, 8])
@pytest.mark.parametrize("restored", [None, 4])
def test_autoclip_state_of_another_mode_is_an_error(window, restored):
  state = optaxclip.autoclip(window=restored).init(jnp.ones(2))
  tx = optaxclip.autoclip(window=window)
  if window == restored:
    tx.update(jnp.ones(2), state)
    return
  with pytest.raises(
    ValueError,
    match=r"autoclip.*made by autoclip\(window=.*history.*but this.*",
  ):
    tx.update(jnp.ones(2), state)


AXIS_FACTORIES = {
  "adaptive_grad_clip": lambda axis: optaxclip.adaptive_grad_clip(
    0.1, axis=axis
  ),
  "max_norm_constraint": lambda axis: optaxclip.max_norm_constraint(
    1.0, axis=axis
  ),
}


@pytest.mark.parametrize("strategy", AXIS_FACTORIES)
@pytest.mark.parametrize(
  "axis, shape, match",
  [
    (5, (2, 3), "axis 5 is out of range"),
    (2, (2, 3), "axis 2 is out of range"),
    (-3, (2, 3), "axis -3 is out of range"),
    ((0, 2), (2, 3), "axis 2 is out of range"),
    ((0, -2), (2, 3), r"the axes \(0, -2\) repeat"),
    (1, (3,), "axis 1 is out of range"),
    (0, (), "axis 0 is out of range"),
  ],
)
def test_out_of_range_axis_is_an_error_naming_the_leaf(
  strategy, axis, shape, match
):
  tx = AXIS_FACTORIES[strategy](axis)
  tree = {"dense": {"kernel": jnp.ones(shape)}}
  with pytest.raises(ValueError, match=rf"{strategy}: {match}.*'dense/kernel'"):
    tx.update(tree, tx.init(tree), tree)


@pytest.mark.parametrize("strategy", AXIS_FACTORIES)
@pytest.mark.parametrize("axis", [0, 1, -1, -2, (0, 1), (-1, 0)])
def test_valid_axes_still_work(strategy, axis):
  tx = AXIS_FACTORIES[strategy](axis)
  tree = {"w": jnp.arange(1.0, 7.0).reshape(2, 3)}
  u, _ = tx.update(tree, tx.init(tree), tree)
  assert u["w"].shape == (2, 3) and np.all(np.isfinite(u["w"]))


# ---------------------------------------------------------------------------
# float64 leaves beyond the float32 range: held, or non-finite under the
# policy; never NaN, never a zeroed step that is not counted
# ---------------------------------------------------------------------------


def _counted(state) -> int:
  """Non-finite and skipped steps counted in the statistics of ``state``."""
  total = 0
  for s in optaxclip.stats(state).values():
    total += int(s.nonfinite_count)
    total += int(getattr(s, "skip_count", 0))
  return total


def _f64_tree(seed=0):
  rng = np.random.default_rng(seed)
  return {
    "w": jnp.asarray(rng.uniform(-1, 1, (8, 4)), jnp.float64),
    "b": jnp.asarray(rng.uniform(-1, 1, (4,)), jnp.float64),
    "s": jnp.asarray(0.5, jnp.float64),
  }


@pytest.mark.parametrize("scale", [1e30, 1e100])
@pytest.mark.parametrize("case", REGISTRY, ids=lambda c: c.name)
def test_float64_leaves_beyond_float32_never_give_uncounted_nan(case, scale):
  with jax.enable_x64(True):
    tx = _build(case)
    params = _f64_tree()
    if "rules" in case.name or "layer" in case.name:
      params = {"w": params["w"], "b": params["b"]}
    state = tx.init(params)
    for k in range(3):
      grads = jax.tree.map(lambda p, k=k: p * scale * (1 + 0.1 * k), params)
      before = _counted(state)
      u, state = tx.update(grads, state, params, **case.extra_args)
      leaves = [np.asarray(x) for x in jax.tree.leaves(u)]
      assert all(x.dtype == np.float64 for x in leaves)
      assert all(np.all(np.isfinite(x)) for x in leaves), (k, leaves)
      zero = all(np.all(x == 0) for x in leaves)
      assert zero == (_counted(state) > before), (k, zero, _counted(state))


def test_stable_spam_float64_norm_5e19_is_a_counted_nonfinite_step():
  """The issue's reproducer: it gave NaN updates and counted nothing."""
  with jax.enable_x64(True):
    tx = optaxclip.stable_spam_clip(nonfinite="zero")
    g = jnp.array([3e19, 4e19], jnp.float64)
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(u, [0.0, 0.0])
    s = optaxclip.stats(state)["stable_spam_clip"]
    assert int(s.nonfinite_count) == 1 and np.isinf(s.norm_before)
    tx = optaxclip.stable_spam_clip(nonfinite="error")
    with pytest.raises(Exception, match="stable_spam_clip"):
      tx.update(g, tx.init(g))


def test_stateless_clippers_hold_the_float64_range():
  """clip_by_global_norm clips a norm of 5e100 exactly; its float32
  statistics report the norm as inf and count nothing (documented)."""
  with jax.enable_x64(True):
    tx = optaxclip.clip_by_global_norm(1.0)
    g = jnp.array([3e100, 4e100], jnp.float64)
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u, [0.6, 0.8], rtol=1e-12)
    s = optaxclip.stats(state)["clip_by_global_norm"]
    assert np.isinf(s.norm_before) and int(s.nonfinite_count) == 0
