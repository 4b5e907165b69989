# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import write_atomic
from ansible_collections.kvmha.cluster.plugins.modules import vm_disk_activity


@pytest.fixture
def store(tmp_path):
    os.makedirs(tmp_path / "kvmha" / "hosts")
    os.makedirs(tmp_path / "images")
    return str(tmp_path)


def host_with_disks(store, host, disks, ha=True):
    vms = [{"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, d)), "name": os.path.basename(d), "ha": ha, "priority": 50,
            "memory_mib": 64, "vcpus": 1, "disks": [d], "group": ""} for d in disks]
    record = {"version": 1, "host": host, "boot_id": "b", "seq": 1, "ts": time.time(), "interval": 2, "state": "running",
              "self_fence": {"armed": False, "deadline_s": 60}, "capacity": {"mem_free_mib": 0, "vcpus_free": 0}, "vms": vms}
    write_atomic(os.path.join(store, "kvmha", "hosts", host + ".json"), json.dumps(record).encode())


def disk(store, name):
    path = os.path.join(store, "images", name)
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    return path


def test_a_disk_being_written_is_active_and_a_quiet_one_idle(run_module, store):
    busy, quiet = disk(store, "busy.img"), disk(store, "quiet.img")
    host_with_disks(store, "h1", [busy])
    host_with_disks(store, "h2", [quiet])
    stop = threading.Event()

    def guest():
        counter = 0
        while not stop.wait(0.05):
            counter += 1
            with open(busy, "r+b") as f:
                f.seek(1024)
                f.write(counter.to_bytes(4, "little"))

    thread = threading.Thread(target=guest, daemon=True)
    thread.start()
    try:
        result = run_module(vm_disk_activity, {"store_path": store, "hosts": ["h1", "h2"], "window": 0.5})
    finally:
        stop.set()
        thread.join()
    assert result["changed"] is False
    assert result["hosts"]["h1"]["activity"] == "active" and result["hosts"]["h1"]["changed"] == [busy]
    assert result["hosts"]["h2"]["activity"] == "idle"


def test_no_ha_disks_is_none_and_missing_disks_are_unknown(run_module, store):
    host_with_disks(store, "h1", [])
    host_with_disks(store, "h2", [os.path.join(store, "images", "gone.img")])
    host_with_disks(store, "h3", [disk(store, "not-ha.img")], ha=False)
    result = run_module(vm_disk_activity, {"store_path": store, "hosts": ["h1", "h2", "h3", "h4"], "window": 0.1})
    assert result["hosts"]["h1"]["activity"] == "none"
    assert result["hosts"]["h2"]["activity"] == "unknown" and "could not be sampled" in result["hosts"]["h2"]["reason"]
    assert result["hosts"]["h3"]["activity"] == "none"
    assert result["hosts"]["h4"]["activity"] == "none"  # no record at all


def test_a_hung_store_gives_unknown_not_a_hang(run_module, store, monkeypatch):
    host_with_disks(store, "h1", [disk(store, "a.img")])
    monkeypatch.setattr(vm_disk_activity, "sample", lambda paths: time.sleep(30))
    result = run_module(vm_disk_activity, {"store_path": store, "hosts": ["h1"], "window": 0.1, "store_timeout_s": 0.3})
    assert result["hosts"]["h1"]["activity"] == "unknown" and "did not finish" in result["hosts"]["h1"]["reason"]


def test_bad_input(run_module, store):
    result = run_module(vm_disk_activity, {"store_path": store, "hosts": ["../x"]})
    assert result["failed"] is True and "'/'" in result["msg"]
    result = run_module(vm_disk_activity, {"store_path": store, "hosts": ["h1"], "window": 0})
    assert result["failed"] is True and "must be positive" in result["msg"]


def test_a_baseline_taken_earlier_shortens_the_wait(run_module, store):
    path = disk(store, "g.img")
    host_with_disks(store, "h1", [path])
    from ansible_collections.kvmha.cluster.plugins.module_utils._diskactivity import baseline

    earlier = baseline([path])
    earlier["sampled_at"] -= 30  # taken long enough ago: no waiting at all
    with open(path, "r+b") as f:
        f.write(b"\1" * 8)
    result = run_module(vm_disk_activity, {"store_path": store, "hosts": ["h1"], "window": 20, "baseline": {"h1": earlier}})
    assert result["hosts"]["h1"]["activity"] == "active" and result["elapsed"] < 20
