# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Capacity: the free memory and vCPUs a host reports for new guests.

This is the one place where the allocation ratios and the host reserve apply (policy keys
``cpu_allocation_ratio``, ``ram_allocation_ratio`` and ``reserved_memory_mib``, passed on by the role): the record
carries free capacity only, so placement, status and every other reader use it as it is.
"""

from __future__ import annotations

import math


def _offered(amount: float, ratio: float) -> int:
    """``amount`` x ``ratio`` rounded down (a hair of tolerance: 0.29 x 100 is 28.999... in binary)."""
    return int(math.floor(amount * ratio + 1e-9))


def compute_capacity(cap: dict, mem_available_mib, cpus: int, allocated: dict, mem_total_mib=None) -> dict:
    """Free memory (MiB) and vCPUs for new guests.

    vCPUs: ``capacity.vcpus`` when set (the operator's figure, overcommit included), else (the CPUs this process
    may run on - ``reserved_vcpus``) x ``cpu_allocation_ratio``; minus the vCPUs of running domains.
    Memory: ``capacity.mem_mib`` minus the memory of running domains when set (the operator's figure, e.g. in a
    container that sees the whole machine). Else the smaller of the allocation budget, (MemTotal -
    ``reserved_mem_mib``) x ``ram_allocation_ratio`` minus the memory of running domains, and what the kernel has
    now, MemAvailable - ``reserved_mem_mib``: overcommit may promise more guests, never memory the host lacks now.
    """
    if cap["mem_mib"] is not None:
        mem = cap["mem_mib"] - allocated["mem_mib"]
    else:
        limits = []
        if mem_total_mib is not None:
            limits.append(_offered(mem_total_mib - cap["reserved_mem_mib"], cap["ram_allocation_ratio"]) - allocated["mem_mib"])
        if mem_available_mib is not None:
            limits.append(mem_available_mib - cap["reserved_mem_mib"])
        mem = min(limits) if limits else 0
    offered = cap["vcpus"] if cap["vcpus"] is not None else _offered(max(0, cpus - cap["reserved_vcpus"]), cap["cpu_allocation_ratio"])
    return {"mem_free_mib": max(0, int(mem)), "vcpus_free": max(0, int(offered - allocated["vcpus"]))}


def read_meminfo_mib(path: str) -> dict:
    """MemTotal and MemAvailable of /proc/meminfo in MiB (each None when unreadable)."""
    found = {"MemTotal": None, "MemAvailable": None}
    try:
        with open(path, "rb") as handle:
            for line in handle:
                name = line.split(b":", 1)[0].decode("ascii", "replace")
                if name in found:
                    found[name] = int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return found
