# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The heartbeat writer's pure parts: configuration, domain parsing, capacity, seq, self-fence decision."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from hypothesis import assume, given, strategies as st

MARKED = """<domain type='kvm'>
  <name>g1</name><uuid>11111111-1111-4111-8111-111111111111</uuid>
  <metadata><kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority="80" group="db"/></metadata>
  <memory unit='KiB'>65536</memory><vcpu placement='static' current='1'>4</vcpu>
  <devices>
    <disk type='file' device='disk'><source file='/store/g1.img'/><target dev='vda'/></disk>
    <disk type='block' device='disk'><source dev='/dev/vg/g1'/><target dev='vdb'/></disk>
    <disk type='volume' device='disk'><source pool='p' volume='v1'/><target dev='vdc'/></disk>
    <disk type='network' device='disk'><source protocol='rbd' name='rbd/g1'/><target dev='vdd'/></disk>
    <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/></disk>
    <disk type='file' device='disk'><target dev='vde'/></disk>
  </devices>
</domain>"""

PLAIN = """<domain type='kvm'><name>plain</name><uuid>22222222-2222-4222-8222-222222222222</uuid>
  <memory unit='GiB'>1</memory><vcpu>2</vcpu></domain>"""


def base_conf(**overrides):
    conf = {"host": "h1", "store": "/srv/store"}
    conf.update(overrides)
    return conf


# ------------------------------------------------------------------------------------------ configuration


def test_defaults_fill_in(writer):
    conf = writer.parse_config(base_conf())
    assert conf["interval"] == 2.0 and conf["self_fence"]["armed"] is False and conf["libvirt"]["uri"] == "qemu:///system"
    assert conf["xml_mode"] == 0o640 and conf["capacity"]["reserved_mem_mib"] == 512


@pytest.mark.parametrize("doc, message", [
    (base_conf(intervall=2), "unknown setting"),
    (base_conf(libvirt={"url": "x"}), "unknown setting.*libvirt"),
    (base_conf(host="../etc"), "host"),
    (base_conf(store="relative/path"), "absolute"),
    (base_conf(interval=0), "interval"),
    (base_conf(interval=True), "interval"),
    (base_conf(self_fence={"armed": True}), "needs peers"),
    (base_conf(self_fence={"armed": True, "peers": ["10.0.0.2"], "deadline_s": 4}), "3 x interval"),
    (base_conf(self_fence={"peers": ["not-an-ip"]}), "not an IP"),
    (base_conf(self_fence={"peers": ["10.0.0.2", "10.0.0.2"]}), "twice"),
    (base_conf(self_fence={"action": "sysrq"}), "action must be one of"),
    (base_conf(self_fence={"action": "command"}), "needs self_fence.command"),
    (base_conf(self_fence={"action": "command", "command": ["touch", "/x"]}), "absolute path"),
    (base_conf(ha_domains=[{"name": "g1", "priority": 101}]), "priority"),
    (base_conf(ha_domains=[{"nam": "g1"}]), "unknown setting"),
    (base_conf(capacity={"mem_mib": -1}), "mem_mib"),
    (base_conf(libvirt={"method": "ssh"}), "libvirt.method"),
])
def test_bad_configuration_is_refused_with_a_reason(writer, doc, message):
    with pytest.raises(writer.ConfigError, match=message):
        writer.parse_config(doc)


def test_ha_domains_accept_names_and_entries(writer):
    conf = writer.parse_config(base_conf(ha_domains=["g2", {"name": "g3", "priority": 10, "group": "web"}]))
    assert conf["ha_domains"] == [{"name": "g2", "priority": 50, "group": ""}, {"name": "g3", "priority": 10, "group": "web"}]


def test_published_deadline_covers_probes_and_action(writer):
    conf = writer.parse_config(base_conf(interval=2, self_fence={
        "armed": True, "peers": ["10.0.0.2"], "deadline_s": 60, "probe_timeout": 1, "probe_attempts": 2,
        "action": "watchdog", "watchdog_timeout": 30}))
    # 60 + one beat + 2 x (1 + 0.2) + 0.5 of probing + 30 s of watchdog timeout
    assert writer.published_deadline(conf) == pytest.approx(60 + 2 + 2.9 + 30)
    conf["self_fence"]["action"] = "poweroff"
    assert writer.published_deadline(conf) < 60 + 2 + 2.9 + 30


