#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_info
short_description: The status of a cluster for its operator, from the shared store and the journal
version_added: 0.1.0
description:
  - Reads, in one call, every host's heartbeat record, the maintenance and fenced marks, the open owed documents and
    the cluster lease from the store, the newest incident records of each host from the journal directory, and the
    last fence-readiness result. Returns one row per host and one per HA VM, and the same as text tables.
  - Read-only and lease-free; it opens no connection to any hypervisor, so it answers while the watchdog works and
    while hosts are down. The playbook C(kvmha.cluster.status) prints it.
  - A host's state is, most telling first, C(fenced) (with since when, by whom, and the VMs its owed document still
    owes), C(maintenance) (until when, by whom), C(error) (its record cannot be read), C(suspect) (its heartbeat is
    stale, stopped or missing) or C(alive). Liveness is judged as on a watchdog's first read, from the record file's
    modification time, with O(misses) and O(skew_allowance) as in M(kvmha.cluster.kvm_heartbeat).
  - Ages and expiries are judged on the store's clock, as the watchdog judges them - the modification time the store
    gives a probe file, created and removed at once (as M(kvmha.cluster.host_mark_info) does); nothing else is written.
  - A file of one host that cannot be read - its record, a mark, its owed document, an incident record - is shown in
    that host's row; it never costs the other hosts their rows.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_STORE
  - kvmha.cluster._attributes.INFO_MODULE
  - kvmha.cluster._store
