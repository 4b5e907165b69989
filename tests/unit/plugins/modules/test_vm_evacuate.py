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

from ansible_collections.kvmha.cluster.plugins.module_utils._claims import ClaimBook, claims_dir
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, KvmhaError, StoreError
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import build_record, encode_record, write_atomic
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import LibvirtClient
from ansible_collections.kvmha.cluster.plugins.modules import vm_evacuate
from ansible_collections.kvmha.cluster.plugins.modules.vm_evacuate import ARGUMENT_SPEC, Evacuation

libvirt = pytest.importorskip("libvirt")

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

    def record(self, host, vms=(), mem=4096, cpus=8, boot="boot-a", state="running"):
        record = build_record(host, boot + "-" + host, 7, time.time(), 2.0, {"armed": False, "deadline_s": 60},
                              {"mem_free_mib": mem, "vcpus_free": cpus}, [self.vms[n] for n in vms], state=state)
        write_atomic(os.path.join(self.store, "kvmha", "hosts", host + ".json"), encode_record(record))

    def node_uri(self, host):
        path = self.root / ("node-%s.xml" % host)
        path.write_text(NODE)
        return "test://" + str(path)

    def params(self, targets, **over):
        params = dict((k, v.get("default")) for k, v in ARGUMENT_SPEC.items())
        params.update(failed_host="h1", store_path=self.store, targets=targets)
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
    assert hosts["h1"]["status"] == "excluded" and hosts["h1"]["reason"] == "is the failed host"
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
