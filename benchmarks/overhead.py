# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Step time and compile time of every strategy chained with Adam.

Each variant is one jit-compiled update step, gradients -> new parameters
(``tx.update`` then :func:`optax.apply_updates`, parameters and optimizer
state donated), timed side by side in one process: every round compiles
every variant afresh (lower + compile, caches cleared) and times a few steps
of it, and the order of the variants rotates from round to round, so that
the noise of a shared machine falls on all of them alike. The report gives
medians and ratios to Adam alone.

Variants:

* ``adam``: :func:`optax.adam` alone, the baseline;
* ``optaxclip.clip_by_global_norm`` and ``optax.clip_by_global_norm``, each
  chained before Adam;
* every entry of ``tests/conformance.py``'s ``REGISTRY`` (so every strategy
  that joins the conformance suite is benchmarked too): gradient-stage ones
  before Adam, update-stage ones after it, wrappers around it;
* every other public factory of ``optaxclip`` that returns a transformation
  when called without arguments (``monitor_norms``);
* ``floor:<name>`` for the strategies whose extra memory traffic has a
  known minimum (the global- and per-tensor-norm clippers and the
  element-wise ones), see :data:`FLOORS`; strategies with the same floor
  share one, named after the first of them;
* with ``--baseline REF``, ``base:<name>`` for every strategy variant: the
  same strategy from the package at git ``REF`` (``benchmarks/_baseline.py``),
  interleaved with the current code's, so that a refactor is compared with
  the code before it in the same rounds.

Run ``python benchmarks/overhead.py --help`` for the options; the README next
to this file gives the commands behind ``benchmarks/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib.util
import inspect
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optaxclip
from optaxclip import _norms
from optaxclip import _scaling

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _baseline
import _cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASELINE = "adam"
OURS = "optaxclip.clip_by_global_norm"
PROPAGATE = "optaxclip.clip_by_global_norm(nonfinite=propagate)"
LR = 1e-3


# ---------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
  """One transformation to time.

  Attributes:
    name: the name in the report and in ``--variants``.
    build: returns the whole transformation (Adam included).
    stage: ``"baseline"``, ``"grad"``, ``"update"``, ``"wrapper"`` or
      ``"floor"``.
    extra_args: extra keyword arguments of ``update`` (e.g. a loss).
    floor: name of the floor variant it is also compared against, if any.
  """

  name: str
  build: Callable[[], optax.GradientTransformation]
  stage: str = "grad"
  extra_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  floor: str | None = None


@dataclasses.dataclass(frozen=True)
class Floor:
  """The extra memory traffic a strategy cannot avoid, whatever its code.

  A floor is Adam plus a stand-in transformation that does exactly that
  traffic and nothing else (its updates are unchanged): no statistics, no
  non-finite policy, no hyperparameters. ``x floor`` near 1 means the
  strategy costs what its algorithm must; the floor's own ``x Adam`` is
  what any implementation of it would cost here.

  Attributes:
    states: full-size float32 state arrays per parameter, each read and
      written once per step as an EMA of the squared gradient (so it also
      reads the gradient once).
    passes: reductions that must finish before the updates can be written
      (each one reads the updates once more and then scales them by the
      factor it found), made with ``_core`` like the strategies themselves.
    params: whether each pass also reads the parameters.
    stage: where the stand-in goes: ``"grad"`` before Adam, ``"update"``
      after it.
    reduce: what a pass reduces to: ``"leaf"``, one value per tensor
      (``_norms.leaf_powers``); ``"global"``, one value for the whole tree
      (``_norms.global_power``), as a global-norm clipper needs.
    zero: whether a pass also zeroes the updates when its reduction is not
      finite, as the default ``nonfinite="zero"`` policy must: a select on
      every element, since a factor of 0 alone turns Inf into NaN.
  """

  states: int = 0
  passes: int = 0
  params: bool = False
  stage: str = "grad"
  reduce: str = "leaf"
  zero: bool = False


