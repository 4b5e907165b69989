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
        while loop.incident() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert loop.incident() is loop.finished[2]
    assert not loop.thread.is_alive() and len(loop.finished) == len(loop.started) == cluster.launched
    assert all(later >= earlier for earlier, later in zip(loop.started, loop.started[1:]))
