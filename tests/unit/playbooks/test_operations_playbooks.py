# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""maintenance.yml, unfence.yml and fence_readiness.yml run for real without the lab: hosts reached with the local
connection, a store in a temporary directory with a stand-in heartbeat writer, the project's standalone BMC
simulator (lab/bmc.py) on loopback ports, and libvirt's test:///default driver. The end-to-end versions on the lab
are tests/e2e/test_operations.py."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks, _recovery
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy

ROOT = pathlib.Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
PASSWORD = "pw-%s" % uuid.uuid4().hex[:8]
TEST_DOMAIN = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the domain "test" of libvirt's test:///default


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BMC_STATES = {"on1": "on", "on2": "on", "off1": "off", "off2": "off", "off3": "off"}


@pytest.fixture(scope="module")
def bmcs(tmp_path_factory):
    """Standalone BMC simulators on loopback ports, named by the power state they report; stopped by pid at the end."""
    work = tmp_path_factory.mktemp("bmcs")
    (work / "password").write_text(PASSWORD + "\n")
    procs, ports = {}, {}
    try:
        for name, state in BMC_STATES.items():
            (work / name).write_text(state)
            ports[name] = free_udp_port()
            procs[name] = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-m", "lab.bmc", "--address", "127.0.0.1", "--port", str(ports[name]), "--user", "admin",
                 "--password-file", str(work / "password"), "--state-file", str(work / name)],
                cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, proc in procs.items():
            line = proc.stdout.readline()
            assert line.startswith("READY"), "BMC %s did not start: %s" % (name, line + proc.stdout.read())
        yield ports
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            proc.stdout.close()


@contextlib.contextmanager
def heartbeat(store, host, interval=0.5):
    """A stand-in heartbeat writer: a fresh record of `host` every `interval` seconds while the block runs."""
    stop = threading.Event()
    directory = pathlib.Path(store) / "kvmha" / "hosts"
    directory.mkdir(parents=True, exist_ok=True)
    boot = str(uuid.uuid4())

    def write():
        seq = 0
        while not stop.is_set():
            record = {"version": 1, "host": host, "boot_id": boot, "seq": seq, "ts": time.time(), "interval": interval,
                      "state": "running", "self_fence": {"armed": False, "deadline_s": 60},
                      "capacity": {"mem_free_mib": 1000, "vcpus_free": 4}, "vms": []}
            tmp = directory / (".%s.tmp" % host)
            tmp.write_text(json.dumps(record))
            os.replace(tmp, directory / (host + ".json"))
            seq += 1
            stop.wait(interval)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


class Site:
    """A fake cluster: inventory, store, journal and metrics directories under one temporary directory."""

    def __init__(self, base: pathlib.Path, hosts: dict):
        self.base = base
        self.store = base / "store"
        self.store.mkdir()
        self.inventory = base / "inventory.json"
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        self.inventory.write_text(json.dumps({"all": {
            "vars": {"kvmha_store_path": str(self.store)},
            "hosts": {"localhost": local},
            "children": {"kvm_hosts": {
                "vars": dict(local, kvmha_cluster="lab", kvmha_libvirt_uri="test:///default"),
                "hosts": hosts}}}}))

    def run(self, playbook, *args, **extra):
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(self.base / "journal"))
        env.pop("KVMHA_METRICS_FILE", None)
        done = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory), "kvmha.cluster." + playbook, "-e", json.dumps(extra), *args],
            capture_output=True, text=True, env=env, cwd=str(self.base), check=False, timeout=300)
        done.output = done.stdout + done.stderr
        return done

    def marks(self, kind):
        return _marks.read_marks(str(self.store), kind)


def bmc(port, password=PASSWORD):
    return {"kvmha_bmc_address": "127.0.0.1", "kvmha_bmc_port": port, "kvmha_bmc_username": "admin", "kvmha_bmc_password": password}


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path, {"h1": {}, "h2": {}, "h3": {}})


# ---------------------------------------------------------------------------------------------------- maintenance


