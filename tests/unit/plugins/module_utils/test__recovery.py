# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Owed recoveries: the pure transitions, the document rules, and the whole engine under random interleavings of
controller deaths, target deaths and capacity changes (hypothesis).

The interleaving test drives the real ``Evacuation`` against a real store in a temporary directory; only libvirt is
an in-memory world (``World``), because the property needs thousands of starts and deaths: libvirt's own behaviour
that the safety rests on - one domain starts once per host, a dead host's copies keep their disks until it is
powered off - is modelled explicitly, and the same engine is tested against libvirt's real test driver in
tests/unit/plugins/modules/test_vm_evacuate.py and against real libvirtd and QEMU end to end (tests/e2e).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
import threading
import uuid as uuidlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks
from ansible_collections.kvmha.cluster.plugins.module_utils import _recovery as owed
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import KvmhaError, LibvirtError
from ansible_collections.kvmha.cluster.plugins.module_utils._evacuation import Evacuation
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import build_record, encode_record, write_atomic
from ansible_collections.kvmha.cluster.plugins.module_utils._storefile import Conflict, DocumentStore
from ansible_collections.kvmha.cluster.plugins.modules.vm_evacuate import ARGUMENT_SPEC

NOW = 1_800_000_000.0


def vm_record(name, mem=64):
    return {"uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, name)), "name": name, "ha": True, "priority": 50,
            "memory_mib": mem, "vcpus": 1, "disks": [], "group": ""}


def document(*states):
    data = owed.new_document("h1", "c", "h1/b", "SUSPECT", "R8", [vm_record("g%d" % i) for i in range(len(states))], NOW, "w")
    for i, state in enumerate(states):
        target = "h2" if state in ("claimed", "started", "verified", "moved") else None
        data["vms"][i] = owed.transition(data["vms"][i], state, NOW, target=target)
    return data


# ------------------------------------------------------------------------------------------------ pure rules


@given(st.integers(0, 80), st.floats(0.1, 100), st.floats(100, 10_000))
def test_backoff_doubles_and_is_capped(attempts, base, cap):
    wait = owed.backoff(attempts, base, cap)
    assert 0 <= wait <= cap
    assert wait == 0 if attempts == 0 else wait >= min(base, cap)
    assert owed.backoff(attempts + 1, base, cap) >= wait


def test_a_retrying_entry_waits_for_its_next_try_unless_the_clock_jumped_back():
    entry = owed.transition(document("owed")["vms"][0], owed.UNPLACED, NOW, error="no room", attempted=True, retry=(30, 300))
    assert entry["next_try"] == NOW + 30 and entry["attempts"] == 1
    assert not owed.due(entry, NOW + 10) and owed.due(entry, NOW + 30)
    assert owed.due(entry, NOW - 86400), "a next try a day ahead means the clock went back a day: due now"
    assert not owed.due(dict(entry, state=owed.VERIFIED, next_try=None), NOW)


def test_a_document_closes_only_when_every_vm_is_terminal():
    assert owed.is_open(owed.close_if_done(document("verified", "started"), NOW))
    closed = owed.close_if_done(document("verified", "abandoned", "moved"), NOW)
    assert closed["closed_at"] == NOW and not owed.is_open(closed)


@given(st.lists(st.sampled_from(owed.STATES), min_size=1, max_size=6), st.sampled_from(["h1", "h2", "h3"]))
def test_a_returning_host_never_loses_a_copy_that_is_not_verified_elsewhere(states, host):
    documents = {"h1": document(*states)}
    remove, keep = owed.stale_copies(host, documents)
    for vm in documents["h1"]["vms"]:
        if vm["uuid"] in remove:
            assert vm["state"] == owed.VERIFIED and vm["target"] != host
    assert len(remove) + len(keep) == (len(states) if host == "h1" else 0)


def test_a_returning_host_removes_exactly_the_copies_verified_elsewhere_and_says_why_it_keeps_the_others():
    """Pins stale_copies (mutation testing found it loosely tested): host names are built at run time, so that an
    identity check in place of equality, or an ordering in place of inequality, is caught."""
    host = "".join(["h", "3"])
    data = owed.new_document("h1", "c", "h1/b", "SUSPECT", "R8", [vm_record("g%d" % i) for i in range(5)], NOW, "w")
    placed = [("verified", "h2"), ("verified", "h4"), ("verified", "".join(["h", "3"])), ("abandoned", None), ("claimed", "h4")]
    for i, (state, target) in enumerate(placed):
        data["vms"][i] = owed.add_copy(owed.transition(data["vms"][i], state, NOW, target=target), host)
    remove, keep = owed.stale_copies(host, json.loads(json.dumps({"h1": data})))  # as read: every string a new object
    assert remove == [data["vms"][0]["uuid"], data["vms"][1]["uuid"]]  # verified on h2 and on h4: stale here
    assert {k["name"]: k["reason"] for k in keep} == {
        "g2": "it was verified running on h3 itself",
        "g3": "it was abandoned by an operator and runs nowhere else: this may be its only copy",
        "g4": "it is still owed by h1 (claimed) and has no verified copy elsewhere: this may be its only copy",
    }


