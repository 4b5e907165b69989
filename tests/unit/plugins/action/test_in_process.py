# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""When an action plugin runs its module in the controller's process, and when as a module run; what the in-process run
reports of the options as AnsibleModule would (deprecated aliases, spec rules)."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleActionFail
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.connection.local import Connection as LocalConnection
from ansible.plugins.connection.ssh import Connection as SshConnection

from ansible_collections.kvmha.cluster.plugins.action import cluster_lease, ipmi_power, vm_evacuate
from ansible_collections.kvmha.cluster.plugins.module_utils import _ipmi

PLUGINS = {
    "ipmi_power": (ipmi_power.ActionModule, {"address": "192.0.2.10", "username": "admin", "password": "pw", "state": "status"}),
    "cluster_lease": (cluster_lease.ActionModule, {"store_path": "/nonexistent", "cluster": "lab", "owner": "run-1"}),
    "vm_evacuate": (vm_evacuate.ActionModule, {"store_path": "/nonexistent", "cluster": "lab"}),
}


def way(name, connection=LocalConnection, environment=({},), become=False, async_val=0) -> str:
    """Which way the plugin runs its task: "in process" or "module"."""
    plugin, args = PLUGINS[name]
    task = Task()
    task.action, task.args = "kvmha.cluster." + name, dict(args)
    task.environment, task.async_val = list(environment), async_val
    context = PlayContext()
    context.become = become
    action = plugin(task, connection=connection(context), play_context=context, loader=None, templar=None)
    action._execute_module = lambda *args, **kwargs: {"way": "module"}
    action._remove_tmp_path = lambda *args, **kwargs: None
    return action.run(task_vars={}).get("way", "in process")


@pytest.fixture(autouse=True)
def no_bmc(monkeypatch):
    def refuse(*args):
        raise _ipmi.pyghmi_exceptions.IpmiException("no BMC in this test")
    monkeypatch.setattr(_ipmi, "_pyghmi_login", refuse)


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_a_task_delegated_to_the_controller_runs_in_process(name):
    assert way(name) == "in process"
    assert way(name, environment=()) == "in process"  # no environment at all


@pytest.mark.parametrize("name", sorted(PLUGINS))
@pytest.mark.parametrize("why, kwargs", [
    ("another host", {"connection": SshConnection}),
    ("an environment of its own", {"environment": ({"KVMHA_BMC_PASSWORD": "pw"},)}),
    ("privilege escalation", {"become": True}),
    ("async", {"async_val": 30}),
])
def test_any_other_task_runs_the_module(name, why, kwargs):
    assert way(name, **kwargs) == "module", why


@pytest.mark.parametrize("name, import_error", [
    ("ipmi_power", "PYGHMI_IMPORT_ERROR"),
    ("vm_evacuate", "LIBVIRT_IMPORT_ERROR"),
    ("vm_evacuate", "PYGHMI_IMPORT_ERROR"),  # its power checks
])
def test_a_module_whose_library_does_not_import_here_runs_as_a_module(monkeypatch, name, import_error):
    """The controller's own interpreter may lack a library that the one the inventory gives localhost has."""
    monkeypatch.setattr(PLUGINS[name][0].MODULE, import_error, ImportError("not here"))
    assert way(name) == "module"


def test_a_deprecated_alias_is_reported_as_the_module_reports_it(tmp_path, run_action):
    args = {"store_path": str(tmp_path), "cluster": "lab", "store_timeout": 3, "store_timeout_s": 4}
    result = run_action(vm_evacuate.ActionModule, vm_evacuate.ActionModule.MODULE, args)
    assert result["deprecations"] == [{"msg": "Alias 'store_timeout' is deprecated. See the module docs for more information",
                                       "version": "1.0.0", "date": None, "collection_name": "kvmha.cluster"}]
    assert "Both option store_timeout_s and its alias store_timeout are set." in result["warnings"]


def test_the_modules_spec_rules_hold_in_process(tmp_path, run_action):
    args = {"store_path": str(tmp_path), "cluster": "lab", "abandon": ["web1"]}  # without operator and reason
    with pytest.raises(AnsibleActionFail, match="parameters are required together: abandon, operator, reason"):
        run_action(vm_evacuate.ActionModule, vm_evacuate.ActionModule.MODULE, args)
