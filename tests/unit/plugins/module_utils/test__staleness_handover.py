# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The staleness judge across a watch handover: export, seed, and what a seed may and may not change."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import Reading, StalenessJudge, build_record
from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.test__heartbeat import Clocks


def reading(clocks, seq, age=0.0, boot_id="boot-a"):
    """h1's record as read now, written ``age`` seconds ago by the store's clock."""
    mtime = clocks.wall_now - age
    record = build_record("h1", boot_id, seq, mtime, 2.0, {"armed": False, "deadline_s": 60.0},
                          {"mem_free_mib": 1024, "vcpus_free": 2}, [])
    return Reading("h1", "ok", record=record, mtime=mtime)


def new_judge(clocks, seen=None):
    judge = StalenessJudge(wall=clocks.wall, monotonic=clocks.monotonic)
    if seen is not None:
        judge.seed(seen)
    return judge


def test_an_unchanged_host_continues_its_exact_age_without_the_skew_allowance():
    clocks = Clocks()
    first = new_judge(clocks)
    first.judge(reading(clocks, seq=1))
    clocks.advance(2.0)
    first.judge(reading(clocks, seq=2))  # seen changing: its age is now exact
    clocks.advance(4.5)  # the watch ended at 1.5 s after the beat, the gap took 3 s more
    second = new_judge(clocks, first.export())
    state = second.judge(reading(clocks, seq=2, age=4.5))
    assert state.age == pytest.approx(4.5) and state.status == "fresh"
    clocks.advance(1.5)
    assert second.judge(reading(clocks, seq=2, age=6.0)).status == "stale"
    # Without the handover the same reading is 2 s younger (mtime less the allowance): stale 2 s later.
    assert new_judge(clocks).judge(reading(clocks, seq=2, age=6.0)).status == "fresh"


def test_a_host_that_beat_in_the_gap_is_not_seeded():
    clocks = Clocks()
    seen = {"h1": (("boot-a", 7), clocks.mono_now - 5.0)}
    state = new_judge(clocks, seen).judge(reading(clocks, seq=8, age=3.0))
    assert state.age == pytest.approx(1.0)  # the mtime estimate: 3 s less the 2 s allowance


def test_a_host_that_rebooted_in_the_gap_is_not_seeded():
    clocks = Clocks()
    seen = {"h1": (("boot-a", 7), clocks.mono_now - 5.0)}
    state = new_judge(clocks, seen).judge(reading(clocks, seq=7, age=3.0, boot_id="boot-b"))
    assert state.age == pytest.approx(1.0) and state.rebooted is False


def test_a_seed_older_than_the_file_allows_is_ignored():
    # A record 3 s old by the store's clock cannot have been unchanged for more than 3 + 2 s: a forged or confused
    # handover claiming 100 s leaves the host to the mtime estimate.
    clocks = Clocks()
    seen = {"h1": (("boot-a", 1), clocks.mono_now - 100.0)}
    state = new_judge(clocks, seen).judge(reading(clocks, seq=1, age=3.0))
    assert state.status == "fresh" and state.age == pytest.approx(1.0)


def test_a_seed_at_the_file_age_plus_the_allowance_is_taken():
    clocks = Clocks()
    seen = {"h1": (("boot-a", 1), clocks.mono_now - 5.0)}
    assert new_judge(clocks, seen).judge(reading(clocks, seq=1, age=3.0)).age == pytest.approx(5.0)


def test_a_seed_younger_than_the_mtime_estimate_changes_nothing():
    clocks = Clocks()
    seen = {"h1": (("boot-a", 1), clocks.mono_now - 0.5)}
    assert new_judge(clocks, seen).judge(reading(clocks, seq=1, age=9.0)).age == pytest.approx(7.0)


