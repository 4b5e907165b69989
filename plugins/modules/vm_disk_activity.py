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
  timeout:
    description: Hard deadline in seconds for each sample of all disks.
    type: float
    default: 5
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
"""

import os
import time

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import STORE_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import call_with_deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import DeadlineExceeded, InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import RecordReader, validate_host_name

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    {
        "hosts": {"type": "list", "elements": "str", "required": True},
        "window": {"type": "float", "default": 2.5},
        "timeout": {"type": "float", "default": 5},
    },
)


def ha_disks(reader: RecordReader, host: str) -> list:
    reading = reader.read(host)
    if reading.status != "ok":
        return []
    return sorted({disk for vm in reading.record["vms"] if vm["ha"] for disk in vm["disks"]})


def sample(paths: list) -> dict:
    """{path: (size, mtime_ns, blocks)} or {path: error text} for each disk."""
    result = {}
    for path in paths:
        try:
            info = os.stat(path)
        except OSError as err:
            result[path] = err.strerror or str(err)
        else:
            result[path] = (info.st_size, info.st_mtime_ns, info.st_blocks)
    return result


def judge(disks: list, before: dict, after: dict, window: float) -> dict:
    if not disks:
        return {"activity": "none", "disks": 0, "changed": [], "unreadable": {}, "reason": "no HA VM disks in its last record"}
    unreadable = {d: after[d] if isinstance(after[d], str) else before[d] for d in disks
                  if isinstance(before[d], str) or isinstance(after[d], str)}
    changed = [d for d in disks if d not in unreadable and before[d] != after[d]]
    if changed:
        activity = "active"
    elif unreadable:
        activity = "unknown"
    else:
        activity = "idle"
    reason = "%d of %d disks changed in %.1f s" % (len(changed), len(disks), window)
    if unreadable:
        reason += ", %d could not be sampled" % len(unreadable)
    return {"activity": activity, "disks": len(disks), "changed": changed, "unreadable": unreadable, "reason": reason}


def unknown(disks: list, reason: str) -> dict:
    return {"activity": "unknown", "disks": len(disks), "changed": [], "unreadable": {}, "reason": reason}


def run(params: dict) -> dict:
    start = time.monotonic()
    hosts = [validate_host_name(h) for h in params["hosts"]]
    if params["window"] <= 0 or params["timeout"] <= 0:
        raise InvalidInput("window and timeout must be positive")
    reader = RecordReader(params["store_path"])
    try:
        disks = call_with_deadline(lambda: {h: ha_disks(reader, h) for h in hosts}, params["timeout"], "reading the records")
        every = sorted({d for paths in disks.values() for d in paths})
        before = call_with_deadline(sample, params["timeout"], "sampling the VM disks", every)
        time.sleep(params["window"])
        after = call_with_deadline(sample, params["timeout"], "sampling the VM disks", every)
    except DeadlineExceeded as err:
        verdicts = {h: unknown([], str(err)) for h in hosts}
    else:
        verdicts = {h: judge(disks[h], before, after, params["window"]) for h in hosts}
    return {"changed": False, "hosts": verdicts, "elapsed": round(time.monotonic() - start, 3)}


def main():
    module = KvmhaModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.run(lambda: run(module.params))


if __name__ == "__main__":
    main()
