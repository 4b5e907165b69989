# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: journal
type: notification
short_description: Incident records, an event stream, Prometheus metrics and a summary of every watchdog run
version_added: 0.1.0
description:
  - Follows the results of the kvmha.cluster modules during a watchdog run and writes, under O(journal_dir),
  - C(incidents/<time>-<run>-<host>.json) - one decision record per suspect host and run (C(<time>) is when the run
    started, UTC, C(%Y%m%dT%H%M%SZ); C(<run>) the run's id) - the verdict, the rule, the reasons,
    all the evidence, every action taken with its result, and per-phase timestamps (last heartbeat, detected,
    investigated, fenced, each VM running) from which the time to recovery is read;
  - C(events.jsonl) - one JSON event per line, appended as things happen;
  - O(metrics_file) - a Prometheus textfile (host verdicts, fences, recoveries, time to recovery, watchdog health);
  - and prints a short summary table at the end of the run, plus one line per event as it happens.
  - Works next to any stdout callback (AWX and ansible-runner force their own), as long as it is enabled with
    C(callbacks_enabled). Secrets never reach the journal - module invocations are not recorded, and results of
    C(no_log) tasks arrive censored.
requirements:
  - enable in configuration (C(callbacks_enabled = kvmha.cluster.journal))
options:
  journal_dir:
    description: Where records, events and metrics are written.
    type: path
    default: ~/.ansible/kvmha-journal
    env:
      - name: KVMHA_JOURNAL_DIR
    ini:
      - section: callback_journal
        key: journal_dir
  metrics_file:
    description: The Prometheus textfile. Defaults to C(kvmha.prom) in O(journal_dir); point it at node_exporter's textfile directory.
    type: path
    env:
      - name: KVMHA_METRICS_FILE
    ini:
      - section: callback_journal
        key: metrics_file
  live:
    description: Print one line per event while the run goes on.
    type: bool
    default: true
    env:
      - name: KVMHA_JOURNAL_LIVE
    ini:
      - section: callback_journal
        key: live
"""

import json
import os
import socket
import time
import uuid
from datetime import datetime, timezone

from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.callback import CallbackBase
from ansible.utils.path import makedirs_safe

PREFIX = "kvmha.cluster."
WATCHED = {
    "kvm_heartbeat", "host_investigate", "ipmi_power", "vm_evacuate", "cluster_lease", "host_mark",
    "vm_disk_activity", "neighbor_ping", "vm_reconcile",
}
SECRET_WORDS = ("password", "passwd", "secret", "kg", "token")
MAX_EVENT_BYTES = 64 * 1024
ATTEMPTS = "vm_recovery_attempt"


def module_name(action: str) -> str:
    """The short name of a kvmha.cluster module, or '' for any other action."""
    if action.startswith(PREFIX) and action[len(PREFIX):] in WATCHED:
        return action[len(PREFIX):]
    return ""


def scrub(value):
    """A copy of ``value`` without module invocations or keys that look like secrets."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()
                if k != "invocation" and not any(word == k.lower() or k.lower().endswith("_" + word) for word in SECRET_WORDS)}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


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


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "kvmha.cluster.journal"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.journal_dir = None
        self.metrics_file = None
        self.live = True
        self.run = {"id": uuid.uuid4().hex[:12], "controller": socket.gethostname(), "started": time.time()}
        self.incidents = {}
        self.observation = None
        self.failures = []
        self.returned = {}
        self.owed = {}
        self.attempts = 0

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self.journal_dir = os.path.expanduser(self.get_option("journal_dir"))
        self.metrics_file = self.get_option("metrics_file") or os.path.join(self.journal_dir, "kvmha.prom")
        self.live = self.get_option("live")

    # ----------------------------------------------------------------------------------------- ansible hooks

    def v2_playbook_on_play_start(self, play):
        manager = play.get_variable_manager()
        job = manager.extra_vars.get("awx_job_id") or manager.extra_vars.get("tower_job_id") if manager else None
        if job:
            self.run["awx_job_id"] = job

    def v2_runner_on_ok(self, result):
        name = module_name(result.task.action)
        if name:
            handler = getattr(self, "_on_" + name, None)
            if handler is not None:
                handler(result.host.get_name(), scrub(result.result))
        elif result.task.vars.get("kvmha_journal") == "remediate":
            self._action(result.host.get_name(), "remediate", True, "heartbeat writer restarted")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._failed(result, "failed")

    def v2_runner_on_unreachable(self, result):
        if module_name(result.task.action) or result.task.vars.get("kvmha_journal"):
            self._failed(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        if self.observation is None:
            return  # not a watchdog run (deploy, maintenance, unfence ...): its events are streamed, no summary or metrics
        self.run["finished"] = time.time()
        self.run["ok"] = not self.failures and not any(stats.summarize(h)["failures"] for h in stats.processed)
        try:
            self.write_records()
            self.write_metrics()
        except OSError as err:
            self._display.warning("kvmha journal: cannot write to %s: %s" % (self.journal_dir, err))
        self.event("run_end", ok=self.run["ok"], incidents=sorted(self.incidents), elapsed=round(self.run["finished"] - self.run["started"], 3))
        self.print_summary()

    # ----------------------------------------------------------------------------------------- module results

    def _on_kvm_heartbeat(self, host, result):
        if "suspects" not in result:
            return  # state=stopped
        detected = time.time()
        if self.observation is None:
            self.event("run_start", started=iso(self.run["started"]))
        cluster = self.run["cluster"] = result.get("cluster", "default")
        self.observation = {
            "observer": result.get("_ansible_delegated_vars", {}).get("ansible_delegated_host", host),
            "observer_ok": result.get("observer_ok"),
            "observer_reason": result.get("observer_reason"),
            "suspects": result.get("suspects", []),
            "returning": result.get("returning", []),
            "maintenance_expired": sorted(result.get("maintenance_expired", {})),
            "skewed": result.get("skewed", []),
            "owed": dict((h, o.get("states", {})) for h, o in (result.get("owed") or {}).items()),
            "owed_invalid": sorted(result.get("owed_invalid") or {}),
            "work": result.get("work", []),
            "samples": result.get("samples"),
        }
        self.owed = dict(self.observation["owed"])
        for line in result.get("work", []):
            self.event("recovery_work", detail=line)
        for suspect in result.get("suspects", []):
            if suspect in self.incidents and self.incidents[suspect].heartbeat is not None:
                continue  # the watch after the recovery work found it again
            incident = self.incident(suspect, cluster)
            entry = result.get("hosts", {}).get(suspect, {})
            incident.heartbeat = entry
            incident.mark("detected", detected)
            if entry.get("age") is not None:
                incident.mark("last_heartbeat", detected - entry["age"])
            self.event("suspect", host=suspect, status=entry.get("status"), reason=entry.get("reason"), age=entry.get("age"))
        if not result.get("observer_ok", True):
            self.event("observer_not_ok", reason=result.get("observer_reason"))
        for host_name in result.get("returning", []):
            self.event("returning", host=host_name)
        # A writer clock off the store's (kvm_heartbeat: clock_skew) is alive but worth an alert: an event and a gauge.
        self.observation["clock_skew"] = {h: result.get("hosts", {}).get(h, {}).get("clock_offset") for h in self.observation["skewed"]}
        for host_name, offset in sorted(self.observation["clock_skew"].items()):
            self.event("clock_skew", host=host_name, offset_s=offset, reason=result.get("hosts", {}).get(host_name, {}).get("reason"))

    def _on_host_investigate(self, host, result):
        for name, decision in (result.get("decisions") or {}).items():
            incident = self.incident(name, decision.get("cluster", "default"))
            incident.decision = decision
            incident.mark("investigated")
            self.event("decision", host=name, verdict=decision.get("verdict"), rule=decision.get("rule"),
                       action=decision.get("action"), reasons=decision.get("reasons"))

    def _on_ipmi_power(self, host, result):
        if result.get("state") not in ("off", "shutdown"):
            return  # a status read is evidence, recorded with the decision
        ok = bool(result.get("fenced"))
        if ok:
            self.incident(host).mark("fenced")
        self._action(host, "fence", ok, "power off confirmed" if ok else result.get("msg", "not confirmed"), result)

    def _on_vm_evacuate(self, host, result):
        if "transitions" in result and "vms" not in result:
            return self._on_abandon(result)
        for entry in result.get("unreadable") or []:
            self._action(entry.get("host", host), "recover", False, "%s: %s" % (entry.get("status"), entry.get("reason")))
        for gone in result.get("interrupted") or []:
            incident = self.incident(gone["host"], self.run.get("cluster", "default"))
            incident.interrupted = gone
            self.event("interrupted_run", host=gone["host"], owner=gone.get("owner"), vms=gone.get("vms"))
        for change in result.get("transitions") or []:
            self.event("vm_transition", host=change["host"], vm=change["vm"], previous=change["from"], state=change["to"],
                       target=change.get("target"), reason=change.get("reason") or None, attempts=change.get("attempts"))
        by_host = {}
        for vm in result.get("vms", []):
            by_host.setdefault(vm.get("failed_host", host), []).append(vm)
        worked = set(result.get("opened") or []) | set(c["host"] for c in result.get("transitions") or [])
        worked |= set(h for h, vms in by_host.items() if any(vm.get("status") in ("started", "unplaced", "failed") for vm in vms))
        for failed_host in sorted(worked):
            vms = by_host.get(failed_host, [])
            incident = self.incident(failed_host, self.run.get("cluster", "default"))
            incident.vms = vms
            incident.recovery = (result.get("owed") or {}).get(failed_host)
            for vm in vms:
                running = vm.get("timestamps", {}).get("running")
                if vm.get("status") == "started" and running:
                    incident.mark("vm_running:%s" % vm.get("name"), running)
                if vm.get("status") in ("started", "unplaced", "failed"):
                    self.event("vm_" + vm["status"], host=failed_host, vm=vm.get("name"), target=vm.get("host"),
                               reason=vm.get("reason") or None)
            ok = not any((incident.recovery or {}).get(s) for s in ("owed", "claimed", "unplaced", "failed"))
            self._action(failed_host, "recover", ok, incident.outcome() if incident.recovery else "-")
        self.owed.update(dict((h, states) for h, states in (result.get("owed") or {}).items()))
        self.attempts += int(result.get("attempts") or 0)

    def _on_abandon(self, result):
        for change in result.get("transitions") or []:
            self.event("vm_abandoned", host=change["host"], vm=change["vm"], previous=change["from"],
                       operator=change.get("operator"), reason=change.get("reason"))

    def _on_vm_reconcile(self, host, result):
        removed = [vm["uuid"] for vm in result.get("vms", []) if vm.get("undefined")]
        kept = [vm.get("name") for vm in result.get("kept", [])]
        self.returned[host] = {"removed": removed, "kept": kept}
        self.event("reconciled", host=host, removed=removed, kept=kept or None)

    def _on_cluster_lease(self, host, result):
        if result.get("acquired") is False and result.get("holder"):
            self.event("lease_held", holder=result["holder"].get("owner"))
        elif result.get("changed"):
            self.event("lease_" + ("released" if result.get("acquired") is False else "acquired"),
                       takeover=result.get("takeover", False))

    def _on_host_mark(self, host, result):
        mark = result.get("mark") or {}
        if result.get("changed"):
            self.event("mark", host=mark.get("name"), owner=mark.get("owner"), released=mark.get("released"))

    # ----------------------------------------------------------------------------------------- bookkeeping

    def incident(self, host: str, cluster: str = "default") -> Incident:
        if host not in self.incidents:
            self.incidents[host] = Incident(host, cluster)
        return self.incidents[host]

    def _action(self, host, action, ok, detail, result=None):
        entry = {"action": action, "ok": ok, "detail": detail, "at": iso(time.time())}
        if result:
            entry["result"] = {k: result[k] for k in ("powerstate", "fenced", "confirmations", "elapsed", "error_kind", "msg") if k in result}
        self.incident(host).actions.append(entry)
        if not ok:
            self.failures.append("%s: %s failed (%s)" % (host, action, detail))
        self.event(action, host=host, ok=ok, detail=detail)

    def _failed(self, result, how):
        name = module_name(result.task.action) or result.task.vars.get("kvmha_journal", "")
        if not name:
            return
        host = result.host.get_name()
        details = scrub(result.result)
        message = details.get("msg", how)
        if name == "ipmi_power" and details.get("state") in ("off", "shutdown"):
            self._action(host, "fence", False, message, details)
        elif name == "vm_evacuate" and "vms" in details:
            self._on_vm_evacuate(host, details)
        elif name == "remediate":
            self._action(host, "remediate", False, message)
        elif name in ("ipmi_power", "neighbor_ping", "vm_disk_activity"):
            self.event("probe_" + how, host=host, module=name, msg=message)  # unknown evidence, not a failed action
        else:
            self.failures.append("%s: %s %s: %s" % (host, name, how, message))
            self.event("task_" + how, host=host, module=name, msg=message)

    def event(self, kind: str, **fields) -> None:
        event = {"ts": iso(time.time()), "run": self.run["id"], "event": kind}
        event.update({k: v for k, v in fields.items() if v is not None})
        if self.live:
            self._display.display("kvmha %s" % self.describe(event), color="bright purple")
        if not self.journal_dir:
            return
        try:
            makedirs_safe(self.journal_dir)
            line = to_bytes(json.dumps(event, sort_keys=True, default=str))[:MAX_EVENT_BYTES] + b"\n"
            with open(os.path.join(self.journal_dir, "events.jsonl"), "ab") as stream:
                stream.write(line)
        except OSError as err:
            self._display.warning("kvmha journal: cannot append an event: %s" % err)

    @staticmethod
    def describe(event: dict) -> str:
        kind, host = event["event"], event.get("host", "")
        if kind == "suspect":
            return "%s: %s suspect (%s)" % (event["ts"], host, event.get("reason") or event.get("status"))
        if kind == "decision":
            return "%s: %s -> %s, action %s [%s]: %s" % (event["ts"], host, event.get("verdict"), event.get("action"),
                                                         event.get("rule"), "; ".join(event.get("reasons", [])))
        if kind == "vm_transition":
            where = " on " + event["target"] if event.get("target") else ""
            why = " (%s)" % event["reason"] if event.get("reason") else ""
            return "%s: %s %s -> %s%s%s" % (event["ts"], event.get("vm"), event.get("previous"), event.get("state"), where, why)
        if kind.startswith("vm_"):
            return "%s: %s %s %s%s" % (event["ts"], event.get("vm"), kind[3:], "on " + event["target"] if event.get("target") else "",
                                       " (%s)" % event["reason"] if event.get("reason") else "")
        details = ", ".join("%s=%s" % (k, v) for k, v in sorted(event.items()) if k not in ("ts", "run", "event", "host"))
        return "%s: %s%s %s" % (event["ts"], kind, " " + host if host else "", details)

    # ----------------------------------------------------------------------------------------- outputs

    def run_summary(self) -> dict:
        summary = dict(self.run)
        summary.update(started=iso(self.run["started"]), finished=iso(self.run.get("finished")))
        if self.observation:
            summary["observation"] = self.observation
        return summary

    def write_records(self) -> None:
        if not self.incidents:
            return
        directory = os.path.join(self.journal_dir, "incidents")
        makedirs_safe(directory)
        stamp = datetime.fromtimestamp(self.run["started"], timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        run = self.run_summary()
        for host, incident in sorted(self.incidents.items()):
            path = os.path.join(directory, "%s-%s-%s.json" % (stamp, self.run["id"], host))
            _write_atomic(path, json.dumps(incident.record(run), indent=2, sort_keys=True, default=str))

    def write_metrics(self) -> None:
        makedirs_safe(os.path.dirname(self.metrics_file) or ".")
        state_path = os.path.join(self.journal_dir, "metrics-state.json")
        counters = _load_counters(state_path)
        for incident in self.incidents.values():
            for action in incident.actions:
                key = "%s|%s|%s" % (action["action"], incident.cluster, "ok" if action["ok"] else "failed")
                counters[key] = counters.get(key, 0) + 1
        if self.attempts:
            key = "%s|%s|all" % (ATTEMPTS, self.run.get("cluster", "default"))
            counters[key] = counters.get(key, 0) + self.attempts
        makedirs_safe(self.journal_dir)
        _write_atomic(state_path, json.dumps(counters, sort_keys=True))
        _write_atomic(self.metrics_file, self.prometheus(counters))

    def prometheus(self, counters: dict) -> str:
        cluster = self.run.get("cluster", "default")
        lines = [
            "# HELP kvmha_watchdog_last_run_timestamp_seconds When the last watchdog run ended.",
            "# TYPE kvmha_watchdog_last_run_timestamp_seconds gauge",
            'kvmha_watchdog_last_run_timestamp_seconds{cluster="%s"} %.3f' % (cluster, self.run["finished"]),
            "# HELP kvmha_watchdog_last_run_success 1 if the last run needed nothing or did everything it needed.",
            "# TYPE kvmha_watchdog_last_run_success gauge",
            'kvmha_watchdog_last_run_success{cluster="%s"} %d' % (cluster, 1 if self.run["ok"] else 0),
            "# HELP kvmha_watchdog_run_duration_seconds Duration of the last watchdog run.",
            "# TYPE kvmha_watchdog_run_duration_seconds gauge",
            'kvmha_watchdog_run_duration_seconds{cluster="%s"} %.3f' % (cluster, self.run["finished"] - self.run["started"]),
            "# HELP kvmha_observer_ok 1 if the observer could read the store and saw a live host.",
            "# TYPE kvmha_observer_ok gauge",
            'kvmha_observer_ok{cluster="%s"} %d' % (cluster, 1 if (self.observation or {}).get("observer_ok", True) else 0),
            "# HELP kvmha_suspects Hosts that were suspects in the last run.",
            "# TYPE kvmha_suspects gauge",
            'kvmha_suspects{cluster="%s"} %d' % (cluster, len(self.incidents)),
            "# HELP kvmha_host_verdict The verdict on each suspect host in the last run (1 per host and verdict).",
            "# TYPE kvmha_host_verdict gauge",
        ]
        for host, incident in sorted(self.incidents.items()):
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
        for host, states in sorted(self.owed.items()):
            for state, count in sorted(states.items()):
                lines.append('kvmha_vms_owed{cluster="%s",host="%s",state="%s"} %d' % (cluster, host, state, count))
        lines += ["# HELP kvmha_last_rto_seconds Last heartbeat to last VM running, for hosts recovered in the last run.",
                  "# TYPE kvmha_last_rto_seconds gauge"]
        for host, incident in sorted(self.incidents.items()):
            if incident.rto() is not None:
                lines.append('kvmha_last_rto_seconds{cluster="%s",host="%s"} %.3f' % (incident.cluster, host, incident.rto()))
        lines += ["# HELP kvmha_host_clock_skew_seconds Writer clock minus store clock, for hosts found clock-skewed in the last run.",
                  "# TYPE kvmha_host_clock_skew_seconds gauge"]
        for host, offset in sorted(((self.observation or {}).get("clock_skew") or {}).items()):
            if offset is not None:
                lines.append('kvmha_host_clock_skew_seconds{cluster="%s",host="%s"} %.3f' % (cluster, host, offset))
        return "\n".join(lines) + "\n"

    def print_summary(self) -> None:
        for host, returned in sorted(self.returned.items()):
            if returned["kept"]:
                self._display.display("kvmha: %s came back after a fence: %d stale VM copies removed; it stays fenced, it holds the "
                                      "only copy of %s" % (host, len(returned["removed"]), ", ".join(returned["kept"])), color="red")
            else:
                self._display.display("kvmha: %s came back after a fence: %d stale VM copies removed, it is live again"
                                      % (host, len(returned["removed"])))
        if not self.incidents and self.run["ok"]:
            self._display.display("kvmha: run %s - all hosts alive, nothing to do" % self.run["id"])
            return
        rows = [("HOST", "VERDICT", "RULE", "ACTION", "NOW", "OUTCOME", "RTO")]
        for host, incident in sorted(self.incidents.items()):
            decision = incident.decision or {}
            rto = incident.rto()
            rows.append((host, decision.get("verdict", "-"), decision.get("rule", "-"), decision.get("action", "-"),
                         incident.final_state() or "-", incident.outcome(), "%.1f s" % rto if rto is not None else "-"))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        self._display.display("\nkvmha: run %s %s" % (self.run["id"], "OK" if self.run["ok"] else "NEEDS ATTENTION"))
        for row in rows:
            self._display.display("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
        for failure in self.failures:
            self._display.display("  ! " + failure, color="red")


def _write_atomic(path: str, text: str) -> None:
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as stream:
        stream.write(to_bytes(text))
    os.replace(tmp, path)


def _load_counters(path: str) -> dict:
    try:
        with open(path, "rb") as stream:
            counters = json.loads(stream.read())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in counters.items() if isinstance(k, str) and k.count("|") == 2 and isinstance(v, int)} if isinstance(counters, dict) else {}
