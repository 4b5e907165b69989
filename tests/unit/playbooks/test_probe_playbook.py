# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/tasks/probe.yml run for real on one suspect whose management address is a server on 127.0.0.1 (issue 17):
a host whose SSH server does not answer costs the banner probe's deadline and an ok result, not a failed login."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy
from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.loopback_tcp import Server

ROOT = pathlib.Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")


def probe(tmp_path, port: int, probe_timeout_s: float = 0.4) -> dict:
    store = tmp_path / "store"
    store.mkdir()
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    suspect = dict(local, ansible_host="127.0.0.1", ansible_port=port, kvmha_bmc_address="127.0.0.1",
                   kvmha_bmc_port=9, kvmha_bmc_username="u", kvmha_bmc_password="p")
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {
        "children": {"kvmha_suspects": {"hosts": {"hv1": suspect}}, "kvmha_probers": {"hosts": {"hv1": {}}},
                     "kvmha_neighbors": {"hosts": {}}},
        "hosts": {"localhost": local}}}))
    out = tmp_path / "out.json"
    playbook = tmp_path / "probe.yml"
    playbook.write_text(json.dumps([{
        "name": "Probe as the watchdog does", "hosts": "kvmha_probers", "gather_facts": False, "strategy": "ansible.builtin.free",
        "vars": {"kvmha_store": str(store), "kvmha_observer": "localhost", "kvmha_ping_targets": [],
                 "kvmha_observation": {"disk_samples": {}},
                 "kvmha_policy_effective": effective_policy(
                     {"probe_timeout_s": probe_timeout_s, "activity_window_s": 0.1, "store_timeout_s": 5})},
        "tasks": [
            {"name": "Probe", "ansible.builtin.import_tasks": str(ROOT / "playbooks" / "tasks" / "probe.yml")},
            {"name": "Keep the result", "delegate_to": "localhost", "ansible.builtin.copy": {
                "dest": str(out), "mode": "0644", "content": "{{ {'banner': kvmha_mgmt_banner, 'login': kvmha_mgmt} | to_json }}"}},
        ]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    env.pop("KVMHA_METRICS_FILE", None)
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook)], capture_output=True, text=True,
                          env=env, cwd=str(tmp_path), check=False, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    result = json.loads(out.read_text())
    result["output"] = done.stdout + done.stderr
    return result


def test_a_silent_management_address_is_an_ok_unanswered_probe_and_no_login(tmp_path):
    silent = Server(None)
    try:
        result = probe(tmp_path, silent.port)
    finally:
        silent.stop()
    banner = result["banner"]
    assert not banner.get("failed") and banner["any_reachable"] is False
    assert banner["probes"][0]["answer"] == "timeout" and banner["probes"][0]["attempts"] == 2
    assert banner["probes"][0]["elapsed"] < 1.0  # two attempts of probe_timeout_s / 2 = 0.2 s each
    assert result["login"].get("skipped") is True
    output = result["output"]
    assert "Ask the suspect's SSH server" in output and "fatal:" not in output.split("Ask the suspect's SSH server")[1].split("TASK")[0]


def test_an_answering_ssh_server_gets_the_login_that_proves_management(tmp_path):
    ssh = Server(b"SSH-2.0-OpenSSH_9.2\r\n")
    try:
        result = probe(tmp_path, ssh.port)
    finally:
        ssh.stop()
    assert result["banner"]["any_reachable"] is True and result["login"]["ping"] == "pong"


LOST = "lost"  # a background ping was noted, its result file is gone


def neighbour_probe(tmp_path, early: dict | str | None, early_targets=("127.0.0.1",), ping_targets=("127.0.0.1",)) -> dict:
    """The neighbours' row of probe.yml on one neighbour (nb, local) pinging 127.0.0.1, the address of the suspect.
    ``early`` is the result its background ping of the first missed beat left (watch_late.yml) - the file Ansible's
    async wrapper writes when the job ends -, LOST, or None when no such ping was started."""
    async_dir = tmp_path / "async"
    async_dir.mkdir()
    neighbour = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "kvmha_ping_targets": list(ping_targets)}
    if early is not None:
        if early != LOST:
            (async_dir / "j1.1").write_text(json.dumps(early))
        neighbour["kvmha_early_ping"] = {"jid": "j1.1", "targets": list(early_targets)}
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {
        "children": {"kvmha_suspects": {"hosts": {}}, "kvmha_probers": {"hosts": {"nb": {}}}, "kvmha_neighbors": {"hosts": {"nb": neighbour}}},
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    out = tmp_path / "out.json"
    playbook = tmp_path / "probe.yml"
    playbook.write_text(json.dumps([{
        "name": "Probe as the watchdog does", "hosts": "kvmha_probers", "gather_facts": False, "strategy": "ansible.builtin.free",
        "vars": {"kvmha_policy_effective": effective_policy({"probe_timeout_s": 1})},
        "tasks": [
            {"name": "Probe", "ansible.builtin.import_tasks": str(ROOT / "playbooks" / "tasks" / "probe.yml")},
            {"name": "Keep the result", "delegate_to": "localhost", "ansible.builtin.copy": {
                "dest": str(out), "mode": "0644", "content": "{{ {'ping': kvmha_ping, 'early': kvmha_early_ping_result} | to_json }}"}},
        ]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1", ANSIBLE_ASYNC_DIR=str(async_dir))
    env.pop("KVMHA_METRICS_FILE", None)
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook)], capture_output=True, text=True,
                          env=env, cwd=str(tmp_path), check=False, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads(out.read_text())


def pinged(address: str, reachable: bool) -> dict:
    return {"target": address, "reachable": reachable, "sent": 2, "received": 2 if reachable else 0}


def test_a_neighbours_early_ping_that_got_no_reply_is_its_answer(tmp_path):
    """Issue 17: the neighbour pinged the late host at its first missed beat and no reply came: that silence is its
    answer, and the probe play does not wait the probe timeout for it again."""
    result = neighbour_probe(tmp_path, {"changed": False, "pings": [pinged("127.0.0.1", False)]})
    assert result["ping"]["pings"] == [pinged("127.0.0.1", False)], result
    assert result["early"]["finished"] is True


def test_a_neighbours_early_ping_that_got_a_reply_is_asked_again(tmp_path):
    """A reply proves only that the host was up when it was pinged, before it turned suspect: the neighbour pings again
    (127.0.0.1 answers)."""
    result = neighbour_probe(tmp_path, {"changed": False, "pings": [pinged("127.0.0.1", True)]})
    assert "finished" not in result["ping"] and result["ping"]["pings"][0]["target"] == "127.0.0.1", result
    assert result["ping"]["pings"][0]["reachable"] is True


def test_an_early_ping_that_did_not_cover_every_suspect_is_not_collected(tmp_path):
    """Another host turned suspect since the background ping started: the neighbour pings all the suspects now."""
    result = neighbour_probe(tmp_path, {"changed": False, "pings": [pinged("127.0.0.2", False)]}, early_targets=["127.0.0.2"])
    assert result["early"].get("skipped") is True, result
    assert [p["target"] for p in result["ping"]["pings"]] == ["127.0.0.1"]


def test_a_failed_early_ping_leaves_the_neighbour_to_ping(tmp_path):
    """A background job that failed is no evidence: the neighbour pings as without it."""
    result = neighbour_probe(tmp_path, {"failed": True, "msg": "ping: not found"})
    assert result["ping"]["pings"][0]["reachable"] is True, result


def test_a_lost_early_ping_leaves_the_neighbour_to_ping(tmp_path):
    """The background job's result is gone (the neighbour rebooted, someone cleaned up): async_status fails, and
    the neighbour pings as without it."""
    result = neighbour_probe(tmp_path, LOST)
    assert result["early"].get("failed") is True and result["ping"]["pings"][0]["reachable"] is True, result


def test_a_neighbour_without_an_early_ping_pings(tmp_path):
    result = neighbour_probe(tmp_path, None)
    assert result["early"].get("skipped") is True and result["ping"]["pings"][0]["reachable"] is True, result
