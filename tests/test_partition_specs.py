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
import numpy as np
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
      u, s = two_steps(
        name, (g0, g1), p, axis_name=axes, partition_specs=given
      )
      # Each device's statistics, to check that all devices agree.
      out[name] = (u, jax.tree.map(lambda v: v[None], s))
    return out

  every_device = P(axes)
  with jax.set_mesh(mesh):
    got = jax.jit(
      jax.shard_map(
        local,
        in_specs=(specs, specs, specs),
        out_specs={n: (specs, every_device) for n in names},
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


@pytest.mark.parametrize("layout", ["tensor_parallel", "mixed_2d"])
def test_check_vma_true_with_specs_matches_one_device(
  layout, mesh, mesh2d, rng
):
  # The specs agree with the types: the same results, unit-wise included.
  _run_all(layout, mesh, mesh2d, rng, check_vma=True)
