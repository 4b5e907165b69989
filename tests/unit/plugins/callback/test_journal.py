# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The journal callback, driven with fake result objects that expose ``.result``, ``.host`` and ``.task``."""

from __future__ import annotations

import json

from journal_fakes import FakeResult, FakeStats


def heartbeat_result(**overrides):
    result = {
        "changed": False, "cluster": "prod-a", "suspects": [], "fresh": ["hv1", "hv2"], "overdue": [], "returning": [],
        "skewed": [], "observer_ok": True, "observer_reason": "", "maintenance": {}, "maintenance_expired": {},
        "fenced": {}, "samples": 1,
        "hosts": {"hv1": {"status": "fresh", "age": 0.4, "seq": 7, "boot_id": "b1", "rebooted": False},
                  "hv2": {"status": "fresh", "age": 0.9, "seq": 9, "boot_id": "b2", "rebooted": False}},
    }
    result.update(overrides)
    return result


def events(tmp_path):
    return [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]


def test_a_skewed_writer_clock_is_an_event_and_a_metric(callback, tmp_path):
    """Item 8 of issue 14: a writer whose clock is a day off was reported by kvm_heartbeat and surfaced nowhere."""
    skewed = {"status": "clock_skew", "reason": "writer clock is -86400.0 s off the store's clock", "age": 0.5,
              "seq": 9, "boot_id": "b2", "rebooted": False, "clock_offset": -86400.012}
    result = heartbeat_result(skewed=["hv2"], hosts={"hv1": heartbeat_result()["hosts"]["hv1"], "hv2": skewed})
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.kvm_heartbeat", "hv1", result))
    callback.v2_playbook_on_stats(FakeStats())
    skew_events = [e for e in events(tmp_path) if e["event"] == "clock_skew"]
    assert skew_events == [dict(skew_events[0], host="hv2", offset_s=-86400.012)]
    prom = (tmp_path / "kvmha.prom").read_text()
    assert "# TYPE kvmha_host_clock_skew_seconds gauge" in prom
    assert 'kvmha_host_clock_skew_seconds{cluster="prod-a",host="hv2"} -86400.012' in prom
    assert 'host="hv1"' not in prom.split("kvmha_host_clock_skew_seconds", 1)[1]


def test_no_skew_no_series(callback, tmp_path):
    callback.v2_runner_on_ok(FakeResult("kvmha.cluster.kvm_heartbeat", "hv1", heartbeat_result()))
    callback.v2_playbook_on_stats(FakeStats())
    assert not [e for e in events(tmp_path) if e["event"] == "clock_skew"]
    prom = (tmp_path / "kvmha.prom").read_text()
    assert "# TYPE kvmha_host_clock_skew_seconds gauge" in prom
    assert "kvmha_host_clock_skew_seconds{" not in prom
