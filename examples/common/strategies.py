# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Command-line specs for clipping strategies and optimizers.

A spec is ``NAME[:ARG,...,KEY=VALUE,...]``, for example::

  clip_by_global_norm:1.0
  clip_by_global_norm:0.25,ord=inf
  zclip:z_thresh=2.0
  clip_by_layer:{"encoder/**": 1.0},default=5.0
  adamw:weight_decay=0.01

Strategies are discovered at run time from ``optaxclip.__all__``: every
public function that returns an Optax gradient transformation is available
under its public name, with its own positional and keyword arguments
(checked against :func:`inspect.signature`). Public functions whose first
argument is itself a transformation (``skip_nonfinite``, ``skip_on_spike``,
...) are *wrappers*, used by ``--skip``. ``per_example_clip``, which
aggregates per-example gradients, is not offered: a trainer's gradients have
no batch axis.

Values are Python literals read with :func:`ast.literal_eval`, never
evaluated as code. For convenience a bare word is a string
(``nonfinite=zero``), and ``inf`` / ``nan`` are the floats.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optax

import optaxclip

NONE_NAMES = ("none", "off", "")

# Short names accepted by --skip.
SKIP_ALIASES = {"nonfinite": "skip_nonfinite", "spike": "skip_on_spike"}


class SpecError(ValueError):
  """A malformed or unknown ``--clip`` / ``--optimizer`` spec."""


def _annotation_text(annotation: Any) -> str:
  if annotation is inspect.Parameter.empty:
    return ""
  if isinstance(annotation, str):
    return annotation
  return getattr(annotation, "__name__", "") or repr(annotation)


def _returns_transformation(fn: Callable) -> bool:
  try:
    sig = inspect.signature(fn)
  except (TypeError, ValueError):
    return False
  return "GradientTransformation" in _annotation_text(sig.return_annotation)


def _takes_transformation(fn: Callable) -> bool:
  """Whether the first parameter of ``fn`` is a required transformation."""
  params = list(inspect.signature(fn).parameters.values())
  if not params or params[0].default is not inspect.Parameter.empty:
    return False
  text = _annotation_text(params[0].annotation)
  return "GradientTransformation" in text or params[0].name in (
    "inner",
    "tx",
    "transformation",
    "inner_tx",
  )


def _public_transformations() -> dict[str, Callable]:
  out = {}
  for name in getattr(optaxclip, "__all__", ()):
    obj = getattr(optaxclip, name, None)
    if inspect.isfunction(obj) and _returns_transformation(obj):
      out[name] = obj
  return out


# Transformations that change the tree's shapes (per-example gradients in,
# one aggregated gradient out) cannot stand in a trainer's chain, whose
# gradients have no batch axis.
_NOT_A_CLIP = frozenset({"per_example_clip"})


def clip_strategies() -> dict[str, Callable]:
  """Every public optaxclip strategy usable with ``--clip``, by name."""
  return {
    k: f
    for k, f in _public_transformations().items()
    if not _takes_transformation(f) and k not in _NOT_A_CLIP
  }


def wrappers() -> dict[str, Callable]:
  """Public optaxclip wrappers (first argument: a transformation)."""
  return {
    k: f
    for k, f in _public_transformations().items()
    if _takes_transformation(f)
  }


def optimizers() -> dict[str, Callable]:
  """Optax optimizers that take a ``learning_rate``, by name."""
  out = {}
  for name in dir(optax):
    obj = getattr(optax, name)
    if name.startswith("_") or not inspect.isfunction(obj):
      continue
    try:
      params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
      continue
    first = next(iter(params), None)
    if first == "learning_rate":
      out[name] = obj
  return out


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

_NAMED_CONSTANTS = {
  "inf": math.inf,
  "nan": math.nan,
  "true": True,
  "false": False,
  "none": None,
}


