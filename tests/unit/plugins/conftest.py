# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import importlib
import json

import pytest
import yaml
from ansible.errors import AnsibleActionFail
from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args

from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.connection.local import Connection as LocalConnection


@pytest.fixture
def module_run(capsys, monkeypatch):
    """Run a module's main() with the given arguments; return its JSON result (``failed`` set on failure)."""
    # A module runs on a target. Once any test of the session has imported controller code (the journal callback's
    # tests do), ansible believes it is the controller and sends module warnings to its display instead of the
    # result: tests reading result["warnings"] would then pass or fail by what else was collected with them.
    monkeypatch.setattr(_internal, "is_controller", False)

    def run(module, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
        args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                module.main()
        result = json.loads(capsys.readouterr().out)
        _error_kind_is_documented(module, result)
        return result

    return run


@pytest.fixture
def run_module(module_run):
    """How a test runs a module: as a module run, unless its file asks for ``run_either_way``."""
    return module_run


def _error_kind_is_documented(module, result: dict) -> None:
    """Every failure of every test: its kind is one the module documents."""
    if "error_kind" in result:
        documented = yaml.safe_load(module.RETURN)["error_kind"]["choices"]
        assert result["error_kind"] in documented, "%s returned the undocumented error_kind %r: %s" % (
            module.__name__, result["error_kind"], result.get("msg"))


@pytest.fixture
def run_action():
    """Run a module's action plugin as Ansible runs a task delegated to the controller (the local connection); return
    its result. The plugin must run the module in this process: a module run fails the test."""

    def run(action_class, module, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
        task = Task()
        task.action, task.args, task.check_mode, task.diff = "kvmha.cluster." + module.__name__.rsplit(".", 1)[1], dict(args), check_mode, diff
        task.environment = [{}]  # what a task without an environment of its own has
        action = action_class(task, connection=LocalConnection(PlayContext()), play_context=PlayContext(), loader=None, templar=None)

        def no_module_run(*_args, **_kwargs):
            raise AssertionError("%s must run in the controller's process here, not as a module" % task.action)
        action._execute_module = no_module_run
        result = action.run(task_vars={})  # options that do not pass the argument spec raise AnsibleActionFail
        _error_kind_is_documented(module, result)
        return result

    return run


@pytest.fixture(params=["a module run", "in the controller's process"])
def run_either_way(request, module_run, run_action):
    """``run_module``, for a module whose action plugin runs it in the controller's process: once as a module run, once
    through that plugin, so that every case of a test file that asks for it holds both ways."""
    if request.param == "a module run":
        return module_run

    def in_process(module, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
        plugin = importlib.import_module(module.__name__.replace(".plugins.modules.", ".plugins.action."))
        try:
            return run_action(plugin.ActionModule, module, args, check_mode, diff)
        except AnsibleActionFail as failure:  # the options did not pass the argument spec: the task fails with this
            return dict(failure.result, failed=True, msg=failure.message)
    return in_process
