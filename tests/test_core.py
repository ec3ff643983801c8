# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of the shared machinery: norms, scaling, statistics, validation.

Norms are compared with NumPy float64 re-implementations on random pytrees
of mixed shapes, including enough small leaves to fill several buckets and
leaves large enough to be reduced on their own.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optaxclip import _norms
from optaxclip import _paths
from optaxclip import _scaling
from optaxclip import _stats
from optaxclip import _validation
from optaxclip import _xla

ORDS = (1, 2, "inf")


# ---------------------------------------------------------------------------
# NumPy float64 references
# ---------------------------------------------------------------------------


def np_power(x, ord):
  """Power of one leaf in float64: sum |x|^2, sum |x| or max |x|."""
  a = np.abs(
    np.asarray(x).astype(np.complex128 if np.iscomplexobj(x) else np.float64)
  )
  if ord == 2:
    return float(np.sum(a**2))
  if ord == 1:
    return float(np.sum(a))
  return float(np.max(a, initial=0.0))


def np_norm(leaves, ord):
  powers = [np_power(x, ord) for x in leaves]
  if ord == "inf":
    return max(powers, default=0.0)
  total = sum(powers)
  return math.sqrt(total) if ord == 2 else total


def random_leaves(rng, shapes, dtypes=(np.float32,), scale=1.0):
  out = []
  for i, s in enumerate(shapes):
    dt = dtypes[i % len(dtypes)]
    x = scale * rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 2)
    out.append(jnp.asarray(x, dt))
  return out


# Mixed ranks, an empty leaf, and one leaf above `_SMALL_LEAF` elements,
# which is reduced on its own rather than in a bucket.
MIXED = [(), (1,), (3, 5), (2, 3, 4), (0, 3), (7,), (2, 2, 2, 2), (300, 230)]
assert math.prod(MIXED[-1]) > _xla._SMALL_LEAF


# ---------------------------------------------------------------------------
# Norms
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=1)
def _measure(leaves, ord):
  """(global norm, per-leaf powers), in one compiled function."""
  return _norms.root(_norms.global_power(leaves, ord), ord), _norms.leaf_powers(
    leaves, ord
  )


@pytest.mark.parametrize("ord", ORDS)
def test_global_power_and_leaf_powers_match_numpy(rng, ord):
  leaves = random_leaves(rng, MIXED, (np.float32, jnp.bfloat16, np.float16))
  want = np_norm(leaves, ord)
  got, powers = _measure(leaves, ord)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), want, rtol=2e-6)
  assert len(powers) == len(leaves)
  np.testing.assert_allclose(
    np.array(powers, np.float64),
    [np_power(x, ord) for x in leaves],
    rtol=2e-6,
  )