def test_maintenance_enter_show_keep_and_check_mode(site):
    would = site.run("maintenance", "--check", kvmha_maintenance_hosts="h2", kvmha_maintenance_owner="alice",
                     kvmha_maintenance_reason="BIOS update", kvmha_maintenance_duration="90m")
    assert would.returncode == 0 and "h2: would enter maintenance" in would.output, would.output
    assert site.marks("maintenance")["active"] == {}
    entered = site.run("maintenance", kvmha_maintenance_hosts="h2", kvmha_maintenance_owner="alice",
                       kvmha_maintenance_reason="BIOS update", kvmha_maintenance_duration="90m")
    assert entered.returncode == 0 and "h2: entered maintenance until" in entered.output, entered.output
    mark = site.marks("maintenance")["active"]["h2"]
    assert mark["owner"] == "alice" and mark["data"]["reason"] == "BIOS update" and mark["ttl"] == 5400
    again = site.run("maintenance", kvmha_maintenance_hosts="h2", kvmha_maintenance_owner="bob", kvmha_maintenance_reason="other")
    assert again.returncode == 0 and "already in maintenance" in again.output and "owner alice" in again.output
    assert site.marks("maintenance")["active"]["h2"]["generation"] == mark["generation"]
    shown = site.run("maintenance", kvmha_maintenance_hosts="kvm_hosts", kvmha_maintenance_state="status")
    assert "h2: in maintenance until" in shown.output and "h1: not in maintenance." in shown.output, shown.output


def test_maintenance_lasts_as_long_as_host_marks_default_unless_told(site):
    """Issue 16: the playbook's default expiry is the module's (4 h, a firmware flash fits), never a second number."""
    from ansible_collections.kvmha.cluster.plugins.modules import host_mark  # noqa: PLC0415

    entered = site.run("maintenance", kvmha_maintenance_hosts="h2", kvmha_maintenance_owner="alice",
                       kvmha_maintenance_reason="firmware")
    assert entered.returncode == 0, entered.output
    assert site.marks("maintenance")["active"]["h2"]["ttl"] == host_mark.ARGUMENT_SPEC["duration"]["default"] == 4 * 3600


def test_maintenance_is_extended_without_ending_and_an_extension_never_enters_one(site):
    """Issue 16: a new expiry for a host already in maintenance, in place; a host not in maintenance is refused."""
    refused = site.run("maintenance", kvmha_maintenance_hosts="h1", kvmha_maintenance_owner="bob",
                       kvmha_maintenance_state="extended", kvmha_maintenance_duration="2h")
    assert refused.returncode != 0 and "not in maintenance" in refused.output and site.marks("maintenance")["active"] == {}
    site.run("maintenance", kvmha_maintenance_hosts="h2", kvmha_maintenance_owner="alice",
             kvmha_maintenance_reason="BIOS update", kvmha_maintenance_duration="10m")
    before = site.marks("maintenance")["active"]["h2"]
    extended = site.run("maintenance", kvmha_maintenance_hosts="h2", kvmha_maintenance_owner="bob",
                        kvmha_maintenance_state="extended", kvmha_maintenance_duration="2h")
    assert extended.returncode == 0 and "h2: extended maintenance until" in extended.output, extended.output
    after = site.marks("maintenance")["active"]["h2"]
    assert after["ttl"] == 7200 and after["owner"] == "alice" and after["data"]["extended_by"] == "bob"
    assert after["generation"] == before["generation"] + 1  # replaced in place: never released in between


def test_maintenance_needs_named_hosts_and_never_takes_the_whole_cluster(site):
    unnamed = site.run("maintenance", kvmha_maintenance_owner="alice", kvmha_maintenance_reason="x")
    assert unnamed.returncode != 0 and "set kvmha_maintenance_hosts" in unnamed.output
    everyone = site.run("maintenance", kvmha_maintenance_hosts="kvm_hosts", kvmha_maintenance_owner="alice",
                        kvmha_maintenance_reason="x")
    assert everyone.returncode != 0 and "no host of cluster lab would be watched" in everyone.output
    assert site.marks("maintenance")["active"] == {}
    bad = site.run("maintenance", kvmha_maintenance_hosts="h1", kvmha_maintenance_owner="alice",
                   kvmha_maintenance_reason="x", kvmha_maintenance_duration="soon")
    assert bad.returncode != 0 and "kvmha_maintenance_duration" in bad.output


