# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, LeaseLost


REAL_TIME = time.time  # the store's (this machine's) clock, even while a test skews time.time


def age(store, kind, name, seconds):
    """Make the current generation of a document look ``seconds`` old to the store's clock."""
    directory = os.path.join(store, "kvmha", kind, name)
    newest = sorted(f for f in os.listdir(directory) if f.endswith(".json"))[-1]
    then = REAL_TIME() - seconds
    os.utime(os.path.join(directory, newest), (then, then))


def test_lease_is_taken_renewed_and_released(tmp_path):
    store = str(tmp_path)
    first = _marks.acquire_lease(store, "lab", "run-1", ttl=60)
    assert first["changed"] and not first["takeover"] and first["lease"]["generation"] == 1
    renewed = _marks.acquire_lease(store, "lab", "run-1", ttl=60)
    assert renewed["lease"]["generation"] == 2 and not renewed["takeover"]
    assert _marks.release_lease(store, "lab", "run-1")["changed"] is True
    assert _marks.release_lease(store, "lab", "run-1")["changed"] is False
    after = _marks.acquire_lease(store, "lab", "run-2", ttl=60)
    assert after["takeover"] and after["lease"]["data"]["takeover_from"] == "run-1"


def test_a_live_lease_of_someone_else_is_never_taken(tmp_path):
    store = str(tmp_path)
    _marks.acquire_lease(store, "lab", "run-1", ttl=60)
    with pytest.raises(_marks.LeaseHeld) as held:
        _marks.acquire_lease(store, "lab", "run-2", ttl=60)
    assert held.value.result["holder"]["owner"] == "run-1" and "held by run-1" in held.value.msg


def test_an_expired_lease_is_taken_over_only_after_the_skew_allowance(tmp_path):
    store = str(tmp_path)
    _marks.acquire_lease(store, "lab", "run-1", ttl=10)
    age(store, "lease", "lab", 12)
    with pytest.raises(_marks.LeaseHeld):
        _marks.acquire_lease(store, "lab", "run-2", ttl=10, skew=5)
    age(store, "lease", "lab", 16)
    assert _marks.acquire_lease(store, "lab", "run-2", ttl=10, skew=5)["takeover"] is True


def test_releasing_someone_elses_lease_changes_nothing(tmp_path):
    store = str(tmp_path)
    _marks.acquire_lease(store, "lab", "run-1", ttl=60)
    assert _marks.release_lease(store, "lab", "run-2")["changed"] is False
    with pytest.raises(_marks.LeaseHeld):
        _marks.acquire_lease(store, "lab", "run-2", ttl=60)


def test_dry_run_writes_nothing(tmp_path):
    store = str(tmp_path)
    assert _marks.acquire_lease(store, "lab", "run-1", ttl=60, dry_run=True)["changed"] is True
    assert not os.path.exists(tmp_path / "kvmha" / "lease")


def _race(store, owner, start, results):
    start.wait()
    try:
        _marks.acquire_lease(store, "lab", owner, ttl=60)
        results.put(owner)
    except _marks.LeaseHeld:
        results.put(None)


@pytest.mark.parametrize("expired_before", [False, True])
def test_of_racing_watchdogs_exactly_one_gets_the_lease(tmp_path, expired_before):
    store = str(tmp_path)
    if expired_before:
        _marks.acquire_lease(store, "lab", "crashed-run", ttl=1)
        age(store, "lease", "lab", 30)
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    racers = [ctx.Process(target=_race, args=(store, "run-%d" % i, start, results)) for i in range(8)]
    for racer in racers:
        racer.start()
    start.set()
    for racer in racers:
        racer.join(30)
    winners = [w for w in (results.get(timeout=5) for racer in racers) if w]
    assert len(winners) == 1
    assert _marks.documents(store, "lease").read("lab").owner == winners[0]


def test_marks_are_set_once_and_cleared_into_history(tmp_path):
    store = str(tmp_path)
    first = _marks.set_mark(store, "fenced", "h1", "run-1", {"vms": ["g1"]})
    assert first["changed"] and first["mark"]["data"] == {"vms": ["g1"]}
    assert _marks.set_mark(store, "fenced", "h1", "run-2", {"vms": []})["changed"] is False
    assert list(_marks.read_marks(store, "fenced")["active"]) == ["h1"]
    assert _marks.clear_mark(store, "fenced", "h1", "unfence")["changed"] is True
    assert _marks.clear_mark(store, "fenced", "h1", "unfence")["changed"] is False
    assert _marks.read_marks(store, "fenced") == {"active": {}, "expired": {}, "invalid": {}}
    assert os.listdir(tmp_path / "kvmha" / "fenced" / "h1")  # history kept


