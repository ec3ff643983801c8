# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The VADER ground-truth sentences: tweets, reviews and editorials.

Hutto & Gilbert's VADER paper (ICWSM 2014) had 23,703 sentences from four
domains rated by people from -4 (most negative) to +4 (most positive): 4,200
tweets, 10,605 movie-review snippets, 3,708 Amazon product-review snippets
and 5,190 New York Times editorial snippets. The ``vaderSentiment==3.3.2``
source distribution ships them in ``additional_resources/
hutto_ICWSM_2014.tar.gz`` (the wheel does not), as tab-separated
``id, mean rating, text`` lines. The label here is the sign of the mean
rating; sentences rated exactly 0 are dropped.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os

import numpy as np

from examples.common import data

INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
DOMAINS = {
  "tweets": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
  "movies": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
  "amazon": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
  "nyt": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
}


@dataclasses.dataclass
class Examples:
  """Sentences with their label (1 positive, 0 negative) and domain id."""

  texts: list[str]
  labels: np.ndarray
  domains: np.ndarray
  domain_names: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.texts)

  def subset(self, idx: np.ndarray) -> Examples:
    return Examples(
      [self.texts[i] for i in idx],
      self.labels[idx],
      self.domains[idx],
      self.domain_names,
    )


def parse_ground_truth(raw: str) -> list[tuple[float, str]]:
  """``(mean rating, text)`` of every ``id \\t rating \\t text`` line."""
  out = []
  for line in raw.splitlines():
    parts = line.rstrip("\r").split("\t")
    if len(parts) < 3:
      continue
    try:
      score = float(parts[1])
    except ValueError:
      continue
    out.append((score, html.unescape("\t".join(parts[2:]).strip())))
  return out


def from_rows(rows: dict[str, list[tuple[float, str]]]) -> Examples:
  """Labelled examples from ``{domain: [(rating, text), ...]}``."""
  names = tuple(rows)
  texts, labels, domains = [], [], []
  for d, name in enumerate(names):
    for score, text in rows[name]:
      if score == 0 or not text:
        continue
      texts.append(text)
      labels.append(int(score > 0))
      domains.append(d)
  return Examples(
    texts, np.asarray(labels, np.int32), np.asarray(domains, np.int32), names
  )


def load_vader(data_dir: str | None = None) -> Examples:
  """The four VADER domains (downloaded once)."""
  archive = data.fetch_sdist(data.VADER, data_dir)
  rows = {}
  for name, member in DOMAINS.items():
    raw = data.read_nested_member(archive, INNER, member).decode("utf-8")
    rows[name] = parse_ground_truth(raw)
  return from_rows(rows)


def load_text_file(path: str | os.PathLike) -> Examples:
  """Your own data: ``label \t text`` lines (label 0/1, or a signed score).

  An optional third column names the domain (accuracy is reported per
  domain). Lines without a tab are skipped (e.g. a header).

  Raises:
    examples.common.data.DataError: the file is not usable text (see
      :func:`~examples.common.data.read_text_file`), a label is not a finite
      number (the message gives the line), or no line has a label and text.
  """
  rows: dict[str, list[tuple[float, str]]] = {}
  text = data.read_text_file(path)
  for number, line in enumerate(text.splitlines(), 1):
    parts = line.split("\t")
    if len(parts) < 2 or not parts[0].strip():
      continue
    try:
      label = float(parts[0])
    except ValueError:
      label = math.nan
    if not math.isfinite(label):
      raise data.DataError(
        f"{str(path)!r} line {number}: the label {parts[0].strip()!r} is not "
        "a finite number (write label<TAB>text[<TAB>domain])"
      )
    score = label if label < 0 or label > 1 else (1.0 if label else -1.0)
    domain = parts[2].strip() if len(parts) > 2 else "all"
    rows.setdefault(domain, []).append((score, parts[1].strip()))
  if not rows:
    raise data.DataError(
      f"{str(path)!r} has no label<TAB>text line (tab-separated)"
    )
  return from_rows(rows)


def stratified_split(
  ex: Examples, val: float = 0.1, test: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Train/validation/test indices, split within each domain."""
  parts: list[list[np.ndarray]] = [[], [], []]
  for d in range(len(ex.domain_names)):
    idx = np.flatnonzero(ex.domains == d)
    v, t, tr = data.split_indices(len(idx), [val, test], seed + d)
    for k, sel in enumerate((tr, v, t)):
      parts[k].append(idx[sel])
  tr, v, t = (np.sort(np.concatenate(p)) for p in parts)
  return tr, v, t


class Encoded:
  """Token ids of a set of examples, padded to ``max_len``.

  Args:
    ex: the examples.
    vocab: the word vocabulary.
    max_len: the padded length (longer sentences are truncated).
  """

  def __init__(self, ex: Examples, vocab: data.TokenVocab, max_len: int):
    seqs = [vocab.encode(data.word_tokens(t)) or [vocab.unk] for t in ex.texts]
    self.ids, self.lengths = data.pad_batch(seqs, max_len, vocab.pad)
    self.lengths = np.maximum(self.lengths, 1)
    self.labels = ex.labels
    self.domains = ex.domains

  def __len__(self) -> int:
    return len(self.labels)

  def batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {
      "ids": self.ids[idx],
      "lengths": self.lengths[idx],
      "labels": self.labels[idx],
    }
