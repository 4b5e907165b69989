# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils._claims import (
    ClaimBook,
    Decision,
    assess,
    claims_dir,
    normalise_uuid,
)
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._storefile import Conflict, Document

VM = "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e"
INCIDENT = "h1/boot-a"
NOW = 1_800_000_000.0


def doc(state="claimed", incident=INCIDENT, target="h2", released=False, ttl=300.0, mtime=NOW - 10, owner="other"):
    data = {"failed_host": "h1", "incident": incident, "vm": VM, "vm_name": "g1", "target": target, "state": state}
    return Document("claim", VM, 3, owner, mtime, ttl, released, data, mtime, "/x")


@pytest.mark.parametrize("current, reachable, action, words", [
    (None, [], "create", "no claim"),
    (doc(state="failed", released=True), [], "takeover", "released"),
    (doc(incident="h1/boot-old"), [], "takeover", "another incident"),
    (doc(incident="h7/boot-x", state="started", ttl=None), [], "takeover", "another incident"),
    (doc(state="started", ttl=None), ["h2"], "skip", "already started on h2 by other"),
    (doc(state="started", ttl=None, mtime=NOW - 1e6), ["h2"], "skip", "already started"),
    (doc(), ["h2"], "skip", "claimed by other for h2 until"),
    (doc(mtime=NOW - 1000), ["h2", "h3"], "takeover", "expired"),
    (doc(mtime=NOW - 1000), ["h3"], "skip", "cannot be checked"),
    (doc(mtime=NOW - 302), ["h2"], "skip", "claimed by"),  # inside the skew allowance
    (doc(state="exploded"), ["h2"], "fail", "unknown state"),
    (doc(state="failed", released=False), ["h2"], "skip", "claimed by"),
])
def test_assess_table(current, reachable, action, words):
    decision = assess(current, INCIDENT, set(reachable), NOW, skew=5)
    assert decision.action == action
    assert words in decision.reason
    assert decision.may_claim == (action in ("create", "takeover"))
    if current is not None:
        assert decision.claimant == "other" and decision.current is current


def test_normalise_uuid():
    assert normalise_uuid(VM.upper()) == VM
    with pytest.raises(InvalidInput):
        normalise_uuid("../../etc/passwd")


def book(store, owner="me", incident=INCIDENT, ttl=300.0, clock=time.time):
    return ClaimBook(store, owner, "h1", incident, ttl, clock=clock)


def test_lifecycle_claim_start(tmp_path):
    store = str(tmp_path)
    mine = book(store)
    decision = mine.inspect(VM, ["h2"])
    assert decision.action == "create"
    claim = mine.acquire(VM, "g1", "h2", decision)
    assert claim.generation == 1 and claim.data["state"] == "claimed" and claim.ttl == 300.0
    assert os.path.isdir(os.path.join(claims_dir(store), VM))
    theirs = book(store, owner="them")
    assert theirs.inspect(VM, ["h2"]).action == "skip"
    claim = mine.retarget(claim, "h3")
    assert claim.data["target"] == "h3" and claim.generation == 2
    claim = mine.mark_started(claim, "h3")
    assert claim.data["state"] == "started" and claim.ttl is None
    seen = theirs.inspect(VM, ["h2", "h3"])
    assert seen.action == "skip" and "already started on h3 by me" in seen.reason
    # The next death of h1 (it booted in between) makes the claim history.
    later = book(store, owner="them", incident="h1/boot-b")
    assert later.inspect(VM, []).action == "takeover"


def test_failed_attempt_releases_the_claim(tmp_path):
    store = str(tmp_path)
    mine = book(store)
    claim = mine.acquire(VM, "g1", "h2", mine.inspect(VM, ["h2"]))
    released = mine.mark_failed(claim, "start on h2 failed: boom")
    assert released.released and released.data["state"] == "failed" and "boom" in released.data["reason"]
    again = book(store, owner="retry")
    decision = again.inspect(VM, [])
    assert decision.action == "takeover"
    assert again.acquire(VM, "g1", "h3", decision).owner == "retry"


