# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Edges of the decision engine that mutation testing (docs/TESTING.md) found unguarded: strings that are equal
but not the same object (every string decoded from JSON), booleans posing as counts, and the bounded text of
error messages."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _decision
from ansible_collections.kvmha.cluster.plugins.module_utils._decision import decide
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy

NOW = 1_000_000.0


def fresh(text: str) -> str:
    """An equal string that is a different object, as JSON decoding gives: code must compare with ==, not is."""
    copy = "".join(list(text))
    assert copy == text and copy is not text
    return copy


def dead(host, cluster="c1"):
    return {"host": host, "cluster": cluster, "observer": {"ok": True}, "mgmt": {"reachable": False},
            "heartbeat": {"status": "stale", "age": 60.0}, "neighbors": {"reachable": 0, "unreachable": 2},
            "bmc": {"power": "on"}, "disk_activity": "idle"}


def test_the_storm_guard_counts_hosts_whose_cluster_names_are_equal_strings():
    # Two dead hosts of a 3-host cluster: 2 candidates exceed the budget of int(3 x 0.5) = 1, so neither is fenced.
    hosts = [dead("h1", fresh("c1")), dead("h2", fresh("c1"))]
    result = decide(hosts, {"c1": {"size": 3}}, effective_policy({}), NOW)
    assert result["storm_guard"] == {"c1": True} and result["actions"]["fence"] == []


def test_the_cluster_size_check_counts_hosts_whose_cluster_names_are_equal_strings():
    with pytest.raises(InvalidInput, match="names 2 of its hosts"):
        decide([dead("h1", fresh("c1")), dead("h2", fresh("c1"))], {"c1": {"size": 1}}, effective_policy({}), NOW)


def test_the_size_check_counts_each_cluster_s_own_hosts():
    result = decide([dead("a1", "a"), dead("b1", "b")], {"a": {"size": 1}, "b": {"size": 1}}, effective_policy({}), NOW)
    assert sorted(result["decisions"]) == ["a1", "b1"]


def test_actions_are_grouped_whatever_string_object_a_custom_rule_gave():
    rules = json.loads('[{"id": "quiet", "when": "`true`", "action": "alert"}]')  # as from an inventory
    result = decide([dead("h1")], {"c1": {"size": 3}}, effective_policy({"rules": rules}), NOW)
    assert result["actions"]["alert"] == ["h1"] and result["actions"]["fence"] == []


def test_storm_guard_checks_every_cluster_even_after_one_within_its_budget():
    # Cluster a (sorted first) is within its budget; b, checked after it, is not and must still be guarded.
    hosts = [dead("a1", "a"), dead("b1", "b"), dead("b2", "b"), dead("b3", "b")]
    result = decide(hosts, {"a": {"size": 4}, "b": {"size": 4}}, effective_policy({}), NOW)
    assert result["storm_guard"] == {"a": False, "b": True} and result["actions"]["fence"] == ["a1"]


@pytest.mark.parametrize("count", [True, False])
def test_a_boolean_is_not_a_neighbour_count(count):
    doc = dict(dead("h1"), neighbors={"reachable": count, "unreachable": 0})
    with pytest.raises(InvalidInput, match="neighbors.reachable must be a count"):
        decide([doc], {"c1": {"size": 3}}, effective_policy({}), NOW)


def test_fence_budget_rounds_a_ratio_that_floats_just_below_a_whole_number():
    assert 100 * 0.29 < 29  # 28.999999999999996
    assert _decision.fence_budget(100, 0, 0.29) == 29


@pytest.mark.parametrize("value, shown", [
    (2 ** 64 - 1, repr(2 ** 64 - 1)),  # 64 bits: still shown as digits
    (2 ** 64, "an integer of 65 bits"),
    (10 ** 400, "an integer of 1329 bits"),
    ("x" * 78, repr("x" * 78)),  # 80 characters with its quotes: shown whole
    ("x" * 79, repr("x" * 79)[:77] + "..."),
    ("ok", "'ok'"),
    (5, "5"),  # a small integer is shown as itself
])
def test_values_in_messages_are_shown_bounded(value, shown):
    assert _decision._shown(value) == shown  # pylint: disable=protected-access
    assert len(_decision._shown(value)) <= 80  # pylint: disable=protected-access


def test_a_maintenance_that_is_not_a_dict_names_the_host():
    doc = dict(dead("h1"), maintenance="yes")
    with pytest.raises(InvalidInput) as err:
        decide([doc], {"c1": {"size": 3}}, effective_policy({}), NOW)
    assert str(err.value) == "h1: maintenance must be a dict or null"


def test_an_integer_beyond_any_float_is_a_clear_error():
    doc = dict(dead("h1"), heartbeat={"status": "stale", "age": 10 ** 400})
    with pytest.raises(InvalidInput, match="'age' must be a number, got an integer of 1329 bits"):
        decide([doc], {"c1": {"size": 3}}, effective_policy({}), NOW)


