# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# Plain standard-library Python, and PURE: no I/O, no clock. The live migrations are in modules/host_drain.py.
"""Draining a host before maintenance: where its running HA VMs go, and what a migration left where.

The plan is the watchdog's own placement (``_placement.place``) over the live targets' heartbeat records - their free
capacity after the allocation ratios, and the anti-affinity groups they already run - so a drained VM lands where a
recovery would have put it. After each migration, whatever the migration call said, the VM's state on both hosts
decides the outcome (``settle``): an abort that came too late does not undo a migration, and a failed one leaves the
VM running on the source.
"""

from __future__ import annotations

from ._errors import InvalidInput

# Domain states in which a domain holds its disks (libvirt's names, _libvirt.DOMAIN_STATES).
ACTIVE_STATES = ("running", "blocked", "paused", "shutdown", "pmsuspended", "nostate")


def target_host(host: str, record: dict) -> dict:
    """Placement input (``_placement.place``) from a target's heartbeat record: its free capacity and the groups of
    the VMs it runs. A record without them is that target's clear error."""
    try:
        capacity = record["capacity"]
        groups = sorted(set(str(vm.get("group") or "") for vm in record["vms"]) - {""})
        return {"host": host, "mem_free_mib": capacity["mem_free_mib"], "vcpus_free": capacity["vcpus_free"],
                "groups": groups}
    except (KeyError, TypeError, AttributeError) as err:
        raise InvalidInput("drain: the heartbeat record of %s has no usable capacity: %s" % (host, err)) from None


def settle(source_state, target_state) -> tuple:
    """``(outcome, reason)`` from the VM's state on the source and on the target after its migration.

    outcome: ``moved`` (active on the target only), ``kept`` (active on the source only) or ``unknown`` (active on
    both, or on neither: a human must look before the host is switched off).
    """
    on_source = source_state in ACTIVE_STATES
    on_target = target_state in ACTIVE_STATES
    if on_target and not on_source:
        return "moved", ""
    if on_source and not on_target:
        if source_state == "paused":
            return "kept", "it is paused on the source after the failed migration: resume it (virsh resume)"
        return "kept", ""
    if on_source:
        return "unknown", "it is active on the source (%s) and on the target (%s)" % (source_state, target_state)
    return "unknown", "it is active on neither the source (%s) nor the target (%s)" % (source_state or "not defined",
                                                                                       target_state or "not defined")


def follow(plan: list, running: list, usable_hosts: list) -> dict:
    """The ``place`` result of carrying out an earlier ``plan`` (a check-mode drain's, one entry at a time so that each
    migration is reported as it ends), against what runs on the source now.

    An entry whose VM no longer runs on the source has nothing left to move and is dropped; one whose planned host is
    no longer a usable target stays, with the reason. Nothing is placed anew: the plan was made for the whole host,
    on capacity that the earlier entries' migrations have since used up in the records.
    """
    vms = dict((vm["uuid"], vm) for vm in running)
    placements, unplaced = [], []
    for entry in plan:
        if not isinstance(entry, dict) or not isinstance(entry.get("uuid"), str) or not isinstance(entry.get("host"), str):
            raise InvalidInput("drain: every plan entry needs the uuid and host of a check-mode run's plan, got %r"
                               % (entry,))
        vm = vms.get(entry["uuid"])
        if vm is None:
            continue
        if entry["host"] not in usable_hosts:
            unplaced.append(dict(vm, reason="its planned host %s is no longer a usable target" % entry["host"]))
            continue
        placements.append(dict(vm, order=len(placements) + 1, host=entry["host"]))
    return {"placements": placements, "unplaced": unplaced}
