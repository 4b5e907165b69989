"""Operations end to end (issue 8) on the lab: maintenance (and its expiry), unfencing a repaired host, fence readiness
with the lab's BMC faults. Each scenario runs the real playbooks against the lab's inventory, like an operator."""

import json
import os
import re
import subprocess
import time

from cluster import REPO, wait_for
from conftest import report_rto
from test_recovery import owed_document

from lab import config, power

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks

ANSIBLE_PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")


def operate(cluster, tmp_path, playbook, *args, **extra):
    """Run an operations playbook as an operator would, whatever its outcome (Cluster.ansible_playbook raises on a
    failure, and some scenarios expect one). Its journal goes to the test's directory."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"))
    env.pop("KVMHA_METRICS_FILE", None)
    cmd = [ANSIBLE_PLAYBOOK, "-i", cluster.lab.inventory_path(), os.path.join(REPO, "playbooks", playbook + ".yml"),
           "-e", json.dumps(extra), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=900, check=False)
    proc.output = proc.stdout + proc.stderr
    return proc


def marks(kind):
    return _marks.read_marks(config.STORE, kind)


def readiness_metrics(path):
    """{host: (reason, ready)} from a kvmha-fence-readiness-<cluster>.prom file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return {host: (reason, value == "1") for host, reason, value in
            re.findall(r'^kvmha_fence_ready\{cluster="lab",host="(\w+)",reason="(\w+)"\} ([01])$', text, re.M)}


# ---------------------------------------------------------------------------------------------------- maintenance


def test_maintenance_keeps_the_watchdog_away_until_it_expires_by_itself(cluster, tmp_path):
    """h2 in maintenance crashes: the watchdog leaves it alone. Once the maintenance has expired, the next run
    says so and treats h2 like any dead host: fenced, its VMs restarted elsewhere, exactly once."""
    starts = cluster.qemu_starts()
    entered = operate(cluster, tmp_path, "maintenance", kvmha_maintenance_hosts="h2", kvmha_maintenance_owner="e2e",
                      kvmha_maintenance_reason="firmware", kvmha_maintenance_duration=30)
    assert entered.returncode == 0 and "h2: entered maintenance until" in entered.output, entered.output[-4000:]
    mark = marks("maintenance")["active"]["h2"]
    assert mark["owner"] == "e2e" and mark["ttl"] == 30.0

    quiet = cluster.during_watch(lambda: cluster.lab.power("h2", "crash"), watch_s=15)
    assert quiet.rc == 0, quiet.explain()
    assert quiet.incidents == {} and quiet.fenced() == set() and quiet.started_vms() == {}, quiet.explain()
    assert power.state("h2") == "crashed"

    # The store's clock is the machine's: wait (bounded) until the expiry plus the readers' skew allowance has passed.
    wait_for(lambda: "h2" in marks("maintenance")["expired"], 60, interval=1, what="h2's maintenance to expire")
    after = cluster.watchdog(watch_s=10)
    assert after.rc == 0, after.explain()
    assert "maintenance of h2 by e2e expired" in after.output, after.explain()
    cluster.assert_invariants([quiet, after], verdicts={"h2": ("SUSPECT", "R8")}, fenced={"h2"}, starts_before=starts)
    assert set(after.started_vms()) == {g for g, home in cluster.guest_homes.items() if home == "h2"}
    report_rto(after, "h2")


def test_leaving_maintenance_waits_for_a_live_heartbeat(cluster, tmp_path):
    """A host whose writer is stopped stays in maintenance (the watchdog would otherwise investigate it); once the
    writer runs again, leaving works, and the watchdog watches the host again."""
    entered = operate(cluster, tmp_path, "maintenance", kvmha_maintenance_hosts="h3", kvmha_maintenance_owner="e2e",
                      kvmha_maintenance_reason="kernel update", kvmha_maintenance_duration="1h")
    assert entered.returncode == 0, entered.output[-4000:]
    cluster.lab.fault("h3", "writer-stop")
    during = cluster.watchdog(watch_s=8)
    assert during.rc == 0 and "h3" not in during.incidents, during.explain()

    refused = operate(cluster, tmp_path, "maintenance", kvmha_maintenance_hosts="h3", kvmha_maintenance_state="absent",
                      kvmha_maintenance_owner="e2e", kvmha_maintenance_wait_s=6)
    assert refused.returncode != 0 and "heartbeat of h3 is not alive" in refused.output, refused.output[-4000:]
    assert "h3" in marks("maintenance")["active"]

    cluster.lab.heal("h3", "writer-stop")
    left = operate(cluster, tmp_path, "maintenance", kvmha_maintenance_hosts="h3", kvmha_maintenance_state="absent",
                   kvmha_maintenance_owner="e2e")
    assert left.returncode == 0 and "h3: left maintenance" in left.output and "heartbeat alive" in left.output, left.output[-4000:]
    assert marks("maintenance")["active"] == {} and marks("maintenance")["expired"] == {}
    shown = operate(cluster, tmp_path, "maintenance", kvmha_maintenance_hosts="kvm_hosts", kvmha_maintenance_state="status")
    assert shown.returncode == 0 and "h3: not in maintenance." in shown.output, shown.output[-4000:]
    again = cluster.watchdog(watch_s=5)
    assert again.rc == 0 and again.incidents == {}, again.explain()
    cluster.assert_invariants([during, again])


