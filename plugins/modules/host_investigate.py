#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_investigate
short_description: Decide what a suspect hypervisor's evidence proves, and what to do about it
version_added: 0.1.0
description:
  - A pure decision function, no I/O. It takes the evidence gathered about suspect hosts over independent paths
    (management reachability, storage heartbeat, neighbour pings, BMC power state, VM disk activity, maintenance,
    self-fence data), the size of their clusters and the HA policy, and returns for each host a verdict, an action,
    the id of the rule that decided and the reasons in plain words.
  - Built-in rules come first (first match wins), then the operator's custom rules from the C(rules) key of O(policy), which can
    only make a decision more cautious, then the hard interlocks that no rule can get past, then the storm guard
    across each cluster. C(docs/SAFETY.md) explains every rule.
  - Interlocks - never C(fence) a host whose heartbeat is alive or whose management answers; never C(recover)
    unless its power-off is confirmed by its BMC (or a trusted self-fence deadline has provably passed), nor while
    neighbours still ping it or its VM disks are written; never act on a host in maintenance or from an observer
    that is not OK.
  - Storm guard - when more than C(max_fence_ratio) of a cluster (counting hosts still marked fenced) would be
    fenced, none is; hosts whose power-off is confirmed are still recovered.
  - Actions - C(none), C(alert), C(abort) (stop the run, touch nothing), C(remediate) (restart the heartbeat writer),
    C(fence) (power off with confirmation, then recover once power-off is confirmed), C(recover) (restart the VMs
    elsewhere).
  - It runs on the controller, in Ansible's own process (its action plugin runs this module's code there) - nothing is
    sent to a host or executed as a module, whatever the task's host or delegation.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.INFO_MODULE
attributes:
  action:
    description: Runs in the controller's process through an action plugin of the same name.
    support: full
  async:
    description: Not supported - a decision takes milliseconds.
    support: none
requirements:
  - jmespath on the controller (only when O(policy) has custom rules)
