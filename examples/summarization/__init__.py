# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Summarizing Debian package descriptions into their one-line synopses.

Run ``python -m examples.summarization --help``.
"""
