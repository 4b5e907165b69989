# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module of the collection, for the tests that hold all of them to one rule."""

from __future__ import annotations

from ansible_collections.kvmha.cluster.plugins.modules import (
    cluster_lease,
    host_investigate,
    host_mark,
    host_mark_info,
    ipmi_power,
    kvm_heartbeat,
    neighbor_ping,
    vm_disk_activity,
    vm_evacuate,
    vm_reconcile,
)

MODULES = [cluster_lease, host_investigate, host_mark, host_mark_info, ipmi_power, kvm_heartbeat, neighbor_ping,
           vm_disk_activity, vm_evacuate, vm_reconcile]


def name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]