def test_a_returning_host_judges_every_vm_of_its_own_recovery_even_with_no_copy_noted_on_it():
    """The host's own document as read from the store (JSON: equal strings, never identical ones)."""
    data = owed.new_document("h1", "c", "h1/b", "SUSPECT", "R8", [vm_record("g%d" % i) for i in range(3)], NOW, "w")
    for i, (state, target) in enumerate([("verified", "h2"), ("verified", "h1"), ("started", "h3")]):
        data["vms"][i] = owed.transition(data["vms"][i], state, NOW, target=target)
    remove, keep = owed.stale_copies("".join(["h", "1"]), json.loads(json.dumps({"h1": data})))
    assert remove == [data["vms"][0]["uuid"]]
    assert {k["name"]: k["reason"] for k in keep} == {
        "g1": "it was verified running on h1 itself",
        "g2": "it is still owed by h1 (started) and has no verified copy elsewhere: this may be its only copy",
    }


def test_a_returning_host_answers_only_for_its_own_vms_and_the_copies_made_on_it():
    """Other hosts' recoveries, of VMs never copied onto the returning host, neither hold it back (a kept VM keeps it
    fenced) nor name anything for it to remove - whichever way their names sort against it."""
    documents = {"h1": document("owed")}
    for other in ("h0", "h2"):
        data = owed.new_document(other, "c", other + "/b", "SUSPECT", "R8", [vm_record(other + "a"), vm_record(other + "b")],
                                 NOW, "w")
        data["vms"][0] = owed.transition(data["vms"][0], owed.VERIFIED, NOW, target="h3")
        documents[other] = data
    remove, keep = owed.stale_copies("h1", documents)
    assert remove == [] and [k["name"] for k in keep] == ["g0"]


def test_the_latest_entry_decides_across_documents():
    old = document("verified")  # g0 verified on h2 in h1's recovery ...
    newer = owed.new_document("h2", "c", "h2/b", "SUSPECT", "R8", [vm_record("g0")], NOW + 50, "w")  # ... then h2 died
    newer["vms"][0] = dict(newer["vms"][0], copies=["h3"])
    remove, keep = owed.stale_copies("h3", {"h1": old, "h2": newer})
    assert remove == [] and keep[0]["name"] == "g0" and "still owed by h2" in keep[0]["reason"]


# ------------------------------------------------------------------------------------------------ what the rules record
# Mutation testing (docs/TESTING.md) found these loosely pinned: the exact fields, waits and messages that a run and an
# operator read back from an owed document.


def test_an_owed_entry_records_the_vm_as_its_host_last_reported_it():
    vm = dict(vm_record("g1"), group="web")
    assert owed.new_entry(vm, NOW) == {
        "uuid": vm["uuid"], "name": "g1", "priority": 50, "group": "web", "memory_mib": 64, "vcpus": 1,
        "xml_source": "kvmha/vms/%s.xml" % vm["uuid"], "state": "owed", "target": None, "copies": [], "attempts": 0,
        "last_error": "", "next_try": None, "since": NOW, "updated": NOW}
    no_group = dict(vm)
    del no_group["group"]
    assert owed.new_entry(dict(vm, group=None), NOW)["group"] == "" == owed.new_entry(no_group, NOW)["group"]


def test_a_new_recovery_owes_exactly_the_ha_vms_and_names_the_run_that_opened_it():
    vms = [vm_record("g1"), dict(vm_record("g2"), ha=False), vm_record("g3")]
    data = owed.new_document("h1", "c", "h1/b", "SUSPECT", "R8", vms, NOW, "w")
    assert [vm["name"] for vm in data["vms"]] == ["g1", "g3"]
    assert dict(data, vms=None) == {
        "schema": 1, "host": "h1", "cluster": "c", "incident": "h1/b", "verdict": "SUSPECT", "rule": "R8",
        "opened_at": NOW, "opened_by": "w", "closed_at": None, "worked_by": "w", "work_started": NOW,
        "work_finished": None, "vms": None}
    assert owed.is_open(data)


