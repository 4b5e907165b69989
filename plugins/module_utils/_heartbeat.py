# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# Plain standard-library Python: the heartbeat writer on every hypervisor imports this very file, so the record
# format has exactly one definition.
"""The v1 heartbeat record: host names, parsing, atomic writes and the reader's staleness judgement.

A record lives at ``<store>/kvmha/hosts/<host>.json`` and is replaced atomically every ``interval`` seconds::

    {"version": 1, "host": "h1", "boot_id": "...", "seq": 42, "ts": 1764063000.5, "interval": 2,
     "state": "running", "self_fence": {"armed": false, "deadline_s": 60},
     "capacity": {"mem_free_mib": 3900, "vcpus_free": 6},
     "vms": [{"uuid": "...", "name": "g1", "ha": true, "priority": 50, "memory_mib": 64, "vcpus": 1,
              "disks": ["/store/images/g1.img"], "group": ""}]}

Optional keys: ``reason`` (why a writer stopped) and ``manifest`` (``{"source": "libvirt", "age_s": 0.1,
"error": ""}``: where ``vms`` came from and how old it is; a writer that cannot reach libvirt keeps its last
known list and reports the error and the age here).

Liveness is never judged from ``ts`` (the writer's clock, which may be wrong). A reader watching the store
judges by ``seq`` advancing under its own monotonic clock; a single read uses the file's mtime, which the
store sets from its own clock. ``ts`` is only compared with the mtime to flag a skewed writer clock.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import stat
import time
import uuid as uuidlib

from ._errors import InvalidInput, StoreError, check_range

FORMAT_VERSION = 1
HOSTS_DIR = os.path.join("kvmha", "hosts")
RECORD_SUFFIX = ".json"
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
MAX_HOST_NAME = 253
MAX_JSON_DEPTH = 32  # a v1 record nests 4 deep, a store document (mark, lease, claim) a few more
MAX_SAFE_INT = 2 ** 53 - 1  # integers beyond this lose precision as JSON numbers elsewhere, and overflow floats

# Reading statuses (one file) and host statuses (the reader's judgement over time).
LIVE_STATUSES = ("fresh", "clock_skew")
SUSPECT_STATUSES = ("stale", "stopped", "missing", "invalid")
ALL_STATUSES = LIVE_STATUSES + SUSPECT_STATUSES

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class InvalidRecord(ValueError):
    """A heartbeat file that is not a valid v1 record. ``str()`` is the reason."""


# --------------------------------------------------------------------------------------------------- names


def validate_host_name(name) -> str:
    """Return ``name`` if it is a safe RFC 1123 host name, else raise ``InvalidInput`` saying why.

    Host names become file names on the shared store, so anything that could leave the directory
    (``/``, ``..``, NUL, a leading dot) or is absurdly long is refused.
    """
    if not isinstance(name, str):
        raise InvalidInput("host name must be a string, got %s" % type(name).__name__)
    shown = repr(name[:80])
    if not name:
        raise InvalidInput("host name is empty")
    if len(name) > MAX_HOST_NAME:
        raise InvalidInput("host name %s... is %d characters long (at most %d)" % (shown, len(name), MAX_HOST_NAME))
    for bad, why in (("\0", "a NUL byte"), ("/", "a '/'"), ("..", "'..'")):
        if bad in name:
            raise InvalidInput("host name %s contains %s" % (shown, why))
    if name.startswith("."):
        raise InvalidInput("host name %s starts with a dot" % shown)
    for label in name.split("."):
        if not _LABEL.match(label):
            raise InvalidInput(
                "host name %s is not an RFC 1123 name (label %r: letters, digits and inner hyphens, 1-63)" % (shown, label[:80])
            )
    return name


def store_dir(store: str, *parts: str) -> str:
    return os.path.join(store, "kvmha", *parts)


def record_path(store: str, host: str) -> str:
    return os.path.join(store, HOSTS_DIR, validate_host_name(host) + RECORD_SUFFIX)


# --------------------------------------------------------------------------------------------------- parsing

# A JSON string, escapes included; an unterminated one runs to the end of the text. Every part after the opening
# quote is optional, so a match never backtracks: the scan stays linear whatever the bytes are.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*\\?"?', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = [{ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.get(b, 0) for b in range(256)]


def json_depth(data: bytes) -> int:
    """How deep arrays and objects nest in the JSON text ``data``, found by scanning the bytes, without parsing.

    Python's ``json`` parser, and every recursive walk over what it returns, raise ``RecursionError`` on deep
    enough nesting (about a thousand levels; a 64 KiB file holds thirty thousand): check this first. Brackets inside
    strings do not count. For text that is not valid JSON the answer is at least the depth a parser reaches before
    it fails. Every step runs in C: a fraction of the parse it guards.
    """
    if b"\\" in data:
        outside = _JSON_STRING.sub(b"", data)
    else:  # no escapes, so every quote opens or closes a string (the common case, and the fast one)
        outside = b"".join(data.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_A_BRACKET)
    deepest = max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)
    return deepest if deepest > 0 else 0


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text ``data`` nests deeper than ``limit``; checked before any parse of store files."""
    if data.count(b"[") + data.count(b"{") <= limit:  # it cannot nest deeper than it opens: most records, every mark
        return False
    return json_depth(data) > limit


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise InvalidRecord(reason)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_SAFE_INT <= value <= MAX_SAFE_INT


