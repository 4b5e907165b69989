# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_evacuate and its engine (module_utils/_evacuation) against libvirt's real built-in test driver (no mocks of
libvirt), over owed documents, claims and marks on a real store.

Each target gets its own ``test:///<node file>`` URI, which gives a fresh, independent driver state per
connection. ``test:///default`` is shared by every connection of the process while one stays open; the tests
that need state to survive between two module runs hold such a connection themselves, or keep one connection
per host for the whole test (``Hosts``: independent hosts that outlive each run, as real hypervisors do).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _ipmi
from ansible_collections.kvmha.cluster.plugins.module_utils import _recovery as owed
from ansible_collections.kvmha.cluster.plugins.module_utils._claims import ClaimBook, claims_dir
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, KvmhaError, StoreError
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import build_record, encode_record, write_atomic
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import LibvirtClient
from ansible_collections.kvmha.cluster.plugins.module_utils._marks import FENCED, read_marks, set_mark
from ansible_collections.kvmha.cluster.plugins.module_utils._storefile import DocumentStore
from ansible_collections.kvmha.cluster.plugins.modules import vm_evacuate
from ansible_collections.kvmha.cluster.plugins.modules.vm_evacuate import ARGUMENT_SPEC, Evacuation
from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.ipmi_fake import FakeSession
from pyghmi import exceptions as pyghmi_exceptions

libvirt = pytest.importorskip("libvirt")

RETURNED = yaml.safe_load(vm_evacuate.RETURN)
ROOT = pathlib.Path(__file__).resolve().parents[4]

NODE = """<node><cpu><mhz>1000</mhz><model>i686</model><active>8</active><nodes>1</nodes><sockets>1</sockets>
<cores>8</cores><threads>1</threads></cpu><memory>8388608</memory></node>"""

COUNTS = ("started", "running", "planned", "waiting", "unplaced", "failed")


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
        params.update(store_path=self.store, targets=targets, failed_hosts=["h1"], beat_timeout_s=0.0)
        params.update(over)
        return params

    def owed(self, host):
        """The current owed document of ``host`` (a ``Document``, its data validated) or None."""
        return owed.OwedBook(self.store, "reader").read(host)

    def entry(self, host, name):
        return next(vm for vm in self.owed(host).data["vms"] if vm["name"] == name)

    def claim(self, name):
        return ClaimBook(self.store, "reader", "h1", "unused", None).docs.read(self.vms[name]["uuid"])


class Clock:
    """The engine's clock (owed timestamps, backoff), moved by hand."""

    def __init__(self):
        self.now = round(time.time(), 3)

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class Killed(BaseException):
    """The controller dies here (SIGKILL, a cancelled job): nothing after this line runs, no handler sees it."""


class KeptClient(LibvirtClient):
    """A real test-driver client whose host (its driver state) outlives the client: see ``Hosts``."""

    hosts = None
    kill_at = None  # (point, vm uuid): die at "define" (after the claim), "start" (after the define) or "started"

    def open(self):
        self._conn = self.hosts.conn(self.label)
        return self

    def close(self):
        self._conn = None

    def _die(self, point, text):
        if self.kill_at is not None and self.kill_at[0] == point and self.kill_at[1] in text:
            raise Killed(point)

    def define(self, xml):
        self._die("define", xml)
        return super().define(xml)

    def start(self, vm_uuid):
        self._die("start", vm_uuid)
        super().start(vm_uuid)
        self._die("started", vm_uuid)