def test_drain_moves_the_ha_vms_live_and_names_the_one_that_cannot_move(cluster, tmp_path):
    """maintenance.yml with drain: h2 enters maintenance and its HA VMs are live-migrated between the hosts' real
    libvirtds (qemu moves its memory over the lab network) to where the watchdog would restart them. One of them has
    an anti-affinity group that already runs on every other host: it stays, the run says why and fails. Nothing is
    fenced, every guest runs exactly once, and a second run changes nothing."""
    homes = cluster.guest_homes
    movable, pinned = sorted(g for g, home in homes.items() if home == "h2")
    elsewhere = [sorted(g for g, home in homes.items() if home == host)[0] for host in cluster.hosts if host != "h2"]
    for guest in [pinned] + elsewhere:
        cluster.lab.guest_set(guest, group="pin")
    cluster.wait_reported(**{guest: {"group": "pin"} for guest in [pinned] + elsewhere})

    def drain():
        # The lab's guest disks are one local directory bind-mounted into every host: shared, but not a file system
        # libvirt recognises as shared (NFS, GFS2, ...), so its check is skipped as the docs say to for such storage.
        return operate(cluster, tmp_path, "maintenance", kvmha_maintenance_hosts="h2", kvmha_maintenance_owner="e2e",
                       kvmha_maintenance_reason="firmware", kvmha_maintenance_drain=True, kvmha_maintenance_drain_unsafe=True)

    first = drain()
    assert first.returncode != 0, first.output[-6000:]
    moved = re.search(r"h2: %s moved to (h\d) in [0-9.]+ s" % movable, first.output)
    assert moved and moved.group(1) != "h2", first.output[-6000:]
    assert "(item=%s -> %s)" % (movable, moved.group(1)) in first.output  # its own run: the drain's progress line
    assert "h2: %s stays: anti-affinity group 'pin'" % pinned in first.output, first.output[-6000:]
    assert "(%s; why: above)" % pinned in first.output, first.output[-6000:]
    assert cluster.qemu_copies()[movable] == [moved.group(1)] and cluster.qemu_copies()[pinned] == ["h2"]
    assert "h2" in marks("maintenance")["active"]
    # The target's writer lists the moved VM, so a later failure of that host restarts it.
    wait_for(lambda: any(vm["name"] == movable for vm in cluster.records(moved.group(1))), 30, interval=0.5,
             what="the target's writer to list the moved VM")

    again = drain()
    assert again.returncode != 0 and "moved to" not in again.output, again.output[-6000:]
    assert "h2: %s stays" % pinned in again.output
    cluster.assert_invariants([], migrated={movable})


# ---------------------------------------------------------------------------------------------------- unfence


