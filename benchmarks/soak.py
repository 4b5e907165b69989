"""Soak: random faults on the lab for a bounded time, counting what must never happen.

Each round starts from a healthy 5-host lab, starts a watchdog run, and while it watches injects one random
fault: mostly flaps shorter than the detection threshold (a management or private cable cut for 3 s, the store
hanging for 3 s, the writer stopped and started again), sometimes a real crash, and sometimes a crash whose recovery
is itself interrupted - the controller killed (SIGKILL, modules included) once a VM is claimed, or the claim's target
crashing too. Those rounds run the watchdog again until the recovery converged (at most --converge-runs runs).
After the run(s) it counts:

    false fences    a host was fenced that had not crashed
    double starts   a guest ran on two hosts at once (from the qemu processes, frozen hosts included)
    lost VMs        a guest ran nowhere although its host was alive, or was fenced and the guest not restarted
    recoveries      crashes whose guests were all restarted elsewhere
    missed          crashes the watchdog did not act on within its run (or, interrupted, within --converge-runs)
    converged_s     for interrupted recoveries: from the interruption to every guest running once

The loop stops by itself after --minutes (default 30) or --rounds, whichever comes first, and always takes the lab
down. Usage (root, the lab to itself):

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--seed 1] [--rounds N] [--only mid-recovery]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "e2e")]

from cluster import Cluster, wait_for  # noqa: E402  the end-to-end harness drives the lab
from lab import config  # noqa: E402

from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import RecordReader  # noqa: E402
from test_recovery import POLICY, claims_of, kill  # noqa: E402  the interruption points of the e2e scenarios

HOSTS = ["h1", "h2", "h3", "h4", "h5"]


def flap(cluster, host, fault, seconds=3.0):
    cluster.lab.fault(host, fault)
    time.sleep(seconds)
    cluster.lab.heal(host, fault)


def writer_bounce(cluster, host):
    flap(cluster, host, "writer-stop", 1.0)


FAULTS = [  # (weight, name, crashes the host, inject(cluster, host))
    (3, "partition-mgmt flap", False, lambda c, h: flap(c, h, "partition-mgmt")),
    (3, "partition-private flap", False, lambda c, h: flap(c, h, "partition-private")),
    (2, "partition flap", False, lambda c, h: flap(c, h, "partition")),
    (2, "store-hang flap", False, lambda c, h: flap(c, h, "store-hang")),
    (2, "writer bounce", False, writer_bounce),
    (2, "crash", True, lambda c, h: c.lab.power(h, "crash")),
    (1, "crash, controller killed mid-recovery", True, "controller"),
    (1, "crash, target crashes mid-recovery", True, "target"),
]


def pick(rng, faults):
    total = sum(entry[0] for entry in faults)
    point = rng.uniform(0, total)
    for weight, name, crashes, inject in faults:
        point -= weight
        if point <= 0:
            return name, crashes, inject
    return faults[-1][1:]


def interrupted(cluster, host, how):
    """Crash ``host``, interrupt its recovery once a VM is claimed, then run until every guest runs once.

    Returns (runs, crashed hosts, seconds from the interruption to convergence or None).
    """
    proc = cluster.watchdog(watch_s=30, policy=POLICY, background=True)
    wait_for(lambda: Cluster.watching(proc), 60, interval=0.1, what="the watchdog to watch")
    cluster.lab.power(host, "crash")
    crashed = {host}
    try:
        claimed = wait_for(lambda: claims_of(host), 90, interval=0.05, what="a claim")
    except AssertionError:
        return [Cluster.finish(proc)], crashed, None
    if how == "controller":
        kill(proc)
        runs = []  # the next run waits for the dead run's lease itself
    else:
        crashed.add(claimed[0][2])
        cluster.lab.power(claimed[0][2], "crash")
        runs = [Cluster.finish(proc)]
    since = time.monotonic()
    for _attempt in range(ARGS.converge_runs):
        runs.append(cluster.watchdog(watch_s=5, policy=POLICY))
        doubles = [g for g, hosts in cluster.qemu_copies().items() if len(hosts) > 1]  # never heal by themselves
        if set(cluster.qemu_copies()) == set(cluster.guest_homes) or doubles:
            return runs, crashed, round(time.monotonic() - since, 1)
    return runs, crashed, None


def one_round(cluster, rng, counts) -> dict:
    cluster.reset()
    host = rng.choice(HOSTS)
    name, crashes, inject = pick(rng, [f for f in FAULTS if ARGS.only in f[1]])
    homes = cluster.guest_homes
    mine = {g for g, h in homes.items() if h == host}
    converged = None
    if isinstance(inject, str):
        runs, crashed, converged = interrupted(cluster, host, inject)
        mine = {g for g, h in homes.items() if h in crashed}
    else:
        injector = threading.Thread(target=inject, args=(cluster, host))
        runs = [cluster.during_watch(injector.start, watch_s=30)]
        injector.join()
        crashed = {host} if crashes else set()
    run = runs[-1]
    cluster.lab.heal()
    copies = cluster.qemu_copies()
    # A controller killed mid-recovery takes its journal's fence event with it: the BMCs' own logs count too.
    offs = cluster.bmc_power_offs()
    fenced = set().union(*(r.fenced() for r in runs)) | {h for h, n in offs.items() if n > cluster.power_offs_at_reset.get(h, 0)}
    doubles = sorted(g for g, hosts in copies.items() if len(hosts) > 1)
    lost = sorted(g for g in homes if g not in copies and (homes[g] in fenced or homes[g] not in crashed))
    counts["rounds"] += 1
    counts["false_fences"] += len(fenced - crashed)
    counts["double_starts"] += len(doubles)
    counts["lost_vms"] += len(lost)
    if crashes:
        counts["crashes"] += 1
        if crashed <= fenced and all(g in copies for g in mine):
            counts["recoveries"] += 1
        else:
            counts["missed"] += 1
    result = {"fault": name, "host": host, "rc": run.rc, "fenced": sorted(fenced), "doubles": doubles, "lost": lost,
              "rto_s": run.rto(host) if crashes else None, "converged_s": converged}
    if any(r.rc != 0 for r in runs):  # a red run is worth reading: keep its output next to the journals
        result["failed_runs"] = [keep_output(cluster, r) for r in runs if r.rc != 0]
    return result


def keep_output(cluster, run) -> str:
    path = os.path.join(cluster.workdir, "failed-run-%d.txt" % len(os.listdir(cluster.workdir)))
    with open(path, "w", encoding="utf-8") as f:
        f.write(run.output)
    return path


def heartbeat_report(cluster) -> dict:
    """Each host's record as the store has it, for a lab that did not come back healthy."""
    reader = RecordReader(config.STORE)
    report = {}
    for host in cluster.hosts:
        reading = reader.read(host)
        record = reading.record or {}
        report[host] = {"status": reading.status, "state": record.get("state"), "seq": record.get("seq"),
                        "power": cluster.lab.power(host, "status")}
    return report


