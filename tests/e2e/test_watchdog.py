"""The watchdog end to end (issue 6): detect, investigate, fence, recover, record - on the real lab."""

import json
import os
import subprocess
import time
from datetime import datetime

from cluster import REPO, Cluster, wait_for
from conftest import report_rto

from lab import config


def test_host_crash_is_fenced_and_its_vms_restarted(cluster):
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h1": ("SUSPECT", "R8")}, fenced={"h1"}, starts_before=starts)
    assert set(run.started_vms()) == {"g1", "g2"}
    record = run.incidents["h1"]
    assert record["actions"][0]["result"]["fenced"] is True and record["rto_s"] is not None
    assert set(record["timestamps"]) >= {"last_heartbeat", "detected", "investigated", "fenced", "vm_running:g1", "vm_running:g2"}
    # Issue 17: the read-only probes start at h1's first missed beat, before it is suspect; power is touched only once
    # the policy's count of missed beats has passed.
    at = {phase: datetime.fromisoformat(when).timestamp() for phase, when in record["timestamps"].items()}
    interval = record["evidence"]["heartbeat"]["interval"]
    assert at["last_heartbeat"] + interval < at["probes_started"] < at["detected"] < at["fenced"]
    assert at["fenced"] - at["last_heartbeat"] >= 3 * interval
    # The lease was taken beside the watch at h1's first missed beat and used by the investigation: taken once.
    assert [e["event"] for e in run.events if e["event"].startswith("lease_")] == ["lease_acquired", "lease_released"], run.explain()
    report_rto(run, "h1")


def test_a_crash_that_the_observing_host_must_ping_is_decided_on_the_pings_beside_the_watch(cluster):
    """Issue 17: h1 observes; h2 crashes, and the policy wants four neighbours, so h1 is one of them (as in any
    cluster of three). h1's row is the watch, so its ping of h2 runs on h2's row beside the watch, delegated to h1,
    and the probe play pings nobody again: the decision takes the four silent pings taken before it."""
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: cluster.lab.power("h2", "crash"), policy={"neighbor_count": 4})
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h2": ("SUSPECT", "R8")}, fenced={"h2"}, starts_before=starts)
    assert set(run.started_vms()) == {"g3", "g4"}
    assert run.incidents["h2"]["evidence"]["neighbors"] == {"reachable": 0, "unreachable": 4, "errors": 0}, run.explain()
    beside = run.output.split("PLAY [Watch on while the late hosts' BMCs are read")[1].split("PLAY [")[0]
    early = [line for task in beside.split("TASK [Ping the late hosts' private addresses from a neighbour]")[1:]
             for line in task.split("TASK [")[0].splitlines() if line.startswith("ok: [")]
    rows = dict(line[len("ok: ["):].split("]")[0].split("(")[0].replace(" -> ", ">").partition(">")[::2] for line in early)
    assert {row: source or row for row, source in rows.items()} == {"h2": "h1", "h3": "h3", "h4": "h4", "h5": "h5"}, early
    probe = run.output.split("PLAY [Probe the suspects over independent paths]")[1].split("PLAY [")[0]
    assert "ok: [" not in probe.split("TASK [Ping the suspects' private addresses from a neighbour]")[-1], probe
    report_rto(run, "h2")


def test_power_loss_with_bmc_reachable_is_down_without_fencing(cluster):
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: cluster.lab.power("h2", "off"))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h2": ("DOWN", "R5")}, fenced=(), starts_before=starts)
    assert set(run.started_vms()) == {"g3", "g4"}
    assert not run.incidents["h2"]["actions"][0]["action"] == "fence"
    report_rto(run, "h2")


def test_graceful_writer_stop_on_a_healthy_host_restarts_the_writer(cluster):
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: cluster.lab.fault("h3", "writer-stop"))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h3": ("ALIVE_WRITER_FAULT", "R3")}, fenced=(), starts_before=starts)
    record = run.incidents["h3"]
    assert record["evidence"]["heartbeat"]["status"] == "stopped"
    assert [a["action"] for a in record["actions"]] == ["remediate"] and record["actions"][0]["ok"]
    assert run.started_vms() == {}
    assert cluster.lab.status()["hosts"]["h3"]["writer"] == "active"


def test_the_seed_case_partition_and_killed_writer_is_not_fenced(cluster):
    """CloudStack's CLOUDSTACK-3535: cut off, writer dead, VMs still running and writing."""
    starts = cluster.qemu_starts()

    def partition_and_kill_writer():
        cluster.lab.fault("h1", "partition")
        cluster.lab.fault("h1", "writer-kill")

    run = cluster.during_watch(partition_and_kill_writer)
    assert run.rc != 0  # a host nobody can reach while its VMs run needs a human: the run is red
    cluster.assert_invariants(run, verdicts={"h1": ("ALIVE_VMS_RUNNING", "R7")}, fenced=(), starts_before=starts)
    assert run.incidents["h1"]["evidence"]["disk_activity"] == "active"
    assert run.started_vms() == {}


