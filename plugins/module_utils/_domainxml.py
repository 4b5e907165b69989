# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""libvirt domain XML, read one way everywhere: a guarded parse, the HA marker in ``<metadata>``, memory and vCPUs
with libvirt's unit table, and UUIDs. Pure functions, no I/O.

The modules import it; scripts/build_writer.py inlines it into the heartbeat writer (the boot guard reaches it
through the writer), so it may import only the standard library and ``_errors`` (shipped next to the writer).

A domain is HA when its ``<metadata>`` holds ``<kvmha:ha xmlns:kvmha="HA_NAMESPACE" priority="50" group=""/>``
(docs/ARCHITECTURE.md, "HA marker in libvirt"). libvirt keys metadata by namespace: ``virDomainGetMetadata``
returns the one element of that namespace without its prefix (``<ha priority="50" group=""/>``), and
``virDomainSetMetadata`` replaces it whole.
"""

from __future__ import annotations

import uuid as uuidlib
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from ._errors import DomainXMLError, InvalidInput

HA_NAMESPACE = "http://kvmha.invalid/xmlns/ha/1"
HA_PREFIX = "kvmha"
HA_TAG = "{%s}ha" % HA_NAMESPACE
DEFAULT_PRIORITY = 50
MAX_GROUP = 255
MAX_MARKER_BYTES = 64 * 1024
MAX_DOMAIN_BYTES = 2 ** 20  # domain XML from outside (the store)
MAX_DEFINITION_BYTES = 4 * 2 ** 20  # domain XML that the local libvirt wrote (the writer, the boot guard)
MARKER_SCOPES = ("live", "config")
# Bytes per memory unit, as libvirt's virScaleInteger reads a unit: case-insensitive; "b", "byte(s)"; a letter alone or
# with "iB" is a power of 1024, with "B" a power of 1000 (formatdomain, "Memory Allocation"). <memory> defaults to KiB.
MEMORY_UNITS = dict({"b": 1, "byte": 1, "bytes": 1}, **{letter + suffix: (1000 if suffix == "b" else 1024) ** power
                                                        for power, letter in enumerate("kmgtpe", 1) for suffix in ("", "ib", "b")})
DEFAULT_MEMORY_UNIT = "KiB"


# --------------------------------------------------------------------------------------------------- parsing


def parse_xml(raw, max_bytes: int, what: str = "domain XML"):
    """The root element of ``raw`` (bytes or text); raises ``DomainXMLError`` saying why it is refused.

    Refuses more than ``max_bytes``, bytes that are not UTF-8, and any DTD or entity declaration: libvirt never
    writes one, and refusing them rules out entity expansion.
    """
    if isinstance(raw, bytes):
        if len(raw) > max_bytes:
            raise DomainXMLError("%s is %d bytes, more than the %d-byte limit" % (what, len(raw), max_bytes))
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DomainXMLError("%s is not UTF-8" % what) from None
    if not isinstance(raw, str):
        raise DomainXMLError("%s must be text" % what)
    if len(raw.encode("utf-8")) > max_bytes:
        raise DomainXMLError("%s is more than the %d-byte limit" % (what, max_bytes))
    if "<!DOCTYPE" in raw or "<!ENTITY" in raw:
        raise DomainXMLError("%s holds a DTD or entity declaration; refused (libvirt never writes one)" % what)
    try:
        return ElementTree.fromstring(raw)
    except ElementTree.ParseError as err:
        raise DomainXMLError("%s is malformed: not well-formed XML (%s)" % (what, err)) from None


def domain_root(raw, max_bytes: int):
    """The ``<domain>`` root of domain XML (``parse_xml``); raises ``DomainXMLError`` for any other root."""
    root = parse_xml(raw, max_bytes)
    if root.tag != "domain":
        raise DomainXMLError("domain XML has root element <%s>, not <domain>" % str(root.tag)[:40])
    return root


def parse_domain_xml(text, expected_uuid: str | None = None, max_bytes: int = MAX_DOMAIN_BYTES) -> dict:
    """Validate domain XML from outside and return ``{"uuid", "name", "type", "memory_mib", "vcpus"}``.

    ``domain_root``, then: a type, a name and a valid UUID, equal to ``expected_uuid`` when given; ``vcpus`` is the
    maximum. Raises ``DomainXMLError`` with the reason.
    """
    root = domain_root(text, max_bytes)
    dom_type = root.get("type")
    if not dom_type:
        raise DomainXMLError("domain XML has no type attribute")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise DomainXMLError("domain XML has no <name>")
    raw_uuid = (root.findtext("uuid") or "").strip()
    if not raw_uuid:
        raise DomainXMLError("domain XML has no <uuid>")
    found = uuid_or_none(raw_uuid)
    if found is None:
        raise DomainXMLError("domain XML has an invalid <uuid> %r" % raw_uuid[:40])
    if expected_uuid is not None and found != normalise_uuid(expected_uuid):
        raise DomainXMLError("domain XML describes UUID %s, expected %s" % (found, expected_uuid))
    return {"uuid": found, "name": name, "type": dom_type, "memory_mib": memory_mib(root.find("memory")),
            "vcpus": vcpu_count(root.find("vcpu"))}


# --------------------------------------------------------------------------------------------------- UUIDs


def uuid_or_none(value):
    """The canonical form (lower case, dashes) of a UUID string, white space around it ignored; None if not one."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuidlib.UUID(value.strip()))
    except ValueError:
        return None