def _literal(node: ast.AST, text: str) -> Any:
  """A literal value; a bare word is a string, ``inf``/``nan`` floats."""
  if isinstance(node, ast.Name):
    return _NAMED_CONSTANTS.get(node.id.lower(), node.id)
  if (
    isinstance(node, ast.UnaryOp)
    and isinstance(node.op, (ast.USub, ast.UAdd))
    and isinstance(node.operand, ast.Name)
    and node.operand.id.lower() in ("inf", "nan")
  ):
    v = _NAMED_CONSTANTS[node.operand.id.lower()]
    return -v if isinstance(node.op, ast.USub) else v
  try:
    return ast.literal_eval(node)
  except ValueError:
    raise SpecError(
      f"{ast.get_source_segment(text, node)!r} is not a literal (numbers, "
      "strings, tuples, lists, dicts, True/False/None, inf); expressions "
      "are not evaluated."
    ) from None


def parse_spec(spec: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
  """Splits ``NAME[:ARG,...,KEY=VALUE,...]`` into name, args and kwargs.

  Args:
    spec: the spec.

  Returns:
    ``(name, args, kwargs)``.

  Raises:
    SpecError: the arguments are not a comma-separated list of literals
      and ``key=literal`` pairs.
  """
  if not spec.strip():
    raise SpecError("Empty spec; write `none` for no clipping, or NAME[:ARGS].")
  name, _, argtext = spec.strip().partition(":")
  name = name.strip()
  if not name.isidentifier() and name.lower() not in NONE_NAMES:
    raise SpecError(f"{name!r} is not a valid name in the spec {spec!r}.")
  if not argtext.strip():
    return name, (), {}
  text = f"f({argtext})"
  try:
    call = ast.parse(text, mode="eval").body
  except SyntaxError as e:
    raise SpecError(
      f"Cannot parse the arguments {argtext!r} of {name!r}: {e.msg}. Write "
      "NAME:ARG,...,KEY=VALUE,... with literal values."
    ) from None
  assert isinstance(call, ast.Call)
  if any(isinstance(a, ast.Starred) for a in call.args) or any(
    k.arg is None for k in call.keywords
  ):
    raise SpecError(f"*args / **kwargs are not allowed in {spec!r}.")
  args = tuple(_literal(a, text) for a in call.args)
  kwargs = {}
  for k in call.keywords:
    if k.arg in kwargs:
      raise SpecError(f"The keyword {k.arg!r} is repeated in {spec!r}.")
    kwargs[k.arg] = _literal(k.value, text)
  return name, args, kwargs


def _unknown(kind: str, name: str, valid: list[str]) -> SpecError:
  close = difflib.get_close_matches(name, valid, n=3)
  hint = f" Did you mean {', '.join(close)}?" if close else ""
  return SpecError(
    f"Unknown {kind} {name!r}.{hint} Valid names: {', '.join(sorted(valid))}."
  )


def _call(kind: str, name: str, fn: Callable, args, kwargs, lead=()):
  sig = inspect.signature(fn)
  shown = list(sig.parameters.values())[len(lead) :]
  try:
    bound = sig.bind(*lead, *args, **kwargs)
  except TypeError as e:
    raise SpecError(
      f"Bad arguments for {kind} {name!r}: {e}. Its signature is "
      f"{name}({', '.join(str(p) for p in shown)})."
    ) from None
  for key, value in list(bound.arguments.items())[len(lead) :]:
    param = sig.parameters[key]
    if _wants_number(param) and isinstance(value, str):
      raise SpecError(
        f"{kind} {name!r}: {key}={value!r} is not a number (its default "
        f"is {param.default!r})."
      )
  try:
    return fn(*lead, *args, **kwargs)
  except (TypeError, ValueError) as e:
    raise SpecError(f"{kind} {name!r}: {e}") from None


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _wants_number(param: inspect.Parameter) -> bool:
  """A parameter whose default is a number and whose type is not ``str``."""
  if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
    return False
  return _is_number(param.default) and "str" not in _annotation_text(
    param.annotation
  )


def build_clip(spec: str | None) -> optax.GradientTransformation | None:
  """The optaxclip strategy of a ``--clip`` spec, or None for ``none``.

  Raises:
    SpecError: an unknown name (the message lists the valid ones) or bad
      arguments (the message shows the signature).
  """
  if spec is None:
    return None
  name, args, kwargs = parse_spec(spec)
  if name.lower() in NONE_NAMES:
    if args or kwargs:
      raise SpecError("`none` takes no arguments.")
    return None
  table = clip_strategies()
  if name not in table:
    if name in wrappers():
      raise SpecError(
        f"{name!r} wraps a whole optimizer; use --skip {name} instead."
      )
    raise _unknown("clipping strategy", name, [*table, "none"])
  return _call("clipping strategy", name, table[name], args, kwargs)


def build_optimizer(
  spec: str, learning_rate: Any
) -> optax.GradientTransformation:
  """The Optax optimizer of an ``--optimizer`` spec at ``learning_rate``."""
  name, args, kwargs = parse_spec(spec)
  table = optimizers()
  if name not in table:
    raise _unknown("optimizer", name, list(table))
  return _call("optimizer", name, table[name], args, kwargs, (learning_rate,))


def check_optimizer(spec: str, learning_rate: Any) -> None:
  """Runs the optimizer of ``spec`` for one step on a two-element tree.

  Catches arguments that only fail inside the update (e.g. a tuple where a
  number is expected) before any data is loaded or model compiled.

  Raises:
    SpecError: the spec does not build, or its first update fails.
  """
  tx = build_optimizer(spec, learning_rate)
  params = {"w": jnp.array([0.5, -1.0], jnp.float32)}
  try:
    tx.update(params, tx.init(params), params)
  except (TypeError, ValueError, ArithmeticError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise SpecError(
      f"optimizer {spec!r} fails on its first update: "
      f"{type(e).__name__}: {first}"
    ) from None


def build_skip(
  spec: str | None, inner: optax.GradientTransformation
) -> optax.GradientTransformation:
  """Wraps ``inner`` in the wrapper of a ``--skip`` spec (or returns it)."""
  if spec is None:
    return inner
  name, args, kwargs = parse_spec(spec)
  if name.lower() in NONE_NAMES:
    return inner
  name = SKIP_ALIASES.get(name, name)
  table = wrappers()
  if name not in table:
    valid = [k for k, v in SKIP_ALIASES.items() if v in table] + list(table)
    if name in SKIP_ALIASES.values():
      raise SpecError(
        f"optaxclip.{name} does not exist in this version of optaxclip. "
        f"Available wrappers: {', '.join(valid) or '(none)'}."
      )
    raise _unknown("wrapper", name, valid)
  return _call("wrapper", name, table[name], args, kwargs, (inner,))


def build_tx(
  *,
  clip: str | None,
  optimizer: str,
  learning_rate: Any,
  clip_after: str | None = None,
  skip: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  """``skip(chain(clip, optimizer, clip_after))`` from command-line specs.

  Args:
    clip: the gradient-stage strategy spec, or None / ``"none"``.
    optimizer: the optimizer spec, e.g. ``"adam"`` or ``"sgd:momentum=0.9"``.
    learning_rate: its learning rate (a number or an Optax schedule).
    clip_after: an update-stage strategy spec applied after the optimizer.
    skip: a wrapper spec (``nonfinite``, ``spike`` or a wrapper's name).

  Returns:
    A transformation that accepts extra arguments (``value=loss`` etc.).
  """
  parts = [build_clip(clip), build_optimizer(optimizer, learning_rate)]
  parts.append(build_clip(clip_after))
  tx = optax.chain(*(p for p in parts if p is not None))
  tx = build_skip(skip, tx)
  return optax.with_extra_args_support(tx)


def describe() -> str:
  """A listing of the available strategies, wrappers and optimizers."""
  lines = ["Clipping strategies (--clip / --clip-after):"]
  for name, fn in sorted(clip_strategies().items()):
    sig = inspect.signature(fn)
    params = ", ".join(
      str(p).split(":")[0] + ("" if p.default is p.empty else "=…")
      for p in sig.parameters.values()
    )
    lines.append(f"  {name}:{params}")
  lines.append("Wrappers (--skip):")
  for alias, target in SKIP_ALIASES.items():
    if target in wrappers():
      lines.append(f"  {alias} (= {target})")
  lines.extend(f"  {name}" for name in sorted(wrappers()))
  lines.append("Optimizers (--optimizer): " + ", ".join(sorted(optimizers())))
  return "\n".join(lines)
