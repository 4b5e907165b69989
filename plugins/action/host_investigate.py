# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs host_investigate in the controller's own process.

The module decides from the evidence it is given and touches nothing, so there is nothing to run elsewhere; run as a
module it cost a module execution (~0.3 s of Ansible) on every run's policy check and before every fence. This runs the
module's own ``run()`` on options checked against its own ``ARGUMENT_SPEC``, so both ways give the same result
(tests/unit/plugins/action/test_host_investigate_action.py).
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.kvmha.cluster.plugins.module_utils._common import failure_result, missing_library_failure
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import KvmhaError
from ansible_collections.kvmha.cluster.plugins.modules import host_investigate


class _Failed(Exception):
    def __init__(self, result: dict):
        super().__init__(result.get("msg"))
        self.result = result


class _InProcessModule:
    """What ``host_investigate.run`` uses of a ``KvmhaModule``, for a run in this process."""

    def __init__(self, params: dict, check_mode: bool):
        self.params, self.check_mode, self.warnings = params, check_mode, []

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def require_library(self, name: str, import_error: Exception | None) -> None:
        if import_error is not None:
            raise _Failed(missing_library_failure(name, import_error))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # nothing is transferred
        _validation, params = self.validate_argument_spec(host_investigate.ARGUMENT_SPEC)
        module = _InProcessModule(params, self._task.check_mode)
        try:
            result.update(host_investigate.run(module))
        except KvmhaError as error:
            result.update(failure_result(error), failed=True)
        except _Failed as failure:
            result.update(failure.result, failed=True)
        if module.warnings:
            result["warnings"] = module.warnings
        return result
