# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""A synthetic speech corpus, or your own recordings, as log-mel features.

**The synthesised corpus.** No speech corpus ships in the package
registries, so the corpus is spoken by a real text-to-speech engine, eSpeak
NG 1.52 from the pinned ``espeakng-loader==0.2.4`` wheel (see
:mod:`.synth`). Its generation inputs, every utterance's text, speaker,
rate, pitch, noise level and noise seed, are drawn from ``--corpus-seed``
and listed in a *manifest*; the SHA-256 of the manifest (not of the audio,
which differs by a few samples from run to run) names the corpus, and the
default corpus's digest is pinned in :data:`DEFAULT_SHA256`.

* Utterances: digit strings of 2-4 digits (``"four one nine"``) and short
  phrases (:data:`PHRASES`).
* Speakers: (accent, variant) pairs, 9 English accents x 104 voice
  variants. The speakers of the validation and test sets are *held out*:
  their variants (:data:`VAL_VARIANTS`, :data:`TEST_VARIANTS`, each with
  any accent) never speak in training.
* Rates 130-210 words per minute, pitches 25-75 (espeak's scale, default
  50), and white Gaussian noise at 20, 10 or 5 dB SNR on three quarters of
  the utterances (the rest clean).

The log-mel features (:mod:`.features`) of the noisy audio are cached as
``speech/corpus-<digest>.npz`` in the data cache (``--data-dir``,
``$OPTAXCLIP_DATA`` or ``data/``), so the engine runs once.

**Your own data.** ``--data-file list.tsv`` reads
``path.wav<TAB>transcript[<TAB>speaker]`` lines (paths relative to the
list; 16-bit PCM mono WAV, one sample rate); the speakers are split into
training, validation and test speakers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import time
import wave
from pathlib import Path

import numpy as np

from examples.common import data
from examples.speech import features
from examples.speech import synth

DIGITS = (
  "zero", "one", "two", "three", "four",
  "five", "six", "seven", "eight", "nine",
)  # fmt: skip
PHRASES = (
  "turn on the light", "turn off the radio", "open the door",
  "close the window", "call my sister", "send a message", "play some music",
  "stop the music", "what time is it", "set an alarm", "good morning",
  "good night", "thank you very much", "see you later", "where is the car",
  "the weather is cold", "it is raining", "bring me some water",
  "read the news", "go back home", "start the timer", "cancel that",
  "yes please", "no thanks", "move to the left", "move to the right",
  "speak more slowly", "the train is late", "make a cup of tea",
  "find my keys", "show me the map", "lock the front door",
  "check my email", "how far is the shop", "take a picture",
  "order more paper", "the meeting is at noon", "wake me up early",
  "clean the kitchen", "feed the cat",
)  # fmt: skip

# Held-out voice variants: speakers (any accent, these variants) of the
# validation and test sets, never heard in training.
TEST_VARIANTS = (
  "Andrea", "benjamin", "f4", "iven3", "klatt3", "m6", "steph2", "travis",
)  # fmt: skip
VAL_VARIANTS = ("Gene", "f5", "m7", "shelby")
TRAIN_VARIANTS = tuple(
  v for v in synth.VARIANTS if v not in TEST_VARIANTS + VAL_VARIANTS
)
RATES = (130, 150, 170, 190, 210)
PITCHES = (25, 40, 50, 60, 75)
SNRS = (None, 20, 10, 5)  # dB; None: clean
SPLITS = ("train", "val", "test")

# The default corpus: sizes, seed and the digest of its manifest.
DEFAULT_SIZES = (3000, 200, 400)
DEFAULT_SEED = 0
DEFAULT_SHA256 = (
  "1b8b59d42e016dbd638acc37b50b59a5c411a00158b58547ffa162a03eb16559"
)


def normalize_text(text: str) -> str:
  """Lower case, letters, apostrophes and single spaces only."""
  text = re.sub(r"[^a-z' ]+", " ", text.lower())
  return re.sub(r" +", " ", text).strip()