def test_a_seed_is_for_the_first_reading_only():
    clocks = Clocks()
    seen = {"h1": (("boot-a", 1), clocks.mono_now - 4.0)}
    judge = new_judge(clocks, seen)
    judge.judge(reading(clocks, seq=1, age=3.0))
    judge.judge(Reading("h1", "missing", reason="no heartbeat file"))  # forgets the history, and the seed is spent
    assert judge.judge(reading(clocks, seq=1, age=3.0)).age == pytest.approx(1.0)


def test_export_has_every_host_with_a_usable_reading_and_nothing_else():
    clocks = Clocks()
    judge = new_judge(clocks)
    judge.judge(reading(clocks, seq=3, age=2.5))
    judge.judge(Reading("h2", "invalid", reason="not JSON"))
    assert judge.export() == {"h1": (("boot-a", 3), pytest.approx(clocks.mono_now - 0.5))}


def test_export_keeps_the_seeds_of_hosts_not_read_and_drops_those_read_unusable():
    clocks = Clocks()
    judge = new_judge(clocks, {"h2": (("boot-b", 5), 400.0), "h3": (("boot-c", 6), 450.0)})
    judge.judge(reading(clocks, seq=3))
    judge.judge(Reading("h3", "invalid", reason="not JSON"))
    assert judge.export() == {"h1": (("boot-a", 3), clocks.mono_now), "h2": (("boot-b", 5), 400.0)}


def test_seed_replaces_earlier_seeds():
    clocks = Clocks()
    judge = new_judge(clocks, {"h1": (("boot-a", 1), clocks.mono_now - 4.0)})
    judge.seed({})
    assert judge.judge(reading(clocks, seq=1, age=3.0)).age == pytest.approx(1.0)


@settings(max_examples=300)
@given(file_age=st.floats(0.0, 50.0), seed_age=st.floats(-10.0, 1000.0), same_identity=st.booleans())
def test_a_seed_only_ever_moves_the_age_between_the_estimate_and_the_file_age_plus_the_allowance(
        file_age, seed_age, same_identity):
    """Property: whatever a handover says, a host is never younger than without it, and never older than its file
    (by the store's clock) plus the skew allowance - so never stale sooner than a clock disagreement within the
    allowance could make it."""
    clocks = Clocks()
    seen = {"h1": (("boot-a", 1 if same_identity else 2), clocks.mono_now - seed_age)}
    seeded = new_judge(clocks, seen).judge(reading(clocks, seq=1, age=file_age))
    plain = new_judge(clocks).judge(reading(clocks, seq=1, age=file_age))
    assert plain.age - 1e-9 <= seeded.age <= file_age + 2.0 + 1e-9
    if not same_identity:
        assert seeded.age == plain.age


@settings(max_examples=200)
@given(
    beats=st.lists(st.floats(0.1, 4.0), min_size=1, max_size=10),
    watch_end=st.floats(0.0, 4.0),
    gap=st.floats(0.0, 10.0),
    later=st.lists(st.floats(0.0, 3.0), max_size=5),
)
def test_a_handover_continues_the_judgement_of_one_long_watch(beats, watch_end, gap, later):
    """Property: a judge seeded with another's export, on the same clock, judges an unchanged host exactly as the
    first judge would have gone on judging it (same status, same age)."""
    clocks = Clocks()
    first = new_judge(clocks)
    seq, written = 1, clocks.wall_now
    first.judge(reading(clocks, seq=seq))
    for pause in beats:
        clocks.advance(pause)
        seq, written = seq + 1, clocks.wall_now
        first.judge(reading(clocks, seq=seq))
    clocks.advance(watch_end + gap)  # no beat since: the writer died, or beats slower than the gap
    second = new_judge(clocks, first.export())
    for pause in [0.0] + later:
        clocks.advance(pause)
        now = reading(clocks, seq=seq, age=clocks.wall_now - written)
        continued, handed_over = first.judge(now), second.judge(now)
        assert (handed_over.status, handed_over.age) == (continued.status, pytest.approx(continued.age))
