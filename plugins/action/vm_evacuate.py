# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs vm_evacuate in the controller's own process when it would run on the controller.

The watchdog recovers from the controller (``delegate_to: localhost``), right after the fence: as a module run, the
recovery paid ~0.3 s of Ansible (0.5 s as the first run of a run) before it read the store. Run here, the module's
own ``run()`` does the same on the same checked options - its store, libvirt and BMC calls each under their own
deadline, in threads of the worker that runs the task, which ends with it (tests/unit/plugins/modules/
test_vm_evacuate.py runs its cases both ways). Delegated to another host, with become, with an ``environment`` of
its own, with ``async``, or where libvirt-python or pyghmi does not import in the controller's own Python, the task
runs the module as any module runs.
"""

from __future__ import annotations

from ansible_collections.kvmha.cluster.plugins.modules import vm_evacuate
from ansible_collections.kvmha.cluster.plugins.plugin_utils._in_process import InProcessModuleRun


class ActionModule(InProcessModuleRun):
    MODULE = vm_evacuate
    LIBRARIES = ("LIBVIRT_IMPORT_ERROR", "PYGHMI_IMPORT_ERROR")  # pyghmi for its power checks
    SPEC_RULES = {"required_together": vm_evacuate.REQUIRED_TOGETHER}