ARGS = argparse.Namespace(converge_runs=5, only="")


def main() -> None:
    global ARGS  # noqa: PLW0603 - one soak per process; interrupted() reads the limit
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--converge-runs", type=int, default=5, help="runs allowed to finish an interrupted recovery")
    parser.add_argument("--only", default="", help="only the faults whose name contains this (e.g. 'mid-recovery')")
    args = ARGS = parser.parse_args()
    rng = random.Random(args.seed)
    counts = dict.fromkeys(("rounds", "crashes", "recoveries", "missed", "false_fences", "double_starts", "lost_vms",
                            "lab_rebuilds"), 0)
    cluster = Cluster(len(HOSTS), 2, tempfile.mkdtemp(prefix="kvmha-soak-"))
    deadline = time.monotonic() + args.minutes * 60
    cluster.up()
    try:
        while time.monotonic() < deadline and counts["rounds"] < args.rounds:
            try:
                result = one_round(cluster, rng, counts)
            except AssertionError as err:  # the lab did not come back healthy: say how, rebuild it, go on
                counts["lab_rebuilds"] += 1
                print(json.dumps({"lab_not_healthy": str(err), "heartbeats": heartbeat_report(cluster)}), flush=True)
                cluster.lab.down()
                cluster.up()
                continue
            print(json.dumps(result), flush=True)
    finally:
        cluster.lab.down()
    print("\n| rounds | crashes | recoveries | missed | false fences | double starts | lost VMs | lab rebuilds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("| %(rounds)d | %(crashes)d | %(recoveries)d | %(missed)d | %(false_fences)d | %(double_starts)d | %(lost_vms)d "
          "| %(lab_rebuilds)d |" % counts)


if __name__ == "__main__":
    main()
