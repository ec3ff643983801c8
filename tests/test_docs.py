# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Documentation: the site builds offline without warnings, lists every
public name, and the examples in its pages run."""

import doctest
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

import optaxclip

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _listed_names() -> set[str]:
  """Names listed in docs/api.md's autosummary blocks, fully qualified."""
  module, out = "optaxclip", set()
  for line in (DOCS / "api.md").read_text().splitlines():
    m = re.match(r"^\.\. currentmodule:: ([\w.]+)$", line)
    if m:
      module = m.group(1)
    m = re.match(r"^   (\w+)$", line)
    if m:
      out.add(f"{module}.{m.group(1)}")
  return out


def _conf():
  spec = importlib.util.spec_from_file_location("_docs_conf", DOCS / "conf.py")
  conf = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(conf)
  return conf


def test_api_page_lists_every_public_name():
  expected = set(_conf().public_names())
  listed = _listed_names()
  assert "optaxclip.plot.norm_history" in expected
  missing = sorted(expected - listed)
  unknown = sorted(listed - expected)
  assert not missing, f"docs/api.md does not list {missing}"
  assert not unknown, f"docs/api.md lists names that are not public: {unknown}"


def test_build_check_reports_a_missing_name():
  # The check that docs/conf.py runs on the built environment (a warning,
  # so an error under -W): nothing missing when all is documented, and the
  # one name left out otherwise.
  conf = _conf()
  names = conf.public_names()
  assert conf.missing_api_names(names) == []
  assert conf.missing_api_names(names[1:]) == [names[0]]
  assert conf.missing_api_names(
    [n for n in names if n != "optaxclip.plot.clip_rate"]
  ) == ["optaxclip.plot.clip_rate"]


def test_intersphinx_is_off_unless_asked_for(monkeypatch):
  monkeypatch.delenv("OPTAXCLIP_DOCS_INTERSPHINX", raising=False)
  assert _conf().intersphinx_mapping == {}
  monkeypatch.setenv("OPTAXCLIP_DOCS_INTERSPHINX", "1")
  assert set(_conf().intersphinx_mapping) >= {"jax", "optax", "flax"}


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
  """The HTML site, built as `make docs` does (offline, -W) into a tmp dir."""
  out = tmp_path_factory.mktemp("docs")
  env = {
    k: v for k, v in os.environ.items() if k != "OPTAXCLIP_DOCS_INTERSPHINX"
  }
  env["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
  )
  cmd = [
    sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going",
    "-q", "-d", str(out / "doctrees"), str(DOCS), str(out / "html"),
  ]  # fmt: skip
  r = subprocess.run(
    cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
  )
  assert r.returncode == 0, f"sphinx-build failed:\n{r.stdout}\n{r.stderr}"
  assert "WARNING" not in r.stderr, r.stderr
  return out / "html"


@pytest.mark.slow
@pytest.mark.xdist_group("docs_build")
def test_docs_build_offline_without_warnings(built_docs):
  assert (built_docs / "index.html").is_file()
  for name in _conf().public_names():
    assert (built_docs / "generated" / f"{name}.html").is_file(), name


@pytest.mark.slow
@pytest.mark.xdist_group("docs_build")
def test_formulas_are_rendered_by_a_local_mathjax(built_docs):
  page = built_docs / "generated" / "optaxclip.clip_by_global_norm.html"
  html = page.read_text()
  assert 'src="../_static/mathjax/tex-chtml.js"' in html
  assert r"\\lVert" in html or r"\lVert" in html  # the maths is there
  assert (built_docs / "_static" / "mathjax" / "tex-chtml.js").is_file()
  fonts = built_docs / "_static" / "mathjax" / "output" / "chtml" / "fonts"
  assert any(fonts.rglob("*.woff")), "MathJax's fonts were not copied"
  for f in built_docs.rglob("*.html"):
    text = f.read_text()
    assert "cdn.jsdelivr.net" not in text, f
    assert "mathjax@" not in text, f


def _pages_with_examples() -> list[str]:
  return sorted(p.name for p in DOCS.glob("*.md") if ">>> " in p.read_text())


