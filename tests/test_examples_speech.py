# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Speech recognition (CTC) on small fixtures.

``tests/fixtures/speech`` holds eight short utterances spoken by eSpeak NG
1.52 (eight speakers, 22,050 Hz 16-bit WAV) with ``list.tsv`` in the
``--data-file`` format, and ``logmel_librosa.npz``, reference features
computed once with librosa 0.11.0; ``examples/speech/make_fixtures.py``
made both (see its docstring for the commands).
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("jiwer")

from flax import nnx

from examples.common import data
from examples.common import trainer
from examples.common.testing import argv
from examples.common.testing import fixture
from examples.common.testing import loss_fell
from examples.common.testing import train_rows
from examples.speech import features
from examples.speech import input_pipeline
from examples.speech import make_fixtures
from examples.speech import synth
from examples.speech import train as speech
from examples.speech.models import greedy_decode

LIST = fixture("speech/list.tsv")
REF = fixture("speech/logmel_librosa.npz")


@pytest.fixture(scope="module")
def corpus():
  return input_pipeline.load_list(LIST, seed=0)


# -- features ------------------------------------------------------------------


def test_mel_scale_by_hand():
  # Slaney: linear below 1 kHz (3 / 200 per Hz), 27 / ln 6.4 per log unit.
  np.testing.assert_allclose(features.hz_to_mel([0, 500, 1000]), [0, 7.5, 15])
  np.testing.assert_allclose(
    features.hz_to_mel(6400.0), 15 + 27, rtol=1e-12
  )  # 1000 * 6.4
  f = np.array([20.0, 440.0, 999.0, 1000.0, 3000.0, 8000.0])
  np.testing.assert_allclose(features.mel_to_hz(features.hz_to_mel(f)), f)
  # Each Slaney-normalised triangle has unit area in Hz.
  cfg = features.FeatureConfig(n_fft=8192)
  fb = features.mel_filterbank(cfg)
  df = cfg.sample_rate / cfg.n_fft
  np.testing.assert_allclose(fb.sum(1) * df, 1.0, rtol=0.02)


@pytest.mark.parametrize("rate", [22050, 16000])
def test_log_mel_matches_librosa(rate):
  ref = np.load(REF)
  assert str(ref["librosa_version"]) == "0.11.0"
  if rate == 22050:
    cfg = features.FeatureConfig()
    pcm, sr = input_pipeline.read_wav(fixture("speech/utt0.wav"))
    assert sr == rate
    x = features.to_float(pcm)
  else:
    cfg = features.FeatureConfig.for_rate(rate)
    assert (cfg.n_fft, cfg.hop) == (512, 160)
    x = make_fixtures.chirp(rate)
  assert str(ref[f"config_{rate}"]) == str(features.dataclasses.asdict(cfg))
  np.testing.assert_allclose(
    features.mel_filterbank(cfg), ref[f"fb_{rate}"], atol=1e-8
  )
  got = np.asarray(features.log_mel(x, cfg))
  assert got.shape == ref[f"logmel_{rate}"].shape == (cfg.frames(len(x)), 40)
  np.testing.assert_allclose(got, ref[f"logmel_{rate}"], atol=2e-4)
  # Batched and zero-padded to a common length: the same frames.
  batched = features.batch_log_mel([x[:3000], x], cfg)
  np.testing.assert_allclose(batched[1], got, atol=2e-4)
  assert batched[0].shape == (cfg.frames(3000), 40)


def test_noise_has_the_requested_snr():
  x = make_fixtures.chirp(16000, 2.0)
  y = features.add_noise(x, 10.0, seed=3)
  snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
  assert snr == pytest.approx(10.0, abs=0.1)
  np.testing.assert_array_equal(y, features.add_noise(x, 10.0, seed=3))
  assert features.add_noise(x, None, seed=3) is x


# -- the corpus ----------------------------------------------------------------


