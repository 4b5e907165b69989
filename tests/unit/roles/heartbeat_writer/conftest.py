# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Imports the writer the way the role installs it: a package ``kvmha`` holding the collection's
``_errors.py``, ``_deadline.py`` and ``_heartbeat.py`` next to the role's ``writer.py``."""

from __future__ import annotations

import importlib
import pathlib
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
SOURCES = [ROOT / "plugins" / "module_utils" / name for name in ("_errors.py", "_deadline.py", "_heartbeat.py")]
SOURCES.append(ROOT / "roles" / "heartbeat_writer" / "files" / "writer.py")


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
