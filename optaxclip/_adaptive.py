# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Adaptive clipping from the run's own norm history: AutoClip, ZClip, AdaGC.

All three keep a fixed-size state (it does not grow with the step count),
measure norms once with the shared machinery of ``optaxclip._norms``, and
never let a non-finite norm into their running statistics.
"""

from __future__ import annotations

import math
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
from optaxclip import _stats
from optaxclip import _validation

# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _check_count(
  value: Any, arg: str, fn: str, *, minimum: int, static: bool
) -> None:
  """Validates an integer argument (a window or a number of steps).

  A static one (it sizes a buffer) must be a Python integer; a non-static
  one may also be an array, as :func:`optax.inject_hyperparams` makes it,
  and is checked only when concrete.
  """
  if static:
    _validation.check_static(value, arg, fn)
  elif isinstance(value, jax.core.Tracer):
    return
  where = f"optaxclip.{fn}: `{arg}`"
  arr = np.asarray(value) if not isinstance(value, bool) else None
  if arr is None or arr.ndim != 0 or not np.issubdtype(arr.dtype, np.integer):
    raise TypeError(f"{where} must be an integer, got {value!r}.")
  if int(arr) < minimum:
    raise ValueError(f"{where} must be >= {minimum}, got {value!r}.")


def _replace_sorted(s: jax.Array, old: jax.Array, new: jax.Array):
  """Sorted ``s`` with one entry equal to ``old`` replaced by ``new``.

  ``s`` is ascending with ``+inf`` padding; ``old`` must be in it (``+inf``
  removes a padding entry). Two shifts, no sort.
  """
  i = jnp.arange(s.shape[0])
  inf = jnp.full([1], jnp.inf, s.dtype)
  at = jnp.sum(s < old)  # the first entry equal to old
  s = jnp.where(i < at, s, jnp.concatenate([s[1:], inf]))
  at = jnp.sum(s < new)  # new goes before the entries >= it
  shifted = jnp.concatenate([inf, s[:-1]])
  return jnp.where(i < at, s, jnp.where(i == at, new, shifted))


def _percentile_sorted(s: jax.Array, m: jax.Array, q: jax.Array):
  """NumPy's linear percentile of the first ``m`` entries of sorted ``s``.

  ``q`` is the fraction (p / 100). NaN when ``m == 0``.
  """
  mf = m.astype(jnp.float32)
  r = q * jnp.maximum(mf - 1, 0)
  lo = jnp.clip(jnp.floor(r), 0, jnp.maximum(mf - 1, 0))
  frac = r - lo
  lo = lo.astype(jnp.int32)
  hi = jnp.minimum(lo + 1, jnp.maximum(m - 1, 0))
  a, b = s[lo], s[hi]
  out = a + frac * (b - a)
  return jnp.where(m > 0, jnp.where(frac == 0, a, out), jnp.nan)


# ---------------------------------------------------------------------------
# AutoClip
# ---------------------------------------------------------------------------

# The streaming sketch (DDSketch with a fixed bucket range): relative accuracy
# alpha, buckets (gamma^(i-1), gamma^i] covering [1e-20, 1e20], plus a bucket
# for exact zeros. The bucket edges and representatives are rounded to
# float32 once, here, so a norm's bucket is decided exactly in float32.
SKETCH_ACCURACY = 0.01
SKETCH_RANGE = (1e-20, 1e20)
_GAMMA = (1 + SKETCH_ACCURACY) / (1 - SKETCH_ACCURACY)
_I_MIN = math.ceil(math.log(SKETCH_RANGE[0]) / math.log(_GAMMA))
_I_MAX = math.ceil(math.log(SKETCH_RANGE[1]) / math.log(_GAMMA))
_EXPONENTS = np.arange(_I_MIN, _I_MAX + 1, dtype=np.float64)
# _EDGES[k - 1] is the upper edge of bucket k >= 1; bucket 0 holds zeros.
_EDGES = (_GAMMA**_EXPONENTS).astype(np.float32)
# Representative of bucket k: 2 gamma^i / (gamma + 1), within a relative
# SKETCH_ACCURACY of every value in the bucket.
_MIDS = np.concatenate([[0.0], 2 * _GAMMA**_EXPONENTS / (_GAMMA + 1)]).astype(
  np.float32
)
SKETCH_BUCKETS = len(_MIDS)


def _autoclip_config(history: Any) -> str:
  """The ``window=`` of the autoclip that made a state, from its history."""
  shape = _restored.shape(history)
  dtype = getattr(history, "dtype", None)
  if shape == (SKETCH_BUCKETS,) and jnp.issubdtype(dtype, jnp.integer):
    return "window=None"
  return f"window={shape[0] if shape else '?'}"


class AutoClipState(NamedTuple):
  """State of :func:`autoclip`; its size is fixed at ``init``.

  Attributes:
    count: finite norms recorded so far. In window mode it wraps around in
      ``[0, 2 * window)`` (the write position is ``count % window``). In
      streaming mode it saturates at the int32 maximum (2**31 - 1): from
      then on the sketch is frozen (later norms are not added, so the
      threshold stays the percentile of the first 2**31 - 1 norms).
    history: window mode: the last ``window`` finite norms (float32 ring
      buffer; slots not yet written hold ``+inf``). Streaming mode: the
      sketch's cumulative bucket counts: ``history[k]`` norms fell in
      buckets ``0..k`` (int32, :data:`SKETCH_BUCKETS` of them).
    ordered: window mode: the same norms in ascending order (``+inf``
      last), kept sorted by one removal and one insertion per step, so the
      percentile is read without sorting. Streaming mode: a one-element
      placeholder, never read (so that orbax can save the state).
    lowest: smallest finite norm recorded (``+inf`` before the first).
    highest: largest finite norm recorded (``-inf`` before the first).
    stats: ``{name: ClipStats}``; ``threshold`` is this step's percentile.
  """

  count: jax.Array
  history: jax.Array
  ordered: jax.Array
  lowest: jax.Array
  highest: jax.Array
  stats: dict[str, _stats.ClipStats]


def _sketch_bucket(x: jax.Array) -> jax.Array:
  """Bucket of a finite norm ``x >= 0`` (0 for an exact zero)."""
  edges = jnp.asarray(_EDGES)
  # First edge >= x: x lies in (edge[j - 1], edge[j]], bucket j + 1.
  j = jnp.sum(edges < x, dtype=jnp.int32)
  k = jnp.minimum(j, len(_EDGES) - 1) + 1
  return jnp.where(x > 0, k, 0)


def _sketch_percentile(cum, n, q, lowest, highest) -> jax.Array:
  """NumPy-style linear percentile from the cumulative bucket counts."""
  r = q * jnp.maximum(n - 1, 0).astype(jnp.float32)
  lo = jnp.floor(r)
  frac = r - lo
  lo = lo.astype(jnp.int32)
  hi = jnp.minimum(lo + 1, jnp.maximum(n - 1, 0))
  mids = jnp.asarray(_MIDS)

  def order_stat(rank):
    # The bucket holding the rank-th smallest norm: the first whose
    # cumulative count exceeds the rank. The extremes are known exactly.
    k = jnp.sum(cum <= rank, dtype=jnp.int32)
    k = jnp.minimum(k, SKETCH_BUCKETS - 1)
    v = jnp.clip(mids[k], lowest, highest)
    return jnp.where(rank == 0, lowest, jnp.where(rank >= n - 1, highest, v))

  a, b = order_stat(lo), order_stat(hi)
  out = jnp.where(frac == 0, a, a + frac * (b - a))
  return jnp.where(n > 0, out, jnp.nan)


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  first step            threshold = its own norm: unchanged
  percentile = 0        threshold = smallest norm so far (exact in both
                        modes): every step is clipped to it
  percentile = 100      threshold = largest norm so far, this step's
                        included: never clips
  zero gradients        unchanged; the norm 0 is recorded (it is an
                        observation), so if more than p % of the recorded
                        norms are 0 the threshold is 0 and later updates
                        are zeroed
  norm = threshold      unchanged: clipping needs norm > threshold
  NaN / Inf gradients   not recorded; ``nonfinite="zero"`` (default):
                        zero updates, step counted in ``nonfinite_count``;
                        ``"propagate"``: NaN flows on (as optax);
                        ``"error"``: ``FloatingPointError``
  tiny or huge norms    (outside [1e-20, 1e20]) streaming mode only:
                        counted in the end bucket; the estimate is still
                        clamped to the exact smallest and largest norms
  bf16 / f16 leaves     norm accumulated in float32, output dtypes kept
  integer leaves        ``TypeError`` naming the dtype
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def autoclip(
  percentile: jax.typing.ArrayLike = 10.0,
  *,
  window: int | None = None,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "autoclip",
) -> optax.GradientTransformationExtraArgs:
  r"""AutoClip: clips to a percentile of the run's own gradient-norm history.

  With :math:`n_t` the global L2 norm of step :math:`t`'s gradients,

  .. math::

    \eta_t = P_p\big(\{n_1, \dots, n_t\}\big), \qquad
    u_t \leftarrow u_t \cdot \min\Big(1, \frac{\eta_t}{n_t}\Big),

  where :math:`P_p` is the :math:`p`-th percentile with linear interpolation
  (NumPy's default): with the :math:`m` recorded norms sorted as
  :math:`s_0 \le \dots \le s_{m-1}`, :math:`r = \tfrac{p}{100}(m - 1)`,
  :math:`P_p = s_{\lfloor r\rfloor} + (r - \lfloor r\rfloor)
  (s_{\lfloor r\rfloor + 1} - s_{\lfloor r\rfloor})`. The history includes
  this step's norm (paper, Algorithm 1), so the first step is never clipped.
  With the paper's :math:`p = 10` about 90 % of the steps are clipped: the
  threshold is a low, self-calibrating norm, and one value of :math:`p`
  works across losses whose scales differ by orders of magnitude.

  Two modes, both with a state whose size is fixed at ``init``:

  * ``window=W`` (exact): :math:`P_p` of the last :math:`W` norms, this
    step's included, kept in a ring buffer; agrees with ``np.percentile``
    step by step. Keeps the :math:`W` norms in arrival order and sorted
    (:math:`2W` floats); a step costs a few passes over them, no sort.
  * ``window=None`` (default, streaming): :math:`P_p` of the *whole*
    history, estimated with a DDSketch (Masson et al., 2019) of fixed range:
    bucket :math:`i` counts the norms in :math:`(\gamma^{i-1}, \gamma^i]`,
    :math:`\gamma = \frac{1+\alpha}{1-\alpha}`, :math:`\alpha = 0.01`,
    for norms in :math:`[10^{-20}, 10^{20}]`, plus a bucket for exact zeros
    (4,607 int32 cumulative counters, 18 KiB). The :math:`k`-th smallest norm is
    estimated by its bucket's representative :math:`2\gamma^i/(\gamma+1)`,
    clamped to the exact smallest and largest norms (kept, and used for the
    first and last ranks); the percentile interpolates between ranks as
    above. Every estimated order statistic, hence the percentile, is within
    a relative :math:`\alpha` = 1 % of the exact one whatever the
    distribution, its tail or its drift over the run.

  Measured against the exact full-history percentile at every step of runs
  of 200,000 norms (``benchmarks/autoclip_streaming_error.py``, results in
  ``benchmarks/results/``): relative error of the threshold in %, max /
  mean over all steps.

  ==================================== ============ ============ ===========
  distribution                         p = 10       p = 50       p = 90
  ==================================== ============ ============ ===========
  lognormal(0, 1.5)                    0.99 / 0.65  1.00 / 0.77  1.00 / 0.42
  Pareto(1.5)                          0.87 / 0.04  1.00 / 0.86  0.99 / 0.34
  Pareto(1.1)                          0.98 / 0.51  0.99 / 0.15  0.99 / 0.47
  lognormal(0, 0.3) + 1 % spikes       1.00 / 0.71  1.00 / 0.74  0.99 / 0.70
  drift: lognormal(0, 0.5) x 100^-t    1.00 / 0.50  1.00 / 0.50  1.00 / 0.50
  ==================================== ============ ============ ===========

  (The spikes multiply the norm by 10^2 to 10^4.) The P-squared algorithm
  (Jain & Chlamtac, 1985; five markers, 40 bytes), measured by the same
  script, is more accurate on average on stationary runs but has no bound:
  after the first 1,000 steps its error still reached 65 % (p = 90, spikes)
  and 132 % (drifting run).

  Args:
    percentile: :math:`p \in [0, 100]`; the paper recommends 10 (its
      Table 1). May be injected with :func:`optax.inject_hyperparams`
      (changing it mid-run is exact in both modes: the history is kept, not
      the percentile).
    window: static; ``None`` for the whole history (streaming estimate) or
      the number :math:`W \ge 1` of most recent norms (exact).
    nonfinite: what a NaN/Inf norm does: ``"zero"`` (default) zeroes this
      step's updates, ``"propagate"`` lets it through as optax does,
      ``"error"`` raises. Such a norm is never recorded.
    axis_name: a mapped axis name (``shard_map``) over which the gradients
      are sharded; the norm is reduced across it.
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is an
    :class:`AutoClipState`.

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> tx = optaxclip.autoclip(percentile=50.0, window=3)
    >>> state = tx.init(None)
    >>> for n in [1.0, 3.0, 2.0, 10.0]:
    ...   u, state = tx.update(jnp.array([n]), state)
    >>> u  # the median of the last three norms (3, 2, 10)
    Array([3.], dtype=float32)
    >>> float(optaxclip.stats(state)["autoclip"].threshold)
    3.0

  References:
    Seetharaman et al., `AutoClip: Adaptive Gradient Clipping for Source
    Separation Networks <https://arxiv.org/abs/2007.14469>`_, 2020

    Masson et al., `DDSketch: A Fast and Fully-Mergeable Quantile Sketch
    with Relative-Error Guarantees <https://arxiv.org/abs/1908.10693>`_,
    2019
  """
  fn = "autoclip"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_name(name)
  _validation.check_threshold(
    percentile, "percentile", fn, allow_schedule=False, upper=100
  )
  if window is not None:
    _check_count(window, "window", fn, minimum=1, static=True)
    window = int(window)
  _validation.check_nonfinite(nonfinite, fn)

  @_stats.unshared
  def init_fn(params):
    del params
    if window is None:
      history = jnp.zeros([SKETCH_BUCKETS], jnp.int32)
      # A one-element placeholder, never read: orbax cannot save an array
      # of zero size.
      ordered = jnp.zeros([1], jnp.float32)
    else:
      history = jnp.full([window], jnp.inf, jnp.float32)
      ordered = history
    return AutoClipState(
      count=jnp.zeros([], jnp.int32),
      history=history,
      ordered=ordered,
      lowest=jnp.full([], jnp.inf, jnp.float32),
      highest=jnp.full([], -jnp.inf, jnp.float32),
      stats=_stats.named(name, _stats.init_stats()),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    got = _restored.shape(state.history)
    _restored.check_config(
      fn,
      "history",
      got,
      (SKETCH_BUCKETS,) if window is None else (window,),
      _autoclip_config(state.history),
      f"window={window}",
    )
    leaves = jax.tree.leaves(updates)
    _validation.check_leaves(leaves, fn)
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    norm = _norms.root(_norms.global_power(leaves, 2, axis_name=axes), 2)
    norm = _range.state_norm(norm)  # beyond the float32 state: non-finite
    finite = jnp.isfinite(norm)
    x = jnp.where(finite, norm, 0).astype(jnp.float32)
    q = _stats.f32(percentile) / 100
    lowest = jnp.where(finite, jnp.minimum(state.lowest, x), state.lowest)
    highest = jnp.where(finite, jnp.maximum(state.highest, x), state.highest)
    add = finite.astype(jnp.int32)
    if window is None:
      # The sketch freezes once `count` reaches the int32 maximum (2**31 - 1
      # finite steps), so no counter wraps: later norms are not added.
      take = finite & (state.count < jnp.iinfo(jnp.int32).max)
      k = jnp.arange(SKETCH_BUCKETS)
      history = state.history + (take & (k >= _sketch_bucket(x)))
      count = jnp.where(take, optax.safe_increment(state.count), state.count)
      ordered = state.ordered
      threshold = _sketch_percentile(history, count, q, lowest, highest)
    else:
      slot = state.count % window
      old = state.history[slot]
      history = (
        jnp.asarray(state.history).at[slot].set(jnp.where(finite, x, old))
      )
      ordered = jnp.where(
        finite, _replace_sorted(state.ordered, old, x), state.ordered
      )
      count = state.count + add
      count = jnp.where(count >= 2 * window, count - window, count)
      m = jnp.minimum(count, window)
      threshold = _percentile_sorted(ordered, m, q)
    prev = _stats.unnamed(state.stats)
    updates, new, (count, lowest, highest) = _scaling.clip_global(
      updates,
      norm,
      threshold,
      prev,
      policy=nonfinite,
      fn=fn,
      name=name,
      also=(count, lowest, highest),
    )
    return updates, AutoClipState(
      count=count,
      history=history.astype(state.history.dtype),
      ordered=ordered,
      lowest=lowest,
      highest=highest,
      stats=_stats.named(name, new),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------------------
# ZClip
# ---------------------------------------------------------------------------

_ZCLIP_MODES = ("zscore", "percentile")
_ZCLIP_OPTIONS = ("adaptive_scaling", "mean")


ZClipStats = _stats.stats_type(
  "ZClipStats",
  """Statistics of :func:`zclip` (the fields of ClipStats, and more).

  Attributes:
    norm_before: global L2 norm of the incoming gradients.
    norm_after: global L2 norm of the outgoing updates.
    threshold: the clip threshold applied on this step: the adaptive one on
      a spike, capped by ``max_grad_norm``; ``max_grad_norm`` (``inf`` if
      None) otherwise and during warm-up.
    scale: factor the updates were multiplied by (0 when zeroed).
    clipped: 1 when the updates were scaled down (or zeroed), else 0.
    nonfinite_count: steps so far whose norm was NaN/Inf.
    step: steps seen so far.
    zscore: :math:`z_t` of this step's norm (NaN during warm-up and for a
      non-finite norm).
    spike: 1 when this step was a spike (:math:`z_t > z_{thr}`, or, in
      ``"percentile"`` mode, a norm above :math:`\\mu + z_{thr}\\sigma`).
    spike_count: spikes so far (int32; saturates at 2**31 - 1).
  """,
  "zscore",
  "spike",
  "spike_count",
)


class ZClipState(NamedTuple):
  """State of :func:`zclip`; its size is fixed at ``init``.

  Attributes:
    buffer: the finite norms of the warm-up (float32, ``warmup_steps`` of
      them; unused afterwards).
    count: finite norms collected in the warm-up so far (at most
      ``warmup_steps``; the warm-up is over when it is reached).
    mean: EMA :math:`\\mu` of the norm (0 during warm-up).
    var: EMA :math:`\\sigma^2` of the norm (0 during warm-up).
    stats: ``{name: ZClipStats}``.
  """

  buffer: jax.Array
  count: jax.Array
  mean: jax.Array
  var: jax.Array
  stats: dict[str, ZClipStats]


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  warm-up               clipped at ``max_grad_norm`` only (unchanged if
                        None); no spike is detected
  z_thresh = 0          every norm above the mean is a spike
  max_grad_norm = None  no cap: only spikes are clipped
  max_grad_norm = 0     zero updates (the cap applies to every step)
  clip_factor > 1       the adaptive threshold may exceed the norm: the
                        spike is then not clipped, but still feeds the
                        threshold to the EMA (as the reference does)
  constant norms        sigma -> 0; eps keeps z finite (with eps = 0 a
                        norm above the mean has z = inf: a spike, clipped
                        to the mean)
  zero gradients        unchanged; norm 0 enters the statistics
  NaN / Inf gradients   never enter the warm-up buffer or the EMA (a
                        NaN step does not count towards the warm-up);
                        ``nonfinite="zero"`` (default): zero updates,
                        counted; ``"propagate"``: as optax; ``"error"``:
                        ``FloatingPointError``
  bf16 / f16 leaves     norm accumulated in float32, output dtypes kept
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def zclip(
  alpha: jax.typing.ArrayLike = 0.97,
  z_thresh: jax.typing.ArrayLike = 2.5,
  max_grad_norm: _validation.ThresholdOrSchedule | None = 1.0,
  eps: jax.typing.ArrayLike = 1e-6,
  warmup_steps: int = 25,
  mode: str = "zscore",
  clip_option: str = "adaptive_scaling",
  clip_factor: jax.typing.ArrayLike = 1.0,
  skip_update_on_spike: bool = False,
  *,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "zclip",
) -> optax.GradientTransformationExtraArgs:
  r"""ZClip: clips gradient-norm spikes detected by an EMA z-score.

  **Warm-up.** The first ``warmup_steps`` finite norms :math:`n_t` are
  collected (clipped meanwhile at ``max_grad_norm`` if set); then
  :math:`\mu` and :math:`\sigma^2` are their mean and (population)
  variance. **Afterwards**, each step:

  .. math::

    z_t = \frac{n_t - \mu}{\sigma + \epsilon}, \qquad
    \tau_t = \begin{cases}
      c\,\big(\mu + z_{thr}^2\,\sigma / z_t\big)
        & \text{zscore, adaptive}\_\text{scaling, if } z_t > z_{thr}\\
      \mu & \text{zscore, mean, if } z_t > z_{thr}\\
      \mu + z_{thr}\,\sigma
        & \text{percentile, if } n_t > \mu + z_{thr}\,\sigma\\
      \text{none} & \text{otherwise (not a spike)}
    \end{cases}

  The gradients are rescaled to the norm :math:`\min(\tau_t, M)` when they
  exceed it (:math:`M` = ``max_grad_norm``, :math:`+\infty` when None, so
  the cap limits the applied clip only). Then, unless
  ``skip_update_on_spike`` and the step is a spike, with
  :math:`x_t = \tau_t` on a spike and :math:`n_t` otherwise:

  .. math::

    \mu \leftarrow \alpha\mu + (1-\alpha)\,x_t, \qquad
    \sigma^2 \leftarrow \alpha\sigma^2 + (1-\alpha)\,(x_t - \mu)^2

  (the variance uses the updated mean). In ``adaptive_scaling`` the
  threshold gets *smaller* as the spike gets bigger: the ratio
  :math:`z_t / z_{thr}` penalises large outliers more.

  Defaults are those of the authors' reference implementation
  (``bluorion-com/ZClip``, ``zclip.py``); its README suggests
  :math:`\alpha \approx 0.90`-:math:`0.95`, :math:`z_{thr} \approx 2` and
  ``clip_factor`` 0.5-0.9 for more aggressive clipping. Differences from
  that code: the clip factor is :math:`\tau/n_t` (it divides by
  :math:`n_t + 10^{-6}`); a NaN/Inf norm never enters the statistics (it
  has no such handling); the norm is accumulated in float32.
  ``mode="percentile"`` is that code's percentile branch (threshold
  :math:`\mu + z_{thr}\sigma`, applied when the norm exceeds it), which
  ``tests/test_reference_code.py`` checks line by line.

  Args:
    alpha: EMA factor :math:`\alpha \in [0, 1]`.
    z_thresh: z-score threshold :math:`z_{thr} \ge 0`.
    max_grad_norm: cap :math:`M \ge 0` on the applied threshold (also the
      warm-up's clip), a schedule of the step, or None for no cap. The cap
      applies on **every** step, spike or not, so with the default 1.0
      ZClip is at least as tight as ``clip_by_global_norm(1.0)``; pass
      None for spike-only clipping.
    eps: :math:`\epsilon \ge 0`, added to :math:`\sigma` in the z-score.
    warmup_steps: static; number :math:`\ge 1` of finite norms collected
      before the EMA starts (the size of the warm-up buffer).
    mode: static; ``"zscore"`` (default) or ``"percentile"`` (clip to
      :math:`\mu + z_{thr}\sigma` whenever the norm exceeds it).
    clip_option: static, ``"zscore"`` mode only: ``"adaptive_scaling"``
      (default) or ``"mean"`` (clip spikes to :math:`\mu`).
    clip_factor: :math:`c \ge 0`, multiplies the adaptive threshold.
    skip_update_on_spike: static; when True a spike does not update
      :math:`\mu` and :math:`\sigma^2` (the step is still clipped).
    nonfinite: policy for a NaN/Inf norm: ``"zero"`` (default),
      ``"propagate"`` or ``"error"``.
    axis_name: mapped axis to reduce the norm over (``shard_map``).
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`ZClipState` and whose statistics are :class:`ZClipStats`.

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> tx = optaxclip.zclip(warmup_steps=4, max_grad_norm=None)
    >>> state = tx.init(None)
    >>> for n in [1.0, 1.2, 0.8, 1.0, 1.1, 9.0]:
    ...   u, state = tx.update(jnp.array([n]), state)
    >>> s = optaxclip.stats(state)["zclip"]
    >>> int(s.spike), round(float(s.zscore), 1), round(float(u[0]), 3)
    (1, 57.0, 1.018)

  References:
    Kumar et al., `ZClip: Adaptive Spike Mitigation for LLM Pre-Training
    <https://arxiv.org/abs/2504.02507>`_, 2025
  """
  fn = "zclip"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_name(name)
  _validation.check_threshold(alpha, "alpha", fn, allow_schedule=False, upper=1)
  _validation.check_threshold(z_thresh, "z_thresh", fn, allow_schedule=False)
  if max_grad_norm is not None:
    _validation.check_threshold(max_grad_norm, "max_grad_norm", fn)
  _validation.check_threshold(eps, "eps", fn, allow_schedule=False)
  _check_count(warmup_steps, "warmup_steps", fn, minimum=1, static=True)
  warmup_steps = int(warmup_steps)
  _validation.check_static(mode, "mode", fn)
  _validation.check_choice(mode, "mode", fn, _ZCLIP_MODES)
  _validation.check_static(clip_option, "clip_option", fn)
  _validation.check_choice(clip_option, "clip_option", fn, _ZCLIP_OPTIONS)
  _validation.check_threshold(
    clip_factor, "clip_factor", fn, allow_schedule=False
  )
  _validation.check_flag(skip_update_on_spike, "skip_update_on_spike", fn)
  _validation.check_nonfinite(nonfinite, fn)

  @_stats.unshared
  def init_fn(params):
    del params
    zero = jnp.zeros([], jnp.float32)
    base = _stats.init_stats()
    stats = ZClipStats(
      *base,
      zscore=jnp.full([], jnp.nan, jnp.float32),
      spike=zero,
      spike_count=jnp.zeros([], jnp.int32),
    )
    return ZClipState(
      buffer=jnp.zeros([warmup_steps], jnp.float32),
      count=jnp.zeros([], jnp.int32),
      mean=zero,
      var=zero,
      stats=_stats.named(name, stats),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    got = _restored.shape(state.buffer)
    _restored.check_config(
      fn,
      "buffer",
      got,
      (warmup_steps,),
      f"warmup_steps={got[0] if got else '?'}",
      f"warmup_steps={warmup_steps}",
    )
    leaves = jax.tree.leaves(updates)
    _validation.check_leaves(leaves, fn)
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    norm = _norms.root(_norms.global_power(leaves, 2, axis_name=axes), 2)
    norm = _range.state_norm(norm)  # beyond the float32 state: non-finite
    finite = jnp.isfinite(norm)
    x = jnp.where(finite, norm, 0).astype(jnp.float32)
    prev = _stats.unnamed(state.stats)
    a, zt, e, c = (
      _stats.f32(alpha),
      _stats.f32(z_thresh),
      _stats.f32(eps),
      _stats.f32(clip_factor),
    )
    if max_grad_norm is None:
      cap = jnp.full([], jnp.inf, jnp.float32)
    else:
      cap = _stats.f32(_validation.resolve(max_grad_norm, prev.step))

    # Warm-up: collect the norm; initialise mean and variance at the end.
    warm = state.count < warmup_steps
    collect = warm & finite
    slot = jnp.minimum(state.count, warmup_steps - 1)
    buffer = (
      jnp.asarray(state.buffer)
      .at[slot]
      .set(jnp.where(collect, x, state.buffer[slot]))
    )
    count = state.count + collect.astype(jnp.int32)
    ready = warm & (count == warmup_steps)
    mean0 = jnp.mean(buffer)
    var0 = jnp.mean(jnp.square(buffer - mean0))

    # After warm-up: z-score against the statistics before this step.
    std = jnp.sqrt(state.var)
    z = (x - state.mean) / (std + e)
    if mode == "zscore":
      spike = z > zt
      if clip_option == "adaptive_scaling":
        target = (state.mean + zt**2 * std / jnp.where(spike, z, 1)) * c
      else:
        target = state.mean
    else:
      target = state.mean + zt * std
      spike = x > target
    spike = spike & finite & ~warm
    threshold = jnp.minimum(jnp.where(spike, target, jnp.inf), cap)

    # EMA of the adaptive threshold on a spike, of the norm otherwise.
    value = jnp.where(spike, target, x)
    new_mean = a * state.mean + (1 - a) * value
    new_var = a * state.var + (1 - a) * jnp.square(value - new_mean)
    update = finite & ~warm
    if skip_update_on_spike:
      update = update & ~spike
    mean = jnp.where(ready, mean0, jnp.where(update, new_mean, state.mean))
    var = jnp.where(ready, var0, jnp.where(update, new_var, state.var))

    extra = (
      jnp.where(warm | ~finite, jnp.nan, z).astype(jnp.float32),
      spike.astype(jnp.float32),
      jnp.where(
        spike, optax.safe_increment(prev.spike_count), prev.spike_count
      ),
      count,
      mean.astype(jnp.float32),
      var.astype(jnp.float32),
    )
    updates, base, extra = _scaling.clip_global(
      updates,
      norm,
      threshold,
      _stats.ClipStats(*prev[:7]),
      policy=nonfinite,
      fn=fn,
      name=name,
      also=extra,
    )
    zscore, spike, spike_count, count, mean, var = extra
    stats = ZClipStats(
      *base, zscore=zscore, spike=spike, spike_count=spike_count
    )
    return updates, ZClipState(
      buffer=buffer,
      count=count,
      mean=mean,
      var=var,
      stats=_stats.named(name, stats),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------------------
# AdaGC
# ---------------------------------------------------------------------------


class AdaGCState(NamedTuple):
  """State of :func:`adagc`; its size is fixed at ``init``.

  Attributes:
    gamma: :math:`\\gamma_i`, one per leaf (in ``jax.tree.leaves`` order),
      float32. ``+inf`` until the leaf has had a positive, finite clipped
      norm; a leaf at ``+inf`` is not clipped after the warm-up.
    count: steps with a finite norm so far (the warm-up lasts
      ``warmup_steps`` of them).
    stats: ``{name: ClipStats}``.
  """

  gamma: jax.Array
  count: jax.Array
  stats: dict[str, _stats.ClipStats]


@_scaling.edge_cases(
  """
  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  warm-up               global clipping at ``lambda_abs``
                        (``threshold`` = ``lambda_abs``)
  after warm-up         per-leaf thresholds: ``threshold`` is NaN,
                        ``scale`` the smallest leaf factor, ``clipped``
                        the fraction of leaves clipped
  warmup_steps = 0      per-leaf clipping from the first step; each
                        leaf's first positive norm sets its gamma
  zero leaf gradient    unchanged, and its gamma is left as it was (never
                        pulled to 0, so the leaf is not clipped to zero
                        forever)
  leaf first seen       (gamma still unset) not clipped; its clipped norm
  after warm-up         initialises gamma
  NaN / Inf gradients   no gamma changes and the step does not count
                        towards the warm-up; ``nonfinite="zero"``
                        (default): zero updates, counted;
                        ``"propagate"``: as optax; ``"error"``:
                        ``FloatingPointError``
  bf16 / f16 leaves     norms accumulated in float32, output dtypes kept
  ===================== =================================================="""
)
@_norms.documents_partition_specs
def adagc(
  beta: jax.typing.ArrayLike = 0.98,
  lambda_abs: _validation.ThresholdOrSchedule = 1.0,
  lambda_rel: jax.typing.ArrayLike = 1.05,
  warmup_steps: jax.typing.ArrayLike = 100,
  *,
  nonfinite: _validation.NonFinitePolicy = "zero",
  axis_name: Any = None,
  partition_specs: Any = None,
  name: str = "adagc",
) -> optax.GradientTransformationExtraArgs:
  r"""AdaGC: per-tensor clipping relative to an EMA of its own clipped norms.

  For each leaf (tensor) :math:`i` with gradient :math:`g_{t,i}`:

  **Warm-up** (the first ``warmup_steps`` finite steps): global clipping at
  :math:`\lambda_{abs}`, and :math:`\gamma_i` tracks the running minimum of
  the clipped per-leaf norms,

  .. math::

    h_t = \min\Big(1, \frac{\lambda_{abs}}{\lVert g_t \rVert}\Big), \quad
    \hat g_{t,i} = h_t\, g_{t,i}, \quad
    \gamma_i \leftarrow \min\big(\gamma_i, \lVert \hat g_{t,i} \rVert\big).

  **Afterwards**, each leaf is clipped against its own history:

  .. math::

    \hat g_{t,i} = \min\Big(1, \frac{\lambda_{rel}\,\gamma_i}
      {\lVert g_{t,i}\rVert}\Big)\, g_{t,i}, \qquad
    \gamma_i \leftarrow \beta\,\gamma_i
      + (1-\beta)\,\lVert \hat g_{t,i} \rVert.

  The EMA tracks *clipped* norms, so a spike moves :math:`\gamma_i` by at
  most a factor :math:`1 + (1-\beta)(\lambda_{rel} - 1)`. A leaf whose
  clipped norm is zero or non-finite leaves :math:`\gamma_i` unchanged;
  :math:`\gamma_i` starts unset (``+inf``), and a leaf first seen after the
  warm-up is initialised by its first norm (as the authors' code does).
  The leaf norms are measured once; the global norm of the warm-up is
  derived from them.

  Defaults (``beta=0.98``, ``lambda_rel=1.05``, ``lambda_abs=1.0``,
  ``warmup_steps=100``) are those of the public port in
  ``kozistr/pytorch_optimizer``. The authors' released code
  (``lishuai-97/AdaGC``, a Megatron-LM patch) and its launch script use
  ``lambda_rel=1.04``, ``beta=0.99``, 100 warm-up steps and
  ``lambda_abs`` = the run's usual global clip (1.0); pass those to
  reproduce the paper's runs. Like the authors' code, the warm-up covers
  steps :math:`1..T` (the port's covers :math:`T - 1` steps) and the factor
  is :math:`\lambda/n`; the port adds its ``eps`` (1e-8) to the norm of the
  warm-up only and nothing afterwards.

  Two differences from the port matter beyond rounding:

  * **Its warm-up clips against the squared global norm.** The port's
    ``get_global_gradient_norm`` returns the *sum of squares*, which its
    warm-up uses as the norm, so the warm-up factor is
    :math:`\min(1, \lambda_{abs}/\lVert g\rVert^2)`: with
    :math:`\lambda_{abs} = 1` the gradient ``[3, 4]`` comes out as
    ``[0.12, 0.16]`` there and ``[0.6, 0.8]`` here (the paper's
    :math:`\min(1, \lambda_{abs}/\lVert g\rVert)`). Its defaults were
    chosen with that warm-up.
  * **An exactly zero leaf gradient.** Both the authors' code and the port
    fold the zero norm into :math:`\gamma_i` (in warm-up the running minimum
    becomes 0, and the leaf is multiplied by 0 from then on). Here a zero
    clipped norm leaves :math:`\gamma_i` as it was: a leaf that receives no
    gradient for a step (a frozen or unused parameter, a masked expert) would
    otherwise never be updated again, which is a failure mode of the
    reference, not a design choice stated in the paper.

  ``tests/test_reference_code.py`` runs NumPy transcriptions of the port's
  update lines side by side with this implementation.

  Args:
    beta: EMA factor :math:`\beta \in [0, 1]`.
    lambda_abs: :math:`\lambda_{abs} > 0`, the warm-up's global threshold,
      or a schedule of the step.
    lambda_rel: :math:`\lambda_{rel} > 0`, the relative threshold.
    warmup_steps: number :math:`T \ge 0` of finite steps of warm-up. Not
      structural: it may be injected with :func:`optax.inject_hyperparams`.
    nonfinite: policy for a NaN/Inf norm (any leaf): ``"zero"`` (default),
      ``"propagate"`` or ``"error"``.
    axis_name: mapped axis to reduce the leaf norms over (``shard_map``).
    partition_specs: PARTITION_SPECS
    name: key of this clipper's statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is an
    :class:`AdaGCState`.

  Example:
    >>> import jax.numpy as jnp, optaxclip
    >>> tx = optaxclip.adagc(warmup_steps=2)
    >>> g = {"a": jnp.array([0.3, 0.4]), "b": jnp.array([0.1])}
    >>> state = tx.init(g)
    >>> for _ in range(3):
    ...   u, state = tx.update(g, state)
    >>> state.gamma  # the leaf norms, unclipped so far
    Array([0.5, 0.1], dtype=float32)
    >>> u, state = tx.update({"a": jnp.array([3.0, 4.0]), "b": g["b"]}, state)
    >>> u["a"]  # clipped to lambda_rel * gamma_a = 1.05 * 0.5
    Array([0.315, 0.42 ], dtype=float32)

  References:
    Wang et al., `AdaGC: Enhancing LLM Pretraining Stability via Adaptive
    Gradient Clipping <https://arxiv.org/abs/2502.11034>`_, 2025
  """
  fn = "adagc"
  _norms.check_partition_specs(partition_specs, axis_name, fn)
  _validation.check_name(name)
  _validation.check_threshold(beta, "beta", fn, allow_schedule=False, upper=1)
  _validation.check_threshold(lambda_abs, "lambda_abs", fn, positive=True)
  _validation.check_threshold(
    lambda_rel, "lambda_rel", fn, allow_schedule=False, positive=True
  )
  _check_count(warmup_steps, "warmup_steps", fn, minimum=0, static=False)
  _validation.check_nonfinite(nonfinite, fn)

  @_stats.unshared
  def init_fn(params):
    n = len(jax.tree.leaves(params))
    return AdaGCState(
      gamma=jnp.full([n], jnp.inf, jnp.float32),
      count=jnp.zeros([], jnp.int32),
      stats=_stats.named(name, _stats.init_stats()),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    leaves, treedef = jax.tree.flatten(updates)
    _validation.check_leaves(leaves, fn)
    prev = _stats.unnamed(state.stats)
    if len(leaves) != state.gamma.shape[0]:
      raise ValueError(
        f"optaxclip.{fn}: the state was initialised for "
        f"{state.gamma.shape[0]} leaves but the updates have {len(leaves)}; "
        "call init with a pytree of the same structure as the gradients."
      )
    if not leaves:
      return updates, state._replace(
        stats=_stats.named(
          name,
          _stats.next_stats(prev, finite=jnp.array(True), norm_before=0.0),
        )
      )
    axes = _norms.layout(axis_name, partition_specs, fn, updates)
    powers = _norms.leaf_powers(leaves, 2, axis_name=axes)
    powers = _norms.stack_scalars(powers)
    norms = _norms.root(powers, 2)
    total = _norms.combine(powers, 2)
    gnorm = _norms.root(total, 2)
    warm = state.count < warmup_steps
    abs_thr = _validation.resolve(lambda_abs, prev.step)
    # A run-time threshold that is negative or NaN makes a bad step.
    finite = _scaling.good_step(jnp.isfinite(total), abs_thr, lambda_rel)
    h, global_clipped = _scaling.clip_factor(gnorm, abs_thr, nonfinite)
    unset = jnp.isinf(state.gamma)
    rel_thr = jnp.where(unset, jnp.inf, _stats.f32(lambda_rel) * state.gamma)
    f_leaf, leaf_clipped = _scaling.clip_factor(norms, rel_thr, nonfinite)
    factor = jnp.where(warm, h, f_leaf)

    # gamma: running minimum in warm-up, EMA afterwards, of clipped norms.
    clipped_norms = (norms * factor).astype(jnp.float32)
    valid = finite & (clipped_norms > 0) & jnp.isfinite(clipped_norms)
    b = _stats.f32(beta)
    ema = jnp.where(
      unset, clipped_norms, b * state.gamma + (1 - b) * clipped_norms
    )
    new_gamma = jnp.where(warm, jnp.minimum(state.gamma, clipped_norms), ema)
    gamma = jnp.where(valid, new_gamma, state.gamma)
    count = optax.safe_increment(state.count)
    count = jnp.where(finite, count, state.count)

    _scaling.check_finite(
      finite,
      nonfinite,
      fn,
      name,
      gnorm,
      prev.step,
      jnp.minimum(_stats.f32(abs_thr), _stats.f32(lambda_rel)),
    )
    keep = _scaling.keep_mask(finite, nonfinite)
    applied = _scaling.compute_each_once(factor)
    out = [_scaling.scale_leaf(x, f, keep) for x, f in zip(leaves, applied)]
    after = _norms.root(_norms.combine(powers * factor**2, 2), 2)
    scale = jnp.min(factor)
    clipped = jnp.where(
      warm, global_clipped, jnp.mean(leaf_clipped.astype(jnp.float32))
    )
    if keep is not None:
      after = jnp.where(keep, after, 0)
      scale = jnp.where(keep, scale, 0)
      clipped = jnp.where(keep, clipped, 1.0)
    stats = _stats.next_stats(
      prev,
      finite=finite,
      norm_before=gnorm,
      norm_after=after,
      threshold=jnp.where(warm, _stats.f32(abs_thr), jnp.nan),
      scale=scale,
      clipped=clipped,
    )
    return jax.tree.unflatten(treedef, out), AdaGCState(
      gamma=gamma.astype(jnp.float32),
      count=count,
      stats=_stats.named(name, stats),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
