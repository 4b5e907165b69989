# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Capacity: the free memory and vCPUs a host reports for new guests."""

from __future__ import annotations


def compute_capacity(cap: dict, mem_available_mib, cpus: int, allocated: dict) -> dict:
    """Free memory (MiB) and vCPUs for new guests.

    Memory: ``capacity.mem_mib`` minus the memory of running domains when set (the operator's figure, e.g. in a
    container that sees the whole machine), else the kernel's MemAvailable minus ``reserved_mem_mib``.
    vCPUs: ``capacity.vcpus`` (or the CPUs this process may run on, minus ``reserved_vcpus``) minus the vCPUs of
    running domains.
    """
    if cap["mem_mib"] is not None:
        mem = cap["mem_mib"] - allocated["mem_mib"]
    elif mem_available_mib is not None:
        mem = mem_available_mib - cap["reserved_mem_mib"]
    else:
        mem = 0
    vcpus = (cap["vcpus"] if cap["vcpus"] is not None else cpus - cap["reserved_vcpus"]) - allocated["vcpus"]
    return {"mem_free_mib": max(0, int(mem)), "vcpus_free": max(0, int(vcpus))}


def read_mem_available_mib(path: str):
    try:
        with open(path, "rb") as handle:
            for line in handle:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
