# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kvmha.cluster.plugins.modules import host_investigate

DEAD = {
    "host": "h1", "cluster": "lab", "mgmt": {"reachable": False}, "heartbeat": {"status": "stale", "age": 9.0},
    "neighbors": {"reachable": 0, "unreachable": 2}, "bmc": {"power": "on"}, "disk_activity": "idle",
}


def test_decides_and_never_changes_anything(run_module):
    result = run_module(host_investigate, {"hosts": [DEAD], "clusters": {"lab": {"size": 3}}})
    assert result["changed"] is False and result["abort"] is False
    assert result["decisions"]["h1"]["verdict"] == "SUSPECT" and result["actions"]["fence"] == ["h1"]
    assert result["policy"]["max_fence_ratio"] == 0.5 and result["policy"]["rules"] == []


def test_runs_in_check_mode_with_the_same_answer(run_module):
    result = run_module(host_investigate, {"hosts": [DEAD], "clusters": {"lab": {"size": 3}}}, check_mode=True)
    assert result["actions"]["fence"] == ["h1"]


def test_abort_when_the_observer_is_not_ok(run_module):
    isolated = dict(DEAD, observer={"ok": False, "reason": "store hung"})
    result = run_module(host_investigate, {"hosts": [isolated], "clusters": {"lab": {"size": 3}}})
    assert result["abort"] is True and result["actions"]["abort"] == ["h1"]


def test_custom_rules_are_returned_without_compiled_expressions(run_module):
    rule = {"id": "quiet", "when": "host == 'h1'", "action": "alert"}
    result = run_module(host_investigate, {"hosts": [DEAD], "clusters": {"lab": {"size": 3}}, "policy": {"rules": [rule]}})
    assert result["decisions"]["h1"]["action"] == "alert"
    assert result["policy"]["rules"] == [dict(rule, verdict=None, reason="")]


@pytest.mark.parametrize("policy, words", [
    ({"fence_hungg": False}, "unknown policy key 'fence_hungg' (did you mean 'fence_hung'?)"),
    ({"max_fence_ratio": 2}, "policy.max_fence_ratio must be > 0 and <= 1"),
    ({"fence_isolated": "yes"}, "policy.fence_isolated must be true or false"),
    ({"heartbeat_misses": 1.5}, "policy.heartbeat_misses must be an integer"),
    ({"rules": [{"id": "r", "when": "[", "action": "alert"}]}, "custom rule 'r': malformed JMESPath"),
])
def test_bad_policy_fails_clearly(run_module, policy, words):
    result = run_module(host_investigate, {"hosts": [DEAD], "clusters": {"lab": {"size": 3}}, "policy": policy})
    assert result["failed"] is True and words in result["msg"] and result["error_kind"] == "policy"


def test_bad_evidence_fails_clearly(run_module):
    result = run_module(host_investigate, {"hosts": [dict(DEAD, host="h1/../../x")], "clusters": {"lab": {"size": 3}}})
    assert result["failed"] is True and "'/'" in result["msg"] and result["error_kind"] == "invalid_input"


def test_a_choice_setting_refuses_other_values(run_module):
    result = run_module(host_investigate, {"hosts": [DEAD], "clusters": {"lab": {"size": 3}}, "policy": {"placement_strategy": "random"}})
    assert result["failed"] is True and "must be one of spread, best_fit" in result["msg"]
