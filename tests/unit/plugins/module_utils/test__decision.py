# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._decision import (
    ACTIONS,
    RULE_IDS,
    decide,
    fence_budget,
)
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy

NOW = 1_000_000.0


def evidence(host="h1", **overrides):
    """A dead host: heartbeat stale for a minute, nothing answers, BMC says on, disks idle."""
    doc = {
        "host": host,
        "cluster": "c1",
        "observer": {"ok": True},
        "maintenance": None,
        "mgmt": {"reachable": False},
        "heartbeat": {"status": "stale", "age": 60.0, "seq": 5, "boot_id": "b", "self_fence": {"armed": False, "deadline_s": 60.0}},
        "neighbors": {"reachable": 0, "unreachable": 2, "errors": 0},
        "bmc": {"power": "on", "error": None},
        "disk_activity": "idle",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = dict(doc[key], **value)
        else:
            doc[key] = value
    return doc


CONFIRMED = {"owner": "alice", "reason": "pulled both power cords", "seq": 5, "boot_id": "b"}


def decide_one(policy=None, size=5, fenced=0, **overrides):
    result = decide([evidence(**overrides)], {"c1": {"size": size, "fenced": fenced}}, effective_policy(policy or {}), NOW)
    return result["decisions"]["h1"]


# ------------------------------------------------------------------------------------------ the table, rule by rule

TABLE = [
    # (rule, verdict, action, evidence overrides, policy)
    ("R0", "OBSERVER_ISOLATED", "abort", {"observer": {"ok": False}}, {}),
    ("R1", "MAINTENANCE", "none", {"maintenance": {"owner": "ops", "expires": NOW + 60}}, {}),
    ("R1", "MAINTENANCE", "none", {"maintenance": {"owner": "ops"}}, {}),
    ("R2", "ALIVE", "none", {"mgmt": {"reachable": True}, "heartbeat": {"status": "fresh", "age": 1.0}}, {}),
    ("R2", "ALIVE", "none", {"mgmt": {"reachable": True}, "heartbeat": {"status": "clock_skew", "age": 1.0}}, {}),
    ("R3", "ALIVE_WRITER_FAULT", "remediate", {"mgmt": {"reachable": True}}, {}),
    ("R3", "ALIVE_WRITER_FAULT", "remediate", {"mgmt": {"reachable": True}, "heartbeat": {"status": "stopped"}}, {}),
    ("R3", "ALIVE_WRITER_FAULT", "alert", {"mgmt": {"reachable": True}}, {"remediate_writer": False}),
    ("R4", "ISOLATED", "alert", {"heartbeat": {"status": "fresh", "age": 0.5}}, {}),
    ("R4", "ISOLATED", "alert", {"heartbeat": {"status": "fresh"}, "mgmt": {"reachable": None}}, {}),
    ("R5a", "CONFLICT", "alert", {"bmc": {"power": "off"}, "neighbors": {"reachable": 1}}, {}),
    ("R5a", "CONFLICT", "alert", {"bmc": {"power": "off"}, "disk_activity": "active"}, {}),
    ("R5", "DOWN", "recover", {"bmc": {"power": "off"}}, {}),
    ("R5", "DOWN", "recover", {"bmc": {"power": "off"}, "heartbeat": {"status": "missing", "age": None}}, {}),
    # An operator's confirm-off (confirm_off.yml), given against the host's last heartbeat (seq 5 of boot "b").
    ("R5b", "CONFLICT", "alert", {"bmc": {"power": "unknown"}, "confirmed_off": CONFIRMED, "neighbors": {"reachable": 1}}, {}),
    ("R5b", "CONFLICT", "alert", {"bmc": {"power": "unknown"}, "confirmed_off": CONFIRMED, "disk_activity": "active"}, {}),
    ("R5b", "CONFLICT", "alert", {"confirmed_off": CONFIRMED, "neighbors": {"reachable": 1}, "heartbeat": {"age": 30.0}}, {}),
    ("R5", "DOWN", "recover", {"bmc": {"power": "off"}, "confirmed_off": CONFIRMED}, {}),
    ("R6", "UNRESPONSIVE", "alert", {"neighbors": {"reachable": 2, "unreachable": 0}, "heartbeat": {"age": 10.0}}, {}),
    ("R6", "UNRESPONSIVE", "alert", {"neighbors": {"reachable": 1}, "heartbeat": {"status": "missing", "age": None}}, {}),
    ("R6a", "HUNG", "fence", {"neighbors": {"reachable": 2}, "heartbeat": {"age": 30.0}}, {}),
    ("R6a", "HUNG", "alert", {"neighbors": {"reachable": 2}}, {"fence_hung": False}),
    ("R6a", "HUNG", "fence", {"neighbors": {"reachable": 2}, "disk_activity": "unknown"}, {}),
    ("R7", "ALIVE_VMS_RUNNING", "alert", {"disk_activity": "active"}, {}),
    ("R7", "ALIVE_VMS_RUNNING", "alert", {"disk_activity": "active", "neighbors": {"reachable": 2}}, {}),
    ("R7", "ALIVE_VMS_RUNNING", "fence", {"disk_activity": "active"}, {"fence_isolated": True}),
    ("R7", "ALIVE_VMS_RUNNING", "alert", {"disk_activity": "active", "bmc": {"power": "unknown"}}, {"fence_isolated": True}),
    ("R8", "SUSPECT", "fence", {}, {}),
    ("R8", "SUSPECT", "fence", {"disk_activity": "unknown", "heartbeat": {"status": "missing", "age": None}}, {}),
    ("R8", "SUSPECT", "fence", {"mgmt": {"reachable": None}, "neighbors": {"reachable": 0, "unreachable": 0, "errors": 2}}, {}),
    ("R9", "DOWN_SELF_FENCED", "recover",
     {"bmc": {"power": "unknown", "error": "unreachable"}, "heartbeat": {"age": 70.0, "self_fence": {"armed": True, "deadline_s": 60.0}}},
     {"trust_self_fence": True}),
    ("R9a", "DOWN_CONFIRMED", "recover", {"bmc": {"power": "unknown", "error": "unreachable"}, "confirmed_off": CONFIRMED}, {}),
    ("R9a", "DOWN_CONFIRMED", "recover", {"bmc": None, "confirmed_off": CONFIRMED, "disk_activity": "unknown"}, {}),
    # A BMC that says on is believed over the operator: fenced (and recovered only once its power-off is confirmed).
    ("R8", "SUSPECT", "fence", {"confirmed_off": CONFIRMED}, {}),
    # The host wrote a heartbeat after the confirmation (another seq, another boot): the word is void.
    ("R10", "UNKNOWN", "alert", {"bmc": {"power": "unknown"}, "confirmed_off": dict(CONFIRMED, seq=4)}, {}),
    ("R10", "UNKNOWN", "alert", {"bmc": {"power": "unknown"}, "confirmed_off": dict(CONFIRMED, boot_id="a")}, {}),
    ("R10", "UNKNOWN", "alert", {"bmc": {"power": "unknown"}, "confirmed_off": {}}, {}),
    ("R10", "UNKNOWN", "alert",
     {"bmc": {"power": "unknown", "error": "unreachable"}, "heartbeat": {"age": 70.0, "self_fence": {"armed": True, "deadline_s": 60.0}}},
     {}),
    ("R10", "UNKNOWN", "alert",
     {"bmc": {"power": "unknown", "error": "unreachable"}, "heartbeat": {"age": 69.0, "self_fence": {"armed": True, "deadline_s": 60.0}}},
     {"trust_self_fence": True}),
    ("R10", "UNKNOWN", "alert", {"bmc": {"power": "unknown", "error": "auth"}}, {}),
    ("R10", "UNKNOWN", "alert", {"bmc": None, "neighbors": None, "disk_activity": None, "mgmt": None}, {}),
    ("R10", "UNKNOWN", "alert", {"neighbors": {"reachable": 1}, "bmc": {"power": "unknown"}}, {}),
]


@pytest.mark.parametrize("rule, verdict, action, overrides, policy", TABLE)
def test_rule_table(rule, verdict, action, overrides, policy):
    decision = decide_one(policy=policy, **overrides)
    assert (decision["rule"], decision["verdict"], decision["action"]) == (rule, verdict, action)
    assert decision["reasons"] and all(isinstance(r, str) and r for r in decision["reasons"])


def test_every_rule_has_a_table_test():
    assert {row[0] for row in TABLE} == set(RULE_IDS)


def test_a_void_confirmation_says_why_it_is_not_used():
    decision = decide_one(bmc={"power": "unknown"}, confirmed_off=dict(CONFIRMED, seq=6))
    assert decision["verdict"] == "UNKNOWN"
    assert "the operator's confirm-off is void: the host wrote a heartbeat after it was given" in decision["reasons"]
    assert not any("void" in r for r in decide_one(bmc={"power": "unknown"}, confirmed_off=CONFIRMED)["reasons"])


def test_expired_maintenance_no_longer_protects():
    assert decide_one(maintenance={"owner": "ops", "expires": NOW - 1})["rule"] == "R8"


# ------------------------------------------------------------------------------------------ storm guard


def cluster_of_dead_hosts(count, size, fenced=0, policy=None, **overrides):
    hosts = [evidence(host="h%d" % i, **overrides) for i in range(1, count + 1)]
    return decide(hosts, {"c1": {"size": size, "fenced": fenced}}, effective_policy(policy or {}), NOW)


@pytest.mark.parametrize("count, size, fenced, fences", [
    (1, 3, 0, 1), (2, 3, 0, 0), (2, 5, 0, 2), (3, 5, 0, 0), (1, 5, 2, 0), (1, 5, 1, 1), (1, 2, 0, 1), (4, 10, 1, 4), (5, 10, 1, 0),
])
def test_storm_guard(count, size, fenced, fences):
    result = cluster_of_dead_hosts(count, size, fenced)
    assert len(result["actions"]["fence"]) == fences
    assert result["storm_guard"]["c1"] == (fences == 0)
    if fences == 0:
        assert all(d["storm_guard"] and "storm guard" in d["reasons"][-1] for d in result["decisions"].values())


def test_storm_guard_still_recovers_hosts_whose_power_is_off():
    hosts = [evidence(host="h%d" % i) for i in range(1, 4)] + [evidence(host="h4", bmc={"power": "off"})]
    result = decide(hosts, {"c1": {"size": 5, "fenced": 0}}, effective_policy({}), NOW)
    assert result["actions"]["fence"] == [] and result["actions"]["recover"] == ["h4"]


def test_storm_guard_is_per_cluster():
    hosts = [evidence(host="a%d" % i, cluster="a") for i in range(1, 4)] + [evidence(host="b1", cluster="b")]
    result = decide(hosts, {"a": {"size": 4}, "b": {"size": 4}}, effective_policy({}), NOW)
    assert result["actions"]["fence"] == ["b1"] and result["storm_guard"] == {"a": True, "b": False}


@pytest.mark.parametrize("size, fenced, ratio, budget", [(3, 0, 0.5, 1), (4, 0, 0.5, 2), (5, 0, 0.5, 2), (5, 3, 0.5, 0), (10, 0, 0.3, 3), (1, 0, 1.0, 1)])
def test_fence_budget(size, fenced, ratio, budget):
    assert fence_budget(size, fenced, ratio) == budget


# ------------------------------------------------------------------------------------------ custom rules

NO_FENCE_TAG = {"id": "no-fence-tag", "when": "decision.action == 'fence' && contains(tags, 'no_fence')",
                "action": "alert", "verdict": "FENCE_BLOCKED", "reason": "host is tagged no_fence"}
RACK_R7 = {"id": "rack-r7", "when": "rack == 'r7'", "action": "alert", "reason": "rack r7's BMCs are known dead"}


def test_custom_rule_blocks_a_fence():
    decision = decide_one(policy={"rules": [NO_FENCE_TAG]}, tags=["no_fence"])
    assert (decision["verdict"], decision["action"], decision["rule"]) == ("FENCE_BLOCKED", "alert", "custom:no-fence-tag")
    assert decision["builtin"] == {"verdict": "SUSPECT", "action": "fence", "rule": "R8"}
    assert decision["reasons"][-1] == "host is tagged no_fence"


def test_custom_rule_that_does_not_match_leaves_the_decision():
    assert decide_one(policy={"rules": [NO_FENCE_TAG]}, tags=["web"])["action"] == "fence"
    assert decide_one(policy={"rules": [NO_FENCE_TAG]})["action"] == "fence"  # no tags at all


def test_custom_rule_over_extra_evidence_keys():
    decision = decide_one(policy={"rules": [RACK_R7]}, rack="r7", bmc={"power": "off"})
    assert (decision["verdict"], decision["action"]) == ("DOWN", "alert")


def test_custom_rule_that_fails_at_runtime_alerts_instead_of_acting():
    bad = {"id": "bad-types", "when": "contains(rack, 'r7')", "action": "none"}
    decision = decide_one(policy={"rules": [bad]}, rack=7)
    assert (decision["verdict"], decision["action"], decision["rule"]) == ("RULE_ERROR", "alert", "custom:bad-types")


@pytest.mark.parametrize("rule, words", [
    ({"id": "x", "when": "tags[?", "action": "alert"}, "custom rule 'x': malformed JMESPath expression"),
    ({"id": "x", "when": "true", "action": "fence"}, "action must be one of none, alert"),
    ({"id": "x", "when": "true", "action": "recover"}, "never bolder"),
    ({"id": "x", "action": "alert"}, "'when' must be a JMESPath expression"),
    ({"id": "X Y", "when": "true", "action": "alert"}, "id must be lower-case"),
    ({"id": "x", "when": "true", "action": "alert", "unless": "false"}, "unknown key(s) unless"),
    ({"id": "x", "when": "true", "action": "alert", "verdict": "lower"}, "verdict must be UPPER_CASE_WORDS"),
    ("not a rule", "policy.rules[0] must be a dict"),
])
def test_malformed_custom_rules_are_clear_errors(rule, words):
    with pytest.raises(InvalidInput) as err:
        effective_policy({"rules": [rule]})
    assert words in str(err.value)


def test_duplicate_rule_ids():
    with pytest.raises(InvalidInput, match="duplicate rule id"):
        effective_policy({"rules": [RACK_R7, RACK_R7]})


# ------------------------------------------------------------------------------------------ bad evidence


@pytest.mark.parametrize("overrides, words", [
    ({"host": "../x"}, "'/'"),
    ({"host": None}, "must be a string"),
    ({"mgmt": {"reachable": "yes"}}, "'reachable' must be bool"),
    ({"heartbeat": {"status": "great"}}, "'status' must be one of"),
    ({"heartbeat": {"age": "old"}}, "'age' must be a number"),
    ({"bmc": {"power": "maybe"}}, "'power' must be one of"),
    ({"neighbors": {"reachable": -1}}, "neighbors.reachable must be a count"),
    ({"neighbors": "many"}, "'neighbors' must be a dict"),
    ({"disk_activity": "busy"}, "'disk_activity' must be one of"),
    ({"maintenance": "yes"}, "maintenance must be a dict"),
    ({"confirmed_off": "yes"}, "'confirmed_off' must be a dict"),
    ({"confirmed_off": {"seq": "5"}}, "'seq' must be int"),
    ({"confirmed_off": {"seq": 5, "boot_id": 7}}, "'boot_id' must be str"),
    ({"confirmed_off": CONFIRMED, "heartbeat": {"seq": True}}, "'seq' must be int"),
])
def test_bad_evidence_is_a_clear_error(overrides, words):
    with pytest.raises(InvalidInput) as err:
        decide_one(**overrides)
    assert words in str(err.value)


@pytest.mark.parametrize("clusters, words", [
    ({}, "missing from clusters"),
    ({"c1": {"size": "3"}}, "size must be a non-negative integer"),
    ({"c1": {"size": 0}}, "names 1 of its hosts"),
    ([], "clusters must be a dict"),
])
def test_bad_cluster_context(clusters, words):
    with pytest.raises(InvalidInput) as err:
        decide([evidence()], clusters, effective_policy({}), NOW)
    assert words in str(err.value)


def test_duplicate_hosts_in_evidence():
    with pytest.raises(InvalidInput, match="more than once"):
        decide([evidence(), evidence()], {"c1": {"size": 5}}, effective_policy({}), NOW)


# ------------------------------------------------------------------------------------------ properties

def maybe(strategy):
    return st.one_of(st.none(), strategy)


evidence_space = st.fixed_dictionaries({
    "host": st.sampled_from(["h1"]),
    "cluster": st.just("c1"),
    "observer": st.fixed_dictionaries({"ok": st.booleans()}),
    "maintenance": st.one_of(st.none(), st.fixed_dictionaries({"expires": st.sampled_from([NOW - 10, NOW + 10])})),
    "mgmt": maybe(st.fixed_dictionaries({"reachable": maybe(st.booleans())})),
    "heartbeat": maybe(st.fixed_dictionaries({
        "status": st.sampled_from(["fresh", "stale", "stopped", "missing", "invalid", "clock_skew", "unknown"]),
        "age": maybe(st.floats(0, 500)),
        "self_fence": maybe(st.fixed_dictionaries({"armed": st.booleans(), "deadline_s": st.floats(1, 300)})),
        "seq": maybe(st.sampled_from([4, 5])),
        "boot_id": maybe(st.sampled_from(["a", "b"])),
    })),
    "confirmed_off": maybe(st.fixed_dictionaries({"owner": st.just("alice"), "seq": maybe(st.sampled_from([4, 5])),
                                                  "boot_id": maybe(st.sampled_from(["a", "b"]))})),
    "neighbors": maybe(st.fixed_dictionaries({
        "reachable": st.integers(0, 3), "unreachable": st.integers(0, 3), "errors": st.integers(0, 3)})),
    "bmc": maybe(st.fixed_dictionaries({
        "power": st.sampled_from(["on", "off", "unknown"]),
        "error": st.sampled_from([None, "unreachable", "auth", "timeout", "bmc_error"])})),
    "disk_activity": maybe(st.sampled_from(["active", "idle", "none", "unknown"])),
    "tags": st.lists(st.sampled_from(["no_fence", "web", "db"]), max_size=2),
    "rack": st.sampled_from(["r1", "r7"]),
})

policy_space = st.fixed_dictionaries({
    "fence_hung": st.booleans(),
    "fence_isolated": st.booleans(),
    "trust_self_fence": st.booleans(),
    "remediate_writer": st.booleans(),
    "hung_grace_s": st.floats(0, 120),
    "self_fence_margin_s": st.floats(0, 60),
    "max_fence_ratio": st.floats(0.01, 1.0),
})

# Custom rules an operator might write, including ones that match everything and try to get past the interlocks.
custom_rule_space = st.lists(st.sampled_from([
    NO_FENCE_TAG,
    RACK_R7,
    {"id": "everything-quiet", "when": "`true`", "action": "none"},
    {"id": "everything-loud", "when": "`true`", "action": "alert", "verdict": "OVERRIDDEN"},
    {"id": "down-means-alert", "when": "decision.verdict == 'DOWN'", "action": "alert"},
    {"id": "claims-alive", "when": "mgmt.reachable", "action": "none", "verdict": "ALIVE"},
    {"id": "type-error", "when": "contains(rack, `1`)", "action": "none"},
]), max_size=3, unique_by=lambda r: r["id"])


def _facts(doc):
    heartbeat = doc["heartbeat"] or {}
    self_fence = heartbeat.get("self_fence") or {}
    return {
        "hb_live": heartbeat.get("status") in ("fresh", "clock_skew"),
        "mgmt_up": (doc["mgmt"] or {}).get("reachable") is True,
        "ping_up": ((doc["neighbors"] or {}).get("reachable") or 0) > 0,
        # A power state comes only from a status probe that succeeded: a read with an error is unknown.
        "power": "unknown" if (doc["bmc"] or {}).get("error") else (doc["bmc"] or {}).get("power") or "unknown",
        "active": doc["disk_activity"] == "active",
        "armed": bool(self_fence.get("armed")),
        "deadline": self_fence.get("deadline_s"),
        "age": heartbeat.get("age"),
        "maintenance": doc["maintenance"] is not None and doc["maintenance"]["expires"] > NOW,
        # SAFETY.md, operator confirm-off: it holds only against the heartbeat it was given on (seq and boot).
        "confirmed": doc["confirmed_off"] is not None and (
            (doc["confirmed_off"]["seq"], doc["confirmed_off"]["boot_id"]) == (heartbeat.get("seq"), heartbeat.get("boot_id"))),
    }


def _check_interlocks(doc, decision, policy):
    f = _facts(doc)
    action = decision["action"]
    if action == "fence":
        assert not f["hb_live"], "fenced a host whose heartbeat is alive"
        assert not f["mgmt_up"], "fenced a host whose management answers"
    if action in ("fence", "recover", "remediate"):
        assert doc["observer"]["ok"] and not f["maintenance"]
    if action == "remediate":
        assert f["mgmt_up"], "remediation (a restart over SSH) chosen for a host whose management does not answer"
    if action == "recover":
        self_fenced = (policy["trust_self_fence"] and f["armed"] and f["deadline"] is not None and f["age"] is not None
                       and f["age"] >= f["deadline"] + policy["self_fence_margin_s"])
        confirmed = f["confirmed"] and f["power"] == "unknown"
        assert f["power"] == "off" or ((self_fenced or confirmed) and f["power"] == "unknown"), "recovered without proof of power-off"
        assert not (f["ping_up"] or f["active"] or f["hb_live"] or f["mgmt_up"])
    if decision["verdict"] == "UNKNOWN":
        assert action not in ("recover", "fence")
    if action in ("fence", "recover", "remediate"):
        assert action == decision["builtin"]["action"], "a custom rule made the decision bolder"


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(doc=evidence_space, policy=policy_space, rules=custom_rule_space)
def test_no_rule_and_no_custom_rule_breaks_an_interlock(doc, policy, rules):
    effective = effective_policy(dict(policy, rules=rules))
    decision = decide([doc], {"c1": {"size": 10, "fenced": 0}}, effective, NOW)["decisions"]["h1"]
    assert decision["action"] in ACTIONS
    _check_interlocks(doc, decision, effective)


@settings(max_examples=1000)
@given(doc=evidence_space, policy=policy_space)
def test_missing_evidence_never_proves_death(doc, policy):
    """Without an explicit BMC 'off', only a trusted, armed, expired self-fence or an operator's confirm-off can lead to
    recovery."""
    doc = dict(doc, bmc=None, confirmed_off=None)
    effective = effective_policy(dict(policy, trust_self_fence=False))
    decision = decide([doc], {"c1": {"size": 10}}, effective, NOW)["decisions"]["h1"]
    assert decision["action"] != "recover"


@settings(max_examples=1000)
@given(doc=evidence_space, policy=policy_space)
def test_a_confirmed_host_that_answers_ping_or_writes_is_never_recovered(doc, policy):
    """An operator's word never outweighs a sign of life: R5a/R5b CONFLICT, and the interlocks besides."""
    doc = dict(doc, bmc={"power": "unknown", "error": None},
               confirmed_off={"seq": 5, "boot_id": "b"}, heartbeat=dict(doc["heartbeat"] or {"status": "stale"}, seq=5, boot_id="b"))
    effective = effective_policy(dict(policy, trust_self_fence=False))
    decision = decide([doc], {"c1": {"size": 10}}, effective, NOW)["decisions"]["h1"]
    f = _facts(doc)
    if f["ping_up"] or f["active"] or f["hb_live"] or f["mgmt_up"] or f["maintenance"] or not doc["observer"]["ok"]:
        assert decision["action"] != "recover"
    else:
        assert (decision["rule"], decision["action"]) == ("R9a", "recover")


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(evidence_space, min_size=1, max_size=8),
    size_extra=st.integers(0, 6),
    fenced=st.integers(0, 5),
    ratio=st.floats(0.01, 1.0),
    rules=custom_rule_space,
)
def test_storm_guard_never_fences_more_than_the_ratio(docs, size_extra, fenced, ratio, rules):
    docs = [dict(doc, host="h%d" % i) for i, doc in enumerate(docs)]
    size = len(docs) + size_extra
    effective = effective_policy({"max_fence_ratio": ratio, "rules": rules})
    result = decide(docs, {"c1": {"size": size, "fenced": fenced}}, effective, NOW)
    fences = len(result["actions"]["fence"])
    assert fences == 0 or fences + fenced <= size * ratio + 1e-9
    for doc in docs:
        _check_interlocks(doc, result["decisions"][doc["host"]], effective)
