# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Per-VM claims: the store-level guarantee that two evacuators never start one VM twice.

A claim is a ``_storefile`` document named after the VM's UUID under ``<store>/kvmha/claims/``. Its data::

    {"failed_host": "h1", "incident": "h1/<boot_id>", "vm": "<uuid>", "vm_name": "g1",
     "target": "h2", "state": "claimed" | "started" | "failed", "reason": "..."}

An evacuator must hold the claim (have published its current generation) before it defines or starts the VM.

Lifecycle:
- ``claimed`` (with ``ttl``): an evacuator is about to start the VM on ``target``.
- ``started`` (no ttl, never expires): the VM was started on ``target`` for this incident. Nobody starts it again
  for the same incident, even if it is not running any more (someone may have stopped it on purpose).
- ``failed`` (published *released*): the attempt gave up with the VM not started; anyone may try again.

Whether an existing claim may be taken over is decided by ``assess`` (pure):

=====================================================  ================================================
current claim                                           decision
=====================================================  ================================================
none                                                    create generation 1
released (``failed``)                                   take over
another incident (other failed host or boot)            take over: it is history (the VM has moved on)
``claimed`` or ``started`` in this incident, its        retry on that same target: libvirt refuses a
target reachable and not running the VM                 second start of one domain on one host, so this
                                                        is safe even if the claimant still works on it
``claimed`` or ``started`` in this incident, its        take over: the copy there cannot run
target fenced (power-off confirmed)
``claimed`` or ``started``, target cannot be checked    skip: the VM may be running where we cannot look
unreadable or unknown state                             fail: an operator must look
=====================================================  ================================================

A retry or take-over moves an owed VM on; a ``started`` claim is not a promise that the VM still runs (the owed
document of its failed host tracks that, see ``_recovery``).

Every take-over is a compare-and-replace of the exact generation that was assessed, so of two evacuators that
both decide to take over, exactly one succeeds; the other gets ``Conflict`` and skips the VM.

The incident id defaults to ``<failed host>/<boot_id of its last heartbeat>``: a host that dies, is fenced (power
off) and later dies again has booted in between, so a claim from its earlier death is recognisably stale, while
two evacuators of the same death always agree on the id.
"""

from __future__ import annotations

import time

from ._domainxml import normalise_uuid
from ._errors import InvalidInput, StoreError
from ._heartbeat import store_dir
from ._storefile import DocumentStore, InvalidDocument

KIND = "claim"
CLAIMED, STARTED, FAILED = "claimed", "started", "failed"
STATES = (CLAIMED, STARTED, FAILED)
DEFAULT_SKEW = 5.0


def claims_dir(store: str) -> str:
    return store_dir(store, "claims")


class Decision:
    """What ``assess`` concluded about one VM's claim. ``action``: create, takeover, skip or fail."""

    __slots__ = ("action", "reason", "current", "claimant")

    def __init__(self, action, reason="", current=None, claimant=None):
        self.action = action
        self.reason = reason
        self.current = current
        self.claimant = claimant

    @property
    def may_claim(self) -> bool:
        return self.action in ("create", "takeover", "retry")

    def __repr__(self) -> str:
        return "Decision(%r, %r)" % (self.action, self.reason)


