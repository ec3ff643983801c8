# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Debian package descriptions as (document, summary) pairs.

Every Debian package has a one-line synopsis and a long description. The
English texts of a release are published in ``Translation-en``, one
RFC 822-style stanza per package::

  Package: libssl-dev
  Description-md5: 27044468897c45b271f879c7c6e135fe
  Description-en: Secure Sockets Layer toolkit - development files
   This package is part of the OpenSSL project's implementation of the SSL
   ...

The long description (the indented lines; `` .`` separates paragraphs) is
the document and the synopsis (the first line) is its summary. bookworm
``main`` has 63,956 stanzas, 61,486 of them with a distinct
``Description-md5``; stanzas that repeat a description (e.g. the
``libboost1.74-doc`` and ``libboost1.81-doc`` pages) are kept once.

**Fetching.** Images built for containers often set ``Acquire::Languages
"none"``, so the file must be asked for: :func:`fetch_lists` runs ``apt-get
update -o Acquire::Languages=en`` with a private configuration
(:func:`examples.common.debian.apt_config`: ``APT_CONFIG`` pointing at a file
in the cache that sets its own ``sources.list``, ``Dir::State::Lists``,
``Dir::Cache`` and an empty ``apt.conf.d``), so the system's apt state and
hooks are never touched. The lists are kept compressed and read with
``/usr/lib/apt/apt-helper cat-file``.

**Splitting.** Sibling packages (``-dev``, ``-doc``, ``-data``) share most of
their description, so a random split by package would leak test documents
into training. ``Translation-en`` has no ``Source:`` field, so the source
package comes from the ``Packages`` index of the same fetch (a stanza
without ``Source:`` is its own source), and :func:`split_by_source` assigns
whole source packages to the test, validation and training sets. Stanzas
whose package is not in ``Packages`` (packages built for other
architectures only) are left out.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples.common import data
from examples.common import debian
from examples.common import subword
from examples.common.debian import APT_HELPER  # noqa: F401 (re-exported)
from examples.common.debian import COMPONENT
from examples.common.debian import MIRROR
from examples.common.debian import SUITE
from examples.common.debian import read_index


@dataclasses.dataclass(frozen=True)
class Doc:
  """One package description.

  Attributes:
    package: the binary package.
    md5: its ``Description-md5``.
    summary: the one-line synopsis.
    document: the long description, paragraphs joined by a space.
    source: the source package (the package itself when unknown).
  """

  package: str
  md5: str
  summary: str
  document: str
  source: str = ""


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def stanzas(text: str) -> Iterator[dict[str, str]]:
  """The stanzas of a Debian control-format index (``Packages``,
  ``Translation-en``): field -> value, continuation lines joined by ``\\n``
  with their leading space kept."""
  for block in re.split(r"\n\s*\n", text):
    fields: dict[str, str] = {}
    key = None
    for line in block.splitlines():
      if line[:1] in (" ", "\t") and key is not None:
        fields[key] += "\n" + line
      elif ":" in line:
        key, value = line.split(":", 1)
        fields[key] = value.strip()
    if fields:
      yield fields


def long_description(lines: Iterable[str]) -> str:
  """The text of a long description's indented lines: `` .`` (a paragraph
  break) and runs of whitespace become single spaces."""
  words = []
  for line in lines:
    line = line.strip()
    if line != ".":
      words.extend(line.split())
  return " ".join(words)


def parse_translations(text: str) -> tuple[list[Doc], dict[str, int]]:
  """Documents of a ``Translation-en`` file, deduplicated by md5.

  Returns:
    ``(docs, counts)``: the first stanza of each ``Description-md5`` that
    has a long description, and the counts ``stanzas``, ``distinct_md5``,
    ``no_long_description``.
  """
  docs, seen, counts = [], set(), {"stanzas": 0, "no_long_description": 0}
  for st in stanzas(text):
    if "Description-en" not in st or "Package" not in st:
      continue
    counts["stanzas"] += 1
    md5 = st.get("Description-md5", "")
    if md5 in seen:
      continue
    seen.add(md5)
    synopsis, *body = st["Description-en"].split("\n")
    document = long_description(body)
    if not document or not synopsis.strip():
      counts["no_long_description"] += 1
      continue
    docs.append(Doc(st["Package"], md5, synopsis.strip(), document))
  counts["distinct_md5"] = len(seen)
  return docs, counts


