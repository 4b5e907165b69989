# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""status.yml (and kvmha.cluster.cluster_info behind it) run for real against a store written by the real heartbeat
writer (in-process, reading libvirt's test driver through the binding), with the marks and owed documents the
watchdog writes (the collection's own store code), incident records written by the journal callback, and a
fence-readiness file in fence_readiness.yml's format: a healthy cluster and a failed one. The hosts' connection
is SSH to a closed loopback port, so any connection to a host would fail the run: status opens none."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
import uuid

import pytest

from ansible_collections.kvmha.cluster.plugins.callback import journal
from ansible_collections.kvmha.cluster.plugins.module_utils import _heartbeat, _marks, _recovery
from ansible_collections.kvmha.cluster.tests._require import require_module

ROOT = pathlib.Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
OWNER = "watchdog/test/20261203T101500-1"
INTERVAL = 60.0  # the writer's longest: a record stays fresh for 3 x 60 s, however loaded the machine that runs the playbook

DOMAIN = """  <domain type='test'>
    <name>{name}</name><uuid>{uuid}</uuid>
    <metadata><kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority="{priority}" group="{group}"/></metadata>
    <memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os>
  </domain>
"""
NODE = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads><active>4</active><mhz>2000</mhz></cpu>
  <memory>8388608</memory>
{domains}</node>
"""
GUESTS = {  # host: [(name, priority, group)]
    "h1": [("db1", 90, "db"), ("web1", 20, "")],
    "h2": [("db2", 80, "db")],
    "h3": [("web2", 10, "")],
}


class Cluster:
    """Three hosts whose records the real writer writes, an inventory, a journal and a readiness directory."""

    def __init__(self, base: pathlib.Path, writer):
        require_module("libvirt", "the heartbeat writer reads libvirt's test driver through the Python binding")
        self.base = base
        self.store = base / "store"
        self.journal = base / "journal"
        self.writers = {}
        self.uuids = {}
        for host, guests in GUESTS.items():
            domains = ""
            for name, priority, group in guests:
                self.uuids[name] = str(uuid.uuid4())
                domains += DOMAIN.format(name=name, uuid=self.uuids[name], priority=priority, group=group)
            (base / (host + ".xml")).write_text(NODE.format(domains=domains))
            (base / (host + ".boot")).write_text(str(uuid.uuid4()) + "\n")
            conf = writer.parse_config({
                "host": host, "store": str(self.store), "require_mount": False, "state_dir": str(base / (host + "-run")),
                "boot_id_path": str(base / (host + ".boot")), "interval": INTERVAL,
                "libvirt": {"method": "binding", "uri": "test://%s" % (base / (host + ".xml")), "timeout": 5.0},
                "capacity": {"mem_mib": 8192, "vcpus": 8}})
            self.writers[host] = writer.Writer(conf)
        hosts = {h: {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_connection": "ssh"} for h in GUESTS}
        hosts["h4"] = dict(hosts["h1"])  # a host whose record is garbage
        self.inventory = base / "inventory.json"
        self.inventory.write_text(json.dumps({"all": {"children": {"kvm_hosts": {
            "vars": {"kvmha_cluster": "lab", "kvmha_store_path": str(self.store)}, "hosts": hosts}}}}))

    def beat(self, host: str) -> dict:
        """One beat of ``host``'s writer, repeated until its record lists its VMs (the first libvirt read may be late)."""
        writer = self.writers[host]
        end = time.monotonic() + 60  # a hang bound only
        while True:
            writer.beat()
            record = _heartbeat.parse_record(pathlib.Path(_heartbeat.record_path(str(self.store), host)).read_bytes())
            if len(record["vms"]) == len(GUESTS[host]):
                return record
            assert time.monotonic() < end, "the writer of %s never listed its VMs: %s" % (host, record.get("manifest"))
            time.sleep(0.2)

    def run(self, *args, **extra):
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(self.journal))
        env.pop("KVMHA_METRICS_FILE", None)
        done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory), "kvmha.cluster.status", "-e", json.dumps(extra), *args],
                              capture_output=True, text=True, env=env, cwd=str(self.base), check=False, timeout=300)
        done.output = done.stdout + done.stderr
        return done

    def close(self):
        for writer in self.writers.values():
            writer.source.close()


@pytest.fixture
def cluster(tmp_path, writer):
    site = Cluster(tmp_path, writer)
    try:
        yield site
    finally:
        site.close()


def table(output: str) -> dict:
    """The host rows of the printed table, by host: the text of each row."""
    rows = {}
    for line in output.splitlines():
        text = line.strip().strip('",')
        for host in list(GUESTS) + ["h4"]:
            if text.startswith(host + " "):
                rows.setdefault(host, text)
    return rows


def test_a_healthy_cluster(cluster):
    for host in GUESTS:
        cluster.beat(host)
    (cluster.store / "kvmha" / "hosts" / "h4.json").write_bytes(b'{"version": 1, "host": "h4"')
    done = cluster.run(kvmha_status_dest=str(cluster.base / "status.json"))
    assert done.returncode == 0, done.output
    rows = table(done.output)
    for host in GUESTS:
        assert " alive " in rows[host], rows[host]
    assert "error: not JSON" in rows["h4"], rows["h4"]
    assert "cluster lab: 4 hosts - 1 error, 3 alive; 4 HA VMs, 0 not running" in done.output
    document = json.loads((cluster.base / "status.json").read_text())
    (lab,) = document["clusters"]
    assert [(r["host"], r["state"]) for r in lab["hosts"]] == [("h1", "alive"), ("h2", "alive"), ("h3", "alive"), ("h4", "error")]
    assert [(v["name"], v["host"], v["priority"], v["group"], v["state"]) for v in lab["vms"]] == [
        ("db1", "h1", 90, "db", "running"), ("db2", "h2", 80, "db", "running"), ("web1", "h1", 20, "", "running"),
        ("web2", "h3", 10, "", "running")]
    assert lab["hosts"][0]["capacity"] == {"mem_free_mib": 8192 - 128, "vcpus_free": 6}
    assert "text" not in lab and lab["lease"] is None