def test_unfence_powers_on_reconciles_and_returns_a_fenced_host(cluster, tmp_path):
    """After a crash and a fence, unfence.yml powers h1 on through its BMC, waits for its heartbeat, removes its stale
    copies of the moved VMs (which were set to autostart) and clears the mark; a second run refuses."""
    moved = sorted(g for g, home in cluster.guest_homes.items() if home == "h1")
    for guest in moved:
        rc, out, err = cluster.lab.ssh("h1", "virsh autostart %s" % guest)
        assert rc == 0, out + err
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"))
    assert run.rc == 0, run.explain()
    assert set(run.started_vms()) == set(moved)
    fenced_mark = marks("fenced")["active"]["h1"]
    assert len(fenced_mark["data"]["vms"]) == len(moved)
    assert power.state("h1") == "off"

    returned = operate(cluster, tmp_path, "unfence", kvmha_unfence_hosts="h1", kvmha_unfence_power_on=True,
                       kvmha_unfence_wait_s=120, kvmha_unfence_poll_s=2)
    assert returned.returncode == 0, returned.output[-6000:]
    assert "h1: returned to the cluster" in returned.output and "Power: off -> on" in returned.output
    assert "removed: %d of %d listed" % (len(moved), len(moved)) in returned.output, returned.output[-4000:]
    assert "h1" not in marks("fenced")["active"]
    rc, out, err = cluster.lab.ssh("h1", "virsh list --all --name")
    assert rc == 0 and not set(out.split()) & set(moved), "stale definitions must be gone from h1: %s %s" % (out, err)
    lease = _marks.documents(config.STORE, _marks.LEASE).read("lab")
    assert lease is not None and lease.released, "unfence gives the cluster lease back"

    twice = operate(cluster, tmp_path, "unfence", kvmha_unfence_hosts="h1")
    assert twice.returncode == 0 and "h1 is not marked fenced: it was returned already" in twice.output, twice.output[-4000:]

    later = cluster.watchdog(watch_s=5)
    assert later.rc == 0 and later.incidents == {} and not later.events_of("reconciled"), later.explain()
    cluster.assert_invariants([run, later], verdicts={"h1": ("SUSPECT", "R8")}, fenced={"h1"}, starts_before=starts)


# ---------------------------------------------------------------------------------------------------- fence readiness


def test_fence_readiness_on_a_healthy_cluster(cluster, tmp_path):
    metrics = tmp_path / "metrics"
    done = operate(cluster, tmp_path, "fence_readiness", kvmha_readiness_metrics_dir=str(metrics))
    assert done.returncode == 0, done.output[-4000:]
    assert "%d of %d hosts ready" % (len(cluster.hosts), len(cluster.hosts)) in done.output
    assert readiness_metrics(metrics / "kvmha-fence-readiness-lab.prom") == {h: ("ok", True) for h in cluster.hosts}


def test_fence_readiness_finds_a_wrong_bmc_password_and_an_unreachable_bmc_and_switches_nothing(cluster, tmp_path):
    cluster.lab.fault("h2", "bmc-wrong-password")
    cluster.lab.fault("h4", "bmc-unreachable")
    powered = {h: power.state(h) for h in cluster.hosts}
    metrics = tmp_path / "metrics"
    started = time.monotonic()
    done = operate(cluster, tmp_path, "fence_readiness", kvmha_readiness_metrics_dir=str(metrics), kvmha_readiness_bmc_timeout=5)
    print("\nfence readiness with two broken BMCs: %.1f s" % (time.monotonic() - started))
    assert done.returncode != 0 and "fence readiness: not ready:" in done.output, done.output[-4000:]
    found = readiness_metrics(metrics / "kvmha-fence-readiness-lab.prom")
    expected = {h: ("ok", True) for h in cluster.hosts}
    expected.update(h2=("bmc_auth", False), h4=("bmc_unreachable", False))
    assert found == expected, done.output[-4000:]
    assert re.search(r"h2 +lab +\S+ +unknown +yes +NO +bmc_auth", done.output), done.output[-4000:]
    assert {h: power.state(h) for h in cluster.hosts} == powered, "fence readiness must never change a power state"
    cluster.lab.heal()
    cluster.assert_invariants([])


# ------------------------------------------------------------------------------------------- observe-only burn-in


def test_observe_mode_says_it_would_fence_and_restart_and_touches_nothing(cluster):
    """Issue 16: `mode: observe` watches, probes and decides like an armed watchdog, then only says what it would do."""
    offs, starts = cluster.bmc_power_offs(), cluster.qemu_starts()
    run = cluster.during_watch(lambda: cluster.lab.power("h2", "crash"), watch_s=20, policy={"mode": "observe"})
    assert run.rc == 0, run.explain()
    assert (run.incidents["h2"]["verdict"], run.incidents["h2"]["rule"]) == ("SUSPECT", "R8"), run.explain()
    assert "observe mode: would fence h2 (R8, SUSPECT)" in run.output, run.explain()
    guests = sorted(g for g, home in cluster.guest_homes.items() if home == "h2")
    for guest in guests:
        assert re.search(r"observe mode: would restart %s of h2 on h[13-5]" % guest, run.output), run.explain()
    assert run.fenced() == set() and run.started_vms() == {} and cluster.bmc_power_offs() == offs
    assert not marks("fenced")["active"] and owed_document("h2") is None
    cluster.assert_invariants(run, starts_before=starts, down_hosts={"h2"})
