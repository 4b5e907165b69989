# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The staleness judge's defaults and what it reports (HostState), where mutation testing (docs/TESTING.md) found
them unguarded by test__heartbeat.py; and when the next judgement changes by the clock alone (next_turn_in)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import (
    HostState,
    Reading,
    StalenessJudge,
    build_record,
    next_turn_in,
)


class Clocks:
    def __init__(self, mono_now=500.0):
        self.wall_now = 10_000.0
        self.mono_now = mono_now

    def wall(self):
        return self.wall_now

    def monotonic(self):
        return self.mono_now

    def advance(self, seconds):
        self.wall_now += seconds
        self.mono_now += seconds


def reading(clocks, seq=1, age=0.0, ts_offset=0.0, interval=2.0, boot_id="boot-a", **extra):
    mtime = clocks.wall_now - age
    record = build_record("h1", boot_id, seq, mtime + ts_offset, interval, {"armed": False, "deadline_s": 60.0},
                          {"mem_free_mib": 1024, "vcpus_free": 2}, [], **extra)
    return Reading("h1", "ok", record=record, mtime=mtime)


@pytest.fixture
def clocks():
    return Clocks()


@pytest.mark.parametrize("age, status", [(7.9, "fresh"), (8.0, "stale"), (8.1, "stale")])
def test_the_defaults_are_three_misses_and_two_seconds_of_skew(clocks, age, status):
    # First read: age from the mtime, minus the 2 s allowance, against 3 x 2 s.
    judge = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic)
    assert judge.judge(reading(clocks, age=age)).status == status


@pytest.mark.parametrize("offset, status", [(-2.0, "fresh"), (2.0, "fresh"), (-2.1, "clock_skew"), (2.1, "clock_skew")])
def test_the_default_skew_allowance_is_two_seconds_either_way(clocks, offset, status):
    judge = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic)
    assert judge.judge(reading(clocks, ts_offset=offset)).status == status


def test_a_record_from_long_ago_is_as_old_as_it_is(clocks):
    # The first read's age is the reader's time since the file's mtime (less the allowance), however long that is.
    state = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic).judge(reading(clocks, age=9000.0))
    assert state.status == "stale" and state.age == pytest.approx(8998.0)


@pytest.mark.parametrize("offset", [-10.0, 10.0, -3600.25])
def test_the_clock_offset_is_the_writer_clock_minus_the_store_clock(clocks, offset):
    state = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic).judge(reading(clocks, ts_offset=offset))
    assert state.status == "clock_skew" and state.clock_offset == pytest.approx(offset)
    assert state.reason == "writer clock is %+.1f s off the store's clock" % offset
    assert state.as_dict()["clock_offset"] == round(offset, 3)


def test_the_stale_reason_names_the_seq_the_age_and_the_threshold(clocks):
    judge = StalenessJudge(misses=4, skew_allowance=0.5, wall=clocks.wall, monotonic=clocks.monotonic)
    state = judge.judge(reading(clocks, seq=42, age=20.5, interval=1.5))
    assert state.status == "stale" and state.reason == "seq 42 unchanged for 20.0 s (threshold 4 x 1.5 s)"


def fresh(text: str) -> str:
    """An equal string that is another object, as every parsed record gives: compare with ==, never is."""
    return "".join(list(text))


def test_a_reboot_stays_reported_and_a_new_seq_of_the_same_boot_is_not_one(clocks):
    judge = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic)
    assert judge.judge(reading(clocks, seq=5, boot_id=fresh("boot-a"))).rebooted is False
    clocks.advance(1.0)
    assert judge.judge(reading(clocks, seq=6, boot_id=fresh("boot-a"))).rebooted is False
    clocks.advance(1.0)
    assert judge.judge(reading(clocks, seq=1, boot_id="boot-b")).rebooted is True
    clocks.advance(1.0)
    state = judge.judge(reading(clocks, seq=1, boot_id="boot-b"))
    assert state.rebooted is True and state.age == pytest.approx(1.0)


def test_a_reboot_is_seen_whichever_way_the_boot_ids_sort(clocks):
    # Boot ids are random: the new one may sort before the old one, and its seq starts again lower.
    judge = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic)
    judge.judge(reading(clocks, seq=100, boot_id="ffff"))
    clocks.advance(5.0)
    state = judge.judge(reading(clocks, seq=1, boot_id="0000"))
    assert state.rebooted is True and state.status == "fresh" and state.age == 0.0


def test_the_smallest_settings_are_allowed(clocks):
    judge = StalenessJudge(misses=1, skew_allowance=0.0, wall=clocks.wall, monotonic=clocks.monotonic)
    assert judge.judge(reading(clocks, age=1.9)).status == "fresh"
    assert judge.judge(reading(clocks, seq=2, age=0.0, ts_offset=0.1)).status == "clock_skew"