def test_backoff_waits_base_then_doubles_up_to_the_cap():
    assert [owed.backoff(n, 30.0, 300.0) for n in range(-1, 7)] == [0.0, 0.0, 30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    # The exponent stops at 32: an entry retried for years never overflows the float.
    assert owed.backoff(10 ** 6, 1.0, float("inf")) == 2.0 ** 32


def test_only_a_retrying_entry_waits_and_never_longer_than_the_longest_backoff():
    entry = owed.transition(document("owed")["vms"][0], owed.FAILED, NOW, error="x", attempted=True, retry=(30, 300))
    assert not owed.due(entry, NOW + 29.5) and owed.due(entry, NOW + 30.5)
    # A next try up to the longest wait ahead is believed (default 300 s); beyond it the clock jumped back.
    assert not owed.due(dict(entry, next_try=NOW + 299.5), NOW) and not owed.due(dict(entry, next_try=NOW + 300.0), NOW)
    assert owed.due(dict(entry, next_try=NOW + 300.5), NOW)
    assert not owed.due(dict(entry, next_try=NOW + 60), NOW, longest=60) and owed.due(dict(entry, next_try=NOW + 61), NOW, longest=60)
    assert owed.due(dict(entry, next_try=None), NOW)
    assert owed.due(dict(entry, next_try=2 * NOW + 10), NOW)  # decades ahead: a clock that was set wildly wrong
    # An entry that is not retrying is worked whatever next_try it carries (a hand-edited or older document).
    for state in (owed.OWED, owed.CLAIMED, owed.STARTED):
        assert owed.due(dict(entry, state=state, target="h2", next_try=NOW + 100), NOW), state
    for state in owed.TERMINAL:
        assert not owed.due(dict(entry, state=state, target="h2", next_try=None), NOW), state


def test_a_transition_changes_only_what_it_is_told_and_leaves_the_old_entry_alone():
    entry = owed.transition(document("owed")["vms"][0], owed.CLAIMED, NOW, target="h2")
    assert (entry["target"], entry["since"], entry["attempts"], entry["next_try"]) == ("h2", NOW, 0, None)
    started = owed.transition(entry, owed.STARTED, NOW + 5, attempted=True)
    assert (started["target"], started["since"], started["attempts"], started["updated"]) == ("h2", NOW + 5, 1, NOW + 5)
    again = owed.transition(started, owed.STARTED, NOW + 9)  # same state: since stays, updated moves
    assert (again["since"], again["updated"], again["attempts"]) == (NOW + 5, NOW + 9, 1)
    unplaced = owed.transition(again, owed.UNPLACED, NOW + 10, target="h3", error="e" * 600, attempted=True, retry=(30, 300))
    assert (unplaced["target"], unplaced["last_error"], unplaced["attempts"]) == (None, "e" * 512, 2)
    assert unplaced["next_try"] == NOW + 10 + 60
    assert owed.transition(unplaced, owed.OWED, NOW + 11)["last_error"] == ""  # a new state clears the old error
    for attempts, wait in ((0, 30.0), (4, 300.0)):  # the default retry: 30 s doubling to 300 s
        assert owed.transition(dict(entry, attempts=attempts), owed.FAILED, NOW, attempted=True)["next_try"] == NOW + wait
    copy = owed.transition(entry, owed.STARTED, NOW)
    copy["copies"].append("h9")
    assert entry["copies"] == [] and entry["state"] == owed.CLAIMED
    with pytest.raises(ValueError) as err:
        owed.transition(entry, "running", NOW)
    assert str(err.value) == "unknown owed state 'running'"


def test_a_transition_restarts_since_exactly_when_the_state_changes():
    """Every pair of states, whichever way they sort; the entry as read back (JSON: equal states, not identical)."""
    for old, state, target, attempted in itertools.product(owed.STATES, owed.STATES, (None, "h3"), (False, True)):
        before = json.loads(json.dumps(owed.transition(document("owed")["vms"][0], old, NOW, target="h2", attempted=True)))
        after = owed.transition(before, state, NOW + 7, target=target, attempted=attempted)
        case = (old, state, target, attempted)
        assert after["since"] == (NOW if state == old else NOW + 7) and after["updated"] == NOW + 7, case
        assert after["target"] == (None if state in (owed.OWED, owed.UNPLACED) else target or before["target"]), case
        assert after["attempts"] == 1 + attempted, case
        wait = owed.backoff(1 + attempted, 30.0, 300.0)
        assert after["next_try"] == (NOW + 7 + wait if state in owed.RETRYING else None), case


def test_a_copy_is_noted_once():
    entry = document("owed")["vms"][0]
    once = owed.add_copy(entry, "h2")
    assert once["copies"] == ["h2"] and entry["copies"] == []
    assert owed.add_copy(once, "h2") is once and owed.add_copy(once, "h3")["copies"] == ["h2", "h3"]


def test_a_closed_document_keeps_the_time_it_closed():
    closed = owed.close_if_done(document("verified", "moved"), NOW)
    assert owed.close_if_done(closed, NOW + 99)["closed_at"] == NOW
    assert owed.close_if_done(document(), NOW)["closed_at"] == NOW  # nothing was owed: closed at once


def test_counts_give_every_state_and_how_many_vms_are_in_it():
    assert owed.counts(document("owed", "verified", "verified", "failed")) == {
        "owed": 1, "claimed": 0, "started": 0, "verified": 2, "unplaced": 0, "failed": 1, "abandoned": 0, "moved": 0}


def test_only_another_runs_unfinished_work_is_reported_as_interrupted():
    """Owners are built at run time (equal, not identical) and compared either way round."""
    for left, other in (("run-1", "run-2"), ("run-2", "run-1")):
        data = dict(document("owed", "started"), worked_by=left, work_started=NOW, work_finished=None)
        assert owed.interrupted_run(data, "".join(other)) == {
            "owner": left, "started": NOW, "vms": {"g0": "owed", "g1": "started"}}
        assert owed.interrupted_run(data, "".join([left[:3], left[3:]])) is None  # its own run
        assert owed.interrupted_run(dict(data, work_finished=NOW + 5), other) is None  # finished


def test_the_most_recent_entry_of_a_vm_wins_and_a_tie_keeps_the_first_document_read():
    """Documents are read in host-name order, so a tie (same clock reading) is decided the same way every run."""
    first = document("verified")
    second = owed.new_document("h2", "c", "h2/b", "SUSPECT", "R8", [vm_record("g0")], NOW, "w")
    uuid = first["vms"][0]["uuid"]
    assert owed.latest_entries({"h1": first, "h2": second})[uuid][0] == "h1"
    second["vms"][0]["updated"] = NOW + 1
    assert owed.latest_entries({"h1": first, "h2": second})[uuid] == ("h2", second["vms"][0])
    # Whichever document is read first: an older entry read later never replaces a newer one.
    assert owed.latest_entries({"h2": second, "h1": first})[uuid] == ("h2", second["vms"][0])
    first["vms"][0]["updated"] = NOW + 2
    assert owed.latest_entries({"h1": first, "h2": second})[uuid] == ("h1", first["vms"][0])


JUNK = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=30)


