# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The boot guard, imported from the writer's package as the role installs it (the ``writer`` fixture of
tests/unit/conftest.py)."""

from __future__ import annotations

import importlib

import pytest


@pytest.fixture(scope="session")
def boot_guard(writer):  # pylint: disable=unused-argument  # the same installed package (tests/unit/conftest.py)
    return importlib.import_module("kvmha.boot_guard")
