# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This plugin_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""A kvmha.cluster module run in the controller's own process, by its action plugin.

Ansible runs a module in a process of its own: it zips the module with its ``module_utils``, starts a Python, unpacks
and imports them - about 0.3 s on the lab's controller before the module does anything (docs/ARCHITECTURE.md item 25).
Every kvmha.cluster module is ``run(module) -> dict`` over its ``ARGUMENT_SPEC`` (``_common.run_module``), so the
worker that runs the task can call the same ``run()`` on the same checked options instead, where the module would run
on the controller anyway. ``run_in_process`` gives the module's result, failures and warnings, with every ``no_log``
value masked as ``AnsibleModule`` masks it.
"""

from __future__ import annotations

from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase
from ansible.plugins.action.normal import ActionModule as ModuleRun

from ansible_collections.kvmha.cluster.plugins.module_utils._common import failure_result, missing_library_failure
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import KvmhaError


class _Failed(Exception):
    def __init__(self, result: dict):
        super().__init__(result.get("msg"))
        self.result = result


class _InProcessModule:
    """What a module's ``run()`` uses of a ``KvmhaModule``, for a run in this process."""

    def __init__(self, params: dict, check_mode: bool, diff_mode: bool):
        self.params, self.check_mode, self.diff_mode, self.warnings = params, check_mode, diff_mode, []

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def require_library(self, name: str, import_error: Exception | None) -> None:
        if import_error is not None:
            raise _Failed(missing_library_failure(name, import_error))


def run_in_process(action, run, argument_spec: dict, **spec_rules) -> dict:
    """The result of ``run(module)`` on the task's options checked against ``argument_spec`` (and ``spec_rules``, such
    as ``required_together``), run by ``action`` (an ``ActionBase``) in this process."""
    validation, params = action.validate_argument_spec(argument_spec, **spec_rules)
    module = _InProcessModule(params, bool(action._task.check_mode), bool(action._task.diff))
    module.warnings.extend("Both option %(option)s and its alias %(alias)s are set." % both for both in validation._warnings)
    try:
        result = run(module)
    except KvmhaError as error:
        result = dict(failure_result(error), failed=True)
    except _Failed as failure:
        result = dict(failure.result, failed=True)
    if module.warnings:
        result["warnings"] = module.warnings
    if validation._deprecations:  # a deprecated alias used, as AnsibleModule reports it
        result["deprecations"] = [dict(alias) for alias in validation._deprecations]
    result["invocation"] = {"module_args": params}  # as AnsibleModule reports it, masked with the rest
    return remove_values(result, validation._no_log_values)


def runs_here(action) -> bool:
    """Whether the task would run its module on the controller, as this process would: over the local connection,
    without privilege escalation and without an ``environment`` of its own (a task without one has ``[{}]``)."""
    environment = action._task.environment or ()
    return action._connection.transport == "local" and not action._play_context.become and not any(environment)


class InProcessModuleRun(ModuleRun):
    """The action plugin of a module that runs in the controller's process where it would run on the controller, and
    as any module runs elsewhere: delegated to another host, with become, an ``environment`` of its own or ``async``,
    or where a library the module may need does not import in this process (the module then runs on the interpreter
    the inventory gives the controller, which may have it). A subclass names the module (``MODULE``: its ``run`` and
    ``ARGUMENT_SPEC``), those libraries (``LIBRARIES``: the module's attributes that hold their import errors) and the
    spec rules it gives ``AnsibleModule``."""

    MODULE = None
    LIBRARIES: tuple = ()
    SPEC_RULES: dict = {}

    def run(self, tmp=None, task_vars=None):
        libraries_here = all(getattr(self.MODULE, import_error) is None for import_error in self.LIBRARIES)
        if self._task.async_val or not runs_here(self) or not libraries_here:
            return super().run(tmp, task_vars)
        result = ActionBase.run(self, tmp, task_vars)
        result.update(run_in_process(self, self.MODULE.run, self.MODULE.ARGUMENT_SPEC, **self.SPEC_RULES))
        return result
