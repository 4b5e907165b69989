# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz target of issue 14 item 2: whatever a heartbeat record or a mark on the store holds, kvm_heartbeat reads and
judges it without failing, the other hosts stay watched, and host_investigate decides on what kvm_heartbeat made of
it (with custom rules that read every field) without failing.

Records are hypothesis-generated mutations of a valid record: any field replaced or removed, with values of every
JSON type, unicode (lone surrogates included), NaN and Infinity, integers far beyond a float or beyond Python's
4300-digit limit, nesting from a few levels to tens of thousands, strings up to past the size limit; sometimes
truncated, sometimes arbitrary bytes. Both modules run in-process through ``main()``, as in the other module tests.

The unit stage runs a fixed seed and a bounded number of examples. For a longer run (docs/BENCHMARKS.md):
``KVMHA_FUZZ_EXAMPLES=20000 KVMHA_FUZZ_SEED=1 pytest -p no:randomly --hypothesis-show-statistics <this file>``."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._decision import ACTIONS
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import ALL_STATUSES, LIVE_STATUSES, record_path, write_atomic
from ansible_collections.kvmha.cluster.plugins.modules import host_investigate, kvm_heartbeat

FUZZ_EXAMPLES = int(os.environ.get("KVMHA_FUZZ_EXAMPLES", "150"))
FUZZ_SEED = int(os.environ.get("KVMHA_FUZZ_SEED", "14"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])


class Raw(str):
    """JSON text written as it is: what json.dumps cannot or will not write."""


def encode(value, ascii_only: bool) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{%s}" % ",".join("%s:%s" % (json.dumps(k, ensure_ascii=ascii_only), encode(v, ascii_only)) for k, v in value.items())
    if isinstance(value, list):
        return "[%s]" % ",".join(encode(v, ascii_only) for v in value)
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)


NUMBERS = ["1e400", "-1e400", "1e-400", "NaN", "Infinity", "-Infinity", "-0", "0.0", "1" + "0" * 400, "9" * 4300,
           "9" * 4301, "-" + "9" * 5000, str(2 ** 53), str(2 ** 53 + 1), str(2 ** 63), str(-(2 ** 64)), "1E+308", "2e308"]
STRINGS = ['"\\ud800"', '"a\\udfff\\ud800"', '"\\u0000"', '"\\\\"', '"\\"[[[{{{"', '"\u00e9\u4e2d\U0001f600"', '""']


@st.composite
def deep(draw):
    depth = draw(st.one_of(st.sampled_from([31, 32, 33, 100, 999, 1000, 1001, 5000, 50_000]), st.integers(0, 2000)))
    shape = draw(st.sampled_from(["array", "object", "mixed", "unclosed"]))
    if shape == "array":
        return Raw("[" * depth + "]" * depth)
    if shape == "object":
        return Raw('{"a":' * depth + "0" + "}" * depth)
    if shape == "mixed":
        return Raw('[{"k":' * depth + "1" + "}]" * depth)
    return Raw("[" * depth)


@st.composite
def long_string(draw):
    return Raw('"%s"' % ("x" * draw(st.sampled_from([1000, 70_000, 1_100_000]))))


leaves = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=True, allow_infinity=True)
          | st.text(max_size=12) | st.sampled_from(NUMBERS + STRINGS).map(Raw))
values = st.one_of(
    st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                 max_leaves=10),
    deep(),
    long_string(),
)


def valid_record(host: str) -> dict:
    return {
        "version": 1, "host": host, "boot_id": "b-" + host, "seq": 42, "ts": time.time(), "interval": 2.0,
        "state": "running", "self_fence": {"armed": True, "deadline_s": 60.0},
        "capacity": {"mem_free_mib": 4096, "vcpus_free": 8},
        "vms": [{"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, host)), "name": "vm-" + host, "ha": True, "priority": 50,
                 "memory_mib": 64, "vcpus": 1, "disks": ["/store/images/vm-%s.img" % host], "group": ""}],
        "manifest": {"source": "libvirt", "age_s": 0.1, "error": ""}, "reason": "",
    }


RECORD_PATHS = ["version", "host", "boot_id", "seq", "ts", "interval", "state", "self_fence", "self_fence.armed",
                "self_fence.deadline_s", "capacity", "capacity.mem_free_mib", "capacity.vcpus_free", "vms", "vms.0",
                "vms.0.uuid", "vms.0.name", "vms.0.ha", "vms.0.priority", "vms.0.memory_mib", "vms.0.vcpus", "vms.0.disks",
                "vms.0.group", "manifest", "manifest.source", "manifest.age_s", "manifest.error", "reason", "extra"]
MARK_PATHS = ["version", "kind", "name", "generation", "owner", "created", "ttl", "released", "data", "data.vms",
              "data.verdict", "data.reason", "extra"]


def mutate(doc: dict, path: str, value, delete: bool) -> dict:
    parent, keys = doc, path.split(".")
    for key in keys[:-1]:
        parent = parent[int(key)] if isinstance(parent, list) else parent[key]
    last = int(keys[-1]) if isinstance(parent, list) else keys[-1]
    if delete:
        if isinstance(parent, list):
            parent.pop(last)
        else:
            parent.pop(last, None)
    else:
        parent[last] = value
    return doc