def test_leaving_maintenance_waits_for_a_live_heartbeat(site):
    _marks.set_mark(str(site.store), "maintenance", "h2", "alice", {"reason": "disk"}, ttl=600)
    refused = site.run("maintenance", kvmha_maintenance_hosts="h2", kvmha_maintenance_state="absent",
                       kvmha_maintenance_owner="alice", kvmha_maintenance_wait_s=2)
    assert refused.returncode != 0 and "heartbeat of h2 is not alive" in refused.output, refused.output
    assert "h2" in site.marks("maintenance")["active"]
    with heartbeat(site.store, "h2"):
        left = site.run("maintenance", kvmha_maintenance_hosts="h2", kvmha_maintenance_state="absent",
                        kvmha_maintenance_owner="alice")
    assert left.returncode == 0 and "h2: left maintenance (owner alice: disk); heartbeat alive" in left.output, left.output
    assert site.marks("maintenance")["active"] == {}


def test_an_expired_maintenance_is_shown_as_ended(site):
    _marks.set_mark(str(site.store), "maintenance", "h3", "carol", {"reason": "short"}, ttl=60)
    written = time.time() - 120  # the store's clock wrote it two minutes ago: past its expiry and the 5 s skew allowance
    for generation in (site.store / "kvmha" / "maintenance" / "h3").iterdir():
        os.utime(generation, (written, written))
    shown = site.run("maintenance", kvmha_maintenance_hosts="h3", kvmha_maintenance_state="status")
    assert "h3: maintenance ended by itself at" in shown.output, shown.output


# ---------------------------------------------------------------------------------------------------- unfence


def owe(store, host, state, target=None):
    """An owed document of ``host`` whose one VM is TEST_DOMAIN in ``state`` (on ``target``)."""
    vm = {"uuid": TEST_DOMAIN, "name": "test", "ha": True, "priority": 50, "memory_mib": 64, "vcpus": 1, "group": ""}
    data = _recovery.new_document(host, "lab", host + "/boot", "SUSPECT", "R8", [vm], time.time(), "watchdog/1")
    data["vms"][0] = _recovery.transition(data["vms"][0], state, time.time(), target=target)
    _recovery.OwedBook(str(store), "watchdog/1").open(host, data)


def test_unfence_reconciles_clears_and_is_ok_a_second_time(tmp_path, bmcs):
    hosts_site = Site(tmp_path, {"h1": bmc(bmcs["on1"]), "h2": {}})
    _marks.set_mark(str(hosts_site.store), "fenced", "h1", "watchdog/1", {"verdict": "SUSPECT", "vms": [TEST_DOMAIN]})
    owe(hosts_site.store, "h1", _recovery.VERIFIED, "h2")
    with heartbeat(hosts_site.store, "h1"):
        would = hosts_site.run("unfence", "--check", kvmha_unfence_hosts="h1", kvmha_unfence_verify_ssh=False)
        assert would.returncode == 0 and "h1: would be returned" in would.output, would.output
        assert "h1" in hosts_site.marks("fenced")["active"]
        done = hosts_site.run("unfence", kvmha_unfence_hosts="h1", kvmha_unfence_power_on=True,
                              kvmha_unfence_verify_ssh=False, kvmha_unfence_poll_s=1)
    assert done.returncode == 0, done.output
    assert "h1: returned to the cluster" in done.output and "Power: on -> on" in done.output
    assert "removed: 1 of 1 listed (%s)" % TEST_DOMAIN in done.output and "Fenced mark: cleared" in done.output
    assert hosts_site.marks("fenced")["active"] == {}
    lease = _marks.documents(str(hosts_site.store), _marks.LEASE).read("lab")
    assert lease.released and lease.owner.startswith("unfence/")
    # The journal read the return by the phase unfence.yml tags it with (reconcile): the removed copy, the lease, the mark.
    with open(tmp_path / "journal" / "events.jsonl", encoding="utf-8") as stream:
        seen = [json.loads(line) for line in stream]
    assert {(e["host"], tuple(e["removed"])) for e in seen if e["event"] == "reconciled"} == {("h1", (TEST_DOMAIN,))}, seen
    assert {"lease_acquired", "lease_released", "mark"} <= {e["event"] for e in seen}, seen
    again = hosts_site.run("unfence", kvmha_unfence_hosts="h1", kvmha_unfence_verify_ssh=False)
    assert again.returncode == 0 and "h1 is not marked fenced: it was returned already" in again.output, again.output
    assert re.search(r"h1\s*: ok=\d+\s+changed=0 .*failed=0", again.output), again.output


