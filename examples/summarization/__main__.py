# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Entry point: ``python -m examples.summarization --help``."""

from examples.summarization.train import main

if __name__ == "__main__":
  main()
