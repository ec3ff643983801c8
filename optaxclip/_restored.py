# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Checks that a (restored) state was made by the same configuration.

A checkpoint restored into a differently configured strategy (another
window, another warm-up length) would otherwise run on silently: Flax's
serialisation fills any template with the saved arrays, and out-of-range
indices into a too-short buffer are clamped under ``jit``. The strategies
whose state size follows a static argument compare it on every ``update``;
the check reads shapes only, so it costs nothing at run time.
"""

from __future__ import annotations

from typing import Any


def check_config(
  fn: str,
  field: str,
  got: tuple[int, ...],
  want: tuple[int, ...],
  got_config: str,
  want_config: str,
) -> None:
  """Raises a ValueError naming both configurations when shapes differ.

  Args:
    fn: the public strategy name.
    field: the state field compared.
    got: its shape in the state passed to ``update``.
    want: the shape this transformation's ``init`` makes.
    got_config: the configuration that made the state, e.g. ``window=8``.
    want_config: this transformation's configuration, e.g. ``window=16``.

  Raises:
    ValueError: the shapes or the configurations differ.
  """
  if tuple(got) != tuple(want) or got_config != want_config:
    raise ValueError(
      f"optaxclip.{fn}: the state passed to update was made by "
      f"{fn}({got_config}) ({field} has shape {tuple(got)}), but this "
      f"transformation is {fn}({want_config}) (shape {tuple(want)}). A "
      "checkpoint restores only into the configuration that wrote it: "
      f"build {fn}({got_config}) to resume, or start from tx.init(params)."
    )


def shape(x: Any) -> tuple[int, ...]:
  return tuple(getattr(x, "shape", ()))
