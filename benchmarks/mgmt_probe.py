"""Benchmark (issue 17): the management probe of a host that never answers, old against new, in the same run.

The suspect's management address is a listener on 127.0.0.1 that accepts and never says anything (what a frozen
host behind a live TCP stack, or a client whose SYNs are dropped, sees: no SSH banner). playbooks/tasks/probe.yml
runs for real on that one suspect (its BMC a closed port on 127.0.0.1), alternately:
  * old: ``kvmha_mgmt_direct: false`` - the login alone (``ansible.builtin.ping`` over SSH, task timeout 2 x
    probe_timeout_s = 4 s), what every suspect got before;
  * new: the default - ``mgmt_probe`` (two connections of probe_timeout_s / 2), the login skipped.
Each sample is the time of the management tasks inside the playbook (a small callback times every task), and the
number of ``fatal:`` lines the run printed. Loopback only. Usage:

    .venv/bin/python benchmarks/mgmt_probe.py [--repeat 5]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.loopback_tcp import Server  # noqa: E402

PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")
# Times every task of the run (a task's time runs until the next task starts) into $TASKTIME_OUT.
CALLBACK = """
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "tasktime"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.last, self.name, self.rows = time.perf_counter(), "start", []

    def _mark(self, name):
        now = time.perf_counter()
        self.rows.append((now - self.last, self.name))
        self.last, self.name = now, name

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._mark(task.get_name())

    def v2_playbook_on_stats(self, stats):
        self._mark("end")
        with open(os.environ["TASKTIME_OUT"], "w") as out:
            out.writelines("%.3f %s\\n" % row for row in self.rows)
"""


def run(tmp: pathlib.Path, port: int, direct: bool) -> tuple:
    """One probe.yml run; (seconds in the management tasks, fatal: lines printed, rc)."""
    (tmp / "store").mkdir()
    (tmp / "cb").mkdir()
    (tmp / "cb" / "tasktime.py").write_text(CALLBACK)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    suspect = {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_connection": "ssh", "ansible_user": "nobody",
               "ansible_python_interpreter": sys.executable, "kvmha_mgmt_direct": direct, "kvmha_bmc_address": "127.0.0.1",
               "kvmha_bmc_port": 9, "kvmha_bmc_username": "u", "kvmha_bmc_password": "p",
               # what tasks/probe_plan.yml leaves to ask of a suspect the watch asked nothing of
               "kvmha_probe": {"power": True, "banner": direct, "login": not direct, "disk": True}}
    groups = {"kvmha_suspects": {"hosts": {"hv1": suspect}}, "kvmha_probers": {"hosts": {"hv1": {}}}, "kvmha_neighbors": {"hosts": {}}}
    (tmp / "inventory.json").write_text(json.dumps({"all": {"children": groups, "hosts": {"localhost": local}}}))
    policy = {"probe_timeout_s": 2, "activity_window_s": 0.1, "store_timeout_s": 5}
    (tmp / "probe.yml").write_text(json.dumps([{
        "name": "Probe", "hosts": "kvmha_probers", "gather_facts": False, "strategy": "ansible.builtin.free",
        "vars": {"kvmha_store": str(tmp / "store"), "kvmha_observer": "localhost", "kvmha_ping_targets": [],
                 "kvmha_observation": {"disk_samples": {}}, "kvmha_policy_effective": policy},
        "tasks": [{"name": "Probe", "ansible.builtin.import_tasks": str(ROOT / "playbooks" / "tasks" / "probe.yml")}]}]))
    times = tmp / "tasktime.txt"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp / "journal"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_PLUGINS=str(tmp / "cb"),
               ANSIBLE_CALLBACKS_ENABLED="kvmha.cluster.journal,tasktime", TASKTIME_OUT=str(times))
    done = subprocess.run([PLAYBOOK, "-i", str(tmp / "inventory.json"), str(tmp / "probe.yml")], capture_output=True, text=True,
                          env=env, cwd=str(tmp), timeout=120, check=False)
    rows = [line.split(None, 1) for line in times.read_text().splitlines()]
    return sum(float(t) for t, name in rows if name.startswith("Ask the suspect")), done.stdout.count("fatal:"), done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    silent = Server(None)
    samples = {True: [], False: []}
    try:
        for i in range(args.repeat):
            for direct in (True, False) if i % 2 == 0 else (False, True):
                with tempfile.TemporaryDirectory(prefix="kvmha-mgmt-") as tmp:
                    samples[direct].append(run(pathlib.Path(tmp), silent.port, direct))
    finally:
        silent.stop()
    for direct, label in ((False, "old: login only (task timeout 4 s)"), (True, "new: banner first (2 x 1 s), no login")):
        got = samples[direct]
        print("%s: median %.2f s (%s); fatal: lines per run %s; rc %s" % (
            label, statistics.median(g[0] for g in got), ", ".join("%.2f" % g[0] for g in got), [g[1] for g in got], [g[2] for g in got]))


if __name__ == "__main__":
    main()
