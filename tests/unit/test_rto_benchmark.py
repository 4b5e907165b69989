# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of benchmarks/rto.py --any-second: when to crash, the percentile table, the phases of a record,
and the back-to-back runner against a stand-in cluster (the benchmark itself needs the lab)."""

from __future__ import annotations

import os
import random
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks"))

import rto  # noqa: E402


def test_the_crash_moment_is_anywhere_in_the_cycle_equally_likely_and_seeded():
    draws = [rto.crash_offset(random.Random(7), 22.0) for _seed in range(3)]
    assert draws[0] == draws[1] == draws[2]
    rng = random.Random(1)
    offsets = [rto.crash_offset(rng, 22.0) for _draw in range(4000)]
    assert all(0.0 <= o < 22.0 for o in offsets)
    quarters = [sum(1 for o in offsets if q * 5.5 <= o < (q + 1) * 5.5) for q in range(4)]
    assert all(850 < n < 1150 for n in quarters), quarters


@pytest.mark.parametrize("values, q, expected", [
    (list(range(1, 21)), 50, 10), (list(range(1, 21)), 95, 19), (list(range(1, 21)), 100, 20),
    ([3.0], 95, 3.0), ([5, 1, 4, 2, 3], 50, 3), ([5, 1, 4, 2, 3], 95, 5), ([1, 2], 0, 1),
])
def test_percentiles_are_nearest_rank(values, q, expected):
    assert rto.percentile(values, q) == expected


def trial(total, detect, where):
    return {"total": total, "detect": detect, "where": where}


def test_the_table_has_every_crash_and_each_kind():
    trials = [trial(8.0, 5.0, "watch"), trial(9.0, 6.0, "watch"), trial(12.0, 8.5, "gap")]
    lines = rto.any_second_table(trials)
    assert lines[2] == "| all | 3 | 9.00 s | 12.00 s | 12.00 s | 6.00 s | 8.50 s | 8.50 s |"
    assert lines[3] == "| in a watch | 2 | 8.00 s | 9.00 s | 9.00 s | 5.00 s | 6.00 s | 6.00 s |"
    assert lines[4] == "| in the gap | 1 | 12.00 s | 12.00 s | 12.00 s | 8.50 s | 8.50 s | 8.50 s |"
    assert rto.any_second_table(trials[:1])[4] == "| in the gap | 0 | | | | | | |"


class FakeRun:
    def __init__(self, incidents=None, rc=0, started=0.0):
        self.incidents = incidents or {}
        self.rc = rc
        self.started = started

    def explain(self):
        return "rc=%s" % self.rc


RECORD = {
    "verdict": "SUSPECT",
    "timestamps": {"detected": "2026-01-01T00:00:06+00:00", "investigated": "2026-01-01T00:00:08+00:00",
                   "fenced": "2026-01-01T00:00:09+00:00"},
    "vms": [{"status": "started", "timestamps": {"placed": rto.ts("2026-01-01T00:00:09.5+00:00"),
                                                 "running": rto.ts("2026-01-01T00:00:11+00:00")}},
            {"status": "failed", "timestamps": {}}],
}


def test_phases_count_from_the_crash_and_a_failed_run_stops_the_benchmark():
    crashed = rto.ts("2026-01-01T00:00:00+00:00")
    assert rto.phases(FakeRun({"h1": RECORD}), crashed) == pytest.approx(
        {"detect": 6.0, "investigate": 2.0, "fence": 1.0, "place": 0.5, "start": 1.5, "total": 11.0,
         "probes_early": 0.0})  # no probes_started: an incident of a run that did not start them early
    with pytest.raises(SystemExit):
        rto.phases(FakeRun({"h1": RECORD}, rc=2), crashed)
    with pytest.raises(SystemExit):
        rto.phases(FakeRun({"h1": dict(RECORD, verdict="DOWN")}), crashed)


class FakeProc:
    def __init__(self, started):
        self.kvmha = ("journal", started)


class FakeCluster:
    """Each run lasts 0.05 s; the third one records h1's incident."""

    def __init__(self):
        self.launched = 0
        self.lock = threading.Lock()

    def watchdog(self, watch_s, background):
        assert background and watch_s == 20
        with self.lock:
            self.launched += 1
        return FakeProc(time.time())

    def finish(self, proc):
        time.sleep(0.05)
        return FakeRun({"h1": RECORD} if self.launched == 3 else {}, started=proc.kvmha[1])


