# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module of the collection, found in plugins/modules, for the tests that hold all of them to one rule
(test_error_kinds.py, test_module_shape.py): a new module is held to them from its first commit."""

from __future__ import annotations

import importlib
import os

_DIRECTORY = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins", "modules")

MODULES = [importlib.import_module("ansible_collections.kvmha.cluster.plugins.modules." + file_name[:-3])
           for file_name in sorted(os.listdir(_DIRECTORY)) if file_name.endswith(".py") and not file_name.startswith("_")]


def name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]