# What each strategy with a known floor must touch beyond Adam, whatever
# its implementation (see the README for the reasoning). Strategies missing
# here that keep full-size state get `Floor(states=k)` automatically.
FLOORS: dict[str, Floor] = {
  # A clipper that scales by the global norm must read every gradient once
  # before Adam reads it again: the floor of any two-pass global clip. The
  # norm-based adaptive strategies and the spike skip need the same norm.
  # optaxclip's strategies zero a non-finite step by default
  # (``nonfinite="zero"``), which costs a select on every element: that is
  # part of their floors (``zero=True``); a clip without the policy (optax's,
  # ours with ``nonfinite="propagate"``) has the plain pass as its floor.
  OURS: Floor(passes=1, reduce="global", zero=True),
  PROPAGATE: Floor(passes=1, reduce="global"),
  "optax.clip_by_global_norm": Floor(passes=1, reduce="global"),
  "autoclip": Floor(passes=1, reduce="global", zero=True),
  "zclip": Floor(passes=1, reduce="global", zero=True),
  "skip_on_spike": Floor(passes=1, reduce="global"),
  # Per-tensor norms: the same one pass, one factor per tensor.
  "clip_by_tensor_norm": Floor(passes=1, zero=True),
  "adagc": Floor(passes=1, zero=True),
  "optax.clip_by_block_rms": Floor(passes=1),
  # Per-layer norms: one pass too (a group's norm sums its leaves' powers).
  "clip_by_layer_rules": Floor(passes=1, zero=True),
  "clip_by_layer_group": Floor(passes=1, zero=True),
  # SPAM keeps its own EMA v of g^2 and decides element by element: one
  # full-size state read and written, in the same pass as the gradient read.
  "clip_spikes": Floor(states=1),
  # AdaClip needs each tensor's max |g| before it can clip, and AdaGN needs
  # the norm of the clipped tensor before it can scale: two passes.
  "stable_spam_clip": Floor(passes=2, zero=True),
  # Clippy needs, per tensor, a bound over (update, weight) pairs before it
  # can scale the update: one pass reading both, after Adam.
  "clippy": Floor(passes=1, params=True, stage="update", zero=True),
}


def _floor_transform(spec: Floor) -> optax.GradientTransformationExtraArgs:
  """The stand-in of a floor: ``spec``'s traffic, updates unchanged."""

  def init_fn(params):
    return tuple(
      jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.float32), params)
      for _ in range(spec.states)
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    new_state = tuple(
      jax.tree.map(
        lambda v, g: 0.999 * v + 0.001 * jnp.square(g.astype(jnp.float32)),
        s,
        updates,
      )
      for s in state
    )
    leaves, treedef = jax.tree.flatten(updates)
    weights = jax.tree.leaves(params) if spec.params else None
    for _ in range(spec.passes):
      if weights is None:
        probe = leaves
      else:
        probe = [jnp.abs(u) - 0.1 * jnp.abs(w) for u, w in zip(leaves, weights)]
      # A sum of squares reads the same bytes as any other norm, and is the
      # fastest reduction on the CPU backend (a max of |x| takes a slower
      # integer path, see `_xla.max_keeping_nan`). The factor is always 1
      # for finite updates, but only known at run time; it goes through
      # `_scaling.compute_once`, as in the strategies, or XLA copies the whole
      # sum of a global norm into every leaf's kernel (a 266 s compile at
      # 3000 leaves; README, finding 1).
      if spec.reduce == "global":
        powers = [_norms.global_power(probe, 2)]
      else:
        powers = _norms.leaf_powers(probe, 2)
      factors = _scaling.compute_once(
        *(jnp.isfinite(p).astype(jnp.float32) for p in powers)
      )
      if spec.reduce == "global":
        factors = factors * len(leaves)
      leaves = [x * f.astype(x.dtype) for x, f in zip(leaves, factors)]
      if spec.zero:
        leaves = [jnp.where(f > 0, x, 0) for x, f in zip(leaves, factors)]
    return jax.tree.unflatten(treedef, leaves), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


READ_ONCE = "floor:read-once"


