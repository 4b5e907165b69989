# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Cluster state kept on the shared store, built on ``_storefile`` documents:

- the cluster lease ``<store>/kvmha/lease/<cluster>``: whoever holds it may fence and recover in that cluster;
  taken over only once expired (judged by the store's clock plus a skew allowance) or released;
- fenced marks ``<store>/kvmha/fenced/<host>``: the host was found powered off (or fenced) and its VMs moved; it must
  be reconciled (its stale domains removed) before it counts as live again. They never expire;
- maintenance marks ``<store>/kvmha/maintenance/<host>``: with owner, reason and an expiry after which the
  maintenance ends by itself;
- confirmed-off marks ``<store>/kvmha/confirmed_off/<host>``: an operator's word that the host is powered off
  (playbooks/confirm_off.yml), bound to the host's last heartbeat record; used up by the recovery it allows, and
  expired (store clock) if no run used it.
A mark is removed by publishing a released generation, so its history stays on the store.
"""

from __future__ import annotations

import threading
import time

from ._errors import Conflict, InvalidDocument, InvalidInput, LeaseHeld, LeaseLost
from ._heartbeat import store_dir, validate_host_name
from ._storefile import DocumentStore

LEASE = "lease"
FENCED = "fenced"
MAINTENANCE = "maintenance"
CONFIRMED_OFF = "confirmed_off"
MARK_KINDS = (FENCED, MAINTENANCE)  # the kinds every watch reads; a confirm-off only the suspects' (suspect_marks)
DEFAULT_SKEW = 5.0


def documents(store: str, kind: str) -> DocumentStore:
    return DocumentStore(store_dir(store, kind), kind)


def store_now(store: str) -> float:
    """The store's clock, on which every lease and mark expiry is judged (see ``DocumentStore.now``)."""
    return documents(store, LEASE).now()


def store_clock(store: str):
    """A clock that follows the store's: its offset from ours is measured once, here (one probe file)."""
    offset = store_now(store) - time.time()
    return lambda: time.time() + offset


# --------------------------------------------------------------------------------------------------- lease


def acquire_lease(store: str, cluster: str, owner: str, ttl: float, skew: float = DEFAULT_SKEW, dry_run: bool = False) -> dict:
    """Take or renew the lease of ``cluster`` for ``owner``; raise ``LeaseHeld`` if someone else holds it.

    Returns ``{changed, takeover, lease}``. With ``dry_run`` nothing is written and ``lease`` is what would be.
    """
    docs = documents(store, LEASE)
    current = docs.read(cluster)
    if current is not None and current.owner != owner and current.live(now=docs.now(), skew=skew):
        raise LeaseHeld(
            "the lease of cluster %s is held by %s until %s" % (cluster, current.owner, _when(current.expires_at)),
            result={"acquired": False, "holder": current.as_dict()},
        )
    takeover = current is not None and current.owner != owner
    data = {"cluster": cluster, "acquired_at": time.time(), "takeover_from": current.owner if takeover else None}
    if dry_run:
        return {"changed": True, "takeover": takeover, "lease": {"name": cluster, "owner": owner, "ttl": ttl, "data": data}}
    try:
        if current is None:
            lease = docs.create(cluster, owner, data, ttl)
        else:
            lease = docs.replace(cluster, current, owner, data, ttl)
    except Conflict as err:
        holder = err.current.as_dict() if err.current is not None else None
        raise LeaseHeld("another watchdog took the lease of cluster %s first" % cluster,
                        result={"acquired": False, "holder": holder}) from err
    docs.prune(cluster)
    return {"changed": True, "takeover": takeover, "lease": lease.as_dict()}


def check_lease(store: str, cluster: str, owner: str, generation: int) -> dict:
    """``{changed: False, lease}`` if ``owner`` still holds generation ``generation``, else ``LeaseLost``."""
    return {"changed": False, "lease": _held(documents(store, LEASE), cluster, owner, generation).as_dict()}


def _held(docs: DocumentStore, cluster: str, owner: str, generation: int):
    current = docs.read(cluster)
    if current is None or current.generation != generation or current.owner != owner or current.released:
        holder = None if current is None else current.as_dict()
        raise LeaseLost("the lease of cluster %s is no longer ours (generation %d): %s" % (
            cluster, generation, "gone" if current is None else "generation %d by %s%s" % (
                current.generation, current.owner, ", released" if current.released else "")),
            result={"acquired": False, "holder": holder})
    return current


def renew_lease(store: str, cluster: str, owner: str, generation: int, ttl: float) -> dict:
    """Renew the lease only if it is still the generation ``owner`` holds (a fencing token); else ``LeaseLost``.

    Unlike ``acquire_lease`` this never takes a lease over: a holder that was frozen past its ttl, or whose clock
    is off, learns here that another watchdog may have acted since, and stops.
    """
    docs = documents(store, LEASE)
    current = _held(docs, cluster, owner, generation)
    data = dict(current.data, renewed_at=time.time())
    try:
        lease = docs.replace(cluster, current, owner, data, ttl)
    except Conflict as err:
        raise LeaseLost("the lease of cluster %s was taken over while it was renewed" % cluster,
                        result={"acquired": False, "holder": err.current.as_dict() if err.current else None}) from err
    docs.prune(cluster)
    return {"changed": True, "takeover": False, "lease": lease.as_dict()}


class LeaseKeeper:
    """Holds a run's cluster lease while it acts: ``hold()`` before every step that must not run twice.

    The first ``hold()`` renews at once (the lease may have aged since it was taken); later ones renew once a third of
    the ttl has passed, and otherwise check that the generation is still ours. Either way a lease that moved on
    raises ``LeaseLost``. Thread-safe: the parallel starts of one run share it.
    """

    def __init__(self, store: str, cluster: str, owner: str, generation: int, ttl: float, clock=time.monotonic):
        self.store, self.cluster, self.owner, self.generation, self.ttl = store, cluster, owner, generation, ttl
        self.clock = clock
        self.renewed = None
        self.lock = threading.Lock()

    def hold(self) -> None:
        with self.lock:
            if self.renewed is None or self.clock() - self.renewed > self.ttl / 3.0:
                lease = renew_lease(self.store, self.cluster, self.owner, self.generation, self.ttl)["lease"]
                self.generation, self.renewed = lease["generation"], self.clock()
                return
            current = documents(self.store, LEASE).read(self.cluster)
            if current is None or current.generation != self.generation or current.released:
                raise LeaseLost("the lease of cluster %s moved on from generation %d" % (self.cluster, self.generation))


def release_lease(store: str, cluster: str, owner: str, dry_run: bool = False) -> dict:
    """Release the lease if ``owner`` holds it; anything else is left alone (changed false)."""
    docs = documents(store, LEASE)
    current = docs.read(cluster)
    if current is None or current.owner != owner or current.released:
        return {"changed": False, "lease": None if current is None else current.as_dict()}
    if dry_run:
        return {"changed": True, "lease": dict(current.as_dict(), released=True)}
    try:
        released = docs.release(current)
    except Conflict:
        return {"changed": False, "lease": None}  # someone took it over after it expired: not ours any more
    return {"changed": True, "lease": released.as_dict()}


def check_fence_token(store: str, cluster: str, owner: str, generation: int, host: str, check_mode: bool = False) -> str | None:
    """The last look before a power-off of ``host``: why it must not be sent, or None to go on.

    The run's cluster lease must still be the ``generation`` it holds (the fencing token; ``LeaseLost`` otherwise,
    not checked in check mode, which holds no lease). A maintenance mark on the host - live, or unreadable (the
    cautious reading) - is returned as the reason: an operator's choice, not a failure.
    """
    validate_host_name(host)
    if not check_mode:
        check_lease(store, cluster, owner, generation)
    docs = documents(store, MAINTENANCE)
    try:
        mark = docs.read(host)
    except InvalidDocument as err:
        return "%s has a maintenance mark that cannot be read, taken as maintenance: %s" % (host, err)
    if mark is None or not mark.live(docs.now(), DEFAULT_SKEW):
        return None
    return "%s is in maintenance (by %s: %s)" % (host, mark.owner, mark.data.get("reason") or "no reason given")


# --------------------------------------------------------------------------------------------------- marks


def read_marks(store: str, kind: str, now: float | None = None, skew: float = DEFAULT_SKEW) -> dict:
    """All marks of ``kind``: {"active": {host: mark}, "expired": {host: mark}, "invalid": {host: reason}}.

    Released marks are history and not returned. A mark that cannot be parsed is reported, never ignored:
    callers treat it as active, the cautious reading for both kinds.
    """
    docs = documents(store, kind)
    now = docs.now() if now is None else now
    marks = {"active": {}, "expired": {}, "invalid": {}}
    for host in docs.names():
        try:
            current = docs.read(host)
        except InvalidDocument as err:
            marks["invalid"][host] = str(err)
            continue
        if current is None or current.released:
            continue
        state = "expired" if current.expired(now, skew) else "active"
        marks[state][host] = current.as_dict()
    return marks


def read_marks_of(store: str, kinds, hosts=None, now: float | None = None, skew: float = DEFAULT_SKEW) -> dict:
    """The marks of ``kinds`` as ``read_marks`` gives them, ``{kind: {state: {host: ...}}}``, of ``hosts`` only
    (every host when None), all judged on one reading of the store's clock."""
    now = store_now(store) if now is None else now
    wanted = None if hosts is None else set(hosts)
    marks = {}
    for kind in kinds:
        read = read_marks(store, kind, now=now, skew=skew)
        marks[kind] = {state: {h: v for h, v in found.items() if wanted is None or h in wanted} for state, found in read.items()}
    return marks


def suspect_marks(store: str, hosts: list, now: float | None = None) -> dict:
    """The maintenance marks and operator's confirm-offs of ``hosts``, read for a decision on them (only the active
    and the unreadable ones are evidence; an expired mark is not)."""
    return read_marks_of(store, (MAINTENANCE, CONFIRMED_OFF), hosts, now)


def set_mark(store: str, kind: str, host: str, owner: str, data: dict, ttl: float | None = None, dry_run: bool = False) -> dict:
    """Create (or refresh an expired/released) mark; an active mark is left as it is (changed false)."""
    validate_host_name(host)
    docs = documents(store, kind)
    current = docs.read(host)
    if current is not None and current.live(now=docs.now()):
        return {"changed": False, "mark": current.as_dict()}
    planned = {"name": host, "owner": owner, "ttl": ttl, "released": False, "data": data}
    if dry_run:
        return {"changed": True, "mark": planned}
    mark = docs.create(host, owner, data, ttl) if current is None else docs.replace(host, current, owner, data, ttl)
    docs.prune(host)
    return {"changed": True, "mark": mark.as_dict()}


def confirm_off(store: str, host: str, operator: str, data: dict, ttl: float, dry_run: bool = False) -> dict:
    """Publish an operator's confirm-off of ``host``, valid ``ttl`` seconds on the store's clock.

    Unlike ``set_mark`` an active confirmation is replaced: the newest word is the one given against the host's
    newest heartbeat record (``data`` holds its ``seq`` and ``boot_id``), so it is the one that can still hold.
    """
    validate_host_name(host)
    if not str(data.get("reason") or "").strip():
        raise InvalidInput("confirming %s off needs a reason" % host)
    docs = documents(store, CONFIRMED_OFF)
    current = docs.read(host)
    if dry_run:
        return {"changed": True, "mark": {"name": host, "owner": operator, "ttl": ttl, "released": False, "data": data}}
    mark = docs.create(host, operator, data, ttl) if current is None else docs.replace(host, current, operator, data, ttl)
    docs.prune(host)
    return {"changed": True, "mark": mark.as_dict()}


def extend_mark(store: str, kind: str, host: str, owner: str, ttl: float, dry_run: bool = False) -> dict:
    """Give an active mark a new expiry, ``ttl`` seconds from now (store clock), without ever ending it in between.

    The owner and reason stay; who extended it is kept in the data. No active mark: ``InvalidInput``, since an
    extension must not silently enter (or re-enter) maintenance.
    """
    validate_host_name(host)
    docs = documents(store, kind)
    current = docs.read(host)
    if current is None or not current.live(now=docs.now()):
        raise InvalidInput("%s is not in %s: nothing to extend (enter it instead)" % (host, kind))
    data = dict(current.data, extended_by=owner)
    if dry_run:
        return {"changed": True, "mark": dict(current.as_dict(), ttl=ttl, data=data), "previous": current.as_dict()}
    mark = docs.replace(host, current, current.owner, data, ttl)
    docs.prune(host)
    return {"changed": True, "mark": mark.as_dict(), "previous": current.as_dict()}


def clear_mark(store: str, kind: str, host: str, owner: str, dry_run: bool = False) -> dict:
    """Release the mark of ``host`` (an expired one too); no mark is no change."""
    validate_host_name(host)
    docs = documents(store, kind)
    current = docs.read(host)
    if current is None or current.released:
        return {"changed": False, "mark": None}
    if dry_run:
        return {"changed": True, "mark": dict(current.as_dict(), released=True)}
    released = docs.replace(host, current, owner, current.data, current.ttl, released=True)
    docs.prune(host)
    return {"changed": True, "mark": released.as_dict()}


def _when(timestamp) -> str:
    if timestamp is None:
        return "it is released"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