def test_unfence_refuses_to_destroy_the_only_copy(tmp_path, bmcs):
    hosts_site = Site(tmp_path, {"h1": bmc(bmcs["on1"]), "h2": {}})
    _marks.set_mark(str(hosts_site.store), "fenced", "h1", "watchdog/1", {"verdict": "SUSPECT", "vms": [TEST_DOMAIN]})
    owe(hosts_site.store, "h1", _recovery.UNPLACED)
    with heartbeat(hosts_site.store, "h1"):
        done = hosts_site.run("unfence", kvmha_unfence_hosts="h1", kvmha_unfence_verify_ssh=False, kvmha_unfence_poll_s=1)
    assert done.returncode != 0 and "h1 holds the only copy of test" in done.output, done.output
    assert "Nothing was destroyed and the host stays fenced" in done.output
    assert "h1" in hosts_site.marks("fenced")["active"]


def test_unfence_leaves_the_mark_when_the_heartbeat_does_not_come(site):
    _marks.set_mark(str(site.store), "fenced", "h1", "watchdog/1", {"verdict": "SUSPECT", "vms": [TEST_DOMAIN]})
    done = site.run("unfence", kvmha_unfence_hosts="h1", kvmha_unfence_wait_s=2, kvmha_unfence_poll_s=1)
    assert done.returncode != 0 and "did not come alive" in done.output, done.output
    assert "h1" in site.marks("fenced")["active"]
    assert _marks.documents(str(site.store), _marks.LEASE).read("lab") is None, "no lease is taken before the heartbeat"


# ---------------------------------------------------------------------------------------------------- fence readiness


def test_fence_readiness_table_metrics_and_verdicts(tmp_path, bmcs):
    closed = free_udp_port()  # nothing listens there
    unreachable_ssh = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "nobody"}
    site = Site(tmp_path, {
        "h1": bmc(bmcs["on1"]),                          # shares its BMC with h6
        "h2": bmc(bmcs["off1"]),                         # BMC off, host answers
        "h3": bmc(bmcs["on2"], "wrong"),                 # password refused
        "h4": bmc(closed),                               # nothing answers
        "h5": {},                                        # no BMC configured
        "h6": dict(bmc(bmcs["on1"]), **unreachable_ssh),
        "h7": dict(bmc(bmcs["off2"]), **unreachable_ssh),  # off, in maintenance
        "h8": dict(bmc(bmcs["off3"]), **unreachable_ssh),  # off, unexpected
    })
    _marks.set_mark(str(site.store), "maintenance", "h7", "alice", {"reason": "psu"}, ttl=600)
    metrics = tmp_path / "metrics"
    done = site.run("fence_readiness", kvmha_readiness_metrics_dir=str(metrics), kvmha_readiness_bmc_timeout=2)
    assert done.returncode != 0 and "fence readiness: not ready:" in done.output, done.output
    prom = (metrics / "kvmha-fence-readiness-lab.prom").read_text()
    got = {host: (reason, value) for host, reason, value in
           re.findall(r'^kvmha_fence_ready\{cluster="lab",host="(\w+)",reason="(\w+)"\} ([01])$', prom, re.M)}
    assert got == {
        "h1": ("bmc_shared", "0"), "h6": ("bmc_shared", "0"),
        "h2": ("bmc_maps_elsewhere", "0"), "h3": ("bmc_auth", "0"), "h4": ("bmc_unreachable", "0"),
        "h5": ("no_bmc", "0"), "h7": ("off_expected", "1"), "h8": ("power_off", "0"),
    }, prom
    assert 'kvmha_fence_readiness_last_run_timestamp_seconds{cluster="lab"}' in prom
    assert "1 of 8 hosts ready" in done.output and "HOST  CLUSTER" in done.output


