# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The example alerting rules are a well-formed Prometheus rule file over the metrics that exist, and
docs/OPERATIONS.md documents every metric the journal and fence_readiness.yml write (there is no promtool here)."""

from __future__ import annotations

import os
import re

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
RULES = os.path.join(ROOT, "examples", "prometheus", "kvmha-alerts.yml")
DURATION = re.compile(r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$")
PROMQL_WORDS = {"time", "max", "min", "by", "without", "increase", "or", "and", "unless", "offset", "sum", "on", "ignoring"}


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def written_metrics():
    """Metric names from the TYPE lines the journal and fence_readiness.yml write."""
    journal = set(re.findall(r"# TYPE (kvmha_[a-z_]+) ", read("plugins", "plugin_utils", "_journal.py")))
    readiness = set(re.findall(r"# TYPE (kvmha_[a-z_]+) ", read("playbooks", "fence_readiness.yml")))
    assert journal and readiness
    return journal | readiness


def documented_metrics():
    text = read("docs", "OPERATIONS.md").split("## Metrics and alerts", 1)[1]
    return set(re.findall(r"^\| `(kvmha_[a-z_]+)` \| (?:gauge|counter) \|", text, re.M))


def load_rules():
    with open(RULES, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_every_metric_written_is_documented_and_nothing_else():
    assert documented_metrics() == written_metrics()


def test_rule_file_structure():
    doc = load_rules()
    assert set(doc) == {"groups"} and isinstance(doc["groups"], list) and doc["groups"]
    names = set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", rule["alert"]) and rule["alert"] not in names
            names.add(rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert DURATION.match(str(rule["for"])), rule["for"]
            assert rule["labels"].get("severity") in ("critical", "warning")
            assert all(isinstance(v, str) for v in rule["labels"].values())
            assert set(rule["annotations"]) >= {"summary", "description"}
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            assert rule["expr"].count("{") == rule["expr"].count("}"), rule["alert"]


def test_rules_name_only_metrics_that_exist():
    known = written_metrics()
    for group in load_rules()["groups"]:
        for rule in group["rules"]:
            used = set(re.findall(r"\bkvmha_[a-z_]+\b", rule["expr"]))
            assert used and used <= known, (rule["alert"], used - known)


def test_rules_cover_what_on_call_needs():
    alerts = {rule["alert"]: rule["expr"] for group in load_rules()["groups"] for rule in group["rules"]}
    assert 'verdict="UNKNOWN"' in alerts["KvmhaHostUnknown"]
    assert 'action="fence",result="failed"' in alerts["KvmhaFenceFailed"]
    assert "kvmha_fence_ready" in alerts["KvmhaFenceNotReady"]
    assert "kvmha_watchdog_last_run_timestamp_seconds" in alerts["KvmhaWatchdogNotRunning"]
    assert "kvmha_observer_ok" in alerts["KvmhaObserverNotOk"]


def test_every_alert_is_in_the_runbook_table():
    text = read("docs", "OPERATIONS.md").split("## Metrics and alerts", 1)[1]
    documented = set(re.findall(r"^\| `(Kvmha[A-Za-z]+)` \|", text, re.M))
    assert documented == {rule["alert"] for group in load_rules()["groups"] for rule in group["rules"]}


def test_readiness_reasons_are_documented():
    expression = read("playbooks", "fence_readiness.yml").split("        reason: >-", 1)[1].split("}}", 1)[0]
    reasons = set(re.findall(r"(?:\{\{|else) '([a-z_]+)'", expression))
    assert "power_off" in reasons and "ok" in reasons
    table = read("docs", "OPERATIONS.md").split("### Fence readiness", 1)[1].split("##", 1)[0]
    assert reasons == set(re.findall(r"^\| `([a-z_]+)` \| (?:yes|no) \|", table, re.M))