@given(JUNK)
def test_validation_refuses_junk_with_a_reason_never_a_crash(junk):
    with pytest.raises((ValueError, TypeError)):
        owed.validate(junk, "h1")


@given(st.sampled_from(sorted(set(document("owed")) - {"vms"})), JUNK)
def test_validation_refuses_a_field_of_the_wrong_kind(field, junk):
    data = dict(document("owed", "verified"), **{field: junk})
    try:
        owed.validate(data, "h1")
    except (ValueError, TypeError):
        return
    kinds = owed._DOC_FIELDS[field]  # accepted: only a value of the documented kind (never a bool for a number)
    assert isinstance(junk, kinds) and not isinstance(junk, bool), (field, junk)


def invalid(data, host="h1") -> str:
    with pytest.raises(ValueError) as err:
        owed.validate(data, host)
    return str(err.value)


def test_validation_names_the_fault_an_operator_has_to_fix():
    """The reason reaches the operator in the watchdog's output (the owed document of h1 ... is invalid: <reason>)."""
    good = document("owed", "verified")
    assert owed.validate(good, "h1") is good
    assert invalid([]) == "the document is not an object"
    assert invalid(dict(good, color="red", size=1)) == "the document has unknown field(s) color, size"
    lacking = dict(good)
    del lacking["rule"]
    assert invalid(lacking) == "the document lacks 'rule'"
    assert invalid(dict(good, schema=True)) == "the document: 'schema' has the wrong type"
    assert invalid(dict(good, opened_at="now")) == "the document: 'opened_at' has the wrong type"
    assert invalid(dict(good, schema=2)) == "schema 2 is not 1"
    assert invalid(good, "h2") == "it names host 'h1'"
    assert invalid(dict(good, schema=0)) == "schema 0 is not 1"
    assert invalid(good, "h0") == "it names host 'h1'"  # a host name sorting before or after its own
    assert owed.validate(json.loads(json.dumps(good)), "".join(["h", "1"]))  # as read: equal names, not identical
    vm = good["vms"][1]

    def with_vm(**change):
        return dict(good, vms=[dict(vm, **change)])

    assert owed.validate(with_vm(abandoned_by="op", abandon_reason="why", attempts=0, name="n" * 512), "h1")
    assert invalid(dict(good, vms=[vm, "g1"])) == "vms[1] is not an object"
    assert invalid(with_vm(colour="red")) == "vms[0] has unknown field(s) colour"
    assert invalid(dict(good, vms=[{k: v for k, v in vm.items() if k != "since"}])) == "vms[0] lacks 'since'"
    assert owed.validate(with_vm(attempts=3, state="failed", target=None, next_try=NOW + 60), "h1")
    assert invalid(with_vm(abandoned_by=5)) == "vms[0]: 'abandoned_by' has the wrong type"
    assert invalid(with_vm(name="n" * 513)) == "vms[0]: 'name' is longer than 512 characters"
    assert invalid(with_vm(state="running")) == "vms[0]: unknown state 'running'"
    assert invalid(dict(good, vms=[vm, vm])) == "vms[1]: VM %s is listed twice" % vm["uuid"]
    assert invalid(with_vm(state="claimed", target=None)) == "vms[0]: state claimed without a target"
    assert invalid(with_vm(attempts=-1)) == "vms[0]: negative attempts"
    assert invalid(with_vm(copies=["h2", "../x"])) == "vms[0]: copies: host name '../x' contains a '/'"
    assert invalid(with_vm(copies=[7])) == "vms[0]: copies: host name must be a string, got int"


def test_validation_messages_stay_bounded():
    good = document("owed")
    fields = dict(("field%03d" % i, i) for i in range(60))
    message = invalid(dict(good, **fields))
    assert message.startswith("the document has unknown field(s) field000, field001, ")
    assert len(message) == len("the document has unknown field(s) ") + 200
    assert invalid(dict(good, host="x" * 100)) == "it names host '%s'" % ("x" * 80)
    assert invalid(dict(good, vms=[dict(good["vms"][0], state="s" * 100)])) == "vms[0]: unknown state '%s'" % ("s" * 40)


def test_a_document_lists_at_most_a_thousand_vms():
    many = owed.new_document("h1", "c", "h1/b", "SUSPECT", "R8", [vm_record("g%d" % i) for i in range(1001)], NOW, "w")
    assert invalid(many) == "more than 1000 VMs"
    assert owed.validate(dict(many, vms=many["vms"][:1000]), "h1")


