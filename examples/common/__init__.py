# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""The skeleton every example shares.

* :mod:`~examples.common.data`: downloading and caching the real data sets,
  tokenisers.
* :mod:`~examples.common.debian`: ``apt-get`` under a private apt state
  (Debian lists and packages for the summarization and translation data).
* :mod:`~examples.common.strategies`: ``--clip NAME[:ARGS]`` specs turned
  into optaxclip / Optax transformations.
* :mod:`~examples.common.cli`: the command-line flags common to every task.
* :mod:`~examples.common.rnn`: recurrent stacks built on ``nnx.RNN``.
* :mod:`~examples.common.trainer`: jit-compiled, data-parallel training and
  evaluation loop with metrics, checkpoints, progress bar and plots.
"""
