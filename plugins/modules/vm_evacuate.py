#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_evacuate
short_description: Restart dead hypervisors' HA VMs on the surviving hosts, exactly once
version_added: 0.1.0
description:
  - Restarts the HA virtual machines of the failed hosts (O(failed_hosts), or one O(failed_host)) on the live
    O(targets). Run it only after each failed host is confirmed down (power off confirmed by its BMC, or a
    self-fence guarantee); the module does not judge that.
  - The VM list is the HA VMs (C(ha=true)) of each failed host's B(last) heartbeat record,
    C(<store_path>/kvmha/hosts/<failed host>.json). Each VM's domain XML is read from
    C(<store_path>/kvmha/vms/<uuid>.xml) and validated as input from outside (size limit, no DTD or entities, the
    UUID must match). A VM whose XML is missing or invalid fails on its own; the others go on.
  - All failed hosts of one call are evacuated B(together) - one plan for all their VMs, so priorities and
    anti-affinity groups hold across hosts and each target's free capacity is counted once. Evacuate hosts that
    died together in one call - two calls one after the other each plan against the targets' heartbeat capacity,
    which lags the first call's starts by up to one beat, so together they could over-commit a target.
  - A failed host whose last record cannot be read (missing, invalid) has an unknown VM list - its VMs cannot be
    evacuated. The other failed hosts are still evacuated, and the task then fails, whatever
    O(fail_on_incomplete) says (RV(unreadable)). When no failed host's record can be read, nothing is done.
  - A VM listed by the last records of two failed hosts (it moved between them just before both died) is
    evacuated once, for the host whose record is the newest, with a warning.
  - Each target's free capacity and the anti-affinity groups of the VMs it runs come from its own heartbeat
    record. A target whose record is missing, invalid or marked stopped is not used for placement (it is still
    searched for running copies), and a target whose libvirtd cannot be reached within O(connect_timeout) is
    excluded. RV(targets) says why. A failed host listed among the targets is never used.
  - A VM that is already active (running, paused ...) on any reachable target is skipped, so a re-run changes
    nothing. A VM that the heartbeat of an unreachable target lists as running there is skipped too.
  - Placement is deterministic - priority descending, then best fit (the least memory left over; or the most, with
    O(strategy=spread)). Anti-affinity
    groups never share a host, reserved O(spare_hosts) are used only when no other host can take a VM, and a VM
    that fits nowhere is returned as C(unplaced) with the reason. Nothing is over-committed.
  - Before it defines a VM, the module takes the VM's claim on the store, C(<store_path>/kvmha/claims/<uuid>/),
    so two evacuators (two watchdogs, a watchdog and an operator) never start one VM twice. A claim is a series of
    immutable generation files; a new generation is published with an atomic C(link(2)) that fails if it exists,
    so of two writers exactly one wins. A claim holds the owner, the incident, the target and a state
    (C(claimed), C(started), C(failed)).
  - A claim is B(stale), and is taken over by an atomic compare-and-replace of the generation that was read, when
    it was released (its attempt C(failed)), or belongs to another incident. Each VM's claim carries the incident
    of its own failed host, C(<failed host>/<boot_id>) of that host's last record (unless O(incident) is given,
    for a single failed host); a host that died, was fenced and died again has booted in between, while
    evacuators of one death agree on it, whether they evacuate that host alone or together with others.
    A C(claimed) claim of this incident is also taken over once its O(claim_ttl) has passed, but only if its target
    is reachable and does not run the VM. A C(started) claim of this incident is never taken over, even if the VM
    is not running any more (somebody may have stopped it on purpose). Any other claim makes the VM C(skipped)
    with the claimant. An unreadable claim makes the VM C(failed) - an operator must look.
  - The VMs are defined and started in parallel across targets (one connection per target for all its VMs, at
    most O(parallel) targets at once), autostart is disabled on the new copy (the HA layer decides where a VM
    runs), and each domain is then verified to be running within O(verify_timeout).
  - A target whose connection breaks before a VM was started there is dropped, and the VMs planned on it are
    planned again on the others (RV(replanned)). A start whose outcome is unknown (timeout, broken connection)
    is not retried elsewhere; the VM is C(failed), its claim stays, and it names the host where it may run.
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
        cluster. Connections are opened read-only; no claim is written and nothing is defined or started.
  diff_mode:
    support: full
    details:
      - Before - where each HA VM of the failed hosts runs now (a target's name, or C(nowhere)). After - where it
        runs, or would run in check mode, afterwards.
  idempotent:
    support: full
    details:
      - A VM that runs on a target, or that was started for this incident, is skipped; a second run reports no change.
options:
  failed_hosts:
    description:
      - Inventory names of the dead hypervisors (their heartbeat record names), evacuated together in this call.
      - Their HA VMs are planned as one set - priority descending across all of them, anti-affinity groups across
        all of them, and each target's free capacity counted once - see the description.
      - Mutually exclusive with O(failed_host); one of the two is required. A host may be listed only once.
    type: list
    elements: str
  failed_host:
    description:
      - Inventory name of one dead hypervisor (its heartbeat record name); the same as a one-element
        O(failed_hosts).
      - Mutually exclusive with O(failed_hosts); one of the two is required.
    type: str
  targets:
    description:
      - The live hypervisors that may take VMs, with their libvirt URIs (inventory variable C(kvmha_libvirt_uri)).
      - A failed host is ignored here if listed.
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: Inventory name of the target (its heartbeat record name).
        type: str
        required: true
      uri:
        description: libvirt connection URI of the target, e.g. C(qemu+ssh://root@h2/system).
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
      - V(spread) balances - the host with the most memory left over. Each target starts its VMs one after the
        other, so spreading them over more targets restarts them sooner.
    type: str
    choices: [best_fit, spread]
    default: best_fit
  parallel:
    description: How many targets are connected to, and worked on, at the same time.
    type: int
    default: 8
  verify_timeout:
    description: Seconds to wait, per VM, for a started domain to be seen running.
    type: float
    default: 15.0
  store_timeout:
    description:
      - Hard deadline in seconds for each read or write on the shared store (records, XML, claims). A hung store
        fails the VM (or, for the failed host's record, the module) instead of hanging the run.
    type: float
    default: 10.0
  owner:
    description:
      - Who evacuates, recorded in every claim, e.g. the AWX job or the controller.
      - Default is C(<controller host name>/<process id>), unique per run.
    type: str
  incident:
    description:
      - Identifies this death of the failed host in the claims. Default is C(<failed host>/<boot_id>) of its last
        record.
      - Only for a single failed host (O(failed_host), or O(failed_hosts) with one element); refused with several,
        whose VMs each carry their own host's incident.
    type: str
  claim_ttl:
    description:
      - Seconds after which a C(claimed) (not yet started) claim of this incident may be taken over by another
        evacuator, if the claim's target is reachable and does not run the VM.
      - Must exceed one VM's worst case, O(connect_timeout) + 4 x O(call_timeout) + O(verify_timeout) +
        2 x O(store_timeout). The evacuator renews its claim before it defines a VM once a quarter of the ttl has
        passed (VMs queued behind others on one target), so the claim cannot expire while the VM is being started.
    type: float
    default: 300.0
  vms:
    description:
      - Only evacuate these VMs (names or UUIDs). Default is every HA VM of the failed hosts' last records.
    type: list
    elements: str
  fail_on_incomplete:
    description:
      - Fail the task (with the full result) when any VM ends C(failed) or C(unplaced), so that a watchdog run that
        could not restore HA is red. With V(false), inspect RV(counts) instead.
      - A failed host whose record cannot be read always fails the task (after the other hosts were evacuated).
    type: bool
    default: true
notes:
  - libvirt's C(test:///default) driver shares one state between all connections of a process, and other
    C(test:///) URIs give a fresh state per connection; for tests, give each target its own URI.
  - The claims assume a store with atomic C(link(2)) (local file systems, NFS, CephFS). See C(_storefile) in the
    collection's module_utils for the protocol.
seealso:
  - module: kvmha.cluster.kvm_heartbeat
  - module: kvmha.cluster.host_investigate
  - module: kvmha.cluster.ipmi_power
"""

EXAMPLES = r"""
- name: Restart h1's HA VMs on the live hosts (after its power off was confirmed)
  kvmha.cluster.vm_evacuate:
    failed_host: h1
    store_path: "{{ kvmha_store_path }}"
    targets: >-
      {{ live_hosts | map('extract', hostvars) | map(attribute='kvmha_libvirt_uri')
         | zip(live_hosts) | map('community.general.dict_kv', 'uri') | list }}
    owner: "watchdog@{{ inventory_hostname }}"
  register: evacuation

- name: The same with an explicit target list and a reserved spare host
  kvmha.cluster.vm_evacuate:
    failed_host: h1
    store_path: /srv/kvmha
    targets:
      - {host: h2, uri: "qemu+ssh://root@h2/system"}
      - {host: h3, uri: "qemu+ssh://root@h3/system"}
      - {host: h9, uri: "qemu+ssh://root@h9/system"}
    spare_hosts: [h9]
    connect_timeout: 3
    call_timeout: 10

- name: Two hosts that died together - one plan for both, so no target is over-committed
  kvmha.cluster.vm_evacuate:
    failed_hosts: [h1, h4]
    store_path: /srv/kvmha
    targets:
      - {host: h2, uri: "qemu+ssh://root@h2/system"}
      - {host: h3, uri: "qemu+ssh://root@h3/system"}
      - {host: h5, uri: "qemu+ssh://root@h5/system"}
  register: evacuation

- name: Which failed host's VM went where
  ansible.builtin.debug:
    msg: "{{ evacuation.vms | map(attribute='failed_host') | zip(evacuation.vms | map(attribute='name'),
             evacuation.vms | map(attribute='host')) | list }}"

- name: Dry run - which VM would start where, touching nothing
  kvmha.cluster.vm_evacuate:
    failed_host: h1
    store_path: /srv/kvmha
    targets: "{{ evacuation_targets }}"
  check_mode: true
  diff: true
  register: plan

- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ plan.plan | map(attribute='name') | zip(plan.plan | map(attribute='host')) | list }}"
"""

RETURN = r"""
failed_hosts:
  description: The failed hosts whose VMs were evacuated, in the order given.
  returned: always
  type: list
  elements: str
  sample: [h1, h4]
