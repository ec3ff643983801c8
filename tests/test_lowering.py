# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""What GPU and TPU programs contain: no conditional decided at run time.

Every strategy of the conformance registry, chained with Adam, is lowered
for ``cuda`` and ``tpu`` with :func:`jax.export.export` (which needs no
such device) and its StableHLO is searched for ``stablehlo.case`` and
``stablehlo.if`` operations whose branch index or predicate is computed
at run time. On a GPU such a conditional costs a copy of the index to the
host and a wait before the branch is chosen. The compiler workarounds of
``optaxclip._xla`` that use conditionals are CPU-only; the cases that
``jax.lax.platform_dependent`` emits on a constant index are folded by XLA
and do not count. ``nonfinite="error"`` keeps one conditional around its
error callback (it runs only on a bad step) and is not checked here.
"""

from __future__ import annotations

import functools
import inspect
import re

import jax
import jax.numpy as jnp
import optax
import pytest
from conformance import REGISTRY
from conformance import Case
from jax._src.interpreters import mlir
from jax._src.lib.mlir import ir

_CONDITIONALS = ("stablehlo.case", "stablehlo.if")

# 40 leaves (more than 32, so that the paths for many per-leaf scalars are
# taken) of four shapes: small (bucketed), mid-sized of one shape (reduced
# together), large, and scalars.
_SHAPES = [(8, 4), (64, 96), (257, 256), ()]


def _tree(n_leaves: int) -> dict[str, jax.ShapeDtypeStruct]:
  return {
    f"w{i:03d}": jax.ShapeDtypeStruct(_SHAPES[i % 4], jnp.float32)
    for i in range(n_leaves)
  }


def _is_static(value: ir.Value) -> bool:
  """Whether a value is known before the program runs (a constant).

  ``platform_dependent`` lowers its platform index to a constant, remapped
  through a ``stablehlo.case`` on that constant whose branches return
  constants.
  """
  owner = value.owner
  if isinstance(owner, ir.Block):  # a block (function) argument
    return False
  if owner.name == "stablehlo.constant":
    return True
  if owner.name == "stablehlo.case" and _is_static(owner.operands[0]):
    returns = [
      op for r in owner.regions for b in r.blocks for op in b.operations
    ]
    return all(
      op.name == "stablehlo.return" and all(map(_is_static, op.operands))
      for op in returns
    )
  return False


def _where(op) -> str:
  """The name stack of an operation's location (e.g. ``jit(step)/cond``)."""
  names = re.findall(r'loc\("([^"]+)"', str(op.location))
  return next((n for n in names if "/" in n), names[0] if names else "?")


def runtime_conditionals(module_text: str) -> list[str]:
  """Conditionals of a StableHLO module whose index is computed at run time.

  A ``stablehlo.case`` with a single branch is not a choice and does not
  count either.
  """
  found = []

  def walk(op: ir.Operation) -> None:
    for region in op.regions:
      for block in region.blocks:
        for inner in block.operations:
          if (
            inner.name in _CONDITIONALS
            and len(inner.regions) > 1
            and not _is_static(inner.operands[0])
          ):
            found.append(_where(inner))
          walk(inner.operation)

  with mlir.make_ir_context():
    walk(ir.Module.parse(module_text).operation)
  return found


def _accepts(case: Case, arg: str) -> bool:
  return arg in inspect.signature(case.factory).parameters


def _optimizer(case: Case, nonfinite: str):
  kwargs = dict(case.kwargs)
  if _accepts(case, "nonfinite"):
    kwargs["nonfinite"] = nonfinite
  if case.wrapper:
    return case.factory(case.inner(), **kwargs)
  tx = case.factory(**kwargs)
  if case.stage == "update":
    return optax.chain(optax.adam(1e-3), tx)
  return optax.chain(tx, optax.adam(1e-3))


@functools.cache
def lowered_text(name: str, platform: str, n_leaves: int, nonfinite: str):
  """StableHLO of one update of the case + Adam, exported for ``platform``."""
  (case,) = [c for c in REGISTRY if c.name == name]
  tx = _optimizer(case, nonfinite)
  params = _tree(n_leaves)
  extra = dict(case.extra_args)

  def step(g, s, p):
    return tx.update(g, s, p, **extra)

  state = jax.eval_shape(tx.init, params)
  exported = jax.export.export(jax.jit(step), platforms=[platform])
  return exported(params, state, params).mlir_module()


@pytest.mark.parametrize("nonfinite", ["zero", "propagate"])
@pytest.mark.parametrize("n_leaves", [4, 40])
@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("case", REGISTRY, ids=lambda c: c.name)
def test_no_runtime_conditionals_on_accelerators(
  case, platform, n_leaves, nonfinite
):
  if nonfinite != "zero" and not _accepts(case, "nonfinite"):
    pytest.skip(f"{case.name} has no nonfinite policy")
  text = lowered_text(case.name, platform, n_leaves, nonfinite)
  found = runtime_conditionals(text)
  assert not found, (
    f"{case.name} + Adam on {platform} ({n_leaves} leaves, nonfinite="
    f"{nonfinite!r}): {len(found)} run-time conditional(s) at {found}"
  )


def test_detector_tells_runtime_from_platform_conditionals():
  # A conditional on a computed predicate counts; the constant-index cases
  # of platform_dependent do not.
  x = jax.ShapeDtypeStruct((3,), jnp.float32)

  def runtime(v):
    return jax.lax.cond(v[0] > 0, lambda: v, lambda: -v)

  def per_platform(v):
    return jax.lax.platform_dependent(v, cpu=jnp.sin, default=jnp.cos)

  def export(f, platform):
    return jax.export.export(jax.jit(f), platforms=[platform])(x).mlir_module()

  for platform in ("cuda", "tpu", "cpu"):
    assert len(runtime_conditionals(export(runtime, platform))) == 1
    assert not runtime_conditionals(export(per_platform, platform))
  # Lowered for several platforms at once, the platform is an argument.
  both = jax.export.export(jax.jit(per_platform), platforms=["cpu", "cuda"])
  assert runtime_conditionals(both(x).mlir_module())
