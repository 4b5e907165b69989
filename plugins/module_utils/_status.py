# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""The operator's view of a cluster: one read of the store (and of the controller's journal), turned into rows.

``read_snapshot`` is the only I/O: heartbeat records, maintenance and fenced marks, owed documents and the lease
from the store; the newest incident records of each host from the journal directory; the fence-readiness textfile.
It takes no lease and writes nothing. ``build_status`` (pure) turns a snapshot into one row per host and one per
HA VM; ``render_text`` (pure) lays them out as the tables the playbook prints.

A status is read when something is wrong, so nothing one host's files hold may cost the others their rows: what
cannot be read is that host's error row (or an "unreadable" cell), never an exception.
"""

from __future__ import annotations

import json
import math
import os
import re
import time

from ._errors import InvalidInput, StoreError
from ._heartbeat import MAX_JSON_DEPTH, Reading, RecordReader, StalenessJudge, json_too_deep
from ._marks import FENCED, LEASE, MAINTENANCE, documents, read_marks, store_now
from ._recovery import MOVED, STATES, TERMINAL, VERIFIED, OwedBook, is_open
from ._storefile import InvalidDocument

INCIDENTS_DIR = "incidents"
INCIDENTS_PER_HOST = 5  # the newest records of a host are read: its last verdict, and the boot ids they saw
MAX_INCIDENT_BYTES = 4 * 1024 * 1024
MAX_READINESS_BYTES = 4 * 1024 * 1024
READINESS_FILE = "kvmha-fence-readiness-%s.prom"
# The journal's file names: <run start, UTC>-<run id>-<host>.json (plugins/callback/journal.py, write_records).
_INCIDENT_NAME = re.compile(r"^([0-9]{8}T[0-9]{6}Z)-([0-9a-f]{1,32})-(.+)\.json$")
_READY_LINE = re.compile(r'^kvmha_fence_ready\{cluster="([^"]*)",host="([^"]*)",reason="([^"]*)"\} ([01])\s*$', re.M)
_READINESS_RUN = re.compile(r'^kvmha_fence_readiness_last_run_timestamp_seconds\{cluster="([^"]*)"\} ([0-9.eE+]+)\s*$', re.M)
_SHOWN = 200  # longest text a cell shows from a file on the store or in the journal

# Row states, most urgent first (the summary lists them in this order).
ERROR, SUSPECT, FENCED_STATE, MAINTENANCE_STATE, ALIVE = "error", "suspect", "fenced", "maintenance", "alive"
HOST_STATES = (ERROR, SUSPECT, FENCED_STATE, MAINTENANCE_STATE, ALIVE)
# What one host's bad file may raise inside the pure builder; anything else is a bug and is left to surface.
_BAD_DATA = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, IndexError)


# --------------------------------------------------------------------------------------------------- reading


def read_snapshot(store: str, cluster: str, hosts=None, journal_dir=None, readiness_dir=None, now=None) -> dict:
    """Everything ``build_status`` needs, read once. Raises ``StoreError`` only when the store is not there or cannot
    be listed: a store that is not mounted must not look like a cluster whose every host died."""
    if not os.path.isdir(os.path.join(store, "kvmha")):
        raise StoreError("%s holds no kvmha directory: is the store mounted here?" % store)
    # Ages and expiries are on the store's clock, as the watchdog judges them; this controller's own may be off.
    now = store_now(store) if now is None else now
    reader = RecordReader(store)
    ignored = {}
    if hosts is None:
        hosts, ignored = reader.hosts_in_store()
    hosts = sorted(set(hosts))
    readings = {}
    for host in hosts:
        try:
            reading = reader.read(host)
        except InvalidInput as err:  # an inventory name that is no host name: that row's error, not the whole status
            reading = Reading(host, "invalid", reason=str(err))
        readings[host] = {"status": reading.status, "reason": reading.reason, "record": reading.record, "mtime": reading.mtime}
    owed, owed_invalid = OwedBook(store, "cluster_info").read_all(hosts)
    incidents, journal_error = {}, ""
    if journal_dir:
        try:
            incidents = read_incidents(journal_dir, hosts)
        except StoreError as err:  # the journal only adds verdicts: without it the store's view still stands
            journal_error = str(err)
    return {
        "cluster": cluster,
        "now": now,
        "hosts": hosts,
        "readings": readings,
        "ignored_files": ignored,
        MAINTENANCE: read_marks(store, MAINTENANCE, now=now),
        FENCED: read_marks(store, FENCED, now=now),
        "owed": {h: d.data for h, d in owed.items() if not d.released and is_open(d.data)},
        "owed_invalid": owed_invalid,
        "lease": _read_lease(store, cluster, now),
        "incidents": incidents,
        "journal_error": journal_error,
        "readiness": read_readiness(readiness_dir, cluster) if readiness_dir else None,
    }


def _read_lease(store: str, cluster: str, now: float):
    try:
        lease = documents(store, LEASE).read(cluster)
    except InvalidDocument as err:
        return {"invalid": str(err)[:_SHOWN]}
    except StoreError as err:  # e.g. a cluster name that is no document name: the lease cell says so
        return {"invalid": str(err)[:_SHOWN]}
    if lease is None or not lease.live(now):
        return None
    return {"owner": lease.owner, "expires_at": lease.expires_at}


def read_incidents(journal_dir: str, hosts) -> dict:
    """{host: {"records": [newest last], "invalid": reason}} from the journal's newest incident records of ``hosts``."""
    directory = os.path.join(journal_dir, INCIDENTS_DIR)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise StoreError("cannot list the journal's incidents in %s: %s" % (directory, err.strerror or err)) from err
    wanted = set(hosts)
    by_host = {}
    for name in names:
        match = _INCIDENT_NAME.match(name)
        if match and match.group(3) in wanted:
            by_host.setdefault(match.group(3), []).append((match.group(1), name))
    found = {}
    for host, files in by_host.items():
        entry = found[host] = {"records": [], "invalid": ""}
        for _stamp, name in sorted(files)[-INCIDENTS_PER_HOST:]:
            try:
                entry["records"].append(_read_json_file(os.path.join(directory, name), MAX_INCIDENT_BYTES))
            except ValueError as err:
                entry["invalid"] = "%s: %s" % (name, err)
    return found