class Hosts:
    """Independent test-driver hypervisors whose domains survive from one run to the next (one kept connection each)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.conns = {}

    def conn(self, host):
        if host not in self.conns:
            self.conns[host] = libvirt.open(self.cluster.node_uri(host))
        return self.conns[host]

    def targets(self, *hosts):
        for host in hosts:
            self.conn(host)
        return targets(self.cluster, *hosts)

    def factory(self, kill_at=None):
        def make(uri, connect_timeout, call_timeout, read_only, label):
            client = KeptClient(uri, connect_timeout, call_timeout, read_only, label)
            client.hosts, client.kill_at = self, kill_at
            return client

        return make

    def active(self, host):
        return set(dom.UUIDString() for dom in self.conn(host).listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))

    def copies(self, name):
        """Where the VM is active, according to libvirt on every host."""
        return [host for host in sorted(self.conns) if self.cluster.vms[name]["uuid"] in self.active(host)]

    def start(self, host, name):
        self.conn(host).defineXML(self.cluster.domain_xml(name)).create()

    def power_off(self, host):
        for dom in self.conn(host).listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            dom.destroy()

    def close(self):
        for conn in self.conns.values():
            conn.close()


@pytest.fixture
def run_module(run_either_way):  # noqa: F811 - every case both ways: a module run, and in the controller's process
    return run_either_way


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


@pytest.fixture
def hosts(cluster):
    kept = Hosts(cluster)
    yield kept
    kept.close()


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


def counts(**nonzero):
    return dict((key, nonzero.get(key, 0)) for key in COUNTS)


def states(**nonzero):
    return dict((state, nonzero.get(state, 0)) for state in owed.STATES)


def run(cluster, tlist, check_mode=False, factory=LibvirtClient, clock=time.time, **over):
    return Evacuation(cluster.params(tlist, **over), check_mode=check_mode, diff_mode=True, client_factory=factory,
                      clock=clock).run()


def incomplete(cluster, tlist, **over):
    """A run that must end incomplete (a VM still runs nowhere): its full result."""
    with pytest.raises(KvmhaError) as err:
        run(cluster, tlist, **over)
    assert err.value.kind == "incomplete", err.value
    return err.value.result


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
    assert result["counts"] == counts(planned=3)
    # spread (the default): the most room left first; the db group never shares a host
    assert [(p["order"], p["name"], p["host"]) for p in result["plan"]] == [(1, "db1", "h2"), (2, "db2", "h3"), (3, "web", "h2")]
    assert result["diff"] == {"before": {"vms": {"db1": "nowhere", "db2": "nowhere", "web": "nowhere"}},
                              "after": {"vms": {"db1": "h2", "db2": "h3", "web": "h2"}}}
    db1 = by_name(result)["db1"]
    assert db1["claim"] == {"action": "create", "reason": "no claim yet"}
    assert (db1["status"], db1["state"], db1["previous"], db1["attempts"]) == ("planned", "owed", "owed", 0)
    assert result["opened"] == ["h1"] and result["incidents"] == {"h1": "h1/boot-a-h1"}
    assert result["owed"] == {"h1": states(owed=3)} and result["transitions"] == []
    # a dry run writes nothing at all: no owed document, no fenced mark, no claim
    kvmha = os.path.join(cluster.store, "kvmha")
    assert sorted(os.listdir(kvmha)) == ["hosts", "vms"]
    assert set(result) >= {"failed_hosts", "incidents", "owner", "plan", "vms", "counts", "targets", "replanned", "opened",
                           "closed", "owed", "transitions", "interrupted", "attempts", "started_at", "finished_at", "elapsed"}
    assert "failed_host" not in result and "incident" not in result  # the compatibility keys are gone
    documented(result)


def test_real_run_rerun_and_hand_over(run_module, cluster, shared_default):
    cluster.vm("a", 60)
    cluster.vm("b", 40)
    cluster.record("h1", ["a", "b"])
    cluster.record("h2")
    args = cluster.params([{"host": "h2", "uri": shared_default}], owner="unit-test")
    first = run_module(vm_evacuate, args, diff=True)
    assert first["changed"] is True and first["counts"] == counts(started=2) and first["attempts"] == 2
    vms = by_name(first)
    assert vms["a"]["status"] == "started" and vms["a"]["host"] == "h2" and vms["a"]["order"] == 1
    # started, not verified: h2's own heartbeat does not list it yet
    assert (vms["a"]["state"], vms["a"]["previous"], vms["a"]["attempts"]) == ("started", "owed", 1)
    stamps = vms["a"]["timestamps"]
    assert stamps["placed"] <= stamps["claimed"] <= stamps["defined"] <= stamps["started"] <= stamps["running"]
    assert vms["a"]["claim"]["state"] == "started" and vms["a"]["claim"]["owner"] == "unit-test"
    assert cluster.claim("a").ttl is None  # claims never expire
    assert first["opened"] == ["h1"] and first["owed"] == {"h1": states(started=2)}
    assert [(t["vm"], t["from"], t["to"], t["target"]) for t in first["transitions"]] == [
        ("a", "owed", "started", "h2"), ("b", "owed", "started", "h2")]
    conn = libvirt.open(shared_default)
    dom = conn.lookupByUUIDString(cluster.vms["a"]["uuid"])
    assert dom.isActive() and dom.autostart() == 0 and dom.isPersistent()
    conn.close()
    mark = read_marks(cluster.store, FENCED)["active"]["h1"]
    assert sorted(mark["data"]["vms"]) == sorted(v["uuid"] for v in cluster.vms.values())  # what the boot guard holds

    second = run_module(vm_evacuate, args, diff=True)
    assert second["changed"] is False and second["plan"] == [] and second["opened"] == [] and second["attempts"] == 0
    assert [(v["status"], v["state"], v["reason"]) for v in second["vms"]] == [("running", "started", "runs on h2")] * 2
    assert second["diff"]["before"] == second["diff"]["after"] == {"vms": {"a": "h2", "b": "h2"}}

    cluster.record("h2", ["a", "b"])  # h2's writer lists them: its heartbeat covers them from now on
    third = run_module(vm_evacuate, args)
    assert third["changed"] is True and third["closed"] == ["h1"]
    assert [(v["status"], v["state"], v["previous"]) for v in third["vms"]] == [("running", "verified", "started")] * 2
    assert cluster.owed("h1").data["closed_at"] is not None

    fourth = run_module(vm_evacuate, args)
    assert fourth["changed"] is False and fourth["vms"] == [] and fourth["owed"] == {}
    assert read_marks(cluster.store, FENCED)["active"].keys() == {"h1"}  # the host stays fenced until it is returned


def test_incomplete_evacuation_fails_with_the_full_result(run_module, cluster):
    cluster.vm("big", 90, mem=3000)
    cluster.vm("small", 10)
    cluster.record("h1", ["big", "small"])
    cluster.record("h2", mem=1000)
    before = time.time()
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2")))
    assert result["failed"] is True and result["error_kind"] == "incomplete"
    assert "1 VM(s) run nowhere yet and stay owed: big (unplaced: no host has 3000 MiB" in result["msg"]
    vms = by_name(result)
    assert vms["big"]["status"] == vms["big"]["state"] == "unplaced" and "no host has 3000 MiB" in vms["big"]["reason"]
    assert vms["big"]["attempts"] == 1 and vms["big"]["next_try"] >= before + 30  # retry_s
    assert vms["small"]["status"] == "started" and result["changed"] is True
    assert result["attempts"] == 2  # the placement that failed counts
    assert result["owed"] == {"h1": states(started=1, unplaced=1)}
    documented(result)


def test_fail_on_incomplete_false(run_module, cluster):
    cluster.vm("big", 90, mem=3000)
    cluster.record("h1", ["big"])
    cluster.record("h2", mem=1000)
    args = cluster.params(targets(cluster, "h2"), fail_on_incomplete=False)
    result = run_module(vm_evacuate, args)
    assert result.get("failed") is not True and result["counts"] == counts(unplaced=1)
    assert result["changed"] is True and result["opened"] == ["h1"]  # the owed document was opened
    again = run_module(vm_evacuate, dict(args, failed_hosts=[]))
    vm = again["vms"][0]
    assert again.get("failed") is not True and again["changed"] is False and again["attempts"] == 0
    assert (vm["status"], vm["state"], vm["attempts"]) == ("waiting", "unplaced", 1) and "next try at" in vm["reason"]


def test_missing_failed_host_record_is_a_clear_error(run_module, cluster):
    cluster.record("h2")
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2")))
    assert result["failed"] is True and result["error_kind"] == "store"
    assert "recovery incomplete: h1: missing (no heartbeat file)" in result["msg"] and result["vms"] == []
    assert result["unreadable"] == [{"host": "h1", "status": "missing", "reason": "no heartbeat file"}]
    # its VMs are unknown: nothing is opened (never "nothing owed"), and it is not marked fenced from nothing
    assert result["opened"] == [] and cluster.owed("h1") is None
    assert read_marks(cluster.store, FENCED)["active"] == {}


@pytest.mark.parametrize("name", ["../etc", "h1/../../x", ".hidden", "a b", "x" * 300])
def test_hostile_failed_host_names(run_module, cluster, name):
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), failed_hosts=[name]))
    assert result["failed"] is True and result["error_kind"] == "invalid_input"
    assert not os.path.exists(owed.owed_dir(cluster.store))


def test_hostile_target_name_and_duplicates(run_module, cluster):
    cluster.record("h1")
    result = run_module(vm_evacuate, cluster.params([{"host": "../../h2", "uri": "test:///default"}]))
    assert result["failed"] is True and result["error_kind"] == "invalid_input"
    twice = targets(cluster, "h2") * 2
    result = run_module(vm_evacuate, cluster.params(twice))
    assert result["failed"] is True and "listed twice" in result["msg"]


@pytest.mark.parametrize("over, words", [
    ({"parallel": 0}, "parallel"),
    ({"connect_timeout_s": 0}, "connect_timeout_s must be positive"),
    ({"retry_s": 0}, "retry_s must be positive"),
    ({"retry_max_s": -1}, "retry_max_s must be positive"),
    ({"beat_timeout_s": -1}, "beat_timeout_s must be zero or more"),
    ({"claim_ttl": 30.0}, "Unsupported parameters"),          # removed: claims never expire
    ({"failed_host": "h1"}, "Unsupported parameters"),        # removed: failed_hosts
])
def test_bad_numbers_and_removed_options(run_module, cluster, over, words):
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), **over))
    assert result["failed"] is True and words in result["msg"]
    assert not os.path.exists(owed.owed_dir(cluster.store))


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


def test_abandon_through_the_module(run_module, cluster):
    cluster.vm("big", 90, mem=3000)
    cluster.record("h1", ["big"])
    cluster.record("h2", mem=1000)
    args = cluster.params(targets(cluster, "h2"))
    assert run_module(vm_evacuate, args)["error_kind"] == "incomplete"
    result = run_module(vm_evacuate, dict(args, failed_hosts=[], abandon=["big"], operator="jdoe", reason="restored from backup"))
    assert result.get("failed") is not True and result["changed"] is True and result["closed"] == ["h1"]
    assert [(t["vm"], t["from"], t["to"], t["operator"]) for t in result["transitions"]] == [("big", "unplaced", "abandoned", "jdoe")]
    assert result["owed"] == {"h1": states(abandoned=1)}
    documented(result)
    entry = cluster.entry("h1", "big")
    assert (entry["state"], entry["abandoned_by"], entry["abandon_reason"]) == ("abandoned", "jdoe", "restored from backup")
    # once abandoned, the watchdog's next run has nothing left to do
    after = run_module(vm_evacuate, dict(args, failed_hosts=[]))
    assert after.get("failed") is not True and after["vms"] == [] and after["changed"] is False
    again = run_module(vm_evacuate, dict(args, failed_hosts=[], abandon=["big"], operator="jdoe", reason="twice"))
    assert again["failed"] is True and "not owed by any open recovery: big" in again["msg"]


@pytest.mark.parametrize("over, words", [
    ({"abandon": ["big"]}, "parameters are required together: abandon, operator, reason"),
    ({"abandon": ["big"], "operator": "jdoe", "reason": "r"}, "abandon does nothing else: give no failed_hosts with it"),
    ({"abandon": ["ghost"], "operator": "jdoe", "reason": "r", "failed_hosts": []}, "not owed by any open recovery: ghost"),
])
def test_abandon_arguments(run_module, cluster, over, words):
    cluster.record("h1")
    args = cluster.params(targets(cluster, "h2"), **over)
    for key in ("operator", "reason"):
        if args[key] is None:
            del args[key]  # as a task gives them: absent, not null
    result = run_module(vm_evacuate, args)
    assert result["failed"] is True and words in result["msg"]
    assert not os.path.exists(owed.owed_dir(cluster.store))


# ----------------------------------------------------------------------------------------- Evacuation directly


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
        result = run(cluster, tlist, connect_timeout_s=0.5, call_timeout_s=1.0)
        assert time.monotonic() - started < 10 * (0.5 + 1.0)  # only catches a hang on the silent socket
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
    vm = by_name(result)["a"]
    assert (vm["status"], vm["reason"], vm["host"]) == ("running", "runs on h2", "h2")
    assert vm["state"] == "started" and vm["attempts"] == 0  # found, not started: h2's record does not list it
    assert result["diff"]["before"]["vms"]["a"] == "h2" and result["plan"] == []
    assert result["changed"] is True and result["opened"] == ["h1"]  # what changed: h1's recovery opened
    assert vm_uuid in [v["uuid"] for v in result["vms"]]


def test_vm_listed_by_an_unreachable_targets_heartbeat_waits(cluster, tmp_path):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2", ["a"])  # h2's writer says it runs 'a'; h2's libvirtd does not answer
    cluster.record("h3")
    tlist = [{"host": "h2", "uri": "qemu+unix:///system?socket=%s" % (tmp_path / "gone")}] + targets(cluster, "h3")
    result = incomplete(cluster, tlist)
    vm = by_name(result)["a"]
    assert vm["status"] == "waiting" and "listed as running on h2 by its heartbeat" in vm["reason"]
    assert vm["state"] == "owed" and "defined" not in vm["timestamps"] and result["plan"] == []
    assert cluster.entry("h1", "a")["last_error"] == vm["reason"]


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
    result = incomplete(cluster, targets(cluster, "h2"))
    vms = by_name(result)
    assert vms["good"]["status"] == "started"
    assert "DTD" in vms["laughs"]["reason"] and vms["laughs"]["error_kind"] == "invalid_input"
    assert "describes UUID" in vms["mismatch"]["reason"]
    assert "malformed" in vms["broken"]["reason"]
    assert "no domain XML" in vms["missing"]["reason"]
    assert result["counts"] == counts(started=1, failed=4)
    for name in ("laughs", "mismatch", "broken", "missing"):
        assert (vms[name]["state"], vms[name]["attempts"]) == ("failed", 1) and vms[name]["next_try"] is not None
    claimed = os.listdir(claims_dir(cluster.store))
    assert claimed == [cluster.vms["good"]["uuid"]]  # no claim for a VM that cannot be started
    assert cluster.entry("h1", "missing")["last_error"].startswith("its domain XML:")


# ----------------------------------------------------------------------------------------- the claim rules


def test_a_claim_whose_target_cannot_be_checked_waits(cluster):
    cluster.vm("a")
    cluster.vm("b")
    cluster.record("h1", ["a", "b"])
    cluster.record("h2")
    other = ClaimBook(cluster.store, "watchdog-2", "h1", "h1/boot-a-h1", None)
    other.acquire(cluster.vms["a"]["uuid"], "a", "h3", other.inspect(cluster.vms["a"]["uuid"], []))
    result = incomplete(cluster, targets(cluster, "h2"))  # h3: not a target, not fenced
    vms = by_name(result)
    assert vms["a"]["status"] == "waiting" and vms["a"]["claim"]["action"] == "skip"
    assert "claimed by watchdog-2 on h3, which cannot be checked: it may run there" in vms["a"]["reason"]
    assert vms["a"]["state"] == "claimed" and "defined" not in vms["a"]["timestamps"]
    entry = cluster.entry("h1", "a")
    assert (entry["state"], entry["target"]) == ("claimed", "h3") and "h3" in entry["copies"]
    assert vms["b"]["status"] == "started"
    assert cluster.claim("a").owner == "watchdog-2"  # untouched


def test_a_claim_on_a_reachable_target_is_retried_there(cluster, hosts):
    cluster.vm("a", 90)
    cluster.vm("b", 10)
    cluster.record("h1", ["a", "b"])
    cluster.record("h2", mem=8000)  # spread would pick h2 for both
    cluster.record("h3", mem=1000)
    dead = ClaimBook(cluster.store, "killed-run", "h1", "h1/boot-a-h1", None)
    dead.acquire(cluster.vms["a"]["uuid"], "a", "h3", dead.inspect(cluster.vms["a"]["uuid"], []))
    result = run(cluster, hosts.targets("h2", "h3"), factory=hosts.factory())
    vms = by_name(result)
    assert vms["a"]["claim"]["action"] == "retry" and "retried there" in vms["a"]["claim"]["reason"]
    assert (vms["a"]["status"], vms["a"]["host"]) == ("started", "h3")  # back to its claim's target, not the roomy h2
    assert [(p["name"], p["host"], p["retry"]) for p in result["plan"]] == [("a", "h3", True), ("b", "h2", False)]
    assert hosts.copies("a") == ["h3"] and hosts.copies("b") == ["h2"]
    claim = cluster.claim("a")
    assert (claim.owner, claim.data["state"], claim.data["target"], claim.generation) == (result["owner"], "started", "h3", 3)


def test_a_retry_takes_its_targets_capacity_before_the_others_are_placed(cluster):
    pinned = cluster.vm("p", 90)
    cluster.vm("q", 10)
    cluster.record("h1", ["p", "q"])
    cluster.record("h2", mem=100)
    dead = ClaimBook(cluster.store, "killed-run", "h1", "h1/boot-a-h1", None)
    dead.acquire(pinned, "p", "h2", dead.inspect(pinned, []))
    result = run(cluster, targets(cluster, "h2"), check_mode=True)
    assert [(p["name"], p["host"]) for p in result["plan"]] == [("p", "h2")]
    assert by_name(result)["q"]["status"] == "unplaced" and "h2 with 36 MiB" in by_name(result)["q"]["reason"]


@pytest.mark.parametrize("how", ["marked", "failed_host"])
def test_a_claim_whose_target_was_fenced_since_is_taken_over(cluster, hosts, how):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    cluster.record("h3")
    clock = Clock()
    other = ClaimBook(cluster.store, "watchdog-2", "h1", "h1/boot-a-h1", None)
    claim = other.acquire(cluster.vms["a"]["uuid"], "a", "h3", other.inspect(cluster.vms["a"]["uuid"], []))
    other.mark_started(claim, "h3")
    first = incomplete(cluster, hosts.targets("h2"), factory=hosts.factory(), clock=clock)
    assert (by_name(first)["a"]["status"], by_name(first)["a"]["state"]) == ("waiting", "claimed")
    # h3 dies and is fenced: its power-off is confirmed, so the copy there cannot run
    clock.advance(60)
    if how == "marked":
        set_mark(cluster.store, FENCED, "h3", "watchdog-3", {"verdict": "DOWN", "rule": "R3", "incident": "h3/x", "vms": []})
        result = run(cluster, hosts.targets("h2"), factory=hosts.factory(), clock=clock, failed_hosts=[])
    else:
        result = run(cluster, hosts.targets("h2"), factory=hosts.factory(), clock=clock, failed_hosts=["h3"])
        assert result["opened"] == ["h3"]
    vm = by_name(result)["a"]
    assert vm["claim"]["action"] == "takeover" and "fenced since: that copy cannot run" in vm["claim"]["reason"]
    assert (vm["status"], vm["host"], vm["state"], vm["previous"]) == ("started", "h2", "started", "claimed")
    assert hosts.copies("a") == ["h2"] and cluster.claim("a").data["target"] == "h2"
    assert sorted(cluster.entry("h1", "a")["copies"]) == ["h2", "h3"]


def test_claim_of_an_older_incident_is_taken_over(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    old = ClaimBook(cluster.store, "last-month", "h1", "h1/boot-old", None)
    claim = old.acquire(cluster.vms["a"]["uuid"], "a", "h3", old.inspect(cluster.vms["a"]["uuid"], []))
    old.mark_started(claim, "h3")
    result = run(cluster, targets(cluster, "h2"))
    vm = by_name(result)["a"]
    assert vm["status"] == "started" and vm["claim"]["action"] == "takeover" and vm["claim"]["generation"] == 4
    assert cluster.claim("a").data["incident"] == "h1/boot-a-h1"


def test_unreadable_claim_fails_the_vm(cluster):
    vm_uuid = cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    directory = os.path.join(claims_dir(cluster.store), vm_uuid)
    os.makedirs(directory)
    with open(os.path.join(directory, "0000000001.json"), "w") as handle:
        handle.write("garbage")
    result = incomplete(cluster, targets(cluster, "h2"))
    vm = by_name(result)["a"]
    assert vm["status"] == "failed" and "claim is unreadable" in vm["reason"] and vm["error_kind"] == "claim"
    assert vm["state"] == "failed" and "defined" not in vm["timestamps"]
    with open(os.path.join(directory, "0000000001.json")) as handle:
        assert handle.read() == "garbage"  # never overwritten


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
    result = Evacuation(cluster.params(targets(cluster, "h2"), vms=["b", "plain", "ghost"])).run()
    assert [v["name"] for v in result["vms"]] == ["b"]
    # the owed document owes every HA VM of the record (a non-HA VM is nobody's business), whatever the filter
    assert [vm["name"] for vm in cluster.owed("h1").data["vms"]] == ["a", "b"]
    assert cluster.entry("h1", "a")["state"] == "owed" and cluster.entry("h1", "b")["state"] == "started"


def test_no_ha_vms_opens_and_closes_at_once(cluster):
    cluster.record("h1")
    result = run(cluster, targets(cluster, "h2"))
    assert result["vms"] == [] and result["counts"]["started"] == 0
    assert result["opened"] == ["h1"] and result["closed"] == ["h1"] and result["changed"] is True
    assert read_marks(cluster.store, FENCED)["active"]["h1"]["data"]["vms"] == []
    again = run(cluster, targets(cluster, "h2"))
    assert again["changed"] is False and again["opened"] == [] and again["closed"] == []


class BreakingClient(LibvirtClient):
    """A real test-driver client whose connection to one host really closes before the first define there (once: the
    VMs of one target are defined at the same time)."""

    doomed = "h2"
    lock = threading.Lock()

    def define(self, xml):
        with self.lock:
            if self.label == self.doomed and not getattr(self, "broke", False):
                self.broke = True
                self._conn.close()
        return super().define(xml)


def test_target_that_breaks_mid_run_is_dropped_and_its_vms_replanned(cluster):
    cluster.vm("a", 90, mem=512)
    cluster.vm("b", 80, mem=512)
    cluster.vm("c", 70)
    cluster.record("h1", ["a", "b", "c"])
    cluster.record("h2", mem=1200)   # best fit for all three
    cluster.record("h3", mem=4000)
    result = run(cluster, targets(cluster, "h2", "h3"), factory=BreakingClient, strategy="best_fit")
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
    assert cluster.entry("h1", "a")["copies"] == ["h2", "h3"]  # a definition may have reached h2 before it broke


def test_replanned_vms_with_no_host_left_release_their_claims(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    vm = by_name(incomplete(cluster, targets(cluster, "h2"), factory=BreakingClient))["a"]
    assert vm["status"] == vm["state"] == "unplaced" and "planned again after its target broke" in vm["reason"]
    book = ClaimBook(cluster.store, "next", "h1", "h1/boot-a-h1", None)
    assert book.inspect(vm["uuid"], []).action == "takeover"  # released: a later run may place it anywhere
    assert cluster.entry("h1", "a")["copies"] == ["h2"]


def test_a_retry_whose_target_breaks_is_never_placed_elsewhere(cluster):
    """The earlier claimant may still start it on h2, where libvirt refuses a second start - and only there."""
    vm_uuid = cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    cluster.record("h3")
    slow = ClaimBook(cluster.store, "slow-run", "h1", "h1/boot-a-h1", None)
    slow.acquire(vm_uuid, "a", "h2", slow.inspect(vm_uuid, []))
    result = incomplete(cluster, targets(cluster, "h2", "h3"), factory=BreakingClient)
    vm = by_name(result)["a"]
    assert vm["claim"]["action"] == "retry" and result["replanned"] == []
    assert (vm["status"], vm["state"], vm["host"]) == ("waiting", "claimed", "h2")
    assert "not placed elsewhere" in vm["reason"] and "started" not in vm["timestamps"]
    assert [(p["name"], p["host"]) for p in result["plan"]] == [("a", "h2")]
    entry = cluster.entry("h1", "a")
    assert (entry["state"], entry["target"]) == ("claimed", "h2")
    assert cluster.claim("a").data["target"] == "h2" and not cluster.claim("a").released


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
    result = incomplete(cluster, targets(cluster, "h2"))
    vm = by_name(result)["a"]
    assert vm["status"] == vm["state"] == "failed" and "claim" in vm["reason"] and "defined" not in vm["timestamps"]
    assert result["changed"] is True and result["opened"] == ["h1"]  # the recovery is owed; nothing was defined
    assert not any("defined" in v["timestamps"] for v in result["vms"])


def test_failed_host_is_never_a_target(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    result = run(cluster, targets(cluster, "h1", "h2"))
    hosts = dict((t["host"], t) for t in result["targets"])
    assert hosts["h1"]["status"] == "excluded" and hosts["h1"]["reason"] == "is a failed host"
    assert by_name(result)["a"]["host"] == "h2"
    # and on a later run, without failed_hosts, an owed host is still no target
    again = run(cluster, targets(cluster, "h1", "h2"), failed_hosts=[])
    assert dict((t["host"], t) for t in again["targets"])["h1"]["reason"] == "is fenced: its recovery is owed"


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
    assert issubclass(owed.InvalidOwed, StoreError)
    json.dumps(ARGUMENT_SPEC)


class SlowClient(KeptClient):
    """A kept test-driver client whose first define takes a while (a slow host); runs ``hook`` meanwhile."""

    hook = None
    delay = 0.3

    def define(self, xml):
        if not getattr(self, "_slowed", False):
            self._slowed = True
            time.sleep(self.delay)
            if self.hook is not None:
                self.hook()
        return super().define(xml)


def slow_factory(hosts, hook=None):
    def make(uri, connect_timeout, call_timeout, read_only, label):
        client = SlowClient(uri, connect_timeout, call_timeout, read_only, label)
        client.hosts, client.hook = hosts, hook
        return client

    return make


def test_the_vms_of_one_target_start_at_the_same_time(cluster, hosts):
    """parallel counts VMs, not targets: both VMs go to h2 and each start waits at a barrier for the other, so starts
    made one after the other on a target fail the test."""
    barrier = threading.Barrier(2, timeout=5)

    class TogetherClient(KeptClient):
        def start(self, vm_uuid):
            barrier.wait()
            super().start(vm_uuid)

    def factory(uri, connect_timeout, call_timeout, read_only, label):
        client = TogetherClient(uri, connect_timeout, call_timeout, read_only, label)
        client.hosts = hosts
        return client

    cluster.vm("first", 90)
    cluster.vm("second", 10)
    cluster.record("h1", ["first", "second"])
    cluster.record("h2")
    result = run(cluster, hosts.targets("h2"), factory=factory, parallel=2)
    assert [(vm["name"], vm["status"], vm["host"]) for vm in result["vms"]] == [("first", "started", "h2"), ("second", "started", "h2")]
    assert hosts.copies("first") == hosts.copies("second") == ["h2"]


def test_claims_of_queued_vms_do_not_expire_behind_a_slow_start(cluster, hosts):
    cluster.vm("first", 90)
    cluster.vm("second", 10)
    cluster.record("h1", ["first", "second"])
    cluster.record("h2")
    result = run(cluster, hosts.targets("h2"), factory=slow_factory(hosts), parallel=1)  # one at a time: "second" queues
    vms = by_name(result)
    assert vms["first"]["status"] == vms["second"]["status"] == "started"
    assert vms["first"]["claim"]["generation"] == vms["second"]["claim"]["generation"] == 2  # claimed, started: no renewal
    assert cluster.claim("second").ttl is None


def test_another_evacuator_retrying_a_queued_vm_on_its_target_gets_one_copy(cluster, hosts):
    """While this run is slow, a second evacuator retries 'second' on its claim's target and starts it there first:
    libvirt refuses this run's start of the same domain, and 'second' runs once."""
    cluster.vm("first", 90)
    second = cluster.vm("second", 10)
    cluster.record("h1", ["first", "second"])
    cluster.record("h2")
    docs = ClaimBook(cluster.store, "x", "h1", "h1/boot-a-h1", None).docs

    def retry_there_first():
        current = docs.read(second)
        assert current.data["target"] == "h2"
        docs.replace(second, current, "impatient-evacuator", dict(current.data), None)
        hosts.start("h2", "second")

    evacuation = Evacuation(cluster.params(hosts.targets("h2"), parallel=1),  # one at a time: 'second' waits in the queue
                            client_factory=slow_factory(hosts, retry_there_first))
    result = evacuation.run()
    vms = by_name(result)
    assert vms["first"]["status"] == "started"
    assert vms["second"]["status"] == "started" and vms["second"]["host"] == "h2"  # already running: the start's goal
    assert hosts.copies("second") == ["h2"] and hosts.copies("first") == ["h2"]
    assert any("second: the claim could not be updated" in w for w in evacuation.warnings)
    assert cluster.claim("second").owner == "impatient-evacuator"


