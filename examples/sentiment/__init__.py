# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Sentence sentiment on the VADER ground truth: ``python -m examples.sentiment``."""
