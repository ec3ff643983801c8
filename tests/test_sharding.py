# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Sharding: 8 fake CPU devices (root conftest.py), explicit-axes meshes.

Global norms must be the same whether the leaves are replicated, sharded
along different axes, or split by hand under ``jax.shard_map`` with an
``axis_name``; and the states keep their types (shape, dtype, sharding).
"""

from __future__ import annotations

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import optaxclip
from optaxclip import _norms
from optaxclip import _stats
from optaxclip import _xla


def f64(x):
  return np.asarray(x, np.float64)


def sample(rng):
  """Leaves of several shapes, many of them small (bucketed when unsharded)."""
  shapes = {
    "emb": (16, 8),
    "w1": (8, 16),
    "w2": (16, 4),
    "b1": (16,),
    "scale": (),
    "small": [(2,), (3,), (4, 2), (8,)],
  }
  return jax.tree.map(
    lambda s: jnp.asarray(rng.standard_normal(s), jnp.float32),
    shapes,
    is_leaf=lambda x: isinstance(x, tuple),
  )


# Different shardings per leaf on the 4 x 2 mesh: along either axis, both,
# or replicated.
SPECS2D = {
  "emb": P("data", "model"),
  "w1": P("model", "data"),
  "w2": P("data", None),
  "b1": P("model"),
  "scale": P(),
  "small": [P(), P(), P("data"), P("model")],
}


def shard(tree, mesh, specs):
  return jax.tree.map(
    lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), tree, specs
  )


def shardings(tree):
  return jax.tree.map(lambda x: jax.typeof(x).sharding.spec, tree)


def stats_of(state):
  return _stats.unnamed(state.stats)


def test_root_conftest_gives_8_cpu_devices():
  # The whole session (tests and doctests) runs with the flag set by the
  # root conftest.py, before jax was imported.
  assert "--xla_force_host_platform_device_count=8" in os.environ["XLA_FLAGS"]
  assert len(jax.devices("cpu")) == 8


CLIPPERS = {
  "global_l2": lambda: optaxclip.clip_by_global_norm(1.0),
  "global_l1": lambda: optaxclip.clip_by_global_norm(3.0, ord=1),
  "global_inf": lambda: optaxclip.clip_by_global_norm(0.5, ord="inf"),
  "tensor": lambda: optaxclip.clip_by_tensor_norm(1.0),
  "block_rms": lambda: optaxclip.clip_by_block_rms(0.5),
  "layer_group": lambda: optaxclip.clip_by_layer(
    {"small": 0.1, "w*": 1.0}, default=2.0, strategy="group_norm"
  ),
}


@pytest.mark.parametrize("which", CLIPPERS)
def test_sharded_leaves_give_the_unsharded_result(rng, mesh2d, which):
  tx = CLIPPERS[which]()
  grads = sample(rng)
  want, want_state = tx.update(grads, tx.init(grads))
  with jax.set_mesh(mesh2d):
    sgrads = shard(grads, mesh2d, SPECS2D)
    # Leaves with an explicit sharding are never concatenated.
    buckets, singles = _xla._buckets(jax.tree.leaves(sgrads))
    for b in buckets:
      for i in b:
        assert all(s is None for s in jax.tree.leaves(sgrads)[i].sharding.spec)
    assert len(singles) >= 6
    got, state = jax.jit(tx.update)(sgrads, tx.init(sgrads))
    assert shardings(got) == shardings(sgrads)
  chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)
  s, w = stats_of(state), stats_of(want_state)
  np.testing.assert_allclose(s.norm_before, w.norm_before, rtol=1e-6)
  np.testing.assert_allclose(s.norm_after, w.norm_after, rtol=1e-6)
  assert float(s.clipped) == float(w.clipped)


def test_mid_sized_leaves_are_reduced_together_per_sharding(rng, mesh2d):
  # Equal mid-sized leaves are reduced 16 at a time by one variadic
  # reduction (`_xla._leaf_plan`), but only with leaves of the same
  # sharding; the per-leaf norms and the clipped updates match the
  # unsharded ones, and each output keeps its leaf's sharding.
  shape = (64, 80)
  assert _xla._SMALL_LEAF < shape[0] * shape[1] <= _xla._TOGETHER_ELEMENTS
  specs = [P("data"), P("data"), P("data"), P(None, "model"), P("model")]
  grads = {
    f"w{i}": jnp.asarray(rng.standard_normal(shape), jnp.float32)
    for i in range(len(specs))
  }
  tx = optaxclip.clip_by_tensor_norm(20.0)
  want, _ = tx.update(grads, tx.init(grads))
  with jax.set_mesh(mesh2d):
    sgrads = shard(grads, mesh2d, dict(zip(grads, specs)))
    leaves = jax.tree.leaves(sgrads)
    assert _xla._leaf_plan(leaves) == ([], [[0, 1, 2]], [3, 4])
    powers = jax.jit(lambda x: _norms.leaf_powers(x, 2))(leaves)
    got, _ = jax.jit(tx.update)(sgrads, tx.init(sgrads))
    assert shardings(got) == shardings(sgrads)
  np.testing.assert_allclose(
    np.array(powers, np.float64),
    [np.sum(f64(x) ** 2) for x in jax.tree.leaves(grads)],
    rtol=1e-5,
  )
  # Per-device partial sums are added in another order than one loop's.
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-7)


def test_global_norm_is_global_under_jit(rng, mesh2d):
  grads = sample(rng)
  flat = np.concatenate([f64(x).ravel() for x in jax.tree.leaves(grads)])
  with jax.set_mesh(mesh2d):
    sgrads = shard(grads, mesh2d, SPECS2D)
    for ord, want in ((2, np.linalg.norm(flat)), (1, np.abs(flat).sum())):
      got = jax.jit(lambda g, o=ord: optaxclip.global_norm(g, o))(sgrads)
      np.testing.assert_allclose(got, want, rtol=1e-6)
    clipped, norm = jax.jit(optaxclip.clip_tree_by_global_norm)(sgrads, 1.0)
    assert shardings(clipped) == shardings(sgrads)
  np.testing.assert_allclose(norm, np.linalg.norm(flat), rtol=1e-6)
  np.testing.assert_allclose(
    np.linalg.norm(
      np.concatenate([f64(x).ravel() for x in jax.tree.leaves(clipped)])
    ),
    1.0,
    rtol=1e-6,
  )


# ---------------------------------------------------------------------------
# shard_map with axis_name
# ---------------------------------------------------------------------------

AXIS_CLIPPERS = {
  "global_l2": (optaxclip.clip_by_global_norm, 2),
  "global_l1": (optaxclip.clip_by_global_norm, 1),
  "global_inf": (optaxclip.clip_by_global_norm, "inf"),
  "tensor_l2": (optaxclip.clip_by_tensor_norm, 2),
}


@pytest.mark.parametrize("which", AXIS_CLIPPERS)
def test_axis_name_under_shard_map_gives_the_global_norm(rng, mesh, which):
  factory, ord = AXIS_CLIPPERS[which]
  # Every leaf's leading axis is split over the 8 devices.
  grads = {
    "a": jnp.asarray(rng.standard_normal((16, 3)), jnp.float32),
    "b": jnp.asarray(rng.standard_normal((8,)), jnp.float32),
  }
  threshold = 0.3 * float(optaxclip.global_norm(grads, ord))
  ref = factory(threshold, ord=ord)
  want, want_state = ref.update(grads, ref.init(grads))

  def local(g):
    tx = factory(threshold, ord=ord, axis_name="x")
    u, state = tx.update(g, tx.init(g))
    return u, stats_of(state)

  def local_naive(g):  # no axis_name: each device sees only its shard
    tx = factory(threshold, ord=ord)
    return tx.update(g, tx.init(g))[0]

  specs = {"a": P("x"), "b": P("x")}
  with jax.set_mesh(mesh):
    sgrads = shard(grads, mesh, specs)
    got, s = jax.jit(
      jax.shard_map(local, in_specs=(specs,), out_specs=(specs, P()))
    )(sgrads)
    naive = jax.jit(
      jax.shard_map(local_naive, in_specs=(specs,), out_specs=specs)
    )(sgrads)
  chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)
  w = stats_of(want_state)
  np.testing.assert_allclose(s.norm_before, w.norm_before, rtol=1e-6)
  np.testing.assert_allclose(s.norm_after, w.norm_after, rtol=1e-5)
  # Without the axis name the per-shard norms are smaller: a different
  # (wrong) result, so the test above is not passing by accident.
  assert not np.allclose(f64(naive["a"]), f64(want["a"]), rtol=1e-3)


def test_functional_forms_with_axis_name(rng, mesh):
  x = jnp.asarray(rng.standard_normal((8, 5)), jnp.float32)

  def local(x):
    n = optaxclip.global_norm(x, axis_name="x")
    clipped, n2 = optaxclip.clip_tree_by_global_norm(x, 1.0, axis_name="x")
    return n, n2, clipped

  with jax.set_mesh(mesh):
    sx = jax.device_put(x, NamedSharding(mesh, P("x")))
    n, n2, clipped = jax.jit(
      jax.shard_map(local, in_specs=P("x"), out_specs=(P(), P(), P("x")))
    )(sx)
  want = np.linalg.norm(f64(x))
  np.testing.assert_allclose([n, n2], [want, want], rtol=1e-6)
  np.testing.assert_allclose(clipped, f64(x) / want, rtol=1e-6)


# ---------------------------------------------------------------------------
# State types
# ---------------------------------------------------------------------------


def test_state_types_stable_on_2d_mesh(rng, mesh2d):
  tx = optax.chain(
    optaxclip.clip_by_global_norm(1.0),
    optaxclip.clip_by_layer({"small": 0.1}, default=1.0),
    optax.adam(1e-2),
  )
  params = sample(rng)
  with jax.set_mesh(mesh2d):
    sparams = shard(params, mesh2d, SPECS2D)
    sgrads = shard(sample(rng), mesh2d, SPECS2D)
    s0 = tx.init(sparams)
    step = jax.jit(tx.update)
    _, s1 = step(sgrads, s0, sparams)
    _, s2 = step(sgrads, s1, sparams)
    types = [jax.tree.map(jax.typeof, s) for s in (s0, s1, s2)]
    assert all(t == types[0] for t in types)
    # Adam's moments keep the parameters' shardings; stats are replicated.
    assert shardings(s2[2][0].mu) == shardings(sparams)
    for stat in optaxclip.stats(s2).values():
      assert all(jax.typeof(v).sharding.spec == P() for v in stat)
    # init also works on abstract, sharded parameters.
    abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      sparams,
    )
    s_abs = jax.eval_shape(tx.init, abstract)
    assert jax.tree.structure(s_abs) == jax.tree.structure(s0)


def test_skip_nonfinite_on_sharded_updates(rng, mesh2d):
  # Regression: the skip branch must build zeros with the same sharding as
  # the inner update, or lax.cond rejects the two branches.
  tx = optaxclip.skip_nonfinite(optax.adam(1e-2))
  params = sample(rng)
  bad = jax.tree.map(lambda x: x * jnp.nan, params)
  with jax.set_mesh(mesh2d):
    sparams = shard(params, mesh2d, SPECS2D)
    sbad = shard(bad, mesh2d, SPECS2D)
    s0 = tx.init(sparams)
    u, s1 = jax.jit(tx.update)(sbad, s0, sparams)
    assert shardings(u) == shardings(sparams)
    assert jax.tree.map(jax.typeof, s0) == jax.tree.map(jax.typeof, s1)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, params))
  assert int(optaxclip.stats(s1)["skip_nonfinite"].skip_count) == 1
