# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Sphinx configuration: `make docs` builds docs/_build/html."""

import optaxclip

project = "optaxclip"
author = "The optaxclip authors"
release = optaxclip.__version__
extensions = [
  "myst_parser",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.intersphinx",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["dollarmath"]
autosummary_generate = True
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_custom_sections = [("Edge cases", "notes_style")]
intersphinx_mapping = {
  "jax": ("https://docs.jax.dev/en/latest/", None),
  "optax": ("https://optax.readthedocs.io/en/latest/", None),
}
html_theme = "sphinx_book_theme"
exclude_patterns = ["_build"]
