# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import (
    FORMAT_VERSION,
    InvalidRecord,
    Reading,
    RecordReader,
    StalenessJudge,
    encode_record,
    parse_record,
    record_path,
    stopped_record,
    validate_host_name,
    write_atomic,
)


def make_record(host="h1", **overrides):
    record = {
        "version": 1,
        "host": host,
        "boot_id": "b0",
        "seq": 7,
        "ts": 1000.0,
        "interval": 2.0,
        "state": "running",
        "self_fence": {"armed": False, "deadline_s": 60.0},
        "capacity": {"mem_free_mib": 4096, "vcpus_free": 4},
        "vms": [
            {"uuid": str(uuid.UUID(int=1)), "name": "g1", "ha": True, "priority": 50, "memory_mib": 64,
             "vcpus": 1, "disks": ["/store/images/g1.img"], "group": ""},
        ],
    }
    record.update(overrides)
    return record


def raw(record) -> bytes:
    return json.dumps(record).encode()


# ------------------------------------------------------------------------------------------ host names


@pytest.mark.parametrize("name", ["h1", "hv-01", "a", "node1.example.org", "A" * 63, ".".join(["a" * 63] * 3) + ".abc"])
def test_good_host_names(name):
    assert validate_host_name(name) == name


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "empty"),
        ("..", "'..'"),
        ("../etc/passwd", "'/'"),
        ("a/b", "'/'"),
        ("a\0b", "NUL"),
        (".hidden", "starts with a dot"),
        ("h1.", "RFC 1123"),
        ("-h1", "RFC 1123"),
        ("h1-", "RFC 1123"),
        ("h 1", "RFC 1123"),
        ("h1;rm -rf x", "RFC 1123"),
        ("hö", "RFC 1123"),
        ("a" * 64, "RFC 1123"),
        ("a." * 130, "characters long"),
    ],
)
def test_hostile_host_names_are_refused_with_a_reason(name, words):
    with pytest.raises(InvalidInput) as err:
        validate_host_name(name)
    assert words in str(err.value)


@pytest.mark.parametrize("name", [None, 7, b"h1", ["h1"]])
def test_non_string_host_names(name):
    with pytest.raises(InvalidInput, match="must be a string"):
        validate_host_name(name)


def test_record_path_stays_in_the_store(tmp_path):
    assert record_path(str(tmp_path), "h1") == str(tmp_path / "kvmha" / "hosts" / "h1.json")
    with pytest.raises(InvalidInput):
        record_path(str(tmp_path), "../../x")


# ------------------------------------------------------------------------------------------ parsing


def test_parse_valid_record():
    record = parse_record(raw(make_record()), expected_host="h1")
    assert record["seq"] == 7 and record["vms"][0]["name"] == "g1" and record["interval"] == 2.0


def test_parse_round_trip():
    record = parse_record(raw(make_record()))
    assert parse_record(encode_record(record)) == record


def test_parse_keeps_optional_reason_and_ignores_unknown_fields():
    record = parse_record(raw(make_record(reason="maintenance", future_field={"x": 1})))
    assert record["reason"] == "maintenance" and "future_field" not in record


# ------------------------------------------------------------------------------------------ upgrades (docs/OPERATIONS.md)
# Format 1 is the only record version so far. A writer not yet upgraded keeps writing what its collection wrote; the
# controller is upgraded first. What the first format-1 writer wrote (commit 430899d): no manifest, no reason.
FIRST_V1_RECORD = (b'{"version": 1, "host": "h1", "boot_id": "3f1c", "seq": 42, "ts": 1764063000.5, "interval": 2, '
                   b'"state": "running", "self_fence": {"armed": false, "deadline_s": 60}, '
                   b'"capacity": {"mem_free_mib": 3900, "vcpus_free": 6}, '
                   b'"vms": [{"uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f", "name": "g1", "ha": true, "priority": 50, '
                   b'"memory_mib": 64, "vcpus": 1, "disks": ["/store/images/g1.img"], "group": ""}]}')


def test_a_record_of_the_first_format_1_writer_is_read_by_this_release():
    record = parse_record(FIRST_V1_RECORD, expected_host="h1")
    assert record["version"] == FORMAT_VERSION == 1 and record["seq"] == 42 and record["interval"] == 2.0
    assert record["vms"][0]["name"] == "g1" and record["capacity"] == {"mem_free_mib": 3900, "vcpus_free": 6}
    assert "manifest" not in record and "reason" not in record  # optional: added after the first writer


