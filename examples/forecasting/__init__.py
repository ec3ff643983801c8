# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Time-series forecasting with an LSTM.

Run ``python -m examples.forecasting --help``.
"""