def test_load_config_reports_unreadable_and_non_json(writer, tmp_path):
    with pytest.raises(writer.ConfigError, match="cannot read"):
        writer.load_config(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(writer.ConfigError, match="not JSON"):
        writer.load_config(str(bad))


# ------------------------------------------------------------------------------------------ self-fence decision


@pytest.mark.parametrize("peers, needed", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)])
def test_quorum_needs_a_strict_majority_of_the_cluster(writer, peers, needed):
    assert writer.has_quorum(needed, peers)
    assert not writer.has_quorum(needed - 1, peers)


@given(peers=st.integers(min_value=1, max_value=64))
def test_a_cluster_wide_storage_outage_never_self_fences(writer, peers):
    """Every peer reachable: the storage is out for everyone, so nobody fences, however long it lasts."""
    assert writer.fence_decision(True, 10**6, 60, peers, peers)[0] is False


@given(peers=st.integers(min_value=1, max_value=64), stale=st.floats(min_value=0, max_value=1e6),
       deadline=st.floats(min_value=1, max_value=1e5), reachable=st.integers(min_value=0, max_value=64))
def test_self_fence_needs_both_a_missed_deadline_and_a_lost_majority(writer, peers, stale, deadline, reachable):
    assume(reachable <= peers)
    fence, reason = writer.fence_decision(True, stale, deadline, reachable, peers)
    assert fence == (stale >= deadline and not writer.has_quorum(reachable, peers))
    assert reason
    assert writer.fence_decision(False, stale, deadline, reachable, peers)[0] is False
    if fence:  # losing even more peers never un-fences
        assert all(writer.fence_decision(True, stale, deadline, r, peers)[0] for r in range(reachable + 1))


@given(peers=st.integers(min_value=2, max_value=64).filter(lambda n: n % 2 == 1))
def test_an_even_split_fences_both_halves(writer, peers):
    """Cluster of peers+1 (even) hosts split in two equal halves: neither half keeps quorum."""
    half = (peers + 1) // 2
    assert not writer.has_quorum(half - 1, peers)


def test_unprobed_never_fences(writer):
    assert writer.fence_decision(True, 100, 60, None, 2)[0] is False


# ------------------------------------------------------------------------------------------ domains


def test_marked_domain(writer):
    info = writer.parse_domain(MARKED)
    assert info == {
        "uuid": "11111111-1111-4111-8111-111111111111", "name": "g1", "ha": True, "priority": 80, "memory_mib": 64,
        "vcpus": 1, "disks": ["/store/g1.img", "/dev/vg/g1", "p/v1", "rbd:rbd/g1"], "group": "db", "warnings": [],
    }


def test_unmarked_domain_is_not_ha_unless_listed(writer):
    assert writer.parse_domain(PLAIN)["ha"] is False
    listed = writer.parse_domain(PLAIN, [{"name": "plain", "priority": 10, "group": "g"}])
    assert (listed["ha"], listed["priority"], listed["group"], listed["memory_mib"], listed["vcpus"]) == (True, 10, "g", 1024, 2)
    by_uuid = writer.parse_domain(PLAIN, [{"name": "22222222-2222-4222-8222-222222222222", "priority": 5, "group": ""}])
    assert by_uuid["ha"] and by_uuid["priority"] == 5


def test_marker_attributes_win_over_the_list_and_bad_priority_warns(writer):
    marked = writer.parse_domain(MARKED, [{"name": "g1", "priority": 10, "group": "x"}])
    assert (marked["priority"], marked["group"]) == (80, "db")
    bad = MARKED.replace('priority="80"', 'priority="high"')
    info = writer.parse_domain(bad)
    assert info["ha"] and info["priority"] == 50 and "not an integer" in info["warnings"][0]
    assert writer.parse_domain(MARKED.replace('priority="80"', 'priority="300"'))["priority"] == 50


