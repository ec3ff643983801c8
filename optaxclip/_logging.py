# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Statistics as flat ``{"<name>/<field>": float}`` dicts for metric writers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optaxclip import _diagnostics


def flatten_stats(
  stats: Mapping[str, Any], prefix: str = ""
) -> dict[str, float]:
  """Flattens :func:`optaxclip.stats` into ``{"<name>/<field>": float}``.

  Metric writers (TensorBoard's ``add_scalar``, Weights & Biases'
  ``wandb.log``, CLU's ``metric_writers.write_scalars``) take flat
  ``{tag: number}`` dicts. This turns the statistics of every clipper in an
  optimizer state into one, fetching all values from the device in a single
  transfer. Keys are the same as :class:`optaxclip.StatsHistory`'s:

  * ``"<name>/<field>"`` for each field of a statistics tuple, e.g.
    ``"clip_by_global_norm/norm_before"``;
  * ``"<name>/<field>/<path>"`` for each entry of a monitor's per-path
    norms, e.g. ``"monitor_norms/norms/dense/kernel"``;
  * ``"<name>/<field>/<i>"`` for the elements of a non-scalar field.

  Call it on the host, outside ``jit``, on the statistics your jitted step
  returned: ``flatten_stats(optaxclip.stats(opt_state))``.

  Args:
    stats: the dict returned by :func:`optaxclip.stats` (or a dict of such
      dicts and scalars, flattened the same way).
    prefix: prepended to every key with a ``/`` (e.g. ``"train"`` gives
      ``"train/clip_by_global_norm/norm_before"``); empty for none.

  Returns:
    A new dict of Python floats, in the order of ``stats``. Integer fields
    (``step``, ``nonfinite_count``) become floats; NaN and Inf stay as they
    are.

  Raises:
    TypeError: ``stats`` is not a mapping (pass ``optaxclip.stats(state)``,
      not the state itself).

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> tx = optax.chain(optaxclip.clip_by_global_norm(1.0), optax.sgd(0.1))
    >>> state = tx.init(jnp.zeros(2))
    >>> _, state = tx.update(jnp.array([3.0, 4.0]), state)
    >>> flat = optaxclip.flatten_stats(optaxclip.stats(state))
    >>> for key, value in flat.items():
    ...   print(f"{key:40} {value}")
    clip_by_global_norm/norm_before          5.0
    clip_by_global_norm/norm_after           1.0
    clip_by_global_norm/threshold            1.0
    clip_by_global_norm/scale                0.2
    clip_by_global_norm/clipped              1.0
    clip_by_global_norm/nonfinite_count      0.0
    clip_by_global_norm/step                 1.0
    >>> list(optaxclip.flatten_stats(optaxclip.stats(state), "train"))[0]
    'train/clip_by_global_norm/norm_before'

  Edge cases:
    ======================= ==============================================
    Case                    Result
    ======================= ==============================================
    no clipper in the state ``{}``
    a field not computed    NaN (e.g. the norms of ``clip_by_value``)
    a non-finite step       the NaN / Inf norm as a float
    ``None`` values         left out
    an optimizer state      ``TypeError``: pass ``optaxclip.stats(state)``
    ======================= ==============================================
  """
  if not isinstance(stats, Mapping):
    raise TypeError(
      "optaxclip.flatten_stats: expected the dict returned by "
      f"optaxclip.stats(opt_state), got {type(stats).__name__}; call "
      "optaxclip.flatten_stats(optaxclip.stats(opt_state))."
    )
  if not isinstance(prefix, str):
    raise TypeError(
      f"optaxclip.flatten_stats: `prefix` must be a string, got {prefix!r}."
    )
  flat: dict[str, Any] = {}
  _diagnostics._flatten_stats(prefix.rstrip("/"), stats, flat)
  return _diagnostics._to_floats(flat)