options:
  hosts:
    description:
      - The evidence, one dict per host. Missing evidence is unknown, and unknown never proves death.
      - C(host) (required) and C(cluster) (default C(default)).
      - C(observer) - C({ok, reason}) from M(kvmha.cluster.kvm_heartbeat).
      - C(maintenance) - null, or C({owner, reason, expires}); active while C(expires) (unix time) is in the future
        or absent.
      - C(mgmt) - C({reachable}) true, false or null (not probed).
      - C(heartbeat) - the host's entry from M(kvmha.cluster.kvm_heartbeat) (C(status), C(age), C(self_fence)).
      - C(neighbors) - C({reachable, unreachable, errors}), counts of neighbours by what their ping showed.
      - C(bmc) - C({power, error}); power is C(on), C(off) or C(unknown), error the failure kind of the status read.
        A power state comes only from a status read that succeeded - with C(error) set, C(power) is taken as
        C(unknown) and the reasons say so. The watchdog adds C(probe) (C(ok), C(failed), C(not run)) and C(read) (the
        last power state the probe saw, believed only when C(probe=ok)), visible to custom rules.
      - C(disk_activity) - C(active), C(idle), C(none) (no HA VM disks) or C(unknown).
      - C(tags) - free-form list for custom rules. Any other key is kept and visible to custom rules.
    type: list
    elements: dict
    required: true
  clusters:
    description:
      - Per cluster named in the evidence, C(size) (number of hypervisors) and C(fenced) (hosts still marked fenced),
        for the storm guard.
      - C(fenced) is a count, or the names of the hosts with a fenced mark on the store. With C(members) (the names of
        the cluster's hosts) only the members' marks count; marks of other hosts (another cluster on the same store,
        a host removed from the inventory) are returned in RV(foreign_fenced) and reported as a warning.
    type: dict
    required: true
  policy:
    description:
      - The HA policy (C(kvmha_policy)). Unknown keys and bad values are errors. Defaults are documented in
        C(docs/OPERATIONS.md) and returned as RV(policy).
      - C(rules) is a list of custom rules, each with C(id), C(when) (a JMESPath expression over the host's evidence
        plus C(decision.verdict), C(decision.action) and C(decision.rule) of the built-in table), C(action) (C(none) or
        C(alert)), and optional C(verdict) and C(reason).
    type: dict
    default: {}
  now:
    description: Unix time used to judge maintenance expiry. Defaults to the current time; set it to replay a decision.
    type: float
seealso:
  - module: kvmha.cluster.kvm_heartbeat
  - module: kvmha.cluster.ipmi_power
  - module: kvmha.cluster.vm_evacuate
"""

EXAMPLES = r"""
- name: Decide on the suspects
  kvmha.cluster.host_investigate:
    hosts:
      - host: h1
        cluster: lab
        mgmt: {reachable: false}
        heartbeat: "{{ heartbeat.hosts.h1 }}"
        neighbors: {reachable: 0, unreachable: 2, errors: 0}
        bmc: {power: "on", error: null}
        disk_activity: idle
    clusters:
      lab: {size: 3, fenced: 0}
    policy:
      fence_isolated: false
      rules:
        - id: no-fence-tag
          when: "decision.action == 'fence' && contains(tags, 'no_fence')"
          action: alert
          verdict: FENCE_BLOCKED
          reason: host is tagged no_fence
        - id: rack-r7-bmc-dead
          when: "rack == 'r7'"
          action: alert
  register: investigation

- name: Fence what must be fenced
  ansible.builtin.debug:
    msg: "{{ investigation.actions.fence }}"
"""

RETURN = r"""
decisions:
  description: Per host, the decision, with the evidence it was made on.
  returned: always
  type: dict
  sample:
    h1:
      host: h1
      cluster: lab
      verdict: SUSPECT
      action: fence
      rule: R8
      reasons: ["heartbeat dead, management and neighbours without answer, no VM disk activity, BMC says on"]
      builtin: {verdict: SUSPECT, action: fence, rule: R8}
      interlocks: []
      storm_guard: false
      evidence: {host: h1, cluster: lab, mgmt: {reachable: false}, bmc: {power: "on"}}
actions:
  description: The hosts per action (every action is a key, with a possibly empty sorted list).
  returned: always
  type: dict
  sample: {none: [], alert: [], abort: [], remediate: [], fence: [h1], recover: []}
foreign_fenced:
  description: Per cluster, the fenced marks of hosts that are not its members (not counted by the storm guard).
  returned: always
  type: dict
  sample: {lab: [old-hv7]}
storm_guard:
  description: Per cluster, whether the storm guard held back its fences in this decision.
  returned: always
  type: dict
  sample: {lab: false}
abort:
  description: True when any host's action is C(abort) (the observer is not OK); the run must touch nothing.
  returned: always
  type: bool
  sample: false
policy:
  description: The effective policy (defaults overlaid with O(policy)).
  returned: always
  type: dict
  sample: {hung_grace_s: 30, fence_hung: true, max_fence_ratio: 0.5, rules: []}
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input, policy, missing_library]
  sample: policy
"""

import time

from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._decision import decide
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import (
    JMESPATH_IMPORT_ERROR,
    effective_policy,
    public_policy,
)

ARGUMENT_SPEC = {
    "hosts": {"type": "list", "elements": "dict", "required": True},
    "clusters": {"type": "dict", "required": True},
    "policy": {"type": "dict", "default": {}},
    "now": {"type": "float"},
}


def run(module: KvmhaModule) -> dict:
    params = module.params
    if params["policy"].get("rules"):
        module.require_library("jmespath", JMESPATH_IMPORT_ERROR)
    policy = effective_policy(params["policy"])
    now = time.time() if params["now"] is None else params["now"]
    result = decide(params["hosts"], params["clusters"], policy, now)
    result.update(changed=False, abort=bool(result["actions"]["abort"]), policy=public_policy(policy))
    for cluster, hosts in sorted(result["foreign_fenced"].items()):
        module.warn("fenced marks of hosts that are not members of cluster %s, not counted by its storm guard: %s"
                    % (cluster, ", ".join(hosts)))
    return result


def main():
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
