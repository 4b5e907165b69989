#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_mark
short_description: Put a hypervisor in or out of maintenance, mark it fenced or confirmed off, on the shared store
version_added: 0.1.0
description:
  - V(maintenance) marks carry an owner, a reason and an expiry. While a host's mark is active, the watchdog never
    acts on that host. When the expiry passes, the maintenance ends by itself and the watchdog reports it.
  - V(fenced) marks are written by the watchdog when a host's VMs are moved away after its power-off was confirmed.
    They never expire. While a host is marked fenced it is never an evacuation target; when it comes back, its stale
    copies of the moved VMs are removed before the mark is cleared (the returning-host guard, C(unfence.yml)).
  - V(confirmed_off) marks record an operator's word that a host is powered off (C(playbooks/confirm_off.yml), which
    checks first that nothing shows life). They carry the operator, a reason, the host's last heartbeat (C(seq),
    C(boot_id) in O(data)) and an expiry (O(duration)). The next watchdog run may recover the host's VMs on it when
    the BMC cannot be asked (rule R9a), and uses it up. A new confirmation replaces an active one.
  - Marks are never deleted. Clearing one publishes a released generation, so the history stays on the store.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_STORE
  - kvmha.cluster._attributes.CHECK_MODE
  - kvmha.cluster._store
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows whether the host is marked before and after.
  idempotent:
    support: full
    details:
      - Setting a maintenance or fenced mark that is active changes nothing (leave maintenance first to change its reason
        or expiry).
      - A V(confirmed_off) mark is always written anew (a new generation), since it is bound to the newest heartbeat.
options:
  kind:
    description: Which mark.
    type: str
    choices: [maintenance, fenced, confirmed_off]
    required: true
  host:
    description: The host (inventory name).
    type: str
    required: true
  state:
    description:
      - V(present) sets the mark, V(absent) clears it.
      - V(extended) gives an active maintenance mark a new expiry, O(duration) seconds from now, without it ever
        ending in between; owner and reason stay, O(owner) is recorded as who extended it. A host that is not in
        maintenance is an error (an extension never enters maintenance).
    type: str
    choices: [present, absent, extended]
    default: present
  owner:
    description: Who sets or clears the mark (a person for maintenance and confirmed-off, the watchdog run for fenced marks).
    type: str
    required: true
  reason:
    description: Why. Required to enter maintenance and to confirm a host off.
    type: str
    default: ""
  duration:
    description:
      - Seconds until a maintenance or confirmed-off mark expires (from the store's clock). Ignored for fenced marks.
      - The default, 4 hours, lets a firmware flash with its reboots finish before the watchdog watches the host
        again (a host still down then is investigated and may be fenced), and still ends a forgotten maintenance
        within a working shift.
    type: float
    default: 14400
  data:
    description: Extra facts kept in the mark (for fenced marks, the verdict, the rule and the VMs that were moved).
    type: dict
    default: {}
  deadline_s:
    description:
      - Hard deadline in seconds for the whole operation (reading, writing and pruning the mark on the store). A hung
        store fails the task with C(error_kind=timeout) instead of hanging the run; whether the mark was written is
        then unknown - read it again with M(kvmha.cluster.host_mark_info).
    type: float
    default: 10
"""

EXAMPLES = r"""
- name: Enter maintenance for two hours
  kvmha.cluster.host_mark:
    store_path: /var/lib/kvmha-lab/store
    kind: maintenance
    host: h2
    owner: alice
    reason: BIOS update
    duration: 7200

- name: Leave maintenance
  kvmha.cluster.host_mark:
    store_path: /var/lib/kvmha-lab/store
    kind: maintenance
    host: h2
    owner: alice
    state: absent
"""

RETURN = r"""
mark:
  description: The mark as written, as it would be in check mode, or as it is; null when there is none.
  returned: always
  type: dict
  sample: {name: h2, owner: alice, generation: 1, ttl: 7200.0, expires_at: 1764070200.0, released: false,
           data: {reason: BIOS update}}
kind:
  description: The kind of mark (O(kind)), for the journal's event.
  returned: success
  type: str
  sample: maintenance
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input, timeout, store, conflict, invalid_document]
  sample: timeout
"""

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import STORE_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import call_with_deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, check_range
from ansible_collections.kvmha.cluster.plugins.module_utils._marks import (
    CONFIRMED_OFF,
    MAINTENANCE,
    clear_mark,
    confirm_off,
    extend_mark,
    set_mark,
)

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    {
        "kind": {"type": "str", "choices": ["maintenance", "fenced", "confirmed_off"], "required": True},
        "host": {"type": "str", "required": True},
        "state": {"type": "str", "choices": ["present", "absent", "extended"], "default": "present"},
        "owner": {"type": "str", "required": True},
        "reason": {"type": "str", "default": ""},
        "duration": {"type": "float", "default": 14400},
        "data": {"type": "dict", "default": {}},
        "deadline_s": {"type": "float", "default": 10},
    },
)


def run(module: KvmhaModule) -> dict:
    params, check_mode = module.params, module.check_mode
    store, kind, host, owner = params["store_path"], params["kind"], params["host"], params["owner"]
    deadline = check_range("deadline_s", params["deadline_s"], 0, exclusive_minimum=True)
    if params["state"] == "absent":
        result = call_with_deadline(clear_mark, deadline, "clearing the %s mark of %s" % (kind, host),
                                    store, kind, host, owner, dry_run=check_mode)
    elif params["state"] == "extended":
        if kind != MAINTENANCE:
            raise InvalidInput("only a maintenance mark has an expiry to extend")
        ttl = check_range("duration", params["duration"], 0, exclusive_minimum=True)
        result = call_with_deadline(extend_mark, deadline, "extending the maintenance of %s" % host,
                                    store, kind, host, owner, ttl, dry_run=check_mode)
    elif kind == CONFIRMED_OFF:
        ttl = check_range("duration", params["duration"], 0, exclusive_minimum=True)
        data = dict(params["data"], reason=params["reason"])
        result = call_with_deadline(confirm_off, deadline, "confirming %s off" % host,
                                    store, host, owner, data, ttl, dry_run=check_mode)
    else:
        ttl = None
        if kind == MAINTENANCE:
            if not params["reason"]:
                raise InvalidInput("entering maintenance needs a reason")
            ttl = check_range("duration", params["duration"], 0, exclusive_minimum=True)
        data = dict(params["data"], reason=params["reason"])
        result = call_with_deadline(set_mark, deadline, "setting the %s mark of %s" % (kind, host),
                                    store, kind, host, owner, data, ttl, dry_run=check_mode)
    result["kind"] = kind
    if module.diff_mode and params["state"] == "extended":
        result["diff"] = {"before": {"expires_at": result["previous"]["expires_at"]},
                          "after": {"expires_at": result["mark"].get("expires_at"), "ttl": result["mark"]["ttl"]}}
    elif module.diff_mode:
        marked_after = params["state"] == "present"
        marked_before = marked_after != result["changed"]
        result["diff"] = {"before": {kind: marked_before}, "after": {kind: marked_after}}
    return result


def main():
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
