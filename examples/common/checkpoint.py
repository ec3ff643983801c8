# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Checkpoints of a training run, written with orbax.

A checkpoint is a directory holding ``state/`` (an orbax
``StandardCheckpointer`` checkpoint of every array of the model, the
optimizer - clipper statistics and adaptive thresholds included - and any
recurrent state carried between batches, keyed by tree path) and
``meta.json`` (the step, the run's configuration and the task's vocabulary).
orbax writes to a temporary directory and renames it, and ``meta.json`` is
written to a temporary name and renamed after it, so an interrupted save
never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

STATE = "state"
META = "meta.json"


def _path_key(path) -> str:
  return jax.tree_util.keystr(path)


def _to_host(x: Any) -> np.ndarray:
  if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  return np.asarray(jax.device_get(x))


def flatten(tree: Any) -> dict[str, np.ndarray]:
  """``{path: array}`` of every leaf of ``tree``."""
  return {_path_key(p): _to_host(x) for p, x in jax.tree.leaves_with_path(tree)}


def unflatten_like(template: Any, flat: dict[str, np.ndarray]) -> Any:
  """A tree shaped like ``template`` with its leaves read from ``flat``.

  Raises:
    ValueError: a leaf is missing or has another shape (the checkpoint was
      written with other model or optimizer settings).
  """
  paths_leaves, treedef = jax.tree.flatten_with_path(template)
  out = []
  for p, x in paths_leaves:
    k = _path_key(p)
    if k not in flat:
      raise ValueError(
        f"checkpoint has no entry {k}: it was written with other model or "
        "optimizer settings (e.g. another --clip). Use another --workdir or "
        "drop --resume."
      )
    v = np.asarray(flat[k])
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
      v = jax.random.wrap_key_data(v, impl=jax.random.key_impl(x))
    elif tuple(v.shape) != tuple(np.shape(x)):
      raise ValueError(
        f"checkpoint entry {k} has shape {v.shape}, the run expects "
        f"{np.shape(x)}; use another --workdir or drop --resume."
      )
    out.append(v)
  return jax.tree.unflatten(treedef, out)


def _atomic_write(path: Path, data: bytes) -> None:
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def save(directory: str | os.PathLike, trees: dict[str, Any], meta: dict):
  """Writes ``trees`` (name -> pytree) and ``meta`` to ``directory``."""
  d = Path(directory).absolute()
  d.mkdir(parents=True, exist_ok=True)
  payload = {name: flatten(t) for name, t in trees.items()}
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(d / STATE, payload, force=True)
    ckpt.wait_until_finished()
  _atomic_write(d / META, json.dumps(meta, indent=1).encode())


def exists(directory: str | os.PathLike) -> bool:
  d = Path(directory)
  return (d / STATE).is_dir() and (d / META).is_file()


def load_meta(directory: str | os.PathLike) -> dict:
  return json.loads((Path(directory) / META).read_text())


def restore(directory: str | os.PathLike, templates: dict[str, Any]):
  """Reads the trees saved by :func:`save`, shaped like ``templates``.

  Returns:
    ``(trees, meta)``.
  """
  d = Path(directory).absolute()
  with ocp.StandardCheckpointer() as ckpt:
    payload = ckpt.restore(d / STATE)
  trees = {
    name: unflatten_like(t, payload.get(name, {}))
    for name, t in templates.items()
  }
  return trees, load_meta(d)
