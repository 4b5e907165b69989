# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The journal callback as ansible drives it, from task results shaped like the modules' (RETURN) and ansible's
(``result.task.action``, ``result.task.vars``, ``result.host.get_name()``, ``result.result``): secrets never reach
the journal, the action counters and the metrics file, and the incident record of a recovered host, a failed
fence, a check-mode run and a run that finished an interrupted one."""

from __future__ import annotations

import datetime
import json
import os
import time

import pytest
import yaml
from ansible import constants as C
from journal_fakes import FakeResult, FakeStats

from ansible_collections.kvmha.cluster.plugins.callback import journal
from ansible_collections.kvmha.cluster.plugins.module_utils._decision import decide
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy
from ansible_collections.kvmha.cluster.plugins.plugin_utils._journal import seconds

NAME = "kvmha.cluster.journal"
SECRET = "s3cr3t-Sentinel-9f4e"  # must appear in no file of the journal
T0 = 1_764_756_900.0


def new_callback(journal_dir, **options):
    """The real CallbackModule with its options set as ansible sets them (from the plugin's own documentation)."""
    if not C.config.has_configuration_definition("callback", NAME):
        C.config.initialize_plugin_configuration_definitions("callback", NAME, yaml.safe_load(journal.DOCUMENTATION)["options"])
    callback = journal.CallbackModule()
    callback._load_name = NAME  # pylint: disable=protected-access
    callback.set_options(direct=dict({"journal_dir": str(journal_dir), "live": False}, **options))
    return callback


@pytest.fixture
def journal_dir(tmp_path, monkeypatch):
    for name in ("KVMHA_JOURNAL_DIR", "KVMHA_METRICS_FILE", "KVMHA_JOURNAL_LIVE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "journal"


def every_file(directory):
    """{relative path: text} of everything the journal wrote."""
    found = {}
    for top, _dirs, names in os.walk(str(directory)):
        for name in names:
            path = os.path.join(top, name)
            with open(path, encoding="utf-8") as f:
                found[os.path.relpath(path, str(directory))] = f.read()
    return found


def events(directory):
    with open(os.path.join(str(directory), "events.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def incident(directory, host):
    paths = [p for p in every_file(directory) if p.startswith("incidents" + os.sep) and p.endswith("-%s.json" % host)]
    assert len(paths) == 1, paths
    with open(os.path.join(str(directory), paths[0]), encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------- recorded results


def heartbeat(suspects=("h1",), age=20.0):
    hosts = {"h2": {"status": "fresh", "age": 0.4, "seq": 7, "boot_id": "b2", "rebooted": False}}
    for name in suspects:
        hosts[name] = {"status": "stale", "reason": "seq 40 unchanged for %.1f s" % age, "age": age, "seq": 40,
                       "boot_id": "b1", "rebooted": False}
    return {"changed": False, "cluster": "prod-a", "suspects": list(suspects), "fresh": ["h2"], "returning": [],
            "skewed": [], "observer_ok": True, "observer_reason": "", "maintenance": {}, "maintenance_expired": {},
            "fenced": {}, "samples": 3, "hosts": hosts,
            "_ansible_delegated_vars": {"ansible_delegated_host": "localhost", "ansible_host": "127.0.0.1"}}


def investigate(host="h1", **evidence):
    """host_investigate's result, made by the real decision engine from a dead host's evidence."""
    doc = {"host": host, "cluster": "prod-a", "observer": {"ok": True}, "mgmt": {"reachable": False},
           "heartbeat": {"status": "stale", "age": 20.0}, "neighbors": {"reachable": 0, "unreachable": 1},
           "bmc": {"power": "on", "error": None}, "disk_activity": "idle"}
    doc.update(evidence)
    result = decide([doc], {"prod-a": {"size": 3, "fenced": 0}}, effective_policy({}), T0)
    return dict(result, changed=False)


def fence(fenced=True, **extra):
    result = {"changed": True, "state": "off", "action": "off", "fenced": fenced, "confirmations": 3 if fenced else 0,
              "powerstate": {"before": "on", "after": "off" if fenced else "on"}, "elapsed": 2.1,
              "invocation": {"module_args": {"address": "192.0.2.11", "username": "admin", "password": SECRET,
                                             "kg": SECRET, "state": "off"}}}
    result.update(extra)
    return result


def evacuate(host="h1", running=None, **extra):
    # The journal times detection by its own clock: the VM runs 40 s after that, its host's heartbeat is 20 s old.
    running = time.time() + 40.0 if running is None else running
    result = {"changed": True, "failed_hosts": [host], "opened": [host], "closed": [host], "owner": "watchdog/1",
              "owed": {host: {"owed": 0, "claimed": 0, "started": 0, "verified": 1, "unplaced": 0, "failed": 0,
                              "abandoned": 0, "moved": 0}},
              "transitions": [{"host": host, "vm": "db1", "uuid": "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e", "from": "owed",
                               "to": "verified", "target": "h2", "reason": "", "attempts": 1}],
              "attempts": 1, "interrupted": [], "unreadable": [],
              "vms": [{"uuid": "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e", "name": "db1", "failed_host": host,
                       "status": "started", "host": "h2", "reason": "", "timestamps": {"running": running},
                       "libvirt": {"uri": "qemu+ssh://root@h2/system", "auth": {"token": SECRET, "bmc_password": SECRET}}}]}
    result.update(extra)
    return result


def run(callback, *steps, stats=None):
    """Feed ``(hook, module, host, result)`` steps to the callback, then end the play."""
    for hook, module, host, result in steps:
        if hook == "ok":
            callback.v2_runner_on_ok(FakeResult(module, host, result))
        else:
            callback.v2_runner_on_failed(FakeResult(module, host, result), ignore_errors=True)
    callback.v2_playbook_on_stats(stats or FakeStats())


def recovered_host(callback):
    run(callback, ("ok", "kvm_heartbeat", "h2", heartbeat()), ("ok", "host_investigate", "h2", investigate()),
        ("ok", "ipmi_power", "h1", fence()), ("ok", "vm_evacuate", "h1", evacuate()))


# ----------------------------------------------------------------------------------------- scrub


def test_scrub_drops_invocations_and_secret_keys_at_any_depth():
    dirty = {
        "invocation": {"module_args": {"password": SECRET}},
        "bmc_password": SECRET, "PASSWORD": SECRET, "kg": SECRET, "token": SECRET, "api_token": SECRET,
        "passwd": SECRET, "client_secret": SECRET, "kvmha_bmc_password": SECRET,
        "hosts": {"h1": {"bmc": {"password": SECRET, "power": "on"}, "vms": [{"name": "g1", "token": SECRET}]}},
        "list": [[{"kg": SECRET}], {"deep": [{"Secret": SECRET}]}],
        "kept": {"tokens_total": 3, "background": "kg is a unit", "power": "on"},
    }
    clean = journal.scrub(dirty)
    assert SECRET not in json.dumps(clean)
    assert clean == {"hosts": {"h1": {"bmc": {"power": "on"}, "vms": [{"name": "g1"}]}},
                     "list": [[{}], {"deep": [{}]}],
                     "kept": {"tokens_total": 3, "background": "kg is a unit", "power": "on"}}
    assert dirty["bmc_password"] == SECRET, "scrub returns a copy and leaves the result alone"


@pytest.mark.parametrize("key", ["ansible_ssh_pass", "ansible_become_pass", "become_pass", "ansible_password",
                                 "ansible_become_password", "bmcPassword", "apiToken", "X-Auth-Token", "BMC_PASSWORD", "Passphrase"])
def test_scrub_knows_every_spelling_of_a_password(key):
    """ansible's own ansible_ssh_pass/ansible_become_pass (which _ansible_delegated_vars carries for a task delegated
    over SSH) and camelCase keys: a key whose last word is a secret word, however it is spelt."""
    assert SECRET not in json.dumps(journal.scrub({"_ansible_delegated_vars": {key: SECRET}}))


@pytest.mark.parametrize("key", ["tokens_total", "password_file", "ansible_ssh_private_key_file", "passes", "kgs", "bypass",
                                 "compass_heading", "secretary"])
def test_scrub_keeps_keys_that_only_contain_a_secret_word(key):
    assert journal.scrub({key: "kept"}) == {key: "kept"}


def test_no_secret_reaches_any_file_of_the_journal(journal_dir):
    callback = new_callback(journal_dir)
    secret_vars = {"kvmha_journal": "remediate", "kvmha_bmc_password": SECRET}
    run(callback,
        ("ok", "kvm_heartbeat", "h2", dict(heartbeat(), token=SECRET)),
        ("ok", "host_investigate", "h2", investigate()),
        ("failed", "ipmi_power", "h1", fence(fenced=False, failed=True, error_kind="confirm_timeout",
                                             msg="power off was sent but not confirmed")),
        ("ok", "vm_evacuate", "h1", evacuate()),
        ("failed", "neighbor_ping", "h3", {"msg": "no answer", "invocation": {"module_args": {"token": SECRET}}}),
        ("failed", "cluster_lease", "h2", {"msg": "store read-only", "kg": SECRET}))
    callback.v2_runner_on_failed(FakeResult("ansible.builtin.systemd_service", "h3", {"msg": "unit not found",
                                                                                      "password": SECRET}, secret_vars))
    written = every_file(journal_dir)
    assert {"events.jsonl", "kvmha.prom", "metrics-state.json"} <= set(written)
    assert any(path.startswith("incidents") for path in written)
    leaks = [path for path, text in written.items() if SECRET in text]
    assert not leaks, "the secret reached %s" % leaks


# ----------------------------------------------------------------------------------------- counters and metrics


def test_counters_add_up_across_runs_in_the_state_file_and_the_metrics(journal_dir):
    recovered_host(new_callback(journal_dir))
    state = json.loads((journal_dir / "metrics-state.json").read_text())
    assert state == {"fence|prod-a|ok": 1, "recover|prod-a|ok": 1, "vm_recovery_attempt|prod-a|all": 1}
    second = new_callback(journal_dir)
    run(second, ("ok", "kvm_heartbeat", "h2", heartbeat(suspects=("h3",))), ("ok", "host_investigate", "h2", investigate("h3")),
        ("failed", "ipmi_power", "h3", fence(fenced=False, failed=True, error_kind="timeout", msg="BMC did not answer")))
    state = json.loads((journal_dir / "metrics-state.json").read_text())
    assert state == {"fence|prod-a|ok": 1, "fence|prod-a|failed": 1, "recover|prod-a|ok": 1,
                     "vm_recovery_attempt|prod-a|all": 1}
    prom = (journal_dir / "kvmha.prom").read_text()
    for line in ('kvmha_actions_total{action="fence",cluster="prod-a",result="ok"} 1',
                 'kvmha_actions_total{action="fence",cluster="prod-a",result="failed"} 1',
                 'kvmha_actions_total{action="recover",cluster="prod-a",result="ok"} 1',
                 'kvmha_vm_recovery_attempts_total{cluster="prod-a"} 1',
                 'kvmha_watchdog_last_run_success{cluster="prod-a"} 0',
                 'kvmha_host_verdict{cluster="prod-a",host="h3",verdict="SUSPECT"} 1',
                 'kvmha_suspects{cluster="prod-a"} 1'):
        assert line in prom.splitlines(), line
    assert 'host="h1"' not in prom, "gauges describe the last run only"


def test_the_metrics_file_is_valid_exposition_text(journal_dir):
    recovered_host(new_callback(journal_dir))
    lines = (journal_dir / "kvmha.prom").read_text().splitlines()
    typed = {line.split()[2] for line in lines if line.startswith("# TYPE")}
    for line in lines:
        if line.startswith("#"):
            assert line.split()[1] in ("HELP", "TYPE")
            continue
        name, value = line.rsplit(" ", 1)
        float(value)
        assert name.split("{")[0] in typed, "a sample without a TYPE line: %s" % line
    rto = [line for line in lines if line.startswith('kvmha_last_rto_seconds{cluster="prod-a",host="h1"} ')]
    assert len(rto) == 1 and float(rto[0].split()[-1]) == pytest.approx(60.0, abs=5)  # 40 s after detection + 20 s age


def test_a_metrics_file_elsewhere_keeps_the_state_in_the_journal(journal_dir, tmp_path):
    prom = tmp_path / "textfile" / "kvmha.prom"
    recovered_host(new_callback(journal_dir, metrics_file=str(prom)))
    assert prom.exists() and (journal_dir / "metrics-state.json").exists()
    assert not (journal_dir / "kvmha.prom").exists()


@pytest.mark.parametrize("state", ["{not json", '["a list"]', '{"fence|prod-a|ok": "7", "bad-key": 3, "fence|x|ok": 2}'])
def test_a_damaged_state_file_keeps_only_well_formed_counters(journal_dir, state):
    journal_dir.mkdir()
    (journal_dir / "metrics-state.json").write_text(state)
    recovered_host(new_callback(journal_dir))
    counters = json.loads((journal_dir / "metrics-state.json").read_text())
    kept = {"fence|x|ok": 2} if "fence|x|ok" in state else {}
    assert counters == dict(kept, **{"fence|prod-a|ok": 1, "recover|prod-a|ok": 1, "vm_recovery_attempt|prod-a|all": 1})


def test_a_run_that_is_not_a_watchdog_run_streams_events_only(journal_dir):
    callback = new_callback(journal_dir)
    run(callback, ("ok", "host_mark", "h1", {"changed": True, "mark": {"name": "h1", "owner": "ops", "released": False}}))
    assert set(every_file(journal_dir)) == {"events.jsonl"}
    assert [e["event"] for e in events(journal_dir)] == ["mark"]


def test_an_operators_confirm_off_is_journalled_with_its_kind_operator_and_reason(journal_dir):
    callback = new_callback(journal_dir)
    mark = {"name": "h1", "owner": "alice", "released": False, "data": {"reason": "cords pulled", "seq": 4}}
    run(callback, ("ok", "host_mark", "h1", {"changed": True, "kind": "confirmed_off", "mark": mark}))
    event = events(journal_dir)[0]
    assert (event["event"], event["mark"], event["owner"], event["reason"]) == ("mark", "confirmed_off", "alice", "cords pulled")


# ----------------------------------------------------------------------------------------- incident records


def test_the_record_of_a_recovered_host(journal_dir):
    recovered_host(new_callback(journal_dir))
    record = incident(journal_dir, "h1")
    assert (record["verdict"], record["rule"], record["action"]) == ("SUSPECT", "R8", "fence")
    assert record["final_state"] == "DOWN (fenced)" and record["storm_guard"] is False and record["interlocks"] == []
    assert [(a["action"], a["ok"]) for a in record["actions"]] == [("fence", True), ("recover", True)]
    assert record["actions"][0]["result"] == {"powerstate": {"before": "on", "after": "off"}, "fenced": True,
                                              "confirmations": 3, "elapsed": 2.1}
    assert record["recovery"] == {"states": evacuate()["owed"]["h1"], "outcome": "recovered"}
    assert record["outcome"] == "fence ok, recover ok, 1 verified"
    assert record["rto_s"] == pytest.approx(60.0, abs=5)  # a bound on the arithmetic, not on the speed of the test
    assert {"last_heartbeat", "detected", "investigated", "fenced", "vm_running:db1"} == set(record["timestamps"])
    assert record["run"]["ok"] is True and record["run"]["cluster"] == "prod-a"
    assert record["run"]["observation"]["suspects"] == ["h1"] and record["run"]["observation"]["observer"] == "localhost"
    assert record["heartbeat"]["status"] == "stale" and record["evidence"]["bmc"]["power"] == "on"
    assert [e["event"] for e in events(journal_dir)] == [
        "run_start", "suspect", "decision", "fence", "vm_transition", "vm_started", "recover", "run_end"]


def test_detection_and_the_last_heartbeat_are_dated_by_the_results_durations(journal_dir):
    """Issue 17: the watch may go on after it found the suspect (waiting for overdue hosts, and for the answers of
    the SSH servers it asked at the first missed beat): the suspect was detected `settled` seconds before the result
    came, and its age is from the last sample, `since_last_sample` before it - durations, since the observer's clock
    may be another host's. Bad durations count as 0."""
    callback = new_callback(journal_dir)
    before = time.time()
    run(callback, ("ok", "kvm_heartbeat", "h2", dict(heartbeat(age=7.0), settled=1.5, since_last_sample=1.25)),
        ("ok", "host_investigate", "h2", investigate()))
    after = time.time()
    stamps = {k: datetime.datetime.fromisoformat(v).timestamp() for k, v in incident(journal_dir, "h1")["timestamps"].items()}
    assert before - 1.5 - 0.002 <= stamps["detected"] <= after - 1.5 + 0.002
    assert before - 8.25 - 0.002 <= stamps["last_heartbeat"] <= after - 8.25 + 0.002
    assert [seconds(v) for v in (2, 0.5, -1, float("nan"), float("inf"), True, "3", None)] == [2.0, 0.5, 0, 0, 0, 0, 0, 0]


def test_the_record_of_a_failed_fence(journal_dir):
    callback = new_callback(journal_dir)
    run(callback, ("ok", "kvm_heartbeat", "h2", heartbeat()), ("ok", "host_investigate", "h2", investigate()),
        ("failed", "ipmi_power", "h1", fence(fenced=False, failed=True, error_kind="confirm_timeout",
                                             msg="power off was sent but the chassis still reads on")),
        stats=FakeStats({"h1": 1}))
    record = incident(journal_dir, "h1")
    assert [(a["action"], a["ok"], a["detail"]) for a in record["actions"]] == [
        ("fence", False, "power off was sent but the chassis still reads on")]
    assert record["actions"][0]["result"]["error_kind"] == "confirm_timeout"
    assert record["final_state"] == "SUSPECT" and record["outcome"] == "fence FAILED" and record["rto_s"] is None
    assert record["run"]["ok"] is False
    assert callback.failures == ["h1: fence failed (power off was sent but the chassis still reads on)"]
    end = events(journal_dir)[-1]
    assert end["event"] == "run_end" and end["ok"] is False and end["incidents"] == ["h1"]


def test_a_fence_through_fence_levels_names_the_level_and_its_devices(journal_dir):
    levels = [{"level": 1, "devices": ["bmc"], "outcome": "failed",
               "attempts": [{"device": "bmc", "fenced": False, "error_kind": "unreachable"}]},
              {"level": 2, "devices": ["pdu_a", "pdu_b"], "outcome": "fenced", "attempts": []}]
    callback = new_callback(journal_dir)
    run(callback, ("ok", "kvm_heartbeat", "h2", heartbeat()), ("ok", "host_investigate", "h2", investigate()),
        ("ok", "host_fence", "h1", {"changed": True, "fenced": True, "level": 2, "devices": ["pdu_a", "pdu_b"],
                                    "levels": levels, "power": "off", "elapsed": 3.2}))
    record = incident(journal_dir, "h1")
    assert [(a["action"], a["ok"], a["detail"]) for a in record["actions"]] == [
        ("fence", True, "power off confirmed (level 2: pdu_a, pdu_b)")]
    assert record["actions"][0]["result"]["levels"] == levels and "fenced" in record["timestamps"]
    failed = new_callback(journal_dir / "failed")
    run(failed, ("ok", "kvm_heartbeat", "h2", heartbeat()), ("ok", "host_investigate", "h2", investigate()),
        ("failed", "host_fence", "h1", {"fenced": False, "level": None, "devices": [], "levels": levels[:1],
                                        "error_kind": "not_fenced", "msg": "no fence level confirmed the host off"}))
    assert failed.failures == ["h1: fence failed (no fence level confirmed the host off)"]


def test_a_failed_task_of_another_module_makes_the_run_fail_without_an_action(journal_dir):
    callback = new_callback(journal_dir)
    run(callback, ("ok", "kvm_heartbeat", "h2", heartbeat(suspects=())),
        ("failed", "cluster_lease", "h2", {"msg": "the store is read-only"}))
    assert callback.failures == ["h2: cluster_lease failed: the store is read-only"]
    assert 'kvmha_watchdog_last_run_success{cluster="prod-a"} 0' in (journal_dir / "kvmha.prom").read_text()
    assert not (journal_dir / "incidents").exists()


# A failed loop as ansible-core 2.19 hands it to a callback (recorded: host_mark in a loop over two hosts, the first
# written, the second refused by its store), with the cause the issue saw - _storefile's write error, errno 28.
FULL_STORE = "cannot write /srv/kvmha/kvmha/maintenance/h2/1: No space left on device"
LOOP_RESULT = {
    "results": [
        {"changed": True, "mark": {"name": "h1", "generation": 1, "owner": "alice", "ttl": 14400.0, "released": False,
                                   "data": {"reason": "firmware"}},
         "invocation": {"module_args": {"host": "h1", "kind": "maintenance", "owner": "alice", "store_path": "/srv/kvmha"}},
         "failed": False, "_ansible_no_log": False, "item": {"host": "h1", "store": "/srv/kvmha"},
         "ansible_loop_var": "item", "_ansible_item_label": "h1"},
        {"error_kind": "store", "changed": False, "failed": True, "msg": FULL_STORE,
         "invocation": {"module_args": {"host": "h2", "kind": "maintenance", "owner": "alice", "store_path": "/srv/kvmha"}},
         "exception": "(traceback unavailable)", "_ansible_no_log": False, "item": {"host": "h2", "store": "/srv/kvmha"},
         "ansible_loop_var": "item", "_ansible_item_label": "h2"},
    ],
    "changed": True,
    "msg": "One or more items failed",
}


def test_a_failed_loop_names_the_cause_of_its_failed_items_in_the_summary_and_the_event(journal_dir):
    """Issue 16: a full store showed only "host_mark failed: One or more items failed" in the run summary."""
    callback = new_callback(journal_dir)
    run(callback, ("ok", "kvm_heartbeat", "localhost", heartbeat(suspects=())), ("failed", "host_mark", "localhost", LOOP_RESULT))
    assert callback.failures == ["localhost: host_mark failed: One or more items failed: h2: " + FULL_STORE]
    failed = [e for e in events(journal_dir) if e["event"] == "task_failed"]
    assert [e["msg"] for e in failed] == ["One or more items failed: h2: " + FULL_STORE]


def test_a_check_mode_evacuation_plans_and_records_no_recovery(journal_dir):
    planned = evacuate(opened=[], transitions=[], owed={}, attempts=0, closed=[])
    planned["vms"][0].update(status="planned", timestamps={})
    callback = new_callback(journal_dir)
    run(callback, ("ok", "kvm_heartbeat", "h2", heartbeat()),
        ("ok", "host_investigate", "h2", investigate(bmc={"power": "off"})), ("ok", "vm_evacuate", "h1", planned))
    record = incident(journal_dir, "h1")
    assert (record["verdict"], record["action"]) == ("DOWN", "recover")
    assert record["actions"] == [] and record["vms"] == [] and record["outcome"] == "-"
    assert record["run"]["ok"] is True
    assert json.loads((journal_dir / "metrics-state.json").read_text()) == {}


def test_a_check_mode_fence_is_not_a_failed_fence(journal_dir):
    callback = new_callback(journal_dir)
    callback.v2_runner_on_ok(FakeResult("kvm_heartbeat", "h2", heartbeat(), check_mode=True))
    callback.v2_runner_on_ok(FakeResult("host_investigate", "h2", investigate(), check_mode=True))
    dry = fence(fenced=False, powerstate={"before": "on", "after": "off"})
    callback.v2_runner_on_ok(FakeResult("ipmi_power", "h1", dry, check_mode=True))
    callback.v2_playbook_on_stats(FakeStats())
    assert callback.failures == [] and callback.run["ok"] is True
    assert "fence|prod-a|failed" not in json.loads((journal_dir / "metrics-state.json").read_text())
    assert incident(journal_dir, "h1")["actions"] == []  # nothing was sent: no fence, failed or done
    planned = [e for e in events(journal_dir) if e["event"] == "fence_planned"]
    assert [(e["host"], e["command"], e["powerstate"]["after"]) for e in planned] == [("h1", "off", "off")]


def test_a_fence_outside_check_mode_that_is_not_confirmed_still_fails_the_run(journal_dir):
    callback = new_callback(journal_dir)
    callback.v2_runner_on_ok(FakeResult("kvm_heartbeat", "h2", heartbeat()))
    callback.v2_runner_on_ok(FakeResult("host_investigate", "h2", investigate()))
    callback.v2_runner_on_ok(FakeResult("ipmi_power", "h1", fence(fenced=False, powerstate={"before": "on", "after": "on"})))
    callback.v2_playbook_on_stats(FakeStats())
    assert callback.run["ok"] is False and [e["event"] for e in events(journal_dir)].count("fence_planned") == 0


def test_a_fence_refused_for_maintenance_is_not_a_failed_fence(journal_dir):
    """The power module's fence token found the host in maintenance: nothing was sent, on purpose."""
    callback = new_callback(journal_dir)
    callback.v2_runner_on_ok(FakeResult("kvm_heartbeat", "h2", heartbeat()))
    callback.v2_runner_on_ok(FakeResult("host_investigate", "h2", investigate()))
    refused = dict(fence(fenced=False, powerstate={"before": "unknown", "after": "unknown"}), refused="h1 is in maintenance (by ops: bios)")
    callback.v2_runner_on_ok(FakeResult("ipmi_power", "h1", refused))
    callback.v2_playbook_on_stats(FakeStats())
    assert callback.failures == [] and callback.run["ok"] is True
    assert incident(journal_dir, "h1")["actions"] == []
    assert [(e["host"], e["reason"]) for e in events(journal_dir) if e["event"] == "fence_refused"] == [
        ("h1", "h1 is in maintenance (by ops: bios)")]


def test_a_run_that_finished_an_interrupted_run(journal_dir):
    gone = {"host": "h1", "owner": "watchdog/812/20261203T101500-1234", "started": T0 - 300, "vms": {"db1": "claimed"}}
    callback = new_callback(journal_dir)
    run(callback, ("ok", "kvm_heartbeat", "h2", heartbeat(suspects=())),
        ("ok", "vm_evacuate", "h2", evacuate(interrupted=[gone], opened=[])))
    record = incident(journal_dir, "h1")
    assert record["interrupted"] == gone
    assert record["outcome"].startswith("finished the work of the interrupted run watchdog/812/20261203T101500-1234, ")
    assert record["verdict"] is None and record["final_state"] == "DOWN (owed recovery)"
    assert ("interrupted_run", "h1", {"db1": "claimed"}) in [(e["event"], e.get("host"), e.get("vms")) for e in events(journal_dir)]


def test_a_watchdog_run_cut_short_leaves_its_events_and_no_record(journal_dir):
    """ansible killed mid-run (no v2_playbook_on_stats): what happened so far is in events.jsonl, already on disk;
    no half-made incident record and no metrics that would claim a finished run."""
    callback = new_callback(journal_dir)
    callback.v2_runner_on_ok(FakeResult("kvm_heartbeat", "h2", heartbeat()))
    callback.v2_runner_on_ok(FakeResult("host_investigate", "h2", investigate()))
    callback.v2_runner_on_ok(FakeResult("ipmi_power", "h1", fence()))
    assert set(every_file(journal_dir)) == {"events.jsonl"}
    assert [e["event"] for e in events(journal_dir)] == ["run_start", "suspect", "decision", "fence"]
    assert all(e["run"] == callback.run["id"] for e in events(journal_dir))


def test_a_remediation_is_an_action_of_the_host(journal_dir):
    callback = new_callback(journal_dir)
    callback.v2_runner_on_ok(FakeResult("kvm_heartbeat", "h2", heartbeat()))
    callback.v2_runner_on_ok(FakeResult("ansible.builtin.systemd_service", "h1", {"changed": True},
                                        {"kvmha_journal": "remediate"}))
    callback.v2_runner_on_ok(FakeResult("ansible.builtin.debug", "h1", {"msg": "not ours"}))
    callback.v2_playbook_on_stats(FakeStats())
    record = incident(journal_dir, "h1")
    assert [(a["action"], a["ok"], a["detail"]) for a in record["actions"]] == [("remediate", True, "heartbeat writer restarted")]
    assert json.loads((journal_dir / "metrics-state.json").read_text()) == {"remediate|prod-a|ok": 1}
