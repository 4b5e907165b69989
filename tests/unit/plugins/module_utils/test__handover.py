# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The watch handover file: where it lives, what it holds, and that nothing in it can hurt the next watch."""

from __future__ import annotations

import json
import os
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _handover
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidStoreInput
from ansible_collections.kvmha.cluster.plugins.module_utils._handover import decode, encode, handover_path, load, observer_id, save

OBSERVER = "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e-t4026531834"
SEEN = {"h1": (("boot-1", 42), 100.25), "h2.example.org": (("boot-2", 0), 99.0)}


@pytest.fixture
def path(tmp_path):
    return handover_path(str(tmp_path), "prod-a", OBSERVER)


def doc(**changes):
    base = json.loads(encode("prod-a", OBSERVER, 101.0, SEEN))
    base.update(changes)
    return json.dumps(base).encode()


def test_a_handover_round_trips_at_its_place_in_the_store(tmp_path, path):
    assert path == os.path.join(str(tmp_path), "kvmha", "handover", "prod-a", OBSERVER + ".json")
    save(path, encode("prod-a", OBSERVER, 101.0, SEEN), time.time())
    assert load(path, "prod-a", OBSERVER, now=102.0) == (SEEN, "")


def test_what_changed_a_day_ago_or_more_is_not_handed_over():
    now = 100000.0
    seen = {"h1": (("b", 1), now), "h2": (("b", 2), now - 86400.0 + 1.0), "h3": (("b", 3), now - 86400.0)}
    assert sorted(decode(encode("prod-a", OBSERVER, now, seen), "prod-a", OBSERVER, now)) == ["h1", "h2"]


def test_no_handover_yet_is_no_problem(path):
    assert load(path, "prod-a", OBSERVER, now=5.0) == ({}, "")


def test_a_cluster_name_that_cannot_be_a_file_name_has_no_handover(tmp_path):
    with pytest.raises(InvalidStoreInput):
        handover_path(str(tmp_path), "../etc", OBSERVER)


@pytest.mark.parametrize("data, words", [
    (b"", "Expecting value"),
    (b"\xff\xfe", "can't decode"),
    (b"[" * 5000 + b"]" * 5000, "nested deeper"),
    (b'{"hosts": {"h1": [[[[[1]]]]]}}', "nested deeper"),
    (b"[]", "not a version 1 handover"),
    (doc(version=2), "not a version 1 handover"),
    (doc(cluster="prod-b"), "another cluster or observer"),
    (doc(observer="another-boot"), "another cluster or observer"),
    (doc(written=103.0), "not written earlier"),  # a clock that went back: another boot, or a forgery
    (doc(written="101"), "not written earlier"),
    (doc(written=True), "not written earlier"),
    (b'{"version": 1, "cluster": "prod-a", "observer": "%s", "written": NaN, "hosts": {}}' % OBSERVER.encode(),
     "not written earlier"),
    (doc(hosts=[]), "no hosts"),
    (doc(hosts={"h1": ["b", 1, 101.5]}), "host h1: not [boot id"),  # changed after it was written
    (doc(hosts={"h1": ["b", 1, -1.0]}), "host h1"),
    (doc(hosts={"h1": ["b", 1.5, 1.0]}), "host h1"),
    (doc(hosts={"h1": ["b", True, 1.0]}), "host h1"),
    (doc(hosts={"h1": ["b", -1, 1.0]}), "host h1"),
    (doc(hosts={"h1": ["b", 2 ** 60, 1.0]}), "host h1"),
    (doc(hosts={"h1": ["", 1, 1.0]}), "host h1"),
    (doc(hosts={"h1": ["b" * 65, 1, 1.0]}), "host h1"),
    (doc(hosts={"h1": ["b", 1]}), "host h1"),
    (doc(hosts={"h1": {"boot_id": "b"}}), "host h1"),
])
def test_a_handover_that_cannot_be_trusted_is_ignored_whole_with_the_reason(path, data, words):
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(data)
    seen, problem = load(path, "prod-a", OBSERVER, now=102.0)
    assert seen == {} and "is ignored" in problem and words in problem
    with pytest.raises(ValueError):
        decode(data, "prod-a", OBSERVER, 102.0)


def test_a_huge_handover_is_not_read(path, monkeypatch):
    monkeypatch.setattr(_handover, "MAX_BYTES", 64)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(doc())
    seen, problem = load(path, "prod-a", OBSERVER, now=102.0)
    assert seen == {} and "not a regular file of at most 64 bytes" in problem


@pytest.mark.parametrize("make", [
    lambda path, tmp: os.symlink(os.path.join(tmp, "elsewhere.json"), path),
    lambda path, tmp: os.mkdir(path),
    lambda path, tmp: os.mkfifo(path),
])
def test_a_handover_that_is_not_a_regular_file_is_not_read(tmp_path, path, make):
    os.makedirs(os.path.dirname(path))
    with open(os.path.join(str(tmp_path), "elsewhere.json"), "wb") as f:
        f.write(doc())
    make(path, str(tmp_path))
    seen, problem = load(path, "prod-a", OBSERVER, now=102.0)  # a fifo must not block: O_NONBLOCK
    assert seen == {} and problem


def test_save_replaces_the_handover_and_prunes_only_old_handovers(path):
    directory = os.path.dirname(path)
    os.makedirs(directory)
    now = time.time()
    for name, age in (("old-boot.json", 2 * 86400), ("other-controller.json", 60), ("notes.txt", 2 * 86400)):
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
            f.write("{}")
        os.utime(os.path.join(directory, name), (now - age, now - age))
    save(path, encode("prod-a", OBSERVER, 1.0, {}), now)
    save(path, encode("prod-a", OBSERVER, 101.0, SEEN), now)
    assert sorted(os.listdir(directory)) == sorted([OBSERVER + ".json", "other-controller.json", "notes.txt"])
    assert load(path, "prod-a", OBSERVER, now=102.0) == (SEEN, "")


def test_the_observer_is_the_boot_and_the_time_namespace(tmp_path):
    boot = tmp_path / "boot_id"
    boot.write_text("0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e\n")
    os.symlink("time:[4026531834]", str(tmp_path / "time"))
    assert observer_id(str(boot), str(tmp_path / "time")) == OBSERVER
    assert observer_id(str(boot), str(tmp_path / "no-namespace")) == "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e"
    assert observer_id(str(tmp_path / "no-boot-id")) is None
    boot.write_text("../../etc\n")
    assert observer_id(str(boot)) is None


def test_this_machine_has_an_observer_id():
    assert observer_id().startswith(open(_handover.BOOT_ID, encoding="ascii").read().strip())
