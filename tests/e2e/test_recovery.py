"""Recovery that converges (issue 13): whatever dies - a target, the controller - the next runs finish the job.

Each scenario interrupts a recovery at a point found on the store, in libvirt or in the lab's power state (never by
timing), then runs the watchdog again until every HA VM runs exactly once, and checks, from outside the product,
that no guest was started twice: the qemu logs of every host count the starts.
"""

import json
import os
import signal
import time

import pytest
from cluster import Cluster, freeze, signal_all, wait_for

from lab import config

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks, _recovery  # noqa: E402
from ansible_collections.kvmha.cluster.plugins.module_utils._claims import claims_dir  # noqa: E402
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import RecordReader  # noqa: E402
from ansible_collections.kvmha.cluster.plugins.module_utils._storefile import DocumentStore  # noqa: E402

# A short lease so that the run after a killed controller gets it soon; quick retries for unplaced VMs.
POLICY = {"lease_ttl_s": 15, "recover_retry_s": 2, "recover_retry_max_s": 4}
MAX_RUNS = 6


def claims_of(host) -> list:
    """The claims of this death of ``host`` (its incident: the boot id of its current record): [(vm, state, target)]."""
    reading = RecordReader(config.STORE).read(host)
    incident = "%s/%s" % (host, reading.record["boot_id"]) if reading.status == "ok" else None
    docs = DocumentStore(claims_dir(config.STORE), "claim")
    found = []
    for name in docs.names():
        doc = docs.read(name)
        if doc is not None and doc.data.get("incident") == incident and not doc.released:
            found.append((doc.data["vm_name"], doc.data["state"], doc.data["target"]))
    return found


def owed_document(host, history=False):
    """The data of ``host``'s owed document; a released one (history: the host was returned) only with ``history``."""
    doc = _recovery.OwedBook(config.STORE, "e2e").read(host)
    return None if doc is None or (doc.released and not history) else doc.data


def kill(proc):
    """The controller dies at once, modules included: SIGKILL to the run and everything it started (frozen first, so
    that no worker forked meanwhile escapes)."""
    signal_all(freeze(proc.pid), signal.SIGKILL)
    proc.communicate(timeout=30)


def converge(cluster, watch_s=5, runs=MAX_RUNS, within_s=120):
    """Run the watchdog, as its schedule would, until every guest runs exactly once: at most ``runs`` runs that could
    act, within ``within_s``. A run that finds the lease of a killed run held leaves the work to its holder and does
    not count: the runs after that lease expired do the work (a run with recovery work waits for it itself)."""
    done, acted = [], 0
    deadline = time.monotonic() + within_s
    while acted < runs and time.monotonic() < deadline:
        run = cluster.watchdog(watch_s=watch_s, policy=POLICY)
        done.append(run)
        # A guest runs where its host is on: the frozen qemu of a crashed host (not fenced yet) is no copy that runs.
        on = set(h for h in cluster.hosts if cluster.lab.power(h, "status") == "on")
        copies = cluster.qemu_copies()
        if all(len(copies.get(g, ())) == 1 and set(copies[g]) <= on for g in cluster.guest_homes):
            if all(owed_document(h) is None or not _recovery.is_open(owed_document(h)) for h in cluster.hosts):
                return done
        if run.events_of("lease_held") and not run.events_of("lease_acquired"):
            time.sleep(1)
            continue
        acted += 1
    raise AssertionError("not converged after %d runs (%d could act): %s\n%s" % (
        len(done), acted, cluster.qemu_copies(), done[-1].explain()))


def started_once(cluster, before, moved, target_before=None, target=None):
    """From the qemu logs of every host: each guest of ``moved`` started once more, every other never.

    A guest whose start on ``target`` had begun when the target died (its log there says so) was lost with it and
    may start once more elsewhere: that first copy is frozen on a host that is fenced, never running twice.
    """
    after = cluster.qemu_starts()
    lost = {}
    if target is not None:
        on_target = qemu_starts_on(target)
        lost = dict((g, on_target.get(g, 0) - target_before.get(g, 0)) for g in on_target)
    extra = dict((g, after.get(g, 0) - before.get(g, 0)) for g in cluster.guest_homes)
    allowed = dict((g, (1 + lost.get(g, 0)) if g in moved else 0) for g in extra)
    assert extra == allowed, "qemu starts since the fault %s, allowed %s" % (extra, allowed)


def qemu_starts_on(host) -> dict:
    """{guest: starts} in the qemu logs of one host."""
    root = os.path.join(config.HOSTS_DIR, host, "upper", "var", "log", "libvirt", "qemu")
    starts = {}
    for name in os.listdir(root) if os.path.isdir(root) else []:
        if name.endswith(".log"):
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                starts[name[:-4]] = f.read().count("starting up")
    return starts