def test_manifest_is_pinned_and_holds_speakers_out():
  items = input_pipeline.manifest()
  assert input_pipeline.manifest_sha256(items) == input_pipeline.DEFAULT_SHA256
  assert len(items) == sum(input_pipeline.DEFAULT_SIZES)
  spk = {
    s: {(it["accent"], it["variant"]) for it in items if it["split"] == s}
    for s in input_pipeline.SPLITS
  }
  assert not spk["train"] & spk["test"] and not spk["train"] & spk["val"]
  assert not spk["val"] & spk["test"]
  assert {v for _, v in spk["test"]} == set(input_pipeline.TEST_VARIANTS)
  assert len({a for a, _ in spk["train"]}) == 9 and len(spk["train"]) > 500
  assert {it["snr"] for it in items} == {None, 20, 10, 5}
  assert len(synth.VARIANTS) == 104 and len(synth.ACCENTS) == 9
  # The digest covers every generation input.
  changed = [dict(it) for it in items]
  changed[7]["noise_seed"] += 1
  assert input_pipeline.manifest_sha256(changed) != (
    input_pipeline.DEFAULT_SHA256
  )
  assert input_pipeline.manifest((3, 1, 1), seed=5) == (
    input_pipeline.manifest((3, 1, 1), seed=5)
  )


def test_corpus_cache_round_trip(corpus, tmp_path):
  path = tmp_path / "c.npz"
  input_pipeline.save(corpus, path, "abc")
  back = input_pipeline.load(path, "abc")
  assert back.texts == corpus.texts and back.speakers == corpus.speakers
  np.testing.assert_array_equal(back.split, corpus.split)
  for a, b in zip(back.feats, corpus.feats):
    np.testing.assert_allclose(a, b, atol=1e-2)  # stored as float16
  with pytest.raises(ValueError, match="another corpus"):
    input_pipeline.load(path, "abd")


def test_data_file_reads_wavs_and_splits_by_speaker(corpus, tmp_path):
  assert corpus.texts[:3] == ["one two", "nine", "five three"]
  assert len(corpus) == 8 and len(set(corpus.speakers)) == 8
  assert [int((corpus.split == k).sum()) for k in range(3)] == [6, 1, 1]
  pcm, rate = input_pipeline.read_wav(fixture("speech/utt0.wav"))
  assert rate == synth.SAMPLE_RATE and pcm.dtype == np.int16
  assert corpus.feats[0].shape == (
    features.FeatureConfig().frames(len(pcm)),
    40,
  )
  # Speakers never straddle the split.
  spk = ["a", "a", "b", "c", "c", "d", "e", "e"]
  split = input_pipeline.split_speakers(spk, seed=1)
  for s in set(spk):
    assert len({int(split[i]) for i, x in enumerate(spk) if x == s}) == 1
  with pytest.raises(ValueError, match="at least 3 speakers"):
    input_pipeline.split_speakers(["a", "b"])
  bad = tmp_path / "bad.tsv"
  bad.write_text("utt0.wav\n")
  with pytest.raises(ValueError, match=r"bad\.tsv:1"):
    input_pipeline.read_list(bad)
  bad.write_text("missing.wav\tone\tx\n")
  with pytest.raises(ValueError, match="no such file"):
    input_pipeline.read_list(bad)
  assert input_pipeline.normalize_text(" Hello,  World! 42 ") == "hello world"


@pytest.mark.skipif(
  not synth.has_engine(), reason="needs the espeakng-loader wheel"
)
def test_espeak_speaks_every_accent_at_22050_hz():
  eng = synth.engine()
  assert eng.sample_rate == 22050 and eng.version == synth.ENGINE_VERSION
  assert synth.installed_variants() == sorted(synth.VARIANTS)
  lengths = {}
  for accent in synth.ACCENTS:
    pcm = eng.synthesize("three four", accent, "m3", 175, 50)
    assert pcm.dtype == np.int16 and np.abs(pcm).max() > 3000
    lengths[accent] = len(pcm) / 22050
  assert all(0.4 < s < 2.0 for s in lengths.values())
  slow = eng.synthesize("three four", "en-us", "f2", 100, 50)
  fast = eng.synthesize("three four", "en-us", "f2", 300, 50)
  assert len(fast) < 0.6 * len(slow)
  with pytest.raises(ValueError, match="picked"):
    eng.synthesize("one", "en-us", "no-such-variant", 175, 50)


@pytest.mark.skipif(
  not synth.has_engine(), reason="needs the espeakng-loader wheel"
)
def test_synthetic_corpus_is_made_once_and_cached(tmp_path):
  kw = {"sizes": (3, 1, 2), "seed": 4, "data_dir": tmp_path}
  c = input_pipeline.load_synthetic(**kw)
  assert len(c) == 6 and c.split.tolist() == [0, 0, 0, 1, 2, 2]
  (path,) = (tmp_path / "speech").glob("corpus-*.npz")
  assert path.name.startswith(
    "corpus-"
    + input_pipeline.manifest_sha256(input_pipeline.manifest((3, 1, 2), 4))[:16]
  )
  mtime = path.stat().st_mtime_ns
  again = input_pipeline.load_synthetic(**kw)
  assert path.stat().st_mtime_ns == mtime and again.texts == c.texts
  for s in c.speakers[4:]:
    assert s.split("+")[1] in input_pipeline.TEST_VARIANTS


