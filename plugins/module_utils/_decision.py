# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""The decision engine: evidence + cluster context + policy -> verdict, action, rule, reasons. No I/O.

Order of evaluation for each host:
  1. the built-in rule table (first match wins; every rule has an id, a verdict, an action and a reason),
  2. the operator's custom rules (JMESPath over the evidence and the built-in decision; first match wins),
     which may only replace the action with a more cautious one (``none`` or ``alert``),
  3. the hard interlocks, which no rule can get past,
and, across the hosts of one cluster, 4. the storm guard.

Actions: ``none``; ``alert``; ``abort`` (stop the run, touch nothing); ``remediate`` (restart the heartbeat
writer over SSH); ``fence`` (power off through the BMC with confirmation, then recover the VMs once power-off
is confirmed); ``recover`` (restart the VMs elsewhere: power-off is already proven).
"""

from __future__ import annotations

import math

from ._errors import InvalidInput
from ._heartbeat import ALL_STATUSES, LIVE_STATUSES, validate_host_name
from ._policy import JMESPathError

ACTIONS = ("none", "alert", "abort", "remediate", "fence", "recover")
BOLD_ACTIONS = ("remediate", "fence", "recover")
BMC_POWER = ("on", "off", "unknown")
DISK_ACTIVITY = ("active", "idle", "none", "unknown")


# --------------------------------------------------------------------------------------------------- evidence


class Facts:
    """The evidence of one host, validated and reduced to what the rules read. Missing evidence is unknown."""

    def __init__(self, evidence: dict, now: float):
        if not isinstance(evidence, dict):
            raise InvalidInput("each host's evidence must be a dict")
        self.evidence = evidence
        self.host = validate_host_name(evidence.get("host"))
        self.cluster = _typed(evidence, "cluster", str, "default")
        self.observer_ok = _typed(_section(evidence, "observer"), "ok", bool, True)
        self.maintenance = self._maintenance(now)
        self.mgmt_reachable = _typed(_section(evidence, "mgmt"), "reachable", bool, None)
        heartbeat = _section(evidence, "heartbeat")
        self.hb_status = _choice(heartbeat, "status", ALL_STATUSES + ("unknown",), "unknown")
        self.hb_live = self.hb_status in LIVE_STATUSES
        self.stale_for = _number(heartbeat, "age")
        self_fence = _section(heartbeat, "self_fence")
        self.self_fence_armed = _typed(self_fence, "armed", bool, False)
        self.self_fence_deadline = _number(self_fence, "deadline_s")
        neighbors = _section(evidence, "neighbors")
        self.ping_up = _count(neighbors, "reachable") > 0
        self.ping_down = _count(neighbors, "unreachable")
        self.bmc_power = _choice(_section(evidence, "bmc"), "power", BMC_POWER, "unknown")
        self.bmc_error = _typed(_section(evidence, "bmc"), "error", str, None)
        self.bmc_discarded = None  # a power state is only believed from a status probe that succeeded
        if self.bmc_error is not None and self.bmc_power != "unknown":
            self.bmc_discarded, self.bmc_power = self.bmc_power, "unknown"
        self.activity = _choice(evidence, "disk_activity", DISK_ACTIVITY, "unknown")
        self.operator_off = self._operator_off(heartbeat)

    def _operator_off(self, heartbeat: dict) -> bool:
        """An operator's confirm-off (playbooks/confirm_off.yml) holds only for the heartbeat it was given against:
        a record written since (another seq or boot) shows the host ran after the word was given, so it is void."""
        confirmation = _section(self.evidence, "confirmed_off")
        if not confirmation:
            return False
        given = (_typed(confirmation, "seq", int, None), _typed(confirmation, "boot_id", str, None))
        return given == (_typed(heartbeat, "seq", int, None), _typed(heartbeat, "boot_id", str, None))

    def _maintenance(self, now: float) -> bool:
        maintenance = self.evidence.get("maintenance")
        if maintenance is None:
            return False
        if not isinstance(maintenance, dict):
            raise InvalidInput("%s: maintenance must be a dict or null" % self.host)
        expires = _number(maintenance, "expires")
        return expires is None or expires > now

    def self_fence_proven(self, policy: dict) -> bool:
        """An armed self-fence whose deadline (plus margin) has passed while nothing else shows life."""
        return (
            self.self_fence_armed
            and self.self_fence_deadline is not None
            and self.stale_for is not None
            and self.stale_for >= self.self_fence_deadline + policy["self_fence_margin_s"]
            and not self.ping_up
            and self.mgmt_reachable is not True
            and self.activity != "active"
        )


def _section(doc: dict, key: str) -> dict:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("evidence %r must be a dict, got %r" % (key, value))
    return value


def _typed(doc: dict, key: str, kind, default):
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidInput("evidence %r must be %s, got %r" % (key, kind.__name__, value))
    return value


def _choice(doc: dict, key: str, choices: tuple, default: str) -> str:
    value = doc.get(key)
    if value is None:
        return default
    if value not in choices:
        raise InvalidInput("evidence %r must be one of %s, got %r" % (key, ", ".join(choices), value))
    return value


def _number(doc: dict, key: str):
    value = doc.get(key)
    if value is None:
        return None
    try:
        number = None if isinstance(value, bool) or not isinstance(value, (int, float)) else float(value)
    except OverflowError:  # an integer beyond any float
        number = None
    if number is None or math.isnan(number):
        raise InvalidInput("evidence %r must be a number, got %s" % (key, _shown(value)))
    return number


def _shown(value) -> str:
    if isinstance(value, int) and value.bit_length() > 64:  # repr() of a big enough int raises ValueError
        return "an integer of %d bits" % value.bit_length()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _count(doc: dict, key: str) -> int:
    value = doc.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("evidence neighbors.%s must be a count, got %r" % (key, value))
    return value


# --------------------------------------------------------------------------------------------------- rules


class Rule:
    def __init__(self, rule_id, verdict, reason, matches, action):
        self.id = rule_id
        self.verdict = verdict
        self.reason = reason
        self.matches = matches  # (facts, policy) -> bool
        self.action = action  # (facts, policy) -> action name

    def decide(self, facts: Facts, policy: dict) -> dict:
        return {"verdict": self.verdict, "action": self.action(facts, policy), "rule": self.id, "reasons": [self.reason]}


def _const(action):
    return lambda facts, policy: action


def _if(setting, yes, no):
    return lambda facts, policy: yes if policy[setting] else no


def _hung(facts: Facts, policy: dict) -> bool:
    return facts.stale_for is not None and facts.stale_for >= policy["hung_grace_s"]


# The built-in table (docs/SAFETY.md argues each rule). First match wins.
RULES = (
    Rule("R0", "OBSERVER_ISOLATED", "the observer cannot read the store or sees every host dead: it is the likelier fault",
         lambda f, p: not f.observer_ok, _const("abort")),
    Rule("R1", "MAINTENANCE", "the host is in maintenance",
         lambda f, p: f.maintenance, _const("none")),
    Rule("R2", "ALIVE", "management answers and the heartbeat is alive",
         lambda f, p: f.mgmt_reachable is True and f.hb_live, _const("none")),
    Rule("R3", "ALIVE_WRITER_FAULT", "management answers but the heartbeat is not alive: the writer is at fault, not the host",
         lambda f, p: f.mgmt_reachable is True, _if("remediate_writer", "remediate", "alert")),
    Rule("R4", "ISOLATED", "the heartbeat is alive although management does not answer: the host runs, its network is cut",
         lambda f, p: f.hb_live, _const("alert")),
    Rule("R5a", "CONFLICT", "the BMC says power is off, yet the host answers ping or its VM disks are being written",
         lambda f, p: f.bmc_power == "off" and (f.ping_up or f.activity == "active"), _const("alert")),
    Rule("R5", "DOWN", "the BMC confirms the power is off",
         lambda f, p: f.bmc_power == "off", _const("recover")),
    Rule("R5b", "CONFLICT", "an operator confirmed the power off, yet the host answers ping or its VM disks are being written",
         lambda f, p: f.operator_off and (f.ping_up or f.activity == "active"), _const("alert")),
    Rule("R6", "UNRESPONSIVE", "neighbours still ping the host but nothing else answers; within the grace period",
         lambda f, p: f.ping_up and not _hung(f, p), _const("alert")),
    Rule("R6a", "HUNG", "neighbours ping the host but nothing else has answered for the whole grace period and its VM disks are idle",
         lambda f, p: f.ping_up and f.activity != "active" and f.bmc_power == "on", _if("fence_hung", "fence", "alert")),
    Rule("R7", "ALIVE_VMS_RUNNING", "the host's VMs are still writing to their disks",
         lambda f, p: f.activity == "active", lambda f, p: "fence" if p["fence_isolated"] and f.bmc_power == "on" else "alert"),
    Rule("R8", "SUSPECT", "heartbeat dead, management and neighbours without answer, no VM disk activity, BMC says on",
         lambda f, p: f.bmc_power == "on" and not f.ping_up, _const("fence")),
    Rule("R9", "DOWN_SELF_FENCED", "the BMC cannot be asked, but the host's armed self-fence deadline has passed",
         lambda f, p: p["trust_self_fence"] and f.bmc_power == "unknown" and f.self_fence_proven(p), _const("recover")),
    Rule("R9a", "DOWN_CONFIRMED", "the BMC cannot be asked, but an operator confirmed the power is off (confirm_off.yml)",
         lambda f, p: f.operator_off and f.bmc_power == "unknown", _const("recover")),
    Rule("R10", "UNKNOWN", "the evidence proves neither life nor death (the BMC cannot be asked)",
         lambda f, p: True, _const("alert")),
)
RULE_IDS = tuple(rule.id for rule in RULES)


def builtin_decision(facts: Facts, policy: dict) -> dict:
    for rule in RULES:
        if rule.matches(facts, policy):
            return rule.decide(facts, policy)
    raise AssertionError("the last rule matches everything")  # pragma: no cover


def rule_document(facts: Facts, decision: dict) -> dict:
    """What custom rules see: the evidence as given, plus the built-in decision."""
    document = dict(facts.evidence)
    document.setdefault("tags", [])
    document["decision"] = {"verdict": decision["verdict"], "action": decision["action"], "rule": decision["rule"]}
    return document


def apply_custom_rules(facts: Facts, decision: dict, rules: list) -> dict:
    if not rules:
        return decision
    document = rule_document(facts, decision)
    for rule in rules:
        try:
            matched = rule["compiled"].search(document)
        # jmespath lets Python's own errors out: TypeError and the like, OverflowError from avg()/sum()/ceil() over
        # numbers beyond a float, RecursionError on deep documents. Each costs this host's decision, not the run.
        except (JMESPathError, TypeError, ValueError, AttributeError, ArithmeticError, RecursionError) as err:
            return _overrule(decision, "RULE_ERROR", "alert", "custom:" + rule["id"],
                             "custom rule %r could not be evaluated (%s): alerting instead of acting" % (rule["id"], err))
        if _truthy(matched):
            reason = rule["reason"] or "custom rule %r matched" % rule["id"]
            return _overrule(decision, rule["verdict"] or decision["verdict"], rule["action"], "custom:" + rule["id"], reason)
    return decision


def _truthy(value) -> bool:
    # JMESPath truthiness: false, null, empty string/list/object are false.
    return value not in (None, False, "", [], {})


def _overrule(decision: dict, verdict: str, action: str, rule: str, reason: str) -> dict:
    # A custom rule can only make the decision more cautious: it keeps the built-in action or takes none/alert.
    if action != decision["action"] and action not in ("none", "alert"):
        raise AssertionError("custom actions are validated to none/alert")  # pragma: no cover
    overruled = dict(decision, verdict=verdict, action=action, rule=rule)
    overruled["reasons"] = decision["reasons"] + [reason]
    return overruled


# --------------------------------------------------------------------------------------------------- interlocks


def interlock_violations(facts: Facts, action: str, policy: dict) -> list:
    """Why ``action`` must not be taken on this evidence, whatever rule asked for it. Empty means allowed."""
    if action not in BOLD_ACTIONS:
        return []
    why = []
    if not facts.observer_ok:
        why.append("the observer is not OK")
    if facts.maintenance:
        why.append("the host is in maintenance")
    if action == "remediate":
        if facts.mgmt_reachable is not True:
            why.append("remediation needs management access")
        return why
    if facts.hb_live:
        why.append("the heartbeat is alive")
    if facts.mgmt_reachable is True:
        why.append("management answers")
    if action == "recover":
        # An operator's confirm-off stands in for the BMC only while the BMC cannot be asked: a BMC saying on wins.
        power_off = facts.bmc_power == "off" or (facts.operator_off is True and facts.bmc_power == "unknown")
        if not power_off and not (policy["trust_self_fence"] and facts.self_fence_proven(policy)):
            why.append("power-off is not confirmed")
        if facts.ping_up:
            why.append("neighbours still ping the host")
        if facts.activity == "active":
            why.append("its VM disks are being written")
    return why


def apply_interlocks(facts: Facts, decision: dict, policy: dict) -> dict:
    why = interlock_violations(facts, decision["action"], policy)
    if not why:
        return decision
    blocked = dict(decision, action="alert", interlocks=why)
    blocked["reasons"] = decision["reasons"] + ["interlock: no %s because %s" % (decision["action"], "; ".join(why))]
    return blocked


# --------------------------------------------------------------------------------------------------- storm guard


def fence_budget(cluster_size: int, already_fenced: int, ratio: float) -> int:
    """How many more hosts of a cluster may be fenced now."""
    return max(0, int(cluster_size * ratio + 1e-9) - already_fenced)


def apply_storm_guard(decisions: list, clusters: dict, policy: dict) -> dict:
    """Per cluster: if the fence candidates exceed the budget, fence none of them. Returns {cluster: guarded}."""
    guarded = {}
    for name, info in clusters.items():
        candidates = [d for d in decisions if d["cluster"] == name and d["action"] == "fence"]
        budget = fence_budget(info["size"], info["fenced"], policy["max_fence_ratio"])
        guarded[name] = len(candidates) > budget
        if not guarded[name]:
            continue
        reason = ("storm guard: %d fence candidate(s) and %d host(s) already fenced in a cluster of %d exceed "
                  "max_fence_ratio %s; a shared cause (storage, switch) is likelier than this many dead hosts"
                  % (len(candidates), info["fenced"], info["size"], policy["max_fence_ratio"]))
        for decision in candidates:
            decision.update(action="alert", storm_guard=True)
            decision["reasons"].append(reason)
    return guarded


# --------------------------------------------------------------------------------------------------- entry point


def decide_host(facts: Facts, policy: dict) -> dict:
    builtin = builtin_decision(facts, policy)
    if facts.bmc_discarded:
        builtin["reasons"].append("the BMC's status probe failed (%s): its read %r is not used, the power state is unknown"
                                  % (facts.bmc_error, facts.bmc_discarded))
    if facts.evidence.get("confirmed_off") and not facts.operator_off:
        builtin["reasons"].append("the operator's confirm-off is void: the host wrote a heartbeat after it was given")
    decision = apply_custom_rules(facts, builtin, policy["rules"])
    decision = apply_interlocks(facts, decision, policy)
    decision.update(host=facts.host, cluster=facts.cluster, storm_guard=False, evidence=facts.evidence,
                    builtin={"verdict": builtin["verdict"], "action": builtin["action"], "rule": builtin["rule"]})
    decision.setdefault("interlocks", [])
    return decision


def decide(evidence: list, clusters: dict, policy: dict, now: float) -> dict:
    """Decide for every host. ``policy`` is an effective policy (see ``_policy.effective_policy``)."""
    if not isinstance(evidence, list):
        raise InvalidInput("evidence must be a list of host documents")
    facts = [Facts(doc, now) for doc in evidence]
    hosts = [f.host for f in facts]
    duplicates = sorted({h for h in hosts if hosts.count(h) > 1})
    if duplicates:
        raise InvalidInput("evidence lists host(s) more than once: %s" % ", ".join(duplicates))
    clusters = _cluster_context(clusters, facts)
    decisions = [decide_host(f, policy) for f in facts]
    guarded = apply_storm_guard(decisions, clusters, policy)
    by_action = {action: sorted(d["host"] for d in decisions if d["action"] == action) for action in ACTIONS}
    foreign = {name: info["foreign_fenced"] for name, info in clusters.items() if info["foreign_fenced"]}
    return {"decisions": {d["host"]: d for d in decisions}, "actions": by_action, "storm_guard": guarded, "foreign_fenced": foreign}


def _cluster_context(clusters, facts: list) -> dict:
    if not isinstance(clusters, dict):
        raise InvalidInput("clusters must be a dict of {name: {size, fenced, members}}")
    context = {}
    for name in sorted({f.cluster for f in facts}):
        info = clusters.get(name)
        if not isinstance(info, dict):
            raise InvalidInput("cluster %r of the evidence is missing from clusters (its size is needed for the storm guard)" % name)
        size = info.get("size")
        fenced, foreign = _fenced_count(name, info.get("fenced", 0), info.get("members"))
        members = sum(1 for f in facts if f.cluster == name)
        for key, value in (("size", size), ("fenced", fenced)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput("clusters.%s.%s must be a non-negative integer, got %r" % (name, key, value))
        if size < members:
            raise InvalidInput("clusters.%s.size is %d but the evidence names %d of its hosts" % (name, size, members))
        context[name] = {"size": size, "fenced": fenced, "foreign_fenced": foreign}
    return context


def _fenced_count(name: str, fenced, members) -> tuple:
    """The storm guard's count of hosts still marked fenced, and the marked hosts that are not members.

    ``fenced`` is a count, or the names of the hosts with a fenced mark on the store. With ``members`` (the cluster's
    hosts), only the members' marks count: the store may hold marks of other clusters' hosts or of hosts no longer
    in the inventory, and marks never expire, so counting them would hold back fences for ever (or, once they are
    released, let through more than the ratio allows).
    """
    if not isinstance(fenced, list):
        return fenced, []
    if not all(isinstance(host, str) for host in fenced):
        raise InvalidInput("clusters.%s.fenced must be a count or a list of host names" % name)
    if members is None:
        return len(set(fenced)), []
    if not isinstance(members, list) or not all(isinstance(host, str) for host in members):
        raise InvalidInput("clusters.%s.members must be a list of host names" % name)
    return len(set(fenced) & set(members)), sorted(set(fenced) - set(members))