def test_a_newer_writers_additions_anywhere_in_a_format_1_record_are_ignored_not_refused():
    """What an older controller needs from a newer format-1 writer: fields it does not know never make the record
    invalid (a new field is optional, a change of meaning is a new version)."""
    doc = json.loads(FIRST_V1_RECORD)
    doc.update(future={"x": 1})
    doc["self_fence"]["future"] = 1
    doc["capacity"]["future_mib"] = 5
    doc["vms"][0]["future"] = [1]
    assert parse_record(raw(doc), expected_host="h1") == parse_record(FIRST_V1_RECORD, expected_host="h1")


def test_a_record_of_another_format_version_is_invalid_and_says_which():
    for version in (0, 2):
        with pytest.raises(InvalidRecord, match="unsupported version '%d' [(]expected 1[)]" % version):
            parse_record(raw(dict(json.loads(FIRST_V1_RECORD), version=version)), expected_host="h1")


def _drop(key):
    record = make_record()
    del record[key]
    return record


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "not JSON"),
        (raw(make_record())[:40], "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (raw(make_record(version=2)), "unsupported version"),
        (raw(make_record(version="1")), "unsupported version"),
        (raw(_drop("seq")), "missing field 'seq'"),
        (raw(_drop("boot_id")), "missing field 'boot_id'"),
        (raw(_drop("vms")), "missing field 'vms'"),
        (raw(make_record(seq=True)), "'seq' must be"),
        (raw(make_record(seq=-1)), "'seq' must be"),
        (raw(make_record(seq="7")), "'seq' must be"),
        (raw(make_record(ts="now")), "'ts' must be"),
        (raw(make_record(ts=float("nan"))), "'ts' must be"),
        (raw(make_record(interval=0)), "'interval' must be"),
        (raw(make_record(interval=1e9)), "'interval' must be"),
        (raw(make_record(state="dead")), "'state' must be"),
        (raw(make_record(boot_id="")), "'boot_id' must be"),
        (raw(make_record(host="../x")), "'/'"),
        (raw(make_record(host="h2")), "file belongs to 'h1'"),
        (raw(make_record(self_fence={"armed": "yes", "deadline_s": 1})), "'armed' must be"),
        (raw(make_record(capacity={"mem_free_mib": -5, "vcpus_free": 1})), "'mem_free_mib' must be"),
        (raw(make_record(vms={})), "'vms' must be"),
        (raw(make_record(vms=["g1"])), "vms[0] must be an object"),
        (raw(make_record(vms=[dict(make_record()["vms"][0], uuid="nope")])), "vms[0].uuid is not a UUID"),
        (raw(make_record(vms=[dict(make_record()["vms"][0], priority=101)])), "vms[0].field 'priority'"),
        (raw(make_record(vms=[dict(make_record()["vms"][0], disks=[1])])), "vms[0].field 'disks'"),
    ],
)
def test_parse_rejects_bad_records_with_a_reason(data, reason):
    with pytest.raises(InvalidRecord) as err:
        parse_record(data, expected_host="h1")
    assert reason in str(err.value)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_parse_never_raises_anything_else_on_arbitrary_bytes(data):
    try:
        parse_record(data)
    except InvalidRecord:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(sorted(make_record())), json_values, max_size=11))
def test_parse_never_raises_anything_else_on_mangled_records(fields):
    record = dict(make_record(), **fields)
    try:
        parse_record(raw(record))
    except InvalidRecord:
        pass


# ------------------------------------------------------------------------------------------ files


@pytest.fixture
def store(tmp_path):
    os.makedirs(tmp_path / "kvmha" / "hosts")
    return str(tmp_path)


def put(store, host, data: bytes, name=None):
    path = os.path.join(store, "kvmha", "hosts", (name or host + ".json"))
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_reader_reads_a_valid_record(store):
    put(store, "h1", raw(make_record()))
    reading = RecordReader(store).read("h1")
    assert reading.status == "ok" and reading.record["seq"] == 7 and reading.mtime > 0


def test_reader_missing(store):
    assert RecordReader(store).read("h9").status == "missing"


