# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""The HA policy: one declarative dict, its defaults (this file is the one place they are defined) and validation.

Every knob of the watchdog lives in ``kvmha_policy``. ``effective_policy(user_policy)`` returns the defaults
overlaid with the user's values, or raises ``PolicyError`` naming the offending key: an unknown key or a bad
value is never ignored, because a typo in a safety setting must not silently fall back to a default.
"""

from __future__ import annotations

import difflib
import re

from ._errors import MissingLibrary, PolicyError, in_range
from ._placement import DEFAULT_STRATEGY, STRATEGIES

try:
    import jmespath
    from jmespath.exceptions import JMESPathError
except ImportError as _err:  # only needed for custom rules; callers report it with missing_required_lib
    jmespath = None
    JMESPathError = Exception
    JMESPATH_IMPORT_ERROR = _err
else:
    JMESPATH_IMPORT_ERROR = None


class _Setting:
    def __init__(self, default, kind, doc, minimum=None, maximum=None, exclusive_minimum=False, choices=()):
        self.default = default
        self.kind = kind
        self.doc = doc
        self.minimum = minimum
        self.maximum = maximum
        self.exclusive_minimum = exclusive_minimum
        self.choices = choices

    def check(self, key, value):
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise PolicyError("policy.%s must be true or false, got %r" % (key, value))
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise PolicyError("policy.%s must be one of %s, got %r" % (key, ", ".join(self.choices), value))
            return value
        if self.kind == "names":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise PolicyError("policy.%s must be a list of host names, got %r" % (key, value))
            return list(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.kind == "int" and not isinstance(value, int)):
            raise PolicyError("policy.%s must be %s, got %r" % (key, "an integer" if self.kind == "int" else "a number", value))
        if not in_range(value, self.minimum, self.maximum, self.exclusive_minimum):
            raise PolicyError("policy.%s must be %s, got %r" % (key, self.bounds(), value))
        return value

    def bounds(self) -> str:
        low = "" if self.minimum is None else ("> %s" if self.exclusive_minimum else ">= %s") % self.minimum
        high = "" if self.maximum is None else "<= %s" % self.maximum
        return " and ".join(part for part in (low, high) if part)


# The one definition of every policy knob and its default. docs/OPERATIONS.md mirrors this table (a unit test
# keeps them in step).
SETTINGS = {
    "mode": _Setting("armed", "choice", "armed: the watchdog fences, recovers and restarts writers. observe: it watches, probes and "
                     "decides, says what it would do, and never touches power, VMs or writers (a burn-in before arming).",
                     choices=("armed", "observe")),
    # --- decisions (host_investigate)
    "hung_grace_s": _Setting(30, "number", "Seconds a host may answer ping while nothing else answers before it counts as HUNG.", 0),
    "fence_hung": _Setting(True, "bool", "Fence a HUNG host (pings answered, heartbeat stale past the grace period, no VM disk activity)."),
    "fence_isolated": _Setting(False, "bool", "Fence a host whose VMs still write to their disks although it is unreachable "
                               "(CloudStack's partition case)."),
    "trust_self_fence": _Setting(False, "bool", "Recover VMs of a host whose BMC cannot be reached when its armed self-fence deadline has provably passed."),
    "self_fence_margin_s": _Setting(10, "number", "Extra seconds beyond the host's self-fence deadline before it is trusted to have fenced itself.", 0),
    "max_fence_ratio": _Setting(0.5, "number", "Storm guard: never fence when more than this share of a cluster would be fenced "
                                "(counting hosts still marked fenced).", 0, 1, True),
    "remediate_writer": _Setting(True, "bool", "Restart a reachable host's heartbeat writer when its heartbeat is not alive."),
    "maintenance_warn_s": _Setting(900, "number", "Seconds before a maintenance ends by itself from which every run warns that it "
                                   "is about to end (extend it, or the host is watched again).", 0),
    # --- detection (kvm_heartbeat)
    "heartbeat_misses": _Setting(3, "int", "Beats without a new sequence number before a host is stale.", 1),
    "watch_s": _Setting(50, "number", "Seconds one watchdog run watches the store; fits a one-minute schedule.", 0),
    "overdue_grace_s": _Setting(10, "number", "Seconds a run may watch past its window while a host that has missed a beat may "
                                "still turn stale, so that the run that started its probes decides on it.", 0),
    "poll_s": _Setting(0.5, "number", "Most seconds between two reads of the store while watching; the watch also reads at "
                       "the moment a host would turn overdue or stale.", 0, None, True),
    "skew_allowance_s": _Setting(2.0, "number", "Seconds by which clocks may disagree before a writer is reported as clock-skewed.", 0),
    "store_timeout_s": _Setting(10, "number", "Deadline for one read of the whole store.", 0, None, True),
    # --- investigation
    "probe_timeout_s": _Setting(2, "number", "Deadline of each probe (management, neighbour ping, BMC status).", 0, None, True),
    "neighbor_count": _Setting(2, "int", "How many live neighbours ping a suspect's private address.", 1),
    "activity_window_s": _Setting(2.5, "number", "Seconds between the two samples of a suspect's VM disks.", 0, None, True),
    # --- fencing
    "fence_confirm": _Setting(2, "int", "Consecutive power-off reads that confirm a fence.", 1),
    "fence_timeout_s": _Setting(30, "number", "Hard deadline of one fence (power off and confirmation).", 0, None, True),
    "fence_concurrency": _Setting(2, "int", "Hosts fenced at the same time.", 1),
    # --- recovery
    "recover_parallel": _Setting(4, "int", "VMs defined and started at the same time during recovery.", 1),
    "libvirt_timeout_s": _Setting(10, "number", "Deadline of each libvirt connection and call during recovery.", 0, None, True),
    "recover_retry_s": _Setting(30, "number", "Seconds before an owed VM that could not be placed or started is tried "
                                "again; doubled after each failed attempt.", 0, None, True),
    "recover_retry_max_s": _Setting(300, "number", "The longest wait between two recovery attempts of one owed VM.", 0, None, True),
    "spare_hosts": _Setting([], "names", "Hosts kept free and used for recovery only when the others are full."),
    "placement_strategy": _Setting(DEFAULT_STRATEGY, "choice", "Where recovered VMs go: spread (over the most free hosts, so they "
                                   "start in parallel) or best_fit (pack tightly).", choices=STRATEGIES),
    # --- capacity (applied by the heartbeat writers: the role reads these keys, each writer reports free capacity after them)
    "cpu_allocation_ratio": _Setting(4.0, "number", "vCPUs a host offers per usable CPU (overcommit); a host's free vCPUs are "
                                     "(CPUs - reserved) x this - vCPUs of its running domains.", 0.1, 64),
    "ram_allocation_ratio": _Setting(1.0, "number", "Memory a host offers per MiB of MemTotal less the reserve (1.0: no "
                                     "overcommit); never more than the kernel's MemAvailable less the reserve.", 0.1, 8),
    "reserved_memory_mib": _Setting(512, "int", "Memory (MiB) of each host kept for the host itself, never offered to guests.", 0),
    "lease_ttl_s": _Setting(30, "number", "Lifetime of the cluster lease between two renewals; recovery renews it (only if "
                            "still ours) before every claim and start. A killed run's lease blocks the next ones this long.",
                            0, None, True),
}

RULE_KEYS = {"id", "when", "action", "verdict", "reason"}
CUSTOM_ACTIONS = ("none", "alert")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_VERDICT = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")


def default_policy() -> dict:
    policy = {key: setting.default for key, setting in SETTINGS.items()}
    policy["spare_hosts"] = []
    policy["rules"] = []
    return policy


def effective_policy(user_policy) -> dict:
    """Defaults overlaid with ``user_policy``; raises PolicyError on any unknown key or bad value."""
    if user_policy is None:
        user_policy = {}
    if not isinstance(user_policy, dict):
        raise PolicyError("policy must be a dict, got %s" % type(user_policy).__name__)
    policy = default_policy()
    for key, value in user_policy.items():
        if key == "rules":
            policy["rules"] = [validate_rule(i, rule) for i, rule in enumerate(_as_list(value))]
        elif key in SETTINGS:
            policy[key] = SETTINGS[key].check(key, value)
        else:
            raise PolicyError("unknown policy key %r%s" % (key, _did_you_mean(key, list(SETTINGS) + ["rules"])))
    ids = [rule["id"] for rule in policy["rules"]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise PolicyError("policy.rules: duplicate rule id(s) %s" % ", ".join(duplicates))
    return policy


def _as_list(value) -> list:
    if not isinstance(value, list):
        raise PolicyError("policy.rules must be a list of rules, got %s" % type(value).__name__)
    return value


def _did_you_mean(key, choices) -> str:
    close = difflib.get_close_matches(str(key), choices, n=1)
    return " (did you mean %r?)" % close[0] if close else ""


def validate_rule(index: int, rule) -> dict:
    """Check one custom rule and compile its JMESPath condition; errors name the rule."""
    where = "policy.rules[%d]" % index
    if not isinstance(rule, dict):
        raise PolicyError("%s must be a dict" % where)
    rule_id = rule.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise PolicyError("%s: id must be lower-case letters, digits, '-' or '_' (got %r)" % (where, rule_id))
    where = "custom rule %r" % rule_id
    unknown = sorted(set(rule) - RULE_KEYS)
    if unknown:
        raise PolicyError("%s: unknown key(s) %s; allowed: %s" % (where, ", ".join(unknown), ", ".join(sorted(RULE_KEYS))))
    if rule.get("action") not in CUSTOM_ACTIONS:
        raise PolicyError(
            "%s: action must be one of %s (custom rules can make a decision more cautious, never bolder), got %r"
            % (where, ", ".join(CUSTOM_ACTIONS), rule.get("action"))
        )
    verdict = rule.get("verdict")
    if verdict is not None and not (isinstance(verdict, str) and _VERDICT.match(verdict)):
        raise PolicyError("%s: verdict must be UPPER_CASE_WORDS, got %r" % (where, verdict))
    reason = rule.get("reason", "")
    if not isinstance(reason, str):
        raise PolicyError("%s: reason must be a string" % where)
    expression = rule.get("when")
    if not isinstance(expression, str) or not expression.strip():
        raise PolicyError("%s: 'when' must be a JMESPath expression" % where)
    if jmespath is None:
        raise MissingLibrary("%s: custom rules need the Python library jmespath" % where)
    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as err:
        raise PolicyError("%s: malformed JMESPath expression %r: %s" % (where, expression, err)) from err
    return {"id": rule_id, "when": expression, "action": rule["action"], "verdict": verdict, "reason": reason, "compiled": compiled}


def public_policy(policy: dict) -> dict:
    """The policy as plain data (compiled expressions removed), for results and records."""
    public = dict(policy)
    public["rules"] = [{k: v for k, v in rule.items() if k != "compiled"} for rule in policy["rules"]]
    return public
