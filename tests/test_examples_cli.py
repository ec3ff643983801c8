# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Every bad input to every example command line is a one-line usage error.

The tasks are discovered (every package under ``examples/`` with a
``train.main``) plus the demo, so a task added later is checked without new
tests: its numeric options must use the checking types of
``examples.common.cli``, its file options ``type=cli.text_file``, and each
option needs a help string. ``main`` is called in-process with ``argv``; it
must raise ``SystemExit(2)`` having written argparse's usage and exactly one
``prog: error: ...`` line to stderr, and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import math
import pkgutil

import jax
import pytest

pytest.importorskip("flax", exc_type=ModuleNotFoundError)

import examples
from examples import demo
from examples.common import cli
from examples.common.testing import fixture


def _tasks() -> dict[str, tuple]:
  """``{name: (main, make_parser)}`` of every task and the demo."""
  out = {"demo": (demo.main, demo.make_parser)}
  for info in pkgutil.iter_modules(examples.__path__):
    if not info.ispkg or info.name == "common":
      continue
    try:
      train = importlib.import_module(f"examples.{info.name}.train")
    except ModuleNotFoundError as e:  # an optional third-party extra
      if (e.name or "").split(".")[0] in ("examples", "optaxclip"):
        raise
      continue
    if hasattr(train, "main") and hasattr(train, "make_parser"):
      out[info.name] = (train.main, train.make_parser)
  return out


TASKS = _tasks()
# The shipped tasks must all be found (a broken import is an error above).
assert {"demo", "char_lm", "sentiment"} <= set(TASKS), sorted(TASKS)

BAD_NUMBERS = {
  cli.positive_int: ["0", "-1", "1.5", "abc", ""],
  cli.nonnegative_int: ["-1", "2.0", "x"],
  cli.positive_float: ["0", "-1e-3", "nan", "inf", "-inf", "abc"],
  cli.nonnegative_float: ["-1", "nan", "inf"],
  cli.fraction: ["0", "1", "1.5", "nan"],
  cli.probability: ["1", "-0.1", "nan"],
}
CHECKED_TYPES = set(BAD_NUMBERS)


def _actions(task: str) -> list[argparse.Action]:
  p = TASKS[task][1]()
  return [a for a in p._actions if not isinstance(a, argparse._HelpAction)]


def _flag(action: argparse.Action) -> str:
  return max(action.option_strings, key=len)


def _run_bad(task: str, argv: list[str], tmp_path, capsys) -> str:
  """Runs ``main(argv)``; asserts a one-line usage error; returns it."""
  main, make_parser = TASKS[task]
  argv = [*argv, "--workdir", str(tmp_path / "run"), "--no-progress"]
  with pytest.raises(SystemExit) as exc:
    main(argv)
  err = capsys.readouterr().err
  assert exc.value.code == 2, (exc.value.code, err)
  assert "Traceback" not in err, err
  lines = err.rstrip("\n").splitlines()
  assert lines[0].startswith("usage: "), err
  prog = make_parser().prog
  errors = [i for i, ln in enumerate(lines) if ln.startswith(f"{prog}: error:")]
  assert errors == [len(lines) - 1], err  # one error line, the last one
  assert not (tmp_path / "run").exists()  # nothing was trained or written
  return lines[-1]


def _number_cases():
  for task in TASKS:
    for action in _actions(task):
      for value in BAD_NUMBERS.get(action.type, ()):
        yield pytest.param(
          task, _flag(action), value, id=f"{task}{_flag(action)}={value}"
        )


@pytest.mark.parametrize("task,flag,value", list(_number_cases()))
def test_bad_number_is_a_usage_error(task, flag, value, tmp_path, capsys):
  msg = _run_bad(task, [f"{flag}={value}"], tmp_path, capsys)
  assert flag in msg


@pytest.mark.parametrize("task", sorted(TASKS))
def test_numeric_options_use_checking_types_and_all_have_help(task):
  for action in _actions(task):
    assert action.help and action.help != argparse.SUPPRESS, _flag(action)
    assert action.type not in (int, float), (
      f"{task} {_flag(action)}: use a checking type of examples.common.cli"
    )
  assert any(a.type in CHECKED_TYPES for a in _actions(task))


