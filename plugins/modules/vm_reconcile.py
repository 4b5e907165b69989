#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_reconcile
short_description: Remove a returning hypervisor's stale copies of VMs verified running elsewhere - never the only copy
version_added: 0.1.0
description:
  - The returning-host guard. When a host that was fenced comes back, the VMs it ran may have been started on other
    hosts. Its own definitions of them are then stale copies; if one were started (by hand, by autostart), the VM
    would run twice on the same disks.
  - The candidates are the VMs of the host's owed document and every VM of any owed document that was defined on
    it during a recovery (C(<store_path>/kvmha/owed/), see M(kvmha.cluster.vm_evacuate)), plus O(vms). A candidate
    is removed - destroyed if active, then undefined - B(only) when its most recent owed entry says it is
    C(verified) running on another host. Every other candidate is kept and listed in RV(kept) with the reason - it
    may be the only copy of the VM, and nothing here ever destroys that.
  - The disks, the NVRAM and the VM's domain XML on the shared store are never touched.
  - With O(release), and nothing kept, the host's owed document is released (its recovery is history) so that the
    caller can clear the fenced mark and count the host as live.
  - The watchdog runs it before it clears the host's fenced mark, so the host counts as live only afterwards.
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
    details: Reads each domain's state and reports what would be removed and kept.
  diff_mode:
    support: full
    details: Shows each removed VM's state on the host before and after.
  idempotent:
    support: full
