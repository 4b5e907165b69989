# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Domain XML: the manifest fields (HA marker, priority, group, memory, vCPUs, disks) of running domains."""

from __future__ import annotations

import math
import uuid as uuidlib
import xml.etree.ElementTree as ET

from ._config import DEFAULT_PRIORITY

HA_NAMESPACE = "http://kvmha.invalid/xmlns/ha/1"
HA_TAG = "{%s}ha" % HA_NAMESPACE


# libvirt memory units (docs: formatdomain.html#memory-allocation), as bytes.
_UNITS = {
    "b": 1, "bytes": 1, "kb": 10**3, "k": 2**10, "kib": 2**10, "mb": 10**6, "m": 2**20, "mib": 2**20,
    "gb": 10**9, "g": 2**30, "gib": 2**30, "tb": 10**12, "t": 2**40, "tib": 2**40,
    "pb": 10**15, "p": 2**50, "pib": 2**50, "eb": 10**18, "e": 2**60, "eib": 2**60,
}


def memory_mib(element) -> int:
    """A libvirt memory element (value + unit, KiB by default) in MiB, rounded up."""
    if element is None or not (element.text or "").strip():
        return 0
    unit = (element.get("unit") or "KiB").lower()
    if unit not in _UNITS:
        raise ValueError("unknown memory unit %r" % unit)
    return int(math.ceil(int(element.text.strip()) * _UNITS[unit] / float(2**20)))


def ha_marker(root):
    """The HA marker element of a parsed domain (``<metadata><kvmha:ha .../></metadata>``), or None."""
    metadata = root.find("metadata")
    return None if metadata is None else metadata.find(HA_TAG)


def listed_entry(ha_domains, name: str, uuid: str):
    """The ``ha_domains`` entry naming this domain (by name or UUID), or None."""
    return next((d for d in ha_domains if d["name"] in (name, uuid)), None)


def parse_domain(xml_text: str, ha_domains=()) -> dict:
    """The manifest fields of one domain from its XML; ``ha`` is False when it is neither marked nor listed.

    Returns ``{uuid, name, ha, priority, memory_mib, vcpus, disks, group, warnings}``.
    """
    root = ET.fromstring(xml_text)
    name = (root.findtext("name") or "").strip()
    uuid = (root.findtext("uuid") or "").strip()
    warnings = []
    vcpu = root.find("vcpu")
    vcpus = 0
    if vcpu is not None:
        vcpus = int(vcpu.get("current") or (vcpu.text or "0").strip() or 0)
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
        if raw is not None:
            try:
                value = int(raw)
                if not 0 <= value <= 100:
                    raise ValueError
                priority = value
            except ValueError:
                warnings.append("domain %s: HA marker priority %r is not an integer 0-100; using %d" % (name, raw, priority))
        if marker.get("group") is not None:
            group = marker.get("group")[:255]
    return {
        "uuid": uuid, "name": name, "ha": marker is not None or listed is not None, "priority": priority,
        "memory_mib": memory_mib(root.find("memory")), "vcpus": vcpus, "disks": disks, "group": group,
        "warnings": warnings,
    }


def _manifest_from(xmls, ha_domains, inactive_xml) -> dict:
    """Build the refresh result from (uuid, live XML) pairs; ``inactive_xml(uuid)`` gives the XML to keep."""
    vms, keep, allocated, warnings = [], {}, {"mem_mib": 0, "vcpus": 0}, []
    for uuid, live in xmls:
        try:
            info = parse_domain(live, ha_domains)
        except (ET.ParseError, ValueError) as err:
            warnings.append("domain %s: unreadable XML (%s); not counted" % (uuid, err))
            continue
        allocated["mem_mib"] += info["memory_mib"]
        allocated["vcpus"] += info["vcpus"]
        warnings.extend(info.pop("warnings"))
        if not info["ha"]:
            continue
        try:
            info["uuid"] = str(uuidlib.UUID(info["uuid"]))
        except ValueError:
            warnings.append("domain %s: uuid %r is not a UUID; left out" % (info["name"], info["uuid"]))
            continue
        vms.append(info)
        keep[info["uuid"]] = inactive_xml(info["uuid"], live)
    vms.sort(key=lambda vm: (-vm["priority"], vm["name"]))
    return {"vms": vms, "xml": keep, "allocated": allocated, "warnings": warnings}
