"""Benchmark: time to recovery (RTO) of a crashed hypervisor on the lab, at default settings, by phase.

Runs scenario 1 of the matrix N times on a 3-host lab: a healthy cluster, the watchdog watching, h1 crashed
(frozen, links down, BMC on); then reads the phases off the incident record:

    detect       crash -> the watchdog sees h1 stale          (heartbeat 2 s x 3 misses, by the reader's clock)
    investigate  -> verdict (BMC, SSH, neighbours, disk activity, all in parallel; the decision)
    fence        -> power-off confirmed by the BMC
    place        -> the first VM placed (fenced mark written, targets connected, claims)
    start        -> the last VM verified running on its new host

and how long before the detection the read-only probes started (probes_early: at h1's first missed beat). Two
layouts: the lab's (3 hosts x 2 guests) and a second shape (3 hosts x 4 guests, every pyghmi BMC 400 ms late on each
power read and command - slower, but within the 2 s probe budget).

Prints a table (median and max per phase) and writes a PNG chart of the phase breakdown. Usage (root; it takes
the lab for itself and leaves it down):

    .venv/bin/python benchmarks/rto.py [--runs 10] [--chart docs/rto.png] [--interval 2] [--layout lab|second]
                                        [--host h1] [--pacemaker 5] [--token 1000]

--host h2 crashes a host that does not observe (the first host of the group observes, so any other host's crash is
the common case) in the kvmha.cluster runs, --any-second included; the Pacemaker runs always crash h1.

--interval other than the default 2 s redeploys the writers with that heartbeat interval first (the watchdog
reads each host's interval from its record).

--pacemaker N (5 by default, 0 for none) adds the baseline, side by side in the same run: after the kvmha.cluster
runs, the same lab is made a stock Pacemaker 2.1 + corosync 3 cluster (lab/pacemaker.py: fence_ipmilan on the same
BMCs, stonith-action=off, VirtualDomain per guest, corosync's totem.token --token ms, 1000 by default: the tuned
Pacemaker of issue 17) and h1 crashes N more times. Both systems are also timed by the same observer, the lab's own
view of the qemu processes: from the crash to the last of h1's guests running on another host (`observed`), so the
ratio does not rest on either system's word. Each Pacemaker phase comes from the survivors' journals (node lost,
fencing requested, fencing confirmed, first start initiated, last start ok).

--any-second N measures a crash at any second instead of one 0.5 s into a watch: the watchdog runs back to back
as the watchdog_service role runs it (no pause, a --watch window, 20 s by default), and h1 (or --host) crashes N times at a
uniformly random moment of one cycle of that schedule (--seed; the cycle is the length of the first run after each
reset). Each crash is noted as falling inside a watch (a kvm_heartbeat of the run was running) or in the gap
between two; the table gives p50/p95/max of the RTO and of detection, for all crashes and for each kind. It stops
after --max-minutes with the crashes it has:

    .venv/bin/python benchmarks/rto.py --any-second 20 [--watch 20] [--seed 1] [--max-minutes 60]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "e2e")]

PHASES = ("detect", "investigate", "fence", "place", "start")
DEFAULT_INTERVAL = 2.0  # heartbeat_writer_interval, the role default the lab deploys
WRITE_TIMEOUT_S = 1.5  # heartbeat_writer_write_timeout, the role default


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


LAYOUTS = {  # name -> (hosts, guests per host, BMC delay per power request in ms)
    "lab": (3, 2, 0),
    "second": (3, 4, 400),  # more VMs per host, a slower BMC still within the 2 s probe budget
}


def one_run(cluster, bmc_delay_ms: int = 0, host: str = "h1") -> dict:
    cluster.reset()
    slow_bmcs(cluster, bmc_delay_ms)
    observer = Restarts(cluster, host)
    run = cluster.during_watch(observer.crash)
    return dict(phases(run, observer.crashed, host), observed=observer.wait(60))


def slow_bmcs(cluster, bmc_delay_ms: int) -> None:
    for host in cluster.hosts if bmc_delay_ms else ():  # the harness's lab has pyghmi BMCs only
        cluster.lab.fault(host, "bmc-slow", bmc_delay_ms)


class Restarts:
    """The lab's own view of a recovery, the same for every system: from the crash of ``host`` to the moment the
    last of its guests has a qemu process on another host (polled every 0.1 s)."""

    def __init__(self, cluster, host: str):
        self.cluster, self.host = cluster, host
        self.guests = sorted(g for g, home in cluster.guest_homes.items() if home == host)
        self.crashed = None
        self.seen = {}
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def crash(self) -> None:
        self.crashed = time.time()
        self.cluster.lab.power(self.host, "crash")
        self.thread.start()

    def _poll(self) -> None:
        deadline = time.monotonic() + 300
        while len(self.seen) < len(self.guests) and time.monotonic() < deadline:
            now, copies = time.time(), self.cluster.qemu_copies()
            for guest in self.guests:
                if guest not in self.seen and set(copies.get(guest, ())) - {self.host}:
                    self.seen[guest] = now
            time.sleep(0.1)

    def wait(self, timeout: float) -> float:
        """Seconds from the crash to the last guest running elsewhere."""
        self.thread.join(timeout)
        if len(self.seen) < len(self.guests):
            raise SystemExit("not every guest of %s ran again within %g s: %s" % (self.host, timeout, self.seen))
        return max(self.seen.values()) - self.crashed


def phases(run, crashed: float, host: str = "h1") -> dict:
    """The phases of ``host``'s recovery by ``run``, from its incident record, counted from the crash."""
    record = run.incidents[host]
    if run.rc != 0 or record["verdict"] != "SUSPECT":
        raise SystemExit("run failed:\n" + run.explain())
    marks = {k: ts(v) for k, v in record["timestamps"].items()}
    vms = [vm for vm in record["vms"] if vm["status"] == "started"]
    placed = min(vm["timestamps"]["placed"] for vm in vms)
    running = max(vm["timestamps"]["running"] for vm in vms)
    return {
        "detect": marks["detected"] - crashed,
        "investigate": marks["investigated"] - marks["detected"],
        "fence": marks["fenced"] - marks["investigated"],
        "place": placed - marks["fenced"],
        "start": running - placed,
        "total": running - crashed,
        "probes_early": marks["detected"] - marks.get("probes_started", marks["detected"]),  # overlaps detect
    }