def test_synthetic_corpus_without_the_wheel_says_how(tmp_path, monkeypatch):
  def missing():
    raise synth.EngineUnavailable("pip install 'espeakng-loader==0.2.4'")

  monkeypatch.setattr(synth, "engine", missing)
  with pytest.raises(data.DataUnavailable, match=r"espeakng-loader==0\.2\.4"):
    input_pipeline.load_synthetic((2, 1, 1), 0, data_dir=tmp_path)


# -- decoding and metrics ------------------------------------------------------


def test_greedy_decode_and_error_rates():
  best = np.array([[0, 3, 3, 0, 3, 5, 5, 0, 2], [4, 4, 4, 0, 0, 0, 0, 0, 0]])
  assert greedy_decode(best, np.array([8, 3])) == [[3, 3, 5], [4]]
  chars = input_pipeline.CharTable.from_texts(["ab c"])
  assert len(chars) == 5 and chars.decode(chars.encode("cab")) == "cab"
  assert chars.encode(" ").tolist() == [1]  # 0 is the blank
  cer, wer = speech.error_rates(["one two", "nine"], ["one tw", "nine"])
  assert cer == pytest.approx(1 / 11)  # one deletion in 11 characters
  assert wer == pytest.approx(1 / 3)


def test_length_buckets_cover_every_utterance():
  frames = np.array([50, 10, 30, 20, 40, 60, 11])
  buckets = speech.length_buckets(frames, 3, stride=4)
  assert sorted(np.concatenate([m for m, _ in buckets]).tolist()) == list(
    range(7)
  )
  for members, cap in buckets:
    assert cap % 4 == 0 and cap >= frames[members].max()
  assert [c for _, c in buckets] == [20, 40, 60]


def test_ctc_model_shapes_and_padding():
  model = speech.CTCModel(8, 5, hidden=6, layers=1, stride=3, rngs=nnx.Rngs(0))
  x = np.random.default_rng(0).standard_normal((2, 12, 8)).astype(np.float32)
  run = nnx.jit(lambda m, x, f: m(x, f))  # one compilation for both calls
  logits, steps = run(model, x, np.array([12, 7]))
  assert logits.shape == (2, 4, 5) and steps.tolist() == [4, 3]
  # Padding beyond the valid frames does not change the valid outputs.
  y = x.copy()
  y[1, 9:] = 99.0
  logits2, _ = run(model, y, np.array([12, 7]))
  np.testing.assert_allclose(logits2[1, :3], logits[1, :3], atol=1e-5)


# -- training ------------------------------------------------------------------

TINY = {
  "hidden": 16,
  "layers": 1,
  "batch_size": 8,
  "lr": 1e-2,
  "dropout": 0.0,
  "buckets": 1,
  "samples": 2,
  "no_progress": True,
  "clip": "clip_by_global_norm:1.0",
}


def _run(corpus, workdir, **flags):
  args = speech.make_parser().parse_args(
    argv(**{**TINY, "workdir": workdir, **flags})
  )
  return trainer.train(speech.build_task(args, corpus), args)


def test_ctc_trains_and_resume_is_exact(corpus, tmp_path):
  whole = _run(corpus, tmp_path / "a", steps=24, eval_every=24, no_plots=True)
  assert loss_fell(whole.losses, k=4, factor=0.8)
  _run(corpus, tmp_path / "b", steps=12, eval_every=12, ckpt_every=12)
  resumed = _run(
    corpus, tmp_path / "b", steps=24, eval_every=12, ckpt_every=12, resume=True
  )
  a = jax.tree.leaves(nnx.state(whole.model, nnx.Param))
  b = jax.tree.leaves(nnx.state(resumed.model, nnx.Param))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  rows = train_rows(tmp_path / "b")
  assert [r["step"] for r in rows] == list(range(1, 25))
  assert "clip_by_global_norm/norm_before" in rows[0]
  for name in ("loss.png", "grad_norm.png", "clip_rate.png"):
    assert (tmp_path / "b" / name).stat().st_size > 0
  summary = json.loads((tmp_path / "b" / "summary.json").read_text())
  assert summary["test_cer"] >= 0.0 and summary["test_wer"] >= 0.0
  report = resumed.report
  assert "| all | 1 |" in "\n".join(report)
  assert "=>" in report[-1] and "'" in report[-1]


