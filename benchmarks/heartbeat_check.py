"""Benchmark: one kvm_heartbeat check over 10, 100 and 1000 heartbeat files.

Measures, for each store size, in the same run:
  * module time: one ``state=check`` read of the whole store (the healthy path of every watchdog run), in process;
  * watch sample: one further sample while watching (records unchanged, so served from the stat cache);
  * process: the module run as Ansible runs it (a fresh Python process with its arguments file): wall time and
    peak RSS of that process.
Ratios are against the 10-host store measured in the same run. Usage:

    .venv/bin/python benchmarks/heartbeat_check.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import (  # noqa: E402
    build_record,
    encode_record,
    record_path,
    write_atomic,
)
from ansible_collections.kvmha.cluster.plugins.modules.kvm_heartbeat import ARGUMENT_SPEC, HeartbeatCheck  # noqa: E402

MODULE = os.path.join(ROOT, "plugins", "modules", "kvm_heartbeat.py")
VMS_PER_HOST = 5


def populate(store: str, hosts: int) -> None:
    os.makedirs(os.path.join(store, "kvmha", "hosts"), exist_ok=True)
    now = time.time()
    for i in range(hosts):
        host = "hv%04d" % i
        vms = [
            {"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, "%s-%d" % (host, v))), "name": "%s-vm%d" % (host, v), "ha": True,
             "priority": 50, "memory_mib": 2048, "vcpus": 2, "disks": ["%s/images/%s-vm%d.qcow2" % (store, host, v)], "group": ""}
            for v in range(VMS_PER_HOST)
        ]
        record = build_record(host, "boot-" + host, 1, now, 2.0, {"armed": False, "deadline_s": 60},
                              {"mem_free_mib": 65536, "vcpus_free": 32}, vms)
        write_atomic(record_path(store, host), encode_record(record))


def params(store: str) -> dict:
    values = {key: spec.get("default") for key, spec in ARGUMENT_SPEC.items()}
    values.update(store_path=store)
    return values


def in_process(store: str, repeat: int) -> tuple:
    cold, warm = [], []
    for _round in range(repeat):
        check = HeartbeatCheck(params(store))
        start = time.perf_counter()
        result = check.run()
        cold.append(time.perf_counter() - start)
        assert result["observer_ok"] and not result["suspects"], result["observer_reason"]
        start = time.perf_counter()
        check.run()
        warm.append(time.perf_counter() - start)
    return statistics.median(cold), statistics.median(warm)


# Runs the module file as its own __main__ (as AnsiballZ does), then reports the process's peak RSS on stderr.
_RUNNER = """
import resource, runpy, sys
sys.argv = sys.argv[1:]  # the module reads its arguments file from argv[1]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
sys.stderr.write("%d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def as_ansible_runs_it(store: str, repeat: int, detail: str) -> tuple:
    """Run the module in a fresh interpreter; return (median wall seconds, peak RSS MiB)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".collections"))
    walls, peaks = [], []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as args:
        json.dump({"ANSIBLE_MODULE_ARGS": {"store_path": store, "detail": detail}}, args)
    try:
        for _round in range(repeat):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", _RUNNER, MODULE, args.name], capture_output=True, env=env,
                                  timeout=120, check=True)
            walls.append(time.perf_counter() - start)
            assert json.loads(proc.stdout)["observer_ok"]
            peaks.append(int(proc.stderr) / 1024)
    finally:
        os.unlink(args.name)
    return statistics.median(walls), max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-") as tmp:
        for hosts in (10, 100, 1000):
            store = os.path.join(tmp, str(hosts))
            populate(store, hosts)
            cold, warm = in_process(store, args.repeat)
            full = as_ansible_runs_it(store, args.repeat, "full")
            compact = as_ansible_runs_it(store, args.repeat, "suspects")
            rows.append((hosts, cold, warm, full, compact))
    base = rows[0]
    print("| hosts | module time (read+judge all) | x 10-host | watch sample (cached) "
          "| process, detail=full | peak RSS | process, detail=suspects | x 10-host | peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for hosts, cold, warm, full, compact in rows:
        print("| %d | %.1f ms | %.1f | %.2f ms | %.0f ms | %.1f MiB | %.0f ms | %.2f | %.1f MiB |"
              % (hosts, cold * 1e3, cold / base[1], warm * 1e3, full[0] * 1e3, full[1], compact[0] * 1e3,
                 compact[0] / base[4][0], compact[1]))


if __name__ == "__main__":
    main()
