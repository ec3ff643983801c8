# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Spike-aware clipping (SPAM, Stable-SPAM) and skipping outlier steps.

* :func:`clip_spikes`: SPAM's element-wise spike clip against an EMA of
  squared gradients kept by the clipper itself;
* :func:`stable_spam_clip`: Stable-SPAM's AdaClip and AdaGN, per tensor;
* :func:`skip_on_spike`: a wrapper that skips a whole step when the
  gradient norm or the loss leaves the band of a rolling window.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optaxclip import _norms
from optaxclip import _range
from optaxclip import _restored
from optaxclip import _scaling
from optaxclip import _shapes
from optaxclip import _stats
from optaxclip import _validation
from optaxclip import _wrappers

# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------


def _check_decay(value: Any, arg: str, fn: str) -> None:
  """A decay rate in [0, 1); traced values pass unchecked."""
  _validation.check_threshold(value, arg, fn, allow_schedule=False, upper=1.0)
  if not _validation._is_traced(value) and float(np.asarray(value)) >= 1.0:
    raise ValueError(
      f"optaxclip.{fn}: `{arg}` must be >= 0 and < 1, got {value!r}."
    )


def _check_step_count(value: Any, arg: str, fn: str) -> None:
  """A whole number of steps >= 0; traced values pass unchecked.

  Integral floats are accepted: ``optax.inject_hyperparams`` with a float
  ``hyperparam_dtype`` turns the integer into one.
  """
  if _validation._is_traced(value):
    return
  where = f"optaxclip.{fn}: `{arg}` must be an integer >= 0, got {value!r}."
  arr = None if isinstance(value, bool) else np.asarray(value, dtype=object)
  if arr is not None and arr.ndim == 0:
    arr = np.asarray(value)
  if arr is None or arr.ndim != 0 or arr.dtype.kind not in "iuf":
    raise TypeError(where)
  if not 0 <= float(arr) < np.inf or float(arr) != int(float(arr)):
    raise ValueError(where)


def _check_static_int(value: Any, arg: str, fn: str, lo: int) -> int:
  """A static (Python) integer >= lo."""
  if (
    isinstance(value, bool)
    or not isinstance(value, numbers.Integral)
    or value < lo
  ):
    raise ValueError(
      f"optaxclip.{fn}: `{arg}` must be a Python int >= {lo} (it fixes the "
      f"state's shape, so it is static), got {value!r}."
    )
  return int(value)


# ---------------------------------------------------------------------------
# clip_spikes (SPAM)
# ---------------------------------------------------------------------------


def _one_minus(beta: Any, dtype: Any) -> jax.Array:
  """``1 - beta`` in ``dtype``, as the papers' code and Optax compute it.

  For a concrete ``beta`` (a Python or NumPy number) the difference is taken
  in float64 before the cast: ``1 - 0.999`` is 1e-3 in float32, whereas
  ``1 - float32(0.999)`` is 9.99987e-4, a relative error of 1.3e-5 on every
  moving-average step. A traced or schedule value is used as given.
  """
  if isinstance(beta, (numbers.Real, np.generic)) and not isinstance(
    beta, bool
  ):
    return jnp.asarray(1 - np.float64(beta), dtype)
  return 1 - jnp.asarray(beta, dtype)


def _bias_correction(beta: Any, t: jax.Array, dtype: Any) -> jax.Array:
  """``1 - beta**t`` for the traced step ``t``, to within a few ulps.

  With a concrete ``beta`` it is ``-expm1(t log beta)`` with the logarithm
  taken in float64, so it matches the float64 ``1 - beta**t`` the papers'
  code computes (and :func:`_one_minus` at ``t = 1``); ``1 - float32(beta)
  ** t`` would be off by 1.3e-5 relative for ``beta = 0.999``.
  """
  t = jnp.asarray(t, dtype)
  if isinstance(beta, (numbers.Real, np.generic)) and not isinstance(
    beta, bool
  ):
    with np.errstate(divide="ignore"):
      log_beta = np.log(np.float64(beta))
    return -jnp.expm1(t * jnp.asarray(log_beta, dtype))
  return 1 - jnp.asarray(beta, dtype) ** t


def _state_dtype(x: Any) -> np.dtype:
  """dtype of element-wise state: float32, float64 for float64 leaves.

  Integer leaves get float32 here; ``update`` then rejects them with a
  clear TypeError.
  """
  dt = jnp.result_type(x)
  if not jnp.issubdtype(dt, jnp.inexact):
    return np.dtype(np.float32)
  return _norms.acc_dtype(dt)