def test_vm_listed_by_a_target_with_a_refused_uri_is_not_started_twice(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2", ["a"])
    cluster.record("h3")
    tlist = [{"host": "h2", "uri": "qemu+ext:///system?command=/bin/true"}] + targets(cluster, "h3")
    vm = by_name(run(cluster, tlist, fail_on_incomplete=False))["a"]
    assert vm["status"] == "waiting" and "listed as running on h2" in vm["reason"] and vm["state"] == "owed"


def test_a_vm_active_on_two_targets_is_reported_never_stopped(cluster, hosts):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    cluster.record("h3")
    hosts.start("h2", "a")
    hosts.start("h3", "a")
    evacuation = Evacuation(cluster.params(hosts.targets("h2", "h3"), fail_on_incomplete=False), client_factory=hosts.factory())
    vm = by_name(evacuation.run())["a"]
    assert (vm["status"], vm["error_kind"]) == ("waiting", "duplicate") and "active on h2, h3 at once" in vm["reason"]
    assert hosts.copies("a") == ["h2", "h3"]  # an operator must look; nothing here stops a VM
    assert any("a is active on more than one host" in w for w in evacuation.warnings)


def test_spread_strategy_uses_every_target(cluster):
    for name in "abcd":
        cluster.vm(name)
    cluster.record("h1", list("abcd"))
    cluster.record("h2")
    cluster.record("h3")
    packed = run(cluster, targets(cluster, "h2", "h3"), check_mode=True, strategy="best_fit")
    spread = run(cluster, targets(cluster, "h2", "h3"), check_mode=True)  # the default
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
    ({"failed_hosts": ["h1", "h5", "h1"]}, "failed host h1 is listed twice"),
    ({"failed_hosts": ["h1", "../h5"]}, "host name '../h5'"),
    ({"failed_hosts": ["h1", "h5"], "incident": "h1/manual"}, "incident is only for a single failed host"),
    ({"failed_hosts": [], "incident": "h1/manual"}, "incident is only for a single failed host"),
])
def test_failed_hosts_arguments(run_module, cluster, over, words):
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), **over))
    assert result["failed"] is True and words in result["msg"]


