# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""One process of the two-process test in ``test_multihost.py``.

Usage: ``python multihost_worker.py PORT PROCESS_ID OUT.npz``. Each process
has 4 fake CPU devices; ``jax.distributed.initialize`` joins them into one
8-device system (gloo collectives). Every strategy of the conformance
registry, in its pipeline with Adam, takes 3 jitted steps on a global mesh
of 8 devices, on parameters and gradients laid out as ``SPECS`` (sharded
leaves and replicated ones) and built with ``jax.make_array_from_callback``.
Process 0 writes the gathered parameters, updates and statistics to
``OUT.npz``.
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import multihost_cases  # noqa: E402


def main(port: str, process_id: str, out: str) -> None:
  jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}",
    num_processes=2,
    process_id=int(process_id),
    initialization_timeout=60,
  )
  assert jax.device_count() == 8 and jax.local_device_count() == 4
  mesh = jax.make_mesh((8,), ("x",))
  params_np, grads_np = multihost_cases.inputs()

  def global_array(x, spec):
    return jax.make_array_from_callback(
      x.shape, NamedSharding(mesh, spec), lambda idx: x[idx]
    )

  params = jax.tree.map(global_array, params_np, multihost_cases.SPECS)
  grad_specs = jax.tree.map(
    lambda s: P(None, *s),
    multihost_cases.SPECS,
    is_leaf=lambda s: isinstance(s, P),
  )
  grads = jax.tree.map(global_array, grads_np, grad_specs)
  results = {}
  for case in multihost_cases.cases():
    out_tree = multihost_cases.run(case, params, grads)
    gathered = multihost_utils.process_allgather(out_tree, tiled=True)
    results.update(multihost_cases.flat(case.name, gathered))
  if int(process_id) == 0:
    np.savez(out, **results)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:])
