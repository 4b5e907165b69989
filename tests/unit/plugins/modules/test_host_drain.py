# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_drain against libvirt's real test driver, over heartbeat records on a real store; its pure part
(module_utils/_drain) exhaustively. The source is test:///default (shared by the connections of the process while the
``source`` fixture holds one); each target is a test:///<node file> of its own. The test driver cannot live-migrate,
so here every migration fails the way a real refused one does - the VM must then be reported kept and still run on
the source. Real migrations between two libvirtds run in tests/e2e/test_operations.py on the lab."""

from __future__ import annotations

import itertools
import os
import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _drain
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._domainxml import HA_NAMESPACE
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import build_record, encode_record, write_atomic
from ansible_collections.kvmha.cluster.plugins.module_utils._placement import place
from ansible_collections.kvmha.cluster.plugins.modules import host_drain
from ansible_collections.kvmha.cluster.tests._require import require_module

libvirt = require_module("libvirt", "the venv's libvirt binding (libvirt-python, built by scripts/setup.sh)")

NODE = """<node><cpu><mhz>1000</mhz><model>i686</model><active>8</active><nodes>1</nodes><sockets>1</sockets>
<cores>8</cores><threads>1</threads></cpu><memory>8388608</memory></node>"""
DOMAIN = ("<domain type='test'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>%d</memory><vcpu>%d</vcpu>"
          "<os><type>hvm</type></os><metadata>%s</metadata></domain>")
MARKER = "<kvmha:ha xmlns:kvmha='%s' priority='%d' group='%s'/>"


class Source:
    """The shared test:///default host: the HA domains a test runs on it (removed at the end)."""

    def __init__(self):
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.conn = libvirt.open("test:///default")
        self.made = []

    def run(self, name, mem=64, cpus=1, priority=50, group="", ha=True):
        vm_uuid = str(uuid.uuid4())
        marker = MARKER % (HA_NAMESPACE, priority, group) if ha else ""
        dom = self.conn.defineXML(DOMAIN % (name, vm_uuid, mem, cpus, marker))
        dom.create()
        self.made.append(vm_uuid)
        return vm_uuid

    def state(self, vm_uuid):
        return self.conn.lookupByUUIDString(vm_uuid).state()[0]

    def close(self):
        for vm_uuid in self.made:
            dom = self.conn.lookupByUUIDString(vm_uuid)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        self.conn.close()


@pytest.fixture
def source():
    shared = Source()
    yield shared
    shared.close()


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    os.makedirs(path / "kvmha" / "hosts")
    return path


def record(store, host, mem=1024, cpus=8, groups=()):
    vms = [{"uuid": str(uuid.uuid4()), "name": "%s-vm%d" % (host, i), "priority": 50, "memory_mib": 1, "vcpus": 1,
            "disks": [], "group": group, "ha": True} for i, group in enumerate(groups)]
    data = build_record(host, "boot-" + host, 3, time.time(), 2.0, {"armed": False, "deadline_s": 60},
                        {"mem_free_mib": mem, "vcpus_free": cpus}, vms)
    write_atomic(os.path.join(store, "kvmha", "hosts", host + ".json"), encode_record(data))


def target(tmp_path, host, uri=None):
    node = tmp_path / ("node-%s.xml" % host)
    node.write_text(NODE)
    return {"host": host, "uri": uri or "test://" + str(node), "address": "198.51.100.250"}


def drain(run_module, store, targets, check_mode=False, **over):
    args = dict({"store_path": str(store), "host": "h1", "uri": "test:///default", "targets": targets}, **over)
    return run_module(host_drain, args, check_mode=check_mode)


def test_check_mode_plans_by_priority_and_room_and_moves_nothing(run_module, source, store, tmp_path):
    low = source.run("low", priority=10)
    high = source.run("high", priority=90)
    big = source.run("big", mem=4096)
    source.run("plain", ha=False)
    record(store, "h2", mem=100)
    record(store, "h3", mem=100)
    result = drain(run_module, store, [target(tmp_path, "h2"), target(tmp_path, "h3"), target(tmp_path, "h4")],
                   check_mode=True)
    assert result["changed"] is True and not result.get("failed"), result
    assert [(vm["name"], vm["host"]) for vm in result["plan"]] == [("high", "h2"), ("low", "h3")]
    assert [vm["name"] for vm in result["kept"]] == ["big"] and "memory" in result["kept"][0]["reason"]
    assert result["excluded"] == {"h4": "no heartbeat file"} and result["moved"] == []
    for vm_uuid in (low, high, big):
        assert source.state(vm_uuid) == libvirt.VIR_DOMAIN_RUNNING


