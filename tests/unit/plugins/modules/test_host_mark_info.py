# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import time

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks
from ansible_collections.kvmha.cluster.plugins.modules import host_mark_info


def info(run_module, store, **args):
    return run_module(host_mark_info, dict({"store_path": store}, **args))


def test_empty_store_has_no_marks_and_nothing_is_written(run_module, tmp_path):
    result = info(run_module, str(tmp_path))
    assert result["changed"] is False and "failed" not in result
    assert result["maintenance"] == {"active": {}, "expired": {}, "invalid": {}}
    assert result["fenced"] == {"active": {}, "expired": {}, "invalid": {}}
    assert not os.path.exists(tmp_path / "kvmha")


def test_active_expired_and_cleared_maintenance_and_fenced_marks(run_module, tmp_path):
    store = str(tmp_path)
    _marks.set_mark(store, "maintenance", "h1", "alice", {"reason": "bios"}, ttl=600)
    _marks.set_mark(store, "maintenance", "h2", "bob", {"reason": "disk"}, ttl=1)
    _marks.set_mark(store, "maintenance", "h3", "carol", {"reason": "done"}, ttl=600)
    _marks.clear_mark(store, "maintenance", "h3", "carol")
    _marks.set_mark(store, "fenced", "h4", "watchdog/1", {"verdict": "SUSPECT", "vms": ["0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e"]})
    old = time.time() - 100  # h2's mark was written 100 s ago by the store's clock: expired long since
    for name in os.listdir(tmp_path / "kvmha" / "maintenance" / "h2"):
        os.utime(tmp_path / "kvmha" / "maintenance" / "h2" / name, (old, old))
    result = info(run_module, store)
    assert sorted(result["maintenance"]["active"]) == ["h1"]
    assert result["maintenance"]["active"]["h1"]["owner"] == "alice"
    assert result["maintenance"]["active"]["h1"]["data"]["reason"] == "bios"
    assert result["maintenance"]["active"]["h1"]["expires_at"] > time.time() + 500
    assert sorted(result["maintenance"]["expired"]) == ["h2"]
    assert result["fenced"]["active"]["h4"]["data"]["vms"] == ["0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e"]
    assert result["fenced"]["active"]["h4"]["ttl"] is None


def test_hosts_and_kinds_filter(run_module, tmp_path):
    store = str(tmp_path)
    _marks.set_mark(store, "maintenance", "h1", "alice", {"reason": "bios"}, ttl=600)
    _marks.set_mark(store, "maintenance", "h2", "bob", {"reason": "disk"}, ttl=600)
    result = info(run_module, store, hosts=["h2"], kinds=["maintenance"])
    assert sorted(result["maintenance"]["active"]) == ["h2"] and "fenced" not in result


def test_unreadable_mark_is_reported_not_hidden(run_module, tmp_path):
    mark_dir = tmp_path / "kvmha" / "fenced" / "h1"
    mark_dir.mkdir(parents=True)
    (mark_dir / "0000000001.json").write_text("{not json")
    result = info(run_module, str(tmp_path), kinds=["fenced"])
    assert "h1" in result["fenced"]["invalid"] and result["fenced"]["active"] == {}


def test_hostile_host_names_and_bad_timeouts_are_refused(run_module, tmp_path):
    assert info(run_module, str(tmp_path), hosts=["../etc"])["failed"] is True
    assert "deadline_s" in info(run_module, str(tmp_path), deadline_s=0)["msg"]
