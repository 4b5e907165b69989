# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/tasks/decide.yml run for real on made-up probe results: the evidence it assembles and what it passes to the
storm guard (issue 14 items 4 and 5). Nothing is fenced here: decide.yml only decides and groups the hosts."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy

ROOT = pathlib.Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
MEMBERS = ["hv1", "hv2", "hv3", "hv4"]
STATUS_OK_ON = {"changed": False, "state": "status", "action": "none", "powerstate": {"before": "on", "after": "on"},
                "fenced": False, "confirmations": 0, "elapsed": 0.05}
# off, a failed read, off: two consecutive "off" reads never came within the timeout, so the probe failed
STATUS_FAILED_OFF = {"changed": False, "state": "status", "action": "none", "powerstate": {"before": "off", "after": "off"},
                     "fenced": False, "confirmations": 1, "elapsed": 2.0, "failed": True, "error_kind": "confirm_timeout",
                     "msg": "127.0.0.1:623: the chassis read off, but 2 consecutive reads saying off did not come"}
STATUS_OK_OFF = dict(STATUS_OK_ON, powerstate={"before": "off", "after": "off"}, fenced=True, confirmations=2)


NO_ROUTE = {"kvmha_mgmt": {"unreachable": True, "msg": "no route"}}


def decide(tmp_path, bmc: dict, fenced: list, suspects=("hv1",), before=None, expect_rc=0, mode="armed", levels=None,
           mgmt=None, early=None) -> dict:
    """Run decide.yml as the watchdog does after the probes, with `bmc` as every suspect's status probe result.

    ``early`` is the watch's early evidence (kvm_heartbeat); a suspect with a disk verdict there was not sampled again.

    The run holds the cluster lease of its store, as the watchdog does; ``before(store)`` changes the store first.
    """
    store = str(tmp_path / "store")
    lease = _marks.acquire_lease(store, "a", "watchdog/test", 30.0)["lease"]
    if before is not None:
        before(store)
    hosts = {host: {"ansible_host": "127.0.0.1", "kvmha_private_ip": "127.0.0.%d" % (i + 2), "kvmha_cluster": "a"}
             for i, host in enumerate(MEMBERS)}
    for host in suspects:
        hosts[host].update(kvmha_bmc=bmc, kvmha_activity={"hosts": {host: {"activity": "idle"}}}, **(mgmt or NO_ROUTE))
        if (early or {}).get(host, {}).get("disk_activity"):
            hosts[host].update(kvmha_activity={"skipped": True, "changed": False})
        if levels is not None:  # a host with fence levels: probe.yml read them (host_fence, check mode), not the BMC
            hosts[host].update(kvmha_fence_levels=[["bmc"], ["pdu_a", "pdu_b"]], kvmha_levels_probe=levels,
                               kvmha_bmc={"skipped": True, "changed": False})
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"kvm_hosts": {"hosts": hosts}},
                                             "hosts": {"localhost": {"ansible_connection": "local",
                                                                     "ansible_python_interpreter": sys.executable}}}}))
    observation = {
        "observer_ok": True, "observer_reason": "", "suspects": list(suspects), "fresh": [h for h in MEMBERS if h not in suspects],
        "fenced": {host: {"owner": "watchdog/1", "data": {}} for host in fenced},
        "early": early or {},
        "suspect_marks": _marks.suspect_marks(store, list(suspects)),  # as kvm_heartbeat reads them when the watch ends
        "hosts": {host: {"status": "stale", "reason": "seq 5 unchanged", "age": 60.0, "seq": 5, "boot_id": "b",
                         "self_fence": {"armed": False, "deadline_s": 60.0}, "vms": []} for host in suspects},
    }
    out = tmp_path / "out.json"
    playbook = tmp_path / "decide.yml"
    playbook.write_text(json.dumps([{
        "name": "Decide as the watchdog does", "hosts": "localhost", "gather_facts": False,
        "vars": {"kvmha_observation": observation, "kvmha_cluster_name": "a", "kvmha_members": MEMBERS, "kvmha_store": store,
                 "kvmha_owner": "watchdog/test", "kvmha_lease": {"acquired": True, "lease": lease},
                 "kvmha_policy_effective": effective_policy({"lease_ttl_s": 30, "mode": mode, "placement_strategy": "spread",
                                                             "libvirt_timeout_s": 5}),
                 "kvmha_live_targets": []},
        "tasks": [
            {"name": "Decide", "ansible.builtin.import_tasks": str(ROOT / "playbooks" / "tasks" / "decide.yml")},
            {"name": "Keep the result", "ansible.builtin.copy": {
                "dest": str(out), "mode": "0644",
                "content": "{{ {'evidence': kvmha_evidence, 'decision': kvmha_decision, 'groups': groups} | to_json }}"}},
        ]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    env.pop("KVMHA_METRICS_FILE", None)
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook)], capture_output=True, text=True,
                          env=env, cwd=str(tmp_path), check=False, timeout=120)
    assert done.returncode == expect_rc, (done.stdout + done.stderr)[-4000:]
    if expect_rc:
        return {"output": done.stdout + done.stderr}
    result = json.loads(out.read_text())
    result["output"] = done.stdout + done.stderr
    return result


def test_a_power_state_is_taken_only_from_a_probe_that_succeeded(tmp_path):
    """Item 5: off, error, off (not confirmed) used to be "off" - DOWN, and the VMs recovered."""
    result = decide(tmp_path, STATUS_FAILED_OFF, [])
    assert result["evidence"][0]["bmc"] == {"power": "unknown", "error": "confirm_timeout", "probe": "failed", "read": "off"}
    decision = result["decision"]["decisions"]["hv1"]
    assert decision["verdict"] == "UNKNOWN" and result["decision"]["actions"]["recover"] == []


@pytest.mark.parametrize("bmc, power, probe, verdict", [
    (STATUS_OK_OFF, "off", "ok", "DOWN"),
    (STATUS_OK_ON, "on", "ok", "SUSPECT"),
    ({"skipped": True, "changed": False}, "unknown", "not run", "UNKNOWN"),
    ({}, "unknown", "not run", "UNKNOWN"),
])
def test_the_evidence_says_which_probe_the_power_state_comes_from(tmp_path, bmc, power, probe, verdict):
    result = decide(tmp_path, bmc, [])
    assert result["evidence"][0]["bmc"]["power"] == power and result["evidence"][0]["bmc"]["probe"] == probe
    assert result["decision"]["decisions"]["hv1"]["verdict"] == verdict


def test_the_storm_guard_counts_only_this_clusters_fenced_marks(tmp_path):
    """Item 4: three marks of hosts outside the cluster held back the fence of hv1 (budget 2 of 4, 3 "fenced")."""
    result = decide(tmp_path, STATUS_OK_ON, ["old-hv7", "b-hv1", "b-hv2"])
    assert result["decision"]["actions"]["fence"] == ["hv1"] and result["decision"]["storm_guard"] == {"a": False}
    assert result["decision"]["foreign_fenced"] == {"a": ["b-hv1", "b-hv2", "old-hv7"]}
    assert "not counted by its storm guard: b-hv1, b-hv2, old-hv7" in result["output"]


def test_this_clusters_own_marks_still_count(tmp_path):
    result = decide(tmp_path, STATUS_OK_ON, ["hv3", "hv4", "old-hv7"])
    assert result["decision"]["actions"]["fence"] == [] and result["decision"]["storm_guard"] == {"a": True}


# ------------------------------------------------------------------------- issue 14 item 1: maintenance at decide time


def test_the_watchs_verdict_on_the_disks_is_the_evidence_when_the_probe_play_did_not_sample(tmp_path):
    """Issue 17: kvm_heartbeat took the suspect's second disk sample when it found it; disks still written to keep a
    host with its power on and no other path from being fenced (the partitioned host of CLOUDSTACK-3535)."""
    early = {"hv1": {"since": 1.0, "mgmt": None, "disk_activity": {"activity": "active", "disks": 1, "changed": ["/d"]}},
             "hv2": {"since": 1.0, "mgmt": None, "disk_activity": {"activity": "idle", "disks": 1, "changed": []}}}
    result = decide(tmp_path, STATUS_OK_ON, [], suspects=("hv1", "hv2"), early=early)
    evidence = {e["host"]: e for e in result["evidence"]}
    assert evidence["hv1"]["disk_activity"] == "active" and evidence["hv2"]["disk_activity"] == "idle"
    assert "hv1" not in result["decision"]["actions"]["fence"] and "hv2" in result["decision"]["actions"]["fence"]


def test_a_maintenance_mark_written_during_the_watch_is_rule_r1_at_decide_time(tmp_path):
    """The watch read no mark when it started; the operator's mark came later, and the watch read it again as it ended
    (suspect_marks): R1, nothing is done."""
    def enter(store):
        _marks.set_mark(store, _marks.MAINTENANCE, "hv1", "alice", {"reason": "firmware"}, ttl=3600)
    result = decide(tmp_path, STATUS_OK_OFF, [], before=enter)
    assert result["evidence"][0]["maintenance"]["owner"] == "alice"
    assert result["evidence"][0]["maintenance"]["reason"] == "firmware"
    decision = result["decision"]["decisions"]["hv1"]
    assert (decision["verdict"], decision["rule"]) == ("MAINTENANCE", "R1")
    assert result["decision"]["actions"]["fence"] == [] and result["decision"]["actions"]["recover"] == []


def test_an_unreadable_maintenance_mark_is_read_as_maintenance(tmp_path):
    def corrupt(store):
        _marks.set_mark(store, _marks.MAINTENANCE, "hv1", "alice", {"reason": "firmware"}, ttl=3600)
        directory = os.path.join(store, "kvmha", "maintenance", "hv1")
        for name in os.listdir(directory):
            with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
                f.write("{not json")
    result = decide(tmp_path, STATUS_OK_OFF, [], before=corrupt)
    assert result["evidence"][0]["maintenance"]["owner"] == "unknown"
    assert result["decision"]["decisions"]["hv1"]["rule"] == "R1"


def test_without_a_mark_the_evidence_has_no_maintenance(tmp_path):
    result = decide(tmp_path, STATUS_OK_OFF, [])
    assert result["evidence"][0]["maintenance"] is None
    assert result["decision"]["decisions"]["hv1"]["verdict"] == "DOWN" and result["decision"]["actions"]["recover"] == ["hv1"]


# ------------------------------------------------------------------------------- issue 16: observe-only burn-in


def test_observe_mode_says_what_it_would_do_and_groups_nothing_for_action(tmp_path):
    result = decide(tmp_path, STATUS_OK_ON, [], mode="observe")
    assert result["decision"]["actions"]["fence"] == ["hv1"]  # the decision is the armed one ...
    assert "kvmha_fence" not in result["groups"] and "kvmha_recover" not in result["groups"]  # ... nothing acts on it
    assert "observe mode: would fence hv1 (R8, SUSPECT)" in result["output"]
    lease = _marks.documents(str(tmp_path / "store"), _marks.LEASE).read("a")
    assert lease.generation == 1  # deciding writes nothing: the lease is the one the run took


def test_armed_mode_groups_the_hosts_for_action(tmp_path):
    result = decide(tmp_path, STATUS_OK_ON, [])
    assert result["groups"]["kvmha_fence"] == ["hv1"] and "observe mode" not in result["output"]


# ---------------------------------------------------------------------- issue 15: an operator's confirm-off

BMC_UNREACHABLE = {"changed": False, "state": "status", "failed": True, "error_kind": "unreachable", "msg": "no answer",
                   "powerstate": {"before": "unknown", "after": "unknown"}, "fenced": False}


def confirm(seq=5, boot_id="b", ttl=3600.0):
    """confirm_off.yml's mark, given against the heartbeat the watch sees (seq 5 of boot "b") unless told otherwise."""
    def write(store):
        _marks.confirm_off(store, "hv1", "alice", {"reason": "cords pulled", "seq": seq, "boot_id": boot_id}, ttl=ttl)
    return write


def test_a_confirm_off_recovers_a_host_whose_bmc_cannot_be_asked(tmp_path):
    result = decide(tmp_path, BMC_UNREACHABLE, [], before=confirm())
    assert result["evidence"][0]["confirmed_off"] == {"owner": "alice", "reason": "cords pulled", "seq": 5, "boot_id": "b",
                                                      "generation": 1}
    decision = result["decision"]["decisions"]["hv1"]
    assert (decision["rule"], decision["verdict"], decision["action"]) == ("R9a", "DOWN_CONFIRMED", "recover")
    assert result["groups"]["kvmha_recover"] == ["hv1"]


@pytest.mark.parametrize("write, why", [
    (None, "no confirmation"),
    (confirm(seq=4), "the host wrote a heartbeat after it"),
    (confirm(boot_id="a"), "given in another boot"),
])
def test_without_a_confirm_off_that_holds_the_host_stays_unknown(tmp_path, write, why):
    result = decide(tmp_path, BMC_UNREACHABLE, [], before=write)
    decision = result["decision"]["decisions"]["hv1"]
    assert (decision["verdict"], decision["action"]) == ("UNKNOWN", "alert"), why
    assert "kvmha_recover" not in result["groups"]


def test_an_expired_confirm_off_is_not_evidence(tmp_path):
    def expired(store):
        confirm(ttl=60.0)(store)
        directory = os.path.join(store, "kvmha", "confirmed_off", "hv1")
        then = os.stat(directory).st_mtime - 120  # the store wrote it two minutes ago: past its ttl and the 5 s skew
        for name in os.listdir(directory):
            os.utime(os.path.join(directory, name), (then, then))
    result = decide(tmp_path, BMC_UNREACHABLE, [], before=expired)
    assert result["evidence"][0]["confirmed_off"] is None
    assert result["decision"]["decisions"]["hv1"]["verdict"] == "UNKNOWN"


def test_a_bmc_that_says_on_outweighs_a_confirm_off(tmp_path):
    result = decide(tmp_path, STATUS_OK_ON, [], before=confirm())
    decision = result["decision"]["decisions"]["hv1"]
    assert (decision["rule"], decision["action"]) == ("R8", "fence")  # fenced first; recovered only once confirmed off


# ---------------------------------------------------------------------- issue 15: a host with fence levels

LEVEL_1_DEAD = {"level": 1, "devices": ["bmc"], "outcome": "failed",
                "attempts": [{"device": "bmc", "fenced": False, "error_kind": "unreachable", "msg": "no answer"}]}


@pytest.mark.parametrize("levels, power, error, verdict", [
    # The BMC died with the host, the PDUs still feed it: fence (R8), through the levels - level 2 can do it.
    ({"failed": True, "error_kind": "not_fenced", "fenced": False, "power": "on", "levels": [
        LEVEL_1_DEAD, {"level": 2, "devices": ["pdu_a", "pdu_b"], "outcome": "failed", "attempts": [
            {"device": "pdu_a", "fenced": False, "changed": True, "powerstate": {"before": "on", "after": "off"}}]}]},
     "on", None, "SUSPECT"),
    # Both outlets confirmed off already: DOWN (R5).
    ({"changed": False, "fenced": True, "level": 2, "power": "off",
      "levels": [LEVEL_1_DEAD, {"level": 2, "devices": ["pdu_a", "pdu_b"], "outcome": "fenced", "attempts": []}]},
     "off", None, "DOWN"),
    # No device answers: UNKNOWN (R10), as a dead BMC today.
    ({"failed": True, "error_kind": "not_fenced", "fenced": False, "power": "unknown", "levels": [LEVEL_1_DEAD]},
     "unknown", "not_fenced", "UNKNOWN"),
    # The read did not run (or failed before it asked anything).
    ({"skipped": True, "changed": False}, "unknown", "not_run", "UNKNOWN"),
    ({"failed": True, "error_kind": "invalid_input", "msg": "fence level 2 names unknown devices: pdu_c"},
     "unknown", "invalid_input", "UNKNOWN"),
])
def test_a_host_with_fence_levels_is_judged_on_what_its_levels_read(tmp_path, levels, power, error, verdict):
    result = decide(tmp_path, {}, [], levels=levels)
    bmc = result["evidence"][0]["bmc"]
    assert (bmc["power"], bmc["error"], bmc["probe"]) == (power, error, "levels")
    assert bmc["levels"] == [record["outcome"] for record in levels.get("levels", [])]
    assert result["decision"]["decisions"]["hv1"]["verdict"] == verdict


def test_a_host_without_fence_levels_keeps_the_bmc_evidence_as_it_was(tmp_path):
    result = decide(tmp_path, STATUS_OK_ON, [])
    assert result["evidence"][0]["bmc"] == {"power": "on", "error": None, "probe": "ok", "read": "on"}


# ------------------------------------------------------------------------- issue 17: the management probe


def _banner(answer):
    probes = [{"target": "127.0.0.1", "port": 22, "reachable": answer == "banner", "answer": answer}]
    return {"changed": False, "probes": probes, "any_reachable": answer == "banner"}


@pytest.mark.parametrize("mgmt, reachable", [
    ({"kvmha_mgmt_banner": _banner("timeout"), "kvmha_mgmt": {"skipped": True, "changed": False}}, False),
    ({"kvmha_mgmt_banner": _banner("refused"), "kvmha_mgmt": {"skipped": True, "changed": False}}, False),
    ({"kvmha_mgmt_banner": _banner("banner"), "kvmha_mgmt": {"ping": "pong", "changed": False}}, True),
    # the banner came but the login timed out: unknown, as a login that timed out always was
    ({"kvmha_mgmt_banner": _banner("banner"), "kvmha_mgmt": {"failed": True, "msg": "timed out"}}, None),
    # the banner probe could not run (or is switched off): the login decides, as before it existed
    ({"kvmha_mgmt_banner": {"failed": True, "msg": "bad"}, "kvmha_mgmt": {"ping": "pong"}}, True),
    ({"kvmha_mgmt_banner": {"skipped": True}, "kvmha_mgmt": {"unreachable": True, "msg": "no route"}}, False),
    (NO_ROUTE, False),
])
def test_only_a_login_proves_management_and_an_unanswered_banner_is_false(tmp_path, mgmt, reachable):
    result = decide(tmp_path, STATUS_OK_ON, [], mgmt=mgmt)
    assert result["evidence"][0]["mgmt"] == {"reachable": reachable}
    verdict = result["decision"]["decisions"]["hv1"]["verdict"]
    assert verdict == ("ALIVE_WRITER_FAULT" if reachable else "SUSPECT")