def test_reader_refuses_symlinks(store, tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_bytes(raw(make_record()))
    os.symlink(target, os.path.join(store, "kvmha", "hosts", "h1.json"))
    reading = RecordReader(store).read("h1")
    assert (reading.status, reading.reason) == ("invalid", "is a symbolic link")


def test_reader_refuses_directories_and_fifos(store):
    os.mkdir(os.path.join(store, "kvmha", "hosts", "h1.json"))
    os.mkfifo(os.path.join(store, "kvmha", "hosts", "h2.json"))
    reader = RecordReader(store)
    assert reader.read("h1").reason == "is not a regular file"
    assert reader.read("h2").reason == "is not a regular file"


def test_reader_refuses_oversized_files(store):
    put(store, "h1", raw(make_record()) + b" " * 2000)
    reading = RecordReader(store, max_bytes=1000).read("h1")
    assert reading.status == "invalid" and "byte limit" in reading.reason


def test_reader_reports_truncated_file_as_invalid(store):
    put(store, "h1", raw(make_record())[:25])
    reading = RecordReader(store).read("h1")
    assert reading.status == "invalid" and reading.reason.startswith("not JSON")


def test_reader_reparses_only_when_the_file_changes(store):
    path = put(store, "h1", raw(make_record()))
    reader = RecordReader(store)
    first = reader.read("h1")
    assert reader.read("h1") is first
    write_atomic(path, raw(make_record(seq=8)))
    assert reader.read("h1").record["seq"] == 8


def test_hosts_in_store_skips_temp_files_and_reports_bad_names(store):
    put(store, "h1", raw(make_record()))
    put(store, "h2", raw(make_record(host="h2")))
    put(store, "x", b"{}", name=".h3.json.123.tmp")
    put(store, "x", b"{}", name="notes.txt")
    put(store, "x", b"{}", name="bad name.json")
    hosts, ignored = RecordReader(store).hosts_in_store()
    assert hosts == ["h1", "h2"]
    assert set(ignored) == {"notes.txt", "bad name.json"}


def test_hosts_in_store_of_an_empty_store(tmp_path):
    assert RecordReader(str(tmp_path)).hosts_in_store() == ([], {})


def test_write_atomic_replaces_content_and_leaves_no_temp_file(store):
    path = os.path.join(store, "kvmha", "hosts", "h1.json")
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert open(path, "rb").read() == b"two"
    assert os.listdir(os.path.dirname(path)) == ["h1.json"]


def test_write_atomic_failure_leaves_old_content_and_no_temp(store, monkeypatch):
    path = os.path.join(store, "kvmha", "hosts", "h1.json")
    write_atomic(path, b"old")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    monkeypatch.undo()
    assert open(path, "rb").read() == b"old"
    assert os.listdir(os.path.dirname(path)) == ["h1.json"]


def test_stopped_record_keeps_the_vm_list():
    previous = parse_record(raw(make_record()))
    marker = stopped_record(previous, "h1", now=2000.0, reason="maintenance")
    assert marker["state"] == "stopped" and marker["seq"] == 8 and marker["ts"] == 2000.0
    assert marker["vms"] == previous["vms"] and marker["reason"] == "maintenance"
    assert parse_record(encode_record(marker)) == marker


def test_stopped_record_without_history_is_valid():
    marker = stopped_record(None, "h1", now=2000.0)
    assert parse_record(encode_record(marker))["vms"] == []


# ------------------------------------------------------------------------------------------ staleness


class Clocks:
    def __init__(self):
        self.wall_now = 10_000.0
        self.mono_now = 500.0

    def wall(self):
        return self.wall_now

    def monotonic(self):
        return self.mono_now

    def advance(self, seconds):
        self.wall_now += seconds
        self.mono_now += seconds


def ok(seq, mtime, host="h1", **overrides):
    record = parse_record(raw(make_record(host=host, seq=seq, **overrides)))
    record.setdefault("ts", mtime)
    return Reading(host, "ok", record=record, mtime=mtime)


def reading_at(clocks, seq, age=0.0, ts_offset=0.0, **overrides):
    mtime = clocks.wall_now - age
    return ok(seq, mtime, ts=mtime + ts_offset, **overrides)


@pytest.fixture
def clocks():
    return Clocks()


@pytest.fixture
def judge(clocks):
    return StalenessJudge(misses=3, skew_allowance=2.0, wall=clocks.wall, monotonic=clocks.monotonic)


def test_first_read_of_a_recent_record_is_fresh(judge, clocks):
    state = judge.judge(reading_at(clocks, 1, age=1.0))
    assert state.status == "fresh" and state.age == 0.0 and state.live


def test_first_read_of_an_old_record_is_stale(judge, clocks):
    state = judge.judge(reading_at(clocks, 1, age=30.0))
    assert state.status == "stale" and state.age == pytest.approx(28.0)


def test_first_read_never_overstates_age_within_the_allowance(judge, clocks):
    assert judge.judge(reading_at(clocks, 1, age=7.9)).status == "fresh"  # 7.9 - 2.0 < 6


def test_seq_advancing_keeps_a_host_fresh_whatever_its_clock_says(judge, clocks):
    for seq in range(1, 20):
        state = judge.judge(reading_at(clocks, seq, ts_offset=-600.0))
        clocks.advance(2.0)
    assert state.status == "clock_skew" and state.live


def test_seq_stopping_makes_a_host_stale_after_misses_times_interval(judge, clocks):
    judge.judge(reading_at(clocks, 1))
    frozen = reading_at(clocks, 1)
    clocks.advance(5.9)
    assert judge.judge(frozen).status == "fresh"
    clocks.advance(0.1)
    state = judge.judge(frozen)
    assert state.status == "stale" and "unchanged for 6.0 s" in state.reason


def test_staleness_uses_the_reader_clock_not_the_file_mtime(judge, clocks):
    # The store claims the file is new (mtime jumps forward), but seq does not move: still stale.
    judge.judge(reading_at(clocks, 1))
    clocks.advance(7.0)
    assert judge.judge(reading_at(clocks, 1, age=0.0)).status == "stale"


def test_timestamp_from_the_future_is_never_fresh(judge, clocks):
    assert judge.judge(reading_at(clocks, 1, ts_offset=600.0)).status == "clock_skew"
    first_look = StalenessJudge(misses=3, skew_allowance=2.0, wall=clocks.wall, monotonic=clocks.monotonic)
    dead_writer_clock_ahead = reading_at(clocks, 5, age=100.0, ts_offset=700.0)
    assert first_look.judge(dead_writer_clock_ahead).status == "stale"


def test_boot_id_change_is_reported_as_a_reboot(judge, clocks):
    judge.judge(reading_at(clocks, 100, boot_id="boot-a"))
    clocks.advance(2.0)
    state = judge.judge(reading_at(clocks, 1, boot_id="boot-b"))
    assert state.rebooted and state.status == "fresh"
    clocks.advance(2.0)
    assert judge.judge(reading_at(clocks, 2, boot_id="boot-b")).rebooted


def test_stopped_state_is_reported_at_once(judge, clocks):
    state = judge.judge(reading_at(clocks, 1, state="stopped", reason="systemctl stop"))
    assert state.status == "stopped" and "systemctl stop" in state.reason and not state.live


@pytest.mark.parametrize("status", ["missing", "invalid"])
def test_unusable_readings_pass_through(judge, status):
    state = judge.judge(Reading("h1", status, reason="why"))
    assert (state.status, state.reason, state.live) == (status, "why", False)


def test_judge_rejects_bad_settings():
    with pytest.raises(InvalidInput):
        StalenessJudge(misses=0)
    with pytest.raises(InvalidInput):
        StalenessJudge(skew_allowance=-1)


@settings(max_examples=200)
@given(
    steps=st.lists(st.tuples(st.floats(0.0, 5.0), st.booleans()), min_size=1, max_size=30),
    first_age=st.floats(0.0, 100.0),
    ts_offset=st.floats(-1000.0, 1000.0),
)
def test_a_host_is_never_live_after_misses_times_interval_without_a_new_seq(steps, first_age, ts_offset):
    """Property: whatever the writer's clock says, no new seq for 3 x 2 s of reader time means not live."""
    clocks = Clocks()
    judge = StalenessJudge(misses=3, skew_allowance=2.0, wall=clocks.wall, monotonic=clocks.monotonic)
    seq = 1
    state = judge.judge(reading_at(clocks, seq, age=first_age, ts_offset=ts_offset))
    since_change = max(0.0, first_age - 2.0)
    for pause, advances in steps:
        clocks.advance(pause)
        since_change += pause
        if advances:
            seq += 1
            since_change = 0.0
        state = judge.judge(reading_at(clocks, seq, ts_offset=ts_offset))
        # The judge reads the difference of two clock readings, the test sums the pauses: both are floats, so
        # within 1e-9 of the boundary either answer is right (hypothesis found 1.0 + 5.0 read back as 5.999...).
        if since_change >= 6.0 + 1e-9:
            assert not state.live
        elif since_change < 6.0 - 1e-9:
            assert state.live
