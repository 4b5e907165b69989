# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The status table's pure logic: rows, states, VM rows and text from hand-built snapshots, and from hostile ones."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _recovery, _status
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import build_record

NOW = 1_800_000_000.0
UUIDS = ["%08d-0000-4000-8000-000000000000" % i for i in range(6)]


def vm(index: int, priority: int = 50, ha: bool = True) -> dict:
    return {"uuid": UUIDS[index], "name": "g%d" % index, "ha": ha, "priority": priority, "memory_mib": 64, "vcpus": 1,
            "disks": [], "group": "db" if index % 2 else ""}


def record(host: str, vms=(), boot: str = "boot-1", state: str = "running", ts: float = NOW) -> dict:
    return build_record(host, boot, 7, ts, 2.0, {"armed": False, "deadline_s": 60}, {"mem_free_mib": 2048, "vcpus_free": 3},
                        list(vms), state=state)


def reading(host: str, age: float = 1.0, **kw) -> dict:
    return {"status": "ok", "reason": "", "record": record(host, ts=NOW - age, **kw), "mtime": NOW - age}


def mark(owner: str, created: float, ttl=None, **data) -> dict:
    return {"name": "x", "generation": 1, "owner": owner, "created": created, "ttl": ttl,
            "expires_at": None if ttl is None else created + ttl, "released": False, "data": data}


def snapshot(**kw) -> dict:
    base = {"cluster": "lab", "now": NOW, "hosts": ["h1", "h2", "h3"], "readings": {}, "ignored_files": {},
            "maintenance": {"active": {}, "expired": {}, "invalid": {}}, "fenced": {"active": {}, "expired": {}, "invalid": {}},
            "owed": {}, "owed_invalid": {}, "lease": None, "incidents": {}, "readiness": None}
    base.update(kw)
    return base


def rows(status: dict) -> dict:
    return {row["host"]: row for row in status["hosts"]}


def test_a_healthy_cluster_is_alive_everywhere_with_its_vms_running():
    snap = snapshot(readings={"h1": reading("h1", vms=[vm(0, 90)]), "h2": reading("h2", vms=[vm(1, 10)]), "h3": reading("h3")})
    status = _status.build_status(snap)
    assert [r["state"] for r in status["hosts"]] == ["alive"] * 3
    assert [r["state_text"] for r in status["hosts"]] == ["alive"] * 3
    assert rows(status)["h1"]["capacity"] == {"mem_free_mib": 2048, "vcpus_free": 3}
    assert rows(status)["h1"]["age_s"] == 1.0
    assert [(v["name"], v["host"], v["state"]) for v in status["vms"]] == [("g0", "h1", "running"), ("g1", "h2", "running")]
    assert status["summary"] == {"hosts": 3, "alive": 3, "suspect": 0, "maintenance": 0, "fenced": 0, "error": 0,
                                 "ha_vms": 2, "vms_not_running": 0}


def test_a_failed_host_is_fenced_since_by_whom_with_its_owed_vms():
    owed = _recovery.new_document("h1", "lab", "inc", "SUSPECT", "R8", [vm(0, 90), vm(1, 20)], NOW - 100, "watchdog/1")
    owed["vms"][1] = _recovery.transition(owed["vms"][1], "verified", NOW - 50, target="h2")
    snap = snapshot(readings={"h1": reading("h1", age=120, vms=[vm(0, 90), vm(1, 20)]), "h2": reading("h2", vms=[vm(1, 20)]),
                              "h3": reading("h3")},
                    fenced={"active": {"h1": mark("watchdog/1", NOW - 100, verdict="SUSPECT", rule="R8")}, "expired": {}, "invalid": {}},
                    owed={"h1": owed})
    status = _status.build_status(snap)
    h1 = rows(status)["h1"]
    assert h1["state"] == "fenced" and h1["owed_vms"] == 1 and h1["heartbeat"] == "stale"
    assert h1["state_text"].startswith("fenced since ") and " by watchdog/1; owed VMs 1" in h1["state_text"]
    assert h1["fenced"]["verdict"] == "SUSPECT" and h1["fenced"]["rule"] == "R8"
    vms = {v["name"]: v for v in status["vms"]}
    assert (vms["g0"]["state"], vms["g0"]["host"], vms["g0"]["detail"]) == ("owed", "h1", "owed by h1")
    assert (vms["g1"]["state"], vms["g1"]["host"]) == ("running", "h2"), "verified and listed by a live host: running there"
    assert vms["g1"]["detail"] == "also listed by h1 (unknown (host fenced))"
    assert status["summary"]["vms_not_running"] == 1


