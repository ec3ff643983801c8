# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The summarization example on real Debian index stanzas.

``debian_Translation-en`` holds 25 stanzas copied from bookworm's
``main/i18n/Translation-en`` (2026-12): the openssl, curl, git, zlib, 0ad
and sqlite3 families, ``libboost1.74-doc`` and ``libboost1.81-doc`` (one
description, two source packages), ``freeglut3-dev`` (no long description)
and ``atitvout`` (not built for amd64). ``debian_Packages`` holds the
``binary-amd64/Packages`` stanzas of the same packages (``atitvout`` has
none; ``2048-qt`` names its source with a version).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("sentencepiece")
pytest.importorskip("rouge_score")

from flax import nnx

from examples.common import trainer
from examples.common.testing import argv
from examples.common.testing import fixture
from examples.common.testing import loss_fell
from examples.common.testing import train_rows
from examples.summarization import compare
from examples.summarization import input_pipeline as ip
from examples.summarization import models
from examples.summarization import train as summ

TR = fixture("debian_Translation-en")
PK = fixture("debian_Packages")


def _corpus():
  return ip.load_corpus(TR, PK)


def test_parse_dedup_and_long_descriptions():
  docs, counts = ip.parse_translations(TR.read_text())
  assert counts == {
    "stanzas": 25,
    "distinct_md5": 24,
    "no_long_description": 1,
  }
  by_pkg = {d.package: d for d in docs}
  assert "freeglut3-dev" not in by_pkg  # synopsis only
  assert "libboost1.74-doc" in by_pkg and "libboost1.81-doc" not in by_pkg
  ssl = by_pkg["libssl-dev"]
  assert ssl.summary == "Secure Sockets Layer toolkit - development files"
  assert ssl.md5 == "27044468897c45b271f879c7c6e135fe"
  assert ssl.document.startswith("This package is part of the OpenSSL")
  assert ssl.document.endswith("manpages for libssl and libcrypto.")
  # `` .`` paragraph breaks and line breaks become single spaces
  data = by_pkg["0ad-data"].document
  assert " . " not in data and "\n" not in data and "  " not in data
  assert "game engine. This package contains the main data files" in data
  assert ip.long_description([" a  b", " .", "  c"]) == "a b c"


def test_sources_come_from_packages_and_siblings_stay_together():
  sources = ip.parse_sources(PK.read_text())
  assert sources["libssl-dev"] == sources["openssl"] == "openssl"
  assert sources["2048-qt"] == "2048-qt"  # `Source: 2048-qt (0.1.6-2)`
  assert sources["git-man"] == "git" and sources["gzip"] == "gzip"
  assert "atitvout" not in sources
  corpus = _corpus()
  assert corpus.counts["dropped"] == 1 and corpus.by_source
  assert len(corpus.docs) == 22
  assert {d.source for d in corpus.docs if d.package.startswith("0ad")} == {
    "0ad",
    "0ad-data",
  }
  for seed in range(25):
    parts = ip.split_by_source(corpus.docs, 4, 3, seed)
    assert sum(map(len, parts)) == len(corpus.docs)
    owner = {}
    for i, part in enumerate(parts):
      for d in part:
        assert owner.setdefault(d.source, i) == i, (seed, d.source)
    train, val, test = parts
    assert len(test) >= 4 and len(val) >= 3 and train
  a = ip.split_by_source(corpus.docs, 4, 3, seed=1)
  assert a == ip.split_by_source(corpus.docs, 4, 3, seed=1)
  # Without a Packages index every binary package is its own group.
  alone = ip.load_corpus(TR)
  assert not alone.by_source and len(alone.docs) == 23
  assert all(d.source == d.package for d in alone.docs)


