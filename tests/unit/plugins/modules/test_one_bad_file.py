# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 14 item 2: one bad file (or one bad inventory name) never stops the watch of the rest of the cluster.

Deeply nested JSON used to raise RecursionError out of the parsers, huge numbers OverflowError out of the validators
and of custom JMESPath rules: either escaped as a crash of the whole run. Now each is that host's (or that mark's)
`invalid` evidence, or that host's RULE_ERROR decision."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _heartbeat, _marks
from ansible_collections.kvmha.cluster.plugins.module_utils._decision import decide
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy
from ansible_collections.kvmha.cluster.plugins.modules import host_investigate, kvm_heartbeat

DEEP = 30_000  # far deeper than Python's recursion limit, below the 64 KiB limit of marks (and 1 MiB of records)


def record(host, **overrides):
    doc = {
        "version": 1, "host": host, "boot_id": "b-" + host, "seq": 1, "ts": time.time(), "interval": 2.0,
        "state": "running", "self_fence": {"armed": False, "deadline_s": 60.0},
        "capacity": {"mem_free_mib": 1024, "vcpus_free": 2},
        "vms": [{"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, host)), "name": "vm-" + host, "ha": True, "priority": 50,
                 "memory_mib": 64, "vcpus": 1, "disks": [], "group": ""}],
    }
    doc.update(overrides)
    return doc


def beat(store, host, age=0.0):
    path = _heartbeat.record_path(store, host)
    _heartbeat.write_atomic(path, json.dumps(record(host)).encode())
    if age:
        os.utime(path, (time.time() - age, time.time() - age))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def store(tmp_path):
    os.makedirs(tmp_path / "kvmha" / "hosts")
    return str(tmp_path)


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def hostile_record(host: str, field: str, value_json: str) -> str:
    """A record of `host` whose `field` is the raw JSON text `value_json` (which json.dumps could not write)."""
    text = json.dumps(record(host, **{field: "@VALUE@"}))
    return text.replace('"@VALUE@"', value_json)


@pytest.mark.parametrize("field, value, reason", [
    ("vms", nested(DEEP), "nested deeper than"),
    ("capacity", '{"a":' * DEEP + "1" + "}" * DEEP, "nested deeper than"),
    ("ts", "1" + "0" * 400, "field 'ts'"),
    ("seq", "9" * 4000, "field 'seq'"),
    ("self_fence", '{"armed": false, "deadline_s": 1%s}' % ("0" * 400), "field 'deadline_s'"),
    ("interval", "Infinity", "field 'interval'"),
    ("ts", "NaN", "field 'ts'"),
])
def test_a_hostile_heartbeat_is_that_hosts_invalid_evidence(run_module, store, field, value, reason):
    beat(store, "h1")
    beat(store, "h3")
    write(os.path.join(store, "kvmha", "hosts", "h2.json"), hostile_record("h2", field, value))
    result = run_module(kvm_heartbeat, {"store_path": store, "hosts": ["h1", "h2", "h3"]})
    assert "failed" not in result, result.get("msg")
    assert result["hosts"]["h2"]["status"] == "invalid" and reason in result["hosts"]["h2"]["reason"]
    assert result["fresh"] == ["h1", "h3"] and result["suspects"] == ["h2"] and result["observer_ok"] is True


def test_nesting_inside_strings_does_not_count():
    text = hostile_record("h1", "boot_id", json.dumps("[" * 100))
    with pytest.raises(_heartbeat.InvalidRecord, match="boot_id"):  # too long a boot id, but not "nested"
        _heartbeat.parse_record(text.encode())
    assert _heartbeat.json_depth(json.dumps({"a": ["[[[{{{", '\\"[[[', {"b": []}]}).encode()) == 4


@pytest.mark.parametrize("kind", ["maintenance", "fenced"])
@pytest.mark.parametrize("body", [
    '{"version": 1, "kind": "%s", "name": "h2", "generation": 1, "owner": "x", "created": 1, "ttl": null,'
    ' "released": false, "data": {"deep": ' + nested(DEEP) + "}}",
    '{"version": 1, "kind": "%s", "name": "h2", "generation": 1, "owner": "x", "created": 1' + "0" * 400 + ","
    ' "ttl": null, "released": false, "data": {}}',
    '{"version": 1, "kind": "%s", "name": "h2", "generation": 1, "owner": "x", "created": 1, "ttl": 1' + "0" * 400 + ","
    ' "released": false, "data": {}}',
])
def test_a_hostile_mark_is_an_invalid_mark_and_the_rest_is_watched(run_module, store, kind, body):
    beat(store, "h1")
    beat(store, "h2", age=60)
    beat(store, "h3", age=60)
    write(os.path.join(store, "kvmha", kind, "h2", "0000000001.json"), body.replace("%s", kind))
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert "failed" not in result, result.get("msg")
    assert "invalid" in result[kind]["h2"]  # unreadable marks count as active: the cautious reading
    assert result["suspects"] == ["h3"] and result["fresh"] == ["h1"]


