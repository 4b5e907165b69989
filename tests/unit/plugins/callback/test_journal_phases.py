# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The journal follows the watchdog's phases, not module names (issue 18): every kvmha.cluster task of the playbooks
reaches the handler meant for it through the phase the playbook tags it with (``kvmha_journal`` on its play, block,
import or itself), and a result read in one phase is never taken for another's - the remediate phase's heartbeat
check is not the run's observation."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml
from journal_fakes import WATCHDOG_PHASES, FakePlay, FakeResult, FakeStats
from test_journal import events, heartbeat_result

from ansible_collections.kvmha.cluster.plugins.plugin_utils._journal import FAILURES, HANDLERS, PHASE_VAR, handler_for, phase_of

PLAYBOOKS = pathlib.Path(__file__).resolve().parents[4] / "playbooks"
IMPORTS = ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks", "import_tasks", "include_tasks")


def _tasks(entries, directory, chain, play_phase, where):
    """(file, task name, module, phase) of every kvmha.cluster task under ``entries``, following imports."""
    for task in entries or []:
        own = dict(chain, **(task.get("vars") or {}))
        for section in ("block", "rescue", "always"):
            yield from _tasks(task.get(section), directory, own, play_phase, where)
        imported = next((task[k] for k in IMPORTS if k in task), None)
        if imported is not None:
            path = directory / imported
            yield from _tasks(yaml.safe_load(path.read_text()), path.parent, own, play_phase, path.name)
        for key in task:
            if key.startswith("kvmha.cluster."):
                yield where, task.get("name"), key[len("kvmha.cluster."):], phase_of(own, play_phase)


def playbook_tasks(name):
    for play in yaml.safe_load((PLAYBOOKS / name).read_text()):
        yield from _tasks(play.get("tasks"), PLAYBOOKS, {}, (play.get("vars") or {}).get(PHASE_VAR), name)


# (file, module) -> (handler of its results, handler of its failures); every kvmha.cluster task of the watchdog and of
# the playbooks the journal reads is listed, so that a task moved out of its phase - or a new one - shows here.
EXPECTED = {
    ("cluster.yml", "host_investigate"): ("", ""),  # the policy check: no decision
    ("observe.yml", "kvm_heartbeat"): ("observation", ""),
    ("watch_rest.yml", "kvm_heartbeat"): ("observation", ""),
    ("watch_on.yml", "cluster_lease"): ("lease", ""),
    ("converge.yml", "cluster_lease"): ("lease", ""),
    ("converge.yml", "vm_evacuate"): ("recovery", "recovery"),
    ("reconcile.yml", "vm_reconcile"): ("reconciliation", ""),
    ("reconcile.yml", "host_mark"): ("mark", ""),
    ("suspects.yml", "cluster_lease"): ("lease", ""),
    ("watchdog.yml", "cluster_lease"): ("lease", "probe"),  # the lease taken beside the watch: not taken, suspects.yml tries again
    ("power_read.yml", "ipmi_power"): ("", "probe"),  # a status read (probe play, or beside the watch): evidence, recorded with the decision
    ("probe.yml", "vm_disk_activity"): ("", "probe"),
    ("probe.yml", "mgmt_probe"): ("", "probe"),  # the SSH banner: unanswered is an ok result; a failure is unknown evidence
    ("probe.yml", "neighbor_ping"): ("", "probe"),
    ("watchdog.yml", "neighbor_ping"): ("", "probe"),  # the neighbours' ping while the watch goes on: unknown evidence when it fails
    ("decide.yml", "host_investigate"): ("decision", ""),
    ("observe_only.yml", "vm_evacuate"): ("", "plan"),  # observe mode's plan, in check mode: no recovery, no failure
    ("fence.yml", "ipmi_power"): ("fence", "fence"),
    ("fence.yml", "host_fence"): ("fence", "fence"),  # a host with fence levels
    ("power_read.yml", "host_fence"): ("", "probe"),  # its status read through the levels (check mode)
    ("recover.yml", "host_fence"): ("", "probe"),  # the power read again through the levels before the first start
    ("recover.yml", "vm_evacuate"): ("recovery", "recovery"),
    ("recover.yml", "host_mark"): ("mark", ""),  # an operator's confirm-off used up
    ("remediate.yml", "kvm_heartbeat"): ("remediation_check", "remediation"),
    ("finish.yml", "cluster_lease"): ("lease", ""),
    ("abandon.yml", "vm_evacuate"): ("abandon", ""),
    ("abandon.yml", "cluster_lease"): ("lease", ""),
    ("unfence.yml", "vm_reconcile"): ("reconciliation", ""),
    ("unfence.yml", "ipmi_power"): ("", ""),  # the power-on of a returning host: its failure fails the run
    ("fence_readiness.yml", "ipmi_power"): ("", "probe"),
    ("fence_readiness.yml", "host_fence"): ("", "probe"),  # each fence device read, as the BMC's
    ("fence_readiness.yml", "host_investigate"): ("", "probe"),  # the policy check: a failure is that host's bad_policy
}