def normalise_uuid(value, label: str = "") -> str:
    """``uuid_or_none`` of ``value``; raises ``DomainXMLError`` (``label`` names the value) when it is not one. Only a
    string is: an integer of 32 digits reads as hex once made a string, but a JSON number is no UUID."""
    canonical = uuid_or_none(value)
    if canonical is None:
        raise DomainXMLError("%s%r is not a UUID" % (label and label + " ", str(value)[:80]))
    return canonical


# --------------------------------------------------------------------------------------------------- memory, vCPUs


def memory_mib(element):
    """A libvirt memory element (an amount and a unit, KiB by default) in MiB, rounded up; None when empty.

    Raises ``DomainXMLError`` for an amount that is not a non-negative integer or a unit libvirt does not know.
    """
    text = None if element is None else (element.text or "").strip()
    if not text:
        return None
    try:
        amount = int(text)
    except ValueError:
        raise DomainXMLError("<%s> is not an integer: %r" % (element.tag, text[:40])) from None
    unit = element.get("unit") or DEFAULT_MEMORY_UNIT
    if unit.lower() not in MEMORY_UNITS or amount < 0:
        raise DomainXMLError("<%s> has an unknown unit %r or a negative amount" % (element.tag, unit[:40]))
    return -(-amount * MEMORY_UNITS[unit.lower()] // 2 ** 20)


def vcpu_count(element, current: bool = False):
    """A ``<vcpu>`` element's maximum (its text), or with ``current`` its ``current`` attribute when set; None when
    empty. Raises ``DomainXMLError`` when it is not an integer."""
    text = None if element is None else ((element.get("current") if current else None) or (element.text or "").strip())
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise DomainXMLError("<vcpu> is not an integer: %r" % text[:40]) from None


# --------------------------------------------------------------------------------------------------- the HA marker


def ha_marker(root):
    """The HA marker element of a parsed domain (``<metadata><kvmha:ha .../></metadata>``), or None."""
    metadata = root.find("metadata")
    return None if metadata is None else metadata.find(HA_TAG)


def marker_priority(raw):
    """The priority that the attribute ``raw`` gives (Python's int(), an integer 0-100), or None if it gives none."""
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None


def validate_marker(priority: int, group: str) -> None:
    """Raise ``InvalidInput`` unless ``priority`` and ``group`` can be written and read back unchanged."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
        raise InvalidInput("priority must be an integer 0-100, not %r" % (priority,))
    if not isinstance(group, str) or len(group) > MAX_GROUP:
        raise InvalidInput("group must be a string of at most %d characters" % MAX_GROUP)
    if any(not char.isprintable() for char in group):
        raise InvalidInput("group %r holds control characters, which XML cannot carry" % group[:40])


def render_marker(priority: int, group: str) -> str:
    """The marker element for ``virDomainSetMetadata`` (libvirt adds the prefix and the namespace)."""
    validate_marker(priority, group)
    return "<ha priority=%s group=%s/>" % (quoteattr(str(priority)), quoteattr(group))


def no_marker() -> dict:
    return {"ha": False, "priority": None, "group": None, "problems": []}


def read_marker(text) -> dict:
    """What the writer makes of the namespace's element ``text`` (``None``: there is none).

    Returns ``{ha, priority, group, problems}``. Like the writer, an ``ha`` element marks the domain HA even when
    its priority is unusable (it then counts as DEFAULT_PRIORITY); any other element of the namespace does not.
    ``problems`` says what is wrong with the element, so that tagging rewrites it and listing shows it.
    """
    if text is None:
        return no_marker()
    # Stricter than parse_xml: render_marker never writes a comment, CDATA or declaration.
    if len(text.encode("utf-8")) > MAX_MARKER_BYTES or "<!" in text:
        return dict(no_marker(), problems=["the element of the HA namespace is oversized or holds a DTD; ignored"])
    try:
        element = parse_xml(text, MAX_MARKER_BYTES, "the marker")
    except DomainXMLError as err:
        return dict(no_marker(), problems=["the element of the HA namespace is not XML: %s" % err])
    if element.tag.rpartition("}")[2] != "ha":
        return dict(no_marker(), problems=["the HA namespace holds <%s>, not <ha>: the domain is not HA" % element.tag[:60]])
    marker = {"ha": True, "priority": DEFAULT_PRIORITY, "group": (element.get("group") or "")[:MAX_GROUP], "problems": []}
    raw = element.get("priority")
    if raw is None:
        marker["problems"].append("no priority attribute: it counts as %d" % DEFAULT_PRIORITY)
    elif marker_priority(raw) is None:
        marker["problems"].append("priority %r is not an integer 0-100: it counts as %d" % (raw[:40], DEFAULT_PRIORITY))
    else:
        marker["priority"] = marker_priority(raw)
    if element.get("group") is not None and len(element.get("group")) > MAX_GROUP:
        marker["problems"].append("group is longer than %d characters: it is cut" % MAX_GROUP)
    return marker


def wanted_marker(state: str, priority: int, group: str) -> dict:
    """The marker a tagging asks for: ``present`` with its priority and group, or ``absent``."""
    if state == "absent":
        return no_marker()
    validate_marker(priority, group)
    return {"ha": True, "priority": priority, "group": group, "problems": []}


def marker_summary(marker: dict) -> dict:
    """The fields a user compares (for diffs and results): no problems list when there are none."""
    shown = {"ha": marker["ha"], "priority": marker["priority"], "group": marker["group"]}
    if marker["problems"]:
        shown["problems"] = list(marker["problems"])
    return shown


def scopes_to_write(current: dict, target: dict) -> list:
    """The scopes (of ``current``: scope -> marker read there) whose marker differs from ``target``.

    A marker with problems always differs, even from ``absent``: tagging rewrites it or removes it.
    """
    return [scope for scope in MARKER_SCOPES if scope in current and current[scope] != target]
