# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvmha heartbeat writer: the daemon that ``kvmha.cluster.heartbeat_writer`` installs on every hypervisor.

Installed as the package ``kvmha`` next to the collection's own ``_errors.py``, ``_deadline.py`` and
``_heartbeat.py`` (copied unchanged from ``plugins/module_utils``), so the record format has one definition.
Standard library only; the libvirt Python binding is used when it is importable, else ``virsh``.

Every ``interval`` it writes ``<store>/kvmha/hosts/<host>.json`` atomically and keeps the XML of each running
HA domain at ``<store>/kvmha/vms/<uuid>.xml``. Nothing slow runs on the main loop: store writes and libvirt
reads run on their own worker threads with deadlines, a job still blocked is never stacked up again, and every
failure is logged and retried at the next beat. See docs/WRITER.md for the behaviour on each failure.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET

from . import _heartbeat as hb
from ._deadline import call_with_deadline
from ._errors import DeadlineExceeded, ErrorKind, InvalidInput, KvmhaError, StoreError

LOG = logging.getLogger("kvmha-heartbeat")

HA_NAMESPACE = "http://kvmha.invalid/xmlns/ha/1"
HA_TAG = "{%s}ha" % HA_NAMESPACE
DEFAULT_PRIORITY = 50
ACTIONS = ("poweroff", "watchdog", "command")
PROBES = ("icmp", "tcp")
LIBVIRT_METHODS = ("auto", "binding", "virsh", "none")
POWEROFF_ARGV = ("systemctl", "poweroff", "--force", "--force")
# Test hook: while the file named by this variable exists, every store operation of the writer blocks, exactly
# where a hung NFS/FUSE mount would block it. Used by the process-level tests (tests/writer/).
HANG_HOOK_ENV = "KVMHA_HEARTBEAT_TEST_HANG_FILE"
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# libvirt memory units (docs: formatdomain.html#memory-allocation), as bytes.
_UNITS = {
    "b": 1, "bytes": 1, "kb": 10**3, "k": 2**10, "kib": 2**10, "mb": 10**6, "m": 2**20, "mib": 2**20,
    "gb": 10**9, "g": 2**30, "gib": 2**30, "tb": 10**12, "t": 2**40, "tib": 2**40,
    "pb": 10**15, "p": 2**50, "pib": 2**50, "eb": 10**18, "e": 2**60, "eib": 2**60,
}


class ConfigError(InvalidInput):
    """The writer's configuration file is invalid."""


class LibvirtUnavailable(KvmhaError):
    """libvirt could not be asked (daemon down, refused, timed out)."""

    kind = ErrorKind.LIBVIRT


# --------------------------------------------------------------------------------------------------- config

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


# --------------------------------------------------------------------------------------------------- pure parts


def has_quorum(reachable: int, peers: int) -> bool:
    """True when this host plus the peers it reaches form a strict majority of the cluster (1 + ``peers`` hosts).

    Ties count as no quorum: in an even split, each half must assume the other half may recover its VMs.
    """
    return 2 * (reachable + 1) > peers + 1


def fence_decision(armed: bool, stale_for: float, deadline_s: float, reachable, peers: int) -> tuple:
    """Return (fence, reason). ``reachable`` is None when no probe round was run."""
    if not armed:
        return False, "self-fence not armed"
    if stale_for < deadline_s:
        return False, "last successful write %.1f s ago (deadline %.1f s)" % (stale_for, deadline_s)
    if reachable is None:
        return False, "write deadline passed, peers not probed yet"
    if has_quorum(reachable, peers):
        return False, "no write for %.1f s but %d of %d peers reachable: a shared storage outage, not isolation" % (stale_for, reachable, peers)
    return True, "no write for %.1f s (deadline %.1f s) and only %d of %d peers reachable" % (stale_for, deadline_s, reachable, peers)


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


def compute_capacity(cap: dict, mem_available_mib, cpus: int, allocated: dict) -> dict:
    """Free memory (MiB) and vCPUs for new guests.

    Memory: ``capacity.mem_mib`` minus the memory of running domains when set (the operator's figure, e.g. in a
    container that sees the whole machine), else the kernel's MemAvailable minus ``reserved_mem_mib``.
    vCPUs: ``capacity.vcpus`` (or the CPUs this process may run on, minus ``reserved_vcpus``) minus the vCPUs of
    running domains.
    """
    if cap["mem_mib"] is not None:
        mem = cap["mem_mib"] - allocated["mem_mib"]
    elif mem_available_mib is not None:
        mem = mem_available_mib - cap["reserved_mem_mib"]
    else:
        mem = 0
    vcpus = (cap["vcpus"] if cap["vcpus"] is not None else cpus - cap["reserved_vcpus"]) - allocated["vcpus"]
    return {"mem_free_mib": max(0, int(mem)), "vcpus_free": max(0, int(vcpus))}