def test_the_checked_options_of_the_issue_are_covered():
  kinds = {_flag(a): a.type for a in _actions("char_lm")}
  for flag in ("--batch-size", "--seq-len", "--steps", "--lr"):
    assert kinds[flag] in CHECKED_TYPES, flag


def _spec_flags(task: str) -> list[str]:
  flags = {_flag(a) for a in _actions(task)}
  return [
    f
    for f in (
      "--clip",
      "--clip-after",
      "--skip",
      "--sgd-clip",
      "--adam-clip",
      "--adam-after",
    )
    if f in flags
  ]


BAD_SPECS = {
  "empty": "",
  "blank": "  ",
  "unknown": "clip_by_globl_norm:1.0",
  "string_number": "clip_by_global_norm:max_norm=abc",
  "repeated": "zclip:z_thresh=2.0,z_thresh=3.0",
  "expression": "clip_by_global_norm:1+1",
  "negative": "clip_by_global_norm:-1.0",
}


def _spec_cases():
  for task in TASKS:
    for flag in _spec_flags(task):
      for name, spec in BAD_SPECS.items():
        if flag == "--skip" and name != "empty":
          continue
        yield pytest.param(task, flag, spec, id=f"{task}{flag}-{name}")


@pytest.mark.parametrize("task,flag,spec", list(_spec_cases()))
def test_bad_spec_is_a_usage_error(task, flag, spec, tmp_path, capsys):
  _run_bad(task, [f"{flag}={spec}"], tmp_path, capsys)


BAD_OPTIMIZERS = {
  "string": "adam:b1=abc",
  "repeated": "adam:b1=0.9,b1=0.5",
  "tuple": "adam:b1=(1,2)",
  "unknown_keyword": "adam:beta1=0.9",
  "unknown": "adamm",
  "empty": "",
}


@pytest.mark.parametrize(
  "spec", BAD_OPTIMIZERS.values(), ids=list(BAD_OPTIMIZERS)
)
@pytest.mark.parametrize(
  "task", [t for t in sorted(TASKS) if "--optimizer" in map(_flag, _actions(t))]
)
def test_bad_optimizer_is_a_usage_error(task, spec, tmp_path, capsys):
  msg = _run_bad(task, [f"--optimizer={spec}"], tmp_path, capsys)
  if spec.startswith("adam:"):
    assert "b1" in msg or "beta1" in msg


def test_batch_not_divisible_by_devices_is_a_usage_error(tmp_path, capsys):
  if jax.device_count() == 1:
    pytest.skip("every batch divides one device")
  for task in TASKS:
    msg = _run_bad(
      task, ["--batch-size", str(jax.device_count() + 1)], tmp_path, capsys
    )
    assert "multiple" in msg


# -- files -------------------------------------------------------------------

BAD_FILES = {
  "missing": None,
  "directory": "DIR",
  "binary": b"\x00\x01\x02binary\x00",
  "not_utf8": "café, naïve".encode("latin-1"),
  "empty": b"",
  "whitespace": b" \n\t\n",
}


def _file_flags(task: str) -> list[str]:
  return [_flag(a) for a in _actions(task) if a.type is cli.text_file]


def _make(tmp_path, content, name="data.txt"):
  path = tmp_path / name
  if content == "DIR":
    path.mkdir()
  elif content is not None:
    path.write_bytes(
      content if isinstance(content, bytes) else content.encode()
    )
  return str(path)


def _file_cases():
  for task in TASKS:
    for flag in _file_flags(task):
      for name, content in BAD_FILES.items():
        yield pytest.param(task, flag, content, id=f"{task}{flag}-{name}")


@pytest.mark.parametrize("task,flag,content", list(_file_cases()))
def test_bad_file_is_a_usage_error(task, flag, content, tmp_path, capsys):
  path = _make(tmp_path, content)
  msg = _run_bad(task, [flag, path], tmp_path, capsys)
  assert path in msg


