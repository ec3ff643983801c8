# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Sphinx configuration: `make docs` builds docs/_build/html.

The build is offline and warning-free by design (`make docs` and
`tests/test_docs.py` run it with ``-W --keep-going``):

* MathJax is served from the copy that the pinned ``sphinx-mathjax-offline``
  package installs (copied to ``_static/mathjax``), not from a CDN;
* intersphinx inventories are fetched only when
  ``OPTAXCLIP_DOCS_INTERSPHINX=1`` is set (a machine with internet access);
  CI reaches only the package registries, so by default no inventory is
  configured and nothing is fetched;
* every name in ``optaxclip.__all__`` and every public function of
  ``optaxclip.plot`` must be documented, or the build warns (an error
  under ``-W``).
"""

import inspect
import os
import pathlib
import re
import shutil
import sys

from sphinx.util import logging

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # document this checkout's package

import optaxclip  # noqa: E402
import optaxclip.plot  # noqa: E402

project = "optaxclip"
author = "The optaxclip authors"
copyright = "2026, The optaxclip authors"
release = optaxclip.__version__
version = release
extensions = [
  "myst_parser",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.intersphinx",
  "sphinx-mathjax-offline",  # the module's name has hyphens
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
autosummary_generate = True
autodoc_typehints = "signature"
# The modules use postponed annotations; show the aliases by name rather than
# as the unions they stand for (a threshold's type is 9 alternatives long).
autodoc_type_aliases = {
  "_validation.ThresholdOrSchedule": "ThresholdOrSchedule",
  "_validation.NonFinitePolicy": "NonFinitePolicy",
  "_validation.Ord": "Ord",
  "jax.typing.ArrayLike": "ArrayLike",
}
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Edge cases", "notes_style")]
# sphinx-mathjax-offline copies MathJax 3 into _static/mathjax after the
# build; this is the component it serves (set here too, so the page never
# falls back to the CDN default whatever the extensions' order).
mathjax_path = "mathjax/tex-chtml.js"

_INVENTORIES = {
  "jax": ("https://docs.jax.dev/en/latest/", None),
  "optax": ("https://optax.readthedocs.io/en/latest/", None),
  "flax": ("https://flax.readthedocs.io/en/latest/", None),
  "python": ("https://docs.python.org/3", None),
  "numpy": ("https://numpy.org/doc/stable/", None),
}
intersphinx_mapping = (
  _INVENTORIES if os.environ.get("OPTAXCLIP_DOCS_INTERSPHINX") == "1" else {}
)
intersphinx_timeout = 10

html_theme = "sphinx_book_theme"
html_title = f"optaxclip {release}"
html_theme_options = {
  "show_toc_level": 2,
  "use_download_button": False,
  "use_fullscreen_button": False,
  "navigation_with_keys": False,
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]


def public_names() -> list[str]:
  """Every name the API reference must document, fully qualified."""
  names = [f"optaxclip.{n}" for n in optaxclip.__all__]
  for n, obj in vars(optaxclip.plot).items():
    if (
      not n.startswith("_")
      and inspect.isfunction(obj)
      and obj.__module__ == optaxclip.plot.__name__
    ):
      names.append(f"optaxclip.plot.{n}")
  return names


def missing_api_names(documented) -> list[str]:
  """The names of :func:`public_names` that are not in ``documented``."""
  return [n for n in public_names() if n not in set(documented)]


def _clean_generated(app) -> None:
  # Pages autosummary wrote for names that no longer exist would be orphans
  # (a warning, so an error under -W): start from a clean folder.
  shutil.rmtree(HERE / "generated", ignore_errors=True)


def _check_api_coverage(app, env) -> None:
  missing = missing_api_names(env.get_domain("py").objects)
  if missing:
    logging.getLogger(__name__).warning(
      "the API reference does not document %s; add them to docs/api.md",
      ", ".join(missing),
    )


_FORWARD_REF = re.compile(r"TypeAliasForwardRef\('(\w+)'\)")


def _short_aliases(app, what, name, obj, options, signature, return_annotation):
  # An alias inside a union (``Ord | None``) comes out as its repr.
  def fix(text):
    return _FORWARD_REF.sub(r"\1", text) if text else text

  return fix(signature), fix(return_annotation)


def setup(app):
  app.connect("autodoc-process-signature", _short_aliases)
  app.connect("builder-inited", _clean_generated, priority=100)  # first
  app.connect("env-check-consistency", _check_api_coverage)
