# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# Plain standard-library Python, and PURE: no I/O, no clock, no randomness. Same input, same plan.
"""Where to restart the HA VMs of a dead host.

``place(vms, hosts, spare_hosts)`` is a greedy, deterministic planner:

1. VMs are taken in priority order (highest first); within one priority the larger VM (memory, then vCPUs) goes
   first, which packs better; name and UUID break the remaining ties.
2. Each VM goes to the *best fit* among the regular hosts that can take it: enough free memory and vCPUs, and
   no VM of the same anti-affinity group (non-empty ``group``) on the host already, counting VMs planned
   earlier in this run and the VMs a host already runs (its ``groups``). Best fit = the least memory left
   over, then the fewest vCPUs left over, then the host name. With ``strategy="spread"`` it is the opposite
   (the most memory, then vCPUs, left over): VMs spread over the hosts, which start them in parallel.
3. Reserved spare hosts are considered only when no regular host can take the VM.
4. A VM that fits nowhere is ``unplaced`` with the reason: the limit that stopped it (memory, vCPUs or both, with
   how many hosts lack it and the most any of them has free) or the anti-affinity group. Nothing is ever committed
   beyond the free capacity the hosts report (the writers apply the policy's allocation ratios to it).

Because capacity only shrinks while planning, a higher-priority VM is never left unplaced while a
lower-priority one takes a slot it could have used (the property tests check this and the other rules).
"""

from __future__ import annotations

from ._errors import InvalidInput


def vm_order_key(vm: dict) -> tuple:
    return (-vm["priority"], -vm["memory_mib"], -vm["vcpus"], vm["name"], vm["uuid"])