def guests_of(cluster, host):
    return sorted(g for g, home in cluster.guest_homes.items() if home == host)


def crash_h1_and_wait(cluster, moment, what):
    """Start a watchdog run, crash h1 while it watches, and return (run, the value of ``moment()`` once true)."""
    proc = cluster.watchdog(watch_s=40, policy=POLICY, background=True)
    wait_for(lambda: Cluster.watching(proc), 60, interval=0.1, what="the watchdog to start watching")
    cluster.lab.power("h1", "crash")
    return proc, wait_for(moment, 90, interval=0.05, what=what)


# ------------------------------------------------------------------------------------------------ dying targets


def test_target_dies_mid_evacuation(cluster):
    targets_before = dict((h, qemu_starts_on(h)) for h in cluster.hosts)
    before = cluster.qemu_starts()
    proc, claimed = crash_h1_and_wait(cluster, lambda: [c for c in claims_of("h1") if c[1] == "claimed"],
                                      "a claim of h1's VMs")
    target = claimed[0][2]
    cluster.lab.power(target, "crash")  # the target dies while the VMs are being started on it
    crashed_at = time.time()
    runs = [Cluster.finish(proc)] + converge(cluster)
    print("\nconvergence target-dies-mid-evacuation: every guest runs once %.1f s after the target crashed (%d runs)"
          % (time.time() - crashed_at, len(runs)))
    started_once(cluster, before, guests_of(cluster, "h1") + guests_of(cluster, target), targets_before[target], target)
    fenced = set().union(*(run.fenced() for run in runs))
    assert fenced == {"h1", target}, fenced
    assert not _recovery.is_open(owed_document("h1")) and not _recovery.is_open(owed_document(target))
    assert all(vm["state"] in ("verified", "moved") for vm in owed_document("h1")["vms"]), owed_document("h1")


def test_target_dies_right_after_its_copies_started(cluster):
    targets_before = dict((h, qemu_starts_on(h)) for h in cluster.hosts)
    before = cluster.qemu_starts()
    proc, started = crash_h1_and_wait(cluster, lambda: [c for c in claims_of("h1") if c[1] == "started"],
                                      "a VM of h1 started elsewhere")
    target = started[0][2]
    cluster.lab.power(target, "crash")  # before its heartbeat lists the new copy: only h1's recovery knows of it
    crashed_at = time.time()
    runs = [Cluster.finish(proc)] + converge(cluster)
    print("\nconvergence target-dies-after-start: every guest runs once %.1f s after the target crashed (%d runs)"
          % (time.time() - crashed_at, len(runs)))
    started_once(cluster, before, guests_of(cluster, "h1") + guests_of(cluster, target), targets_before[target], target)
    fenced = set().union(*(run.fenced() for run in runs))
    assert fenced == {"h1", target}, fenced
    lost = [vm for vm, state, where in started if where == target]
    assert qemu_starts_on(target).get(lost[0], 0) > targets_before[target].get(lost[0], 0), "it did start on the target"


# ------------------------------------------------------------------------------------------------ a dying controller


def lease_held() -> bool:
    """A watchdog run holds the lease of the lab's cluster."""
    lease = _marks.documents(config.STORE, _marks.LEASE).read("lab")
    return lease is not None and lease.owner.startswith("watchdog/") and not lease.released


# Also before the recovery opened: the lease taken beside the watch at h1's first missed beat (nothing decided yet),
# and h1 powered off by the fence with nothing owed yet - its VMs are owed only once its document opens, so nothing
# of them is on the store: the next run must find h1 dead again, read its power off and recover it.
KILL_POINTS = {
    "after_the_early_lease": (lambda cluster: lease_held() and cluster.lab.power("h1", "status") == "crashed",
                              "the lease taken at h1's first missed beat"),
    "after_the_fence": (lambda cluster: cluster.lab.power("h1", "status") == "off" and owed_document("h1") is None,
                        "h1 powered off, its recovery not open yet"),
    "after_the_mark": (lambda cluster: owed_document("h1") is not None, "h1's recovery to open"),
    "after_the_claim": (lambda cluster: claims_of("h1"), "a claim of h1's VMs"),
    "during_start": (lambda cluster: any(h != "h1" for g in guests_of(cluster, "h1") for h in cluster.qemu_copies().get(g, [])),
                     "a copy of h1's VMs to appear elsewhere"),
}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_controller_killed_mid_recovery_loses_nothing(cluster, point):
    before = cluster.qemu_starts()
    moment, what = KILL_POINTS[point]
    proc, _moment = crash_h1_and_wait(cluster, lambda: moment(cluster), what)
    killed_at = time.time()
    kill(proc)
    left = owed_document("h1")
    # The dead run's lease blocks for 15 s + skew (POLICY): with work owed, the first run waits for it itself; with
    # only h1 to investigate, the runs until it expires leave h1 to its holder and the first one after does the work.
    runs = converge(cluster)
    verified_at = time.time()
    started_once(cluster, before, guests_of(cluster, "h1"))
    records = [r for run in runs for r in run.incidents.values() if r.get("interrupted")]
    if left is not None and _recovery.is_open(left):  # the kill may land after the run closed the document
        assert records and records[0]["host"] == "h1", [run.explain() for run in runs]
        assert records[0]["interrupted"]["owner"] == left["worked_by"]
    assert all(vm["state"] == "verified" for vm in owed_document("h1", history=True)["vms"]), owed_document("h1", True)
    print("\nconvergence killed-%s: every VM verified %.1f s after the kill (lease wait included, %d run(s))"
          % (point, verified_at - killed_at, len(runs)))