def test_without_failed_hosts_and_nothing_owed_a_call_does_nothing(run_module, cluster):
    cluster.record("h1")
    args = cluster.params(targets(cluster, "h2"))
    del args["failed_hosts"]  # the default: []
    result = run_module(vm_evacuate, args)
    assert result.get("failed") is not True and result["changed"] is False
    assert result["failed_hosts"] == [] and result["opened"] == [] and result["vms"] == [] and result["owed"] == {}
    assert result["targets"][0]["status"] == "excluded"  # nothing to do: no connection opened
    assert not os.path.exists(owed.owed_dir(cluster.store))
    documented(result)


def test_the_incident_is_the_hosts_boot_unless_given(cluster):
    cluster.vm("a", 60)
    cluster.record("h1", ["a"])
    cluster.record("h2")
    planned = run(cluster, targets(cluster, "h2"), check_mode=True)
    assert planned["failed_hosts"] == ["h1"] and planned["incidents"] == {"h1": "h1/boot-a-h1"} and planned["unreadable"] == []
    by_hand = run(cluster, targets(cluster, "h2"), incident="h1/by-hand")
    assert by_hand["incidents"] == {"h1": "h1/by-hand"}
    assert cluster.owed("h1").data["incident"] == "h1/by-hand" and cluster.claim("a").data["incident"] == "h1/by-hand"
    # the document is open: a later call with the host again works it, it does not open it anew
    later = run(cluster, targets(cluster, "h2"))
    assert later["opened"] == [] and later["incidents"] == {"h1": "h1/by-hand"}


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
    one_by_one = (run(cluster, tlist, check_mode=True, failed_hosts=["h1"])["plan"]
                  + run(cluster, tlist, check_mode=True, failed_hosts=["h5"])["plan"])
    assert load(one_by_one, capacity) == ({"h2": 1024, "h3": 1024}, False)  # the race one call removes

    result = multi(cluster, tlist, check_mode=True, fail_on_incomplete=False)
    used, within = load(result["plan"], capacity)
    assert within and used == {"h2": 1024, "h3": 512}
    assert result["counts"] == counts(planned=3, unplaced=1)
    assert [(p["name"], p["failed_host"]) for p in result["plan"]] == [("a1", "h1"), ("a2", "h1"), ("b1", "h5")]
    unplaced = by_name(result)["b2"]
    assert unplaced["status"] == "unplaced" and unplaced["failed_host"] == "h5" and "no host has 512 MiB" in unplaced["reason"]

    real = multi(cluster, tlist, fail_on_incomplete=False)
    used, within = load([v for v in real["vms"] if v["status"] == "started"], capacity)
    assert within and real["counts"] == counts(started=3, unplaced=1)
    assert real["owed"] == {"h1": states(started=2), "h5": states(started=1, unplaced=1)}


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
    assert first["changed"] is True and first["counts"] == counts(started=2)
    assert first["failed_hosts"] == ["h1", "h5"] and first["opened"] == ["h1", "h5"]
    assert first["incidents"] == {"h1": "h1/boot-a-h1", "h5": "h5/boot-b-h5"}
    assert [(v["name"], v["failed_host"], v["host"]) for v in first["vms"]] == [("a", "h1", "h2"), ("b", "h5", "h2")]
    for name, host, incident in (("a", "h1", "h1/boot-a-h1"), ("b", "h5", "h5/boot-b-h5")):
        data = cluster.claim(name).data
        assert (data["failed_host"], data["incident"], data["state"], data["target"]) == (host, incident, "started", "h2")

    again = multi(cluster, tlist, owner="multi", check_mode=True)
    assert again["changed"] is False and [v["status"] for v in again["vms"]] == ["running", "running"]
    assert again["diff"]["before"] == again["diff"]["after"] == {"vms": {"a": "h2", "b": "h2"}}

    # An evacuator of h5 alone that cannot look at h2 (its only target is a fresh host that runs nothing) works every
    # open document - h1's too - and agrees on the incidents: the claims on h2 make it wait, never start a copy.
    alone = run(cluster, targets(cluster, "h3"), failed_hosts=["h5"], owner="single", fail_on_incomplete=False)
    assert alone["opened"] == [] and alone["incidents"] == first["incidents"]
    assert alone["changed"] is False and [v["status"] for v in alone["vms"]] == ["waiting", "waiting"]
    assert by_name(alone)["b"]["reason"] == "started by multi on h2, which cannot be checked: it may run there"
    assert by_name(alone)["b"]["state"] == "started"  # as it was: the target it runs on may not be looked at


