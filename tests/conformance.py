# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The registry of every public strategy, run through the same checks.

Every strategy must appear in ``REGISTRY``. ``tests/test_conformance.py``
runs each entry through the shared checks (jit without recompiling,
inject_hyperparams, MultiSteps, lax.scan, dtypes, extra args, params,
zero gradients, map_params, state stability eager/jit and on 8 sharded
devices, convergence with Adam, checkpoint round trips, and
``optaxclip.stats`` inside every optax container and ``nnx.Optimizer``).
A check that cannot hold for a strategy is listed in ``Case.skip`` with
the reason.

``per_example_clip`` is not in the registry: it removes a leading batch
axis, so none of the shape-preserving checks apply to it (it is tested in
``tests/test_per_example.py``, its checkpoints in
``tests/test_checkpoints.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

import optaxclip


@dataclasses.dataclass(frozen=True)
class Case:
  """One strategy with sample arguments.

  Attributes:
    name: test id.
    factory: the public factory.
    kwargs: sample arguments (numeric ones are injected as hyperparameters).
    static_args: names passed to ``inject_hyperparams`` as static.
    needs_params: whether ``update`` needs ``params``.
    wrapper: whether the factory wraps an inner transformation (passed as
      the first positional argument, built by ``inner``).
    inner: builds the inner transformation of a wrapper.
    stage: ``"grad"`` (before the optimizer) or ``"update"`` (after it, like
      clippy and the parameter constraints).
    extra_args: extra keyword arguments ``update`` needs (e.g. a loss).
    skip: ``{check: reason}`` for the conformance checks that cannot hold
      for this strategy; the check names are ``test_conformance.CHECKS``.
      Every entry is reported as a skipped test with its reason.
  """

  name: str
  factory: Callable[..., Any]
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  static_args: tuple[str, ...] = ()
  needs_params: bool = False
  wrapper: bool = False
  inner: Callable[[], Any] | None = None
  stage: str = "grad"
  extra_args: dict[str, Any] = dataclasses.field(default_factory=dict)
  skip: dict[str, str] = dataclasses.field(default_factory=dict)


# The wrappers' inner Adam: an eps that float16 can hold. With the default
# 1e-8 (0 in float16) Adam's float16 update is 0/0 = NaN wherever the second
# moment underflows, so a checking wrapper would skip every step and the
# dtype checks would see only zeros.
ADAM_EPS = 1e-3


REGISTRY: list[Case] = [
  Case("clip_by_value", optaxclip.clip_by_value, {"max_delta": 0.5}),
  Case(
    "clip_by_global_norm",
    optaxclip.clip_by_global_norm,
    {"max_norm": 1.0},
    static_args=("ord", "nonfinite"),
  ),
  Case(
    "clip_by_global_norm_l1",
    optaxclip.clip_by_global_norm,
    {"max_norm": 1.0, "ord": 1},
    static_args=("ord",),
  ),
  Case(
    "clip_by_tensor_norm",
    optaxclip.clip_by_tensor_norm,
    {"max_norm": 0.5},
  ),
  Case(
    "clip_by_layer_rules",
    optaxclip.clip_by_layer,
    {"thresholds": {"w*": 0.5}, "default": 1.0},
    static_args=("thresholds",),
  ),
  Case(
    "clip_by_layer_group",
    optaxclip.clip_by_layer,
    {"thresholds": {"w*": 0.5}, "default": 1.0, "strategy": "group_norm"},
    static_args=("thresholds", "strategy"),
  ),
  Case("clip_by_block_rms", optaxclip.clip_by_block_rms, {"threshold": 0.1}),
  Case(
    "adaptive_grad_clip",
    optaxclip.adaptive_grad_clip,
    {"clipping": 0.1},
    needs_params=True,
  ),
  Case(
    "clip_params",
    optaxclip.clip_params,
    {"min_value": -2.0, "max_value": 2.0},
    needs_params=True,
    stage="update",
  ),
  Case(
    "max_norm_constraint",
    optaxclip.max_norm_constraint,
    {"max_norm": 3.0},
    needs_params=True,
    stage="update",
  ),
  Case(
    "skip_nonfinite",
    optaxclip.skip_nonfinite,
    {},
    static_args=("check_updates",),
    wrapper=True,
    inner=lambda: optax.adam(1e-2, eps=ADAM_EPS),
  ),
  Case(
    "clip_spikes",
    optaxclip.clip_spikes,
    {"threshold": 50.0, "beta2": 0.99, "warmup_steps": 1},
  ),
  Case("stable_spam_clip", optaxclip.stable_spam_clip, {"gamma1": 0.7}),
  Case(
    "clippy",
    optaxclip.clippy,
    {"relative": 0.1, "absolute": 1e-3},
    needs_params=True,
    stage="update",
  ),
  Case(
    "skip_on_spike",
    optaxclip.skip_on_spike,
    {"window": 8, "min_history": 3, "sigma_factor": 6.0},
    static_args=(
      "window",
      "min_history",
      "watch",
      "max_consecutive_skips",
      "check_updates",
    ),
    wrapper=True,
    inner=lambda: optax.adam(1e-2, eps=ADAM_EPS),
    extra_args={"loss": 1.0},
  ),
  Case("autoclip", optaxclip.autoclip, {"percentile": 10.0}),
  Case(
    "autoclip_window",
    optaxclip.autoclip,
    {"percentile": 10.0, "window": 4},
    static_args=("window",),
  ),
  Case(
    "zclip",
    optaxclip.zclip,
    {"warmup_steps": 2, "z_thresh": 1.0, "max_grad_norm": 2.0},
    static_args=("warmup_steps",),
  ),
  Case(
    "zclip_percentile_uncapped",
    optaxclip.zclip,
    {
      "warmup_steps": 2,
      "mode": "percentile",
      "max_grad_norm": None,
      "skip_update_on_spike": True,
    },
    static_args=("warmup_steps",),
  ),
  Case("adagc", optaxclip.adagc, {"warmup_steps": 2}),
  Case(
    "monitor_norms",
    optaxclip.monitor_norms,
    {"by": "layer", "ema": 0.9},
    static_args=("by",),
    skip={
      "map_params": "its per-path statistics are tree structure (PathMap), "
      "and map_params initialises with a leafless placeholder; use "
      "jax.eval_shape(tx.init, params) for sharding specs instead",
    },
  ),
]
