# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The conformance suite: every strategy of the REGISTRY, the same checks.

Each test is parametrized by ``case.name`` over ``conformance.REGISTRY``, so
a strategy joins by adding one ``Case``. A strategy is run on its own
(``build``) or in an optimizer (``pipeline``): before ``optax.adam`` for
gradient-stage cases, after it for update-stage ones, and as the whole
optimizer for wrappers (which wrap ``case.inner()``).
"""

from __future__ import annotations

import functools

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conformance import REGISTRY
from conformance import Case
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import optaxclip
from optaxclip import _paths
from optaxclip import _stats

CASES = pytest.mark.parametrize("case", REGISTRY, ids=lambda c: c.name)
PROBE = "probe"  # the name= every case is built with where names matter


# ---------------------------------------------------------------------------
# Sample problem
# ---------------------------------------------------------------------------


def _tree(make):
  """The sample pytree: mixed ranks, a nested list, a scalar leaf."""
  return {
    "w": make((8, 4)),
    "b": make((4,)),
    "layers": [{"kernel": make((2, 8))}],
    "s": make(()),
  }


# How the sample tree is laid out on the 8-device mesh: sharded along
# different axes per leaf, some leaves replicated.
SPECS = {
  "w": P("x", None),
  "b": P(),
  "layers": [{"kernel": P(None, "x")}],
  "s": P(),
}


def make_params(dtype=jnp.float32, seed=0):
  rng = np.random.default_rng(seed)
  return _tree(lambda s: jnp.asarray(rng.uniform(-1, 1, s), dtype))


def make_grads(n, dtype=jnp.float32, seed=1, scale=1.0):
  """``n`` gradient trees stacked along a leading axis."""
  rng = np.random.default_rng(seed)
  return _tree(
    lambda s: jnp.asarray(scale * rng.standard_normal((n, *s)), dtype)
  )


def at(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def build(case: Case, **override):
  """The case's transformation on its own."""
  kwargs = {**case.kwargs, **override}
  if case.wrapper:
    return case.factory(case.inner(), **kwargs)
  return case.factory(**kwargs)


def pipeline(case: Case, learning_rate=0.05, **override):
  """The case inside an optimizer, at its stage."""
  tx = build(case, **override)
  if case.wrapper:
    return tx
  if case.stage == "update":
    return optax.chain(optax.adam(learning_rate), tx)
  return optax.chain(tx, optax.adam(learning_rate))


def stepper(tx, case: Case, *, jit=False, **extra):
  """``(grads, state, params) -> (updates, state)``, eager or jitted."""

  def step(g, s, p):
    return tx.update(g, s, p, **case.extra_args, **extra)

  return jax.jit(step) if jit else step


def run(tx, case: Case, grads, params, n, *, state=None, jit=False):
  """``n`` steps on ``grads[i]``; returns the lists of updates and states.

  Eager by default: once the primitives are compiled (after a worker's first
  test) an eager step costs milliseconds, a jit compilation about a second.
  The checks that are about ``jit`` say so.
  """
  step = stepper(tx, case, jit=jit)
  state = tx.init(params) if state is None else state
  updates, states = [], []
  for i in range(n):
    u, state = step(at(grads, i), state, params)
    updates.append(u)
    states.append(state)
  return updates, states


def types(tree):
  """Shape, dtype, weak type and sharding of every leaf."""
  return jax.tree.map(jax.typeof, tree)


def assert_same_types(a, b):
  chex.assert_trees_all_equal_structs(a, b)
  assert types(a) == types(b)


def assert_stats_dtypes(state):
  found = optaxclip.stats(state)
  assert found, "no statistics found in the state"
  for name, s in found.items():
    for field, v in zip(s._fields, s):
      if isinstance(v, optaxclip.PathMap):  # a monitor's per-path vector
        assert jnp.shape(v.vector) == (len(v.paths),), (name, field)
        v = v.vector
      else:
        assert jnp.shape(v) == (), (name, field)
      assert jnp.result_type(v) in (jnp.float32, jnp.int32), (name, field)


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------


# The checks a Case may opt out of, with a reason, in ``Case.skip``.
CHECKS = {
  "map_params",
  "inject_hyperparams",
  "multisteps",
  "checkpoint",
  "converges",
  "sharding",
  "zero_gradients",
  "stats",
}


