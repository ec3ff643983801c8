# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Fixtures shared by the test modules.

The 8 fake CPU devices and the hypothesis profiles are set up by the
repository's root ``conftest.py``, which runs before jax is imported.
"""

from __future__ import annotations

import zlib

import jax
import numpy as np
import pytest

N_DEVICES = 8

# A worker of the two-process test (test_multihost.py) sets XLA_FLAGS and the
# CPU collectives when it is imported; it runs only as a subprocess, so the
# doctest collection must not import it into the test session.
collect_ignore = ["multihost_worker.py"]


@pytest.fixture(scope="session")
def mesh():
  """A 1-D mesh of the 8 fake CPU devices with an explicit axis ``x``."""
  if len(jax.devices()) < N_DEVICES:
    pytest.skip(f"needs {N_DEVICES} devices; see the root conftest.py")
  return jax.make_mesh(
    (N_DEVICES,), ("x",), axis_types=(jax.sharding.AxisType.Explicit,)
  )


@pytest.fixture(scope="session")
def mesh2d():
  """A 4 x 2 mesh with explicit axes ``data`` and ``model``."""
  if len(jax.devices()) < N_DEVICES:
    pytest.skip(f"needs {N_DEVICES} devices; see the root conftest.py")
  return jax.make_mesh(
    (4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Explicit,) * 2
  )


@pytest.fixture
def rng(request):
  """A NumPy generator seeded from the test's id (stable across runs)."""
  seed = zlib.crc32(request.node.nodeid.encode())
  return np.random.default_rng(seed)