@st.composite
def file_bytes(draw, base, paths):
    """A document of ``base`` with a few fields replaced or removed, encoded; sometimes cut short or plain garbage."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=300))
    doc = json.loads(json.dumps(base))
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4)):
        try:
            doc = mutate(doc, path, draw(values), draw(st.integers(0, 5)) == 0)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            pass  # an earlier mutation replaced or removed the parent
    text = encode(doc, ascii_only=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


RULES = [
    {"id": "numbers", "when": "avg([heartbeat.seq, heartbeat.age, heartbeat.ts, heartbeat.interval]) > `0`", "action": "alert"},
    {"id": "strings", "when": "contains(heartbeat.reason, 'x') || starts_with(heartbeat.boot_id, 'b')", "action": "none"},
    {"id": "lists", "when": "length(heartbeat.vms[?ha]) > `5` || max(heartbeat.vms[].memory_mib) > `1`", "action": "alert"},
    {"id": "deep", "when": "heartbeat.manifest.error == 'x' || heartbeat.self_fence.deadline_s > `1e300`", "action": "alert"},
]


@pytest.fixture
def store(tmp_path):
    os.makedirs(tmp_path / "kvmha" / "hosts")
    return str(tmp_path)


def decide_on(run_module, entry: dict) -> dict:
    evidence = {"host": "h1", "cluster": "c1", "observer": {"ok": True}, "mgmt": {"reachable": False}, "heartbeat": entry,
                "neighbors": {"reachable": 0, "unreachable": 2, "errors": 0}, "bmc": {"power": "on", "error": None},
                "disk_activity": "idle"}
    result = run_module(host_investigate, {"hosts": [evidence], "clusters": {"c1": {"size": 4, "fenced": 0}},
                                           "policy": {"rules": RULES}})
    assert "failed" not in result, result.get("msg")
    return result["decisions"]["h1"]


@seed(FUZZ_SEED)
@FUZZ
@given(data=file_bytes(valid_record("h1"), RECORD_PATHS))
def test_no_heartbeat_record_stops_the_watch_or_the_decision(run_module, store, data):
    with open(record_path(store, "h1"), "wb") as f:
        f.write(data)
    write_atomic(record_path(store, "h2"), json.dumps(valid_record("h2")).encode())
    result = run_module(kvm_heartbeat, {"store_path": store, "hosts": ["h1", "h2"]})
    assert "failed" not in result, result.get("msg")
    assert result["observer_ok"] is True and result["hosts"]["h2"]["status"] == "fresh" and "h2" in result["fresh"]
    entry = result["hosts"]["h1"]
    assert entry["status"] in ALL_STATUSES
    decision = decide_on(run_module, entry)
    assert decision["action"] in ACTIONS
    if entry["status"] in LIVE_STATUSES:
        assert decision["action"] not in ("fence", "recover")


@seed(FUZZ_SEED)
@FUZZ
@given(kind=st.sampled_from(["fenced", "maintenance"]),
       data=file_bytes({"version": 1, "kind": "fenced", "name": "h1", "generation": 1, "owner": "watchdog/1", "created": 1.0,
                        "ttl": None, "released": False, "data": {"vms": [], "verdict": "SUSPECT", "reason": "R8"}}, MARK_PATHS))
def test_no_mark_stops_the_watch(run_module, store, kind, data):
    shutil.rmtree(os.path.join(store, "kvmha", "fenced"), ignore_errors=True)
    shutil.rmtree(os.path.join(store, "kvmha", "maintenance"), ignore_errors=True)
    os.makedirs(os.path.join(store, "kvmha", kind, "h1"))
    with open(os.path.join(store, "kvmha", kind, "h1", "0000000001.json"), "wb") as f:
        f.write(data.replace(b'"kind":"fenced"', b'"kind":"%s"' % kind.encode()))
    for host in ("h1", "h2"):
        write_atomic(record_path(store, host), json.dumps(valid_record(host)).encode())
    result = run_module(kvm_heartbeat, {"store_path": store})
    assert "failed" not in result, result.get("msg")
    assert result["observer_ok"] is True and result["hosts"]["h2"]["status"] == "fresh"
    assert set(result[kind]) <= {"h1"}


# Evidence as host_investigate may receive it: any value in any heartbeat field, beside the fields the rules read.
py_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10 ** 450), 10 ** 450) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None), max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
extremes = st.sampled_from([10 ** 400, -(10 ** 400), 2 ** 1024, 2 ** 53 + 1, float("inf"), float("-inf"), float("nan"), -1])
HEARTBEAT_KEYS = ["age", "seq", "ts", "interval", "reason", "boot_id", "vms", "self_fence", "manifest", "clock_offset"]


@seed(FUZZ_SEED)
@FUZZ
@given(status=st.sampled_from(ALL_STATUSES + ("unknown",)),
       fields=st.fixed_dictionaries({}, optional={key: extremes | py_values for key in HEARTBEAT_KEYS}),
       self_fence=st.fixed_dictionaries({}, optional={key: extremes | py_values for key in ("armed", "deadline_s")}))
def test_no_evidence_value_crashes_host_investigate(run_module, status, fields, self_fence):
    entry = dict(fields, status=status)
    if "self_fence" not in fields:
        entry["self_fence"] = self_fence
    evidence = {"host": "h1", "cluster": "c1", "mgmt": {"reachable": False}, "heartbeat": entry,
                "neighbors": {"reachable": 0, "unreachable": 2}, "bmc": {"power": "on"}, "disk_activity": "idle"}
    result = run_module(host_investigate, {"hosts": [evidence], "clusters": {"c1": {"size": 4}}, "policy": {"rules": RULES}})
    if result.get("failed"):
        assert result["error_kind"] == "invalid_input", result["msg"]  # a clear error about the evidence, not a crash
    else:
        assert result["decisions"]["h1"]["action"] in ACTIONS