# ----------------------------------------------------------------------------------------- the storm guard's count


@pytest.mark.parametrize("fenced, members, count, foreign", [
    (2, None, 2, []),
    (["h4", "h4", "h5"], None, 2, []),  # a host named twice is one host
    (["h4", "x7"], ["h1", "h2", "h3", "h4"], 1, ["x7"]),  # only members count; x7 is another cluster's
    (["x7", "x8"], ["h1", "h2"], 0, ["x7", "x8"]),
    ([], ["h1"], 0, []),
])
def test_the_storm_guard_counts_the_fenced_members(fenced, members, count, foreign):
    assert _decision._fenced_count("c1", fenced, members) == (count, foreign)  # pylint: disable=protected-access


def test_fenced_marks_of_other_clusters_neither_hold_back_nor_let_through_a_fence():
    # 4 hosts, ratio 0.5: budget 2. Marks of x7 and x8 (not members) must not use it up; h4's mark does.
    clusters = {"c1": {"size": 4, "fenced": ["x7", "x8", "h4"], "members": ["h1", "h2", "h3", "h4"]}}
    result = decide([dead("h1")], clusters, effective_policy({}), NOW)
    assert result["actions"]["fence"] == ["h1"] and result["foreign_fenced"] == {"c1": ["x7", "x8"]}
    clusters["c1"]["fenced"] = ["h3", "h4"]
    assert decide([dead("h1")], clusters, effective_policy({}), NOW)["actions"]["fence"] == []


@pytest.mark.parametrize("info, message", [
    ({"size": 3, "fenced": ["h1", 7]}, "clusters.c1.fenced must be a count or a list of host names"),
    ({"size": 3, "fenced": ["h1"], "members": "h1"}, "clusters.c1.members must be a list of host names"),
    ({"size": 3, "fenced": ["h1"], "members": ["h1", None]}, "clusters.c1.members must be a list of host names"),
])
def test_a_malformed_fenced_list_or_member_list_is_a_clear_error(info, message):
    with pytest.raises(InvalidInput) as err:
        decide([dead("h1")], {"c1": info}, effective_policy({}), NOW)
    assert str(err.value) == message


def test_only_fence_decisions_are_storm_guard_candidates():
    # One dead host and three others whose decision is an alert (R4, heartbeat alive): 1 candidate, budget 2.
    alive = [dict(dead("h%d" % n), heartbeat={"status": "fresh", "age": 0.5}) for n in (2, 3, 4)]
    result = decide([dead("h1")] + alive, {"c1": {"size": 4}}, effective_policy({}), NOW)
    assert result["actions"]["fence"] == ["h1"] and result["actions"]["alert"] == ["h2", "h3", "h4"]
    assert result["storm_guard"] == {"c1": False}


# ----------------------------------------------------------------------------------------- evidence as decoded


def test_a_power_state_read_as_a_decoded_string_is_believed():
    doc = dict(dead("h1"), bmc={"power": fresh("off"), "error": None})
    decision = decide([doc], {"c1": {"size": 3}}, effective_policy({}), NOW)["decisions"]["h1"]
    assert (decision["rule"], decision["action"]) == ("R5", "recover")


@pytest.mark.parametrize("overrides, rule, action", [
    # The BMC says off while the disks are being written or the host pings: a conflict (R5a), never R5's recovery.
    ({"bmc": {"power": "off"}, "disk_activity": fresh("active")}, "R5a", "alert"),
    ({"bmc": {"power": fresh("off")}, "neighbors": {"reachable": 1, "unreachable": 0}}, "R5a", "alert"),
    # Disks being written, the host pingable and silent for the whole grace period: R7 (alert), never R6a's fence.
    ({"disk_activity": fresh("active"), "neighbors": {"reachable": 1, "unreachable": 0}}, "R7", "alert"),
    # Disks being written and no ping: still R7, never R8's fence.
    ({"disk_activity": fresh("active")}, "R7", "alert"),
    # Pingable, silent for the grace period, idle disks, the BMC says on: R6a fences.
    ({"bmc": {"power": fresh("on")}, "neighbors": {"reachable": 1, "unreachable": 0}}, "R6a", "fence"),
])
def test_the_rules_read_decoded_evidence_strings(overrides, rule, action):
    doc = dict(dead("h1"), **overrides)
    decision = decide([doc], {"c1": {"size": 3}}, effective_policy({}), NOW)["decisions"]["h1"]
    assert (decision["rule"], decision["action"]) == (rule, action)


@pytest.mark.parametrize("key", ["size", "fenced"])
def test_a_negative_size_or_fenced_count_is_refused(key):
    info = dict({"size": 3, "fenced": 0}, **{key: -1})
    with pytest.raises(InvalidInput) as err:
        decide([dead("h1")], {"c1": info}, effective_policy({}), NOW)
    assert str(err.value) == "clusters.c1.%s must be a non-negative integer, got -1" % key


