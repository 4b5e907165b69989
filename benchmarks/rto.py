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

--interval other than the default 2 s redeploys the writers with that heartbeat interval first (the watchdog
reads each host's interval from its record).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "e2e")]

from cluster import Cluster  # noqa: E402  the end-to-end harness drives the lab

PHASES = ("detect", "investigate", "fence", "place", "start")
DEFAULT_INTERVAL = 2.0  # heartbeat_writer_interval, the role default the lab deploys


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


LAYOUTS = {  # name -> (hosts, guests per host, BMC delay per power request in ms)
    "lab": (3, 2, 0),
    "second": (3, 4, 400),  # more VMs per host, a slower BMC still within the 2 s probe budget
}


def one_run(cluster: Cluster, bmc_delay_ms: int = 0) -> dict:
    cluster.reset()
    for host in cluster.hosts if bmc_delay_ms else ():  # the harness's lab has pyghmi BMCs only
        cluster.lab.fault(host, "bmc-slow", bmc_delay_ms)
    crashed = []
    run = cluster.during_watch(lambda: crashed.append(time.time()) or cluster.lab.power("h1", "crash"))
    crashed = crashed[0]
    record = run.incidents["h1"]
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
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="lab",
                        help="lab: 3 hosts x 2 guests; second: 3 hosts x 4 guests, BMCs 400 ms late on every power request")
    args = parser.parse_args()
    hosts, guests, bmc_delay_ms = LAYOUTS[args.layout]
    cluster = Cluster(hosts, guests, tempfile.mkdtemp(prefix="kvmha-rto-"))
    cluster.up()
    try:
        if args.interval != DEFAULT_INTERVAL:
            cluster.ansible_playbook("deploy.yml", "-e", json.dumps({"heartbeat_writer_interval": args.interval}))
            cluster.wait_all_alive()
        rows = []
        for number in range(1, args.runs + 1):
            rows.append(one_run(cluster, bmc_delay_ms))
            print("run %2d: %s" % (number, "  ".join("%s %.2f" % (k, v) for k, v in rows[-1].items())), flush=True)
    finally:
        cluster.lab.down()
    print("\n| phase | median | max |\n|---|---:|---:|")
    for phase in PHASES + ("total", "probes_early"):
        values = [row[phase] for row in rows]
        print("| %s | %.2f s | %.2f s |" % (phase, statistics.median(values), max(values)))
    chart(rows, args.chart, args.interval)
    print("\nchart: %s" % args.chart)


if __name__ == "__main__":
    main()
