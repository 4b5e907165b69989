# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_evacuate against libvirt's real built-in test driver (no mocks of libvirt).

Each target gets its own ``test:///<node file>`` URI, which gives a fresh, independent driver state per
connection. ``test:///default`` is shared by every connection of the process while one stays open; the tests
that need state to survive between two module runs hold such a connection themselves.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._claims import ClaimBook, claims_dir
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, KvmhaError, StoreError
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import build_record, encode_record, write_atomic
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import LibvirtClient
from ansible_collections.kvmha.cluster.plugins.modules import vm_evacuate
from ansible_collections.kvmha.cluster.plugins.modules.vm_evacuate import ARGUMENT_SPEC, Evacuation

libvirt = pytest.importorskip("libvirt")

RETURNED = yaml.safe_load(vm_evacuate.RETURN)

NODE = """<node><cpu><mhz>1000</mhz><model>i686</model><active>8</active><nodes>1</nodes><sockets>1</sockets>
<cores>8</cores><threads>1</threads></cpu><memory>8388608</memory></node>"""


class Cluster:
    """A store with heartbeat records and domain XML, and test-driver URIs for the targets."""

    def __init__(self, root):
        self.root = root
        self.store = str(root / "store")
        os.makedirs(os.path.join(self.store, "kvmha", "hosts"))
        os.makedirs(os.path.join(self.store, "kvmha", "vms"))
        self.vms = {}

    def vm(self, name, priority=50, mem=64, cpus=1, group="", ha=True, xml=True):
        vm_uuid = str(uuid.uuid4())
        self.vms[name] = {"uuid": vm_uuid, "name": name, "ha": ha, "priority": priority, "memory_mib": mem,
                          "vcpus": cpus, "disks": [], "group": group}
        if xml:
            self.write_xml(name, self.domain_xml(name))
        return vm_uuid

    def domain_xml(self, name, uuid_=None):
        vm = self.vms[name]
        return ("<domain type='qemu'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>%d</memory><vcpu>%d</vcpu>"
                "<os><type arch='x86_64'>hvm</type></os><devices><video><model type='none'/></video>"
                "<memballoon model='none'/></devices></domain>" % (name, uuid_ or vm["uuid"], vm["memory_mib"], vm["vcpus"]))

    def write_xml(self, name, text):
        with open(os.path.join(self.store, "kvmha", "vms", self.vms[name]["uuid"] + ".xml"), "w") as handle:
            handle.write(text)

    def record(self, host, vms=(), mem=4096, cpus=8, boot="boot-a", state="running", ts=None):
        record = build_record(host, boot + "-" + host, 7, time.time() if ts is None else ts, 2.0, {"armed": False, "deadline_s": 60},
                              {"mem_free_mib": mem, "vcpus_free": cpus}, [self.vms[n] for n in vms], state=state)
        write_atomic(os.path.join(self.store, "kvmha", "hosts", host + ".json"), encode_record(record))

    def node_uri(self, host):
        path = self.root / ("node-%s.xml" % host)
        path.write_text(NODE)
        return "test://" + str(path)

    def params(self, targets, **over):
        """Every option with its default; failed host h1, and no wait for heartbeats (the records here are static)."""
        params = dict((k, v.get("default")) for k, v in ARGUMENT_SPEC.items())
        params.update(store_path=self.store, targets=targets, failed_hosts=["h1"], beat_timeout=0.0)
        params.update(over)
        return params


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


@pytest.fixture
def shared_default():
    """Keep test:///default alive for the test so that two module runs see the same 'host'."""
    conn = libvirt.open("test:///default")
    yield "test:///default"
    conn.close()


def by_name(result):
    return dict((vm["name"], vm) for vm in result["vms"])


def targets(cluster, *hosts):
    return [{"host": h, "uri": cluster.node_uri(h)} for h in hosts]


# ----------------------------------------------------------------------------------------- main() through Ansible


def test_check_mode_plans_and_touches_nothing(run_module, cluster):
    cluster.vm("db1", 90, group="db")
    cluster.vm("db2", 90, group="db")
    cluster.vm("web", 10)
    cluster.record("h1", ["db1", "db2", "web"])
    cluster.record("h2")
    cluster.record("h3", mem=200)
    args = cluster.params(targets(cluster, "h2", "h3"))
    result = run_module(vm_evacuate, args, check_mode=True, diff=True)
    assert result["changed"] is True and not result.get("failed")
    assert result["counts"] == {"started": 0, "planned": 3, "skipped": 0, "unplaced": 0, "failed": 0}
    assert [(p["order"], p["name"], p["host"]) for p in result["plan"]] == [(1, "db1", "h3"), (2, "db2", "h2"), (3, "web", "h3")]
    assert result["diff"] == {"before": {"vms": {"db1": "nowhere", "db2": "nowhere", "web": "nowhere"}},
                              "after": {"vms": {"db1": "h3", "db2": "h2", "web": "h3"}}}
    assert by_name(result)["db1"]["claim"] == {"action": "create", "reason": "no claim yet"}
    assert not os.path.exists(claims_dir(cluster.store))
    assert result["incident"] == "h1/boot-a-h1"
    assert set(result) >= {"failed_host", "incident", "owner", "plan", "vms", "counts", "targets", "replanned",
                           "started_at", "finished_at", "elapsed"}


