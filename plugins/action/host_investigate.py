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

from ansible_collections.kvmha.cluster.plugins.modules import host_investigate
from ansible_collections.kvmha.cluster.plugins.plugin_utils._in_process import run_in_process


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # nothing is transferred
        result.update(run_in_process(self, host_investigate.run, host_investigate.ARGUMENT_SPEC))
        return result
