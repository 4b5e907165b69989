# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils._errors import StoreError
from ansible_collections.kvmha.cluster.plugins.module_utils._storefile import (
    Conflict,
    DocumentStore,
    InvalidDocument,
    validate_name,
)


@pytest.fixture
def docs(tmp_path):
    return DocumentStore(str(tmp_path / "docs"), "lease")


def gen_path(docs, name, generation):
    return os.path.join(docs.doc_dir(name), "%010d.json" % generation)


def test_create_then_read(docs):
    made = docs.create("cluster-a", "watchdog@c1", {"note": "x"}, ttl=30)
    read = docs.read("cluster-a")
    assert (made.generation, read.generation) == (1, 1)
    assert read.owner == "watchdog@c1" and read.data == {"note": "x"} and read.ttl == 30.0
    assert read.released is False and read.live() is True
    assert abs(read.expires_at - (read.mtime + 30)) < 1e-6
    assert read.as_dict()["generation"] == 1 and read.as_dict()["data"] == {"note": "x"}
    assert docs.names() == ["cluster-a"]


def test_read_missing_is_none(docs):
    assert docs.read("nothing") is None
    assert docs.names() == []


def test_second_create_conflicts_and_reports_the_holder(docs):
    docs.create("n", "first")
    with pytest.raises(Conflict) as err:
        docs.create("n", "second")
    assert err.value.current.owner == "first" and err.value.kind == "conflict"
    assert docs.read("n").owner == "first"


def test_compare_and_replace(docs):
    first = docs.create("n", "a", ttl=10)
    second = docs.replace("n", first, "b", {"k": 1}, ttl=10)
    assert second.generation == 2 and docs.read("n").owner == "b"
    with pytest.raises(Conflict) as err:
        docs.replace("n", first, "c")  # read generation 1, which is no longer current
    assert err.value.current.owner == "b"
    assert docs.read("n").generation == 2


def test_never_expiring_and_expired(docs):
    doc = docs.create("n", "a", ttl=None)
    assert doc.expires_at is None and not doc.expired(now=time.time() + 1e9)
    doc = docs.replace("n", doc, "a", ttl=5)
    old = time.time() - 60
    os.utime(doc.path, (old, old))  # expiry is judged from the store's mtime, not the writer's clock
    reread = docs.read("n")
    assert reread.expired() and not reread.live()
    assert not reread.expired(now=old + 4) and reread.expired(now=old + 6)
    assert not reread.expired(now=old + 6, skew=2)


def test_release(docs):
    doc = docs.create("n", "a", {"x": 1}, ttl=100)
    released = docs.release(doc)
    assert released.released and released.generation == 2 and released.data == {"x": 1}
    assert docs.read("n").live() is False


@pytest.mark.parametrize("bad", ["", ".hidden", "../up", "a/b", "a..b", "x" * 129, "sp ace", None, 5, "\0"])
def test_names_are_validated(docs, bad):
    with pytest.raises(StoreError):
        validate_name(bad)
    with pytest.raises(StoreError):
        docs.create(bad, "a")


@pytest.mark.parametrize("owner", ["", "x" * 300, "bad\nowner", None])
def test_owner_validated(docs, owner):
    with pytest.raises(StoreError):
        docs.create("n", owner)


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), "5", True])
def test_ttl_validated(docs, ttl):
    with pytest.raises(StoreError):
        docs.create("n", "a", ttl=ttl)


def test_data_must_be_json(docs):
    with pytest.raises(StoreError) as err:
        docs.create("n", "a", {"x": object()})
    assert err.value.kind == "invalid_input"
    assert docs.read("n") is None


def test_oversized_document_refused(tmp_path):
    docs = DocumentStore(str(tmp_path), "lease", max_bytes=200)
    with pytest.raises(StoreError):
        docs.create("n", "a", {"x": "y" * 500})


@pytest.mark.parametrize("content, why", [
    (b"{not json", "JSON"),
    (b"\xff\xfe", "UTF-8"),
    (b"[]", "object"),
    (json.dumps({"version": 1}).encode(), "missing field"),
])
def test_garbage_generation_is_invalid(docs, content, why):
    os.makedirs(docs.doc_dir("n"))
    with open(gen_path(docs, "n", 1), "wb") as handle:
        handle.write(content)
    with pytest.raises(InvalidDocument) as err:
        docs.read("n")
    assert err.value.generation == 1 and (why in str(err.value) or "not a valid" in str(err.value))


def _valid_body(**over):
    body = {"version": 1, "kind": "lease", "name": "n", "generation": 1, "owner": "a", "created": 1.0, "ttl": None,
            "released": False, "data": {}}
    body.update(over)
    return json.dumps(body).encode()


@pytest.mark.parametrize("override", [{"kind": "claim"}, {"name": "other"}, {"generation": 7}, {"version": 2},
                                      {"ttl": -3}, {"released": "no"}, {"data": []}, {"owner": ""}])
def test_foreign_or_inconsistent_document_is_invalid(docs, override):
    os.makedirs(docs.doc_dir("n"))
    with open(gen_path(docs, "n", 1), "wb") as handle:
        handle.write(_valid_body(**override))
    with pytest.raises(InvalidDocument):
        docs.read("n")


