# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The range of the float32 state of the adaptive strategies.

The adaptive strategies (``autoclip``, ``zclip``, ``adagc``,
``stable_spam_clip``, ``skip_on_spike``) keep their statistics in float32
and square the norm (variances, second moments). A step whose global norm
squared is not finite in float32 (a norm of about 1.8e19 or more) cannot be
folded into that state. For float32 (and narrower) leaves such a norm is
already Inf, because the sum of squares overflows; :func:`state_norm` makes
a float64 leaf behave the same way, so the step goes through the
``nonfinite`` policy (zeroed and counted by default) instead of turning the
state into NaN.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def state_norm(norm: Any) -> jax.Array:
  """``norm``, or +Inf where its square overflows float32 (NaN stays NaN)."""
  norm = jnp.asarray(norm)
  fits = jnp.isfinite(jnp.square(norm.astype(jnp.float32)))
  return jnp.where(fits | jnp.isnan(norm), norm, jnp.inf)
