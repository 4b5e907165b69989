# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The watchdog playbook's choice of cluster (playbooks/tasks/cluster.yml), run for real: a store in a temporary
directory with a fresh record for every member of the cluster watched, and hosts that cannot be reached (SSH to a
closed loopback port, no BMC), so that even a broken playbook could act on nothing. A wrong member list shows as
suspects in the journal's metrics (members without a record)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import build_record, encode_record, record_path, write_atomic

ROOT = pathlib.Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
CLUSTERS = {"a": ["hv1", "hv2"], "b": ["hv3", "hv4", "hv5"]}
QUICK = {"overdue_grace_s": 0.5}  # a late host (600 s beats) would keep the run watching 10 s past its window


def site(tmp_path, clusters, beating):
    """An inventory of `clusters` ({name or None: hosts}) on one store, with fresh records of the `beating` hosts."""
    store = tmp_path / "store"
    (store / "kvmha" / "hosts").mkdir(parents=True)
    now = time.time()
    for host in beating:
        # A 600 s interval: fresh for the whole test, however long a loaded machine takes to start the playbook
        # (with 2 s they turned stale after 8 s and the observer saw "every host dead").
        record = build_record(host, "boot-" + host, 1, now, 600.0, {"armed": False, "deadline_s": 60},
                              {"mem_free_mib": 4096, "vcpus_free": 8}, [])
        write_atomic(record_path(str(store), host), encode_record(record))
    hosts = {}
    for cluster, members in clusters.items():
        for host in members:
            hosts[host] = {"ansible_host": "127.0.0.1", "ansible_port": 9, "kvmha_private_ip": "127.0.0.1",
                           "kvmha_bmc_address": "127.0.0.1", "kvmha_bmc_username": "x", "kvmha_bmc_password": "x",
                           "kvmha_libvirt_uri": "test:///default"}
            if cluster is not None:
                hosts[host]["kvmha_cluster"] = cluster
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {
        "vars": {"ansible_connection": "ssh", "ansible_python_interpreter": sys.executable, "kvmha_store_path": str(store)},
        "children": {"kvm_hosts": {"hosts": hosts}}}}))
    return inventory


def watchdog(tmp_path, inventory, env_path=None, playbook=ROOT / "playbooks" / "watchdog.yml", limit=None, **extra):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    if env_path is not None:
        env["PATH"] = env_path
    env.pop("KVMHA_METRICS_FILE", None)
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook), *(["--limit", limit] if limit else []),
                           "-e", json.dumps(dict({"kvmha_watch_s": 0}, **extra))],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), check=False, timeout=120)
    done.output = done.stdout + done.stderr
    return done


def metrics(tmp_path) -> str:
    return (tmp_path / "journal" / "kvmha.prom").read_text()