def test_expired_maintenance_is_reported_as_expired(tmp_path):
    store = str(tmp_path)
    _marks.set_mark(store, "maintenance", "h1", "alice", {"reason": "bios"}, ttl=5)
    age(store, "maintenance", "h1", 60)
    marks = _marks.read_marks(store, "maintenance")
    assert list(marks["expired"]) == ["h1"] and marks["active"] == {}
    again = _marks.set_mark(store, "maintenance", "h1", "bob", {"reason": "again"}, ttl=60)
    assert again["changed"] and again["mark"]["generation"] == 2


def test_the_marks_of_some_hosts_are_read_in_every_state_and_kind_asked(tmp_path):
    """One reader for host_mark_info and the watch's suspects: the states read_marks gives, only the hosts asked."""
    store = str(tmp_path)
    _marks.set_mark(store, "maintenance", "h1", "alice", {"reason": "bios"}, ttl=600)
    _marks.set_mark(store, "maintenance", "h2", "alice", {"reason": "done"}, ttl=5)
    _marks.set_mark(store, "maintenance", "h3", "alice", {"reason": "other host"}, ttl=600)
    _marks.confirm_off(store, "h2", "carol", {"reason": "cords pulled", "seq": 1, "boot_id": "b"}, ttl=600)
    age(store, "maintenance", "h2", 60)
    os.makedirs(os.path.join(store, "kvmha", "maintenance", "h4"))
    with open(os.path.join(store, "kvmha", "maintenance", "h4", "0000000001.json"), "w", encoding="utf-8") as f:
        f.write("{not json")
    marks = _marks.suspect_marks(store, ["h1", "h2", "h4"])
    assert list(marks) == ["maintenance", "confirmed_off"]
    assert list(marks["maintenance"]["active"]) == ["h1"] and list(marks["maintenance"]["expired"]) == ["h2"]
    assert list(marks["maintenance"]["invalid"]) == ["h4"], "an unreadable mark is reported, never dropped"
    assert list(marks["confirmed_off"]["active"]) == ["h2"]
    every = _marks.read_marks_of(store, ["maintenance"])
    assert sorted(every["maintenance"]["active"]) == ["h1", "h3"]


def test_marks_refuse_hostile_host_names(tmp_path):
    with pytest.raises(InvalidInput):
        _marks.set_mark(str(tmp_path), "fenced", "../h1", "x", {})


# ----------------------------------------------------------------------------------- controllers whose clocks differ
# Expiries are mtimes the store sets; they are judged on the store's clock (a probe file's mtime), so a controller
# whose own clock is hours off agrees with the others. Before that, a controller an hour ahead took over every lease.


@pytest.fixture
def clock_off_by(monkeypatch):
    def skew(seconds):
        monkeypatch.setattr(time, "time", lambda: REAL_TIME() + seconds)
    return skew


@pytest.mark.parametrize("offset", [3600.0, -3600.0])
def test_a_controller_an_hour_off_never_takes_a_live_lease(tmp_path, clock_off_by, offset):
    store = str(tmp_path)
    _marks.acquire_lease(store, "lab", "run-1", ttl=30)
    clock_off_by(offset)
    with pytest.raises(_marks.LeaseHeld):
        _marks.acquire_lease(store, "lab", "run-2", ttl=30)
    age(store, "lease", "lab", 36)  # expired on the store's clock, ttl + skew ago: now it may
    assert _marks.acquire_lease(store, "lab", "run-2", ttl=30)["takeover"] is True


@pytest.mark.parametrize("offset", [3 * 3600.0, -3 * 3600.0])
def test_a_controller_hours_off_reads_maintenance_as_the_store_does(tmp_path, clock_off_by, offset):
    store = str(tmp_path)
    _marks.set_mark(store, "maintenance", "h1", "alice", {"reason": "bios"}, ttl=7200)
    _marks.set_mark(store, "maintenance", "h2", "alice", {"reason": "done"}, ttl=5)
    age(store, "maintenance", "h2", 60)
    clock_off_by(offset)
    marks = _marks.read_marks(store, "maintenance")
    assert list(marks["active"]) == ["h1"] and list(marks["expired"]) == ["h2"]
    assert _marks.set_mark(store, "maintenance", "h1", "bob", {"reason": "other"}, ttl=60)["changed"] is False