@pytest.mark.parametrize("value, unit, mib", [
    ("65536", None, 64), ("65536", "KiB", 64), ("1", "G", 1024), ("1", "GiB", 1024), ("1048576", "KB", 1000),
    ("1", "b", 1), ("0", "KiB", 0), ("2", "MiB", 2), ("1", "TiB", 1048576)])
def test_memory_units(writer, value, unit, mib):
    element = writer.ElementTree.fromstring("<memory%s>%s</memory>" % ("" if unit is None else " unit='%s'" % unit, value))
    assert writer.memory_mib(element) == mib


def test_unknown_memory_unit_is_an_error(writer):
    with pytest.raises(ValueError):
        writer.memory_mib(writer.ElementTree.fromstring("<memory unit='furlongs'>1</memory>"))


def test_manifest_sorts_by_priority_counts_all_domains_and_keeps_inactive_xml(writer):
    other = MARKED.replace("g1", "g0").replace("11111111-1111-4111-8111-111111111111", "33333333-3333-4333-8333-333333333333")
    other = other.replace('priority="80"', 'priority="90"')
    result = writer._manifest_from(
        [("u1", MARKED), ("u2", PLAIN), ("u3", other), ("u4", "<domain")], [], lambda uuid, live: "INACTIVE:" + uuid)
    assert [vm["name"] for vm in result["vms"]] == ["g0", "g1"]
    assert result["allocated"] == {"mem_mib": 64 + 1024 + 64, "vcpus": 1 + 2 + 1}
    assert result["xml"] == {"11111111-1111-4111-8111-111111111111": "INACTIVE:11111111-1111-4111-8111-111111111111",
                             "33333333-3333-4333-8333-333333333333": "INACTIVE:33333333-3333-4333-8333-333333333333"}
    assert any("unreadable XML" in w for w in result["warnings"])


# ------------------------------------------------------------------------------------------ capacity, seq, mounts


def test_capacity_override_subtracts_running_domains(writer):
    cap = {"mem_mib": 4096, "vcpus": 8, "reserved_mem_mib": 512, "reserved_vcpus": 1, "cpu_allocation_ratio": 4.0, "ram_allocation_ratio": 1.0}
    assert writer.compute_capacity(cap, 20000, 2, {"mem_mib": 192, "vcpus": 3}) == {"mem_free_mib": 3904, "vcpus_free": 5}


def test_capacity_from_the_kernel_minus_reservations(writer):
    cap = {"mem_mib": None, "vcpus": None, "reserved_mem_mib": 512, "reserved_vcpus": 1, "cpu_allocation_ratio": 1.0, "ram_allocation_ratio": 1.0}
    assert writer.compute_capacity(cap, 2048, 4, {"mem_mib": 64, "vcpus": 1}) == {"mem_free_mib": 1536, "vcpus_free": 2}
    assert writer.compute_capacity(cap, None, 1, {"mem_mib": 64, "vcpus": 4}) == {"mem_free_mib": 0, "vcpus_free": 0}