def journal_events(tmp_path) -> list:
    with open(tmp_path / "journal" / "events.jsonl", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def test_one_cluster_is_watched_by_default(tmp_path):
    done = watchdog(tmp_path, site(tmp_path, {"a": CLUSTERS["a"]}, CLUSTERS["a"]))
    assert done.returncode == 0, done.output[-4000:]
    assert 'kvmha_suspects{cluster="a"} 0' in metrics(tmp_path)
    # Issue 17: nothing to watch on for and no suspect - the play that would do either is skipped whole
    assert "Take the cluster lease - only the watchdog" not in done.output, done.output[-4000:]


def test_a_host_back_after_a_fence_is_reconciled_then_the_cluster_watched_on(tmp_path):
    """Recovery work (here hv2, fenced and beating again) is done first, then the watch goes on: the watch-on play that a
    healthy run skips runs after that work."""
    from ansible_collections.kvmha.cluster.plugins.module_utils import _marks  # noqa: PLC0415

    inventory = site(tmp_path, {"a": CLUSTERS["a"]}, CLUSTERS["a"])
    _marks.set_mark(str(tmp_path / "store"), _marks.FENCED, "hv2", "watchdog/test", {"verdict": "DOWN", "vms": []})
    done = watchdog(tmp_path, inventory)
    assert done.returncode == 0, done.output[-4000:]
    assert ("returning", "hv2") in [(e["event"], e.get("host")) for e in journal_events(tmp_path)]
    assert "TASK [Watch the heartbeats for the rest of the window]" in done.output, done.output[-4000:]
    assert _marks.read_marks(str(tmp_path / "store"), _marks.FENCED)["active"] == {}, "reconciled: nothing of hv2 was kept"


def test_a_late_member_has_its_management_asked_while_the_watch_goes_on(tmp_path):
    """Issue 17: hv2 has missed a beat (older than 1.5 intervals, not yet 3): the first watch ends there, its SSH
    server (a closed loopback port here) is asked in the background by the watch that goes on, and nothing is done
    to it - it is not a suspect."""
    inventory = site(tmp_path, {"a": CLUSTERS["a"]}, CLUSTERS["a"])
    record = record_path(str(tmp_path / "store"), "hv2")
    late = time.time() - 1000  # a 600 s interval: overdue after 900 s, stale after 1800 s (2 s of skew allowance)
    os.utime(record, (late, late))
    done = watchdog(tmp_path, inventory, kvmha_policy=QUICK)
    assert done.returncode == 0, done.output[-4000:]
    assert "TASK [Look up the late hosts' management addresses]" in done.output, done.output[-4000:]
    assert "TASK [Watch the heartbeats for the rest of the window]" in done.output, done.output[-4000:]
    assert 'kvmha_suspects{cluster="a"} 0' in metrics(tmp_path)
    lease = done.output.split("TASK [Take the cluster lease - only the watchdog that holds it investigates and acts]")[1].split("TASK [")[0]
    assert lease.strip("* \n") == "skipping: [hv1]", lease  # not a suspect: nothing probed ...
    # ... and the lease that hv2's row took while the watch went on, for a suspect to find it held, is given back
    events = [e["event"] for e in journal_events(tmp_path)]
    assert events.count("lease_acquired") == 1 and events.index("lease_acquired") < events.index("lease_released"), events
    from ansible_collections.kvmha.cluster.plugins.module_utils import _marks  # noqa: PLC0415
    assert _marks.documents(str(tmp_path / "store"), _marks.LEASE).read("a").released


def beside_the_watch(tmp_path, clusters: dict, late: str, pingers=()) -> str:
    """Run the watchdog with ``late`` at its first missed beat; the ``pingers`` are reached locally (the others over
    SSH to a closed port). Returns the output of the play beside the watch."""
    members = [host for hosts in clusters.values() for host in hosts]
    inventory = site(tmp_path, clusters, members)
    data = json.loads(inventory.read_text())
    for pinger in pingers:
        data["all"]["children"]["kvm_hosts"]["hosts"][pinger]["ansible_connection"] = "local"
    inventory.write_text(json.dumps(data))
    record = record_path(str(tmp_path / "store"), late)
    then = time.time() - 1000  # a 600 s interval: overdue after 900 s, stale after 1800 s
    os.utime(record, (then, then))
    done = watchdog(tmp_path, inventory, kvmha_policy=QUICK)
    assert done.returncode == 0, done.output[-4000:]
    return done.output.split("PLAY [Watch on while the late hosts' BMCs are read and their neighbours ping them]")[1].split("PLAY [")[0]


def test_a_late_members_neighbour_pings_it_while_the_watch_goes_on(tmp_path):
    """Issue 17: at hv4's first missed beat the watch goes on in one row of a play (on hv3, the observing host) while
    hv4's live neighbour hv5 (reached locally here) pings hv4's private address in another, for the probe play to take;
    hv4 is only late, not stale, so nothing else is done. The observing host is a neighbour too, but its row is the
    watch: its ping runs on hv4's row, delegated to it."""
    play = beside_the_watch(tmp_path, {"b": CLUSTERS["b"]}, late="hv4", pingers=("hv3", "hv5"))
    assert ran(play, "Ping the late hosts' private addresses from a neighbour") == ["hv4", "hv5"], play
    assert "ok: [hv4 -> hv3(127.0.0.1)]" in play, play
    assert ran(play, "Take the cluster lease while the watch goes on") == ["hv5"], play  # hv4's row has the longer work
    assert "TASK [Watch the heartbeats for the rest of the window]" in play, play
    # hv4's own row reads its power state (its BMC, nothing on 127.0.0.1:623, does not answer: unknown, ignored)
    assert bmc_reads(play) == ["hv4"], play
    assert 'kvmha_suspects{cluster="b"} 0' in metrics(tmp_path)


def test_the_observing_host_pings_a_late_member_only_when_the_other_neighbours_are_too_few(tmp_path):
    """With four members, hv4 late, its two neighbours besides the observing host hv3 ping it, each in its own row:
    hv4's row carries no ping for hv3 and takes the lease after its power read."""
    play = beside_the_watch(tmp_path, {"c": ["hv3", "hv4", "hv5", "hv6"]}, late="hv4", pingers=("hv3", "hv5", "hv6"))
    assert ran(play, "Ping the late hosts' private addresses from a neighbour") == ["hv5", "hv6"], play
    assert "hv4 -> hv3" not in play, play
    assert ran(play, "Take the cluster lease while the watch goes on") == ["hv4"], play


def results(output: str) -> list:
    """(task, result line) in the order the output shows them: the free strategy prints a task's banner again
    whenever a row's result follows another task's, so every result line is under its own task's banner."""
    pairs, task = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK ["):].rsplit("]", 1)[0]
        elif line.startswith(("ok: [", "fatal: [", "changed: [")):
            pairs.append((task, line))
    return pairs


def ran(output: str, task: str) -> list:
    """The hosts the output shows ``task`` ran for, under any of its banners."""
    return sorted({line.split("[")[1].split(" ")[0].rstrip("]") for shown, line in results(output) if shown == task})


def bmc_reads(output: str) -> list:
    """The hosts whose BMC the output shows read."""
    return ran(output, "Read the host's power state from its BMC, over the out-of-band network")


def test_an_observing_host_that_is_late_reads_its_own_bmc_then_watches_on(tmp_path):
    """Issue 17: hv3 observes and is itself late: its row of the play beside the watch reads its power, then watches on."""
    inventory = site(tmp_path, {"b": CLUSTERS["b"]}, CLUSTERS["b"])
    record = record_path(str(tmp_path / "store"), "hv3")
    late = time.time() - 1000
    os.utime(record, (late, late))
    done = watchdog(tmp_path, inventory, kvmha_policy=dict(QUICK, probe_timeout_s=0.5))
    assert done.returncode == 0, done.output[-4000:]
    play = done.output.split("PLAY [Watch on while the late hosts' BMCs are read and their neighbours ping them]")[1].split("PLAY [")[0]
    assert bmc_reads(play) == ["hv3"], play
    # hv3's row: its power read (no BMC answers here: a failure, ignored), then its watch
    order = [(task, line.split(" ")[1]) for task, line in results(play)]
    assert order.index(("Read the host's power state from its BMC, over the out-of-band network", "[hv3")) \
        < order.index(("Watch the heartbeats for the rest of the window", "[hv3")), play
    assert 'kvmha_suspects{cluster="b"} 0' in metrics(tmp_path)
    # The lease is taken beside the watch by a row that is not the watch: hv3's is, so the first neighbour's.
    assert ran(play, "Take the cluster lease while the watch goes on") == ["hv4"], play
    events = [e["event"] for e in journal_events(tmp_path)]
    assert events.count("lease_acquired") == 1 and events.index("lease_acquired") < events.index("lease_released"), events


def hosts_with_the_observation(tmp_path, inventory, limit=None, **extra):
    """Run the watchdog, then list the hosts that hold the observe play's facts (a last play reads their hostvars)."""
    out = tmp_path / "holders.json"
    playbook = tmp_path / "watchdog_then_look.yml"
    holders = ("{{ groups.kvm_hosts | map('extract', hostvars) | selectattr('kvmha_observation', 'defined')"
               " | map(attribute='inventory_hostname') | list | to_json }}")
    playbook.write_text(json.dumps([
        {"ansible.builtin.import_playbook": str(ROOT / "playbooks" / "watchdog.yml")},
        {"name": "Which hosts hold the observation", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "Keep them", "ansible.builtin.copy": {"dest": str(out), "mode": "0644", "content": holders}}]}]))
    done = watchdog(tmp_path, inventory, playbook=playbook, limit=limit, **extra)
    assert done.returncode == 0, done.output[-4000:]
    return json.loads(out.read_text())