def test_fence_readiness_passes_when_every_path_works(tmp_path, bmcs):
    site = Site(tmp_path, {"h1": bmc(bmcs["on1"]), "h2": bmc(bmcs["on2"])})
    done = site.run("fence_readiness", kvmha_readiness_metrics_dir=str(tmp_path / "metrics"))
    assert done.returncode == 0 and "2 of 2 hosts ready" in done.output, done.output
    prom = (tmp_path / "metrics" / "kvmha-fence-readiness-lab.prom").read_text()
    assert 'kvmha_fence_ready{cluster="lab",host="h1",reason="ok"} 1' in prom
    assert 'kvmha_fence_readiness_bmc_seconds{cluster="lab",host="h2"}' in prom


def device(name, port, password=PASSWORD):
    return {"name": name, "protocol": "ipmi", "address": "127.0.0.1", "port": port, "username": "admin", "password": password}


def readiness(prom) -> dict:
    return {host: (reason, value) for host, reason, value in
            re.findall(r'^kvmha_fence_ready\{cluster="lab",host="(\w+)",reason="(\w+)"\} ([01])$', prom, re.M)}


def test_fence_readiness_reads_every_device_of_every_level_and_holds_each_to_the_probe_budget(tmp_path, bmcs):
    """Issue 15: a host with fence levels has each device read (a dead one is named); a BMC slower than the
    watchdog's probe budget is not ready, since every real crash of that host would end UNKNOWN."""
    dead = free_udp_port()
    site = Site(tmp_path, {
        "h1": {"kvmha_fence_levels": [["dead"], ["bmc"]],
               "kvmha_fence_devices": [device("dead", dead), device("bmc", bmcs["on1"])]},
        "h2": {"kvmha_fence_levels": [["outlet_a", "outlet_b"]],
               "kvmha_fence_devices": [device("outlet_a", bmcs["on1"]), device("outlet_b", bmcs["on2"])]},
        "h3": dict(bmc(bmcs["on2"]), kvmha_policy={"probe_timeout_s": 0.001}),  # any real read is slower
        "h4": {"kvmha_fence_levels": [["outlet"]], "kvmha_fence_devices": [device("outlet", bmcs["on1"], "wrong")]},
        "h5": dict(bmc(bmcs["off1"]), kvmha_policy={"probe_timeout_s": "soon"}),
    })
    metrics = tmp_path / "metrics"
    done = site.run("fence_readiness", kvmha_readiness_metrics_dir=str(metrics), kvmha_readiness_bmc_timeout=2)
    assert done.returncode != 0, done.output
    assert readiness((metrics / "kvmha-fence-readiness-lab.prom").read_text()) == {
        "h1": ("device_failed", "0"), "h2": ("ok", "1"), "h3": ("too_slow", "0"), "h4": ("device_failed", "0"),
        "h5": ("bad_policy", "0")}, done.output
    assert re.search(r"h1 .* NO +device_failed \(dead: ", done.output), done.output
    assert "outlet_a+outlet_b" in done.output and "bmc:" not in done.output.split("h1 ", 1)[1].split("\n", 1)[0]
    assert re.search(r"h3 .* NO +too_slow \(BMC read \d+\.\d s > probe budget 0\.0 s: this host cannot be fenced in time\)",
                     done.output), done.output
    assert re.search(r"h4 .* NO +device_failed \(outlet: ", done.output), done.output


def test_fence_readiness_writes_its_metrics_where_the_journal_callback_is_configured(tmp_path, bmcs):
    """No kvmha_readiness_metrics_dir and no KVMHA_* variable: the [callback_journal] section of ansible.cfg decides,
    as it does for the journal callback itself."""
    site = Site(tmp_path, {"h1": bmc(bmcs["on1"])})
    config = tmp_path / "ansible.cfg"
    settings = (ROOT / "ansible.cfg").read_text().replace("collections_path = .collections",
                                                          "collections_path = %s" % (ROOT / ".collections"))
    config.write_text(settings + "\n[callback_journal]\nmetrics_file = %s\n" % (tmp_path / "textfiles" / "kvmha.prom"))
    env = dict(os.environ, ANSIBLE_CONFIG=str(config), ANSIBLE_NOCOLOR="1")
    for name in ("KVMHA_METRICS_FILE", "KVMHA_JOURNAL_DIR"):
        env.pop(name, None)
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(site.inventory), "kvmha.cluster.fence_readiness"],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert readiness((tmp_path / "textfiles" / "kvmha-fence-readiness-lab.prom").read_text()) == {"h1": ("ok", "1")}


