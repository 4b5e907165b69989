# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_reconcile against libvirt's built-in test driver (a real libvirt connection, in process) and owed documents
on a real store: a returning host's copy is removed only when the owed documents show the VM verified running on
another host; every other copy may be the only one and is kept, whatever else happens."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _recovery as owed
from ansible_collections.kvmha.cluster.plugins.module_utils._claims import claims_dir
from ansible_collections.kvmha.cluster.plugins.module_utils._storefile import DocumentStore
from ansible_collections.kvmha.cluster.plugins.modules import vm_reconcile

libvirt = pytest.importorskip("libvirt")

XML = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>64</memory>
<os><type>hvm</type></os></domain>"""


@pytest.fixture
def conn():
    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "store")


def define(conn, running: bool) -> str:
    vm = str(uuid.uuid4())
    dom = conn.defineXML(XML.format(name="stale-" + vm[:8], uuid=vm))
    if running:
        dom.create()
    return vm


def defined(conn, vm: str) -> bool:
    try:
        conn.lookupByUUIDString(vm)
    except libvirt.libvirtError:
        return False
    return True


def active(conn, vm: str) -> bool:
    return defined(conn, vm) and conn.lookupByUUIDString(vm).isActive() == 1


def cleanup(conn, *vms):
    """test:///default lives as long as the process: leave nothing behind for the next test."""
    for vm in vms:
        if defined(conn, vm):
            dom = conn.lookupByUUIDString(vm)
            if dom.isActive():
                dom.destroy()
            dom.undefine()


def owe(store, host, entries, updated=None):
    """Open the owed document of ``host``: entries are (uuid, state, target, copies)."""
    now = time.time() if updated is None else updated
    vms = [{"uuid": vm, "name": "vm-" + vm[:8], "ha": True, "priority": 50, "memory_mib": 64, "vcpus": 1, "group": ""}
           for vm, _state, _target, _copies in entries]
    data = owed.new_document(host, "c1", host + "/boot-a", "DOWN", "R3", vms, now, "watchdog")
    done = []
    for entry, (_vm, state, target, copies) in zip(data["vms"], entries):
        if state != owed.OWED:
            entry = owed.transition(entry, state, now, target=target, attempted=state != owed.ABANDONED)
        done.append(dict(entry, copies=list(copies)))
    data = owed.close_if_done(dict(data, vms=done, work_finished=now), now)
    return owed.OwedBook(store, "watchdog").open(host, owed.validate(data, host))


def args(store, host="h1", **over):
    return dict({"uri": "test:///default", "host": host, "store_path": store}, **over)


def test_copies_verified_elsewhere_are_destroyed_and_undefined(run_module, conn, store):
    running, stopped, gone = define(conn, True), define(conn, False), str(uuid.uuid4())
    owe(store, "h1", [(running, "verified", "h2", ["h2"]), (stopped, "verified", "h3", ["h3"]),
                      (gone, "verified", "h2", ["h2"])])
    result = run_module(vm_reconcile, args(store), diff=True)
    assert result["changed"] is True, result
    by_uuid = {vm["uuid"]: vm for vm in result["vms"]}
    assert by_uuid[running] == {"uuid": running, "before": "running", "destroyed": True, "undefined": True}
    assert by_uuid[stopped] == {"uuid": stopped, "before": "shutoff", "destroyed": False, "undefined": True}
    assert by_uuid[gone] == {"uuid": gone, "before": "absent", "destroyed": False, "undefined": False}
    assert not defined(conn, running) and not defined(conn, stopped)
    assert result["diff"]["after"][running] == "absent"
    assert result["kept"] == [] and result["released"] is True
    document = owed.OwedBook(store, "reader").read("h1")
    assert document.released and document.data["vms"][0]["state"] == "verified"  # history, still readable
    again = run_module(vm_reconcile, args(store))
    assert again["changed"] is False and again["released"] is False and again["kept"] == []


def test_an_owed_vm_is_kept_and_never_destroyed(run_module, conn, store):
    """Not verified anywhere (owed, unplaced, failed, claimed, started, abandoned): this may be its only copy."""
    vms = dict((state, define(conn, running=state in ("owed", "started"))) for state in
               ("owed", "unplaced", "failed", "claimed", "started", "abandoned"))
    verified = define(conn, True)
    targets = {"claimed": "h2", "started": "h2"}
    owe(store, "h1", [(vm, state, targets.get(state), [targets[state]] if state in targets else [])
                      for state, vm in vms.items()] + [(verified, "verified", "h3", ["h3"])])
    result = run_module(vm_reconcile, args(store), diff=True)
    kept = {vm["uuid"]: vm for vm in result["kept"]}
    assert sorted(kept) == sorted(vms.values())
    assert kept[vms["owed"]]["before"] == "running" and kept[vms["unplaced"]]["before"] == "shutoff"
    assert "still owed by h1 (unplaced) and has no verified copy elsewhere: this may be its only copy" in kept[vms["unplaced"]]["reason"]
    assert "still owed by h1 (started)" in kept[vms["started"]]["reason"]
    assert "abandoned by an operator" in kept[vms["abandoned"]]["reason"]
    assert kept[vms["owed"]]["name"] == "vm-" + vms["owed"][:8]
    assert [vm["uuid"] for vm in result["vms"]] == [verified] and not defined(conn, verified)  # the stale one only
    assert result["released"] is False and result["changed"] is True
    assert not owed.OwedBook(store, "reader").read("h1").released  # the host must not be returned yet
    for state, vm in vms.items():
        assert defined(conn, vm) and active(conn, vm) == (state in ("owed", "started")), state
    cleanup(conn, *vms.values())