def test_the_play_beside_the_watch_leaves_the_observation_on_the_observing_host_alone(tmp_path):
    """The late host's and its neighbours' rows skip the watch: a skipped task would register a skipped
    kvmha_observation on them, which wins over the observing host's in the later plays - the late host, once a
    suspect, then decided on nothing. The watch is included, so no other row holds an observation."""
    inventory = site(tmp_path, {"b": CLUSTERS["b"]}, CLUSTERS["b"])
    record = record_path(str(tmp_path / "store"), "hv4")
    late = time.time() - 1000
    os.utime(record, (late, late))
    assert hosts_with_the_observation(tmp_path, inventory, kvmha_policy=dict(QUICK, probe_timeout_s=0.5)) == ["hv3"]


def test_the_controllers_work_runs_on_one_host_of_the_group(tmp_path):
    """Issue 17: the observe play used to run over the whole group (each of its tasks stepped through every host,
    its facts set on every host): a healthy run of 1000 hosts took 1.7 times as long as one of 10. It runs on the
    first host of the group only, and its facts stay there; every later play reads them from there."""
    members = ["hv%02d" % i for i in range(1, 21)]
    assert hosts_with_the_observation(tmp_path, site(tmp_path, {"a": members}, members)) == ["hv01"]
    assert 'kvmha_suspects{cluster="a"} 0' in metrics(tmp_path)


