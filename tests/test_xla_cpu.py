# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""What the CPU forms of ``optaxclip._xla`` do to the CPU-compiled program.

These tests read the optimised HLO that XLA's CPU backend produces and pin
the effect of each CPU workaround (see ``optaxclip/_xla.py`` and the
findings of ``benchmarks/README.md``): the program grows linearly with the
number of leaves, no kernel reads one scalar per leaf, equal-shaped leaves
share their kernels, the statistics come out of one kernel, and a skip
wrapper copies no donated state. They say nothing about other platforms,
whose programs differ by design, and are skipped there;
``tests/test_lowering.py`` checks what GPU and TPU programs contain, and the
behavioural tests run everywhere.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import optax
import pytest
from conformance import REGISTRY
from conformance import Case
from test_conformance import CASES
from test_conformance import pipeline

import optaxclip
from optaxclip import _norms

pytestmark = pytest.mark.skipif(
  jax.default_backend() != "cpu",
  reason="reads the program compiled by XLA's CPU backend",
)


def _compiled_text(case: Case, n_leaves: int) -> str:
  """The optimised HLO of one jitted update, ``n_leaves`` leaves."""
  return _compiled_text_of(case.name, n_leaves)


@functools.cache
def _compiled_text_of(name: str, n_leaves: int) -> str:
  (case,) = [c for c in REGISTRY if c.name == name]
  # 65,792 elements: above `_xla._SMALL_LEAF`, so no leaf is bucketed.
  leaf = jax.ShapeDtypeStruct((257, 256), jnp.float32)
  params = {f"w{i:03d}": leaf for i in range(n_leaves)}
  tx = pipeline(case)
  extra = dict(case.extra_args)

  def step(g, s, p):
    return tx.update(g, s, p, **extra)

  state = jax.eval_shape(tx.init, params)
  return jax.jit(step).lower(params, state, params).compile().as_text()


def _compiled_lines(case: Case, n_leaves: int) -> int:
  """Lines of the optimised HLO of one jitted update, ``n_leaves`` leaves."""
  return _compiled_text(case, n_leaves).count("\n")


@CASES
def test_compiled_program_grows_linearly_with_leaves(case):
  # A factor or keep mask computed from every leaf's norm, left for XLA to
  # copy into each leaf's kernels, makes the program (and compile time)
  # quadratic in the number of leaves: adagc + Adam compiled 57x slower
  # than Adam at 300 leaves. `_xla.compute_once` computes it once; 3x the
  # leaves must give at most 3x the program (it gave 4.3-4.8x for the
  # per-leaf clippers before).
  ratio = _compiled_lines(case, 48) / _compiled_lines(case, 16)
  assert ratio <= 3.0, f"{case.name}: 48 vs 16 leaves gives {ratio:.2f}x HLO"


def _kernels_reading_scalars(text: str, limit: int) -> dict[str, int]:
  """Fusions of the entry computation reading more than ``limit`` scalars."""
  entry = text[text.index("\nENTRY") :]
  shapes = dict(re.findall(r"%([\w.\-]+) = (\S+) ", entry))
  wide = {}
  for name, operands in re.findall(
    r"%([\w.\-]+) = \S+ fusion\((.*?)\), kind=", entry
  ):
    scalars = [
      o
      for o in re.findall(r"%([\w.\-]+)", operands)
      if re.fullmatch(r"\w+\[\]", shapes.get(o, ""))
    ]
    if len(scalars) > limit:
      wide[name] = len(scalars)
  return wide


@CASES
def test_no_kernel_reads_every_leafs_scalar(case):
  # A statistic computed from a stack of per-leaf norms: XLA fuses the
  # stacking into the kernel that reads the vector, so that kernel reads one
  # scalar per leaf, and compiling it takes seconds at thousands of leaves
  # (monitor_norms + Adam at 3000 leaves: 39.6 s, 24.4 s with the vector
  # built once by `_xla.stack_once`; Adam alone 19.6 s).
  wide = _kernels_reading_scalars(_compiled_text(case, 48), 32)
  assert not wide, f"{case.name}: kernels reading many scalars: {wide}"