def test_a_failed_host_with_an_unreadable_record_does_not_stop_the_others(run_module, cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    for fail_on_incomplete in (True, False):
        args = cluster.params(targets(cluster, "h2"), failed_hosts=["h5", "h1"], fail_on_incomplete=fail_on_incomplete)
        result = run_module(vm_evacuate, args)
        assert result["failed"] is True and result["error_kind"] == "store"
        assert "recovery incomplete: h5: missing (no heartbeat file)" in result["msg"]
        assert result["unreadable"] == [{"host": "h5", "status": "missing", "reason": "no heartbeat file"}]
        assert result["incidents"] == {"h1": "h1/boot-a-h1"} and result["failed_hosts"] == ["h5", "h1"]
        assert result["vms"][0]["status"] == "started"
        documented(result)
    # The second call opened nothing (h1 is owed already) and retried 'a' on h2, its claim's target: each
    # test:/// connection is a fresh host that does not run it any more.
    assert result["opened"] == [] and result["vms"][0]["claim"]["action"] == "retry"

    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), failed_hosts=["h5", "h6"]))
    assert result["failed"] is True and result["error_kind"] == "store"
    assert "recovery incomplete: h5: missing (no heartbeat file); h6: missing (no heartbeat file)" in result["msg"]
    assert [u["host"] for u in result["unreadable"]] == ["h5", "h6"]
    assert [v["failed_host"] for v in result["vms"]] == ["h1"]  # the open document of h1 is still worked
    documented(result)


@pytest.mark.parametrize("order", [["h1", "h5"], ["h5", "h1"]])
def test_a_vm_listed_by_two_failed_hosts_is_owed_by_one_of_them(cluster, order):
    cluster.vm("moved")
    cluster.vm("stays")
    cluster.record("h1", ["moved", "stays"], ts=time.time() - 10)
    cluster.record("h5", ["moved"])
    cluster.record("h2")
    planned = multi(cluster, targets(cluster, "h2"), hosts=order, check_mode=True)
    assert sorted(p["name"] for p in planned["plan"]) == ["moved", "stays"]
    assert not os.path.exists(owed.owed_dir(cluster.store))
    result = multi(cluster, targets(cluster, "h2"), hosts=order)
    later = order[1]  # opened second: the document opened first hands the VM over to it
    assert sorted((v["name"], v["failed_host"], v["status"]) for v in result["vms"]) == [
        ("moved", later, "started"), ("stays", "h1", "started")]
    earlier = cluster.entry(order[0], "moved")
    assert (earlier["state"], earlier["target"]) == ("moved", later)
    assert "listed by the last record of %s" % later in earlier["last_error"]
    assert [vm["state"] for vm in cluster.owed(later).data["vms"] if vm["name"] == "moved"] == ["started"]


def test_a_document_opened_meanwhile_by_another_run_is_worked_not_an_error(cluster, hosts, monkeypatch):
    """Two controllers confirm the same death at once: one opens the owed document (link(2)), the other works it."""
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h2")
    real_open = owed.OwedBook.open

    def raced(book, host, data, current=None):
        real_open(owed.OwedBook(cluster.store, "other-run"), host, dict(data, opened_by="other-run"), current)
        return real_open(book, host, data, current)

    monkeypatch.setattr(owed.OwedBook, "open", raced)
    result = run(cluster, hosts.targets("h2"), factory=hosts.factory())
    assert result["unreadable"] == [] and result["opened"] == [] and result["incidents"] == {"h1": "h1/boot-a-h1"}
    assert by_name(result)["a"]["status"] == "started" and hosts.copies("a") == ["h2"]
    assert cluster.owed("h1").data["opened_by"] == "other-run"
    assert "h1" in read_marks(cluster.store, FENCED)["active"]


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
    assert result["opened"] == ["h1", "h5"] and result["owed"] == {"h1": states(owed=1), "h5": states(owed=1)}


def test_failed_hosts_are_never_targets(cluster):
    cluster.vm("a")
    cluster.record("h1", ["a"])
    cluster.record("h5")
    cluster.record("h2")
    result = multi(cluster, targets(cluster, "h1", "h5", "h2"), check_mode=True)
    hosts = dict((t["host"], t) for t in result["targets"])
    assert hosts["h1"]["reason"] == hosts["h5"]["reason"] == "is a failed host"
    assert hosts["h5"]["status"] == "excluded" and by_name(result)["a"]["host"] == "h2"


# ----------------------------------------------------------------------------------------- recovery that converges


