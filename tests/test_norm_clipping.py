# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of value, global-norm, per-tensor-norm and block-RMS clipping.

Every formula is checked against a NumPy float64 re-implementation on
random pytrees of mixed shapes, against Optax where the semantics coincide,
by hypothesis properties, and on the edge cases of the docstring tables.
Jitted functions take the threshold as an argument and are cached, so the
examples share a handful of compilations.
"""

from __future__ import annotations

import functools
import math

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optaxclip
from optaxclip import _stats

# ---------------------------------------------------------------------------
# Helpers and NumPy float64 references
# ---------------------------------------------------------------------------

# Two fixed layouts; hypothesis only draws values, so each (strategy, layout,
# dtype) compiles once.
LAYOUTS = (
  {"a": (3, 4), "b": (5,), "c": ()},
  {"k": (2, 1, 3), "v": [(4,), (2, 2)]},
)


def layout_tree(layout, make):
  return jax.tree.map(make, layout, is_leaf=lambda x: isinstance(x, tuple))


def random_tree(rng, layout=0, dtype=np.float32, scale=1.0):
  return layout_tree(
    LAYOUTS[layout],
    lambda s: jnp.asarray(scale * rng.standard_normal(s), dtype),
  )


def f64(x):
  a = np.asarray(x)
  return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)


def np_norm(leaves, ord=2):
  leaves = [np.abs(f64(x)).ravel() for x in leaves]
  if not leaves:
    return 0.0
  a = np.concatenate(leaves)
  if ord == "inf":
    return float(np.max(a, initial=0.0))
  return float(np.sum(a)) if ord == 1 else float(np.sqrt(np.sum(a**2)))


def np_factor(norm, t):
  return t / norm if norm > t else 1.0


def ref_global(tree, t, ord=2):
  leaves, treedef = jax.tree.flatten(tree)
  n = np_norm(leaves, ord)
  f = np_factor(n, t)
  return treedef.unflatten([f64(x) * f for x in leaves]), n, f


def ref_tensor(tree, t, ord=2):
  leaves, treedef = jax.tree.flatten(tree)
  fs = [np_factor(np_norm([x], ord), t) for x in leaves]
  return treedef.unflatten([f64(x) * f for x, f in zip(leaves, fs)]), fs


def ref_block_rms(tree, d):
  leaves, treedef = jax.tree.flatten(tree)
  fs = [np_factor(np_norm([x]) / math.sqrt(max(x.size, 1)), d) for x in leaves]
  return treedef.unflatten([f64(x) * f for x, f in zip(leaves, fs)]), fs


def ref_value(tree, d):
  return jax.tree.map(lambda x: np.clip(f64(x), -d, d), tree)


@functools.cache
def _jitted(factory, kw):
  @jax.jit
  def update(grads, threshold):
    tx = factory(threshold, **dict(kw))
    u, s = tx.update(grads, tx.init(grads))
    return u, _stats.unnamed(s.stats)

  return update


def clip(factory, grads, threshold, **kw):
  """One update with a traced threshold; returns (updates, ClipStats)."""
  t = jnp.asarray(threshold, jnp.float32)
  return _jitted(factory, tuple(sorted(kw.items())))(grads, t)


def eager(factory, grads, *args, **kw):
  tx = factory(*args, **kw)
  u, s = tx.update(grads, tx.init(grads))
  return u, _stats.unnamed(s.stats)


def close(got, want, rtol=1e-6, atol=1e-7):
  chex.assert_trees_all_close(
    jax.tree.map(f64, got), jax.tree.map(f64, want), rtol=rtol, atol=atol
  )


# ---------------------------------------------------------------------------
# Against NumPy float64
# ---------------------------------------------------------------------------

REL_THRESHOLDS = (0.0, 0.3, 0.999, 1.5)


@pytest.mark.parametrize("ord", [1, 2, "inf"])
@pytest.mark.parametrize("layout", [0, 1])
def test_global_norm_matches_numpy(rng, ord, layout):
  for scale in (1e-3, 1.0, 1e3):
    tree = random_tree(rng, layout, scale=scale)
    n = np_norm(jax.tree.leaves(tree), ord)
    for rel in REL_THRESHOLDS:
      t = rel * n
      u, s = clip(optaxclip.clip_by_global_norm, tree, t, ord=ord)
      want, n_want, f = ref_global(tree, np.float32(t), ord)
      close(u, want)
      np.testing.assert_allclose(s.norm_before, n_want, rtol=1e-6)
      np.testing.assert_allclose(s.norm_after, n_want * f, rtol=1e-6)
      np.testing.assert_allclose(s.scale, f, rtol=1e-6)
      np.testing.assert_allclose(s.threshold, np.float32(t))
      assert float(s.clipped) == float(f < 1)
      assert int(s.step) == 1 and int(s.nonfinite_count) == 0
      np.testing.assert_allclose(
        optaxclip.global_norm(tree, ord), n_want, rtol=1e-6
      )


@pytest.mark.parametrize("ord", [1, 2, "inf"])
def test_tensor_norm_matches_numpy(rng, ord):
  tree = random_tree(rng, 0)
  norms = [np_norm([x], ord) for x in jax.tree.leaves(tree)]
  # Between the leaf norms: some leaves clipped, some not.
  t = float(np.median(norms))
  u, s = clip(optaxclip.clip_by_tensor_norm, tree, t, ord=ord)
  want, fs = ref_tensor(tree, np.float32(t), ord)
  close(u, want)
  assert float(s.clipped) == pytest.approx(np.mean([f < 1 for f in fs]))
  np.testing.assert_allclose(s.scale, min(fs), rtol=1e-6)
  np.testing.assert_allclose(s.threshold, np.float32(t))
  np.testing.assert_allclose(
    s.norm_before, np_norm(jax.tree.leaves(tree), ord), rtol=1e-6
  )
  # norm_after is derived from the leaf norms; measure it independently.
  np.testing.assert_allclose(
    s.norm_after, np_norm(jax.tree.leaves(u), ord), rtol=1e-5
  )


def test_block_rms_matches_numpy(rng):
  for layout in (0, 1):
    tree = random_tree(rng, layout, scale=2.0)
    for d in (0.0, 0.5, 2.0, 100.0):
      u, s = clip(optaxclip.clip_by_block_rms, tree, d)
      want, fs = ref_block_rms(tree, np.float32(d))
      close(u, want)
      np.testing.assert_allclose(s.threshold, d)
      np.testing.assert_allclose(s.scale, min(fs), rtol=1e-6)
      assert float(s.clipped) == pytest.approx(np.mean([f < 1 for f in fs]))


def test_value_matches_numpy(rng):
  tree = random_tree(rng, 1)
  for d in (0.0, 0.3, 1.0, 10.0):
    u, s = clip(optaxclip.clip_by_value, tree, d)
    close(u, ref_value(tree, np.float32(d)), rtol=0, atol=0)
    leaves = np.concatenate([f64(x).ravel() for x in jax.tree.leaves(tree)])
    assert float(s.clipped) == pytest.approx(np.mean(np.abs(leaves) > d))
    assert float(s.threshold) == pytest.approx(d)
    assert np.isnan(float(s.norm_before)) and np.isnan(float(s.norm_after))
    assert np.isnan(float(s.scale))


def test_clip_tree_by_global_norm_matches_transformation(rng):
  tree = random_tree(rng, 0, scale=3.0)
  for t in (0.0, 1.0, 1e6):
    got, norm = optaxclip.clip_tree_by_global_norm(tree, t)
    want, s = eager(optaxclip.clip_by_global_norm, tree, t)
    chex.assert_trees_all_equal(got, want)
    assert float(norm) == float(s.norm_before)
  got, norm = optaxclip.clip_tree_by_global_norm(tree, 1.0, ord="inf")
  close(got, ref_global(tree, 1.0, "inf")[0])


def test_functional_forms_nonfinite_and_empty():
  g = NONFINITE["nan"]
  clipped, norm = optaxclip.clip_tree_by_global_norm(g, 1.0)
  chex.assert_trees_all_equal(clipped, jax.tree.map(jnp.zeros_like, g))
  assert np.isnan(float(norm))
  clipped, _ = optaxclip.clip_tree_by_global_norm(g, 1.0, nonfinite="propagate")
  assert all(np.all(np.isnan(f64(x))) for x in jax.tree.leaves(clipped))
  with pytest.raises(FloatingPointError, match="clip_tree_by_global_norm"):
    optaxclip.clip_tree_by_global_norm(g, 1.0, nonfinite="error")
  clipped, norm = optaxclip.clip_tree_by_global_norm({"a": None}, 1.0)
  assert clipped == {"a": None} and float(norm) == 0.0
  assert float(optaxclip.global_norm([])) == 0.0
  with pytest.raises(TypeError, match="int32"):
    optaxclip.global_norm({"i": jnp.arange(2)})


# ---------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------


def test_hand_computed_global():
  g = {"a": jnp.asarray([3.0, 0.0]), "b": jnp.asarray([[4.0]])}
  u, s = eager(optaxclip.clip_by_global_norm, g, 1.0)
  chex.assert_trees_all_close(u, {"a": jnp.asarray([0.6, 0.0]), "b": 0.8})
  assert (float(s.norm_before), float(s.norm_after)) == (5.0, 1.0)
  assert float(s.scale) == pytest.approx(0.2)
  u, s = eager(optaxclip.clip_by_global_norm, g, 3.5, ord=1)  # |g|_1 = 7
  chex.assert_trees_all_close(u, {"a": jnp.asarray([1.5, 0.0]), "b": 2.0})
  u, s = eager(optaxclip.clip_by_global_norm, g, 2.0, ord="inf")
  chex.assert_trees_all_close(u, {"a": jnp.asarray([1.5, 0.0]), "b": 2.0})
  assert float(s.norm_before) == 4.0


def test_hand_computed_tensor_block_value():
  g = {"a": jnp.asarray([3.0, 4.0]), "b": jnp.asarray([0.3, 0.4])}
  u, s = eager(optaxclip.clip_by_tensor_norm, g, 1.0)
  chex.assert_trees_all_close(u, {"a": jnp.asarray([0.6, 0.8]), "b": g["b"]})
  assert float(s.clipped) == 0.5 and float(s.scale) == pytest.approx(0.2)
  # rms([3, 4]) = sqrt(12.5); rms([0.3, 0.4]) = sqrt(0.125) < 1.
  u, _ = eager(optaxclip.clip_by_block_rms, g, 1.0)
  want_a = np.asarray([3.0, 4.0]) / math.sqrt(12.5)
  chex.assert_trees_all_close(u, {"a": want_a, "b": g["b"]}, rtol=1e-6)
  u, s = eager(optaxclip.clip_by_value, g, 0.35)
  chex.assert_trees_all_close(
    u, {"a": jnp.asarray([0.35, 0.35]), "b": jnp.asarray([0.3, 0.35])}
  )
  assert float(s.clipped) == 0.75


# ---------------------------------------------------------------------------
# Agreement with optax (finite inputs)
# ---------------------------------------------------------------------------


def _optax(tx, tree):
  return tx.update(tree, tx.init(tree))[0]


@pytest.mark.parametrize("layout", [0, 1])
def test_agrees_with_optax(rng, layout):
  for scale in (0.1, 1.0, 10.0):
    tree = random_tree(rng, layout, scale=scale)
    for t in (0.05, 0.5, 5.0, 50.0):
      close(
        clip(optaxclip.clip_by_global_norm, tree, t)[0],
        _optax(optax.clip_by_global_norm(t), tree),
        rtol=2e-6,
      )
      close(
        clip(optaxclip.clip_by_block_rms, tree, t)[0],
        _optax(optax.clip_by_block_rms(t), tree),
        rtol=2e-6,
      )
      close(
        clip(optaxclip.clip_by_value, tree, t)[0],
        _optax(optax.clip(t), tree),
        rtol=0,
        atol=0,
      )


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

NORM_STRATEGIES = {
  "global_l2": (optaxclip.clip_by_global_norm, {"ord": 2}, "global", 2),
  "global_l1": (optaxclip.clip_by_global_norm, {"ord": 1}, "global", 1),
  "global_inf": (
    optaxclip.clip_by_global_norm,
    {"ord": "inf"},
    "global",
    "inf",
  ),
  "tensor_l2": (optaxclip.clip_by_tensor_norm, {}, "leaf", 2),
  "tensor_inf": (
    optaxclip.clip_by_tensor_norm,
    {"ord": "inf"},
    "leaf",
    "inf",
  ),
  "block_rms": (optaxclip.clip_by_block_rms, {}, "rms", 2),
}


@st.composite
def trees(draw, dtypes=("float32", "bfloat16")):
  """(tree, dtype): values from a fixed layout, scaled over 10 decades."""
  layout = draw(st.sampled_from([0, 1]))
  dtype = draw(st.sampled_from(dtypes))
  exponent = draw(st.integers(-5, 5))
  # No magnitudes below 1e-6: scaled down they would be subnormal, which
  # XLA on the CPU flushes to zero.
  elements = st.floats(-1.0, 1.0, width=32).map(
    lambda v: 0.0 if abs(v) < 1e-6 else v
  )

  def leaf(shape):
    x = draw(hnp.arrays(np.float32, shape, elements=elements))
    return jnp.asarray(x * np.float32(10.0**exponent), dtype)

  return layout_tree(LAYOUTS[layout], leaf), dtype


def measures(tree, kind, ord):
  """The quantities the strategy bounds: one, or one per leaf."""
  leaves = jax.tree.leaves(tree)
  if kind == "global":
    return [np_norm(leaves, ord)]
  if kind == "leaf":
    return [np_norm([x], ord) for x in leaves]
  return [np_norm([x]) / math.sqrt(max(np.size(x), 1)) for x in leaves]


def tol(dtype):
  """Relative tolerance of a result rounded to ``dtype``."""
  return 4 * float(jnp.finfo(dtype).eps)


@pytest.mark.parametrize("strategy", NORM_STRATEGIES)
@hypothesis.given(data=trees(), rel=st.floats(0.0, 2.0))
def test_property_bound_direction_identity(strategy, data, rel):
  factory, kw, kind, ord = NORM_STRATEGIES[strategy]
  tree, dtype = data
  before = measures(tree, kind, ord)
  t = float(np.float32(rel * max(before)))
  out, _ = clip(factory, tree, t, **kw)
  chex.assert_trees_all_equal_dtypes(out, tree)
  # The bound, within the rounding of the output dtype.
  for m in measures(out, kind, ord):
    assert m <= t * (1 + tol(dtype)) + 1e-30
  # Direction: each unit (the tree or a leaf) is scaled by c in [0, 1].
  units = (
    [jax.tree.leaves(tree)]
    if kind == "global"
    else [[x] for x in jax.tree.leaves(tree)]
  )
  outs = (
    [jax.tree.leaves(out)]
    if kind == "global"
    else [[x] for x in jax.tree.leaves(out)]
  )
  for xs, ys, m in zip(units, outs, before):
    x = np.concatenate([f64(v).ravel() for v in xs])
    y = np.concatenate([f64(v).ravel() for v in ys])
    if not np.any(x):
      np.testing.assert_array_equal(y, 0)
      continue
    c = float(x @ y / (x @ x))
    assert -tol(dtype) <= c <= 1 + tol(dtype)
    np.testing.assert_allclose(y, c * x, atol=tol(dtype) * np.abs(x).max())
    if m <= t * (1 - 1e-5):
      # Identity below the threshold: bit for bit.
      np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("strategy", NORM_STRATEGIES)
@hypothesis.given(data=trees(), rel=st.floats(0.0, 2.0))
def test_property_idempotent(strategy, data, rel):
  factory, kw, kind, ord = NORM_STRATEGIES[strategy]
  tree, dtype = data
  t = float(np.float32(rel * max(measures(tree, kind, ord))))
  once, _ = clip(factory, tree, t, **kw)
  twice, _ = clip(factory, once, t, **kw)
  close(twice, once, rtol=tol(dtype), atol=0)


@pytest.mark.parametrize("strategy", NORM_STRATEGIES)
@hypothesis.given(
  data=trees(("float32",)),
  rel=st.floats(0.0, 2.0),
  k=st.integers(-6, 6),
)
def test_property_scale_equivariant(strategy, data, rel, k):
  # clip(a x; a t) = a clip(x; t); a power of two scales floats exactly.
  factory, kw, kind, ord = NORM_STRATEGIES[strategy]
  tree, dtype = data
  a = 2.0**k
  t = float(np.float32(rel * max(measures(tree, kind, ord))))
  base, _ = clip(factory, tree, t, **kw)
  scaled, _ = clip(factory, jax.tree.map(lambda x: x * a, tree), t * a, **kw)
  close(scaled, jax.tree.map(lambda x: x * a, base), rtol=tol(dtype), atol=0)


# XLA on CPU flushes subnormals to zero, so the bound is a normal float.
@hypothesis.given(
  data=trees(), d=st.floats(0.0, 10.0, width=32, allow_subnormal=False)
)
def test_property_value_clipping(data, d):
  tree, dtype = data
  out, _ = clip(optaxclip.clip_by_value, tree, d)
  dd = float(jnp.asarray(d, dtype))  # the bound as the leaves see it
  for x, y in zip(jax.tree.leaves(tree), jax.tree.leaves(out)):
    x, y = f64(x), f64(y)
    assert y.dtype == x.dtype and np.all(np.abs(y) <= dd)
    inside = np.abs(x) <= dd
    np.testing.assert_array_equal(y[inside], x[inside])  # identity inside
    np.testing.assert_array_equal(y[~inside], np.sign(x[~inside]) * dd)
  again, _ = clip(optaxclip.clip_by_value, out, d)
  chex.assert_trees_all_equal(again, out)  # idempotent


# ---------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------

ALL = {
  "global": (optaxclip.clip_by_global_norm, "max_norm"),
  "tensor": (optaxclip.clip_by_tensor_norm, "max_norm"),
  "block_rms": (optaxclip.clip_by_block_rms, "threshold"),
  "value": (optaxclip.clip_by_value, "max_delta"),
}
NORM_BASED = ("global", "tensor", "block_rms")


@pytest.mark.parametrize("which", ALL)
def test_zero_gradients(which):
  factory, _ = ALL[which]
  zeros = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2), jnp.bfloat16)}
  for t in (0.0, 1.0):
    u, s = eager(factory, zeros, t)
    chex.assert_trees_all_equal(u, zeros)
    chex.assert_trees_all_equal_dtypes(u, zeros)
    assert float(s.clipped) == 0
    if which != "value":
      assert float(s.norm_before) == 0 and float(s.scale) == 1


@pytest.mark.parametrize("which", ALL)
def test_threshold_zero_and_inf(which):
  factory, _ = ALL[which]
  g = {"a": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(3.0)}
  u, s = eager(factory, g, 0.0)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, g))
  assert float(s.clipped) == 1
  u, s = eager(factory, g, math.inf)
  chex.assert_trees_all_equal(u, g)
  assert float(s.clipped) == 0


def test_norm_equal_to_threshold_is_left_alone():
  g = jnp.asarray([3.0, 4.0])
  for factory, t, kw in [
    (optaxclip.clip_by_global_norm, 5.0, {}),
    (optaxclip.clip_by_global_norm, 7.0, {"ord": 1}),
    (optaxclip.clip_by_global_norm, 4.0, {"ord": "inf"}),
    (optaxclip.clip_by_tensor_norm, 5.0, {}),
    (optaxclip.clip_by_block_rms, math.sqrt(12.5), {}),
    (optaxclip.clip_by_value, 4.0, {}),
  ]:
    u, s = eager(factory, g, t, **kw)
    chex.assert_trees_all_equal(u, g)
    assert float(s.clipped) == 0, factory


NONFINITE = {
  "nan": {"a": jnp.asarray([1.0, jnp.nan]), "b": jnp.asarray([2.0, 0.5])},
  "inf": {"a": jnp.asarray([1.0, -jnp.inf]), "b": jnp.asarray([2.0, 0.5])},
}


@pytest.mark.parametrize("which", ALL)
@pytest.mark.parametrize("bad", NONFINITE)
def test_nonfinite_zero_policy_zeroes_and_counts(which, bad):
  factory, _ = ALL[which]
  g = NONFINITE[bad]
  tx = factory(1.0)
  u, state = tx.update(g, tx.init(g))
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, g))
  s = _stats.unnamed(state.stats)
  assert int(s.nonfinite_count) == 1 and float(s.clipped) == 1
  if which != "value":
    assert float(s.scale) == 0 and float(s.norm_after) == 0
  # The next finite step is clipped normally; the count stays.
  good = jax.tree.map(jnp.ones_like, g)
  u, state = tx.update(good, state)
  s = _stats.unnamed(state.stats)
  assert int(s.nonfinite_count) == 1 and int(s.step) == 2
  chex.assert_tree_all_finite(u)
  assert np.all(f64(u["a"]) > 0)


def test_nonfinite_propagate_matches_optax():
  for bad, g in NONFINITE.items():
    got, _ = eager(optaxclip.clip_by_global_norm, g, 1.0, nonfinite="propagate")
    want = _optax(optax.clip_by_global_norm(1.0), g)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(x, y, err_msg=bad)
    got, _ = eager(optaxclip.clip_by_block_rms, g, 1.0, nonfinite="propagate")
    want = _optax(optax.clip_by_block_rms(1.0), g)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(x, y, rtol=1e-6, err_msg=bad)
    got, _ = eager(optaxclip.clip_by_value, g, 1.0, nonfinite="propagate")
    want = _optax(optax.clip(1.0), g)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(x, y, err_msg=bad)


def test_nonfinite_propagate_semantics():
  g = NONFINITE["nan"]
  u, s = eager(optaxclip.clip_by_global_norm, g, 1.0, nonfinite="propagate")
  assert all(np.all(np.isnan(f64(x))) for x in jax.tree.leaves(u))
  assert int(s.nonfinite_count) == 1
  # Per leaf: only the leaf with the NaN is NaN.
  u, _ = eager(optaxclip.clip_by_tensor_norm, g, 1.0, nonfinite="propagate")
  assert np.all(np.isnan(f64(u["a"])))
  np.testing.assert_allclose(u["b"], ref_tensor({"b": g["b"]}, 1.0)[0]["b"])
  # Inf: finite elements become 0, the Inf element NaN (as optax).
  u, _ = eager(
    optaxclip.clip_by_global_norm, NONFINITE["inf"], 1.0, nonfinite="propagate"
  )
  assert float(u["a"][0]) == 0 and np.isnan(float(u["a"][1]))
  chex.assert_trees_all_equal(u["b"], jnp.zeros(2))
  # Value clipping: NaN stays, Inf becomes the bound.
  u, _ = eager(
    optaxclip.clip_by_value, NONFINITE["inf"], 0.5, nonfinite="propagate"
  )
  np.testing.assert_array_equal(u["a"], [0.5, -0.5])
  u, _ = eager(optaxclip.clip_by_value, g, 0.5, nonfinite="propagate")
  assert np.isnan(float(u["a"][1])) and float(u["a"][0]) == 0.5


@pytest.mark.parametrize("which", ALL)
def test_nonfinite_error_eager_and_jit(which):
  factory, _ = ALL[which]
  g = NONFINITE["nan"]
  tx = factory(1.0, nonfinite="error", name="my_clipper")
  state = tx.init(g)
  with pytest.raises(FloatingPointError, match="my_clipper"):
    tx.update(g, state)
  step = jax.jit(tx.update)
  u, _ = step(jax.tree.map(jnp.ones_like, g), state)  # finite: no error
  chex.assert_tree_all_finite(u)
  with pytest.raises(jax.errors.JaxRuntimeError, match="my_clipper"):
    jax.block_until_ready(step(g, state))


@pytest.mark.parametrize("which", ALL)
def test_empty_trees_and_none_leaves(which):
  factory, _ = ALL[which]
  for empty in ({}, [], None, {"a": None}):
    u, s = eager(factory, empty, 1.0)
    assert u == empty
    assert float(s.clipped) == 0 and int(s.step) == 1
  g = {"a": None, "b": jnp.asarray([3.0, 4.0])}
  u, _ = eager(factory, g, 0.5)
  assert u["a"] is None and u["b"].shape == (2,)


@pytest.mark.parametrize("which", NORM_BASED)
def test_masked_node_leaves_are_not_measured(which):
  factory, _ = ALL[which]
  g = {"big": jnp.full(4, 100.0), "small": jnp.asarray([3.0, 4.0])}
  mask = {"big": False, "small": True}
  tx = optax.masked(factory(1.0), mask)
  u, state = tx.update(g, tx.init(g))
  chex.assert_trees_all_equal(u["big"], g["big"])  # untouched
  s = optaxclip.stats(state)[factory.__name__]
  if which == "block_rms":
    np.testing.assert_allclose(u["small"], [3 / 12.5**0.5, 4 / 12.5**0.5], 1e-6)
  else:
    np.testing.assert_allclose(u["small"], [0.6, 0.8], rtol=1e-6)
    assert float(s.norm_before) == pytest.approx(5.0)


@pytest.mark.parametrize("which", NORM_BASED)
def test_complex_leaves(rng, which):
  factory, _ = ALL[which]
  z = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
  g = {"z": jnp.asarray(z, jnp.complex64), "r": jnp.asarray([2.0, -1.0])}
  u, s = eager(factory, g, 0.5)
  chex.assert_trees_all_equal_dtypes(u, g)
  ref = {
    "global": lambda: ref_global(g, 0.5)[0],
    "tensor": lambda: ref_tensor(g, 0.5)[0],
    "block_rms": lambda: ref_block_rms(g, 0.5)[0],
  }[which]()
  close(u, ref, rtol=2e-6)
  np.testing.assert_allclose(
    s.norm_before, np_norm(jax.tree.leaves(g)), rtol=1e-6
  )


def test_complex_leaves_rejected_by_value_clipping():
  g = {"z": jnp.ones(2, jnp.complex64)}
  with pytest.raises(TypeError, match="complex"):
    eager(optaxclip.clip_by_value, g, 1.0)


@pytest.mark.parametrize("which", ALL)
def test_integer_leaves_rejected(which):
  factory, _ = ALL[which]
  g = {"a": jnp.ones(2), "i": jnp.arange(3)}
  with pytest.raises(TypeError, match="int32"):
    eager(factory, g, 1.0)


def test_float16_elements_up_to_6e4():
  g = {"a": jnp.full((64,), 6e4, jnp.float16), "b": jnp.ones(3, jnp.float16)}
  want_norm = math.sqrt(64 * 6e4**2 + 3)
  np.testing.assert_allclose(optaxclip.global_norm(g), want_norm, rtol=1e-3)
  u, s = eager(optaxclip.clip_by_global_norm, g, 1.0)
  assert s.norm_before.dtype == jnp.float32
  np.testing.assert_allclose(s.norm_before, want_norm, rtol=1e-3)
  chex.assert_trees_all_equal_dtypes(u, g)
  chex.assert_tree_all_finite(u)
  np.testing.assert_allclose(np_norm(jax.tree.leaves(u)), 1.0, rtol=2e-3)
  # The tiny leaf is scaled in float32, not flushed by a float16 factor.
  assert float(u["b"][0]) > 0
  np.testing.assert_allclose(u["b"], 1.0 / want_norm, rtol=2e-3)
  u, _ = eager(optaxclip.clip_by_tensor_norm, g, 1.0)
  np.testing.assert_allclose(np_norm([u["a"]]), 1.0, rtol=2e-3)


@pytest.mark.parametrize("which", NORM_BASED)
def test_float64_leaves_under_x64(rng, which):
  factory, _ = ALL[which]
  ref = {"global": ref_global, "tensor": ref_tensor, "block_rms": ref_block_rms}
  with jax.enable_x64(True):
    g = {
      "a": jnp.asarray(3 * rng.standard_normal(5), jnp.float64),
      "b": jnp.asarray(3 * rng.standard_normal((2, 3)), jnp.float64),
    }
    # A threshold whose float32 rounding would show at 1e-12.
    t = 1.0 + 1e-10
    u, s = eager(factory, g, t)
    chex.assert_trees_all_equal_dtypes(u, g)
    close(u, ref[which](g, t)[0], rtol=1e-13, atol=0)
    assert s.norm_before.dtype == jnp.float32  # statistics stay float32
    # Mixed with float32 leaves: every leaf keeps its dtype.
    mixed = {**g, "c": jnp.ones(3, jnp.float32), "d": jnp.ones(2, jnp.bfloat16)}
    u, _ = eager(factory, mixed, t)
    chex.assert_trees_all_equal_dtypes(u, mixed)
    close(
      u,
      ref[which](mixed, t)[0],
      rtol=1e-2,  # bf16 rounding
    )
  if which == "global":
    with jax.enable_x64(True):
      assert optaxclip.global_norm(g).dtype == jnp.float64


@pytest.mark.parametrize("which", ALL)
@pytest.mark.parametrize("bad", [-1.0, math.nan, np.ones(2), -math.inf])
def test_bad_thresholds_name_the_argument(which, bad):
  factory, arg = ALL[which]
  with pytest.raises(
    ValueError, match=f"optaxclip.{factory.__name__}: `{arg}`"
  ):
    factory(bad)


def test_bad_structural_arguments():
  for factory in (optaxclip.clip_by_global_norm, optaxclip.clip_by_tensor_norm):
    with pytest.raises(ValueError, match="unknown ord=3"):
      factory(1.0, ord=3)
  for factory, _ in ALL.values():
    with pytest.raises(ValueError, match="unknown nonfinite='skip'"):
      factory(1.0, nonfinite="skip")
  with pytest.raises(ValueError, match="`max_norm`"):
    optaxclip.clip_tree_by_global_norm({}, -1.0)
  with pytest.raises(TypeError, match="callable"):
    optaxclip.clip_tree_by_global_norm({}, lambda step: 1.0)
  with pytest.raises(ValueError, match="unknown ord"):
    optaxclip.global_norm({}, ord="fro")


# ---------------------------------------------------------------------------
# Schedules, injected hyperparameters, gradients
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ALL)
def test_schedule_threshold_follows_the_step(which):
  factory, _ = ALL[which]
  sched = optax.linear_schedule(1.0, 3.0, transition_steps=2)
  tx = factory(sched)
  g = {"a": jnp.full(4, 10.0)}
  state = tx.init(g)
  for step in range(3):
    _, state = tx.update(g, state)
    s = _stats.unnamed(state.stats)
    assert float(s.threshold) == pytest.approx(1.0 + step)


def test_injected_threshold_can_be_changed():
  tx = optax.inject_hyperparams(optaxclip.clip_by_global_norm)(max_norm=1.0)
  g = {"a": jnp.asarray([3.0, 4.0]), "b": jnp.ones((2, 2))}
  state = tx.init(g)
  step = jax.jit(tx.update)
  for t in (0.25, 1.0, 2.5):
    state.hyperparams["max_norm"] = jnp.asarray(t)
    u, state = step(g, state)
    np.testing.assert_allclose(np_norm(jax.tree.leaves(u)), t, rtol=1e-6)
    assert float(optaxclip.stats(state)["clip_by_global_norm"].threshold) == t


def _fd_check(f, x, t, h=1e-6):
  """Compares jax.grad of scalar f(x, t) with central differences (x64).

  ``f`` is jitted (with its gradient): eager, the many evaluations of the
  finite differences would dominate the test's time.
  """
  gx, gt = jax.jit(jax.grad(f, argnums=(0, 1)))(x, t)
  f = jax.jit(f)
  assert np.all(np.isfinite(gx)) and np.isfinite(float(gt))
  fd_x = np.zeros(x.shape)
  for i in range(x.size):
    e = np.zeros(x.size)
    e[i] = h
    e = jnp.asarray(e.reshape(x.shape))
    fd_x.flat[i] = (f(x + e, t) - f(x - e, t)) / (2 * h)
  fd_t = (f(x, t + h) - f(x, t - h)) / (2 * h)
  np.testing.assert_allclose(gx, fd_x, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(gt, fd_t, rtol=1e-6, atol=1e-8)


GRAD_CASES = {
  "global": lambda u, t: optaxclip.clip_by_global_norm(t),
  "global_l1": lambda u, t: optaxclip.clip_by_global_norm(t, ord=1),
  "tensor": lambda u, t: optaxclip.clip_by_tensor_norm(t),
  "block_rms": lambda u, t: optaxclip.clip_by_block_rms(t),
  "value": lambda u, t: optaxclip.clip_by_value(t),
}


@pytest.mark.parametrize("which", GRAD_CASES)
def test_gradient_matches_finite_differences(rng, which):
  with jax.enable_x64(True):
    w = jnp.asarray(rng.standard_normal(6))

    def f(x, t):
      tx = GRAD_CASES[which](x, t)
      tree = {"p": x[:4], "q": x[4:]}
      u, _ = tx.update(tree, tx.init(tree))
      return jnp.sum(jnp.concatenate([u["p"], u["q"]]) * w)

    x = jnp.asarray(rng.standard_normal(6))
    _fd_check(f, x, 0.7)  # clipped
    _fd_check(f, x, 50.0)  # not clipped
    if which != "value":
      _fd_check(f, jnp.zeros(6), 0.7)  # zero gradient


def test_gradient_of_functional_form(rng):
  with jax.enable_x64(True):
    w = jnp.asarray(rng.standard_normal(5))

    def f(x, t):
      clipped, norm = optaxclip.clip_tree_by_global_norm(x, t)
      return jnp.sum(clipped * w) + norm

    _fd_check(f, jnp.asarray(rng.standard_normal(5)), 0.5)
    gx, _ = jax.grad(f, argnums=(0, 1))(jnp.zeros(5), 0.5)
    assert np.all(np.isfinite(gx))
