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


@pytest.mark.parametrize("current, reachable, fenced, action, words", [
    (None, [], [], "create", "no claim"),
    (doc(state="failed", released=True), [], [], "takeover", "released"),
    (doc(state="failed", released=True), ["h2"], [], "takeover", "released"),
    (doc(incident="h1/boot-old"), [], [], "takeover", "another incident"),
    (doc(incident="h7/boot-x", state="started", ttl=None), [], [], "takeover", "another incident"),
    # this incident, its target reachable (and not running it - the caller looked): retried on that same target
    (doc(state="started", ttl=None), ["h2"], [], "retry", "started by other on h2, which does not run it now: retried there"),
    (doc(state="started", ttl=None, mtime=NOW - 1e6), ["h2"], [], "retry", "retried there"),
    (doc(), ["h2"], [], "retry", "claimed by other on h2, which does not run it now"),
    (doc(mtime=NOW - 1000), ["h2", "h3"], [], "retry", "retried there"),  # age never matters: no expiry
    (doc(state="failed", released=False), ["h2"], [], "retry", "failed by other on h2"),
    # its target fenced (power-off confirmed): the copy there cannot run
    (doc(), [], ["h2"], "takeover", "claimed by other on h2, which was fenced since: that copy cannot run"),
    (doc(state="started", ttl=None), ["h3"], ["h2", "h4"], "takeover", "fenced since"),
    # its target cannot be checked: it may run there, however old the claim
    (doc(mtime=NOW - 1000), ["h3"], [], "skip", "claimed by other on h2, which cannot be checked: it may run there"),
    (doc(state="started", ttl=None, mtime=NOW - 1e6), [], ["h3"], "skip", "started by other on h2, which cannot be checked"),
    (doc(mtime=NOW - 1000, ttl=60), [], [], "skip", "cannot be checked"),
    (doc(state="exploded"), ["h2"], ["h2"], "fail", "unknown state"),
    (doc(state="exploded", released=True), [], [], "fail", "unknown state"),
])
def test_assess_table(current, reachable, fenced, action, words):
    decision = assess(current, INCIDENT, set(reachable), NOW, skew=5, fenced=frozenset(fenced))
    assert decision.action == action
    assert words in decision.reason
    assert decision.may_claim == (action in ("create", "takeover", "retry"))
    if current is not None:
        assert decision.claimant == "other" and decision.current is current


def test_assess_never_depends_on_the_clock():
    """Claims never expire: the same claim gets the same decision now, in a year, or with a clock a day off."""
    for current in (doc(), doc(state="started", ttl=None), doc(ttl=1.0, mtime=NOW - 3600)):
        for reachable, fenced in (([], []), (["h2"], []), ([], ["h2"])):
            decisions = set((d.action, d.reason) for d in (
                assess(current, INCIDENT, set(reachable), now, skew=skew, fenced=set(fenced))
                for now in (NOW - 86400, NOW, NOW + 365 * 86400) for skew in (0, 5, 3600)))
            assert len(decisions) == 1, decisions


def test_normalise_uuid():
    assert normalise_uuid(VM.upper()) == VM
    with pytest.raises(InvalidInput):
        normalise_uuid("../../etc/passwd")


def book(store, owner="me", incident=INCIDENT, ttl=None, clock=time.time):
    """A claim book as the engine opens one: claims are written without a ttl (they never expire)."""
    return ClaimBook(store, owner, "h1", incident, ttl, clock=clock)


def test_lifecycle_claim_start(tmp_path):
    store = str(tmp_path)
    mine = book(store)
    decision = mine.inspect(VM, ["h2"])
    assert decision.action == "create"
    claim = mine.acquire(VM, "g1", "h2", decision)
    assert claim.generation == 1 and claim.data["state"] == "claimed" and claim.ttl is None
    assert os.path.isdir(os.path.join(claims_dir(store), VM))
    theirs = book(store, owner="them")
    assert theirs.inspect(VM, []).action == "skip"            # h2 cannot be checked by them: it may run there
    assert theirs.inspect(VM, ["h3"]).action == "skip"
    assert theirs.inspect(VM, ["h2"]).action == "retry"       # they looked at h2: not running there, so retry there
    claim = mine.retarget(claim, "h3")
    assert claim.data["target"] == "h3" and claim.generation == 2
    claim = mine.mark_started(claim, "h3")
    assert claim.data["state"] == "started" and claim.ttl is None
    seen = theirs.inspect(VM, ["h2"])
    assert seen.action == "skip" and "started by me on h3, which cannot be checked" in seen.reason
    seen = theirs.inspect(VM, [], fenced=["h3"])
    assert seen.action == "takeover" and "fenced since" in seen.reason
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


