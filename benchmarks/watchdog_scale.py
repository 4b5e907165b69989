"""Benchmark: the watchdog's healthy path at 10, 100 and 1000 hypervisors, against a naive per-host check.

For each size, in the same run:
  * a simulator keeps every simulated host's heartbeat record advancing on a temporary store (one process,
    bounded: it stops with the benchmark);
  * the watchdog playbook (kvmha.cluster.watchdog, one observation, no watch window) runs against an inventory of
    that many hosts: wall time and the peak RSS of the largest process of the ansible-playbook process tree;
  * the naive approach - an ad-hoc `ansible -m ping` of every inventory host - runs against the same inventory.
    Its hosts use the local connection, the cheapest transport there is; over SSH it would cost more.
Ratios are against the 10-host watchdog and against the naive check measured in the same run. Usage:

    .venv/bin/python benchmarks/watchdog_scale.py [--sizes 10 100 1000] [--repeat 3]
    .venv/bin/python benchmarks/watchdog_scale.py --sizes 10 1000 --ratio-turns 5   # the ratio alone, sizes in turns
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import (  # noqa: E402
    build_record,
    encode_record,
    record_path,
    write_atomic,
)

INTERVAL = 2.0
BIN = os.path.join(ROOT, ".venv", "bin")


class Simulator:
    """Keeps N records advancing every INTERVAL seconds until stopped (a thread; bounded by stop())."""

    def __init__(self, store: str, hosts: list, interval: float = INTERVAL):
        self.store = store
        self.hosts = hosts
        self.interval = interval
        self.seq = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        os.makedirs(os.path.join(store, "kvmha", "hosts"), exist_ok=True)

    def beat(self, seq: int) -> None:
        for host in self.hosts:
            # Each record carries its own write time, as a writer's does: one time for all 1000 drifted past the
            # skew allowance on a loaded machine, and the run reported (and journalled) hundreds of clock_skew hosts.
            record = build_record(host, "boot-" + host, seq, time.time(), self.interval, {"armed": False, "deadline_s": 60},
                                  {"mem_free_mib": 65536, "vcpus_free": 32}, [])
            write_atomic(record_path(self.store, host), encode_record(record))

    def next_beat(self) -> None:
        with self.lock:
            self.seq += 1
            self.beat(self.seq)

    def loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.next_beat()

    def __enter__(self):
        self.next_beat()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()


def inventory(path: str, store: str, hosts: list) -> None:
    members = {h: {"kvmha_private_ip": "127.0.0.1", "kvmha_bmc_address": "127.0.0.1", "kvmha_bmc_username": "x",
                   "kvmha_bmc_password": "x", "kvmha_libvirt_uri": "test:///default"} for h in hosts}
    doc = {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "kvmha_store_path": store, "kvmha_cluster": "bench"},
        "children": {"kvm_hosts": {"hosts": members}},
    }}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)


# Runs a command and prints the peak RSS (KiB) of the largest process of its tree: RUSAGE_CHILDREN of a fresh
# process covers exactly that command's descendants (our own RUSAGE_CHILDREN would keep the peak of earlier runs).
PEAK_RSS = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=sys.stderr).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def timed(cmd: list, env: dict) -> tuple:
    """Run cmd; return (wall seconds, peak RSS MiB of the largest process of its tree)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, *cmd], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=1800, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit("%s failed (rc %s):\n%s" % (" ".join(cmd[:3]), proc.returncode, proc.stderr[-3000:]))
    return wall, int(proc.stdout.split()[-1]) / 1024


def commands(size: int, tmp: str) -> tuple:
    """The store, the environment and the watchdog and naive commands of a cluster of ``size`` hosts."""
    hosts = ["hv%04d" % i for i in range(size)]
    store = os.path.join(tmp, "store-%d" % size)
    inv = os.path.join(tmp, "inventory-%d.json" % size)
    inventory(inv, store, hosts)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), KVMHA_JOURNAL_DIR=os.path.join(tmp, "journal"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"), ANSIBLE_FORKS="20")
    watchdog = [os.path.join(BIN, "ansible-playbook"), "-i", inv, os.path.join(ROOT, "playbooks", "watchdog.yml"),
                "-e", "kvmha_watch_s=0"]
    naive = [os.path.join(BIN, "ansible"), "-i", inv, "kvm_hosts", "-m", "ansible.builtin.ping"]
    return hosts, store, env, watchdog, naive


def measure_ratio(sizes: list, turns: int, tmp: str) -> dict:
    """The healthy run alone, the sizes in turns (a slower minute of the machine falls on every size), ``turns`` runs
    of each: records written once with a 600 s interval, so that none turns stale however long the runs take."""
    runs: dict = {size: [] for size in sizes}
    prepared = {size: commands(size, tmp) for size in sizes}
    for hosts, store, _env, _watchdog, _naive in prepared.values():
        Simulator(store, hosts, interval=600.0).next_beat()  # one beat, no thread
    for _turn in range(turns):
        for size, (_hosts, _store, env, watchdog, _naive) in prepared.items():
            runs[size].append(timed(watchdog, env)[0])
    return {size: statistics.median(walls) for size, walls in runs.items()}


def measure(size: int, repeat: int, tmp: str) -> dict:
    hosts, store, env, watchdog, naive = commands(size, tmp)
    runs = {"watchdog": [], "naive": []}
    with Simulator(store, hosts) as simulator:
        time.sleep(INTERVAL + 0.5)
        for _round in range(repeat):
            # Measured: while the naive check of 1000 hosts keeps both cores busy, one beat of 1000 records takes the
            # simulator 26-34 s, and the healthy run that follows found hundreds of hosts stale. Every healthy run
            # starts from fresh records; the simulator keeps them fresh while it runs.
            simulator.next_beat()
            runs["watchdog"].append(timed(watchdog, env))
            runs["naive"].append(timed(naive, env))
    return {name: (statistics.median(r[0] for r in values), max(r[1] for r in values)) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ratio-turns", type=int, default=0,
                        help="measure only the healthy run's ratio to the first size: this many runs of each size, "
                             "in turns, against fixed records")
    args = parser.parse_args()
    if args.ratio_turns:
        with tempfile.TemporaryDirectory(prefix="kvmha-scale-") as tmp:
            medians = measure_ratio(args.sizes, args.ratio_turns, tmp)
        base = medians[args.sizes[0]]
        print(" ".join("%d hosts: %.2f s (x %.2f)" % (size, wall, wall / base) for size, wall in medians.items()))
        return
    with tempfile.TemporaryDirectory(prefix="kvmha-scale-") as tmp:
        results = {size: measure(size, args.repeat, tmp) for size in args.sizes}
    base = results[args.sizes[0]]["watchdog"][0]
    print("| hosts | watchdog (healthy run) | x %d-host | peak RSS | naive ping of every host | naive / watchdog |" % args.sizes[0])
    print("|---:|---:|---:|---:|---:|---:|")
    for size, result in results.items():
        (wd, wd_rss), nv = result["watchdog"], result["naive"][0]
        print("| %d | %.2f s | %.2f | %.0f MiB | %.2f s | %.1f |" % (size, wd, wd / base, wd_rss, nv, nv / wd))


if __name__ == "__main__":
    main()