def test_expired_claim_taken_over_only_if_its_target_was_checked(tmp_path):
    store = str(tmp_path)
    dead = book(store, owner="dead", ttl=60)
    claim = dead.acquire(VM, "g1", "h2", dead.inspect(VM, ["h2"]))
    old = time.time() - 3600
    os.utime(claim.path, (old, old))
    other = book(store, owner="other")
    assert other.inspect(VM, ["h3"]).action == "skip"
    decision = other.inspect(VM, ["h2", "h3"])
    assert decision.action == "takeover"
    assert other.acquire(VM, "g1", "h3", decision).generation == 2


def test_unreadable_claim_fails_never_taken_over(tmp_path):
    store = str(tmp_path)
    directory = os.path.join(claims_dir(store), VM)
    os.makedirs(directory)
    with open(os.path.join(directory, "0000000001.json"), "w") as handle:
        handle.write("{broken")
    decision = book(store).inspect(VM, ["h2"])
    assert decision.action == "fail" and "unreadable" in decision.reason
    with pytest.raises(InvalidInput):
        book(store).acquire(VM, "g1", "h2", decision)


def test_losing_the_race_raises_conflict(tmp_path):
    store = str(tmp_path)
    first, second = book(store, owner="a"), book(store, owner="b")
    d1, d2 = first.inspect(VM, []), second.inspect(VM, [])
    first.acquire(VM, "g1", "h2", d1)
    with pytest.raises(Conflict) as err:
        second.acquire(VM, "g1", "h3", d2)
    assert err.value.current.owner == "a"


def test_decision_that_forbids_claiming(tmp_path):
    with pytest.raises(InvalidInput):
        book(str(tmp_path)).acquire(VM, "g1", "h2", Decision("skip", "held"))


def test_generations_are_pruned(tmp_path):
    store = str(tmp_path)
    incident = 0
    for _step in range(10):
        incident += 1
        mine = book(store, incident="h1/boot-%d" % incident)
        mine.acquire(VM, "g1", "h2", mine.inspect(VM, []))
    files = os.listdir(os.path.join(claims_dir(store), VM))
    assert len(files) <= 5


# ----------------------------------------------------------------------------------------- real process races


def _evacuator(store, index, expired_target, barrier, results):
    claims = ClaimBook(store, "evacuator-%d" % index, "h1", INCIDENT, 300.0)
    barrier.wait()
    decision = claims.inspect(VM, [expired_target])
    if not decision.may_claim:
        results.put(("skipped", index))
        return
    try:
        claims.acquire(VM, "g1", "h%d" % (index + 2), decision)
        results.put(("won", index))
    except Conflict:
        results.put(("lost", index))


def _race(store, racers, expired_target="h2"):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(racers)
    results = ctx.Queue()
    procs = [ctx.Process(target=_evacuator, args=(store, i, expired_target, barrier, results)) for i in range(racers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=30) for _proc in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return outcomes


@pytest.mark.parametrize("round_", range(4))
def test_concurrent_evacuators_one_claims_the_vm(tmp_path, round_):
    store = str(tmp_path / str(round_))
    outcomes = _race(store, 10)
    assert len([o for o in outcomes if o[0] == "won"]) == 1
    assert book(store).docs.read(VM).generation == 1


@pytest.mark.parametrize("round_", range(4))
def test_concurrent_evacuators_take_over_an_expired_claim_once(tmp_path, round_):
    store = str(tmp_path / str(round_))
    dead = book(store, owner="dead", ttl=60)
    claim = dead.acquire(VM, "g1", "h2", dead.inspect(VM, ["h2"]))
    old = time.time() - 3600
    os.utime(claim.path, (old, old))
    outcomes = _race(store, 10)
    assert len([o for o in outcomes if o[0] == "won"]) == 1
    current = book(store).docs.read(VM)
    assert current.generation == 2 and current.owner.startswith("evacuator-")
