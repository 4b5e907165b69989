#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_drain
short_description: Live-migrate a hypervisor's running HA VMs to where the watchdog would restart them
version_added: 0.1.0
description:
  - Drains a host before maintenance. Its running HA VMs (the domains with the HA marker, see
    M(kvmha.cluster.ha_vm)) are placed by the watchdog's own placement over O(targets) - their free capacity and the
    anti-affinity groups they run, from their heartbeat records on the store - highest priority first, and each one
    is live-migrated there in turn (persistent on the target; libvirt removes the source's definition only once it
    runs there).
  - Each migration is bounded by O(vm_timeout_s) (past it the job is aborted) and the whole drain by O(deadline_s)
    (VMs whose turn comes later stay). After each migration the VM's state on both hosts decides what is reported,
    whatever the call said. A VM that could not be placed, whose target could not be reached, whose migration
    failed or was aborted, keeps running on the source and is listed in RV(kept) with the reason.
  - Nothing is ever destroyed or undefined by this module. A VM found active on both hosts or on neither after its
    migration fails the task, with the error kind C(unknown) - a human must look before the host is switched off.
  - Put the host in maintenance first (M(kvmha.cluster.host_mark), C(playbooks/maintenance.yml) does both), so that
    no watchdog acts on it while its VMs move. Running it again drains what is left (a moved VM is no longer there).
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_STORE_LIBVIRT
  - kvmha.cluster._attributes.CHECK_MODE
  - kvmha.cluster._store
  - kvmha.cluster._libvirt
attributes:
  check_mode:
    support: full
    details: Reads the source and the records and returns the plan in RV(plan); nothing moves.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A drained host has no running HA VM left, so running it again changes nothing.
options:
  host:
    description: Inventory name of the host to drain (it is never a target).
    type: str
    required: true
  uri:
    description: The libvirt URI of the host to drain (C(kvmha_libvirt_uri)).
    type: str
    required: true
  targets:
    description:
      - The hosts that may take the VMs - live, not in maintenance, not fenced (the caller knows which; the watchdog's
        M(kvmha.cluster.kvm_heartbeat) tells) - with their libvirt URI. A target without a valid heartbeat record
        is left out and listed in RV(excluded).
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: Inventory name of the target (its heartbeat record's name).
        type: str
        required: true
      uri:
        description: Its libvirt URI.
        type: str
        required: true
      address:
        description:
          - The address the source's QEMU sends the migration data to (C(tcp://<address>)). Default the host part of
            O(targets[].uri).
        type: str
  spare_hosts:
    description: Targets used only when no other target can take a VM (as the watchdog's placement does).
    type: list
    elements: str
    default: []
  strategy:
    description: The placement strategy, as the watchdog's policy C(placement_strategy).
    type: str
    choices: [spread, best_fit]
    default: spread
  vm_timeout_s:
    description: Seconds one VM's live migration may take; past them it is aborted and the VM stays on the source.
    type: float
    default: 300
  deadline_s:
    description: Seconds the whole drain may take; VMs whose turn comes later stay on the source.
    type: float
    default: 1800
  plan:
    description:
      - Carry out this plan instead of making one - RV(plan) of a check-mode run, or part of it. Each entry's VM, if
        it still runs on the source, goes to the entry's C(host), in the order given; the other running HA VMs are
        left alone. An entry whose VM no longer runs there is skipped; one whose host is no longer among the usable
        O(targets) stays, listed in RV(kept).
      - C(playbooks/maintenance.yml) plans once and then gives one entry a run, so each migration is reported as it
        ends (the drain's progress) while every VM still goes where the whole host's plan put it.
    type: list
    elements: dict
  unsafe:
    description:
      - Skip libvirt's check that the VMs' disks are on storage it recognises as shared (NFS, GFS2, OCFS2, CephFS,
        ...); C(virsh migrate --unsafe).
      - Only for disks that really are shared but that libvirt cannot recognise as such (a cluster file system it does
        not know, one directory bind-mounted into every host). On storage that is not shared, a migration copies no
        disk and the VM goes on writing to a disk the target does not have.
    type: bool
    default: false
requirements:
  - libvirt-python
notes:
  - The VMs' disks must be on storage both hosts see (the same paths), as for a recovery. The source's QEMU must
    reach the target's migration ports (libvirt's default 49152-49215) at O(targets[].address).
seealso:
  - module: kvmha.cluster.host_mark
  - module: kvmha.cluster.ha_vm_info
"""

EXAMPLES = r"""
- name: Drain hv2 to the live hosts of its cluster
  kvmha.cluster.host_drain:
    store_path: /srv/kvmha
    host: hv2
    uri: qemu+ssh://kvmha@hv2/system
    targets:
      - {host: hv1, uri: "qemu+ssh://kvmha@hv1/system"}
      - {host: hv3, uri: "qemu+ssh://kvmha@hv3/system", address: 10.0.5.3}
  delegate_to: localhost
  register: drained

- name: What would move where
  kvmha.cluster.host_drain:
    store_path: /srv/kvmha
    host: hv2
    uri: qemu+ssh://kvmha@hv2/system
    targets: [{host: hv1, uri: "qemu+ssh://kvmha@hv1/system"}]
  check_mode: true
  delegate_to: localhost
  register: plan

- name: Move db1 alone, where an earlier check-mode run planned it
  kvmha.cluster.host_drain:
    store_path: /srv/kvmha
    host: hv2
    uri: qemu+ssh://kvmha@hv2/system
    targets: [{host: hv1, uri: "qemu+ssh://kvmha@hv1/system"}]
    plan: "{{ plan.plan | selectattr('name', 'equalto', 'db1') | list }}"
  delegate_to: localhost
"""

RETURN = r"""
plan:
  description: Where each running HA VM of the host was to go, in the order of the migrations.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "db1", "uuid": "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e", "host": "hv3", "priority": 90}]