def read_mem_available_mib(path: str):
    try:
        with open(path, "rb") as handle:
            for line in handle:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def start_seq(state: dict | None, boot_id: str, boottime: float) -> int:
    """The first seq of this process: above anything this boot has published, even without saved state.

    Normally the saved runtime state (``state_dir``, kept across restarts, gone at reboot) gives the last seq.
    The floor, milliseconds of CLOCK_BOOTTIME, covers a lost state: seq grows by one per beat (at least 0.1 s
    apart), per stopped record and per process start (tens of milliseconds each), never by 1000 a second.
    """
    floor = int(boottime * 1000)
    if state and state.get("boot_id") == boot_id and isinstance(state.get("seq"), int):
        return max(state["seq"] + 1, floor)
    return max(floor, 1)


def mounted_under(path: str, mountinfo: str) -> bool:
    """True when ``path`` is, or lies below, a mount point other than ``/`` (per /proc/self/mountinfo)."""
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = fields[4].encode("utf-8").decode("unicode_escape") if "\\" in fields[4] else fields[4]
        if point != "/" and (path == point or path.startswith(point.rstrip("/") + "/")):
            return True
    return False


# --------------------------------------------------------------------------------------------------- workers


class Worker:
    """One background thread running one job at a time. A job that is still running (a hung store, a stuck
    libvirt call) is never stacked up again: ``submit`` refuses until it has finished."""

    def __init__(self, name: str):
        self.name = name
        self._cond = threading.Condition()
        self._job = None
        self._since = None
        self._outcome = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            with self._cond:
                while self._job is None:
                    self._cond.wait()
                func, args = self._job
            try:
                outcome = (True, func(*args))
            except Exception as exc:  # the job's failure is the main loop's to report
                outcome = (False, exc)
            with self._cond:
                self._job = None
                self._since = None
                self._outcome = outcome
                self._cond.notify_all()

    def busy_for(self):
        """Seconds the current job has been running, or None when idle."""
        with self._cond:
            return None if self._since is None else time.monotonic() - self._since

    def submit(self, func, *args) -> bool:
        with self._cond:
            if self._job is not None:
                return False
            self._job = (func, args)
            self._since = time.monotonic()
            self._outcome = None
            self._cond.notify_all()
            return True

    def wait(self, timeout: float):
        """Wait up to ``timeout`` for the current job; return its (ok, value) once, or None if still running."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._job is not None:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            outcome, self._outcome = self._outcome, None
            return outcome


class Reporter:
    """Logs a failure when it starts or changes, then at most once a minute while it lasts, and its recovery."""

    def __init__(self, what: str, repeat: float = 60.0):
        self.what = what
        self.repeat = repeat
        self.failing_since = None
        self.count = 0
        self._last_msg = None
        self._last_log = 0.0

    def failed(self, message: str, key: str | None = None, level=logging.ERROR):
        """Count a failure; ``key`` (default: the message) decides what counts as the same failure."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        self.count += 1
        key = message if key is None else key
        if key != self._last_msg or now - self._last_log >= self.repeat:
            suffix = "" if self.count == 1 else " (failing for %.0f s, %d times)" % (now - self.failing_since, self.count)
            LOG.log(level, "%s: %s%s", self.what, message, suffix)
            self._last_msg, self._last_log = key, now

    def ok(self):
        if self.failing_since is not None:
            LOG.warning("%s: recovered after %.1f s (%d failures)", self.what, time.monotonic() - self.failing_since, self.count)
        self.failing_since, self.count, self._last_msg = None, 0, None


# --------------------------------------------------------------------------------------------------- libvirt


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


