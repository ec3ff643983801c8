# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Checkpoints: orbax-saveable states, and restoring into another config.

The round trip of every strategy's whole state through Flax serialisation
and orbax, resumed bit-identically, is a conformance check
(``test_conformance.test_checkpoint_restore_is_bit_identical``).
"""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conformance import REGISTRY

import optaxclip

PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}


def _grads(i):
  return jax.tree.map(lambda x: jnp.full_like(x, 1.0 + (i % 3)), PARAMS)


@pytest.mark.parametrize("case", REGISTRY, ids=lambda c: c.name)
def test_no_state_has_a_zero_size_array(case):
  # orbax refuses zero-size arrays ("Cannot save arrays with zero size").
  kwargs = dict(case.kwargs)
  tx = (
    case.factory(case.inner(), **kwargs)
    if case.wrapper
    else case.factory(**kwargs)
  )
  state = jax.eval_shape(tx.init, PARAMS)
  for path, x in jax.tree.leaves_with_path(state):
    assert np.prod(x.shape) > 0, jax.tree_util.keystr(path)


def test_default_autoclip_saves_with_orbax(tmp_path):
  tx = optaxclip.autoclip()  # streaming mode: no window
  state = tx.init(PARAMS)
  for i in range(3):
    _, state = tx.update(_grads(i), state)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(tmp_path / "c", state)
  ckpt.wait_until_finished()
  restored = ckpt.restore(tmp_path / "c", jax.eval_shape(tx.init, PARAMS))
  ckpt.close()
  u1, s1 = tx.update(_grads(3), state)
  u2, s2 = tx.update(_grads(3), restored)
  jax.tree.map(np.testing.assert_array_equal, (u1, s1), (u2, s2))


MISMATCHES = [
  (
    "autoclip",
    lambda: optaxclip.autoclip(window=8),
    lambda: optaxclip.autoclip(window=16),
    ("autoclip(window=8)", "autoclip(window=16)"),
  ),
  (
    "autoclip_streaming",
    lambda: optaxclip.autoclip(),
    lambda: optaxclip.autoclip(window=8),
    ("autoclip(window=None)", "autoclip(window=8)"),
  ),
  (
    "zclip",
    lambda: optaxclip.zclip(warmup_steps=4),
    lambda: optaxclip.zclip(warmup_steps=8),
    ("zclip(warmup_steps=4)", "zclip(warmup_steps=8)"),
  ),
  (
    "skip_on_spike",
    lambda: optaxclip.skip_on_spike(optax.sgd(0.1), window=8, min_history=3),
    lambda: optaxclip.skip_on_spike(optax.sgd(0.1), window=16, min_history=3),
    ("skip_on_spike(window=8)", "skip_on_spike(window=16)"),
  ),
]


def _trained(tx, n=5):
  state = tx.init(PARAMS)
  for i in range(n):
    _, state = tx.update(_grads(i), state, PARAMS, loss=1.0)
  return state


@pytest.mark.parametrize(
  "make_old,make_new,names",
  [m[1:] for m in MISMATCHES],
  ids=[m[0] for m in MISMATCHES],
)
def test_restoring_into_another_configuration_is_a_clear_error(
  make_old, make_new, names
):
  old, new = make_old(), make_new()
  saved = _trained(old)
  # Flax fills any template with the saved arrays, whatever their shapes.
  restored = flax.serialization.from_bytes(
    new.init(PARAMS), flax.serialization.to_bytes(saved)
  )
  restored = jax.tree.map(jnp.asarray, restored)
  for update in (new.update, jax.jit(new.update)):
    with pytest.raises(ValueError) as err:
      update(_grads(0), restored, PARAMS, loss=1.0)
    for name in names:
      assert name in str(err.value)
  # The same configuration still resumes.
  old.update(_grads(0), saved, PARAMS, loss=1.0)


@pytest.mark.parametrize("name", ["autoclip", "zclip", "skip_on_spike"])
def test_orbax_refuses_another_configuration_by_shape(name, tmp_path):
  (_, make_old, make_new, _) = next(m for m in MISMATCHES if m[0] == name)
  old, new = make_old(), make_new()
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(tmp_path / "c", _trained(old))
  ckpt.wait_until_finished()
  with pytest.raises(ValueError, match="not compatible with the stored shape"):
    ckpt.restore(tmp_path / "c", jax.eval_shape(new.init, PARAMS))
  ckpt.close()


def test_per_example_clip_state_round_trips(tmp_path):
  tx = optax.chain(
    optaxclip.per_example_clip(1.0, noise_multiplier=1.0, seed=3),
    optax.adam(1e-2),
  )
  rng = np.random.default_rng(0)
  batches = [
    jax.tree.map(
      lambda x: jnp.asarray(rng.normal(size=(4, *x.shape)), jnp.float32),
      PARAMS,
    )
    for _ in range(4)
  ]

  def train(p, s, lo, hi):
    for g in batches[lo:hi]:
      u, s = tx.update(g, s, p)
      p = optax.apply_updates(p, u)
    return p, s

  p2, s2 = train(PARAMS, tx.init(PARAMS), 0, 2)
  want = train(p2, s2, 2, 4)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(tmp_path / "c", {"p": p2, "s": s2})
  ckpt.wait_until_finished()
  got = ckpt.restore(
    tmp_path / "c", jax.eval_shape(lambda: {"p": PARAMS, "s": tx.init(PARAMS)})
  )
  ckpt.close()
  jax.tree.map(
    np.testing.assert_array_equal, train(got["p"], got["s"], 2, 4), want
  )
  blob = flax.serialization.to_bytes((p2, s2))
  back = flax.serialization.from_bytes((PARAMS, tx.init(PARAMS)), blob)
  back = jax.tree.map(jnp.asarray, back)
  jax.tree.map(np.testing.assert_array_equal, train(*back, 2, 4), want)