def test_compressed_lists_and_the_private_apt_fetch(tmp_path, monkeypatch):
  if not shutil.which("apt-get") or not ip.Path(ip.APT_HELPER).exists():
    pytest.skip("needs apt-get and apt-helper")
  gz = tmp_path / "Translation-en.gz"
  gz.write_bytes(gzip.compress(TR.read_bytes()))
  assert ip.read_index(gz) == TR.read_text()

  calls = []

  def fake_run(cmd, env=None, **kw):
    """apt-get update: writes the two lists where the config says."""
    calls.append((cmd, env))
    conf = ip.Path(env["APT_CONFIG"]).read_text()
    lists = ip.Path(conf.split('Dir::State::Lists "')[1].split('"')[0])
    d = "deb.debian.org_debian_dists_bookworm_main_"
    (lists / (d + "i18n_Translation-en.gz")).write_bytes(gz.read_bytes())
    pk = lists / (d + "binary-amd64_Packages.gz")
    pk.write_bytes(gzip.compress(PK.read_bytes()))
    return subprocess.CompletedProcess(cmd, 0, "", "")

  monkeypatch.setattr(subprocess, "run", fake_run)
  tr_path, pk_path = ip.fetch_lists(tmp_path)
  cmd, env = calls[0]
  assert cmd == ["apt-get", "update", "-o", "Acquire::Languages=en"]
  conf = ip.Path(env["APT_CONFIG"]).read_text()
  root = tmp_path / "debian-descriptions" / "bookworm"
  for key in (
    "Dir::State::Lists",
    "Dir::Cache",
    "Dir::Etc::SourceList",
    "Dir::Etc::Parts",
  ):
    line = next(x for x in conf.splitlines() if x.startswith(key + " "))
    assert str(root) in line, line  # private: nothing under /etc or /var
  sources = (root / "etc" / "sources.list").read_text()
  assert sources.startswith("deb [arch=amd64") and "bookworm main" in sources
  assert (root / "fetched.json").is_file()
  # Cached: a second call fetches nothing.
  assert ip.fetch_lists(tmp_path) == (tr_path, pk_path) and len(calls) == 1
  monkeypatch.undo()
  corpus = ip.load_corpus(data_dir=str(tmp_path))
  assert len(corpus.docs) == 22 and corpus.by_source


