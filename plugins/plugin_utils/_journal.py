# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This plugin_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""What the journal callback (plugins/callback/journal.py) writes, apart from how ansible drives it.

- which handler takes a task's result: the playbooks tag their tasks with the watchdog phase they belong to (the task
  variable ``kvmha_journal``, set on a play, a block or an import), and ``handler_for`` picks the handler from the
  phase and the module - so a heartbeat read while remediating is not taken for the run's observation;
- ``scrub``: what of a result may be written at all;
- ``failure_message``: what a failed task says, with the causes of its failed loop items;
- ``Incident``: everything one run learnt and did about one suspect host, and its record;
- ``prometheus``: the metrics textfile.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timezone

from ansible.module_utils.common.text.converters import to_bytes

PREFIX = "kvmha.cluster."
PHASE_VAR = "kvmha_journal"
ANY = "*"
# (phase, module) -> handler. ``module`` is a kvmha.cluster module's short name, or ANY for any action of the phase;
# phase ANY: wherever the module runs (the lease and the marks are events of the store, whichever phase takes them).
# A phase not listed here (probe) records only failures.
HANDLERS = {
    ("observe", "kvm_heartbeat"): "observation",
    ("decide", "host_investigate"): "decision",
    ("fence", "ipmi_power"): "fence",
    ("fence", "host_fence"): "fence",
    ("recover", "vm_evacuate"): "recovery",
    ("converge", "vm_evacuate"): "recovery",
    ("abandon", "vm_evacuate"): "abandon",
    ("reconcile", "vm_reconcile"): "reconciliation",
    ("remediate", "kvm_heartbeat"): "remediation_check",
    ("remediate", ANY): "remediation",
    (ANY, "cluster_lease"): "lease",
    (ANY, "host_mark"): "mark",
}
# How a failed task is recorded, by the same lookup: as a failed action, as unknown evidence (a probe that failed
# proves nothing), or - for any other kvmha.cluster module or tagged task - as a failure of the run.
FAILURES = {
    ("fence", "ipmi_power"): "fence",
    ("fence", "host_fence"): "fence",
    ("recover", "vm_evacuate"): "recovery",
    ("converge", "vm_evacuate"): "recovery",
    ("remediate", ANY): "remediation",
    ("probe", ANY): "probe",
    ("recover", "host_fence"): "probe",  # the power read again through a host's fence levels: a host not seen off is not recovered
    ("decide", "vm_evacuate"): "plan",  # observe mode's restart plan (check mode): reported, never a failure of the run
}
PHASES = ("observe", "converge", "reconcile", "probe", "decide", "fence", "recover", "remediate", "abandon")
SECRET_WORDS = ("password", "passwd", "pass", "passphrase", "secret", "kg", "token")
ATTEMPTS = "vm_recovery_attempt"
MAX_ITEM_CAUSES = 3  # of a failed loop, in the one line of the summary
MAX_CAUSE_CHARS = 300
_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def module_name(action: str) -> str:
    """The short name of a kvmha.cluster module, or '' for any other action."""
    return action[len(PREFIX):] if action.startswith(PREFIX) else ""


def phase_of(task_vars: dict, play_phase) -> str:
    """The watchdog phase a task was tagged with (its own, its blocks' or its import's over its play's), or ''."""
    phase = task_vars.get(PHASE_VAR, play_phase)
    return phase if phase in PHASES else ""


def seconds(value) -> float:
    """A duration read from a module's result: a finite number >= 0, else 0."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf") else 0.0


def handler_for(table: dict, phase: str, module: str) -> str:
    """The handler of ``table`` for a result of ``module`` in ``phase``: the most specific entry, or ''."""
    for key in ((phase, module), (phase, ANY), (ANY, module)):
        if all(key) and key in table:  # an untagged task ('') or another collection's action ('') matches no entry
            return table[key]
    return ""


def is_secret_key(key) -> bool:
    """A key whose last word is a secret word, however it is spelt: bmc_password, bmcPassword, ansible_ssh_pass, KG."""
    words = _KEY_WORDS.findall(str(key))
    return bool(words) and words[-1].lower() in SECRET_WORDS


def scrub(value):
    """A copy of ``value`` without module invocations or keys that look like secrets."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k != "invocation" and not is_secret_key(k)}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def failure_message(result: dict, default: str) -> str:
    """What a failed task says, followed by the causes its failed loop items give.

    A loop's own message is ansible's "One or more items failed"; the cause ("No space left on device") is only in
    the items, and the run summary is where the operator reads it. At most ``MAX_ITEM_CAUSES`` distinct causes."""
    message = " ".join(str(result.get("msg") or default).split())
    causes = []
    for item in result.get("results") or []:
        if isinstance(item, dict) and item.get("failed") and "ansible_loop_var" in item:
            cause = "%s: %s" % (_item_label(item), " ".join(str(item.get("msg") or "failed").split())[:MAX_CAUSE_CHARS])
            if cause not in causes:
                causes.append(cause)
    if not causes:
        return message
    more = len(causes) - MAX_ITEM_CAUSES
    return "%s: %s%s" % (message, "; ".join(causes[:MAX_ITEM_CAUSES]), "; and %d more" % more if more > 0 else "")


