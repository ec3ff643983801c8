# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Exact norms inside ``jax.shard_map`` from explicit ``partition_specs``.

Issue 16, item 1: under ``shard_map(..., check_vma=False)`` every value's
varying set is empty, so a rule read from the types cannot tell a split leaf
from a replicated one. There, a strategy takes the layout from
``partition_specs=`` (the ``in_specs`` of the updates) and reduces each leaf
over exactly the axes its spec names; without it, it raises.

Before the fix, on jax 0.10.2 with 8 fake CPU devices: weights (64, 32) split
``P("x", None)``, bias (32,) replicated, ``rng = default_rng(0)`` standard
normals, ``clip_by_global_norm(1.0, axis_name="x")`` under
``check_vma=False`` with the type rule (its guard removed) reported 16.9004,
the norm of one device's shard plus the bias; the true norm is 45.5955, and
45.5955 is what ``partition_specs`` gives now.

Every strategy of ``test_shard_map_exact.STRATEGIES`` runs in one program per
layout against the single-device result; the unit-wise ones
(``adaptive_grad_clip``, ``max_norm_constraint``) see a split along the
dimension their units reduce over (``sharded``; ``w`` on ``"data"`` in
``mixed_2d``) and along the other one (``tensor_parallel``; ``w`` on
``"model"`` in ``mixed_2d``).
"""

import inspect

import jax
import pytest
from conformance import REGISTRY
from jax.sharding import PartitionSpec as P
from test_shard_map_exact import LAYOUTS
from test_shard_map_exact import STRATEGIES
from test_shard_map_exact import _tree
from test_shard_map_exact import assert_matches
from test_shard_map_exact import layout_case
from test_shard_map_exact import one_device
from test_shard_map_exact import put
from test_shard_map_exact import two_steps

import optaxclip


def test_every_strategy_with_axis_name_takes_partition_specs():
  factories = {c.factory for c in REGISTRY} | {
    optaxclip.monitor_norms,
    optaxclip.global_norm,
    optaxclip.clip_tree_by_global_norm,
  }
  with_axis_name = 0
  for f in factories:
    params = inspect.signature(f).parameters
    assert ("axis_name" in params) == ("partition_specs" in params), f
    if "partition_specs" in params:
      with_axis_name += 1
      kind = params["partition_specs"].kind
      assert kind == inspect.Parameter.KEYWORD_ONLY, f
      assert params["partition_specs"].default is None, f
      assert "PARTITION_SPECS" not in f.__doc__, f
      assert "UNIT_AXIS_NAME" not in f.__doc__, f
      assert "check_vma=False" in f.__doc__, f
  assert with_axis_name == len(STRATEGIES) + 2


def _run_all(layout, mesh, mesh2d, rng, check_vma):
  """Every strategy, two steps, in one shard_map program, with specs."""
  axes, mesh, specs, grads, params = layout_case(layout, mesh, mesh2d, rng)
  # A tree prefix is enough: the replicated layout passes one spec.
  given = P() if layout == "replicated" else specs
  names = list(STRATEGIES)

  def local(g0, g1, p):
    out = {}
    for name in names:
      u, s = two_steps(name, (g0, g1), p, axis_name=axes, partition_specs=given)
      # Each device's statistics, to check that all devices agree.
      out[name] = (u, jax.tree.map(lambda v: v[None], s))
    return out

  every_device = P(axes)
  with jax.set_mesh(mesh):
    got = jax.jit(
      jax.shard_map(
        local,
        in_specs=(specs, specs, specs),
        out_specs=dict.fromkeys(names, (specs, every_device)),
        check_vma=check_vma,
      )
    )(*(put(mesh, t, specs) for t in (*grads, params)))
  for name in names:
    want, want_stats = one_device(name, grads, params)
    assert_matches(*got[name], want, want_stats, err_msg=name)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_check_vma_false_with_specs_matches_one_device(
  layout, mesh, mesh2d, rng
):
  _run_all(layout, mesh, mesh2d, rng, check_vma=False)


def test_check_vma_true_with_specs_matches_one_device(mesh, mesh2d, rng):
  # The specs agree with the types (checked): the same results, unit-wise
  # included, on the layout with both kinds of split on two axes.
  _run_all("mixed_2d", mesh, mesh2d, rng, check_vma=True)


SPECS = {"w": P("x", None), "b": P()}


def _trace(mesh, rng, make, given, check_vma, entered=SPECS, params=False):
  """Traces ``make().update`` inside shard_map (in_specs ``entered``)."""
  g = _tree(rng, entered)

  def local(g):
    tx = make(axis_name="x", partition_specs=given)
    return tx.update(g, tx.init(g), g if params else None)[0]

  with jax.set_mesh(mesh):
    f = jax.shard_map(
      local, in_specs=(entered,), out_specs=entered, check_vma=check_vma
    )
    return jax.jit(f).trace(put(mesh, g, entered))


def _global(**kwargs):
  return optaxclip.clip_by_global_norm(1.0, **kwargs)


def _agc(**kwargs):
  return optaxclip.adaptive_grad_clip(0.1, **kwargs)


@pytest.mark.parametrize(
  "b_entered,b_said,said,typed",
  [(P("x"), P(), r"\[\]", r"\['x'\]"), (P(), P("x"), r"\['x'\]", r"\[\]")],
  ids=["split-said-replicated", "replicated-said-split"],
)
def test_specs_contradicting_the_types_raise(
  mesh, rng, b_entered, b_said, said, typed
):
  entered = {"w": P("x", None), "b": b_entered}
  given = {"w": P("x", None), "b": b_said}
  match = f"leaf 'b' split along {said} .* varies along {typed}"
  with pytest.raises(ValueError, match=match):
    _trace(mesh, rng, _global, given, check_vma=True, entered=entered)


def test_check_vma_false_without_specs_asks_for_them(mesh, rng):
  with pytest.raises(ValueError, match="check_vma=False needs partition_"):
    _trace(mesh, rng, _global, None, check_vma=False)


def test_unit_wise_split_leaf_without_specs_asks_for_them(mesh, rng):
  # check_vma=True: the types say that "w" is split, not along which dim.
  with pytest.raises(ValueError, match="Pass partition_specs="):
    _trace(mesh, rng, _agc, None, check_vma=True, params=True)


@pytest.mark.parametrize(
  "given,match",
  [
    ({"w": P("x", None)}, "not a tree prefix of the updates"),
    ({"w": P("x", None), "b": P(None, "x")}, "leaf 'b' the spec .* rank 1"),
    ({"w": P("y", None), "b": P()}, "leaf 'w' the spec .* names 'y'"),
    (
      {"w": P("x", None), "b": P(unreduced={"x"})},
      r"leaf 'b' is unreduced along \['x'\]",
    ),
  ],
  ids=["tree", "rank", "axis", "unreduced"],
)
@pytest.mark.parametrize("check_vma", [False, True])
def test_bad_specs_raise_naming_the_leaf(mesh, rng, given, match, check_vma):
  with pytest.raises(ValueError, match=match):
    _trace(mesh, rng, _global, given, check_vma=check_vma)


def test_specs_checked_when_made():
  with pytest.raises(ValueError, match="needs axis_name"):
    optaxclip.clip_by_global_norm(1.0, partition_specs=P())
  with pytest.raises(ValueError, match="at 'b' it has 'x'"):
    optaxclip.zclip(axis_name="x", partition_specs={"w": P(), "b": "x"})
  with pytest.raises(ValueError, match=r"at 'b' it has None .* P\(\)"):
    optaxclip.autoclip(axis_name="x", partition_specs={"w": P(), "b": None})
