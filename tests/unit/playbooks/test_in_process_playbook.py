# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ipmi_power, cluster_lease and vm_evacuate delegated to the controller run in the controller's process, as the
watchdog uses them, and as a module run when the task has an ``environment`` of its own - run for real by
ansible-playbook (the BMC is a closed UDP port on loopback: each read fails after its 0.2 s deadline, the same either
way; the store is a temporary directory)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
READ = {"address": "127.0.0.1", "port": 9, "username": "admin", "state": "status", "deadline_s": 0.2}


def playbook(tmp_path, tasks):
    """The output of ``ansible-playbook -vvv`` running ``tasks`` on a host reached over SSH (a closed port: a task not
    delegated to the controller would fail)."""
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"hv1": {
        "ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_connection": "ssh", "ansible_python_interpreter": sys.executable}}}}))
    path = tmp_path / "playbook.yml"
    path.write_text(json.dumps([{"hosts": "hv1", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-vvv", "-i", str(inventory), str(path)], capture_output=True, text=True,
                          env=env, cwd=str(tmp_path), check=False, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def between(output, first, then):
    return output.split("TASK [%s]" % first)[1].split("TASK [%s]" % then)[0]


def test_a_power_read_delegated_to_the_controller_runs_in_its_process_unless_the_task_sets_an_environment(tmp_path):
    tasks = [{"name": "In process", "kvmha.cluster.ipmi_power": dict(READ, password="pw"), "delegate_to": "localhost",
              "ignore_errors": True, "register": "in_process"},
             {"name": "As a module", "kvmha.cluster.ipmi_power": READ, "delegate_to": "localhost",
              "environment": {"KVMHA_BMC_PASSWORD": "pw"}, "ignore_errors": True, "register": "as_a_module"},
             {"name": "Both failed alike", "ansible.builtin.assert": {"that": [
                 "in_process.error_kind == as_a_module.error_kind == 'timeout'",
                 "in_process.msg == as_a_module.msg"]}}]
    output = playbook(tmp_path, tasks)
    assert "AnsiballZ_ipmi_power" not in between(output, "In process", "As a module")
    assert "AnsiballZ_ipmi_power" in between(output, "As a module", "Both failed alike")


def test_the_lease_and_the_recovery_run_in_the_controllers_process_deprecated_aliases_reported(tmp_path):
    store = str(tmp_path / "store")
    os.mkdir(store)
    lease = {"store_path": store, "cluster": "lab", "owner": "run-1"}
    tasks = [{"name": "Take the lease", "kvmha.cluster.cluster_lease": lease, "delegate_to": "localhost", "register": "taken"},
             {"name": "Recover nothing", "kvmha.cluster.vm_evacuate": {
                 "store_path": store, "cluster": "lab", "targets": [], "owner": "run-1", "store_timeout": 3,
                 "lease": {"cluster": "lab", "generation": "{{ taken.lease.generation }}", "ttl": 30}},
              "delegate_to": "localhost", "register": "recovered"},
             {"name": "Release the lease", "kvmha.cluster.cluster_lease": dict(lease, state="released"), "delegate_to": "localhost",
              "environment": {"LANG": "C.UTF-8"}, "register": "released"},
             {"name": "All done", "ansible.builtin.assert": {"that": [
                 "taken.acquired and taken.changed", "recovered.owed == {}", "not recovered.changed", "released.changed"]}}]
    output = playbook(tmp_path, tasks)
    assert "AnsiballZ" not in output.split("TASK [Release the lease]")[0], "the lease and the recovery ran as modules"
    assert "AnsiballZ_cluster_lease" in between(output, "Release the lease", "All done")
    assert "[DEPRECATION WARNING]: Alias 'store_timeout' is deprecated" in output