def test_a_limit_to_one_cluster_observes_from_a_host_of_that_cluster(tmp_path):
    """--limit <cluster group> (the watchdog_service role's runs): the first host of the limited group carries the
    controller's work, and the cluster is the one of the hosts left - no kvmha_watch_cluster needed."""
    inventory = site(tmp_path, CLUSTERS, CLUSTERS["b"])
    assert hosts_with_the_observation(tmp_path, inventory, limit="hv3:hv4:hv5:localhost") == ["hv3"]  # localhost looks
    assert 'kvmha_suspects{cluster="b"} 0' in metrics(tmp_path)


def test_a_limited_run_still_investigates_its_suspect(tmp_path):
    """The same under --limit, with hv5 silent: the later plays read the observing host's facts (hv3) on hv5."""
    done = watchdog(tmp_path, site(tmp_path, CLUSTERS, ["hv3", "hv4"]), limit="hv3:hv4:hv5")
    assert done.returncode != 0 and 'kvmha_suspects{cluster="b"} 1' in metrics(tmp_path), done.output[-4000:]
    seen = [(e["event"], e.get("host")) for e in journal_events(tmp_path)]
    assert ("suspect", "hv5") in seen and ("decision", "hv5") in seen and seen[-1] == ("run_end", None), seen


def test_the_cluster_named_is_watched_and_only_its_members(tmp_path):
    done = watchdog(tmp_path, site(tmp_path, CLUSTERS, CLUSTERS["b"]), kvmha_watch_cluster="b")
    assert done.returncode == 0, done.output[-4000:]
    assert 'kvmha_suspects{cluster="b"} 0' in metrics(tmp_path)


def test_a_member_without_a_record_is_a_suspect(tmp_path):
    """The checks above can fail: hv5's missing record makes it a suspect (nothing answers here: no action)."""
    done = watchdog(tmp_path, site(tmp_path, CLUSTERS, ["hv3", "hv4"]), kvmha_watch_cluster="b")
    assert done.returncode != 0 and 'kvmha_suspects{cluster="b"} 1' in metrics(tmp_path), done.output[-4000:]
    # The journal read each result by the phase the playbook tagged it with (issue 18): the observation, the probes
    # that could not reach anything (unknown evidence, not failures of the run), the decision.
    seen = [(e["event"], e.get("host"), e.get("module")) for e in journal_events(tmp_path)]
    assert seen[:2] == [("run_start", None, None), ("suspect", "hv5", None)] and seen[-1] == ("run_end", None, None), seen
    assert seen.index(("decision", "hv5", None)) > 1, seen
    assert {("probe_unreachable", "hv3", "neighbor_ping"), ("probe_unreachable", "hv4", "neighbor_ping")} <= set(seen), seen
    # hv5's management refused the banner probe (closed port): an ok result, so no login and no unreachable task (issue 17)
    assert not [event for event in seen if event[1] == "hv5" and event[2] in ("ping", "mgmt_probe")], seen
    assert ("probe_failed", "hv5", "ipmi_power") in seen, seen  # while a failed probe is still journalled
    assert not [event for event in seen if event[0].startswith("task_")], seen


@pytest.mark.parametrize("extra, message", [
    ({}, "hosts of several clusters in this play (a, b): name the one to watch with kvmha_watch_cluster"),
    ({"kvmha_watch_cluster": "nope"}, "no host of this play is in cluster nope"),
])
def test_an_ambiguous_or_unknown_cluster_is_refused(tmp_path, extra, message):
    done = watchdog(tmp_path, site(tmp_path, CLUSTERS, CLUSTERS["a"] + CLUSTERS["b"]), **extra)
    assert done.returncode != 0 and message in done.output, done.output[-4000:]
    assert "Watch the heartbeats" not in done.output, "nothing is watched, let alone acted on"


