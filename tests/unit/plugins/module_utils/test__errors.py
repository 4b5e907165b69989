# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one range check of the collection (``check_range``, ``in_range``, ``bounds_in_words``): module options,
policy settings and client settings all go through it, so its bounds and the words an operator reads when a value
is refused are pinned here, apart from the dozens of modules that use it (docs/TESTING.md, mutation testing)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._errors import (
    InvalidInput,
    PolicyError,
    bounds_in_words,
    check_range,
    in_range,
)

BOUND = st.none() | st.integers(-3, 3) | st.sampled_from([-1.5, 0.0, 0.25, 2.5])


@given(st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False), BOUND, BOUND, st.booleans())
def test_a_value_is_in_range_exactly_when_it_meets_every_bound_given(value, minimum, maximum, exclusive):
    # The documented rule, spelt out case by case: a minimum is inclusive unless exclusive, a maximum is inclusive.
    if minimum is None:
        low = True
    elif value == minimum:
        low = not exclusive
    else:
        low = value > minimum
    high = maximum is None or value == maximum or value < maximum
    assert in_range(value, minimum, maximum, exclusive) is (low and high)


@pytest.mark.parametrize("minimum, maximum, exclusive", [(0, None, False), (0, None, True), (None, 5, False), (1, 100, False),
                                                         (0, 1, True)])
def test_not_a_number_is_within_no_bound(minimum, maximum, exclusive):
    assert not in_range(math.nan, minimum, maximum, exclusive)


@pytest.mark.parametrize("minimum, maximum, exclusive, words", [
    (0, None, False, "zero or more"),
    (0.0, None, False, "zero or more"),
    (0, None, True, "positive"),
    (1, None, False, "at least 1"),
    (-1, None, False, "at least -1"),
    (2.5, None, True, "more than 2.5"),
    (None, 256, False, "at most 256"),
    (1, 100, False, "between 1 and 100"),
    (0.01, 10, False, "between 0.01 and 10"),
    (0, 1, True, "more than 0 and at most 1"),
])
def test_bounds_are_said_in_words(minimum, maximum, exclusive, words):
    assert bounds_in_words(minimum, maximum, exclusive) == words


def test_a_minimum_is_inclusive_unless_told_otherwise():
    assert in_range(1, 1) and in_range(0.0, 0.0, 10) and not in_range(0.5, 1)
    assert bounds_in_words(1) == "at least 1" and bounds_in_words(0, 5) == "between 0 and 5"


def test_a_refused_value_is_named_with_its_bounds_unit_and_value():
    assert check_range("misses", 1, 1) == 1 and check_range("count", 100, 1, 100) == 100
    assert check_range("poll", 0.5, 0, exclusive_minimum=True) == 0.5
    cases = [
        (("misses", 0, 1), {}, "misses must be at least 1, got 0"),
        (("poll", 0, 0), {"exclusive_minimum": True}, "poll must be positive, got 0"),
        (("watch", -1, 0), {}, "watch must be zero or more, got -1"),
        (("count", 101, 1, 100), {}, "count must be between 1 and 100, got 101"),
        (("interval", 0.001, 0.01, 10), {"unit": "seconds"}, "interval must be between 0.01 and 10 seconds, got 0.001"),
        (("ratio", 1.5, 0, 1, True), {}, "ratio must be more than 0 and at most 1, got 1.5"),
        (("deadline_s", 2.0 ** 70, None, 60), {"unit": "seconds"}, "deadline_s must be at most 60 seconds, got 1.18059e+21"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(InvalidInput) as err:
            check_range(*args, **kwargs)
        assert str(err.value) == message and not isinstance(err.value, PolicyError)  # the default error
    with pytest.raises(PolicyError) as err:
        check_range("policy.watch_s", -5, 0, error=PolicyError)
    assert str(err.value) == "policy.watch_s must be zero or more, got -5"