def test_an_invalid_generation_can_be_superseded_by_number(docs):
    os.makedirs(docs.doc_dir("n"))
    with open(gen_path(docs, "n", 1), "wb") as handle:
        handle.write(b"garbage")
    with pytest.raises(InvalidDocument) as err:
        docs.read("n")
    fixed = docs.replace("n", err.value.generation, "operator", {"fixed": True})
    assert fixed.generation == 2 and docs.read("n").data == {"fixed": True}


def test_symlinked_generation_and_directory_refused(docs, tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_bytes(_valid_body())
    os.makedirs(docs.doc_dir("n"))
    os.symlink(str(target), gen_path(docs, "n", 1))
    with pytest.raises(InvalidDocument):
        docs.read("n")
    other = tmp_path / "otherdir"
    other.mkdir()
    os.symlink(str(other), docs.doc_dir("m"))
    with pytest.raises(InvalidDocument):
        docs.read("m")
    with pytest.raises(InvalidDocument):
        docs.create("m", "a")
    assert os.listdir(str(other)) == []


def test_oversized_generation_is_invalid(tmp_path):
    docs = DocumentStore(str(tmp_path), "lease", max_bytes=300)
    os.makedirs(docs.doc_dir("n"))
    with open(gen_path(docs, "n", 1), "wb") as handle:
        handle.write(_valid_body(data={"x": "y" * 400}))
    with pytest.raises(InvalidDocument) as err:
        docs.read("n")
    assert "limit" in str(err.value)


def test_readers_ignore_temporary_files_and_prune_removes_old_ones(docs):
    doc = docs.create("n", "a")
    for _step in range(5):
        doc = docs.replace("n", doc, "a")
    stale_tmp = os.path.join(docs.doc_dir("n"), ".0000000009.1.abc.tmp")
    with open(stale_tmp, "w") as handle:
        handle.write("partial")
    old = time.time() - 3600
    os.utime(stale_tmp, (old, old))
    assert docs.read("n").generation == 6
    assert docs.prune("n", keep=2) == 5
    assert sorted(os.listdir(docs.doc_dir("n"))) == ["0000000005.json", "0000000006.json"]
    assert docs.read("n").generation == 6
    with pytest.raises(StoreError):
        docs.prune("n", keep=1)


def test_a_writer_whose_expected_generation_was_pruned_withdraws(docs):
    first = docs.create("n", "a")
    doc = first
    for _step in range(4):
        doc = docs.replace("n", doc, "b")
    docs.prune("n", keep=2)  # generations 1-3 are gone; 2 is free again as a file name
    with pytest.raises(Conflict):
        docs.replace("n", first, "late")  # publishes 2, sees 5, withdraws
    assert docs.read("n").owner == "b" and docs.read("n").generation == 5
    assert not os.path.exists(gen_path(docs, "n", 2))


def test_unwritable_store_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    docs = DocumentStore(str(blocker / "docs"), "lease")
    with pytest.raises(StoreError):
        docs.create("n", "a")


# ----------------------------------------------------------------------------------------- real process races


def _race_create(directory, index, barrier, results):
    docs = DocumentStore(directory, "claim")
    barrier.wait()
    try:
        docs.create("vm", "racer-%d" % index, {"i": index}, ttl=60)
        results.put(("won", index))
    except Conflict:
        results.put(("lost", index))


def _race_replace(directory, index, generation, barrier, results):
    docs = DocumentStore(directory, "claim")
    barrier.wait()
    try:
        docs.replace("vm", generation, "racer-%d" % index, {"i": index}, ttl=60)
        results.put(("won", index))
    except Conflict:
        results.put(("lost", index))


def _race(target, args_for, racers):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(racers)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=args_for(i) + (barrier, results)) for i in range(racers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=30) for _proc in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return outcomes


@pytest.mark.parametrize("round_", range(5))
def test_concurrent_processes_creating_one_document_exactly_one_wins(tmp_path, round_):
    directory = str(tmp_path / ("claims%d" % round_))
    outcomes = _race(_race_create, lambda i: (directory, i), 12)
    winners = [i for what, i in outcomes if what == "won"]
    assert len(winners) == 1
    doc = DocumentStore(directory, "claim").read("vm")
    assert doc.generation == 1 and doc.owner == "racer-%d" % winners[0]


@pytest.mark.parametrize("round_", range(5))
def test_concurrent_processes_taking_over_one_generation_exactly_one_wins(tmp_path, round_):
    directory = str(tmp_path / ("claims%d" % round_))
    docs = DocumentStore(directory, "claim")
    docs.create("vm", "dead-owner", ttl=1)
    outcomes = _race(_race_replace, lambda i: (directory, i, 1), 12)
    winners = [i for what, i in outcomes if what == "won"]
    assert len(winners) == 1
    doc = docs.read("vm")
    assert doc.generation == 2 and doc.owner == "racer-%d" % winners[0]
    assert sorted(os.listdir(docs.doc_dir("vm"))) == ["0000000001.json", "0000000002.json"]  # no temp file left
