# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs cluster_lease in the controller's own process when it would run on the controller.

The watchdog takes, renews and releases its lease from the controller (``delegate_to: localhost``), and the lease
beside the watch is taken on a row that then pings a late host: as a module run (~0.3 s of Ansible, 0.75 s as the
first run of a run) it pushed that ping past the end of the watch, and the decision waited for it. Run here, the
module's own ``run()`` does the same on the same checked options, under its own store deadline
(tests/unit/plugins/modules/test_cluster_lease.py runs every case both ways). Delegated to another host, with become,
with an ``environment`` of its own, with ``async``, or where a library the module may need does not import in the
controller's own Python, the task runs the module as any module runs.
"""

from __future__ import annotations

from ansible_collections.kvmha.cluster.plugins.modules import cluster_lease
from ansible_collections.kvmha.cluster.plugins.plugin_utils._in_process import InProcessModuleRun


class ActionModule(InProcessModuleRun):
    MODULE = cluster_lease
