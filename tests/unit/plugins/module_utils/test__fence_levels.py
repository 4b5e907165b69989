# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fence levels: properties of the pure level logic over random topologies, device outcomes and deadlines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _fence_levels
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput

NAMES = ["bmc", "redfish", "pdu_a", "pdu_b", "pdu_c", "switch"]


@st.composite
def topologies(draw):
    """Levels of distinct device names (a device may appear in several levels), each device's outcome and cost."""
    levels = draw(st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True),
                           min_size=1, max_size=4))
    outcomes = {name: draw(st.booleans()) for name in NAMES}
    costs = {name: draw(st.floats(min_value=0.0, max_value=5.0)) for name in NAMES}
    return levels, outcomes, costs


class Clock:
    def __init__(self, deadline: float):
        self.now = 0.0
        self.deadline = deadline
        self.calls = []

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.now)

    def device(self, outcomes, costs):
        def fence_device(name, seconds):
            self.calls.append((name, seconds, self.remaining()))
            spent = min(costs[name], seconds)  # a device run never outlives the time it was given
            self.now += spent
            fenced = outcomes[name] and costs[name] <= seconds
            return {"fenced": fenced, "elapsed": spent, **({} if fenced else {"error_kind": "confirm_timeout"})}
        return fence_device


def first_good_level(levels, outcomes):
    return next((n for n, level in enumerate(levels, 1) if all(outcomes[d] for d in level)), None)


@given(topologies())
def test_without_a_deadline_the_first_level_whose_every_device_confirms_fences(topology):
    levels, outcomes = topology[:2]
    clock = Clock(float("inf"))
    result = _fence_levels.run_levels(levels, clock.device(outcomes, {n: 0.0 for n in NAMES}), clock.remaining)
    expected = first_good_level(levels, outcomes)
    assert result["level"] == expected
    assert result["fenced"] is (expected is not None)
    assert result["devices"] == (levels[expected - 1] if expected else [])


@given(topologies(), st.floats(min_value=0.0, max_value=12.0))
def test_level_records(topology, deadline):
    levels, outcomes, costs = topology
    clock = Clock(deadline)
    result = _fence_levels.run_levels(levels, clock.device(outcomes, costs), clock.remaining)
    records = result["levels"]
    assert [r["level"] for r in records] == list(range(1, len(levels) + 1))
    for record in records:
        attempts = record["attempts"]
        tried = [a["device"] for a in attempts]
        assert tried == record["devices"][:len(tried)]  # in order, never skipping a device
        if record["outcome"] == "fenced":
            assert tried == record["devices"] and all(a["fenced"] for a in attempts)
        elif record["outcome"] == "failed":
            # evidence of the failure: the last device tried did not confirm, every one before it did
            assert attempts and not attempts[-1]["fenced"] and all(a["fenced"] for a in attempts[:-1])
        else:
            assert record["outcome"] in ("not_needed", "deadline") and attempts == []
    fenced_levels = [r["level"] for r in records if r["outcome"] == "fenced"]
    assert fenced_levels == ([result["level"]] if result["fenced"] else [])
    if result["fenced"]:  # nothing after the level that fenced is touched
        assert all(r["outcome"] == "not_needed" for r in records[result["level"]:])
        assert all(r["outcome"] == "failed" for r in records[:result["level"] - 1])


@given(topologies(), st.floats(min_value=0.0, max_value=12.0))
def test_the_fence_deadline_bounds_every_device_and_the_whole(topology, deadline):
    levels, outcomes, costs = topology
    clock = Clock(deadline)
    _fence_levels.run_levels(levels, clock.device(outcomes, costs), clock.remaining)
    for _name, given_seconds, left in clock.calls:
        assert 0 < given_seconds <= left
    assert clock.now <= deadline


@given(topologies())
def test_a_confirmed_off_needs_a_level_whose_devices_all_confirmed(topology):
    """Safety: fenced is never true unless every device of the reported level returned fenced=True."""
    levels, outcomes, costs = topology
    clock = Clock(6.0)
    result = _fence_levels.run_levels(levels, clock.device(outcomes, costs), clock.remaining)
    if result["fenced"]:
        record = result["levels"][result["level"] - 1]
        assert [a["device"] for a in record["attempts"]] == result["devices"]
        assert all(outcomes[d] for d in result["devices"])


