# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm_heartbeat's observer self-check (observer_host), which the watchdog passes when its observer is a hypervisor
of the cluster (issue 14 item 7; the playbook side is tests/unit/playbooks/test_watchdog_cluster.py)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import build_record, encode_record, record_path, write_atomic
from ansible_collections.kvmha.cluster.plugins.modules import kvm_heartbeat


@pytest.fixture
def store(tmp_path):
    os.makedirs(tmp_path / "kvmha" / "hosts")
    return str(tmp_path)


def beat(store, host, seq=1, age=0.0, interval=2.0, state="running"):
    record = build_record(host, "boot-" + host, seq, time.time() - age, interval, {"armed": False, "deadline_s": 60},
                          {"mem_free_mib": 1024, "vcpus_free": 2}, [], state=state)
    path = record_path(store, host)
    write_atomic(path, encode_record(record))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))


def check(run_module, store, **args):
    return run_module(kvm_heartbeat, dict({"store_path": store, "hosts": ["h1", "h2", "h3"], "observer_host": "h1"}, **args))


def test_an_observer_whose_own_heartbeat_is_alive_is_ok(run_module, store):
    for host in ("h1", "h2"):
        beat(store, host)
    beat(store, "h3", age=60)
    result = check(run_module, store)
    assert result["observer_ok"] is True and result["suspects"] == ["h3"]


@pytest.mark.parametrize("own", ["stale", "missing", "stopped", "invalid"])
def test_an_observer_whose_own_heartbeat_is_not_alive_is_not_ok(run_module, store, own):
    beat(store, "h2")
    beat(store, "h3")
    if own == "stale":
        beat(store, "h1", age=60)
    elif own == "stopped":
        beat(store, "h1", state="stopped")
    elif own == "invalid":
        with open(record_path(store, "h1"), "w", encoding="utf-8") as f:
            f.write(json.dumps({"version": 1, "host": "h1", "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}))
    result = check(run_module, store)
    assert result["observer_ok"] is False and "the observer's own heartbeat (h1) does not look alive" in result["observer_reason"]
    assert result["hosts"]["h1"]["status"] == own


def test_the_observer_is_checked_even_in_maintenance_or_fenced(run_module, store):
    """The mark says nothing about the observer's view of the store: a dead own heartbeat still means not OK."""
    beat(store, "h1", age=60)
    beat(store, "h2")
    beat(store, "h3")
    _marks.set_mark(store, "maintenance", "h1", "alice", {"reason": "bios"}, ttl=600)
    result = check(run_module, store)
    assert result["observer_ok"] is False and result["suspects"] == []


def test_a_watch_ends_as_soon_as_the_observers_own_heartbeat_dies(run_module, store):
    """A stale NFS mount on the observer freezes every record at once, its own included: it gives up at once
    instead of taking the others for dead one by one."""
    beat(store, "h1", interval=0.2)
    beat(store, "h2", interval=2.0)
    beat(store, "h3", interval=2.0)
    stop = threading.Event()

    def writers():
        seq = 1
        while not stop.wait(0.05):
            seq += 1
            beat(store, "h2", seq=seq)
            beat(store, "h3", seq=seq)

    thread = threading.Thread(target=writers, daemon=True)
    thread.start()
    try:
        result = check(run_module, store, watch=20, poll=0.05, skew_allowance=0.05)
    finally:
        stop.set()
        thread.join()
    assert result["observer_ok"] is False and "own heartbeat (h1)" in result["observer_reason"]
    assert result["elapsed"] < 20 and result["fresh"] == ["h2", "h3"]