def _item_label(item: dict) -> str:
    """The item as ansible labels it on the terminal (loop_control.label), else the item itself."""
    label = item.get("_ansible_item_label", item.get(item["ansible_loop_var"]))
    return label if isinstance(label, str) else json.dumps(label, sort_keys=True, default=str)


def iso(timestamp) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


class Incident:
    """Everything one run learnt and did about one suspect host."""

    def __init__(self, host: str, cluster: str):
        self.host = host
        self.cluster = cluster
        self.times = {}
        self.heartbeat = None
        self.decision = None
        self.actions = []
        self.vms = []
        self.recovery = None
        self.interrupted = None

    def mark(self, phase: str, when: float | None = None) -> None:
        self.times.setdefault(phase, time.time() if when is None else when)

    def running_times(self) -> list:
        return [vm["timestamps"]["running"] for vm in self.vms if vm.get("status") == "started" and vm.get("timestamps", {}).get("running")]

    def rto(self):
        """Seconds from the last heartbeat seen to the last VM verified running, when VMs were recovered."""
        running = self.running_times()
        if not running or "last_heartbeat" not in self.times:
            return None
        return round(max(running) - self.times["last_heartbeat"], 3)

    def outcome(self) -> str:
        words = []
        for action in self.actions:
            words.append("%s %s" % (action["action"], "ok" if action["ok"] else "FAILED"))
        if self.recovery:
            words.append(", ".join("%d %s" % (n, state) for state, n in sorted(self.recovery.items()) if n))
        elif self.vms:
            started = sum(1 for vm in self.vms if vm.get("status") == "started")
            words.append("%d/%d VMs started" % (started, len(self.vms)))
        if self.interrupted:
            words.insert(0, "finished the work of the interrupted run %s" % self.interrupted.get("owner"))
        return ", ".join(words) or "-"

    def final_state(self) -> str | None:
        """What the host is at the end of the run: a confirmed fence ends as DOWN (fenced), not as its suspect verdict."""
        verdict = (self.decision or {}).get("verdict")
        if any(a["action"] == "fence" and a["ok"] for a in self.actions):
            return "DOWN (fenced)"
        if self.recovery is not None and verdict in (None, "DOWN", "DOWN_SELF_FENCED"):
            return verdict or "DOWN (owed recovery)"
        return verdict

    def recovery_outcome(self) -> str | None:
        """recovered (every VM verified or running), partial (some still run nowhere) or abandoned, from the owed states."""
        if not self.recovery:
            return None
        if any(self.recovery.get(s) for s in ("owed", "claimed", "unplaced", "failed")):
            return "partial"
        if self.recovery.get("abandoned"):
            return "abandoned"
        return "recovered"

    def record(self, run: dict) -> dict:
        decision = self.decision or {}
        return {
            "kind": "kvmha.incident",
            "version": 1,
            "run": run,
            "host": self.host,
            "cluster": self.cluster,
            "verdict": decision.get("verdict"),
            "rule": decision.get("rule"),
            "action": decision.get("action"),
            "reasons": decision.get("reasons", []),
            "builtin": decision.get("builtin"),
            "interlocks": decision.get("interlocks", []),
            "storm_guard": decision.get("storm_guard", False),
            "evidence": decision.get("evidence"),
            "heartbeat": self.heartbeat,
            "actions": self.actions,
            "vms": self.vms,
            "timestamps": {phase: iso(when) for phase, when in sorted(self.times.items(), key=lambda item: item[1])},
            "rto_s": self.rto(),
            "final_state": self.final_state(),
            "recovery": {"states": self.recovery, "outcome": self.recovery_outcome()} if self.recovery else None,
            "interrupted": self.interrupted,
            "outcome": self.outcome(),
        }