# -- the command line ----------------------------------------------------------


def _usage_error(capsys, args):
  with pytest.raises(SystemExit) as e:
    speech.main(args)
  err = capsys.readouterr().err.strip().splitlines()
  assert e.value.code == 2
  assert err[-1].startswith("python -m examples.speech: error: ")
  return err[-1]


def test_bad_inputs_are_usage_errors(tmp_path, capsys):
  missing = tmp_path / "none.tsv"
  assert "no such file" in _usage_error(capsys, ["--data-file", str(missing)])
  empty = tmp_path / "empty.tsv"
  empty.write_text("\n\n")
  assert "is empty" in _usage_error(capsys, ["--data-file", str(empty)])
  bad = tmp_path / "bad.tsv"
  bad.write_text("nowhere.wav\tone\n")
  assert "no such file" in _usage_error(capsys, ["--data-file", str(bad)])
  assert "nonsense" in _usage_error(capsys, ["--clip", "nonsense"])
  assert "--stride" in _usage_error(capsys, ["--stride", "0"])


def test_help_documents_every_option(capsys):
  with pytest.raises(SystemExit) as e:
    speech.main(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  p = speech.make_parser()
  for action in p._actions:
    for opt in action.option_strings:
      assert opt in out
    if action.option_strings:
      assert action.help, f"{action.option_strings} has no help"


def test_compare_trains_every_pair_and_prints_the_table(
  tmp_path, capsys, monkeypatch
):
  """The comparison loop, table and files (training replaced by a stub:
  the real loop is covered by test_ctc_trains_and_resume_is_exact)."""
  from examples.common import metrics
  from examples.speech import compare

  seen = []

  def fake_train(task, args):
    assert task.name == "speech" and args.steps == 3
    seen.append((args.lr, args.clip, args.workdir))
    h = metrics.new_history()
    for s in range(1, 4):
      h.append(s, loss=3.0 / s, grad_norm=10.0 * s)
    clipped = args.clip != "none"
    return trainer.RunResult(
      task="speech",
      workdir=args.workdir,
      steps=3,
      eval={"test_cer": 0.25, "test_wer": 0.5, "val_cer": 0.2},
      history=h,
      losses=np.array([3.0, 1.5, 1.0]),
      grad_norms=np.array([10.0, 20.0, 30.0]),
      clip_name="autoclip" if clipped else None,
      clip_rate=2 / 3 if clipped else float("nan"),
      spikes=0,
      wall_time=1.0,
      train_time=1.0,
      files=[],
      report=[],
    )

  monkeypatch.setattr(trainer, "train", fake_train)
  flags = argv(
    data_file=LIST, steps=3, lrs="1e-2,0.1", no_progress=True, workdir=tmp_path
  )
  rows = compare.main(
    [*flags, "--compare-clip", "none", "--compare-clip", "autoclip"]
  )
  assert [(r["lr"], r["clip"]) for r in rows] == [
    (0.01, "none"),
    (0.01, "autoclip"),
    (0.1, "none"),
    (0.1, "autoclip"),
  ]
  assert len({w for *_, w in seen}) == 4  # one directory per run
  assert rows[0]["clip_rate"] is None and rows[1]["clip_rate"] == 2 / 3
  out = capsys.readouterr().out
  assert "| 0.01 | `none` | 0.250 | 0.500 | 0.200 | 30 | - | 0 | 1s |" in out
  assert "| 0.1 | `autoclip` | 0.250 | 0.500 | 0.200 | 30 | 67% |" in out
  saved = json.loads((tmp_path / "compare.json").read_text())
  assert len(saved["runs"]) == 4 and saved["settings"]["steps"] == 3
  for lr in ("0.01", "0.1"):
    assert (tmp_path / f"grad_norm_lr{lr}.png").stat().st_size > 0
  for bad in (["--lrs", "fast"], ["--lrs", "0"], ["--compare-clip", "nope"]):
    with pytest.raises(SystemExit) as e:
      compare.main(bad)
    assert e.value.code == 2
