# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Domain XML: the manifest fields (HA marker, priority, group, memory, vCPUs, disks) of running domains."""

from __future__ import annotations

from ._domainxml import DEFAULT_PRIORITY, MAX_DEFINITION_BYTES, MAX_GROUP, ha_marker, marker_priority, memory_mib, parse_xml, uuid_or_none, vcpu_count
from ._errors import DomainXMLError


def listed_entry(ha_domains, name: str, uuid: str):
    """The ``ha_domains`` entry naming this domain (by name or UUID), or None."""
    return next((d for d in ha_domains if d["name"] in (name, uuid)), None)


def parse_domain(xml_text: str, ha_domains=()) -> dict:
    """The manifest fields of one domain from its XML; ``ha`` is False when it is neither marked nor listed.

    Returns ``{uuid, name, ha, priority, memory_mib, vcpus, disks, group, warnings}``.
    """
    root = parse_xml(xml_text, MAX_DEFINITION_BYTES)
    name = (root.findtext("name") or "").strip()
    uuid = (root.findtext("uuid") or "").strip()
    warnings = []
    vcpus = vcpu_count(root.find("vcpu"), current=True) or 0
    disks = []
    for disk in root.findall("./devices/disk"):
        if disk.get("device", "disk") not in ("disk", "lun"):
            continue
        source = disk.find("source")
        if source is None:
            continue
        if source.get("file") or source.get("dev"):
            disks.append(source.get("file") or source.get("dev"))
        elif source.get("pool") and source.get("volume"):
            disks.append("%s/%s" % (source.get("pool"), source.get("volume")))
        elif source.get("name"):
            disks.append("%s:%s" % (source.get("protocol") or disk.get("type") or "network", source.get("name")))
    listed = listed_entry(ha_domains, name, uuid)
    marker = ha_marker(root)
    priority, group = DEFAULT_PRIORITY, ""
    if listed is not None:
        priority, group = listed["priority"], listed["group"]
    if marker is not None:
        raw = marker.get("priority")
        if raw is not None and marker_priority(raw) is None:
            warnings.append("domain %s: HA marker priority %r is not an integer 0-100; using %d" % (name, raw, priority))
        elif raw is not None:
            priority = marker_priority(raw)
        if marker.get("group") is not None:
            group = marker.get("group")[:MAX_GROUP]
    return {
        "uuid": uuid, "name": name, "ha": marker is not None or listed is not None, "priority": priority,
        "memory_mib": memory_mib(root.find("memory")) or 0, "vcpus": vcpus, "disks": disks, "group": group,
        "warnings": warnings,
    }


def _manifest_from(xmls, ha_domains, inactive_xml) -> dict:
    """Build the refresh result from (uuid, live XML) pairs; ``inactive_xml(uuid)`` gives the XML to keep."""
    vms, keep, allocated, warnings = [], {}, {"mem_mib": 0, "vcpus": 0}, []
    for uuid, live in xmls:
        try:
            info = parse_domain(live, ha_domains)
        except DomainXMLError as err:
            warnings.append("domain %s: unreadable XML (%s); not counted" % (uuid, err))
            continue
        allocated["mem_mib"] += info["memory_mib"]
        allocated["vcpus"] += info["vcpus"]
        warnings.extend(info.pop("warnings"))
        if not info["ha"]:
            continue
        if uuid_or_none(info["uuid"]) is None:
            warnings.append("domain %s: uuid %r is not a UUID; left out" % (info["name"], info["uuid"]))
            continue
        info["uuid"] = uuid_or_none(info["uuid"])
        vms.append(info)
        keep[info["uuid"]] = inactive_xml(info["uuid"], live)
    vms.sort(key=lambda vm: (-vm["priority"], vm["name"]))
    return {"vms": vms, "xml": keep, "allocated": allocated, "warnings": warnings}
