"""Benchmark: evacuate 50 guests of one failed host onto 2-4 real libvirtds, serial against parallel, same run.

Each target is a private, isolated libvirtd (its own mount, PID and network namespace, reached over a unix socket
only) started with the vm_evacuate integration fixture
(tests/integration/targets/vm_evacuate/files/libvirtd_fixture.py, imported, not copied). The guests are tiny
QEMU TCG guests (64 MiB, 1 vCPU, no disk, no OS: SeaBIOS finds nothing to boot and idles).

For every repetition, each mode runs on a fresh store (the failed host's last record listing the guests, their
domain XML, the targets' records) with nothing defined on the targets:
  * serial:   ``parallel: 1`` (one guest started at a time);
  * parallel: the module's default ``parallel`` (that many guests started at once, on one target or several);
both with ``strategy: spread`` (otherwise best fit packs every guest onto one roomy target and there is nothing to
do in parallel), and ``beat_timeout_s: 0`` (no target's heartbeat writer runs here, so nothing would ever list the
guests: the run ends once they run, as it did before the hand-over wait existed). The order of the two modes
alternates between repetitions. The engine runs in process (``Evacuation(params).run()``, what ``main()`` runs;
Ansible's own start-up is the same for both and excluded); each run opens the failed host's owed document.
Between runs every guest is destroyed and undefined; at the end (also on failure or a signal) every libvirtd
and its guests are killed by the PIDs the fixture recorded, and the work directory is removed.

Usage (root; loopback and unix sockets only):

    .venv/bin/python benchmarks/evacuation.py [--guests 50] [--targets 3] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import build_record, encode_record, record_path, write_atomic  # noqa: E402
from ansible_collections.kvmha.cluster.plugins.module_utils._evacuation import Evacuation  # noqa: E402
from ansible_collections.kvmha.cluster.plugins.modules.vm_evacuate import ARGUMENT_SPEC  # noqa: E402

FIXTURE = os.path.join(ROOT, "tests", "integration", "targets", "vm_evacuate", "files", "libvirtd_fixture.py")
FAILED = "h1"
GUEST_MIB = 64

DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def load_fixture():
    """The integration target's libvirtd fixture, imported from its file (it is not a package)."""
    spec = importlib.util.spec_from_file_location("libvirtd_fixture", FIXTURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def guests(count: int) -> list:
    return [{"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, "kvmha-bench-evacuation/%d" % i)), "name": "bench-%02d" % i,
             "ha": True, "priority": 50, "memory_mib": GUEST_MIB, "vcpus": 1, "disks": [], "group": ""}
            for i in range(count)]


def populate(store: str, vms: list, targets: list) -> None:
    """The failed host's last record and the guests' XML, and roomy, running targets' records."""
    os.makedirs(os.path.join(store, "kvmha", "vms"))
    os.makedirs(os.path.join(store, "kvmha", "hosts"))
    for vm in vms:
        with open(os.path.join(store, "kvmha", "vms", vm["uuid"] + ".xml"), "w") as handle:
            handle.write(DOMAIN.format(name=vm["name"], uuid=vm["uuid"], mib=GUEST_MIB))
    now = time.time()
    fence = {"armed": False, "deadline_s": 60}
    records = [build_record(FAILED, "boot-bench-" + FAILED, 9, now, 2.0, fence, {"mem_free_mib": 0, "vcpus_free": 0}, vms)]
    records += [build_record(t["host"], "boot-bench-" + t["host"], 9, now, 2.0, fence,
                             {"mem_free_mib": 64 * 1024, "vcpus_free": 256}, []) for t in targets]
    for record in records:
        write_atomic(record_path(store, record["host"]), encode_record(record))


def params(store: str, targets: list, parallel) -> dict:
    values = {key: spec.get("default") for key, spec in ARGUMENT_SPEC.items()}
    values.update(failed_hosts=[FAILED], store_path=store, targets=targets, owner="bench", strategy="spread",
                  verify_timeout_s=60.0, beat_timeout_s=0.0)
    if parallel is not None:
        values["parallel"] = parallel
    return values


def clear(targets: list) -> None:
    """Destroy and undefine every domain on the targets (their disks: none)."""
    import libvirt  # pylint: disable=import-outside-toplevel  # only once the libvirtds run

    for target in targets:
        conn = libvirt.open(target["uri"])
        try:
            for dom in conn.listAllDomains():
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
        finally:
            conn.close()


def cpu_ticks() -> tuple:
    """(busy, total) jiffies of the whole machine, from /proc/stat (other users' load included)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple, after: tuple) -> float:
    """Share of the machine's CPU time (all cores) that was busy between two ``cpu_ticks``."""
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def tree_cpu(fixture, instances: str, names: list) -> dict:
    """CPU seconds (user + system, reaped children included) of every process of the private libvirtds, as
    {"qemu": the guests' QEMU processes, "libvirtd": libvirtd, its helpers and each namespace's init}."""
    tick = os.sysconf("SC_CLK_TCK")
    total = {"qemu": 0, "libvirtd": 0}
    for name in names:
        todo = [fixture.read_pid(os.path.join(fixture.instance_dir(instances, name), "init.pid"))]
        while todo:
            pid = todo.pop()
            if pid is None:
                continue
            try:
                with open("/proc/%d/stat" % pid) as handle:
                    comm, fields = handle.read().rsplit(")", 1)
            except OSError:
                continue
            kind = "qemu" if "qemu" in comm.split("(", 1)[-1] else "libvirtd"
            total[kind] += sum(int(x) for x in fields.split()[11:15])  # utime stime cutime cstime
            todo.extend(fixture.children(pid))
    return {kind: ticks / tick for kind, ticks in total.items()}


def one_run(work: str, label: str, vms: list, targets: list, parallel, fixture, instances: str) -> dict:
    store = tempfile.mkdtemp(prefix="store-%s-" % label, dir=work)
    populate(store, vms, targets)
    names = [t["host"] for t in targets]
    hosts_cpu = tree_cpu(fixture, instances, names)
    ticks = cpu_ticks()
    own = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = Evacuation(params(store, targets, parallel)).run()
    wall = time.perf_counter() - start
    busy = busy_share(ticks, cpu_ticks())
    after = resource.getrusage(resource.RUSAGE_SELF)
    evacuator_cpu = after.ru_utime - own.ru_utime + after.ru_stime - own.ru_stime
    hosts_cpu = dict((kind, value - hosts_cpu[kind]) for kind, value in tree_cpu(fixture, instances, names).items())
    if result["counts"]["started"] != len(vms) or result["opened"] != [FAILED]:
        reasons = [v["reason"] for v in result["vms"] if v["reason"]][:3]
        raise SystemExit("%s run started %d of %d guests: %s" % (label, result["counts"]["started"], len(vms), reasons))
    per_target = {}
    for vm in result["vms"]:
        per_target[vm["host"]] = per_target.get(vm["host"], 0) + 1
    t0 = result["started_at"]
    return {
        "wall": wall,
        "cpu_busy": busy,
        "evacuator_cpu": evacuator_cpu,
        "hosts_cpu": hosts_cpu,
        "elapsed": result["elapsed"],
        "placed_to_running": [vm["timestamps"]["running"] - vm["timestamps"]["placed"] for vm in result["vms"]],
        "last_running": max(vm["timestamps"]["running"] for vm in result["vms"]) - t0,
        "define_to_running": [vm["timestamps"]["running"] - vm["timestamps"]["defined"] for vm in result["vms"]],
        "per_target": per_target,
    }


def quantile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def version(cmd: list) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def machine() -> dict:
    with open("/proc/meminfo") as handle:
        mem_kib = int(next(line for line in handle if line.startswith("MemTotal:")).split()[1])
    import libvirt  # pylint: disable=import-outside-toplevel

    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "qemu": version(["qemu-system-x86_64", "--version"]),
        "libvirtd": version(["libvirtd", "--version"]),
        "libvirt_library": "%d.%d.%d" % (libvirt.getVersion() // 1000000, libvirt.getVersion() // 1000 % 1000,
                                         libvirt.getVersion() % 1000),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def _terminate(signo, _frame):
    raise SystemExit("interrupted by signal %d" % signo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--guests", type=int, default=50)
    parser.add_argument("--targets", type=int, default=3, choices=[2, 3, 4])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the raw numbers here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("evacuation benchmark: needs root (namespaces and bind mounts for the private libvirtds)")
    for tool in ("unshare", "libvirtd", "virsh", "qemu-system-x86_64", "ip"):
        if shutil.which(tool) is None:
            raise SystemExit("evacuation benchmark: %s not found (make setup)" % tool)
    for signo in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signo, _terminate)

    fixture = load_fixture()
    default_parallel = ARGUMENT_SPEC["parallel"]["default"]
    work = tempfile.mkdtemp(prefix="kvmha-bench-evacuation.")
    instances = os.path.join(work, "libvirtd")
    runs = {"serial": [], "parallel": []}
    facts = {}
    try:
        os.makedirs(instances)
        targets = []
        for i in range(args.targets):
            host = "h%d" % (i + 2)
            started = fixture.start(instances, host)
            targets.append({"host": host, "uri": started["uri"]})
            print("libvirtd %s ready" % host, file=sys.stderr)
        facts = machine()
        vms = guests(args.guests)
        for rep in range(args.repeat):
            order = [("serial", 1), ("parallel", None)]
            if rep % 2:
                order.reverse()
            for label, parallel in order:
                clear(targets)
                run = one_run(work, label, vms, targets, parallel, fixture, instances)
                runs[label].append(run)
                print("rep %d %-8s %.2f s (per target %s)" % (rep + 1, label, run["wall"], run["per_target"]), file=sys.stderr)
        ticks = cpu_ticks()
        time.sleep(10)
        facts["idle_guests_cpu_busy"] = round(busy_share(ticks, cpu_ticks()), 3)  # all guests up, nothing else of ours
        clear(targets)
        ticks = cpu_ticks()
        time.sleep(5)
        facts["no_guests_cpu_busy"] = round(busy_share(ticks, cpu_ticks()), 3)
        facts["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        try:
            stopped = fixture.stop_all(instances)  # kills each libvirtd's PID namespace: its guests die with it
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print("stopped %s; removed %s" % (", ".join(stopped) or "nothing", work), file=sys.stderr)

    serial = statistics.median(r["wall"] for r in runs["serial"])
    rows = []
    for label, parallel in (("serial", 1), ("parallel", default_parallel)):
        walls = [r["wall"] for r in runs[label]]
        p2r = [x for r in runs[label] for x in r["placed_to_running"]]
        last = [r["last_running"] for r in runs[label]]
        rows.append((label, parallel, statistics.median(walls), min(walls), max(walls), statistics.median(walls) / serial,
                     statistics.median(p2r), quantile(p2r, 0.9), max(p2r), statistics.median(last),
                     sum(len(r["placed_to_running"]) for r in runs[label]) / sum(r["wall"] for r in runs[label]),
                     statistics.median(r["cpu_busy"] for r in runs[label]),
                     statistics.median(r["evacuator_cpu"] for r in runs[label]),
                     statistics.median(r["hosts_cpu"]["libvirtd"] for r in runs[label]) / args.guests,
                     statistics.median(r["hosts_cpu"]["qemu"] for r in runs[label]) / args.guests))
    # Each repetition runs both modes back to back: their ratio cancels most of the drift of a shared machine's load.
    paired = [p["wall"] / s["wall"] for s, p in zip(runs["serial"], runs["parallel"])]
    cpu_per_guest = statistics.median(r["hosts_cpu"]["qemu"] + r["hosts_cpu"]["libvirtd"]
                                      for r in runs["serial"] + runs["parallel"]) / args.guests
    print("machine: %s" % json.dumps(facts))
    print("%d guests of %d MiB, %d targets, %d repetitions, strategy spread" % (args.guests, GUEST_MIB, args.targets, args.repeat))
    print("| mode | `parallel` | wall, median | min-max | ratio vs serial | placed->running, median | p90 | max "
          "| last guest running after start, median | guests/s | machine CPU busy | evacuator CPU "
          "| CPU per guest: libvirtd | QEMU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, parallel, med, low, high, ratio, p50, p90, pmax, last, rate, busy, own, per_libvirtd, per_qemu in rows:
        print("| %s | %d | %.2f s | %.2f-%.2f s | %.2f | %.2f s | %.2f s | %.2f s | %.2f s | %.1f | %.0f %% | %.2f s | %.3f s "
              "| %.3f s |" % (label, parallel, med, low, high, ratio, p50, p90, pmax, last, rate, busy * 100, own,
                              per_libvirtd, per_qemu))
    print("paired ratios (parallel/serial, per repetition): %s; median %.2f"
          % (", ".join("%.2f" % r for r in paired), statistics.median(paired)))
    chain = -(-args.guests // args.targets)  # guests on the busiest target
    per_guest = rows[0][2] / args.guests  # serial wall per guest
    floor = args.guests * cpu_per_guest / facts["nproc"]
    print("CPU floor: %d guests x %.3f CPU-s (libvirtd + QEMU) / %d cores = %.1f s; serial start chain per target: "
          "%d guests x %.2f s = %.1f s" % (args.guests, cpu_per_guest, facts["nproc"], floor, chain, per_guest, chain * per_guest))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": facts, "args": vars(args), "runs": runs}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