failed_host:
  description:
    - The failed host when there is exactly one (as before O(failed_hosts) existed); null with several - use
      RV(failed_hosts).
  returned: always
  type: str
  sample: h1
incidents:
  description:
    - The incident id written into the claims of each failed host's VMs, by failed host. A host whose record could
      not be read (RV(unreadable)) has none.
  returned: always
  type: dict
  sample: {h1: h1/5f0c7a1e-4f1c-4b6e-9a59-0f3c2b0d9d11, h4: h4/0d1e2f3a-7b6c-4d5e-8f90-a1b2c3d4e5f6}
incident:
  description:
    - The incident id written into the claims when there is exactly one failed host (as before O(failed_hosts)
      existed); an empty string with several - use RV(incidents) - or when its record could not be read.
  returned: always
  type: str
  sample: h1/5f0c7a1e-4f1c-4b6e-9a59-0f3c2b0d9d11
unreadable:
  description:
    - Failed hosts whose last heartbeat record could not be used, so their VM list is unknown and none of their VMs
      was evacuated. Not empty means the task failed.
  returned: always
  type: list
  elements: dict
  sample: [{host: h4, status: missing, reason: "no heartbeat file"}]
  contains:
    host:
      description: The failed host.
      type: str
    status:
      description: C(missing), C(invalid), or C(error) (the store failed or hung).
      type: str
    reason:
      description: Why.
      type: str
