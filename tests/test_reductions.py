# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""How ``_xla`` reduces many leaves on the CPU: groups, buckets, singles.

``global_reduce`` sums leaves of one shape elementwise (in groups), concatenates
the other small leaves (in buckets) and reduces the rest one by one; whatever
the route, the result must be the NumPy float64 one, NaN and Inf must reach
it, and leaves with different shardings must never be mixed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optaxclip import _norms
from optaxclip import _xla

ORDS = (1, 2, "inf")


def f64(x):
  x = np.asarray(x)
  return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def np_power(leaves, ord):
  a = [np.abs(f64(x)).ravel() for x in leaves]
  if not a:
    return 0.0
  flat = np.concatenate(a)
  if ord == "inf":
    return float(flat.max(initial=0))
  return float(np.sum(flat**2 if ord == 2 else flat))


@functools.partial(jax.jit, static_argnums=1)
def _power(leaves, ord):
  return _norms.global_power(leaves, ord)


def _leaves(rng, shapes, dtype=np.float32):
  return [
    jnp.asarray(rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 2), dtype)
    for s in shapes
  ]


# Many leaves of a few shapes (groups, including a trailing group of one),
# small leaves of unique shapes (a bucket), one large unique leaf (alone)
# and an empty one.
SHAPES = [(4, 3)] * 35 + [(7,)] * 17 + [(5,), (2, 2, 3), (), (0, 2)]
SHAPES += [(300, 230)]


def test_plan_routes_every_leaf_once(rng):
  leaves = _leaves(rng, SHAPES)
  groups, buckets, singles = _xla._plan(leaves)
  seen = sorted(i for g in groups for i in g)
  seen += sorted(i for b in buckets for i in b) + sorted(singles)
  assert sorted(seen) == list(range(len(leaves)))
  assert all(1 < len(g) <= _xla._GROUP_LEAVES for g in groups)
  for g in groups:
    assert len({leaves[i].shape for i in g}) == 1
  # 35 = 16 + 16 + 3 and 17 = 16 + 1: the lone 17th goes to a bucket.
  assert sorted(len(g) for g in groups) == [3, 16, 16, 16]
  assert len(SHAPES) - 1 in singles  # the large leaf


@pytest.mark.parametrize("ord", ORDS)
def test_global_power_matches_numpy_on_every_route(rng, ord):
  leaves = _leaves(rng, SHAPES)
  np.testing.assert_allclose(
    float(_power(leaves, ord)), np_power(leaves, ord), rtol=2e-6
  )


@pytest.mark.parametrize("ord", ORDS)
def test_low_precision_and_complex_groups(rng, ord):
  leaves = _leaves(rng, [(6, 5)] * 5, jnp.bfloat16)
  leaves += _leaves(rng, [(6, 5)] * 5, jnp.float16)
  leaves += [
    jnp.asarray(
      rng.standard_normal((6, 5)) + 1j * rng.standard_normal((6, 5)),
      jnp.complex64,
    )
    for _ in range(4)
  ]
  # Large float16 values whose squares overflow float16: accumulated in f32.
  leaves.append(jnp.full((6, 5), 6e4, jnp.float16))
  leaves.append(jnp.full((6, 5), 6e4, jnp.float16))
  got = _power(leaves, ord)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), np_power(leaves, ord), rtol=2e-6)


def test_float64_groups_accumulate_in_float64(rng):
  with jax.enable_x64(True):
    leaves = [jnp.asarray(x, jnp.float64) for x in _leaves(rng, [(9,)] * 20)]
    leaves[3] = leaves[3].at[0].set(1e150)
    got = _norms.global_power(leaves, 2)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(float(got), np_power(leaves, 2), rtol=1e-12)


@pytest.mark.parametrize("ord", ORDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 20, 40])  # group, bucket, alone
def test_nonfinite_reaches_the_result(ord, bad, where):
  leaves = [jnp.ones((4, 3))] * 20 + [jnp.ones((k,)) for k in range(1, 21)]
  leaves.append(jnp.ones((300, 230)))
  leaves = list(leaves)
  leaves[where] = leaves[where].at[(0,) * leaves[where].ndim].set(bad)
  got = float(_power(leaves, ord))
  if np.isnan(bad):
    assert np.isnan(got)
  else:
    assert got == np.inf


def test_count_where_uses_each_leaf_dtype(rng):
  # The threshold is cast to each leaf's dtype, as the strategies do: a
  # bucket concatenates only leaves of one dtype, so no leaf is compared in
  # a promoted dtype.
  delta = 0.1
  leaves = [jnp.full((k,), 0.1000001, jnp.float32) for k in (1, 2, 3)]
  leaves += [jnp.full((k,), 0.1, jnp.bfloat16) for k in (4, 5, 6)]

  def predicate(x):
    return jnp.abs(x) > jnp.asarray(delta, x.dtype)

  want = sum(int(np.sum(np.asarray(predicate(x)))) for x in leaves)
  n = sum(x.size for x in leaves)
  got = jax.jit(lambda ls: _norms.count_where(ls, predicate))(leaves)
  assert float(got) * n == pytest.approx(want)


def test_differently_sharded_leaves_are_never_combined(rng, mesh2d):
  specs = [P("data", "model"), P("model", "data"), P(), P("data", None)]
  leaves = _leaves(rng, [(8, 8)] * 12)
  want = np_power(leaves, 2)
  with jax.set_mesh(mesh2d):
    sharded = [
      jax.device_put(x, NamedSharding(mesh2d, specs[i % 4]))
      for i, x in enumerate(leaves)
    ]

    @jax.jit
    def run(ls):
      groups, buckets, _ = _xla._plan(ls)
      for g in groups:
        assert len({jax.typeof(ls[i]).sharding.spec for i in g}) == 1
      for b in buckets:  # only leaves without explicit sharding
        assert all(_xla._replicated(ls[i]) for i in b)
      assert len(groups) == 4
      return _norms.global_power(ls, 2)

    got = run(sharded)
  np.testing.assert_allclose(float(got), want, rtol=2e-6)
