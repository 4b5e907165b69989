# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# Plain standard-library Python. The transitions are pure; only ``OwedBook`` touches the store.
"""Owed recoveries: a fenced host's HA VMs stay *owed* until each runs exactly once somewhere.

The run that confirms a host down opens its *owed document* ``<store>/kvmha/owed/<host>/`` (a ``_storefile``
generation document: atomic, versioned, size-capped, validated on read) from the host's last trusted heartbeat
record, and every later watchdog run works it until each VM is ``verified`` (or ``abandoned`` by an operator).
Nothing about the recovery lives only in a running process: a run may die at any line and the next one picks up
where the store says it stood.

Per VM state::

    owed ──claim──► claimed ──start──► started ──its host's heartbeat lists it──► verified
      ▲                │  (target dies or is fenced)   │ (not running)
      └────────────────┴───────────────────────────────┘
    unplaced / failed ── retried with backoff (attempts, next_try) ──► claimed ...
    abandoned  (an operator said stop)       moved  (a dying target's own recovery owes it now)

- ``verified`` means: active on exactly one live host, and that host's own heartbeat record lists it. From then
  on that host's heartbeat covers the VM (if it dies, its own owed document owes the VM), so the hand-over has
  no gap. A copy that runs but is not yet in a record is only ``started``.
- ``claimed``/``started`` name their ``target``. While the target cannot be checked (suspect, unreachable) the
  VM waits: it may run there. Once the target is fenced (its power-off confirmed) the copy cannot run and the
  VM is placed anew. A retry on the same, reachable target is always safe: libvirt refuses a second start of
  one domain on one host.
- ``copies`` lists every host where a definition was made, so a returning host's stale copies are found even
  when they never reached that host's heartbeat.
- The document is ``closed`` when every VM is terminal (verified, abandoned, moved). It stays on the store (the
  host stays fenced) until the host is returned; its content is what reconcile reads to tell a stale copy
  (verified elsewhere: remove) from the only copy (never destroyed).
"""

from __future__ import annotations

from ._errors import InvalidDocument, InvalidInput, InvalidOwed, StoreError  # noqa: F401 (InvalidOwed: re-exported)
from ._heartbeat import store_dir, validate_host_name
from ._storefile import DocumentStore

KIND = "owed"
SCHEMA = 1
MAX_BYTES = 1024 * 1024
MAX_VMS = 1000
MAX_TEXT = 512

OWED, CLAIMED, STARTED, VERIFIED = "owed", "claimed", "started", "verified"
UNPLACED, FAILED, ABANDONED, MOVED = "unplaced", "failed", "abandoned", "moved"
STATES = (OWED, CLAIMED, STARTED, VERIFIED, UNPLACED, FAILED, ABANDONED, MOVED)
TERMINAL = frozenset((VERIFIED, ABANDONED, MOVED))
RETRYING = frozenset((UNPLACED, FAILED))
NOT_RUNNING = frozenset((OWED, CLAIMED, UNPLACED, FAILED))


def owed_dir(store: str) -> str:
    return store_dir(store, KIND)


# --------------------------------------------------------------------------------------------------- pure


def new_entry(vm: dict, now: float) -> dict:
    """The owed entry of one HA VM of a heartbeat record."""
    return {
        "uuid": vm["uuid"], "name": vm["name"], "priority": vm["priority"], "group": vm.get("group") or "",
        "memory_mib": vm["memory_mib"], "vcpus": vm["vcpus"], "xml_source": "kvmha/vms/%s.xml" % vm["uuid"],
        "state": OWED, "target": None, "copies": [], "attempts": 0, "last_error": "", "next_try": None,
        "since": now, "updated": now,
    }


def new_document(host: str, cluster: str, incident: str, verdict: str, rule: str, vms: list, now: float,
                 owner: str) -> dict:
    """The data of a newly opened owed document: every HA VM of ``vms`` (a heartbeat record's list) owed."""
    return {
        "schema": SCHEMA, "host": host, "cluster": cluster, "incident": incident, "verdict": verdict, "rule": rule,
        "opened_at": now, "opened_by": owner, "closed_at": None,
        "worked_by": owner, "work_started": now, "work_finished": None,
        "vms": [new_entry(vm, now) for vm in vms if vm.get("ha")],
    }


