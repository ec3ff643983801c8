# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of skip_nonfinite and the shared skip machinery."""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optaxclip
from optaxclip import _norms

PARAMS = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
GOOD = {"w": jnp.full((3, 2), 0.5), "b": jnp.asarray([1.0, -2.0])}
NAN = {"w": GOOD["w"].at[0, 0].set(jnp.nan), "b": GOOD["b"]}
INF = {"w": GOOD["w"], "b": GOOD["b"].at[1].set(-jnp.inf)}


def skip_stats(state):
  return optaxclip.stats(state)["skip_nonfinite"]


def make_nan_inner():
  """Finite in, NaN out: a transformation that breaks its update."""

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * jnp.nan, updates), state + 1

  return optax.GradientTransformation(
    lambda p: jnp.zeros([], jnp.int32), update
  )


@pytest.mark.parametrize("bad", [NAN, INF], ids=["nan", "inf"])
def test_nonfinite_gradients_skip_the_whole_step(bad):
  inner = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.adam(0.1))
  tx = optaxclip.skip_nonfinite(inner)
  state = tx.init(PARAMS)
  _, state = tx.update(GOOD, state, PARAMS)  # one good step first
  u, new = tx.update(bad, state, PARAMS)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, GOOD))
  # The inner state, clipper statistics included, is exactly as it was.
  chex.assert_trees_all_equal(new.inner_state, state.inner_state)
  s = skip_stats(new)
  assert int(s.skip_count) == 1 and int(s.consecutive_skips) == 1
  assert int(s.nonfinite_count) == 1 and int(s.step) == 2
  assert float(s.clipped) == 1 and float(s.scale) == 0
  assert float(s.norm_after) == 0 and not np.isfinite(float(s.norm_before))
  assert int(optaxclip.stats(new)["clip_by_global_norm"].step) == 1


def test_good_steps_equal_the_inner_transformation():
  inner = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.adam(0.1))
  tx = optaxclip.skip_nonfinite(inner)
  state, inner_state = tx.init(PARAMS), inner.init(PARAMS)
  for g in (GOOD, jax.tree.map(lambda x: -3 * x, GOOD)):
    u, state = tx.update(g, state, PARAMS)
    want, inner_state = inner.update(g, inner_state, PARAMS)
    # The inner step is re-evaluated equation by equation: equal up to ulps.
    chex.assert_trees_all_close(u, want, rtol=1e-6)
    chex.assert_trees_all_close(state.inner_state, inner_state, rtol=1e-6)
    s = skip_stats(state)
    assert float(s.clipped) == 0 and float(s.scale) == 1
    np.testing.assert_allclose(s.norm_before, _norms.tree_norm(g), rtol=1e-6)
    # norm_after: what the wrapper passed on to the inner step.
    np.testing.assert_allclose(s.norm_after, _norms.tree_norm(g), rtol=1e-6)
  assert int(skip_stats(state).skip_count) == 0


def test_consecutive_skips_reset_after_a_good_step():
  tx = optaxclip.skip_nonfinite(optax.sgd(1.0))
  state = tx.init(PARAMS)
  history = []
  for g in (NAN, INF, GOOD, NAN, GOOD, GOOD):
    _, state = tx.update(g, state, PARAMS)
    s = skip_stats(state)
    history.append((int(s.skip_count), int(s.consecutive_skips)))
  assert history == [(1, 1), (2, 2), (2, 0), (3, 1), (3, 0), (3, 0)]
  assert int(skip_stats(state).nonfinite_count) == 3
  assert int(skip_stats(state).step) == 6


def test_nonfinite_inner_output_is_skipped():
  tx = optaxclip.skip_nonfinite(make_nan_inner())
  state = tx.init(PARAMS)
  u, new = tx.update(GOOD, state, PARAMS)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, GOOD))
  assert int(new.inner_state) == 0  # the inner step was discarded
  s = skip_stats(new)
  assert int(s.skip_count) == 1 and float(s.norm_after) == 0
  assert np.isfinite(float(s.norm_before))