def test_kernels_reading_scalars_finds_a_wide_kernel():
  # The detector itself: a sum of 48 scalar reductions, left to XLA, is one
  # kernel reading 48 scalars.
  leaves = [jnp.ones((257, 256), jnp.float32) for _ in range(48)]

  def total(xs):
    return jnp.sum(jnp.stack([jnp.sum(x) for x in xs]))

  text = jax.jit(total).lower(leaves).compile().as_text()
  assert list(_kernels_reading_scalars(text, 32).values()) == [48]

  def total_once(xs):
    return jnp.sum(_norms.stack_scalars([jnp.sum(x) for x in xs]))

  text = jax.jit(total_once).lower(leaves).compile().as_text()
  assert not _kernels_reading_scalars(text, 32)


def _leaf_kernels(case: Case, n_leaves: int) -> int:
  """Distinct kernels that read or write a whole leaf, ``n_leaves`` leaves."""
  text = _compiled_text(case, n_leaves)
  bodies = set()
  for block in text.split("\n\n"):
    header = block.split("\n")[0]
    if not re.match(r"%(fused_computation|wrapped_)", header):
      continue
    if "[257,256]" not in header:
      continue
    body = re.sub(r", metadata=\{[^}]*\}", "", block)
    body = re.sub(r"%[\w.\-]+|param_[\d.]+", "%", body)
    bodies.add(body)
  return len(bodies)


@CASES
def test_equal_shaped_leaves_share_kernels(case):
  # XLA compiles a kernel once for all fusions with the same body. A leaf
  # kernel that slices element i of a per-leaf factor vector is a different
  # body for every leaf: clip_by_tensor_norm + Adam at 300 leaves then took
  # 11.6 s to compile against 4.4 s with scalar operands (Adam alone 1.2 s).
  # 24 equal leaves may add a kernel or two (a second group or bucket), not
  # one per leaf.
  grown = _leaf_kernels(case, 24) - _leaf_kernels(case, 8)
  assert grown <= 3, f"{case.name}: 16 more leaves gave {grown} more kernels"


def test_next_stats_computes_the_statistics_in_one_kernel():
  # Each statistic written by a kernel of its own cost compile time (about
  # 5-10 ms per scalar kernel on XLA's CPU backend): clip_by_global_norm's
  # statistics, factor and keep mask come out of one multi-output fusion,
  # and no other scalar kernel is left besides the norm's reductions.
  leaf = jax.ShapeDtypeStruct((257, 256), jnp.float32)
  params = {f"w{i}": leaf for i in range(3)}
  tx = optaxclip.clip_by_global_norm(1.0)
  state = jax.eval_shape(tx.init, params)
  text = jax.jit(tx.update).lower(params, state).compile().as_text()
  entry = text[text.index("ENTRY") :]
  scalar_kernels = re.findall(r"= \w+\[\] fusion\(.*kind=kLoop", entry)
  # (7 statistics, the scale being the factor, + mask) = 8 scalars
  tuples = re.findall(r"= \(([^)]*)\) fusion\(", entry)
  packed = [t for t in tuples if t.count("[]") == 8]
  assert len(packed) == 1, entry
  assert not scalar_kernels, scalar_kernels
  assert "conditional(" not in entry


@pytest.mark.parametrize("check_updates", [True, False])
def test_donated_state_is_not_copied(check_updates):
  # The property behind the wrappers' speed (benchmarks/README.md, finding
  # 3): with parameters and state donated, the compiled step copies no
  # parameter-sized array and has no conditional around the inner step.
  params = {"w": jnp.ones((256, 128)), "v": jnp.ones((256, 128))}
  tx = optaxclip.skip_nonfinite(optax.adam(1e-3), check_updates=check_updates)

  def step(p, g, s):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  hlo = (
    jax.jit(step, donate_argnums=(0, 2))
    .lower(params, params, tx.init(params))
    .compile()
    .as_text()
  )
  body = hlo[hlo.index("ENTRY") :]
  big = r"f32\[256,128\]"
  assert not re.search(rf"= {big}\S* copy\(", body)
  assert not re.search(rf"= \([^)]*{big}[^)]*\) conditional\(", body)
