# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Documentation coverage: every public name is documented and listed."""

import pathlib
import re

import pytest

import optaxclip

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_api_page_lists_every_public_name():
  text = (ROOT / "docs" / "api.md").read_text()
  listed = set(re.findall(r"^   (\w+)$", text, flags=re.M))
  missing = sorted(set(optaxclip.__all__) - listed)
  unknown = sorted(listed - set(optaxclip.__all__))
  assert not missing, f"docs/api.md does not list {missing}"
  assert not unknown, f"docs/api.md lists names not in __all__: {unknown}"


def test_all_is_sorted_and_unique():
  names = list(optaxclip.__all__)
  assert names == sorted(names, key=str.lower) or names == sorted(names)
  assert len(names) == len(set(names))


@pytest.mark.parametrize("name", sorted(optaxclip.__all__))
def test_public_name_has_docstring(name):
  doc = getattr(optaxclip, name).__doc__ or ""
  assert len(doc.strip()) > 20, f"optaxclip.{name} has no real docstring"


@pytest.mark.parametrize(
  "name",
  sorted(
    n
    for n in optaxclip.__all__
    if n[0].islower()
    and n not in ("stats", "global_norm", "clip_tree_by_global_norm")
    and n not in ("suggest_threshold", "calibrate", "diagnose")
  ),
)
def test_strategy_docstring_has_required_sections(name):
  doc = getattr(optaxclip, name).__doc__
  for section in ("Args:", "Returns:", ">>>"):
    assert section in doc, f"optaxclip.{name}: docstring lacks {section!r}"
  assert "Edge cases" in doc or "edge case" in doc.lower(), (
    f"optaxclip.{name}: docstring lacks an edge-case table"
  )


def test_readme_table_names_every_strategy():
  readme = (ROOT / "README.md").read_text()
  for name in optaxclip.__all__:
    obj = getattr(optaxclip, name)
    if name[0].islower() and "GradientTransformation" in (
      str(getattr(obj, "__annotations__", {}).get("return", ""))
    ):
      assert f"`{name}(" in readme, f"README's strategy table lacks {name}"