def is_open(data: dict) -> bool:
    return data["closed_at"] is None


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait before the next try after ``attempts`` failed ones: doubling from ``base``, at most ``cap``."""
    if attempts < 1:
        return 0.0
    return min(cap, base * (2 ** min(attempts - 1, 32)))


def due(entry: dict, now: float, longest: float = 300.0) -> bool:
    """Whether this run should work the entry (a retrying entry waits for its ``next_try``).

    A ``next_try`` further ahead than the ``longest`` wait can only come from a clock that jumped back since it was
    written: the entry is due, rather than waiting for a day that never was.
    """
    if entry["state"] in TERMINAL:
        return False
    if entry["state"] not in RETRYING or entry["next_try"] is None:
        return True
    return entry["next_try"] <= now or entry["next_try"] - now > longest


def transition(entry: dict, state: str, now: float, target=None, error: str = "", attempted: bool = False,
               retry=(30.0, 300.0)) -> dict:
    """A new entry in ``state``; ``attempted`` counts a start attempt (and sets the backoff of a retrying state).

    ``target`` None keeps the current one, except that ``owed``/``unplaced`` have none. Pure: returns a copy.
    """
    if state not in STATES:
        raise ValueError("unknown owed state %r" % state)
    new = dict(entry, copies=list(entry["copies"]))
    if state != entry["state"]:
        new["since"] = now
    new["state"] = state
    if target is not None:
        new["target"] = target
    if state in (OWED, UNPLACED):
        new["target"] = None
    new["last_error"] = error[:MAX_TEXT]
    if attempted:
        new["attempts"] = entry["attempts"] + 1
    new["next_try"] = now + backoff(new["attempts"], *retry) if state in RETRYING else None
    new["updated"] = now
    return new


def add_copy(entry: dict, host: str) -> dict:
    if host in entry["copies"]:
        return entry
    return dict(entry, copies=entry["copies"] + [host])


def close_if_done(data: dict, now: float) -> dict:
    """The document closed once every VM is terminal (a copy); unchanged otherwise."""
    if is_open(data) and all(vm["state"] in TERMINAL for vm in data["vms"]):
        return dict(data, closed_at=now)
    return data


def counts(data: dict) -> dict:
    found = dict((state, 0) for state in STATES)
    for vm in data["vms"]:
        found[vm["state"]] += 1
    return found


def interrupted_run(data: dict, owner: str):
    """The run that began working this document and never finished it, if that was not ``owner``; else None."""
    if data["work_finished"] is None and data["worked_by"] != owner:
        return {"owner": data["worked_by"], "started": data["work_started"],
                "vms": dict((vm["name"], vm["state"]) for vm in data["vms"])}
    return None


def latest_entries(documents: dict) -> dict:
    """{uuid: (host of the document, entry)} - for each VM, the most recently updated entry of all documents."""
    latest = {}
    for host, data in documents.items():
        for vm in data["vms"]:
            known = latest.get(vm["uuid"])
            if known is None or vm["updated"] > known[1]["updated"]:
                latest[vm["uuid"]] = (host, vm)
    return latest


def stale_copies(host: str, documents: dict) -> tuple:
    """What a returning ``host`` may remove: ``(remove, keep)``.

    Candidates are the VMs of the host's own document and every VM with a copy made on it. A copy is *stale*, and
    goes into ``remove`` (UUIDs), only when the VM's most recent entry says it is verified on another host; every
    other candidate goes into ``keep`` ({uuid, name, reason}) - it may be the only copy and is never destroyed.
    """
    candidates = {}
    for doc_host, data in documents.items():
        for vm in data["vms"]:
            if doc_host == host or host in vm["copies"]:
                candidates.setdefault(vm["uuid"], vm["name"])
    latest = latest_entries(documents)
    remove, keep = [], []
    for uuid, name in sorted(candidates.items(), key=lambda item: item[1]):
        owner, entry = latest[uuid]
        if entry["state"] == VERIFIED and entry["target"] != host:
            remove.append(uuid)
            continue
        if entry["state"] == VERIFIED:
            why = "it was verified running on %s itself" % host
        elif entry["state"] == ABANDONED:
            why = "it was abandoned by an operator and runs nowhere else: this may be its only copy"
        else:
            why = "it is still owed by %s (%s) and has no verified copy elsewhere: this may be its only copy" % (
                owner, entry["state"])
        keep.append({"uuid": uuid, "name": name, "reason": why})
    return remove, keep


# --------------------------------------------------------------------------------------------------- validation

_ENTRY_FIELDS = {
    "uuid": str, "name": str, "priority": int, "group": str, "memory_mib": int, "vcpus": int, "xml_source": str,
    "state": str, "target": (str, type(None)), "copies": list, "attempts": int, "last_error": str,
    "next_try": (int, float, type(None)), "since": (int, float), "updated": (int, float),
}
_OPTIONAL_ENTRY_FIELDS = {"abandoned_by": str, "abandon_reason": str}
_DOC_FIELDS = {
    "schema": int, "host": str, "cluster": str, "incident": str, "verdict": str, "rule": str,
    "opened_at": (int, float), "opened_by": str, "closed_at": (int, float, type(None)),
    "worked_by": str, "work_started": (int, float, type(None)), "work_finished": (int, float, type(None)),
    "vms": list,
}


def _check_fields(obj, fields: dict, optional: dict, where: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError("%s is not an object" % where)
    unknown = set(obj) - set(fields) - set(optional)
    if unknown:
        raise ValueError("%s has unknown field(s) %s" % (where, ", ".join(sorted(unknown))[:200]))
    for key, kind in fields.items():
        if key not in obj:
            raise ValueError("%s lacks %r" % (where, key))
    for key, kind in list(fields.items()) + list(optional.items()):
        if key in obj and (not isinstance(obj[key], kind) or isinstance(obj[key], bool)):
            raise ValueError("%s: %r has the wrong type" % (where, key))
        if isinstance(obj.get(key), str) and len(obj[key]) > MAX_TEXT:
            raise ValueError("%s: %r is longer than %d characters" % (where, key, MAX_TEXT))


def validate(data, host: str) -> dict:
    """``data`` if it is a well-formed owed document of ``host``; raises ``ValueError`` naming the fault."""
    _check_fields(data, _DOC_FIELDS, {}, "the document")
    if data["schema"] != SCHEMA:
        raise ValueError("schema %r is not %d" % (data["schema"], SCHEMA))
    if data["host"] != host:
        raise ValueError("it names host %r" % data["host"][:80])
    if len(data["vms"]) > MAX_VMS:
        raise ValueError("more than %d VMs" % MAX_VMS)
    seen = set()
    for index, vm in enumerate(data["vms"]):
        where = "vms[%d]" % index
        _check_fields(vm, _ENTRY_FIELDS, _OPTIONAL_ENTRY_FIELDS, where)
        if vm["state"] not in STATES:
            raise ValueError("%s: unknown state %r" % (where, vm["state"][:40]))
        if vm["uuid"] in seen:
            raise ValueError("%s: VM %s is listed twice" % (where, vm["uuid"]))
        seen.add(vm["uuid"])
        if vm["state"] in (CLAIMED, STARTED, VERIFIED, MOVED) and not vm["target"]:
            raise ValueError("%s: state %s without a target" % (where, vm["state"]))
        for copy in vm["copies"]:
            try:
                validate_host_name(copy)
            except InvalidInput as err:  # not a ValueError: read() would let it end every host's recovery
                raise ValueError("%s: copies: %s" % (where, err)) from None
        if vm["attempts"] < 0:
            raise ValueError("%s: negative attempts" % where)
    return data


# --------------------------------------------------------------------------------------------------- the store


def _writable(data: dict, host: str) -> None:
    """Refuse to publish what ``read`` would reject (e.g. from a hostile record): it would lock the host's recovery."""
    try:
        validate(data, host)
    except (ValueError, TypeError) as err:
        raise InvalidOwed("refusing to write an owed document of %s that would not validate: %s" % (host, err)) from None


