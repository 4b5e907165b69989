# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The writer's configuration."""

from __future__ import annotations

import ipaddress
import json
import math
import os

from . import _heartbeat as hb
from ._errors import InvalidInput

DEFAULT_PRIORITY = 50
ACTIONS = ("poweroff", "watchdog", "command")
PROBES = ("icmp", "tcp")
LIBVIRT_METHODS = ("auto", "binding", "virsh", "none")


class ConfigError(InvalidInput):
    """The writer's configuration file is invalid."""


DEFAULTS = {
    "host": None,
    "store": None,
    "interval": 2.0,
    "write_timeout": 1.5,
    "stop_timeout": 5.0,
    "require_mount": True,
    "state_dir": "/run/kvmha-heartbeat",
    "xml_mode": "0640",
    "boot_id_path": "/proc/sys/kernel/random/boot_id",
    "meminfo_path": "/proc/meminfo",
    "libvirt": {"method": "auto", "uri": "qemu:///system", "timeout": 5.0, "refresh_interval": None, "virsh": "virsh"},
    "ha_domains": [],
    "capacity": {"mem_mib": None, "vcpus": None, "reserved_mem_mib": 512, "reserved_vcpus": 0},
    "self_fence": {
        "armed": False, "deadline_s": 60.0, "peers": [], "probe": "icmp", "tcp_port": 22, "probe_timeout": 1.0,
        "probe_attempts": 2, "ping": "ping", "action": "poweroff", "command": [], "command_timeout": 10.0,
        "watchdog_device": "/dev/watchdog", "watchdog_timeout": 30,
    },
}


def _merge(defaults: dict, given: dict, where: str) -> dict:
    if not isinstance(given, dict):
        raise ConfigError("%s must be an object" % (where or "the configuration"))
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError("unknown setting(s) %s in %s" % (", ".join(unknown), where or "the configuration"))
    merged = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        if isinstance(default, dict):
            value = _merge(default, given.get(key) or {}, (where + "." if where else "") + key)
        merged[key] = value
    return merged


