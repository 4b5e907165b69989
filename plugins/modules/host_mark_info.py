#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_mark_info
short_description: Read the maintenance, fenced and confirmed-off marks of hypervisors from the shared store
version_added: 0.1.0
description:
  - Reads the marks that M(kvmha.cluster.host_mark) and the watchdog keep on the store, and changes nothing.
  - A maintenance mark is RV(maintenance.active) until its expiry (the modification time of the mark plus its ttl
    and O(skew), judged on the store's clock - never the controller's own), then RV(maintenance.expired) - the maintenance has ended by itself - until someone
    clears it. Fenced marks never expire. A confirmed-off mark expires as a maintenance mark does.
  - A mark that cannot be parsed is reported under C(invalid) with the reason; the watchdog treats a maintenance or
    fenced mark as active then, and a confirmed-off mark as absent - the cautious reading of each kind.
  - The operations playbooks use it (C(maintenance.yml), C(unfence.yml)) to read a mark without writing one.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_STORE
  - kvmha.cluster._attributes.INFO_MODULE
  - kvmha.cluster._store
options:
  hosts:
    description: The hosts whose marks are returned. Default is every host that has a mark of a kind asked for.
    type: list
    elements: str
  kinds:
    description: Which kinds of marks to read.
    type: list
    elements: str
    choices: [maintenance, fenced, confirmed_off]
    default: [fenced, maintenance]
  skew:
    description: Seconds added to a maintenance mark's expiry before it counts as expired (as the watchdog reads it).
    type: float
    default: 5
  deadline_s:
    description:
      - Hard deadline in seconds for the whole operation, reading the marks; a hung store fails the task
        (C(error_kind=timeout)) instead of hanging it.
      - The old name O(read_timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10
    aliases: [read_timeout]
seealso:
  - module: kvmha.cluster.host_mark
"""

EXAMPLES = r"""
- name: Is h2 in maintenance, and until when?
  kvmha.cluster.host_mark_info:
    store_path: /var/lib/kvmha-lab/store
    hosts: [h2]
    kinds: [maintenance]
  register: marks

- name: Report it
  ansible.builtin.debug:
    msg: "h2 is in maintenance by {{ marks.maintenance.active.h2.owner }} until {{ marks.maintenance.active.h2.expires_at }}"
  when: "'h2' in marks.maintenance.active"
"""

RETURN = r"""
maintenance:
  description:
    - The maintenance marks, by state and host. A host without a mark (or whose mark was cleared) is in none of them.
    - Each mark has C(name), C(owner), C(generation), C(created), C(ttl), C(expires_at) (store clock), C(released)
      and C(data) (C(reason) and anything else given to M(kvmha.cluster.host_mark)).
  returned: when O(kinds) contains V(maintenance)
  type: dict
  contains:
    active:
      description: Marks in force, by host.
      type: dict
      sample: {h2: {name: h2, owner: alice, generation: 1, created: 1764063000.0, ttl: 7200.0, expires_at: 1764070200.0,
                    released: false, data: {reason: BIOS update}}}
    expired:
      description: Marks whose expiry has passed (the maintenance ended by itself), by host.
      type: dict
      sample: {}
    invalid:
      description: Marks that cannot be parsed, by host, with the reason.
      type: dict
      sample: {}
  sample: {active: {}, expired: {}, invalid: {}}
fenced:
  description:
    - The fenced marks, by state and host, as for RV(maintenance). C(data) holds the verdict, the rule and C(vms), the
      UUIDs of the VMs restarted elsewhere. C(expired) is always empty (fenced marks never expire).
  returned: when O(kinds) contains V(fenced)
  type: dict
  contains:
    active:
      description: Hosts marked fenced.
      type: dict
      sample: {h1: {name: h1, owner: watchdog/42/20261125T101500-123, generation: 1, ttl: null, expires_at: null,
                    released: false, data: {verdict: SUSPECT, rule: R8, vms: [0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e]}}}
    expired:
      description: Always empty.
      type: dict
      sample: {}
    invalid:
      description: Marks that cannot be parsed, by host, with the reason.
      type: dict
      sample: {}
  sample: {active: {}, expired: {}, invalid: {}}
confirmed_off:
  description:
    - Operators' confirm-offs (C(playbooks/confirm_off.yml)), by state and host, as for RV(maintenance). C(data) holds
      C(reason), C(seq) and C(boot_id) (the heartbeat record it was given against). An expired one is no longer used.
  returned: when O(kinds) contains V(confirmed_off)
  type: dict
  contains:
    active:
      description: Confirmations in force, by host.
      type: dict
      sample: {h1: {name: h1, owner: alice, generation: 1, ttl: 3600.0, expires_at: 1764066600.0, released: false,
                    data: {reason: both PSU cords pulled, seq: 4242, boot_id: 5f0c7a1e-4f1c-4b6e-9a59-0f3c2b0d9d11}}}
    expired:
      description: Confirmations whose expiry passed before a run used them, by host.
      type: dict
      sample: {}
    invalid:
      description: Marks that cannot be parsed, by host, with the reason (never used as a confirmation).
      type: dict
      sample: {}
  sample: {active: {}, expired: {}, invalid: {}}
now:
  description:
    - The store's clock (Unix time) the expiries were judged against - the modification time the store gave a probe
      file, so controllers whose own clocks disagree judge a mark alike.
  returned: always
  type: float
  sample: 1764063600.5
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input, timeout, store]
  sample: timeout
"""

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import STORE_SPEC, merge_specs, renamed
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import call_with_deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import check_range
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import validate_host_name
from ansible_collections.kvmha.cluster.plugins.module_utils._marks import CONFIRMED_OFF, MARK_KINDS, read_marks_of, store_now

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    {
        "hosts": {"type": "list", "elements": "str"},
        "kinds": {"type": "list", "elements": "str", "choices": list(MARK_KINDS) + [CONFIRMED_OFF], "default": list(MARK_KINDS)},
        "skew": {"type": "float", "default": 5},
        "deadline_s": renamed({"type": "float", "default": 10}, "read_timeout"),
    },
)


def run(module: KvmhaModule) -> dict:
    params = module.params
    check_range("deadline_s", params["deadline_s"], 0, exclusive_minimum=True)
    check_range("skew", params["skew"], 0)
    hosts = None if params["hosts"] is None else {validate_host_name(h) for h in params["hosts"]}

    def read_all():
        now = store_now(params["store_path"])
        return now, read_marks_of(params["store_path"], params["kinds"], hosts, now=now, skew=params["skew"])

    now, marks = call_with_deadline(read_all, params["deadline_s"], "reading the marks on the store")
    return dict(marks, changed=False, now=now)


def main():
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
