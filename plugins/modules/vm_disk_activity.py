#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_disk_activity
short_description: Tell whether a suspect hypervisor's VMs are still writing to their disks on the shared store
version_added: 0.1.0
description:
  - For each host, takes the disks of its HA VMs from its last heartbeat record, samples their size, modification
    time and allocated blocks twice, O(window) seconds apart, and reports C(active) when any of them changed.
  - This is the evidence that catches CloudStack's worst case - a host that is cut off and whose heartbeat writer
    stopped, but whose VMs still run and write to the shared disks. Starting them elsewhere would run them twice.
  - C(active) is proof of life. C(idle), C(none) (no HA VM disks) and C(unknown) (no disk could be sampled) prove
    nothing, and never count as proof of death.
  - The module only calls C(stat) on the disk paths, never opens them, and every sample has a hard deadline, so a hung
    store cannot hang the watchdog.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_STORE
  - kvmha.cluster._attributes.INFO_MODULE
  - kvmha.cluster._store
options:
  hosts:
    description: The hosts whose VM disks are sampled (all of them in one call, in parallel).
    type: list
    elements: str
    required: true
  window:
    description: Seconds between the two samples. Longer than the interval at which the guests write.
    type: float
    default: 2.5
  store_timeout_s:
    description:
      - Hard deadline in seconds for each read of the store - the heartbeat records, then each sample of all disks.
        A sample that misses it makes every host's verdict C(unknown), never a failure.
      - The old name O(timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10
    aliases: [timeout]
  baseline:
    description:
      - First samples taken earlier, per host (the RV(kvmha.cluster.kvm_heartbeat#module:disk_samples) of the observation
        that found the suspects). The module then only waits for what is left of O(window) and samples once more, so
        the window passes while the other probes run. Hosts without a baseline are sampled twice here.
    type: dict
    default: {}
notes:
  - On NFS the observer must not cache attributes for long (mount the store with C(actimeo=1) or C(noac)), or a
    writing VM looks idle.
"""

EXAMPLES = r"""
- name: Are the suspects' VMs still writing?
  kvmha.cluster.vm_disk_activity:
    store_path: /var/lib/kvmha-lab/store
    hosts: "{{ heartbeat.suspects }}"
    window: 2.5
  register: activity
"""

RETURN = r"""
hosts:
  description: Per host, the verdict on its VM disks and the disks that changed.
  returned: always
  type: dict
  sample:
    h1:
      activity: active
      disks: 2
      changed: [/var/lib/kvmha-lab/store/images/g1.img]
      unreadable: {}
      reason: "1 of 2 disks changed in 2.5 s"
elapsed:
  description: Seconds spent in the module.
  returned: always
  type: float
  sample: 2.51
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [invalid_input]
  sample: invalid_input
"""

import time

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import STORE_SPEC, merge_specs, renamed
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import call_with_deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._diskactivity import ha_disks, sample, second_verdicts, unknown
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import DeadlineExceeded, check_range
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import RecordReader, validate_host_name

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    {
        "hosts": {"type": "list", "elements": "str", "required": True},
        "window": {"type": "float", "default": 2.5},
        "store_timeout_s": renamed({"type": "float", "default": 10}, "timeout"),
        "baseline": {"type": "dict", "default": {}},
    },
)


def first_samples(hosts: list, disks: dict, given: dict) -> dict:
    """Per host {sampled_at, disks}: the baseline taken earlier (kvm_heartbeat's), or a sample taken now."""
    samples = {}
    for host in hosts:
        earlier = given.get(host)
        if isinstance(earlier, dict) and isinstance(earlier.get("sampled_at"), (int, float)) and isinstance(earlier.get("disks"), dict):
            samples[host] = earlier
        else:
            samples[host] = {"sampled_at": time.time(), "disks": sample(disks[host])}
    return samples


def run(module: KvmhaModule) -> dict:
    params = module.params
    start = time.monotonic()
    hosts = [validate_host_name(h) for h in params["hosts"]]
    check_range("window", params["window"], 0, exclusive_minimum=True)
    limit = check_range("store_timeout_s", params["store_timeout_s"], 0, exclusive_minimum=True)
    reader = RecordReader(params["store_path"])
    try:
        disks = call_with_deadline(lambda: {h: ha_disks(reader.read(h).record) for h in hosts}, limit, "reading the records")
        before = call_with_deadline(first_samples, limit, "sampling the VM disks", hosts, disks, params["baseline"])
        oldest = min([b["sampled_at"] for b in before.values()] or [time.time()])
        time.sleep(max(0.0, oldest + params["window"] - time.time()))
        verdicts = call_with_deadline(second_verdicts, limit, "sampling the VM disks", disks, before)
    except DeadlineExceeded as err:
        verdicts = {h: unknown([], str(err)) for h in hosts}
    return {"changed": False, "hosts": verdicts, "elapsed": round(time.monotonic() - start, 3)}


def main():
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
