# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Sentence sentiment on the VADER ground truth.

Run ``python -m examples.sentiment --help``.
"""