def parse_sources(text: str) -> dict[str, str]:
  """Binary package -> source package, from a ``Packages`` index
  (``Source: name (version)`` loses its version; no field: the package)."""
  out = {}
  for st in stanzas(text):
    if "Package" in st:
      src = st.get("Source", "").split(" ", 1)[0] or st["Package"]
      out.setdefault(st["Package"], src)
  return out


def attach_sources(
  docs: Sequence[Doc], sources: dict[str, str] | None
) -> tuple[list[Doc], int]:
  """``docs`` with their source package; those missing from ``sources`` are
  dropped (with ``sources=None`` each package is its own source).

  Returns:
    ``(docs, dropped)``.
  """
  if sources is None:
    return [dataclasses.replace(d, source=d.package) for d in docs], 0
  out = [
    dataclasses.replace(d, source=sources[d.package])
    for d in docs
    if d.package in sources
  ]
  return out, len(docs) - len(out)


def split_by_source(
  docs: Sequence[Doc], test_size: int, val_size: int, seed: int = 0
) -> tuple[list[Doc], list[Doc], list[Doc]]:
  """``(train, val, test)``: whole source packages, in a seeded random order,
  fill the test set up to at least ``test_size`` documents, then the
  validation set up to ``val_size``; the rest is training data."""
  groups: dict[str, list[Doc]] = {}
  for d in docs:
    groups.setdefault(d.source, []).append(d)
  names = sorted(groups)
  order = np.random.default_rng(seed).permutation(len(names))
  test, val, train = [], [], []
  for i in order:
    g = groups[names[i]]
    if len(test) < test_size:
      test.extend(g)
    elif len(val) < val_size:
      val.extend(g)
    else:
      train.extend(g)
  return train, val, test


# ---------------------------------------------------------------------------
# Fetching and reading
# ---------------------------------------------------------------------------


def fetch_lists(
  cache: str | os.PathLike | None = None,
  mirror: str = MIRROR,
  suite: str = SUITE,
) -> tuple[Path, Path]:
  """``Translation-en`` and ``Packages`` of ``suite``/main, fetched once.

  Runs ``apt-get update -o Acquire::Languages=en`` with a private
  configuration in ``<cache>/debian-descriptions/<suite>`` (nothing outside
  it is written) and reuses the lists on later calls.

  Returns:
    The paths of the (compressed) ``Translation-en`` and ``Packages`` lists.

  Raises:
    DataUnavailable: no ``apt-get``, or the update failed; the message holds
      the command to run by hand.
  """
  root = data.cache_dir(cache) / "debian-descriptions" / suite
  lists = root / "lists"
  tr_glob = f"*_dists_{suite}_{COMPONENT}_i18n_Translation-en*"
  pk_glob = debian.packages_glob(suite)
  tr, pk = debian.find_list(lists, tr_glob), debian.find_list(lists, pk_glob)
  if tr is not None and pk is not None:
    return tr, pk
  if shutil.which("apt-get") is None:
    raise data.DataUnavailable(
      "Fetching Debian's package descriptions needs apt-get (Debian/Ubuntu). "
      "Elsewhere, download dists/bookworm/main/i18n/Translation-en.bz2 and "
      "binary-amd64/Packages.xz from a Debian mirror and pass them with "
      "--data-file and --packages-file."
    )
  conf = debian.apt_config(root, mirror, suite)
  args = ["update", "-o", "Acquire::Languages=en"]
  print(
    f"Fetching Debian {suite} package descriptions (once, about 15 MB) "
    f"into {root} ...",
    file=sys.stderr,
  )
  proc = debian.apt_get(conf, args)
  tr, pk = debian.find_list(lists, tr_glob), debian.find_list(lists, pk_glob)
  if proc.returncode != 0 or tr is None or pk is None:
    raise data.DataUnavailable(
      debian.failure(
        f"Could not fetch the {suite} package lists", conf, args, proc
      )
    )
  record = {p.name: data.sha256_of(p) for p in (tr, pk)}
  (root / "fetched.json").write_text(json.dumps(record, indent=1))
  return tr, pk