def every_task():
    for name in ("watchdog.yml", "abandon.yml", "unfence.yml", "fence_readiness.yml"):
        for where, task, module, phase in playbook_tasks(name):
            if module not in ("host_mark_info", "cluster_lease", "host_mark") or (where, module) in EXPECTED:
                yield where, task, module, phase


def test_every_task_reaches_its_handler_through_its_phase():
    seen = set()
    for where, task, module, phase in every_task():
        assert (where, module) in EXPECTED, "%s: %r (%s) is not in EXPECTED: which handler should read it?" % (where, task, module)
        got = (handler_for(HANDLERS, phase, module), handler_for(FAILURES, phase, module))
        assert got == EXPECTED[(where, module)], "%s: %r (%s) in phase %r" % (where, task, module, phase)
        seen.add((where, module))
    assert seen == set(EXPECTED), "listed but not found in the playbooks: %s" % sorted(set(EXPECTED) - seen)


def test_the_recorded_results_carry_the_phases_of_the_watchdog():
    phases = {}
    for _where, _task, module, phase in playbook_tasks("watchdog.yml"):
        phases.setdefault(module, set()).add(phase)
    for module, phase in WATCHDOG_PHASES.items():
        assert phase in phases[module], (module, phases[module])


def test_the_phase_of_a_task_wins_over_its_plays():
    assert phase_of({PHASE_VAR: "remediate"}, "observe") == "remediate"
    assert phase_of({}, "fence") == "fence"
    assert phase_of({PHASE_VAR: "{{ templated }}"}, None) == "" and phase_of({}, "no such phase") == ""


# ------------------------------------------------------------------------------------ results read by their phase


def test_the_remediate_phases_heartbeat_check_is_not_the_runs_observation(watching, tmp_path):
    callback = watching
    observation = json.loads(json.dumps(callback.observation))
    check = heartbeat_result(suspects=[], fresh=["hv2"], hosts={"hv2": {"status": "fresh", "age": 0.2}})
    callback.v2_runner_on_ok(FakeResult("ansible.builtin.systemd_service", "hv2", {"changed": True}, phase="remediate"))
    callback.v2_runner_on_ok(FakeResult("kvm_heartbeat", "hv2", check, phase="remediate"))
    callback.v2_playbook_on_stats(FakeStats())
    assert callback.observation == observation
    kinds = [e["event"] for e in events(tmp_path)]
    assert kinds.count("run_start") == 1 and kinds.count("recovery_work") == 1 and kinds.count("suspect") == 1
    assert ("remediation_verified", "hv2", "fresh") in [(e["event"], e.get("host"), e.get("status")) for e in events(tmp_path)]
    prom = (tmp_path / "kvmha.prom").read_text()
    assert 'kvmha_vms_owed{cluster="prod-a",host="hv3",state="owed"} 1' in prom, "the check emptied the owed gauges"
    record = json.loads(next((tmp_path / "incidents").glob("*-hv2.json")).read_text())
    assert record["run"]["observation"]["suspects"] == ["hv2"]
    assert [(a["action"], a["ok"]) for a in record["actions"]] == [("remediate", True)]


def test_the_read_of_the_writers_state_before_a_restart_is_no_remediation(watching):
    callback = watching
    callback.v2_runner_on_ok(FakeResult("ansible.builtin.systemd_service", "hv2", {"changed": False, "status": {}},
                                        {"kvmha_journal": "remediate"}))
    assert callback.incidents["hv2"].actions == []


