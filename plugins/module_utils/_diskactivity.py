# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""VM disk activity: are a host's HA VMs still writing to their disks on the shared store?

A sample is ``{path: [size, mtime_ns, blocks]}`` (or ``{path: "error text"}``) from ``stat`` alone; disks are
never opened. Two samples taken ``window`` seconds apart tell ``active`` (something changed), ``idle``, ``none``
(no HA VM disks) or ``unknown`` (a disk could not be sampled). kvm_heartbeat takes the first sample of every
suspect the moment it is detected, so that the window has passed by the time the other probes are done.
"""

from __future__ import annotations

import os
import time


def ha_disks(record) -> list:
    """The disks of the HA VMs in a heartbeat record (none without a record)."""
    if not record:
        return []
    return sorted({disk for vm in record["vms"] if vm["ha"] for disk in vm["disks"]})


def sample(paths) -> dict:
    result = {}
    for path in paths:
        try:
            info = os.stat(path)
        except OSError as err:
            result[path] = err.strerror or str(err)
        else:
            result[path] = [info.st_size, info.st_mtime_ns, info.st_blocks]
    return result


def baseline(paths) -> dict:
    """A first sample with the wall time it was taken (JSON-friendly, so it can travel in a module result)."""
    return {"sampled_at": time.time(), "disks": sample(paths)}


def second_verdicts(disks: dict, firsts: dict, sample_disks=sample, wall=time.time) -> dict:
    """Per host of ``disks`` ({host: [paths]}), the verdict from its first sample (``firsts[host]``, a ``baseline``)
    and one second sample of every disk, taken now."""
    after = sample_disks(sorted({disk for paths in disks.values() for disk in paths}))
    taken = wall()
    return {h: judge(paths, firsts[h]["disks"], after, taken - firsts[h]["sampled_at"]) for h, paths in disks.items()}


def judge(disks: list, before: dict, after: dict, window: float) -> dict:
    if not disks:
        return {"activity": "none", "disks": 0, "changed": [], "unreadable": {}, "reason": "no HA VM disks in its last record"}
    unreadable = {}
    for disk in disks:
        for seen in (before.get(disk, "not sampled"), after.get(disk, "not sampled")):
            if isinstance(seen, str):
                unreadable[disk] = seen
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