def test_real_run_then_rerun_changes_nothing(run_module, cluster, shared_default):
    cluster.vm("a", 60)
    cluster.vm("b", 40)
    cluster.record("h1", ["a", "b"])
    cluster.record("h2")
    args = cluster.params([{"host": "h2", "uri": shared_default}], owner="unit-test")
    first = run_module(vm_evacuate, args, diff=True)
    assert first["changed"] is True and first["counts"]["started"] == 2
    vms = by_name(first)
    assert vms["a"]["status"] == "started" and vms["a"]["host"] == "h2" and vms["a"]["order"] == 1
    stamps = vms["a"]["timestamps"]
    assert stamps["placed"] <= stamps["claimed"] <= stamps["defined"] <= stamps["started"] <= stamps["running"]
    assert vms["a"]["claim"]["state"] == "started" and vms["a"]["claim"]["owner"] == "unit-test"
    conn = libvirt.open(shared_default)
    dom = conn.lookupByUUIDString(cluster.vms["a"]["uuid"])
    assert dom.isActive() and dom.autostart() == 0 and dom.isPersistent()
    conn.close()

    second = run_module(vm_evacuate, args, diff=True)
    assert second["changed"] is False and second["plan"] == []
    assert [v["status"] for v in second["vms"]] == ["skipped", "skipped"]
    assert by_name(second)["a"]["reason"] == "already running on h2"
    assert second["diff"]["before"] == second["diff"]["after"] == {"vms": {"a": "h2", "b": "h2"}}


def test_incomplete_evacuation_fails_with_the_full_result(run_module, cluster):
    cluster.vm("big", 90, mem=3000)
    cluster.vm("small", 10)
    cluster.record("h1", ["big", "small"])
    cluster.record("h2", mem=1000)
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2")))
    assert result["failed"] is True and result["error_kind"] == "incomplete"
    assert "1 unplaced" in result["msg"]
    vms = by_name(result)
    assert vms["big"]["status"] == "unplaced" and "no host has 3000 MiB" in vms["big"]["reason"]
    assert vms["small"]["status"] == "started" and result["changed"] is True


def test_fail_on_incomplete_false(run_module, cluster):
    cluster.vm("big", 90, mem=3000)
    cluster.record("h1", ["big"])
    cluster.record("h2", mem=1000)
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), fail_on_incomplete=False))
    assert result.get("failed") is not True and result["counts"]["unplaced"] == 1 and result["changed"] is False


def test_missing_failed_host_record_is_a_clear_error(run_module, cluster):
    cluster.record("h2")
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2")))
    assert result["failed"] is True and result["error_kind"] == "store"
    assert "heartbeat record is missing" in result["msg"] and result["vms"] == []


@pytest.mark.parametrize("name", ["../etc", "h1/../../x", ".hidden", "a b", "x" * 300])
def test_hostile_failed_host_names(run_module, cluster, name):
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), failed_host=name))
    assert result["failed"] is True and result["error_kind"] == "invalid_input"


def test_hostile_target_name_and_duplicates(run_module, cluster):
    cluster.record("h1")
    result = run_module(vm_evacuate, cluster.params([{"host": "../../h2", "uri": "test:///default"}]))
    assert result["failed"] is True and result["error_kind"] == "invalid_input"
    twice = targets(cluster, "h2") * 2
    result = run_module(vm_evacuate, cluster.params(twice))
    assert result["failed"] is True and "listed twice" in result["msg"]


@pytest.mark.parametrize("over, words", [
    ({"parallel": 0}, "parallel"),
    ({"connect_timeout": 0}, "connect_timeout"),
    ({"claim_ttl": 30.0}, "claim_ttl"),
])
def test_bad_numbers(run_module, cluster, over, words):
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), **over))
    assert result["failed"] is True and words in result["msg"]


