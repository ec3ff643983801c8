# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""What the two-process test runs, shared by the worker and the reference."""

import jax
import numpy as np
import optax
from conformance import REGISTRY
from jax.sharding import PartitionSpec as P

import optaxclip

STEPS = 3

# Sharded along different axes per leaf, some leaves replicated.
SPECS = {
  "w": P("x", None),
  "b": P(),
  "layers": [{"kernel": P(None, "x")}],
  "s": P(),
}


def inputs():
  """Parameters and STEPS stacked gradient trees (NumPy float32)."""
  rng = np.random.default_rng(0)
  shapes = {"w": (8, 4), "b": (4,), "layers": [{"kernel": (2, 8)}], "s": ()}
  is_shape = lambda s: isinstance(s, tuple)
  params = jax.tree.map(
    lambda s: rng.uniform(-1, 1, s).astype(np.float32), shapes, is_leaf=is_shape
  )
  grads = jax.tree.map(
    lambda s: (3 * rng.standard_normal((STEPS, *s))).astype(np.float32),
    shapes,
    is_leaf=is_shape,
  )
  return params, grads


def cases():
  """Every registry strategy except the element-wise value clipper."""
  return [c for c in REGISTRY if c.name != "clip_by_value"]


def pipeline(case):
  if case.wrapper:
    return case.factory(case.inner(), **case.kwargs)
  tx = case.factory(**case.kwargs)
  if case.stage == "update":
    return optax.chain(optax.adam(0.05), tx)
  return optax.chain(tx, optax.adam(0.05))


def run(case, params, grads):
  """STEPS jitted steps; returns (params, last updates, statistics)."""
  tx = pipeline(case)

  @jax.jit
  def train(params, grads):
    def body(carry, g):
      p, s = carry
      u, s = tx.update(g, s, p, **case.extra_args)
      return (optax.apply_updates(p, u), s), u

    (p, s), us = jax.lax.scan(body, (params, tx.init(params)), grads)
    return p, jax.tree.map(lambda u: u[-1], us), optaxclip.stats(s)

  return train(params, grads)


def flat(prefix, tree):
  """``{prefix/path: array}`` of every leaf."""
  return {
    prefix + jax.tree_util.keystr(k): np.asarray(v)
    for k, v in jax.tree.leaves_with_path(tree)
  }