def read_once_transform() -> optax.GradientTransformationExtraArgs:
  """The least a global-norm clip costs without a conditional.

  One sum of squares over every leaf (plain ``jnp``, no ``_core``), its
  finite-check factor (always 1 for finite updates, known only at run time)
  passed through ``jax.lax.optimization_barrier``, every leaf scaled by it:
  one extra read of the gradients and no conditional, which makes it the
  GPU floor of ``clip_by_global_norm``. On the CPU backend the barrier is
  removed before fusion, so XLA copies the sum into every leaf's kernel and
  compile time grows with leaves squared: use it at few leaves there.
  """

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    leaves, treedef = jax.tree.flatten(updates)
    total = sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves)
    factor = jax.lax.optimization_barrier(
      jnp.isfinite(total).astype(jnp.float32)
    )
    scaled = [x * factor.astype(x.dtype) for x in leaves]
    return jax.tree.unflatten(treedef, scaled), state

  return optax.GradientTransformationExtraArgs(
    lambda params: optax.EmptyState(), update_fn
  )


def read_once_variant() -> Variant:
  """Adam after :func:`read_once_transform`, named :data:`READ_ONCE`."""
  return Variant(
    READ_ONCE, lambda: optax.chain(read_once_transform(), _adam()), "floor"
  )


def _adam() -> optax.GradientTransformation:
  return optax.adam(LR)


def _load_registry() -> list[Any]:
  """``REGISTRY`` from ``tests/conformance.py`` (empty if unavailable)."""
  path = ROOT / "tests" / "conformance.py"
  if not path.exists():
    return []
  spec = importlib.util.spec_from_file_location("_oc_conformance", path)
  module = importlib.util.module_from_spec(spec)
  assert spec.loader is not None
  sys.modules[spec.name] = module  # dataclasses look their module up
  spec.loader.exec_module(module)
  return list(getattr(module, "REGISTRY", []))


def _from_case(case: Any, module: ModuleType = optaxclip) -> Variant | None:
  """The case's variant, its factory taken from ``module`` (None if absent)."""
  factory = _baseline.rebind(case.factory, module)
  if factory is None:
    return None
  case = dataclasses.replace(case, factory=factory)
  kwargs = dict(case.kwargs)
  stage = getattr(case, "stage", "grad")
  if getattr(case, "wrapper", False):
    build = lambda: case.factory(_adam(), **kwargs)
    stage = "wrapper"
  elif stage == "update":
    build = lambda: optax.chain(_adam(), case.factory(**kwargs))
  else:
    build = lambda: optax.chain(case.factory(**kwargs), _adam())
  return Variant(
    case.name, build, stage, dict(getattr(case, "extra_args", {}) or {})
  )


def _argless_factories(
  known: set[Any], module: ModuleType = optaxclip
) -> list[Variant]:
  """Public factories callable without arguments (e.g. monitor_norms)."""
  out = []
  for name in sorted(getattr(module, "__all__", ())):
    obj = getattr(module, name, None)
    if not inspect.isfunction(obj) or obj in known:
      continue
    try:
      sig = inspect.signature(obj)
    except (TypeError, ValueError):
      continue
    if any(
      p.default is inspect.Parameter.empty
      and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
      for p in sig.parameters.values()
    ):
      continue
    try:
      tx = obj()
    except Exception:
      continue
    if isinstance(tx, optax.GradientTransformation):
      out.append(Variant(name, lambda f=obj: optax.chain(f(), _adam()), "grad"))
  return out


def _full_size_states(build: Callable[[], Any]) -> int:
  """How many parameter-shaped arrays per parameter a transformation keeps.

  Counted on a probe tree of distinct, odd shapes, beyond Adam's two.
  """
  probe = {"w0": jnp.zeros((3, 5)), "w1": jnp.zeros(7), "w2": jnp.zeros(11)}
  shapes = {x.shape for x in probe.values()}

  def count(init) -> int:
    state = jax.eval_shape(init, probe)
    return sum(x.shape in shapes for x in jax.tree.leaves(state))

  try:
    extra = count(build().init) - count(_adam().init)
  except Exception:
    return 0  # it fails on the probe: timing will say why
  return max(0, round(extra / len(probe)))


