# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""SentencePiece subword vocabularies, trained once and cached.

The summarization and translation examples train a SentencePiece model
(Kudo and Richardson, `SentencePiece <https://arxiv.org/abs/1808.06226>`_,
2018) on their training split only. The model is kept under
``<cache>/<name>/spm/<hash>.model``, where the hash covers the texts, the
size and the options, so a second run with the same data loads it.
Special ids are fixed: ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from examples.common import data

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def train(
  texts: Sequence[str],
  vocab_size: int,
  path: str | os.PathLike,
  *,
  model_type: str = "bpe",
  normalization: str = "nmt_nfkc_cf",
) -> Path:
  """Trains a SentencePiece model of ``texts`` and saves it at ``path``.

  Args:
    texts: the training sentences.
    vocab_size: the number of pieces, special ids included.
    path: where the model goes.
    model_type: ``bpe`` or ``unigram``.
    normalization: SentencePiece's rule: ``nmt_nfkc_cf`` (NFKC and case
      folding) or ``nmt_nfkc`` (keeps case).

  Raises:
    RuntimeError: SentencePiece cannot build the model (e.g. more pieces
      than the text allows).
  """
  import sentencepiece as spm

  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "wb") as f:
    spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts),
      model_writer=f,
      vocab_size=vocab_size,
      model_type=model_type,
      normalization_rule_name=normalization,
      character_coverage=0.9995,
      pad_id=PAD_ID,
      bos_id=BOS_ID,
      eos_id=EOS_ID,
      unk_id=UNK_ID,
      max_sentence_length=1 << 14,
      num_threads=2,
      minloglevel=2,
    )
  return path


def cached(
  texts: Sequence[str],
  vocab_size: int,
  cache: str | os.PathLike | None,
  name: str,
  **options,
):
  """The SentencePiece processor of ``texts``, trained once.

  Args:
    texts: the training sentences.
    vocab_size: the number of pieces.
    cache: the data cache (see :func:`examples.common.data.cache_dir`).
    name: the data set's folder in the cache.
    **options: more arguments of :func:`train`.

  Raises:
    ValueError: the model cannot be built with ``vocab_size`` pieces.
  """
  import sentencepiece as spm

  h = hashlib.sha256(str(vocab_size).encode())
  if options:  # the summarization models of before keep their hash
    h.update(repr(sorted(options.items())).encode())
  for t in texts:
    h.update(t.encode() + b"\0")
  path = data.cache_dir(cache) / name / "spm" / f"{h.hexdigest()[:16]}.model"
  if not path.is_file():
    try:
      tmp = train(texts, vocab_size, path.with_suffix(".tmp"), **options)
    except RuntimeError as e:  # e.g. more pieces than the text allows
      raise ValueError(f"--vocab-size {vocab_size}: {e}") from None
    tmp.replace(path)
  return spm.SentencePieceProcessor(model_file=str(path))