def test_back_to_back_runs_follow_each_other_until_stopped():
    cluster = FakeCluster()
    with rto.BackToBack(cluster, 20) as loop:
        deadline = time.monotonic() + 10
        while loop.incident("h1") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert loop.incident("h1") is loop.finished[2] and loop.incident("h2") is None
    assert not loop.thread.is_alive() and len(loop.finished) == len(loop.started) == cluster.launched
    assert all(later >= earlier for earlier, later in zip(loop.started, loop.started[1:]))


# ------------------------------------------------------------------------------------------ the Pacemaker baseline

from lab import pacemaker  # noqa: E402 - importable once rto has put the checkout on the path

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def journal_line(clock, message):
    """An entry as pacemaker.journal gives it: (epoch seconds, message); clock is 'MM:SS.ffffff' past 13:00."""
    return (rto.ts("2026-12-04T13:%s+00:00" % clock), message)


# The survivors' journals of a crash of h1 on the lab (Pacemaker 2.1.5, corosync 3.1.7, token 1000 ms), h2 and h3
# together and out of order as two journals are; the start-up's own starts come first.
JOURNAL = [
    journal_line("33:25.613538", "Result of start operation for fence-h1 on h2: ok"),
    journal_line("33:27.012160", "Result of start operation for vm-g5 on h3: ok"),
    journal_line("33:42.024116", "Node h1 state is now lost"),
    journal_line("33:43.179261", "Requesting fencing (off) of node h1"),
    journal_line("33:43.180407", "Initiating start operation fence-h2_start_0 on h3"),
    journal_line("33:45.754760", "Peer h1 was terminated (off) by h2 on behalf of pacemaker-controld.4340@h2: OK"),
    journal_line("33:45.760322", "Initiating start operation vm-g1_start_0 on h3"),
    journal_line("33:45.760846", "Initiating start operation vm-g2_start_0 locally on h2"),
    journal_line("33:47.101000", "Result of start operation for vm-g2 on h2: ok"),
    journal_line("33:47.230000", "Result of start operation for vm-g1 on h3: ok"),
    journal_line("33:42.024303", "Node h1 state is now lost"),
    journal_line("33:45.750473", "Peer h1 was terminated (off) by h2 on behalf of pacemaker-controld.4340@h2: OK"),
]


def test_the_incident_is_read_off_the_survivors_journals_first_mention_first():
    marks, started = pacemaker.incident_marks(JOURNAL, "h1")
    assert marks == {"declared": JOURNAL[2][0],  # the earlier of the two journals' "now lost"
                     "fence_requested": JOURNAL[3][0],
                     "fenced": JOURNAL[11][0],  # h3 logged the confirmation before h2 did
                     "start_initiated": JOURNAL[6][0]}  # a VM's start (fence-h2's is a device's)
    assert started == {"g1": JOURNAL[9][0], "g2": JOURNAL[8][0]}  # g5's start-up start is not the recovery's


def test_another_node_and_a_newer_wording_are_told_apart():
    entries = [journal_line("00:01.0", "Node h10 state is now lost"),
               journal_line("00:02.0", "Requesting fencing (off) of node h10"),
               journal_line("00:03.0", "Requesting fencing (off) targeting node h1")]
    marks, started = pacemaker.incident_marks(entries, "h1")
    assert marks == {"fence_requested": entries[2][0]} and started == {}


