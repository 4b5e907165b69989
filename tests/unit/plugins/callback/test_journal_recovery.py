# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The journal of a recovery that converges (issue 13): an event per owed-state transition, the interrupted run's
record, the final state of a fenced host, the owed gauges and the attempts counter - from recorded task results."""

from __future__ import annotations

import json

from journal_fakes import FakeResult, FakeStats
from test_journal import events, heartbeat_result

STATES = {"owed": 0, "claimed": 0, "started": 0, "verified": 0, "unplaced": 0, "failed": 0, "abandoned": 0, "moved": 0}


def evacuation(owed, transitions=(), vms=(), interrupted=(), opened=(), attempts=0):
    return {"changed": bool(transitions), "owner": "watchdog/2", "failed_hosts": list(opened), "opened": list(opened),
            "closed": [], "incidents": {}, "unreadable": [], "interrupted": list(interrupted), "plan": [],
            "vms": list(vms), "counts": {}, "owed": owed, "transitions": list(transitions), "attempts": attempts,
            "targets": [], "replanned": []}


def vm(name, status, state, host="hv2", running=None):
    return {"uuid": "u-" + name, "name": name, "failed_host": "hv1", "status": status, "state": state, "host": host,
            "reason": "" if status == "started" else "no host has room", "timestamps": {"running": running} if running else {}}


def incident_records(tmp_path):
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "incidents").glob("*.json"))]


def test_a_fence_and_a_full_recovery_end_as_down_fenced_and_recovered(callback, tmp_path):
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.kvm_heartbeat", "hv1", heartbeat_result(suspects=["hv1"])))
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.ipmi_power", "hv1", {"state": "off", "fenced": True}))
    done = dict(STATES, verified=1, started=1)
    transitions = [{"host": "hv1", "vm": "g1", "uuid": "u-g1", "from": "owed", "to": "verified", "target": "hv2", "reason": "",
                    "attempts": 1},
                   {"host": "hv1", "vm": "g2", "uuid": "u-g2", "from": "owed", "to": "started", "target": "hv2", "reason": "",
                    "attempts": 1}]
    result = evacuation({"hv1": done}, transitions, [vm("g1", "started", "verified", running=100.0),
                                                     vm("g2", "started", "started", running=101.0)], opened=["hv1"], attempts=2)
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.vm_evacuate", "hv1", result))
    callback.v2_playbook_on_stats(FakeStats())
    changes = [e for e in events(tmp_path) if e["event"] == "vm_transition"]
    assert [(e["vm"], e["previous"], e["state"]) for e in changes] == [("g1", "owed", "verified"), ("g2", "owed", "started")]
    record = incident_records(tmp_path)[0]
    assert record["final_state"] == "DOWN (fenced)" and record["recovery"]["outcome"] == "recovered"
    assert [a["action"] for a in record["actions"]] == ["fence", "recover"] and record["actions"][1]["ok"]
    prom = (tmp_path / "kvmha.prom").read_text()
    assert 'kvmha_vms_owed{cluster="prod-a",host="hv1",state="verified"} 1' in prom
    assert 'kvmha_vm_recovery_attempts_total{cluster="prod-a"} 2' in prom


def test_an_unplaced_vm_makes_a_partial_recovery_and_a_failed_action(callback, tmp_path):
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.kvm_heartbeat", "hv1", heartbeat_result()))
    result = evacuation({"hv1": dict(STATES, unplaced=1)},
                        [{"host": "hv1", "vm": "g1", "uuid": "u-g1", "from": "owed", "to": "unplaced", "target": None,
                          "reason": "no host has room", "attempts": 1}],
                        [vm("g1", "unplaced", "unplaced", host=None)], attempts=1)
    callback.v2_runner_on_failed(FakeResult("kvmha.cluster.vm_evacuate", "hv1", dict(result, failed=True, msg="recovery incomplete")))
    callback.v2_playbook_on_stats(FakeStats())
    record = incident_records(tmp_path)[0]
    assert record["recovery"]["outcome"] == "partial" and not record["actions"][0]["ok"]
    assert "1 unplaced" in record["outcome"]
    assert 'kvmha_vms_owed{cluster="prod-a",host="hv1",state="unplaced"} 1' in (tmp_path / "kvmha.prom").read_text()
    assert callback.run["ok"] is False


def test_the_interrupted_run_gets_its_record(callback, tmp_path):
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.kvm_heartbeat", "hv1", heartbeat_result(
        owed={"hv1": {"due": True, "next_try": None, "states": dict(STATES, owed=2)}}, work=["hv1: 2 owed VM(s) due"])))
    gone = {"host": "hv1", "owner": "watchdog/1", "started": 99.0, "vms": {"g1": "claimed", "g2": "owed"}}
    result = evacuation({"hv1": dict(STATES, verified=2)},
                        [{"host": "hv1", "vm": "g1", "uuid": "u-g1", "from": "claimed", "to": "verified", "target": "hv2",
                          "reason": "", "attempts": 1}], [vm("g1", "running", "verified")], interrupted=[gone])
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.vm_evacuate", "hv1", result))
    callback.v2_playbook_on_stats(FakeStats())
    assert [e for e in events(tmp_path) if e["event"] == "interrupted_run"][0]["owner"] == "watchdog/1"
    record = incident_records(tmp_path)[0]
    assert record["interrupted"] == gone and record["outcome"].startswith("finished the work of the interrupted run watchdog/1")


def test_the_owed_gauges_come_from_the_observation_when_nothing_was_worked(callback, tmp_path):
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.kvm_heartbeat", "hv1", heartbeat_result(
        owed={"hv3": {"due": False, "next_try": 500.0, "states": dict(STATES, unplaced=1, verified=1)}})))
    callback.v2_playbook_on_stats(FakeStats())
    prom = (tmp_path / "kvmha.prom").read_text()
    assert 'kvmha_vms_owed{cluster="prod-a",host="hv3",state="unplaced"} 1' in prom
    assert incident_records(tmp_path) == [] if (tmp_path / "incidents").exists() else True


def test_abandon_is_an_audit_event_with_the_operator(callback, tmp_path):
    result = {"changed": True, "owner": "abandon/jdoe", "closed": ["hv1"], "unreadable": [], "owed": {},
              "transitions": [{"host": "hv1", "vm": "g1", "uuid": "u-g1", "from": "unplaced", "to": "abandoned", "target": None,
                               "reason": "abandoned by jdoe: restored", "attempts": 3, "operator": "jdoe"}]}
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.vm_evacuate", "localhost", result, {"kvmha_journal": "abandon"}))
    [event] = [e for e in events(tmp_path) if e["event"] == "vm_abandoned"]
    assert event["operator"] == "jdoe" and event["vm"] == "g1" and event["previous"] == "unplaced"
