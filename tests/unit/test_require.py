# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/_require.py: a missing precondition skips locally and fails under CI=true."""

from __future__ import annotations

import pytest

from ansible_collections.kvmha.cluster.tests import _require


@pytest.fixture(params=["local", "ci"])
def where(request, monkeypatch):
    if request.param == "ci":
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    return request.param


def outcome(call):
    """What a test calling ``call`` would end as: passed, skipped or failed (with its message)."""
    try:
        return "passed", call()
    except pytest.skip.Exception as err:
        return "skipped", str(err)
    except pytest.fail.Exception as err:
        return "failed", str(err)


def test_a_met_precondition_goes_on(where):
    assert outcome(lambda: _require.require("/usr/bin/x", "x"))[0] == "passed"
    assert outcome(lambda: _require.optional(True, "x")) == ("passed", True)
    assert outcome(lambda: _require.require_module("json", "x"))[1].__name__ == "json"


def test_a_missing_precondition_skips_locally_and_fails_in_ci(where):
    want = "failed" if where == "ci" else "skipped"
    kind, message = outcome(lambda: _require.require(None, "flock is not installed"))
    assert kind == want and "flock is not installed" in message
    kind, message = outcome(lambda: _require.require_module("kvmha_no_such_module", "the binding"))
    assert kind == want and "the binding" in message and "kvmha_no_such_module" in message


def test_an_optional_check_is_dropped_with_a_warning_locally_and_fails_in_ci(where):
    if where == "ci":
        kind, message = outcome(lambda: _require.optional(False, "systemd-analyze is missing"))
        assert kind == "failed" and "systemd-analyze is missing" in message
    else:
        with pytest.warns(UserWarning, match="check not run: systemd-analyze is missing"):
            assert _require.optional(False, "systemd-analyze is missing") is False


class Report:
    def __init__(self, outcome_, longrepr):
        self.outcome = outcome_
        self.longrepr = longrepr

    @property
    def skipped(self):
        return self.outcome == "skipped"


@pytest.mark.parametrize("value, ci", [("true", True), ("TRUE", True), ("1", True), ("", False), ("false", False)])
def test_ci_is_recognised(monkeypatch, value, ci):
    monkeypatch.setenv("CI", value)
    assert _require.in_ci() is ci


def test_the_conftest_net_turns_any_skip_into_a_failure_in_ci(where):
    skipped = Report("skipped", ("tests/unit/x.py", 3, "Skipped: could not import 'libvirt'"))
    _require.fail_skip_in_ci(skipped)
    if where == "ci":
        assert skipped.outcome == "failed" and "could not import 'libvirt'" in skipped.longrepr
    else:
        assert skipped.outcome == "skipped"
    passed = Report("passed", None)
    _require.fail_skip_in_ci(passed)
    assert passed.outcome == "passed"