def test_copies_made_on_a_host_that_died_are_judged_by_the_latest_entry(run_module, conn, store):
    """h1 was a target of h5's recovery before it died itself: what was defined there is a candidate too."""
    moved_on, still_owed, own = define(conn, False), define(conn, False), define(conn, True)
    earlier = time.time() - 60
    owe(store, "h5", [(moved_on, "verified", "h2", ["h1", "h2"]), (still_owed, "claimed", "h1", ["h1"])], updated=earlier)
    owe(store, "h1", [(own, "verified", "h3", ["h3"])])
    result = run_module(vm_reconcile, args(store))
    assert sorted(vm["uuid"] for vm in result["vms"]) == sorted([moved_on, own])
    assert [vm["uuid"] for vm in result["kept"]] == [still_owed] and "still owed by h5 (claimed)" in result["kept"][0]["reason"]
    assert defined(conn, still_owed) and not defined(conn, moved_on) and not defined(conn, own)
    assert result["released"] is False
    cleanup(conn, still_owed)


def test_the_most_recent_entry_decides(run_module, conn, store):
    """Verified on h2 for h1's recovery, then h2 died and its own recovery owes the VM: not stale on h1 any more."""
    vm = define(conn, False)
    owe(store, "h1", [(vm, "verified", "h2", ["h2"])], updated=time.time() - 60)
    owe(store, "h2", [(vm, "owed", None, [])])
    result = run_module(vm_reconcile, args(store))
    assert result["vms"] == [] and [k["uuid"] for k in result["kept"]] == [vm]
    assert "still owed by h2 (owed)" in result["kept"][0]["reason"] and defined(conn, vm)
    cleanup(conn, vm)


def test_a_vm_verified_on_the_returning_host_itself_is_left_alone(run_module, conn, store):
    """Not a stale copy (the host's own VM) and no reason to keep the host fenced."""
    vm = define(conn, True)
    owe(store, "h5", [(vm, "verified", "h1", ["h1"])])
    result = run_module(vm_reconcile, args(store))
    assert result["vms"] == [] and result["kept"] == []
    assert active(conn, vm)
    cleanup(conn, vm)


def test_extra_candidates_of_vms(run_module, conn, store):
    known, unknown, absent = define(conn, True), define(conn, False), str(uuid.uuid4())
    owe(store, "h5", [(known, "verified", "h2", ["h2"])])  # h1 never in its copies: found only through 'vms'
    result = run_module(vm_reconcile, args(store, vms=[known.upper(), unknown, absent]))
    assert [vm["uuid"] for vm in result["vms"]] == [known] and not defined(conn, known)
    assert [(k["uuid"], k["before"]) for k in result["kept"]] == [(unknown, "shutoff")]  # absent ones are not listed
    assert "no owed document says it is verified running elsewhere" in result["kept"][0]["reason"]
    assert defined(conn, unknown) and result["released"] is False  # h1 has no document of its own
    cleanup(conn, unknown)


def test_release_false_and_check_mode_release_nothing(run_module, conn, store):
    vm = define(conn, True)
    owe(store, "h1", [(vm, "verified", "h2", ["h2"])])
    planned = run_module(vm_reconcile, args(store), check_mode=True)
    assert planned["changed"] is True and planned["vms"][0]["destroyed"] is True and planned["released"] is False
    assert active(conn, vm) and not owed.OwedBook(store, "reader").read("h1").released
    kept_open = run_module(vm_reconcile, args(store, release=False))
    assert kept_open["vms"][0]["destroyed"] is True and kept_open["released"] is False
    assert not defined(conn, vm) and not owed.OwedBook(store, "reader").read("h1").released
    released = run_module(vm_reconcile, args(store))
    assert released["released"] is True and released["changed"] is True and released["vms"][0]["before"] == "absent"