def test_registry_is_well_formed():
  names = [c.name for c in REGISTRY]
  assert len(names) == len(set(names)), "duplicate case names"
  for c in REGISTRY:
    assert c.stage in ("grad", "update"), c.name
    assert (c.inner is not None) == c.wrapper, c.name
    unknown = set(c.skip) - CHECKS
    assert not unknown, f"{c.name}: unknown checks in skip: {unknown}"


def maybe_skip(case: Case, check: str):
  assert check in CHECKS
  if check in case.skip:
    pytest.skip(f"{case.name} opts out of {check!r}: {case.skip[check]}")


@CASES
def test_jit_traces_once_and_keeps_state_types(case):
  tx = build(case)
  params, grads = make_params(), make_grads(3)
  traces = []

  @jax.jit
  def step(g, s, p):
    traces.append(1)
    return tx.update(g, s, p, **case.extra_args)

  s0 = tx.init(params)
  u_eager, s_eager = tx.update(at(grads, 0), s0, params, **case.extra_args)
  u_jit, s_jit = step(at(grads, 0), s0, params)
  _, s2 = step(at(grads, 1), s_jit, params)
  _, s3 = step(at(grads, 2), s2, params)
  assert len(traces) == 1, "the step was traced again on a later call"
  # Same structure, shapes, dtypes and weak types from init, eager and jit.
  for s in (s_eager, s_jit, s2, s3):
    assert_same_types(s0, s)
  assert_same_types(u_eager, at(grads, 0))
  assert_same_types(u_jit, at(grads, 0))
  chex.assert_trees_all_close(u_eager, u_jit, rtol=1e-6, atol=1e-7)
  chex.assert_trees_all_close(s_eager, s_jit, rtol=1e-6, atol=1e-7)
  assert_stats_dtypes(s3)


@CASES
def test_inject_hyperparams(case):
  maybe_skip(case, "inject_hyperparams")
  factory = optax.inject_hyperparams(case.factory, static_args=case.static_args)
  args = (case.inner(),) if case.wrapper else ()
  injected = factory(*args, **case.kwargs)
  plain = build(case)
  params, grads = make_params(), make_grads(3)
  u_plain, s_plain = run(plain, case, grads, params, 3)
  u_inj, s_inj = run(injected, case, grads, params, 3, jit=True)
  numeric = {
    k
    for k, v in case.kwargs.items()
    if k not in case.static_args
    and isinstance(v, (int, float))
    and not isinstance(v, bool)
  }
  assert numeric <= set(s_inj[-1].hyperparams)
  # With a concrete beta the EMA strategies take 1 - beta (and the bias
  # corrections) before the float32 cast, as the papers' code does; an
  # injected beta arrives as float32 already (0.7 -> 0.69999999), which
  # moves their results by a few 1e-6 (issue 18, item 14).
  ema = case.factory in (optaxclip.clip_spikes, optaxclip.stable_spam_clip)
  rtol = 2e-5 if ema else 1e-6
  chex.assert_trees_all_close(u_inj, u_plain, rtol=rtol, atol=1e-7)
  chex.assert_trees_all_close(
    [s.inner_state for s in s_inj], s_plain, rtol=rtol, atol=1e-7
  )


