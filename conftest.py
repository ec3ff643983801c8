# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Test-session set-up shared by tests/ and the doctests in optaxclip/.

This file is imported by pytest before any test module, hence before jax:
it gives the whole session 8 fake CPU devices (for the sharding checks) and
registers the hypothesis profiles.
"""

import os

_DEVICES = "--xla_force_host_platform_device_count=8"
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = f"{_flags} {_DEVICES}".strip()
# The fake devices are CPU devices: keep jax on the CPU unless told otherwise.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hypothesis  # noqa: E402

# "ci" (the default): few examples, no deadline (the first example of a test
# compiles). "dev": more examples, for a thorough local run:
# `HYPOTHESIS_PROFILE=dev pytest tests/test_norm_clipping.py`.
hypothesis.settings.register_profile(
  "ci",
  max_examples=12,
  deadline=None,
  derandomize=True,
  print_blob=True,
  suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.register_profile(
  "dev", max_examples=200, deadline=None, print_blob=True
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
