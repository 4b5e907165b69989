# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The journal callback writing into a temporary directory, quietly: shared by the callback's tests."""

from __future__ import annotations

import pytest

from ansible_collections.kvmha.cluster.plugins.callback import journal


@pytest.fixture
def callback(tmp_path):
    cb = journal.CallbackModule()
    cb.journal_dir = str(tmp_path)
    cb.metrics_file = str(tmp_path / "kvmha.prom")
    cb.live = False
    return cb