@pytest.mark.parametrize("phase", [None, "probe", "decide", "recover"])
def test_a_heartbeat_read_outside_the_observe_phase_is_no_observation(callback, tmp_path, phase):
    callback.v2_runner_on_ok(FakeResult("kvm_heartbeat", "hv1", heartbeat_result(suspects=["hv2"]),
                                        phase=phase))
    callback.v2_playbook_on_stats(FakeStats())
    assert callback.observation is None and not (tmp_path / "kvmha.prom").exists()


def test_a_phase_set_on_the_play_reaches_its_tasks(watching):
    callback = watching
    callback.v2_playbook_on_play_start(FakePlay({"kvmha_journal": "fence"}))
    callback.v2_runner_on_ok(FakeResult("ipmi_power", "hv2", {"state": "off", "fenced": True}, phase=None))
    assert [(a["action"], a["ok"]) for a in callback.incidents["hv2"].actions] == [("fence", True)]
    callback.v2_playbook_on_play_start(FakePlay({"kvmha_journal": "probe"}))
    callback.v2_runner_on_ok(FakeResult("ipmi_power", "hv2", {"state": "off", "fenced": True}, phase=None))
    assert len(callback.incidents["hv2"].actions) == 1, "an ipmi_power result of the probe phase is evidence, not a fence"


def test_a_failed_probe_is_unknown_evidence_and_a_failed_power_on_a_failure(callback, tmp_path):
    callback.v2_playbook_on_play_start(FakePlay({"kvmha_journal": "probe"}))
    callback.v2_runner_on_failed(FakeResult("ipmi_power", "hv2", {"msg": "BMC timeout", "state": "status"}, phase=None))
    callback.v2_playbook_on_play_start(FakePlay())
    callback.v2_runner_on_failed(FakeResult("ipmi_power", "hv2", {"msg": "BMC refused", "state": "on"}, phase=None))
    assert [(e["event"], e["msg"]) for e in events(tmp_path)] == [("probe_failed", "BMC timeout"), ("task_failed", "BMC refused")]
    assert callback.failures == ["hv2: ipmi_power failed: BMC refused"]


def test_a_failed_task_of_another_collection_is_not_journalled_unless_its_phase_says_so(callback, tmp_path):
    callback.v2_runner_on_failed(FakeResult("ansible.builtin.fail", "hv1", {"msg": "observer not OK"}, {"kvmha_journal": "observe"}))
    callback.v2_runner_on_unreachable(FakeResult("ansible.builtin.ping", "hv2", {"msg": "ssh: connect refused"}))
    assert not (tmp_path / "events.jsonl").exists() and callback.failures == []
    callback.v2_runner_on_unreachable(FakeResult("ansible.builtin.systemd_service", "hv2", {"msg": "ssh: connect refused"},
                                                 {"kvmha_journal": "remediate"}))
    assert [(a["action"], a["ok"], a["detail"]) for a in callback.incidents["hv2"].actions] == [
        ("remediate", False, "ssh: connect refused")]


def test_a_fence_that_failed_before_it_ran_is_a_failed_fence(watching):
    """Before phases, an ipmi_power failure without a state (its arguments refused) passed for a failed probe."""
    callback = watching
    callback.v2_runner_on_failed(FakeResult("ipmi_power", "hv2", {"msg": "missing required arguments: password"}))
    assert [(a["action"], a["ok"]) for a in callback.incidents["hv2"].actions] == [("fence", False)]
    assert callback.failures == ["hv2: fence failed (missing required arguments: password)"]


def test_observe_modes_restart_plan_is_neither_a_recovery_nor_a_failure(watching, tmp_path):
    callback = watching
    planned = {"changed": False, "vms": [{"name": "g1", "failed_host": "hv2", "status": "planned", "host": "hv1"}], "owed": {}}
    callback.v2_runner_on_ok(FakeResult("vm_evacuate", "hv1", planned, phase="decide"))
    callback.v2_runner_on_failed(FakeResult("vm_evacuate", "hv1", {"msg": "no live target"}, phase="decide"))
    assert callback.incidents["hv2"].vms == [] and callback.failures == []
    assert [(e["event"], e["msg"]) for e in events(tmp_path) if e["event"].startswith("plan_")] == [("plan_failed", "no live target")]
