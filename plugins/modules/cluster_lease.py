#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_lease
short_description: Take or release the lease that lets one watchdog act on a cluster
version_added: 0.1.0
description:
  - A watchdog takes its cluster's lease on the shared store before it fences or recovers anything, so two
    watchdogs (two AWX jobs, a scheduled run and a manual one) never act on one cluster at once.
  - The lease has an owner, a generation and an expiry. It is renewed by its owner, and taken over by anyone else
    only after it expired (judged by the store's clock plus O(skew)) or was released. Every take-over is a
    compare-and-replace of the exact generation that was read, so of two watchdogs racing for it exactly one wins.
  - When someone else holds the lease, the module does not fail; it returns RV(acquired=false) and the holder.
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
    details: Reports whether the lease would be taken, renewed or released, without writing.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: Releasing is idempotent. Acquiring always renews the expiry, so it reports a change every time.
options:
  cluster:
    description: The cluster name (C(kvmha_cluster)).
    type: str
    required: true
  owner:
    description: Who holds the lease, unique per watchdog run (for example the AWX job id).
    type: str
    required: true
  state:
    description:
      - V(acquired) takes or renews the lease, V(released) gives it up if O(owner) holds it.
      - V(held) only checks, writing nothing, that O(owner) still holds generation O(generation) - the fencing token
        a run checks right before a step that must not run twice (a fence, a start).
    type: str
    choices: [acquired, held, released]
    default: acquired
  generation:
    description:
      - The generation this run holds (the C(generation) in RV(lease) of its last acquiring task).
      - With O(state=acquired) the lease is then only renewed if it is still that generation of O(owner), never taken
        (again or over); with O(state=held) it is required.
      - A lease that moved on - it expired while the run was frozen or its clock was off, and another watchdog took
        it - fails with RV(error_kind=lease_lost), and the run must stop.
    type: int
  ttl:
    description:
      - Seconds the lease lasts (from the store's clock) unless renewed or released.
      - The default is the policy's C(lease_ttl_s).
    type: float
    default: 30
  skew:
    description: Seconds added to the expiry before someone else may take the lease over.
    type: float
    default: 5
  deadline_s:
    description:
      - Hard deadline in seconds for the whole operation (reading, writing and pruning the lease on the store). A hung
        store fails the task with C(error_kind=timeout) instead of hanging the run; whether the lease was written is
        then unknown, so the run must not act (it expires after O(ttl) at the latest).
    type: float
    default: 10
"""

EXAMPLES = r"""
- name: Take the cluster lease before fencing
  kvmha.cluster.cluster_lease:
    store_path: /var/lib/kvmha-lab/store
    cluster: lab
    owner: "awx-job-{{ awx_job_id | default('manual') }}"
    ttl: 300
  register: lease

- name: Right before the fence - stop if another watchdog took the lease meanwhile (this run was frozen, or its clock is off)
  kvmha.cluster.cluster_lease:
    store_path: /var/lib/kvmha-lab/store
    cluster: lab
    owner: "awx-job-{{ awx_job_id | default('manual') }}"
    state: held
    generation: "{{ lease.lease.generation }}"

- name: Give it back at the end of the run
  kvmha.cluster.cluster_lease:
    store_path: /var/lib/kvmha-lab/store
    cluster: lab
    owner: "awx-job-{{ awx_job_id | default('manual') }}"
    state: released
"""

RETURN = r"""
acquired:
  description: Whether O(owner) holds the lease now (always false for O(state=released)).
  returned: always
  type: bool
  sample: true
takeover:
  description: Whether the lease was taken over from another owner (whose lease had expired or was released).
  returned: state=acquired and acquired
  type: bool
  sample: false
lease:
  description: The lease as written (or as it would be in check mode), or the current one.
  returned: when there is one
  type: dict
  sample: {name: lab, owner: awx-job-42, generation: 7, ttl: 300.0, expires_at: 1764063300.0, released: false}
holder:
  description: The lease of the other owner that holds it.
  returned: state=acquired and not acquired
  type: dict
  sample: {name: lab, owner: awx-job-41, generation: 6, expires_at: 1764063250.0}
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input, timeout, store, invalid_document, lease_lost]
  sample: lease_lost
"""

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import STORE_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import call_with_deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, check_range
from ansible_collections.kvmha.cluster.plugins.module_utils._marks import LeaseHeld, acquire_lease, check_lease, release_lease, renew_lease
from ansible_collections.kvmha.cluster.plugins.module_utils._storefile import validate_name

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    {
        "cluster": {"type": "str", "required": True},
        "owner": {"type": "str", "required": True},
        "state": {"type": "str", "choices": ["acquired", "held", "released"], "default": "acquired"},
        "generation": {"type": "int"},
        "ttl": {"type": "float", "default": 30},
        "skew": {"type": "float", "default": 5},
        "deadline_s": {"type": "float", "default": 10},
    },
)


def run(module: KvmhaModule) -> dict:
    params, check_mode = module.params, module.check_mode
    cluster = validate_name(params["cluster"], "cluster name")
    check_range("ttl", params["ttl"], 0, exclusive_minimum=True)
    check_range("skew", params["skew"], 0)
    deadline = check_range("deadline_s", params["deadline_s"], 0, exclusive_minimum=True)
    store, owner, generation = params["store_path"], params["owner"], params["generation"]

    def bounded(what, func, *args, **kwargs):  # the whole operation under deadline_s: a hung store fails the task
        return call_with_deadline(func, deadline, "%s the lease of %s" % (what, cluster), *args, **kwargs)

    if params["state"] == "released":
        return dict(bounded("releasing", release_lease, store, cluster, owner, dry_run=check_mode), acquired=False)
    if params["state"] == "held" or (generation is not None and check_mode):
        if generation is None:
            raise InvalidInput("state=held needs the generation the run holds")
        return dict(bounded("checking", check_lease, store, cluster, owner, generation), acquired=True)
    if generation is not None:  # renew what this run holds; never take it (again or over)
        return dict(bounded("renewing", renew_lease, store, cluster, owner, generation, params["ttl"]), acquired=True)
    try:
        result = bounded("taking", acquire_lease, store, cluster, owner, params["ttl"], params["skew"], dry_run=check_mode)
    except LeaseHeld as held:
        return dict(held.result, changed=False, msg=held.msg)
    return dict(result, acquired=True)


def main():
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
