# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""When ipmi_power's action plugin runs the module in the controller's process, and when as a module run."""

from __future__ import annotations

import pytest

from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.connection.local import Connection as LocalConnection
from ansible.plugins.connection.ssh import Connection as SshConnection

from ansible_collections.kvmha.cluster.plugins.action.ipmi_power import ActionModule
from ansible_collections.kvmha.cluster.plugins.module_utils import _ipmi

ARGS = {"address": "192.0.2.10", "username": "admin", "password": "pw", "state": "status"}


def way(connection=LocalConnection, environment=({},), become=False, async_val=0) -> str:
    """Which way the plugin runs a status read: "in process" or "module"."""
    task = Task()
    task.action, task.args, task.environment, task.async_val = "kvmha.cluster.ipmi_power", dict(ARGS), list(environment), async_val
    context = PlayContext()
    context.become = become
    action = ActionModule(task, connection=connection(context), play_context=context, loader=None, templar=None)
    action._execute_module = lambda *args, **kwargs: {"way": "module"}
    action._remove_tmp_path = lambda *args, **kwargs: None
    return action.run(task_vars={}).get("way", "in process")


@pytest.fixture(autouse=True)
def no_bmc(monkeypatch):
    def refuse(*args):
        raise _ipmi.pyghmi_exceptions.IpmiException("no BMC in this test")
    monkeypatch.setattr(_ipmi, "_pyghmi_login", refuse)


def test_a_task_delegated_to_the_controller_runs_in_process():
    assert way() == "in process"
    assert way(environment=()) == "in process"  # no environment at all


@pytest.mark.parametrize("why, kwargs", [
    ("another host", {"connection": SshConnection}),
    ("an environment of its own", {"environment": ({"KVMHA_BMC_PASSWORD": "pw"},)}),
    ("privilege escalation", {"become": True}),
    ("async", {"async_val": 30}),
])
def test_any_other_task_runs_the_module(why, kwargs):
    assert way(**kwargs) == "module", why