class BindingSource:
    """Reads running domains through the libvirt Python binding, over one read-only connection."""

    method = "libvirt"

    def __init__(self, libvirt_module, uri: str):
        self.libvirt = libvirt_module
        self.uri = uri
        self.conn = None
        # Without this, libvirt prints every error to stderr on top of raising it.
        libvirt_module.registerErrorHandler(lambda _ctx, _err: None, None)

    def _drop(self):
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except self.libvirt.libvirtError:
                pass

    def refresh(self, ha_domains) -> dict:
        lv = self.libvirt
        try:
            if self.conn is None:
                self.conn = lv.openReadOnly(self.uri)
            domains = self.conn.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            xmls, by_uuid = [], {}
            for dom in domains:
                try:
                    uuid = dom.UUIDString()
                    xmls.append((uuid, dom.XMLDesc(0)))
                    by_uuid[uuid] = dom
                except lv.libvirtError as err:
                    if err.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                        continue  # went away between listing and reading
                    raise
        except lv.libvirtError as err:
            self._drop()
            raise LibvirtUnavailable("libvirt %s: %s" % (self.uri, err.get_error_message() or err)) from err

        def inactive(uuid, live):
            dom = by_uuid.get(uuid)
            try:
                if dom is not None and dom.isPersistent():
                    return dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE)
            except lv.libvirtError:
                pass
            return live

        return _manifest_from(xmls, ha_domains, inactive)

    def close(self):
        self._drop()


class VirshSource:
    """Reads running domains with ``virsh --readonly``, each call under a timeout (the process is killed)."""

    method = "virsh"

    def __init__(self, virsh: str, uri: str, timeout: float):
        self.virsh = virsh
        self.uri = uri
        self.timeout = timeout

    def _run(self, *args) -> str:
        argv = [self.virsh, "--quiet", "--readonly", "-c", self.uri] + list(args)
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise LibvirtUnavailable("virsh %s: no answer within %.1f s" % (" ".join(args), self.timeout)) from None
        except OSError as err:
            raise LibvirtUnavailable("cannot run %s: %s" % (self.virsh, err.strerror or err)) from None
        if done.returncode != 0:
            raise LibvirtUnavailable("virsh %s: %s" % (" ".join(args), done.stderr.decode("utf-8", "replace").strip()[:300]))
        return done.stdout.decode("utf-8", "replace")

    def refresh(self, ha_domains) -> dict:
        uuids = [line.strip() for line in self._run("list", "--uuid").splitlines() if line.strip()]
        xmls = []
        for uuid in uuids:
            try:
                xmls.append((uuid, self._run("dumpxml", uuid)))
            except LibvirtUnavailable as err:
                if "ailed to get domain" in str(err) or "no domain" in str(err).lower():
                    continue  # went away between listing and reading
                raise

        def inactive(uuid, live):
            try:
                return self._run("dumpxml", "--inactive", uuid)
            except LibvirtUnavailable:
                return live

        return _manifest_from(xmls, ha_domains, inactive)

    def close(self):
        pass


class NoSource:
    method = "none"

    def refresh(self, ha_domains) -> dict:
        return {"vms": [], "xml": {}, "allocated": {"mem_mib": 0, "vcpus": 0}, "warnings": []}

    def close(self):
        pass


def make_source(conf: dict):
    lv = conf["libvirt"]
    if lv["method"] == "none":
        return NoSource()
    if lv["method"] in ("auto", "binding"):
        try:
            import libvirt  # pylint: disable=import-outside-toplevel
        except ImportError:
            if lv["method"] == "binding":
                raise ConfigError("libvirt.method is 'binding' but the libvirt Python binding is not installed") from None
        else:
            return BindingSource(libvirt, lv["uri"])
    return VirshSource(lv["virsh"], lv["uri"], lv["timeout"])


# --------------------------------------------------------------------------------------------------- store


def _hang_hook():
    path = os.environ.get(HANG_HOOK_ENV)
    while path and os.path.exists(path):
        time.sleep(0.05)