def _strategy_variants(module: ModuleType = optaxclip) -> list[Variant]:
  """Adam alone, then every strategy of ``module`` chained with Adam."""
  out = [
    Variant(BASELINE, _adam, "baseline"),
    Variant(
      OURS,
      lambda: optax.chain(module.clip_by_global_norm(1.0), _adam()),
    ),
  ]
  if module is optaxclip:
    out.append(
      Variant(
        "optax.clip_by_global_norm",
        lambda: optax.chain(optax.clip_by_global_norm(1.0), _adam()),
      )
    )
  # The same clip without the default non-finite policy: the difference
  # to OURS is what zeroing a non-finite step costs (a select on every
  # element, since Inf * 0 is NaN), the difference to the floor is the
  # rest of the strategy (threshold, factor, statistics).
  out.append(
    Variant(
      PROPAGATE,
      lambda: optax.chain(
        module.clip_by_global_norm(1.0, nonfinite="propagate"), _adam()
      ),
    )
  )
  cases = _load_registry()
  names = {v.name for v in out}
  for case in cases:
    if case.name == "clip_by_global_norm":
      continue  # that is OURS
    v = _from_case(case, module)
    if v is not None and v.name not in names:
      out.append(v)
      names.add(v.name)
  known = {_baseline.rebind(c.factory, module) for c in cases}
  out += [v for v in _argless_factories(known, module) if v.name not in names]
  if module is optaxclip:
    # Optax's own per-tensor clip (by RMS rather than norm): what a plain
    # ``jax.tree.map`` implementation of per-tensor clipping costs.
    out.append(
      Variant(
        "optax.clip_by_block_rms",
        lambda: optax.chain(optax.clip_by_block_rms(1.0), _adam()),
      )
    )
  return out


