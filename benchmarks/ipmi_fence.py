"""Benchmark: IPMI power status and fencing (off + confirmation) - ipmi_power vs fence_ipmilan vs ipmitool.

Starts one standalone BMC simulator (lab/bmc.py) on 127.0.0.1 and measures, in the same run, REPEAT times each,
interleaved (the order of the tools rotates every repetition):

  status
    * ipmi_power via ansible-playbook  - a one-task playbook, as a user runs it (wall time of the whole command;
                                         the module's own ``elapsed`` is reported beside it)
    * ipmi_power module_utils          - PowerOperation in a fresh Python process (wall), and the call alone
    * fence_ipmilan --lanplus -o status
    * ipmitool -I lanplus -C 3 power status
    * ansible.builtin.ping in the same playbook shape - Ansible's own floor, for reference
  off, confirmed (the chassis is switched back on through the simulator's state file before every sample)
    * ipmi_power state=off confirm=2   - success means two consecutive reads said off
    * fence_ipmilan --lanplus -o off   - fence_ipmilan's own confirmation
    * ipmitool power off               - sends the command only, NO confirmation (for reference)

Then it counts, over --wakeup-runs processes of --wakeup-requests status requests each, how many requests stall
on pyghmi's lost wake-up with pyghmi's stock wait and with fix_pyghmi_lost_wakeup (see _ipmi.py). And, over
--after-dead-rounds rounds of 4 processes, how a live BMC answers right after a login to a dead one (a bound UDP port
that never answers) was given up: in the same process, or each BMC in a process of its own (_own_process.py).

Every "off" sample is checked: the simulator's state must read off afterwards, or the run aborts. Medians are
reported with min-max, and ratios against fence_ipmilan's median of the same operation. Nothing here is a test:
tests never assert times. Usage (needs fence-agents and ipmitool; loopback only):

    .venv/bin/python benchmarks/ipmi_fence.py [--repeat 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
USER = "admin"
PASSWORD = "bench-pw-1"

RAW = textwrap.dedent(
    """
    import json, sys, time
    started = time.monotonic()
    from ansible_collections.kvmha.cluster.plugins.module_utils._ipmi import IpmiClient
    from ansible_collections.kvmha.cluster.plugins.module_utils._power import PowerOperation
    imported = time.monotonic()
    client = IpmiClient(address=sys.argv[1], port=int(sys.argv[2]), username=sys.argv[3], password=sys.argv[4])
    result = PowerOperation(client, sys.argv[5], confirm=2, timeout=10).run()
    result["import_s"] = imported - started
    result["call_s"] = time.monotonic() - imported
    print(json.dumps(result))
    """
)

# N Get Chassis Status requests on one session, with pyghmi's stock wait or with our lost-wake-up fix.
WAKEUP = textwrap.dedent(
    """
    import json, sys, time
    from ansible_collections.kvmha.cluster.plugins.module_utils import _ipmi
    if sys.argv[5] == "fixed":
        assert _ipmi.fix_pyghmi_lost_wakeup()
    started = time.monotonic()
    session = _ipmi._pyghmi_login(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], None)
    login = time.monotonic() - started
    times = []
    for _ in range(int(sys.argv[6])):
        started = time.monotonic()
        session.raw_command(netfn=0, command=1)
        times.append(time.monotonic() - started)
    print(json.dumps({"login": login, "requests": times}))
    """
)

# A login to a BMC that never answers, given up at its deadline (pyghmi's thread goes on retrying it), then a live BMC:
# its login and three status reads, in the same process ("one process") or each BMC in a child of its own, as
# host_fence's devices and vm_evacuate's several reads are ("own process"). Live times, or the error.
AFTER_DEAD = textwrap.dedent(
    """
    import json, sys, time
    from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import Deadline
    from ansible_collections.kvmha.cluster.plugins.module_utils._errors import KvmhaError
    from ansible_collections.kvmha.cluster.plugins.module_utils._ipmi import IpmiClient
    from ansible_collections.kvmha.cluster.plugins.module_utils._own_process import CHILD_GRACE_S, call_in_own_process
    port, dead_port, user, password, variant, dead_s = sys.argv[1:7]
    def isolated(call, seconds, what):
        return call() if variant == "one process" else call_in_own_process(call, seconds + CHILD_GRACE_S, what)
    def dead():
        IpmiClient("127.0.0.1", user, password, port=int(dead_port)).connect(Deadline(float(dead_s)))
    def live():
        started = time.monotonic()
        deadline = Deadline(4)
        client = IpmiClient("127.0.0.1", user, password, port=int(port))
        client.connect(deadline)
        times = {"login": time.monotonic() - started, "reads": []}
        for _ in range(3):
            started = time.monotonic()
            client.power_state(deadline)
            times["reads"].append(time.monotonic() - started)
        return times
    try:
        isolated(dead, float(dead_s), "the dead BMC")
    except KvmhaError:
        pass
    try:
        print(json.dumps(isolated(live, 4, "the live BMC")))
    except KvmhaError as error:
        print(json.dumps({"error": str(error)}))
    """
)

PLAYBOOK = textwrap.dedent(
    """
    - name: ipmi_power benchmark
      hosts: localhost
      connection: local
      gather_facts: false
      vars:
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
      tasks:
        - name: Start of the ipmi_power task
          ansible.builtin.set_fact:
            bench_t0: "{{ now().timestamp() }}"
        - name: ipmi_power
          kvmha.cluster.ipmi_power:
            address: "{{ bmc_address }}"
            port: "{{ bmc_port }}"
            username: "{{ bmc_user }}"
            state: "{{ bmc_state }}"
            confirm: 2
            deadline_s: 10
          register: bench_result
        - name: End of the ipmi_power task
          ansible.builtin.set_fact:
            bench_t1: "{{ now().timestamp() }}"
        - name: Report
          ansible.builtin.debug:
            msg:
              task_s: "{{ (bench_t1 | float) - (bench_t0 | float) }}"
              elapsed: "{{ bench_result.elapsed }}"
              fenced: "{{ bench_result.fenced }}"
    """
)


# Ansible's own floor: the same playbook shape with a do-nothing module instead of ipmi_power.
PING_PLAYBOOK = textwrap.dedent(
    """
    - name: Ansible floor
      hosts: localhost
      connection: local
      gather_facts: false
      vars:
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
      tasks:
        - name: Start of the ping task
          ansible.builtin.set_fact:
            bench_t0: "{{ now().timestamp() }}"
        - name: ping
          ansible.builtin.ping:
        - name: End of the ping task
          ansible.builtin.set_fact:
            bench_t1: "{{ now().timestamp() }}"
        - name: Report
          ansible.builtin.debug:
            msg:
              task_s: "{{ (bench_t1 | float) - (bench_t0 | float) }}"
    """
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict:
    env = dict(os.environ)
    env.update(
        HOME=os.path.join(ROOT, ".cache", "home"),
        ANSIBLE_HOME=os.path.join(ROOT, ".cache", "ansible"),
        ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
        PYTHONPATH=os.path.join(ROOT, ".collections"),
        KVMHA_BMC_PASSWORD=PASSWORD,
        IPMI_PASSWORD=PASSWORD,
        PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + env.get("PATH", ""),
    )
    for name in ("HOME", "ANSIBLE_HOME"):
        os.makedirs(env[name], exist_ok=True)
    return env


class Bench:
    def __init__(self, work: str, repeat: int):
        self.work = work
        self.repeat = repeat
        self.env = environment()
        self.port = free_port()
        self.state_file = os.path.join(work, "state")
        self.playbook = os.path.join(work, "bench.yml")
        with open(self.playbook, "w", encoding="utf-8") as f:
            f.write(PLAYBOOK)
        self.ping_playbook = os.path.join(work, "ping.yml")
        with open(self.ping_playbook, "w", encoding="utf-8") as f:
            f.write(PING_PLAYBOOK)
        password_file = os.path.join(work, "password")
        with open(password_file, "w", encoding="utf-8") as f:
            f.write(PASSWORD + "\n")
        self.bmc = subprocess.Popen(  # pylint: disable=consider-using-with
            [PYTHON, "-m", "lab.bmc", "--address", "127.0.0.1", "--port", str(self.port), "--user", USER,
             "--password-file", password_file, "--state-file", self.state_file],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.bmc.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit("the BMC simulator did not start: %r" % line)
        self.samples: dict = {}

    def close(self):
        self.bmc.terminate()
        self.bmc.wait(10)

    # ---------------------------------------------------------------------------------------------- state

    def set_state(self, state: str) -> None:
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(state + "\n")
        os.replace(tmp, self.state_file)

    def state(self) -> str:
        with open(self.state_file, encoding="utf-8") as f:
            return f.read().strip()

    # ---------------------------------------------------------------------------------------------- tools

    def run(self, argv: list) -> tuple[float, str]:
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=self.work, check=False,
                              timeout=60)
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit("%s failed (rc=%d): %s %s" % (
                argv[0], done.returncode, done.stdout[-500:], done.stderr[-500:]))
        return wall, done.stdout

    def ansible(self, state: str | None) -> dict:
        """``state=None``: the ping playbook (Ansible's floor)."""
        tree = os.path.join(self.work, "tree")
        shutil.rmtree(tree, ignore_errors=True)
        self.env["ANSIBLE_CALLBACK_TREE_DIR"] = tree  # the tree callback writes each host's last result there
        if state is None:
            argv = ["ansible-playbook", "-i", "localhost,", self.ping_playbook]
        else:
            argv = ["ansible-playbook", "-i", "localhost,", self.playbook,
                    "-e", "bmc_address=127.0.0.1 bmc_port=%d bmc_user=%s bmc_state=%s" % (self.port, USER, state)]
        wall, _out = self.run(argv)
        with open(os.path.join(tree, "localhost"), encoding="utf-8") as f:
            report = json.load(f)["msg"]  # the last task's result
        sample = {"wall": wall, "task": float(report["task_s"])}
        if state is not None:
            sample.update(module=float(report["elapsed"]), fenced=report["fenced"] in (True, "True", "true"))
        return sample

    def raw(self, state: str) -> dict:
        wall, out = self.run([PYTHON, "-c", RAW, "127.0.0.1", str(self.port), USER, PASSWORD, state])
        result = json.loads(out)
        return {"wall": wall, "module": result["elapsed"], "call": result["call_s"], "fenced": result["fenced"]}

    def fence_ipmilan(self, action: str) -> dict:
        wall, _out = self.run(["fence_ipmilan", "--lanplus", "-a", "127.0.0.1", "-u", str(self.port), "-l", USER,
                               "-p", PASSWORD, "-o", action])
        return {"wall": wall}

    def ipmitool(self, action: str) -> dict:
        wall, _out = self.run(["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(self.port),
                               "-U", USER, "-E", "power", action])
        return {"wall": wall}

    def wakeup(self, variant: str, requests: int) -> dict:
        _wall, out = self.run([PYTHON, "-c", WAKEUP, "127.0.0.1", str(self.port), USER, PASSWORD, variant,
                               str(requests)])
        return json.loads(out)

    def measure_wakeup(self, runs: int, requests: int) -> dict:
        """Logins and requests slower than 0.2 s (pyghmi's retry timer is 0.5-1 s), stock wait vs fixed."""
        found: dict = {"stock": {"logins": [], "requests": []}, "fixed": {"logins": [], "requests": []}}
        for run in range(runs):
            for variant in rotate(["stock", "fixed"], run):
                sample = self.wakeup(variant, requests)
                found[variant]["logins"].append(sample["login"])
                found[variant]["requests"].extend(sample["requests"])
        summary_rows = {}
        for variant, times in found.items():
            requests_ = times["requests"]
            logins = times["logins"]
            summary_rows[variant] = {
                "logins": len(logins), "logins_stalled": sum(1 for t in logins if t > 0.2),
                "login_median_ms": round(statistics.median(logins) * 1000, 3),
                "requests": len(requests_), "stalled": sum(1 for t in requests_ if t > 0.2),
                "stalled_s": round(sum(t for t in requests_ if t > 0.2), 3),
                "median_ms": round(statistics.median(requests_) * 1000, 3), "max_s": round(max(requests_), 3)}
        return summary_rows

    def measure_after_dead(self, rounds: int) -> dict:
        """A live BMC right after a dead one's abandoned login, in one process or each BMC in its own: 4 processes at
        a time (both variants, dead logins given up after 1-4 s), ``rounds`` times."""
        found: dict = {"one process": [], "own process": []}
        with socket.socket(type=socket.SOCK_DGRAM) as sink:  # bound and never read: a BMC that died
            sink.bind(("127.0.0.1", 0))
            argv = [PYTHON, "-c", AFTER_DEAD, str(self.port), str(sink.getsockname()[1]), USER, PASSWORD]
            for round_ in range(rounds):
                dead_s = [str(1 + (round_ + i) % 4) for i in range(2)]
                runs = [(variant, subprocess.Popen(argv + [variant, seconds], stdout=subprocess.PIPE, text=True,
                                                   env=self.env, cwd=self.work))
                        for variant in rotate(list(found), round_) for seconds in dead_s]
                for variant, process in runs:
                    out, _err = process.communicate(timeout=60)
                    found[variant].append(json.loads(out))
        return dict((variant, after_dead_row(samples)) for variant, samples in found.items())

    # ---------------------------------------------------------------------------------------------- runs

    def record(self, name: str, sample: dict) -> None:
        self.samples.setdefault(name, []).append(sample)

    def measure(self) -> None:
        status = [
            ("status: ipmi_power via ansible-playbook", lambda: self.ansible("status")),
            ("status: ipmi_power module_utils (process)", lambda: self.raw("status")),
            ("status: fence_ipmilan -o status", lambda: self.fence_ipmilan("status")),
            ("status: ipmitool power status", lambda: self.ipmitool("status")),
            ("reference: ansible.builtin.ping via ansible-playbook", lambda: self.ansible(None)),
        ]
        off = [
            ("off+confirm: ipmi_power via ansible-playbook", lambda: self.ansible("off")),
            ("off+confirm: ipmi_power module_utils (process)", lambda: self.raw("off")),
            ("off+confirm: fence_ipmilan -o off", lambda: self.fence_ipmilan("off")),
            ("off (no confirm): ipmitool power off", lambda: self.ipmitool("off")),
        ]
        for rep in range(self.repeat):
            for name, func in rotate(status, rep):
                self.set_state("on")
                self.record(name, func())
            for name, func in rotate(off, rep):
                self.set_state("on")
                sample = func()
                if name.startswith("off") and not name.startswith("off (no"):
                    if self.state() != "off":
                        raise SystemExit("%s left the chassis %s" % (name, self.state()))
                if "fenced" in sample and sample["fenced"] is not True:
                    raise SystemExit("%s did not report fenced" % name)
                self.record(name, sample)
            print("repetition %d/%d done" % (rep + 1, self.repeat), file=sys.stderr)


def rotate(items: list, by: int) -> list:
    by %= len(items)
    return items[by:] + items[:by]


def median(samples: list, key: str) -> float:
    return statistics.median(s[key] for s in samples)


def summary(samples: dict) -> list[dict]:
    rows = []
    baseline = {
        "status": median(samples["status: fence_ipmilan -o status"], "wall"),
        "off": median(samples["off+confirm: fence_ipmilan -o off"], "wall"),
    }
    for name, values in samples.items():
        walls = [s["wall"] for s in values]
        kind = "off" if name.startswith("off") else "status"
        row = {
            "name": name,
            "n": len(values),
            "median_s": statistics.median(walls),
            "min_s": min(walls),
            "max_s": max(walls),
            "ratio_vs_fence_ipmilan": None if name.startswith("reference") else statistics.median(walls) / baseline[kind],
        }
        if "module" in values[0] and values[0]["module"] is not None:
            row["module_elapsed_median_s"] = median(values, "module")
        if "task" in values[0]:
            row["task_median_s"] = median(values, "task")
            row["task_ratio_vs_fence_ipmilan"] = (None if name.startswith("reference")
                                                  else row["task_median_s"] / baseline[kind])
        if "call" in values[0]:
            row["call_median_s"] = median(values, "call")
        rows.append(row)
    return rows


def machine() -> dict:
    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
        except OSError:
            return "n/a"
        return ((out.stdout or out.stderr).strip().splitlines() or ["n/a"])[0]

    cpu = "n/a"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import pyghmi.version  # pylint: disable=import-outside-toplevel
    import ansible.release  # pylint: disable=import-outside-toplevel

    return {
        "cpu": "%s x%d" % (cpu, os.cpu_count() or 0),
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "ansible-core": ansible.release.__version__,
        "pyghmi": pyghmi.version.version_info.version_string(),
        "ipmitool": first_line(["ipmitool", "-V"]).replace("ipmitool version ", ""),
        "load average at the end": " ".join(os.getloadavg().__repr__().strip("()").split(", ")),
        "fence-agents": first_line(["dpkg-query", "-W", "-f", "${Version}", "fence-agents"]),
    }


def after_dead_row(samples: list) -> dict:
    logins = [sample["login"] for sample in samples if "login" in sample]
    return {"runs": len(samples), "unanswered": sum(1 for sample in samples if "error" in sample),
            "logins_late": sum(1 for t in logins if t > 0.2), "login_median_ms": round(statistics.median(logins) * 1000, 1),
            "login_max_s": round(max(logins), 3)}


def after_dead_markdown(after_dead: dict) -> str:
    lines = ["| a live BMC after a dead one's abandoned login | live logins > 0.2 s | login median | login max | "
             "never answered |", "|---|---:|---:|---:|---:|"]
    for variant, row in after_dead.items():
        lines.append("| %s | %d of %d | %.1f ms | %.3f s | %d |" % (
            "in the same process" if variant == "one process" else "each BMC in a process of its own",
            row["logins_late"], row["runs"], row["login_median_ms"], row["login_max_s"], row["unanswered"]))
    return "\n".join(lines)


def wakeup_markdown(wakeup: dict) -> str:
    lines = ["| pyghmi wait | logins stalled > 0.2 s | login median | requests stalled > 0.2 s | time lost in "
             "stalled requests | request median | request max |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for variant, row in wakeup.items():
        lines.append("| %s | %d of %d | %.1f ms | %d of %d | %.3f s | %.3f ms | %.3f s |" % (
            "stock pyghmi 1.6.19" if variant == "stock" else "with fix_pyghmi_lost_wakeup",
            row["logins_stalled"], row["logins"], row["login_median_ms"], row["stalled"], row["requests"],
            row["stalled_s"], row["median_ms"], row["max_s"]))
    return "\n".join(lines)


def ratio(value) -> str:
    return "-" if value is None else "%.2f" % value


def markdown(rows: list[dict], facts: dict, repeat: int) -> str:
    lines = [
        "| operation | median (wall) | min-max | ratio vs fence_ipmilan | module `elapsed` (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        module = row.get("module_elapsed_median_s")
        lines.append("| %s | %.3f s | %.3f-%.3f s | %s | %s |" % (
            row["name"], row["median_s"], row["min_s"], row["max_s"], ratio(row["ratio_vs_fence_ipmilan"]),
            "%.3f s" % module if module is not None else "-"))
        if "task_median_s" in row:
            lines.append("| %s - the task alone, inside the playbook | %.3f s | | %s | |" % (
                row["name"], row["task_median_s"], ratio(row["task_ratio_vs_fence_ipmilan"])))
    lines.append("")
    lines.append("%d repetitions each, interleaved. Machine: %s" % (repeat, "; ".join(
        "%s %s" % (k, v) for k, v in facts.items())))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the samples and summary as JSON")
    parser.add_argument("--wakeup-runs", type=int, default=30,
                        help="processes per variant for the pyghmi wake-up measurement (0: skip it)")
    parser.add_argument("--wakeup-requests", type=int, default=100, help="status requests per process")
    parser.add_argument("--after-dead-rounds", type=int, default=16,
                        help="rounds of 4 processes for the live-BMC-after-a-dead-one measurement (0: skip it)")
    args = parser.parse_args()
    for tool in ("fence_ipmilan", "ipmitool"):
        if shutil.which(tool) is None:
            raise SystemExit("%s not found (apt-get install fence-agents ipmitool)" % tool)
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-ipmi.") as work:
        bench = Bench(work, args.repeat)
        try:
            bench.measure()
            wakeup = bench.measure_wakeup(args.wakeup_runs, args.wakeup_requests) if args.wakeup_runs else {}
            after_dead = bench.measure_after_dead(args.after_dead_rounds) if args.after_dead_rounds else {}
        finally:
            bench.close()
    rows = summary(bench.samples)
    facts = machine()
    if args.json:
        print(json.dumps({"machine": facts, "summary": rows, "wakeup": wakeup, "after_dead": after_dead,
                          "samples": bench.samples}, indent=2))
    else:
        print(markdown(rows, facts, args.repeat))
        if wakeup:
            print()
            print(wakeup_markdown(wakeup))
        if after_dead:
            print()
            print(after_dead_markdown(after_dead))
    return 0


if __name__ == "__main__":
    sys.exit(main())