# ------------------------------------------------------------------------------------------------ no room, then room


def test_unplaced_vm_waits_owed_then_starts_when_capacity_appears(cluster, tmp_path):
    for guest in cluster.guest_homes:  # one anti-affinity group for every guest: no live host can take h1's
        cluster.lab.guest_set(guest, group="solo")
    cluster.wait_reported(**{guest: {"group": "solo"} for guest in cluster.guest_homes})
    before = cluster.qemu_starts()
    first = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"), policy=POLICY)
    assert first.rc != 0, "an owed VM that runs nowhere makes the run red"
    owed = owed_document("h1")
    assert {vm["state"] for vm in owed["vms"]} == {"unplaced"} and all(vm["next_try"] for vm in owed["vms"]), owed
    assert "recovery incomplete" in first.output

    # h1 comes back while its VMs run nowhere: its copies are the only ones - never destroyed, h1 stays fenced.
    cluster.lab.power("h1", "off")
    cluster.lab.power("h1", "on")
    wait_for(lambda: cluster.lab.status()["hosts"]["h1"]["writer"] == "active", 90, what="h1 to boot")
    refused = cluster.ansible_playbook_rc("unfence.yml", "-e", json.dumps({"kvmha_unfence_hosts": "h1"}))
    assert refused.returncode != 0 and "h1 holds the only copy of" in refused.stdout, refused.stdout[-3000:]
    defined = cluster.lab.ssh("h1", "virsh list --all --name")[1].split()
    assert set(guests_of(cluster, "h1")) <= set(defined), defined
    assert cluster.marks_fenced() == {"h1"}

    # Room appears on h2 and h3: the next runs start the owed VMs there, then return h1 without its stale copies.
    for host in ("h2", "h3"):
        for guest in guests_of(cluster, host):
            cluster.lab.guest_set(guest, group="")
    room_at = time.time()
    runs = [first] + converge(cluster)
    print("\nconvergence room-appears: h1's VMs verified %.1f s after room appeared (%d runs)" % (time.time() - room_at, len(runs) - 1))
    runs.append(cluster.watchdog(watch_s=5, policy=POLICY))  # the return of h1, now that its copies are stale
    started_once(cluster, before, guests_of(cluster, "h1"))
    assert all(vm["state"] == "verified" and vm["attempts"] >= 2 for vm in owed_document("h1", history=True)["vms"])
    defined = cluster.lab.ssh("h1", "virsh list --all --name")[1].split()
    assert not set(guests_of(cluster, "h1")) & set(defined), "stale copies must be gone from h1 once verified elsewhere"
    assert cluster.marks_fenced() == set()


# ------------------------------------------------------------------------------------------------ maintenance mid-run


def test_a_host_put_into_maintenance_mid_run_is_neither_fenced_nor_recovered(cluster):
    """Issue 14 item 1: the mark written after the watch found the suspect still wins over the decision."""
    before = cluster.qemu_starts()
    proc = cluster.watchdog(watch_s=40, policy=POLICY, background=True)
    wait_for(lambda: Cluster.watching(proc), 60, interval=0.1, what="the watchdog to start watching")
    cluster.lab.power("h1", "crash")
    wait_for(lease_held, 90, interval=0.05, what="the run to take the lease for h1")
    _marks.set_mark(config.STORE, _marks.MAINTENANCE, "h1", "alice", {"reason": "she powered it off"}, ttl=3600)
    run = Cluster.finish(proc)
    assert "h1" not in run.fenced() and run.started_vms() == {}, run.explain()
    assert owed_document("h1") is None
    started_once(cluster, before, [])
    _marks.clear_mark(config.STORE, _marks.MAINTENANCE, "h1", "alice")
