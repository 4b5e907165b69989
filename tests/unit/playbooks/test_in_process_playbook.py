# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ipmi_power delegated to the controller runs in the controller's process, as the watchdog's power reads and fences
use it, and as a module run when the task has an ``environment`` of its own - run for real by ansible-playbook (the
BMC is a closed UDP port on loopback: each read fails after its 0.2 s deadline, the same either way)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
READ = {"address": "127.0.0.1", "port": 9, "username": "admin", "state": "status", "deadline_s": 0.2}


def test_a_power_read_delegated_to_the_controller_runs_in_its_process_unless_the_task_sets_an_environment(tmp_path):
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"hv1": {
        "ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_connection": "ssh", "ansible_python_interpreter": sys.executable}}}}))
    tasks = [{"name": "In process", "kvmha.cluster.ipmi_power": dict(READ, password="pw"), "delegate_to": "localhost",
              "ignore_errors": True, "register": "in_process"},
             {"name": "As a module", "kvmha.cluster.ipmi_power": READ, "delegate_to": "localhost",
              "environment": {"KVMHA_BMC_PASSWORD": "pw"}, "ignore_errors": True, "register": "as_a_module"},
             {"name": "Both failed alike", "ansible.builtin.assert": {"that": [
                 "in_process.error_kind == as_a_module.error_kind == 'timeout'",
                 "in_process.msg == as_a_module.msg"]}}]
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(json.dumps([{"hosts": "hv1", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-vvv", "-i", str(inventory), str(playbook)], capture_output=True, text=True,
                          env=env, cwd=str(tmp_path), check=False, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    in_process, as_a_module = output.split("TASK [In process]")[1].split("TASK [As a module]")
    assert "AnsiballZ_ipmi_power" not in in_process, in_process
    assert "AnsiballZ_ipmi_power" in as_a_module.split("TASK [Both failed alike]")[0], as_a_module