@pytest.mark.parametrize("bad", [None, "", "a/../b", "prod a", "a\n", 5, ["a"]])
def test_a_host_without_a_usable_cluster_name_is_reported_and_the_cluster_still_watched(tmp_path, bad):
    """Issue 14 item 2: one bad inventory entry is reported and skipped; it used to stop the run of the whole cluster."""
    inventory = site(tmp_path, {"a": CLUSTERS["a"], None: ["hv9"]}, CLUSTERS["a"])
    if bad is not None:
        doc = json.loads(inventory.read_text())
        doc["all"]["children"]["kvm_hosts"]["hosts"]["hv9"]["kvmha_cluster"] = bad
        inventory.write_text(json.dumps(doc))
    done = watchdog(tmp_path, inventory)
    assert done.returncode == 0, done.output[-4000:]
    assert "not watched" in done.output and "hv9" in done.output.split("not watched", 1)[1].split("\n", 1)[0]
    assert 'kvmha_suspects{cluster="a"} 0' in metrics(tmp_path)


def test_a_member_with_a_hostile_host_name_is_reported_and_the_others_still_watched(tmp_path):
    """Issue 14 item 2: kvm_heartbeat used to fail the whole watch on one member named against RFC 1123."""
    done = watchdog(tmp_path, site(tmp_path, {"a": CLUSTERS["a"] + ["hv_9"]}, CLUSTERS["a"]))
    assert done.returncode == 0, done.output[-4000:]
    assert "'hv_9' is skipped, it is not watched" in done.output
    assert 'kvmha_suspects{cluster="a"} 0' in metrics(tmp_path)


def test_an_observer_that_is_a_member_checks_its_own_heartbeat(tmp_path):
    """Issue 14 item 7: with kvmha_observers naming a hypervisor of the cluster, a dead heartbeat of its own (its view of
    the store is stale, or its writer is down) makes the observer not OK: nothing is probed, fenced or recovered.
    Before the wiring hv1 was merely a suspect, investigated on the word of an observer that cannot see the store."""
    inventory = site(tmp_path, {"a": CLUSTERS["a"] + ["hv3"]}, ["hv2", "hv3"])
    doc = json.loads(inventory.read_text())
    doc["all"]["vars"].update(kvmha_observers=["hv1"], kvmha_policy={"remediate_writer": False})
    doc["all"]["children"]["kvm_hosts"]["hosts"]["hv1"]["ansible_connection"] = "local"
    store = doc["all"]["vars"]["kvmha_store_path"]
    record = build_record("hv1", "boot-hv1", 1, time.time() - 600, 2.0, {"armed": False, "deadline_s": 60},
                          {"mem_free_mib": 4096, "vcpus_free": 8}, [])
    write_atomic(record_path(store, "hv1"), encode_record(record))
    os.utime(record_path(store, "hv1"), (time.time() - 600, time.time() - 600))
    inventory.write_text(json.dumps(doc))
    done = watchdog(tmp_path, inventory)
    assert done.returncode != 0 and "the observer's own heartbeat (hv1) does not look alive" in done.output, done.output[-4000:]
    assert "Read the suspect's power state" not in done.output, "nothing is probed on the word of this observer"
    assert 'kvmha_observer_ok{cluster="a"} 0' in metrics(tmp_path)


def test_an_observer_that_is_not_a_member_is_not_checked_against_the_cluster(tmp_path):
    """localhost (the default observer) has no heartbeat of its own in the cluster: the run is as before."""
    done = watchdog(tmp_path, site(tmp_path, {"a": CLUSTERS["a"]}, CLUSTERS["a"]))
    assert done.returncode == 0, done.output[-4000:]
    assert 'kvmha_observer_ok{cluster="a"} 1' in metrics(tmp_path)


def test_a_maintenance_about_to_end_is_warned_of_every_run(tmp_path):
    """Issue 16: an expiry that cannot surprise - within policy.maintenance_warn_s of its end, every run says so."""
    from ansible_collections.kvmha.cluster.plugins.module_utils import _marks  # noqa: PLC0415

    inventory = site(tmp_path, {"a": ["hv1", "hv2"]}, ["hv1", "hv2"])
    store = str(tmp_path / "store")
    _marks.set_mark(store, _marks.MAINTENANCE, "hv1", "alice", {"reason": "BIOS"}, ttl=600)
    _marks.set_mark(store, _marks.MAINTENANCE, "hv2", "bob", {"reason": "disk"}, ttl=7200)
    done = watchdog(tmp_path, inventory)
    assert done.returncode == 0, done.output[-3000:]
    assert "maintenance of hv1 by alice (BIOS) ends in" in done.output and "maintenance of hv2" not in done.output
    quiet = watchdog(tmp_path, inventory, kvmha_policy={"maintenance_warn_s": 60})
    assert quiet.returncode == 0 and "ends in" not in quiet.output, quiet.output[-3000:]