options:
  uri:
    description: The libvirt URI of the returning host (C(kvmha_libvirt_uri)).
    type: str
    required: true
  host:
    description: Inventory name of the returning host (its heartbeat record and owed document name).
    type: str
    required: true
  vms:
    description:
      - UUIDs of further candidates (for a host returned by hand whose fenced mark is gone). They too are removed only
        when verified running elsewhere.
    type: list
    elements: str
    default: []
  release:
    description: Release the host's owed document when nothing was kept.
    type: bool
    default: true
  start_kept:
    description:
      - Start here the kept copies of VMs that run nowhere (owed, C(unplaced) or C(failed), defined on this host) -
        an operator's explicit choice to get them back on the returning host instead of waiting. Each is claimed on
        the store first (the claim that keeps two evacuators from starting one VM twice), started, verified running,
        and its owed entry becomes C(started) here. A VM whose entry names another target (C(claimed), C(started))
        may run there and is never started here.
    type: bool
    default: false
  owner:
    description: Who starts kept copies (O(start_kept)), recorded in their claims.
    type: str
    default: reconcile
  verify_timeout_s:
    description:
      - Seconds to wait for a copy started with O(start_kept) to be seen running.
      - The old name O(verify_timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 15
    aliases: [verify_timeout]
  store_timeout_s:
    description:
      - Hard deadline in seconds of each read or write on the store (the owed documents, the marks, the claims).
      - The old name O(store_timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10
    aliases: [store_timeout]
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
    host: h1
    store_path: /srv/kvmha
  delegate_to: localhost
  register: reconciled

- name: Clear the fenced mark only when nothing on h1 may be the only copy
  kvmha.cluster.host_mark:
    store_path: /srv/kvmha
    kind: fenced
    host: h1
    state: absent
  when: reconciled.kept | length == 0
"""

RETURN = r"""
vms:
  description: Per removed candidate, its state on the host before (C(absent) when not defined there) and what was done.
  returned: always
  type: list
  elements: dict
  sample: [{uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, before: shutoff, destroyed: false, undefined: true}]
kept:
  description:
    - Candidates defined on the host that were B(not) removed, with the reason - no verified copy runs elsewhere, so
      this may be the only one. Not empty means the host must not be returned yet.
    - Also the VMs its own open owed document still owes (C(before) V(absent)) - releasing the document would forget
      them while they run nowhere verified.
  returned: always
  type: list
  elements: dict
  sample: [{uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, name: db1, before: shutoff,
            reason: "it is still owed by h1 (unplaced) and has no verified copy elsewhere: this may be its only copy"}]
started:
  description: UUIDs of kept copies started on this host (O(start_kept)); they are no longer in RV(kept).
  returned: always
  type: list
  elements: str
  sample: [0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e]
released:
  description: Whether the host's owed document was released.
  returned: always
  type: bool
  sample: true
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input, missing_library, timeout, store, conflict, invalid_document, invalid_owed, unreachable,
            connection, libvirt, no_domain]
  sample: store
"""

import time

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import LIBVIRT_CONNECTION_SPEC, STORE_SPEC, merge_specs, renamed
from ansible_collections.kvmha.cluster.plugins.module_utils._claims import ClaimBook
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import call_with_deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._domainxml import normalise_uuid
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import StoreError
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import validate_host_name
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import LIBVIRT_IMPORT_ERROR, RUNNING_STATES, LibvirtClient, uri_warnings
from ansible_collections.kvmha.cluster.plugins.module_utils._marks import FENCED, read_marks
from ansible_collections.kvmha.cluster.plugins.module_utils._recovery import (
    FAILED, OWED, STARTED, TERMINAL, UNPLACED, VERIFIED, OwedBook, add_copy, is_open, latest_entries, stale_copies, transition)
from ansible_collections.kvmha.cluster.plugins.module_utils._storefile import Conflict

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    LIBVIRT_CONNECTION_SPEC,
    {
        "uri": {"type": "str", "required": True},
        "host": {"type": "str", "required": True},
        "vms": {"type": "list", "elements": "str", "default": []},
        "release": {"type": "bool", "default": True},
        "start_kept": {"type": "bool", "default": False},
        "owner": {"type": "str", "default": "reconcile"},
        "verify_timeout_s": renamed({"type": "float", "default": 15}, "verify_timeout"),
        "store_timeout_s": renamed({"type": "float", "default": 10}, "store_timeout"),
    },
)


def _owed(params: dict, host: str) -> tuple:
    """(book, {host: Document}) - every owed document, released ones included: they tell where VMs were verified."""
    book = OwedBook(params["store_path"], "reconcile/%s" % host)
    documents, invalid = call_with_deadline(book.read_all, params["store_timeout_s"], "read the owed documents")
    if invalid:
        raise StoreError("owed documents cannot be read, so no copy can be proven stale: %s"
                         % "; ".join("%s: %s" % item for item in sorted(invalid.items())), result={"vms": [], "kept": [], "released": False})
    return book, documents


def _start_kept(params: dict, client, book, documents: dict, host: str, kept: list) -> list:
    """Start here the kept copies of VMs that run nowhere: claim, start, verify, record. Returns their UUIDs."""
    def store(what, func, *args):
        return call_with_deadline(func, params["store_timeout_s"], what, *args)

    latest = latest_entries(dict((h, d.data) for h, d in documents.items()))
    fenced = set(store("read the fenced marks", read_marks, params["store_path"], FENCED)["active"])
    started = []
    for vm in kept:
        owner_host, entry = latest.get(vm["uuid"], (None, None))
        if entry is None or entry["state"] not in (OWED, UNPLACED, FAILED) or vm["before"] == "absent":
            continue  # claimed or started elsewhere may run there; no copy here to start
        doc = documents[owner_host]
        claims = ClaimBook(params["store_path"], params["owner"], owner_host, doc.data["incident"], None)
        decision = store("read the claim of %s" % vm["name"], claims.inspect, vm["uuid"], [host], fenced)
        if not decision.may_claim:
            vm["reason"] = "not started here: %s" % decision.reason
            continue
        try:
            claim = store("claim %s" % vm["name"], claims.acquire, vm["uuid"], entry["name"], host, decision)
        except Conflict as err:
            vm["reason"] = "not started here: claimed meanwhile (%s)" % err
            continue
        if vm["before"] not in RUNNING_STATES:  # one that runs here already (started by hand) is only recorded
            client.start(vm["uuid"])
        if client.wait_running(vm["uuid"], params["verify_timeout_s"]) not in RUNNING_STATES:
            store("release the claim of %s" % vm["name"], claims.mark_failed, claim, "started on %s, but it does not run" % host)
            vm["reason"] = "started here, but it does not run"
            continue
        store("mark the claim of %s started" % vm["name"], claims.mark_started, claim, host)
        started.append(vm["uuid"])
        documents[owner_host] = store("record the start of %s" % vm["name"], _record_started, book, owner_host, vm["uuid"], host)
    return started


def _record_started(book, owner_host: str, vm_uuid: str, host: str):
    """The VM's owed entry: started on ``host``. Returns the document as written."""
    doc = book.read(owner_host)
    entries = [add_copy(transition(e, STARTED, time.time(), target=host), host) if e["uuid"] == vm_uuid else e
               for e in doc.data["vms"]]
    return book.write(doc, dict(doc.data, vms=entries))


def run(module: KvmhaModule) -> dict:
    params, check_mode = module.params, module.check_mode
    host = validate_host_name(params["host"])
    book, documents = _owed(params, host)
    data = dict((h, d.data) for h, d in documents.items())
    remove, keep = stale_copies(host, data)
    known = set(remove) | set(k["uuid"] for k in keep)
    latest = latest_entries(data)
    for extra in sorted(set(normalise_uuid(v) for v in params["vms"]) - known):
        entry = latest.get(extra, (None, None))[1]
        if entry is not None and entry["state"] == VERIFIED and entry["target"] != host:
            remove.append(extra)  # like any candidate: its most recent owed entry runs it elsewhere
            continue
        keep.append({"uuid": extra, "name": extra, "reason": "no owed document says it is verified running elsewhere: "
                     "this may be its only copy"})
    for warning in uri_warnings(params["uri"]):
        module.warn(warning)
    client = LibvirtClient(params["uri"], params["connect_timeout_s"], params["call_timeout_s"], read_only=check_mode).open()
    try:
        removed, kept = [], []
        for vm in remove:
            before = client.domain_state(vm) or "absent"
            outcome = {"destroyed": before not in ("absent", "shutoff"), "undefined": before != "absent"}
            if before != "absent" and not check_mode:
                outcome = client.remove(vm)
            removed.append(dict(outcome, uuid=vm, before=before))
        own = documents.get(host)
        owed_here = {} if own is None or own.released or not is_open(own.data) else dict(
            (vm["uuid"], vm["state"]) for vm in own.data["vms"] if vm["state"] not in TERMINAL)
        for vm in keep:
            entry = latest.get(vm["uuid"], (None, None))[1]
            if entry is not None and entry["target"] == host and entry["state"] in (STARTED, VERIFIED):
                continue  # it was started here (start_kept): this host's own VM now, not a copy to keep it from returning
            before = client.domain_state(vm["uuid"]) or "absent"
            if before != "absent":
                kept.append(dict(vm, before=before))
            elif vm["uuid"] in owed_here:  # no copy here, but its recovery is open: releasing it would forget the VM
                kept.append(dict(vm, before=before, reason="it is still owed by %s (%s) and not verified running anywhere: "
                                 "%s returns once its recovery is closed (or the VM abandoned)" % (host, owed_here[vm["uuid"]], host)))
        started = _start_kept(params, client, book, documents, host, kept) if params["start_kept"] and not check_mode else []
        kept = [vm for vm in kept if vm["uuid"] not in started]
    finally:
        client.close()
    released = False
    own = documents.get(host)  # as written by any start above
    if params["release"] and not kept and own is not None and not own.released and not check_mode:
        call_with_deadline(book.release, params["store_timeout_s"], "release the owed document of %s" % host, own)
        released = True
    result = {"changed": any(r["undefined"] for r in removed) or released or bool(started), "vms": removed, "kept": kept,
              "started": started, "released": released}
    if module.diff_mode:
        result["diff"] = {"before": {r["uuid"]: r["before"] for r in removed}, "after": {r["uuid"]: "absent" for r in removed}}
    return result


def main():
    run_module(ARGUMENT_SPEC, run, libraries=(("libvirt-python", LIBVIRT_IMPORT_ERROR),))


if __name__ == "__main__":
    main()