def manifest(
  sizes: tuple[int, int, int] = DEFAULT_SIZES, seed: int = DEFAULT_SEED
) -> list[dict]:
  """The generation inputs of every utterance, drawn from ``seed``.

  Args:
    sizes: utterances in the training, validation and test sets.
    seed: the seed of every choice.

  Returns:
    One dict per utterance: ``text``, ``accent``, ``variant``, ``rate``,
    ``pitch``, ``snr`` (dB or None), ``noise_seed`` and ``split``.
  """
  rng = np.random.default_rng(seed)
  pools = (TRAIN_VARIANTS, VAL_VARIANTS, TEST_VARIANTS)
  out = []
  for split, n, variants in zip(SPLITS, sizes, pools):
    for _ in range(n):
      if rng.random() < 0.65:
        k = int(rng.integers(2, 5))
        text = " ".join(DIGITS[int(d)] for d in rng.integers(0, 10, k))
      else:
        text = PHRASES[int(rng.integers(len(PHRASES)))]
      out.append(
        {
          "text": text,
          "accent": synth.ACCENTS[int(rng.integers(len(synth.ACCENTS)))],
          "variant": variants[int(rng.integers(len(variants)))],
          "rate": RATES[int(rng.integers(len(RATES)))],
          "pitch": PITCHES[int(rng.integers(len(PITCHES)))],
          "snr": SNRS[int(rng.integers(len(SNRS)))],
          "noise_seed": int(rng.integers(2**31)),
          "split": split,
        }
      )
  return out


def manifest_sha256(items: list[dict]) -> str:
  """SHA-256 of the manifest and the pinned engine, as canonical JSON."""
  blob = json.dumps(
    {"engine": synth.WHEEL, "utterances": items},
    sort_keys=True,
    separators=(",", ":"),
  )
  return hashlib.sha256(blob.encode()).hexdigest()


@dataclasses.dataclass
class Corpus:
  """Utterances as features, with transcripts, speakers and splits.

  Attributes:
    feats: one ``[frames, n_mels]`` float32 array per utterance.
    texts: normalised transcripts.
    speakers: speaker names (``accent+variant`` for the synthetic corpus).
    split: 0 train, 1 validation, 2 test, per utterance.
    snr: the noise level in dB per utterance (inf: clean).
    name: where the corpus came from, for messages.
  """

  feats: list[np.ndarray]
  texts: list[str]
  speakers: list[str]
  split: np.ndarray
  snr: np.ndarray
  name: str = "corpus"

  def __len__(self) -> int:
    return len(self.texts)

  def indices(self, split: str) -> np.ndarray:
    return np.flatnonzero(self.split == SPLITS.index(split))


def synthesize(items: list[dict], cfg: features.FeatureConfig) -> Corpus:
  """Speaks every utterance of a manifest and returns its features."""
  eng = synth.engine()
  signals = []
  bar = _progress(len(items), "synthesising")
  for it in items:
    pcm = eng.synthesize(
      it["text"], it["accent"], it["variant"], it["rate"], it["pitch"]
    )
    x = features.to_float(pcm)
    signals.append(features.add_noise(x, it["snr"], it["noise_seed"]))
    if bar is not None:
      bar.update(1)
  if bar is not None:
    bar.close()
  return Corpus(
    features.batch_log_mel(signals, cfg),
    [normalize_text(it["text"]) for it in items],
    [f"{it['accent']}+{it['variant']}" for it in items],
    np.asarray([SPLITS.index(it["split"]) for it in items], np.int32),
    np.asarray(
      [np.inf if it["snr"] is None else it["snr"] for it in items], np.float32
    ),
    "espeak-ng",
  )


def _progress(total: int, desc: str):
  if not sys.stderr.isatty():
    return None
  from tqdm.auto import tqdm

  return tqdm(total=total, desc=desc, leave=False)


def save(corpus: Corpus, path: Path, digest: str) -> None:
  """Writes the features (float16) and labels to ``path`` atomically."""
  lengths = np.asarray([len(f) for f in corpus.feats], np.int64)
  tmp = path.with_suffix(".tmp.npz")
  np.savez(
    tmp,
    feats=np.concatenate(corpus.feats).astype(np.float16),
    lengths=lengths,
    texts=np.asarray(corpus.texts),
    speakers=np.asarray(corpus.speakers),
    split=corpus.split,
    snr=corpus.snr,
    sha256=np.asarray(digest),
  )
  os.replace(tmp, path)


