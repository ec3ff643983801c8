# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Recurrent stacks on ``nnx.RNN``, with optional layer normalisation.

``--norm layernorm`` replaces ``nnx.LSTMCell`` / ``nnx.GRUCell`` by cells
that normalise the input and recurrent pre-activations separately (and, for
the LSTM, the cell state before the output gate), as in Ba et al., `Layer
Normalization <https://arxiv.org/abs/1607.06450>`_, 2016. Normalisation keeps
the pre-activations at a fixed scale, which smooths the loss surface; it does
not bound the gradient, which is what clipping does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

CELLS = ("lstm", "gru")
NORMS = ("none", "layernorm")


class LayerNormLSTMCell(nnx.RNNCellBase):
  """An LSTM cell with layer normalisation inside the recurrence.

  Args:
    in_features: input size.
    hidden_features: hidden (and cell state) size.
    rngs: parameter initialisation keys.
  """

  def __init__(self, in_features: int, hidden_features: int, *, rngs):
    h4 = 4 * hidden_features
    self.hidden_features = hidden_features
    self.wi = nnx.Linear(in_features, h4, use_bias=False, rngs=rngs)
    self.wh = nnx.Linear(
      hidden_features,
      h4,
      use_bias=False,
      kernel_init=nnx.initializers.orthogonal(),
      rngs=rngs,
    )
    self.ln_i = nnx.LayerNorm(h4, use_bias=False, rngs=rngs)
    self.ln_h = nnx.LayerNorm(h4, use_bias=False, rngs=rngs)
    self.ln_c = nnx.LayerNorm(hidden_features, rngs=rngs)
    self.bias = nnx.Param(jnp.zeros((h4,), jnp.float32))

  def __call__(self, carry, inputs):
    c, h = carry
    z = self.ln_i(self.wi(inputs)) + self.ln_h(self.wh(h)) + self.bias[...]
    i, f, g, o = jnp.split(z, 4, axis=-1)
    new_c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    new_h = jax.nn.sigmoid(o) * jnp.tanh(self.ln_c(new_c))
    return (new_c, new_h), new_h

  def initialize_carry(self, input_shape, rngs=None, carry_init=None):
    del rngs, carry_init
    shape = (*tuple(input_shape[:-1]), self.hidden_features)
    return (jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))

  @property
  def num_feature_axes(self) -> int:
    return 1