def test_a_fenced_host_whose_heartbeat_is_back_says_it_will_be_reconciled():
    snap = snapshot(readings={"h1": reading("h1")}, hosts=["h1"],
                    fenced={"active": {"h1": mark("w", NOW - 10)}, "expired": {}, "invalid": {}})
    assert "heartbeat back" in _status.build_status(snap)["hosts"][0]["state_text"]


def test_maintenance_until_and_by_and_an_expired_one():
    snap = snapshot(readings={"h1": reading("h1"), "h2": reading("h2", age=600)},
                    maintenance={"active": {"h1": mark("alice", NOW - 60, ttl=7200, reason="BIOS update")},
                                 "expired": {"h2": mark("bob", NOW - 7200, ttl=3600)}, "invalid": {"h3": "not JSON"}})
    by_host = rows(_status.build_status(snap))
    assert by_host["h1"]["state"] == "maintenance"
    assert by_host["h1"]["state_text"].startswith("maintenance until ") and "by alice; reason: BIOS update" in by_host["h1"]["state_text"]
    assert "(in 2.0 h)" in by_host["h1"]["state_text"]
    assert by_host["h2"]["state"] == "suspect" and "maintenance ended by itself" in by_host["h2"]["state_text"]
    assert by_host["h3"]["state"] == "maintenance" and "mark unreadable: not JSON" in by_host["h3"]["state_text"]


def test_suspects_and_errors_say_why():
    snap = snapshot(readings={"h1": {"status": "invalid", "reason": "not JSON", "record": None, "mtime": NOW},
                              "h2": reading("h2", state="stopped"), "h3": reading("h3", age=30)})
    by_host = rows(_status.build_status(snap))
    assert (by_host["h1"]["state"], by_host["h1"]["error"]) == ("error", "not JSON")
    assert by_host["h2"]["state"] == "suspect" and "writer stopped" in by_host["h2"]["state_text"]
    assert by_host["h3"]["state"] == "suspect" and "unchanged" in by_host["h3"]["state_text"]


def test_a_host_without_a_reading_is_missing():
    status = _status.build_status(snapshot(hosts=["h9"]))
    assert status["hosts"][0]["heartbeat"] == "missing" and status["hosts"][0]["state"] == "suspect"


def test_a_writer_clock_off_the_store_is_alive_but_said():
    snap = snapshot(hosts=["h1"], readings={"h1": {"status": "ok", "reason": "", "record": record("h1", ts=NOW + 60), "mtime": NOW - 1}})
    row = _status.build_status(snap)["hosts"][0]
    assert row["state"] == "alive" and "clock +61.0 s off" in row["state_text"]


def test_last_verdict_and_boot_changes_from_the_journal():
    incidents = {"h1": {"records": [
        {"verdict": "SUSPECT", "rule": "R8", "heartbeat": {"boot_id": "boot-a"}, "timestamps": {"detected": "2026-12-01T10:00:00.000+00:00"}},
        {"verdict": "DOWN", "rule": "R3", "final_state": "DOWN (fenced)", "heartbeat": {"boot_id": "boot-b"},
         "timestamps": {"detected": "2026-12-02T10:00:00.000+00:00"}},
    ], "invalid": ""}, "h2": {"records": [], "invalid": "x.json: not JSON"}}
    snap = snapshot(readings={"h1": reading("h1", boot="boot-c"), "h2": reading("h2")}, incidents=incidents)
    status = _status.build_status(snap)
    by_host = rows(status)
    assert by_host["h1"]["last_verdict"] == {"verdict": "DOWN", "rule": "R3", "final_state": "DOWN (fenced)",
                                             "at": "2026-12-02T10:00:00.000+00:00"}
    assert by_host["h1"]["boot_changes"] == 2
    assert by_host["h2"]["last_verdict"] == {"invalid": "x.json: not JSON"}
    assert by_host["h3"]["last_verdict"] is None and by_host["h3"]["boot_changes"] is None
    text = "\n".join(_status.render_text(status))
    assert "DOWN R3 2026-12-02T10:00" in text and "boot-c +2" in text and "unreadable" in text


