"""Benchmark: `kvmha.cluster.status` on the synthetic store of 10, 100 and 1000 hypervisors (goal: 1000 in <= 3 s).

The store is built as for benchmarks/watchdog_scale.py (records written with the collection's own build_record and
write_atomic), with what a cluster that has seen trouble also holds: five HA VMs per host, 1 % of the hosts fenced with
an open owed document, 1 % in maintenance, and one journal incident record per fenced host. Records are written once
and then age (status reads them, it does not watch them). For each size:

  * `ansible-playbook kvmha.cluster.status` (text, the tables) and with `-e kvmha_status_format=json`: wall time,
    median of --repeat runs, and the peak RSS of the largest process of its tree;
  * the module's own work in process (read_snapshot + build_status + render_text): median time.

    .venv/bin/python benchmarks/status_scale.py [--sizes 10 100 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".collections"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks, _recovery, _status  # noqa: E402
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import (  # noqa: E402
    build_record,
    encode_record,
    record_path,
    write_atomic,
)
from watchdog_scale import BIN, inventory, timed  # noqa: E402

VMS_PER_HOST = 5
OWNER = "watchdog/bench/1"


def build_store(store: str, journal: str, hosts: list) -> None:
    os.makedirs(os.path.join(store, "kvmha", "hosts"), exist_ok=True)
    os.makedirs(os.path.join(journal, "incidents"), exist_ok=True)
    now = time.time()
    troubled = max(1, len(hosts) // 100)
    for index, host in enumerate(hosts):
        vms = [{"uuid": str(uuid.uuid4()), "name": "%s-g%d" % (host, i), "ha": True, "priority": (index + i) % 101,
                "memory_mib": 1024, "vcpus": 2, "disks": ["/srv/store/images/%s-g%d.img" % (host, i)], "group": ""}
               for i in range(VMS_PER_HOST)]
        record = build_record(host, "boot-" + host, 1, now, 2.0, {"armed": False, "deadline_s": 60},
                              {"mem_free_mib": 65536, "vcpus_free": 32}, vms)
        write_atomic(record_path(store, host), encode_record(record))
        if index < troubled:  # fenced, with an open owed document and a journal incident
            old = now - 3600
            os.utime(record_path(store, host), (old, old))
            _marks.set_mark(store, _marks.FENCED, host, OWNER, {"verdict": "SUSPECT", "rule": "R8", "vms": [vm["uuid"] for vm in vms]})
            document = _recovery.new_document(host, "bench", "inc", "SUSPECT", "R8", vms, now, OWNER)
            _recovery.OwedBook(store, OWNER).open(host, document)
            incident = {"kind": "kvmha.incident", "host": host, "verdict": "SUSPECT", "rule": "R8",
                        "heartbeat": {"boot_id": "boot-" + host}, "timestamps": {"detected": "2026-12-03T10:00:00.000+00:00"}}
            name = "20261203T100000Z-0123456789ab-%s.json" % host
            with open(os.path.join(journal, "incidents", name), "w", encoding="utf-8") as stream:
                json.dump(incident, stream)
        elif index < 2 * troubled:
            _marks.set_mark(store, _marks.MAINTENANCE, host, "bench", {"reason": "firmware"}, ttl=86400)


def in_process(store: str, journal: str, hosts: list, repeat: int) -> float:
    times = []
    for _round in range(repeat):
        start = time.perf_counter()
        snapshot = _status.read_snapshot(store, "bench", hosts, journal, journal)
        _status.render_text(_status.build_status(snapshot))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(size: int, repeat: int, tmp: str) -> dict:
    hosts = ["hv%04d" % i for i in range(size)]
    store, journal = os.path.join(tmp, "store-%d" % size), os.path.join(tmp, "journal-%d" % size)
    inv = os.path.join(tmp, "inventory-%d.json" % size)
    build_store(store, journal, hosts)
    inventory(inv, store, hosts)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), KVMHA_JOURNAL_DIR=journal,
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"))
    env.pop("KVMHA_METRICS_FILE", None)
    playbook = [os.path.join(BIN, "ansible-playbook"), "-i", inv, os.path.join(ROOT, "playbooks", "status.yml")]
    runs = {"text": [], "json": []}
    for _round in range(repeat):
        runs["text"].append(timed(playbook, env))
        runs["json"].append(timed(playbook + ["-e", "kvmha_status_format=json"], env))
    result = {name: (statistics.median(r[0] for r in values), max(r[1] for r in values)) for name, values in runs.items()}
    result["module"] = in_process(store, journal, hosts, repeat)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvmha-status-") as tmp:
        results = {size: measure(size, args.repeat, tmp) for size in args.sizes}
    print("| hosts | HA VMs | status (text) | peak RSS | status (json) | module work in process |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size, result in results.items():
        (text, rss), (as_json, _rss) = result["text"], result["json"]
        print("| %d | %d | %.2f s | %.0f MiB | %.2f s | %.0f ms |" % (size, size * VMS_PER_HOST, text, rss, as_json, result["module"] * 1000))


if __name__ == "__main__":
    main()
