# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Entry point: ``python -m examples.speech --help``."""

from examples.speech.train import main

if __name__ == "__main__":
  main()
