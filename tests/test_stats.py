# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of optaxclip.stats: finding statistics in any optimizer state."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optaxclip
from optaxclip import _stats

PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
GRADS = {"w": jnp.full((2, 3), 2.0), "b": jnp.asarray([1.0, -1.0, 0.5])}


def gnorm(max_norm=1.0, name="clip_by_global_norm"):
  return optaxclip.clip_by_global_norm(max_norm, name=name)


def stepped(tx, n=1, params=PARAMS, grads=GRADS):
  state = tx.init(params)
  for _ in range(n):
    _, state = tx.update(grads, state, params)
  return state


def test_no_clippers_no_stats():
  assert optaxclip.stats(None) == {}
  assert optaxclip.stats(()) == {}
  assert optaxclip.stats(stepped(optax.adam(0.1))) == {}


def test_values_are_the_clippers_statistics():
  state = stepped(optax.chain(gnorm(1.0), optax.sgd(0.1)), n=2)
  found = optaxclip.stats(state)
  assert list(found) == ["clip_by_global_norm"]
  s = found["clip_by_global_norm"]
  assert isinstance(s, optaxclip.ClipStats)
  chex.assert_trees_all_equal(s, _stats.unnamed(state[0].stats))
  want = float(np.sqrt(6 * 4.0 + 1 + 1 + 0.25))
  np.testing.assert_allclose(s.norm_before, want, rtol=1e-6)
  assert int(s.step) == 2 and float(s.clipped) == 1


def test_containers():
  clip = gnorm(1.0, name="g")
  value = optaxclip.clip_by_value(0.1, name="v")
  labels = {"w": "a", "b": "b"}
  cases = {
    "chain": optax.chain(clip, value, optax.adam(0.1)),
    "named_chain": optax.named_chain(
      ("clip", clip), ("value", value), ("opt", optax.adam(0.1))
    ),
    "inject": optax.chain(
      optax.inject_hyperparams(optaxclip.clip_by_global_norm)(1.0, name="g"),
      optax.inject_hyperparams(optaxclip.clip_by_value)(0.1, name="v"),
    ),
    "multisteps": optax.MultiSteps(optax.chain(clip, value), 1),
    "masked": optax.chain(
      optax.masked(clip, {"w": True, "b": False}),
      optax.masked(value, {"w": False, "b": True}),
    ),
    "partition": optax.partition({"a": clip, "b": value}, labels),
    "nested": optax.chain(
      optax.MultiSteps(
        optax.partition(
          {"a": optax.masked(clip, {"w": True, "b": False}), "b": value},
          labels,
        ),
        1,
      )
    ),
    "skip": optaxclip.skip_nonfinite(optax.chain(clip, value)),
  }
  for where, tx in cases.items():
    found = optaxclip.stats(stepped(tx, n=2))
    assert {"g", "v"} <= set(found), (where, list(found))
    assert int(found["g"].step) == 2, where
    assert int(found["v"].step) == 2, where
    # Traversal order: a chain's order; partition's labels sorted (a dict);
    # both put "g" first here.
    keys = [k for k in found if k in ("g", "v")]
    assert keys == ["g", "v"], where


def test_nnx_optimizer_state_is_unwrapped():
  class Model(nnx.Module):
    def __init__(self):
      self.w = nnx.Param(jnp.ones((2, 3)))
      self.b = nnx.Param(jnp.zeros(3))

  model = Model()
  tx = optax.chain(gnorm(1.0), optaxclip.clip_by_value(0.5), optax.adam(0.1))
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  grads = nnx.state(model, nnx.Param)
  grads = jax.tree.map(lambda x: x * 3.0, grads)
  opt.update(model, grads)
  found = optaxclip.stats(opt.opt_state)
  assert list(found) == ["clip_by_global_norm", "clip_by_value"]
  for s in found.values():
    for v in s:
      assert isinstance(v, jax.Array), type(v)  # not an nnx variable
  assert int(found["clip_by_global_norm"].step) == 1
  np.testing.assert_allclose(
    found["clip_by_global_norm"].norm_before, 3 * np.sqrt(6), rtol=1e-6
  )

  # Works on the state inside nnx.jit too.
  @nnx.jit
  def train_step(model, opt, grads):
    opt.update(model, grads)
    return optaxclip.stats(opt.opt_state)

  found = train_step(model, opt, grads)
  assert int(found["clip_by_global_norm"].step) == 2


def test_duplicate_names_made_unique_in_order():
  tx = optax.chain(
    gnorm(1.0, name="c"),
    gnorm(2.0, name="c_1"),
    gnorm(3.0, name="c"),
    gnorm(4.0, name="c"),
  )
  found = optaxclip.stats(stepped(tx))
  assert list(found) == ["c", "c_1", "c_2", "c_3"]
  thresholds = [float(s.threshold) for s in found.values()]
  assert thresholds == [1.0, 2.0, 3.0, 4.0]
  # Deterministic: the same state gives the same names every time.
  assert list(optaxclip.stats(stepped(tx))) == list(found)


def test_named_chain_order_is_the_chain_order():
  # named_chain keeps an OrderedDict: chain order, not sorted names.
  tx = optax.named_chain(("z", gnorm(1.0, name="first")), ("a", gnorm(2.0)))
  found = optaxclip.stats(stepped(tx))
  assert list(found) == ["first", "clip_by_global_norm"]


def test_traced_state():
  tx = optax.chain(gnorm(1.0), optaxclip.clip_by_value(0.5), optax.sgd(0.1))

  @jax.jit
  def step(state):
    _, state = tx.update(GRADS, state, PARAMS)
    return optaxclip.stats(state)

  found = step(tx.init(PARAMS))
  assert list(found) == ["clip_by_global_norm", "clip_by_value"]
  want = optaxclip.stats(stepped(tx))
  chex.assert_trees_all_close(found, want)


class Custom(NamedTuple):
  step: jax.Array
  extra: jax.Array


class Unregistered(NamedTuple):
  step: jax.Array


def test_registered_types_are_collected(monkeypatch):
  monkeypatch.setattr(_stats, "_STATS_TYPES", list(_stats._STATS_TYPES))
  _stats.register_stats_type(Custom)
  _stats.register_stats_type(Custom)  # idempotent
  assert _stats._STATS_TYPES.count(Custom) == 1
  state = (
    {"mine": Custom(jnp.int32(1), jnp.float32(2.0))},
    {"other": Unregistered(jnp.int32(3))},
    _stats.ClipState({"clip": _stats.init_stats()}),
  )
  found = optaxclip.stats(state)
  assert list(found) == ["mine", "clip"]
  assert isinstance(found["mine"], Custom)
  # A statistics record at the root has no key: its type names it.
  assert list(optaxclip.stats(_stats.init_stats())) == ["ClipStats"]


@pytest.mark.parametrize("name", ["", None, 1])
def test_bad_names(name):
  with pytest.raises(TypeError, match="name"):
    optaxclip.clip_by_global_norm(1.0, name=name)
