# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Speech recognition (CTC) on speech synthesised by eSpeak NG.

Run ``python -m examples.speech --help``.
"""
