# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Fence levels (Pacemaker's fencing topology), as pure logic: no I/O, the device runs are passed in.

A host has an ordered list of levels, each a list of device names, e.g. ``[["redfish"], ["pdu_a", "pdu_b"]]``. The
levels are tried in order; within a level the devices are powered off one after the other, and the level fences the
host only when *every* device of it confirmed off (a host on two PDUs keeps running while one outlet still feeds
it). The first device that does not confirm ends its level - the remaining devices of that level are not tried,
since the level can no longer succeed - and the next level is tried. The first level that confirms fences the host
and no later level is touched. Every level tried is recorded with each device's evidence; levels never tried (the
fence deadline ran out first) are recorded as such. The whole is bounded by one fence deadline: each device run
gets the smaller of its own timeout and what is left.
"""

from __future__ import annotations

from ._errors import InvalidInput

MIN_DEVICE_TIME = 0.05  # a device run with less time than this left would only fail; the level is not tried


def validate_levels(levels, devices) -> list:
    """``levels`` as a list of lists of device names that ``devices`` (a set of names) all contains."""
    if not isinstance(levels, list) or not levels:
        raise InvalidInput("fence levels must be a non-empty list of levels, each a list of device names")
    for index, level in enumerate(levels, 1):
        if not isinstance(level, list) or not level or not all(isinstance(name, str) for name in level):
            raise InvalidInput("fence level %d must be a non-empty list of device names, not %r" % (index, level))
        unknown = sorted(set(level) - set(devices))
        if unknown:
            raise InvalidInput("fence level %d names unknown devices: %s" % (index, ", ".join(unknown)))
        if len(set(level)) != len(level):
            raise InvalidInput("fence level %d names a device twice: %r" % (index, level))
    return [list(level) for level in levels]


def run_levels(levels: list, fence_device, remaining) -> dict:
    """Try ``levels`` in order. ``fence_device(name, seconds)`` powers one device off within ``seconds`` and returns
    its evidence dict with a boolean ``fenced`` (true only for a confirmed off); ``remaining()`` is what is left of
    the fence deadline. Returns ``{"fenced", "level", "devices", "levels"}``: ``level`` is the 1-based number of
    the level that fenced (``None`` when none did), ``levels`` one record per level."""
    records = []
    fenced_by = None
    for number, level in enumerate(levels, 1):
        if fenced_by is not None:
            records.append({"level": number, "devices": level, "outcome": "not_needed", "attempts": []})
            continue
        if remaining() < MIN_DEVICE_TIME:
            records.append({"level": number, "devices": level, "outcome": "deadline", "attempts": []})
            continue
        attempts = _run_level(level, fence_device, remaining)
        confirmed = len(attempts) == len(level) and all(a["fenced"] for a in attempts)
        records.append({"level": number, "devices": level, "outcome": "fenced" if confirmed else "failed",
                        "attempts": attempts})
        if confirmed:
            fenced_by = number
    return {
        "fenced": fenced_by is not None,
        "level": fenced_by,
        "devices": levels[fenced_by - 1] if fenced_by else [],
        "levels": records,
    }


def _run_level(level: list, fence_device, remaining) -> list:
    attempts = []
    for name in level:
        seconds = remaining()
        if seconds < MIN_DEVICE_TIME:
            attempts.append({"device": name, "fenced": False, "error_kind": "timeout",
                             "msg": "the fence deadline ran out before this device"})
            break
        evidence = dict(fence_device(name, seconds))
        evidence["device"] = name
        evidence["fenced"] = evidence.get("fenced") is True
        attempts.append(evidence)
        if not evidence["fenced"]:
            break
    return attempts


def power_read(outcome: dict) -> str:
    """What a run of the levels says of the host's power, for the watchdog's evidence: ``on`` when a device was not
    powered off but its run ended without an error and its first read said on (``powerstate.before``: in check mode
    ``after`` is what a real run would reach) - this wins over a level that reads off, since a device on the wrong
    outlet must never let a running host be recovered; else ``off`` when a level fenced (every device of it
    confirmed off); else ``unknown`` - no level could be asked. A failed run's reads are never believed, as for a
    BMC's status probe; the first read of a device that was then powered off is history."""
    for record in outcome.get("levels") or []:
        for attempt in record.get("attempts") or []:
            unfenced = attempt.get("fenced") is not True and attempt.get("error_kind") is None
            if unfenced and (attempt.get("powerstate") or {}).get("before") == "on":
                return "on"
    return "off" if outcome.get("fenced") is True else "unknown"