def test_the_store_clock_is_the_mtime_the_store_gives_and_leaves_nothing(tmp_path, clock_off_by):
    store = str(tmp_path)
    clock_off_by(86400.0)
    now = _marks.store_now(store)
    assert abs(now - os.stat(store).st_mtime) < 60  # the file system's time, not the skewed one
    assert os.listdir(store) == []  # the probe is gone, and a reader created no directory


def test_a_holder_frozen_for_twice_its_ttl_stops_at_its_next_step(tmp_path):
    store = str(tmp_path)
    mine = _marks.acquire_lease(store, "lab", "frozen-run", ttl=10)["lease"]
    keeper = _marks.LeaseKeeper(store, "lab", "frozen-run", mine["generation"], ttl=10)
    keeper.hold()
    age(store, "lease", "lab", 20 + _marks.DEFAULT_SKEW)  # SIGSTOP for 2 x ttl: the lease expired meanwhile
    assert _marks.acquire_lease(store, "lab", "other-run", ttl=10)["takeover"] is True
    with pytest.raises(_marks.LeaseLost):
        keeper.hold()
    with pytest.raises(_marks.LeaseLost):
        _marks.renew_lease(store, "lab", "frozen-run", mine["generation"], ttl=10)
    with pytest.raises(_marks.LeaseHeld):  # and it cannot simply take it back
        _marks.acquire_lease(store, "lab", "frozen-run", ttl=10)


def test_a_maintenance_is_extended_in_place_and_never_ends_in_between(tmp_path):
    store = str(tmp_path)
    _marks.set_mark(store, "maintenance", "h1", "alice", {"reason": "bios"}, ttl=60)
    age(store, "maintenance", "h1", 50)
    extended = _marks.extend_mark(store, "maintenance", "h1", "bob", ttl=7200)
    mark = extended["mark"]
    assert mark["owner"] == "alice" and mark["data"] == {"reason": "bios", "extended_by": "bob"} and mark["ttl"] == 7200
    assert list(_marks.read_marks(store, "maintenance")["active"]) == ["h1"]
    age(store, "maintenance", "h1", 7300)
    with pytest.raises(InvalidInput):  # ended: extending must not re-enter it silently
        _marks.extend_mark(store, "maintenance", "h1", "bob", ttl=60)
    with pytest.raises(InvalidInput):
        _marks.extend_mark(store, "maintenance", "h2", "bob", ttl=60)


# ----------------------------------------------------------------------------------- an operator's confirm-off


def test_a_confirm_off_needs_a_reason_and_is_replaced_by_a_newer_one(tmp_path):
    store = str(tmp_path)
    with pytest.raises(InvalidInput, match="needs a reason"):
        _marks.confirm_off(store, "h1", "alice", {"reason": "  ", "seq": 4, "boot_id": "b"}, ttl=3600)
    with pytest.raises(InvalidInput):
        _marks.confirm_off(store, "../h1", "alice", {"reason": "cords pulled"}, ttl=3600)
    assert not os.path.exists(tmp_path / "kvmha")
    first = _marks.confirm_off(store, "h1", "alice", {"reason": "cords pulled", "seq": 4, "boot_id": "b"}, ttl=3600)
    assert first["changed"] and first["mark"]["owner"] == "alice" and first["mark"]["ttl"] == 3600
    # The newest word is bound to the newest heartbeat record: an active confirmation is replaced, never kept.
    second = _marks.confirm_off(store, "h1", "bob", {"reason": "PDU outlet off", "seq": 5, "boot_id": "b"}, ttl=600)
    assert second["mark"]["generation"] == first["mark"]["generation"] + 1
    active = _marks.read_marks(store, _marks.CONFIRMED_OFF)["active"]["h1"]
    assert (active["owner"], active["data"]["seq"], active["ttl"]) == ("bob", 5, 600)