def all_eqns(jaxpr):
  """The equations of a jaxpr and of every jaxpr nested in it (branches)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for v in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(v, "jaxpr", v)
        if hasattr(inner, "eqns"):
          yield from all_eqns(inner)


@pytest.mark.parametrize("ord", ORDS)
def test_many_small_leaves_fill_several_buckets(rng, ord, monkeypatch):
  # More leaves than fit one bucket: segment reductions must keep each
  # leaf's power in its own slot, in order. (Buckets shrunk to 8 leaves so
  # that this compiles quickly; the code path is the same.)
  monkeypatch.setattr(_xla, "_BUCKET_LEAVES", 8)
  n = _xla._BUCKET_LEAVES * 2 + 3
  shapes = [(int(k),) for k in rng.integers(1, 9, n)]
  leaves = random_leaves(rng, shapes)
  buckets, singles = _xla._buckets(leaves)
  assert len(buckets) == 3 and not singles
  assert sorted(i for b in buckets for i in b) == list(range(n))
  assert all(len(b) <= _xla._BUCKET_LEAVES for b in buckets)
  norm, powers = _measure(leaves, ord)
  np.testing.assert_allclose(
    np.array(powers, np.float64),
    [np_power(x, ord) for x in leaves],
    rtol=2e-6,
  )
  np.testing.assert_allclose(float(norm), np_norm(leaves, ord), rtol=1e-5)


@pytest.mark.parametrize("ord", ORDS)
def test_mid_sized_leaves_of_one_shape_are_reduced_together(rng, ord):
  # 40 leaves of 5120 elements (above `_SMALL_LEAF`, at most
  # `_TOGETHER_ELEMENTS`): per-leaf powers come from variadic reductions of
  # 16 leaves each, one result per leaf, in order. bf16 leaves form their
  # own groups; one leaf holds a NaN and one an inf, which must stay in
  # their own slots.
  shape = (64, 80)
  assert _xla._SMALL_LEAF < math.prod(shape) <= _xla._TOGETHER_ELEMENTS
  leaves = random_leaves(rng, [shape] * 40, (np.float32, jnp.bfloat16))
  leaves[5] = leaves[5].at[3, 7].set(jnp.nan)
  leaves[12] = leaves[12].at[0, 0].set(-jnp.inf)
  buckets, together, singles = _xla._leaf_plan(leaves)
  assert not buckets and not singles
  assert [len(g) for g in together] == [16, 4, 16, 4]
  assert all(len({leaves[i].dtype for i in g}) == 1 for g in together)
  jaxpr = jax.make_jaxpr(lambda x: _norms.leaf_powers(x, ord))(leaves)
  variadic = [e for e in all_eqns(jaxpr.jaxpr) if e.primitive.name == "reduce"]
  assert sorted(len(e.outvars) for e in variadic) == [4, 4, 16, 16]
  powers = np.array(jax.jit(_norms.leaf_powers, static_argnums=1)(leaves, ord))
  want = np.array([np_power(x, ord) for x in leaves])
  assert np.isnan(powers[5]) and np.isnan(want[5])
  assert powers[12] == np.inf
  ok = np.isfinite(want)
  np.testing.assert_allclose(powers[ok], want[ok], rtol=2e-5)


def test_only_equal_mid_sized_floating_leaves_are_reduced_together():
  big = (_xla._TOGETHER_ELEMENTS + 1,)
  leaves = [
    jnp.ones((70, 70)),  # 4900 elements: grouped with the next one
    jnp.ones((70, 70)),
    jnp.ones((70, 70), jnp.float16),  # a dtype of its own: alone
    jnp.ones(big),  # too large: YNNPACK, on its own
    jnp.ones(big),
    jnp.ones((5000,), jnp.complex64),  # complex: on its own
    jnp.ones((3, 3)),  # small: bucket
  ]
  buckets, together, singles = _xla._leaf_plan(leaves)
  assert buckets == [[6]] and together == [[0, 1]]
  assert singles == [2, 3, 4, 5]
  # A leaf reduced in a group is returned as it is by `tie`; the others are
  # tied to their power by a select.
  jaxpr = jax.make_jaxpr(_norms.tie)(leaves, [jnp.float32(1)] * len(leaves))
  selects = [e for e in all_eqns(jaxpr.jaxpr) if e.primitive.name == "select_n"]
  assert len(selects) == len(leaves) - 2


def test_buckets_split_by_element_count_and_dtype(monkeypatch):
  monkeypatch.setattr(_xla, "_BUCKET_ELEMENTS", 10)
  leaves = [jnp.ones(4), jnp.ones(4), jnp.ones(4), jnp.ones(3, jnp.bfloat16)]
  leaves.append(jnp.ones(2, jnp.complex64))
  buckets, singles = _xla._buckets(leaves)
  # 4 + 4 fit in 10, the third f32 leaf opens a new bucket; bf16 leaves
  # accumulate in float32 too, so they share it; complex is on its own.
  assert buckets == [[0, 1], [2, 3]]
  assert singles == [4]


def test_empty_inputs():
  assert float(_norms.global_power([], 2)) == 0.0
  assert _norms.leaf_powers([], 2) == []
  assert float(_norms.tree_norm({})) == 0.0
  assert float(_norms.tree_norm(jnp.zeros((0, 4)), "inf")) == 0.0
  assert float(_norms.combine([], 2)) == 0.0


def test_complex_leaves_use_squared_modulus(rng):
  z = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
  leaves = [jnp.asarray(z, jnp.complex64), jnp.asarray([3.0, 4.0])]
  for ord in ORDS:
    np.testing.assert_allclose(
      float(_norms.tree_norm(leaves, ord)), np_norm(leaves, ord), rtol=2e-6
    )
  np.testing.assert_allclose(
    float(_norms.tree_norm(jnp.asarray([3 + 4j], jnp.complex64))), 5.0
  )


def test_float16_elements_near_max_give_finite_norm():
  x = jnp.full((1000,), 6e4, jnp.float16)
  got = _norms.tree_norm([x])
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), 6e4 * math.sqrt(1000), rtol=1e-3)
  assert not np.isfinite(float(jnp.sqrt(jnp.sum(jnp.square(x)))))


def test_float64_leaves_accumulate_in_float64():
  with jax.enable_x64(True):
    # The squares (about 1e-59) underflow in float32, not in float64.
    x = jnp.asarray([3e-30, 4e-30], jnp.float64)
    got = _norms.tree_norm([x, jnp.zeros(2, jnp.float32)])
    assert got.dtype == jnp.float64
    assert float(got) == pytest.approx(5e-30, rel=1e-12)
    assert _norms.acc_dtype(jnp.float64) == np.float64
    assert _norms.acc_dtype(jnp.complex128) == np.float64


@pytest.mark.parametrize(
  "dtype", [jnp.bfloat16, jnp.float16, jnp.float32, jnp.complex64]
)
def test_acc_dtype_is_float32_below_64_bits(dtype):
  assert _norms.acc_dtype(dtype) == np.float32


def test_unit_power_default_axes_match_numpy(rng):
  want_axes = {0: (), 1: (0,), 2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}
  for ndim, axes in want_axes.items():
    x = rng.standard_normal((2, 3, 2, 3, 2)[:ndim])
    assert _norms.default_unit_axes(ndim, "f") == axes
    got = _norms.unit_power(jnp.asarray(x, jnp.float32), None, 2, "f")
    want = np.sum(x**2, axis=axes, keepdims=True)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)
  x = jnp.asarray(rng.standard_normal((2, 3, 4)), jnp.float32)
  got = _norms.unit_power(x, (-1,), 1, "f")
  np.testing.assert_allclose(got, np.sum(np.abs(x), -1, keepdims=True), 1e-6)
  with pytest.raises(ValueError, match="axis="):
    _norms.unit_power(jnp.zeros((1,) * 6), None, 2, "my_fn")


def test_root_has_finite_gradient_at_zero():
  g = jax.grad(lambda p: _norms.root(p, 2))(0.0)
  assert np.isfinite(float(g))
  # The norm itself: d|x|/dx at x = 0 is finite (the subgradient 0).
  grad = jax.grad(lambda x: _norms.tree_norm(x))(jnp.zeros(3))
  chex.assert_trees_all_equal(grad, jnp.zeros(3))
  assert float(_norms.root(jnp.float32(4.0), 2)) == 2.0
  assert float(_norms.root(jnp.float32(4.0), 1)) == 4.0
  # Elsewhere the derivative is sqrt's, 1 / (2 sqrt(p)), in both modes.
  p = jnp.array([0.0, 0.25, 4.0, 9.0])
  want = np.array([0.0, 1.0, 0.25, 1 / 6])
  d = jax.vmap(jax.grad(lambda q: _norms.root(q, 2)))(p)
  np.testing.assert_allclose(d, want)
  jac = jax.jacfwd(lambda q: _norms.root(q, 2))(p)
  np.testing.assert_allclose(np.diag(jac), want)
  # The guard is in the derivative only: the norm is one square root.
  jaxpr = str(jax.make_jaxpr(lambda q: _norms.root(q, 2))(p))
  assert "sqrt" in jaxpr and "select" not in jaxpr


# ---------------------------------------------------------------------------
# Scaling
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "norm, threshold, factor, clipped",
  [
    (10.0, 5.0, 0.5, True),
    (5.0, 5.0, 1.0, False),  # equal: left alone
    (2.0, 5.0, 1.0, False),
    (0.0, 0.0, 1.0, False),  # no division by zero
    (3.0, 0.0, 0.0, True),
    (3.0, math.inf, 1.0, False),
    (math.inf, math.inf, 1.0, False),
  ],
)
def test_clip_factor(norm, threshold, factor, clipped):
  f, c = _scaling.clip_factor(jnp.float32(norm), threshold)
  assert float(f) == factor and bool(c) == clipped
  assert f.dtype == jnp.float32


def test_clip_factor_nonfinite_policies():
  nan, inf = jnp.float32(jnp.nan), jnp.float32(jnp.inf)
  # "zero" / "error" leave the factor finite (the caller masks the step).
  assert np.isfinite(float(_scaling.clip_factor(nan, 1.0, "zero")[0]))
  assert float(_scaling.clip_factor(inf, 1.0, "zero")[0]) == 0.0
  # "propagate": threshold / norm, as optax.
  assert np.isnan(float(_scaling.clip_factor(nan, 1.0, "propagate")[0]))
  assert float(_scaling.clip_factor(inf, 1.0, "propagate")[0]) == 0.0


def test_clip_factor_gradient_at_zero_norm():
  g = jax.grad(lambda n: _scaling.clip_factor(n, 1.0)[0])(0.0)
  assert float(g) == 0.0
  g = jax.grad(lambda t: _scaling.clip_factor(jnp.float32(2.0), t)[0])(1.0)
  assert float(g) == pytest.approx(0.5)


def test_scale_leaf_multiplies_in_float32():
  # A factor that is subnormal in float16 would lose precision if cast to
  # the leaf's dtype first; scale_leaf multiplies in float32.
  x = jnp.asarray([6e4, -3e4, 1.0], jnp.float16)
  factor = jnp.float32(3.3e-7)
  got = _scaling.scale_leaf(x, factor)
  assert got.dtype == jnp.float16
  want = (np.asarray(x, np.float32) * np.float32(3.3e-7)).astype(np.float16)
  np.testing.assert_array_equal(np.asarray(got), want)
  naive = x * factor.astype(jnp.float16)
  assert not np.array_equal(np.asarray(naive), want)


def test_scale_leaf_keep_gives_zeros_not_nan():
  x = jnp.asarray([jnp.nan, jnp.inf, 1.0], jnp.bfloat16)
  got = _scaling.scale_leaf(x, 0.5, keep=jnp.array(False))
  chex.assert_trees_all_equal(got, jnp.zeros(3, jnp.bfloat16))
  got = _scaling.scale_leaf(x, 0.5, keep=jnp.array(True))
  assert got.dtype == jnp.bfloat16 and float(got[2]) == 0.5


def test_scale_leaf_float64_multiplies_in_float64():
  with jax.enable_x64(True):
    x = jnp.asarray([1.0 + 2e-12], jnp.float64)
    got = _scaling.scale_leaf(x, jnp.float64(0.5))
    assert got.dtype == jnp.float64
    assert float(got[0]) - 0.5 == pytest.approx(1e-12, rel=1e-3)


def test_clip_groups_matches_numpy_and_derived_norm_after(rng):
  shapes = [(3,), (2, 2), (), (5,), (1, 3)]
  leaves = random_leaves(rng, shapes, scale=3.0)
  tree = {f"l{i}": x for i, x in enumerate(leaves)}
  flat = jax.tree.leaves(tree)
  groups = [0, 1, 0, 2, 1]
  thresholds = [1.0, 100.0, 0.5]
  out, stats = _scaling.clip_groups(
    tree,
    groups,
    thresholds,
    _stats.init_stats(),
    ord=2,
    policy="zero",
    fn="f",
    name="f",
  )
  want = []
  factors = []
  for g, t in enumerate(thresholds):
    n = np_norm([x for x, k in zip(flat, groups) if k == g], 2)
    factors.append(min(1.0, t / n) if n > 0 else 1.0)
  for x, g in zip(flat, groups):
    want.append(np.asarray(x, np.float64) * factors[g])
  chex.assert_trees_all_close(jax.tree.leaves(out), want, rtol=1e-6)
  measured = np_norm(jax.tree.leaves(out), 2)
  np.testing.assert_allclose(float(stats.norm_after), measured, rtol=1e-5)
  np.testing.assert_allclose(float(stats.norm_before), np_norm(flat, 2), 1e-6)
  clipped = [f < 1 for f in factors]
  assert float(stats.clipped) == pytest.approx(np.mean(clipped))
  assert float(stats.scale) == pytest.approx(min(factors), rel=1e-6)
  assert np.isnan(float(stats.threshold))  # thresholds differ per group
  assert int(stats.step) == 1 and int(stats.nonfinite_count) == 0


def test_clip_global_nonfinite_masks_and_counts():
  tree = {"a": jnp.asarray([1.0, jnp.nan]), "b": jnp.ones(2)}
  norm = _norms.tree_norm(tree)
  out, stats = _scaling.clip_global(
    tree, norm, 1.0, _stats.init_stats(), policy="zero", fn="f", name="f"
  )
  chex.assert_trees_all_equal(out, jax.tree.map(jnp.zeros_like, tree))
  assert int(stats.nonfinite_count) == 1
  assert float(stats.scale) == 0 and float(stats.norm_after) == 0
  assert float(stats.clipped) == 1
  assert np.isnan(float(stats.norm_before))


def test_check_finite_error_eager_and_jit():
  with pytest.raises(FloatingPointError, match="name='myclip'"):
    _scaling.check_finite(jnp.array(False), "error", "f", "myclip", 1.0, 3)

  @jax.jit
  def f(finite):
    _scaling.check_finite(finite, "error", "f", "myclip", jnp.nan, 0)
    return finite

  assert bool(f(jnp.array(True)))
  with pytest.raises(jax.errors.JaxRuntimeError, match="myclip"):
    jax.block_until_ready(f(jnp.array(False)))


# ---------------------------------------------------------------------------
# Statistics records
# ---------------------------------------------------------------------------


def test_init_and_next_stats_dtypes():
  s0 = _stats.init_stats()
  s1 = _stats.next_stats(
    s0, finite=jnp.array(False), norm_before=np.float64(2.0), clipped=True
  )
  for s in (s0, s1):
    assert [x.dtype for x in s] == [jnp.float32] * 5 + [jnp.int32] * 2
    assert all(x.shape == () for x in s)
  assert int(s1.step) == 1 and int(s1.nonfinite_count) == 1
  assert float(s1.clipped) == 1.0 and np.isnan(float(s1.norm_after))
  big = s0._replace(step=jnp.asarray(np.iinfo(np.int32).max, jnp.int32))
  stepped = _stats.next_stats(big, finite=jnp.array(True))
  assert int(stepped.step) == np.iinfo(np.int32).max  # saturates


def test_named_and_unnamed():
  assert _stats.named("a", 1) == {"a": 1}
  assert _stats.unnamed({"a": 1}) == 1
  with pytest.raises(ValueError):
    _stats.unnamed({"a": 1, "b": 2})
  with pytest.raises(TypeError, match="name"):
    _validation.check_name("")
  with pytest.raises(TypeError, match="name"):
    _validation.check_name(3)


def test_small_helpers():
  assert float(_stats.min_factor([])) == 1.0
  got = _stats.min_factor([jnp.asarray([0.5, 1.0]), jnp.asarray(0.25)])
  assert float(got) == 0.25 and got.dtype == jnp.float32
  assert float(_stats.fraction_true([])) == 0.0
  frac = _stats.fraction_true([jnp.asarray([True, False]), jnp.asarray(True)])
  assert float(frac) == pytest.approx(2 / 3)
  assert not bool(_norms.any_nonfinite([]))
  assert bool(_norms.any_nonfinite([jnp.ones(2), jnp.asarray([-jnp.inf])]))
  assert not bool(_norms.any_nonfinite([jnp.ones(2)]))
  hits = _norms.count_where([jnp.arange(4.0), jnp.ones(2)], lambda x: x > 0.5)
  assert float(hits) == pytest.approx(5 / 6)
  assert float(_norms.count_where([], lambda x: x > 0)) == 0.0


def test_edge_cases_appends_table():
  @_scaling.edge_cases("  TABLE")
  def f():
    """Summary."""

  assert f.__doc__.endswith("Edge cases:\n  TABLE\n")
  assert f.__doc__.startswith("Summary.")


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "value", [-1.0, -1e-30, math.nan, np.float32("nan"), -math.inf]
)
def test_check_threshold_rejects_out_of_range(value):
  with pytest.raises(
    ValueError, match=r"optaxclip\.fn: `max_norm` must be >= 0"
  ):
    _validation.check_threshold(value, "max_norm", "fn")


def test_check_threshold_messages():
  with pytest.raises(ValueError, match=r"`t` must be a scalar.*shape \(2,\)"):
    _validation.check_threshold(np.ones(2), "t", "fn")
  with pytest.raises(ValueError, match="`t` must be > 0"):
    _validation.check_threshold(0.0, "t", "fn", positive=True)
  with pytest.raises(ValueError, match="<= 1"):
    _validation.check_threshold(1.5, "t", "fn", upper=1.0)
  for bad in (None, True, "1.0", [1.0, "a"]):
    with pytest.raises((TypeError, ValueError), match="`t`"):
      _validation.check_threshold(bad, "t", "fn")
  with pytest.raises(TypeError, match="real"):
    _validation.check_threshold(1j, "t", "fn")
  with pytest.raises(TypeError, match="callable"):
    _validation.check_threshold(lambda s: 1.0, "t", "fn", allow_schedule=False)


@pytest.mark.parametrize(
  "value", [0, 0.0, 1, 2.5, math.inf, np.float32(1), jnp.asarray(3.0)]
)
def test_check_threshold_accepts(value):
  _validation.check_threshold(value, "t", "fn")


def test_check_threshold_does_not_branch_on_tracers():
  @jax.jit
  def f(t):
    _validation.check_threshold(t, "t", "fn")
    return t

  assert float(f(-1.0)) == -1.0  # unchecked: it is a traced value
  _validation.check_threshold(optax.linear_schedule(0.0, 1.0, 10), "t", "fn")


@pytest.mark.parametrize(
  "ord, want",
  [(1, 1), (2, 2), (2.0, 2), ("inf", "inf"), (math.inf, "inf"), (None, 2)],
)
def test_check_ord_accepts(ord, want):
  assert _validation.check_ord(ord, "fn") == want
  assert _validation.check_ord(np.inf, "fn") == "inf"


@pytest.mark.parametrize("ord", [0, 3, -1, "fro", True, "2", 2.5])
def test_check_ord_rejects(ord):
  with pytest.raises(ValueError, match=r"optaxclip\.fn: unknown ord"):
    _validation.check_ord(ord, "fn")


def test_structural_arguments_reject_arrays():
  for check in (_validation.check_ord, _validation.check_axis):
    with pytest.raises(TypeError, match="static_args"):
      check(jnp.asarray(1), "fn")


def test_check_choice_and_nonfinite():
  assert _validation.check_nonfinite("zero", "fn") == "zero"
  with pytest.raises(ValueError, match=r"unknown nonfinite='skip'.*'zero'"):
    _validation.check_nonfinite("skip", "fn")
  with pytest.raises(ValueError, match="strategy"):
    _validation.check_choice("x", "strategy", "fn", ("a", "b"))


def test_check_axis():
  assert _validation.check_axis(None, "fn") is None
  assert _validation.check_axis(1, "fn") == (1,)
  assert _validation.check_axis(np.int64(2), "fn") == (2,)
  assert _validation.check_axis([0, -1], "fn") == (0, -1)
  for bad in (1.5, "0", (0, 1.0), True):
    with pytest.raises(TypeError, match="`axis`"):
      _validation.check_axis(bad, "fn")


def test_check_leaves():
  _validation.check_leaves([jnp.ones(2), jnp.ones(2, jnp.bfloat16)], "fn")
  _validation.check_leaves([jnp.ones(2, jnp.complex64)], "fn")
  with pytest.raises(TypeError, match=r"int32.*shape \(3,\)"):
    _validation.check_leaves([jnp.ones(2), jnp.arange(3)], "fn")
  with pytest.raises(TypeError, match="bool"):
    _validation.check_leaves([jnp.ones(2, bool)], "fn")
  with pytest.raises(TypeError, match="complex"):
    _validation.check_leaves(
      [jnp.ones(2, jnp.complex64)], "fn", allow_complex=False
    )


def test_require_params():
  _validation.require_params({}, "fn")
  with pytest.raises(ValueError, match=r"optaxclip\.fn needs the parameters"):
    _validation.require_params(None, "fn")


def test_resolve():
  assert _validation.resolve(2.0, jnp.int32(3)) == 2.0
  sched = optax.linear_schedule(0.0, 1.0, 10)
  assert float(_validation.resolve(sched, jnp.int32(5))) == pytest.approx(0.5)


# ---------------------------------------------------------------------------
# Parameter paths
# ---------------------------------------------------------------------------


class Pair(NamedTuple):
  first: jax.Array
  second: jax.Array


def test_leaf_paths_of_common_containers():
  tree = {
    "enc": [jnp.ones(1), (jnp.ones(1), jnp.ones(1))],
    "pair": Pair(jnp.ones(1), jnp.ones(1)),
    "none": None,
    "masked": optax.MaskedNode(),
  }
  assert _paths.leaf_paths(tree) == [
    "enc/0",
    "enc/1/0",
    "enc/1/1",
    "pair/first",
    "pair/second",
  ]


def test_leaf_paths_drop_nnx_value():
  class Cell(nnx.Module):
    def __init__(self):
      self.ii = nnx.Linear(2, 3, rngs=nnx.Rngs(0))

  class Model(nnx.Module):
    def __init__(self):
      self.encoder = nnx.Dict(cell=Cell())

  paths = _paths.leaf_paths(nnx.state(Model(), nnx.Param))
  assert paths == ["encoder/cell/ii/bias", "encoder/cell/ii/kernel"]


@pytest.mark.parametrize(
  "pattern, path, want",
  [
    ("encoder/*/kernel", "encoder/cell/kernel", True),
    ("encoder/*/kernel", "encoder/cell/ii/kernel", False),
    ("encoder/**/kernel", "encoder/cell/ii/kernel", True),
    ("**/kernel", "encoder/cell/ii/kernel", True),
    ("**/kernel", "kernel", False),  # '**/' needs a segment before
    ("**kernel", "kernel", True),
    ("*", "w", True),
    ("*", "enc/w", True),  # a prefix of whole segments matches below it
    ("enc", "enc/w/x", True),
    ("enc", "encoder/w", False),
    ("en?/w", "enc/w", True),
    ("en?/w", "en/w", False),
    ("w*", "w1", True),
    ("w*", "v/w1", False),
    ("layers/0", "layers/0/kernel", True),
    ("layers/0", "layers/10/kernel", False),
    ("a.b", "axb", False),  # regex characters are literal
    ("a+", "a+", True),
  ],
)
def test_match_path(pattern, path, want):
  assert _paths.match_path(pattern, path) is want


def test_assign_rules_first_rule_wins_and_errors_list_offenders():
  paths = ["enc/w", "enc/b", "dec/w"]
  assert _paths.assign_rules(
    paths, ["**/b", "enc/**", "dec"], "fn", has_default=False
  ) == [1, 0, 2]
  assert _paths.assign_rules(paths, ["enc/*"], "fn", has_default=True) == [
    0,
    0,
    -1,
  ]
  with pytest.raises(ValueError, match=r"\['nope', 'x/\*'\] match no"):
    _paths.assign_rules(paths, ["enc", "nope", "x/*"], "fn", has_default=True)
  with pytest.raises(ValueError, match="no rule matches 'dec/w'"):
    _paths.assign_rules(paths, ["enc"], "fn", has_default=False)
  # A rule shadowed by an earlier one matches nothing: also an error.
  with pytest.raises(ValueError, match=r"\['enc/w'\]"):
    _paths.assign_rules(paths, ["enc/*", "enc/w"], "fn", has_default=True)


def test_compute_once_returns_values_unchanged_nan_first_too():
  vec = jnp.array([jnp.nan, 1.0, jnp.inf])  # a NaN probe takes the 2nd branch
  mask = jnp.array([True, False])
  for fn in (
    lambda *v: _scaling.compute_once(*v),
    jax.jit(_scaling.compute_once),
  ):
    out_vec, out_mask, none = fn(vec, mask, None)
    np.testing.assert_array_equal(np.asarray(out_vec), np.asarray(vec))
    np.testing.assert_array_equal(np.asarray(out_mask), np.asarray(mask))
    assert none is None
  assert _scaling.compute_once() == ()


def test_compute_once_is_differentiable_and_batchable():
  grad = jax.grad(lambda x: _scaling.compute_once(x * x)[0].sum())(
    jnp.arange(3.0)
  )
  chex.assert_trees_all_close(grad, 2 * jnp.arange(3.0))
  out = jax.vmap(lambda x: _scaling.compute_once(x)[0])(
    jnp.array([jnp.nan, 2.0])
  )
  np.testing.assert_array_equal(np.asarray(out), [np.nan, 2.0])


def test_pack_returns_values_bit_for_bit():
  # Each value is reduced with its identity (x + -0, x or False): signed
  # zeros, NaN, infinities, extreme integers and booleans come back
  # unchanged, and values of different shapes go through one reduction
  # each.
  values = [
    jnp.float32(-0.0),
    jnp.float32(0.0),
    jnp.float32(np.nan),
    jnp.float32(-np.inf),
    jnp.float32(3.5e38),
    jnp.int32(2**31 - 1),
    jnp.int32(-(2**31)),
    jnp.bool_(True),
    jnp.bool_(False),
    jnp.array([1.5, -0.0, np.inf], jnp.float32),
    jnp.array([[True, False]]),
  ]
  for fn in (_xla._pack, jax.jit(_xla._pack)):
    out = fn(values)
    assert len(out) == len(values)
    for want, got in zip(values, out):
      want, got = np.asarray(want), np.asarray(got)
      assert got.dtype == want.dtype and got.shape == want.shape
      assert got.tobytes() == want.tobytes(), (want, got)


def test_pack_is_differentiable_and_batchable():
  def f(x):
    a, b = _xla._pack([x * x, jnp.sum(x)])
    return a.sum() + 3 * b

  grad = jax.grad(f)(jnp.arange(3.0))
  chex.assert_trees_all_close(grad, 2 * jnp.arange(3.0) + 3)
  out = jax.vmap(lambda x: _xla._pack([x, x > 1])[1])(jnp.array([0.0, 2.0]))
  np.testing.assert_array_equal(np.asarray(out), [False, True])


def test_compute_each_once_gives_the_elements_as_scalars():
  vec = jnp.array([jnp.nan, 1.5, -jnp.inf], jnp.float32)
  for fn in (_scaling.compute_each_once, jax.jit(_scaling.compute_each_once)):
    out = fn(vec)
    assert isinstance(out, tuple) and len(out) == 3
    for got, want in zip(out, [np.nan, 1.5, -np.inf]):
      assert got.shape == () and got.dtype == jnp.float32
      np.testing.assert_array_equal(np.asarray(got), want)
  assert _scaling.compute_each_once(jnp.zeros([0])) == ()


def test_tie_passes_leaves_through_exactly():
  leaves = [
    jnp.array([1.0, -2.0, jnp.nan, jnp.inf]),
    jnp.array([3, 4], jnp.int32),
    jnp.array([0.5], jnp.bfloat16),
  ]
  powers = [jnp.float32(jnp.nan), jnp.float32(0.0), jnp.float32(jnp.inf)]
  out = jax.jit(_norms.tie)(leaves, powers)
  for x, y in zip(leaves, out):
    assert x.dtype == y.dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.complex64])
def test_any_nonfinite_of_computed_leaves(dtype):
  def flag(*leaves):
    # Computed in the same program, as a wrapper's inner updates are.
    return jax.jit(
      lambda xs: _norms.any_nonfinite([2 * x for x in xs], computed=True)
    )(list(leaves))

  big = jnp.full((70, 64), 1e30 if dtype == jnp.complex64 else 1e37, dtype)
  ok = jnp.ones((5000,), dtype)
  assert not bool(flag(ok, big[:1, :1]))  # huge but finite: no overflow
  for bad in (jnp.nan, jnp.inf, -jnp.inf):
    x = ok.at[4321].set(bad)
    assert bool(flag(x, big)) and bool(flag(big, x)), bad
  if dtype == jnp.complex64:
    assert bool(flag(ok.at[7].set(1j * jnp.inf)))
  assert not bool(_norms.any_nonfinite([], computed=True))