def test_unfence_with_start_owed_starts_the_only_copy_on_the_returning_host(tmp_path, bmcs):
    hosts_site = Site(tmp_path, {"h1": bmc(bmcs["on1"]), "h2": {}})
    _marks.set_mark(str(hosts_site.store), "fenced", "h1", "watchdog/1", {"verdict": "SUSPECT", "vms": [TEST_DOMAIN]})
    owe(hosts_site.store, "h1", _recovery.UNPLACED)
    with heartbeat(hosts_site.store, "h1"):
        done = hosts_site.run("unfence", kvmha_unfence_hosts="h1", kvmha_unfence_verify_ssh=False, kvmha_unfence_poll_s=1,
                              kvmha_unfence_start_owed=True)
    assert done.returncode == 0, done.output
    assert "Started here (they ran nowhere else): %s" % TEST_DOMAIN in done.output and "Fenced mark: cleared" in done.output
    assert hosts_site.marks("fenced")["active"] == {}
    entry = _recovery.OwedBook(str(hosts_site.store), "r").read("h1").data["vms"][0]
    assert entry["state"] == _recovery.STARTED and entry["target"] == "h1"


# ---------------------------------------------------------------------------------------------------- confirm off

UNREACHABLE_SSH = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "nobody"}


def last_record(store, host, seq=7, boot="boot-b"):
    """The last record a host wrote before it went dark: stale from now on."""
    directory = pathlib.Path(store) / "kvmha" / "hosts"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / (host + ".json")).write_text(json.dumps({
        "version": 1, "host": host, "boot_id": boot, "seq": seq, "ts": time.time() - 300, "interval": 0.5,
        "state": "running", "self_fence": {"armed": False, "deadline_s": 60}, "capacity": {}, "vms": []}))


def confirm_off(site, host="h1", *args, **extra):
    given = dict(kvmha_confirm_host=host, kvmha_confirm_host_is_off=host, kvmha_confirm_operator="alice",
                 kvmha_confirm_reason="both PSU cords pulled", kvmha_confirm_heartbeat_wait_s=1)
    given.update(extra)
    return site.run("confirm_off", *args, **{k: v for k, v in given.items() if v is not None})


@pytest.mark.parametrize("extra", [
    {"kvmha_confirm_host_is_off": None},
    {"kvmha_confirm_host_is_off": "h2"},
    {"kvmha_confirm_host_is_off": "H1"},
    {"kvmha_confirm_host": "h1:h2", "kvmha_confirm_host_is_off": "h1:h2"},
    {"kvmha_confirm_host": "kvm_hosts", "kvmha_confirm_host_is_off": "kvm_hosts"},
    {"kvmha_confirm_host": "all", "kvmha_confirm_host_is_off": "all"},
    {"kvmha_confirm_operator": " "},
    {"kvmha_confirm_reason": None},
    {"kvmha_confirm_valid_s": 0},
])
def test_confirm_off_needs_one_host_named_twice_an_operator_and_a_reason(tmp_path, extra):
    site = Site(tmp_path, {"h1": UNREACHABLE_SSH, "h2": UNREACHABLE_SSH})
    last_record(site.store, "h1")
    done = confirm_off(site, **extra)
    assert done.returncode != 0 and "confirm_off: set kvmha_confirm_host" in done.output, done.output
    assert site.marks("confirmed_off")["active"] == {}


def test_confirm_off_is_refused_while_anything_shows_life(tmp_path, bmcs):
    site = Site(tmp_path, {"h1": UNREACHABLE_SSH, "h2": {}, "h3": dict(bmc(bmcs["on1"]), **UNREACHABLE_SSH)})
    for host in ("h1", "h2", "h3"):
        last_record(site.store, host)
    with heartbeat(site.store, "h1", interval=0.2):
        beating = confirm_off(site, "h1")
    assert beating.returncode != 0 and "h1 is not off: its heartbeat advances on the store" in beating.output, beating.output
    answering = confirm_off(site, "h2")  # the local connection: management answers
    assert answering.returncode != 0 and "it answers on its management address (SSH)" in answering.output, answering.output
    powered = confirm_off(site, "h3")
    assert powered.returncode != 0 and "its BMC says the power is on" in powered.output, powered.output
    assert "Nothing was recorded" in powered.output and site.marks("confirmed_off")["active"] == {}


