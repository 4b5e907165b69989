#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_evacuate
short_description: Bring every owed HA VM of the fenced hypervisors one step closer to "runs exactly once"
version_added: 0.1.0
description:
  - The recovery step of the watchdog. Recovery B(converges) - a fenced host's HA VMs stay I(owed) until each runs
    exactly once somewhere, or an operator abandons it; every call moves every owed VM one step further, and a call
    may die at any point without losing anything (the next call finishes the job and never starts a second copy).
  - For each host of O(failed_hosts) (confirmed down - power off confirmed by its BMC, or a self-fence guarantee;
    the module does not judge that), opens its I(owed document) C(<store_path>/kvmha/owed/<host>/) from the HA VMs
    of its B(last) heartbeat record, then marks it fenced (C(<store_path>/kvmha/fenced/<host>/), listing the same
    VMs). A host whose last record cannot be read has an unknown VM list - the task fails for it (RV(unreadable)),
    the others go on. A host whose document is open already is not opened again.
  - Then works B(every) open owed document of the O(cluster), whether it was opened now or by an earlier run. Per
    VM, a state - C(owed), C(claimed), C(started), C(verified), or C(unplaced), C(failed) (retried with a doubling
    backoff from O(retry_s) up to O(retry_max_s)), C(abandoned) (by an operator, see O(abandon)), C(moved) (the
    target it was started on died and its last heartbeat listed it - that host's own recovery owes it now).
  - Census first - where each owed VM is active, asked of libvirt on every reachable target, not the records'
    word. A VM active on one target is C(started) there, and C(verified) once that target's own heartbeat lists it
    (the hand-over - from then on, the target's heartbeat covers it; the module waits up to O(beat_timeout_s) for
    it). A VM active on two targets is reported, never stopped.
  - A VM that runs nowhere and is due is claimed on the store, C(<store_path>/kvmha/claims/<uuid>/) - the
    C(link(2)) guard that two evacuators never start one VM twice - then defined (autostart off) and started, at
    most O(parallel) at once in their order, on one target or several, and verified running within
    O(verify_timeout_s). A VM
    whose claim names a reachable target is retried on B(that) target - libvirt refuses a second start of one
    domain on one host, so a start that an earlier, killed run left in flight can never become a second copy. A VM
    whose claim names a target that cannot be checked (dead, unreachable, in maintenance) waits, unless that
    target has been fenced since - then the copy there cannot run, and the VM is placed anew.
  - Placement is deterministic - priority descending, then O(strategy). Anti-affinity groups never share a host,
    O(spare_hosts) are used only when no other host can take a VM, nothing is over-committed; a VM that fits
    nowhere is C(unplaced) with the reason, and retried.
  - Each VM's domain XML is read from C(<store_path>/kvmha/vms/<uuid>.xml) and validated as input from outside
    (size limit, no DTD or entities, the UUID must match). A VM whose XML is missing or invalid is C(failed) and
    retried; the others go on.
  - A document is C(closed) when every VM is verified, abandoned or moved; it stays on the store, with the fenced
    mark, until the host is returned (M(kvmha.cluster.vm_reconcile) reads it to tell a stale copy from the only
    one). An owed document that cannot be read or validated is an error for its host only; it is never read as
    "nothing owed".
  - With O(abandon), nothing is started - the named owed VMs are marked C(abandoned) with O(operator) and
    O(reason) (an audit record on the store), and a document whose VMs are all done is closed.
  - Nothing is ever undefined, destroyed or deleted, on the hosts or on the store.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_STORE_LIBVIRT
  - kvmha.cluster._attributes.check_mode
  - kvmha.cluster._store
  - kvmha.cluster._libvirt
attributes:
  check_mode:
    support: full
    details:
      - Returns the full plan (which VM goes where, in which order, with the claim decision) - a dry run on a live
        cluster. Connections are opened read-only; no document, mark or claim is written and nothing is defined or
        started.
  diff_mode:
    support: full
    details:
      - Before - where each owed VM runs now (a target's name, or C(nowhere)). After - where it runs, or would run
        in check mode, afterwards.
  idempotent:
    support: full
    details:
      - A VM that runs is not started again; once every owed VM is verified, a call changes nothing.
options:
  failed_hosts:
    description:
      - Inventory names of the hosts newly confirmed down, whose owed documents are opened by this call. Hosts that
        died together go into one call, so that one plan counts each target's capacity once.
      - Empty (the default) only works the documents that are open already - the watchdog does that at the start of
        every run.
    type: list
    elements: str
    default: []
  power_checks:
    description:
      - The BMC of each failed host whose power state is read over IPMI right before its recovery opens (all at once,
        each under O(power_timeout_s), and each in a process of its own when there are several, so that a dead BMC
        cannot slow another's read), as a BIOS power-on policy or a person may have switched it back on since its fence.
        A host that reads on - or cannot be read, unless O(power_checks[].unknown_ok) - is not recovered, nothing of it
        is started elsewhere, and it is reported in RV(aborted).
      - Only for hosts of O(failed_hosts); a failed host without an entry is not read (a host fenced through fence
        levels is read through them by M(kvmha.cluster.host_fence) in check mode before this call).
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: The failed host (one of O(failed_hosts)).
        type: str
        required: true
      address:
        description: Its BMC's address.
        type: str
        required: true
      port:
        description: Its BMC's RMCP+ port.
        type: int
        default: 623
      username:
        description: The BMC user.
        type: str
        required: true
      password:
        description: The BMC user's password.
        type: str
        required: true
      kg:
        description: The BMC's K_g key, if it has one.
        type: str
      unknown_ok:
        description:
          - Recover the host also when its BMC cannot be read (only a BMC that reads on stops it), for a host judged
            down without its BMC - a self-fence guarantee (C(DOWN_SELF_FENCED)) or an operator's confirm-off
            (C(DOWN_CONFIRMED)).
        type: bool
        default: false
  power_timeout_s:
    description:
      - Hard deadline in seconds for each power read of O(power_checks) (the BMC session included).
    type: float
    default: 2.0
  cluster:
    description:
      - The cluster whose owed documents are worked (written into the documents this call opens). Empty means every
        document of the store.
    type: str
    default: ""
  decisions:
    description:
      - The decision on each failed host (C(verdict), C(rule)), as M(kvmha.cluster.host_investigate) returns them,
        recorded in its owed document and fenced mark.
    type: dict
    default: {}
  boot_ids:
    description:
      - The boot id each failed host had when it was judged (its C(boot_id) in the C(hosts) that
        M(kvmha.cluster.kvm_heartbeat) returned).
      - A failed host whose heartbeat record now shows another boot was switched back on after its fence (by a BIOS
        power-on policy or a person). Its recovery is not opened, it is reported in RV(aborted), and its VMs are left
        to it.
    type: dict
    default: {}
  targets:
    description:
      - The live hypervisors that may take VMs and are searched for running copies, with their libvirt URIs
        (inventory variable C(kvmha_libvirt_uri)).
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: Inventory name of the target (its heartbeat record name).
        type: str
        required: true
      uri:
        description: libvirt connection URI of the target, e.g. C(qemu+ssh://kvmha@h2/system).
        type: str
        required: true
  spare_hosts:
    description:
      - Targets held in reserve, used only for a VM that no other target can take.
    type: list
    elements: str
    default: []
  strategy:
    description:
      - How a VM's host is chosen among those that can take it (after priority, anti-affinity and spares).
      - V(best_fit) packs - the host with the least memory left over - and keeps big holes for big VMs.
      - V(spread) balances - the host with the most memory left over, so the starts run on several targets at once.
    type: str
    choices: [best_fit, spread]
    default: spread
  parallel:
    description: How many targets are connected to, and how many VMs are defined and started, at the same time.
    type: int
    default: 4
  verify_timeout_s:
    description:
      - Seconds to wait, per VM, for a started domain to be seen running.
      - The old name O(verify_timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 15.0
    aliases: [verify_timeout]
  beat_timeout_s:
    description:
      - Seconds to wait, after the starts, for the targets' heartbeats to list the VMs started on them (the hand-over
        that makes them C(verified)). A VM not listed by then stays C(started) and is verified by a later call.
      - The old name O(beat_timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 8.0
    aliases: [beat_timeout]
  retry_s:
    description: Seconds before the first retry of an C(unplaced) or C(failed) VM; doubled after each failed attempt.
    type: float
    default: 30.0
  retry_max_s:
    description: The longest wait between two attempts of one VM.
    type: float
    default: 300.0
  store_timeout_s:
    description:
      - Hard deadline in seconds for each read or write on the shared store (records, XML, claims, documents). A hung
        store fails the VM (or the document) instead of hanging the run.
      - The old name O(store_timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10.0
    aliases: [store_timeout]
  owner:
    description:
      - Who recovers, recorded in every claim and owed document, e.g. the AWX job or the controller.
      - Default is C(<controller host name>/<process id>), unique per run.
    type: str
  incident:
    description:
      - Identifies this death of the failed host in its claims. Default is C(<failed host>/<boot_id>) of its last
        record. Only with exactly one O(failed_hosts).
    type: str
  vms:
    description:
      - Only work these owed VMs (names or UUIDs). Default is every owed VM.
    type: list
    elements: str
  fail_on_incomplete:
    description:
      - Fail the task (with the full result) while any owed VM runs nowhere (C(owed), C(claimed), C(unplaced),
        C(failed)), so that a watchdog run that has not restored HA is red. With V(false), inspect RV(counts).
      - An unreadable record or owed document always fails the task (after everything else was done).
    type: bool
    default: true
  lease:
    description:
      - The cluster lease this run holds (M(kvmha.cluster.cluster_lease)). When given, the module renews it - only if
        it is still the O(lease.generation) it holds - before it does anything, and renews or checks it again before
        every claim and every start. A lease that moved on (the run was frozen past the ttl, a controller's clock is
        off, another watchdog took it over) stops the run there - nothing more is claimed or started - and the task
        fails with C(lease_lost). This is the fencing token that keeps a stale controller from acting.
    type: dict
    suboptions:
      cluster:
        description: The cluster of the lease.
        type: str
        required: true
      generation:
        description: The generation this run holds (the C(lease.generation) that M(kvmha.cluster.cluster_lease) returned).
        type: int
        required: true
      ttl:
        description: Seconds each renewal lasts.
        type: float
        required: true
  abandon:
    description:
      - Names or UUIDs of owed VMs an operator gives up on. They are marked C(abandoned) and never started by the HA
        layer again for this incident; nothing else is done. Requires O(operator) and O(reason).
    type: list
    elements: str
  operator:
    description: Who abandons (recorded in the owed document and the journal).
    type: str
  reason:
    description: Why they are abandoned (recorded in the owed document and the journal).
    type: str
notes:
  - libvirt's C(test:///default) driver shares one state between all connections of a process, and other
    C(test:///) URIs give a fresh state per connection; for tests, give each target its own URI.
  - The claims and owed documents assume a store with atomic C(link(2)) (local file systems, NFS, CephFS). See
    C(_storefile) and C(_recovery) in the collection's module_utils.
seealso:
  - module: kvmha.cluster.kvm_heartbeat
  - module: kvmha.cluster.host_investigate
  - module: kvmha.cluster.ipmi_power
  - module: kvmha.cluster.vm_reconcile
"""

EXAMPLES = r"""
- name: Open h1's recovery (its power off was confirmed) and restart its HA VMs on the live hosts
  kvmha.cluster.vm_evacuate:
    failed_hosts: [h1]
    cluster: prod-a
    store_path: /srv/kvmha
    targets:
      - {host: h2, uri: "qemu+ssh://kvmha@h2/system"}
      - {host: h3, uri: "qemu+ssh://kvmha@h3/system"}
    owner: "watchdog@{{ inventory_hostname }}"
  register: evacuation

- name: Every later run - work what is still owed (retries, verification, dead targets)
  kvmha.cluster.vm_evacuate:
    cluster: prod-a
    store_path: /srv/kvmha
    targets:
      - {host: h2, uri: "qemu+ssh://kvmha@h2/system"}
      - {host: h3, uri: "qemu+ssh://kvmha@h3/system"}

- name: Dry run - which VM would start where, touching nothing
  kvmha.cluster.vm_evacuate:
    failed_hosts: [h1]
    store_path: /srv/kvmha
    targets: "{{ evacuation_targets }}"
  check_mode: true
  diff: true
  register: plan

- name: An operator gives up on a VM that cannot be placed (recorded with the name and the reason)
  kvmha.cluster.vm_evacuate:
    store_path: /srv/kvmha
    abandon: [bigdb]
    operator: jdoe
    reason: decommissioned; restored from backup elsewhere
"""

RETURN = r"""
failed_hosts:
  description: The hosts newly confirmed down, as given.
  returned: always
  type: list
  elements: str
  sample: [h1]
opened:
  description: The hosts whose owed documents this call opened.
  returned: success and incomplete recoveries
  type: list
  elements: str
  sample: [h1]
closed:
  description: The hosts whose owed documents are closed (every VM verified, abandoned or moved).
  returned: always
  type: list
  elements: str
  sample: [h1]
owed:
  description: For every open document worked by this call, how many of its VMs are in each state afterwards.
  returned: success and incomplete recoveries
  type: dict
  sample: {h1: {owed: 0, claimed: 0, started: 1, verified: 2, unplaced: 0, failed: 0, abandoned: 0, moved: 0}}
transitions:
  description: Every change of an owed VM's state made by this call, in order.
  returned: always
  type: list
  elements: dict
  sample: [{host: h1, vm: db1, uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, from: owed, to: verified, target: h2,
            reason: "", attempts: 1}]
interrupted:
  description:
    - Documents whose last worker began and never finished (the controller was killed, the job cancelled) - with
      that run's owner, when it began, and the state of each VM as it left them. This call finished their work.
  returned: success and incomplete recoveries
  type: list
  elements: dict
  sample: [{host: h1, owner: watchdog/812/20261203T101500-1234, started: 1764756900.1, vms: {db1: claimed}}]
incidents:
  description: The incident id of each document worked (written into the claims).
  returned: success and incomplete recoveries
  type: dict
  sample: {h1: h1/5f0c7a1e-4f1c-4b6e-9a59-0f3c2b0d9d11}
unreadable:
  description:
    - Hosts whose last heartbeat record or owed document could not be used. Not empty means the task failed.
  returned: always
  type: list
  elements: dict
  sample: [{host: h4, status: invalid, reason: "the owed document of h4 (generation 3) is invalid: ..."}]
aborted:
  description:
    - Failed hosts not recovered because they were not off right before their recovery opened - read on, or not read,
      by O(power_checks) - or booted again since they were judged (see O(boot_ids)); nothing of them was started
      elsewhere.
  returned: always
  type: list
  elements: dict
  sample: [{host: h2, reason: "not off any more right before its recovery (power on)"}]
powerstate:
  description: The power state of each host of O(power_checks) read right before its recovery (C(on), C(off), C(unknown)).
  returned: success and incomplete recoveries
  type: dict
  sample: {h1: "off"}
owner:
  description: The owner written into the claims and documents.
  returned: always
  type: str
  sample: awx-1/4242
plan:
  description: Every placement, in start order (C(retry) when the VM went back to its claim's target).
  returned: success and incomplete recoveries
  type: list
  elements: dict
  sample: [{order: 1, round: 1, uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, name: db1, failed_host: h1, priority: 90,
            host: h2, memory_mib: 64, vcpus: 1, group: db, spare: false, retry: false}]
vms:
  description: One entry per owed VM worked (not yet terminal before this call), in plan order.
  returned: success and incomplete recoveries
  type: list
  elements: dict
  sample:
    - {uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, name: db1, failed_host: h1, priority: 90, group: db, memory_mib: 64,
       vcpus: 1, status: started, state: verified, previous: owed, host: h2, order: 1, round: 1, reason: "",
       error_kind: "", attempts: 1, next_try: null, claim: {action: create, reason: no claim yet, owner: awx-1/4242,
       generation: 2, state: started},
       timestamps: {placed: 1764063000.101, claimed: 1764063000.104, defined: 1764063000.31, started: 1764063000.71,
                    running: 1764063000.72}}
  contains:
    uuid:
      description: The VM's UUID.
      type: str
    name:
      description: The VM's name.
      type: str
    failed_host:
      description: The fenced host whose owed document owes the VM; its claim carries that document's incident.
      type: str
    priority:
      description: The VM's HA priority.
      type: int
    group:
      description: Its anti-affinity group, or an empty string.
      type: str
    memory_mib:
      description: Memory it needs.
      type: int
    vcpus:
      description: vCPUs it needs.
      type: int
    order:
      description: Its RV(plan) order (the last round's), or null if it was not planned by this call.
      type: int
    round:
      description: The round in which it was last planned, or null.
      type: int
    status:
      description:
        - What this call did - C(started), C(running) (found active), C(planned) (check mode), C(waiting) (not due,
          or its claim's target cannot be checked), C(unplaced), C(failed).
      type: str
    state:
      description: Its owed state afterwards (see the description).
      type: str
    previous:
      description: Its owed state before this call.
      type: str
    host:
      description: Where it runs, would run, or may run (a start whose outcome is unknown); null otherwise.
      type: str
    reason:
      description: Why it waits, is unplaced or failed; empty otherwise.
      type: str
    error_kind:
      description: Classifies a failure (C(timeout), C(connection), C(claim), C(not_running), C(duplicate) ...).
      type: str
    attempts:
      description: Start attempts so far, over all runs.
      type: int
    next_try:
      description: Unix time of the next attempt of an C(unplaced) or C(failed) VM, else null.
      type: float
    claim:
      description: The claim decision (C(action) create, takeover, retry, skip or fail, and C(reason)) and, once
        written, C(owner), C(generation) and C(state).
      type: dict
    timestamps:
      description: Unix times of the phases reached - C(placed), C(claimed), C(defined), C(started), C(running).
      type: dict
counts:
  description: How many VMs ended in each status of RV(vms).
  returned: success and incomplete recoveries
  type: dict
  sample: {started: 3, running: 0, planned: 0, waiting: 0, unplaced: 0, failed: 0}
attempts:
  description: Start attempts made by this call (placement failures included).
  returned: success and incomplete recoveries
  type: int
  sample: 3
targets:
  description: Every target and what was made of it (C(used), C(searched) - reachable but its record is not usable
    for placement - or C(excluded), with the reason).
  returned: success and incomplete recoveries
  type: list
  elements: dict
  sample: [{host: h2, uri: "qemu+ssh://kvmha@h2/system", status: used, reason: "", mem_free_mib: 3900, vcpus_free: 6,
            spare: false, broken: false}]
replanned:
  description: VMs whose target broke before they were started there, and where they went instead.
  returned: success and incomplete recoveries
  type: list
  elements: dict
  sample: [{uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, name: db1, from_host: h3, to_host: h2, reason: "connection to h3 broke"}]
started_at:
  description: Unix time at which the module started.
  returned: success and incomplete recoveries
  type: float
  sample: 1764063000.1
finished_at:
  description: Unix time at which the module finished.
  returned: success and incomplete recoveries
  type: float
  sample: 1764063000.9
elapsed:
  description: Seconds spent in the module.
  returned: success and incomplete recoveries
  type: float
  sample: 0.812
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
    - V(incomplete) needs O(fail_on_incomplete); V(lease_lost) needs O(lease).
  returned: failure
  type: str
  choices: [invalid_input, missing_library, timeout, store, conflict, invalid_document, invalid_owed, lease_lost,
            incomplete]
  sample: incomplete
diff:
  description: Where each VM runs before and after (C(name) or C(name (uuid)) when names repeat).
  returned: when diff mode is on
  type: dict
  sample: {before: {vms: {db1: nowhere, web1: h3}}, after: {vms: {db1: h2, web1: h3}}}
"""

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import LIBVIRT_CONNECTION_SPEC, STORE_SPEC, merge_specs, renamed
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._evacuation import Evacuation
from ansible_collections.kvmha.cluster.plugins.module_utils._ipmi import PYGHMI_IMPORT_ERROR, IpmiClient
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import LIBVIRT_IMPORT_ERROR, uri_warnings
from ansible_collections.kvmha.cluster.plugins.module_utils._placement import DEFAULT_STRATEGY

TARGET_SPEC = {"host": {"type": "str", "required": True}, "uri": {"type": "str", "required": True}}
POWER_CHECK_SPEC = {
    "host": {"type": "str", "required": True},
    "address": {"type": "str", "required": True},
    "port": {"type": "int", "default": 623},
    "username": {"type": "str", "required": True},
    "password": {"type": "str", "required": True, "no_log": True},
    "kg": {"type": "str", "no_log": True},
    "unknown_ok": {"type": "bool", "default": False},
}

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    LIBVIRT_CONNECTION_SPEC,
    {
        "failed_hosts": {"type": "list", "elements": "str", "default": []},
        "power_checks": {"type": "list", "elements": "dict", "default": [], "options": POWER_CHECK_SPEC},
        "power_timeout_s": {"type": "float", "default": 2.0},
        "cluster": {"type": "str", "default": ""},
        "decisions": {"type": "dict", "default": {}},
        "boot_ids": {"type": "dict", "default": {}},
        "targets": {"type": "list", "elements": "dict", "default": [], "options": TARGET_SPEC},
        "spare_hosts": {"type": "list", "elements": "str", "default": []},
        "strategy": {"type": "str", "choices": ["best_fit", "spread"], "default": DEFAULT_STRATEGY},
        "parallel": {"type": "int", "default": 4},
        "verify_timeout_s": renamed({"type": "float", "default": 15.0}, "verify_timeout"),
        "beat_timeout_s": renamed({"type": "float", "default": 8.0}, "beat_timeout"),
        "retry_s": {"type": "float", "default": 30.0},
        "retry_max_s": {"type": "float", "default": 300.0},
        "store_timeout_s": renamed({"type": "float", "default": 10.0}, "store_timeout"),
        "owner": {"type": "str"},
        "incident": {"type": "str"},
        "vms": {"type": "list", "elements": "str"},
        "fail_on_incomplete": {"type": "bool", "default": True},
        "lease": {"type": "dict", "options": {"cluster": {"type": "str", "required": True},
                                              "generation": {"type": "int", "required": True},
                                              "ttl": {"type": "float", "required": True}}},
        "abandon": {"type": "list", "elements": "str"},
        "operator": {"type": "str"},
        "reason": {"type": "str"},
    },
)

REQUIRED_TOGETHER = [("abandon", "operator", "reason")]


def ipmi_client(check: dict) -> IpmiClient:
    return IpmiClient(address=check["address"], port=check["port"], username=check["username"],
                      password=check["password"], kg=check["kg"])


def run(module: KvmhaModule) -> dict:
    for target in module.params["targets"]:
        for warning in uri_warnings(target["uri"]):
            module.warn(warning)
    if module.params["power_checks"]:
        module.require_library("pyghmi", PYGHMI_IMPORT_ERROR)
    evacuation = Evacuation(module.params, module.check_mode, module.diff_mode, power_client=ipmi_client)
    try:
        if module.params["abandon"]:
            return evacuation.abandon(module.params["abandon"], module.params["operator"], module.params["reason"])
        return evacuation.run()
    finally:
        for warning in evacuation.warnings:
            module.warn(warning)


def main():
    run_module(ARGUMENT_SPEC, run, libraries=(("libvirt-python", LIBVIRT_IMPORT_ERROR),), required_together=REQUIRED_TOGETHER)


if __name__ == "__main__":
    main()
