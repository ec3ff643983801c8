# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Character language model on Shakespeare: ``python -m examples.char_lm``."""
