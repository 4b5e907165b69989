# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The writer's configuration: one table (``SETTINGS``) of every key with its kind, default, range and doc line,
the parser it drives, and the figures derived from the configuration."""

from __future__ import annotations

import ipaddress
import json
import math
import os

from . import _heartbeat as hb
from ._domainxml import DEFAULT_PRIORITY, MAX_GROUP
from ._errors import InvalidInput

ACTIONS = ("poweroff", "watchdog", "command")
PROBES = ("icmp", "tcp")
LIBVIRT_METHODS = ("auto", "binding", "virsh", "none")


class ConfigError(InvalidInput):
    """The writer's configuration file is invalid."""


class Setting:
    """One key of the configuration file: its kind, default, range and the line of docs/WRITER.md that explains it.

    ``role_var`` names the variable of the role that sets it (through templates/heartbeat.json.j2), if any; unit
    tests hold the role's argument spec and docs/WRITER.md to this table.
    """

    def __init__(self, key, kind, default, doc, low=None, high=None, choices=(), nullable=False, role_var=None):
        self.key = key
        self.kind = kind
        self.default = default
        self.doc = doc
        self.low = low
        self.high = high
        self.choices = choices
        self.nullable = nullable
        self.role_var = role_var

    def parse(self, value, name: str):
        """The checked (and normalised) value; raises ConfigError naming the key as ``name``."""
        if value is None and self.nullable:
            return None
        return _KINDS[self.kind](self, value, name)

    def range_text(self) -> str:
        if self.choices:
            return ", ".join(self.choices)
        if self.low is None:
            return "at most %d characters" % self.high if self.high else ""
        return "%s - %s" % (_shown(self.low), _shown(self.high))


def _shown(number) -> str:
    return "2^%d" % (int(number).bit_length() - 1) if number >= 2**20 else "%g" % number