def test_mem_available_is_read_from_meminfo(writer, tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemFree:  100 kB\nMemAvailable:  2097152 kB\n")
    assert writer.read_meminfo_mib(str(meminfo)) == {"MemTotal": 7812, "MemAvailable": 2048}
    assert writer.read_meminfo_mib(str(tmp_path / "none")) == {"MemTotal": None, "MemAvailable": None}


@given(saved=st.integers(min_value=0, max_value=2**40), boot=st.floats(min_value=0, max_value=1e8))
def test_seq_continues_within_a_boot(writer, saved, boot):
    seq = writer.start_seq({"boot_id": "b1", "seq": saved}, "b1", boot)
    assert seq > saved and seq >= int(boot * 1000)
    assert writer.start_seq({"boot_id": "b0", "seq": saved}, "b1", boot) == max(1, int(boot * 1000))


@given(beats=st.lists(st.floats(min_value=0.1, max_value=5), min_size=1, max_size=50), boot0=st.floats(min_value=0, max_value=1e6))
def test_seq_never_goes_back_after_a_restart_that_lost_its_state(writer, beats, boot0):
    """Beats at least 0.1 s apart never overtake the boottime floor a stateless restart starts from."""
    seq, now = writer.start_seq(None, "b", boot0), boot0
    for gap in beats:
        now += gap
        seq += 1
    assert writer.start_seq(None, "b", now) >= seq - 1


def test_mounted_under(writer):
    info = "\n".join([
        "22 1 0:21 / / rw - ext4 /dev/sda1 rw",
        "30 22 0:30 / /var/lib/kvmha-lab/store rw - tmpfs t rw",
        "31 22 0:31 / /mnt/with\\040space rw - nfs x rw",
    ])
    assert writer.mounted_under("/var/lib/kvmha-lab/store", info)
    assert writer.mounted_under("/var/lib/kvmha-lab/store/sub", info)
    assert writer.mounted_under("/mnt/with space/store", info)
    assert not writer.mounted_under("/var/lib/kvmha-lab", info)
    assert not writer.mounted_under("/var/lib/kvmha-lab/storex", info)
    assert not writer.mounted_under("/srv/store", info)


# ------------------------------------------------------------------------------------------ workers and store


def test_worker_never_stacks_a_blocked_job(writer):
    worker = writer.Worker("test")
    release = threading.Event()
    assert worker.submit(release.wait, 5)
    assert worker.wait(0.05) is None
    assert not worker.submit(time.sleep, 0)  # still blocked: refused, not queued
    assert worker.busy_for() >= 0.05
    release.set()
    assert worker.wait(1) == (True, True)
    assert worker.busy_for() is None
    assert worker.submit(lambda: 1 / 0)
    ok, err = worker.wait(1)
    assert not ok and isinstance(err, ZeroDivisionError)


def test_store_write_writes_record_and_xml(writer, tmp_path):
    conf = writer.parse_config(base_conf(store=str(tmp_path), require_mount=False))
    result = writer.store_write(conf, b'{"x":1}', {"11111111-1111-4111-8111-111111111111": b"<domain/>"})
    assert (tmp_path / "kvmha" / "hosts" / "h1.json").read_bytes() == b'{"x":1}'
    xml = tmp_path / "kvmha" / "vms" / "11111111-1111-4111-8111-111111111111.xml"
    assert xml.read_bytes() == b"<domain/>" and (xml.stat().st_mode & 0o777) == 0o640
    assert result == {"xml_ok": ["11111111-1111-4111-8111-111111111111"], "xml_errors": {}}


def test_reporter_logs_changes_not_every_repeat(writer, caplog):
    reporter = writer.Reporter("store write", repeat=60)
    with caplog.at_level(logging.INFO, logger="kvmha-heartbeat"):
        for seconds in range(5):
            reporter.failed("blocked for %d s" % seconds, key="blocked")
        reporter.failed("EROFS")
        reporter.ok()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and "blocked for 0 s" in messages[0] and "EROFS" in messages[1] and "recovered" in messages[2]


# ------------------------------------------------------------------------------------------ fencer


def armed_conf(writer, tmp_path, **self_fence):
    sf = {"armed": True, "peers": ["127.0.0.2"], "deadline_s": 6, "action": "command",
          "command": ["/bin/sh", "-c", "echo fenced >> %s" % (tmp_path / "fired")]}
    sf.update(self_fence)
    return writer.parse_config(base_conf(store=str(tmp_path), interval=0.5, self_fence=sf))


def test_poweroff_action_refuses_to_run_outside_systemd(writer, tmp_path, monkeypatch):
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    fencer = writer.Fencer(armed_conf(writer, tmp_path, action="poweroff", command=[]))
    assert fencer.armed is False and "INVOCATION_ID" in fencer.problem
    # an INVOCATION_ID inherited by a shell is not enough: systemd must be the parent too
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    assert os.getppid() != 1
    fencer = writer.Fencer(armed_conf(writer, tmp_path, action="poweroff", command=[]))
    assert fencer.armed is False and "parent PID 1" in fencer.problem


def test_watchdog_action_refuses_inside_a_container(writer, tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "in_container", lambda: True)
    device = tmp_path / "fake-watchdog"
    fencer = writer.Fencer(armed_conf(writer, tmp_path, action="watchdog", command=[], watchdog_device=str(device)))
    assert fencer.armed is False and "container" in fencer.problem and not device.exists()


def test_watchdog_is_fed_stopped_on_fence_and_magic_closed_only_when_not_fencing(writer, tmp_path, monkeypatch):
    """Uses a plain file as the 'device': never a real watchdog on the build machine."""
    monkeypatch.setattr(writer, "in_container", lambda: False)
    device = tmp_path / "fake-watchdog"
    device.write_bytes(b"")
    conf = armed_conf(writer, tmp_path, action="watchdog", command=[], watchdog_device=str(device))
    fencer = writer.Fencer(conf)
    assert fencer.armed
    fencer.feed()
    fencer.feed()
    fencer.fence("test")
    fencer.feed()
    fencer.close(graceful=True)
    assert device.read_bytes() == b"\0\0"  # no keep-alive after the fence, and no magic close that would disarm it
    device.write_bytes(b"")
    fencer = writer.Fencer(conf)
    fencer.feed()
    fencer.close(graceful=True)
    assert device.read_bytes() == b"\0V"


def test_command_action_fires_once_per_episode(writer, tmp_path):
    fencer = writer.Fencer(armed_conf(writer, tmp_path))
    fencer.fence("one")
    fencer.fence("two")
    assert (tmp_path / "fired").read_text() == "fenced\n"
    fencer.recovered()
    fencer.fence("three")
    assert (tmp_path / "fired").read_text() == "fenced\nfenced\n"


# ------------------------------------------------------------------------------------------ the writer in-process


class FakeSource:
    method = "libvirt"

    def __init__(self):
        self.fail = None
        self.result = {"vms": [], "xml": {}, "allocated": {"mem_mib": 0, "vcpus": 0}, "warnings": []}

    def refresh(self, ha_domains):
        if self.fail:
            raise self.fail
        return self.result

    def close(self):
        pass


def make_writer(writer, tmp_path, monkeypatch, **conf):
    boot = tmp_path / "boot_id"
    boot.write_text("0f0f0f0f-1111-2222-3333-444444444444\n")
    doc = base_conf(store=str(tmp_path / "store"), require_mount=False, state_dir=str(tmp_path / "run"), boot_id_path=str(boot),
                    interval=0.2, libvirt={"method": "none"}, capacity={"mem_mib": 1000, "vcpus": 4})
    doc.update(conf)
    source = FakeSource()
    monkeypatch.setattr(writer, "make_source", lambda _conf: source)
    return writer.Writer(writer.parse_config(doc)), source


def read_record(writer, tmp_path):
    return writer.hb.parse_record((tmp_path / "store" / "kvmha" / "hosts" / "h1.json").read_bytes(), expected_host="h1")


def test_libvirt_failure_keeps_the_last_known_manifest_and_says_so(writer, tmp_path, monkeypatch):
    w, source = make_writer(writer, tmp_path, monkeypatch)
    info = writer.parse_domain(MARKED)
    info.pop("warnings")
    source.result = {"vms": [info], "xml": {info["uuid"]: MARKED}, "allocated": {"mem_mib": 64, "vcpus": 1}, "warnings": []}
    w.beat()
    first = read_record(writer, tmp_path)
    assert [vm["name"] for vm in first["vms"]] == ["g1"] and first["manifest"]["error"] == ""
    assert first["capacity"] == {"mem_free_mib": 936, "vcpus_free": 3}
    assert (tmp_path / "store" / "kvmha" / "vms" / (info["uuid"] + ".xml")).read_text() == MARKED
    source.fail = writer.LibvirtUnavailable("libvirt qemu:///system: Failed to connect socket")
    time.sleep(0.25)
    w.beat()
    second = read_record(writer, tmp_path)
    assert second["seq"] == first["seq"] + 1
    assert [vm["name"] for vm in second["vms"]] == ["g1"], "a libvirt outage must not drop VMs from the manifest"
    assert "Failed to connect" in second["manifest"]["error"] and second["manifest"]["age_s"] >= 0.2
    # a restarted writer (same boot) starts from the saved manifest, not from an empty one
    w2, source2 = make_writer(writer, tmp_path, monkeypatch)
    source2.fail = writer.LibvirtUnavailable("still down")
    w2.beat()
    third = read_record(writer, tmp_path)
    assert third["seq"] > second["seq"] and [vm["name"] for vm in third["vms"]] == ["g1"]
    assert "still down" in third["manifest"]["error"]


def test_xml_is_written_only_when_changed(writer, tmp_path, monkeypatch):
    w, source = make_writer(writer, tmp_path, monkeypatch)
    info = writer.parse_domain(MARKED)
    info.pop("warnings")
    source.result = {"vms": [info], "xml": {info["uuid"]: MARKED}, "allocated": {"mem_mib": 64, "vcpus": 1}, "warnings": []}
    w.beat()
    xml = tmp_path / "store" / "kvmha" / "vms" / (info["uuid"] + ".xml")
    before = (xml.stat().st_ino, xml.stat().st_mtime_ns)
    time.sleep(0.21)
    w.beat()
    assert (xml.stat().st_ino, xml.stat().st_mtime_ns) == before
    source.result = dict(source.result, xml={info["uuid"]: MARKED.replace("65536", "131072")})
    time.sleep(0.21)
    w.beat()
    assert "131072" in xml.read_text()


def test_stop_writes_a_disarmed_stopped_record(writer, tmp_path, monkeypatch):
    w, _source = make_writer(writer, tmp_path, monkeypatch)
    w.beat()
    w.stop_reason = "writer stopped (SIGTERM)"
    assert w.stop() == 0
    record = read_record(writer, tmp_path)
    assert record["state"] == "stopped" and record["self_fence"]["armed"] is False and "SIGTERM" in record["reason"]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["seq"] == record["seq"] and state["last_ok_mono"] is None


def test_a_crash_restart_keeps_the_self_fence_clock(writer, tmp_path, monkeypatch):
    w, _source = make_writer(writer, tmp_path, monkeypatch)
    w.beat()
    last_ok = w.last_ok
    w2, _source = make_writer(writer, tmp_path, monkeypatch)  # no stop(): as after a crash
    assert w2.last_ok == pytest.approx(last_ok) and w2.seq >= w.seq
    os.remove(tmp_path / "run" / "state.json")
    w3, _source = make_writer(writer, tmp_path, monkeypatch)
    assert w3.last_ok > last_ok


def test_boot_id_from_systemd_wins_over_proc(writer, tmp_path, monkeypatch):
    """In a container, hardening can remount /proc and show the host kernel's boot id; %b from systemd is right."""
    proc_file = tmp_path / "boot_id"
    proc_file.write_text("937f18a0-4e4b-45d8-9600-ab7dd89e1d7e\n")
    monkeypatch.delenv("KVMHA_BOOT_ID", raising=False)
    assert writer.read_boot_id(str(proc_file)) == "937f18a0-4e4b-45d8-9600-ab7dd89e1d7e"
    monkeypatch.setenv("KVMHA_BOOT_ID", "0d7744e5935e47ecb36a34352432860e")
    assert writer.read_boot_id(str(proc_file)) == "0d7744e5935e47ecb36a34352432860e"


@pytest.mark.parametrize("isolated, no_bytecode, options", [(1, 1, ["-I", "-B"]), (1, 0, ["-I"]), (0, 0, [])])
def test_a_reload_without_sys_orig_argv_rebuilds_the_units_command_line(writer, monkeypatch, isolated, no_bytecode, options):
    """Python 3.9 (RHEL 9's python3) has no sys.orig_argv: the options the units give (-I -B) come from sys.flags."""
    monkeypatch.delattr(sys, "orig_argv", raising=False)
    monkeypatch.setattr(sys, "flags", SimpleNamespace(isolated=isolated, dont_write_bytecode=no_bytecode))
    monkeypatch.setattr(sys, "argv", ["/usr/lib/kvmha-heartbeat/kvmha-heartbeat.pyz", "--config", "/etc/kvmha/heartbeat.json"])
    assert writer.reexec_argv() == [sys.executable] + options + sys.argv


def test_a_reload_repeats_the_command_line_where_python_keeps_it(writer, monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["/usr/bin/python3", "-I", "-B", "/x/kvmha-heartbeat.pyz", "--config", "/c"], raising=False)
    assert writer.reexec_argv() == ["/usr/bin/python3", "-I", "-B", "/x/kvmha-heartbeat.pyz", "--config", "/c"]