def test_zero_policy_alone_still_advances_adam_but_skip_does_not():
  # The documented difference: nonfinite="zero" zeroes the clipper's
  # output, yet Adam after it counts the step and decays its moments.
  chain = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.adam(0.1))
  state = chain.init(PARAMS)
  _, state = chain.update(GOOD, state, PARAMS)
  _, after_nan = chain.update(NAN, state, PARAMS)
  assert int(after_nan[1][0].count) == 2
  assert not np.allclose(after_nan[1][0].mu["b"], state[1][0].mu["b"])
  tx = optaxclip.skip_nonfinite(chain)
  state = tx.init(PARAMS)
  _, state = tx.update(GOOD, state, PARAMS)
  _, after_nan = tx.update(NAN, state, PARAMS)
  assert int(after_nan.inner_state[1][0].count) == 1
  chex.assert_trees_all_equal(after_nan.inner_state, state.inner_state)


def test_squares_overflowing_float32_count_as_nonfinite():
  big = {"w": jnp.full((3, 2), 1e20), "b": jnp.ones(2)}
  tx = optaxclip.skip_nonfinite(optax.sgd(1.0))
  _, state = tx.update(big, tx.init(PARAMS), PARAMS)
  assert int(skip_stats(state).skip_count) == 1
  ok = {"w": jnp.full((3, 2), 1e18), "b": jnp.ones(2)}
  _, state = tx.update(ok, tx.init(PARAMS), PARAMS)
  assert int(skip_stats(state).skip_count) == 0


def test_forwards_params_and_extra_args():
  seen = {}

  def update(updates, state, params=None, *, loss=None, **extra):
    seen["extra"] = extra
    # The inner step is traced: check the values through its output.
    return jax.tree.map(lambda u, p: u + loss * p, updates, params), state

  inner = optax.GradientTransformationExtraArgs(lambda p: (), update)
  tx = optaxclip.skip_nonfinite(inner)
  u, _ = tx.update(
    GOOD, tx.init(PARAMS), PARAMS, loss=jnp.float32(3.0), other=1
  )
  want = jax.tree.map(lambda g, p: g + 3.0 * p, GOOD, PARAMS)
  chex.assert_trees_all_close(u, want, rtol=1e-6)
  # Values that are not arrays reach the inner step as Python values.
  assert seen["extra"] == {"other": 1}
  # An inner transformation that needs params (AGC) works through it.
  agc = optaxclip.skip_nonfinite(optaxclip.adaptive_grad_clip(0.01))
  u, _ = agc.update(GOOD, agc.init(PARAMS), PARAMS)
  ref = optaxclip.adaptive_grad_clip(0.01)
  want, _ = ref.update(GOOD, ref.init(PARAMS), PARAMS)
  chex.assert_trees_all_equal(u, want)


def test_empty_none_and_masked_leaves():
  tx = optaxclip.skip_nonfinite(optax.sgd(1.0))
  for empty in ({}, None, {"a": None}):
    u, state = tx.update(empty, tx.init(empty))
    assert u == empty and int(skip_stats(state).skip_count) == 0
  masked = optax.masked(
    optaxclip.skip_nonfinite(optax.sgd(1.0)), {"w": True, "b": False}
  )
  # The NaN is in a masked-out leaf: the wrapped part never sees it.
  g = {"w": GOOD["w"], "b": jnp.asarray([jnp.nan, 0.0])}
  u, state = masked.update(g, masked.init(PARAMS), PARAMS)
  chex.assert_trees_all_equal(u["w"], -GOOD["w"])
  assert int(skip_stats(state).skip_count) == 0


def test_dtypes_jit_and_no_retrace():
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)
  grads = jax.tree.map(lambda x: x.astype(jnp.bfloat16), GOOD)
  bad = jax.tree.map(lambda x: x.astype(jnp.bfloat16), NAN)
  tx = optaxclip.skip_nonfinite(optax.adam(0.1))
  traces = []

  @jax.jit
  def step(g, s):
    traces.append(1)
    return tx.update(g, s, params)

  s0 = tx.init(params)
  u, s1 = step(grads, s0)
  chex.assert_trees_all_equal_dtypes(u, grads)
  u, s2 = step(bad, s1)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, grads))
  chex.assert_trees_all_equal(s2.inner_state, s1.inner_state)
  assert len(traces) == 1
  assert jax.tree.map(jax.typeof, s0) == jax.tree.map(jax.typeof, s2)