def _number(setting, value, name, integer=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and setting.low <= value <= setting.high
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        raise ConfigError("%s must be %s in [%s, %s], got %r" % (name, "an integer" if integer else "a number", setting.low, setting.high, value))
    return int(value) if integer else float(value)


def _integer(setting, value, name):
    return _number(setting, value, name, integer=True)


def _host(_setting, value, name):
    try:
        return hb.validate_host_name(value)
    except InvalidInput as err:
        raise ConfigError("%s: %s" % (name, err)) from None


def _path(_setting, value, name):
    if not isinstance(value, str) or not os.path.isabs(value):
        raise ConfigError("%s must be an absolute path, got %r" % (name, value))
    return os.path.normpath(value)


def _bool(_setting, value, name):
    if not isinstance(value, bool):
        raise ConfigError("%s must be a boolean, got %r" % (name, value))
    return value


def _choice(setting, value, name):
    if value not in setting.choices:
        raise ConfigError("%s must be one of %s, got %r" % (name, ", ".join(setting.choices), value))
    return value


def _string(setting, value, name):
    if not isinstance(value, str) or (setting.high is not None and len(value) > setting.high):
        raise ConfigError("%s must be a string%s, got %r" % (name, "" if setting.high is None else " of at most %d characters" % setting.high, value))
    return value


def _word(_setting, value, name):
    if not isinstance(value, str) or not value:
        raise ConfigError("%s must be a non-empty string (a name, UUID or program), got %r" % (name, value))
    return value


def _octal(_setting, value, name):
    try:
        mode = int(str(value), 8)
    except ValueError:
        raise ConfigError("%s must be an octal string such as '0640'" % name) from None
    if not 0 <= mode <= 0o777:
        raise ConfigError("%s must be between 0000 and 0777" % name)
    return mode


def _addresses(_setting, value, name):
    if not isinstance(value, list):
        raise ConfigError("%s must be a list of IP addresses" % name)
    peers = []
    for peer in value:
        try:
            peers.append(str(ipaddress.ip_address(peer)))
        except ValueError:
            raise ConfigError("%s: %r is not an IP address" % (name, peer)) from None
    if len(set(peers)) != len(peers):
        raise ConfigError("%s lists an address twice" % name)
    return peers


def _argv(_setting, value, name):
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        raise ConfigError("%s must be a list of non-empty strings (argv, no shell)" % name)
    if value and not os.path.isabs(value[0]):
        raise ConfigError("%s[0] must be an absolute path" % name)
    return list(value)


def _domains(_setting, value, name):
    if not isinstance(value, list):
        raise ConfigError("%s must be a list" % name)
    return [_merge([(s.key, s) for s in DOMAIN_ENTRY], {"name": entry} if isinstance(entry, str) else entry, "%s[%d]" % (name, index))
            for index, entry in enumerate(value)]


_KINDS = {
    "number": _number, "int": _integer, "host": _host, "path": _path, "bool": _bool, "choice": _choice, "string": _string,
    "word": _word, "octal": _octal, "addresses": _addresses, "argv": _argv, "domains": _domains,
}

# The one definition of every key of the writer's configuration file (/etc/kvmha/heartbeat.json); a dotted key is a
# member of a section. docs/WRITER.md lists this table, and unit tests hold the role's argument spec to it.
SETTINGS = (
    Setting("host", "host", None, "name of this host in the store (record file name and `host`); required",
            role_var="heartbeat_writer_host_name"),
    Setting("store", "path", None, "the shared store's mount point; required", role_var="kvmha_store_path"),
    Setting("interval", "number", 2.0, "seconds between two heartbeats", 0.1, 60, role_var="heartbeat_writer_interval"),
    Setting("write_timeout", "number", 1.5, "seconds one beat waits for its store write", 0.05, 600,
            role_var="heartbeat_writer_write_timeout"),
    Setting("stop_timeout", "number", 5.0, "seconds a graceful stop waits to write the stopped record", 0.1, 600,
            role_var="heartbeat_writer_stop_timeout"),
    Setting("require_mount", "bool", True, "write only when the store is on a mounted file system other than /",
            role_var="heartbeat_writer_require_mount"),
    Setting("state_dir", "path", "/run/kvmha-heartbeat", "runtime state kept across restarts within one boot (seq, manifest)"),
    Setting("xml_mode", "octal", "0640", "mode of the domain XML files on the store"),
    Setting("boot_id_path", "path", "/proc/sys/kernel/random/boot_id", "the kernel's boot id (systemd's %b wins)"),
    Setting("meminfo_path", "path", "/proc/meminfo", "where MemTotal and MemAvailable are read"),
    Setting("libvirt.method", "choice", "auto", "how domains are read (auto: the binding when importable, else virsh)",
            choices=LIBVIRT_METHODS, role_var="heartbeat_writer_libvirt_method"),
    Setting("libvirt.uri", "string", "qemu:///system", "libvirt URI, read-only connection; empty only with method none",
            role_var="heartbeat_writer_libvirt_uri"),
    Setting("libvirt.timeout", "number", 5.0, "seconds after which a libvirt read (or one virsh call) has failed", 0.1, 600,
            role_var="heartbeat_writer_libvirt_timeout"),
    Setting("libvirt.refresh_interval", "number", None, "seconds between two reads of the domain list (null: every beat, "
            "at least 10 s with virsh)", 0.1, 3600, nullable=True, role_var="heartbeat_writer_manifest_interval"),
    Setting("libvirt.virsh", "word", "virsh", "the virsh program of the virsh method"),
    Setting("ha_domains", "domains", [], "domains that are HA without the metadata marker: names, UUIDs or "
            "{name, priority, group} (below)", role_var="heartbeat_writer_ha_domains"),
    Setting("capacity.mem_mib", "int", None, "memory (MiB) offered to guests instead of the kernel's figures; free "
            "memory is this minus the memory of running domains", 0, 2**40, nullable=True, role_var="heartbeat_writer_capacity_mem_mib"),
    Setting("capacity.vcpus", "int", None, "vCPUs offered to guests instead of (usable CPUs - reserved_vcpus) x "
            "cpu_allocation_ratio; free vCPUs are this minus the vCPUs of running domains", 0, 2**40, nullable=True,
            role_var="heartbeat_writer_capacity_vcpus"),
    Setting("capacity.reserved_mem_mib", "int", 512, "memory (MiB) kept for the host itself", 0, 2**40,
            role_var="heartbeat_writer_reserved_mem_mib"),
    Setting("capacity.reserved_vcpus", "int", 0, "CPUs kept for the host itself", 0, 2**20, role_var="heartbeat_writer_reserved_vcpus"),
    Setting("capacity.cpu_allocation_ratio", "number", 4.0, "vCPUs offered per usable CPU (overcommit), unless "
            "capacity.vcpus is set", 0.1, 64, role_var="heartbeat_writer_cpu_allocation_ratio"),
    Setting("capacity.ram_allocation_ratio", "number", 1.0, "memory offered per MiB of MemTotal - reserved_mem_mib, "
            "unless capacity.mem_mib is set", 0.1, 8, role_var="heartbeat_writer_ram_allocation_ratio"),
    Setting("self_fence.armed", "bool", False, "fence this host when it cannot write and reaches no majority",
            role_var="heartbeat_writer_self_fence_armed"),
    Setting("self_fence.deadline_s", "number", 60.0, "seconds without a successful write before the peers are probed; "
            "at least 3 x interval when armed", 1, 86400, role_var="heartbeat_writer_self_fence_deadline"),
    Setting("self_fence.peers", "addresses", [], "IP addresses probed for the majority; needed when armed",
            role_var="heartbeat_writer_self_fence_peers"),
    Setting("self_fence.probe", "choice", "icmp", "how peers are probed", choices=PROBES, role_var="heartbeat_writer_self_fence_probe"),
    Setting("self_fence.tcp_port", "int", 22, "port of the tcp probe", 1, 65535, role_var="heartbeat_writer_self_fence_tcp_port"),
    Setting("self_fence.probe_timeout", "number", 1.0, "seconds to wait for one peer's answer", 0.1, 30,
            role_var="heartbeat_writer_self_fence_probe_timeout"),
    Setting("self_fence.probe_attempts", "int", 2, "probes per peer and round", 1, 10, role_var="heartbeat_writer_self_fence_probe_attempts"),
    Setting("self_fence.ping", "word", "ping", "the ping program of the icmp probe"),
    Setting("self_fence.action", "choice", "poweroff", "how the host fences itself", choices=ACTIONS,
            role_var="heartbeat_writer_self_fence_action"),
    Setting("self_fence.command", "argv", [], "argv (absolute program, no shell) of the command action; needed by it",
            role_var="heartbeat_writer_self_fence_command"),
    Setting("self_fence.command_timeout", "number", 10.0, "seconds the fence command may run", 0.1, 600,
            role_var="heartbeat_writer_self_fence_command_timeout"),
    Setting("self_fence.watchdog_device", "path", "/dev/watchdog", "device of the watchdog action",
            role_var="heartbeat_writer_self_fence_watchdog_device"),
    Setting("self_fence.watchdog_timeout", "int", 30, "timeout (s) set on the watchdog device; more than 2 x interval when armed",
            1, 3600, role_var="heartbeat_writer_self_fence_watchdog_timeout"),
)

# One entry of ha_domains (a plain string is its name).
DOMAIN_ENTRY = (
    Setting("name", "word", None, "domain name or UUID; required"),
    Setting("priority", "int", DEFAULT_PRIORITY, "restart priority, higher first", 0, 100),
    Setting("group", "string", "", "anti-affinity group (empty for none)", high=MAX_GROUP),
)


def _merge(members, given, where: str) -> dict:
    """``given`` checked against ``members`` ((key, Setting) pairs; a dotted key makes a section), with the defaults
    of what it leaves out."""
    if not isinstance(given, dict):
        raise ConfigError("%s must be an object" % (where or "the configuration"))
    leaves, sections = {}, {}
    for key, setting in members:
        section, _dot, rest = key.partition(".")
        if rest:
            sections.setdefault(section, []).append((rest, setting))
        else:
            leaves[key] = setting
    unknown = sorted(set(given) - set(leaves) - set(sections))
    if unknown:
        raise ConfigError("unknown setting(s) %s in %s" % (", ".join(unknown), where or "the configuration"))
    prefix = where + "." if where else ""
    merged = {key: setting.parse(given.get(key, setting.default), prefix + key) for key, setting in leaves.items()}
    merged.update((key, _merge(inner, given.get(key) or {}, prefix + key)) for key, inner in sections.items())
    return merged


def _check_combinations(conf: dict):
    """The rules that tie settings together."""
    lv, sf = conf["libvirt"], conf["self_fence"]
    if lv["method"] != "none" and not lv["uri"]:
        raise ConfigError("libvirt.uri must be a libvirt URI")
    if sf["action"] == "command" and not sf["command"]:
        raise ConfigError("self_fence.action 'command' needs self_fence.command")
    if sf["armed"]:
        if not sf["peers"]:
            raise ConfigError("self_fence.armed needs peers: without them a storage outage would fence every host")
        if sf["deadline_s"] < 3 * conf["interval"]:
            raise ConfigError("self_fence.deadline_s must be at least 3 x interval")
        if sf["action"] == "watchdog" and sf["watchdog_timeout"] <= 2 * conf["interval"]:
            raise ConfigError("self_fence.watchdog_timeout must be more than 2 x interval (it is fed every beat)")


def parse_config(doc: dict) -> dict:
    """Validate the configuration document and return it with defaults filled in (raises ``ConfigError``)."""
    conf = _merge([(s.key, s) for s in SETTINGS], doc, "")
    _check_combinations(conf)
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