def test_an_inventory_without_hypervisors_is_a_failed_run_never_a_green_one(tmp_path):
    """A broken inventory (empty, unparsable, an AWX sync that failed) would otherwise watch nothing, successfully."""
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"other": {"hosts": {"x": {}}}}}}))
    done = watchdog(tmp_path, inventory)
    assert done.returncode != 0 and "no host in group kvm_hosts" in done.output, done.output[-3000:]


# ------------------------------------------------------------------------- issue 15: an operator's confirm-off

SILENT_PING = """#!/bin/sh
# A stand-in for iputils ping whose every echo is lost: the suspect's private address (loopback here) "does not answer".
case "$1" in -V) echo "ping from iputils 20240117"; exit 0;; esac
echo "--- stand-in ping statistics ---"
echo "2 packets transmitted, 0 received, 100% packet loss, time 200ms"
exit 1
"""


def dark_host_site(tmp_path):
    """hv1 and hv2 alive and reachable (the local connection, libvirt's test driver), hv3 dark: its last record stale
    (seq 7 of boot-hv3), SSH to a closed port, a BMC that nothing answers, and neighbours whose pings are all lost."""
    inventory = site(tmp_path, {"a": ["hv1", "hv2", "hv3"]}, ["hv1", "hv2"])
    doc = json.loads(inventory.read_text())
    hosts = doc["all"]["children"]["kvm_hosts"]["hosts"]
    for live in ("hv1", "hv2"):
        hosts[live]["ansible_connection"] = "local"
    hosts["hv3"]["kvmha_bmc_port"] = 9  # nothing listens: the BMC died with the host
    doc["all"]["vars"]["kvmha_policy"] = {"probe_timeout_s": 1.0, "remediate_writer": False}
    inventory.write_text(json.dumps(doc))
    store = doc["all"]["vars"]["kvmha_store_path"]
    then = time.time() - 600
    record = build_record("hv3", "boot-hv3", 7, then, 2.0, {"armed": False, "deadline_s": 60}, {"mem_free_mib": 4096, "vcpus_free": 8}, [])
    write_atomic(record_path(store, "hv3"), encode_record(record))
    os.utime(record_path(store, "hv3"), (then, then))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ping").write_text(SILENT_PING)
    (bindir / "ping").chmod(0o755)
    return inventory, store, str(bindir)


def test_the_next_run_after_a_confirm_off_recovers_the_host_and_uses_the_word_up(tmp_path):
    from ansible_collections.kvmha.cluster.plugins.module_utils import _marks, _recovery  # noqa: PLC0415

    """Without the word hv3 is UNKNOWN every run (test_decide_playbook.py shows it on the same evidence); with it, the
    next run recovers hv3 - its owed document opened, its fenced mark written - and releases the confirmation."""
    inventory, store, bindir = dark_host_site(tmp_path)
    _marks.confirm_off(store, "hv3", "alice", {"reason": "cords pulled", "seq": 7, "boot_id": "boot-hv3"}, ttl=3600)
    second = watchdog(tmp_path, inventory, env_path=bindir + os.pathsep + os.environ["PATH"])
    assert second.returncode == 0, second.output[-4000:]
    decisions = [e for e in journal_events(tmp_path) if e["event"] == "decision" and e["host"] == "hv3"]
    assert (decisions[-1]["verdict"], decisions[-1]["rule"], decisions[-1]["action"]) == ("DOWN_CONFIRMED", "R9a", "recover"), \
        second.output[-4000:]
    assert "hv3" in _marks.read_marks(store, _marks.FENCED)["active"] and _recovery.OwedBook(store, "t").read("hv3")
    assert _marks.read_marks(store, _marks.CONFIRMED_OFF)["active"] == {}, "one use: the recovery used it up"
    used = [e for e in journal_events(tmp_path) if e["event"] == "mark" and e.get("mark") == "confirmed_off"]
    assert [(e["host"], e["released"]) for e in used] == [("hv3", True)], second.output[-4000:]
