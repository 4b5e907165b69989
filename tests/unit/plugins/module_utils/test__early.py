# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The early evidence of a watch (the probes of a host that has missed a beat) and its resume."""

from __future__ import annotations

import json
import threading
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils._early import EarlyEvidence, read_resume, resume_state
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput


@pytest.mark.parametrize("resume, words", [
    ([], "must be the resume"),
    ({"early": []}, "early must be a dict"),
    ({"early": {"since": {}, "judge": {}}}, "only since, baselines and identities"),
    ({"early": {"since": {"h1": 1.0}, "baselines": {"h1": {}}, "identities": {"h1": "b"}}}, "not [boot_id, seq]"),
])
def test_a_malformed_resume_is_refused(resume, words):
    with pytest.raises(InvalidInput) as err:
        EarlyEvidence({}).take_over(read_resume(resume))
    assert words in str(err.value)


def test_the_early_evidence_goes_over_whole_and_bad_evidence_is_refused():
    early = EarlyEvidence({}, wall=lambda: 100.0)
    early.note(["h1"], {"h1": {"boot_id": "b", "seq": 4}}, lambda record: {"sampled_at": 100.0, "disks": {}})
    handed = json.loads(json.dumps(resume_state(early)))
    later = EarlyEvidence({})
    later.take_over(read_resume(handed))
    assert later.since == {"h1": 100.0} and later.baselines["h1"]["sampled_at"] == 100.0
    assert later.identities == {"h1": ("b", 4)}
    for bad in ({"since": {"h1": "x"}, "baselines": {"h1": {}}}, {"since": {"h1": 1.0}, "baselines": {}},
                {"since": {"h/1": 1.0}, "baselines": {"h/1": {}}}):
        with pytest.raises(InvalidInput):
            EarlyEvidence({}).take_over(bad)


def test_a_host_that_beats_again_is_forgotten_and_sampled_afresh_when_late_again():
    times = iter([1.0, 2.0])
    early = EarlyEvidence({}, wall=lambda: next(times))
    beat_4, beat_5 = {"h1": {"boot_id": "b", "seq": 4}}, {"h1": {"boot_id": "b", "seq": 5}}
    early.note(["h1"], beat_4, lambda record: {"sampled_at": record["seq"]})
    early.note([], beat_4, lambda record: {})  # not late for one look (an estimate), but no new beat: kept
    assert early.since == {"h1": 1.0} and early.baselines == {"h1": {"sampled_at": 4}}
    early.note([], beat_5, lambda record: {})  # a new beat: forgotten
    assert early.since == {} and early.baselines == {} and early.identities == {}
    early.note(["h1"], beat_5, lambda record: {"sampled_at": record["seq"]})
    assert early.since == {"h1": 2.0} and early.baselines == {"h1": {"sampled_at": 5}}


@pytest.mark.parametrize("targets, words", [
    ({"h1": {}}, "needs an address"),
    ({"h1": {"address": "198.51.100.1", "port": "ssh"}}, "must be an integer"),
    ({"h1": {"address": "198.51.100.1", "port": 70000}}, "port"),
    ({"h/1": {"address": "198.51.100.1"}}, "'/'"),
])
def test_bad_management_targets_are_refused(targets, words):
    with pytest.raises(InvalidInput) as err:
        EarlyEvidence(targets)
    assert words in str(err.value)


def test_each_target_is_asked_once_in_the_background_with_the_given_settings():
    asked = []

    def fake_probe(address, port, attempts, deadline):
        asked.append((address, port, attempts, deadline))
        return {"target": address, "port": port, "reachable": False, "answer": "timeout"}

    early = EarlyEvidence({"h1": {"address": "198.51.100.11", "port": "2222"}}, attempts=2, deadline=0.5,
                          probe_one=fake_probe, wall=lambda: 7.0)
    early.start()
    for _attempt in range(200):
        if "h1" in early.mgmt:
            break
        time.sleep(0.01)
    assert asked == [("198.51.100.11", 2222, 2, 0.5)]
    assert early.mgmt["h1"]["any_reachable"] is False and early.mgmt["h1"]["asked_at"] == 7.0
    early.note(["h1"], {}, lambda record: {})
    assert early.report(["h1", "h2"]) == {"h1": {"since": 7.0, "mgmt": early.mgmt["h1"], "disk_activity": None}}


def test_a_suspects_answer_still_coming_is_waited_for_within_the_probes_time():
    """settle(): the answer of a suspect's SSH server that is still being asked is waited for - the probe play would
    otherwise ask again and wait longer - but never past the probe's own time (attempts x deadline), and only for the
    hosts given."""
    release = threading.Event()

    def slow_probe(address, port, attempts, deadline):
        release.wait(10)
        return {"target": address, "port": port, "reachable": False, "answer": "timeout"}

    targets = {"h1": {"address": "198.51.100.11"}, "h2": {"address": "198.51.100.12"}}
    early = EarlyEvidence(targets, attempts=2, deadline=0.1, probe_one=slow_probe)
    early.start()
    threading.Timer(0.05, release.set).start()
    early.settle(["h1"])
    assert "h1" in early.mgmt
    early.settle(["h9"])  # a host that was not asked: nothing to wait for

    hung = threading.Event()
    stuck = EarlyEvidence({"h3": {"address": "198.51.100.13"}}, attempts=2, deadline=0.1,
                          probe_one=lambda address, *rest: hung.wait(10) and {"target": address, "reachable": False, "answer": "timeout"})
    stuck.start()
    clock = iter([0.0, 100.0])  # the bound (2 x 0.1 + 0.5 s) has passed by the time h3's turn comes
    started = time.monotonic()
    stuck.settle(["h3"], clock=lambda: next(clock))
    assert stuck.mgmt == {} and time.monotonic() - started < 1.0
    hung.set()


def test_the_second_disk_sample_judges_only_the_hosts_whose_first_is_old_enough(tmp_path):
    disk = tmp_path / "g1.img"
    disk.write_bytes(b"x")
    now = [100.0]
    early = EarlyEvidence({}, wall=lambda: now[0])
    first = {"h1": {"sampled_at": 97.0, "disks": {str(disk): "unsampled"}}, "h2": {"sampled_at": 99.0, "disks": {}}}
    early.note(["h1", "h2"], {}, lambda record: None)
    early.baselines.update(first)
    early.baselines["h1"]["disks"] = {str(disk): [1, disk.stat().st_mtime_ns, disk.stat().st_blocks]}
    verdicts = early.disk_activity(["h1", "h2", "h3"], 2.5)
    assert list(verdicts) == ["h1"] and verdicts["h1"]["activity"] == "idle"  # h2: sampled 1 s ago; h3: never late
    assert verdicts["h1"]["reason"] == "0 of 1 disks changed in 3.0 s"
    disk.write_bytes(b"xy")  # the VM still writes: active
    assert early.disk_activity(["h1"], 2.5)["h1"]["changed"] == [str(disk)]
    disk.unlink()  # a disk that cannot be sampled any more: unknown, never idle
    assert early.disk_activity(["h1"], 2.5)["h1"]["activity"] == "unknown"
    assert early.report(["h1"], {"h1": {"activity": "idle"}})["h1"]["disk_activity"] == {"activity": "idle"}
    assert early.disk_activity([], 2.5) == {}
