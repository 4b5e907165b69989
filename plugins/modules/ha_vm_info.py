#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ha_vm_info
short_description: List the HA VMs of a hypervisor, from their libvirt metadata
version_added: 0.1.0
description:
  - Lists every domain of one libvirt connection that carries the HA marker (see M(kvmha.cluster.ha_vm)), with its
    priority and anti-affinity group as the heartbeat writer reads them, highest priority first.
  - Domains whose marker is malformed are listed too, with the RV(vms[].problems) that the writer works around (a
    priority it cannot read counts as 50; an element of the HA namespace that is not C(<ha>) does not make the
    domain HA).
  - A running domain's marker is read from its live definition (what the writer reports), a stopped one's from its
    persistent definition; RV(vms[].in_sync) is false when the two differ.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_LIBVIRT
  - kvmha.cluster._attributes.INFO_MODULE
  - kvmha.cluster._libvirt
options:
  uri:
    description: The libvirt URI of the host (C(kvmha_libvirt_uri)). The connection is read-only.
    type: str
    required: true
requirements:
  - libvirt-python
seealso:
  - module: kvmha.cluster.ha_vm
"""

EXAMPLES = r"""
- name: List the HA VMs of every hypervisor
  kvmha.cluster.ha_vm_info:
    uri: "{{ kvmha_libvirt_uri }}"
  delegate_to: localhost
  register: ha_vms
"""

RETURN = r"""
vms:
  description: The HA domains (and those with a malformed marker), highest priority first, then by name.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The domain's name.
      type: str
    uuid:
      description: The domain's UUID.
      type: str
    active:
      description: Whether it runs (or is paused).
      type: bool
    persistent:
      description: Whether it has a persistent definition (false for a transient domain).
      type: bool
    ha:
      description: Whether the writer counts it HA.
      type: bool
    priority:
      description: Its restart priority (0-100), null when not HA.
      type: int
    group:
      description: Its anti-affinity group, empty for none; null when not HA.
      type: str
    problems:
      description: What is wrong with its marker; empty when nothing is.
      type: list
      elements: str
    in_sync:
      description: Whether its live and persistent definitions hold the same marker (true when it has only one).
      type: bool
  sample:
    - {"name": "db1", "uuid": "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e", "active": true, "persistent": true, "ha": true,
       "priority": 90, "group": "db", "problems": [], "in_sync": true}
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input, missing_library, unreachable, timeout, connection, libvirt]
  sample: unreachable
"""

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import LIBVIRT_CONNECTION_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._ha_vm import ha_domains
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import LIBVIRT_IMPORT_ERROR, LibvirtClient, uri_warnings

ARGUMENT_SPEC = merge_specs(LIBVIRT_CONNECTION_SPEC, {
    "uri": {"type": "str", "required": True},
})


def run(module: KvmhaModule) -> dict:
    params = module.params
    for warning in uri_warnings(params["uri"]):
        module.warn(warning)
    client = LibvirtClient(params["uri"], params["connect_timeout_s"], params["call_timeout_s"], read_only=True).open()
    try:
        return {"changed": False, "vms": ha_domains(client)}
    finally:
        client.close()


def main():
    run_module(ARGUMENT_SPEC, run, libraries=(("libvirt-python", LIBVIRT_IMPORT_ERROR),))


if __name__ == "__main__":
    main()