class OwedBook:
    """The owed documents on the store. Reading validates; an invalid document is that host's error only."""

    def __init__(self, store: str, owner: str):
        self.docs = DocumentStore(owed_dir(store), KIND, max_bytes=MAX_BYTES, file_mode=0o640)
        self.owner = owner

    def read(self, host: str):
        """The current ``Document`` of ``host`` (its data validated) or None; raises ``InvalidOwed``."""
        try:
            doc = self.docs.read(host)
        except InvalidDocument as err:
            raise InvalidOwed(str(err)) from None
        except RecursionError:
            raise InvalidOwed("the owed document of %s is nested too deeply" % host) from None
        if doc is None:
            return None
        try:
            validate(doc.data, host)
        except (ValueError, TypeError) as err:
            raise InvalidOwed("the owed document of %s (generation %d) is invalid: %s" % (host, doc.generation, err)) from None
        return doc

    def read_all(self, hosts=None) -> tuple:
        """({host: Document}, {host: reason}) for every owed document (of ``hosts`` when given)."""
        found, invalid = {}, {}
        names = self.docs.names()
        for host in names if hosts is None else [h for h in names if h in set(hosts)]:
            try:
                doc = self.read(host)
            except InvalidOwed as err:
                invalid[host] = str(err)
                continue
            if doc is not None:
                found[host] = doc
        return found, invalid

    def open(self, host: str, data: dict, current=None):
        """Publish a newly opened document for ``host`` over ``current`` (a released or closed one, or None)."""
        _writable(data, host)
        if current is None:
            return self.docs.create(host, self.owner, data)
        return self.docs.replace(host, current, self.owner, data)

    def write(self, current, data: dict):
        """Compare-and-replace ``current`` with ``data`` (``Conflict`` if someone else wrote it meanwhile)."""
        _writable(data, current.name)
        doc = self.docs.replace(current.name, current, self.owner, data, released=current.released)
        self._prune(current.name)
        return doc

    def release(self, current):
        """The host was returned: its document becomes history (still readable, no longer open)."""
        doc = self.docs.replace(current.name, current, self.owner, current.data, released=True)
        self._prune(current.name)
        return doc

    def _prune(self, host: str) -> None:
        try:
            self.docs.prune(host, keep=2)
        except (StoreError, OSError):
            pass  # housekeeping only