def test_arguments():
  with pytest.raises(
    TypeError, match="must be an optax GradientTransformation"
  ):
    optaxclip.skip_nonfinite(lambda g: g)
  with pytest.raises(TypeError, match="`name`"):
    optaxclip.skip_nonfinite(optax.sgd(1.0), name="")
  tx = optaxclip.skip_nonfinite(optax.sgd(1.0))
  with pytest.raises(TypeError, match="int32"):
    tx.update({"i": jnp.arange(2)}, tx.init(None))


def test_stats_names_and_types():
  inner = optax.chain(optaxclip.clip_by_value(1.0), optax.sgd(0.1))
  tx = optax.chain(
    optaxclip.skip_nonfinite(inner, name="guard"),
    optaxclip.skip_nonfinite(optax.sgd(1.0)),
  )
  _, state = tx.update(GOOD, tx.init(PARAMS), PARAMS)
  found = optaxclip.stats(state)
  # Traversal order: a wrapper's inner state comes before its own stats.
  assert list(found) == ["clip_by_value", "guard", "skip_nonfinite"]
  assert isinstance(found["guard"], optaxclip.SkipStats)
  assert isinstance(found["clip_by_value"], optaxclip.ClipStats)
  for s in found.values():
    assert all(jnp.shape(v) == () for v in s)
    dtypes = {np.dtype(v.dtype) for v in s}
    assert dtypes <= {np.dtype("float32"), np.dtype("int32")}
  assert math.isnan(float(found["guard"].threshold))


class _Odd(NamedTuple):
  count: jax.Array
  last: jax.Array  # the incoming gradient itself
  const: jax.Array  # a literal in the traced program
  a: jax.Array  # one value stored twice ...
  b: jax.Array  # ... and read by the updates


def odd_inner():
  """State leaves that are inputs, literals and one value held twice."""

  def init(params):
    z = jnp.zeros_like(params["w"])
    return _Odd(jnp.zeros([], jnp.int32), z, jnp.float32(0), z, z)

  def update(updates, state, params=None):
    del params
    new = state.last + updates["w"]
    u = {"w": 2 * new + state.a, "b": updates["b"]}
    return u, _Odd(state.count + 1, updates["w"], jnp.float32(7), new, new)

  return optax.GradientTransformation(init, update)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_state_is_chosen_where_it_is_computed(jit):
  # Whatever the inner program does with its state, an accepted step equals
  # the inner step and a skipped one leaves every state leaf as it was.
  inner = odd_inner()
  tx = optaxclip.skip_nonfinite(inner)
  update = jax.jit(tx.update) if jit else tx.update
  state, ref = tx.init(PARAMS), inner.init(PARAMS)
  for g in (GOOD, NAN, jax.tree.map(lambda x: 3 * x, GOOD), INF, GOOD):
    u, new = update(g, state, PARAMS)
    if g is NAN or g is INF:
      chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, g))
      chex.assert_trees_all_equal(new.inner_state, state.inner_state)
    else:
      want, ref = inner.update(g, ref, PARAMS)
      chex.assert_trees_all_close(u, want, rtol=1e-6)
      chex.assert_trees_all_close(new.inner_state, ref, rtol=1e-6)
    state = new
  assert int(state.inner_state.count) == 3
  assert int(skip_stats(state).skip_count) == 2


def test_check_updates_false_passes_a_nonfinite_update_on():
  tx = optaxclip.skip_nonfinite(make_nan_inner(), check_updates=False)
  u, new = tx.update(GOOD, tx.init(PARAMS), PARAMS)
  assert np.isnan(np.asarray(u["w"])).all()
  assert int(new.inner_state) == 1  # the inner step happened
  s = skip_stats(new)
  assert int(s.skip_count) == 0 and int(s.nonfinite_count) == 0
  # Non-finite gradients are still skipped.
  u, new = tx.update(NAN, tx.init(PARAMS), PARAMS)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, NAN))
  assert int(new.inner_state) == 0


def test_state_structure_must_not_change():
  def update(updates, state, params=None):
    return updates, (state, state)

  bad = optax.GradientTransformation(lambda p: jnp.zeros([]), update)
  tx = optaxclip.skip_nonfinite(bad)
  with pytest.raises(ValueError, match="structure"):
    tx.update(GOOD, tx.init(PARAMS), PARAMS)


def test_check_updates_must_be_a_bool():
  for fn in (optaxclip.skip_nonfinite, optaxclip.skip_on_spike):
    with pytest.raises(TypeError, match="`check_updates` must be True"):
      fn(optax.sgd(1.0), check_updates="yes")