def store_write(conf: dict, record_bytes: bytes, xml_items: dict) -> dict:
    """The store job: the record first, then the HA domains' XML. Returns {"xml_ok": [...], "xml_errors": {...}}."""
    _hang_hook()
    store = conf["store"]
    if conf["require_mount"]:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            mountinfo = handle.read()
        if not mounted_under(os.path.realpath(store), mountinfo):
            raise StoreError("%s is not on a mounted file system (require_mount): is the shared store mounted?" % store)
    path = hb.record_path(store, conf["host"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    hb.write_atomic(path, record_bytes)
    result = {"xml_ok": [], "xml_errors": {}}
    if xml_items:
        vms_dir = hb.store_dir(store, "vms")
        os.makedirs(vms_dir, exist_ok=True)
        for uuid, data in xml_items.items():
            _hang_hook()
            try:
                hb.write_atomic(os.path.join(vms_dir, uuid + ".xml"), data, mode=conf["xml_mode"])
                result["xml_ok"].append(uuid)
            except OSError as err:
                result["xml_errors"][uuid] = err.strerror or str(err)
    return result


# --------------------------------------------------------------------------------------------------- self-fence


def in_container() -> bool:
    if os.path.exists("/run/systemd/container") or os.path.exists("/.dockerenv"):
        return True
    try:
        with open("/proc/1/environ", "rb") as handle:
            return b"container=" in handle.read()
    except OSError:
        return False


def started_by_systemd() -> bool:
    """A systemd service's main process: systemd set INVOCATION_ID and is its parent (PID 1 of its namespace)."""
    return bool(os.environ.get("INVOCATION_ID")) and os.getppid() == 1


def probe_peer(sf: dict, address: str) -> bool:
    """True if ``address`` answers: an ICMP echo reply, or for TCP an accepted or refused connection."""
    if sf["probe"] == "icmp":
        argv = [sf["ping"], "-n", "-q", "-c", str(sf["probe_attempts"]), "-i", "0.2", "-W", "%g" % sf["probe_timeout"], address]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=probe_budget(sf), check=False)
        except (subprocess.TimeoutExpired, OSError):
            return False
        return done.returncode == 0
    for _attempt in range(sf["probe_attempts"]):
        try:
            with socket.create_connection((address, sf["tcp_port"]), timeout=sf["probe_timeout"]):
                return True
        except ConnectionRefusedError:
            return True  # a RST comes from a live kernel on that address
        except OSError:
            continue
    return False


def probe_peers(sf: dict) -> int:
    """Probe every peer in parallel within ``probe_budget``; return how many answered."""
    results = {}

    def one(address):
        results[address] = probe_peer(sf, address)

    threads = [threading.Thread(target=one, args=(a,), name="probe:%s" % a, daemon=True) for a in sf["peers"]]
    for thread in threads:
        thread.start()
    end = time.monotonic() + probe_budget(sf) + 0.5
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return sum(1 for a in sf["peers"] if results.get(a))


class Fencer:
    """Carries out the self-fence action. Built-in actions never touch a machine they were not meant for: the
    ``poweroff`` action only runs in a systemd service (``started_by_systemd``), never in a writer started by hand or
    by a test; the ``watchdog`` action refuses to open a device inside a container (it would be the machine's)."""

    def __init__(self, conf: dict):
        self.sf = conf["self_fence"]
        self.interval = conf["interval"]
        self.armed = self.sf["armed"]
        self.problem = ""
        self.fd = None
        self.fencing = False
        self.fired_at = None
        self.fired_ok = False
        if not self.armed:
            return
        if self.sf["action"] == "watchdog":
            if in_container():
                self._disarm("refusing the watchdog action inside a container: its watchdog device would be the machine's")
                return
            try:
                self.fd = os.open(self.sf["watchdog_device"], os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as err:
                self._disarm("cannot open %s: %s" % (self.sf["watchdog_device"], err.strerror or err))
                return
            self._set_timeout()
            LOG.info("self-fence armed: watchdog %s (timeout %d s) is fed every beat", self.sf["watchdog_device"], self.sf["watchdog_timeout"])
        elif self.sf["action"] == "poweroff" and not started_by_systemd():
            self._disarm("refusing the poweroff action: not a systemd service (INVOCATION_ID set and parent PID 1); "
                         "use action 'command' when running the writer by hand")
        else:
            LOG.info("self-fence armed: action %s after %.0f s without a write and without a peer majority", self.sf["action"], self.sf["deadline_s"])

    def _disarm(self, why: str):
        self.armed = False
        self.problem = why
        LOG.error("self-fence NOT armed: %s", why)

    def _set_timeout(self):
        import fcntl  # pylint: disable=import-outside-toplevel
        import struct  # pylint: disable=import-outside-toplevel

        wdioc_settimeout = 0xC0045706
        try:
            fcntl.ioctl(self.fd, wdioc_settimeout, struct.pack("i", self.sf["watchdog_timeout"]))
        except OSError as err:
            LOG.warning("watchdog %s: cannot set the timeout to %d s (%s); its own timeout applies",
                        self.sf["watchdog_device"], self.sf["watchdog_timeout"], err.strerror or err)

    def feed(self):
        if self.fd is not None and not self.fencing:
            try:
                os.write(self.fd, b"\0")
            except OSError as err:
                LOG.error("watchdog %s: keep-alive failed: %s", self.sf["watchdog_device"], err.strerror or err)

    def fence(self, reason: str):
        """Fence (once per episode; a failed command is retried after 5 beats)."""
        now = time.monotonic()
        if self.fd is not None:
            if not self.fencing:
                self.fencing = True
                LOG.critical("SELF-FENCE: %s", reason)
                LOG.critical("SELF-FENCE: no longer feeding %s; the host resets within %d s", self.sf["watchdog_device"], self.sf["watchdog_timeout"])
            return
        if self.fired_ok or (self.fired_at is not None and now - self.fired_at < 5 * self.interval):
            return
        self.fencing = True
        self.fired_at = now
        argv = list(POWEROFF_ARGV) if self.sf["action"] == "poweroff" else list(self.sf["command"])
        LOG.critical("SELF-FENCE: %s; running %s", reason, " ".join(argv))
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.sf["command_timeout"], check=False)
        except (subprocess.TimeoutExpired, OSError) as err:
            LOG.critical("SELF-FENCE: %s failed: %s", argv[0], err)
            return
        if done.returncode != 0:
            LOG.critical("SELF-FENCE: %s exited %d: %s", argv[0], done.returncode, done.stderr.decode("utf-8", "replace").strip()[:300])
            return
        self.fired_ok = True

    def recovered(self):
        if self.fencing:
            LOG.warning("self-fence: conditions cleared (store writable or peer majority back)")
        self.fencing = False
        self.fired_ok = False
        self.fired_at = None

    def close(self, graceful: bool):
        if self.fd is None:
            return
        if graceful and not self.fencing:
            try:
                os.write(self.fd, b"V")  # magic close: disarm (unless the driver has nowayout)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None


# --------------------------------------------------------------------------------------------------- state


def _write_local(path: str, data: bytes):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _read_json(path: str):
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def read_boot_id(path: str) -> str:
    """The boot id systemd gave us (KVMHA_BOOT_ID=%b in the unit), else the kernel's.

    systemd's own is the one to trust: in a container, hardening options such as ProtectControlGroups= remount
    /proc and hide the container's boot id, so the file would show the host kernel's, the same for every
    container and across container reboots.
    """
    boot_id = os.environ.get("KVMHA_BOOT_ID", "").strip()
    if not boot_id:
        with open(path, encoding="ascii") as handle:
            boot_id = handle.read().strip()
    if not boot_id or len(boot_id) > 64:
        raise InvalidInput("%s does not hold a boot id" % path)
    return boot_id


def boottime() -> float:
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


class Notifier:
    """sd_notify(3) without libsystemd."""

    def __init__(self):
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.sock = None
        if address:
            if address.startswith("@"):
                address = "\0" + address[1:]
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0))
                self.sock.connect(address)
            except OSError as err:
                LOG.warning("cannot reach systemd's notify socket: %s", err)
                self.sock = None
        self.watchdog = bool(os.environ.get("WATCHDOG_USEC"))

    def send(self, message: str):
        if self.sock is not None:
            try:
                self.sock.send(message.encode("utf-8", "replace"))
            except OSError:
                pass