def test_a_call_without_failed_hosts_works_the_open_documents_until_they_close(cluster, hosts):
    cluster.vm("a", 60)
    cluster.vm("b", 40)
    cluster.record("h1", ["a", "b"])
    cluster.record("h2")
    clock = Clock()
    opening = run(cluster, [], clock=clock, fail_on_incomplete=False)  # the run that fences h1 has no live target
    assert opening["opened"] == ["h1"] and opening["counts"] == counts(unplaced=2)
    assert [v["reason"] for v in opening["vms"]] == ["no target host is available"] * 2
    assert read_marks(cluster.store, FENCED)["active"]["h1"]["data"]["incident"] == "h1/boot-a-h1"

    clock.advance(30)  # retry_s: both are due
    second = run(cluster, hosts.targets("h2"), factory=hosts.factory(), clock=clock, failed_hosts=[])
    assert second["failed_hosts"] == [] and second["opened"] == [] and second["counts"] == counts(started=2)
    assert [(v["previous"], v["state"], v["attempts"]) for v in second["vms"]] == [("unplaced", "started", 2)] * 2
    assert hosts.copies("a") == hosts.copies("b") == ["h2"]

    cluster.record("h2", ["a", "b"])
    clock.advance(60)
    third = run(cluster, hosts.targets("h2"), factory=hosts.factory(), clock=clock, failed_hosts=[])
    assert third["closed"] == ["h1"] and third["owed"] == {"h1": states(verified=2)} and third["plan"] == []
    assert [t["to"] for t in third["transitions"]] == ["verified", "verified"]

    fourth = run(cluster, hosts.targets("h2"), factory=hosts.factory(), clock=clock, failed_hosts=[])
    assert fourth["changed"] is False and fourth["vms"] == [] and fourth["closed"] == []
    assert hosts.copies("a") == hosts.copies("b") == ["h2"]


def test_an_unplaced_vm_backs_off_and_is_retried_once_due(cluster, hosts):
    cluster.vm("big", mem=3000)
    cluster.record("h1", ["big"])
    cluster.record("h2", mem=1000)
    clock = Clock()
    t0 = clock.now
    tlist = hosts.targets("h2")
    again = dict(factory=hosts.factory(), clock=clock, retry_s=10.0, retry_max_s=15.0, fail_on_incomplete=False)
    first = run(cluster, tlist, owner="run-1", **again)
    vm = first["vms"][0]
    assert (vm["status"], vm["attempts"], vm["next_try"]) == ("unplaced", 1, t0 + 10) and first["attempts"] == 1

    clock.advance(9.9)  # not due: nothing is tried, nothing is written
    generation = cluster.owed("h1").generation
    waiting = run(cluster, tlist, failed_hosts=[], owner="run-2", **again)  # each run has its own owner
    vm = waiting["vms"][0]
    assert (vm["status"], vm["state"], vm["attempts"], waiting["attempts"]) == ("waiting", "unplaced", 1, 0)
    assert "next try at" in vm["reason"] and "attempt 1 failed: no host has 3000 MiB" in vm["reason"]
    assert cluster.owed("h1").generation == generation and waiting["plan"] == []

    clock.advance(0.1)  # due: tried again, still no room; the wait doubles, capped at retry_max_s
    retried = run(cluster, tlist, failed_hosts=[], **again)
    vm = retried["vms"][0]
    assert (vm["status"], vm["attempts"], vm["next_try"]) == ("unplaced", 2, t0 + 10 + 15)

    cluster.record("h2", mem=4096)  # capacity appears (a VM stopped, a host returned)
    clock.advance(14)
    assert run(cluster, tlist, failed_hosts=[], **again)["vms"][0]["status"] == "waiting"
    clock.advance(1)
    done = run(cluster, tlist, failed_hosts=[], **again)
    vm = done["vms"][0]
    assert (vm["status"], vm["state"], vm["previous"], vm["attempts"], vm["next_try"]) == ("started", "started", "unplaced", 3, None)
    assert hosts.copies("big") == ["h2"]


def test_verified_needs_the_targets_own_record_to_list_the_vm(cluster, hosts):
    cluster.vm("a")
    cluster.vm("b")
    cluster.record("h1", ["a", "b"])
    cluster.record("h2")
    first = run(cluster, hosts.targets("h2"), factory=hosts.factory())
    assert [v["state"] for v in first["vms"]] == ["started", "started"] and first["closed"] == []

    cluster.record("h2", ["a"])  # the writer's next record lists one of them
    second = run(cluster, hosts.targets("h2"), factory=hosts.factory(), failed_hosts=[])
    assert [(v["name"], v["status"], v["state"]) for v in second["vms"]] == [("a", "running", "verified"), ("b", "running", "started")]
    assert [(t["vm"], t["from"], t["to"]) for t in second["transitions"]] == [("a", "started", "verified")]
    assert second["owed"] == {"h1": states(started=1, verified=1)} and second["closed"] == []

    # with beat_timeout, the call itself waits for the target's writer to list what it found or started
    writer = threading.Timer(0.3, cluster.record, ("h2", ["a", "b"]))
    writer.start()
    try:
        third = run(cluster, hosts.targets("h2"), factory=hosts.factory(), failed_hosts=[], beat_timeout_s=5.0)
    finally:
        writer.join()
    assert [(v["name"], v["state"]) for v in third["vms"]] == [("b", "verified")]  # a was verified already: not worked
    assert third["closed"] == ["h1"] and third["elapsed"] < 5.0


def test_a_dying_target_hands_over_what_its_record_lists(cluster, hosts):
    """h1 dies, its VMs start on h2; h2 dies before its writer listed b. The last record of h2 lists a, so h2's own
    recovery owes a (h1's entry is 'moved'); b is still h1's, and its claim on h2 - fenced now - is taken over."""
    cluster.vm("a", 60)
    cluster.vm("b", 40)
    cluster.record("h1", ["a", "b"])
    cluster.record("h2")
    cluster.record("h3")
    first = run(cluster, hosts.targets("h2"), factory=hosts.factory(), owner="run-1")
    assert first["counts"] == counts(started=2) and hosts.copies("a") == hosts.copies("b") == ["h2"]
    cluster.record("h2", ["a"], boot="boot-b")  # its last record
    hosts.power_off("h2")

    second = run(cluster, hosts.targets("h3"), factory=hosts.factory(), failed_hosts=["h2"], owner="run-2")
    assert second["opened"] == ["h2"] and second["incidents"] == {"h1": "h1/boot-a-h1", "h2": "h2/boot-b-h2"}
    assert sorted((v["name"], v["failed_host"], v["status"], v["host"]) for v in second["vms"]) == [
        ("a", "h2", "started", "h3"), ("b", "h1", "started", "h3")]
    assert (cluster.entry("h1", "a")["state"], cluster.entry("h1", "a")["target"]) == ("moved", "h2")
    assert by_name(second)["b"]["claim"]["action"] == "takeover"
    assert by_name(second)["a"]["claim"]["action"] == "takeover"  # the claim of h1's incident is history for h2's
    assert second["owed"] == {"h1": states(started=1, moved=1), "h2": states(started=1)}
    assert read_marks(cluster.store, FENCED)["active"]["h2"]["data"]["vms"] == [cluster.vms["a"]["uuid"]]
    assert hosts.copies("a") == hosts.copies("b") == ["h3"]  # once each, on the live host

    cluster.record("h3", ["a", "b"])
    third = run(cluster, hosts.targets("h3"), factory=hosts.factory(), failed_hosts=[], owner="run-3")
    assert sorted(third["closed"]) == ["h1", "h2"] and third["changed"] is True
    assert cluster.entry("h1", "b")["state"] == cluster.entry("h2", "a")["state"] == "verified"
    assert sorted(cluster.entry("h1", "b")["copies"]) == ["h2", "h3"]  # reconcile removes the one on h2 when it returns


@pytest.mark.parametrize("corrupt", ["garbage", "bad data", "another host"])
def test_a_corrupt_owed_document_is_its_hosts_error_only(cluster, shared_default, corrupt):
    cluster.vm("a")
    cluster.vm("b")
    cluster.record("h1", ["a"])
    cluster.record("h5", ["b"])
    cluster.record("h2")
    tlist = [{"host": "h2", "uri": shared_default}]
    multi(cluster, tlist)
    directory = os.path.join(owed.owed_dir(cluster.store), "h1")
    current = cluster.owed("h1")
    if corrupt == "garbage":
        with open(current.path, "w") as handle:
            handle.write("garbage")
        bad = current.path
    else:
        docs = DocumentStore(owed.owed_dir(cluster.store), owed.KIND, max_bytes=owed.MAX_BYTES, file_mode=0o640)
        data = dict(current.data, vms=[dict(current.data["vms"][0], state="exploded")]) if corrupt == "bad data" else \
            dict(current.data, host="h5")
        bad = docs.replace("h1", current, "hand-edit", data).path
    conn = libvirt.open(shared_default)
    conn.lookupByUUIDString(cluster.vms["b"]["uuid"]).destroy()  # h5's VM needs work; h1's runs on h2

    for failed_hosts in ([], ["h1"]):
        with pytest.raises(StoreError) as err:
            run(cluster, tlist, failed_hosts=failed_hosts)
        result = err.value.result
        assert [u["host"] for u in result["unreadable"]] == ["h1"] and "h1: " in str(err.value)
        assert result["unreadable"][0]["status"] == ("invalid" if not failed_hosts else "error")
        assert [(v["name"], v["failed_host"]) for v in result["vms"]] == [("b", "h5")]  # another host's work goes on
        assert result["opened"] == [] and "h1" not in result["owed"]
    assert by_name(result)["b"]["status"] == "running"
    # never read as "nothing owed", never replaced, never repaired, nothing destroyed
    assert sorted(os.listdir(directory))[-1] == os.path.basename(bad)
    assert conn.lookupByUUIDString(cluster.vms["a"]["uuid"]).isActive()
    assert read_marks(cluster.store, FENCED)["active"].keys() == {"h1", "h5"}
    conn.close()