def test_an_unusable_reading_forgets_the_history(clocks):
    judge = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic)
    judge.judge(reading(clocks, seq=1))
    judge.judge(Reading("h1", "missing", reason="no heartbeat file"))
    clocks.advance(100.0)
    # No history any more: the next read is judged from its mtime as a first read (fresh), not as 100 s unchanged.
    assert judge.judge(reading(clocks, seq=1)).status == "fresh"


def test_a_stopped_writer_with_and_without_a_reason(clocks):
    judge = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic)
    assert judge.judge(reading(clocks, state="stopped")).reason == "writer stopped gracefully"
    stopped = judge.judge(reading(clocks, seq=2, state="stopped", reason="SIGTERM"))
    assert stopped.status == "stopped" and stopped.reason == "writer stopped gracefully: SIGTERM"


def test_ages_on_a_monotonic_clock_that_started_moments_ago():
    # Just after boot the monotonic clock is small: an age is a difference of readings, nothing else.
    clocks = Clocks(mono_now=0.5)
    judge = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic)
    judge.judge(reading(clocks, seq=1))
    clocks.advance(5.9)
    assert judge.judge(reading(clocks, seq=1)).status == "fresh"
    clocks.advance(0.2)
    state = judge.judge(reading(clocks, seq=1))
    assert state.status == "stale" and state.age == pytest.approx(6.1)


def test_a_usable_reading_is_judged_whatever_string_object_says_ok(clocks):
    ok = reading(clocks)
    status = "".join(list("ok"))  # equal to "ok", another object: as when a reading is rebuilt from JSON
    state = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic).judge(
        Reading(ok.host, status, record=ok.record, mtime=ok.mtime))
    assert state.status == "fresh"


def test_host_state_as_dict_rounds_and_carries_the_record(clocks):
    record = reading(clocks, seq=9).record
    state = HostState("h1", "fresh", "", age=1.23456, record=record, rebooted=True, clock_offset=-1.23456)
    shown = state.as_dict()
    assert shown["age"] == 1.235 and shown["clock_offset"] == -1.235 and shown["seq"] == 9 and shown["rebooted"] is True
    assert (shown["boot_id"], shown["state"], shown["interval"]) == ("boot-a", "running", 2.0)
    assert shown["vms"] == [] and shown["capacity"] == {"mem_free_mib": 1024, "vcpus_free": 2}
    empty = HostState("h2", "missing", "no heartbeat file").as_dict()
    assert empty["age"] is None and empty["clock_offset"] is None and empty["vms"] == [] and empty["seq"] is None
    assert empty["rebooted"] is False and empty["status"] == "missing" and empty["reason"] == "no heartbeat file"
    assert HostState("h1", "fresh").live and HostState("h1", "clock_skew").live and not HostState("h1", "stale").live


OVERDUE, MISSES = 1.5, 3  # kvm_heartbeat's thresholds, in intervals


def phases(judge, hosts) -> tuple:
    """The judge's states of ``hosts`` ({name: (mtime, interval)}), and what a watch reads off each: its status, and
    whether it has missed a beat."""
    states = []
    for name, (mtime, interval) in hosts.items():
        record = build_record(name, "boot", 1, mtime, interval, {"armed": False, "deadline_s": 60.0}, {"mem_free_mib": 1, "vcpus_free": 1}, [])
        states.append(judge.judge(Reading(name, "ok", record=record, mtime=mtime)))
    return states, [(s.status, s.age > OVERDUE * s.record["interval"]) for s in states]


@given(st.lists(st.tuples(st.floats(0, 40), st.sampled_from([0.5, 1.0, 2.0, 5.0, 10.0])), min_size=1, max_size=6))
def test_the_next_turn_is_the_first_moment_a_judgement_changes_by_the_clock_alone(hosts):
    """Nothing changes before next_turn_in, something changes at it; with no live host, nothing ever does."""
    clocks = Clocks()
    hosts = dict(("h%d" % i, (clocks.wall_now - age, interval)) for i, (age, interval) in enumerate(hosts))
    judge = StalenessJudge(misses=MISSES, skew_allowance=0.0, wall=clocks.wall, monotonic=clocks.monotonic)
    states, before = phases(judge, hosts)
    turn = next_turn_in(states, (OVERDUE, MISSES))
    if not any(s.live for s in states):
        assert turn == float("inf")
        return
    assert 0 < turn <= MISSES * max(interval for _mtime, interval in hosts.values())
    clocks.advance(turn - 1e-6)
    assert phases(judge, hosts)[1] == before
    clocks.advance(2e-6)
    assert phases(judge, hosts)[1] != before
