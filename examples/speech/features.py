# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
r"""Log-mel spectrograms in JAX.

The features follow ``librosa.feature.melspectrogram`` with ``center=True,
pad_mode="constant", power=2.0`` and a periodic Hann window, and its
default Slaney mel filterbank (``htk=False, norm="slaney"``); the test
compares both against values computed once with librosa
(``tests/fixtures/speech/logmel_librosa.npz``, made by
``examples/speech/make_fixtures.py``).

For samples :math:`x` scaled to [-1, 1], frames of :math:`N` samples every
:math:`H` samples (the signal padded with :math:`N/2` zeros on each side),
the window :math:`w` and the filterbank :math:`M` (mel bands x FFT bins):

.. math::

  S_{t,k} = \Big|\sum_n w_n\, x_{tH + n - N/2}\, e^{-2\pi i kn/N}\Big|^2,
  \qquad F_{t,m} = \log\Big(\sum_k M_{m,k} S_{t,k} + \epsilon\Big).

The Slaney mel scale is linear below 1 kHz (:math:`m = 3f/200`) and
logarithmic above (:math:`m = 15 + 27\ln(f/1000)/\ln 6.4`); each
triangular filter is scaled by :math:`2/(f_{i+2} - f_i)` so that it has
unit area in Hz (M. Slaney, *Auditory Toolbox*, Interval Research
Technical Report 1998-010).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

LOG_FLOOR = 1e-6


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """How audio becomes features.

  Attributes:
    sample_rate: Hz.
    n_fft: FFT (and window) length in samples.
    hop: samples between frames.
    n_mels: mel bands.
    fmin: lowest band edge, Hz.
    fmax: highest band edge, Hz.
  """

  sample_rate: int = 22050
  n_fft: int = 512
  hop: int = 220
  n_mels: int = 40
  fmin: float = 20.0
  fmax: float = 8000.0

  @classmethod
  def for_rate(cls, sample_rate: int, n_mels: int = 40) -> FeatureConfig:
    """About 23 ms windows every 10 ms at any sample rate."""
    n_fft = 1 << int(np.ceil(np.log2(0.0232 * sample_rate)))
    return cls(
      sample_rate,
      n_fft,
      round(0.01 * sample_rate),
      n_mels,
      20.0,
      min(8000.0, sample_rate / 2),
    )

  def frames(self, n_samples: int) -> int:
    """Frames of a signal of ``n_samples`` (centred frames)."""
    return 1 + n_samples // self.hop


def hz_to_mel(f):
  """Slaney's mel scale (linear below 1 kHz, logarithmic above)."""
  f = np.asarray(f, np.float64)
  lin = f / (200.0 / 3)
  log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
  return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m):
  """Inverse of :func:`hz_to_mel`."""
  m = np.asarray(m, np.float64)
  lin = m * (200.0 / 3)
  log = 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27.0))
  return np.where(m >= 15.0, log, lin)


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
  """Slaney-normalised triangular filters, ``[n_mels, n_fft // 2 + 1]``."""
  freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
  edges = mel_to_hz(
    np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2)
  )
  lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  rise = (freqs[None] - lo) / (mid - lo)
  fall = (hi - freqs[None]) / (hi - mid)
  weights = np.maximum(0.0, np.minimum(rise, fall))
  return (weights * (2.0 / (hi - lo))).astype(np.float32)


def hann(n: int) -> np.ndarray:
  """The periodic Hann window (as for spectral analysis)."""
  return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("cfg",))
def log_mel(audio: jax.Array, cfg: FeatureConfig = FeatureConfig()):
  """Log-mel features of float samples in [-1, 1].

  Args:
    audio: ``[..., samples]``.
    cfg: the feature settings.

  Returns:
    ``[..., 1 + samples // hop, n_mels]``, float32.
  """
  x = jnp.asarray(audio, jnp.float32)
  half = cfg.n_fft // 2
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)])
  n = 1 + (x.shape[-1] - cfg.n_fft) // cfg.hop
  idx = cfg.hop * jnp.arange(n)[:, None] + jnp.arange(cfg.n_fft)[None, :]
  frames = x[..., idx] * hann(cfg.n_fft)
  power = jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2
  mel = power @ jnp.asarray(mel_filterbank(cfg).T)
  return jnp.log(mel + LOG_FLOOR)


def to_float(samples: np.ndarray) -> np.ndarray:
  """16-bit integer samples as float32 in [-1, 1)."""
  if samples.dtype == np.int16:
    return samples.astype(np.float32) / 32768.0
  return samples.astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float | None, seed: int) -> np.ndarray:
  """``x`` plus white Gaussian noise at ``snr_db`` (None: unchanged).

  The signal power is the mean square over the whole utterance.
  """
  if snr_db is None:
    return x
  power = float(np.mean(np.square(x, dtype=np.float64))) or 1e-10
  sigma = np.sqrt(power / 10.0 ** (snr_db / 10.0))
  noise = np.random.default_rng(seed).standard_normal(x.shape)
  return (x + sigma * noise).astype(np.float32)


def batch_log_mel(
  signals: list[np.ndarray], cfg: FeatureConfig, chunk: int = 64
) -> list[np.ndarray]:
  """Log-mel features of many float signals of different lengths.

  The signals are zero-padded to one length per chunk (the frames of each
  signal are then those of the signal alone, since centring pads with
  zeros too), so the transform compiles once.
  """
  if not signals:
    return []
  longest = max(len(s) for s in signals)
  length = -(-longest // (cfg.hop * 16)) * cfg.hop * 16
  out = []
  for i in range(0, len(signals), chunk):
    part = signals[i : i + chunk]
    buf = np.zeros((chunk, length), np.float32)
    for j, s in enumerate(part):
      buf[j, : len(s)] = s
    feats = np.asarray(log_mel(buf, cfg))
    out.extend(feats[j, : cfg.frames(len(s))] for j, s in enumerate(part))
  return out