def test_a_given_plan_is_carried_out_as_planned_and_the_other_vms_are_left_alone(run_module, source, store, tmp_path):
    """maintenance.yml plans once and gives each entry its own run: the entry goes where the whole host's plan put
    it, even though the target's record now says it has no room (its capacity went to the earlier entries)."""
    first = source.run("first", priority=90)
    second = source.run("second", priority=10)
    record(store, "h2", mem=4096)
    record(store, "h3", mem=4096)
    targets = [target(tmp_path, "h2"), target(tmp_path, "h3")]
    plan = drain(run_module, store, targets, check_mode=True)["plan"]
    assert [(vm["name"], vm["host"]) for vm in plan] == [("first", "h2"), ("second", "h3")]
    record(store, "h3", mem=1)
    result = drain(run_module, store, targets, check_mode=True, plan=plan[1:])
    assert [(vm["name"], vm["host"]) for vm in result["plan"]] == [("second", "h3")] and result["kept"] == [], result
    gone = dict(plan[0], uuid=str(uuid.uuid4()))  # moved or stopped since: nothing left to do
    result = drain(run_module, store, [targets[0]], check_mode=True, plan=[gone, plan[1]])
    assert result["plan"] == [] and result["changed"] is False
    assert [vm["name"] for vm in result["kept"]] == ["second"] and "no longer a usable target" in result["kept"][0]["reason"]
    for vm_uuid in (first, second):
        assert source.state(vm_uuid) == libvirt.VIR_DOMAIN_RUNNING


def test_a_plan_entry_without_uuid_or_host_is_refused(run_module, source, store, tmp_path):
    source.run("web")
    record(store, "h2")
    result = drain(run_module, store, [target(tmp_path, "h2")], plan=[{"name": "web", "host": "h2"}])
    assert result["failed"] and result["error_kind"] == "invalid_input" and "uuid and host" in result["msg"], result


def test_an_anti_affinity_group_on_every_target_keeps_the_vm(run_module, source, store, tmp_path):
    source.run("db2", group="db")
    record(store, "h2", groups=["db"])
    record(store, "h3", groups=["", "db"])
    result = drain(run_module, store, [target(tmp_path, "h2"), target(tmp_path, "h3")], check_mode=True)
    assert result["plan"] == [] and result["changed"] is False
    assert "anti-affinity group 'db'" in result["kept"][0]["reason"]


def test_a_refused_migration_keeps_the_vm_running_on_the_source(run_module, source, store, tmp_path):
    vm_uuid = source.run("web")
    record(store, "h2")
    result = drain(run_module, store, [target(tmp_path, "h2")])
    assert not result.get("failed") and result["changed"] is False, result
    assert result["moved"] == [] and result["unknown"] == []
    assert result["kept"][0]["name"] == "web" and "the migration to h2 failed" in result["kept"][0]["reason"]
    assert source.state(vm_uuid) == libvirt.VIR_DOMAIN_RUNNING


def test_an_unreachable_target_keeps_its_vm_and_the_others_are_still_tried(run_module, source, store, tmp_path):
    source.run("a", priority=90)
    source.run("b", priority=10)
    record(store, "h2", mem=64)
    record(store, "h3", mem=64)
    gone = target(tmp_path, "h2", uri="test://" + str(tmp_path / "no-such-node.xml"))
    result = drain(run_module, store, [gone, target(tmp_path, "h3")])
    reasons = dict((vm["name"], vm["reason"]) for vm in result["kept"])
    assert "its target h2 cannot be reached" in reasons["a"] and "the migration to h3 failed" in reasons["b"]


def test_the_deadline_keeps_the_vms_whose_turn_did_not_come(run_module, source, store, tmp_path):
    source.run("late")
    record(store, "h2")
    result = drain(run_module, store, [target(tmp_path, "h2")], deadline_s=1e-9)
    assert "deadline_s" in result["kept"][0]["reason"] and result["moved"] == []