def _check_vm(vm: dict) -> dict:
    try:
        checked = {
            "uuid": str(vm["uuid"]),
            "name": str(vm["name"]),
            "priority": int(vm["priority"]),
            "memory_mib": int(vm["memory_mib"]),
            "vcpus": int(vm["vcpus"]),
            "group": str(vm.get("group") or ""),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidInput("placement: malformed VM %r: %s" % (vm, err)) from None
    if checked["memory_mib"] < 0 or checked["vcpus"] < 0:
        raise InvalidInput("placement: VM %s needs a negative amount of memory or vCPUs" % checked["name"])
    return checked


def _check_host(host: dict) -> dict:
    try:
        checked = {
            "host": str(host["host"]),
            "mem_free_mib": int(host["mem_free_mib"]),
            "vcpus_free": int(host["vcpus_free"]),
            "groups": set(str(g) for g in host.get("groups", ()) if g),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidInput("placement: malformed host %r: %s" % (host, err)) from None
    checked["mem_free_mib"] = max(0, checked["mem_free_mib"])
    checked["vcpus_free"] = max(0, checked["vcpus_free"])
    return checked


def _fits(vm: dict, host: dict) -> bool:
    return host["mem_free_mib"] >= vm["memory_mib"] and host["vcpus_free"] >= vm["vcpus"]


def _allowed(vm: dict, host: dict) -> bool:
    return not vm["group"] or vm["group"] not in host["groups"]


STRATEGIES = ("spread", "best_fit")
# The one default, shared by the policy (placement_strategy) and vm_evacuate (strategy): spread, so that the starts
# of a recovery run on several targets at once (docs/ARCHITECTURE.md, decision 17).
DEFAULT_STRATEGY = "spread"


def _best(vm: dict, hosts: list, strategy: str):
    candidates = [h for h in hosts if _fits(vm, h) and _allowed(vm, h)]
    if not candidates:
        return None
    sign = 1 if strategy == "best_fit" else -1
    return min(candidates, key=lambda h: (sign * (h["mem_free_mib"] - vm["memory_mib"]), sign * (h["vcpus_free"] - vm["vcpus"]),
                                          h["host"]))


def _describe(vm: dict) -> str:
    return "%d MiB and %d vCPU%s" % (vm["memory_mib"], vm["vcpus"], "" if vm["vcpus"] == 1 else "s")


def _unplaced_reason(vm: dict, hosts: list) -> str:
    if not hosts:
        return "no target host is available"
    roomy = [h["host"] for h in hosts if _fits(vm, h)]
    if roomy:
        return "anti-affinity group %r is already on every host with %s free (%s)" % (vm["group"], _describe(vm), ", ".join(roomy))
    return "no host has %s free: short of %s" % (_describe(vm), " and of ".join(_shortages(vm, hosts)))


def _shortages(vm: dict, hosts: list) -> list:
    """Which limit stopped the VM, with numbers: per resource, how many hosts lack it and the most any of them has."""
    found = []
    for what, need, free, unit in (("memory", "memory_mib", "mem_free_mib", "MiB"), ("vCPUs", "vcpus", "vcpus_free", "vCPU")):
        short = [h for h in hosts if h[free] < vm[need]]
        if short:
            most = max(short, key=lambda h, free=free: (h[free], h["host"]))
            found.append("%s on %d host%s (the most: %s with %d %s%s free)" % (
                what, len(short), "" if len(short) == 1 else "s", most["host"], most[free], unit,
                "s" if unit == "vCPU" and most[free] != 1 else ""))
    return found


def place(vms, hosts, spare_hosts=(), strategy: str = DEFAULT_STRATEGY) -> dict:
    """Plan where each VM starts.

    ``vms``: dicts with uuid, name, priority, memory_mib, vcpus, group ("" = none).
    ``hosts``: dicts with host, mem_free_mib, vcpus_free and optionally groups (anti-affinity groups of the VMs
    the host already runs). ``spare_hosts``: names of hosts in ``hosts`` to use only as a last resort.
    ``strategy``: ``best_fit`` (pack) or ``spread``.

    Returns ``{"placements": [...], "unplaced": [...], "hosts": {...}}``: placements in start order, each with
    order (1-based), uuid, name, priority, host, memory_mib, vcpus, group and spare; unplaced VMs (in the same
    order) with a reason; and each host's capacity and groups left after the plan.
    """
    if strategy not in STRATEGIES:
        raise InvalidInput("placement: unknown strategy %r (%s)" % (strategy, ", ".join(STRATEGIES)))
    checked_vms = [_check_vm(vm) for vm in vms]
    uuids = [vm["uuid"] for vm in checked_vms]
    if len(set(uuids)) != len(uuids):
        raise InvalidInput("placement: the same VM UUID is listed twice")
    checked_hosts = sorted((_check_host(h) for h in hosts), key=lambda h: h["host"])
    names = [h["host"] for h in checked_hosts]
    if len(set(names)) != len(names):
        raise InvalidInput("placement: the same host is listed twice")
    spares = set(spare_hosts)
    regular = [h for h in checked_hosts if h["host"] not in spares]
    reserve = [h for h in checked_hosts if h["host"] in spares]

    placements, unplaced = [], []
    for vm in sorted(checked_vms, key=vm_order_key):
        host = _best(vm, regular, strategy)
        spare = False
        if host is None:
            host = _best(vm, reserve, strategy)
            spare = host is not None
        if host is None:
            unplaced.append(dict(vm, reason=_unplaced_reason(vm, checked_hosts)))
            continue
        host["mem_free_mib"] -= vm["memory_mib"]
        host["vcpus_free"] -= vm["vcpus"]
        if vm["group"]:
            host["groups"].add(vm["group"])
        placements.append(dict(vm, order=len(placements) + 1, host=host["host"], spare=spare))
    left = {
        h["host"]: {"mem_free_mib": h["mem_free_mib"], "vcpus_free": h["vcpus_free"], "groups": sorted(h["groups"]),
                    "spare": h["host"] in spares}
        for h in checked_hosts
    }
    return {"placements": placements, "unplaced": unplaced, "hosts": left}
