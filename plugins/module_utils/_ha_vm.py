# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Tag one libvirt domain HA (or untag it), and list the HA domains of a host: ha_vm and ha_vm_info.

A domain's marker lives where the domain does: in its live definition while it is active, in its persistent
definition when it has one. Both are read and compared; only the scopes whose marker differs are written, in one
``virDomainSetMetadata`` call, then read back.
"""

from __future__ import annotations

from ._domainxml import HA_NAMESPACE, HA_PREFIX, marker_summary, normalise_uuid, read_marker, render_marker, scopes_to_write
from ._errors import LibvirtError


def _scopes(facts: dict) -> list:
    return [scope for scope, holds in (("live", facts["active"]), ("config", facts["persistent"])) if holds]


def _markers(client, dom, scopes) -> dict:
    return {scope: read_marker(client.read_metadata(dom, HA_NAMESPACE, scope)) for scope in scopes}


def selector(name: str | None, vm_uuid: str | None) -> dict:
    """The lookup arguments of ``LibvirtClient.find_domain``: by UUID (normalised) or by exact name."""
    if vm_uuid is None:
        return {"name": name}
    return {"vm_uuid": normalise_uuid(vm_uuid, "uuid")}


def tag(client, lookup: dict, target: dict, check_mode: bool) -> dict:
    """Make the domain's marker ``target`` (``_domainxml.wanted_marker``) in every scope it has; report before and after."""
    dom = client.find_domain(**lookup)
    facts = client.describe(dom)
    scopes = _scopes(facts)
    before = _markers(client, dom, scopes)
    write = scopes_to_write(before, target)
    after = dict(before, **{scope: target for scope in write})
    if write and not check_mode:
        client.write_metadata(dom, HA_NAMESPACE, HA_PREFIX, render_marker(target["priority"], target["group"]) if target["ha"] else None, write)
        after = _markers(client, dom, scopes)
        if scopes_to_write(after, target):
            raise LibvirtError("libvirt accepted the HA marker of %r but reads back %r" % (facts["name"], after))
    return {"changed": bool(write), "domain": facts, "scopes": scopes, "written": write,
            "before": {scope: marker_summary(m) for scope, m in before.items()},
            "after": {scope: marker_summary(m) for scope, m in after.items()}}


def ha_domains(client) -> list:
    """Every domain here that is HA, or whose HA marker has a problem, highest priority first.

    A domain's marker is read from its live definition while it runs (what the writer reports) and from its
    persistent one otherwise; ``in_sync`` is false when the two disagree (a marker set live only is lost at the
    next cold boot).
    """
    found = []
    for dom in client.all_domains():
        facts = client.describe(dom)
        markers = _markers(client, dom, _scopes(facts))
        effective = markers.get("live") or markers.get("config")
        problems = sorted(set(p for m in markers.values() for p in m["problems"]))
        if effective is None or not (effective["ha"] or problems):
            continue
        found.append(dict(facts, ha=effective["ha"], priority=effective["priority"], group=effective["group"],
                          problems=problems, in_sync=len(set(repr(m) for m in markers.values())) == 1))
    return sorted(found, key=lambda vm: (-(vm["priority"] or 0), vm["name"]))