def load(path: str | os.PathLike, digest: str | None = None) -> Corpus:
  """Reads a corpus written by :func:`save` (checking its digest)."""
  with np.load(path) as z:
    if digest is not None and str(z["sha256"]) != digest:
      raise ValueError(f"{path} holds another corpus")
    cuts = np.cumsum(z["lengths"])[:-1]
    feats = np.split(z["feats"].astype(np.float32), cuts)
    return Corpus(
      feats,
      [str(t) for t in z["texts"]],
      [str(s) for s in z["speakers"]],
      z["split"].astype(np.int32),
      z["snr"].astype(np.float32),
      "espeak-ng",
    )


def load_synthetic(
  sizes: tuple[int, int, int] = DEFAULT_SIZES,
  seed: int = DEFAULT_SEED,
  cfg: features.FeatureConfig | None = None,
  data_dir: str | None = None,
) -> Corpus:
  """The synthesised corpus, from the cache or made once (about a minute).

  Raises:
    data.DataUnavailable: the eSpeak NG wheel is missing.
  """
  cfg = cfg or features.FeatureConfig()
  items = manifest(sizes, seed)
  digest = manifest_sha256(items)
  if (tuple(sizes), seed) == (DEFAULT_SIZES, DEFAULT_SEED) and (
    digest != DEFAULT_SHA256
  ):
    print(
      f"Warning: the default speech manifest has SHA-256 {digest}, not the "
      f"pinned {DEFAULT_SHA256}; this numpy draws other inputs, so results "
      "are not comparable with examples/RESULTS.md.",
      file=sys.stderr,
    )
  feat_key = hashlib.sha256(
    json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()
  ).hexdigest()[:8]
  folder = data.cache_dir(data_dir) / "speech"
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / f"corpus-{digest[:16]}-{feat_key}.npz"
  if path.is_file():
    try:
      return load(path, digest)
    except (ValueError, OSError, KeyError):
      pass  # a stale or damaged file: make it again
  try:
    eng = synth.engine()
  except synth.EngineUnavailable as e:
    raise data.DataUnavailable(str(e)) from None
  t0 = time.perf_counter()
  print(
    f"Synthesising {len(items)} utterances with eSpeak NG {eng.version} "
    f"(once) into {path} ...",
    file=sys.stderr,
  )
  corpus = synthesize(items, cfg)
  save(corpus, path, digest)
  print(f"  done in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
  return corpus


# ---------------------------------------------------------------------------
# Your own recordings
# ---------------------------------------------------------------------------


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
  """The samples (int16) and sample rate of a 16-bit PCM mono WAV file."""
  with wave.open(str(path), "rb") as w:
    if w.getsampwidth() != 2 or w.getnchannels() != 1:
      raise ValueError(
        f"{path}: expected 16-bit mono PCM, got {8 * w.getsampwidth()}-bit "
        f"with {w.getnchannels()} channels"
      )
    rate = w.getframerate()
    pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
  return pcm.astype(np.int16), rate


def write_wav(path: str | os.PathLike, pcm: np.ndarray, rate: int) -> None:
  """Writes int16 mono samples as a PCM WAV file."""
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(np.asarray(pcm, "<i2").tobytes())


def read_list(path: str | os.PathLike) -> list[tuple[Path, str, str]]:
  """``(wav path, transcript, speaker)`` of a ``--data-file`` list.

  Blank lines and ``#`` comments are skipped; without a speaker column each
  file is its own speaker.

  Raises:
    ValueError: no usable line, a line without a transcript, or a missing
      WAV file.
  """
  path = Path(path)
  rows = []
  for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    parts = [p.strip() for p in line.split("\t")]
    if len(parts) < 2 or not normalize_text(parts[1]):
      raise ValueError(
        f"{path}:{n}: expected path.wav<TAB>transcript[<TAB>speaker]"
      )
    wav = (path.parent / parts[0]).resolve()
    if not wav.is_file():
      raise ValueError(f"{path}:{n}: no such file {wav}")
    speaker = parts[2] if len(parts) > 2 and parts[2] else parts[0]
    rows.append((wav, normalize_text(parts[1]), speaker))
  if not rows:
    raise ValueError(f"{path} lists no recordings")
  return rows


def split_speakers(
  speakers: list[str], val: float = 0.1, test: float = 0.1, seed: int = 0
) -> np.ndarray:
  """Split ids (0 train, 1 val, 2 test) with no speaker in two splits.

  At least one speaker goes to each of validation and test.

  Raises:
    ValueError: fewer than 3 speakers.
  """
  names = sorted(set(speakers))
  if len(names) < 3:
    raise ValueError(
      f"need at least 3 speakers to hold some out, got {len(names)}"
    )
  perm = np.random.default_rng(seed).permutation(len(names))
  n_val = max(1, round(val * len(names)))
  n_test = max(1, round(test * len(names)))
  which = np.zeros(len(names), np.int32)
  which[perm[:n_test]] = 2
  which[perm[n_test : n_test + n_val]] = 1
  of = {s: int(which[i]) for i, s in enumerate(names)}
  return np.asarray([of[s] for s in speakers], np.int32)


def load_list(
  path: str | os.PathLike, n_mels: int = 40, seed: int = 0
) -> Corpus:
  """Features of the recordings of a ``--data-file`` list."""
  rows = read_list(path)
  signals, rate = [], None
  for wav, _, _ in rows:
    pcm, r = read_wav(wav)
    if rate is not None and r != rate:
      raise ValueError(f"{wav} is at {r} Hz, the others at {rate} Hz")
    rate = r
    signals.append(features.to_float(pcm))
  cfg = features.FeatureConfig.for_rate(rate, n_mels)
  speakers = [s for _, _, s in rows]
  return Corpus(
    features.batch_log_mel(signals, cfg),
    [t for _, t, _ in rows],
    speakers,
    split_speakers(speakers, seed=seed),
    np.full(len(rows), np.inf, np.float32),
    str(path),
  )


# ---------------------------------------------------------------------------
# Model inputs
# ---------------------------------------------------------------------------


class CharTable:
  """Characters to CTC label ids: 0 is the blank, characters from 1."""

  def __init__(self, chars):
    self.vocab = data.CharVocab(chars)

  @classmethod
  def from_texts(cls, texts) -> CharTable:
    return cls(sorted(set("".join(texts))))

  def __len__(self) -> int:
    """Classes, the blank included."""
    return len(self.vocab) + 1

  def encode(self, text: str) -> np.ndarray:
    return self.vocab.encode(text) + 1

  def decode(self, ids) -> str:
    return self.vocab.decode(int(i) - 1 for i in ids if int(i) > 0)

  def to_json(self) -> dict:
    return self.vocab.to_json()


@dataclasses.dataclass
class Normalizer:
  """Per-band mean and standard deviation of the training features."""

  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, feats: list[np.ndarray]) -> Normalizer:
    x = np.concatenate(feats).astype(np.float64)
    return cls(
      x.mean(0).astype(np.float32),
      np.maximum(x.std(0), 1e-3).astype(np.float32),
    )

  def __call__(self, f: np.ndarray) -> np.ndarray:
    return (f - self.mean) / self.std