def test_a_confirm_off_expires_on_the_store_clock_and_is_used_up_once(tmp_path):
    store = str(tmp_path)
    _marks.confirm_off(store, "h1", "alice", {"reason": "cords pulled"}, ttl=60)
    age(store, _marks.CONFIRMED_OFF, "h1", 120)  # past its ttl and the 5 s skew allowance
    marks = _marks.read_marks(store, _marks.CONFIRMED_OFF)
    assert list(marks["expired"]) == ["h1"] and marks["active"] == {}
    _marks.confirm_off(store, "h2", "alice", {"reason": "cords pulled"}, ttl=3600)
    assert _marks.clear_mark(store, _marks.CONFIRMED_OFF, "h2", "watchdog/1")["changed"] is True
    assert "h2" not in _marks.read_marks(store, _marks.CONFIRMED_OFF)["active"]
    assert _marks.clear_mark(store, _marks.CONFIRMED_OFF, "h2", "watchdog/2")["changed"] is False


def test_a_confirm_off_in_dry_run_writes_nothing(tmp_path):
    planned = _marks.confirm_off(str(tmp_path), "h1", "alice", {"reason": "x"}, ttl=60, dry_run=True)
    assert planned["changed"] and planned["mark"]["owner"] == "alice"
    assert not os.path.exists(tmp_path / "kvmha" / "confirmed_off")


# ----------------------------------------------------------------------------------- the fence token


def token_store(tmp_path):
    store = str(tmp_path)
    lease = _marks.acquire_lease(store, "lab", "run-1", ttl=60)["lease"]
    return store, lease["generation"]


def test_a_fence_token_with_the_lease_held_and_no_maintenance_lets_the_power_off_go(tmp_path):
    store, generation = token_store(tmp_path)
    assert _marks.check_fence_token(store, "lab", "run-1", generation, "h2") is None


def test_a_fence_token_whose_lease_moved_on_stops_the_power_off(tmp_path):
    store, generation = token_store(tmp_path)
    _marks.renew_lease(store, "lab", "run-1", generation, ttl=60)  # a generation later: the old token is spent
    with pytest.raises(LeaseLost, match="no longer ours"):
        _marks.check_fence_token(store, "lab", "run-1", generation, "h2")
    with pytest.raises(LeaseLost):
        _marks.check_fence_token(store, "lab", "run-2", generation + 1, "h2")  # the generation, not the owner's
    assert _marks.check_fence_token(store, "lab", "run-1", generation, "h2", check_mode=True) is None  # no lease held


def test_a_fence_token_refuses_a_host_in_maintenance_and_says_whose(tmp_path):
    store, generation = token_store(tmp_path)
    _marks.set_mark(store, "maintenance", "h2", "ops", {"reason": "firmware"}, ttl=600)
    assert _marks.check_fence_token(store, "lab", "run-1", generation, "h2") == "h2 is in maintenance (by ops: firmware)"
    assert _marks.check_fence_token(store, "lab", "run-1", generation, "h3") is None  # another host's mark
    assert _marks.check_fence_token(store, "lab", "run-1", generation, "h2", check_mode=True).startswith("h2 is in")


def test_a_fence_token_lets_an_ended_maintenance_go_and_reads_a_broken_one_as_maintenance(tmp_path):
    store, generation = token_store(tmp_path)
    _marks.set_mark(store, "maintenance", "h2", "ops", {"reason": "bios"}, ttl=5)
    age(store, "maintenance", "h2", 60)  # expired past the skew allowance
    assert _marks.check_fence_token(store, "lab", "run-1", generation, "h2") is None
    _marks.set_mark(store, "maintenance", "h3", "ops", {"reason": "bios"})
    _marks.clear_mark(store, "maintenance", "h3", "ops")
    assert _marks.check_fence_token(store, "lab", "run-1", generation, "h3") is None
    directory = tmp_path / "kvmha" / "maintenance" / "h4"
    directory.mkdir(parents=True)
    (directory / "0000000001.json").write_text('{"generation": ', encoding="utf-8")
    refusal = _marks.check_fence_token(store, "lab", "run-1", generation, "h4")
    assert refusal is not None and refusal.startswith("h4 has a maintenance mark that cannot be read")


def test_a_fence_token_for_a_hostile_host_name_is_invalid_input(tmp_path):
    store, generation = token_store(tmp_path)
    with pytest.raises(InvalidInput):
        _marks.check_fence_token(store, "lab", "run-1", generation, "../h2")