def test_bad_uri_target_is_excluded_with_a_warning(run_module, cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    cluster.record("h3")
    tlist = targets(cluster, "h2") + [{"host": "h3", "uri": "qemu+ext:///system?command=/bin/sh"}]
    result = run_module(vm_evacuate, cluster.params(tlist))
    hosts = dict((t["host"], t) for t in result["targets"])
    assert hosts["h3"]["status"] == "excluded" and "transport 'ext'" in hosts["h3"]["reason"]
    assert hosts["h2"]["status"] == "used"
    assert by_name(result)["a"]["host"] == "h2"
    assert "target h3 excluded" in json.dumps(result["warnings"])  # 2.19: warnings may be objects


# ----------------------------------------------------------------------------------------- Evacuation directly


def run(cluster, tlist, check_mode=False, factory=LibvirtClient, **over):
    return Evacuation(cluster.params(tlist, **over), check_mode=check_mode, diff_mode=True, client_factory=factory).run()


def test_unreachable_and_hung_targets_are_excluded(cluster, tmp_path):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    for host in ("h2", "h3", "h4"):
        cluster.record(host)
    silent = str(tmp_path / "silent")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(silent)
    server.listen(8)
    try:
        tlist = [{"host": "h2", "uri": "qemu+unix:///system?socket=%s" % (tmp_path / "gone")},
                 {"host": "h3", "uri": "qemu+unix:///system?socket=" + silent}] + targets(cluster, "h4")
        started = time.monotonic()
        result = run(cluster, tlist, connect_timeout=0.5, call_timeout=1.0)
        assert time.monotonic() - started < 3
    finally:
        server.close()
    hosts = dict((t["host"], t) for t in result["targets"])
    assert hosts["h2"]["status"] == "excluded" and "libvirt:" in hosts["h2"]["reason"]
    assert hosts["h3"]["status"] == "excluded" and "did not finish within 0.5 s" in hosts["h3"]["reason"]
    assert by_name(result)["a"]["status"] == "started" and by_name(result)["a"]["host"] == "h4"


def test_target_records_decide_placement_but_every_reachable_target_is_searched(cluster, shared_default):
    vm_uuid = cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2", state="stopped")  # writer stopped: not used for placement, but searched
    conn = libvirt.open(shared_default)
    conn.defineXML(cluster.domain_xml("a")).create()  # 'a' already runs on h2
    result = run(cluster, [{"host": "h2", "uri": shared_default}] + targets(cluster, "h3"))
    conn.close()
    hosts = dict((t["host"], t) for t in result["targets"])
    assert hosts["h2"]["status"] == "searched" and "stopped" in hosts["h2"]["reason"]
    assert hosts["h3"]["status"] == "searched" and "missing" in hosts["h3"]["reason"]  # reachable, no record
    assert by_name(result)["a"]["status"] == "skipped" and by_name(result)["a"]["reason"] == "already running on h2"
    assert result["diff"]["before"]["vms"]["a"] == "h2" and result["changed"] is False
    assert vm_uuid in [v["uuid"] for v in result["vms"]]


def test_vm_listed_by_an_unreachable_targets_heartbeat_is_skipped(cluster, tmp_path):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2", ["a"])  # h2's writer says it runs 'a'; h2's libvirtd does not answer
    cluster.record("h3")
    tlist = [{"host": "h2", "uri": "qemu+unix:///system?socket=%s" % (tmp_path / "gone")}] + targets(cluster, "h3")
    result = run(cluster, tlist)
    vm = by_name(result)["a"]
    assert vm["status"] == "skipped" and "listed as running on h2 by its heartbeat" in vm["reason"]


def test_malformed_xml_fails_only_that_vm(cluster):
    cluster.vm("good", 10)
    cluster.vm("laughs", 90)
    cluster.vm("mismatch", 80)
    cluster.vm("broken", 70)
    cluster.vm("missing", 60, xml=False)
    cluster.write_xml("laughs", '<!DOCTYPE x [<!ENTITY a "aaaa">]><domain type="qemu"><name>&a;</name></domain>')
    cluster.write_xml("mismatch", cluster.domain_xml("mismatch", uuid_=str(uuid.uuid4())))
    cluster.write_xml("broken", "<domain type='qemu'><name>broken")
    cluster.record("h1", ["good", "laughs", "mismatch", "broken", "missing"])
    cluster.record("h2")
    with pytest.raises(KvmhaError) as err:
        run(cluster, targets(cluster, "h2"))
    result = err.value.result
    vms = by_name(result)
    assert vms["good"]["status"] == "started"
    assert "DTD" in vms["laughs"]["reason"] and vms["laughs"]["error_kind"] == "invalid_input"
    assert "describes UUID" in vms["mismatch"]["reason"]
    assert "malformed" in vms["broken"]["reason"]
    assert "no domain XML" in vms["missing"]["reason"]
    assert result["counts"]["failed"] == 4
    claimed = os.listdir(claims_dir(cluster.store))
    assert claimed == [cluster.vms["good"]["uuid"]]  # no claim for a VM that cannot be started


def test_vm_claimed_by_another_evacuator_is_skipped(cluster):
    cluster.vm("a")
    cluster.vm("b")
    cluster.record("h1", ["a", "b"])
    cluster.record("h2")
    other = ClaimBook(cluster.store, "watchdog-2", "h1", "h1/boot-a-h1", 300)
    other.acquire(cluster.vms["a"]["uuid"], "a", "h3", other.inspect(cluster.vms["a"]["uuid"], []))
    result = run(cluster, targets(cluster, "h2"))
    vms = by_name(result)
    assert vms["a"]["status"] == "skipped" and "claimed by watchdog-2 for h3" in vms["a"]["reason"]
    assert vms["b"]["status"] == "started"


def test_claim_of_an_older_incident_is_taken_over(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    old = ClaimBook(cluster.store, "last-month", "h1", "h1/boot-old", 300)
    claim = old.acquire(cluster.vms["a"]["uuid"], "a", "h3", old.inspect(cluster.vms["a"]["uuid"], []))
    old.mark_started(claim, "h3")
    result = run(cluster, targets(cluster, "h2"))
    vm = by_name(result)["a"]
    assert vm["status"] == "started" and vm["claim"]["action"] == "takeover" and vm["claim"]["generation"] == 4


def test_unreadable_claim_fails_the_vm(cluster):
    vm_uuid = cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    directory = os.path.join(claims_dir(cluster.store), vm_uuid)
    os.makedirs(directory)
    with open(os.path.join(directory, "0000000001.json"), "w") as handle:
        handle.write("garbage")
    with pytest.raises(KvmhaError) as err:
        run(cluster, targets(cluster, "h2"))
    vm = by_name(err.value.result)["a"]
    assert vm["status"] == "failed" and "claim is unreadable" in vm["reason"] and vm["error_kind"] == "claim"


def test_anti_affinity_priority_and_spares(cluster):
    cluster.vm("db1", 90, group="db")
    cluster.vm("db2", 90, group="db")
    cluster.vm("db3", 90, group="db")
    cluster.vm("low", 5, mem=8000)
    cluster.record("h1", ["db1", "db2", "db3", "low"])
    cluster.record("h2", mem=1000)
    cluster.record("h3", mem=1000)
    cluster.record("h9", mem=8000)
    result = run(cluster, targets(cluster, "h2", "h3", "h9"), spare_hosts=["h9"], fail_on_incomplete=False)
    vms = by_name(result)
    assert sorted(vms[n]["host"] for n in ("db1", "db2", "db3")) == ["h2", "h3", "h9"]
    assert vms["low"]["status"] == "unplaced" and "anti-affinity" not in vms["low"]["reason"]
    assert [p["spare"] for p in result["plan"]].count(True) == 1
    assert [p["priority"] for p in result["plan"]] == sorted((p["priority"] for p in result["plan"]), reverse=True)


def test_vms_filter_and_non_ha(cluster):
    cluster.vm("a")
    cluster.vm("b")
    cluster.vm("plain", ha=False)
    cluster.record("h1", ["a", "b", "plain"])
    cluster.record("h2")
    evacuation = Evacuation(cluster.params(targets(cluster, "h2"), vms=["b", "plain", "ghost"]))
    result = evacuation.run()
    assert [v["name"] for v in result["vms"]] == ["b"]
    assert any("plain is not an HA VM" in w for w in evacuation.warnings)
    assert any("ghost is not in the last heartbeat" in w for w in evacuation.warnings)


def test_no_ha_vms_is_a_no_op(cluster):
    cluster.record("h1")
    result = run(cluster, targets(cluster, "h2"))
    assert result["changed"] is False and result["vms"] == [] and result["counts"]["started"] == 0


class BreakingClient(LibvirtClient):
    """A real test-driver client whose connection to one host really closes before the first define there."""

    doomed = "h2"

    def define(self, xml):
        if self.label == self.doomed and self._conn is not None:
            self._conn.close()
        return super().define(xml)


def test_target_that_breaks_mid_run_is_dropped_and_its_vms_replanned(cluster):
    cluster.vm("a", 90, mem=512)
    cluster.vm("b", 80, mem=512)
    cluster.vm("c", 70)
    cluster.record("h1", ["a", "b", "c"])
    cluster.record("h2", mem=1200)   # best fit for all three
    cluster.record("h3", mem=4000)
    result = run(cluster, targets(cluster, "h2", "h3"), factory=BreakingClient)
    vms = by_name(result)
    assert all(vms[n]["status"] == "started" and vms[n]["host"] == "h3" for n in "abc")
    assert [(r["name"], r["from_host"], r["to_host"]) for r in result["replanned"]] == [
        ("a", "h2", "h3"), ("b", "h2", "h3"), ("c", "h2", "h3")]
    assert "connection to h2 broke" in result["replanned"][0]["reason"]
    h2 = [t for t in result["targets"] if t["host"] == "h2"][0]
    assert h2["broken"] is True and "broke" in h2["reason"]
    assert [(p["round"], p["name"], p["host"]) for p in result["plan"]] == [
        (1, "a", "h2"), (1, "b", "h2"), (1, "c", "h2"), (2, "a", "h3"), (2, "b", "h3"), (2, "c", "h3")]
    assert vms["a"]["claim"]["state"] == "started" and vms["a"]["claim"]["generation"] == 3  # claim, retarget, started


def test_replanned_vms_with_no_host_left_release_their_claims(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    with pytest.raises(KvmhaError) as err:
        run(cluster, targets(cluster, "h2"), factory=BreakingClient)
    vm = by_name(err.value.result)["a"]
    assert vm["status"] == "unplaced" and "planned again after its target broke" in vm["reason"]
    book = ClaimBook(cluster.store, "next", "h1", "h1/boot-a-h1", 300)
    assert book.inspect(vm["uuid"], []).action == "takeover"  # released: a later run may try again


def test_check_mode_uses_read_only_connections(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    seen = []

    def factory(uri, connect_timeout, call_timeout, read_only, label):
        seen.append(read_only)
        return LibvirtClient(uri, connect_timeout, call_timeout, read_only, label)

    result = run(cluster, targets(cluster, "h2"), check_mode=True, factory=factory)
    assert seen == [True] and result["counts"]["planned"] == 1


def test_store_that_cannot_take_claims_fails_every_vm_and_starts_nothing(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    with open(claims_dir(cluster.store), "w") as handle:
        handle.write("a file where the claims directory should be")
    with pytest.raises(KvmhaError) as err:
        run(cluster, targets(cluster, "h2"))
    vm = by_name(err.value.result)["a"]
    assert vm["status"] == "failed" and "claim" in vm["reason"] and "defined" not in vm["timestamps"]
    assert err.value.result["changed"] is False


def test_failed_host_is_never_a_target(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    result = run(cluster, targets(cluster, "h1", "h2"))
    hosts = dict((t["host"], t) for t in result["targets"])
    assert hosts["h1"]["status"] == "excluded" and hosts["h1"]["reason"] == "is a failed host"
    assert by_name(result)["a"]["host"] == "h2"


def test_duplicate_vm_names_are_labelled_by_uuid_in_the_diff(cluster):
    first = cluster.vm("same")
    cluster.vms["same-1"] = cluster.vms.pop("same")
    second = cluster.vm("same")
    cluster.record("h1", ["same-1", "same"])
    cluster.record("h2")
    result = run(cluster, targets(cluster, "h2"), check_mode=True)
    assert sorted(result["diff"]["after"]["vms"]) == sorted(["same (%s)" % first, "same (%s)" % second])


def test_errors_are_collection_errors():
    assert issubclass(StoreError, KvmhaError) and issubclass(InvalidInput, KvmhaError)
    json.dumps(ARGUMENT_SPEC)


class SlowClient(LibvirtClient):
    """A real test-driver client whose first define takes a while (a slow host); runs ``hook`` meanwhile."""

    hook = None
    delay = 1.2

    def define(self, xml):
        if not getattr(self, "_slowed", False):
            self._slowed = True
            time.sleep(self.delay)
            if SlowClient.hook is not None:
                SlowClient.hook()
        return super().define(xml)


FAST = dict(connect_timeout=0.5, call_timeout=0.5, verify_timeout=0.5, store_timeout=0.5, claim_ttl=4.1)


def test_claims_of_queued_vms_are_renewed_before_their_start(cluster):
    cluster.vm("first", 90)
    cluster.vm("second", 10)
    cluster.record("h1", ["first", "second"])
    cluster.record("h2")
    SlowClient.hook = None
    result = run(cluster, targets(cluster, "h2"), factory=SlowClient, **FAST)
    vms = by_name(result)
    assert vms["first"]["status"] == vms["second"]["status"] == "started"
    assert vms["first"]["claim"]["generation"] == 2    # claimed, started
    assert vms["second"]["claim"]["generation"] == 3   # claimed, renewed after the slow first VM, started


def test_a_claim_taken_over_while_queued_is_not_started(cluster):
    cluster.vm("first", 90)
    second = cluster.vm("second", 10)
    cluster.record("h1", ["first", "second"])
    cluster.record("h2")
    docs = ClaimBook(cluster.store, "x", "h1", "h1/boot-a-h1", 300).docs

    def take_over():
        current = docs.read(second)
        docs.replace(second, current, "impatient-evacuator", dict(current.data, target="h3"), 300)

    SlowClient.hook = take_over
    try:
        result = run(cluster, targets(cluster, "h2"), factory=SlowClient, **FAST)
    finally:
        SlowClient.hook = None
    vms = by_name(result)
    assert vms["first"]["status"] == "started"
    assert vms["second"]["status"] == "skipped" and "taken over by impatient-evacuator" in vms["second"]["reason"]
    assert "defined" not in vms["second"]["timestamps"] and result["changed"] is True


def test_vm_listed_by_a_target_with_a_refused_uri_is_not_started_twice(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2", ["a"])
    cluster.record("h3")
    tlist = [{"host": "h2", "uri": "qemu+ext:///system?command=/bin/true"}] + targets(cluster, "h3")
    vm = by_name(run(cluster, tlist))["a"]
    assert vm["status"] == "skipped" and "listed as running on h2" in vm["reason"]


def test_spread_strategy_uses_every_target(cluster):
    for name in "abcd":
        cluster.vm(name)
    cluster.record("h1", list("abcd"))
    cluster.record("h2")
    cluster.record("h3")
    packed = run(cluster, targets(cluster, "h2", "h3"), check_mode=True)
    spread = run(cluster, targets(cluster, "h2", "h3"), check_mode=True, strategy="spread")
    assert set(p["host"] for p in packed["plan"]) == {"h2"}
    assert sorted(p["host"] for p in spread["plan"]) == ["h2", "h2", "h3", "h3"]


# ----------------------------------------------------------------------------------------- several failed hosts


def multi(cluster, tlist, hosts=("h1", "h5"), check_mode=False, factory=LibvirtClient, **over):
    return run(cluster, tlist, check_mode=check_mode, factory=factory, failed_hosts=list(hosts), **over)


def load(plan, capacity):
    """{target: MiB planned there} of a plan, checked against {target: MiB free}."""
    used = {}
    for entry in plan:
        used[entry["host"]] = used.get(entry["host"], 0) + entry["memory_mib"]
    return used, all(used[h] <= capacity[h] for h in used)


@pytest.mark.parametrize("over, words", [
    ({"failed_hosts": ["h1"], "failed_host": "h1"}, "mutually exclusive: failed_host|failed_hosts"),
    ({"failed_hosts": []}, "at least one host"),
    ({"failed_hosts": ["h1", "h5", "h1"]}, "failed host h1 is listed twice"),
    ({"failed_hosts": ["h1", "../h5"]}, "host name '../h5'"),
    ({"failed_hosts": ["h1", "h5"], "incident": "h1/manual"}, "incident is only for a single failed host"),
])
def test_failed_hosts_arguments(run_module, cluster, over, words):
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), **over))
    assert result["failed"] is True and words in result["msg"]


def test_one_of_failed_host_and_failed_hosts_is_required(run_module, cluster):
    args = cluster.params(targets(cluster, "h2"))
    del args["failed_host"]
    result = run_module(vm_evacuate, args)
    assert result["failed"] is True and "one of the following is required: failed_host, failed_hosts" in result["msg"]
    with pytest.raises(InvalidInput, match="one of the following is required"):
        Evacuation(args)
    with pytest.raises(InvalidInput, match="mutually exclusive"):
        Evacuation(dict(args, failed_host="h1", failed_hosts=["h1"]))


def test_failed_host_is_a_one_element_failed_hosts(cluster):
    cluster.vm("a", 60)
    cluster.vm("b", 40)
    cluster.record("h1", ["a", "b"])
    cluster.record("h2")
    one = run(cluster, targets(cluster, "h2"), check_mode=True)
    listed = multi(cluster, targets(cluster, "h2"), hosts=["h1"], check_mode=True)
    for result in (one, listed):
        assert result["failed_hosts"] == ["h1"] and result["failed_host"] == "h1"
        assert result["incident"] == "h1/boot-a-h1" and result["incidents"] == {"h1": "h1/boot-a-h1"}
        assert result["unreadable"] == []
    drop = ("started_at", "finished_at", "elapsed", "owner")
    for result in (one, listed):
        for vm in result["vms"]:
            assert set(vm.pop("timestamps")) == {"placed"}
    assert dict((k, v) for k, v in one.items() if k not in drop) == dict((k, v) for k, v in listed.items() if k not in drop)
    with_incident = multi(cluster, targets(cluster, "h2"), hosts=["h1"], check_mode=True, incident="h1/by-hand")
    assert with_incident["incident"] == "h1/by-hand"


def test_capacity_is_counted_once_for_every_failed_host(cluster):
    """Issue 7 scenario 18: two hosts die; planned one after the other on the same (lagging) heartbeat capacity,
    their VMs over-commit a target; planned together, they never do."""
    for name in ("a1", "a2", "b1", "b2"):
        cluster.vm(name, 50, mem=512)
    cluster.record("h1", ["a1", "a2"])
    cluster.record("h5", ["b1", "b2"])
    cluster.record("h2", mem=1100)
    cluster.record("h3", mem=600)
    capacity = {"h2": 1100, "h3": 600}
    tlist = targets(cluster, "h2", "h3")
    one_by_one = (run(cluster, tlist, check_mode=True, failed_host="h1")["plan"]
                  + run(cluster, tlist, check_mode=True, failed_host="h5")["plan"])
    assert load(one_by_one, capacity) == ({"h2": 1024, "h3": 1024}, False)  # the race this option removes

    result = multi(cluster, tlist, check_mode=True, fail_on_incomplete=False)
    used, within = load(result["plan"], capacity)
    assert within and used == {"h2": 1024, "h3": 512}
    assert result["counts"] == {"started": 0, "planned": 3, "skipped": 0, "unplaced": 1, "failed": 0}
    assert [(p["name"], p["failed_host"]) for p in result["plan"]] == [("a1", "h1"), ("a2", "h1"), ("b1", "h5")]
    unplaced = by_name(result)["b2"]
    assert unplaced["status"] == "unplaced" and unplaced["failed_host"] == "h5" and "no host has 512 MiB" in unplaced["reason"]

    real = multi(cluster, tlist, fail_on_incomplete=False)
    used, within = load([v for v in real["vms"] if v["status"] == "started"], capacity)
    assert within and real["counts"]["started"] == 3 and real["counts"]["unplaced"] == 1


def test_priority_and_anti_affinity_hold_across_failed_hosts(cluster):
    cluster.vm("low", 10, mem=512)           # h1
    cluster.vm("db1", 70, group="db")       # h1
    cluster.vm("high", 90, mem=512)          # h5
    cluster.vm("db2", 80, group="db")       # h5
    cluster.record("h1", ["low", "db1"])
    cluster.record("h5", ["high", "db2"])
    cluster.record("h2", mem=1000)
    cluster.record("h3", mem=100)
    result = multi(cluster, targets(cluster, "h2", "h3"), check_mode=True, fail_on_incomplete=False)
    assert [(p["name"], p["failed_host"], p["priority"]) for p in result["plan"]] == [
        ("high", "h5", 90), ("db2", "h5", 80), ("db1", "h1", 70)]
    hosts = dict((p["name"], p["host"]) for p in result["plan"])
    assert hosts["db1"] != hosts["db2"]
    low = by_name(result)["low"]
    assert low["status"] == "unplaced" and low["failed_host"] == "h1"  # the higher priority of h5 came first

    alone = multi(cluster, targets(cluster, "h2"), check_mode=True, fail_on_incomplete=False)
    assert "anti-affinity group 'db' is already on every host" in by_name(alone)["db1"]["reason"]


def test_each_vm_claim_carries_its_own_hosts_incident_and_reruns_agree(cluster, shared_default):
    cluster.vm("a", 60)
    cluster.vm("b", 40)
    cluster.record("h1", ["a"])
    cluster.record("h5", ["b"], boot="boot-b")
    cluster.record("h2")
    tlist = [{"host": "h2", "uri": shared_default}]
    first = multi(cluster, tlist, owner="multi")
    assert first["changed"] is True and first["counts"]["started"] == 2
    assert first["failed_hosts"] == ["h1", "h5"] and first["failed_host"] is None and first["incident"] == ""
    assert first["incidents"] == {"h1": "h1/boot-a-h1", "h5": "h5/boot-b-h5"}
    assert [(v["name"], v["failed_host"], v["host"]) for v in first["vms"]] == [("a", "h1", "h2"), ("b", "h5", "h2")]
    docs = ClaimBook(cluster.store, "reader", "h1", "unused", 300).docs
    for name, host, incident in (("a", "h1", "h1/boot-a-h1"), ("b", "h5", "h5/boot-b-h5")):
        data = docs.read(cluster.vms[name]["uuid"]).data
        assert (data["failed_host"], data["incident"], data["state"], data["target"]) == (host, incident, "started", "h2")

    again = multi(cluster, tlist, owner="multi", check_mode=True)
    assert again["changed"] is False and [v["status"] for v in again["vms"]] == ["skipped", "skipped"]
    assert again["diff"]["before"] == again["diff"]["after"] == {"vms": {"a": "h2", "b": "h2"}}

    # An evacuator of h5 alone (a fresh test:/// host that runs nothing) agrees on the incident: the claim stops it.
    alone = run(cluster, targets(cluster, "h3"), failed_host="h5", owner="single")
    vm = by_name(alone)["b"]
    assert alone["changed"] is False and vm["status"] == "skipped"
    assert vm["reason"] == "already started on h2 by multi in this incident"


def test_a_failed_host_with_an_unreadable_record_does_not_stop_the_others(run_module, cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    for fail_on_incomplete in (True, False):
        args = cluster.params(targets(cluster, "h2"), failed_hosts=["h5", "h1"], fail_on_incomplete=fail_on_incomplete)
        result = run_module(vm_evacuate, args)
        assert result["failed"] is True and result["error_kind"] == "store"
        assert "the VMs of h5 are unknown (heartbeat record missing" in result["msg"]
        assert result["unreadable"] == [{"host": "h5", "status": "missing", "reason": "no heartbeat file"}]
        assert result["incidents"] == {"h1": "h1/boot-a-h1"} and result["failed_hosts"] == ["h5", "h1"]
        assert "h5: its last heartbeat record is missing" in json.dumps(result["warnings"])
        documented(result)
    assert result["vms"][0]["status"] == "skipped"  # started by the first call (its claim says so)

    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), failed_hosts=["h5", "h6"]))
    assert result["failed"] is True and result["error_kind"] == "store" and result["vms"] == []
    assert "cannot evacuate h5, h6: the heartbeat record of h5 is missing" in result["msg"]
    assert [u["host"] for u in result["unreadable"]] == ["h5", "h6"]
    documented(result)


def test_a_vm_listed_by_two_failed_hosts_is_evacuated_once_for_the_newer_record(cluster):
    cluster.vm("moved")
    cluster.vm("stays")
    cluster.record("h1", ["moved", "stays"], ts=time.time() - 10)
    cluster.record("h5", ["moved"])
    cluster.record("h2")
    evacuation = Evacuation(cluster.params(targets(cluster, "h2"), failed_hosts=["h1", "h5"]))
    result = evacuation.run()
    assert sorted((v["name"], v["failed_host"], v["status"]) for v in result["vms"]) == [
        ("moved", "h5", "started"), ("stays", "h1", "started")]
    assert any("moved" in w and "evacuated once, for h5" in w for w in evacuation.warnings)


def test_vms_filter_over_several_failed_hosts(cluster):
    cluster.vm("a")
    cluster.vm("b")
    cluster.vm("plain", ha=False)
    cluster.record("h1", ["a", "plain"])
    cluster.record("h5", ["b"])
    cluster.record("h2")
    evacuation = Evacuation(cluster.params(targets(cluster, "h2"), failed_hosts=["h1", "h5"], vms=["b", "plain", "ghost"]),
                            check_mode=True)
    result = evacuation.run()
    assert [(v["name"], v["failed_host"]) for v in result["vms"]] == [("b", "h5")]
    assert any("plain is not an HA VM of h1" in w for w in evacuation.warnings)
    assert any("ghost is not in the last heartbeat record of any of h1, h5" in w for w in evacuation.warnings)


def test_failed_hosts_are_never_targets(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h5")
    cluster.record("h2")
    result = multi(cluster, targets(cluster, "h1", "h5", "h2"), check_mode=True)
    hosts = dict((t["host"], t) for t in result["targets"])
    assert hosts["h1"]["reason"] == hosts["h5"]["reason"] == "is a failed host"
    assert hosts["h5"]["status"] == "excluded" and by_name(result)["a"]["host"] == "h2"


# ----------------------------------------------------------------------------------------- RETURN kept honest


def documented(result):
    ignored = {"invocation", "failed", "msg", "exception", "warnings", "deprecations", "changed"}
    for key in set(result) - ignored:
        assert key in RETURNED, "undocumented return key %r" % key
    for key, doc in RETURNED.items():
        if doc["returned"] == "always" or (key == "error_kind" and result.get("failed")):
            assert key in result, "documented key %r missing" % key
    for key, doc in RETURNED.items():
        if "contains" not in doc or key not in result:
            continue
        entries = [result[key]] if doc["type"] == "dict" else result[key]
        for entry in entries:
            assert set(entry) == set(doc["contains"]), (key, sorted(entry))


def test_every_emitted_key_is_documented_and_every_documented_key_emitted(run_module, cluster):
    cluster.vm("a", 90, mem=512)
    cluster.vm("b", 10)
    cluster.vm("c", 50, mem=9000)
    cluster.record("h1", ["a", "b"])
    cluster.record("h5", ["c"])
    cluster.record("h2", mem=1200)
    cluster.record("h3", mem=4000)
    args = cluster.params(targets(cluster, "h2", "h3"), failed_hosts=["h1", "h5"])
    plan = run_module(vm_evacuate, args, check_mode=True, diff=True)
    assert plan["counts"]["planned"] == 2 and plan["counts"]["unplaced"] == 1
    documented(plan)
    assert set(plan["diff"]) == {"before", "after"}
    failed = run_module(vm_evacuate, args)
    assert failed["failed"] is True and failed["error_kind"] == "incomplete"
    documented(failed)
    cluster.vm("d")
    cluster.record("h6", ["d"])
    replanned = multi(cluster, targets(cluster, "h2", "h3"), hosts=["h6"], factory=BreakingClient)
    assert replanned["replanned"]
    documented(replanned)


# ----------------------------------------------------------------------------------------- property


def _scenario_vms(draw_vms):
    return [{"name": "vm%d" % i, "priority": pri, "mem": mem, "group": group, "host": host}
            for i, (pri, mem, group, host) in enumerate(draw_vms)]


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(vms=st.lists(st.tuples(st.sampled_from([10, 50, 90]), st.sampled_from([64, 256, 512]), st.sampled_from(["", "", "db"]),
                              st.sampled_from(["h1", "h5", "h6"])), min_size=1, max_size=8),
       mem=st.tuples(st.integers(0, 1500), st.integers(0, 1500)), strategy=st.sampled_from(["best_fit", "spread"]))
def test_the_plan_does_not_depend_on_which_failed_host_listed_a_vm(tmp_path_factory, vms, mem, strategy):
    """One call over several failed hosts plans exactly as if one host had run every VM, within capacity."""
    vms = _scenario_vms(vms)
    plans = []
    for split in (True, False):
        cluster = Cluster(tmp_path_factory.mktemp("multi"))
        for vm_ in vms:
            cluster.vm(vm_["name"], vm_["priority"], mem=vm_["mem"], group=vm_["group"])
            cluster.vms[vm_["name"]]["uuid"] = str(uuid.uuid5(uuid.NAMESPACE_DNS, vm_["name"]))
            cluster.write_xml(vm_["name"], cluster.domain_xml(vm_["name"]))
        hosts = ("h1", "h5", "h6") if split else ("h1",)
        for host in hosts:
            cluster.record(host, [v["name"] for v in vms if not split or v["host"] == host])
        cluster.record("h2", mem=mem[0])
        cluster.record("h3", mem=mem[1])
        result = multi(cluster, targets(cluster, "h2", "h3"), hosts=hosts, check_mode=True, strategy=strategy,
                       fail_on_incomplete=False)
        used, within = load(result["plan"], {"h2": mem[0], "h3": mem[1]})
        assert within, used
        for host in ("h2", "h3"):
            groups = [p["group"] for p in result["plan"] if p["host"] == host and p["group"]]
            assert len(groups) == len(set(groups))
        plans.append([(p["order"], p["name"], p["host"]) for p in result["plan"]])
        if split:
            assert [p["failed_host"] for p in result["plan"]] == [
                next(v["host"] for v in vms if v["name"] == p["name"]) for p in result["plan"]]
    assert plans[0] == plans[1]
