# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _heartbeat, _marks
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import write_atomic
from ansible_collections.kvmha.cluster.plugins.modules import kvm_heartbeat


def record(host, seq=1, interval=2.0, **overrides):
    doc = {
        "version": 1, "host": host, "boot_id": "b-" + host, "seq": seq, "ts": time.time(), "interval": interval,
        "state": "running", "self_fence": {"armed": False, "deadline_s": 60.0},
        "capacity": {"mem_free_mib": 1024, "vcpus_free": 2},
        "vms": [{"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, host)), "name": "vm-" + host, "ha": True, "priority": 50,
                 "memory_mib": 64, "vcpus": 1, "disks": [], "group": ""}],
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def store(tmp_path):
    os.makedirs(tmp_path / "kvmha" / "hosts")
    return str(tmp_path)


def beat(store, host, age=0.0, **fields):
    path = os.path.join(store, "kvmha", "hosts", host + ".json")
    write_atomic(path, json.dumps(record(host, **fields)).encode())
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_check_reports_every_host_in_one_call(run_module, store):
    beat(store, "h1")
    beat(store, "h2")
    beat(store, "h3", age=60)
    result = run_module(kvm_heartbeat, {"store_path": store, "hosts": ["h1", "h2", "h3", "h4"]})
    assert result["changed"] is False and result["observer_ok"] is True
    assert result["fresh"] == ["h1", "h2"]
    assert result["suspects"] == ["h3", "h4"]
    assert result["hosts"]["h3"]["status"] == "stale" and result["hosts"]["h4"]["status"] == "missing"
    assert result["hosts"]["h1"]["vms"][0]["name"] == "vm-h1"


def test_check_defaults_to_every_record_in_the_store(run_module, store):
    beat(store, "h1")
    beat(store, "h2", state="stopped")
    with open(os.path.join(store, "kvmha", "hosts", "evil..json"), "w") as f:
        f.write("{}")
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert sorted(result["hosts"]) == ["h1", "h2"]
    assert result["suspects"] == ["h2"] and result["hosts"]["h2"]["status"] == "stopped"
    assert "evil..json" in result["ignored_files"]


def test_excluded_hosts_are_never_suspects(run_module, store):
    beat(store, "h1")
    beat(store, "h2", age=60)
    result = run_module(kvm_heartbeat, {"store_path": store, "exclude": ["h2"]})
    assert result["suspects"] == [] and result["hosts"]["h2"]["status"] == "stale"


def test_observer_suspects_itself_when_every_host_looks_dead(run_module, store):
    beat(store, "h1", age=60)
    beat(store, "h2", age=60)
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert result["observer_ok"] is False and "no host's heartbeat looks alive" in result["observer_reason"]


def test_observer_suspects_itself_when_its_own_heartbeat_is_dead(run_module, store):
    beat(store, "h1", age=60)
    beat(store, "h2")
    beat(store, "h3")
    result = run_module(kvm_heartbeat, {"store_path": store, "observer_host": "h1"})
    assert result["observer_ok"] is False and "observer's own heartbeat" in result["observer_reason"]


def test_a_hung_store_fails_the_observer_not_the_hosts(run_module, store, monkeypatch):
    beat(store, "h1")
    monkeypatch.setattr(_heartbeat.RecordReader, "read", lambda self, host: time.sleep(30))
    result = run_module(kvm_heartbeat, {"store_path": store, "hosts": ["h1"], "store_timeout_s": 0.3})
    assert result["observer_ok"] is False and "did not finish within 0.3 s" in result["observer_reason"]
    assert result["suspects"] == [] and "failed" not in result


def test_watch_returns_as_soon_as_a_host_stops_beating(run_module, store):
    # h2 keeps beating with a generous interval, so a slow test machine cannot make it look stale.
    beat(store, "h1", interval=0.1)
    beat(store, "h2", interval=2.0)
    stop = threading.Event()

    def writer():
        seq = 1
        while not stop.wait(0.1):
            seq += 1
            beat(store, "h2", seq=seq, interval=2.0)
            if seq < 5:
                beat(store, "h1", seq=seq, interval=0.1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        result = run_module(kvm_heartbeat, {"store_path": store, "watch": 30, "poll": 0.05, "skew_allowance": 0.05})
    finally:
        stop.set()
        thread.join()
    assert result["suspects"] == ["h1"] and result["fresh"] == ["h2"]
    assert result["samples"] > 3 and result["elapsed"] < 30


def test_watch_returns_at_once_when_a_host_is_already_suspect(run_module, store):
    beat(store, "h1", state="stopped")
    result = run_module(kvm_heartbeat, {"store_path": store, "watch": 30})
    assert result["samples"] == 1 and result["suspects"] == ["h1"]


@pytest.mark.parametrize("args, words", [  # bad names in hosts/exclude are skipped instead: test_one_bad_file.py
    ({"state": "stopped", "host": "h1/../x"}, "'/'"),
    ({"observer_host": ".h1"}, "starts with a dot"),
    ({"poll": 0}, "poll must be positive"),
    ({"watch": -1}, "watch must be zero or more"),
    ({"misses": 0}, "misses must be at least 1"),
])
def test_bad_input_fails_clearly_and_changes_nothing(run_module, store, args, words):
    before = sorted(os.listdir(os.path.join(store, "kvmha", "hosts")))
    result = run_module(kvm_heartbeat, dict({"store_path": store}, **args))
    assert result["failed"] is True and words in result["msg"] and result["error_kind"] == "invalid_input"
    assert sorted(os.listdir(os.path.join(store, "kvmha", "hosts"))) == before


def test_stopped_marker_keeps_the_vm_list_and_is_idempotent(run_module, store):
    beat(store, "h1", seq=41)
    result = run_module(kvm_heartbeat, {"store_path": store, "state": "stopped", "host": "h1", "reason": "maintenance"}, diff=True)
    assert result["changed"] is True
    assert result["diff"] == {"before": {"state": "running", "seq": 41, "boot_id": "b-h1"},
                              "after": {"state": "stopped", "seq": 42, "boot_id": "b-h1"}}
    with open(os.path.join(store, "kvmha", "hosts", "h1.json"), "rb") as f:
        written = _heartbeat.parse_record(f.read())
    assert written["state"] == "stopped" and written["vms"][0]["name"] == "vm-h1" and written["reason"] == "maintenance"
    again = run_module(kvm_heartbeat, {"store_path": store, "state": "stopped", "host": "h1"})
    assert again["changed"] is False


def test_stopped_marker_in_check_mode_writes_nothing(run_module, store):
    path = beat(store, "h1", seq=41)
    before = open(path, "rb").read()
    result = run_module(kvm_heartbeat, {"store_path": store, "state": "stopped", "host": "h1"}, check_mode=True)
    assert result["changed"] is True and result["record"]["state"] == "stopped"
    assert open(path, "rb").read() == before


def test_stopped_marker_for_a_host_without_record(run_module, tmp_path):
    result = run_module(kvm_heartbeat, {"store_path": str(tmp_path), "state": "stopped", "host": "h7"})
    assert result["changed"] is True
    assert os.path.exists(tmp_path / "kvmha" / "hosts" / "h7.json")


def test_stopped_marker_never_overwrites_an_invalid_record(run_module, store):
    path = os.path.join(store, "kvmha", "hosts", "h1.json")
    with open(path, "wb") as f:
        f.write(b"{garbage")
    result = run_module(kvm_heartbeat, {"store_path": store, "state": "stopped", "host": "h1"})
    assert result["failed"] is True and result["changed"] is False and "refusing to replace" in result["msg"]
    assert open(path, "rb").read() == b"{garbage"


def test_stopped_marker_needs_a_host(run_module, store):
    result = run_module(kvm_heartbeat, {"store_path": store, "state": "stopped"})
    assert result["failed"] is True and "host" in result["msg"]


# ------------------------------------------------------------------------------------------ marks


def test_hosts_in_maintenance_are_never_suspects(run_module, store):
    beat(store, "h1")
    beat(store, "h2", age=60)
    _marks.set_mark(store, "maintenance", "h2", "alice", {"reason": "bios"}, ttl=600)
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert result["suspects"] == [] and list(result["maintenance"]) == ["h2"]
    assert result["maintenance"]["h2"]["owner"] == "alice"


def test_expired_maintenance_ends_by_itself_and_is_reported(run_module, store):
    beat(store, "h1")
    beat(store, "h2", age=60)
    mark = _marks.set_mark(store, "maintenance", "h2", "alice", {"reason": "bios"}, ttl=1)["mark"]
    old = time.time() - 60
    os.utime(os.path.join(store, "kvmha", "maintenance", "h2", "%010d.json" % mark["generation"]), (old, old))
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert result["suspects"] == ["h2"] and list(result["maintenance_expired"]) == ["h2"]


def test_fenced_hosts_are_not_suspects_and_returning_ones_are_reported(run_module, store):
    beat(store, "h1")
    beat(store, "h2", age=60)
    beat(store, "h3")
    for host in ("h2", "h3"):
        _marks.set_mark(store, "fenced", host, "watchdog", {"vms": []})
    result = run_module(kvm_heartbeat, {"store_path": store, "watch": 30, "until_work": True})
    assert result["suspects"] == [] and sorted(result["fenced"]) == ["h2", "h3"]
    assert result["returning"] == ["h3"] and result["samples"] == 1 and result["work"] == ["h3: back after a fence"]


def test_an_unreadable_mark_counts_as_active(run_module, store):
    beat(store, "h1")
    beat(store, "h2", age=60)
    os.makedirs(os.path.join(store, "kvmha", "maintenance", "h2"))
    with open(os.path.join(store, "kvmha", "maintenance", "h2", "0000000001.json"), "w") as f:
        f.write("{broken")
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert result["suspects"] == [] and "invalid" in result["maintenance"]["h2"]


def test_the_suspects_marks_are_read_again_as_the_watch_ends(run_module, store, monkeypatch):
    """Once the watch has read the marks (its first sample), an operator marks h2 in maintenance and confirms h3 off,
    and both stop beating: the decision gets both from the watch's end (suspect_marks). h4's confirm-off is not
    there: h4 is no suspect."""
    beat(store, "h1")
    _marks.confirm_off(store, "h4", "bob", {"reason": "not a suspect"}, ttl=600)
    marks_read = threading.Event()
    read_marks = kvm_heartbeat.read_marks

    def spy(store_path, kind, **kwargs):
        marks = read_marks(store_path, kind, **kwargs)
        if kind == _marks.MAINTENANCE:
            marks_read.set()
        return marks
    monkeypatch.setattr(kvm_heartbeat, "read_marks", spy)
    stop = threading.Event()

    def operator():
        seq, marked = 1, False
        while not stop.wait(0.05):
            seq += 1
            beat(store, "h1", seq=seq)
            if not marks_read.is_set():
                for host in ("h2", "h3"):
                    beat(store, host, seq=seq, interval=0.1)
            elif not marked:
                _marks.set_mark(store, "maintenance", "h2", "alice", {"reason": "PSU swap"}, ttl=600)
                _marks.confirm_off(store, "h3", "carol", {"reason": "cords pulled", "seq": seq, "boot_id": "b-h3"}, ttl=600)
                marked = True

    for host in ("h2", "h3"):
        beat(store, host, interval=0.1)
    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    try:
        result = run_module(kvm_heartbeat, {"store_path": store, "hosts": ["h1", "h2", "h3", "h4"], "watch": 30,
                                            "poll": 0.05, "skew_allowance": 0.05, "exclude": ["h4"]})
    finally:
        stop.set()
        thread.join()
    assert sorted(result["suspects"]) == ["h2", "h3"] and "h2" not in result["maintenance"], result
    marks = result["suspect_marks"]
    assert list(marks["maintenance"]["active"]) == ["h2"] and marks["maintenance"]["active"]["h2"]["owner"] == "alice"
    assert list(marks["confirmed_off"]["active"]) == ["h3"] and marks["confirmed_off"]["active"]["h3"]["owner"] == "carol"
    assert marks["maintenance"]["invalid"] == {} and marks["confirmed_off"]["invalid"] == {}


def test_a_healthy_watch_reads_no_marks_again(run_module, store):
    beat(store, "h1")
    assert "suspect_marks" not in run_module(kvm_heartbeat, {"store_path": store})


def test_marks_that_cannot_be_read_again_put_every_suspect_in_maintenance(run_module, store, monkeypatch):
    """The cautious reading: nothing is done to a suspect whose maintenance mark cannot be known."""
    beat(store, "h1")
    beat(store, "h2", age=60)
    beat(store, "h3", age=60)

    def hung(*_args):
        time.sleep(30)
    monkeypatch.setattr(kvm_heartbeat, "suspect_marks", hung)
    result = run_module(kvm_heartbeat, {"store_path": store, "store_timeout_s": 0.3})
    assert result["suspects"] == ["h2", "h3"] and result["observer_ok"] is True
    invalid = result["suspect_marks"]["maintenance"]["invalid"]
    assert sorted(invalid) == ["h2", "h3"] and "could not be read again" in invalid["h2"] and "0.3 s" in invalid["h2"]
    assert result["suspect_marks"]["confirmed_off"] == {"active": {}, "expired": {}, "invalid": {}}


def test_hosts_dying_together_are_reported_together(run_module, store):
    """h1 and h2 die together but beat on different phases: the watch waits for h2 instead of returning h1 alone."""
    beat(store, "h1", interval=0.4)
    beat(store, "h2", interval=0.4)
    beat(store, "h3", interval=2.0)
    stop = threading.Event()

    def writers():
        seq = 1
        while not stop.wait(0.05):
            seq += 1
            beat(store, "h3", seq=seq, interval=2.0)
            if seq < 20:
                beat(store, "h1", seq=seq, interval=0.4)
            if seq < 24:  # h2's last beat comes 0.2 s later than h1's
                beat(store, "h2", seq=seq, interval=0.4)

    thread = threading.Thread(target=writers, daemon=True)
    thread.start()
    try:
        result = run_module(kvm_heartbeat, {"store_path": store, "watch": 30, "poll": 0.05, "skew_allowance": 0.05})
    finally:
        stop.set()
        thread.join()
    assert result["suspects"] == ["h1", "h2"] and result["overdue"] == [] and result["settled"] > 0


# ------------------------------------------------------------------------------ probes before the decision (issue 17)


@pytest.fixture
def ssh_server():
    """A loopback server that sends an SSH identification line to every connection."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _address = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_test\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def beating(store, interval, last_seq, hosts=("h1", "h2")):
    """h2 beats all along; h1 beats every ``interval`` until ``last_seq``, then stops (a crash)."""
    stop = threading.Event()

    def writers():
        seq = 1
        while not stop.wait(interval / 4):
            seq += 1
            beat(store, "h2", seq=seq, interval=2.0)
            if seq // 4 < last_seq:
                beat(store, "h1", seq=seq // 4 + 1, interval=interval, vms=[])
    thread = threading.Thread(target=writers, daemon=True)
    thread.start()
    return stop, thread


def test_probes_start_at_the_first_missed_beat_and_the_answer_is_there_at_the_decision(run_module, store, ssh_server):
    """The watch ends at h1's first missed beat (not a suspect yet); the next watch of the same observer goes on with
    the same judgement, asks h1's SSH server in the background and returns h1 suspect with the answer already in."""
    beat(store, "h1", interval=0.4)
    beat(store, "h2", interval=2.0)
    stop, thread = beating(store, 0.4, last_seq=4)
    # The handover continues the judgement only where it is older than the mtime estimate (file age - allowance): an
    # allowance above the poll interval, as the policy's 2 s above its 0.5 s.
    common = {"store_path": store, "watch": 30, "poll": 0.05, "skew_allowance": 0.3}
    try:
        first = run_module(kvm_heartbeat, dict(common, until_overdue=True))
        second = run_module(kvm_heartbeat, dict(common, resume=first["resume"],
                                                mgmt_targets={"h1": {"address": "127.0.0.1", "port": ssh_server}}))
    finally:
        stop.set()
        thread.join()
    assert first["ended"] == "overdue" and first["overdue"] == ["h1"] and first["suspects"] == []
    assert "h1" in first["early"] and first["early"]["h1"]["mgmt"] is None
    assert second["ended"] == "suspects" and second["suspects"] == ["h1"]
    early = second["early"]["h1"]
    assert early["since"] == first["early"]["h1"]["since"]  # late since the first watch, not since the second
    assert early["mgmt"]["any_reachable"] is True and early["mgmt"]["probes"][0]["banner"] == "SSH-2.0-OpenSSH_test"
    assert early["since"] <= early["mgmt"]["asked_at"]
    # nothing before the policy's count: stale only once 3 x 0.4 s passed since its last new seq
    assert second["hosts"]["h1"]["status"] == "stale" and second["hosts"]["h1"]["age"] >= 1.2
    assert second["disk_samples"]["h1"] == first["resume"]["early"]["baselines"]["h1"]


def test_a_malformed_resume_is_ignored_with_a_warning_and_the_watch_goes_on(run_module, store):
    beat(store, "h1")
    deep = {}
    for _level in range(50):
        deep = {"h1": deep}
    for resume in ({"early": deep}, {"early": {"since": deep, "baselines": {}}},
                   {"early": {"since": {"h1": 1.0}, "baselines": {"h1": "x"}}}):
        result = run_module(kvm_heartbeat, {"store_path": store, "resume": resume})
        assert result["fresh"] == ["h1"] and "failed" not in result
        # Ansible gathers module warnings process-wide (a result may carry other tests'): ask the check itself
        params = dict({name: spec.get("default") for name, spec in kvm_heartbeat.ARGUMENT_SPEC.items()},
                      store_path=store, resume=resume)
        assert [w for w in kvm_heartbeat.HeartbeatCheck(params).warnings if "resume is not used" in w], resume


def test_the_watch_samples_a_host_as_it_turns_stale_not_a_poll_interval_later(run_module, store):
    """Issue 17: h1 turns stale 0.9 s into a 3 s window; with a 30 s poll interval the watch used to end after its first
    sample (the next would fall past the window). It samples at h1's missed beat and as h1 turns stale instead."""
    beat(store, "h1", age=0.3, interval=0.4)  # overdue after 1.5 x 0.4 s, stale after 3 x 0.4 s
    result = run_module(kvm_heartbeat, {"store_path": store, "watch": 3, "poll": 30, "skew_allowance": 0.0, "until_overdue": False})
    assert result["ended"] == "suspects" and result["suspects"] == ["h1"], result
    assert result["samples"] in (2, 3), result  # 3 unless the sample of the missed beat came after the stale moment


def test_without_until_overdue_a_late_host_does_not_end_the_watch(run_module, store):
    beat(store, "h1", age=1.0, interval=0.5)  # overdue already (1.5 x 0.5 s), stale only after 3 x 0.5 s
    result = run_module(kvm_heartbeat, {"store_path": store, "watch": 0.2, "poll": 0.05, "skew_allowance": 0.0})
    assert result["ended"] in ("window", "suspects") and "resume" not in result


def test_a_host_late_when_the_window_ends_is_watched_until_it_turns_stale_within_the_grace(run_module, store):
    """Issue 17: h1 has missed a beat when the window ends; with overdue_grace_s the watch goes on until h1 turns
    stale (3 x 0.4 s after its last beat), so this run - which started h1's probes - decides on it. Without the grace
    the window ends with h1 only overdue; a grace shorter than the wait ends it at the grace."""
    common = {"store_path": store, "watch": 0.1, "poll": 0.05, "skew_allowance": 0.0}
    beat(store, "h1", age=0.7, interval=0.4)  # overdue (> 1.5 x 0.4 s), stale after 1.2 s
    plain = run_module(kvm_heartbeat, common)
    assert plain["ended"] == "window" and plain["overdue"] == ["h1"] and plain["suspects"] == []
    beat(store, "h1", age=0.7, interval=0.4)
    graced = run_module(kvm_heartbeat, dict(common, overdue_grace_s=10))
    assert graced["ended"] == "suspects" and graced["suspects"] == ["h1"] and graced["elapsed"] < 5
    beat(store, "h1", age=0.7, interval=0.4)
    short = run_module(kvm_heartbeat, dict(common, overdue_grace_s=0.1))
    assert short["ended"] == "window" and short["suspects"] == [] and short["elapsed"] < 1.0


def test_the_second_disk_sample_is_taken_when_the_suspect_is_found_if_the_first_is_old_enough(run_module, store, tmp_path):
    """Issue 17: h1's disks were sampled when it missed a beat (0.5 s before it turns stale); with activity_window_s
    under that, the watch samples them again the moment it finds h1 and gives the verdict, so the probe play need not
    wait for vm_disk_activity. A window the first sample has not covered yet gives none."""
    disk = tmp_path / "h1-disk.img"
    disk.write_bytes(b"x")
    vm = dict(record("h1")["vms"][0], disks=[str(disk)])
    common = {"store_path": store, "watch": 5, "poll": 0.05, "skew_allowance": 0.0}
    for window, writes, expected in ((0.2, False, "idle"), (0.2, True, "active"), (5.0, False, None)):
        beat(store, "h1", age=0.7, interval=0.4, vms=[vm])  # overdue (> 1.5 x 0.4 s) now, stale after 1.2 s
        writer = threading.Timer(0.25, disk.write_bytes, (b"xy" * 10,)) if writes else None
        if writer:
            writer.start()
        result = run_module(kvm_heartbeat, dict(common, activity_window_s=window))
        if writer:
            writer.join()
        assert result["suspects"] == ["h1"], result
        verdict = result["early"]["h1"]["disk_activity"]
        assert (verdict or {}).get("activity") == expected, (window, writes, verdict)
        disk.write_bytes(b"x")


# --------------------------------------------------------------------------------------------------- watch handover


def handover_dir(store, cluster="default"):
    return os.path.join(store, "kvmha", "handover", cluster)


def test_a_check_continues_the_judgement_of_the_previous_check_on_this_observer(run_module, store):
    beat(store, "h1")
    beat(store, "h2")
    first = run_module(kvm_heartbeat, {"store_path": store})
    assert first["handover"] == {"loaded": 0, "written": True} and len(os.listdir(handover_dir(store))) == 1
    time.sleep(0.6)
    # Without the handover a record 0.6 s old is 0 s old (less the 2 s allowance); with it, as old as first saw it.
    plain = run_module(kvm_heartbeat, {"store_path": store, "handover": False})
    assert plain["hosts"]["h1"]["age"] == 0.0 and plain["handover"] == {"loaded": 0, "written": False}
    second = run_module(kvm_heartbeat, {"store_path": store})
    assert second["handover"] == {"loaded": 2, "written": True}
    assert 0.6 <= second["hosts"]["h1"]["age"] < 2.0 and second["suspects"] == []


def test_a_check_of_some_hosts_keeps_what_the_handover_knew_of_the_others(run_module, store):
    beat(store, "h1")
    beat(store, "h2")
    run_module(kvm_heartbeat, {"store_path": store})
    assert run_module(kvm_heartbeat, {"store_path": store, "hosts": ["h2"]})["handover"]["loaded"] == 2
    time.sleep(0.3)
    assert run_module(kvm_heartbeat, {"store_path": store, "hosts": ["h1"]})["hosts"]["h1"]["age"] >= 0.3


def test_a_host_that_beat_between_two_checks_starts_again_from_its_record(run_module, store):
    beat(store, "h1", age=1.5)
    run_module(kvm_heartbeat, {"store_path": store})
    beat(store, "h1", seq=2, age=1.0)
    assert run_module(kvm_heartbeat, {"store_path": store})["hosts"]["h1"]["age"] == 0.0


@pytest.mark.parametrize("content", [b"{not json", b"[" * 100000, b'{"version": 1}', b"\x00" * 4096])
def test_a_bad_handover_is_a_warning_and_the_check_goes_on(run_module, store, content):
    run_module(kvm_heartbeat, {"store_path": store})
    (path,) = [os.path.join(handover_dir(store), name) for name in os.listdir(handover_dir(store))]
    with open(path, "wb") as f:
        f.write(content)
    beat(store, "h1", age=7.0)  # 5 s by the estimate: fresh, whatever the handover said
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert result["fresh"] == ["h1"] and result["handover"] == {"loaded": 0, "written": True}
    assert any("watch handover" in str(w) and "is ignored" in str(w) for w in result["warnings"])


def test_another_observers_handover_is_never_read(run_module, store):
    beat(store, "h1", age=5.0)
    os.makedirs(handover_dir(store))
    other = {"version": 1, "cluster": "default", "observer": "other-boot", "written": time.monotonic(),
             "hosts": {"h1": ["b-h1", 1, 0.0]}}
    with open(os.path.join(handover_dir(store), "other-boot.json"), "w", encoding="utf-8") as f:
        json.dump(other, f)
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert result["handover"]["loaded"] == 0 and result["hosts"]["h1"]["age"] == pytest.approx(3.0, abs=0.5)
    assert "other-boot.json" in os.listdir(handover_dir(store))  # another controller's: left alone


def test_check_mode_and_handover_false_write_no_handover(run_module, store):
    beat(store, "h1")
    assert run_module(kvm_heartbeat, {"store_path": store}, check_mode=True)["handover"]["written"] is False
    assert run_module(kvm_heartbeat, {"store_path": store, "handover": False})["handover"]["written"] is False
    assert not os.path.exists(os.path.join(store, "kvmha", "handover"))


def test_a_handover_that_cannot_be_written_is_a_warning_only(run_module, store):
    beat(store, "h1")
    with open(os.path.join(store, "kvmha", "handover"), "w", encoding="utf-8") as f:
        f.write("in the way")
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert "failed" not in result and result["fresh"] == ["h1"] and result["handover"]["written"] is False
    assert any("watch handover not written" in str(w) for w in result["warnings"])


def test_a_cluster_name_that_cannot_be_a_file_name_only_costs_the_handover(run_module, store):
    beat(store, "h1")
    result = run_module(kvm_heartbeat, {"store_path": store, "cluster": "prod a"})
    assert result["fresh"] == ["h1"] and result["handover"] == {"loaded": 0, "written": False}
    assert any("no watch handover: invalid cluster name" in str(w) for w in result["warnings"])
