# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""A private apt state for fetching Debian indexes and packages.

The summarization example reads Debian's package lists and the translation
example the German message catalogues inside Debian packages. Both run
``apt-get`` with ``APT_CONFIG`` pointing at a configuration file under the
example's own cache directory (:func:`apt_config`), which sets its own
``sources.list``, ``Dir::State::Lists``, ``Dir::Cache``, an empty
``apt.conf.d`` and no preferences, so the system's apt state, its
configuration and its hooks are never read or changed. Compressed lists are
read with ``/usr/lib/apt/apt-helper cat-file`` (:func:`read_index`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from examples.common import data

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
COMPONENT = "main"
ARCH = "amd64"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_HELPER = "/usr/lib/apt/apt-helper"


def apt_config(root: Path, mirror: str = MIRROR, suite: str = SUITE) -> Path:
  """Writes a private apt configuration under ``root``; returns its path.

  Args:
    root: the directory that holds the lists, the package cache and the
      configuration (``lists/``, ``cache/``, ``etc/``, ``apt.conf``).
    mirror: the Debian mirror.
    suite: the release, e.g. ``bookworm`` (component ``main``, ``amd64``).
  """
  root = Path(root)
  for d in (
    "lists/partial",
    "cache/archives/partial",
    "etc/apt.conf.d",
    "etc/sources.list.d",
    "etc/preferences.d",
  ):
    (root / d).mkdir(parents=True, exist_ok=True)
  signed = f" signed-by={KEYRING}" if Path(KEYRING).exists() else ""
  (root / "etc/sources.list").write_text(
    f"deb [arch={ARCH}{signed}] {mirror} {suite} {COMPONENT}\n"
  )
  conf = {
    "Dir::Etc::Parts": root / "etc/apt.conf.d",
    "Dir::Etc::main": "/dev/null",
    "Dir::Etc::SourceList": root / "etc/sources.list",
    "Dir::Etc::SourceParts": root / "etc/sources.list.d",
    "Dir::Etc::Preferences": "/dev/null",
    "Dir::Etc::PreferencesParts": root / "etc/preferences.d",
    "Dir::State::Lists": root / "lists",
    "Dir::State::status": "/dev/null",
    "Dir::Cache": root / "cache",
    "Dir::Cache::pkgcache": "",
    "Dir::Cache::srcpkgcache": "",
    "Acquire::GzipIndexes": "true",
  }
  if os.geteuid() == 0:  # the private lists are not writable by _apt
    conf["APT::Sandbox::User"] = "root"
  text = "".join(f'{k} "{v}";\n' for k, v in conf.items())
  path = root / "apt.conf"
  path.write_text(text)
  return path


def apt_get(
  conf: Path, args: Sequence[str], cwd: Path | None = None
) -> subprocess.CompletedProcess:
  """Runs ``apt-get ARGS`` under the private configuration ``conf``.

  Raises:
    DataUnavailable: there is no ``apt-get`` (not Debian or Ubuntu).
  """
  if shutil.which("apt-get") is None:
    raise data.DataUnavailable(
      "Fetching Debian files needs apt-get (Debian/Ubuntu); apt-get is not "
      "on PATH."
    )
  return subprocess.run(
    ["apt-get", *args],
    env={**os.environ, "APT_CONFIG": str(conf)},
    cwd=cwd,
    capture_output=True,
    text=True,
    check=False,
  )


def failure(what: str, conf: Path, args: Sequence[str], proc) -> str:
  """The message of a failed :func:`apt_get`: what failed, the command to
  run by hand and the last lines apt printed."""
  tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-4:]
  return (
    f"{what}. Run this, then try again:\n  APT_CONFIG={conf} "
    f"{shlex.join(['apt-get', *args])}\n  " + "\n  ".join(tail)
  )


def find_list(lists: Path, pattern: str) -> Path | None:
  """The first file of ``lists`` matching the glob ``pattern``, or None."""
  found = sorted(p for p in Path(lists).glob(pattern) if p.is_file())
  return found[0] if found else None


def packages_glob(suite: str = SUITE) -> str:
  """The glob of the ``Packages`` list of ``suite``/main in ``lists/``."""
  return f"*_dists_{suite}_{COMPONENT}_binary-{ARCH}_Packages*"


def read_index(path: str | os.PathLike) -> str:
  """The text of an index file, compressed (``.lz4``, ``.gz``, ``.xz``,
  ``.zst``, ``.bz2``: through ``apt-helper cat-file``) or plain."""
  path = Path(path)
  raw = path.read_bytes()
  if path.suffix in (".lz4", ".gz", ".xz", ".zst", ".bz2", ".lzma"):
    if not Path(APT_HELPER).exists():
      raise data.DataUnavailable(
        f"{path} is compressed and {APT_HELPER} (package apt) is missing; "
        "decompress it and pass the plain file."
      )
    proc = subprocess.run(
      [APT_HELPER, "cat-file", str(path)], capture_output=True, check=False
    )
    if proc.returncode != 0:
      raise data.DataUnavailable(
        f"`apt-helper cat-file {path}` failed: "
        + proc.stderr.decode(errors="replace").strip()
      )
    raw = proc.stdout
  return raw.decode("utf-8", errors="replace")


def download(
  packages: Sequence[str],
  root: Path,
  mirror: str = MIRROR,
  suite: str = SUITE,
) -> list[Path]:
  """``apt-get download`` of ``packages`` into ``root/debs``, once.

  The private lists under ``root`` are fetched first when missing
  (``apt-get update`` with ``Acquire::Languages=none``: the ``Packages``
  list only). Packages whose ``.deb`` is already in ``root/debs`` are not
  fetched again.

  Returns:
    The ``.deb`` files, in the order of ``packages``.

  Raises:
    DataUnavailable: no ``apt-get``, the update or a download failed; the
      message holds the command to run by hand.
  """
  root = Path(root)
  debs = root / "debs"
  debs.mkdir(parents=True, exist_ok=True)

  def have(name):
    return sorted(debs.glob(f"{name}_*.deb"))

  missing = [p for p in packages if not have(p)]
  if missing:
    conf = apt_config(root, mirror, suite)
    if find_list(root / "lists", packages_glob(suite)) is None:
      args = ["update", "-o", "Acquire::Languages=none"]
      print(
        f"Fetching the {suite} package list into {root} ...", file=sys.stderr
      )
      proc = apt_get(conf, args)
      if (
        proc.returncode != 0
        or find_list(root / "lists", packages_glob(suite)) is None
      ):
        raise data.DataUnavailable(
          failure(f"Could not fetch the {suite} package list", conf, args, proc)
        )
    args = ["download", *missing]
    print(
      f"Downloading {len(missing)} Debian packages (once) into {debs} ...",
      file=sys.stderr,
    )
    proc = apt_get(conf, args, cwd=debs)
    if proc.returncode != 0:
      raise data.DataUnavailable(
        failure("Could not download the Debian packages", conf, args, proc)
      )
  out = []
  for p in packages:
    found = have(p)
    if not found:
      raise data.DataUnavailable(f"apt-get download did not produce {p}")
    out.append(found[-1])
  return out