def test_unreadable_owed_documents_remove_nothing(run_module, conn, store):
    vm = define(conn, True)
    owe(store, "h1", [(vm, "verified", "h2", ["h2"])])
    owe(store, "h5", [(str(uuid.uuid4()), "owed", None, [])])
    directory = os.path.join(owed.owed_dir(store), "h5")
    with open(os.path.join(directory, sorted(os.listdir(directory))[-1]), "w") as handle:
        handle.write("{truncated")
    result = run_module(vm_reconcile, args(store))
    assert result["failed"] is True and result["error_kind"] == "store"
    assert "owed documents cannot be read, so no copy can be proven stale: h5:" in result["msg"]
    assert result["vms"] == [] and result["kept"] == [] and result["released"] is False
    assert active(conn, vm) and not owed.OwedBook(store, "reader").read("h1").released
    cleanup(conn, vm)


@pytest.mark.parametrize("over, words", [
    ({"vms": ["not-a-uuid"]}, "is not a UUID"),
    ({"uri": "qemu+ssh://root@h1/system;rm"}, ""),
    ({"host": "../h1"}, "host name"),
    ({"host": None}, "missing required arguments: host"),
    ({"store_path": None}, "missing required arguments: store_path"),
])
def test_bad_input_fails_and_changes_nothing(run_module, conn, store, over, words):
    vm = define(conn, True)
    owe(store, "h1", [(vm, "verified", "h2", ["h2"])])
    given = dict((k, v) for k, v in dict(args(store), **over).items() if v is not None)
    result = run_module(vm_reconcile, given)
    assert result["failed"] is True and words in result["msg"]
    assert active(conn, vm) and not owed.OwedBook(store, "reader").read("h1").released
    cleanup(conn, vm)


def test_an_open_recovery_keeps_its_host_fenced_even_without_copies_there(run_module, conn, store):
    """The returning host was reinstalled (no definition left), but one of its VMs still runs nowhere verified:
    releasing its owed document would forget that VM, so it is kept - and listed - until the recovery closes."""
    verified, unplaced, started = define(conn, True), str(uuid.uuid4()), str(uuid.uuid4())
    owe(store, "h1", [(verified, "verified", "h2", ["h2"]), (unplaced, "unplaced", None, []), (started, "started", "h3", ["h3"])])
    result = run_module(vm_reconcile, args(store))
    assert [vm["uuid"] for vm in result["vms"]] == [verified] and not defined(conn, verified)
    kept = dict((vm["uuid"], vm) for vm in result["kept"])
    assert sorted(kept) == sorted([unplaced, started]) and set(vm["before"] for vm in kept.values()) == {"absent"}
    assert "still owed by h1 (unplaced) and not verified running anywhere: h1 returns once its recovery is closed" in kept[unplaced]["reason"]
    assert "still owed by h1 (started)" in kept[started]["reason"]
    assert result["released"] is False and owed.is_open(owed.OwedBook(store, "reader").read("h1").data)
    # abandoned (or verified elsewhere), the recovery closes and the host returns
    book = owed.OwedBook(store, "operator")
    current = book.read("h1")
    now = time.time()
    done = [owed.transition(vm, owed.ABANDONED, now) if vm["state"] != "verified" else vm for vm in current.data["vms"]]
    book.write(current, owed.close_if_done(dict(current.data, vms=done), now))
    again = run_module(vm_reconcile, args(store))
    assert again["kept"] == [] and again["released"] is True


def test_start_kept_starts_the_only_copies_here_and_returns_the_host(run_module, conn, store):
    """The unfence flag: a VM that runs nowhere is started on the returning host, claimed first; never a VM that
    may run elsewhere (its entry names another target)."""
    lonely, elsewhere = define(conn, False), define(conn, False)
    owe(store, "h1", [(lonely, "unplaced", None, []), (elsewhere, "claimed", "h2", ["h2"])])
    try:
        result = run_module(vm_reconcile, args(store, start_kept=True, owner="unfence/jdoe"))
        assert result["started"] == [lonely] and active(conn, lonely) and not active(conn, elsewhere)
        assert [vm["uuid"] for vm in result["kept"]] == [elsewhere] and result["released"] is False
        entry = dict((vm["uuid"], vm) for vm in owed.OwedBook(store, "r").read("h1").data["vms"])[lonely]
        assert entry["state"] == "started" and entry["target"] == "h1" and "h1" in entry["copies"]
        claim = DocumentStore(claims_dir(store), "claim").read(lonely)
        assert claim.data["state"] == "started" and claim.data["target"] == "h1" and claim.owner == "unfence/jdoe"
        again = run_module(vm_reconcile, args(store, start_kept=True))
        assert again["started"] == [] and [vm["uuid"] for vm in again["kept"]] == [elsewhere]
    finally:
        cleanup(conn, lonely, elsewhere)


def test_without_start_kept_nothing_is_started(run_module, conn, store):
    lonely = define(conn, False)
    owe(store, "h1", [(lonely, "unplaced", None, [])])
    try:
        result = run_module(vm_reconcile, args(store))
        assert result["started"] == [] and not active(conn, lonely) and [vm["uuid"] for vm in result["kept"]] == [lonely]
    finally:
        cleanup(conn, lonely)