class LayerNormGRUCell(nnx.RNNCellBase):
  """A GRU cell whose input and recurrent projections are layer-normalised.

  Args:
    in_features: input size.
    hidden_features: hidden size.
    rngs: parameter initialisation keys.
  """

  def __init__(self, in_features: int, hidden_features: int, *, rngs):
    h3 = 3 * hidden_features
    self.hidden_features = hidden_features
    self.wi = nnx.Linear(in_features, h3, rngs=rngs)
    self.wh = nnx.Linear(
      hidden_features,
      h3,
      use_bias=False,
      kernel_init=nnx.initializers.orthogonal(),
      rngs=rngs,
    )
    self.ln_i = nnx.LayerNorm(h3, use_bias=False, rngs=rngs)
    self.ln_h = nnx.LayerNorm(h3, use_bias=False, rngs=rngs)

  def __call__(self, carry, inputs):
    h = carry
    xr, xz, xn = jnp.split(self.ln_i(self.wi(inputs)), 3, axis=-1)
    hr, hz, hn = jnp.split(self.ln_h(self.wh(h)), 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    new_h = (1.0 - z) * n + z * h
    return new_h, new_h

  def initialize_carry(self, input_shape, rngs=None, carry_init=None):
    del rngs, carry_init
    shape = (*tuple(input_shape[:-1]), self.hidden_features)
    return jnp.zeros(shape, jnp.float32)

  @property
  def num_feature_axes(self) -> int:
    return 1


def make_cell(
  cell: str, in_features: int, hidden: int, norm: str = "none", *, rngs
) -> nnx.RNNCellBase:
  """An LSTM or GRU cell, plain (``nnx.LSTMCell`` / ``nnx.GRUCell``) or LN."""
  if cell not in CELLS:
    raise ValueError(f"unknown cell {cell!r}; expected one of {CELLS}")
  if norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
  if norm == "layernorm":
    cls = LayerNormLSTMCell if cell == "lstm" else LayerNormGRUCell
    return cls(in_features, hidden, rngs=rngs)
  if cell == "lstm":
    return nnx.LSTMCell(in_features, hidden, rngs=rngs)
  return nnx.GRUCell(in_features, hidden, rngs=rngs)


def bidirectional_layers(
  cell: str,
  d_in: int,
  hidden: int,
  layers: int,
  norm: str = "none",
  *,
  rngs: nnx.Rngs,
) -> nnx.List:
  """A stack of ``layers`` bidirectional RNNs (forward and reverse cells).

  The first layer reads ``d_in`` features, the others the ``2 * hidden``
  outputs of the layer below; outputs keep the input's time order.
  """
  out = nnx.List()
  for i in range(layers):
    d = d_in if i == 0 else 2 * hidden
    fwd = nnx.RNN(make_cell(cell, d, hidden, norm, rngs=rngs), rngs=False)
    bwd = nnx.RNN(
      make_cell(cell, d, hidden, norm, rngs=rngs),
      reverse=True,
      keep_order=True,
      rngs=False,
    )
    out.append(nnx.Bidirectional(fwd, bwd, rngs=False))
  return out


def zeros_carry(cell: str, batch_shape: tuple[int, ...], hidden: int) -> Any:
  """The zero state of one cell for inputs of batch shape ``batch_shape``."""
  shape = (*batch_shape, hidden)
  if cell == "lstm":
    return (jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))
  return jnp.zeros(shape, jnp.float32)


class RNNStack(nnx.Module):
  """Layers of ``nnx.RNN``, each feeding the next.

  Args:
    in_features: input size.
    hidden: hidden size of every layer.
    layers: number of layers.
    cell: ``"lstm"`` or ``"gru"``.
    norm: ``"none"`` or ``"layernorm"``.
    reverse: run every layer backwards in time (for bidirectional use).
    rngs: parameter initialisation keys.
  """

  def __init__(
    self,
    in_features: int,
    hidden: int,
    layers: int = 1,
    cell: str = "lstm",
    norm: str = "none",
    *,
    reverse: bool = False,
    rngs: nnx.Rngs,
  ):
    self.cell_kind = cell
    self.hidden = hidden
    self.layers = nnx.List(
      [
        nnx.RNN(
          make_cell(
            cell, in_features if i == 0 else hidden, hidden, norm, rngs=rngs
          ),
          return_carry=True,
          reverse=reverse,
          keep_order=True,
          rngs=False,
        )
        for i in range(layers)
      ]
    )

  def init_carry(self, batch_shape: tuple[int, ...]) -> tuple[Any, ...]:
    """Zero state of every layer."""
    return tuple(
      zeros_carry(self.cell_kind, batch_shape, self.hidden) for _ in self.layers
    )

  def __call__(self, x, carry=None, seq_lengths=None):
    """Runs the stack over ``x`` of shape ``[batch, time, features]``.

    Args:
      x: the inputs.
      carry: the initial state of every layer (zeros when None).
      seq_lengths: optional valid lengths, for padded batches.

    Returns:
      ``(carry, outputs)``: the final state of every layer and the top
      layer's outputs, ``[batch, time, hidden]``.
    """
    if carry is None:
      carry = self.init_carry(x.shape[:1])
    new = []
    for layer, c in zip(self.layers, carry):
      c, x = layer(x, initial_carry=c, seq_lengths=seq_lengths)
      new.append(c)
    return tuple(new), x