moved:
  description: The VMs now running on their target, with the seconds their migration took.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "db1", "uuid": "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e", "target": "hv3", "seconds": 2.4}]
kept:
  description: The VMs still running on the host, each with the reason (unplaced, target unreachable, failed, aborted).
  returned: success
  type: list
  elements: dict
  sample: [{"name": "web1", "uuid": "5d1a2b3c-0d5a-4f7e-8d0c-0b5f6c1e4d5e", "reason": "no host has 8192 MiB and 4 vCPUs free"}]
unknown:
  description: The VMs found active on both hosts or on neither after their migration (the task fails).
  returned: always
  type: list
  elements: dict
  sample: []
excluded:
  description: Targets left out, with the reason (no valid heartbeat record).
  returned: success
  type: dict
  sample: {"hv4": "no heartbeat file"}
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input, missing_library, unreachable, timeout, connection, libvirt, unknown]
  sample: unknown
"""

import time
from urllib.parse import urlsplit

from ansible_collections.kvmha.cluster.plugins.module_utils import _drain
from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import LIBVIRT_CONNECTION_SPEC, STORE_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._domainxml import parse_domain_xml
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, LibvirtError, MigrationUnknown, check_range
from ansible_collections.kvmha.cluster.plugins.module_utils._ha_vm import ha_domains
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import RecordReader, validate_host_name
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import LIBVIRT_IMPORT_ERROR, LibvirtClient, uri_warnings
from ansible_collections.kvmha.cluster.plugins.module_utils._placement import STRATEGIES, place

ARGUMENT_SPEC = merge_specs(STORE_SPEC, LIBVIRT_CONNECTION_SPEC, {
    "host": {"type": "str", "required": True},
    "uri": {"type": "str", "required": True},
    "targets": {"type": "list", "elements": "dict", "required": True, "options": {
        "host": {"type": "str", "required": True},
        "uri": {"type": "str", "required": True},
        "address": {"type": "str"},
    }},
    "spare_hosts": {"type": "list", "elements": "str", "default": []},
    "strategy": {"type": "str", "choices": list(STRATEGIES), "default": "spread"},
    "vm_timeout_s": {"type": "float", "default": 300.0},
    "deadline_s": {"type": "float", "default": 1800.0},
    "unsafe": {"type": "bool", "default": False},
    "plan": {"type": "list", "elements": "dict"},
})


def migration_uri(target: dict) -> str:
    address = target.get("address") or urlsplit(target["uri"]).hostname
    if not address:
        raise InvalidInput("host_drain: target %s: no address to send the migration to (its URI names no host); set "
                           "targets[].address" % target["host"])
    return "tcp://[%s]" % address if ":" in address else "tcp://%s" % address


def running_ha_vms(source: LibvirtClient) -> list:
    """The source's running HA VMs as placement input (size from each one's live XML)."""
    vms = []
    for vm in ha_domains(source):
        if not (vm["active"] and vm["ha"]):
            continue
        size = parse_domain_xml(source.domain_xml(vm["uuid"]), expected_uuid=vm["uuid"])
        vms.append({"uuid": vm["uuid"], "name": vm["name"], "priority": vm["priority"], "group": vm["group"] or "",
                    "memory_mib": size["memory_mib"] or 0, "vcpus": size["vcpus"] or 1})
    return vms


def target_hosts(store_path: str, targets: list, source: str) -> tuple:
    """``([placement input of each usable target], {host: why it is left out})``, from the targets' records."""
    reader, hosts, excluded = RecordReader(store_path), [], {}
    for target in targets:
        host = validate_host_name(target["host"])
        if host == source:
            excluded[host] = "the host being drained"
            continue
        reading = reader.read(host)
        if reading.status != "ok":
            excluded[host] = reading.reason or reading.status
            continue
        try:
            hosts.append(_drain.target_host(host, reading.record))
        except InvalidInput as err:
            excluded[host] = str(err)
    return hosts, excluded