@pytest.mark.parametrize("hostile", ["listed twice", "huge group"])
def test_a_last_record_that_would_make_an_invalid_owed_document_opens_nothing(cluster, hosts, hostile):
    """What the owed reader would reject is never written: the host's recovery is not locked by its own document."""
    cluster.vm("a", group="g" * 600 if hostile == "huge group" else "")
    cluster.vm("b")
    cluster.record("h1", ["a", "a"] if hostile == "listed twice" else ["a"])
    cluster.record("h5", ["b"])
    cluster.record("h2")
    for _attempt in range(2):  # and the next run says the same: nothing was left behind
        with pytest.raises(StoreError) as err:
            multi(cluster, hosts.targets("h2"), factory=hosts.factory())
        result = err.value.result
        assert [(u["host"], u["status"]) for u in result["unreadable"]] == [("h1", "error")]
        assert "refusing to write an owed document of h1 that would not validate" in result["unreadable"][0]["reason"]
        assert cluster.owed("h1") is None and by_name(result)["b"]["status"] in ("started", "running")
    assert hosts.copies("a") == [] and hosts.copies("b") == ["h2"]


def test_check_mode_writes_nothing_even_with_work_owed(cluster, hosts):
    cluster.vm("a")
    cluster.vm("big", mem=3000)
    cluster.record("h1", ["a", "big"])
    cluster.record("h2", mem=1000)
    clock = Clock()
    run(cluster, hosts.targets("h2"), factory=hosts.factory(), clock=clock, fail_on_incomplete=False)
    cluster.record("h2", mem=4096)
    clock.advance(31)
    store = os.path.join(cluster.store, "kvmha")

    def snapshot():
        return sorted((root, tuple(sorted(files))) for root, _dirs, files in os.walk(store))

    cluster.vm("c")
    cluster.record("h5", ["c"])  # and another host dies
    before = snapshot()
    plan = run(cluster, hosts.targets("h2"), factory=hosts.factory(), clock=clock, check_mode=True, failed_hosts=["h1", "h5"])
    assert by_name(plan)["big"]["status"] == by_name(plan)["c"]["status"] == "planned"
    assert by_name(plan)["a"]["status"] == "running" and plan["opened"] == ["h5"]
    assert snapshot() == before and hosts.copies("big") == hosts.copies("c") == []
    assert cluster.owed("h5") is None and "h5" not in read_marks(cluster.store, FENCED)["active"]


@pytest.mark.parametrize("point", ["opened", "define", "start", "started"])
def test_a_killed_run_is_finished_by_the_next_one_with_one_copy_each(cluster, hosts, monkeypatch, point):
    """The controller dies after the document was opened and the mark written, after the claim, after the define,
    or right after the start; the next run (another owner) reports the interrupted run and finishes its work."""
    cluster.vm("a", 60)
    cluster.vm("b", 40)
    cluster.record("h1", ["a", "b"])
    cluster.record("h2")
    cluster.record("h3")
    tlist = hosts.targets("h2", "h3")
    victim = cluster.vms["a"]["uuid"]
    with monkeypatch.context() as patch:
        if point == "opened":
            def die(*_args, **_kwargs):
                raise Killed("claim")
            patch.setattr(ClaimBook, "acquire", die)
        with pytest.raises(Killed):
            run(cluster, tlist, factory=hosts.factory(None if point == "opened" else (point, victim)), owner="first")
    doc = cluster.owed("h1")
    assert (doc.data["worked_by"], doc.data["work_finished"]) == ("first", None)
    marked = read_marks(cluster.store, FENCED)["active"]["h1"]["data"]["vms"]  # written as the document opened
    assert sorted(marked) == sorted(vm["uuid"] for vm in doc.data["vms"])
    assert hosts.copies("a") == (["h2"] if point == "started" else [])

    second = run(cluster, tlist, factory=hosts.factory(), failed_hosts=[], owner="second")
    assert [(i["host"], i["owner"], i["vms"]) for i in second["interrupted"]] == [("h1", "first", {"a": "owed", "b": "owed"})]
    assert second["opened"] == [] and second["owed"] == {"h1": states(started=2)}
    a = by_name(second)["a"]
    if point == "started":
        assert (a["status"], a["host"]) == ("running", "h2")  # the census found it: no claim looked at
    elif point == "opened":
        assert (a["status"], a["claim"]["action"]) == ("started", "create")
    else:
        assert (a["status"], a["host"], a["claim"]["action"]) == ("started", "h2", "retry")  # its claim's target
    for name in ("a", "b"):
        assert len(hosts.copies(name)) == 1, (name, hosts.copies(name))
    third = run(cluster, tlist, factory=hosts.factory(), failed_hosts=[], owner="third")
    assert third["interrupted"] == [] and third["changed"] is False  # the second run finished
    for name in ("a", "b"):
        assert len(hosts.copies(name)) == 1


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
    assert set(result.get("counts", COUNTS)) == set(COUNTS)


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
    waiting = run_module(vm_evacuate, dict(args, failed_hosts=[], fail_on_incomplete=False))
    assert waiting["counts"]["waiting"] == 1
    documented(waiting)
    cluster.vm("d")
    cluster.record("h6", ["d"])
    replanned = multi(cluster, targets(cluster, "h2", "h3"), hosts=["h6"], factory=BreakingClient, strategy="best_fit",
                      fail_on_incomplete=False)
    assert replanned["replanned"]
    documented(replanned)
    for key in RETURNED["owed"]["sample"]["h1"]:
        assert key in owed.STATES


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


# ----------------------------------------------------------------------------------------- the power read before opening


class Bmcs:
    """The BMC of each failed host, behind the module's real IpmiClient: only pyghmi's session is replaced (by the
    FakeSession of the ipmi tests), one per address; an address listed in ``dead`` does not answer the login."""

    def __init__(self, monkeypatch, barrier=None):
        self.sessions = {}
        self.dead = set()
        self.barrier = barrier
        self.logins = []
        monkeypatch.setattr(_ipmi, "_pyghmi_login", self.login)
        _ipmi._SESSIONS.clear()
        _ipmi._ABANDONED.clear()

    def chassis(self, address, state):
        self.sessions[address] = FakeSession(state=state)

    def login(self, address, port, username, password, kg):
        self.logins.append((address, username, password))
        if self.barrier is not None:
            self.barrier.wait()  # every read must be under way at once, or this times out and the read fails
        if address in self.dead:
            raise pyghmi_exceptions.IpmiException("timeout")
        return self.sessions[address]


def power_check(host, address, **over):
    return dict({"host": host, "address": address, "port": 623, "username": "admin", "password": "s3cr3t-pw",
                 "kg": None, "unknown_ok": False}, **over)


@pytest.fixture
def bmcs(monkeypatch):
    kept = Bmcs(monkeypatch)
    yield kept
    _ipmi._SESSIONS.clear()
    _ipmi._ABANDONED.clear()


def test_a_failed_host_read_off_right_before_its_recovery_is_recovered(run_module, cluster, bmcs, shared_default):
    cluster.vm("a", 60)
    cluster.record("h1", ["a"])
    cluster.record("h2")
    bmcs.chassis("192.0.2.1", "off")
    args = cluster.params([{"host": "h2", "uri": shared_default}], power_checks=[power_check("h1", "192.0.2.1")])
    result = run_module(vm_evacuate, args)
    assert not result.get("failed") and result["opened"] == ["h1"] and result["counts"] == counts(started=1)
    assert result["powerstate"] == {"h1": "off"} and result["aborted"] == []
    assert bmcs.sessions["192.0.2.1"].controls == []  # read, never switched
    assert "s3cr3t-pw" not in json.dumps(result)  # the password is no_log, in the invocation too
    documented(result)


@pytest.mark.parametrize("state, unknown_ok, words", [
    ("on", False, "not off any more right before its recovery (power on)"),
    ("on", True, "not off any more right before its recovery (power on)"),  # a BMC that says on always stops it
    ("dead", False, "its power could not be read right before its recovery (unreachable: "),
])
def test_a_failed_host_not_read_off_is_not_recovered(run_module, cluster, bmcs, state, unknown_ok, words):
    cluster.vm("a", 60)
    cluster.record("h1", ["a"])
    cluster.record("h2")
    if state == "dead":
        bmcs.dead.add("192.0.2.1")
    else:
        bmcs.chassis("192.0.2.1", state)
    args = cluster.params(targets(cluster, "h2"), power_checks=[power_check("h1", "192.0.2.1", unknown_ok=unknown_ok)])
    result = run_module(vm_evacuate, args)
    assert not result.get("failed") and result["changed"] is False, result
    assert [(a["host"], words in a["reason"]) for a in result["aborted"]] == [("h1", True)], result["aborted"]
    assert result["powerstate"] == {"h1": "on" if state == "on" else "unknown"}
    assert result["opened"] == [] and result["vms"] == [] and cluster.owed("h1") is None
    assert read_marks(cluster.store, FENCED)["active"] == {}  # nothing written for it
    assert words in json.dumps(result["warnings"]), result["warnings"]
    documented(result)


