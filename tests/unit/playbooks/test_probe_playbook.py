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


def run_probe_play(tmp_path, hosts: dict, play_vars: dict, kept: str, row: str, suspects=("hv1",), live=()) -> tuple:
    """probe_plan.yml then probe.yml, run as the watchdog runs them on the inventory ``hosts`` (name: vars; the group
    kvmha_late is ``play_vars["late"]``): ``suspects`` found by the watch, ``live`` the live targets (the neighbours).
    Returns the template ``kept``, rendered on host ``row`` after the probes and read back as JSON, and the output."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = tmp_path / "inventory.json"
    late = play_vars.pop("late", [])
    inventory.write_text(json.dumps({"all": {"hosts": dict(hosts, localhost=local),
                                             "children": {"kvmha_late": {"hosts": dict.fromkeys(late, {})}}}}))
    out = tmp_path / "out.json"
    play_vars = dict(play_vars, kvmha_observation=dict(play_vars.get("kvmha_observation", {}), suspects=list(suspects)))
    playbook = tmp_path / "probe.yml"
    playbook.write_text(json.dumps([{
        "name": "Plan the probes as the watchdog does", "hosts": "localhost", "gather_facts": False,
        "vars": dict(play_vars, kvmha_lease={"acquired": True}, kvmha_live_targets=list(live)),
        "tasks": [{"name": "Plan", "ansible.builtin.import_tasks": str(ROOT / "playbooks" / "tasks" / "probe_plan.yml")}],
    }, {
        "name": "Probe as the watchdog does", "hosts": "kvmha_probers", "gather_facts": False, "strategy": "ansible.builtin.free",
        "vars": play_vars,
        "tasks": [{"name": "Probe", "ansible.builtin.import_tasks": str(ROOT / "playbooks" / "tasks" / "probe.yml")}],
    }, {
        "name": "Keep the result", "hosts": row, "gather_facts": False,
        "tasks": [{"name": "Keep the result", "delegate_to": "localhost",
                   "ansible.builtin.copy": {"dest": str(out), "mode": "0644", "content": kept}}],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    env.pop("KVMHA_METRICS_FILE", None)
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook)], capture_output=True, text=True,
                          env=env, cwd=str(tmp_path), check=False, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads(out.read_text()), done.stdout + done.stderr


def probe(tmp_path, port: int, probe_timeout_s: float = 0.4, suspect_facts: dict | None = None, late: bool = False,
          early: dict | None = None, kept: str = "{{ {'banner': kvmha_mgmt_banner, 'login': kvmha_mgmt} | to_json }}") -> dict:
    """The suspect's row of probe.yml on hv1 (local): its SSH server on 127.0.0.1:``port``, its BMC at 127.0.0.1:9
    (nothing answers there). ``suspect_facts`` are its facts from the play beside the watch (kvmha_bmc), ``late``
    puts it in the group of hosts read there, ``early`` is the watch's early evidence of it."""
    store = tmp_path / "store"
    store.mkdir()
    suspect = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_host": "127.0.0.1",
               "ansible_port": port, "kvmha_bmc_address": "127.0.0.1", "kvmha_bmc_port": 9, "kvmha_bmc_username": "u",
               "kvmha_bmc_password": "p", **(suspect_facts or {})}
    play_vars = {"kvmha_store": str(store), "kvmha_observer": "localhost", "late": ["hv1"] if late else [],
                 "kvmha_observation": {"disk_samples": {}, "early": {"hv1": early} if early else {}},
                 "kvmha_policy_effective": effective_policy({"probe_timeout_s": probe_timeout_s, "activity_window_s": 0.1, "store_timeout_s": 5})}
    result, output = run_probe_play(tmp_path, {"hv1": suspect}, play_vars, kept, "hv1")
    result["output"] = output
    return result


POWER_ON = {"changed": False, "powerstate": {"before": "on", "after": "on"}, "marker": 1}
POWER_OFF = {"changed": False, "powerstate": {"before": "off", "after": "off"}, "fenced": False, "marker": 1}
POWER_FAILED = {"failed": True, "msg": "BMC did not answer", "error_kind": "timeout", "marker": 1}


def test_a_bmc_that_read_on_while_the_watch_went_on_is_not_read_again(tmp_path):
    """Issue 17: the late host's power was read beside the watch and said "on": that read is the evidence (a host
    switched off since is fenced all the same, and its fence confirms the off). Its BMC here would not answer."""
    silent = Server(None)
    try:
        result = probe(tmp_path, silent.port, suspect_facts={"kvmha_bmc": POWER_ON}, late=True, kept="{{ kvmha_bmc | to_json }}")
    finally:
        silent.stop()
    assert result["marker"] == 1 and result["powerstate"]["after"] == "on"


def test_any_other_early_power_read_is_read_again(tmp_path):
    """An early "off" (the fence must confirm it), a failed early read, or a read of a host that was not late in this
    run: the BMC is asked again (here it does not answer, so the read fails)."""
    silent = Server(None)
    try:
        for number, (facts, late) in enumerate((({"kvmha_bmc": POWER_OFF}, True), ({"kvmha_bmc": POWER_FAILED}, True),
                                                ({"kvmha_bmc": POWER_ON}, False), ({}, False))):
            run_dir = tmp_path / str(number)
            run_dir.mkdir()
            result = probe(run_dir, silent.port, suspect_facts=facts, late=late, kept="{{ kvmha_bmc | to_json }}")
            assert "marker" not in result and result["failed"] is True, (facts, late, result)
    finally:
        silent.stop()


