# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Imports the writer and the boot guard the way the role installs them: a package ``kvmha`` holding the
collection's ``_errors.py``, ``_deadline.py``, ``_heartbeat.py``, ``_storefile.py`` and ``_marks.py`` next to the
role's ``writer.py`` and ``boot_guard.py``."""

from __future__ import annotations

import importlib
import pathlib
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
SHIPPED_MODULE_UTILS = ("_errors.py", "_deadline.py", "_heartbeat.py", "_storefile.py", "_marks.py")
SOURCES = [ROOT / "plugins" / "module_utils" / name for name in SHIPPED_MODULE_UTILS]
SOURCES += [ROOT / "roles" / "heartbeat_writer" / "files" / name for name in ("writer.py", "boot_guard.py")]


@pytest.fixture(scope="session")
def writer(tmp_path_factory):
    base = tmp_path_factory.mktemp("writer_pkg")
    package = base / "kvmha"
    package.mkdir()
    for source in SOURCES:
        shutil.copy(source, package / source.name)
    (package / "__init__.py").write_text("")
    sys.path.insert(0, str(base))
    try:
        yield importlib.import_module("kvmha.writer")
    finally:
        sys.path.remove(str(base))


@pytest.fixture(scope="session")
def boot_guard(writer):  # pylint: disable=redefined-outer-name,unused-argument  # same installed package
    return importlib.import_module("kvmha.boot_guard")
