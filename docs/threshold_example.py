# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The worked example of docs/thresholds.md: calibrate, choose, check.

``python docs/threshold_example.py`` redraws the figures in docs/images and
prints the numbers that the page quotes; ``tests/test_docs.py`` runs
:func:`run` (without figures) and checks those numbers.

A 3-layer MLP (16 -> 64 -> 64 -> 1, tanh) regresses a fixed random smooth
function of 16 Gaussian inputs, in mini-batches of 32. ``calibrate`` takes
200 warm-up steps (Adam, learning rate 1e-4); the run then trains from the
same initialisation for 500 steps with Adam at 1e-3 behind
``clip_by_global_norm`` at 5x the warm-up's mean norm.
"""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optaxclip
import optaxclip.plot

SIZES = (16, 64, 64, 1)
WARMUP_STEPS = 200
TRAIN_STEPS = 500


def init_params(seed: int = 0) -> dict:
  keys = jax.random.split(jax.random.key(seed), len(SIZES) - 1)
  return {
    f"layers_{i}": {
      "kernel": jax.random.normal(k, (m, n)) / np.sqrt(m),
      "bias": jnp.zeros(n),
    }
    for i, (k, m, n) in enumerate(zip(keys, SIZES[:-1], SIZES[1:]))
  }


def loss_fn(params: dict, batch: dict) -> jax.Array:
  h = batch["x"]
  for i in range(len(SIZES) - 1):
    layer = params[f"layers_{i}"]
    h = h @ layer["kernel"] + layer["bias"]
    if i < len(SIZES) - 2:
      h = jnp.tanh(h)
  return jnp.mean((h[:, 0] - batch["y"]) ** 2)


def grad_fn(params: dict, batch: dict) -> dict:
  return jax.grad(loss_fn)(params, batch)


def batches(seed: int, batch_size: int = 32):
  """An endless stream of batches of a fixed smooth target function."""
  w = np.random.default_rng(1234).normal(size=(SIZES[0], 4)) / 4.0
  rng = np.random.default_rng(seed)
  while True:
    x = rng.normal(size=(batch_size, SIZES[0])).astype(np.float32)
    y = np.sin(x @ w).sum(axis=1).astype(np.float32)
    yield {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def run(images: pathlib.Path | None = None) -> dict:
  """Runs the example; draws the figures into ``images`` if given."""
  params = init_params()
  report = optaxclip.calibrate(
    grad_fn, params, batches(seed=1), n_steps=WARMUP_STEPS
  )
  threshold = report.suggestions["mean_multiple"].value
  tx = optax.chain(
    optaxclip.monitor_norms(by="layer"),
    optaxclip.clip_by_global_norm(threshold),
    optax.adam(1e-3),
  )

  @jax.jit
  def step(params, state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return params, state, loss, optaxclip.stats(state)

  state = tx.init(params)
  history = optaxclip.StatsHistory()
  stream = batches(seed=2)
  for t in range(TRAIN_STEPS):
    params, state, loss, stats = step(params, state, next(stream))
    history.append(t, stats, loss=loss)

  norms = history.series("clip_by_global_norm/norm_before")
  findings = optaxclip.diagnose(history)
  if images is not None:
    images.mkdir(parents=True, exist_ok=True)
    optaxclip.plot.norm_histogram(
      report, path=images / "calibrate_histogram.png", figsize=(7, 3.5)
    )
    optaxclip.plot.norm_history(
      history, path=images / "threshold_norm_history.png", figsize=(7, 3.5)
    )
    optaxclip.plot.layer_heatmap(
      history, path=images / "threshold_layer_heatmap.png", figsize=(7, 3)
    )
  return {
    "warmup_mean": float(report.global_norms.mean()),
    "warmup_max": float(report.global_norms.max()),
    "suggestions": report.suggestions,
    "layer_suggestions": {
      path: s["mean_multiple"].value
      for path, s in report.layer_suggestions.items()
    },
    "threshold": threshold,
    "clip_rate": float(history.series("clip_by_global_norm/clipped").mean()),
    "train_median": float(np.median(norms)),
    "train_max": float(norms.max()),
    "first_loss": float(history.series("loss")[0]),
    "last_loss": float(history.series("loss")[-10:].mean()),
    "findings": [str(f) for f in findings],
    "report": str(report),
  }


def main(argv: list[str]) -> int:
  out = run(pathlib.Path(__file__).resolve().parent / "images")
  print(out.pop("report"))
  for f in out.pop("findings"):
    print("finding:", f)
  for s in out.pop("suggestions").values():
    print("suggestion:", s)
  for path, v in out.pop("layer_suggestions").items():
    print(f"5 x mean of {path}: {v:.4g}")
  for k, v in out.items():
    print(f"{k}: {v:.4g}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