# --------------------------------------------------------------------------------------------------- Pacemaker


def pacemaker_run(cluster, homes: dict) -> dict:
    """One crash of h1 under the Pacemaker baseline (already started), then h1 back on and every guest home."""
    from cluster import wait_for
    from lab import pacemaker

    pacemaker.wait_home(cluster.hosts, homes, timeout=300)
    survivors = [h for h in cluster.hosts if h != "h1"]
    observer = Restarts(cluster, "h1")
    observer.crash()
    observed = observer.wait(120)

    def recorded():  # a start is logged once VirtualDomain returns, after the qemu process the observer saw
        entries = [entry for host in survivors for entry in pacemaker.journal(host, observer.crashed - 1)]
        marks, started = pacemaker.incident_marks(entries, "h1")
        return (marks, started) if set(started) == set(observer.guests) else None

    marks, started = wait_for(recorded, 60, interval=0.5, what="the survivors' journals to record every start")
    cluster.lab.power("h1", "on")  # fenced: off; it rejoins at boot and its guests move home (wait_home, next run)
    return pacemaker_phases(marks, started, observer.crashed, observed, observer.guests)


def pacemaker_runs(cluster, count: int, token_ms, bmc_delay_ms: int) -> list:
    from lab import pacemaker

    cluster.reset()  # every guest once at home, no marks: then the same lab becomes the Pacemaker cluster
    slow_bmcs(cluster, bmc_delay_ms)
    homes = cluster.guest_homes
    pacemaker.start(cluster.hosts, cluster.lab.status()["guests"], token_ms)
    rows = []
    for number in range(1, count + 1):
        rows.append(pacemaker_run(cluster, homes))
        print("pacemaker %2d: %s" % (number, "  ".join("%s %.2f" % (k, v) for k, v in rows[-1].items())), flush=True)
    return rows


def pacemaker_phases(marks: dict, started: dict, crashed: float, observed: float, guests: list) -> dict:
    """The baseline's phases in the terms of ``phases``: declared -> fencing requested -> confirmed -> started."""
    missing = [m for m in ("declared", "fence_requested", "fenced", "start_initiated") if m not in marks]
    if missing or set(started) != set(guests):
        raise SystemExit("the Pacemaker journals miss %s (started: %s)" % (missing, sorted(started)))
    return {
        "detect": marks["declared"] - crashed,
        "investigate": marks["fence_requested"] - marks["declared"],
        "fence": marks["fenced"] - marks["fence_requested"],
        "place": marks["start_initiated"] - marks["fenced"],
        "start": max(started.values()) - marks["start_initiated"],
        "total": max(started.values()) - crashed,
        "observed": observed,
    }


