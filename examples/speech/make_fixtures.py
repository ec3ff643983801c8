# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Makes the speech test fixtures in ``tests/fixtures/speech``.

Two parts, run by hand once (the outputs are committed):

1. ``wavs``: eight short utterances spoken by eSpeak NG (the pinned
   ``espeakng-loader`` wheel), eight speakers, written as 16-bit WAV files
   with ``list.tsv`` in the ``--data-file`` format::

     python -m examples.speech.make_fixtures wavs

2. ``librosa``: reference log-mel features computed with librosa, which is
   not a dependency of the project. Install it aside and point Python at it::

     pip install --target /tmp/lr -c constraints.txt librosa==0.11.0
     PYTHONPATH=/tmp/lr:. python -m examples.speech.make_fixtures librosa

   It writes ``logmel_librosa.npz``: the mel filterbank and the log-mel
   features of ``utt0.wav`` at 22,050 Hz, and of a seeded chirp plus
   noise at 16 kHz (the settings :meth:`FeatureConfig.for_rate` picks),
   with librosa's version.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from examples.common.testing import fixture
from examples.speech import features
from examples.speech import input_pipeline

OUT = fixture("speech")
UTTERANCES = (  # text, accent, variant, rate, pitch
  ("one two", "en-us", "m3", 190, 50),
  ("nine", "en-gb-scotland", "f2", 170, 60),
  ("five three", "en-029", "Alex", 190, 40),
  ("seven", "en-gb-x-rp", "klatt", 170, 50),
  ("two six", "en-us-nyc", "f1", 190, 75),
  ("zero", "en", "m1", 170, 25),
  ("eight four", "en-gb-x-gbclan", "david", 190, 50),
  ("three", "en-gb-x-gbcwmd", "Annie", 170, 60),
)


def chirp(sample_rate: int, seconds: float = 0.5) -> np.ndarray:
  """A 200-4000 Hz linear chirp plus seeded noise (for the 16 kHz check)."""
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  f = 200 + (4000 - 200) * t / seconds / 2
  x = 0.5 * np.sin(2 * np.pi * f * t)
  x += 0.01 * np.random.default_rng(0).standard_normal(len(t))
  return x.astype(np.float32)


def make_wavs() -> None:
  from examples.speech import synth

  eng = synth.engine()
  OUT.mkdir(parents=True, exist_ok=True)
  lines = ["# path<TAB>transcript<TAB>speaker (eSpeak NG 1.52, 22050 Hz)"]
  for i, (text, accent, variant, rate, pitch) in enumerate(UTTERANCES):
    pcm = eng.synthesize(text, accent, variant, rate, pitch)
    input_pipeline.write_wav(OUT / f"utt{i}.wav", pcm, eng.sample_rate)
    lines.append(f"utt{i}.wav\t{text}\t{accent}+{variant}")
  (OUT / "list.tsv").write_text("\n".join(lines) + "\n")


def _librosa_log_mel(lr, x: np.ndarray, cfg: features.FeatureConfig):
  mel = lr.feature.melspectrogram(
    y=x,
    sr=cfg.sample_rate,
    n_fft=cfg.n_fft,
    hop_length=cfg.hop,
    window="hann",
    center=True,
    pad_mode="constant",
    power=2.0,
    n_mels=cfg.n_mels,
    fmin=cfg.fmin,
    fmax=cfg.fmax,
    htk=False,
    norm="slaney",
  )
  return np.log(mel + features.LOG_FLOOR).T.astype(np.float32)


def make_librosa() -> None:
  import librosa

  pcm, rate = input_pipeline.read_wav(OUT / "utt0.wav")
  c22 = features.FeatureConfig()
  c16 = features.FeatureConfig.for_rate(16000)
  x22 = features.to_float(pcm)
  x16 = chirp(16000)
  fb = {
    c.sample_rate: librosa.filters.mel(
      sr=c.sample_rate,
      n_fft=c.n_fft,
      n_mels=c.n_mels,
      fmin=c.fmin,
      fmax=c.fmax,
      htk=False,
      norm="slaney",
    ).astype(np.float32)
    for c in (c22, c16)
  }
  np.savez_compressed(
    OUT / "logmel_librosa.npz",
    librosa_version=np.asarray(librosa.__version__),
    config_22050=np.asarray(str(dataclasses.asdict(c22))),
    config_16000=np.asarray(str(dataclasses.asdict(c16))),
    fb_22050=fb[22050],
    fb_16000=fb[16000],
    logmel_22050=_librosa_log_mel(librosa, x22, c22),
    logmel_16000=_librosa_log_mel(librosa, x16, c16),
  )
  assert rate == c22.sample_rate


if __name__ == "__main__":
  what = sys.argv[1:] or ["wavs", "librosa"]
  if "wavs" in what:
    make_wavs()
  if "librosa" in what:
    make_librosa()