def _is_number(value) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _field(doc: dict, key: str, check, what: str):
    if key not in doc:
        raise InvalidRecord("missing field %r" % key)
    value = doc[key]
    if not check(value):  # the message is only built on failure: this runs 50 000 times per 1000-host read
        raise InvalidRecord("field %r must be %s, got %s" % (key, what, _short(value)))
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_vm(index: int, vm) -> dict:
    _require(isinstance(vm, dict), "vms[%d] must be an object" % index)
    where = "vms[%d]." % index
    try:
        uuid = str(uuidlib.UUID(_field(vm, "uuid", lambda v: isinstance(v, str), "a string")))
        parsed = {
            "uuid": uuid,
            "name": _field(vm, "name", lambda v: isinstance(v, str) and 0 < len(v) <= 255, "a name"),
            "ha": _field(vm, "ha", lambda v: isinstance(v, bool), "a boolean"),
            "priority": _field(vm, "priority", lambda v: _is_int(v) and 0 <= v <= 100, "an integer 0-100"),
            "memory_mib": _field(vm, "memory_mib", lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
            "vcpus": _field(vm, "vcpus", lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
            "disks": list(_field(vm, "disks", lambda v: isinstance(v, list) and all(isinstance(d, str) for d in v), "a list of paths")),
            "group": _field(vm, "group", lambda v: isinstance(v, str), "a string"),
        }
    except InvalidRecord as err:
        raise InvalidRecord(where + str(err)) from None
    except ValueError:
        raise InvalidRecord(where + "uuid is not a UUID") from None
    return parsed


def parse_record(data: bytes, expected_host: str | None = None) -> dict:
    """Validate raw heartbeat bytes and return the record as a plain dict, or raise ``InvalidRecord``."""
    if json_too_deep(data):
        raise InvalidRecord("nested deeper than %d levels" % MAX_JSON_DEPTH)
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRecord("not UTF-8") from None
    except ValueError as err:
        raise InvalidRecord("not JSON (%s)" % err) from None
    _require(isinstance(doc, dict), "not a JSON object")
    _require(doc.get("version") == FORMAT_VERSION, "unsupported version %r (expected %d)" % (_short(doc.get("version")), FORMAT_VERSION))
    host = _field(doc, "host", lambda v: isinstance(v, str), "a string")
    try:
        validate_host_name(host)
    except InvalidInput as err:
        raise InvalidRecord(str(err)) from None
    _require(expected_host is None or host == expected_host, "record names host %r, file belongs to %r" % (host, expected_host))
    self_fence = _field(doc, "self_fence", lambda v: isinstance(v, dict), "an object")
    capacity = _field(doc, "capacity", lambda v: isinstance(v, dict), "an object")
    vms = _field(doc, "vms", lambda v: isinstance(v, list), "a list")
    record = {
        "version": FORMAT_VERSION,
        "host": host,
        "boot_id": _field(doc, "boot_id", lambda v: isinstance(v, str) and 0 < len(v) <= 64, "a non-empty string"),
        "seq": _field(doc, "seq", lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
        "ts": float(_field(doc, "ts", lambda v: _is_number(v) and v >= 0, "a unix time")),
        "interval": float(_field(doc, "interval", lambda v: _is_number(v) and 0 < v <= 3600, "seconds in (0, 3600]")),
        "state": _field(doc, "state", lambda v: v in ("running", "stopped"), "'running' or 'stopped'"),
        "self_fence": {
            "armed": _field(self_fence, "armed", lambda v: isinstance(v, bool), "a boolean"),
            "deadline_s": float(_field(self_fence, "deadline_s", lambda v: _is_number(v) and v > 0, "positive seconds")),
        },
        "capacity": {
            "mem_free_mib": _field(capacity, "mem_free_mib", lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
            "vcpus_free": _field(capacity, "vcpus_free", lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
        },
        "vms": [_parse_vm(i, vm) for i, vm in enumerate(vms)],
    }
    if "reason" in doc:
        record["reason"] = _field(doc, "reason", lambda v: isinstance(v, str) and len(v) <= 1024, "a short string")
    if "manifest" in doc:
        record["manifest"] = _parse_manifest(_field(doc, "manifest", lambda v: isinstance(v, dict), "an object"))
    return record


def _parse_manifest(manifest: dict) -> dict:
    """Optional ``manifest``: where ``vms`` came from and how old it is (a writer keeps the last known list
    when libvirt does not answer, and says so here instead of dropping VMs)."""
    try:
        return {
            "source": _field(manifest, "source", lambda v: isinstance(v, str) and 0 < len(v) <= 32, "a short string"),
            "age_s": _field(manifest, "age_s", lambda v: v is None or (_is_number(v) and v >= 0), "null or seconds"),
            "error": _field(manifest, "error", lambda v: isinstance(v, str) and len(v) <= 1024, "a short string"),
        }
    except InvalidRecord as err:
        raise InvalidRecord("manifest." + str(err)) from None


def encode_record(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------------------------------- files


class Reading:
    """One read of one heartbeat file: ``status`` is ok, missing or invalid."""

    __slots__ = ("host", "status", "record", "reason", "mtime")

    def __init__(self, host, status, record=None, reason="", mtime=None):
        self.host = host
        self.status = status
        self.record = record
        self.reason = reason
        self.mtime = mtime


class RecordReader:
    """Reads heartbeat files safely; re-parses a file only when its inode, size or mtime changed.

    Every record is replaced by rename, so an unchanged ``(inode, size, mtime)`` means unchanged content.
    """

    def __init__(self, store: str, max_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        self.store = store
        self.max_bytes = max_bytes
        self._cache: dict = {}

    def hosts_in_store(self) -> tuple:
        """Return (host names found, {file name: reason} for files that are not usable records)."""
        directory = os.path.join(self.store, HOSTS_DIR)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return [], {}
        except OSError as err:
            raise StoreError("cannot list %s: %s" % (directory, err.strerror or err)) from err
        hosts, ignored = [], {}
        for name in names:
            if name.startswith("."):  # writers' temporary files
                continue
            if not name.endswith(RECORD_SUFFIX):
                ignored[name] = "not a %s file" % RECORD_SUFFIX
                continue
            try:
                hosts.append(validate_host_name(name[: -len(RECORD_SUFFIX)]))
            except InvalidInput as err:
                ignored[name] = str(err)
        return sorted(hosts), ignored

    def read(self, host: str) -> Reading:
        path = record_path(self.store, host)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return Reading(host, "missing", reason="no heartbeat file")
        except OSError as err:
            return Reading(host, "invalid", reason="cannot stat: %s" % (err.strerror or err))
        problem = self._file_problem(info)
        if problem:
            return Reading(host, "invalid", reason=problem, mtime=info.st_mtime)
        key = (info.st_ino, info.st_size, info.st_mtime_ns)
        cached = self._cache.get(host)
        if cached is not None and cached[0] == key:
            return cached[1]
        reading = self._read_file(host, path)
        self._cache[host] = (key, reading)
        return reading

    def _file_problem(self, info) -> str:
        if stat.S_ISLNK(info.st_mode):
            return "is a symbolic link"
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file"
        if info.st_size > self.max_bytes:
            return "is %d bytes, more than the %d-byte limit" % (info.st_size, self.max_bytes)
        return ""

    def _read_file(self, host: str, path: str) -> Reading:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return Reading(host, "missing", reason="no heartbeat file")
        except OSError as err:
            return Reading(host, "invalid", reason="cannot open: %s" % (err.strerror or err))
        try:
            info = os.fstat(fd)
            problem = self._file_problem(info)
            if problem:
                return Reading(host, "invalid", reason=problem, mtime=info.st_mtime)
            data = os.read(fd, self.max_bytes + 1)
        except OSError as err:
            return Reading(host, "invalid", reason="cannot read: %s" % (err.strerror or err))
        finally:
            os.close(fd)
        if len(data) > self.max_bytes:
            return Reading(host, "invalid", reason="grew beyond the %d-byte limit while read" % self.max_bytes, mtime=info.st_mtime)
        try:
            record = parse_record(data, expected_host=host)
        except InvalidRecord as err:
            return Reading(host, "invalid", reason=str(err), mtime=info.st_mtime)
        except (ValueError, ArithmeticError, RecursionError) as err:  # a parser bug must cost one host, not the run
            return Reading(host, "invalid", reason="cannot be parsed (%s: %s)" % (type(err).__name__, err), mtime=info.st_mtime)
        return Reading(host, "ok", record=record, mtime=info.st_mtime)


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically: temp file in the same directory, fsync, rename, fsync dir.

    Readers see either the old or the new content, never a partial file, even across a crash.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, ".%s.%d.%s.tmp" % (name, os.getpid(), uuidlib.uuid4().hex[:8]))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def build_record(host: str, boot_id: str, seq: int, ts: float, interval: float, self_fence: dict, capacity: dict,
                 vms: list, state: str = "running", manifest: dict | None = None, reason: str = "") -> dict:
    """Assemble a v1 record (the writer's side of ``parse_record``) and check that a reader would accept it.

    Capacity below zero is reported as zero. Raises ``InvalidRecord`` if the result would not parse.
    """
    record = {
        "version": FORMAT_VERSION, "host": host, "boot_id": boot_id, "seq": seq, "ts": float(ts),
        "interval": float(interval), "state": state,
        "self_fence": {"armed": bool(self_fence["armed"]), "deadline_s": float(self_fence["deadline_s"])},
        "capacity": {"mem_free_mib": max(0, int(capacity["mem_free_mib"])), "vcpus_free": max(0, int(capacity["vcpus_free"]))},
        "vms": [dict(vm) for vm in vms],
    }
    if manifest is not None:
        record["manifest"] = dict(manifest)
    if reason:
        record["reason"] = reason[:1024]
    parse_record(encode_record(record), expected_host=host)
    return record


def stopped_record(previous: dict | None, host: str, now: float, reason: str = "") -> dict:
    """The record that marks ``host`` as gracefully stopped, keeping everything the previous one knew."""
    if previous is None:
        record = {
            "version": FORMAT_VERSION, "host": host, "boot_id": "unknown", "seq": 0, "interval": 2.0,
            "self_fence": {"armed": False, "deadline_s": 60.0},
            "capacity": {"mem_free_mib": 0, "vcpus_free": 0}, "vms": [],
        }
    else:
        record = dict(previous, seq=previous["seq"] + 1)
    record.update(state="stopped", ts=now)
    if reason:
        record["reason"] = reason[:1024]
    else:
        record.pop("reason", None)
    return record


# --------------------------------------------------------------------------------------------------- staleness


class HostState:
    """The reader's judgement of one host at one moment."""

    __slots__ = ("host", "status", "reason", "age", "record", "rebooted", "clock_offset")

    def __init__(self, host, status, reason="", age=None, record=None, rebooted=False, clock_offset=None):
        self.host = host
        self.status = status
        self.reason = reason
        self.age = age
        self.record = record
        self.rebooted = rebooted
        self.clock_offset = clock_offset

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    def as_dict(self) -> dict:
        record = self.record or {}
        return {
            "status": self.status,
            "reason": self.reason,
            "age": None if self.age is None else round(self.age, 3),
            "seq": record.get("seq"),
            "boot_id": record.get("boot_id"),
            "rebooted": self.rebooted,
            "state": record.get("state"),
            "interval": record.get("interval"),
            "ts": record.get("ts"),
            "clock_offset": None if self.clock_offset is None else round(self.clock_offset, 3),
            "self_fence": record.get("self_fence"),
            "capacity": record.get("capacity"),
            "vms": record.get("vms", []),
            "manifest": record.get("manifest"),
        }


class StalenessJudge:
    """Judges liveness from successive readings, by the reader's clocks only.

    A host is stale when its ``(boot_id, seq)`` has not changed for ``misses x interval`` seconds of the
    reader's monotonic clock. The first reading of a host has no history, so its age is estimated from the
    file's mtime (the store's clock), minus ``skew_allowance`` so that the estimate never overstates the age.
    A record whose ``ts`` differs from its file's mtime by more than ``skew_allowance`` comes from a writer
    with a wrong clock: it is reported as ``clock_skew`` (alive, but worth an alert), never as proof of life
    by itself.

    ``export`` and ``seed`` carry the history over to the next judge on the same monotonic clock (the watch
    handover, ``_handover.py``): a seeded host whose identity is unchanged continues its age from when the
    earlier judge saw that identity appear - but never younger than the mtime estimate and never older than the
    file itself allows (its age by the store's clock plus ``skew_allowance``), so a wrong seed cannot make a host
    stale sooner than a clock disagreement within the allowance could.
    """

    def __init__(self, misses: int = 3, skew_allowance: float = 2.0, wall=time.time, monotonic=time.monotonic):
        check_range("misses", misses, 1)
        check_range("skew_allowance", skew_allowance, 0)
        self.misses = misses
        self.skew_allowance = skew_allowance
        self._wall = wall
        self._monotonic = monotonic
        self._seen: dict = {}  # host -> [(boot_id, seq), last change (monotonic), rebooted]
        self._seeds: dict = {}  # host -> ((boot_id, seq), last change (monotonic)), for its first reading only

    def seed(self, seen: dict) -> None:
        """Continue an earlier judge on the same monotonic clock: ``{host: ((boot_id, seq), last change)}``."""
        self._seeds = dict(seen)

    def export(self) -> dict:
        """What ``seed`` takes: each host's identity and when that last changed - of every host with a usable
        reading, and the seeds of hosts not read at all (a check of some hosts keeps what it knew of the others)."""
        known = dict(self._seeds)
        known.update((host, (entry[0], entry[1])) for host, entry in self._seen.items())
        return known

    def judge(self, reading: Reading) -> HostState:
        host = reading.host
        if reading.status != "ok":
            self._seen.pop(host, None)
            self._seeds.pop(host, None)
            return HostState(host, reading.status, reason=reading.reason)
        record = reading.record
        age, rebooted = self._age(host, record, reading.mtime)
        offset = record["ts"] - reading.mtime
        threshold = self.misses * record["interval"]
        if record["state"] == "stopped":
            return HostState(host, "stopped", "writer stopped gracefully" + _suffix(record.get("reason")),
                             age, record, rebooted, offset)
        if age >= threshold:
            reason = "seq %d unchanged for %.1f s (threshold %d x %.1f s)" % (record["seq"], age, self.misses, record["interval"])
            return HostState(host, "stale", reason, age, record, rebooted, offset)
        if abs(offset) > self.skew_allowance:
            reason = "writer clock is %+.1f s off the store's clock" % offset
            return HostState(host, "clock_skew", reason, age, record, rebooted, offset)
        return HostState(host, "fresh", "", age, record, rebooted, offset)

    def _age(self, host: str, record: dict, mtime: float) -> tuple:
        now = self._monotonic()
        identity = (record["boot_id"], record["seq"])
        seen = self._seen.get(host)
        if seen is None:
            file_age = self._wall() - mtime
            estimated_age = max(0.0, file_age - self.skew_allowance)
            seed = self._seeds.pop(host, None)
            if seed is not None and seed[0] == identity and estimated_age < now - seed[1] <= file_age + self.skew_allowance:
                self._seen[host] = [identity, seed[1], False]
                return now - seed[1], False
            self._seen[host] = [identity, now - estimated_age, False]
            return estimated_age, False
        if seen[0] != identity:
            seen[2] = seen[2] or seen[0][0] != identity[0]
            seen[0], seen[1] = identity, now
        return now - seen[1], seen[2]


def next_turn_in(states, thresholds) -> float:
    """Seconds until the reader's clock alone changes a judgement: until the first live host's age reaches one of
    ``thresholds`` (counted in its intervals, e.g. overdue and stale). ``inf`` when no live host has one ahead.

    A watch that sleeps its poll interval finds a host stale up to that interval after it turned stale; one that
    also wakes at this moment finds it then.
    """
    ahead = (factor * s.record["interval"] - s.age for s in states if s.live for factor in thresholds)
    return min((wait for wait in ahead if wait > 0), default=float("inf"))


def _suffix(reason) -> str:
    return ": %s" % reason if reason else ""