def test_rouge_against_hand_computed_values():
  # 1: unigrams the/cat/on/mat match (4 of 6 each side): F1 2/3; bigrams:
  #    only `the cat` (1 of 5): 1/5; LCS `the cat on mat`: 2/3.
  # 2: the Porter stemmer maps `programs` to `program`: all 1.
  scores = summ.rouge(
    ["the cat lay on a mat", "Backup programs"],
    ["the cat sat on the mat", "backup program"],
  )
  assert scores["rouge1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
  assert scores["rouge2"] == pytest.approx(100 * (1 / 5 + 1) / 2)
  assert scores["rougeL"] == pytest.approx(100 * (2 / 3 + 1) / 2)
  assert ip.lead("a  b c d", 2) == "a b"


TINY = {
  "hidden": 32,
  "embed": 16,
  "batch_size": 8,
  "eval_batch_size": 8,
  "src_len": 24,
  "tgt_len": 8,
  "vocab_size": 160,
  "test_size": 3,
  "val_size": 3,
  "lr": 2e-2,
  "samples": 2,
  "no_progress": True,
  "no_plots": True,
}


def _args(tmp_path, workdir, **flags):
  return summ.make_parser().parse_args(
    argv(**{**TINY, "data_dir": tmp_path, "workdir": workdir, **flags})
  )


def _params(model):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_trains_and_resumes_exactly(tmp_path):
  corpus = _corpus()
  flags = {"steps": 10, "eval_every": 10, "ckpt_every": 5}
  straight = _args(tmp_path, tmp_path / "a", **flags)
  full = trainer.train(summ.build_task(straight, corpus), straight)
  assert loss_fell(full.losses)
  first = _args(tmp_path, tmp_path / "b", **{**flags, "steps": 5})
  trainer.train(summ.build_task(first, corpus), first)
  again = _args(tmp_path, tmp_path / "b", **flags, resume=True)
  resumed = trainer.train(summ.build_task(again, corpus), again)
  rows = train_rows(tmp_path / "b")
  assert [r["step"] for r in rows] == list(range(1, 11))
  np.testing.assert_array_equal(resumed.losses, full.losses)
  for a, b in zip(_params(full.model), _params(resumed.model)):
    np.testing.assert_array_equal(a, b)
  ev = resumed.eval
  for k in ("test_rouge1", "test_rouge2", "test_rougeL", "lead_rougeL"):
    assert 0.0 <= ev[k] <= 100.0
  assert "| pointer model (greedy) |" in "\n".join(resumed.report)
  assert any(line.strip().startswith("reference:") for line in resumed.report)
  assert (tmp_path / "b" / "spm.model").stat().st_size > 0


SMALL = {"test_size": 3, "val_size": 3}


@pytest.mark.parametrize(
  "flags, message",
  [
    ({"data_file": "/nonexistent/Translation-en"}, "no such file"),
    ({"data_file": "EMPTY"}, "the file is empty"),
    ({"data_file": "GARBAGE"}, "holds no Translation-en stanza"),
    ({"clip": "clip_by_nothing:1"}, "clip_by_nothing"),
    ({"packages_file": str(PK)}, "--packages-file needs --data-file"),
    ({"data_file": str(TR), "src_len": 0}, "--src-len"),
    ({"data_file": str(TR), "tgt_len": 1}, "--tgt-len must be at least 2"),
    ({"data_file": str(TR), "vocab_size": 7}, "--vocab-size must be at least"),
    ({"data_file": str(TR), "vocab_size": 10**6, **SMALL}, "--vocab-size"),
    ({"data_file": str(TR)}, "too few for --test-size 1000"),
  ],
)
def test_bad_inputs_are_one_line_usage_errors(tmp_path, capsys, flags, message):
  empty = tmp_path / "empty"
  empty.write_text("")
  garbage = tmp_path / "garbage"
  garbage.write_text("not a control file\n")
  paths = {"EMPTY": str(empty), "GARBAGE": str(garbage)}
  flags = {k: paths.get(v, v) for k, v in flags.items()}
  with pytest.raises(SystemExit) as e:
    summ.main(
      argv(workdir=tmp_path / "w", data_dir=tmp_path, no_progress=True, **flags)
    )
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("python -m examples.summarization: error:")
  assert message in err[-1] and "Traceback" not in "".join(err)


def test_help_documents_the_options(capsys):
  with pytest.raises(SystemExit) as e:
    summ.main(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for flag in ("--data-file", "--packages-file", "--clip", "--lead-words"):
    assert flag in out


def _fake(eval_, clip_name, rate, max_g):
  return trainer.RunResult(
    task="summarization",
    workdir=None,
    steps=1,
    eval=eval_,
    history=None,
    losses=np.array([1.0]),
    grad_norms=np.array([max_g]),
    clip_name=clip_name,
    clip_rate=rate,
    spikes=0,
    wall_time=12.0,
    train_time=10.0,
    files=[],
    report=[],
  )


def test_comparison_table_and_its_usage_errors(capsys):
  ev = {"val_loss": 3.25, "test_rouge1": 30.0, "test_rouge2": 12.5}
  ev |= {"test_rougeL": 28.0, "lead_rouge1": 27.25, "lead_rouge2": 11.86}
  ev["lead_rougeL"] = 25.0
  rows = [
    ("none", 3e-3, _fake(ev, None, float("nan"), 2.5)),
    ("zclip", 3e-2, _fake(ev, "zclip", 0.25, 40.0)),
  ]
  lines = compare.table(rows).splitlines()
  assert lines[2] == (
    "| `none` | 0.003 | 30.00 | 12.50 | 28.00 | 3.250 | 2.5 | - | 0 | 12s |"
  )
  assert lines[3].startswith("| `zclip` | 0.03 |") and "| 25% |" in lines[3]
  assert lines[4].startswith("| lead baseline | - | 27.25 | 11.86 | 25.00 |")
  for bad in (["--lrs", "fast"], ["--clips", "clip_by_nothing"]):
    with pytest.raises(SystemExit) as e:
      compare.main(bad)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err.strip().splitlines()[-1]


def test_pointer_outputs_a_distribution_and_steps_like_teacher_forcing():
  model = models.PointerSeq2Seq(11, 4, 6, cell="lstm", rngs=nnx.Rngs(0))
  src = jnp.array([[5, 6, 7, 0], [8, 8, 0, 0]])
  src_len = jnp.array([3, 2])
  tgt_in = jnp.array([[1, 5, 9], [1, 8, 4]])
  logp = model(src, src_len, tgt_in)
  np.testing.assert_allclose(jnp.exp(logp).sum(-1), 1.0, rtol=1e-5)
  memory, mask, carry = model.encode(src, src_len)
  for t in range(3):
    step, carry = model.decode_step(memory, mask, carry, tgt_in[:, t])
    np.testing.assert_allclose(step, logp[:, t], rtol=1e-4, atol=1e-5)
  # With the generator gate shut, all mass is on the source's own ids.
  model.gate.bias[...] = jnp.full((1,), -50.0)
  p = jnp.exp(model(src, src_len, tgt_in))
  np.testing.assert_allclose(p[0, :, 5:8].sum(-1), 1.0, atol=1e-4)
  np.testing.assert_allclose(p[1, :, 8], 1.0, atol=1e-4)