def test_every_task_with_own_data_declares_a_file_option():
  for task in ("demo", "char_lm", "sentiment", "translation", "forecasting"):
    if task in TASKS:
      assert _file_flags(task), task


# Files that are readable text but unusable for the task: the error comes
# from building the task (cli.usage_errors), before any training.
SHORT = "Shall I compare thee\n"
BAD_DATA = {
  "demo": [("--text-file", SHORT, [], "shorter than one window")],
  "char_lm": [
    ("--text-file", SHORT, [], "shorter than one window"),
    ("--text-file", SHORT * 3, ["--eval-len", "4"], "shorter than one window"),
    (
      "--text-file",
      fixture("sonnets_excerpt.txt").read_text()[:3000],
      ["--bptt", "500", "--model", "lstm"],
      "too short",
    ),
    (
      "--text-file",
      fixture("sonnets_excerpt.txt").read_text(),
      ["--model", "transformer", "--bptt", "5"],
      "--bptt",
    ),
    (
      "--text-file",
      fixture("sonnets_excerpt.txt").read_text(),
      ["--model", "transformer", "--hidden", "30", "--heads", "4"],
      "--heads",
    ),
  ],
  "sentiment": [
    ("--text-file", "no tab on this line\n", [], "no label"),
    ("--text-file", "label\ttext\n1\tgood\n", [], "line 1"),
    ("--text-file", "1\tgood\nnan\tbad\n", [], "line 2"),
    ("--text-file", "1\tgood\n0\tbad\n", [], "too few"),
  ],
  "translation": [
    ("--pairs-file", "no tab\n", [], "no source"),
    ("--pairs-file", "a\tb\nc\td\n", [], "too few"),
  ],
  "forecasting": [
    ("--series-file", "value\nabc\n", [], "no number"),
    ("--series-file", "1\n2\nnan\n", [], "line 3"),
    ("--series-file", "1\n2\n3\n4\n5\n", ["--season", "2"], "too short"),
  ],
}


def _data_cases():
  for task, cases in BAD_DATA.items():
    if task in TASKS:
      for i, (flag, text, extra, match) in enumerate(cases):
        yield pytest.param(task, flag, text, extra, match, id=f"{task}-{i}")


@pytest.mark.parametrize("task,flag,text,extra,match", list(_data_cases()))
def test_unusable_data_is_a_usage_error(
  task, flag, text, extra, match, tmp_path, capsys
):
  path = _make(tmp_path, text)
  tiny = ["--hidden", "8", "--batch-size", "8"]
  if "--embed" in map(_flag, _actions(task)):
    tiny += ["--embed", "8"]
  msg = _run_bad(task, [flag, path, *tiny, *extra], tmp_path, capsys)
  assert match in msg


def test_a_good_file_passes_the_type():
  path = str(fixture("sonnets_excerpt.txt"))
  assert cli.text_file(path) == path


@pytest.mark.parametrize(
  "text, hi, message",
  [
    ("fast", math.inf, "--lrs 'fast': give comma-separated numbers"),
    ("0.1,0", math.inf, "--lrs '0.1,0': give numbers in (0, inf]"),
    (" , ", math.inf, "give numbers in (0, inf]"),
    ("0.5,1.5", 1.0, "give numbers in (0, 1]"),
    ("nan", math.inf, "give numbers in (0, inf]"),
  ],
)
def test_number_list_rejects_with_one_usage_line(text, hi, message, capsys):
  with pytest.raises(SystemExit) as e:
    cli.number_list(argparse.ArgumentParser(prog="x"), "--lrs", text, hi)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert message in err


def test_clip_list_checks_every_spec(capsys):
  p = argparse.ArgumentParser(prog="x")
  got = cli.clip_list(p, "--clips", " none ; clip_by_global_norm:1.0;")
  assert got == ["none", "clip_by_global_norm:1.0"]
  assert cli.clip_list(p, "--c", ("autoclip",)) == ["autoclip"]
  for bad, what in [("none;clip_by_nothing", "clip_by_nothing"), (";", "")]:
    with pytest.raises(SystemExit):
      cli.clip_list(p, "--clips", bad)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("x: error: --clips") and what in err[-1]
