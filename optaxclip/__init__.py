# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""optaxclip: gradient clipping for JAX, as composable Optax transformations."""

from optaxclip._adaptive import AdaGCState
from optaxclip._adaptive import AutoClipState
from optaxclip._adaptive import ZClipState
from optaxclip._adaptive import ZClipStats
from optaxclip._adaptive import adagc
from optaxclip._adaptive import autoclip
from optaxclip._adaptive import zclip
from optaxclip._diagnostics import CalibrationReport
from optaxclip._diagnostics import Finding
from optaxclip._diagnostics import MonitorState
from optaxclip._diagnostics import MonitorStats
from optaxclip._diagnostics import PathMap
from optaxclip._diagnostics import StatsHistory
from optaxclip._diagnostics import ThresholdSuggestion
from optaxclip._diagnostics import calibrate
from optaxclip._diagnostics import diagnose
from optaxclip._diagnostics import monitor_norms
from optaxclip._diagnostics import suggest_threshold
from optaxclip._functional import clip_tree_with_norm
from optaxclip._layer import clip_by_layer
from optaxclip._logging import flatten_stats
from optaxclip._norm_clipping import clip_by_block_rms
from optaxclip._norm_clipping import clip_by_global_norm
from optaxclip._norm_clipping import clip_by_tensor_norm
from optaxclip._norm_clipping import clip_by_value
from optaxclip._norm_clipping import clip_tree_by_global_norm
from optaxclip._norm_clipping import global_norm
from optaxclip._params import clip_params
from optaxclip._params import max_norm_constraint
from optaxclip._per_example import PerExampleClipState
from optaxclip._per_example import per_example_clip
from optaxclip._per_example import per_example_grads
from optaxclip._spikes import SpikeClipState
from optaxclip._spikes import SpikeSkipState
from optaxclip._spikes import SpikeSkipStats
from optaxclip._spikes import StableSpamState
from optaxclip._spikes import clip_spikes
from optaxclip._spikes import skip_on_spike
from optaxclip._spikes import stable_spam_clip
from optaxclip._stats import ClipState
from optaxclip._stats import ClipStats
from optaxclip._stats import stats
from optaxclip._unitwise import adaptive_grad_clip
from optaxclip._update_clipping import ClippyState
from optaxclip._update_clipping import clippy
from optaxclip._wrappers import SkipState
from optaxclip._wrappers import SkipStats
from optaxclip._wrappers import skip_nonfinite

__version__ = "0.1.0"

__all__ = (
  "AdaGCState",
  "AutoClipState",
  "CalibrationReport",
  "ClipState",
  "ClipStats",
  "ClippyState",
  "Finding",
  "MonitorState",
  "MonitorStats",
  "PathMap",
  "PerExampleClipState",
  "SkipState",
  "SkipStats",
  "SpikeClipState",
  "SpikeSkipState",
  "SpikeSkipStats",
  "StableSpamState",
  "StatsHistory",
  "ThresholdSuggestion",
  "ZClipState",
  "ZClipStats",
  "adagc",
  "adaptive_grad_clip",
  "autoclip",
  "calibrate",
  "clip_by_block_rms",
  "clip_by_global_norm",
  "clip_by_layer",
  "clip_by_tensor_norm",
  "clip_by_value",
  "clip_params",
  "clip_spikes",
  "clip_tree_by_global_norm",
  "clip_tree_with_norm",
  "clippy",
  "diagnose",
  "flatten_stats",
  "global_norm",
  "max_norm_constraint",
  "monitor_norms",
  "per_example_clip",
  "per_example_grads",
  "skip_nonfinite",
  "skip_on_spike",
  "stable_spam_clip",
  "stats",
  "suggest_threshold",
  "zclip",
)
