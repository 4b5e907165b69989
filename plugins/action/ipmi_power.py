# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs ipmi_power in the controller's own process when it would run on the controller.

The watchdog reads and fences BMCs from the controller (``delegate_to: localhost``): the power read of a late host
beside the watch, and the fence right after the decision, each paid a module run (~0.3 s of Ansible) before the first
IPMI packet. Run here, the module's own ``run()`` does the same on the same checked options, under its own deadline
(tests/unit/plugins/modules/test_ipmi_power.py runs every case both ways). Delegated to another host, with become,
with an ``environment`` of its own, with ``async``, or where a library the module may need does not import in the
controller's own Python, the task runs the module as any module runs.
"""

from __future__ import annotations

from ansible_collections.kvmha.cluster.plugins.modules import ipmi_power
from ansible_collections.kvmha.cluster.plugins.plugin_utils._in_process import InProcessModuleRun


class ActionModule(InProcessModuleRun):
    MODULE = ipmi_power
    LIBRARIES = ("PYGHMI_IMPORT_ERROR",)
