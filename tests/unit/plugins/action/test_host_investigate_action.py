# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_investigate runs in the controller's process (its action plugin): the same answers, failures and warnings
as the module run it replaces, and no module run at all."""

from __future__ import annotations

import pytest
from ansible.module_utils.common import warnings as module_warnings

from ansible.errors import AnsibleActionFail

from ansible_collections.kvmha.cluster.plugins.action.host_investigate import ActionModule
from ansible_collections.kvmha.cluster.plugins.modules import host_investigate

DEAD = {
    "host": "h1", "cluster": "lab", "mgmt": {"reachable": False}, "heartbeat": {"status": "stale", "age": 9.0},
    "neighbors": {"reachable": 0, "unreachable": 2}, "bmc": {"power": "on"}, "disk_activity": "idle",
}
CLUSTERS = {"lab": {"size": 3}}


@pytest.fixture
def investigate(run_action):
    """Run host_investigate's action plugin; a module run fails the test."""
    return lambda args, check_mode=False: run_action(ActionModule, host_investigate, args, check_mode)


CASES = {
    "a dead host": {"hosts": [DEAD], "clusters": CLUSTERS},
    "an isolated observer": {"hosts": [dict(DEAD, observer={"ok": False, "reason": "store hung"})], "clusters": CLUSTERS},
    "a custom rule": {"hosts": [DEAD], "clusters": CLUSTERS,
                      "policy": {"rules": [{"id": "quiet", "when": "host == 'h1'", "action": "alert"}]}},
    "the policy check of a run": {"hosts": [], "clusters": {}, "policy": {"heartbeat_misses": 4}},
    "foreign fenced marks": {"hosts": [DEAD], "clusters": {"lab": {"size": 3, "fenced": ["h9"], "members": ["h1", "h2", "h3"]}}},
    "a bad policy": {"hosts": [DEAD], "clusters": CLUSTERS, "policy": {"fence_hungg": False}},
    "hostile evidence": {"hosts": [dict(DEAD, host="h1/../../x")], "clusters": CLUSTERS},
}


def module_result(run_module, args: dict, check_mode: bool) -> dict:
    """The module run's result, its warnings as the messages Ansible shows (a module's warnings are kept for the
    whole process: those of an earlier test's run are dropped first)."""
    module_warnings._global_warnings.clear()
    module_warnings._global_deprecations.clear()
    result = run_module(host_investigate, args, check_mode=check_mode)
    if "warnings" in result:
        result["warnings"] = [w["event"]["msg"] for w in result["warnings"]]
    return result


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("check_mode", [False, True])
def test_the_same_result_as_the_module(investigate, run_module, case, check_mode):
    args = dict(CASES[case], now=1764756900.0)
    assert investigate(args, check_mode=check_mode) == module_result(run_module, args, check_mode)


def test_foreign_marks_are_warned_about(investigate):
    warnings = investigate(CASES["foreign fenced marks"])["warnings"]
    assert len(warnings) == 1 and "cluster lab, not counted by its storm guard: h9" in warnings[0]


def test_a_missing_jmespath_is_the_standard_missing_library_failure(investigate, monkeypatch):
    monkeypatch.setattr(host_investigate, "JMESPATH_IMPORT_ERROR", ImportError("No module named 'jmespath'"))
    result = investigate(CASES["a custom rule"])
    assert result["failed"] is True and result["error_kind"] == "missing_library"
    assert "jmespath" in result["msg"] and "No module named" in result["exception"]


@pytest.mark.parametrize("args, words", [
    ({"hosts": []}, "missing required arguments: clusters"),
    ({"hosts": [], "clusters": {}, "bogus": 1}, "Unsupported parameters"),
    ({"hosts": "not a list of evidence", "clusters": {}}, "hosts"),
])
def test_options_are_checked_against_the_module_s_own_spec(investigate, args, words):
    with pytest.raises(AnsibleActionFail, match=words):
        investigate(args)
