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
    all the evidence, every action taken with its result, and per-phase timestamps (last heartbeat, probes started
    at its first missed beat, detected,
    investigated, fenced, each VM running) from which the time to recovery is read;
  - C(events.jsonl) - one JSON event per line, appended as things happen;
  - O(metrics_file) - a Prometheus textfile (host verdicts, fences, recoveries, time to recovery, watchdog health);
  - and prints a short summary table at the end of the run, plus one line per event as it happens.
  - Each result is read by the phase of the watchdog it belongs to - the task variable C(kvmha_journal) (C(observe),
    C(converge), C(reconcile), C(probe), C(decide), C(fence), C(recover), C(remediate), C(abandon)) that the
    collection's playbooks set on their plays, blocks and imports - and by the module that produced it; the lease and
    the marks are recorded wherever they are taken. A result of an untagged task is recorded only when a
    kvmha.cluster module failed.
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

from ansible_collections.kvmha.cluster.plugins.plugin_utils._journal import (
    ATTEMPTS,
    FAILURES,
    HANDLERS,
    PHASE_VAR,
    Incident,
    failure_message,
    handler_for,
    iso,
    load_counters,
    module_name,
    phase_of,
    prometheus,
    scrub,
    seconds,
    write_atomic,
)

MAX_EVENT_BYTES = 64 * 1024


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
        self.play_phase = None

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self.journal_dir = os.path.expanduser(self.get_option("journal_dir"))
        self.metrics_file = self.get_option("metrics_file") or os.path.join(self.journal_dir, "kvmha.prom")
        self.live = self.get_option("live")

    # ----------------------------------------------------------------------------------------- ansible hooks

    def v2_playbook_on_play_start(self, play):
        self.play_phase = (play.vars or {}).get(PHASE_VAR)
        manager = play.get_variable_manager()
        job = manager.extra_vars.get("awx_job_id") or manager.extra_vars.get("tower_job_id") if manager else None
        if job:
            self.run["awx_job_id"] = job

    def v2_runner_on_ok(self, result):
        handler = handler_for(HANDLERS, self._phase(result.task), module_name(result.task.action))
        if handler == "fence" and getattr(result.task, "check_mode", False) is True:
            handler = "planned_fence"  # check mode sent nothing: fenced=false is the plan, not a fence that failed
        if handler:
            getattr(self, "_on_" + handler)(result.host.get_name(), scrub(result.result))

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._failed(result, "failed")

    def v2_runner_on_unreachable(self, result):
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

    def _on_observation(self, host, result):
        if "suspects" not in result:
            return  # state=stopped
        returned = time.time()  # durations from the result, not the observer's clock: it may be another host's
        detected = returned - seconds(result.get("settled"))  # when the watch found the first suspect
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
                incident.mark("last_heartbeat", returned - seconds(result.get("since_last_sample")) - entry["age"])
            late = (result.get("early") or {}).get(suspect) or {}
            if isinstance(late.get("since"), (int, float)):
                incident.mark("probes_started", late["since"])  # the read-only probes began at its first missed beat
            self.event("suspect", host=suspect, status=entry.get("status"), reason=entry.get("reason"), age=entry.get("age"))
        if not result.get("observer_ok", True):
            self.event("observer_not_ok", reason=result.get("observer_reason"))
        for host_name in result.get("returning", []):
            self.event("returning", host=host_name)
        # A writer clock off the store's (kvm_heartbeat: clock_skew) is alive but worth an alert: an event and a gauge.
        self.observation["clock_skew"] = {h: result.get("hosts", {}).get(h, {}).get("clock_offset") for h in self.observation["skewed"]}
        for host_name, offset in sorted(self.observation["clock_skew"].items()):
            self.event("clock_skew", host=host_name, offset_s=offset, reason=result.get("hosts", {}).get(host_name, {}).get("reason"))

    def _on_decision(self, host, result):
        for name, decision in (result.get("decisions") or {}).items():
            incident = self.incident(name, decision.get("cluster", "default"))
            incident.decision = decision
            incident.mark("investigated")
            self.event("decision", host=name, verdict=decision.get("verdict"), rule=decision.get("rule"),
                       action=decision.get("action"), reasons=decision.get("reasons"))

    def _on_fence(self, host, result):
        if result.get("state", "off") not in ("off", "shutdown"):  # host_fence has no state: it only powers off
            return  # a status read is evidence, recorded with the decision
        if result.get("refused"):  # an operator took the host over since the decision: nothing was sent, on purpose
            self.event("fence_refused", host=host, reason=result["refused"])
            return
        ok = bool(result.get("fenced"))
        if ok:
            self.incident(host).mark("fenced")
        confirmed = "power off confirmed"
        if ok and result.get("level"):  # host_fence: which level fenced, through which devices
            confirmed += " (level %s: %s)" % (result["level"], ", ".join(result.get("devices") or []))
        self._action(host, "fence", ok, confirmed if ok else result.get("msg", "not confirmed"), result)

    def _on_planned_fence(self, host, result):
        if result.get("state") in ("off", "shutdown"):
            self.event("fence_planned", host=host, command=result.get("action"), powerstate=result.get("powerstate"))

    def _on_recovery(self, host, result):
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

    def _on_abandon(self, host, result):
        for change in result.get("transitions") or []:
            self.event("vm_abandoned", host=change["host"], vm=change["vm"], previous=change["from"],
                       operator=change.get("operator"), reason=change.get("reason"))

    def _on_reconciliation(self, host, result):
        removed = [vm["uuid"] for vm in result.get("vms", []) if vm.get("undefined")]
        kept = [vm.get("name") for vm in result.get("kept", [])]
        self.returned[host] = {"removed": removed, "kept": kept}
        self.event("reconciled", host=host, removed=removed, kept=kept or None)

    def _on_lease(self, host, result):
        if result.get("acquired") is False and result.get("holder"):
            self.event("lease_held", holder=result["holder"].get("owner"))
        elif result.get("changed"):
            self.event("lease_" + ("released" if result.get("acquired") is False else "acquired"),
                       takeover=result.get("takeover", False))

    def _on_mark(self, host, result):
        mark = result.get("mark") or {}
        if result.get("changed"):
            data = mark.get("data") or {}
            self.event("mark", host=mark.get("name"), mark=result.get("kind"), owner=mark.get("owner"),
                       released=mark.get("released"), reason=(data.get("reason") or None) if isinstance(data, dict) else None)

    def _on_remediation(self, host, result):
        if result.get("changed"):  # the restart; the read of the writer's state before it changes nothing
            self._action(host, "remediate", True, "heartbeat writer restarted")

    def _on_remediation_check(self, host, result):
        """The heartbeat of a remediated host, read again: evidence of the remediation, not the run's observation."""
        self.event("remediation_verified", host=host, status=(result.get("hosts") or {}).get(host, {}).get("status"))

    # ----------------------------------------------------------------------------------------- bookkeeping

    def incident(self, host: str, cluster: str = "default") -> Incident:
        if host not in self.incidents:
            self.incidents[host] = Incident(host, cluster)
        return self.incidents[host]

    def _action(self, host, action, ok, detail, result=None):
        entry = {"action": action, "ok": ok, "detail": detail, "at": iso(time.time())}
        if result:
            entry["result"] = {k: result[k] for k in ("powerstate", "fenced", "confirmations", "elapsed", "error_kind", "msg",
                                                      "level", "devices", "levels") if k in result}
        self.incident(host).actions.append(entry)
        if not ok:
            self.failures.append("%s: %s failed (%s)" % (host, action, detail))
        self.event(action, host=host, ok=ok, detail=detail)

    def _phase(self, task) -> str:
        return phase_of(task.get_vars(), self.play_phase)

    def _failed(self, result, how):
        module, phase = module_name(result.task.action), self._phase(result.task)
        handler = handler_for(FAILURES, phase, module)
        if not handler and not module:
            return  # not a kvmha.cluster module, nor a task whose phase records its failure
        host = result.host.get_name()
        details = scrub(result.result)
        message = failure_message(details, how)
        if handler == "fence" and details.get("state", "off") in ("off", "shutdown"):  # a fence that failed before it ran too
            self._action(host, "fence", False, message, details)
        elif handler == "recovery" and "vms" in details:
            self._on_recovery(host, details)
        elif handler == "remediation":
            self._action(host, "remediate", False, message)
        elif handler == "plan":
            self.event("plan_" + how, host=host, msg=message)
        elif handler == "probe":
            probe = module or result.task.action.rpartition(".")[2]
            self.event("probe_" + how, host=host, module=probe, msg=message)  # unknown evidence, not a failed action
        else:
            self.failures.append("%s: %s %s: %s" % (host, module, how, message))
            self.event("task_" + how, host=host, module=module, msg=message)

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
            write_atomic(path, json.dumps(incident.record(run), indent=2, sort_keys=True, default=str))

    def write_metrics(self) -> None:
        makedirs_safe(os.path.dirname(self.metrics_file) or ".")
        state_path = os.path.join(self.journal_dir, "metrics-state.json")
        counters = load_counters(state_path)
        for incident in self.incidents.values():
            for action in incident.actions:
                key = "%s|%s|%s" % (action["action"], incident.cluster, "ok" if action["ok"] else "failed")
                counters[key] = counters.get(key, 0) + 1
        if self.attempts:
            key = "%s|%s|all" % (ATTEMPTS, self.run.get("cluster", "default"))
            counters[key] = counters.get(key, 0) + self.attempts
        makedirs_safe(self.journal_dir)
        write_atomic(state_path, json.dumps(counters, sort_keys=True))
        write_atomic(self.metrics_file, prometheus(self.run, self.observation, self.incidents, self.owed, counters))

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