def test_boot_changes_count_changes_not_records():
    records = [{"heartbeat": {"boot_id": b}} for b in ("a", "a", "b", "b")]
    assert _status.boot_changes({"records": records}, "b") == 1
    assert _status.boot_changes({"records": records}, "c") == 2
    assert _status.boot_changes({}, "a") == 0


READINESS = """# HELP kvmha_fence_ready 1 if the host's fence path works.
# TYPE kvmha_fence_ready gauge
kvmha_fence_ready{cluster="lab",host="h1",reason="ok"} 1
kvmha_fence_ready{cluster="lab",host="h2",reason="bmc_auth"} 0
kvmha_fence_ready{cluster="other",host="h3",reason="ok"} 1
kvmha_fence_readiness_last_run_timestamp_seconds{cluster="lab"} %.3f
kvmha_fence_readiness_last_run_timestamp_seconds{cluster="other"} 1.000
""" % (NOW - 1800)


def test_fence_readiness_of_the_cluster_with_its_age():
    readiness = _status.parse_readiness(READINESS, "lab", mtime=0.0)
    assert readiness == {"at": NOW - 1800, "hosts": {"h1": {"ready": True, "reason": "ok"}, "h2": {"ready": False, "reason": "bmc_auth"}},
                         "error": ""}
    status = _status.build_status(snapshot(readings={"h1": reading("h1")}, readiness=readiness))
    by_host = rows(status)
    assert by_host["h1"]["readiness"] == {"ready": True, "reason": "ok", "age_s": 1800.0}
    assert by_host["h2"]["readiness"]["ready"] is False and by_host["h3"]["readiness"] is None
    assert status["readiness_at"] == NOW - 1800
    text = "\n".join(_status.render_text(status))
    assert "yes (ok, 30 min ago)" in text and "NO (bmc_auth, 30 min ago)" in text


def test_readiness_without_a_run_line_is_as_old_as_its_file():
    assert _status.parse_readiness('kvmha_fence_ready{cluster="lab",host="h1",reason="ok"} 1\n', "lab", mtime=5.0)["at"] == 5.0


def test_a_vm_listed_by_two_hosts_is_said_and_one_on_a_dead_host_is_unknown():
    snap = snapshot(readings={"h1": reading("h1", vms=[vm(0)]), "h2": reading("h2", vms=[vm(0), vm(1)]), "h3": reading("h3", age=60, vms=[vm(2)])})
    vms = {v["name"]: v for v in _status.build_status(snap)["vms"]}
    assert vms["g0"]["host"] == "h1" and "also listed by h2 (running)" in vms["g0"]["detail"]
    assert vms["g2"]["state"] == "unknown (host suspect)"


def test_non_ha_vms_are_not_listed_and_vms_sort_by_priority():
    snap = snapshot(readings={"h1": reading("h1", vms=[vm(0, 10), vm(1, 99), vm(2, 50, ha=False)])})
    assert [v["name"] for v in _status.build_status(snap)["vms"]] == ["g1", "g0"]


def test_lease_text():
    assert "lease: free" in _status.render_text(_status.build_status(snapshot()))
    held = _status.build_status(snapshot(lease={"owner": "watchdog/7", "expires_at": NOW + 30}))
    assert "lease: held by watchdog/7 until " in "\n".join(_status.render_text(held))


def test_settings_are_checked():
    with pytest.raises(InvalidInput):
        _status.build_status(snapshot(), misses=0)
    with pytest.raises(InvalidInput):
        _status.build_status(snapshot(), skew_allowance=-1)


@pytest.mark.parametrize("seconds, shown", [(0, "0.0 s"), (59.94, "59.9 s"), (60, "1 min"), (3599, "59 min"), (3600, "1.0 h"),
                                            (86400, "1 d"), (math.inf, "?"), (math.nan, "?")])
def test_age_text(seconds, shown):
    assert _status.age_text(seconds) == shown


# ----------------------------------------------------------------------------------------------- hostile input

HOSTS = st.lists(st.sampled_from(["h1", "h2", "h3", "hv-04", "a.b"]), min_size=1, max_size=5, unique=True)
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                       max_leaves=12)
TIMES = st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-(2 ** 70), max_value=2 ** 70) | JSONISH


