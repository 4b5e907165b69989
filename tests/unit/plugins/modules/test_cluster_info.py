# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cluster_info as a module, on a store in a temporary directory: its inputs, its failures, and files that are not
what they should be. The playbook and a store written by the real writer: tests/unit/playbooks/test_status_playbook.py."""

from __future__ import annotations

import time

from ansible_collections.kvmha.cluster.plugins.module_utils import _heartbeat, _marks
from ansible_collections.kvmha.cluster.plugins.modules import cluster_info


def beat(store, host, age=0.0, vms=()):
    record = _heartbeat.build_record(host, "boot-" + host, 1, time.time() - age, 2.0, {"armed": False, "deadline_s": 60},
                                     {"mem_free_mib": 1024, "vcpus_free": 2}, list(vms))
    path = _heartbeat.record_path(str(store), host)
    (store / "kvmha" / "hosts").mkdir(parents=True, exist_ok=True)
    _heartbeat.write_atomic(path, _heartbeat.encode_record(record))


def test_reads_every_host_in_the_store_and_changes_nothing(run_module, tmp_path):
    beat(tmp_path, "h1")
    beat(tmp_path, "h2")
    (tmp_path / "kvmha" / "hosts" / "h_3.json").write_text("{}")
    before = sorted(p.name for p in (tmp_path / "kvmha").rglob("*"))
    result = run_module(cluster_info, {"store_path": str(tmp_path), "cluster": "lab"}, check_mode=True)
    assert result["changed"] is False and result["cluster"] == "lab"
    assert [(r["host"], r["state"]) for r in result["hosts"]] == [("h1", "alive"), ("h2", "alive")]
    assert "h_3.json" in result["ignored_files"] and any("ignored on the store: h_3.json" in line for line in result["text"])
    assert result["summary"]["alive"] == 2 and result["warning"] == ""
    assert sorted(p.name for p in (tmp_path / "kvmha").rglob("*")) == before


def test_without_rows_the_same_text_and_summary_and_no_rows(run_module, tmp_path):
    beat(tmp_path, "h1", vms=[{"uuid": "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e", "name": "db1", "ha": True, "priority": 90,
                               "memory_mib": 512, "vcpus": 1, "disks": [], "group": ""}])
    beat(tmp_path, "h2", age=3600)
    full = run_module(cluster_info, {"store_path": str(tmp_path), "cluster": "lab"})
    lean = run_module(cluster_info, {"store_path": str(tmp_path), "cluster": "lab", "rows": False})
    assert len(full["hosts"]) == 2 and len(full["vms"]) == 1
    assert "hosts" not in lean and "vms" not in lean
    assert lean["summary"] == full["summary"] and lean["text"] == full["text"]


def test_listed_hosts_a_bad_name_is_an_error_row_and_a_missing_record_a_suspect(run_module, tmp_path):
    beat(tmp_path, "h1")
    result = run_module(cluster_info, {"store_path": str(tmp_path), "hosts": ["h1", "h2", "hv_9"]})
    by_host = {r["host"]: r for r in result["hosts"]}
    assert by_host["h1"]["state"] == "alive" and by_host["h2"]["state"] == "suspect"
    assert by_host["hv_9"]["state"] == "error" and "not an RFC 1123 name" in by_host["hv_9"]["error"]


def test_unreadable_marks_and_journal_records_are_shown_in_their_rows(run_module, tmp_path):
    beat(tmp_path, "h1")
    beat(tmp_path, "h2")
    _marks.set_mark(str(tmp_path), _marks.MAINTENANCE, "h2", "alice", {"reason": "r"}, ttl=600)
    (tmp_path / "kvmha" / "maintenance" / "h2" / "0000000001.json").write_text("{not json")
    incidents = tmp_path / "journal" / "incidents"
    incidents.mkdir(parents=True)
    (incidents / "20261203T101500Z-0123456789ab-h1.json").write_text("[" * 100000)
    (incidents / "not-an-incident.txt").write_text("x")
    result = run_module(cluster_info, {"store_path": str(tmp_path), "journal_dir": str(tmp_path / "journal")})
    by_host = {r["host"]: r for r in result["hosts"]}
    assert by_host["h1"]["last_verdict"] == {"invalid": "20261203T101500Z-0123456789ab-h1.json: nested deeper than 32 levels"}
    assert by_host["h2"]["state"] == "maintenance" and "mark unreadable" in by_host["h2"]["state_text"]


def test_a_journal_that_cannot_be_listed_costs_only_the_verdicts(run_module, tmp_path):
    beat(tmp_path, "h1")
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "incidents").write_text("a file where the directory should be")
    result = run_module(cluster_info, {"store_path": str(tmp_path), "journal_dir": str(tmp_path / "journal")})
    assert result["hosts"][0]["state"] == "alive" and result["hosts"][0]["last_verdict"] is None
    assert "cannot list the journal's incidents" in result["journal_error"]
    assert any(line.startswith("journal: cannot list") for line in result["text"])


def test_the_newest_incident_record_gives_the_verdict(run_module, tmp_path):
    beat(tmp_path, "h1")
    incidents = tmp_path / "journal" / "incidents"
    incidents.mkdir(parents=True)
    for stamp, verdict in (("20261203T090000Z", "ALIVE_WRITER_FAULT"), ("20261203T101500Z", "HUNG"), ("20261201T000000Z", "DOWN")):
        (incidents / ("%s-00000000000a-h1.json" % stamp)).write_text('{"verdict": "%s", "rule": "R0"}' % verdict)
    result = run_module(cluster_info, {"store_path": str(tmp_path), "journal_dir": str(tmp_path / "journal")})
    assert result["hosts"][0]["last_verdict"]["verdict"] == "HUNG"


def test_a_store_that_is_not_there_fails_naming_the_cluster(run_module, tmp_path):
    result = run_module(cluster_info, {"store_path": str(tmp_path / "nfs"), "cluster": "lab"})
    assert result["failed"] is True and result["error_kind"] == "store" and result["cluster"] == "lab"
    assert "is the store mounted here?" in result["msg"]


def test_deadline_must_be_positive(run_module, tmp_path):
    result = run_module(cluster_info, {"store_path": str(tmp_path), "deadline_s": 0})
    assert result["failed"] is True and result["error_kind"] == "invalid_input"