def test_marks_read_directly_report_the_hostile_one_and_keep_the_others(store):
    _marks.set_mark(store, "fenced", "h1", "watchdog", {"vms": []})
    write(os.path.join(store, "kvmha", "fenced", "h2", "0000000001.json"), '{"data": %s}' % nested(DEEP))
    marks = _marks.read_marks(store, "fenced")
    assert list(marks["active"]) == ["h1"] and "nested deeper than" in marks["invalid"]["h2"]


@pytest.mark.parametrize("bad, words", [
    ("../../etc/passwd", "'/'"),
    ("h 2", "RFC 1123"),
    ("hv_9", "RFC 1123"),
    ("x" * 300, "characters long"),
])
def test_a_hostile_host_name_is_reported_and_skipped(run_module, store, bad, words):
    beat(store, "h1")
    beat(store, "h3", age=60)
    result = run_module(kvm_heartbeat, {"store_path": store, "hosts": ["h1", bad, "h3"], "exclude": [bad]})
    assert "failed" not in result, result.get("msg")
    assert sorted(result["hosts"]) == ["h1", "h3"] and result["suspects"] == ["h3"]
    assert list(result["invalid_hosts"]) == [bad[:100]] and words in result["invalid_hosts"][bad[:100]]
    assert any("skipped" in str(w) for w in result["warnings"])


def test_an_unusable_observer_name_still_fails_the_observer(run_module, store):
    """The observer's own heartbeat cannot be checked under a name that is not a host name: that is not skipped."""
    beat(store, "h1")
    result = run_module(kvm_heartbeat, {"store_path": store, "observer_host": "obs/../x"})
    assert result["failed"] is True and result["error_kind"] == "invalid_input"


# ------------------------------------------------------------------------------------------ the decision


DEAD = {
    "host": "h1", "cluster": "c1", "mgmt": {"reachable": False},
    "heartbeat": {"status": "stale", "age": 60.0, "seq": 10 ** 400, "self_fence": {"armed": False, "deadline_s": 60.0}},
    "neighbors": {"reachable": 0, "unreachable": 2}, "bmc": {"power": "on"}, "disk_activity": "idle",
}


@pytest.mark.parametrize("when", [
    "avg([heartbeat.seq, `1.5`]) > `0`",  # int too large to convert to float
    "sum([heartbeat.seq, heartbeat.age]) > `0`",
    "ceil(`1e400`) > `0`",  # cannot convert float infinity to integer
])
def test_an_overflowing_custom_rule_is_that_hosts_rule_error(when):
    policy = effective_policy({"rules": [{"id": "big", "when": when, "action": "none"}]})
    other = dict(DEAD, host="h2", heartbeat=dict(DEAD["heartbeat"], seq=1))
    result = decide([DEAD, other], {"c1": {"size": 5}}, policy, 0.0)
    assert result["decisions"]["h1"]["verdict"] == "RULE_ERROR" and result["decisions"]["h1"]["action"] == "alert"


@pytest.mark.parametrize("heartbeat", [
    {"status": "stale", "age": 10 ** 400},
    {"status": "stale", "age": 60.0, "self_fence": {"armed": True, "deadline_s": -(10 ** 400)}},
])
def test_a_huge_number_in_the_evidence_is_a_clear_error(heartbeat):
    with pytest.raises(InvalidInput, match="must be a number"):
        decide([dict(DEAD, heartbeat=heartbeat)], {"c1": {"size": 5}}, effective_policy({}), 0.0)


def test_host_investigate_decides_despite_an_overflowing_rule(run_module):
    rule = {"id": "big", "when": "avg([heartbeat.seq, `1.5`]) > `0`", "action": "none"}
    result = run_module(host_investigate, {"hosts": [DEAD], "clusters": {"c1": {"size": 5}}, "policy": {"rules": [rule]}})
    assert "failed" not in result, result.get("msg")
    assert result["decisions"]["h1"]["verdict"] == "RULE_ERROR"


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_tricky_text = st.text(st.sampled_from('[]{}"\\/ :,ab\u00e9\n'), max_size=8)
_json_values = st.recursive(st.none() | st.booleans() | st.integers() | _tricky_text,
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_tricky_text, inner, max_size=3),
                            max_leaves=20)


@settings(max_examples=300)
@given(value=_json_values, ascii_only=st.booleans())
def test_json_depth_is_exact_on_valid_json_whatever_the_strings_hold(value, ascii_only):
    """The bracket scan skips strings exactly as a parser does (escaped quotes, backslashes, brackets inside)."""
    assert _heartbeat.json_depth(json.dumps(value, ensure_ascii=ascii_only).encode()) == _depth(value)


@pytest.mark.parametrize("text, too_deep", [
    (nested(32), False),
    (nested(33), True),
    ('{"a":' * 33 + "1" + "}" * 33, True),
    (json.dumps(["[" * 100, "{" * 100]), False),  # brackets in strings: the count says maybe, the scan says no
    ("[" * 33, True),  # unclosed: a parser would recurse as deep before it failed
])
def test_json_too_deep_at_the_limit(text, too_deep):
    assert _heartbeat.json_too_deep(text.encode()) is too_deep