@dataclasses.dataclass
class Corpus:
  """The documents and where they came from.

  Attributes:
    docs: deduplicated documents with their source packages.
    origin: a description of the files read.
    counts: stanza counts (see :func:`parse_translations`) and ``dropped``
      (not in ``Packages``).
    by_source: whether sources came from a ``Packages`` index.
  """

  docs: list[Doc]
  origin: str
  counts: dict[str, int]
  by_source: bool


def load_corpus(
  data_file: str | os.PathLike | None = None,
  packages_file: str | os.PathLike | None = None,
  data_dir: str | None = None,
  mirror: str = MIRROR,
  suite: str = SUITE,
) -> Corpus:
  """The corpus from the given files, or from a (cached) fetch.

  Args:
    data_file: a ``Translation-en`` file (plain or compressed); None: fetch.
    packages_file: the matching ``Packages`` index; with ``data_file`` and
      without it, every package is its own source.
    data_dir: the download cache.
    mirror: the Debian mirror to fetch from.
    suite: the release.

  Raises:
    ValueError: ``data_file`` holds no description.
  """
  if data_file is None:
    data_file, packages_file = fetch_lists(data_dir, mirror, suite)
  docs, counts = parse_translations(read_index(data_file))
  if not docs:
    raise ValueError(f"{data_file} holds no Translation-en stanza")
  sources = None
  if packages_file is not None:
    sources = parse_sources(read_index(packages_file))
    if not sources:
      raise ValueError(f"{packages_file} holds no Packages stanza")
  docs, counts["dropped"] = attach_sources(docs, sources)
  if not docs:
    raise ValueError(f"no package of {data_file} is in {packages_file}")
  origin = str(data_file) + (f" + {packages_file}" if packages_file else "")
  return Corpus(docs, origin, counts, sources is not None)


# ---------------------------------------------------------------------------
# Subword vocabulary
# ---------------------------------------------------------------------------

PAD_ID, BOS_ID, EOS_ID, UNK_ID = (
  subword.PAD_ID,
  subword.BOS_ID,
  subword.EOS_ID,
  subword.UNK_ID,
)


def train_tokenizer(
  texts: Sequence[str], vocab_size: int, path: str | os.PathLike
) -> Path:
  """A SentencePiece BPE model of ``texts`` (case-folded NFKC), saved at
  ``path`` (``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3)."""
  return subword.train(texts, vocab_size, path)


def cached_tokenizer(
  texts: Sequence[str], vocab_size: int, cache: str | os.PathLike | None
):
  """The tokenizer of ``texts``, trained once per (texts, size) and kept in
  ``<cache>/debian-descriptions/spm``."""
  return subword.cached(texts, vocab_size, cache, "debian-descriptions")


def tokenizer_texts(docs: Sequence[Doc], doc_chars: int) -> list[str]:
  """What the tokenizer learns from: each summary and the start of each
  document (the model reads only the first tokens)."""
  return [d.summary for d in docs] + [d.document[:doc_chars] for d in docs]


class Encoded:
  """Ids of documents (source) and summaries (target).

  The source is the document's first ``src_len`` pieces; the decoder input
  is ``<s>`` + summary and the target summary + ``</s>``, both padded to
  ``tgt_len``.
  """

  def __init__(self, docs: Sequence[Doc], sp, src_len: int, tgt_len: int):
    self.docs = list(docs)
    # ~4 characters a piece: cut long documents before encoding them.
    src = sp.encode([d.document[: 8 * src_len] for d in self.docs])
    tgt = sp.encode([d.summary for d in self.docs])
    src = [s[:src_len] or [UNK_ID] for s in src]
    tgt = [t[: tgt_len - 1] for t in tgt]
    self.src, self.src_len = data.pad_batch(src, src_len)
    self.tgt_in, _ = data.pad_batch([[BOS_ID, *t] for t in tgt], tgt_len)
    self.tgt_out, _ = data.pad_batch([[*t, EOS_ID] for t in tgt], tgt_len)

  def __len__(self) -> int:
    return len(self.docs)

  def batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {
      "src": self.src[idx],
      "src_len": self.src_len[idx],
      "tgt_in": self.tgt_in[idx],
      "tgt_out": self.tgt_out[idx],
    }


def lead(document: str, words: int) -> str:
  """The lead baseline: the first ``words`` words of the document."""
  return " ".join(document.split()[:words])