def test_bmc_unreachable_with_the_host_dead_is_unknown_and_loud(cluster):
    starts = cluster.qemu_starts()

    def dead_host_dead_bmc():
        cluster.lab.fault("h4", "bmc-unreachable")
        cluster.lab.power("h4", "crash")

    run = cluster.during_watch(dead_host_dead_bmc)
    assert run.rc != 0, "an UNKNOWN host must make the run fail visibly"
    cluster.assert_invariants(run, verdicts={"h4": ("UNKNOWN", "R10")}, fenced=(), starts_before=starts)
    assert run.incidents["h4"]["evidence"]["bmc"]["power"] == "unknown"
    assert run.started_vms() == {}
    again = cluster.watchdog(watch_s=5)
    assert again.rc != 0 and again.incidents["h4"]["verdict"] == "UNKNOWN", "the alert repeats every run"


def test_two_watchdogs_at_once_one_acts(cluster):
    starts = cluster.qemu_starts()
    first = cluster.watchdog(watch_s=40, background=True)
    second = cluster.watchdog(watch_s=40, background=True)
    wait_for(lambda: Cluster.watching(first, second), 60, interval=0.1, what="the watchdogs to watch")
    time.sleep(1.5)
    cluster.lab.power("h1", "crash")
    runs = [Cluster.finish(first), Cluster.finish(second)]
    assert all(r.rc == 0 for r in runs), [r.explain() for r in runs]
    acted = [r for r in runs if r.fenced()]
    assert len(acted) == 1, "exactly one watchdog fences"
    idle = [r for r in runs if r not in acted][0]
    assert idle.events_of("lease_held") and not idle.started_vms()
    cluster.assert_invariants(runs, fenced={"h1"}, starts_before=starts)


def test_rerunning_after_a_recovery_changes_nothing(cluster):
    run = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"))
    assert run.rc == 0, run.explain()
    starts = cluster.qemu_starts()
    again = cluster.watchdog(watch_s=8)
    assert again.rc == 0, again.explain()
    assert again.incidents == {} and again.started_vms() == {} and again.fenced() == set()
    cluster.assert_invariants([run, again], fenced={"h1"}, starts_before=starts)


def test_a_fenced_host_powered_back_on_never_runs_a_second_copy(cluster):
    # h1's guests autostart: when it boots again they would start at once, beside the restarted copies,
    # unless the returning-host guard (the writer's boot guard and the watchdog's reconciliation) stops them.
    for guest in ("g1", "g2"):
        rc, out, err = cluster.lab.ssh("h1", "virsh autostart %s" % guest)
        assert rc == 0, err
    run = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"))
    assert run.rc == 0, run.explain()
    cluster.lab.power("h1", "on")
    wait_for(lambda: cluster.lab.status()["hosts"]["h1"]["writer"] == "active", 60, what="h1 to boot")
    back = cluster.watchdog(watch_s=10)
    assert back.rc == 0, back.explain()
    assert back.events_of("reconciled") and back.events_of("reconciled")[0]["host"] == "h1"
    cluster.assert_invariants([run, back], fenced={"h1"})
    out = cluster.lab.ssh("h1", "virsh list --all --name")[1]
    assert "g1" not in out and "g2" not in out, "stale definitions must be gone from h1"


def test_runs_under_ansible_runner_with_its_own_stdout_callback(cluster, tmp_path):
    """AWX runs playbooks through ansible-runner, which forces its own stdout callback: the journal still works."""
    private = tmp_path / "runner"
    (private / "env").mkdir(parents=True)
    (private / "project").mkdir()
    journal = tmp_path / "journal"
    (private / "env" / "envvars").write_text(json.dumps({
        "KVMHA_JOURNAL_DIR": str(journal), "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".collections"),
    }))
    (private / "env" / "extravars").write_text(json.dumps({"kvmha_watch_s": 40}))
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-runner"), "run", str(private), "--playbook",
           os.path.join(REPO, "playbooks", "watchdog.yml"), "--inventory", config.INVENTORY, "-j"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    wait_for(lambda: Cluster.watching(proc), 60, interval=0.1, what="the watchdog under ansible-runner to watch")
    time.sleep(0.5)
    cluster.lab.power("h5", "crash")
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output[-4000:]
    assert '"event": "runner_on_ok"' in output or "runner_on_ok" in output, "ansible-runner's own callback was in force"
    records = list((journal / "incidents").glob("*-h5.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert (record["verdict"], record["rule"]) == ("SUSPECT", "R8")
    assert record["actions"][0]["ok"] and {vm["name"] for vm in record["vms"]} == {"g9", "g10"}
    assert record["rto_s"] is not None and (journal / "kvmha.prom").exists()
    wait_for(cluster._each_guest_once, 30, what="every guest to run once")