def test_confirm_off_records_the_word_bound_to_the_last_heartbeat(tmp_path, bmcs):
    site = Site(tmp_path, {"h1": UNREACHABLE_SSH, "h3": dict(bmc(bmcs["off1"]), **UNREACHABLE_SSH)})
    last_record(site.store, "h1", seq=41, boot="boot-x")
    would = confirm_off(site, "h1", "--check")
    assert would.returncode == 0 and "h1: would be confirmed off by alice" in would.output, would.output
    assert site.marks("confirmed_off")["active"] == {}
    done = confirm_off(site, "h1", kvmha_confirm_valid_s=900)
    assert done.returncode == 0 and "h1: confirmed off by alice (both PSU cords pulled)" in done.output, done.output
    mark = site.marks("confirmed_off")["active"]["h1"]
    assert (mark["owner"], mark["ttl"]) == ("alice", 900)
    assert mark["data"] == {"reason": "both PSU cords pulled", "seq": 41, "boot_id": "boot-x", "bmc": "unknown"}
    with open(tmp_path / "journal" / "events.jsonl", encoding="utf-8") as stream:
        seen = [json.loads(line) for line in stream]
    # (the --check run streamed one too, as every mark's check run does)
    assert [(e["host"], e["mark"], e["owner"], e["reason"]) for e in seen if e["event"] == "mark"][-1] == (
        "h1", "confirmed_off", "alice", "both PSU cords pulled"), seen
    # A host without a heartbeat record and with a BMC that says off: accepted, with the note that R5 needs no word.
    off = confirm_off(site, "h3")
    assert off.returncode == 0 and "Its BMC already says off" in off.output, off.output
    assert site.marks("confirmed_off")["active"]["h3"]["data"]["seq"] is None


# ---------------------------------------------------------------------------------------------------- fence levels


