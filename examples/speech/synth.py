# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Speech synthesis with eSpeak NG through ``ctypes``.

The ``espeakng-loader==0.2.4`` wheel ships ``libespeak-ng`` 1.52 and its
voice data and only returns their paths; this module drives the library
through its C API (``speak_lib.h``):

* ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, path, 0)`` returns the
  sample rate (22,050 Hz);
* ``espeak_SetSynthCallback`` registers a function that receives the 16-bit
  samples as they are made;
* ``espeak_SetVoiceByName("en-us+m3")`` picks an accent (a language voice)
  and a variant (a voice quality in ``voices/!v``);
  ``espeak_SetParameter`` sets the rate (words per minute) and the pitch
  (0-100);
* ``espeak_Synth`` speaks a UTF-8 string, calling the callback until done.

A *speaker* here is an (accent, variant) pair: 9 English accents times 104
variants. The library keeps a little state from one utterance to the next
(pitch flutter), so the same inputs give audio that differs by a few
samples between runs; the corpus is therefore identified by the checksum of
its generation inputs, never of its audio.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import numpy as np

WHEEL = "espeakng-loader==0.2.4"
ENGINE_VERSION = "1.52.0"
SAMPLE_RATE = 22050

# The English accents of espeak-ng 1.52 (espeak-ng-data/lang/gmw/en*).
ACCENTS = (
  "en",  # British English (the default)
  "en-029",  # Caribbean
  "en-gb-scotland",
  "en-gb-x-gbclan",  # Lancaster
  "en-gb-x-gbcwmd",  # West Midlands
  "en-gb-x-rp",  # Received Pronunciation
  "en-shaw",  # the Shavian-alphabet voice (English phonemes)
  "en-us",
  "en-us-nyc",
)

# The voice variants of espeak-ng 1.52 (espeak-ng-data/voices/!v).
VARIANTS = (
  "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic",
  "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee",
  "Marco", "Mario", "Michael", "Mike", "Mr serious", "Nguyen", "Reed",
  "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky",
  "UniRobot", "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty",
  "belinda", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward",
  "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "grandma", "grandpa",
  "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta",
  "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda", "m1",
  "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "max", "michel",
  "miguel", "mike2", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
  "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5",
  "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph",
  "steph2", "steph3", "travis", "victor", "whisper", "whisperf", "zac",
)  # fmt: skip

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3

_CALLBACK = ctypes.CFUNCTYPE(
  ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Voice(ctypes.Structure):
  _fields_ = [  # the espeak_VOICE layout
    ("name", ctypes.c_char_p),
    ("languages", ctypes.c_char_p),
    ("identifier", ctypes.c_char_p),
    ("gender", ctypes.c_ubyte),
    ("age", ctypes.c_ubyte),
    ("variant", ctypes.c_ubyte),
    ("xx1", ctypes.c_ubyte),
    ("score", ctypes.c_int),
    ("spare", ctypes.c_void_p),
  ]


class EngineUnavailable(RuntimeError):
  """The eSpeak NG wheel is missing or is not the pinned version."""


class Engine:
  """The eSpeak NG library, initialised once per process.

  Args:
    library: path of ``libespeak-ng.so``.
    data_dir: path of ``espeak-ng-data``.
  """

  def __init__(self, library: str, data_dir: str):
    lib = ctypes.CDLL(library)
    lib.espeak_Initialize.argtypes = [
      ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
    ]  # fmt: skip
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_Voice)
    lib.espeak_SetParameter.argtypes = [
      ctypes.c_int,
      ctypes.c_int,
      ctypes.c_int,
    ]
    lib.espeak_Synth.argtypes = [
      ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
      ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    root = os.path.dirname(os.path.abspath(data_dir))
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, root.encode(), 0)
    if rate <= 0:
      raise EngineUnavailable(f"espeak_Initialize failed ({rate}).")
    self.sample_rate = int(rate)
    self.version = lib.espeak_Info(None).decode()
    self._lib = lib
    self._chunks: list[np.ndarray] = []
    self._lock = threading.Lock()

    def collect(wav, n, events):
      del events
      if n > 0:
        self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
      return 0

    self._callback = _CALLBACK(collect)  # kept alive with the engine
    lib.espeak_SetSynthCallback(self._callback)

  def synthesize(
    self, text: str, accent: str, variant: str, rate: int, pitch: int
  ) -> np.ndarray:
    """16-bit mono samples of ``text`` spoken by (accent, variant).

    Args:
      text: what to say.
      accent: one of :data:`ACCENTS`.
      variant: one of :data:`VARIANTS`.
      rate: speaking rate in words per minute (80-450).
      pitch: base pitch, 0-100 (espeak's default is 50).

    Raises:
      ValueError: the engine did not select this voice.
    """
    lib = self._lib
    with self._lock:
      name = f"{accent}+{variant}"
      if lib.espeak_SetVoiceByName(name.encode()) != 0:
        raise ValueError(f"espeak-ng has no voice {name!r}")
      got = lib.espeak_GetCurrentVoice().contents.identifier.decode()
      if not got.lower().endswith(f"/{name}".lower()):
        raise ValueError(f"espeak-ng picked {got!r} for {name!r}")
      lib.espeak_SetParameter(_RATE, int(rate), 0)
      lib.espeak_SetParameter(_PITCH, int(pitch), 0)
      self._chunks.clear()
      raw = text.encode("utf-8") + b"\0"
      err = lib.espeak_Synth(
        raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
      )
      if err != 0:
        raise RuntimeError(f"espeak_Synth failed ({err}) on {text!r}")
      out = (
        np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
      )
      self._chunks.clear()
    return out.astype(np.int16, copy=False)


@functools.cache
def engine() -> Engine:
  """The process's eSpeak NG engine, from the pinned wheel.

  Raises:
    EngineUnavailable: the wheel is missing or another version.
  """
  try:
    from importlib.metadata import version

    import espeakng_loader
  except ImportError:
    raise EngineUnavailable(
      f"The speech corpus is synthesised with eSpeak NG from the "
      f"{WHEEL} wheel. Install it with `pip install '{WHEEL}'` (it is in the "
      "examples extra), or pass --data-file with your own recordings."
    ) from None
  got = version("espeakng-loader")
  if got != WHEEL.split("==")[1]:
    raise EngineUnavailable(
      f"espeakng-loader {got} is installed; the corpus is pinned to {WHEEL} "
      f"(libespeak-ng {ENGINE_VERSION}). Run `pip install '{WHEEL}'`."
    )
  eng = Engine(
    espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
  )
  if eng.version != ENGINE_VERSION or eng.sample_rate != SAMPLE_RATE:
    raise EngineUnavailable(
      f"libespeak-ng {eng.version} at {eng.sample_rate} Hz; expected "
      f"{ENGINE_VERSION} at {SAMPLE_RATE} Hz from {WHEEL}."
    )
  return eng


def has_engine() -> bool:
  """Whether the pinned eSpeak NG wheel is installed and loads."""
  try:
    engine()
  except (EngineUnavailable, OSError):
    return False
  return True


def installed_variants() -> list[str]:
  """The voice variants the installed wheel ships (sorted)."""
  import espeakng_loader

  folder = os.path.join(espeakng_loader.get_data_path(), "voices", "!v")
  return sorted(os.listdir(folder))
