# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The sentiment classifier and the VADER loader, on small fixtures.

The fixtures are invented sentences in the ground-truth files' format
(``id<TAB>mean rating<TAB>text``, CRLF line ends), packed like the
``vaderSentiment==3.3.2`` source distribution: a tarball inside a tarball.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flax", exc_type=ModuleNotFoundError)

from examples.common import checkpoint
from examples.common import data
from examples.common import trainer
from examples.common.testing import argv
from examples.common.testing import fixture
from examples.common.testing import loss_fell
from examples.common.testing import make_tar
from examples.common.testing import train_rows
from examples.sentiment import input_pipeline
from examples.sentiment import train as sentiment

FILES = {
  "tweets": "vader_tweets_GroundTruth.txt",
  "movies": "vader_movieReviewSnippets_GroundTruth.txt",
  "amazon": "vader_amazonReviewSnippets_GroundTruth.txt",
  "nyt": "vader_nytEditorialSnippets_GroundTruth.txt",
}


@pytest.fixture
def vader_sdist(tmp_path, monkeypatch):
  """The fixture files packed like the sdist; fetch_sdist returns it."""
  inner = make_tar(
    tmp_path / "inner.tar.gz",
    {
      input_pipeline.DOMAINS[d]: fixture(f).read_bytes()
      for d, f in FILES.items()
    },
  )
  outer = make_tar(
    tmp_path / data.VADER.filename,
    {input_pipeline.INNER: inner.read_bytes()},
  )
  monkeypatch.setattr(data, "fetch_sdist", lambda src, cache=None: outer)
  return outer


def test_load_vader_reads_all_domains(vader_sdist):
  ex = input_pipeline.load_vader()
  assert ex.domain_names == ("tweets", "movies", "amazon", "nyt")
  assert len(ex) == 80  # 20 rated sentences per domain; rating 0 dropped
  assert ex.labels.sum() == 40
  assert "&amp;" not in " ".join(ex.texts) and "& fast" in " ".join(ex.texts)
  assert all(not t.endswith("\r") for t in ex.texts)
  tr, va, te = input_pipeline.stratified_split(ex, 0.2, 0.2)
  assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(va) + len(te) == 80
  for d in range(4):
    assert (ex.domains[te] == d).sum() == 4


def test_own_tsv_file(tmp_path):
  f = tmp_path / "mine.tsv"
  f.write_text("1\tgood stuff\tshop\n0\tbad stuff\tshop\n-2.5\tawful\tweb\n")
  ex = input_pipeline.load_text_file(f)
  assert ex.labels.tolist() == [1, 0, 0]
  assert ex.domain_names == ("shop", "web")


def test_classifier_trains_and_resumes(vader_sdist, tmp_path):
  flags = {
    "hidden": 16,
    "embed": 16,
    "batch_size": 8,
    "max_len": 16,
    "lr": 2e-2,
    "dropout": 0.0,
    "eval_every": 10,
    "ckpt_every": 10,
    "no_progress": True,
    "workdir": tmp_path,
    "no_plots": True,
    "cell": "gru",
  }
  args = sentiment.make_parser().parse_args(argv(**flags, steps=10))
  trainer.train(sentiment.build_task(args), args)
  args = sentiment.make_parser().parse_args(
    argv(**flags, steps=40, resume=True)
  )
  result = trainer.train(sentiment.build_task(args), args)
  rows = train_rows(tmp_path)
  assert [r["step"] for r in rows] == list(range(1, 41))
  assert loss_fell([r["loss"] for r in rows], k=8)
  assert checkpoint.load_meta(tmp_path / "checkpoint")["step"] == 40
  for d in ("tweets", "movies", "amazon", "nyt"):
    assert 0.0 <= result.eval[f"test_acc_{d}"] <= 1.0
  assert result.report[0].startswith("test accuracy by domain")
