#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ha_vm
short_description: Mark a libvirt domain HA (priority, anti-affinity group) or unmark it, live and persistent
version_added: 0.1.0
description:
  - Writes the HA marker C(<kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority=".." group=".."/>) into the
    domain's libvirt metadata - the marker the heartbeat writer reads to list the host's HA VMs, which
    M(kvmha.cluster.vm_evacuate) then restarts elsewhere when the host is fenced - or removes it.
  - The marker is set where the domain lives - in its live definition while it is active, and in its persistent
    definition when it has one - in one libvirt call, then read back. A transient domain has only a live one.
  - Only the definitions whose marker differs are written; a marker that the writer would misread (a priority that
    is not an integer 0-100, an element of the HA namespace that is not C(<ha>)) always differs and is replaced.
  - The writer publishes the change with its next manifest (every few seconds); until then the watchdog plans with
    the previous one.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_LIBVIRT
  - kvmha.cluster._attributes.CHECK_MODE
  - kvmha.cluster._libvirt
attributes:
  check_mode:
    support: full
    details: Reads both definitions over a read-only connection and reports what would be written.
  diff_mode:
    support: full
    details: Shows the marker of each definition (C(live), C(config)) before and after.
  idempotent:
    support: full
options:
  uri:
    description: The libvirt URI of the domain's host (C(kvmha_libvirt_uri)).
    type: str
    required: true
  name:
    description: The domain's name, exactly (any characters libvirt accepts). One of O(name) and O(uuid) is required.
    type: str
  uuid:
    description: The domain's UUID, instead of O(name).
    type: str
  state:
    description: C(present) marks the domain HA with O(priority) and O(group); C(absent) removes the marker.
    type: str
    choices: [present, absent]
    default: present
  priority:
    description: Restart order after a fence, 0-100; higher restarts first. Ignored with O(state=absent).
    type: int
    default: 50
  group:
    description:
      - Anti-affinity group - two VMs of one non-empty group are never restarted on the same host. At most 255
        printable characters; empty for none. Ignored with O(state=absent).
    type: str
    default: ""
requirements:
  - libvirt-python
seealso:
  - module: kvmha.cluster.ha_vm_info
"""

EXAMPLES = r"""
- name: Mark db1 HA, restarted first, never beside db2
  kvmha.cluster.ha_vm:
    uri: "{{ kvmha_libvirt_uri }}"
    name: db1
    priority: 90
    group: db
  delegate_to: localhost

- name: Unmark a VM by its UUID
  kvmha.cluster.ha_vm:
    uri: qemu+ssh://kvmha@h2/system
    uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
domain:
  description: The domain.
  returned: success
  type: dict
  sample: {"name": "db1", "uuid": "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e", "active": true, "persistent": true}
scopes:
  description: Its definitions that hold a marker - C(live) while it is active, C(config) when it is persistent.
  returned: success
  type: list
  elements: str
  sample: ["live", "config"]
written:
  description: The definitions whose marker was (in check mode, would be) written.
  returned: success
  type: list
  elements: str
  sample: ["config"]
before:
  description:
    - The marker of each definition before - C(ha), C(priority), C(group) (null when not HA) and, when the marker
      is malformed, C(problems).
  returned: success
  type: dict
  sample: {"live": {"ha": false, "priority": null, "group": null},
           "config": {"ha": true, "priority": 50, "group": "db", "problems": ["priority 'abc' is not an integer 0-100: it counts as 50"]}}
after:
  description: The marker of each definition after, read back from libvirt (in check mode, what it would be).
  returned: success
  type: dict
  sample: {"live": {"ha": true, "priority": 90, "group": "db"}, "config": {"ha": true, "priority": 90, "group": "db"}}
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input, missing_library, unreachable, timeout, connection, libvirt, no_domain]
  sample: no_domain
"""

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import LIBVIRT_CONNECTION_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._domainxml import wanted_marker
from ansible_collections.kvmha.cluster.plugins.module_utils._ha_vm import selector, tag
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import LIBVIRT_IMPORT_ERROR, LibvirtClient, uri_warnings

ARGUMENT_SPEC = merge_specs(LIBVIRT_CONNECTION_SPEC, {
    "uri": {"type": "str", "required": True},
    "name": {"type": "str"},
    "uuid": {"type": "str"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "priority": {"type": "int", "default": 50},
    "group": {"type": "str", "default": ""},
})


def run(module: KvmhaModule) -> dict:
    params, check_mode, diff_mode = module.params, module.check_mode, module.diff_mode
    target = wanted_marker(params["state"], params["priority"], params["group"])
    lookup = selector(params["name"], params["uuid"])
    for warning in uri_warnings(params["uri"]):
        module.warn(warning)
    client = LibvirtClient(params["uri"], params["connect_timeout_s"], params["call_timeout_s"], read_only=check_mode).open()
    try:
        result = tag(client, lookup, target, check_mode)
    finally:
        client.close()
    if diff_mode:
        result["diff"] = {"before": result["before"], "after": result["after"]}
    return result


def main():
    run_module(ARGUMENT_SPEC, run, libraries=(("libvirt-python", LIBVIRT_IMPORT_ERROR),),
               required_one_of=[("name", "uuid")], mutually_exclusive=[("name", "uuid")])


if __name__ == "__main__":
    main()