def side_by_side(systems: dict) -> list:
    """Markdown lines: per system, the observed RTO of each run and the median of every phase."""
    lines = ["| system | observed RTO per run (s) | observed median | " + " | ".join(PHASES) + " | own total |",
             "|---|---|---:|" + "---:|" * (len(PHASES) + 1)]
    for name, rows in systems.items():
        if not rows:
            continue
        med = {key: statistics.median(row[key] for row in rows) for key in PHASES + ("total", "observed")}
        lines.append("| %s | %s | %.2f s | %s | %.2f s |" % (
            name, ", ".join("%.1f" % row["observed"] for row in rows), med["observed"],
            " | ".join("%.2f s" % med[p] for p in PHASES), med["total"]))
    return lines


# --------------------------------------------------------------------------------------------------- any second


def crash_offset(rng: random.Random, cycle_s: float) -> float:
    """When to crash, in seconds after a run starts: any moment of one cycle of the schedule, equally likely."""
    return rng.uniform(0.0, cycle_s)


def percentile(values: list, q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least q % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def any_second_table(trials: list) -> list:
    """Markdown lines: p50/p95/max of the RTO and of detection, for every crash and by where it fell."""
    lines = ["| crashes | n | RTO p50 | RTO p95 | RTO max | detect p50 | detect p95 | detect max |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, chosen in (("all", trials), ("in a watch", [t for t in trials if t["where"] == "watch"]),
                          ("in the gap", [t for t in trials if t["where"] == "gap"])):
        if not chosen:
            lines.append("| %s | 0 | | | | | | |" % label)
            continue
        cells = ["%.2f s" % f(t[key] for t in chosen) for key in ("total", "detect")
                 for f in (lambda v: percentile(list(v), 50), lambda v: percentile(list(v), 95), max)]
        lines.append("| %s | %d | %s |" % (label, len(chosen), " | ".join(cells)))
    return lines


class BackToBack:
    """Watchdog runs one after the other without a pause, as the watchdog_service role runs them (one thread)."""

    def __init__(self, cluster, watch_s: float):
        self.cluster = cluster
        self.watch_s = watch_s
        self.started, self.finished = [], []  # each run's start (time.time()), each finished WatchdogRun
        self.current = None  # the Popen of the run in progress
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            proc = self.cluster.watchdog(watch_s=self.watch_s, background=True)
            self.current = proc
            self.started.append(proc.kvmha[1])
            self.finished.append(self.cluster.finish(proc))

    def incident(self, host: str):
        """The finished run that recorded ``host``'s incident, or None."""
        return next((run for run in self.finished if host in run.incidents), None)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()  # the run in progress ends with its window: no run is killed
        self.thread.join()


def any_second_trial(cluster, rng: random.Random, watch_s: float, timeout: float, host: str = "h1") -> dict:
    """Crash ``host`` at a random moment of the back-to-back schedule; its phases, where it fell and when."""
    from cluster import Cluster, wait_for  # the lab harness: imported where the lab is used, so the rest is testable

    cluster.reset()
    with BackToBack(cluster, watch_s) as loop:
        wait_for(lambda: len(loop.finished) >= 1 and len(loop.started) >= 2, watch_s + 120, what="a first whole run")
        first = loop.finished[0]
        cycle = loop.started[1] - first.started  # one run and the start of the next: the schedule's period
        offset = crash_offset(rng, cycle)
        time.sleep(max(0.0, loop.started[1] + offset - time.time()))
        where = "watch" if Cluster.watching(loop.current) else "gap"
        crashed = time.time()
        cluster.lab.power(host, "crash")
        run = wait_for(lambda: loop.incident(host), timeout, interval=0.5, what="the incident record of %s" % host)
    return dict(phases(run, crashed, host), where=where, offset=offset, cycle=cycle)


def any_second(cluster, count: int, watch_s: float, seed: int, max_minutes: float, host: str = "h1") -> list:
    rng = random.Random(seed)
    deadline = time.monotonic() + max_minutes * 60
    trials = []
    for number in range(1, count + 1):
        if time.monotonic() > deadline:
            print("stopping after %d crashes: --max-minutes %g is up" % (len(trials), max_minutes), flush=True)
            break
        trials.append(any_second_trial(cluster, rng, watch_s, timeout=3 * (watch_s + 30), host=host))
        t = trials[-1]
        print("crash %2d: %5.1f s into a %4.1f s cycle, in the %-5s  detect %.2f  total %.2f"
              % (number, t["offset"], t["cycle"], t["where"], t["detect"], t["total"]), flush=True)
    return trials


def chart(rows: list, path: str, interval: float = DEFAULT_INTERVAL) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    bottom = [0.0] * len(rows)
    for phase in PHASES:
        values = [row[phase] for row in rows]
        ax.bar(range(1, len(rows) + 1), values, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.axhline(10, color="grey", linestyle="--", linewidth=1, label="goal: median 10 s")
    ax.set_xlabel("run")
    ax.set_ylabel("seconds from crash")
    ax.set_title("kvmha.cluster: crash to last VM running, by phase (lab, %g s beats x 3 misses)" % interval)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the bars, never over them
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--chart", default=os.path.join(ROOT, "docs", "rto.png"))
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="the writers' heartbeat interval (s)")
    parser.add_argument("--any-second", type=int, default=0, metavar="N", help="N crashes at random moments of a back-to-back schedule")
    parser.add_argument("--watch", type=float, default=20.0, help="with --any-second: each run's watch window (s)")
    parser.add_argument("--seed", type=int, default=1, help="with --any-second: the seed of the crash moments")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="with --any-second: stop after this long")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="lab",
                        help="lab: 3 hosts x 2 guests; second: 3 hosts x 4 guests, BMCs 400 ms late on every power request")
    parser.add_argument("--pacemaker", type=int, default=5, metavar="N",
                        help="then N crashes under the Pacemaker baseline on the same lab, side by side (0: none)")
    parser.add_argument("--host", default="h1", choices=["h1", "h2", "h3"],
                        help="the host the kvmha.cluster runs crash (--any-second too): h1 observes (its row of the play "
                             "beside the watch is the watch itself), h2 and h3 do not")
    parser.add_argument("--token", type=int, default=1000,
                        help="with --pacemaker: corosync's totem.token in ms (0: corosync's default, 3000)")
    args = parser.parse_args()
    from cluster import Cluster  # the end-to-end harness drives the lab

    hosts, guests, bmc_delay_ms = LAYOUTS[args.layout]
    cluster = Cluster(hosts, guests, tempfile.mkdtemp(prefix="kvmha-rto-"))
    cluster.up()
    token = "%d ms" % args.token if args.token else "3000 ms, corosync's default"
    rows, baseline = [], []
    systems = {"kvmha.cluster": rows, "Pacemaker (token %s)" % token: baseline}
    try:
        if args.interval != DEFAULT_INTERVAL:
            writer = {"heartbeat_writer_interval": args.interval,  # the role wants the write timeout within a beat
                      "heartbeat_writer_write_timeout": min(WRITE_TIMEOUT_S, args.interval)}
            cluster.ansible_playbook("deploy.yml", "-e", json.dumps(writer))
            cluster.wait_all_alive()
        if args.any_second:
            trials = any_second(cluster, args.any_second, args.watch, args.seed, args.max_minutes, args.host)
            print("\n" + "\n".join(any_second_table(trials)))
            return
        for number in range(1, args.runs + 1):
            rows.append(one_run(cluster, bmc_delay_ms, args.host))
            print("run %2d: %s" % (number, "  ".join("%s %.2f" % (k, v) for k, v in rows[-1].items())), flush=True)
        if args.pacemaker:
            baseline.extend(pacemaker_runs(cluster, args.pacemaker, args.token or None, bmc_delay_ms))
    finally:
        cluster.lab.down()
    if rows:
        print("\n| phase | median | max |\n|---|---:|---:|")
        for phase in PHASES + ("total", "probes_early", "observed"):
            values = [row[phase] for row in rows]
            print("| %s | %.2f s | %.2f s |" % (phase, statistics.median(values), max(values)))
        chart(rows, args.chart, args.interval)
        print("\nchart: %s" % args.chart)
    if baseline:
        print("\n" + "\n".join(side_by_side(systems)))


if __name__ == "__main__":
    main()