@CASES
def test_multisteps_equals_mean_gradient(case):
  maybe_skip(case, "multisteps")
  tx = pipeline(case)
  params, grads = make_params(), make_grads(4)
  ms = optax.MultiSteps(tx, every_k_schedule=2)
  updates, states = run(ms, case, grads, params, 4, jit=True)
  zeros = jax.tree.map(jnp.zeros_like, params)
  chex.assert_trees_all_equal(updates[0], zeros)
  chex.assert_trees_all_equal(updates[2], zeros)
  # The inner chain sees the mean of each pair of gradients, once.
  mean01 = jax.tree.map(lambda g: (g[0] + g[1]) / 2, grads)
  mean23 = jax.tree.map(lambda g: (g[2] + g[3]) / 2, grads)
  step = stepper(tx, case)
  want1, inner1 = step(mean01, tx.init(params), params)
  want3, inner3 = step(mean23, inner1, params)
  chex.assert_trees_all_close(updates[1], want1, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(updates[3], want3, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(
    states[3].inner_opt_state, inner3, rtol=1e-5, atol=1e-6
  )
  # A step that only accumulates leaves the whole inner state (adaptive
  # state and statistics included) untouched.
  chex.assert_trees_all_equal(states[0].inner_opt_state, tx.init(params))
  chex.assert_trees_all_equal(
    states[2].inner_opt_state, states[1].inner_opt_state
  )
  # optaxclip.stats finds the inner statistics; they advance on emit only.
  for state, steps in ((states[0], 0), (states[1], 1), (states[3], 2)):
    found = optaxclip.stats(state)
    assert list(found) == list(optaxclip.stats(inner3))
    assert all(int(v.step) == steps for v in found.values())


@CASES
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_preserves_leaf_dtypes(case, dtype):
  tx = build(case)
  params, grads = make_params(dtype), make_grads(2, dtype)
  updates, states = run(tx, case, grads, params, 2)
  for u in updates:
    chex.assert_trees_all_equal_dtypes(u, params)
    chex.assert_trees_all_equal_shapes(u, params)
    chex.assert_tree_all_finite(u)
  assert_same_types(tx.init(params), states[-1])
  assert_stats_dtypes(states[-1])


@CASES
def test_accepts_unknown_extra_args(case):
  tx = build(case)
  params, grads = make_params(), make_grads(1)
  state = tx.init(params)
  want = stepper(tx, case)(at(grads, 0), state, params)
  got = stepper(tx, case, not_an_arg=jnp.ones(3), also_not="x")(
    at(grads, 0), state, params
  )
  chex.assert_trees_all_equal(got, want)


@CASES
def test_params_argument(case):
  tx = build(case)
  params, grads = make_params(), make_grads(1)
  state = tx.init(params)
  if case.needs_params:
    with pytest.raises(ValueError, match="param"):
      tx.update(at(grads, 0), state, **case.extra_args)
  else:
    want = tx.update(at(grads, 0), state, params, **case.extra_args)
    got = tx.update(at(grads, 0), state, **case.extra_args)
    chex.assert_trees_all_close(got, want, rtol=1e-6)


@CASES
def test_zero_gradients_give_zero_updates(case):
  maybe_skip(case, "zero_gradients")
  tx = build(case)
  params = make_params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, states = run(
    tx, case, jax.tree.map(lambda z: z[None], zeros), params, 1
  )
  chex.assert_trees_all_equal(updates[0], zeros)
  for s in optaxclip.stats(states[0]).values():
    assert int(s.nonfinite_count) == 0


@CASES
def test_map_params(case):
  maybe_skip(case, "map_params")
  tx = pipeline(case)
  params, grads = make_params(), make_grads(1)
  _, (state,) = run(tx, case, grads, params, 1)
  mapped = optax.tree.map_params(tx, lambda v: v + 1, state)
  chex.assert_trees_all_equal_structs(mapped, state)
  # Adam's moments are parameter-shaped and mapped; statistics are not.
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), mapped, state)
  assert any(jax.tree.leaves(changed))
  chex.assert_trees_all_equal(optaxclip.stats(mapped), optaxclip.stats(state))
  # The use it exists for: a sharding spec per state leaf.
  specs = jax.tree.map(lambda _: P(), params)
  state_specs = optax.tree.map_params(
    tx, lambda _, spec: spec, state, specs, transform_non_params=lambda _: P()
  )
  assert jax.tree.structure(
    state_specs, is_leaf=lambda x: isinstance(x, P)
  ) == jax.tree.structure(state)