def test_a_host_judged_down_without_its_bmc_is_recovered_when_the_bmc_cannot_be_read(run_module, cluster, bmcs, shared_default):
    """unknown_ok (a self-fence guarantee, an operator's confirm-off): only a BMC that says on stops it."""
    cluster.vm("a", 60)
    cluster.record("h1", ["a"])
    cluster.record("h2")
    bmcs.dead.add("192.0.2.1")
    args = cluster.params([{"host": "h2", "uri": shared_default}],
                          power_checks=[power_check("h1", "192.0.2.1", unknown_ok=True)])
    result = run_module(vm_evacuate, args)
    assert not result.get("failed") and result["opened"] == ["h1"] and result["counts"] == counts(started=1)
    assert result["powerstate"] == {"h1": "unknown"} and result["aborted"] == []


def test_hosts_that_died_together_are_read_at_once_and_one_not_off_stops_only_itself(cluster, monkeypatch):
    """h1 reads off, h5 on: h1's VMs are recovered, nothing of h5's. Both BMCs are logged into at once - each login
    waits at a barrier for the other - so one slow BMC does not add to the other's time; each in a process of its
    own (the barrier is one between processes), so this one holds no BMC session afterwards."""
    bmcs = Bmcs(monkeypatch, barrier=multiprocessing.get_context("fork").Barrier(2, timeout=10))
    cluster.vm("a", 60)
    cluster.vm("b", 60)
    cluster.record("h1", ["a"])
    cluster.record("h5", ["b"])
    cluster.record("h2")
    bmcs.chassis("192.0.2.1", "off")
    bmcs.chassis("192.0.2.5", "on")
    checks = [power_check("h1", "192.0.2.1"), power_check("h5", "192.0.2.5")]
    result = Evacuation(cluster.params(targets(cluster, "h2"), failed_hosts=["h1", "h5"], power_checks=checks),
                        power_client=vm_evacuate.ipmi_client).run()
    assert result["powerstate"] == {"h1": "off", "h5": "on"} and _ipmi._SESSIONS == {} and _ipmi._ABANDONED == set()
    assert result["opened"] == ["h1"] and [a["host"] for a in result["aborted"]] == ["h5"]
    assert [vm["name"] for vm in result["vms"]] == ["a"] and cluster.owed("h5") is None


class CountedClient(LibvirtClient):
    """A real test-driver client that counts the connections opened and closed, and may wait at a barrier when it opens."""

    opened, closed, barrier = [], [], None

    def open(self):
        if self.barrier is not None:
            self.barrier.wait()
        super().open()
        self.opened.append(self.label)
        return self

    def close(self):
        if self._conn is not None:
            self.closed.append(self.label)
        super().close()


@pytest.fixture
def counted(monkeypatch):
    monkeypatch.setattr(CountedClient, "opened", [])
    monkeypatch.setattr(CountedClient, "closed", [])
    monkeypatch.setattr(CountedClient, "barrier", None)
    return CountedClient


def test_the_targets_are_connected_while_the_failed_hosts_power_is_read(cluster, monkeypatch, counted):
    """A run that opens a recovery connects to its targets at once: the BMC's login and the target's connection each
    wait at a barrier for the other, so a connection made only after the power read fails the read (and the test)."""
    counted.barrier = threading.Barrier(2, timeout=5)
    bmcs = Bmcs(monkeypatch, barrier=counted.barrier)
    cluster.vm("a", 60)
    cluster.record("h1", ["a"])
    cluster.record("h2")
    bmcs.chassis("192.0.2.1", "off")
    result = Evacuation(cluster.params(targets(cluster, "h2"), power_checks=[power_check("h1", "192.0.2.1")], power_timeout_s=10),
                        client_factory=counted, power_client=vm_evacuate.ipmi_client).run()
    assert result["powerstate"] == {"h1": "off"} and result["counts"] == counts(started=1), result
    assert counted.opened == ["h2"] and counted.closed == ["h2"]  # one connection, taken by the recovery, closed after


def test_an_early_connection_that_no_work_takes_is_closed(cluster, counted):
    """h1 has no record to recover from: nothing is owed after all, and the connection made early is closed."""
    cluster.record("h2")
    with pytest.raises(StoreError) as failed:  # the run is incomplete: h1's recovery could not be opened
        Evacuation(cluster.params(targets(cluster, "h2")), client_factory=counted).run()
    assert failed.value.result["opened"] == [] and [u["host"] for u in failed.value.result["unreadable"]] == ["h1"]
    assert counted.opened == counted.closed == ["h2"]


def test_a_run_that_opens_nothing_connects_only_when_something_is_owed(cluster, counted):
    cluster.record("h2")
    result = Evacuation(cluster.params(targets(cluster, "h2"), failed_hosts=[]), client_factory=counted).run()
    assert result["vms"] == [] and counted.opened == []


def test_check_mode_reads_the_power_and_writes_nothing(run_module, cluster, bmcs):
    cluster.vm("a", 60)
    cluster.record("h1", ["a"])
    cluster.record("h2")
    bmcs.chassis("192.0.2.1", "on")
    args = cluster.params(targets(cluster, "h2"), power_checks=[power_check("h1", "192.0.2.1")])
    result = run_module(vm_evacuate, args, check_mode=True)
    assert result["powerstate"] == {"h1": "on"} and result["opened"] == [] and result["changed"] is False
    assert sorted(os.listdir(os.path.join(cluster.store, "kvmha"))) == ["hosts", "vms"]


@pytest.mark.parametrize("checks, words", [
    ([power_check("h2", "192.0.2.2")], "power check of h2, which is not a failed host"),
    ([power_check("h1", "192.0.2.1"), power_check("h1", "192.0.2.9")], "power check of h1 is listed twice"),
    ([power_check("../h1", "192.0.2.1")], "host name '../h1'"),
])
def test_power_checks_arguments(run_module, cluster, bmcs, checks, words):
    cluster.record("h1")
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), power_checks=checks))
    assert result["failed"] is True and words in result["msg"] and bmcs.logins == []


def test_a_bad_power_timeout_is_refused(run_module, cluster):
    result = run_module(vm_evacuate, cluster.params(targets(cluster, "h2"), power_timeout_s=0))
    assert result["failed"] is True and "power_timeout_s" in result["msg"]


@pytest.fixture
def real_bmc(tmp_path):
    """The project's BMC simulator (lab/bmc.py) on a loopback port, driven and read with ipmitool too: a real
    IPMI-over-LAN peer for the module's real pyghmi client. Yields a function running ipmitool against it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "bmc-password").write_text("s3cr3t-pw\n")
    bmc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "lab.bmc", "--address", "127.0.0.1", "--port", str(port), "--user", "admin",
         "--password-file", str(tmp_path / "bmc-password"), "--state-file", str(tmp_path / "bmc-state")],
        cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert bmc.stdout.readline().startswith("READY"), bmc.stdout.read()

        def ipmitool(*command):
            done = subprocess.run(["ipmitool", "-I", "lanplus", "-C", "3", "-N", "1", "-R", "2", "-H", "127.0.0.1",
                                   "-p", str(port), "-U", "admin", "-P", "s3cr3t-pw", *command],
                                  capture_output=True, text=True, timeout=30, check=False)
            return done.stdout.strip()

        ipmitool.port = port
        yield ipmitool
    finally:
        bmc.terminate()
        bmc.wait(10)
        bmc.stdout.close()
        _ipmi._SESSIONS.clear()
        _ipmi._ABANDONED.clear()


@pytest.mark.parametrize("power, password, recovered, words", [
    ("off", "s3cr3t-pw", True, ""),
    ("on", "s3cr3t-pw", False, "not off any more right before its recovery (power on)"),
    ("off", "wrong-pw", False, "its power could not be read right before its recovery (auth: "),
])
def test_the_power_read_against_a_real_bmc(run_module, cluster, real_bmc, shared_default, power, password, recovered, words):
    """Set with ipmitool, read by vm_evacuate's own client over IPMI on loopback: off recovers, on or unreadable does
    not; ipmitool reads the chassis unchanged afterwards (a read never switches anything)."""
    real_bmc("power", power)
    assert real_bmc("power", "status") == "Chassis Power is %s" % power
    cluster.vm("a", 60)
    cluster.record("h1", ["a"])
    cluster.record("h2")
    check = power_check("h1", "127.0.0.1", port=real_bmc.port, password=password)
    result = run_module(vm_evacuate, cluster.params([{"host": "h2", "uri": shared_default}], power_checks=[check]))
    assert not result.get("failed"), result
    assert result["powerstate"] == {"h1": power if password == "s3cr3t-pw" else "unknown"}
    assert (result["opened"] == ["h1"]) is recovered and (result["counts"] == counts(started=1)) is recovered
    assert [words in a["reason"] for a in result["aborted"]] == ([] if recovered else [True]), result["aborted"]
    assert real_bmc("power", "status") == "Chassis Power is %s" % power
