# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Flax NNX examples: sequence models on real text, trained with clipping.

Each task is a package run with ``python -m examples.<task>``; the shared
skeleton lives in :mod:`examples.common`.
"""