def all_variants(base: ModuleType | None = None) -> list[Variant]:
  """Every variant, in report order; floors follow their strategy.

  Args:
    base: the package before a change (``_baseline.load``): adds its
      ``base:<name>`` variant after each strategy of the current package,
      compared against the same floor.
  """
  out = _strategy_variants()
  if base is not None:
    current = {v.name: i for i, v in enumerate(out)}
    olds = [v for v in _strategy_variants(base) if v.stage != "baseline"]
    for old in sorted(olds, key=lambda v: -current.get(v.name, len(out))):
      i = current.get(old.name, len(out) - 1)
      name = _baseline.PREFIX + old.name
      out.insert(i + 1, dataclasses.replace(old, name=name))
  result = []
  floors: dict[Floor, str] = {}  # strategies with one floor share it
  for v in out:
    if v.name.startswith(_baseline.PREFIX):
      # The floor of the same strategy now, already made (it precedes).
      name = v.name.removeprefix(_baseline.PREFIX)
      mine = next((r for r in result if r.name == name), None)
      result.append(dataclasses.replace(v, floor=mine and mine.floor))
      continue
    spec = FLOORS.get(v.name)
    if spec is None and v.stage not in ("baseline", "wrapper"):
      k = _full_size_states(v.build)
      spec = Floor(states=k) if k else None
    if spec is None:
      result.append(v)
      continue
    if spec in floors:
      result.append(dataclasses.replace(v, floor=floors[spec]))
      continue
    floor = floors[spec] = f"floor:{v.name}"
    result.append(dataclasses.replace(v, floor=floor))
    stand_in = _floor_transform(spec)
    if spec.stage == "update":
      build = lambda s=stand_in: optax.chain(_adam(), s)
    else:
      build = lambda s=stand_in: optax.chain(s, _adam())
    result.append(Variant(floor, build, "floor"))
  return result


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def leaf_shape(size: int, n_leaves: int) -> tuple[int, int]:
  """Shape of each leaf of :func:`make_params`."""
  per = max(1, size // n_leaves)
  cols = min(128, per)
  return max(1, per // cols), cols


def make_params(size: int, n_leaves: int) -> dict[str, jax.Array]:
  """About ``size`` float32 parameters in ``n_leaves`` 2-D leaves.

  Every leaf has the same shape ``(rows, cols)``, ``cols = min(128,
  size // n_leaves)``; names are ``w0000``, ``w0001``, ...
  """
  rows, cols = leaf_shape(size, n_leaves)
  rng = np.random.default_rng(0)
  return {
    f"w{i:04d}": jnp.asarray(
      rng.standard_normal((rows, cols), dtype=np.float32) * 0.02
    )
    for i in range(n_leaves)
  }


def _step_fn(tx: optax.GradientTransformation, extra_args: dict[str, Any]):
  def step(params, grads, state):
    updates, state = tx.update(grads, state, params, **extra_args)
    return optax.apply_updates(params, updates), state

  return step


@dataclasses.dataclass
class Samples:
  """Raw measurements of one variant in one configuration."""

  compile_s: list[float] = dataclasses.field(default_factory=list)
  compile_cpu_s: list[float] = dataclasses.field(default_factory=list)
  step_s: list[float] = dataclasses.field(default_factory=list)
  error: str | None = None
  # Per round (index -> value): compile time and median step time.
  round_compile_s: dict[int, float] = dataclasses.field(default_factory=dict)
  round_compile_cpu_s: dict[int, float] = dataclasses.field(
    default_factory=dict
  )
  round_step_s: dict[int, float] = dataclasses.field(default_factory=dict)
  # Instructions in the optimized HLO of the step (the same every round):
  # what the compiler's back end must turn into code, free of timing noise.
  program_ops: int | None = None


def _time_one(
  v: Variant,
  params,
  grads,
  steps: int,
  s: Samples,
  compiler_options: dict[str, Any] | None = None,
  round_: int = 0,
) -> None:
  tx = v.build()
  extra = {
    k: jnp.asarray(x, jnp.float32) if isinstance(x, float) else x
    for k, x in v.extra_args.items()
  }
  p = jax.tree.map(jnp.copy, params)
  # Copies: an init may share one array between fields (donated twice).
  state = jax.tree.map(jnp.copy, tx.init(p))
  jax.clear_caches()
  t0, c0 = time.perf_counter(), time.process_time()
  compiled = (
    jax.jit(_step_fn(tx, extra), donate_argnums=(0, 2))
    .lower(p, grads, state)
    .compile(compiler_options)
  )
  s.compile_s.append(time.perf_counter() - t0)
  s.compile_cpu_s.append(time.process_time() - c0)
  s.round_compile_s[round_] = s.compile_s[-1]
  s.round_compile_cpu_s[round_] = s.compile_cpu_s[-1]
  if s.program_ops is None:
    s.program_ops = program_ops(compiled.as_text())
  p, state = compiled(p, grads, state)  # warm-up
  jax.block_until_ready((p, state))
  for _ in range(steps):
    t0 = time.perf_counter()
    p, state = compiled(p, grads, state)
    jax.block_until_ready((p, state))
    s.step_s.append(time.perf_counter() - t0)
  s.round_step_s[round_] = statistics.median(s.step_s[-steps:])
  del compiled, p, state


def program_ops(hlo_text: str) -> int:
  """Instructions in an HLO module's text (lines that define a value)."""
  return sum(" = " in line for line in hlo_text.splitlines())


def run_config(
  size: int,
  n_leaves: int,
  variants: list[Variant],
  repeats: int,
  steps: int,
  log: Callable[[str], None],
  compiler_options: dict[str, Any] | None = None,
  deadline: float | None = None,
) -> dict[str, Samples]:
  """Times every variant ``repeats`` times, interleaved, rotating order.

  Past ``deadline`` (a ``time.monotonic()`` value) no variant starts: the
  rounds so far are kept, and a variant never timed reports an error.
  """
  params = make_params(size, n_leaves)
  grads = jax.tree.map(lambda p: p * 0.5, params)
  samples = {v.name: Samples() for v in variants}
  for r in range(repeats):
    k = r % len(variants)
    order = variants[k:] + variants[:k]
    for v in order:
      s = samples[v.name]
      if s.error:
        continue
      if deadline is not None and time.monotonic() > deadline:
        log(f"  time budget spent in round {r + 1}/{repeats}")
        for s in samples.values():
          if not s.compile_s and not s.error:
            s.error = "not run: time budget spent"
        return samples
      try:
        _time_one(v, params, grads, steps, s, compiler_options, r)
      except Exception as e:
        s.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
      gc.collect()
      if s.error:
        log(f"  round {r + 1}/{repeats} {v.name}: {s.error}")
      else:
        step_ms = 1e3 * statistics.median(s.step_s[-steps:])
        log(
          f"  round {r + 1}/{repeats} {v.name}: compile "
          f"{s.compile_s[-1]:.2f}s step {step_ms:.2f}ms"
        )
  return samples


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _median(xs: list[float]) -> float:
  return statistics.median(xs) if xs else math.nan


def round_ratios(
  a: dict[int, float], b: dict[int, float]
) -> list[float] | None:
  """``a[r] / b[r]`` for every round ``r`` both have (None if none)."""
  rounds = sorted(set(a) & set(b))
  return [a[r] / b[r] for r in rounds] or None


def _span(xs: list[float] | None) -> list[float] | None:
  return [min(xs), max(xs)] if xs else None


def summarize(
  variants: list[Variant], samples: dict[str, Samples]
) -> list[dict[str, Any]]:
  """One row per variant: medians and ratios to Adam (and to the floor).

  ``*_x_range`` is the lowest and highest of the per-round ratios (each
  round's value over Adam's in the same round): the noise band. A
  ``base:<name>`` row's ``*_x_current`` divides the current code's
  ``<name>`` by it (below 1: the current code is faster), medians and
  per-round ranges.
  """
  base = samples[BASELINE]
  b_step, b_comp = _median(base.step_s), _median(base.compile_s)
  b_cpu = _median(base.compile_cpu_s)
  rows = []
  for v in variants:
    s = samples[v.name]
    step, comp = _median(s.step_s), _median(s.compile_s)
    cpu = _median(s.compile_cpu_s)
    row = {
      "variant": v.name,
      "stage": v.stage,
      "step_ms": 1e3 * step,
      "step_x": step / b_step,
      "compile_s": comp,
      "compile_x": comp / b_comp,
      "compile_cpu_x": cpu / b_cpu,
      "floor": v.floor,
      "step_x_floor": None,
      "error": s.error,
    }
    if v.floor and samples.get(v.floor) and samples[v.floor].step_s:
      row["step_x_floor"] = step / _median(samples[v.floor].step_s)
    row["step_x_range"] = _span(round_ratios(s.round_step_s, base.round_step_s))
    row["compile_x_range"] = _span(
      round_ratios(s.round_compile_s, base.round_compile_s)
    )
    row["compile_cpu_x_range"] = _span(
      round_ratios(s.round_compile_cpu_s, base.round_compile_cpu_s)
    )
    row["program_ops"] = s.program_ops
    row["program_x"] = (
      s.program_ops / base.program_ops
      if s.program_ops and base.program_ops
      else None
    )
    now = samples.get(v.name.removeprefix(_baseline.PREFIX))
    if v.name.startswith(_baseline.PREFIX) and now and now.step_s and s.step_s:
      row["step_x_current"] = _median(now.step_s) / step
      row["compile_x_current"] = _median(now.compile_s) / comp
      row["compile_cpu_x_current"] = _median(now.compile_cpu_s) / cpu
      row["step_x_current_range"] = _span(
        round_ratios(now.round_step_s, s.round_step_s)
      )
      row["compile_x_current_range"] = _span(
        round_ratios(now.round_compile_s, s.round_compile_s)
      )
    rows.append(row)
  return rows


def _fmt(x: float | None, spec: str) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return ""
  return format(x, spec)


def fmt_range(span: list[float] | None, spec: str = ".2f") -> str:
  """``lo-hi`` of a ``*_range`` field ("" when absent)."""
  if not span:
    return ""
  return f"{format(span[0], spec)}-{format(span[1], spec)}"


def base_table(rows: list[dict[str, Any]]) -> list[str]:
  """Markdown lines comparing each strategy with its ``base:`` variant."""
  pairs = [r for r in rows if "step_x_current" in r]
  if not pairs:
    return []
  lines = [
    "",
    "Current code / baseline (below 1: the current code is faster); "
    "median ratio, then the lowest-highest of the per-round ratios:",
    "",
    "| strategy + Adam | step now / base | per round | compile now / base "
    "| per round | compile CPU time now / base |",
    "|---|--:|--:|--:|--:|--:|",
  ]
  for r in pairs:
    lines.append(
      f"| {r['variant'].removeprefix(_baseline.PREFIX)} "
      f"| {_fmt(r['step_x_current'], '.3f')} "
      f"| {fmt_range(r['step_x_current_range'], '.3f')} "
      f"| {_fmt(r['compile_x_current'], '.2f')} "
      f"| {fmt_range(r['compile_x_current_range'])} "
      f"| {_fmt(r.get('compile_cpu_x_current'), '.2f')} |"
    )
  return lines


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
  """The report as Markdown: one table per (size, leaves) configuration."""
  lines = [
    "# optaxclip overhead benchmark",
    "",
    f"`{meta['command']}`",
    "",
    f"{meta['date']}; jax {meta['jax']}, jaxlib {meta['jaxlib']}, optax "
    f"{meta['optax']}, {meta['backend']} ({meta['cpus']} CPUs, "
    f"{meta['machine']}); {meta['repeats']} interleaved rounds of (compile, "
    f"{meta['steps']} steps) per variant.",
    "",
    "XLA compiler options (every variant, Adam included): "
    + (
      ", ".join(f"`{k}={v}`" for k, v in meta["compiler_options"].items())
      if meta.get("compiler_options")
      else "none (XLA's defaults)."
    ),
    "",
    "Step and compile times are medians; `x Adam` divides by Adam alone's "
    "median measured in the same rounds; `x floor` divides an element-wise "
    "strategy's step by its floor (Adam plus its unavoidable extra traffic, "
    "see the README). Compile is `lower` + `compile` with caches cleared; "
    "`cpu x` is the same ratio in process CPU time (less sensitive to other "
    "load on the machine). `range`: the lowest and highest of the per-round "
    "ratios to Adam in the same round (the noise band). `HLO x`: the "
    "number of instructions in the optimized program over Adam's (no "
    "timing noise).",
  ]
  if meta.get("baseline"):
    lines += [
      "",
      f"`base:<name>`: the same strategy from the package at "
      f"`{meta['baseline']}`, loaded as `optaxclip_base`, interleaved with "
      "the current code's.",
    ]
  for res in results:
    lines += [
      "",
      f"## {res['size']:,} parameters in {res['leaves']:,} leaves of "
      f"{res['leaf_shape'][0]}x{res['leaf_shape'][1]}",
      "",
      "| variant | stage | step ms | x Adam | range | x floor | compile s "
      "| x Adam | range | cpu x | range | HLO x |",
      "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in res["rows"]:
      if r["error"]:
        lines.append(
          f"| {r['variant']} | {r['stage']} | error: {r['error']} "
          "| | | | | | | | | |"
        )
        continue
      lines.append(
        f"| {r['variant']} | {r['stage']} | {_fmt(r['step_ms'], '.2f')} "
        f"| {_fmt(r['step_x'], '.3f')} "
        f"| {fmt_range(r.get('step_x_range'), '.3f')} "
        f"| {_fmt(r['step_x_floor'], '.3f')} "
        f"| {_fmt(r['compile_s'], '.2f')} | {_fmt(r['compile_x'], '.2f')} "
        f"| {fmt_range(r.get('compile_x_range'))} "
        f"| {_fmt(r['compile_cpu_x'], '.2f')} "
        f"| {fmt_range(r.get('compile_cpu_x_range'))} "
        f"| {_fmt(r.get('program_x'), '.3f')} |"
      )
    lines += base_table(res["rows"])
  return "\n".join(lines) + "\n"


def _count(text: str) -> int:
  text = text.strip().lower().replace("_", "")
  scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:], 1)
  if scale != 1:
    text = text[:-1]
  return int(float(text) * scale)


def _ints(text: str) -> list[int]:
  return [_count(t) for t in text.split(",") if t.strip()]


def _option(text: str) -> tuple[str, bool | int | float | str]:
  """``KEY=VALUE`` as a compiler option; VALUE parsed as bool/int/float."""
  key, sep, value = text.partition("=")
  if not sep or not key.strip():
    raise SystemExit(f"--xla-option {text!r}: expected KEY=VALUE")
  low = value.strip().lower()
  if low in ("true", "false"):
    return key.strip(), low == "true"
  for kind in (int, float):
    try:
      return key.strip(), kind(low)
    except ValueError:
      pass
  return key.strip(), value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  ap = _cli.Parser(description=__doc__.split("\n\n")[0])
  ap.add_argument(
    "--sizes", default="20M", help="total parameter counts, e.g. 20M,192k"
  )
  ap.add_argument("--leaves", default="10,300,3000", help="leaf counts")
  ap.add_argument(
    "--variants",
    default="all",
    help="comma-separated variant names ('adam' and the floors of the "
    "element-wise ones are always added); 'list' prints them",
  )
  ap.add_argument(
    "--repeats", type=int, default=3, help="interleaved rounds per variant"
  )
  ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
  ap.add_argument(
    "--xla-option",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="an XLA compiler option for every variant's step (and Adam's), "
    "passed to `compile(compiler_options)`; repeatable, e.g. "
    "xla_cpu_copy_insertion_use_region_analysis=true",
  )
  ap.add_argument(
    "--quick",
    action="store_true",
    help="smoke test: 4k parameters in 4 leaves, 1 round of 2 steps",
  )
  ap.add_argument(
    "--baseline",
    metavar="REF",
    nargs="?",
    const=_baseline.DEFAULT_REF,
    default=None,
    help="also time every strategy from the package at git REF (default "
    f"{_baseline.DEFAULT_REF}, main before the core refactor) as "
    "base:<name>, interleaved with the current code's",
  )
  ap.add_argument(
    "--budget",
    type=float,
    default=None,
    metavar="SECONDS",
    help="start no variant after this many seconds (the rounds so far are "
    "reported)",
  )
  ap.add_argument(
    "--out",
    default=str(ROOT / "benchmarks" / "results" / "overhead"),
    help="output path without suffix: writes OUT.md and OUT.json",
  )
  args = ap.parse_args(argv)
  for flag in ("sizes", "leaves"):
    try:
      counts = _ints(getattr(args, flag))
    except ValueError:
      counts = []
    if not counts or min(counts) < 1:
      ap.error(f"--{flag} {getattr(args, flag)!r}: expected counts, e.g. 20M,3")
  if args.repeats < 1 or args.steps < 1:
    ap.error("--repeats and --steps must be at least 1")
  args.compiler_options = dict(_option(o) for o in args.xla_option)
  if args.quick:
    args.sizes, args.leaves, args.repeats, args.steps = "4k", "4", 1, 2
  return args


def select(variants: list[Variant], wanted: str) -> list[Variant]:
  """The variants named in ``wanted``, with Adam, their floors and bases."""
  if wanted == "all":
    return variants
  names = {n.strip() for n in wanted.split(",") if n.strip()}
  unknown = names - {v.name for v in variants}
  if unknown:
    raise SystemExit(
      f"unknown variant(s) {sorted(unknown)}; known: "
      f"{', '.join(v.name for v in variants)}"
    )
  names.add(BASELINE)
  names |= {_baseline.PREFIX + n for n in names}
  names |= {v.floor for v in variants if v.name in names and v.floor}
  return [v for v in variants if v.name in names]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
  args = parse_args(argv)

  def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

  sizes, leaf_counts = _ints(args.sizes), _ints(args.leaves)
  if args.variants == "list":
    for v in all_variants():
      print(f"{v.name:32s} {v.stage}")
    return []
  base = commit = None
  if args.baseline:
    base, commit = _baseline.load(args.baseline)
  variants = select(all_variants(base), args.variants)
  deadline = None if args.budget is None else time.monotonic() + args.budget
  results = []
  for size in sizes:
    for n in leaf_counts:
      shape = leaf_shape(size, n)
      log(f"{size:,} parameters in {n} leaves of {shape}")
      samples = run_config(
        size,
        n,
        variants,
        args.repeats,
        args.steps,
        log,
        args.compiler_options or None,
        deadline,
      )
      results.append(
        {
          "size": shape[0] * shape[1] * n,
          "leaves": n,
          "leaf_shape": list(shape),
          "rows": summarize(variants, samples),
          "samples": {k: dataclasses.asdict(s) for k, s in samples.items()},
        }
      )
  meta = {
    "command": "python benchmarks/overhead.py "
    + " ".join(sys.argv[1:] if argv is None else argv),
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    "jax": jax.__version__,
    "jaxlib": jax.lib.__version__
    if hasattr(jax.lib, "__version__")
    else jax.__version__,
    "optax": optax.__version__,
    "backend": jax.default_backend(),
    "cpus": os.cpu_count(),
    "machine": platform.machine(),
    "repeats": args.repeats,
    "steps": args.steps,
    "compiler_options": args.compiler_options,
    "baseline": f"{args.baseline} ({commit[:12]})" if commit else None,
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  md, js = out.parent / f"{out.name}.md", out.parent / f"{out.name}.json"
  md.write_text(markdown(results, meta))
  js.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
  log(f"wrote {md} and {js}")
  return results


if __name__ == "__main__":
  main()