options:
  cluster:
    description:
      - The cluster's name. It labels the result and names the cluster lease and the fence-readiness results read.
    type: str
    default: default
  hosts:
    description:
      - The hosts to show (the cluster's members). A listed host without a record is shown as a suspect (C(missing)); a
        name that is not a host name (RFC 1123; it names files on the store) is an error row.
      - Default is every host that has a record in the store.
    type: list
    elements: str
  journal_dir:
    description:
      - The journal directory of the controller (the C(kvmha.cluster.journal) callback's C(journal_dir)); the newest
        incident records of each host give its last verdict and rule and the boot ids seen.
      - Not set, or without records, the last verdict is C(-).
    type: path
  readiness_dir:
    description:
      - The directory where C(kvmha.cluster.fence_readiness) writes C(kvmha-fence-readiness-<cluster>.prom); each host's
        last result and its age come from there. Not set, or no file, the fence readiness is C(-).
    type: path
  misses:
    description: How many intervals without a new record make a host stale (the policy's C(heartbeat_misses)).
    type: int
    default: 3
  skew_allowance:
    description: Seconds by which clocks may disagree (the policy's C(skew_allowance_s)).
    type: float
    default: 2.0
  deadline_s:
    description: Hard deadline in seconds for the whole read; a hung store fails the task instead of hanging it.
    type: float
    default: 20
  rows:
    description:
      - Return the host and VM rows (RV(hosts), RV(vms)). V(false) returns the summary and RV(text) only - what a
        person reads - so that Ansible does not post-process thousands of rows on a large cluster (the status
        playbook's text format).
    type: bool
    default: true
notes:
  - The verdicts come from the journal of the controller this runs on; a watchdog that runs elsewhere (another AWX
    node) keeps its own journal there. The fenced mark still names the verdict and rule that fenced a host.
seealso:
  - module: kvmha.cluster.kvm_heartbeat
  - module: kvmha.cluster.host_mark_info
"""

EXAMPLES = r"""
- name: Read the status of cluster prod-a
  kvmha.cluster.cluster_info:
    store_path: /srv/kvmha-store
    cluster: prod-a
    hosts: [hv1, hv2, hv3]
    journal_dir: /var/lib/kvmha/journal
    readiness_dir: /var/lib/kvmha/journal
  register: status

- name: Print it
  ansible.builtin.debug:
    msg: "{{ status.text }}"

- name: Hosts that need a look
  ansible.builtin.debug:
    msg: "{{ status.hosts | rejectattr('state', 'equalto', 'alive') | map(attribute='host') | list }}"
"""

RETURN = r"""
cluster:
  description: The O(cluster) name.
  returned: always
  type: str
  sample: prod-a
hosts:
  description:
    - One row per host, in name order. C(state) is C(alive), C(suspect), C(maintenance), C(fenced) or C(error);
      C(state_text) says it in words (until when, since when and by whom, owed VMs, why suspect).
    - C(heartbeat) is the reading (C(fresh), C(clock_skew), C(stale), C(stopped), C(missing), C(invalid)) and C(age_s)
      the age of the record file. C(boot_changes) counts boot id changes across the newest incident records of the
      journal and the current record (null when neither has one).
    - C(last_verdict) is the newest incident record's C(verdict), C(rule), C(final_state) and C(at), or null, or
      C({invalid}) when it cannot be read. C(readiness) is the last fence-readiness result with its C(age_s), or null.
    - C(maintenance) and C(fenced) are the host's marks (C(owner), C(since), C(until), C(expired), C(reason),
      C(verdict), C(rule)) or C({invalid}) or null. C(owed_vms) counts VMs of its open owed document that do not run
      yet. C(capacity) is the free memory and vCPUs of a live host (null otherwise). C(error) says why a row is an
      error row.
  returned: success, when O(rows=true)
  type: list
  elements: dict
  sample:
    - host: hv1
      state: fenced
      state_text: "fenced since 2026-12-03T10:15Z (1.5 h ago) by watchdog/42/20261203T101500-1; owed VMs 1"
      heartbeat: stale
      heartbeat_reason: "seq 4242 unchanged for 5400.0 s (threshold 3 x 2.0 s)"
      age_s: 5400.0
      boot_id: 5f0c7a1e-4f1c-4b6e-9a59-0f3c2b0d9d11
      boot_changes: 0
      capacity: {mem_free_mib: 3900, vcpus_free: 6}
      ha_vms: 2
      owed_vms: 1
      last_verdict: {verdict: SUSPECT, rule: R8, final_state: DOWN (fenced), at: "2026-12-03T10:15:02.120+00:00"}
      readiness: {ready: true, reason: off_expected, age_s: 1200.0}
      maintenance: null
      fenced: {owner: watchdog/42/20261203T101500-1, since: 1764756900.0, until: null, expired: false, reason: "",
               verdict: SUSPECT, rule: R8}
      error: ""
vms:
  description:
    - One row per HA VM, highest priority first. C(state) is C(running) (listed by a live host's record), C(unknown
      (host ...)) (listed only by a host that is not alive), or the state of its owed entry (C(owed), C(claimed),
      C(started), C(verified), C(unplaced), C(failed), C(abandoned)). C(detail) names the owing host, the last error,
      and any second host that lists it.
  returned: success, when O(rows=true)
  type: list
  elements: dict
  sample: [{name: db1, uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, host: hv2, priority: 90, group: db, state: running,
            detail: ""}]
summary:
  description: How many hosts are in each state, how many HA VMs there are and how many of them do not run.
  returned: success
  type: dict
  sample: {hosts: 3, alive: 2, suspect: 0, maintenance: 0, fenced: 1, error: 0, ha_vms: 4, vms_not_running: 1}
lease:
  description: The live cluster lease (C(owner), C(expires_at)), C({invalid}) when unreadable, or null when free.
  returned: success
  type: dict
  sample: null
readiness_at:
  description: When the fence readiness of the cluster was last checked (Unix time), or null.
  returned: success
  type: float
  sample: 1764760000.0
readiness_error:
  description: Why the fence-readiness file could not be read; empty otherwise.
  returned: success
  type: str
  sample: ""
journal_error:
  description: Why the journal's incident records could not be listed (the rows then have no last verdict); empty otherwise.
  returned: success
  type: str
  sample: ""
warning:
  description:
    - Set when no host (at least two, not counting hosts in maintenance or fenced) looks alive - the store or its mount
      on the controller is then the likelier fault, as for the watchdog's observer check. Empty otherwise.
  returned: success
  type: str
  sample: ""
ignored_files:
  description: Files in the heartbeat directory that are not records of a valid host name, with the reason.
  returned: success
  type: dict
  sample: {}
text:
  description: The status as lines of text - a summary, the lease, the host table and the VM table.
  returned: success
  type: list
  elements: str
  sample: ["cluster prod-a: 3 hosts - 1 fenced, 2 alive; 4 HA VMs, 1 not running", "lease: free"]
now:
  description: The store's clock (Unix time) the ages and expiries were judged against.
  returned: success
  type: float
  sample: 1764762300.5
elapsed:
  description: Seconds spent reading and building.
  returned: success
  type: float
  sample: 0.09
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input, timeout, store]
  sample: timeout
"""

import time

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import STORE_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import call_with_deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import KvmhaError, check_range
from ansible_collections.kvmha.cluster.plugins.module_utils._status import build_status, read_snapshot, render_text

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    {
        "cluster": {"type": "str", "default": "default"},
        "hosts": {"type": "list", "elements": "str"},
        "journal_dir": {"type": "path"},
        "readiness_dir": {"type": "path"},
        "misses": {"type": "int", "default": 3},
        "skew_allowance": {"type": "float", "default": 2.0},
        "deadline_s": {"type": "float", "default": 20},
        "rows": {"type": "bool", "default": True},
    },
)


def run(module: KvmhaModule) -> dict:
    params = module.params
    check_range("deadline_s", params["deadline_s"], 0, exclusive_minimum=True)
    start = time.monotonic()
    try:
        snapshot = call_with_deadline(read_snapshot, params["deadline_s"], "reading the status of cluster %s" % params["cluster"],
                                      params["store_path"], params["cluster"], params["hosts"], params["journal_dir"],
                                      params["readiness_dir"])
    except KvmhaError as err:
        err.result = dict(err.result, cluster=params["cluster"])  # a caller looping over clusters knows which failed
        raise
    result = build_status(snapshot, misses=params["misses"], skew_allowance=params["skew_allowance"])
    result.update(changed=False, text=render_text(result), elapsed=round(time.monotonic() - start, 3))
    if not params["rows"]:
        del result["hosts"], result["vms"]
    return result


def main():
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