def test_an_unknown_power_state_with_an_error_has_nothing_to_discard():
    doc = dict(dead("h1"), bmc={"power": fresh("unknown"), "error": "timeout"})
    decision = decide([doc], {"c1": {"size": 3}}, effective_policy({}), NOW)["decisions"]["h1"]
    assert decision["rule"] == "R10" and not any("status probe failed" in r for r in decision["reasons"])
    discarded = dict(dead("h1"), bmc={"power": "off", "error": "timeout"})
    decision = decide([discarded], {"c1": {"size": 3}}, effective_policy({}), NOW)["decisions"]["h1"]
    assert decision["rule"] == "R10" and decision["action"] == "alert"
    assert "the BMC's status probe failed (timeout): its read 'off' is not used, the power state is unknown" in decision["reasons"]


# ----------------------------------------------------------------------------------------- custom rules stay cautious


def test_a_custom_rule_can_never_make_a_decision_bolder_even_unvalidated():
    """apply_custom_rules only gets none/alert from the validated policy; _overrule checks it once more."""
    overrule = _decision._overrule  # pylint: disable=protected-access
    decision = {"verdict": "SUSPECT", "action": "alert", "rule": "R6", "reasons": ["r"]}
    for bold in ("fence", "recover", "remediate", fresh("fence")):
        with pytest.raises(AssertionError):
            overrule(decision, "V", bold, "custom:x", "why")
    with pytest.raises(AssertionError):  # a "smaller" bold action is no less bold
        overrule(dict(decision, action="recover"), "V", "fence", "custom:x", "why")
    fencing = dict(decision, action="fence")
    for kept in ("fence", fresh("fence"), "alert", "none"):
        assert overrule(fencing, "V", kept, "custom:x", "why")["action"] == kept


def test_a_trusted_self_fence_is_read_from_a_decoded_unknown_power_state():
    doc = dict(dead("h1"), bmc={"power": fresh("unknown")},
               heartbeat={"status": "stale", "age": 90.0, "self_fence": {"armed": True, "deadline_s": 60.0}})
    decision = decide([doc], {"c1": {"size": 3}}, effective_policy({"trust_self_fence": True}), NOW)["decisions"]["h1"]
    assert (decision["rule"], decision["action"]) == ("R9", "recover")


def test_fence_isolated_reads_a_decoded_power_state():
    doc = dict(dead("h1"), disk_activity="active", bmc={"power": fresh("on")})
    decision = decide([doc], {"c1": {"size": 3}}, effective_policy({"fence_isolated": True}), NOW)["decisions"]["h1"]
    assert (decision["rule"], decision["action"]) == ("R7", "fence")


def test_a_self_fence_that_does_not_say_it_is_armed_is_not():
    doc = dict(dead("h1"), bmc={"power": "unknown"},
               heartbeat={"status": "stale", "age": 900.0, "self_fence": {"deadline_s": 60.0}})
    decision = decide([doc], {"c1": {"size": 3}}, effective_policy({"trust_self_fence": True}), NOW)["decisions"]["h1"]
    assert (decision["rule"], decision["action"]) == ("R10", "alert")


def test_a_decision_outside_any_storm_says_so():
    decision = decide([dead("h1")], {"c1": {"size": 3}}, effective_policy({}), NOW)["decisions"]["h1"]
    assert decision["action"] == "fence" and decision["storm_guard"] is False


def test_the_storm_guard_takes_decisions_built_anywhere():
    """apply_storm_guard is given decisions as dicts: their action and cluster may be decoded strings."""
    decisions = [{"host": h, "cluster": fresh("c1"), "action": fresh("fence"), "reasons": []} for h in ("h1", "h2")]
    guarded = _decision.apply_storm_guard(decisions, {"c1": {"size": 3, "fenced": 0}}, effective_policy({}))
    assert guarded == {"c1": True} and [d["action"] for d in decisions] == ["alert", "alert"]


def test_messages_name_what_is_wrong():
    with pytest.raises(InvalidInput) as err:
        decide([dead("h1"), dead("h1")], {"c1": {"size": 3}}, effective_policy({}), NOW)
    assert str(err.value) == "evidence lists host(s) more than once: h1"
    with pytest.raises(InvalidInput) as err:
        decide([dead("h1", "c9")], {"c1": {"size": 3}}, effective_policy({}), NOW)
    assert str(err.value) == "cluster 'c9' of the evidence is missing from clusters (its size is needed for the storm guard)"
    rules = [{"id": "rack-r7", "when": "`true`", "action": "alert"}]
    decision = decide([dead("h1")], {"c1": {"size": 3}}, effective_policy({"rules": rules}), NOW)["decisions"]["h1"]
    assert decision["reasons"][-1] == "custom rule 'rack-r7' matched"
