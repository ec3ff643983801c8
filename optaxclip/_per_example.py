# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Per-example clipping for differentially private training (DP-SGD)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optaxclip import _norms
from optaxclip import _scaling
from optaxclip import _stats
from optaxclip import _validation


class PerExampleClipState(NamedTuple):
  """State of :func:`per_example_clip`.

  Attributes:
    rng_key: the raw ``uint32[2]`` key of the noise, split on every step
      (raw key data, so that every checkpointer can save it).
    stats: ``{name: ClipStats}``; see :func:`per_example_clip` for what
      each field means here.
  """

  rng_key: jax.Array
  stats: dict[str, _stats.ClipStats]


def _layer_thresholds(per_layer, l2_norm_clip, treedef, n_leaves, fn):
  """Per-leaf thresholds: ``C/sqrt(K)`` or the leaves of a given tree."""
  if per_layer is True:
    return [l2_norm_clip / math.sqrt(n_leaves)] * n_leaves
  leaves, tdef = jax.tree.flatten(per_layer)
  if tdef != treedef:
    raise ValueError(
      f"optaxclip.{fn}: `per_layer` must be True, False or a tree of "
      f"thresholds with the gradients' structure; got {tdef}, the "
      f"gradients have {treedef}."
    )
  return leaves


def _check_per_layer(per_layer, l2_norm_clip, fn):
  if isinstance(per_layer, bool):
    return
  leaves = jax.tree.leaves(per_layer)
  if not leaves:
    raise ValueError(f"optaxclip.{fn}: `per_layer` is an empty tree.")
  for c in leaves:
    _validation.check_threshold(c, "per_layer", fn, allow_schedule=False)
  if callable(l2_norm_clip) or _validation._is_traced(l2_norm_clip):
    return
  if any(_validation._is_traced(c) for c in leaves):
    return
  total = math.sqrt(sum(float(c) ** 2 for c in leaves))
  if total > float(l2_norm_clip) * (1 + 1e-6):
    raise ValueError(
      f"optaxclip.{fn}: the per-layer thresholds have a combined norm "
      f"sqrt(sum c_k^2) = {total:.6g} > l2_norm_clip = {l2_norm_clip!r}; an "
      "example's clipped gradient could then exceed l2_norm_clip and the "
      "noise (calibrated to l2_norm_clip) would not cover it."
    )


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  l2_norm_clip = 0      zero sum; with noise, pure noise / B
  example norm = 0      contributes zero, not clipped
  NaN / Inf example     contributes zero (the whole example, every leaf),
                        counted in ``nonfinite_count``; the others are
                        used as usual and the sum is still divided by B
  every example NaN     zero updates (plus noise / B)
  bf16 / f16 leaves     norms, sum and noise in float32, result cast back
                        to the leaf's dtype
  no batch axis / B     ``ValueError`` naming the shapes
  differing per leaf
  integer leaves        ``TypeError`` naming the dtype
  ===================== =================================================="""
)
def per_example_clip(
  l2_norm_clip: _validation.ThresholdOrSchedule,
  *,
  per_layer: bool | Any = False,
  noise_multiplier: Any = 0.0,
  seed: int = 0,
  name: str = "per_example_clip",
) -> optax.GradientTransformationExtraArgs:
  r"""Clips every example's gradient, sums, adds Gaussian noise, averages.

  The aggregation step of DP-SGD (Abadi et al., 2016). Its input gradients
  carry a leading batch axis of size :math:`B` on every leaf (make them with
  :func:`optaxclip.per_example_grads`); its output has the parameters'
  shapes:

  .. math::

    \bar g = \frac{1}{B}\Big(\sum_{b=1}^{B} g_b \cdot
      \min\Big(1, \frac{C}{\lVert g_b\rVert}\Big)
      + \mathcal N(0, \sigma^2 C^2 I)\Big)

  with :math:`\sigma` = ``noise_multiplier``. With ``per_layer=True``
  every leaf :math:`k` of every example is clipped on its own to
  :math:`C/\sqrt{K}` (:math:`K` leaves; McMahan et al., 2018), so an
  example's clipped gradient still has norm at most :math:`C`; a tree of
  thresholds :math:`c_k` instead must satisfy
  :math:`\sqrt{\sum_k c_k^2} \le C`. The noise is drawn in float32 from the
  state's key, which is split on every step.

  **Where it goes.** It changes the tree's shapes (it removes the batch
  axis), so

  - it must come first in a chain (``optax.chain(per_example_clip(...),
    optax.adam(...))``); every later transformation sees the averaged
    gradient;
  - it is exempt from the shape-preserving checks of the conformance suite;
  - it cannot sit inside :class:`optax.MultiSteps`, whose accumulator has
    the parameters' shapes; accumulate the clipped sums yourself instead.

  **Statistics** (:func:`optaxclip.stats`, a :class:`ClipStats`):
  ``norm_before`` = the mean norm of the finite examples' gradients,
  ``norm_after`` = the norm of the averaged clipped gradient before noise,
  ``threshold`` = :math:`C`, ``scale`` = the smallest per-example factor,
  ``clipped`` = the fraction of the batch that was clipped (per layer: of
  which any leaf was clipped), ``nonfinite_count`` = the number of
  *examples* dropped for a NaN or Inf so far (not steps).

  .. warning::
    These statistics are computed from the raw per-example gradients and
    are **not privatised**: do not publish them (nor ``clipped``, the
    fraction clipped, which adaptive-clipping papers privatise separately)
    from a differentially private run. Log them for debugging only.

  Privacy accounting is not done here: get :math:`\varepsilon` from the
  ``dp-accounting`` package (see ``docs/at_scale.md``).

  Args:
    l2_norm_clip: the per-example bound :math:`C \ge 0`, or a schedule.
    per_layer: ``False`` (default): clip each example's global norm;
      ``True``: clip each leaf of each example to :math:`C/\sqrt{K}`; or a
      tree with the gradients' structure of per-leaf thresholds.
    noise_multiplier: :math:`\sigma \ge 0`; 0 (default) adds no noise.
    seed: seed of the noise's key.
    name: key of the statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`PerExampleClipState`.

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> tx = optaxclip.per_example_clip(1.0)
    >>> g = {"w": jnp.array([[3.0, 4.0], [0.3, 0.4]])}  # 2 examples
    >>> u, state = tx.update(g, tx.init({"w": jnp.zeros(2)}))
    >>> u["w"]  # ((0.6, 0.8) + (0.3, 0.4)) / 2
    Array([0.45, 0.6 ], dtype=float32)
    >>> float(optaxclip.stats(state)["per_example_clip"].clipped)
    0.5

  References:
    Abadi et al., `Deep Learning with Differential Privacy
    <https://arxiv.org/abs/1607.00133>`_, 2016

    McMahan et al., `Learning Differentially Private Recurrent Language
    Models <https://arxiv.org/abs/1710.06963>`_, 2018
  """
  fn = "per_example_clip"
  _validation.check_name(name)
  _validation.check_threshold(l2_norm_clip, "l2_norm_clip", fn)
  _validation.check_threshold(
    noise_multiplier, "noise_multiplier", fn, allow_schedule=False
  )
  if not isinstance(per_layer, bool):
    _check_per_layer(per_layer, l2_norm_clip, fn)
  if isinstance(seed, bool) or not (
    isinstance(seed, (int, np.integer))
    or jnp.issubdtype(jnp.result_type(seed), jnp.integer)
  ):
    raise TypeError(f"optaxclip.{fn}: `seed` must be an int, got {seed!r}.")

  @_stats.unshared
  def init_fn(params):
    del params
    return PerExampleClipState(
      rng_key=jax.random.PRNGKey(seed),
      stats=_stats.named(name, _stats.init_stats()),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    leaves, treedef = jax.tree.flatten(updates)
    if not leaves:
      return updates, state
    _validation.check_leaves(leaves, fn, allow_complex=False)
    batch = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
    if len(batch) != 1 or None in batch:
      raise ValueError(
        f"optaxclip.{fn} expects every leaf to carry the same leading batch "
        f"axis (per-example gradients); got shapes "
        f"{[jnp.shape(x) for x in leaves]}. Make them with "
        "optaxclip.per_example_grads."
      )
    (b,) = batch
    prev = _stats.unnamed(state.stats)
    c = jnp.asarray(_validation.resolve(l2_norm_clip, prev.step), jnp.float32)
    acc = [_norms.acc_dtype(x.dtype) for x in leaves]
    # Sum of squares of every leaf of every example: [K] arrays of shape [B].
    powers = [
      jnp.sum(jnp.square(x.reshape(b, -1).astype(a)), axis=1).astype(
        jnp.float32
      )
      for x, a in zip(leaves, acc)
    ]
    total = sum(powers)
    norms = jnp.sqrt(total)
    finite = jnp.isfinite(total)
    if per_layer is False:
      factor, clipped = _scaling.clip_factor(norms, c)
      factors = [factor] * len(leaves)
      any_clipped = clipped
    else:
      cs = _layer_thresholds(per_layer, c, treedef, len(leaves), fn)
      factors, flags = [], []
      for p, ck in zip(powers, cs):
        f, k = _scaling.clip_factor(jnp.sqrt(p), jnp.asarray(ck, jnp.float32))
        factors.append(f)
        flags.append(k)
      any_clipped = jnp.any(jnp.stack(flags), axis=0)
    factors = [jnp.where(finite, f, 0.0) for f in factors]
    any_clipped = jnp.logical_and(any_clipped, finite)

    keys = jax.random.split(state.rng_key, len(leaves) + 1)
    sigma = jnp.asarray(noise_multiplier, jnp.float32) * c
    sums, out = [], []
    for x, f, a, k in zip(leaves, factors, acc, keys[1:]):
      xs = jnp.where(finite.reshape((b,) + (1,) * (x.ndim - 1)), x.astype(a), 0)
      s = jnp.tensordot(f.astype(a), xs, axes=1)
      sums.append(s)
      if noise_multiplier is not None and not (
        isinstance(noise_multiplier, (int, float)) and noise_multiplier == 0
      ):
        s = s + sigma.astype(a) * jax.random.normal(k, s.shape, a)
      out.append((s / b).astype(x.dtype))

    n_finite = jnp.sum(finite)
    mean_norm = jnp.sum(jnp.where(finite, norms, 0.0)) / n_finite
    new = _stats.ClipStats(
      norm_before=jnp.where(n_finite > 0, mean_norm, jnp.nan),
      norm_after=_norms.tree_norm(sums) / b,
      threshold=c,
      scale=jnp.min(jnp.where(finite, jnp.min(jnp.stack(factors), 0), 1.0)),
      clipped=jnp.mean(any_clipped.astype(jnp.float32)),
      nonfinite_count=prev.nonfinite_count + (b - n_finite).astype(jnp.int32),
      step=optax.safe_increment(prev.step),
    )
    return jax.tree.unflatten(treedef, out), PerExampleClipState(
      rng_key=keys[0], stats=_stats.named(name, new)
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _nnx_module(x: Any) -> bool:
  nnx = sys.modules.get("flax.nnx")
  return nnx is not None and isinstance(x, nnx.Module)


def per_example_grads(
  loss_fn: Callable[..., Any],
  params: Any,
  batch: Any,
  *,
  microbatch_size: int | None = None,
) -> Any:
  """Gradients of ``loss_fn`` for every example of ``batch``, with jax.vmap.

  ``loss_fn(params, example)`` returns a scalar; ``example`` is one example
  of ``batch`` (every leaf sliced along its leading axis) with a leading
  axis of size 1 put back, so a loss written for batches works unchanged.
  For a Flax NNX model pass the model as ``params``: ``loss_fn(model,
  example)`` is then differentiated with respect to its ``nnx.Param``
  variables, and the result is an ``nnx.State`` that
  ``nnx.Optimizer(model, tx, wrt=nnx.Param).update(model, grads)`` takes
  when ``tx`` starts with :func:`optaxclip.per_example_clip`.

  Args:
    loss_fn: ``(params, example) -> scalar loss``.
    params: a pytree of parameters, or an ``nnx.Module``.
    batch: a pytree whose leaves share a leading batch axis of size B.
    microbatch_size: vectorise over at most this many examples at a time
      (:func:`jax.lax.map` with ``batch_size``), bounding the memory of the
      per-example activations; ``None`` (default) vectorises over all B.

  Returns:
    The gradients, shaped like the parameters with a leading axis B.

  Edge cases: a ``microbatch_size`` that does not divide B is fine (the
  remainder is one smaller vectorised call); a non-positive or non-integer
  one is a ``ValueError``. NNX variables other than ``nnx.Param`` (batch
  statistics, RNG counters) are read, never differentiated nor updated.

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> loss = lambda w, ex: jnp.sum((ex["x"] @ w - ex["y"]) ** 2)
    >>> batch = {"x": jnp.eye(3), "y": jnp.zeros(3)}
    >>> optaxclip.per_example_grads(loss, jnp.ones(3), batch).shape
    (3, 3)
  """
  if microbatch_size is not None and (
    isinstance(microbatch_size, bool)
    or not isinstance(microbatch_size, (int, np.integer))
    or microbatch_size < 1
  ):
    raise ValueError(
      "optaxclip.per_example_grads: `microbatch_size` must be a positive "
      f"int or None, got {microbatch_size!r}."
    )
  if _nnx_module(params):
    from flax import nnx

    graphdef, p, rest = nnx.split(params, nnx.Param, ...)

    def loss(p, example):
      return loss_fn(nnx.merge(graphdef, p, rest), example)

  else:
    p, loss = params, loss_fn

  grad = jax.grad(loss)

  def one(example):
    return grad(p, jax.tree.map(lambda x: x[None], example))

  if microbatch_size is None:
    return jax.vmap(one)(batch)
  return jax.lax.map(one, batch, batch_size=microbatch_size)