@pytest.mark.parametrize("page", _pages_with_examples())
def test_examples_in_docs_pages_run(page, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # examples may write files
  result = doctest.testfile(
    str(DOCS / page),
    module_relative=False,
    optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    raise_on_error=False,
    verbose=False,
  )
  assert result.attempted > 0
  assert result.failed == 0, f"{result.failed} example(s) failed in {page}"


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


@pytest.mark.slow
def test_threshold_worked_example_numbers():
  """The numbers docs/thresholds.md quotes from docs/threshold_example.py."""
  spec = importlib.util.spec_from_file_location(
    "_threshold_example", DOCS / "threshold_example.py"
  )
  example = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(example)
  out = example.run()
  assert out["warmup_mean"] == pytest.approx(3.03, rel=0.02)
  assert out["warmup_max"] == pytest.approx(5.20, rel=0.02)
  s = out["suggestions"]
  assert out["threshold"] == s["mean_multiple"].value
  assert s["mean_multiple"].value == pytest.approx(15.2, rel=0.02)
  assert s["mean_multiple"].clip_fraction == 0.0
  assert s["percentile"].value == pytest.approx(2.14, rel=0.02)
  assert s["percentile"].clip_fraction == pytest.approx(0.9)
  assert s["mean_std"].value == pytest.approx(5.3, rel=0.02)
  assert s["mean_std"].clip_fraction == 0.0
  # At 5x the warm-up mean, none of the 500 training steps was clipped.
  assert out["clip_rate"] == 0.0
  assert out["train_median"] == pytest.approx(1.17, rel=0.02)
  assert out["train_max"] == pytest.approx(4.71, rel=0.02)
  assert out["first_loss"] == pytest.approx(1.86, rel=0.02)
  assert out["last_loss"] == pytest.approx(0.143, rel=0.05)
  assert any("clipped 0.0% of 500 recorded steps" in f for f in out["findings"])
  assert any("(12.9 times below the threshold)" in f for f in out["findings"])
  assert out["layer_suggestions"] == pytest.approx(
    {"layers_0": 5.27, "layers_1": 9.86, "layers_2": 10.2}, rel=0.02
  )
  # The report printed on the page.
  for line in ("median 2.96, mean 3.03, min 1.59, max 5.2", "15.17", "5.315"):
    assert line in out["report"]


def test_migration_rows_name_real_tests():
  page = (DOCS / "migration.md").read_text()
  named = set(re.findall(r"`(test_row_\w+)`", page))
  source = (ROOT / "tests" / "test_migration.py").read_text()
  defined = set(re.findall(r"^def (test_row_\w+)\(", source, flags=re.M))
  assert named == defined


@pytest.mark.parametrize(
  "page",
  [
    "where_to_clip.md",
    "sequence_models.md",
    "truncation.md",
    "examples.md",
    "strategies.md",
    "parameter_space.md",
  ],
)
def test_measured_numbers_come_from_the_result_files(page):
  # Every number quoted in the prose and tables with 3 decimals (bits/char,
  # accuracies, ...) appears in examples/RESULTS.md or a benchmark result
  # file, and every "x Adam" ratio is one of theirs rounded to 2 decimals.
  # Code blocks are left out: their examples run in the test above.
  sources = (ROOT / "examples" / "RESULTS.md").read_text() + "".join(
    p.read_text() for p in (ROOT / "benchmarks" / "results").glob("*.md")
  )
  rounded = {f"{float(x):.2f}" for x in re.findall(r"\d+\.\d+", sources)}
  text = re.sub(r"```.*?```", "", (DOCS / page).read_text(), flags=re.S)
  quoted = set(re.findall(r"(?<![\d.])\d+\.\d{3}(?!\d)", text))
  missing = sorted(q for q in quoted if q not in sources)
  assert not missing, f"{page} quotes {missing}, found in no result file"
  ratios = re.findall(r"(\d+\.\d\d) / (\d+\.\d\d) \(`2026", text)
  ratios = [x for pair in ratios for x in pair]
  ratios += re.findall(r"(\d+\.\d\d)(?: \([a-z]+\))? \(10 leaves", text)
  assert page != "strategies.md" or len(ratios) > 20
  unknown = sorted(r for r in ratios if r not in rounded)
  assert not unknown, f"{page}: ratios {unknown} are in no result file"
