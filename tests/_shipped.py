# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The heartbeat writer as the heartbeat_writer role installs it: kvmha-heartbeat.pyz, made by the role's own build
code (roles/heartbeat_writer/build/build_pyz.py), so the tests run the very archive a deploy installs, and a file
added to the role's lists (vars/main.yml) is in the archive of the role and the tests alike."""

from __future__ import annotations

import importlib.util
import pathlib
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARTIFACT = "kvmha-heartbeat.pyz"  # its name in heartbeat_writer_install_dir


def _load_build():
    spec = importlib.util.spec_from_file_location("kvmha_build_pyz", ROOT / "roles" / "heartbeat_writer" / "build" / "build_pyz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _load_build()


def build_pyz(directory: pathlib.Path) -> pathlib.Path:
    """Build the archive into ``directory`` (under the name the role installs it as) and return its path."""
    return BUILD.build(pathlib.Path(directory) / ARTIFACT)


def unpack_pyz(directory: pathlib.Path) -> pathlib.Path:
    """The archive's contents (the package ``kvmha`` and ``__main__.py``) extracted into ``directory``, to import
    in-process; returns ``directory``."""
    directory = pathlib.Path(directory)
    with zipfile.ZipFile(build_pyz(directory)) as archive:
        archive.extractall(directory)
    return directory
