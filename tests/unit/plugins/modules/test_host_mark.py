# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

from ansible_collections.kvmha.cluster.plugins.modules import host_mark


def mark(run_module, store, **args):
    base = {"store_path": store, "kind": "maintenance", "host": "h2", "owner": "alice", "reason": "bios"}
    return run_module(host_mark, dict(base, **{k: v for k, v in args.items() if k not in ("check", "diff")}),
                      check_mode=args.get("check", False), diff=args.get("diff", False))


def test_maintenance_enter_and_leave_are_idempotent_with_diff(run_module, tmp_path):
    store = str(tmp_path)
    entered = mark(run_module, store, duration=600, diff=True)
    assert entered["changed"] and entered["diff"] == {"before": {"maintenance": False}, "after": {"maintenance": True}}
    assert entered["mark"]["data"]["reason"] == "bios" and entered["mark"]["ttl"] == 600
    assert mark(run_module, store)["changed"] is False
    left = mark(run_module, store, state="absent", diff=True)
    assert left["changed"] and left["diff"] == {"before": {"maintenance": True}, "after": {"maintenance": False}}
    assert mark(run_module, store, state="absent")["changed"] is False


def test_a_maintenance_is_extended_in_place_with_diff_and_never_entered_by_an_extension(run_module, tmp_path):
    store = str(tmp_path)
    refused = mark(run_module, store, state="extended", duration=7200)
    assert refused["failed"] and refused["error_kind"] == "invalid_input" and "not in maintenance" in refused["msg"]
    mark(run_module, store, duration=600)
    checked = mark(run_module, store, state="extended", duration=7200, check=True)
    assert checked["changed"] and _marks_now(store)["h2"]["ttl"] == 600  # check mode wrote nothing
    extended = mark(run_module, store, owner="bob", state="extended", duration=7200, diff=True)
    assert extended["changed"] and extended["mark"]["ttl"] == 7200 and extended["mark"]["owner"] == "alice"
    assert extended["mark"]["data"] == {"reason": "bios", "extended_by": "bob"}
    assert extended["diff"]["after"]["expires_at"] > extended["diff"]["before"]["expires_at"]
    fenced = run_module(host_mark, {"store_path": store, "kind": "fenced", "host": "h2", "owner": "x", "state": "extended"})
    assert fenced["failed"] and "only a maintenance mark" in fenced["msg"]


def test_a_maintenance_lasts_four_hours_unless_told(run_module, tmp_path):
    """Issue 16: a firmware flash and its reboots fit in the default expiry (it was one hour)."""
    entered = mark(run_module, str(tmp_path))
    assert entered["mark"]["ttl"] == 4 * 3600
    assert entered["mark"]["expires_at"] - entered["mark"]["created"] >= 4 * 3600 - 1
    mark(run_module, str(tmp_path), owner="bob", state="extended")
    assert _marks_now(str(tmp_path))["h2"]["ttl"] == 4 * 3600


def _marks_now(store):
    from ansible_collections.kvmha.cluster.plugins.module_utils import _marks  # noqa: PLC0415
    return _marks.read_marks(store, "maintenance")["active"]


def test_maintenance_in_check_mode_writes_nothing(run_module, tmp_path):
    assert mark(run_module, str(tmp_path), check=True)["changed"] is True
    assert not os.path.exists(tmp_path / "kvmha")


def test_maintenance_needs_a_reason_and_a_positive_duration(run_module, tmp_path):
    assert "needs a reason" in mark(run_module, str(tmp_path), reason="")["msg"]
    assert "duration must be positive" in mark(run_module, str(tmp_path), duration=0)["msg"]
    assert not os.path.exists(tmp_path / "kvmha")


def test_fenced_marks_never_expire(run_module, tmp_path):
    result = mark(run_module, str(tmp_path), kind="fenced", owner="watchdog", data={"vms": ["g1"]})
    assert result["changed"] and result["mark"]["ttl"] is None and result["mark"]["data"]["vms"] == ["g1"]


def test_a_confirm_off_needs_a_reason_expires_and_is_replaced(run_module, tmp_path):
    store = str(tmp_path)
    refused = mark(run_module, store, kind="confirmed_off", host="h1", reason="")
    assert refused["failed"] and refused["error_kind"] == "invalid_input" and "needs a reason" in refused["msg"]
    assert "duration must be positive" in mark(run_module, store, kind="confirmed_off", host="h1", duration=0)["msg"]
    assert mark(run_module, store, kind="confirmed_off", host="h1", check=True)["changed"] is True
    assert not os.path.exists(tmp_path / "kvmha")
    first = mark(run_module, store, kind="confirmed_off", host="h1", reason="cords pulled", duration=3600,
                 data={"seq": 7, "boot_id": "b"})
    assert first["changed"] and first["mark"]["ttl"] == 3600
    assert first["mark"]["data"] == {"seq": 7, "boot_id": "b", "reason": "cords pulled"}
    again = mark(run_module, store, kind="confirmed_off", host="h1", reason="cords pulled", data={"seq": 8})
    assert again["changed"] and again["mark"]["generation"] == 2
    extended = mark(run_module, store, kind="confirmed_off", host="h1", state="extended")
    assert extended["failed"] and "only a maintenance mark" in extended["msg"]
    used = mark(run_module, store, kind="confirmed_off", host="h1", owner="watchdog", state="absent")
    assert used["changed"] and used["mark"]["released"] is True