class Encoded:
  """Normalised, padded features and labels of a set of utterances.

  Args:
    corpus: the corpus.
    idx: which utterances.
    chars: the label table.
    norm: the feature normaliser.
    max_frames: the padded length (a multiple of the model's stride);
      longer utterances are cut.
    max_label: the padded label length.
  """

  def __init__(
    self,
    corpus: Corpus,
    idx: np.ndarray,
    chars: CharTable,
    norm: Normalizer,
    max_frames: int,
    max_label: int,
  ):
    n, d = len(idx), corpus.feats[0].shape[1]
    self.feats = np.zeros((n, max_frames, d), np.float32)
    self.frames = np.zeros(n, np.int32)
    self.labels = np.zeros((n, max_label), np.int32)
    self.label_len = np.zeros(n, np.int32)
    for j, i in enumerate(idx):
      f = norm(corpus.feats[i])[:max_frames]
      self.feats[j, : len(f)] = f
      self.frames[j] = len(f)
      lab = chars.encode(corpus.texts[i])[:max_label]
      self.labels[j, : len(lab)] = lab
      self.label_len[j] = len(lab)
    self.texts = [corpus.texts[i] for i in idx]
    self.speakers = [corpus.speakers[i] for i in idx]
    self.snr = corpus.snr[idx]

  def __len__(self) -> int:
    return len(self.texts)

  def batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {
      "feats": self.feats[idx],
      "frames": self.frames[idx],
      "labels": self.labels[idx],
      "label_len": self.label_len[idx],
    }