def test_a_failed_cluster(cluster):
    records = {host: cluster.beat(host) for host in GUESTS}
    # h1 died a while ago: its last record stays on the store and ages.
    old = time.time() - 10 * INTERVAL
    os.utime(_heartbeat.record_path(str(cluster.store), "h1"), (old, old))
    # The watchdog fenced it and owes its VMs; one of them found no room.
    _marks.set_mark(str(cluster.store), _marks.FENCED, "h1", OWNER,
                    {"verdict": "SUSPECT", "rule": "R8", "vms": [vm["uuid"] for vm in records["h1"]["vms"]]})
    owed = _recovery.new_document("h1", "lab", "inc-1", "SUSPECT", "R8", records["h1"]["vms"], time.time(), OWNER)
    owed["vms"][1] = _recovery.transition(owed["vms"][1], _recovery.UNPLACED, time.time(), error="no host has 64 MiB free",
                                          attempted=True)
    _recovery.OwedBook(str(cluster.store), OWNER).open("h1", owed)
    # h2 is in maintenance; h3's writer was stopped.
    _marks.set_mark(str(cluster.store), _marks.MAINTENANCE, "h2", "alice", {"reason": "BIOS update"}, ttl=7200)
    cluster.writers["h3"].stop_reason = "writer stopped (SIGTERM)"
    cluster.writers["h3"].stop()
    # The journal's record of the incident, written by the callback itself.
    callback = journal.CallbackModule()
    callback.journal_dir, callback.live = str(cluster.journal), False
    incident = callback.incident("h1", "lab")
    incident.decision = {"verdict": "SUSPECT", "rule": "R8", "action": "fence", "reasons": ["everything silent"]}
    incident.heartbeat = {"status": "stale", "boot_id": records["h1"]["boot_id"]}
    callback.run.update(finished=time.time(), ok=True)
    callback.write_records()
    # fence_readiness.yml's textfile for the cluster, half an hour old.
    cluster.journal.joinpath("kvmha-fence-readiness-lab.prom").write_text(
        'kvmha_fence_ready{cluster="lab",host="h1",reason="off_expected"} 1\n'
        'kvmha_fence_ready{cluster="lab",host="h2",reason="bmc_auth"} 0\n'
        'kvmha_fence_readiness_last_run_timestamp_seconds{cluster="lab"} %.3f\n' % (time.time() - 1800))

    done = cluster.run(kvmha_status_dest=str(cluster.base / "status.json"))
    assert done.returncode == 0, done.output
    rows = table(done.output)
    assert "stale" in rows["h1"] and "fenced since " in rows["h1"] and "by %s; owed VMs 2" % OWNER in rows["h1"], rows["h1"]
    assert "SUSPECT R8 " in rows["h1"] and "yes (off_expected, 30 min ago)" in rows["h1"], rows["h1"]
    assert "maintenance until " in rows["h2"] and "by alice; reason: BIOS update" in rows["h2"], rows["h2"]
    assert "NO (bmc_auth, 30 min ago)" in rows["h2"], rows["h2"]
    assert "suspect: writer stopped gracefully: writer stopped (SIGTERM)" in rows["h3"], rows["h3"]
    assert "h4" in rows and "suspect: no heartbeat file" in rows["h4"], rows["h4"]
    assert "WARNING: no watched host's heartbeat looks alive (2)" in done.output  # h3 and h4: as the watchdog's observer check
    (lab,) = json.loads((cluster.base / "status.json").read_text())["clusters"]
    states = {r["host"]: r["state"] for r in lab["hosts"]}
    assert states == {"h1": "fenced", "h2": "maintenance", "h3": "suspect", "h4": "suspect"}
    vms = {v["name"]: (v["host"], v["state"], v["detail"]) for v in lab["vms"]}
    assert vms["db1"] == ("h1", "owed", "owed by h1")
    assert vms["web1"] == ("h1", "unplaced", "owed by h1; no host has 64 MiB free")
    assert vms["db2"][:2] == ("h2", "running") and vms["web2"][:2] == ("h3", "unknown (host suspect)")
    assert lab["hosts"][0]["last_verdict"]["verdict"] == "SUSPECT" and lab["hosts"][0]["boot_changes"] == 0


def test_json_format_prints_the_document_and_a_cluster_that_cannot_be_read_fails_the_run(cluster):
    for host in GUESTS:
        cluster.beat(host)
    done = cluster.run(kvmha_status_format="json")
    assert done.returncode == 0, done.output
    assert '"clusters": [' in done.output and '"state_text": "alive"' in done.output
    assert "HOST  HEARTBEAT" not in done.output
    os.rename(cluster.store, cluster.base / "unmounted")  # the store's mount is gone: not a cluster of dead hosts
    failed = cluster.run()
    assert failed.returncode != 0
    assert "cluster lab: CANNOT BE READ" in failed.output and "is the store mounted here?" in failed.output, failed.output
    assert "status: cannot read cluster(s) lab" in failed.output, failed.output


def test_a_bad_format_is_refused(cluster):
    done = cluster.run(kvmha_status_format="yaml")
    assert done.returncode != 0 and "kvmha_status_format must be text or json" in done.output