def test_a_document_that_would_not_validate_is_never_written():
    with pytest.raises(owed.InvalidOwed) as err:
        owed._writable(dict(document("owed"), schema=2), "h1")
    assert str(err.value) == "refusing to write an owed document of h1 that would not validate: schema 2 is not 1"
    mixed = dict(document("owed"))
    mixed.update({1: "a key JSON cannot carry", "extra": 0})  # sorting the unknown keys fails: still refused
    with pytest.raises(owed.InvalidOwed):
        owed._writable(mixed, "h1")


def test_a_corrupt_document_is_that_hosts_error_never_nothing_owed(tmp_path):
    store = str(tmp_path)
    book = owed.OwedBook(store, "w")
    book.open("h1", document("owed"))
    book.open("h2", owed.new_document("h2", "c", "h2/b", "", "", [], NOW, "w"))
    path = os.path.join(owed.owed_dir(store), "h1", "0000000002.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"version": 1, "kind": "owed", "name": "h1", "generation": 2, "owner": "x", "created": 1, '
                '"ttl": null, "released": false, "data": {"schema": 1, "host": "h1"}}')
    found, invalid = book.read_all()
    assert set(found) == {"h2"} and "h1" in invalid and "lacks" in invalid["h1"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("[" * 100000)  # nested past any recursion limit, and truncated
    found, invalid = book.read_all()
    assert set(found) == {"h2"} and "h1" in invalid
    stray = document("owed")
    stray["vms"][0]["copies"] = ["../x"]  # a copy's host name that validate_host_name refuses (not a ValueError)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"version": 1, "kind": "owed", "name": "h1", "generation": 2, "owner": "x", "created": 1,
                   "ttl": None, "released": False, "data": stray}, f)
    found, invalid = book.read_all()
    assert set(found) == {"h2"} and invalid["h1"].endswith("vms[0]: copies: host name '../x' contains a '/'")


def test_documents_are_private_to_the_store_owner(tmp_path):
    doc = owed.OwedBook(str(tmp_path), "w").open("h1", document("owed"))
    assert os.stat(doc.path).st_mode & 0o777 == 0o640


# ------------------------------------------------------------------------------------------------ the engine, at random


class Killed(BaseException):
    """The controller dies: nothing of this run happens any more."""


class World:
    """libvirt on every host as far as recovery can tell: defined and active domains, hosts alive, dead or off.

    A *dead* host (crashed, not yet fenced) answers nothing, but its active domains still run - they hold their
    disks - until it is powered off (fenced). ``ticks`` counts the operations of a run; at ``kill_at`` the run dies.
    """

    def __init__(self, hosts):
        self.state = dict((h, "alive") for h in hosts)
        self.defined = dict((h, set()) for h in hosts)
        self.active = dict((h, set()) for h in hosts)
        self.ticks = 0
        self.kill_at = None
        self.die_at = None  # (tick, host): a target dies in the middle of the run
        self.killed = False
        self.late = set()  # (host, uuid): a start sent by a dead run that completes before the next start call

    def tick(self):
        self.ticks += 1
        if self.killed or self.ticks == self.kill_at:
            self.killed = True
            raise Killed()
        if self.die_at and self.ticks == self.die_at[0]:
            self.state[self.die_at[1]] = "dead"

    def check(self, host):
        if self.state[host] != "alive":
            raise LibvirtError("%s does not answer" % host, kind="connection")

    def copies(self, vm_uuid):
        return [h for h in self.active if vm_uuid in self.active[h] and self.state[h] != "off"]

    def power_off(self, host):
        self.state[host] = "off"
        self.active[host] = set()


class Client:
    def __init__(self, world, uri, connect_timeout, call_timeout, read_only, label):
        self.world = world
        self.host = label

    def open(self):
        self.world.tick()
        self.world.check(self.host)
        return self

    def close(self):
        pass

    def alive(self):
        return self.world.state[self.host] == "alive"

    def active_uuids(self):
        self.world.check(self.host)
        return set(self.world.active[self.host])

    def define(self, xml):
        self.world.tick()
        self.world.check(self.host)
        vm_uuid = re.search(r"<uuid>([^<]+)</uuid>", xml).group(1)
        self.world.defined[self.host].add(vm_uuid)
        return vm_uuid

    def start(self, vm_uuid):
        self.world.tick()
        self.world.check(self.host)
        if (self.host, vm_uuid) in self.world.late:
            self.world.active[self.host].add(vm_uuid)
        if vm_uuid in self.world.active[self.host]:
            raise LibvirtError("domain is already running", kind="libvirt")
        self.world.active[self.host].add(vm_uuid)
        self.world.tick()  # the controller may die right after the start, before it hears of it

    def domain_state(self, vm_uuid):
        self.world.check(self.host)
        if vm_uuid in self.world.active[self.host]:
            return "running"
        return "shutoff" if vm_uuid in self.world.defined[self.host] else None

    def wait_running(self, vm_uuid, timeout):
        self.world.tick()
        return self.domain_state(vm_uuid)