def test_a_vm_seen_active_on_both_hosts_fails_the_task_and_nothing_is_destroyed(run_module, source, store, tmp_path):
    # The "target" is the source's own shared test host: after the refused migration the VM is active on both.
    vm_uuid = source.run("twin")
    record(store, "h2")
    result = drain(run_module, store, [dict(target(tmp_path, "h2"), uri="test:///default")])
    assert result["failed"] and result["error_kind"] == "unknown", result
    assert result["unknown"][0]["name"] == "twin" and "active on the source" in result["unknown"][0]["reason"]
    assert source.state(vm_uuid) == libvirt.VIR_DOMAIN_RUNNING


def test_the_drained_host_is_never_its_own_target(run_module, source, store, tmp_path):
    source.run("solo")
    record(store, "h1")
    result = drain(run_module, store, [target(tmp_path, "h1")], check_mode=True)
    assert result["excluded"] == {"h1": "the host being drained"} and result["plan"] == []


def test_bad_options_are_refused_before_anything_is_read(run_module, store, tmp_path):
    assert drain(run_module, store, [target(tmp_path, "h2")], vm_timeout_s=0)["error_kind"] == "invalid_input"
    hostile = dict(target(tmp_path, "h2"), host="../h2")
    assert drain(run_module, store, [hostile])["error_kind"] == "invalid_input"


# ---------------------------------------------------------------------------------------------------- pure part

STATES = (None, "nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended", "unknown")


@pytest.mark.parametrize("source_state,target_state", list(itertools.product(STATES, STATES)))
def test_settle_reports_moved_only_when_the_vm_is_active_on_the_target_alone(source_state, target_state):
    outcome, reason = _drain.settle(source_state, target_state)
    on_source, on_target = source_state in _drain.ACTIVE_STATES, target_state in _drain.ACTIVE_STATES
    assert (outcome == "moved") == (on_target and not on_source)
    assert (outcome == "kept") == (on_source and not on_target)
    assert (outcome == "unknown") == (on_source == on_target) and (outcome != "unknown" or reason)
    assert (source_state == "paused" and outcome == "kept") == ("virsh resume" in reason)


def test_migration_uri_brackets_ipv6_and_needs_an_address():
    assert host_drain.migration_uri({"host": "h2", "uri": "qemu+ssh://root@h2/system"}) == "tcp://h2"
    assert host_drain.migration_uri({"host": "h2", "uri": "x", "address": "2001:db8::2"}) == "tcp://[2001:db8::2]"
    with pytest.raises(InvalidInput, match="targets.*address"):
        host_drain.migration_uri({"host": "h2", "uri": "qemu:///system"})


@given(st.dictionaries(st.sampled_from(["h2", "h3", "h4"]),
                       st.fixed_dictionaries({"capacity": st.fixed_dictionaries({"mem_free_mib": st.integers(-5, 600),
                                                                                 "vcpus_free": st.integers(-1, 9)}),
                                              "vms": st.lists(st.fixed_dictionaries({"group": st.sampled_from(["", "a", "b"])}),
                                                              max_size=3)})),
       st.lists(st.tuples(st.integers(0, 100), st.integers(0, 300), st.sampled_from(["", "a", "b"])), max_size=6))
def test_the_plan_never_overfills_a_target_nor_puts_a_group_on_a_host_that_runs_it(records, sizes):
    vms = [{"uuid": "u%d" % i, "name": "v%d" % i, "priority": p, "memory_mib": m, "vcpus": 1, "group": g}
           for i, (p, m, g) in enumerate(sizes)]
    plan = place(vms, [_drain.target_host(host, rec) for host, rec in sorted(records.items())])
    assert len(plan["placements"]) + len(plan["unplaced"]) == len(vms)
    for host, rec in records.items():
        placed = [vm for vm in plan["placements"] if vm["host"] == host]
        assert sum(vm["memory_mib"] for vm in placed) <= max(0, rec["capacity"]["mem_free_mib"])
        running = set(vm["group"] for vm in rec["vms"]) - {""}
        groups = [vm["group"] for vm in placed if vm["group"]]
        assert not running & set(groups) and len(groups) == len(set(groups))


def test_a_record_without_capacity_is_that_targets_clear_error():
    with pytest.raises(InvalidInput, match="h3"):
        _drain.target_host("h3", {"vms": []})
