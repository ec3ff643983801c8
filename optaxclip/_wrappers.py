# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Wrappers that decide whether a whole inner step happens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend import core as jcore

from optaxclip import _core


@_core.register_stats_type
class SkipStats(NamedTuple):
  """Statistics of a skipping wrapper (the fields of ClipStats, and more).

  Attributes:
    norm_before: global L2 norm of the incoming gradients.
    norm_after: global L2 norm of the gradients passed on to the inner
      transformation: ``norm_before``, or 0 when the step was skipped.
    threshold: the value a step is compared against (NaN if none).
    scale: 1 when the step was applied, 0 when skipped.
    clipped: 1 when this step was skipped, else 0.
    nonfinite_count: steps skipped so far because of NaN/Inf.
    step: number of steps seen so far (skipped or not).
    skip_count: steps skipped so far, for any reason.
    consecutive_skips: skips in a row up to this step (0 after a good step).

  The counters are int32 and saturate at 2**31 - 1 (as
  :func:`optax.safe_increment`); they never wrap.
  """

  norm_before: jax.Array
  norm_after: jax.Array
  threshold: jax.Array
  scale: jax.Array
  clipped: jax.Array
  nonfinite_count: jax.Array
  step: jax.Array
  skip_count: jax.Array
  consecutive_skips: jax.Array


class SkipState(NamedTuple):
  """State of a skipping wrapper.

  Attributes:
    inner_state: the wrapped transformation's state; unchanged by a skipped
      step.
    stats: ``{name: SkipStats}``.
  """

  inner_state: Any
  stats: dict[str, SkipStats]


def init_skip_stats() -> SkipStats:
  """Statistics of a skipping wrapper before its first step."""
  zero = jnp.zeros([], jnp.int32)
  return SkipStats(*_core.init_stats(), skip_count=zero, consecutive_skips=zero)


def next_skip_stats(
  prev: SkipStats,
  *,
  skipped: jax.Array,
  nonfinite: jax.Array,
  norm_before: Any,
  norm_after: Any,
  threshold: Any = jnp.nan,
) -> SkipStats:
  """Statistics after one step of a skipping wrapper."""
  skipped_i = skipped.astype(jnp.int32)
  base = _core.next_stats(
    _core.ClipStats(*prev[:7]),
    finite=jnp.logical_not(nonfinite),
    norm_before=norm_before,
    norm_after=jnp.where(skipped, 0.0, norm_after),
    threshold=threshold,
    scale=1 - skipped_i,
    clipped=skipped_i,
  )
  return SkipStats(
    *base,
    # The counters saturate at the int32 maximum (optax.safe_increment).
    skip_count=jnp.where(
      skipped, optax.safe_increment(prev.skip_count), prev.skip_count
    ),
    consecutive_skips=jnp.where(
      skipped, optax.safe_increment(prev.consecutive_skips), 0
    ),
  )