def prometheus(run: dict, observation, incidents: dict, owed: dict, counters: dict) -> str:
    """The metrics textfile of a finished run (``run`` has ``finished`` and ``ok``)."""
    cluster = run.get("cluster", "default")
    lines = [
        "# HELP kvmha_watchdog_last_run_timestamp_seconds When the last watchdog run ended.",
        "# TYPE kvmha_watchdog_last_run_timestamp_seconds gauge",
        'kvmha_watchdog_last_run_timestamp_seconds{cluster="%s"} %.3f' % (cluster, run["finished"]),
        "# HELP kvmha_watchdog_last_run_success 1 if the last run needed nothing or did everything it needed.",
        "# TYPE kvmha_watchdog_last_run_success gauge",
        'kvmha_watchdog_last_run_success{cluster="%s"} %d' % (cluster, 1 if run["ok"] else 0),
        "# HELP kvmha_watchdog_run_duration_seconds Duration of the last watchdog run.",
        "# TYPE kvmha_watchdog_run_duration_seconds gauge",
        'kvmha_watchdog_run_duration_seconds{cluster="%s"} %.3f' % (cluster, run["finished"] - run["started"]),
        "# HELP kvmha_observer_ok 1 if the observer could read the store and saw a live host.",
        "# TYPE kvmha_observer_ok gauge",
        'kvmha_observer_ok{cluster="%s"} %d' % (cluster, 1 if (observation or {}).get("observer_ok", True) else 0),
        "# HELP kvmha_suspects Hosts that were suspects in the last run.",
        "# TYPE kvmha_suspects gauge",
        'kvmha_suspects{cluster="%s"} %d' % (cluster, len(incidents)),
        "# HELP kvmha_host_verdict The verdict on each suspect host in the last run (1 per host and verdict).",
        "# TYPE kvmha_host_verdict gauge",
    ]
    for host, incident in sorted(incidents.items()):
        verdict = (incident.decision or {}).get("verdict", "NONE")
        lines.append('kvmha_host_verdict{cluster="%s",host="%s",verdict="%s"} 1' % (incident.cluster, host, verdict))
    lines += ["# HELP kvmha_actions_total Fences, recoveries and remediations by result, since the journal began.",
              "# TYPE kvmha_actions_total counter"]
    for key, value in sorted(counters.items()):
        action, cluster_name, outcome = key.split("|")
        if action != ATTEMPTS:
            lines.append('kvmha_actions_total{action="%s",cluster="%s",result="%s"} %d' % (action, cluster_name, outcome, value))
    lines += ["# HELP kvmha_vm_recovery_attempts_total Start attempts of owed VMs (placements included), since the journal began.",
              "# TYPE kvmha_vm_recovery_attempts_total counter"]
    for key, value in sorted(counters.items()):
        if key.startswith(ATTEMPTS + "|"):
            lines.append('kvmha_vm_recovery_attempts_total{cluster="%s"} %d' % (key.split("|")[1], value))
    lines += ["# HELP kvmha_vms_owed HA VMs of fenced hosts by owed state (open recoveries; 0 owed/claimed/unplaced/failed = done).",
              "# TYPE kvmha_vms_owed gauge"]
    for host, states in sorted(owed.items()):
        for state, count in sorted(states.items()):
            lines.append('kvmha_vms_owed{cluster="%s",host="%s",state="%s"} %d' % (cluster, host, state, count))
    lines += ["# HELP kvmha_last_rto_seconds Last heartbeat to last VM running, for hosts recovered in the last run.",
              "# TYPE kvmha_last_rto_seconds gauge"]
    for host, incident in sorted(incidents.items()):
        if incident.rto() is not None:
            lines.append('kvmha_last_rto_seconds{cluster="%s",host="%s"} %.3f' % (incident.cluster, host, incident.rto()))
    lines += ["# HELP kvmha_host_clock_skew_seconds Writer clock minus store clock, for hosts found clock-skewed in the last run.",
              "# TYPE kvmha_host_clock_skew_seconds gauge"]
    for host, offset in sorted(((observation or {}).get("clock_skew") or {}).items()):
        if offset is not None:
            lines.append('kvmha_host_clock_skew_seconds{cluster="%s",host="%s"} %.3f' % (cluster, host, offset))
    return "\n".join(lines) + "\n"


def write_atomic(path: str, text: str) -> None:
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as stream:
        stream.write(to_bytes(text))
    os.replace(tmp, path)


def load_counters(path: str) -> dict:
    try:
        with open(path, "rb") as stream:
            counters = json.loads(stream.read())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in counters.items() if isinstance(k, str) and k.count("|") == 2 and isinstance(v, int)} if isinstance(counters, dict) else {}
