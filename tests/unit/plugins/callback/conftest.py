# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The journal callback writing into a temporary directory, quietly, and the same callback in the middle of a watchdog
run: shared by the callback's tests."""

from __future__ import annotations

import pytest
from journal_fakes import FakeResult

from ansible_collections.kvmha.cluster.plugins.callback import journal


@pytest.fixture
def callback(tmp_path):
    cb = journal.CallbackModule()
    cb.journal_dir = str(tmp_path)
    cb.metrics_file = str(tmp_path / "kvmha.prom")
    cb.live = False
    return cb


@pytest.fixture
def watching(callback):
    """The callback once the observe phase found hv2 suspect (30 s without a beat) and one owed VM of hv3 due."""
    hosts = {"hv1": {"status": "fresh", "age": 0.4, "seq": 7, "boot_id": "b1", "rebooted": False},
             "hv2": {"status": "stale", "age": 30.0, "reason": "seq unchanged", "seq": 40, "boot_id": "b2", "rebooted": False}}
    result = {"changed": False, "cluster": "prod-a", "suspects": ["hv2"], "fresh": ["hv1"], "returning": [], "skewed": [],
              "observer_ok": True, "observer_reason": "", "maintenance": {}, "maintenance_expired": {}, "fenced": {},
              "samples": 3, "hosts": hosts, "owed": {"hv3": {"states": {"owed": 1, "verified": 0}}},
              "work": ["hv3: 1 owed VM due"]}
    callback.v2_runner_on_ok(FakeResult("kvm_heartbeat", "hv1", result, phase="observe"))
    return callback