def test_the_watchs_verdict_on_the_disks_is_not_sampled_again(tmp_path):
    """kvm_heartbeat took the second disk sample when it found the suspect: vm_disk_activity does not run for it."""
    verdict = {"activity": "idle", "disks": 0, "changed": [], "unreadable": {}, "reason": "watch"}
    silent = Server(None)
    try:
        results = []
        for name, disk_activity in (("taken", verdict), ("none", None)):
            (tmp_path / name).mkdir()
            results.append(probe(tmp_path / name, silent.port, early={"since": 1.0, "mgmt": None, "disk_activity": disk_activity},
                                 kept="{{ kvmha_activity | to_json }}"))
    finally:
        silent.stop()
    skipped, sampled = results
    assert skipped.get("skipped") is True
    assert sampled["hosts"]["hv1"]["activity"] == "none"  # no record: no HA VM disks, sampled by the probe play


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


def neighbour_probe(tmp_path, early: dict | None, others=(), on_the_late_row: bool = False) -> dict:
    """The neighbours' row of probe.yml on one neighbour (nb, local) pinging 127.0.0.1, the private address of the
    suspect sx - whose own probes the watch took (its BMC read "on", its SSH server silent, its disks sampled), so it
    has nothing left to ask. ``others`` are more suspects, each with nothing left to ask either (their private
    addresses 127.0.0.2, ...). ``early`` is the result of nb's ping while the watch went on (the play of watchdog.yml
    that watch_late.yml prepares), or None when it did not ping then; ``on_the_late_row``: nb is the observing host,
    whose ping ran on sx's row (its own row was the watch)."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    suspects = ["sx", *others]
    hosts = dict((name, dict(local, kvmha_private_ip="127.0.0.%d" % (i + 1), kvmha_bmc=POWER_ON)) for i, name in enumerate(suspects))
    hosts["nb"] = dict(local, kvmha_early_ping_row="sx") if on_the_late_row else dict(local)
    if early is not None:
        hosts["sx" if on_the_late_row else "nb"]["kvmha_early_ping"] = early
    taken = {"since": 1.0, "mgmt": {"any_reachable": False, "probes": []}, "disk_activity": {"activity": "idle"}}
    play_vars = {"late": suspects, "kvmha_observation": {"disk_samples": {}, "early": dict.fromkeys(suspects, taken)},
                 "kvmha_policy_effective": effective_policy({"probe_timeout_s": 1})}
    result, output = run_probe_play(tmp_path, hosts, play_vars, "{{ kvmha_ping | to_json }}", "nb", suspects=suspects, live=["nb"])
    assert "[sx]" not in output.split("PLAY [Probe as the watchdog does]")[1], output  # the watch asked sx everything
    return result


def pinged(address: str, reachable: bool) -> dict:
    return {"target": address, "reachable": reachable, "sent": 2, "received": 2 if reachable else 0}


def test_a_neighbours_ping_during_the_watch_that_got_no_reply_is_its_answer(tmp_path):
    """Issue 17: the neighbour pinged the late host while the watch went on and no reply came: that silence is its
    answer, and the probe play does not wait the probe timeout for it again (127.0.0.1 would answer a new ping)."""
    early = {"changed": False, "pings": [pinged("127.0.0.1", False)]}
    assert neighbour_probe(tmp_path, early) == early


def test_the_observing_hosts_ping_during_the_watch_is_found_on_the_late_hosts_row(tmp_path):
    """Issue 17: the observing host's own row was the watch, so its ping ran on the late host's row (delegated to it):
    its silence there is its answer too, found through kvmha_early_ping_row - not its own (unset) kvmha_early_ping."""
    early = {"changed": False, "pings": [pinged("127.0.0.1", False)]}
    assert neighbour_probe(tmp_path, early, on_the_late_row=True) == early
    (tmp_path / "reply").mkdir()
    result = neighbour_probe(tmp_path / "reply", {"changed": False, "pings": [pinged("127.0.0.1", True)], "marker": 1}, on_the_late_row=True)
    assert "marker" not in result and result["pings"][0]["reachable"] is True, result


def test_a_neighbours_ping_during_the_watch_that_got_a_reply_is_asked_again(tmp_path):
    """A reply proves only that the host was up when it was pinged, before it turned suspect: the neighbour pings again."""
    result = neighbour_probe(tmp_path, {"changed": False, "pings": [pinged("127.0.0.1", True)], "marker": 1})
    assert "marker" not in result and result["pings"][0]["target"] == "127.0.0.1" and result["pings"][0]["reachable"] is True


def test_a_ping_during_the_watch_that_did_not_cover_every_suspect_is_not_taken(tmp_path):
    """Another host turned suspect since: the neighbour pings all the suspects now."""
    result = neighbour_probe(tmp_path, {"changed": False, "pings": [pinged("127.0.0.1", False)]}, others=["sy"])
    assert [p["target"] for p in result["pings"]] == ["127.0.0.1", "127.0.0.2"], result
    assert result["pings"][0]["reachable"] is True, result


def test_a_failed_or_unreachable_ping_during_the_watch_leaves_the_neighbour_to_ping(tmp_path):
    """A ping that failed, or a neighbour not reached then, is no evidence: the neighbour pings as without it."""
    for number, early in enumerate(({"failed": True, "msg": "ping: not found", "pings": [pinged("127.0.0.1", False)]},
                                    {"unreachable": True, "msg": "Failed to connect", "changed": False})):
        run_dir = tmp_path / str(number)
        run_dir.mkdir()
        result = neighbour_probe(run_dir, early)
        assert result["pings"][0]["reachable"] is True, (early, result)


def test_a_neighbour_that_did_not_ping_during_the_watch_pings(tmp_path):
    assert neighbour_probe(tmp_path, None)["pings"][0]["reachable"] is True