def _is_array(x: Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _run_selecting(
  fn: Callable[..., tuple[Any, Any]],
  args: tuple[Any, ...],
  select: Callable[[int, jax.Array], jax.Array],
  state_def: Any,
) -> tuple[list[Any], list[Any], Any]:
  """``fn(*args)``, each state output replaced by ``select`` where it is made.

  ``fn`` returns ``(updates, state)``. Its program is traced and evaluated
  equation by equation (as :func:`jax.core.eval_jaxpr` does); the moment an
  equation produces the value of state leaf ``j``, that value is replaced by
  ``select(j, value)`` for every later use, the updates' computation
  included, as well as for the output. With ``select`` keeping the old
  leaf on a skipped step, the updates of an accepted step are unchanged
  (the selected value *is* the new one), and XLA sees each new state leaf
  written once, in place of the old one, then read by the updates, as in
  the unwrapped step. Selecting only the outputs instead leaves the new
  state read twice (by the updates and by the select), which on the CPU
  backend costs a fresh copy of the whole state every step (finding 3 of
  ``benchmarks/README.md``).

  Args:
    fn: ``(updates, state, params, extra_args) -> (updates, state)``.
    args: its arguments; leaves that are not arrays stay Python values.
    select: ``(state leaf index, new value) -> value to use``.
    state_def: the tree structure the state must keep.

  Returns:
    ``(update_leaves, state_leaves, update_treedef)``.

  Raises:
    ValueError: if ``fn`` returns a state of another structure.
  """
  flat, treedef = jax.tree.flatten(args)
  dynamic = [i for i, x in enumerate(flat) if _is_array(x)]
  trees = []

  def flat_fn(*xs):
    full = list(flat)
    for i, x in zip(dynamic, xs):
      full[i] = x
    updates, state = fn(*jax.tree.unflatten(treedef, full))
    u, u_def = jax.tree.flatten(updates)
    s, s_def = jax.tree.flatten(state)
    trees.append((len(u), u_def, s_def))
    return u + s

  closed = jax.make_jaxpr(flat_fn)(*[flat[i] for i in dynamic])
  n_u, u_def, s_def = trees[0]
  if s_def != state_def:
    raise ValueError(
      "optaxclip: the wrapped transformation returned a state of structure "
      f"{s_def}, but its state has structure {state_def}; a skip wrapper "
      "can only guard transformations whose state keeps its structure."
    )
  jaxpr = closed.jaxpr
  outs = jaxpr.outvars
  first: dict[Any, int] = {}
  for j, v in enumerate(outs[n_u:]):
    if isinstance(v, jcore.Var):
      first.setdefault(v, j)
  env: dict[Any, Any] = {}
  raw: dict[Any, Any] = {}

  def write(v, x):
    if v in first:
      raw[v] = x
      x = select(first[v], x)
    env[v] = x

  def read(v):
    return v.val if isinstance(v, jcore.Literal) else env[v]

  for v, x in zip(jaxpr.constvars, closed.consts):
    env[v] = x
  for v, i in zip(jaxpr.invars, dynamic):
    write(v, flat[i])
  for eqn in jaxpr.eqns:
    params = eqn.primitive.get_bind_params(eqn.params)
    with eqn.ctx.manager:
      ans = eqn.primitive.bind(*map(read, eqn.invars), **params)
    if not eqn.primitive.multiple_results:
      ans = [ans]
    for v, x in zip(eqn.outvars, ans):
      write(v, x)
  state = []
  for j, v in enumerate(outs[n_u:]):
    if isinstance(v, jcore.Var) and first[v] == j:
      state.append(env[v])
    else:  # a literal, or a value that is also an earlier state leaf
      state.append(select(j, raw[v] if isinstance(v, jcore.Var) else v.val))
  return [read(v) for v in outs[:n_u]], state, u_def


def guarded_update(
  inner: optax.GradientTransformation,
  skip_before: jax.Array,
  updates: Any,
  inner_state: Any,
  params: Any,
  extra_args: dict[str, Any],
  *,
  check_updates: bool,
) -> tuple[Any, Any, jax.Array, jax.Array]:
  """Runs ``inner`` unless a step must be skipped; the skip machinery.

  A skipped step returns zero updates and the old inner state, untouched;
  ``inner`` then sees zero gradients, so NaN gradients never reach its
  arithmetic. The choice between new and old state is made where each new
  state leaf is computed (see :func:`_run_selecting`), so that an accepted
  step costs what the inner step costs, plus a select that XLA fuses into
  it.

  Args:
    inner: the wrapped transformation.
    skip_before: a boolean decided from the incoming gradients.
    updates: incoming gradients.
    inner_state: the wrapped state.
    params: parameters (or None).
    extra_args: extra arguments, forwarded to ``inner``.
    check_updates: also skip when the inner step's updates are not finite
      (static). They are then computed once more before the state is
      chosen, and checked with :func:`_core.any_nonfinite`.

  Returns:
    ``(updates, inner_state, skipped, bad_updates)``; ``bad_updates``
    says the inner step's updates were not finite (always False without
    ``check_updates``).
  """
  inner = optax.with_extra_args_support(inner)

  def zeroed(skip):
    return jax.tree.map(lambda g: _core.zero_where(skip, g), updates)

  skipped = skip_before
  bad_out = jnp.array(False)
  if check_updates:
    trial, _ = inner.update(
      zeroed(skip_before), inner_state, params, **extra_args
    )
    out_leaves = jax.tree.leaves(trial)
    _core.check_leaves(out_leaves, "skip wrapper")
    bad_out = _core.any_nonfinite(out_leaves, computed=True)
    skipped = jnp.logical_or(skip_before, bad_out)
  # The mask reads every leaf's norm: computed once (see `materialize`).
  (skipped,) = _core.materialize(skipped)
  old = jax.tree.leaves(inner_state)

  def select(j, new):
    if new is old[j]:
      return new
    return jnp.where(skipped, old[j], new)

  state_def = jax.tree.structure(inner_state)
  u, s, u_def = _run_selecting(
    lambda g, st, p, e: inner.update(g, st, p, **e),
    (zeroed(skipped), inner_state, params, extra_args),
    select,
    state_def,
  )
  _core.check_leaves(u, "skip wrapper")
  u = [_core.zero_where(skipped, x) for x in u]
  return (
    jax.tree.unflatten(u_def, u),
    jax.tree.unflatten(state_def, s),
    skipped,
    bad_out,
  )


def skip_nonfinite(
  inner: optax.GradientTransformation,
  *,
  check_updates: bool = True,
  name: str = "skip_nonfinite",
) -> optax.GradientTransformationExtraArgs:
  r"""Skips a whole step, inner state included, when anything is NaN/Inf.

  Wraps a transformation (typically a whole chain ending in the optimizer).
  A step whose incoming gradients or outgoing updates contain NaN or Inf
  yields zero updates, and the inner state (Adam's moments and count,
  clippers' statistics) is left exactly as it was, so the bad step leaves
  no trace. This is what the ``nonfinite="zero"`` policy of a clipper cannot
  do on its own: a clipper that zeroes its output still lets a following
  Adam advance its count and decay its moments.

  .. math::

    (u, s) \leftarrow \begin{cases}
      \text{inner}(g, s) & \text{if } g \text{ and its update are finite}\\
      (0, s) & \text{otherwise}
    \end{cases}

  Skips and consecutive skips are counted in its :class:`SkipStats`,
  returned by :func:`optaxclip.stats` under ``name``. The check on the
  incoming gradients uses their global norm (accumulated in float32), so
  elements so large that their squares overflow float32 (about 1.8e19)
  also count as non-finite.

  How: the decision is made before the inner step writes anything. On a
  skipped step ``inner`` sees zero gradients, and each leaf of its new
  state is chosen between new and old right where the inner step computes
  it, so the accepted step's updates read the chosen state and XLA writes
  every state leaf once, in place (the inner step is traced and evaluated
  equation by equation for this; :func:`_run_selecting`). With
  ``check_updates`` the inner updates are computed once more before the
  choice, only to be checked.

  Cost (CPU backend, 20M parameters in 10 leaves, state donated, ratios to
  Adam alone measured side by side; ``benchmarks/README.md``, finding 3):
  1.6x Adam's step with ``check_updates=True``, 1.2x without; selecting the
  outputs after the inner step had cost 4.6-6x, because XLA then copied the
  whole state into fresh buffers every step.

  Args:
    inner: the transformation to guard. Its state must keep its structure
      from step to step (every optax transformation's does).
    check_updates: also skip a step whose gradients are finite but whose
      inner updates are not (for example Adam in float16 whose ``eps``
      rounds to 0), static. With False only the gradients are checked.
    name: key of its statistics in :func:`optaxclip.stats`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`SkipState`.

  Example:
    >>> import jax.numpy as jnp, optax, optaxclip
    >>> tx = optaxclip.skip_nonfinite(optax.adam(0.1))
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> u, state = tx.update(jnp.array([1.0, jnp.nan]), state, params)
    >>> u, int(state.inner_state[0].count)
    (Array([0., 0.], dtype=float32), 0)
    >>> int(optaxclip.stats(state)["skip_nonfinite"].skip_count)
    1

  Edge cases:

  ===================== ==================================================
  Case                  Result
  ===================== ==================================================
  NaN / Inf gradients   zero updates, inner state unchanged, counted
  finite gradients but  the same: the inner step is discarded (with
  non-finite update     ``check_updates=False``: passed on, not counted)
  zero gradients        passed to ``inner`` as usual
  empty pytree          passed through
  ===================== ==================================================
  """
  _core.check_name(name)
  if not isinstance(inner, optax.GradientTransformation):
    raise TypeError(
      "optaxclip.skip_nonfinite: `inner` must be an optax "
      f"GradientTransformation, got {type(inner).__name__}."
    )
  _core.check_flag(check_updates, "check_updates", "skip_nonfinite")

  @_core.unshared
  def init_fn(params):
    return SkipState(inner.init(params), _core.named(name, init_skip_stats()))

  def update_fn(updates, state, params=None, **extra_args):
    leaves = jax.tree.leaves(updates)
    _core.check_leaves(leaves, "skip_nonfinite")
    in_norm = _core.root(_core.global_power(leaves, 2), 2)
    bad_in = ~jnp.isfinite(in_norm)
    new_updates, inner_state, skipped, _ = guarded_update(
      inner,
      bad_in,
      updates,
      state.inner_state,
      params,
      extra_args,
      check_updates=check_updates,
    )
    new = next_skip_stats(
      _core.unnamed(state.stats),
      skipped=skipped,
      nonfinite=skipped,
      norm_before=in_norm,
      norm_after=in_norm,
    )
    return new_updates, SkipState(inner_state, _core.named(name, new))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
