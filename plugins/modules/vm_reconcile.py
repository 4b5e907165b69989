#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_reconcile
short_description: Remove a returning hypervisor's stale copies of VMs that were restarted elsewhere
version_added: 0.1.0
description:
  - The returning-host guard. When a host that was fenced comes back, the VMs it ran have been started on other
    hosts. Its own definitions of them are stale copies; if one were started (by hand, by autostart), the VM would
    run twice on the same disks.
  - For each VM of O(vms) defined on the host at O(uri), the module destroys it if it is active and undefines it.
    The disks, the NVRAM and the VM's domain XML on the shared store are never touched.
  - The watchdog runs it before it clears the host's fenced mark, so the host counts as live only afterwards.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_LIBVIRT
  - kvmha.cluster._attributes.CHECK_MODE
attributes:
  check_mode:
    support: full
    details: Reads each domain's state and reports what would be removed.
  diff_mode:
    support: full
    details: Shows each VM's state on the host before and after.
  idempotent:
    support: full
options:
  uri:
    description: The libvirt URI of the returning host (C(kvmha_libvirt_uri)).
    type: str
    required: true
  vms:
    description: UUIDs of the VMs that were restarted elsewhere (the C(vms) of the host's fenced mark).
    type: list
    elements: str
    required: true
  connect_timeout:
    description: Deadline in seconds of the libvirt connection.
    type: float
    default: 10
  call_timeout:
    description: Deadline in seconds of each libvirt call.
    type: float
    default: 10
requirements:
  - libvirt-python (on the host the task runs on)
seealso:
  - module: kvmha.cluster.vm_evacuate
  - module: kvmha.cluster.host_mark
"""

EXAMPLES = r"""
- name: Remove the stale copies on h1 before it rejoins
  kvmha.cluster.vm_reconcile:
    uri: "{{ hostvars['h1'].kvmha_libvirt_uri }}"
    vms: "{{ fenced_mark.data.vms }}"
  delegate_to: localhost
"""

RETURN = r"""
vms:
  description: Per VM, its state on the host before (C(absent) when not defined there) and what was done.
  returned: always
  type: list
  elements: dict
  sample: [{uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, before: shutoff, destroyed: false, undefined: true}]
"""

import uuid as uuidlib

from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import LIBVIRT_IMPORT_ERROR, LibvirtClient

ARGUMENT_SPEC = {
    "uri": {"type": "str", "required": True},
    "vms": {"type": "list", "elements": "str", "required": True},
    "connect_timeout": {"type": "float", "default": 10},
    "call_timeout": {"type": "float", "default": 10},
}


def _uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise InvalidInput("%r is not a UUID" % value[:80]) from None


def reconcile(params: dict, check_mode: bool, diff_mode: bool) -> dict:
    vms = [_uuid(v) for v in params["vms"]]
    client = LibvirtClient(params["uri"], params["connect_timeout"], params["call_timeout"]).open()
    try:
        results = []
        for vm in vms:
            before = client.domain_state(vm) or "absent"
            outcome = {"destroyed": before != "absent" and before != "shutoff", "undefined": before != "absent"}
            if before != "absent" and not check_mode:
                outcome = client.remove(vm)
            results.append(dict(outcome, uuid=vm, before=before))
    finally:
        client.close()
    result = {"changed": any(r["undefined"] for r in results), "vms": results}
    if diff_mode:
        result["diff"] = {"before": {r["uuid"]: r["before"] for r in results}, "after": {r["uuid"]: "absent" for r in results}}
    return result


def main():
    module = KvmhaModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.require_library("libvirt-python", LIBVIRT_IMPORT_ERROR)
    module.run(lambda: reconcile(module.params, module.check_mode, module.diff_mode))


if __name__ == "__main__":
    main()