# --------------------------------------------------------------------------------------------------- the writer


class Writer:
    def __init__(self, conf: dict):
        self.conf = conf
        self.host = conf["host"]
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self.boot_id = read_boot_id(conf["boot_id_path"])
        os.makedirs(conf["state_dir"], mode=0o750, exist_ok=True)
        self.state_path = os.path.join(conf["state_dir"], "state.json")
        self.manifest_path = os.path.join(conf["state_dir"], "manifest.json")
        state = _read_json(self.state_path)
        self.seq = start_seq(state, self.boot_id, boottime()) - 1
        now = time.monotonic()
        self.last_ok = now
        inherited = state and state.get("boot_id") == self.boot_id and isinstance(state.get("last_ok_mono"), (int, float))
        if inherited and state["last_ok_mono"] <= now:
            self.last_ok = state["last_ok_mono"]  # a crash-restart does not reset the self-fence clock
        self.source = make_source(conf)
        self.lv_worker = Worker("libvirt")
        self.store_worker = Worker("store")
        self.abandoned = 0
        self.manifest = {"vms": [], "xml": {}, "allocated": {"mem_mib": 0, "vcpus": 0}}
        self.manifest_read_at = None  # wall time of the last successful read
        self.manifest_error = ""
        self.manifest_source = self.source.method
        self.last_refresh = None
        saved = _read_json(self.manifest_path)
        if saved and saved.get("boot_id") == self.boot_id and isinstance(saved.get("vms"), list):
            self.manifest = {"vms": saved["vms"], "xml": {}, "allocated": saved.get("allocated") or {"mem_mib": 0, "vcpus": 0}}
            self.manifest_read_at = saved.get("read_at")
            self.manifest_error = "libvirt not read yet since the writer started; last known manifest kept"
            LOG.info("loaded the last known manifest (%d HA VMs) from %s", len(self.manifest["vms"]), self.manifest_path)
        elif self.source.method != "none":
            self.manifest_error = "libvirt not read yet since the writer started"
        self.xml_written = {}
        self._pending_hash = {}
        self.last_record = None
        self.reachable = None
        self.fencer = Fencer(conf)
        self.notifier = Notifier()
        self.store_report = Reporter("store write")
        self.lv_report = Reporter("libvirt")
        self.xml_report = Reporter("domain XML")
        self.beats = 0
        self.ready = False
        self.reexec = False

    # ---------------------------------------------------------------- state
    def _save_state(self, last_ok):
        data = {"boot_id": self.boot_id, "seq": self.seq, "last_ok_mono": last_ok}
        try:
            _write_local(self.state_path, json.dumps(data).encode())
        except OSError as err:
            LOG.error("cannot save runtime state %s: %s", self.state_path, err.strerror or err)

    def _save_manifest(self):
        data = {"boot_id": self.boot_id, "vms": self.manifest["vms"], "allocated": self.manifest["allocated"], "read_at": self.manifest_read_at}
        try:
            _write_local(self.manifest_path, json.dumps(data, sort_keys=True).encode())
        except OSError as err:
            LOG.error("cannot save the manifest %s: %s", self.manifest_path, err.strerror or err)

    # ---------------------------------------------------------------- libvirt
    def _apply_refresh(self, outcome):
        ok, value = outcome
        if not ok:
            self.manifest_error = str(value)
            kept = len(self.manifest["vms"])
            self.lv_report.failed("%s; keeping the last known manifest (%d HA VMs%s)" % (
                value, kept, "" if self.manifest_read_at is None else ", read %.0f s ago" % (time.time() - self.manifest_read_at)))
            return
        self.lv_report.ok()
        for warning in value["warnings"]:
            LOG.warning("%s", warning)
        changed = value["vms"] != self.manifest["vms"] or value["allocated"] != self.manifest["allocated"]
        self.manifest = value
        self.manifest_read_at = time.time()
        self.manifest_error = ""
        if changed:
            LOG.info("manifest: %d HA VMs running (%s)", len(value["vms"]), ", ".join(vm["name"] for vm in value["vms"]) or "none")
            self._save_manifest()

    def _refresh_manifest(self, now: float):
        lv = self.conf["libvirt"]
        stuck = self.lv_worker.busy_for()
        if stuck is not None:
            if stuck > max(30.0, 5 * lv["timeout"]) and self.abandoned < 5:
                self.abandoned += 1
                LOG.error("libvirt: a read has been stuck for %.0f s; abandoning it and reconnecting (%d abandoned)", stuck, self.abandoned)
                self.lv_worker = Worker("libvirt")
                self.source = make_source(self.conf)
            elif stuck > lv["timeout"]:
                self.manifest_error = "libvirt did not answer within %.1f s" % lv["timeout"]
                self.lv_report.failed("no answer for %.1f s (timeout %.1f s); keeping the last known manifest (%d HA VMs)" % (
                    stuck, lv["timeout"], len(self.manifest["vms"])), key="stuck")
            return
        if self.last_refresh is not None and now - self.last_refresh < refresh_interval(self.conf, self.source.method) - 0.01:
            return
        self.last_refresh = now
        self.lv_worker.submit(self.source.refresh, self.conf["ha_domains"])
        outcome = self.lv_worker.wait(min(lv["timeout"], 0.4 * self.conf["interval"]))
        if outcome is not None:
            self._apply_refresh(outcome)

    def _collect_late_refresh(self):
        if self.lv_worker.busy_for() is None:
            outcome = self.lv_worker.wait(0)
            if outcome is not None:
                self._apply_refresh(outcome)

    # ---------------------------------------------------------------- record
    def _manifest_field(self) -> dict:
        age = None if self.manifest_read_at is None else round(max(0.0, time.time() - self.manifest_read_at), 1)
        return {"source": self.manifest_source, "age_s": age, "error": self.manifest_error[:1024]}

    def build(self, state: str = "running", reason: str = "") -> dict:
        sf = self.conf["self_fence"]
        capacity = compute_capacity(self.conf["capacity"], read_mem_available_mib(self.conf["meminfo_path"]),
                                    len(os.sched_getaffinity(0)), self.manifest["allocated"])
        vms = [{k: vm[k] for k in ("uuid", "name", "ha", "priority", "memory_mib", "vcpus", "disks", "group")} for vm in self.manifest["vms"]]
        self.seq += 1
        return hb.build_record(
            self.host, self.boot_id, self.seq, time.time(), self.conf["interval"],
            {"armed": self.fencer.armed, "deadline_s": published_deadline(self.conf)}, capacity, vms,
            state=state, manifest=self._manifest_field(), reason=reason,
        )

    # ---------------------------------------------------------------- store
    def _apply_write(self, outcome, finished: float):
        ok, value = outcome
        if not ok:
            err = value
            text = "%s: %s" % (type(err).__name__, err.strerror or err) if isinstance(err, OSError) else str(err)
            self.store_report.failed(text)
            return
        self.last_ok = finished
        self.store_report.ok()
        for uuid in value["xml_ok"]:
            self.xml_written[uuid] = self._pending_hash.get(uuid)
        if value["xml_errors"]:
            self.xml_report.failed("; ".join("%s: %s" % item for item in sorted(value["xml_errors"].items())))
        elif value["xml_ok"]:
            self.xml_report.ok()
            LOG.info("kept the XML of %s on the store", ", ".join(sorted(value["xml_ok"])))

    def _write(self, record: dict, now: float):
        stuck = self.store_worker.busy_for()
        if stuck is not None:
            self.store_report.failed("the previous write is still blocked after %.1f s; not stacking another" % stuck, key="blocked")
            return
        late = self.store_worker.wait(0)
        if late is not None:
            self._apply_write(late, now)
        pending, self._pending_hash = {}, {}
        for uuid, data in self.manifest.get("xml", {}).items():
            data = data.encode("utf-8") if isinstance(data, str) else data
            digest = hashlib.sha256(data).hexdigest()
            if self.xml_written.get(uuid) != digest:
                pending[uuid] = data
                self._pending_hash[uuid] = digest
        self.store_worker.submit(store_write, self.conf, hb.encode_record(record), pending)
        outcome = self.store_worker.wait(self.conf["write_timeout"])
        if outcome is None:
            self.store_report.failed("write not finished within %g s (store hung?); will not stack another" % self.conf["write_timeout"], key="blocked")
        else:
            self._apply_write(outcome, time.monotonic())

    def _collect_late_write(self):
        if self.store_worker.busy_for() is None:
            outcome = self.store_worker.wait(0)
            if outcome is not None:
                self._apply_write(outcome, time.monotonic())

    # ---------------------------------------------------------------- self-fence
    def _self_fence(self, now: float):
        if not self.fencer.armed:
            return
        sf = self.conf["self_fence"]
        stale_for = now - self.last_ok
        if stale_for < sf["deadline_s"]:
            self.reachable = None
            self.fencer.recovered()
            self.fencer.feed()
            return
        self.reachable = probe_peers(sf)
        fence, reason = fence_decision(True, time.monotonic() - self.last_ok, sf["deadline_s"], self.reachable, len(sf["peers"]))
        if fence:
            self.fencer.fence(reason)
        else:
            LOG.warning("self-fence held back: %s", reason)
            self.fencer.recovered()
            self.fencer.feed()

    # ---------------------------------------------------------------- loop
    def beat(self):
        self._collect_late_write()
        self._collect_late_refresh()
        now = time.monotonic()
        self._refresh_manifest(now)
        record = self.build()
        self.last_record = record
        self._save_state(self.last_ok)
        self._write(record, now)
        self._save_state(self.last_ok)
        self._self_fence(time.monotonic())
        self.beats += 1
        status = "seq %d, %d HA VMs, last write %.1f s ago%s" % (
            record["seq"], len(record["vms"]), time.monotonic() - self.last_ok,
            "" if not self.store_report.failing_since else ", store FAILING")
        if not self.ready:
            self.ready = True
            self.notifier.send("READY=1\nSTATUS=%s" % status)
        else:
            self.notifier.send("STATUS=%s%s" % (status, "\nWATCHDOG=1" if self.notifier.watchdog else ""))

    def request_stop(self, signum, _frame=None):
        self.stop_reason = "writer stopped (%s)" % signal.Signals(signum).name
        self.stop_event.set()

    def request_reexec(self, _signum, _frame=None):
        """SIGHUP (``systemctl reload``): load new code and configuration without a stopped record."""
        self.reexec = True
        self.stop_event.set()

    def _reexec(self):
        """Replace this process with a fresh writer (same PID, seq and self-fence clock carry over).

        Not while a store write is blocked: exec would wait for that thread, and self-fencing with it."""
        self.stop_event.clear()
        if self.store_worker.busy_for() is not None:
            self.store_report.failed("reload postponed: a store write is blocked; re-executing once the store answers", key="reload")
            return False
        LOG.info("reloading: re-executing %s (no stopped record; seq and self-fence clock carry over)", " ".join(sys.orig_argv))
        self._save_state(self.last_ok)
        self.fencer.close(graceful=False)
        self.source.close()
        for handler in LOG.handlers:
            handler.flush()
        # Signals stay blocked across exec (the mask is inherited) until the new writer has its handlers: a stop
        # that arrives meanwhile is delivered then, and still writes the stopped record.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            os.execv(sys.executable, sys.orig_argv)
        except OSError as err:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            LOG.error("reload failed, keeping the running writer: cannot execute %s: %s", sys.executable, err.strerror or err)
            self.reexec = False
            self.stop_event.clear()
            self.source = make_source(self.conf)
            self.fencer = Fencer(self.conf)
        return False

    def run(self) -> int:
        interval = self.conf["interval"]
        LOG.info("writing %s every %.1f s (seq from %d, boot %s, libvirt via %s)", hb.record_path(self.conf["store"], self.host),
                 interval, self.seq + 1, self.boot_id, self.source.method)
        next_beat = time.monotonic()
        while not self.stop_reason:
            if self.reexec:
                self._reexec()  # returns only when postponed or failed
            self.beat()
            next_beat += interval
            now = time.monotonic()
            if next_beat < now:
                missed = int((now - next_beat) // interval) + 1
                next_beat += missed * interval
            self.stop_event.wait(max(0.0, next_beat - time.monotonic()))
        return self.stop()

    def stop(self) -> int:
        self.notifier.send("STOPPING=1")
        self._collect_late_refresh()
        previous = self.last_record or self.build()
        record = hb.stopped_record(previous, self.host, time.time(), self.stop_reason or "writer stopped")
        # A stopped writer cannot fence its host any more: never let a reader trust a self-fence from here on.
        record["self_fence"] = {"armed": False, "deadline_s": record["self_fence"]["deadline_s"]}
        record["manifest"] = self._manifest_field()
        self.seq = record["seq"]
        self._save_state(None)
        if self.store_worker.busy_for() is not None:
            self.store_worker.wait(self.conf["stop_timeout"] / 2)
        try:
            # A store job that is still blocked is left alone; the stopped record gets its own thread and deadline.
            call_with_deadline(store_write, self.conf["stop_timeout"], "writing the stopped record", self.conf, hb.encode_record(record), {})
            LOG.info("wrote the stopped record (seq %d): %s", record["seq"], record.get("reason", ""))
        except DeadlineExceeded as err:
            LOG.error("could not write the stopped record: %s", err)
        except (OSError, KvmhaError) as err:
            LOG.error("could not write the stopped record: %s", getattr(err, "strerror", None) or err)
        self.fencer.close(graceful=True)
        self.source.close()
        return 0


# --------------------------------------------------------------------------------------------------- main


class _JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority (``<3>``) so journald files it at the right level."""

    LEVELS = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    def format(self, record):
        return "<%d>%s" % (self.LEVELS.get(record.levelno, 6), super().format(record))


def setup_logging(verbose: bool, logger: logging.Logger = LOG):
    """Log to stderr; under systemd (journald) with syslog priorities, else with times and level names."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kvmha-heartbeat", description="kvmha heartbeat writer")
    parser.add_argument("--config", required=True, help="JSON configuration file")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    # Signals that arrive before the writer exists are remembered and handled once it does; they were blocked
    # across a reload's exec, so unblock them only now (and before any thread or child inherits the mask).
    pending = []
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, lambda number, _frame: pending.append(number))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    setup_logging(args.verbose)
    try:
        conf = load_config(args.config)
    except ConfigError as err:
        LOG.error("invalid configuration: %s", err)
        return 2
    if args.check_config:
        sys.stdout.write("configuration OK: host %s, store %s, interval %.1f s, self-fence %s\n" % (
            conf["host"], conf["store"], conf["interval"], "armed (%s)" % conf["self_fence"]["action"] if conf["self_fence"]["armed"] else "off"))
        return 0
    try:
        writer = Writer(conf)
    except (OSError, KvmhaError) as err:
        LOG.error("cannot start: %s", getattr(err, "strerror", None) or err)
        return 1
    signal.signal(signal.SIGTERM, writer.request_stop)
    signal.signal(signal.SIGINT, writer.request_stop)
    signal.signal(signal.SIGHUP, writer.request_reexec)
    for signum in pending:
        (writer.request_reexec if signum == signal.SIGHUP else writer.request_stop)(signum)
    return writer.run()
