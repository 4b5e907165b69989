# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""The HA marker of a libvirt domain, as text: render it, read it back the way the heartbeat writer reads it.

A domain is HA when its ``<metadata>`` holds ``<kvmha:ha xmlns:kvmha="HA_NAMESPACE" priority="50" group=""/>``
(docs/ARCHITECTURE.md, "HA marker in libvirt"). libvirt keys metadata by namespace: ``virDomainGetMetadata``
returns the one element of that namespace without its prefix (``<ha priority="50" group=""/>``), and
``virDomainSetMetadata`` replaces it whole. Pure functions, no I/O.
"""

from __future__ import annotations

from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from ._errors import InvalidInput

HA_NAMESPACE = "http://kvmha.invalid/xmlns/ha/1"  # the heartbeat writer's HA_NAMESPACE: the two must never differ
HA_PREFIX = "kvmha"
DEFAULT_PRIORITY = 50
MAX_GROUP = 255
MAX_MARKER_BYTES = 64 * 1024
SCOPES = ("live", "config")


def validate(priority: int, group: str) -> None:
    """Raise ``InvalidInput`` unless ``priority`` and ``group`` can be written and read back unchanged."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
        raise InvalidInput("priority must be an integer 0-100, not %r" % (priority,))
    if not isinstance(group, str) or len(group) > MAX_GROUP:
        raise InvalidInput("group must be a string of at most %d characters" % MAX_GROUP)
    if any(not char.isprintable() for char in group):
        raise InvalidInput("group %r holds control characters, which XML cannot carry" % group[:40])


def render(priority: int, group: str) -> str:
    """The marker element for ``virDomainSetMetadata`` (libvirt adds the prefix and the namespace)."""
    validate(priority, group)
    return "<ha priority=%s group=%s/>" % (quoteattr(str(priority)), quoteattr(group))


def absent() -> dict:
    return {"ha": False, "priority": None, "group": None, "problems": []}


def read(text) -> dict:
    """What the writer makes of the namespace's element ``text`` (``None``: there is none).

    Returns ``{ha, priority, group, problems}``. Like the writer, an ``ha`` element marks the domain HA even when
    its priority is unusable (it then counts as DEFAULT_PRIORITY); any other element of the namespace does not.
    ``problems`` says what is wrong with the element, so that tagging rewrites it and listing shows it.
    """
    if text is None:
        return absent()
    if len(text.encode("utf-8")) > MAX_MARKER_BYTES or "<!" in text:
        return dict(absent(), problems=["the element of the HA namespace is oversized or holds a DTD; ignored"])
    try:
        element = ElementTree.fromstring(text)
    except ElementTree.ParseError as err:
        return dict(absent(), problems=["the element of the HA namespace is not XML (%s)" % err])
    if element.tag.rpartition("}")[2] != "ha":
        return dict(absent(), problems=["the HA namespace holds <%s>, not <ha>: the domain is not HA" % element.tag[:60]])
    marker = {"ha": True, "priority": DEFAULT_PRIORITY, "group": (element.get("group") or "")[:MAX_GROUP], "problems": []}
    raw = element.get("priority")
    if raw is None:
        marker["problems"].append("no priority attribute: it counts as %d" % DEFAULT_PRIORITY)
    elif _priority(raw) is None:
        marker["problems"].append("priority %r is not an integer 0-100: it counts as %d" % (raw[:40], DEFAULT_PRIORITY))
    else:
        marker["priority"] = _priority(raw)
    if element.get("group") is not None and len(element.get("group")) > MAX_GROUP:
        marker["problems"].append("group is longer than %d characters: it is cut" % MAX_GROUP)
    return marker


def _priority(raw: str):
    """The priority the writer reads from the attribute (Python's int(), as it uses), or None if it cannot."""
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None


def wanted(state: str, priority: int, group: str) -> dict:
    """The marker a tagging asks for: ``present`` with its priority and group, or ``absent``."""
    if state == "absent":
        return absent()
    validate(priority, group)
    return {"ha": True, "priority": priority, "group": group, "problems": []}


def summary(marker: dict) -> dict:
    """The fields a user compares (for diffs and results): no problems list when there are none."""
    shown = {"ha": marker["ha"], "priority": marker["priority"], "group": marker["group"]}
    if marker["problems"]:
        shown["problems"] = list(marker["problems"])
    return shown


def scopes_to_write(current: dict, target: dict) -> list:
    """The scopes (of ``current``: scope -> marker read there) whose marker differs from ``target``.

    A marker with problems always differs, even from ``absent``: tagging rewrites it or removes it.
    """
    return [scope for scope in SCOPES if scope in current and current[scope] != target]