@st.composite
def hostile_reading(draw, host):
    kind = draw(st.sampled_from(["ok", "missing", "invalid"]))
    if kind != "ok":
        return {"status": kind, "reason": draw(st.text(max_size=300)), "record": None, "mtime": None}
    vms = [dict(vm(i, draw(st.integers(0, 100)), draw(st.booleans())), name=draw(st.text(min_size=1, max_size=30)))
           for i in range(draw(st.integers(0, 3)))]
    rec = build_record(host, draw(st.text(min_size=1, max_size=64)), draw(st.integers(0, 2 ** 53 - 1)),
                       draw(st.floats(0, 1e12)), draw(st.floats(0.01, 3600)), {"armed": draw(st.booleans()), "deadline_s": 60},
                       {"mem_free_mib": draw(st.integers(0, 2 ** 40)), "vcpus_free": draw(st.integers(0, 2 ** 20))}, vms,
                       state=draw(st.sampled_from(["running", "stopped"])))
    return {"status": "ok", "reason": "", "record": rec, "mtime": draw(st.floats(-1e12, 1e12))}


@st.composite
def hostile_mark(draw):
    data = draw(st.dictionaries(st.text(max_size=8), JSONISH, max_size=4) | JSONISH)
    return {"name": "x", "generation": 1, "owner": draw(st.text(max_size=300)), "created": draw(TIMES), "ttl": draw(TIMES),
            "expires_at": draw(TIMES), "released": False, "data": data}


def marks_of(hosts):
    return st.fixed_dictionaries({"active": st.dictionaries(st.sampled_from(hosts), hostile_mark(), max_size=3),
                                  "expired": st.dictionaries(st.sampled_from(hosts), hostile_mark(), max_size=3),
                                  "invalid": st.dictionaries(st.sampled_from(hosts), st.text(max_size=300), max_size=2)})


@st.composite
def hostile_snapshot(draw):
    hosts = draw(HOSTS)
    readings = {h: draw(hostile_reading(h)) for h in hosts if draw(st.booleans())}
    incidents = {h: {"records": draw(st.lists(JSONISH, max_size=3)), "invalid": draw(st.text(max_size=50))}
                 for h in hosts if draw(st.booleans())}
    owed = {h: draw(JSONISH | st.fixed_dictionaries({"vms": st.lists(st.dictionaries(st.sampled_from(
        ["uuid", "name", "state", "priority", "target", "last_error", "group"]), JSONISH), max_size=3)})) for h in hosts if draw(st.booleans())}
    return snapshot(hosts=hosts, readings=readings, now=draw(st.floats(0, 1e11)), maintenance=draw(marks_of(hosts)),
                    fenced=draw(marks_of(hosts)), incidents=incidents, owed=owed,
                    owed_invalid=draw(st.dictionaries(st.sampled_from(hosts), st.text(max_size=50), max_size=2)),
                    readiness=_status.parse_readiness(draw(st.text(max_size=300)) + draw(st.sampled_from(["", READINESS])), "lab",
                                                      mtime=draw(st.none() | st.floats(0, 1e11))),
                    lease=draw(st.none() | st.fixed_dictionaries({"owner": st.text(max_size=30), "expires_at": TIMES})
                               | st.fixed_dictionaries({"invalid": st.text(max_size=30)})))


ROW_KEYS = set(_status.build_status(snapshot(readings={"h1": reading("h1")}))["hosts"][0])


@given(hostile_snapshot())
def test_hostile_files_cost_at_most_their_own_row(snap):
    status = _status.build_status(snap)
    assert [row["host"] for row in status["hosts"]] == snap["hosts"]
    for row in status["hosts"]:
        assert set(row) == ROW_KEYS, "every row has the same keys, error rows too (the JSON's readers rely on it)"
        assert row["state"] in _status.HOST_STATES
        assert isinstance(row["state_text"], str) and row["state_text"]
        assert row["state"] != "error" or row["error"]
    assert sum(status["summary"][s] for s in _status.HOST_STATES) == len(snap["hosts"])
    lines = _status.render_text(status)
    assert all(isinstance(line, str) for line in lines)
    assert all(any(line.startswith(host + " ") for line in lines) for host in snap["hosts"])


@given(st.text(max_size=2000), st.sampled_from(["lab", "", "a\"b"]), st.none() | st.floats())
def test_any_readiness_text_parses_to_the_same_shape(text, cluster, mtime):
    parsed = _status.parse_readiness(text, cluster, mtime)
    assert set(parsed) == {"at", "hosts", "error"}
    assert all(set(entry) == {"ready", "reason"} and isinstance(entry["ready"], bool) for entry in parsed["hosts"].values())
