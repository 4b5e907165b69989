# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's module_utils that the heartbeat_writer role installs into ``kvmha/`` next to writer.py and
boot_guard.py, read from the role's own list (roles/heartbeat_writer/vars/main.yml): the tests lay the package out
exactly as the role does, and a file added there is installed by the role and the tests alike."""

from __future__ import annotations

import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
_LISTS = yaml.safe_load((ROOT / "roles" / "heartbeat_writer" / "vars" / "main.yml").read_text())
WRITER_MODULE_UTILS = tuple(_LISTS["heartbeat_writer__module_utils"])  # what writer.py imports
GUARD_MODULE_UTILS = WRITER_MODULE_UTILS + tuple(_LISTS["heartbeat_writer__guard_module_utils"])  # boot_guard.py too


def sources(names) -> list:
    """The paths in plugins/module_utils of ``names``."""
    return [ROOT / "plugins" / "module_utils" / name for name in names]
