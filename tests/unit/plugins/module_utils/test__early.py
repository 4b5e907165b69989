# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The watch handed over inside one run (kvm_heartbeat until_overdue -> resume) and the early evidence."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._early import EarlyEvidence, observer_boot, read_resume, resume_state
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import StalenessJudge
from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.test__heartbeat import Clocks, reading_at

SKEW = 2.0


def judge_of(clocks, misses=3):
    return StalenessJudge(misses=misses, skew_allowance=SKEW, wall=clocks.wall, monotonic=clocks.monotonic)


@settings(max_examples=200, deadline=None)
@given(
    before=st.lists(st.tuples(st.floats(0.0, 5.0), st.booleans()), min_size=1, max_size=12),
    after=st.lists(st.tuples(st.floats(0.0, 5.0), st.booleans()), min_size=1, max_size=12),
    gap=st.floats(0.0, 3.0),
    beat_in_gap=st.booleans(),
    first_age=st.floats(0.0, 30.0),
)
def test_a_resumed_judge_judges_exactly_as_the_first_would_have_gone_on(before, after, gap, beat_in_gap, first_age):
    """The handover through JSON loses nothing: every later judgement of the resumed judge is the first judge's."""
    clocks = Clocks()
    first, seq = judge_of(clocks), 1
    first.judge(reading_at(clocks, seq, age=first_age))
    for pause, beat in before:
        clocks.advance(pause)
        seq += beat
        first.judge(reading_at(clocks, seq))
    handed = json.loads(json.dumps(first.export()))
    clocks.advance(gap)  # the module's own start-up between two watches
    seq += beat_in_gap
    resumed = judge_of(clocks)
    resumed.seed(handed)
    for pause, beat in after:
        clocks.advance(pause)
        seq += beat
        expected, got = first.judge(reading_at(clocks, seq)), resumed.judge(reading_at(clocks, seq))
        assert (got.status, got.age, got.rebooted) == (expected.status, expected.age, expected.rebooted)


def test_without_a_resume_the_first_look_is_younger_by_the_skew_allowance():
    """Why the handover matters: a new judge may only estimate, and never overstates."""
    clocks = Clocks()
    first = judge_of(clocks)
    first.judge(reading_at(clocks, 7))
    clocks.advance(5.0)
    afresh = judge_of(clocks).judge(reading_at(clocks, 7, age=5.0))
    resumed = judge_of(clocks)
    resumed.seed(first.export())
    assert afresh.age == pytest.approx(3.0) and resumed.judge(reading_at(clocks, 7, age=5.0)).age == pytest.approx(5.0)


@pytest.mark.parametrize("seen, words", [
    ({"h1": ["boot", 1, 10_000.0, False]}, "is not [boot_id"),  # a time after now: not from this clock
    ({"h1": ["boot", True, 1.0, False]}, "is not [boot_id"),
    ({"h1": ["boot", 1, "1.0", False]}, "is not [boot_id"),
    ({"h1": ["boot", 1, 1.0]}, "is not [boot_id"),
    ({"h1": {"boot_id": "boot"}}, "is not [boot_id"),
    ({"../h1": ["boot", 1, 1.0, False]}, "'/'"),
])
def test_a_bad_judgement_is_refused_whole(seen, words):
    clocks = Clocks()
    judge = judge_of(clocks)
    with pytest.raises(InvalidInput) as err:
        judge.seed(dict(seen, h2=["boot", 1, 1.0, False]))
    assert words in str(err.value) and judge.export() == {}  # all or nothing


@pytest.mark.parametrize("resume, words", [
    ([], "must be the resume"),
    ({"observer_boot": "other"}, "another observer"),
    ({"observer_boot": "b1", "judge": []}, "judge must be a dict"),
    ({"observer_boot": "b1", "early": "x"}, "early must be a dict"),
])
def test_a_resume_from_elsewhere_or_malformed_is_refused(resume, words):
    with pytest.raises(InvalidInput) as err:
        read_resume(resume, "b1")
    assert words in str(err.value)


def test_no_resume_is_trusted_without_a_boot_id(tmp_path):
    assert observer_boot(str(tmp_path / "absent")) == ""
    with pytest.raises(InvalidInput):
        read_resume({"observer_boot": ""}, observer_boot(str(tmp_path / "absent")))


def test_the_early_evidence_goes_over_whole_and_bad_evidence_is_refused():
    early = EarlyEvidence({}, wall=lambda: 100.0)
    early.note(["h1"], {"h1": None}, lambda record: {"sampled_at": 100.0, "disks": {}})
    handed = json.loads(json.dumps(resume_state("b1", {}, early)))
    judged, state = read_resume(handed, "b1")
    later = EarlyEvidence({})
    later.take_over(state)
    assert judged == {} and later.since == {"h1": 100.0} and later.baselines["h1"]["sampled_at"] == 100.0
    for bad in ({"since": {"h1": "x"}, "baselines": {"h1": {}}}, {"since": {"h1": 1.0}, "baselines": {}},
                {"since": {"h/1": 1.0}, "baselines": {"h/1": {}}}):
        with pytest.raises(InvalidInput):
            EarlyEvidence({}).take_over(bad)


def test_a_host_that_beats_again_is_forgotten_and_sampled_afresh_when_late_again():
    times = iter([1.0, 2.0])
    early = EarlyEvidence({}, wall=lambda: next(times))
    early.note(["h1"], {}, lambda record: {"sampled_at": 0})
    early.note([], {}, lambda record: {"sampled_at": 0})
    assert early.since == {} and early.baselines == {}
    early.note(["h1"], {}, lambda record: {"sampled_at": 0})
    assert early.since == {"h1": 2.0}


@pytest.mark.parametrize("targets, words", [
    ({"h1": {}}, "needs an address"),
    ({"h1": {"address": "198.51.100.1", "port": "ssh"}}, "must be an integer"),
    ({"h1": {"address": "198.51.100.1", "port": 70000}}, "port"),
    ({"h/1": {"address": "198.51.100.1"}}, "'/'"),
])
def test_bad_management_targets_are_refused(targets, words):
    with pytest.raises(InvalidInput) as err:
        EarlyEvidence(targets)
    assert words in str(err.value)


def test_each_target_is_asked_once_in_the_background_with_the_given_settings():
    asked = []

    def fake_probe(address, port, attempts, deadline):
        asked.append((address, port, attempts, deadline))
        return {"target": address, "port": port, "reachable": False, "answer": "timeout"}

    early = EarlyEvidence({"h1": {"address": "198.51.100.11", "port": "2222"}}, attempts=2, deadline=0.5,
                          probe_one=fake_probe, wall=lambda: 7.0)
    early.start()
    for _ in range(200):
        if "h1" in early.mgmt:
            break
        time.sleep(0.01)
    assert asked == [("198.51.100.11", 2222, 2, 0.5)]
    assert early.mgmt["h1"]["any_reachable"] is False and early.mgmt["h1"]["asked_at"] == 7.0
    early.note(["h1"], {}, lambda record: {})
    assert early.report(["h1", "h2"]) == {"h1": {"since": 7.0, "mgmt": early.mgmt["h1"]}}