def assess(current, incident: str, reachable, now: float, skew: float = DEFAULT_SKEW, fenced=frozenset()) -> Decision:
    """Decide whether the VM guarded by claim ``current`` (a ``Document`` or ``None``) may be claimed.

    ``reachable``: hosts whose libvirt the caller could query and did not see the VM running on. ``fenced``:
    hosts whose power-off is confirmed. Pure. ``now`` and ``skew`` are kept for callers that judge expiry.
    """
    del now, skew  # a claim's target is checked, never trusted to have expired
    if current is None:
        return Decision("create", "no claim yet")
    data = current.data
    owner = current.owner
    state = data.get("state")
    target = data.get("target")
    if state not in STATES:
        return Decision("fail", "claim generation %d by %s has an unknown state %r" % (current.generation, owner, state),
                        current, owner)
    if current.released:
        return Decision("takeover", "previous claim by %s was released (%s)" % (owner, state), current, owner)
    if data.get("incident") != incident:
        return Decision("takeover", "previous claim by %s belongs to another incident (%s)" % (owner, data.get("incident")),
                        current, owner)
    if target in reachable:
        return Decision("retry", "%s by %s on %s, which does not run it now: retried there" % (state, owner, target),
                        current, owner)
    if target in fenced:
        return Decision("takeover", "%s by %s on %s, which was fenced since: that copy cannot run" % (state, owner, target),
                        current, owner)
    return Decision("skip", "%s by %s on %s, which cannot be checked: it may run there" % (state, owner, target),
                    current, owner)


def _when(ts) -> str:
    if ts is None:
        return "never"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class ClaimBook:
    """Reads, takes and updates the claims of one evacuation (one failed host, one incident, one owner)."""

    def __init__(self, store: str, owner: str, failed_host: str, incident: str, ttl: float,
                 skew: float = DEFAULT_SKEW, clock=time.time):
        self.docs = DocumentStore(claims_dir(store), KIND)
        self.owner = owner
        self.failed_host = failed_host
        self.incident = incident
        self.ttl = ttl
        self.skew = skew
        self.clock = clock

    def inspect(self, vm_uuid: str, reachable, fenced=frozenset()) -> Decision:
        """Read the VM's claim and ``assess`` it. An unreadable claim is a ``fail`` decision, never a take-over."""
        try:
            current = self.docs.read(normalise_uuid(vm_uuid))
        except InvalidDocument as err:
            return Decision("fail", "claim is unreadable: %s" % err)
        return assess(current, self.incident, set(reachable), self.clock(), self.skew, set(fenced))

    def _data(self, vm_uuid, vm_name, target, state, reason=""):
        data = {"failed_host": self.failed_host, "incident": self.incident, "vm": vm_uuid, "vm_name": vm_name,
                "target": target, "state": state}
        if reason:
            data["reason"] = reason[:512]
        return data

    def acquire(self, vm_uuid: str, vm_name: str, target: str, decision: Decision):
        """Publish our ``claimed`` claim (create or compare-and-replace). Raises ``Conflict`` if we lost the race."""
        name = normalise_uuid(vm_uuid)
        if not decision.may_claim:
            raise InvalidInput("claim for %s may not be taken: %s" % (vm_name, decision.reason))
        data = self._data(name, vm_name, target, CLAIMED)
        if decision.current is None:
            claim = self.docs.create(name, self.owner, data, self.ttl)
        else:
            claim = self.docs.replace(name, decision.current, self.owner, data, self.ttl)
        self._prune(name)
        return claim

    def renew(self, claim):
        """Publish a fresh generation of our claim so that its ttl starts again. ``Conflict`` if it was taken over."""
        return self.docs.replace(claim.name, claim, self.owner, dict(claim.data), self.ttl)

    def retarget(self, claim, target: str):
        """Our claim now points at another target (re-planned); the ttl starts again."""
        data = dict(claim.data, target=target)
        return self.docs.replace(claim.name, claim, self.owner, data, self.ttl)

    def mark_started(self, claim, target: str):
        """The VM runs on ``target``: the claim never expires for this incident."""
        data = dict(claim.data, target=target, state=STARTED)
        data.pop("reason", None)
        return self.docs.replace(claim.name, claim, self.owner, data, None)

    def mark_failed(self, claim, reason: str):
        """The VM was not started: release the claim so that a later run may try again."""
        data = dict(claim.data, state=FAILED, reason=reason[:512])
        return self.docs.replace(claim.name, claim, self.owner, data, self.ttl, released=True)

    def _prune(self, name: str) -> None:
        try:
            self.docs.prune(name, keep=4)
        except (StoreError, OSError):
            pass  # housekeeping only; never let it fail an evacuation
