# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""German-to-English translation, or cmudict grapheme-to-phoneme.

Run ``python -m examples.translation --help``.
"""