def test_a_device_answer_without_a_true_fenced_is_not_fenced():
    result = _fence_levels.run_levels([["a"]], lambda name, s: {"fenced": "yes"}, lambda: 10.0)
    assert result["fenced"] is False and result["levels"][0]["attempts"][0]["fenced"] is False


def test_two_pdus_one_fails_then_the_next_level_fences():
    outcomes = {"pdu_a": True, "pdu_b": False, "switch": True}
    calls = []

    def device(name, seconds):
        calls.append(name)
        return {"fenced": outcomes[name]}

    result = _fence_levels.run_levels([["pdu_a", "pdu_b"], ["switch"]], device, lambda: 10.0)
    assert calls == ["pdu_a", "pdu_b", "switch"]
    assert result["level"] == 2 and result["devices"] == ["switch"]
    assert [r["outcome"] for r in result["levels"]] == ["failed", "fenced"]


@pytest.mark.parametrize("levels", [[], [[]], [["a", "a"]], [["zz"]], "a", [["a"], "b"], [[1]]])
def test_invalid_levels(levels):
    with pytest.raises(InvalidInput):
        _fence_levels.validate_levels(levels, {"a", "b"})


def test_valid_levels():
    assert _fence_levels.validate_levels([["a"], ["a", "b"]], {"a", "b"}) == [["a"], ["a", "b"]]


# ------------------------------------------------------------------------------------- the power the levels read

READS = st.sampled_from(["on", "off", "unknown"])


@st.composite
def read_topologies(draw):
    """Levels whose devices each answer (a read, in check mode: off confirmed, or on) or fail (with a last read)."""
    levels = draw(st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True), min_size=1, max_size=4))
    answers = {name: (draw(READS), draw(st.booleans())) for name in NAMES}  # (read, ended in an error)
    return levels, answers


def reading(answers):
    def fence_device(name, seconds):  # noqa: ARG001 - the run_levels callback's signature
        read, error = answers[name]
        # A check-mode run (the watchdog's read): "after" is what a real run would reach, "before" what was read.
        evidence = {"fenced": read == "off" and not error, "powerstate": {"before": read, "after": "off"}}
        if error or read != "off":
            evidence.update({"error_kind": "unreachable"} if error else {})
        return evidence
    return fence_device


@given(read_topologies())
def test_the_power_read_is_off_only_when_a_level_fenced_and_on_only_from_a_run_without_an_error(topology):
    levels, answers = topology
    outcome = _fence_levels.run_levels(levels, reading(answers), lambda: 60.0)
    power = _fence_levels.power_read(outcome)
    tried = [a for record in outcome["levels"] for a in record["attempts"]]
    if any(answers[a["device"]] == ("on", False) for a in tried):
        assert power == "on"  # a device that reads on wins: a host that may run is never "off"
    elif outcome["fenced"]:
        assert power == "off"
    else:
        assert power == "unknown"


@pytest.mark.parametrize("outcome, power", [
    ({"fenced": True, "levels": [{"attempts": [{"powerstate": {"before": "off"}, "fenced": True}]}]}, "off"),
    ({"fenced": False, "levels": [{"attempts": [{"error_kind": "unreachable"}]},
                                  {"attempts": [{"powerstate": {"before": "on", "after": "off"}, "fenced": False}]}]}, "on"),
    ({"fenced": False, "levels": [{"attempts": [{"powerstate": {"before": "on"}, "error_kind": "confirm_timeout"}]}]},
     "unknown"),
    ({"fenced": False, "levels": [{"attempts": [{"powerstate": {"before": "off", "after": "on"}, "fenced": False}]}]},
     "unknown"),
    ({"fenced": "yes", "levels": []}, "unknown"),
    # A real fence: the device read on, was powered off and confirmed off - its first read is history.
    ({"fenced": True, "levels": [{"attempts": [{"powerstate": {"before": "on", "after": "off"}, "fenced": True}]}]}, "off"),
    ({"fenced": False, "levels": [{"attempts": [{"powerstate": {"before": "on"}, "fenced": "yes"}]}]}, "on"),
    ({"fenced": True, "levels": [{"attempts": [{"powerstate": {"before": "on", "after": "off"}, "fenced": False}]},
                                 {"outcome": "fenced", "attempts": [{"powerstate": {"before": "off"}, "fenced": True}]}]},
     "on"),
    ({"fenced": False, "levels": [{"outcome": "deadline", "attempts": []}]}, "unknown"),
])
def test_power_read_examples(outcome, power):
    assert _fence_levels.power_read(outcome) == power