def test_pacemaker_phases_and_the_side_by_side_table():
    marks, started = pacemaker.incident_marks(JOURNAL, "h1")
    crashed = marks["declared"] - 3.5
    row = rto.pacemaker_phases(marks, started, crashed, observed=6.9, guests=["g1", "g2"])
    assert row == pytest.approx({"detect": 3.5, "investigate": 1.155145, "fence": 2.571212, "place": 0.009849,
                                 "start": 1.469678, "total": 8.705884, "observed": 6.9}, abs=1e-5)
    with pytest.raises(SystemExit, match="miss"):
        rto.pacemaker_phases(marks, {"g1": 1.0}, crashed, 6.9, ["g1", "g2"])
    with pytest.raises(SystemExit, match="fenced"):
        rto.pacemaker_phases({k: v for k, v in marks.items() if k != "fenced"}, started, crashed, 6.9, ["g1", "g2"])
    kvmha = dict(row, observed=11.0)
    lines = rto.side_by_side({"kvmha.cluster": [kvmha, dict(kvmha, observed=12.0)], "Pacemaker": [row], "none": []})
    assert lines[2].startswith("| kvmha.cluster | 11.0, 12.0 | 11.50 s | 3.50 s |")
    assert lines[3].startswith("| Pacemaker | 6.9 | 6.90 s |") and len(lines) == 4


def test_crm_mon_is_read_for_the_dc_the_nodes_online_and_where_each_resource_runs():
    with open(os.path.join(FIXTURES, "crm_mon.xml"), encoding="utf-8") as f:
        seen = pacemaker.parse_crm_mon(f.read())  # crm_mon 2.1.5 as h1 rejoined: g1 and g2 on their way home
    assert seen["dc"] == "h3" and seen["online"] == {"h1", "h2", "h3"}
    assert seen["resources"]["vm-g1"] == ["h3"] and seen["resources"]["fence-h3"] == ["h1"]
    assert pacemaker.parse_crm_mon("<not xml") is None
    assert pacemaker.parse_crm_mon("<pacemaker-result/>") == {"dc": None, "online": set(), "resources": {}}


def test_the_cluster_configuration_fences_each_host_from_the_others_and_keeps_guests_home(monkeypatch):
    from xml.etree import ElementTree

    monkeypatch.setattr(pacemaker.bmcs, "controller_password", lambda host: "pw-" + host)
    root = ElementTree.fromstring(pacemaker.cib_configuration(["h1", "h2"], {"g1": "h1", "g2": "h2"}))
    options = {nv.get("name"): nv.get("value") for nv in root.iterfind("./crm_config/cluster_property_set/nvpair")}
    assert options["stonith-enabled"] == "true" and options["stonith-action"] == "off"
    devices = {p.get("id"): {nv.get("name"): nv.get("value") for nv in p.iter("nvpair")}
               for p in root.iterfind("./resources/primitive[@class='stonith']")}
    assert devices["fence-h2"] == {"ip": "198.51.100.132", "username": "admin", "password": "pw-h2", "lanplus": "1",
                                   "pcmk_host_list": "h2"}
    locations = {(c.get("rsc"), c.get("node")): c.get("score") for c in root.iterfind("./constraints/rsc_location")}
    assert locations == {("fence-h1", "h1"): "-INFINITY", ("fence-h2", "h2"): "-INFINITY",
                         ("vm-g1", "h1"): "100", ("vm-g2", "h2"): "100"}
    vm = {nv.get("name"): nv.get("value") for nv in root.find("./resources/primitive[@id='vm-g2']").iter("nvpair")}
    assert vm == {"config": pacemaker.XML_DIR + "/g2.xml", "hypervisor": "qemu:///system"}
    ids = [element.get("id") for element in root.iter() if element.get("id")]
    assert len(ids) == len(set(ids))  # the CIB rejects a configuration with a duplicate id


def test_corosync_runs_on_the_private_network_with_the_token_asked_for():
    conf = pacemaker.corosync_conf(["h1", "h3"], 1000)
    assert "    token: 1000\n" in conf and "ring0_addr: 198.51.100.73\n        name: h3\n        nodeid: 3" in conf
    assert "token:" not in pacemaker.corosync_conf(["h1", "h3"], None)  # corosync's own default
