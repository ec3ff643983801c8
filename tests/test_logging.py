# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""flatten_stats: flat statistics for metric writers, and one real writer."""

import math
import pathlib
import struct

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorboardX
from tensorboardX.proto import event_pb2

import optaxclip


def _one_step(grads, *stages):
  tx = optax.chain(*stages, optax.sgd(0.1))
  params = {k: jnp.zeros_like(v) for k, v in grads.items()}
  _, state = tx.update(grads, tx.init(params), params)
  return state


def test_keys_and_values_by_hand():
  # |(3, 4)| = 5 against a threshold of 2: factor 2/5 = 0.4, norm after 2.
  state = _one_step(
    {"w": jnp.array([3.0, 4.0])}, optaxclip.clip_by_global_norm(2.0)
  )
  flat = optaxclip.flatten_stats(optaxclip.stats(state))
  assert flat == pytest.approx(
    {
      "clip_by_global_norm/norm_before": 5.0,
      "clip_by_global_norm/norm_after": 2.0,
      "clip_by_global_norm/threshold": 2.0,
      "clip_by_global_norm/scale": 0.4,
      "clip_by_global_norm/clipped": 1.0,
      "clip_by_global_norm/nonfinite_count": 0.0,
      "clip_by_global_norm/step": 1.0,
    }
  )
  assert all(type(v) is float for v in flat.values())


def test_monitor_paths_prefix_and_nan_fields():
  grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
  state = _one_step(
    grads, optaxclip.monitor_norms(), optaxclip.clip_by_value(2.0)
  )
  flat = optaxclip.flatten_stats(optaxclip.stats(state), prefix="train/")
  assert flat["train/monitor_norms/norms/a"] == pytest.approx(5.0)
  assert flat["train/monitor_norms/norms/b"] == pytest.approx(1.0)
  # clip_by_value does not compute norms: NaN, kept as a float.
  assert math.isnan(flat["train/clip_by_value/norm_before"])
  # 2 of the 3 elements (3 and 4, not 1) are above 2.
  assert flat["train/clip_by_value/clipped"] == pytest.approx(2 / 3)
  assert all(k.startswith("train/") for k in flat)


def test_same_keys_as_stats_history():
  state = _one_step(
    {"w": jnp.array([3.0, 4.0])},
    optaxclip.monitor_norms(by="layer"),
    optaxclip.clip_by_global_norm(1.0),
  )
  s = optaxclip.stats(state)
  history = optaxclip.StatsHistory()
  history.append(0, s)
  flat = optaxclip.flatten_stats(s)
  assert list(flat) == history.keys()
  for k, v in flat.items():
    np.testing.assert_equal(history.series(k), [v])


def test_empty_and_bad_input():
  assert optaxclip.flatten_stats({}) == {}
  state = optax.adam(1e-3).init(jnp.zeros(2))
  assert optaxclip.flatten_stats(optaxclip.stats(state)) == {}
  with pytest.raises(TypeError, match=r"optaxclip.stats\(opt_state\)"):
    optaxclip.flatten_stats(state)
  with pytest.raises(TypeError, match="prefix"):
    optaxclip.flatten_stats({}, prefix=1)


def _read_scalars(logdir: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
  """Scalars of a TensorBoard event file, parsed from its TFRecord frames."""
  (path,) = logdir.glob("events.out.tfevents.*")
  data, out, i = path.read_bytes(), {}, 0
  while i < len(data):
    (n,) = struct.unpack("<Q", data[i : i + 8])
    event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
    i += 12 + n + 4  # length, its CRC, the record, its CRC
    for v in event.summary.value:
      out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out


def test_tensorboardx_writer_gets_every_statistic(tmp_path):
  tx = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.sgd(0.1))
  state = tx.init(jnp.zeros(2))
  writer = tensorboardX.SummaryWriter(logdir=str(tmp_path))
  for step, g in enumerate([[0.3, 0.4], [3.0, 4.0]]):
    _, state = tx.update(jnp.array(g), state)
    for tag, value in optaxclip.flatten_stats(optaxclip.stats(state)).items():
      writer.add_scalar(tag, value, step)
  writer.close()
  scalars = _read_scalars(tmp_path)
  assert len(scalars) == 7
  assert scalars["clip_by_global_norm/norm_before"] == [
    (0, pytest.approx(0.5)),
    (1, pytest.approx(5.0)),
  ]
  assert scalars["clip_by_global_norm/clipped"] == [(0, 0.0), (1, 1.0)]
  assert scalars["clip_by_global_norm/scale"][1] == (1, pytest.approx(0.2))