@CASES
def test_sharded_params_on_8_devices(case, mesh):
  maybe_skip(case, "sharding")
  tx = build(case)
  params, grads = make_params(), make_grads(2)
  want_u, want_s = run(tx, case, grads, params, 2)
  with jax.set_mesh(mesh):
    shard = lambda t: jax.tree.map(
      lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec)), t, SPECS
    )
    sparams = shard(params)
    sgrads = [shard(at(grads, i)) for i in range(2)]
    # Jitted only: eagerly, every primitive would compile again for each
    # sharding, and eager-vs-jit is checked unsharded above.
    s0 = tx.init(sparams)
    step = stepper(tx, case, jit=True)
    u1, s1 = step(sgrads[0], s0, sparams)
    u2, s2 = step(sgrads[1], s1, sparams)
    for s in (s1, s2):
      assert_same_types(s0, s)
    for u, g in ((u1, sgrads[0]), (u2, sgrads[1])):
      assert_same_types(u, g)
  chex.assert_trees_all_close([u1, u2], want_u, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(s2, want_s[-1], rtol=1e-5, atol=1e-6)


def quadratic():
  """An ill-conditioned quadratic (curvatures 1 to 1e3) and its minimum."""
  rng = np.random.default_rng(7)
  curv = _tree(lambda s: jnp.asarray(10 ** rng.uniform(0, 3, s), jnp.float32))
  target = _tree(lambda s: jnp.asarray(rng.uniform(-1, 1, s), jnp.float32))

  def loss(p):
    terms = jax.tree.map(lambda h, x, t: h * (x - t) ** 2, curv, p, target)
    return 0.5 * sum(jnp.sum(v) for v in jax.tree.leaves(terms))

  return loss, target


@CASES
def test_lax_scan_training_matches_loop_and_converges(case):
  """400 steps of Adam + the case inside lax.scan, on the quadratic.

  The scanned trajectory starts exactly as an eager Python loop does, and
  ends at the minimum.
  """
  loss, target = quadratic()
  tx = pipeline(case, learning_rate=0.02)
  params = jax.tree.map(jnp.zeros_like, target)
  n_loop = 3

  def body(carry, _):
    p, s = carry
    u, s = tx.update(jax.grad(loss)(p), s, p, **case.extra_args)
    p = optax.apply_updates(p, u)
    return (p, s), (p if n_loop else None)

  @jax.jit
  def train(params):
    (p, s), path = jax.lax.scan(body, (params, tx.init(params)), length=400)
    return p, s, jax.tree.map(lambda x: x[:n_loop], path)

  final, final_state, path = train(params)
  carry = (params, tx.init(params))
  for i in range(n_loop):
    carry, p = body(carry, None)
    chex.assert_trees_all_close(at(path, i), p, rtol=1e-5, atol=1e-6)
  assert_same_types(final_state, carry[1])
  maybe_skip(case, "converges")
  assert float(loss(final)) < 1e-3 * float(loss(params))
  chex.assert_trees_all_close(final, target, atol=0.05)


@CASES
def test_checkpoint_restore_is_bit_identical(case, tmp_path):
  """The whole state (statistics included) through Flax's serialisation and
  orbax's StandardCheckpointer; a run resumed from either continues
  bit-identically.

  For the grad-stage cases this is the strategy chained with Adam, so the
  adaptive clippers (autoclip, zclip, adagc, ...) resume bit-identically.
  """
  maybe_skip(case, "checkpoint")
  ocp = pytest.importorskip("orbax.checkpoint")
  tx = pipeline(case)
  params, grads = make_params(), make_grads(6)
  step = stepper(tx, case)

  def train(p, s, lo, hi):
    for i in range(lo, hi):
      u, s = step(at(grads, i), s, p)
      p = optax.apply_updates(p, u)
    return p, s

  p3, s3 = train(params, tx.init(params), 0, 3)
  want = train(p3, s3, 3, 6)
  blob = flax.serialization.to_bytes((p3, s3))
  restored = flax.serialization.from_bytes((params, tx.init(params)), blob)
  # from_bytes gives NumPy arrays; a training loop feeds them to jax.
  restored = jax.tree.map(jnp.asarray, restored)
  assert_same_types(restored, (p3, s3))
  got = train(*restored, 3, 6)
  chex.assert_trees_all_equal(got, want)

  ckpt = ocp.StandardCheckpointer()
  ckpt.save(tmp_path / "ckpt", {"params": p3, "opt_state": s3})
  ckpt.wait_until_finished()
  target = jax.eval_shape(
    lambda: {"params": params, "opt_state": tx.init(params)}
  )
  restored = ckpt.restore(tmp_path / "ckpt", target)
  ckpt.close()
  restored = (restored["params"], restored["opt_state"])
  assert_same_types(restored, (p3, s3))
  chex.assert_trees_all_equal(restored, (p3, s3))
  got = train(*restored, 3, 6)
  chex.assert_trees_all_equal(got, want)


# ---------------------------------------------------------------------------
# optaxclip.stats through every optax container
# ---------------------------------------------------------------------------


# optax.partition / masked labels: the case gets ``w`` and the list.
LABELS = {"w": "a", "b": "b", "layers": [{"kernel": "a"}], "s": "b"}


def containers(case: Case):
  """``{container name: transformation holding the case named PROBE}``."""
  tx = build(case, name=PROBE)
  out = {"alone": tx}
  if case.wrapper:
    opt = tx
  elif case.stage == "update":
    opt = optax.chain(optax.adam(0.05), tx)
  else:
    opt = optax.chain(tx, optax.adam(0.05))
  out["chain"] = opt
  if not case.wrapper:
    pair = [("clip", tx), ("opt", optax.adam(0.05))]
    out["named_chain"] = optax.named_chain(
      *(pair[::-1] if case.stage == "update" else pair)
    )
  inject = optax.inject_hyperparams(case.factory, static_args=case.static_args)
  args = (case.inner(),) if case.wrapper else ()
  out["inject_hyperparams"] = inject(*args, **case.kwargs, name=PROBE)
  mask = jax.tree.map(lambda lab: lab == "a", LABELS)
  out["masked"] = optax.masked(opt, mask)
  out["partition"] = optax.partition({"a": opt, "b": optax.sgd(0.1)}, LABELS)
  return out


@CASES
def test_stats_found_in_every_container(case):
  maybe_skip(case, "stats")
  params, grads = make_params(), make_grads(2)
  for where, tx in containers(case).items():
    if where == "inject_hyperparams" and "inject_hyperparams" in case.skip:
      continue
    _, states = run(tx, case, grads, params, 2)
    found = optaxclip.stats(states[-1])
    assert PROBE in found, (where, list(found))
    assert isinstance(found[PROBE], tuple(_stats._STATS_TYPES)), where
    assert int(found[PROBE].step) == 2, where
    # Traced states give the same names, in the same order.
    traced = jax.eval_shape(optaxclip.stats, states[-1])
    assert list(traced) == list(found), where
    assert types(traced) == types(found)


@CASES
def test_stats_names_deduplicated_in_traversal_order(case):
  maybe_skip(case, "stats")
  params, grads = make_params(), make_grads(1)
  tx = build(case, name=PROBE)
  _, (alone,) = run(tx, case, grads, params, 1)
  base = list(optaxclip.stats(alone))
  twice = optax.chain(tx, build(case, name=PROBE))
  _, (state,) = run(twice, case, grads, params, 1)
  names = list(optaxclip.stats(state))
  assert len(names) == 2 * len(base)
  assert names[0] == PROBE
  assert f"{PROBE}_1" in names
  assert names == list(optaxclip.stats(state))  # deterministic


class _Layer(nnx.Module):
  def __init__(self, kernel):
    self.kernel = nnx.Param(kernel)


class _Model(nnx.Module):
  """An NNX module whose ``nnx.state`` has the sample tree's paths."""

  def __init__(self, tree):
    self.w = nnx.Param(tree["w"])
    self.b = nnx.Param(tree["b"])
    self.layers = nnx.List([_Layer(tree["layers"][0]["kernel"])])
    self.s = nnx.Param(tree["s"])


@CASES
def test_stats_found_in_nnx_optimizer(case):
  maybe_skip(case, "stats")
  params, grads = make_params(), make_grads(2)
  model = _Model(params)
  assert _paths.leaf_paths(nnx.state(model, nnx.Param)) == _paths.leaf_paths(
    params
  )
  opt = nnx.Optimizer(model, pipeline(case, name=PROBE), wrt=nnx.Param)
  for i in range(2):
    opt.update(model, nnx.state(_Model(at(grads, i)), nnx.Param))
  found = optaxclip.stats(opt.opt_state)
  assert PROBE in found
  assert int(found[PROBE].step) == 2
  assert_stats_dtypes(opt.opt_state)


@CASES
def test_state_can_be_donated(case):
  # A state whose leaves share a buffer cannot be donated to a jitted step.
  tx = pipeline(case)
  params = make_params()
  state = tx.init(params)
  ptrs = [x.unsafe_buffer_pointer() for x in jax.tree.leaves(state)]
  assert len(ptrs) == len(set(ptrs)), "init returns leaves sharing a buffer"
  grads = jax.tree.map(jnp.ones_like, params)
  extra = dict(case.extra_args)

  @functools.partial(jax.jit, donate_argnums=(1,))
  def step(g, s, p):
    return tx.update(g, s, p, **extra)

  _, state = step(grads, state, params)
  _, state = step(grads, state, params)
  assert optaxclip.stats(state)
