# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The interlocks on their own: ``interlock_violations`` against the table of docs/SAFETY.md, over random
evidence x action x policy, and behind rule tables that are deliberately wrong.

The built-in rules already respect the interlocks and custom rules can only choose none/alert, so tests of the
decision alone never reach the interlock code. These do: the oracle below is written from SAFETY.md's table, not
from the code, and a wrong rule table shows the interlocks are what stops a wrong action.
"""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _decision
from ansible_collections.kvmha.cluster.plugins.module_utils._decision import (
    ACTIONS,
    Facts,
    Rule,
    apply_interlocks,
    decide,
    interlock_violations,
)
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy

NOW = 1_000_000.0

# One reason per refusal condition, as interlock_violations words them.
OBSERVER = "the observer is not OK"
MAINTENANCE = "the host is in maintenance"
NO_MGMT = "remediation needs management access"
HB_ALIVE = "the heartbeat is alive"
MGMT_UP = "management answers"
NOT_OFF = "power-off is not confirmed"
PING_UP = "neighbours still ping the host"
DISKS = "its VM disks are being written"


def maybe(strategy):
    return st.one_of(st.none(), strategy)


# Evidence with every field that an interlock reads, each value possible including "unknown" (None or absent).
evidence_space = st.fixed_dictionaries({
    "host": st.just("h1"),
    "cluster": st.just("c1"),
    "observer": maybe(st.fixed_dictionaries({"ok": maybe(st.booleans())})),
    "maintenance": st.one_of(st.none(), st.fixed_dictionaries({"expires": st.sampled_from([None, NOW - 1, NOW, NOW + 1])})),
    "mgmt": maybe(st.fixed_dictionaries({"reachable": maybe(st.booleans())})),
    "heartbeat": maybe(st.fixed_dictionaries({
        "status": st.sampled_from(["fresh", "clock_skew", "stale", "stopped", "missing", "invalid", "unknown"]),
        "age": maybe(st.sampled_from([0.0, 29.0, 30.0, 59.0, 60.0, 61.0, 90.0, 500.0])),
        "self_fence": maybe(st.fixed_dictionaries({"armed": maybe(st.booleans()),
                                                   "deadline_s": maybe(st.sampled_from([30.0, 60.0]))})),
        "seq": maybe(st.sampled_from([4, 5])),
        "boot_id": maybe(st.sampled_from(["a", "b"])),
    })),
    "confirmed_off": maybe(st.fixed_dictionaries({"seq": maybe(st.sampled_from([4, 5])),
                                                  "boot_id": maybe(st.sampled_from(["a", "b"]))})),
    "neighbors": maybe(st.fixed_dictionaries({"reachable": st.integers(0, 2), "unreachable": st.integers(0, 2)})),
    "bmc": maybe(st.fixed_dictionaries({"power": maybe(st.sampled_from(["on", "off", "unknown"]))})),
    "disk_activity": maybe(st.sampled_from(["active", "idle", "none", "unknown"])),
})

policy_space = st.fixed_dictionaries({
    "trust_self_fence": st.booleans(),
    "self_fence_margin_s": st.sampled_from([0.0, 1.0, 30.0]),
})


class Evidence:
    """The same evidence, read straight from the document (an independent reading of what Facts reduces)."""

    def __init__(self, doc: dict):
        heartbeat = doc.get("heartbeat") or {}
        self_fence = heartbeat.get("self_fence") or {}
        maintenance = doc.get("maintenance")
        self.observer_ok = ((doc.get("observer") or {}).get("ok")) is not False
        self.maintenance = maintenance is not None and (maintenance.get("expires") is None or maintenance["expires"] > NOW)
        self.mgmt_up = (doc.get("mgmt") or {}).get("reachable") is True
        self.hb_live = heartbeat.get("status") in ("fresh", "clock_skew")
        self.ping_up = ((doc.get("neighbors") or {}).get("reachable") or 0) > 0
        self.power_off = (doc.get("bmc") or {}).get("power") == "off"
        self.power_unknown = (doc.get("bmc") or {}).get("power") in (None, "unknown")
        confirmation = doc.get("confirmed_off")
        # An operator's confirm-off, given against the heartbeat with this seq and boot id (void after another record).
        self.confirmed = bool(confirmation) and (confirmation.get("seq"), confirmation.get("boot_id")) == (
            heartbeat.get("seq"), heartbeat.get("boot_id"))
        self.active = doc.get("disk_activity") == "active"
        self.armed = self_fence.get("armed") is True
        self.deadline = self_fence.get("deadline_s")
        self.age = heartbeat.get("age")

    def self_fenced(self, policy: dict) -> bool:
        """SAFETY.md R9: armed, its deadline plus the margin passed, and nothing answers or writes."""
        return (policy["trust_self_fence"] and self.armed and self.deadline is not None and self.age is not None
                and self.age >= self.deadline + policy["self_fence_margin_s"]
                and not self.ping_up and not self.mgmt_up and not self.active)


def expected_refusals(ev: Evidence, action: str, policy: dict) -> set:
    """docs/SAFETY.md, "The interlocks": which conditions refuse ``action`` on this evidence."""
    if action not in ("fence", "recover", "remediate"):
        return set()
    common = {OBSERVER: not ev.observer_ok, MAINTENANCE: ev.maintenance}
    if action == "remediate":
        # Remediation restarts the writer over SSH: only when management answers.
        checks = dict(common, **{NO_MGMT: not ev.mgmt_up})
    else:
        checks = dict(common, **{HB_ALIVE: ev.hb_live, MGMT_UP: ev.mgmt_up})
    if action == "recover":
        proven = ev.power_off or ev.self_fenced(policy) or (ev.confirmed and ev.power_unknown)
        checks.update({NOT_OFF: not proven, PING_UP: ev.ping_up, DISKS: ev.active})
    return {why for why, refused in checks.items() if refused}


def full_policy(policy: dict) -> dict:
    return effective_policy(dict(policy))


@settings(max_examples=1500)
@given(doc=evidence_space, action=st.sampled_from(ACTIONS), policy=policy_space)
def test_interlock_violations_match_the_safety_table(doc, action, policy):
    policy = full_policy(policy)
    why = interlock_violations(Facts(doc, NOW), action, policy)
    assert len(why) == len(set(why)), "a reason given twice: %s" % why
    assert set(why) == expected_refusals(Evidence(doc), action, policy)


@settings(max_examples=500)
@given(doc=evidence_space, action=st.sampled_from(ACTIONS), policy=policy_space)
def test_apply_interlocks_turns_a_refused_action_into_an_alert(doc, action, policy):
    policy = full_policy(policy)
    facts = Facts(doc, NOW)
    decision = {"verdict": "V", "action": action, "rule": "R", "reasons": ["asked"]}
    result = apply_interlocks(facts, decision, policy)
    refusals = expected_refusals(Evidence(doc), action, policy)
    if not refusals:
        assert result == decision
        return
    assert result["action"] == "alert" and set(result["interlocks"]) == refusals
    assert (result["verdict"], result["rule"]) == ("V", "R")
    assert result["reasons"][0] == "asked" and result["reasons"][1].startswith("interlock: no %s because " % action)
    assert all(why in result["reasons"][1] for why in refusals)
    assert decision == {"verdict": "V", "action": action, "rule": "R", "reasons": ["asked"]}, "the input was changed"


# ----------------------------------------------------------------------------------------- examples by hand

DEAD = {"host": "h1", "cluster": "c1", "observer": {"ok": True}, "mgmt": {"reachable": False},
        "heartbeat": {"status": "stale", "age": 90.0, "self_fence": {"armed": True, "deadline_s": 60.0}},
        "neighbors": {"reachable": 0, "unreachable": 2}, "bmc": {"power": "off"}, "disk_activity": "idle"}


def dead(**overrides):
    doc = dict(DEAD)
    for key, value in overrides.items():
        doc[key] = dict(doc[key], **value) if isinstance(value, dict) and isinstance(doc.get(key), dict) else value
    return doc


@pytest.mark.parametrize("action, overrides, policy, refusals", [
    ("recover", {}, {}, set()),
    ("fence", {"bmc": {"power": "on"}}, {}, set()),
    ("recover", {"bmc": {"power": "on"}}, {}, {NOT_OFF}),
    ("recover", {"bmc": {"power": "unknown"}}, {"trust_self_fence": True}, set()),
    ("recover", {"bmc": {"power": "unknown"}}, {"trust_self_fence": False}, {NOT_OFF}),
    ("recover", {"bmc": {"power": "unknown"}}, {"trust_self_fence": True, "self_fence_margin_s": 31.0}, {NOT_OFF}),
    ("recover", {"bmc": {"power": "unknown"}}, {"trust_self_fence": True, "self_fence_margin_s": 30.0}, set()),
    ("recover", {"neighbors": {"reachable": 1}}, {}, {PING_UP}),
    # An operator's confirm-off: proof while the BMC cannot be asked and no record came after it; never against ping.
    ("recover", {"bmc": {"power": "unknown"}, "confirmed_off": {"seq": 9, "boot_id": "b"},
                 "heartbeat": {"seq": 9, "boot_id": "b"}}, {}, set()),
    ("recover", {"bmc": None, "confirmed_off": {"seq": None}, "heartbeat": {}}, {}, set()),  # no record then, none since
    ("recover", {"bmc": None, "confirmed_off": {}, "heartbeat": {}}, {}, {NOT_OFF}),  # an empty one is none
    ("recover", {"bmc": {"power": "on"}, "confirmed_off": {"seq": 9, "boot_id": "b"},
                 "heartbeat": {"seq": 9, "boot_id": "b"}}, {}, {NOT_OFF}),
    ("recover", {"bmc": {"power": "unknown"}, "confirmed_off": {"seq": 9, "boot_id": "b"},
                 "heartbeat": {"seq": 10, "boot_id": "b"}}, {}, {NOT_OFF}),
    ("recover", {"bmc": {"power": "unknown"}, "confirmed_off": {"seq": 9, "boot_id": "b"},
                 "heartbeat": {"seq": 9, "boot_id": "c"}}, {}, {NOT_OFF}),
    ("recover", {"bmc": {"power": "unknown"}, "confirmed_off": {"seq": 9, "boot_id": "b"}, "neighbors": {"reachable": 1},
                 "heartbeat": {"seq": 9, "boot_id": "b"}}, {}, {PING_UP}),
    ("recover", {"disk_activity": "active"}, {}, {DISKS}),
    ("recover", {"disk_activity": "unknown"}, {}, set()),
    ("recover", {"disk_activity": "".join(["act", "ive"])}, {}, {DISKS}),  # decoded: an equal string, another object
    # A self-fence is no proof while the disks are being written.
    ("recover", {"disk_activity": "active", "bmc": {"power": "unknown"}}, {"trust_self_fence": True}, {NOT_OFF, DISKS}),
    ("recover", {"disk_activity": "".join(["act", "ive"]), "bmc": {"power": "unknown"}}, {"trust_self_fence": True},
     {NOT_OFF, DISKS}),
    ("recover", {"heartbeat": {"status": "clock_skew"}}, {}, {HB_ALIVE}),
    ("fence", {"heartbeat": {"status": "fresh"}}, {}, {HB_ALIVE}),
    ("fence", {"mgmt": {"reachable": True}}, {}, {MGMT_UP}),
    ("fence", {"mgmt": {"reachable": None}}, {}, set()),
    ("fence", {"maintenance": {"owner": "ops"}}, {}, {MAINTENANCE}),
    ("fence", {"maintenance": {"expires": NOW - 1}}, {}, set()),
    ("fence", {"observer": {"ok": False}}, {}, {OBSERVER}),
    ("remediate", {"mgmt": {"reachable": True}}, {}, set()),
    ("remediate", {}, {}, {NO_MGMT}),
    ("remediate", {"mgmt": {"reachable": None}}, {}, {NO_MGMT}),
    ("remediate", {"mgmt": {"reachable": True}, "observer": {"ok": False}, "maintenance": {}}, {}, {OBSERVER, MAINTENANCE}),
    ("abort", {"observer": {"ok": False}, "mgmt": {"reachable": True}}, {}, set()),
    ("alert", {"heartbeat": {"status": "fresh"}, "mgmt": {"reachable": True}}, {}, set()),
])
def test_interlock_examples(action, overrides, policy, refusals):
    why = interlock_violations(Facts(dead(**overrides), NOW), action, effective_policy(policy))
    assert set(why) == refusals
    # The same for an action name that is an equal string but another object (decoded, built): == not is.
    assert interlock_violations(Facts(dead(**overrides), NOW), "".join(list(action)), effective_policy(policy)) == why


def test_reasons_come_in_a_stable_order():
    doc = dead(observer={"ok": False}, maintenance={}, mgmt={"reachable": True}, heartbeat={"status": "fresh"},
               neighbors={"reachable": 1}, disk_activity="active", bmc={"power": "on"})
    assert interlock_violations(Facts(doc, NOW), "recover", effective_policy({})) == [
        OBSERVER, MAINTENANCE, HB_ALIVE, MGMT_UP, NOT_OFF, PING_UP, DISKS]


@pytest.mark.parametrize("power", ["", "o", "of", "Off", "OFF", "cycling", "off ", "unknown", "on"])
def test_only_the_exact_word_off_proves_power_off(power):
    """The interlock is the last line: it must not lean on the parser having limited bmc.power to on/off/unknown."""
    facts = SimpleNamespace(observer_ok=True, maintenance=False, hb_live=False, mgmt_reachable=False, ping_up=False,
                            activity="idle", bmc_power=power, self_fence_proven=lambda policy: False, operator_off=False)
    assert interlock_violations(facts, "recover", effective_policy({})) == [NOT_OFF]


@pytest.mark.parametrize("power", ["", "on", "On", "unknown ", "Unknown", "off?"])
@pytest.mark.parametrize("confirmed", [1, "yes", True])
def test_an_operator_confirmation_counts_only_while_the_bmc_says_exactly_unknown(power, confirmed):
    """Only an exact True confirmation, and only with the BMC exactly unknown: never over a BMC that says on."""
    facts = SimpleNamespace(observer_ok=True, maintenance=False, hb_live=False, mgmt_reachable=False, ping_up=False,
                            activity="idle", bmc_power=power, self_fence_proven=lambda policy: False, operator_off=confirmed)
    assert interlock_violations(facts, "recover", effective_policy({})) == [NOT_OFF]
    allowed = SimpleNamespace(**dict(vars(facts), bmc_power="".join(["unk", "nown"])))
    assert interlock_violations(allowed, "recover", effective_policy({})) == ([] if confirmed is True else [NOT_OFF])


@pytest.mark.parametrize("reachable", [1, "yes", None, False])
def test_only_an_exact_true_lets_a_remediation_through(reachable):
    """Remediation is a restart over SSH: anything but a confirmed answer from management refuses it."""
    facts = SimpleNamespace(observer_ok=True, maintenance=False, mgmt_reachable=reachable)
    assert interlock_violations(facts, "remediate", effective_policy({})) == [NO_MGMT]


# ----------------------------------------------------------------------------------------- wrong rule tables


def reckless(action):
    """A rule table whose only rule takes ``action`` on any evidence: what a wrong edit of RULES could do."""
    return (Rule("BAD", "RECKLESS", "a rule table gone wrong", lambda f, p: True, lambda f, p: action),)


def decide_with(rules, doc, policy=None):
    with mock.patch.object(_decision, "RULES", rules):
        result = decide([doc], {"c1": {"size": 10, "fenced": 0}}, effective_policy(policy or {}), NOW)
    return result["decisions"]["h1"]


def test_a_rule_that_fences_a_host_whose_management_answers_is_stopped():
    decision = decide_with(reckless("fence"), dead(mgmt={"reachable": True}, bmc={"power": "on"}))
    assert decision["builtin"]["action"] == "fence"
    assert decision["action"] == "alert" and decision["interlocks"] == [MGMT_UP]
    assert decision["reasons"][-1] == "interlock: no fence because management answers"


def test_a_rule_that_recovers_a_host_that_still_pings_is_stopped():
    decision = decide_with(reckless("recover"), dead(neighbors={"reachable": 1}))
    assert decision["action"] == "alert" and decision["interlocks"] == [PING_UP]


def test_a_rule_that_remediates_a_host_without_management_is_stopped():
    decision = decide_with(reckless("remediate"), dead())
    assert decision["action"] == "alert" and decision["interlocks"] == [NO_MGMT]


def test_a_wrong_table_still_acts_where_the_interlocks_allow_it():
    # The interlocks refuse what is unsafe, not everything: a dead host with power off is recovered.
    assert decide_with(reckless("recover"), dead())["action"] == "recover"


@settings(max_examples=1500)
@given(doc=evidence_space, action=st.sampled_from(ACTIONS), policy=policy_space)
def test_no_rule_table_gets_past_the_interlocks(doc, action, policy):
    """Whatever the rules ask for, the decision never takes an action SAFETY.md's interlocks refuse."""
    decision = decide_with(reckless(action), doc, policy)
    refusals = expected_refusals(Evidence(doc), action, effective_policy(policy))
    assert decision["builtin"]["action"] == action
    if refusals:
        assert decision["action"] == "alert" and set(decision["interlocks"]) == refusals
    else:
        assert decision["action"] == action and decision["interlocks"] == []