def _number(conf: dict, key: str, where: str, low: float, high: float, integer: bool = False):
    value = conf[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and low <= value <= high
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        raise ConfigError("%s%s must be %s in [%s, %s], got %r" % (where, key, "an integer" if integer else "a number", low, high, value))
    return int(value) if integer else float(value)


def _optional_int(conf: dict, key: str, where: str):
    return None if conf[key] is None else _number(conf, key, where, 0, 2**40, integer=True)


def parse_config(doc: dict) -> dict:
    """Validate the configuration document and return it with defaults filled in (raises ``ConfigError``)."""
    conf = _merge(DEFAULTS, doc, "")
    try:
        conf["host"] = hb.validate_host_name(conf["host"])
    except InvalidInput as err:
        raise ConfigError("host: %s" % err) from None
    for key in ("store", "state_dir", "boot_id_path", "meminfo_path"):
        if not isinstance(conf[key], str) or not os.path.isabs(conf[key]):
            raise ConfigError("%s must be an absolute path, got %r" % (key, conf[key]))
    conf["store"] = os.path.normpath(conf["store"])
    conf["interval"] = _number(conf, "interval", "", 0.1, 60)
    conf["write_timeout"] = _number(conf, "write_timeout", "", 0.05, 600)
    conf["stop_timeout"] = _number(conf, "stop_timeout", "", 0.1, 600)
    if not isinstance(conf["require_mount"], bool):
        raise ConfigError("require_mount must be a boolean")
    try:
        conf["xml_mode"] = int(str(conf["xml_mode"]), 8)
    except ValueError:
        raise ConfigError("xml_mode must be an octal string such as '0640'") from None
    if not 0 <= conf["xml_mode"] <= 0o777:
        raise ConfigError("xml_mode must be between 0000 and 0777")

    lv = conf["libvirt"]
    if lv["method"] not in LIBVIRT_METHODS:
        raise ConfigError("libvirt.method must be one of %s, got %r" % (", ".join(LIBVIRT_METHODS), lv["method"]))
    if not isinstance(lv["uri"], str) or (lv["method"] != "none" and not lv["uri"]):
        raise ConfigError("libvirt.uri must be a libvirt URI")
    if not isinstance(lv["virsh"], str) or not lv["virsh"]:
        raise ConfigError("libvirt.virsh must be a program name or path")
    lv["timeout"] = _number(lv, "timeout", "libvirt.", 0.1, 600)
    if lv["refresh_interval"] is not None:  # None: see refresh_interval()
        lv["refresh_interval"] = _number(lv, "refresh_interval", "libvirt.", 0.1, 3600)

    domains = conf["ha_domains"]
    if not isinstance(domains, list):
        raise ConfigError("ha_domains must be a list")
    parsed = []
    for index, entry in enumerate(domains):
        if isinstance(entry, str):
            entry = {"name": entry}
        where = "ha_domains[%d]." % index
        entry = _merge({"name": None, "priority": DEFAULT_PRIORITY, "group": ""}, entry, where.rstrip("."))
        if not isinstance(entry["name"], str) or not entry["name"]:
            raise ConfigError("%sname must be a domain name or UUID" % where)
        entry["priority"] = _number(entry, "priority", where, 0, 100, integer=True)
        if not isinstance(entry["group"], str) or len(entry["group"]) > 255:
            raise ConfigError("%sgroup must be a string of at most 255 characters" % where)
        parsed.append(entry)
    conf["ha_domains"] = parsed

    cap = conf["capacity"]
    cap["mem_mib"] = _optional_int(cap, "mem_mib", "capacity.")
    cap["vcpus"] = _optional_int(cap, "vcpus", "capacity.")
    cap["reserved_mem_mib"] = _number(cap, "reserved_mem_mib", "capacity.", 0, 2**40, integer=True)
    cap["reserved_vcpus"] = _number(cap, "reserved_vcpus", "capacity.", 0, 2**20, integer=True)

    sf = conf["self_fence"]
    if not isinstance(sf["armed"], bool):
        raise ConfigError("self_fence.armed must be a boolean")
    sf["deadline_s"] = _number(sf, "deadline_s", "self_fence.", 1, 86400)
    if not isinstance(sf["peers"], list):
        raise ConfigError("self_fence.peers must be a list of IP addresses")
    peers = []
    for peer in sf["peers"]:
        try:
            peers.append(str(ipaddress.ip_address(peer)))
        except ValueError:
            raise ConfigError("self_fence.peers: %r is not an IP address" % (peer,)) from None
    if len(set(peers)) != len(peers):
        raise ConfigError("self_fence.peers lists an address twice")
    sf["peers"] = peers
    if sf["probe"] not in PROBES:
        raise ConfigError("self_fence.probe must be one of %s" % ", ".join(PROBES))
    sf["tcp_port"] = _number(sf, "tcp_port", "self_fence.", 1, 65535, integer=True)
    sf["probe_timeout"] = _number(sf, "probe_timeout", "self_fence.", 0.1, 30)
    sf["probe_attempts"] = _number(sf, "probe_attempts", "self_fence.", 1, 10, integer=True)
    if sf["action"] not in ACTIONS:
        raise ConfigError("self_fence.action must be one of %s, got %r" % (", ".join(ACTIONS), sf["action"]))
    if not isinstance(sf["command"], list) or not all(isinstance(a, str) and a for a in sf["command"]):
        raise ConfigError("self_fence.command must be a list of non-empty strings (argv, no shell)")
    if sf["action"] == "command" and not sf["command"]:
        raise ConfigError("self_fence.action 'command' needs self_fence.command")
    if sf["command"] and not os.path.isabs(sf["command"][0]):
        raise ConfigError("self_fence.command[0] must be an absolute path")
    sf["command_timeout"] = _number(sf, "command_timeout", "self_fence.", 0.1, 600)
    if not isinstance(sf["watchdog_device"], str) or not os.path.isabs(sf["watchdog_device"]):
        raise ConfigError("self_fence.watchdog_device must be an absolute path")
    sf["watchdog_timeout"] = _number(sf, "watchdog_timeout", "self_fence.", 1, 3600, integer=True)
    if sf["armed"]:
        if not peers:
            raise ConfigError("self_fence.armed needs peers: without them a storage outage would fence every host")
        if sf["deadline_s"] < 3 * conf["interval"]:
            raise ConfigError("self_fence.deadline_s must be at least 3 x interval")
        if sf["action"] == "watchdog" and sf["watchdog_timeout"] <= 2 * conf["interval"]:
            raise ConfigError("self_fence.watchdog_timeout must be more than 2 x interval (it is fed every beat)")
    return conf


def refresh_interval(conf: dict, method: str) -> float:
    """Seconds between two domain-list reads: as configured, else every beat with the binding (a few ms) and
    every 10 s with virsh (a process per domain, ~15 ms each: measured in docs/WRITER.md)."""
    if conf["libvirt"]["refresh_interval"] is not None:
        return conf["libvirt"]["refresh_interval"]
    return max(conf["interval"], 10.0) if method == "virsh" else conf["interval"]


def load_config(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            doc = json.loads(handle.read().decode("utf-8"))
    except OSError as err:
        raise ConfigError("cannot read %s: %s" % (path, err.strerror or err)) from None
    except ValueError as err:
        raise ConfigError("%s is not JSON: %s" % (path, err)) from None
    return parse_config(doc)


def probe_budget(sf: dict) -> float:
    """Worst-case seconds one probe round takes (all peers are probed in parallel)."""
    return sf["probe_attempts"] * (sf["probe_timeout"] + 0.2) + 0.5


def published_deadline(conf: dict) -> float:
    """The ``self_fence.deadline_s`` written into the record: an upper bound on the time from the last successful
    write to the host being fenced, so a reader that waits this long (plus its own margin) is never early."""
    sf = conf["self_fence"]
    action = {"watchdog": sf["watchdog_timeout"], "command": sf["command_timeout"], "poweroff": 5.0}[sf["action"]]
    return round(sf["deadline_s"] + conf["interval"] + probe_budget(sf) + action, 1)