class SpikeClipState(NamedTuple):
  """State of :func:`clip_spikes`.

  Attributes:
    count: number of finite steps folded into ``nu`` so far (int32);
      clipping is on once it reaches ``warmup_steps``.
    nu: the EMA :math:`v` of squared (clipped) gradients, one array per
      leaf, shaped like the parameters; float32 (float64 for float64
      leaves).
    stats: ``{name: ClipStats}``.
  """

  count: jax.Array
  nu: Any
  stats: dict[str, _stats.ClipStats]


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  first warmup_steps    unchanged (``clipped`` = 0); :math:`v` accumulates
  steps
  threshold = inf       unchanged (the EMA is still kept)
  threshold = 0         after warm-up every element becomes 0
  element with v = 0    after warm-up any non-zero value is clipped to 0,
                        and its :math:`v` stays 0 (as in SPAM): an element
                        whose gradient was exactly 0 throughout warm-up
                        (an unused embedding row) stays frozen; exclude
                        such leaves with :func:`optax.masked`
  NaN / Inf gradients   ``nonfinite="zero"`` (default): zero updates,
                        :math:`v` and the warm-up count unchanged, step
                        counted in ``nonfinite_count``; ``"propagate"``:
                        NaN flows on, Inf is clipped like any spike after
                        warm-up, :math:`v` unchanged; ``"error"``: raises.
                        Elements above about 1.8e19 count as non-finite
                        (their squares overflow float32)
  bf16 / f16 leaves     compared and clipped in float32, cast back
  complex / integer     ``TypeError``
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def clip_spikes(
  threshold: _validation.ThresholdOrSchedule = 5000.0,
  *,
  beta2: jax.typing.ArrayLike = 0.999,
  warmup_steps: jax.typing.ArrayLike = 20,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "clip_spikes",
) -> optax.GradientTransformationExtraArgs:
  r"""SPAM's spike-aware clipping: each element against its own history.

  The clipper keeps an EMA :math:`v` of squared gradients, element by
  element, not bias-corrected. After ``warmup_steps`` steps, an element
  whose square exceeds :math:`\theta` times its :math:`v` is replaced by the
  largest value allowed, with its sign; :math:`v` is then updated with the
  clipped gradient:

  .. math::

    \tilde g_{t,i} = \begin{cases}
      \operatorname{sign}(g_{t,i}) \sqrt{\theta\, v_{t-1,i}}
        & \text{if } t > T_w \text{ and } g_{t,i}^2 > \theta\, v_{t-1,i} \\
      g_{t,i} & \text{otherwise}
    \end{cases}
    \qquad
    v_{t,i} = \beta_2 v_{t-1,i} + (1 - \beta_2)\, \tilde g_{t,i}^2 ,

  with :math:`v_0 = 0` and :math:`t` counting finite steps. In SPAM,
  :math:`v` is Adam's own second moment; here the clipper keeps its own,
  so ``optax.chain(clip_spikes(beta2=b2), optax.adam(lr, b2=b2))`` compares
  against exactly the :math:`v` Adam holds (bit for bit with a concrete
  ``beta2``: :math:`1 - \beta_2` is taken before the cast to float32, as
  Optax does; a traced or injected ``beta2`` is used as given), and the clip
  composes with any optimizer. SPAM's momentum reset and sparse momentum
  are not part of this clipper.

  Defaults: :math:`\theta = 5000` (the paper's and the reference code's),
  :math:`\beta_2 = 0.999` (Adam's default, which SPAM uses) and
  :math:`T_w = 20` (the reference code's ``grad_accu_steps``; the paper
  does not name it). The reference starts clipping on step :math:`T_w`
  itself, one step earlier than this clipper; after each momentum reset it
  waits :math:`T_w` full steps, as here.

  Args:
    threshold: :math:`\theta \ge 0`, the largest allowed ratio of
      :math:`g^2` to :math:`v`; a number, a traced value or a schedule.
    beta2: :math:`\beta_2 \in [0, 1)`, the decay of :math:`v`.
    warmup_steps: :math:`T_w \ge 0`: the first :math:`T_w` finite steps are
      never clipped, so that :math:`v` is not compared while still near 0.
      An integer; may be traced.
    nonfinite: policy for a non-finite gradient norm: ``"zero"``
      (default), ``"propagate"`` or ``"error"``. A non-finite step never
      enters :math:`v` nor the warm-up count.
    axis_name: a mapped axis name, or a tuple of names, under
      :func:`jax.shard_map` across which the gradients are split; norms and
      statistics are then reduced across it, each leaf over the axes it
      varies along (see :func:`optaxclip.clip_by_global_norm`).
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`SpikeClipState`. Its statistics: ``clipped`` = the fraction of
    elements clipped, ``scale`` = the smallest element factor
    :math:`|\tilde g_i| / |g_i|`, the global L2 norms before and after,
    and ``threshold`` = NaN (the bound differs per element).

  Example:
    >>> import jax, jax.numpy as jnp, optaxclip
    >>> tx = optaxclip.clip_spikes()   # theta 5000, 20 warm-up steps
    >>> update = jax.jit(tx.update)
    >>> state = tx.init(jnp.zeros(2))
    >>> for _ in range(20):
    ...   u, state = update(jnp.ones(2), state)
    >>> u, state = update(jnp.array([1.0, 100.0]), state)
    >>> [round(float(x), 2) for x in u]   # sqrt(5000 * v), v = 1 - .999**20
    [1.0, 9.95]
    >>> float(optaxclip.stats(state)["clip_spikes"].clipped)
    0.5

  References:
    Huang et al., `SPAM: Spike-Aware Adam with Momentum Reset for Stable LLM
    Training <https://arxiv.org/abs/2501.06842>`_, 2025
  """
  fn = "clip_spikes"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_threshold(threshold, "threshold", fn)
  _check_decay(beta2, "beta2", fn)
  _check_step_count(warmup_steps, "warmup_steps", fn)
  _validation.check_nonfinite(nonfinite, fn)
  _validation.check_name(name)

  @_stats.unshared
  def init_fn(params):
    nu = jax.tree.map(lambda p: jnp.zeros_like(p, _state_dtype(p)), params)
    return SpikeClipState(
      count=jnp.zeros([], jnp.int32),
      nu=nu,
      stats=_stats.named(name, _stats.init_stats()),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    leaves, treedef = jax.tree.flatten(updates)
    _validation.check_leaves(leaves, fn, allow_complex=False)
    nus = _shapes.matching_leaves(
      fn,
      "the state's nu",
      leaves,
      treedef,
      state.nu,
      "Init the state with parameters shaped like the gradients.",
    )
    prev = _stats.unnamed(state.stats)
    theta = _validation.resolve(threshold, prev.step)
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    norm = _norms.root(_norms.global_power(leaves, 2, axis_name=axes), 2)
    # A run-time threshold that is negative or NaN makes a bad step.
    finite = _scaling.good_step(jnp.isfinite(norm), theta)
    _scaling.check_finite(finite, nonfinite, fn, name, norm, prev.step, theta)
    keep = _scaling.keep_mask(finite, nonfinite)
    active = state.count >= warmup_steps
    out, new_nus, factors, flags = [], [], [], []
    for g, nu in zip(leaves, nus):
      dt = jnp.promote_types(_norms.acc_dtype(g.dtype), nu.dtype)
      g_, nu_ = g.astype(dt), nu.astype(dt)
      bound_sq = jnp.asarray(theta, dt) * nu_
      over = jnp.logical_and(active, jnp.square(g_) > bound_sq)
      bound = jnp.sqrt(bound_sq)
      clipped = jnp.where(over, jnp.sign(g_) * bound, g_)
      b2 = jnp.asarray(beta2, dt)
      new_nu = b2 * nu_ + _one_minus(beta2, dt) * jnp.square(clipped)
      new_nus.append(jnp.where(finite, new_nu, nu_).astype(nu.dtype))
      y = clipped.astype(g.dtype)
      if keep is not None:
        y = jnp.where(keep, y, jnp.zeros((), g.dtype))
      else:
        y = _scaling.nan_unless_valid(y, theta)
      out.append(y)
      flags.append(over)
      factors.append(
        jnp.where(over, bound / jnp.where(over, jnp.abs(g_), 1), 1)
      )
    norm_after = (
      _norms.root(_norms.global_power(out, 2, axis_name=axes), 2)
      if out
      else 0.0
    )
    frac = _stats.fraction_true(flags, axes)
    scale = _stats.min_factor(factors, axes)
    if keep is not None:
      frac = jnp.where(keep, frac, 1.0)
      scale = jnp.where(keep, scale, 0.0)
    stats = _stats.next_stats(
      prev,
      finite=finite,
      norm_before=norm,
      norm_after=norm_after,
      scale=scale,
      clipped=frac,
    )
    count = jnp.where(finite, optax.safe_increment(state.count), state.count)
    return jax.tree.unflatten(treedef, out), SpikeClipState(
      count=count,
      nu=jax.tree.unflatten(treedef, new_nus),
      stats=_stats.named(name, stats),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------------------
# stable_spam_clip (Stable-SPAM: AdaClip + AdaGN)
# ---------------------------------------------------------------------------


class StableSpamState(NamedTuple):
  """State of :func:`stable_spam_clip`; one float32 entry per leaf.

  Attributes:
    count: number of finite steps so far (int32), the :math:`t` of the bias
      corrections.
    max_ema: :math:`m^{\\max}`, EMA of each leaf's largest :math:`|g|`.
    norm_ema: :math:`m^{n}`, EMA of each leaf's norm after AdaClip.
    sq_norm_ema: :math:`v^{n}`, EMA of each leaf's squared norm after
      AdaClip.
    stats: ``{name: ClipStats}``.
  """

  count: jax.Array
  max_ema: jax.Array
  norm_ema: jax.Array
  sq_norm_ema: jax.Array
  stats: dict[str, _stats.ClipStats]


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  first step            AdaClip clips nothing (:math:`\\hat m^{\\max} =
                        \\max|g|`); AdaGN rescales each leaf to a norm of
                        about 1 (:math:`c = \\lVert g\\rVert /
                        (\\lVert g\\rVert + \\epsilon)`)
  zero leaf             left at zero (no division by zero); its EMAs
                        still decay towards 0, as in the reference
  theta = 0             AdaClip never clips (:math:`\\hat m^{\\max} =
                        \\max|g|`)
  NaN / Inf gradients   ``nonfinite="zero"`` (default): zero updates, all
                        EMAs and the count unchanged, step counted;
                        ``"propagate"``: NaN flows on, EMAs unchanged;
                        ``"error"``: raises
  bf16 / f16 leaves     computed in float32, cast back
  complex / integer     ``TypeError``
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def stable_spam_clip(
  gamma1: jax.typing.ArrayLike = 0.7,
  gamma2: jax.typing.ArrayLike = 0.9,
  theta: jax.typing.ArrayLike = 0.999,
  *,
  eps: jax.typing.ArrayLike = 1e-8,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "stable_spam_clip",
) -> optax.GradientTransformationExtraArgs:
  r"""Stable-SPAM's AdaClip and AdaGN, leaf by leaf, as one transformation.

  For each leaf (tensor) :math:`g` at finite step :math:`t`, first
  **AdaClip** bounds the elements by a bias-corrected EMA of the leaf's
  largest magnitude, rescaling the elements above it by a common factor:

  .. math::

    m^{\max}_t = \theta m^{\max}_{t-1} + (1-\theta) \max_i |g_i|, \qquad
    \hat m^{\max}_t = \frac{m^{\max}_t}{1 - \theta^t}, \qquad
    \tilde g_i = \begin{cases}
      g_i \, \hat m^{\max}_t / \max_j |g_j| & |g_i| > \hat m^{\max}_t \\
      g_i & \text{otherwise;}
    \end{cases}

  then **AdaGN** rescales the leaf to the norm :math:`c_t`, the ratio of
  an EMA of its past norms to their EMA root-mean-square:

  .. math::

    m^n_t = \gamma_1 m^n_{t-1} + (1-\gamma_1) \lVert \tilde g\rVert, \quad
    v^n_t = \gamma_2 v^n_{t-1} + (1-\gamma_2) \lVert \tilde g\rVert^2, \quad
    c_t = \frac{m^n_t / (1-\gamma_1^t)}
               {\sqrt{v^n_t / (1-\gamma_2^t)} + \epsilon}, \quad
    u = \tilde g \, \frac{c_t}{\lVert \tilde g \rVert}

  (:math:`u = \tilde g` when :math:`\lVert \tilde g \rVert = 0`). A steady
  norm gives :math:`c \approx 1`; a norm spike raises :math:`v^n` more
  than :math:`m^n` and so shrinks :math:`c`. Chain it before the optimizer,
  e.g. ``optax.chain(stable_spam_clip(), optax.adam(lr))``.
  Stable-SPAM's third part, the momentum reset (MoRet), belongs to the
  optimizer and is not included; the reference code also resets the
  :math:`t` of these bias corrections at each momentum reset, which this
  transformation does not, and its optional cosine decay of
  :math:`\gamma_1` (``total_T``) is left out (``gamma1`` accepts a traced
  value through :func:`optax.inject_hyperparams` instead).

  Defaults are the reference code's: :math:`\gamma_1 = 0.7`,
  :math:`\gamma_2 = 0.9`, :math:`\theta = 0.999` (its ``gamma3``) and
  :math:`\epsilon = 10^{-8}` (its optimizer's ``eps``).

  Args:
    gamma1: :math:`\gamma_1 \in [0, 1)`, decay of the EMA of the norms.
    gamma2: :math:`\gamma_2 \in [0, 1)`, decay of the EMA of their squares.
    theta: :math:`\theta \in [0, 1)`, decay of the EMA of the largest
      magnitude.
    eps: :math:`\epsilon \ge 0` in the denominator of :math:`c`.
    nonfinite: policy for a non-finite gradient norm: ``"zero"``
      (default), ``"propagate"`` or ``"error"``. A non-finite step never
      enters the EMAs nor the count.
    axis_name: a mapped axis name, or a tuple of names, under
      :func:`jax.shard_map` across which the gradients are split; norms and
      statistics are then reduced across it, each leaf over the axes it
      varies along (see :func:`optaxclip.clip_by_global_norm`).
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`StableSpamState`. Its statistics: ``clipped`` = the fraction of
    elements AdaClip clipped; ``scale`` = the smallest element factor
    :math:`u_i / g_i` (above 1 where AdaGN scales up); ``norm_before`` the
    global L2 norm of :math:`g`; ``norm_after`` that of :math:`u` (from the
    :math:`c` of each leaf); ``threshold`` NaN (it is per leaf).

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> tx = optaxclip.stable_spam_clip()
    >>> grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0, 0.5])}
    >>> u, state = tx.update(grads, tx.init(grads))
    >>> u["a"].round(6), u["b"].round(6)  # step 1: each leaf to norm ~1
    (Array([0.6, 0.8], dtype=float32), Array([0., 1.], dtype=float32))

  References:
    Huang et al., `Stable-SPAM: How to Train in 4-Bit More Stably than
    16-Bit Adam <https://arxiv.org/abs/2502.17055>`_, 2025
  """
  fn = "stable_spam_clip"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _check_decay(gamma1, "gamma1", fn)
  _check_decay(gamma2, "gamma2", fn)
  _check_decay(theta, "theta", fn)
  _validation.check_threshold(eps, "eps", fn, allow_schedule=False)
  _validation.check_nonfinite(nonfinite, fn)
  _validation.check_name(name)
  f32 = jnp.float32

  @_stats.unshared
  def init_fn(params):
    n = len(jax.tree.leaves(params))
    zeros = jnp.zeros([n], f32)
    return StableSpamState(
      count=jnp.zeros([], jnp.int32),
      max_ema=zeros,
      norm_ema=zeros,
      sq_norm_ema=zeros,
      stats=_stats.named(name, _stats.init_stats()),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    leaves, treedef = jax.tree.flatten(updates)
    _validation.check_leaves(leaves, fn, allow_complex=False)
    if len(leaves) != state.max_ema.shape[0]:
      raise ValueError(
        f"optaxclip.{fn}: the updates have {len(leaves)} leaves but the "
        f"state was initialised for {state.max_ema.shape[0]}; init it with "
        "parameters of the same structure as the gradients."
      )
    prev = _stats.unnamed(state.stats)
    if not leaves:
      stats = _stats.next_stats(
        prev, finite=jnp.array(True), norm_before=0.0, norm_after=0.0
      )
      return updates, state._replace(stats=_stats.named(name, stats))
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    norm = _norms.root(_norms.global_power(leaves, 2, axis_name=axes), 2)
    norm = _range.state_norm(norm)  # beyond the float32 state: non-finite
    finite = jnp.isfinite(norm)
    _scaling.check_finite(finite, nonfinite, fn, name, norm, prev.step)
    keep = _scaling.keep_mask(finite, nonfinite)
    t = optax.safe_increment(state.count).astype(f32)
    th, g1, g2 = (jnp.asarray(x, f32) for x in (theta, gamma1, gamma2))

    # AdaClip: bias-corrected EMA of each leaf's largest magnitude.
    peak = _norms.stack_scalars(
      _norms.leaf_powers(leaves, "inf", axis_name=axes), f32
    )
    max_ema = th * state.max_ema + _one_minus(theta, f32) * peak
    max_hat = max_ema / _bias_correction(theta, t, f32)
    over_leaf = peak > max_hat
    ratio = jnp.where(over_leaf, max_hat / jnp.where(over_leaf, peak, 1), 1)
    clipped, flags = [], []
    leaf_max = _scaling.compute_each_once(max_hat)
    leaf_ratio = _scaling.compute_each_once(ratio)
    for g, m, r in zip(leaves, leaf_max, leaf_ratio):
      g_ = g.astype(_norms.acc_dtype(g.dtype))
      over = jnp.abs(g_) > m.astype(g_.dtype)
      flags.append(over)
      clipped.append(jnp.where(over, g_ * r.astype(g_.dtype), g_))

    # AdaGN: rescale each leaf to the bias-corrected ratio c.
    power = _norms.stack_scalars(
      _norms.leaf_powers(clipped, 2, axis_name=axes), f32
    )
    cnorm = _norms.root(power, 2)
    norm_ema = g1 * state.norm_ema + _one_minus(gamma1, f32) * cnorm
    sq_norm_ema = g2 * state.sq_norm_ema + _one_minus(gamma2, f32) * power
    c = (norm_ema / _bias_correction(gamma1, t, f32)) / (
      jnp.sqrt(sq_norm_ema / _bias_correction(gamma2, t, f32))
      + jnp.asarray(eps, f32)
    )
    nonzero = cnorm > 0
    gain = jnp.where(nonzero, c / jnp.where(nonzero, cnorm, 1), 1)
    applied = _scaling.compute_each_once(gain)
    out = [
      _scaling.scale_leaf(x, a, keep).astype(g.dtype)
      for x, a, g in zip(clipped, applied, leaves)
    ]

    norm_after = _norms.root(jnp.sum(jnp.where(nonzero, c**2, 0)), 2)
    scale = jnp.min(gain * ratio)
    frac = _stats.fraction_true(flags, axes)
    if keep is not None:
      norm_after = jnp.where(keep, norm_after, 0.0)
      scale = jnp.where(keep, scale, 0.0)
      frac = jnp.where(keep, frac, 1.0)
    stats = _stats.next_stats(
      prev,
      finite=finite,
      norm_before=norm,
      norm_after=norm_after,
      scale=scale,
      clipped=frac,
    )
    commit = lambda new, old: jnp.where(finite, new, old)
    return jax.tree.unflatten(treedef, out), StableSpamState(
      count=commit(optax.safe_increment(state.count), state.count),
      max_ema=commit(max_ema, state.max_ema),
      norm_ema=commit(norm_ema, state.norm_ema),
      sq_norm_ema=commit(sq_norm_ema, state.sq_norm_ema),
      stats=_stats.named(name, stats),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------------------
# skip_on_spike
# ---------------------------------------------------------------------------

_WATCHABLE = ("grad_norm", "loss")


SpikeSkipStats = _stats.stats_type(
  "SpikeSkipStats",
  """Statistics of :func:`skip_on_spike`: :class:`SkipStats` and the loss.

  Attributes:
    norm_before: global L2 norm of the incoming gradients.
    norm_after: global L2 norm of the outgoing updates (0 when skipped).
    threshold: the gradient-norm band's upper edge applied on this step,
      mean + sigma_factor * std of the window (NaN while the window holds
      fewer than ``min_history`` norms, or when the norm is not watched).
    scale: 1 when the step was applied, 0 when skipped.
    clipped: 1 when this step was skipped, else 0.
    nonfinite_count: steps skipped so far because the gradients, the loss
      or the inner update were NaN/Inf.
    step: number of steps seen so far (skipped or not).
    skip_count: steps skipped so far, for any reason (so
      ``skip_count - nonfinite_count`` counts the spikes).
    consecutive_skips: skips in a row up to this step (0 after a good step).
    loss: the loss passed to this step (NaN when none is watched).
    loss_threshold: the loss band's upper edge on this step (NaN while
      inactive, as ``threshold``).
  """,
  "loss",
  "loss_threshold",
  base=_wrappers.SkipStats,
)


class SpikeSkipState(NamedTuple):
  """State of :func:`skip_on_spike`; its size is fixed by ``window``.

  Attributes:
    inner_state: the wrapped transformation's state; unchanged by a skipped
      step.
    norm_window: the last accepted gradient norms, a ring buffer
      (float32, shape ``[window]``).
    norm_count: how many entries of ``norm_window`` are filled (int32).
    norm_pos: where the next norm is written (int32).
    loss_window: the last accepted losses, a ring buffer (float32).
    loss_count: how many entries of ``loss_window`` are filled.
    loss_pos: where the next loss is written.
    stats: ``{name: SpikeSkipStats}``.
  """

  inner_state: Any
  norm_window: jax.Array
  norm_count: jax.Array
  norm_pos: jax.Array
  loss_window: jax.Array
  loss_count: jax.Array
  loss_pos: jax.Array
  stats: dict[str, SpikeSkipStats]


# The window's std is floored at this fraction of |mean|, so that the float32
# rounding of a constant window's mean cannot make an equal value a spike.
_STD_FLOOR = 1e-6


def _band(values: jax.Array, count: jax.Array, sigma: Any) -> jax.Array:
  """mean + sigma * std (population, floored) of the first ``count`` values."""
  valid = jnp.arange(values.shape[0]) < count
  n = jnp.maximum(count, 1).astype(jnp.float32)
  mean = jnp.sum(jnp.where(valid, values, 0)) / n
  var = jnp.sum(jnp.where(valid, jnp.square(values - mean), 0)) / n
  std = jnp.maximum(jnp.sqrt(var), _STD_FLOOR * jnp.abs(mean))
  return mean + jnp.asarray(sigma, jnp.float32) * std


def _push(values, count, pos, value, accept):
  """Writes ``value`` at ``pos`` of the ring buffer when ``accept``."""
  values = jnp.asarray(values)  # a restored checkpoint may hold NumPy
  size = values.shape[0]
  new_values = jnp.where(accept, values.at[pos].set(value), values)
  new_count = jnp.where(accept, jnp.minimum(count + 1, size), count)
  new_pos = jnp.where(accept, (pos + 1) % size, pos)
  return new_values, new_count, new_pos


def _check_watch(watch: Any, fn: str) -> tuple[str, ...]:
  if isinstance(watch, str):
    watch = (watch,)
  if (
    not isinstance(watch, Sequence)
    or not watch
    or any(w not in _WATCHABLE for w in watch)
    or len(set(watch)) != len(watch)
  ):
    raise ValueError(
      f"optaxclip.{fn}: `watch` must be a non-empty tuple of distinct names "
      f"from {_WATCHABLE}, got {watch!r}."
    )
  return tuple(watch)


@_norms.documents_partition_specs
def skip_on_spike(
  inner: optax.GradientTransformation,
  *,
  window: int = 128,
  sigma_factor: _validation.ThresholdOrSchedule = 6.0,
  min_history: int = 20,
  watch: Sequence[str] = ("grad_norm", "loss"),
  max_consecutive_skips: int | None = None,
  check_updates: bool = False,
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "skip_on_spike",
) -> optax.GradientTransformationExtraArgs:
  r"""Skips a whole step when the gradient norm or the loss spikes.

  Wraps a transformation (typically the whole chain ending in the
  optimizer) and keeps rolling windows of the last ``window`` accepted
  values of the raw gradient norm :math:`n_t` (global L2) and of the loss
  :math:`\ell_t`. Once a window holds at least ``min_history`` values, a
  step is skipped when its value lies above the window's band,

  .. math::

    x_t > \mu_W + k\, \max(\sigma_W, 10^{-6} |\mu_W|),
    \qquad x \in \{n, \ell\},

  with :math:`\mu_W, \sigma_W` the mean and (population) standard deviation
  of the window and :math:`k` = ``sigma_factor`` (the floor on
  :math:`\sigma_W` only keeps float32 rounding in a constant window from
  making an equal value a spike). A skipped step yields
  zero updates, leaves the inner state (Adam's moments and count, clippers'
  statistics) exactly as it was, is counted, and its values do **not** enter
  the windows, so a spike cannot widen the band for the next one. A step
  with NaN/Inf gradients or a NaN/Inf loss is skipped too (counted in
  ``nonfinite_count``) and never enters a window; so is one with a NaN/Inf
  inner update when ``check_updates`` is True. Everything is decided on
  the device: no host synchronisation.

  The loss is watched when ``"loss"`` is in ``watch`` and the step passes
  it, ``tx.update(grads, state, params, loss=loss)``; when the step does
  not, only the gradient norm is watched. The test is one-sided (a sudden
  *drop* is no reason to skip), as in Levanter; OLMo-core's is two-sided
  and its window keeps the spikes; Chen et al. watch the log of the norm
  with a moving average. ``window`` 128 and ``sigma_factor`` 6 are
  OLMo-core's and Levanter's defaults; ``min_history`` 20 is OLMo-core's
  floor (it waits for ``max(20, window // 2)`` values, Levanter for
  ``window // 2``), so the wrapper protects a run from its 21st step.
  The old state is kept as described in :func:`skip_nonfinite`: on the
  CPU backend (20M parameters in 10 leaves, state donated) the wrapper
  around Adam costs 1.14x Adam's step, the same as a global-norm clip, and
  1.6x with ``check_updates=True``.

  Because a skipped value never enters the window, a lasting jump of the
  level (not a spike) would be skipped for ever: watch
  ``consecutive_skips``, or set ``max_consecutive_skips`` to accept (and
  record) a step after that many skips in a row.

  Args:
    inner: the transformation to guard.
    window: number of values each window keeps (static).
    sigma_factor: :math:`k \ge 0`; a number, a traced value or a schedule.
    min_history: values a window must hold before it can cause a skip
      (static, ``2 <= min_history <= window``).
    watch: which values to watch: ``"grad_norm"``, ``"loss"`` or both
      (static). With only ``"loss"``, every ``update`` must pass ``loss=``.
    max_consecutive_skips: None (default: no limit), or a number of skips
      in a row (of any cause) after which the next step is accepted even if
      it spikes, and its values enter the windows. Non-finite steps are
      always skipped.
    check_updates: also skip a step whose inner updates are not finite
      although its gradients and loss are (static; see
      :func:`skip_nonfinite`). Off by default: the decision then needs
      only the gradients' norm and the loss, as in the references.
    axis_name: a mapped axis name, or a tuple of names, under
      :func:`jax.shard_map` across which the gradients are split; norms and
      statistics are then reduced across it, each leaf over the axes it
      varies along (see :func:`optaxclip.clip_by_global_norm`).
    partition_specs: PARTITION_SPECS
    name: key of its statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`SpikeSkipState` and whose statistics are
    :class:`SpikeSkipStats`.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optaxclip
    >>> tx = optaxclip.skip_on_spike(optax.sgd(0.1), window=8, min_history=4)
    >>> update = jax.jit(tx.update)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for loss in [1.0, 1.1, 0.9, 1.0, 1.05]:
    ...   u, state = update(jnp.ones(2), state, params, loss=loss)
    >>> u, state = update(jnp.ones(2), state, params, loss=50.0)
    >>> u
    Array([0., 0.], dtype=float32)
    >>> s = optaxclip.stats(state)["skip_on_spike"]
    >>> int(s.skip_count), int(state.loss_count)
    (1, 5)

  References:
    Chen et al., `The Best of Both Worlds: Combining Recent Advances in
    Neural Machine Translation <https://arxiv.org/abs/1804.09849>`_, 2018;
    OLMo et al., `2 OLMo 2 Furious <https://arxiv.org/abs/2501.00656>`_,
    2025

  Edge cases:

  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  fewer than            never skips for that value (only for NaN/Inf)
  min_history values
  constant window       std floored at 1e-6 * abs(mean): a value more than
                        ``sigma_factor * 1e-6 * abs(mean)`` above the
                        mean is skipped
  sigma_factor = inf    never skips for a spike
  NaN / Inf gradients   zero updates, inner state unchanged, counted in
  or loss               ``nonfinite_count`` and ``skip_count``; the values
                        never enter a window
  NaN / Inf inner       the same with ``check_updates=True``; passed on
  update                (as the unwrapped inner would) without
  no ``loss=`` passed   only the gradient norm is watched; ``ValueError``
                        if ``watch`` holds only ``"loss"``
  non-scalar ``loss``   ``ValueError``
  empty pytree          norm 0, passed to ``inner``
  ===================== ==================================================
  """
  fn = "skip_on_spike"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_name(name)
  if not isinstance(inner, optax.GradientTransformation):
    raise TypeError(
      f"optaxclip.{fn}: `inner` must be an optax GradientTransformation, "
      f"got {type(inner).__name__}."
    )
  window = _check_static_int(window, "window", fn, 2)
  min_history = _check_static_int(min_history, "min_history", fn, 2)
  if min_history > window:
    raise ValueError(
      f"optaxclip.{fn}: `min_history`={min_history} is larger than "
      f"`window`={window}; the window could never hold that many values."
    )
  _validation.check_threshold(sigma_factor, "sigma_factor", fn)
  _validation.check_flag(check_updates, "check_updates", fn)
  watch = _check_watch(watch, fn)
  if max_consecutive_skips is not None:
    max_consecutive_skips = _check_static_int(
      max_consecutive_skips, "max_consecutive_skips", fn, 1
    )
  watch_norm = "grad_norm" in watch
  f32 = jnp.float32

  @_stats.unshared
  def init_fn(params):
    zero = jnp.zeros([], jnp.int32)
    base = _wrappers.init_skip_stats()
    nan = jnp.full([], jnp.nan, f32)
    return SpikeSkipState(
      inner_state=inner.init(params),
      norm_window=jnp.zeros([window], f32),
      norm_count=zero,
      norm_pos=zero,
      loss_window=jnp.zeros([window], f32),
      loss_count=zero,
      loss_pos=zero,
      stats=_stats.named(
        name, SpikeSkipStats(*base, loss=nan, loss_threshold=nan)
      ),
    )

  def update_fn(updates, state, params=None, **extra_args):
    got = _restored.shape(state.norm_window)
    _restored.check_config(
      fn,
      "norm_window",
      got,
      (window,),
      f"window={got[0] if got else '?'}",
      f"window={window}",
    )
    leaves = jax.tree.leaves(updates)
    _validation.check_leaves(leaves, fn)
    prev = _stats.unnamed(state.stats)
    sigma = _validation.resolve(sigma_factor, prev.step)
    nan = jnp.full([], jnp.nan, f32)

    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    norm = _range.state_norm(
      _norms.root(_norms.global_power(leaves, 2, axis_name=axes), 2)
    )
    norm = norm.astype(f32)
    # A run-time sigma_factor that is negative or NaN skips (and counts) the
    # step, as a non-finite one does.
    bad = jnp.logical_not(_scaling.good_step(jnp.isfinite(norm), sigma))
    spike = jnp.array(False)
    norm_threshold = nan
    if watch_norm:
      active = state.norm_count >= min_history
      band = _band(state.norm_window, state.norm_count, sigma)
      spike = jnp.logical_and(active, norm > band)
      norm_threshold = jnp.where(active, band, nan)

    loss = extra_args.get("loss") if "loss" in watch else None
    if loss is None and not watch_norm:
      raise ValueError(
        f"optaxclip.{fn}: watch={watch!r} but `update` got no `loss=`; "
        "pass the step's loss, or watch 'grad_norm' too."
      )
    loss_value, loss_threshold = nan, nan
    if loss is not None:
      if jnp.ndim(loss) != 0:
        raise ValueError(
          f"optaxclip.{fn}: `loss` must be a scalar, got shape "
          f"{jnp.shape(loss)}; pass the mean loss of the step."
        )
      loss_value = jnp.asarray(loss).astype(f32)
      bad = jnp.logical_or(bad, jnp.logical_not(jnp.isfinite(loss_value)))
      active = state.loss_count >= min_history
      band = _band(state.loss_window, state.loss_count, sigma)
      spike = jnp.logical_or(spike, jnp.logical_and(active, loss_value > band))
      loss_threshold = jnp.where(active, band, nan)

    if max_consecutive_skips is not None:
      spike = jnp.logical_and(
        spike, prev.consecutive_skips < max_consecutive_skips
      )
    new_updates, inner_state, skipped, bad_out = _wrappers.guarded_update(
      inner,
      jnp.logical_or(bad, spike),
      updates,
      state.inner_state,
      params,
      extra_args,
      check_updates=check_updates,
      axis_name=axes,
    )
    accept = jnp.logical_not(skipped)
    norm_window, norm_count, norm_pos = (
      state.norm_window,
      state.norm_count,
      state.norm_pos,
    )
    if watch_norm:
      norm_window, norm_count, norm_pos = _push(
        norm_window, norm_count, norm_pos, norm, accept
      )
    loss_window, loss_count, loss_pos = (
      state.loss_window,
      state.loss_count,
      state.loss_pos,
    )
    if loss is not None:
      loss_window, loss_count, loss_pos = _push(
        loss_window, loss_count, loss_pos, loss_value, accept
      )
    base = _wrappers.next_skip_stats(
      _wrappers.SkipStats(*prev[:9]),
      skipped=skipped,
      nonfinite=jnp.logical_or(bad, bad_out),
      norm_before=norm,
      norm_after=norm,
      threshold=norm_threshold,
    )
    stats = SpikeSkipStats(
      *base, loss=loss_value, loss_threshold=loss_threshold
    )
    return new_updates, SpikeSkipState(
      inner_state=inner_state,
      norm_window=norm_window,
      norm_count=norm_count,
      norm_pos=norm_pos,
      loss_window=loss_window,
      loss_count=loss_count,
      loss_pos=loss_pos,
      stats=_stats.named(name, stats),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