@contextlib.contextmanager
def simulator(work: pathlib.Path, state: str):
    """One BMC simulator of its own (lab/bmc.py) on a loopback port, reporting ``state``; yields (port, state file)."""
    (work / "password").write_text(PASSWORD + "\n")
    state_file = work / "state"
    state_file.write_text(state)
    port = free_udp_port()
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "lab.bmc", "--address", "127.0.0.1", "--port", str(port), "--user", "admin",
         "--password-file", str(work / "password"), "--state-file", str(state_file)],
        cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().startswith("READY")
        yield port, state_file
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def run_fence_play(tmp_path, site, lease, more_tasks, out, kept):
    """tasks/fence.yml for real, on h1, as the watchdog's Fence play runs it after deciding (the lease it holds given);
    then ``more_tasks``, then ``kept`` (a Jinja expression) written to ``out``."""
    playbook = tmp_path / "fence.yml"
    policy = effective_policy({"fence_confirm": 2, "fence_timeout_s": 20, "fence_concurrency": 1, "probe_timeout_s": 2})
    playbook.write_text(json.dumps([{
        "name": "Fence as the watchdog does", "hosts": "h1", "gather_facts": False,
        "vars": {"kvmha_store": str(site.store), "kvmha_cluster_name": "lab", "kvmha_owner": "watchdog/test",
                 "kvmha_lease": {"acquired": True, "lease": lease}, "kvmha_policy_effective": policy},
        "tasks": [
            {"name": "Fence", "ansible.builtin.import_tasks": str(ROOT / "playbooks" / "tasks" / "fence.yml"),
             "vars": {"kvmha_journal": "fence"}},  # as watchdog.yml tags it, for the journal
            *more_tasks,
            {"name": "Keep the result", "delegate_to": "localhost", "ansible.builtin.copy": {
                "dest": str(out), "mode": "0644", "content": "{{ %s | to_json }}" % kept}},
        ]}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"))
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(site.inventory), str(playbook)], capture_output=True,
                          text=True, env=env, cwd=str(tmp_path), check=False, timeout=300)


@pytest.mark.parametrize("since_the_decision", ["maintenance", "lease moved on"])
def test_the_fence_play_leaves_the_host_alone_when_its_token_no_longer_holds(tmp_path, since_the_decision):
    """Between the decision and the power-off an operator put h1 into maintenance, or the run's lease moved on (the
    run was frozen past its ttl): the power module, checking the token itself, sends nothing; h1 is not grouped for
    recovery. A maintenance is the operator's choice (refused, the task ok); a lost lease fails the fence."""
    (tmp_path / "sim").mkdir()
    with simulator(tmp_path / "sim", "on") as (port, state_file):
        site = Site(tmp_path, {"h1": bmc(port)})
        lease = _marks.acquire_lease(str(site.store), "lab", "watchdog/test", 60.0)["lease"]
        if since_the_decision == "maintenance":
            _marks.set_mark(str(site.store), "maintenance", "h1", "ops", {"reason": "firmware"}, ttl=600)
        else:
            _marks.renew_lease(str(site.store), "lab", "watchdog/test", lease["generation"], ttl=60)
        out = tmp_path / "out.json"
        done = run_fence_play(tmp_path, site, lease, [], out, "{'ipmi': kvmha_fence_result, 'groups': groups}")
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        assert state_file.read_text().strip() == "on", "nothing was sent to the BMC"
    result = json.loads(out.read_text())
    assert "kvmha_recover" not in result["groups"] and result["ipmi"]["fenced"] is False
    if since_the_decision == "maintenance":
        assert not result["ipmi"].get("failed") and result["ipmi"]["refused"] == "h1 is in maintenance (by ops: firmware)"
    else:
        assert result["ipmi"]["failed"] and result["ipmi"]["error_kind"] == "lease_lost"


def test_the_watchdog_fences_a_host_with_fence_levels_through_the_level_that_answers(tmp_path):
    """fence.yml run for real on a host whose first level (its BMC) is dead: host_fence tries it, then powers the host
    off through level 2 (another BMC here; a PDU in life), and the host is grouped for recovery on that level's
    confirmed off. The re-read of recover.yml goes through the levels too and sees it off."""
    (tmp_path / "sim").mkdir()
    with simulator(tmp_path / "sim", "on") as (port, state_file):
        devices = [{"name": "bmc", "protocol": "ipmi", "address": "127.0.0.1", "port": free_udp_port(),
                    "username": "admin", "password": PASSWORD},
                   {"name": "outlet", "protocol": "ipmi", "address": "127.0.0.1", "port": port,
                    "username": "admin", "password": PASSWORD}]
        site = Site(tmp_path, {"h1": {"kvmha_fence_levels": [["bmc"], ["outlet"]], "kvmha_fence_devices": devices}})
        lease = _marks.acquire_lease(str(site.store), "lab", "watchdog/test", 60.0)["lease"]
        out = tmp_path / "out.json"
        recheck = {"name": "Read again as recover.yml does", "kvmha.cluster.host_fence": {
            "levels": "{{ kvmha_fence_levels }}",
            "devices": "{{ kvmha_fence_devices | map('combine', {'deadline_s': kvmha_policy_effective.probe_timeout_s}) | list }}",
            "confirm": 1, "deadline_s": "{{ kvmha_policy_effective.probe_timeout_s * (kvmha_fence_devices | length) }}"},
            "check_mode": True, "delegate_to": "localhost", "register": "recheck", "ignore_errors": True}
        done = run_fence_play(tmp_path, site, lease, [recheck], out, "{'fence': kvmha_fence_levels_result, "
                              "'ipmi': kvmha_fence_result, 'recheck': recheck, 'groups': groups}")
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        assert state_file.read_text().strip() == "off", "level 2's device was powered off"
    result = json.loads(out.read_text())
    assert result["ipmi"].get("skipped") is True, "a host with levels is never fenced through ipmi_power"
    fence = result["fence"]
    assert (fence["fenced"], fence["level"], fence["devices"], fence["power"]) == (True, 2, ["outlet"], "off")
    assert [r["outcome"] for r in fence["levels"]] == ["failed", "fenced"]
    assert result["groups"]["kvmha_recover"] == ["h1"]
    assert (result["recheck"]["power"], result["recheck"]["level"]) == ("off", 2)
    with open(tmp_path / "journal" / "events.jsonl", encoding="utf-8") as stream:
        seen = [json.loads(line) for line in stream]
    assert [(e["host"], e["ok"], e["detail"]) for e in seen if e["event"] == "fence"] == [
        ("h1", True, "power off confirmed (level 2: outlet)")], seen
