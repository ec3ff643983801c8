# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Thresholds that arrive at run time, and the hyperparameter checks.

A threshold given as a number is checked when the clipper is built. One
from a schedule, or set in :func:`optax.inject_hyperparams`'s state under
``jit``, is known only at run time; a negative one would reverse the
updates and a NaN one turn clipping off. Such a step is a bad step under
the non-finite policy: ``"zero"`` zeroes it and counts it,
``"propagate"`` gives NaN, ``"error"`` raises.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_lowering import runtime_conditionals

import optaxclip

# (factory, the threshold-like argument, other arguments, needs params)
CASES = [
  (optaxclip.clip_by_global_norm, "max_norm", {}, False),
  (optaxclip.clip_by_tensor_norm, "max_norm", {}, False),
  (optaxclip.clip_by_block_rms, "threshold", {}, False),
  (optaxclip.clip_by_value, "max_delta", {}, False),
  (optaxclip.max_norm_constraint, "max_norm", {}, True),
  (optaxclip.adaptive_grad_clip, "clipping", {}, True),
  (optaxclip.clippy, "relative", {"absolute": 1e-3}, True),
  (optaxclip.zclip, "max_grad_norm", {"warmup_steps": 1}, False),
  (optaxclip.clip_spikes, "threshold", {"warmup_steps": 0}, False),
  (optaxclip.adagc, "lambda_abs", {}, False),
]
IDS = [c[0].__name__ for c in CASES]
GRADS = {"w": jnp.array([[3.0, -4.0], [1.0, 2.0]]), "b": jnp.array([0.5, -1.0])}
PARAMS = jax.tree.map(lambda g: jnp.full_like(g, 0.1), GRADS)


def _build(case, value, policy):
  factory, arg, kwargs, _ = case
  return factory(**{arg: value}, **kwargs, nonfinite=policy)


def _step(case, tx, jit):
  params = PARAMS if case[3] else None

  def update(g, s):
    return tx.update(g, s, params)

  return (jax.jit(update) if jit else update)(GRADS, tx.init(PARAMS))


def _stats(state):
  (s,) = optaxclip.stats(state).values()
  return s


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("bad", [-1.0, float("nan")])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_schedule_value_zeroes_the_step_and_counts_it(case, bad, jit):
  tx = _build(case, lambda step: bad, "zero")
  updates, state = _step(case, tx, jit)
  for u in jax.tree.leaves(updates):
    np.testing.assert_array_equal(np.asarray(u), 0.0)
  assert int(_stats(state).nonfinite_count) == 1


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_schedule_value_propagates_nan(case, bad):
  tx = _build(case, lambda step: bad, "propagate")
  updates, _ = _step(case, tx, jit=True)
  for u in jax.tree.leaves(updates):
    assert np.isnan(np.asarray(u)).all()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_schedule_value_raises_under_error(case):
  tx = _build(case, lambda step: -1.0, "error")
  with pytest.raises(FloatingPointError, match="negative or NaN"):
    _step(case, tx, jit=False)
  with pytest.raises(Exception, match="negative or NaN"):
    jax.block_until_ready(_step(case, tx, jit=True))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_good_schedule_value_matches_the_number(case):
  # The check changes nothing on a good step.
  want, _ = _step(case, _build(case, 0.5, "zero"), jit=True)
  got, got_state = _step(case, _build(case, lambda step: 0.5, "zero"), True)
  for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6)
  assert int(_stats(got_state).nonfinite_count) == 0


def test_injected_threshold_set_negative_under_jit_is_a_bad_step():
  tx = optax.inject_hyperparams(optaxclip.clip_by_global_norm)(max_norm=1.0)
  state = tx.init(PARAMS)
  state.hyperparams["max_norm"] = jnp.asarray(-1.0)
  updates, state = jax.jit(tx.update)(GRADS, state)
  for u in jax.tree.leaves(updates):
    np.testing.assert_array_equal(np.asarray(u), 0.0)
  assert int(optaxclip.stats(state)["clip_by_global_norm"].nonfinite_count) == 1


@pytest.mark.parametrize("policy", ["zero", "propagate", "error"])
def test_the_check_adds_no_conditional(policy):
  # The run-time check joins the existing finiteness test: no conditional
  # on a GPU, except "error"'s one callback conditional. (A callback cannot
  # be exported: "error" is lowered for this machine's CPU, where
  # clip_by_global_norm + Adam has no other conditional.)
  tx = optax.chain(
    optaxclip.clip_by_global_norm(
      lambda step: 1.0 / (1 + step), nonfinite=policy
    ),
    optax.adam(1e-3),
  )
  state = jax.eval_shape(tx.init, PARAMS)
  if policy == "error":  # a callback cannot be exported: lower in place
    text = jax.jit(tx.update).lower(GRADS, state).as_text()
  else:
    exported = jax.export.export(jax.jit(tx.update), platforms=["cuda"])
    text = exported(GRADS, state).mlir_module()
  found = runtime_conditionals(text)
  assert len(found) == (1 if policy == "error" else 0), found


def test_bfloat16_scalars_are_numbers():
  params = jnp.ones(3, jnp.bfloat16)
  tx = optax.inject_hyperparams(optaxclip.clip_by_global_norm)(max_norm=1.0)
  updates, _ = tx.update(3 * params, tx.init(params))
  np.testing.assert_allclose(
    np.asarray(updates, np.float32), np.full(3, 3**-0.5), rtol=1e-2
  )
  optaxclip.clip_by_global_norm(jnp.bfloat16(2.0))
  optaxclip.clip_params(jnp.bfloat16(-1.0), jnp.bfloat16(1.0))


def test_hints_only_where_they_are_true():
  with pytest.raises(ValueError, match="0 zeroes the updates"):
    optaxclip.clip_by_global_norm(-1.0)
  with pytest.raises(ValueError) as e:
    optaxclip.autoclip(percentile=-1.0)
  assert "zeroes" not in str(e.value)
  with pytest.raises(ValueError, match="clip_by_layer"):
    optaxclip.clip_by_global_norm(jnp.ones(2))
  with pytest.raises(ValueError) as e:
    optaxclip.zclip(alpha=jnp.ones(2))
  assert "clip_by_layer" not in str(e.value)


@pytest.mark.parametrize(
  "factory", [optaxclip.clip_by_value, optaxclip.clip_params]
)
def test_value_clippers_do_not_report_a_nan_norm(factory):
  tx = (
    factory(1.0, nonfinite="error")
    if factory is optaxclip.clip_by_value
    else factory(-1.0, 1.0, nonfinite="error")
  )
  g = {"w": jnp.array([1.0, jnp.inf])}
  with pytest.raises(FloatingPointError) as e:
    tx.update(g, tx.init(g), g)
  assert "norm nan" not in str(e.value)
  assert "NaN or Inf" in str(e.value)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_skip_on_spike_skips_a_step_with_a_bad_sigma(bad, jit):
  # A negative sigma_factor would call every step a spike, a NaN one none:
  # either way the wrapper skips (and counts) the step, and the inner state
  # is left as it was.
  tx = optaxclip.skip_on_spike(
    optax.adam(0.1), sigma_factor=lambda step: bad, watch=("grad_norm",)
  )
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  updates, new = update({"w": jnp.array([1.0, 2.0, 3.0])}, state, params)
  np.testing.assert_array_equal(np.asarray(updates["w"]), 0.0)
  (s,) = optaxclip.stats(new).values()
  assert int(s.skip_count) == 1
  for a, b in zip(
    jax.tree.leaves(state.inner_state), jax.tree.leaves(new.inner_state)
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