class Simulation:
    """A 4-host cluster whose h1 died; each ``run`` is one watchdog run's recovery step."""

    HOSTS = ("h1", "h2", "h3", "h4")

    def __init__(self, store, vms, room):
        self.store = store
        self.vms = vms
        self.room = dict(room)  # free memory of each target
        self.world = World(self.HOSTS)
        self.boot = dict((h, "boot-1") for h in self.HOSTS)
        self.clock = NOW
        self.runs = 0
        os.makedirs(os.path.join(store, "kvmha", "vms"))
        os.makedirs(os.path.join(store, "kvmha", "hosts"))
        for vm in vms:
            with open(os.path.join(store, "kvmha", "vms", vm["uuid"] + ".xml"), "w", encoding="utf-8") as f:
                f.write("<domain type='qemu'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                        "</domain>" % (vm["name"], vm["uuid"]))
        self.world.active["h1"] = set(vm["uuid"] for vm in vms)
        self.beat()
        self.world.power_off("h1")  # h1 died and was fenced
        self.fenced = ["h1"]
        self.confirmed = ["h1"]  # fenced, its recovery not yet opened: the next run is told (as the watchdog would)

    def beat(self):
        """Every live host's writer reports the domains active on it."""
        by_uuid = dict((vm["uuid"], vm) for vm in self.vms)
        for host, state in self.world.state.items():
            if state == "alive":
                listed = [by_uuid[u] for u in sorted(self.world.active[host])]
                used = 64 * len(listed)
                record = build_record(host, self.boot[host], self.runs + 1, self.clock, 2.0, {"armed": False, "deadline_s": 60},
                                      {"mem_free_mib": max(0, self.room.get(host, 0) - used), "vcpus_free": 8}, listed)
                write_atomic(os.path.join(self.store, "kvmha", "hosts", host + ".json"), encode_record(record))

    def run(self, kill_at=None, die_at=None, fence=True):
        self.runs += 1
        self.clock += 1000.0  # past any backoff: every retry is due
        self.world.ticks, self.world.kill_at, self.world.die_at, self.world.killed = 0, kill_at, die_at, False
        params = dict((k, v.get("default")) for k, v in ARGUMENT_SPEC.items())
        alive = [h for h in self.HOSTS if self.world.state[h] == "alive" and h not in self.fenced]
        self.confirmed += self.pending_fences() if fence else []
        params.update(store_path=self.store, owner="run-%d" % self.runs, failed_hosts=list(self.confirmed),
                      targets=[{"host": h, "uri": "test:///%s" % h} for h in alive], beat_timeout_s=0.0, store_timeout_s=5.0,
                      cluster="c")
        self.fenced.extend(h for h in params["failed_hosts"] if h not in self.fenced)
        engine = Evacuation(params, client_factory=lambda *a: Client(self.world, *a), clock=lambda: self.clock)
        try:
            engine.run()
        except (Killed, KvmhaError):
            pass
        # A fenced host whose recovery did not open is still a suspect with its power off: the next run opens it.
        book = owed.OwedBook(self.store, "check")
        self.confirmed = [h for h in self.confirmed if book.read(h) is None or book.read(h).released]
        self.assert_never_twice()

    def pending_fences(self):
        """Dead targets are found and fenced by the next run: powered off (their copies stop), then recovered."""
        dead = [h for h in self.HOSTS if self.world.state[h] == "dead"]
        for host in dead:
            self.world.power_off(host)
        return dead

    def assert_never_twice(self):
        for vm in self.vms:
            where = self.world.copies(vm["uuid"])
            assert len(where) <= 1, "%s runs on %s" % (vm["name"], where)

    def converged(self) -> bool:
        docs = owed.OwedBook(self.store, "check").read_all()[0]
        open_docs = [d for d in docs.values() if not d.released and owed.is_open(d.data)]
        return not open_docs and all(len(self.world.copies(vm["uuid"])) == 1 for vm in self.vms)


@pytest.fixture
def store():
    path = tempfile.mkdtemp(prefix="kvmha-owed-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


ROUND = st.tuples(
    st.one_of(st.none(), st.integers(1, 12)),                                      # the controller dies at this tick
    st.one_of(st.none(), st.tuples(st.integers(1, 12), st.sampled_from(["h2", "h3", "h4"]))),  # a target dies
    st.booleans(),                                                                  # a writer beats before the run
    st.dictionaries(st.sampled_from(["h2", "h3", "h4"]), st.sampled_from([0, 64, 128, 4096]), max_size=2),  # room changes
    st.booleans(),                       # dead targets are fenced before this run (else they stay dead, copies frozen)
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.integers(1, 4), st.dictionaries(st.sampled_from(["h2", "h3", "h4"]), st.sampled_from([0, 64, 128, 4096]),
                                          min_size=3, max_size=3), st.lists(ROUND, max_size=6))
def test_random_deaths_never_run_a_vm_twice_and_always_converge(store, count, room, rounds):
    shutil.rmtree(store, ignore_errors=True)
    sim = Simulation(store, [vm_record("g%d" % i) for i in range(count)], room)
    for kill_at, die_at, beat, changes, fence in rounds:
        sim.room.update(changes)
        if beat:
            sim.beat()
        if die_at and sim.world.state[die_at[1]] != "alive":
            die_at = None
        sim.run(kill_at=kill_at, die_at=die_at, fence=fence)
    # Then the faults stop: room everywhere, every writer beats, runs go on. Every owed VM must end running once.
    sim.room.update({"h2": 4096, "h3": 4096, "h4": 4096})
    for _attempt in range(6):
        sim.beat()
        sim.run()
        sim.beat()
        if sim.converged():
            break
    alive = [h for h in Simulation.HOSTS if sim.world.state[h] == "alive"]
    if not alive:
        return  # every target died: nothing can run anywhere; never-twice was checked at every step
    assert sim.converged(), (owed.OwedBook(store, "x").read_all(), sim.world.active, sim.world.state)


def test_a_controller_killed_between_start_and_record_is_finished_by_the_next_run(store):
    sim = Simulation(store, [vm_record("g1")], {"h2": 4096, "h3": 4096, "h4": 4096})
    sim.run(kill_at=6)  # three connections, define, start - and it dies right after the start
    assert sum(len(sim.world.copies(vm["uuid"])) for vm in sim.vms) == 1
    docs = owed.OwedBook(store, "x").read_all()[0]
    assert docs["h1"].data["vms"][0]["state"] == owed.OWED, "the dead run never recorded its start"
    sim.beat()
    sim.run()
    assert sim.converged() and docs["h1"].data["worked_by"] == "run-1"


def test_same_target_retry_never_starts_twice_even_if_the_first_start_completes_late(store):
    sim = Simulation(store, [vm_record("g1")], {"h2": 4096, "h3": 0, "h4": 0})
    sim.run(kill_at=5)  # claimed on h2 and defined there, then the run died while its start call was under way
    vm_uuid = sim.vms[0]["uuid"]
    assert sim.world.copies(vm_uuid) == [] and vm_uuid in sim.world.defined["h2"]
    sim.world.late.add(("h2", vm_uuid))  # that start completes just before the retry's own start call
    sim.beat()
    sim.run()
    assert sim.world.copies(vm_uuid) == ["h2"]
    sim.beat()
    sim.run()
    assert sim.converged()


def test_interrupted_run_is_reported_with_what_it_left(store):
    sim = Simulation(store, [vm_record("g1"), vm_record("g2")], {"h2": 4096, "h3": 4096, "h4": 0})
    sim.run(kill_at=3)
    sim.world.killed, sim.world.kill_at = False, None
    params = dict((k, v.get("default")) for k, v in ARGUMENT_SPEC.items())
    params.update(store_path=store, owner="next", targets=[{"host": h, "uri": "test:///%s" % h} for h in ("h2", "h3")],
                  beat_timeout_s=0.0, failed_hosts=[])
    result = Evacuation(params, client_factory=lambda *a: Client(sim.world, *a), clock=lambda: sim.clock + 5).run()
    assert result["interrupted"][0]["host"] == "h1" and result["interrupted"][0]["owner"] == "run-1"
    assert set(result["interrupted"][0]["vms"]) == {"g1", "g2"}
    assert DocumentStore(owed.owed_dir(store), "owed").read("h1").data["worked_by"] == "next"


# ------------------------------------------------------------------------------------------------ the lease as a fencing token


def engine_params(sim, owner="run", **extra):
    """vm_evacuate's options for one run against ``sim``: h1 failed, h2-h4 the targets, no wait for the hand-over."""
    params = dict((k, v.get("default")) for k, v in ARGUMENT_SPEC.items())
    params.update(store_path=sim.store, owner=owner, failed_hosts=["h1"], beat_timeout_s=0.0, cluster="c",
                  targets=[{"host": h, "uri": "test:///%s" % h} for h in ("h2", "h3", "h4")])
    return dict(params, **extra)


def held(lease):
    """The ``lease`` option of a run that holds ``lease`` (a cluster_lease result's lease)."""
    return {"cluster": "c", "generation": lease["generation"], "ttl": 30.0}


def test_a_run_whose_lease_moved_on_does_nothing(store):
    sim = Simulation(store, [vm_record("g1")], {"h2": 4096, "h3": 4096, "h4": 4096})
    mine = _marks.acquire_lease(store, "c", "frozen-run", 30.0)["lease"]
    docs = _marks.documents(store, _marks.LEASE)
    docs.release(docs.read("c"))  # it expired while the run was frozen, and another run took it and released it
    _marks.acquire_lease(store, "c", "other-run", 30.0)
    with pytest.raises(_marks.LeaseLost) as err:
        Evacuation(engine_params(sim, "frozen-run", lease=held(mine)), client_factory=lambda *a: Client(sim.world, *a)).run()
    assert err.value.kind == "lease_lost" and "other-run" in str(err.value)
    assert owed.OwedBook(store, "x").read("h1") is None and sim.world.ticks == 0, "nothing opened, nothing started"


def test_a_lease_taken_over_mid_run_stops_every_further_start(store):
    sim = Simulation(store, [vm_record("g%d" % i) for i in range(3)], {"h2": 64, "h3": 64, "h4": 64})
    mine = _marks.acquire_lease(store, "c", "slow-run", 30.0)["lease"]
    # One start at a time, so "the step after the take-over" is well defined: with parallel starts, those already
    # past their lease check when it happens finish (their claims keep the other run off those VMs).
    engine = Evacuation(engine_params(sim, "slow-run", lease=held(mine), parallel=1),
                        client_factory=lambda *a: Client(sim.world, *a))
    engine.keeper.clock = iter(range(0, 10 ** 6, 100)).__next__  # renew before every step: the take-over is seen at once

    def take_over():  # like a real second watchdog: re-read and retry when the slow run renewed in between
        docs = _marks.documents(store, _marks.LEASE)
        for _attempt in range(100):
            try:
                return docs.replace("c", docs.read("c"), "other-run", {}, 30.0)
            except Conflict:
                continue
        raise AssertionError("the take-over never won against the slow run's renewals")

    original = sim.world.tick

    def tick():  # the first define is the last step the slow run does with its lease
        original()
        if sim.world.ticks == 4:
            take_over()
    sim.world.tick = tick
    with pytest.raises(_marks.LeaseLost) as err:
        engine.run()
    started = [vm for vm in err.value.result["vms"] if vm["status"] == "started"]
    assert len(started) == 1 and sum(len(a) for a in sim.world.active.values()) == 1
    assert all(vm["error_kind"] == "lease_lost" for vm in err.value.result["vms"] if vm["status"] == "waiting")


# ------------------------------------------------------------------------------------------------ bad input


def test_an_owed_vm_whose_xml_is_gone_fails_and_is_retried_never_forgotten(store):
    sim = Simulation(store, [vm_record("g1"), vm_record("g2")], {"h2": 4096, "h3": 4096, "h4": 4096})
    xml = os.path.join(store, "kvmha", "vms", sim.vms[0]["uuid"] + ".xml")
    saved = open(xml, encoding="utf-8").read()
    os.unlink(xml)
    sim.run()
    entry = owed.OwedBook(store, "x").read("h1").data["vms"]
    by_name = dict((vm["name"], vm) for vm in entry)
    assert by_name["g1"]["state"] == owed.FAILED and "no domain XML" in by_name["g1"]["last_error"]
    assert by_name["g1"]["next_try"] and by_name["g2"]["state"] in (owed.STARTED, owed.VERIFIED)
    with open(xml, "w", encoding="utf-8") as f:
        f.write(saved)  # an operator restores it from a backup
    sim.beat()
    sim.run()
    sim.beat()
    sim.run()
    assert sim.converged()


def test_two_controllers_working_the_same_owed_set_never_start_twice(store):
    sim = Simulation(store, [vm_record("g%d" % i) for i in range(4)], {"h2": 4096, "h3": 4096, "h4": 4096})
    sim.run(kill_at=3)  # h1's document is open; nothing started yet
    sim.world.killed, sim.world.kill_at = False, None

    def controller(name):
        params = dict((k, v.get("default")) for k, v in ARGUMENT_SPEC.items())
        params.update(store_path=store, owner=name, beat_timeout_s=0.0, failed_hosts=[],
                      targets=[{"host": h, "uri": "test:///%s" % h} for h in ("h2", "h3", "h4")])
        try:
            Evacuation(params, client_factory=lambda *a: Client(sim.world, *a), clock=lambda: sim.clock).run()
        except KvmhaError:
            pass  # the loser of a document write reports it; the next run sees what the winner wrote

    both = [threading.Thread(target=controller, args=("ctl-%d" % i,)) for i in (1, 2)]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join()
    sim.assert_never_twice()
    for _attempt in range(3):
        sim.beat()
        sim.run()
    assert sim.converged()


def test_a_host_put_into_maintenance_after_its_decision_is_not_recovered(store):
    sim = Simulation(store, [vm_record("g1")], {"h2": 4096, "h3": 4096, "h4": 4096})
    _marks.set_mark(store, _marks.MAINTENANCE, "h1", "alice", {"reason": "firmware"}, ttl=3600)
    sim.run()
    assert owed.OwedBook(store, "x").read("h1") is None and sim.world.copies(sim.vms[0]["uuid"]) == []
    assert _marks.read_marks(store, _marks.FENCED)["active"] == {}


def evacuate_once(sim, **extra):
    return Evacuation(engine_params(sim, **extra), client_factory=lambda *a: Client(sim.world, *a), clock=lambda: sim.clock).run()


def test_a_host_switched_back_on_after_its_fence_is_not_recovered(store):
    """Its record shows a new boot since the decision (BIOS power-on after the fence): nothing of it starts elsewhere."""
    sim = Simulation(store, [vm_record("g1"), vm_record("g2")], {"h2": 4096, "h3": 4096, "h4": 4096})
    sim.boot["h1"] = "boot-2"
    sim.world.state["h1"] = "alive"
    sim.beat()  # its writer is back, in another boot
    result = evacuate_once(sim, boot_ids={"h1": "boot-1"})
    assert [a["host"] for a in result["aborted"]] == ["h1"] and "booted again" in result["aborted"][0]["reason"]
    assert owed.OwedBook(store, "x").read("h1") is None and _marks.read_marks(store, _marks.FENCED)["active"] == {}
    assert all(sim.world.copies(vm["uuid"]) == [] for vm in sim.vms) and result["opened"] == []


def test_the_boot_the_host_was_judged_in_is_recovered(store):
    sim = Simulation(store, [vm_record("g1")], {"h2": 4096, "h3": 4096, "h4": 4096})
    result = evacuate_once(sim, boot_ids={"h1": "boot-1"})
    assert result["aborted"] == [] and result["opened"] == ["h1"]
    assert len(sim.world.copies(sim.vms[0]["uuid"])) == 1