def _read_json_file(path: str, max_bytes: int):
    """The JSON document in ``path``; ``ValueError`` naming the fault for anything that is not one."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as err:
        raise ValueError("cannot read: %s" % (err.strerror or err)) from None
    if len(data) > max_bytes:
        raise ValueError("larger than %d bytes" % max_bytes)
    if json_too_deep(data, MAX_JSON_DEPTH):
        raise ValueError("nested deeper than %d levels" % MAX_JSON_DEPTH)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError("not JSON (%s)" % str(err)[:80]) from None


def read_readiness(readiness_dir: str, cluster: str):
    """The last fence-readiness result of ``cluster`` (playbooks/fence_readiness.yml's textfile), or None."""
    path = os.path.join(readiness_dir, READINESS_FILE % cluster)
    try:
        with open(path, "rb") as stream:
            text = stream.read(MAX_READINESS_BYTES).decode("utf-8", "replace")
            mtime = os.fstat(stream.fileno()).st_mtime
    except FileNotFoundError:
        return None
    except OSError as err:
        return {"error": "cannot read %s: %s" % (path, err.strerror or err), "at": None, "hosts": {}}
    return parse_readiness(text, cluster, mtime)


def parse_readiness(text: str, cluster: str, mtime=None) -> dict:
    """{"at": when it ran, "hosts": {host: {"ready", "reason"}}, "error": ""} from a readiness textfile."""
    hosts = {}
    for found_cluster, host, reason, value in _READY_LINE.findall(text):
        if found_cluster == cluster:
            hosts[host] = {"ready": value == "1", "reason": reason}
    at = mtime
    for found_cluster, stamp in _READINESS_RUN.findall(text):
        if found_cluster == cluster:
            try:
                at = float(stamp)
            except ValueError:
                pass
    return {"at": at, "hosts": hosts, "error": ""}


# --------------------------------------------------------------------------------------------------- building


def build_status(snapshot: dict, misses: int = 3, skew_allowance: float = 2.0) -> dict:
    """Rows for every host and every HA VM of ``snapshot``, and a summary. Pure: the snapshot's ``now`` is the clock."""
    if misses < 1 or skew_allowance < 0:
        raise InvalidInput("misses must be at least 1 and skew_allowance zero or more")
    now = snapshot["now"]
    judge = StalenessJudge(misses=misses, skew_allowance=skew_allowance, wall=lambda: now, monotonic=lambda: 0.0)
    rows = []
    for host in snapshot["hosts"]:
        try:
            rows.append(host_row(host, snapshot, judge))
        except _BAD_DATA as err:
            rows.append(_error_row(host, "cannot be shown: %s: %s" % (type(err).__name__, _text(err))))
    vms = vm_rows(snapshot, rows)
    summary = dict((state, sum(1 for row in rows if row["state"] == state)) for state in HOST_STATES)
    summary["hosts"] = len(rows)
    summary["ha_vms"] = len(vms)
    summary["vms_not_running"] = sum(1 for vm in vms if vm["state"] != "running")
    readiness = snapshot.get("readiness") or {}
    watched = [row for row in rows if row["state"] in (ALIVE, SUSPECT, ERROR)]
    warning = ""
    if len(watched) >= 2 and not any(row["state"] == ALIVE for row in watched):
        warning = ("no watched host's heartbeat looks alive (%d): the store or its mount on this controller is the likelier "
                   "fault - check it before you believe the rows" % len(watched))
    return {
        "cluster": snapshot["cluster"],
        "now": now,
        "hosts": rows,
        "vms": vms,
        "summary": summary,
        "lease": snapshot.get("lease"),
        "readiness_at": _number_or_none(readiness.get("at")),
        "readiness_error": _text(readiness.get("error") or ""),
        "journal_error": _text(snapshot.get("journal_error") or ""),
        "ignored_files": snapshot.get("ignored_files") or {},
        "warning": warning,
    }


def _error_row(host: str, error: str) -> dict:
    return {"host": host, "state": ERROR, "state_text": "error: " + error, "error": error, "heartbeat": "invalid",
            "heartbeat_reason": "", "age_s": None, "boot_id": None, "boot_changes": None, "capacity": None, "ha_vms": 0,
            "owed_vms": 0, "last_verdict": None, "readiness": None, "maintenance": None, "fenced": None}


def host_row(host: str, snapshot: dict, judge: StalenessJudge) -> dict:
    now = snapshot["now"]
    given = snapshot["readings"].get(host) or {"status": "missing", "reason": "no heartbeat file"}
    state = judge.judge(Reading(host, given["status"], given.get("record"), given.get("reason") or "", given.get("mtime")))
    record = state.record or {}
    mtime = given.get("mtime")
    row = {
        "host": host,
        "heartbeat": state.status,
        "heartbeat_reason": _text(state.reason),
        "age_s": None if mtime is None or state.record is None else round(max(0.0, now - mtime), 1),
        "boot_id": record.get("boot_id"),
        "capacity": record.get("capacity") if state.live else None,  # a dead host's last word on its room means nothing
        "ha_vms": sum(1 for vm in record.get("vms", []) if vm.get("ha")),
        "error": "",
    }
    incidents = (snapshot.get("incidents") or {}).get(host) or {}
    row["last_verdict"] = last_verdict(incidents)
    row["boot_changes"] = boot_changes(incidents, row["boot_id"])
    row["owed_vms"], owed_note = _owed(host, snapshot)
    row["readiness"] = _readiness(host, snapshot.get("readiness"), now)
    row["maintenance"] = _mark(host, snapshot.get(MAINTENANCE) or {})
    row["fenced"] = _mark(host, snapshot.get(FENCED) or {})
    row["state"], row["state_text"] = host_state(state, row, owed_note, now)
    if row["state"] == ERROR:
        row["error"] = _invalid_reason(state)
    return row


def _invalid_reason(state) -> str:
    return _text(state.reason) or "the record is invalid"


def host_state(state, row: dict, owed_note: str, now: float) -> tuple:
    """(state, text): fenced and maintenance marks first (they say why a host is silent), then the heartbeat."""
    fenced, maintenance = row["fenced"], row["maintenance"]
    notes = [owed_note] if owed_note else []
    if fenced is not None:
        if fenced.get("invalid"):
            return FENCED_STATE, _join("fenced (mark unreadable: %s)" % fenced["invalid"], notes)
        back = ["heartbeat back: reconciled by the next watchdog run"] if state.live else []
        return FENCED_STATE, _join("fenced since %s by %s" % (_when(fenced.get("since"), now), fenced.get("owner")), back + notes)
    if maintenance is not None and not maintenance.get("expired"):
        if maintenance.get("invalid"):
            return MAINTENANCE_STATE, _join("maintenance (mark unreadable: %s)" % maintenance["invalid"], notes)
        return MAINTENANCE_STATE, _join("maintenance until %s by %s" % (_when(maintenance.get("until"), now), maintenance.get("owner")),
                                        notes + _reason(maintenance))
    if maintenance is not None:
        notes.append("maintenance ended by itself %s" % _when(maintenance.get("until"), now))
    if state.status == "invalid":
        return ERROR, _join("error: " + _invalid_reason(state), notes)
    if state.live:
        skew = ["clock %+.1f s off the store's" % state.clock_offset] if state.status == "clock_skew" else []
        return ALIVE, _join("alive", skew + notes)
    return SUSPECT, _join("suspect: %s" % (state.reason or state.status), notes)


def _reason(mark: dict) -> list:
    return ["reason: %s" % mark["reason"]] if mark.get("reason") else []


def _join(head: str, notes: list) -> str:
    return head + "".join("; " + note for note in notes)


def _mark(host: str, marks: dict):
    """A host's mark of one kind as the row shows it, or None: {owner, since, until, expired, reason} or {invalid}."""
    if host in (marks.get("invalid") or {}):
        return {"invalid": _text(marks["invalid"][host])}
    for state in ("active", "expired"):
        mark = (marks.get(state) or {}).get(host)
        if mark is not None:
            data = mark.get("data") if isinstance(mark.get("data"), dict) else {}
            return {"owner": _text(mark.get("owner")), "since": _number_or_none(mark.get("created")),
                    "until": _number_or_none(mark.get("expires_at")), "expired": state == "expired",
                    "reason": _text(data.get("reason") or ""), "verdict": _text_or_none(data.get("verdict")),
                    "rule": _text_or_none(data.get("rule"))}
    return None


def _owed(host: str, snapshot: dict) -> tuple:
    """(VMs of the host's open owed document that do not run yet, the note for its state cell)."""
    if host in (snapshot.get("owed_invalid") or {}):
        return 0, "owed document unreadable: %s" % _text(snapshot["owed_invalid"][host])
    data = (snapshot.get("owed") or {}).get(host)
    if data is None:
        return 0, ""
    waiting = sum(1 for vm in data["vms"] if vm["state"] not in TERMINAL)
    return waiting, "owed VMs %d" % waiting if waiting else ""


def _readiness(host: str, readiness, now: float):
    if not readiness:
        return None
    entry = (readiness.get("hosts") or {}).get(host)
    if entry is None:
        return None
    at = _number_or_none(readiness.get("at"))
    return {"ready": entry.get("ready") is True, "reason": _text(entry.get("reason")),
            "age_s": None if at is None else round(max(0.0, now - at), 1)}


def last_verdict(incidents: dict):
    """The newest incident record's verdict, rule and time, or None (or {"invalid"} when it cannot be read)."""
    records = [r for r in incidents.get("records") or [] if isinstance(r, dict)]
    if not records:
        return {"invalid": _text(incidents["invalid"])} if incidents.get("invalid") else None
    newest = records[-1]
    stamps = newest.get("timestamps") if isinstance(newest.get("timestamps"), dict) else {}
    run = newest.get("run") if isinstance(newest.get("run"), dict) else {}
    return {"verdict": _text_or_none(newest.get("verdict")), "rule": _text_or_none(newest.get("rule")),
            "final_state": _text_or_none(newest.get("final_state")),
            "at": _text_or_none(stamps.get("detected") or run.get("started"))}


def boot_changes(incidents: dict, current):
    """How many times the boot id changed across the host's newest incident records and its current record."""
    seen = []
    for record in incidents.get("records") or []:
        heartbeat = record.get("heartbeat") if isinstance(record, dict) else None
        boot = heartbeat.get("boot_id") if isinstance(heartbeat, dict) else None
        if isinstance(boot, str) and (not seen or seen[-1] != boot):
            seen.append(boot)
    if isinstance(current, str) and (not seen or seen[-1] != current):
        seen.append(current)
    return max(0, len(seen) - 1) if seen else None


def vm_rows(snapshot: dict, rows: list) -> list:
    """One row per HA VM: where the live records say it runs, or what its owed entry says."""
    state_of = dict((row["host"], row["state"]) for row in rows)
    found = {}
    for host, given in sorted(snapshot["readings"].items()):
        state = "running" if state_of.get(host) in (ALIVE, MAINTENANCE_STATE) else "unknown (host %s)" % state_of.get(host, SUSPECT)
        for vm in (given.get("record") or {}).get("vms", []):
            if vm.get("ha"):
                _listed_vm(found, host, vm, state)
    for host, data in sorted((snapshot.get("owed") or {}).items()):
        for entry in data.get("vms") or [] if isinstance(data, dict) else []:
            try:
                _owed_vm(found, host, entry)
            except _BAD_DATA:
                continue  # owed documents are validated on read: this entry's host row already says what is wrong
    return sorted(found.values(), key=lambda vm: (-(vm["priority"] or 0), vm["name"], vm["uuid"]))


def _listed_vm(found: dict, host: str, vm: dict, state: str) -> None:
    """The VM as listed by ``host``'s record; a second listing is noted (a migration in flight, or worse), and a
    listing by a live host is the one shown (a dead host's last record still lists what ran there)."""
    row = {"name": vm["name"], "uuid": vm["uuid"], "host": host, "priority": vm["priority"], "group": vm.get("group") or "",
           "state": state, "detail": ""}
    known = found.get(vm["uuid"])
    if known is None:
        found[vm["uuid"]] = row
        return
    primary, other = (row, known) if known["state"] != "running" and state == "running" else (known, row)
    primary["detail"] = _join(known["detail"], ["also listed by %s (%s)" % (other["host"], other["state"])]).lstrip("; ")
    found[vm["uuid"]] = primary


def _owed_vm(found: dict, host: str, entry: dict) -> None:
    if not isinstance(entry["uuid"], str) or entry["state"] not in STATES:
        raise ValueError("not an owed entry")
    if entry["state"] == MOVED or (entry["state"] == VERIFIED and entry["uuid"] in found):
        return  # another document owes it, or a live record already shows where it runs
    detail = "owed by %s" % host + ("; %s" % _text(entry["last_error"]) if entry.get("last_error") else "")
    priority = entry["priority"] if isinstance(entry["priority"], int) and not isinstance(entry["priority"], bool) else None
    found[entry["uuid"]] = {"name": _text(entry["name"]), "uuid": entry["uuid"], "host": _text(entry.get("target") or host),
                            "priority": priority, "group": _text(entry.get("group") or ""), "state": entry["state"],
                            "detail": detail}


# --------------------------------------------------------------------------------------------------- text


def render_text(status: dict) -> list:
    """The cluster's two tables and a summary line, as lines of text."""
    now = status["now"]
    summary = status["summary"]
    head = "cluster %s: %d hosts - %s; %d HA VMs, %d not running" % (
        status["cluster"], summary["hosts"], ", ".join("%d %s" % (summary[s], s) for s in HOST_STATES if summary[s]) or "none",
        summary["ha_vms"], summary["vms_not_running"])
    lines = [head, "lease: %s" % _lease_text(status.get("lease"), now)]
    if status.get("warning"):
        lines.append("WARNING: " + status["warning"])
    if status.get("readiness_error"):
        lines.append("fence readiness: %s" % status["readiness_error"])
    if status.get("journal_error"):
        lines.append("journal: %s" % status["journal_error"])
    host_table = [("HOST", "HEARTBEAT", "BOOT", "STATE", "LAST VERDICT", "FENCE READY", "CAPACITY")]
    for row in status["hosts"]:
        host_table.append((row["host"], _heartbeat_cell(row), _boot_cell(row), row["state_text"], _verdict_cell(row.get("last_verdict")),
                           _readiness_cell(row.get("readiness")), _capacity_cell(row.get("capacity"))))
    lines += _table(host_table)
    if status["vms"]:
        vm_table = [("VM", "HOST", "PRIO", "GROUP", "STATE", "DETAIL")]
        vm_table += [(vm["name"], vm["host"], "-" if vm["priority"] is None else str(vm["priority"]), vm["group"] or "-", vm["state"],
                      vm["detail"] or "-")
                     for vm in status["vms"]]
        lines += [""] + _table(vm_table)
    for name, reason in sorted((status.get("ignored_files") or {}).items()):
        lines.append("ignored on the store: %s (%s)" % (name, reason))
    return lines


def _table(rows: list) -> list:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _heartbeat_cell(row: dict) -> str:
    age = "" if row.get("age_s") is None else " " + age_text(row["age_s"])
    return (row.get("heartbeat") or "-") + age


def _boot_cell(row: dict) -> str:
    boot = row.get("boot_id")
    if not boot:
        return "-"
    changes = row.get("boot_changes")
    return boot[:8] + (" +%d" % changes if changes else "")


def _verdict_cell(verdict) -> str:
    if not verdict:
        return "-"
    if verdict.get("invalid"):
        return "unreadable"
    return "%s %s%s" % (verdict.get("verdict") or "-", verdict.get("rule") or "-", " " + verdict["at"][:16] if verdict.get("at") else "")


def _readiness_cell(readiness) -> str:
    if not readiness:
        return "-"
    age = "" if readiness.get("age_s") is None else ", " + age_text(readiness["age_s"]) + " ago"
    return "%s (%s%s)" % ("yes" if readiness["ready"] else "NO", readiness.get("reason") or "-", age)


def _capacity_cell(capacity) -> str:
    if not capacity:
        return "-"
    return "%.1f GiB, %d vCPU" % (capacity["mem_free_mib"] / 1024.0, capacity["vcpus_free"])


def _lease_text(lease, now: float) -> str:
    if not lease:
        return "free"
    if lease.get("invalid"):
        return "unreadable (%s)" % lease["invalid"]
    return "held by %s until %s" % (lease.get("owner"), _when(lease.get("expires_at"), now))


def age_text(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return "%.1f s" % seconds
    if seconds < 3600:
        return "%d min" % (seconds // 60)
    if seconds < 86400:
        return "%.1f h" % (seconds / 3600.0)
    return "%d d" % (seconds // 86400)


def _when(timestamp, now: float) -> str:
    """UTC time and how far from now: 2026-12-03T12:00Z (in 2.0 h) / (5 min ago)."""
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        return "?"
    try:
        shown = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return "?"
    delta = timestamp - now
    return "%s (%s)" % (shown, "in " + age_text(delta) if delta >= 0 else age_text(-delta) + " ago")


def _text(value) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _text_or_none(value):
    return None if value is None else _text(value)


def _number_or_none(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value