def test_an_old_claim_is_never_taken_over_for_its_age(tmp_path):
    """Where the old rules let a claim expire, the target is now checked: retry there, wait, or take over once fenced."""
    store = str(tmp_path)
    dead = book(store, owner="dead", ttl=60)  # even a claim written with a ttl, long expired
    claim = dead.acquire(VM, "g1", "h2", dead.inspect(VM, ["h2"]))
    old = time.time() - 3600
    os.utime(claim.path, (old, old))
    other = book(store, owner="other")
    assert other.inspect(VM, ["h3"]).action == "skip"
    decision = other.inspect(VM, ["h2", "h3"])
    assert decision.action == "retry"
    retried = other.acquire(VM, "g1", decision.current.data["target"], decision)
    assert (retried.generation, retried.owner, retried.data["target"], retried.ttl) == (2, "other", "h2", None)
    third = book(store, owner="third")
    assert third.inspect(VM, ["h3"]).action == "skip"
    decision = third.inspect(VM, ["h3"], fenced=["h2"])
    assert decision.action == "takeover"
    assert third.acquire(VM, "g1", "h3", decision).generation == 3


def test_a_retry_on_the_same_target_is_a_compare_and_replace(tmp_path):
    """Two evacuators that both decide to retry: one replaces the claim, the other gets Conflict and waits."""
    store = str(tmp_path)
    dead = book(store, owner="dead")
    dead.acquire(VM, "g1", "h2", dead.inspect(VM, []))
    first, second = book(store, owner="a"), book(store, owner="b")
    d1, d2 = first.inspect(VM, ["h2"]), second.inspect(VM, ["h2"])
    assert d1.action == d2.action == "retry"
    first.acquire(VM, "g1", "h2", d1)
    with pytest.raises(Conflict) as err:
        second.acquire(VM, "g1", "h2", d2)
    assert err.value.current.owner == "a"
    assert second.inspect(VM, ["h2"]).claimant == "a"


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


def _evacuator(store, index, reachable, fenced, barrier, results):
    claims = ClaimBook(store, "evacuator-%d" % index, "h1", INCIDENT, None)
    barrier.wait()
    decision = claims.inspect(VM, reachable, fenced)
    read = 0 if decision.current is None else decision.current.generation
    if not decision.may_claim:
        results.put(("skipped", index, decision.action, read))
        return
    target = decision.current.data["target"] if decision.action == "retry" else "h%d" % (index + 3)
    try:
        claims.acquire(VM, "g1", target, decision)
        results.put(("won", index, decision.action, read))
    except Conflict:
        results.put(("lost", index, decision.action, read))


def _race(store, racers, reachable=(), fenced=()):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(racers)
    results = ctx.Queue()
    procs = [ctx.Process(target=_evacuator, args=(store, i, list(reachable), list(fenced), barrier, results))
             for i in range(racers)]
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


@pytest.mark.parametrize("round_", range(2))
@pytest.mark.parametrize("why", ["fenced", "released", "retry"])
def test_concurrent_evacuators_take_over_a_claim_once(tmp_path, round_, why):
    """A claim whose target was fenced, a released claim, or one retried on its reachable target: of the evacuators
    that decide to claim it from one generation, exactly one publishes the next. (An evacuator that reads only after
    the winner published sees the winner's claim: it waits - its target cannot be checked - or, for a retry, retries
    on that same target, from that newer generation.)"""
    store = str(tmp_path / str(round_))
    dead = book(store, owner="dead")
    claim = dead.acquire(VM, "g1", "h2", dead.inspect(VM, []))
    if why == "released":
        claim = dead.mark_failed(claim, "start on h2 failed")
    outcomes = _race(store, 10, reachable=["h2"] if why == "retry" else [], fenced=["h2"] if why == "fenced" else [])
    first_read = [o for o in outcomes if o[3] == claim.generation]
    assert first_read and set(o[2] for o in first_read) == {"retry" if why == "retry" else "takeover"}
    winners = [o for o in outcomes if o[0] == "won"]
    for generation in set(o[3] for o in outcomes):
        assert len([o for o in winners if o[3] == generation]) <= 1, outcomes
    # (A winner whose generation a successor replaced before the winner's own check may report Conflict, so the
    # first readers can end with no winner - never with two.)
    assert winners and len([o for o in first_read if o[0] == "won"]) <= 1
    if why != "retry":  # the winner's claim names an unchecked target: every later reader waits
        assert len(winners) == 1 and set(o[2] for o in outcomes if o[3] > claim.generation) <= {"skip"}
    current = book(store).docs.read(VM)
    assert current.generation > claim.generation and current.owner in ["evacuator-%d" % o[1] for o in winners]
    assert current.data["state"] == "claimed" and not current.released and current.ttl is None
    assert (current.data["target"] == "h2") == (why == "retry")


@pytest.mark.parametrize("round_", range(2))
def test_concurrent_evacuators_never_take_a_claim_whose_target_cannot_be_checked(tmp_path, round_):
    store = str(tmp_path / str(round_))
    dead = book(store, owner="dead")
    dead.mark_started(dead.acquire(VM, "g1", "h2", dead.inspect(VM, [])), "h2")
    outcomes = _race(store, 10, reachable=["h3"])
    assert [o[0] for o in outcomes] == ["skipped"] * 10
    assert book(store).docs.read(VM).owner == "dead"