owner:
  description: The owner written into the claims.
  returned: always
  type: str
  sample: awx-1/4242
plan:
  description:
    - Every placement, in start order. A VM planned again after its target broke appears once per round.
    - In check mode this is what a real run would do.
  returned: always
  type: list
  elements: dict
  sample:
    - {order: 1, round: 1, uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, name: db1, failed_host: h1, priority: 90,
       host: h2, memory_mib: 64, vcpus: 1, group: db, spare: false}
  contains:
    order:
      description: Position in the start order, from 1, over all rounds.
      type: int
    round:
      description: 1, or the round in which the VM was planned again after its target broke.
      type: int
    uuid:
      description: The VM's UUID.
      type: str
    name:
      description: The VM's name.
      type: str
    failed_host:
      description: The failed host whose record listed the VM.
      type: str
    priority:
      description: The VM's HA priority (higher starts first).
      type: int
    host:
      description: The target it is planned on.
      type: str
    memory_mib:
      description: Memory it needs (the larger of its record and its domain XML).
      type: int
    vcpus:
      description: vCPUs it needs.
      type: int
    group:
      description: Its anti-affinity group, or an empty string.
      type: str
    spare:
      description: Whether the host is a reserved spare.
      type: bool
vms:
  description:
    - One entry per HA VM of the failed hosts (after the O(vms) filter), in plan order (VMs that were never
      planned last, by priority).
  returned: always
  type: list
  elements: dict
  sample:
    - uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e
      name: db1
      failed_host: h1
      priority: 90
      group: db
      memory_mib: 64
      vcpus: 1
      status: started
      host: h2
      order: 1
      round: 1
      reason: ""
      error_kind: ""
      claim: {action: create, reason: no claim yet, owner: awx-1/4242, generation: 2, state: started}
      timestamps: {placed: 1764063000.101, claimed: 1764063000.104, defined: 1764063000.31,
                   started: 1764063000.71, running: 1764063000.72}
  contains:
    uuid:
      description: The VM's UUID.
      type: str
    name:
      description: The VM's name.
      type: str
    failed_host:
      description: The failed host whose last record listed the VM; its claim carries that host's incident.
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
    status:
      description: C(started), C(skipped), C(unplaced) or C(failed), or C(planned) in check mode.
      type: str
    host:
      description:
        - Where the VM runs now (started, or skipped because it runs there) or would run (planned), or where it
          may run (failed after an unknown start); otherwise null.
      type: str
    order:
      description: Its RV(plan) order (the last round's), or null if it was never planned.
      type: int
    round:
      description: The round in which it was last planned, or null.
      type: int
    reason:
      description: Why it was skipped, unplaced or failed; empty otherwise.
      type: str
    error_kind:
      description: Classifies a failure (C(timeout), C(connection), C(claim), C(not_running) ...); empty otherwise.
      type: str
    claim:
      description:
        - The claim decision (C(action) create, takeover, skip or fail, and C(reason)) and, once written,
          C(owner), C(generation) and C(state). Empty if the claim was never looked at.
      type: dict
    timestamps:
      description:
        - Unix times of the phases reached - C(placed), C(claimed), C(defined), C(started), C(running) - so that
          the time to recovery can be read off.
      type: dict
counts:
  description: How many VMs ended in each status.
  returned: always
  type: dict
  sample: {started: 3, planned: 0, skipped: 1, unplaced: 0, failed: 0}
  contains:
    started:
      description: VMs started (and seen running).
      type: int
    planned:
      description: VMs that would be started (check mode).
      type: int
    skipped:
      description: VMs already running, already started in this incident, or claimed by another evacuator.
      type: int
    unplaced:
      description: VMs that fit on no target.
      type: int
    failed:
      description: VMs that could not be started, or whose start is in doubt.
      type: int
targets:
  description: Every target and what was made of it.
  returned: always
  type: list
  elements: dict
  sample:
    - {host: h2, uri: "qemu+ssh://root@h2/system", status: used, reason: "", mem_free_mib: 3900, vcpus_free: 6,
       spare: false, broken: false}
    - {host: h3, uri: "qemu+ssh://root@h3/system", status: excluded,
       reason: "libvirt: connect on h3 did not finish within 5.0 s", mem_free_mib: null, vcpus_free: null,
       spare: false, broken: false}
  contains:
    host:
      description: The target.
      type: str
    uri:
      description: Its libvirt URI.
      type: str
    status:
      description:
        - C(used) (reachable and placeable), C(searched) (reachable, searched for running copies, but its record is
          not usable for placement) or C(excluded).
      type: str
    reason:
      description: Why it was not used, or why its connection broke; empty otherwise.
      type: str
    mem_free_mib:
      description: Free memory from its record, or null.
      type: int
    vcpus_free:
      description: Free vCPUs from its record, or null.
      type: int
    spare:
      description: Whether it is a reserved spare.
      type: bool
    broken:
      description: Whether its connection failed during the run.
      type: bool
replanned:
  description: VMs whose target broke before they were started there, and where they went instead.
  returned: always
  type: list
  elements: dict
  sample: [{uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, name: db1, from_host: h3, to_host: h2,
            reason: "connection to h3 broke: ..."}]
  contains:
    uuid:
      description: The VM's UUID.
      type: str
    name:
      description: The VM's name.
      type: str
    from_host:
      description: The target that broke.
      type: str
    to_host:
      description: Where it was started (or planned) instead, or null if nowhere.
      type: str
    reason:
      description: How the target broke.
      type: str
started_at:
  description: Unix time at which the module started.
  returned: always
  type: float
  sample: 1764063000.1
finished_at:
  description: Unix time at which the module finished.
  returned: always
  type: float
  sample: 1764063000.9
elapsed:
  description: Seconds spent in the module.
  returned: always
  type: float
  sample: 0.812
error_kind:
  description:
    - Why the task failed - C(incomplete) (a VM failed or is unplaced, with O(fail_on_incomplete)), C(store) (a
      failed host's record, or the store), C(timeout) (the store hung), C(invalid_input) (the arguments).
    - Every key above comes with it, except for C(invalid_input).
  returned: failure
  type: str
  sample: incomplete
diff:
  description: Where each VM runs before and after (C(name) or C(name (uuid)) when names repeat).
  returned: when diff mode is on
  type: dict
  sample: {before: {vms: {db1: nowhere, web1: h3}}, after: {vms: {db1: h2, web1: h3}}}
"""

import concurrent.futures
import os
import socket
import time

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import LIBVIRT_CONNECTION_SPEC, STORE_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._claims import ClaimBook
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import call_with_deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, KvmhaError, LibvirtError, StoreError
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import RecordReader, store_dir, validate_host_name
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import (
    LIBVIRT_IMPORT_ERROR,
    RUNNING_STATES,
    LibvirtClient,
    read_domain_xml,
    validate_uri,
)
from ansible_collections.kvmha.cluster.plugins.module_utils._placement import place, vm_order_key
from ansible_collections.kvmha.cluster.plugins.module_utils._storefile import Conflict

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    LIBVIRT_CONNECTION_SPEC,
    {
        "failed_hosts": {"type": "list", "elements": "str"},
        "failed_host": {"type": "str"},
        "targets": {
            "type": "list",
            "elements": "dict",
            "required": True,
            "options": {"host": {"type": "str", "required": True}, "uri": {"type": "str", "required": True}},
        },
        "spare_hosts": {"type": "list", "elements": "str", "default": []},
        "strategy": {"type": "str", "choices": ["best_fit", "spread"], "default": "best_fit"},
        "parallel": {"type": "int", "default": 8},
        "verify_timeout": {"type": "float", "default": 15.0},
        "store_timeout": {"type": "float", "default": 10.0},
        "owner": {"type": "str"},
        "incident": {"type": "str"},
        "claim_ttl": {"type": "float", "default": 300.0},
        "vms": {"type": "list", "elements": "str"},
        "fail_on_incomplete": {"type": "bool", "default": True},
    },
)

MUTUALLY_EXCLUSIVE = [("failed_host", "failed_hosts")]
REQUIRED_ONE_OF = [("failed_host", "failed_hosts")]

STATUSES = ("started", "planned", "skipped", "unplaced", "failed")


def _now() -> float:
    return round(time.time(), 3)


class Target:
    """One target host: its record, its connection, and what happened to it."""

    def __init__(self, host: str, uri: str, spare: bool):
        self.host = host
        self.uri = uri
        self.spare = spare
        self.status = "excluded"
        self.reason = ""
        self.connectable = False
        self.record = None
        self.placeable = False
        self.client = None
        self.active = set()
        self.broken = ""

    def as_dict(self) -> dict:
        capacity = (self.record or {}).get("capacity") or {}
        return {
            "host": self.host, "uri": self.uri, "status": self.status, "reason": self.reason,
            "mem_free_mib": capacity.get("mem_free_mib"), "vcpus_free": capacity.get("vcpus_free"),
            "spare": self.spare, "broken": bool(self.broken),
        }


class Evacuation:
    """One evacuation of one or more failed hosts, planned together.

    ``client_factory(uri, connect_timeout, call_timeout, read_only, label)`` opens a target's connection.
    """

    def __init__(self, params: dict, check_mode: bool = False, diff_mode: bool = False, client_factory=LibvirtClient):
        self.params = params
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.client_factory = client_factory
        self.store = params["store_path"]
        self.warnings = []
        self.plan = []
        self.replanned = []
        self.incidents = {}
        self.unreadable = []
        self.books = {}
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._validate()

    # ------------------------------------------------------------------------------------------- input

    def _validate(self) -> None:
        p = self.params
        self.failed_hosts = self._validate_failed_hosts(p.get("failed_host"), p.get("failed_hosts"))
        if p["incident"] and len(self.failed_hosts) > 1:
            raise InvalidInput("incident is only for a single failed host; with several (%s) each VM's claim carries "
                               "its own host's incident" % ", ".join(self.failed_hosts))
        for key in ("connect_timeout", "call_timeout", "verify_timeout", "store_timeout", "claim_ttl"):
            if not p[key] > 0:
                raise InvalidInput("%s must be positive, got %r" % (key, p[key]))
        if p["parallel"] < 1:
            raise InvalidInput("parallel must be at least 1, got %r" % p["parallel"])
        worst = p["connect_timeout"] + 4 * p["call_timeout"] + p["verify_timeout"] + 2 * p["store_timeout"]
        if p["claim_ttl"] <= worst:
            raise InvalidInput("claim_ttl (%.1f s) must exceed connect_timeout + 4 x call_timeout + verify_timeout"
                               " + 2 x store_timeout (%.1f s)" % (p["claim_ttl"], worst))
        self.spares = set(validate_host_name(h) for h in p["spare_hosts"])
        self.owner = p["owner"] if p["owner"] else "%s/%d" % (socket.gethostname(), os.getpid())
        self.targets = []
        seen = set()
        for entry in p["targets"]:
            host = validate_host_name(entry["host"])
            if host in seen:
                raise InvalidInput("target %s is listed twice" % host)
            seen.add(host)
            target = Target(host, entry["uri"], host in self.spares)
            if host in self.failed_hosts:
                target.reason = "is a failed host"
            else:
                try:
                    validate_uri(entry["uri"])
                    target.connectable = True
                except InvalidInput as err:
                    target.reason = str(err)
                    self.warnings.append("target %s excluded: %s" % (host, err))
            self.targets.append(target)
        unknown_spares = self.spares - seen
        if unknown_spares:
            self.warnings.append("spare_hosts not among the targets: %s" % ", ".join(sorted(unknown_spares)))

    @staticmethod
    def _validate_failed_hosts(one, many) -> list:
        if one is not None and many is not None:
            raise InvalidInput("parameters are mutually exclusive: failed_host|failed_hosts")
        if one is None and many is None:
            raise InvalidInput("one of the following is required: failed_host, failed_hosts")
        names = [validate_host_name(h) for h in ([one] if one is not None else many)]
        if not names:
            raise InvalidInput("failed_hosts must name at least one host")
        twice = sorted(set(h for h in names if names.count(h) > 1))
        if twice:
            raise InvalidInput("failed host %s is listed twice" % ", ".join(twice))
        return names

    @property
    def _hosts_label(self) -> str:
        return ", ".join(self.failed_hosts)

    def _store_call(self, what: str, func, *args):
        return call_with_deadline(func, self.params["store_timeout"], what, *args)

    # ------------------------------------------------------------------------------------------- gathering

    def _read_failed_hosts(self) -> list:
        """The HA VMs of every failed host's last record (each VM once), tagged with its failed host and incident."""
        reader = RecordReader(self.store)
        records = []
        kinds = set()
        for host in self.failed_hosts:
            try:
                reading = self._store_call("read the heartbeat record of %s" % host, reader.read, host)
            except KvmhaError as err:  # a hung or broken store: this host's VM list is unknown
                self.unreadable.append({"host": host, "status": "error", "reason": str(err)})
                kinds.add(err.kind)
                continue
            if reading.status != "ok":
                self.unreadable.append({"host": host, "status": reading.status, "reason": reading.reason})
                continue
            records.append(reading.record)
            self.incidents[host] = self.params["incident"] or "%s/%s" % (host, reading.record["boot_id"])
        if not records:
            if len(self.unreadable) == 1:
                why = "its heartbeat record is %s (%s), so its VM list is unknown"
                why %= (self.unreadable[0]["status"], self.unreadable[0]["reason"])
            else:
                why = "; ".join("the heartbeat record of %s is %s (%s)" % (u["host"], u["status"], u["reason"])
                                for u in self.unreadable) + ", so their VM lists are unknown"
            kind = kinds.pop() if len(kinds) == 1 and len(self.unreadable) == 1 else "store"
            raise StoreError("cannot evacuate %s: %s" % (self._hosts_label, why), result=self._empty_result(), kind=kind)
        for entry in self.unreadable:
            self.warnings.append("%s: its last heartbeat record is %s (%s); its VMs are unknown and not evacuated"
                                 % (entry["host"], entry["status"], entry["reason"]))
        # A VM listed by two failed hosts' records (moved just before both died) is evacuated once, for the host
        # with the newest record: that is where it ran last.
        newest_first = sorted(records, key=lambda r: (-r["ts"], self.failed_hosts.index(r["host"])))
        owner = {}
        for record in newest_first:
            for vm in record["vms"]:
                if vm["uuid"] in owner:
                    self.warnings.append("%s (%s) is listed by the last records of %s and %s; it is evacuated once, for %s "
                                         "(the newer record)" % (vm["name"], vm["uuid"], owner[vm["uuid"]], record["host"],
                                                                 owner[vm["uuid"]]))
                else:
                    owner[vm["uuid"]] = record["host"]
        listed = []
        for record in records:
            listed.extend(dict(vm, failed_host=record["host"]) for vm in record["vms"] if owner[vm["uuid"]] == record["host"])
        vms = [vm for vm in listed if vm["ha"]]
        wanted = self.params["vms"]
        if wanted is not None:
            names = set(wanted)
            known = set()
            for vm in listed:
                for key in (vm["name"], vm["uuid"]):
                    if key in names:
                        known.add(key)
                        if not vm["ha"]:
                            self.warnings.append("%s is not an HA VM of %s; not evacuated" % (vm["name"], vm["failed_host"]))
            read = [r["host"] for r in records]
            for missing in sorted(names - known):
                self.warnings.append("%s is not in the last heartbeat record of %s" % (
                    missing, read[0] if len(read) == 1 else "any of %s" % ", ".join(read)))
            vms = [vm for vm in vms if vm["name"] in names or vm["uuid"] in names]
        for vm in vms:
            vm.update(status="", host=None, order=None, round=None, reason="", error_kind="", claim_info={},
                      timestamps={}, xml=None, claim=None, decision=None)
        return vms

    def _load_xml(self, vms: list) -> None:
        for vm in self._pending(vms):
            path = os.path.join(store_dir(self.store, "vms"), vm["uuid"] + ".xml")
            try:
                text, info = self._store_call("read the domain XML of %s" % vm["name"], read_domain_xml, path, vm["uuid"])
            except KvmhaError as err:
                self._finish(vm, "failed", str(err), kind=err.kind)
                continue
            vm["xml"] = text
            # Size the VM by what will really be allocated, never by less than the record said.
            if info["memory_mib"] is not None:
                vm["memory_mib"] = max(vm["memory_mib"], info["memory_mib"])
            if info["vcpus"] is not None:
                vm["vcpus"] = max(vm["vcpus"], info["vcpus"])
            if info["name"] != vm["name"]:
                self.warnings.append("%s: the domain XML names it %r" % (vm["name"], info["name"]))

    def _read_targets(self) -> None:
        """Every target's record (also of targets we cannot connect to: it may list a VM as running there)."""
        reader = RecordReader(self.store)
        for target in self.targets:
            if target.host in self.failed_hosts:
                continue
            problem = ""
            try:
                reading = self._store_call("read the heartbeat record of %s" % target.host, reader.read, target.host)
            except KvmhaError as err:
                problem = "heartbeat record: %s" % err
            else:
                if reading.status != "ok":
                    problem = "heartbeat record is %s: %s" % (reading.status, reading.reason)
                else:
                    target.record = reading.record
                    if reading.record["state"] != "running":
                        problem = "heartbeat writer is stopped"
                    else:
                        target.placeable = target.connectable
            if problem:
                target.reason = "; ".join(r for r in (target.reason, problem) if r)

    def _connect(self) -> list:
        """Open one connection per target in parallel; returns the reachable targets."""
        candidates = [t for t in self.targets if t.connectable]
        p = self.params

        def connect(target):
            client = self.client_factory(target.uri, p["connect_timeout"], p["call_timeout"], self.check_mode, target.host)
            client.open()
            try:
                active = client.active_uuids()
            except LibvirtError:
                client.close()
                raise
            return client, active

        reachable = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=p["parallel"]) as pool:
            futures = {pool.submit(connect, t): t for t in candidates}
            for future in concurrent.futures.as_completed(futures):
                target = futures[future]
                try:
                    target.client, target.active = future.result()
                except KvmhaError as err:
                    target.reason = "; ".join(r for r in (target.reason, "libvirt: %s" % err) if r)
                    target.placeable = False
                    continue
                reachable.append(target)
                target.status = "used" if target.placeable else "searched"
        return sorted(reachable, key=lambda t: t.host)

    # ------------------------------------------------------------------------------------------- deciding

    def _skip_running(self, vms: list, reachable: list) -> None:
        for vm in self._pending(vms):
            where = [t.host for t in reachable if vm["uuid"] in t.active]
            if where:
                vm["host"] = where[0]
                self._finish(vm, "skipped", "already running on %s" % ", ".join(where))
                if len(where) > 1:
                    self.warnings.append("%s is active on more than one host: %s" % (vm["name"], ", ".join(where)))
                continue
            listed = [t.host for t in self.targets
                      if t.client is None and t.record is not None and t.host not in self.failed_hosts
                      and any(v["uuid"] == vm["uuid"] for v in t.record["vms"])]
            if listed:
                self._finish(vm, "skipped", "listed as running on %s by its heartbeat, whose libvirt cannot be reached"
                             % ", ".join(listed))

    def _book(self, vm: dict) -> ClaimBook:
        """The claims of the VM's own failed host and incident."""
        return self.books[vm["failed_host"]]

    def _inspect_claims(self, vms: list, reachable: list) -> None:
        hosts = [t.host for t in reachable]
        for vm in self._pending(vms):
            try:
                decision = self._store_call("read the claim of %s" % vm["name"], self._book(vm).inspect, vm["uuid"], hosts)
            except KvmhaError as err:
                self._finish(vm, "failed", "cannot read its claim: %s" % err, kind=err.kind)
                continue
            vm["decision"] = decision
            vm["claim_info"] = {"action": decision.action, "reason": decision.reason}
            if decision.action == "skip":
                if decision.current is not None and decision.current.data.get("state") == "started":
                    vm["host"] = decision.current.data.get("target")
                self._finish(vm, "skipped", decision.reason)
            elif decision.action == "fail":
                self._finish(vm, "failed", decision.reason, kind="claim")

    def _place(self, vms: list, hosts: list, capacity: dict, round_no: int) -> list:
        """Plan ``vms`` on ``hosts`` (Target objects) with ``capacity`` {host: {...}}; returns the placements."""
        plan = place(
            [dict((k, vm[k]) for k in ("uuid", "name", "priority", "memory_mib", "vcpus", "group")) for vm in vms],
            [dict(capacity[t.host], host=t.host) for t in hosts],
            [t.host for t in hosts if t.spare],
            self.params["strategy"],
        )
        by_uuid = dict((vm["uuid"], vm) for vm in vms)
        placed_at = _now()
        for entry in plan["unplaced"]:
            vm = by_uuid[entry["uuid"]]
            vm["timestamps"]["placed"] = placed_at
            reason = entry["reason"]
            if round_no > 1:
                reason = "planned again after its target broke: %s" % reason
            self._finish(vm, "unplaced", reason)
        placements = []
        for entry in plan["placements"]:
            vm = by_uuid[entry["uuid"]]
            entry = dict(entry, failed_host=vm["failed_host"], round=round_no, order=len(self.plan) + 1)
            self.plan.append(entry)
            vm.update(host=entry["host"], order=entry["order"], round=round_no)
            vm["timestamps"]["placed"] = placed_at
            placements.append(vm)
        for host, left in plan["hosts"].items():
            capacity[host] = {"mem_free_mib": left["mem_free_mib"], "vcpus_free": left["vcpus_free"], "groups": left["groups"]}
        return placements

    # ------------------------------------------------------------------------------------------- acting

    def _claim(self, vm: dict) -> bool:
        book = self._book(vm)
        try:
            if vm["claim"] is None:
                claim = self._store_call("claim %s" % vm["name"], book.acquire, vm["uuid"], vm["name"], vm["host"], vm["decision"])
            else:
                claim = self._store_call("re-target the claim of %s" % vm["name"], book.retarget, vm["claim"], vm["host"])
        except Conflict as err:
            current = err.current
            who = current.owner if current is not None else "another evacuator"
            vm["host"] = None
            self._finish(vm, "skipped", "claimed by %s first (%s)" % (who, err))
            return False
        except KvmhaError as err:
            vm["host"] = None
            self._finish(vm, "failed", "cannot write its claim: %s" % err, kind=err.kind)
            return False
        self._set_claim(vm, claim)
        vm["timestamps"]["claimed"] = _now()
        return True

    @staticmethod
    def _set_claim(vm: dict, claim) -> None:
        vm["claim"] = claim
        vm["claim_info"].update(owner=claim.owner, generation=claim.generation, state=claim.data.get("state"))

    def _renew(self, vm: dict):
        """Renew the VM's claim if a quarter of its ttl has passed; returns None or (outcome, reason, kind)."""
        if time.time() - vm["claim"].created <= self.params["claim_ttl"] / 4.0:
            return None
        try:
            self._set_claim(vm, self._store_call("renew the claim of %s" % vm["name"], self._book(vm).renew, vm["claim"]))
        except Conflict as err:
            who = err.current.owner if err.current is not None else "another evacuator"
            return ("lost", "its claim was taken over by %s before it was started" % who, "")
        except KvmhaError as err:
            return ("failed", "its claim could not be renewed, so it was not started: %s" % err, err.kind)
        return None

    def _work_target(self, target: Target, vms: list) -> list:
        """Define, start and verify ``vms`` on ``target`` in order. Returns [(vm, outcome, reason, kind)].

        outcome: started, failed (definitely not running), unknown (may run there), replan (not attempted here),
        lost (another evacuator took the claim over).
        """
        client = target.client
        outcomes = []
        for vm in vms:
            if target.broken:
                outcomes.append((vm, "replan", target.broken, ""))
                continue
            renewal = self._renew(vm)
            if renewal is not None:
                outcomes.append((vm,) + renewal)
                continue
            try:
                client.define(vm["xml"])
                vm["timestamps"]["defined"] = _now()
            except LibvirtError as err:
                if err.kind in ("timeout", "connection", "unreachable") or not client.alive():
                    target.broken = "connection to %s broke: %s" % (target.host, err)
                    outcomes.append((vm, "replan", target.broken, err.kind))
                else:
                    outcomes.append((vm, "failed", "define on %s failed: %s" % (target.host, err), err.kind))
                continue
            try:
                client.start(vm["uuid"])
                vm["timestamps"]["started"] = _now()
            except LibvirtError as err:
                if err.kind in ("timeout", "connection", "unreachable") or not client.alive():
                    target.broken = "connection to %s broke: %s" % (target.host, err)
                    outcomes.append((vm, "unknown", "start on %s did not complete (%s); it may be running there, so it "
                                     "is not started elsewhere" % (target.host, err), err.kind))
                else:
                    outcomes.append((vm, "failed", "start on %s failed: %s" % (target.host, err), err.kind))
                continue
            try:
                state = client.wait_running(vm["uuid"], self.params["verify_timeout"])
            except LibvirtError as err:
                outcomes.append((vm, "unknown", "started on %s, but its state could not be read: %s" % (target.host, err), err.kind))
                continue
            if state in RUNNING_STATES:
                vm["timestamps"]["running"] = _now()
                outcomes.append((vm, "started", "", ""))
            elif state in ("shutoff", "crashed"):
                outcomes.append((vm, "failed", "started on %s, but it is %s right after" % (target.host, state), "not_running"))
            else:
                outcomes.append((vm, "unknown", "started on %s, but it is %s after %.1f s"
                                 % (target.host, state, self.params["verify_timeout"]), "not_running"))
        return outcomes

    def _execute(self, placements: list) -> list:
        """Claim, then define/start in parallel per target. Returns the VMs to plan again."""
        by_target = {}
        for vm in placements:
            if self._claim(vm):
                by_target.setdefault(vm["host"], []).append(vm)
        targets = dict((t.host, t) for t in self.targets)
        results = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.params["parallel"]) as pool:
            futures = [pool.submit(self._work_target, targets[host], jobs) for host, jobs in sorted(by_target.items())]
            for future in futures:
                results.extend(future.result())
        replan = []
        for vm, outcome, reason, kind in sorted(results, key=lambda r: r[0]["order"]):
            if outcome == "started":
                self._finish(vm, "started", "")
                self._update_claim(vm, self._book(vm).mark_started, vm["host"])
            elif outcome == "failed":
                self._finish(vm, "failed", reason, kind=kind)
                self._update_claim(vm, self._book(vm).mark_failed, reason)
                vm["host"] = None
            elif outcome == "unknown":
                self._finish(vm, "failed", reason, kind=kind or "unknown")
            elif outcome == "lost":
                vm["host"] = None
                self._finish(vm, "skipped", reason)
            else:
                self.replanned.append({"uuid": vm["uuid"], "name": vm["name"], "from_host": vm["host"], "to_host": None,
                                       "reason": reason})
                vm["host"] = None
                replan.append(vm)
        return replan

    def _update_claim(self, vm: dict, method, arg) -> None:
        try:
            self._set_claim(vm, self._store_call("update the claim of %s" % vm["name"], method, vm["claim"], arg))
        except KvmhaError as err:
            self.warnings.append("%s: the claim could not be updated (%s); it stays %s until it expires"
                                 % (vm["name"], err, vm["claim"].data.get("state")))

    # ------------------------------------------------------------------------------------------- bookkeeping

    @staticmethod
    def _pending(vms: list) -> list:
        return [vm for vm in vms if not vm["status"]]

    @staticmethod
    def _finish(vm: dict, status: str, reason: str, kind: str = "") -> None:
        vm["status"] = status
        vm["reason"] = reason
        vm["error_kind"] = kind if status == "failed" else ""

    def _hosts_result(self) -> dict:
        """The failed hosts, their incidents and unreadable records (with the compatible single-host keys)."""
        single = len(self.failed_hosts) == 1
        return {"failed_hosts": list(self.failed_hosts), "failed_host": self.failed_hosts[0] if single else None,
                "incidents": dict(self.incidents),
                "incident": self.incidents.get(self.failed_hosts[0], "") if single else "",
                "unreadable": [dict(u) for u in self.unreadable]}

    def _empty_result(self) -> dict:
        result = {"changed": False, "owner": self.owner, "plan": [], "vms": [], "counts": dict((s, 0) for s in STATUSES),
                  "targets": [t.as_dict() for t in self.targets], "replanned": [], "started_at": round(self.started_at, 3),
                  "finished_at": _now(), "elapsed": round(time.monotonic() - self._t0, 3)}
        result.update(self._hosts_result())
        return result

    # ------------------------------------------------------------------------------------------- main

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            for target in self.targets:
                if target.client is not None:
                    target.client.close()

    def _run(self) -> dict:
        vms = self._read_failed_hosts()
        self._read_targets()
        reachable = self._connect() if vms else []
        before = self._where(vms, reachable)
        self._skip_running(vms, reachable)
        self._load_xml(vms)
        self.books = dict((host, ClaimBook(self.store, self.owner, host, incident, self.params["claim_ttl"]))
                          for host, incident in self.incidents.items())
        self._inspect_claims(vms, reachable)

        hosts = [t for t in reachable if t.placeable]
        capacity = dict((t.host, {"mem_free_mib": t.record["capacity"]["mem_free_mib"],
                                  "vcpus_free": t.record["capacity"]["vcpus_free"],
                                  "groups": [v["group"] for v in t.record["vms"] if v["group"]]}) for t in hosts)
        pending = sorted(self._pending(vms), key=vm_order_key)
        round_no = 1
        while pending:
            placements = self._place(pending, hosts, capacity, round_no)
            for vm in pending:
                if vm["status"] == "unplaced" and vm["claim"] is not None:
                    self._update_claim(vm, self._book(vm).mark_failed, vm["reason"])
            if self.check_mode:
                for vm in placements:
                    self._finish(vm, "planned", "")
                break
            pending = sorted(self._execute(placements), key=vm_order_key)
            hosts = [t for t in hosts if not t.broken]
            round_no += 1
        for target in self.targets:
            if target.broken:
                target.reason = target.broken
        return self._result(vms, before)

    def _where(self, vms: list, reachable: list) -> dict:
        where = {}
        for vm in vms:
            hosts = [t.host for t in reachable if vm["uuid"] in t.active]
            where[vm["uuid"]] = hosts[0] if hosts else "nowhere"
        return where

    def _result(self, vms: list, before: dict) -> dict:
        for entry in self.replanned:
            vm = next(v for v in vms if v["uuid"] == entry["uuid"])
            if vm["status"] in ("started", "planned") or (vm["status"] == "failed" and vm["host"]):
                entry["to_host"] = vm["host"]
        ordered = sorted(vms, key=lambda v: (v["order"] is None, v["order"] or 0, vm_order_key(v)))
        out_vms = []
        for vm in ordered:
            out_vms.append({
                "uuid": vm["uuid"], "name": vm["name"], "failed_host": vm["failed_host"], "priority": vm["priority"],
                "group": vm["group"],
                "memory_mib": vm["memory_mib"], "vcpus": vm["vcpus"], "status": vm["status"], "host": vm["host"],
                "order": vm["order"], "round": vm["round"], "reason": vm["reason"], "error_kind": vm["error_kind"],
                "claim": dict(vm["claim_info"]), "timestamps": dict(vm["timestamps"]),
            })
        counts = dict((s, sum(1 for v in out_vms if v["status"] == s)) for s in STATUSES)
        changed = counts["planned"] > 0 if self.check_mode else any("defined" in v["timestamps"] for v in out_vms)
        result = {
            "changed": changed, "owner": self.owner, "plan": self.plan, "vms": out_vms, "counts": counts,
            "targets": [t.as_dict() for t in self.targets], "replanned": self.replanned,
            "started_at": round(self.started_at, 3), "finished_at": _now(), "elapsed": round(time.monotonic() - self._t0, 3),
        }
        result.update(self._hosts_result())
        if self.diff_mode:
            result["diff"] = {"before": {"vms": {}}, "after": {"vms": {}}}
            labels = _labels(out_vms)
            for vm in out_vms:
                label = labels[vm["uuid"]]
                result["diff"]["before"]["vms"][label] = before.get(vm["uuid"], "nowhere")
                now = vm["host"] if vm["status"] in ("started", "planned", "skipped") and vm["host"] else "nowhere"
                result["diff"]["after"]["vms"][label] = now
        if self.unreadable:
            raise StoreError("evacuation of %s is incomplete: the VMs of %s are unknown (heartbeat record %s; see "
                             "unreadable); %d started, %d failed, %d unplaced of the others"
                             % (self._hosts_label, ", ".join(u["host"] for u in self.unreadable),
                                ", ".join(u["status"] for u in self.unreadable), counts["started"], counts["failed"],
                                counts["unplaced"]), result=result)
        if self.params["fail_on_incomplete"] and (counts["failed"] or counts["unplaced"]):
            raise KvmhaError("evacuation of %s is incomplete: %d failed, %d unplaced (see vms)"
                             % (self._hosts_label, counts["failed"], counts["unplaced"]), result=result, kind="incomplete")
        return result


def _labels(vms: list) -> dict:
    names = [vm["name"] for vm in vms]
    return dict((vm["uuid"], vm["name"] if names.count(vm["name"]) == 1 else "%s (%s)" % (vm["name"], vm["uuid"])) for vm in vms)


def main():
    module = KvmhaModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                         required_one_of=REQUIRED_ONE_OF)
    module.require_library("libvirt-python", LIBVIRT_IMPORT_ERROR)

    def run():
        evacuation = Evacuation(module.params, module.check_mode, module.diff_mode)
        try:
            return evacuation.run()
        finally:
            for warning in evacuation.warnings:
                module.warn(warning)

    module.run(run)


if __name__ == "__main__":
    main()