class Drain:
    """The migrations of one drain, one VM at a time, each outcome read back from both hosts."""

    def __init__(self, params: dict, source: LibvirtClient, targets: dict):
        self.params = params
        self.source = source
        self.targets = targets
        self.clients: dict = {}
        self.result: dict = {"moved": [], "kept": [], "unknown": []}

    def client(self, host: str) -> LibvirtClient:
        if host not in self.clients:
            self.clients[host] = LibvirtClient(self.targets[host]["uri"], self.params["connect_timeout_s"],
                                               self.params["call_timeout_s"], label=host).open()
        return self.clients[host]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def keep(self, vm: dict, reason: str) -> None:
        self.result["kept"].append({"name": vm["name"], "uuid": vm["uuid"], "reason": reason})

    def migrate(self, vm: dict, timeout: float) -> None:
        host = vm["host"]
        try:
            target = self.client(host)
        except LibvirtError as err:
            self.keep(vm, "its target %s cannot be reached: %s" % (host, err))
            return
        started, failure = time.monotonic(), ""
        try:
            self.source.migrate_live(vm["uuid"], target, migration_uri(self.targets[host]), timeout, self.params["unsafe"])
        except LibvirtError as err:
            failure = "the migration to %s failed: %s" % (host, err)
        outcome, why = _drain.settle(self.source.domain_state(vm["uuid"]), target.domain_state(vm["uuid"]))
        entry = {"name": vm["name"], "uuid": vm["uuid"]}
        if outcome == "moved":
            self.result["moved"].append(dict(entry, target=host, seconds=round(time.monotonic() - started, 3)))
        elif outcome == "kept":
            self.keep(vm, "; ".join(r for r in (failure or "the migration to %s did not move it" % host, why) if r))
        else:
            self.result["unknown"].append(dict(entry, target=host, reason="; ".join(r for r in (failure, why) if r)))

    def run(self, placements: list) -> dict:
        deadline = time.monotonic() + self.params["deadline_s"]
        for vm in placements:
            left = deadline - time.monotonic()
            if left <= 0:
                self.keep(vm, "the drain's deadline_s (%s s) passed before its turn" % self.params["deadline_s"])
                continue
            self.migrate(vm, min(self.params["vm_timeout_s"], left))
        return self.result


def run(module: KvmhaModule) -> dict:
    params = module.params
    check_range("vm_timeout_s", params["vm_timeout_s"], 0, exclusive_minimum=True, unit="s")
    check_range("deadline_s", params["deadline_s"], 0, exclusive_minimum=True, unit="s")
    source_host = validate_host_name(params["host"])
    targets = dict((t["host"], t) for t in params["targets"])
    hosts, excluded = target_hosts(params["store_path"], params["targets"], source_host)
    for uri in [params["uri"]] + [t["uri"] for t in params["targets"]]:
        for warning in uri_warnings(uri):
            module.warn(warning)
    source = LibvirtClient(params["uri"], params["connect_timeout_s"], params["call_timeout_s"], label=source_host).open()
    drain = Drain(params, source, targets)
    try:
        running = running_ha_vms(source)
        if params["plan"] is None:
            plan = place(running, hosts, params["spare_hosts"], params["strategy"])
        else:
            plan = _drain.follow(params["plan"], running, [h["host"] for h in hosts])
        result = {"changed": False, "plan": plan["placements"], "excluded": excluded, "moved": [], "unknown": [],
                  "kept": [{"name": vm["name"], "uuid": vm["uuid"], "reason": vm["reason"]} for vm in plan["unplaced"]]}
        if module.check_mode:
            result["changed"] = bool(plan["placements"])
            return result
        outcome = drain.run(plan["placements"])
    finally:
        drain.close()
        source.close()
    result.update(moved=outcome["moved"], kept=result["kept"] + outcome["kept"], unknown=outcome["unknown"],
                  changed=bool(outcome["moved"] or outcome["unknown"]))
    if result["unknown"]:
        raise MigrationUnknown("host_drain: %s: check where it runs before %s is switched off" % (
            "; ".join("%s (to %s): %s" % (vm["name"], vm["target"], vm["reason"]) for vm in result["unknown"]), source_host),
            result=result)
    return result


def main():
    run_module(ARGUMENT_SPEC, run, libraries=(("libvirt-python", LIBVIRT_IMPORT_ERROR),))


if __name__ == "__main__":
    main()
