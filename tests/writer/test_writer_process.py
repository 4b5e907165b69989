# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The real writer process against a temporary store: records, seq, stop, libvirt outages, hung and read-only
stores, self-fence. Run by scripts/test-stages/50-writer.sh."""

from __future__ import annotations

import glob
import hashlib
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import time
import zipfile

import pytest

from conftest import PYTHON, has_libvirt_binding, wait_for  # pylint: disable=import-error

from ansible_collections.kvmha.cluster.tests._require import require

G1 = "11111111-1111-4111-8111-111111111111"
G2 = "33333333-3333-4333-8333-333333333333"
IS_ROOT = os.geteuid() == 0


def python39():
    """A Python 3.9 (RHEL 9's python3, the oldest the role takes; it has no sys.orig_argv) where this machine has one
    (a pyenv shim on PATH may name one that does not run)."""
    pyenv = os.environ.get("PYENV_ROOT") or os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".pyenv")  # not $HOME: env.sh moves it
    for candidate in sorted(glob.glob(os.path.join(pyenv, "versions", "3.9*", "bin", "python3.9"))) + [shutil.which("python3.9")]:
        if candidate and subprocess.run([candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 9))"],
                                        capture_output=True, check=False).returncode == 0:
            return candidate
    return None


INTERPRETERS = [PYTHON] + [python for python in [python39()] if python]


def digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def needs_root_tools():
    require(IS_ROOT and shutil.which("unshare") and shutil.which("nsenter"), "needs root, unshare and nsenter")


def vm_names(record):
    return [vm["name"] for vm in record["vms"]]


@pytest.mark.parametrize("method", ["binding", "virsh"])
def test_records_appear_seq_advances_and_stop_writes_stopped(env, method):
    if method == "binding":
        require(has_libvirt_binding(), "the hypervisor python (/usr/bin/python3) has no libvirt binding (python3-libvirt)")
    libvirt = {"method": method, "virsh": str(env.virsh)}
    proc = env.start(env.config(libvirt=libvirt))
    first = wait_for(env.record, 5, what="a first record")
    assert first["state"] == "running" and first["host"] == "h1" and first["interval"] == 0.2
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
        assert first["boot_id"] == handle.read().strip()
    later = wait_for(lambda: (r := env.record()) and r["seq"] >= first["seq"] + 5 and r, 5, what="seq to advance")
    assert later["ts"] > first["ts"]
    # the HA guests (marker), by priority; the unmarked domain only counts against capacity
    assert vm_names(later) == ["g1", "g2"]
    g1 = later["vms"][0]
    assert g1 == {"uuid": G1, "name": "g1", "ha": True, "priority": 80, "memory_mib": 64, "vcpus": 1,
                  "disks": ["/store/g1.img"], "group": "db"}
    assert later["capacity"] == {"mem_free_mib": 4096 - 64 - 64 - 128, "vcpus_free": 8 - 4}
    assert later["manifest"]["source"] == ("libvirt" if method == "binding" else "virsh") and later["manifest"]["error"] == ""
    assert later["self_fence"]["armed"] is False
    for uuid in (G1, G2):
        assert "<uuid>%s</uuid>" % uuid in (env.store / "kvmha" / "vms" / (uuid + ".xml")).read_text()
    assert not (env.store / "kvmha" / "vms" / "22222222-2222-4222-8222-222222222222.xml").exists()
    start = time.monotonic()
    assert env.stop(proc) == 0
    assert time.monotonic() - start < 20  # SIGTERM ends it promptly; the bound only catches a writer that hangs
    stopped = env.record()
    assert stopped["state"] == "stopped" and stopped["seq"] > later["seq"] and "SIGTERM" in stopped["reason"]
    assert stopped["self_fence"]["armed"] is False and vm_names(stopped) == ["g1", "g2"]
    assert not [name for name in os.listdir(env.store / "kvmha" / "hosts") if name.startswith(".")], "temp files left"


def test_seq_keeps_increasing_across_restarts_even_without_saved_state(env):
    config = env.config(libvirt={"method": "none"})
    proc = env.start(config)
    wait_for(lambda: (r := env.record()) and r["seq"] > 0, 5)
    assert env.stop(proc) == 0
    stopped = env.record()
    proc = env.start(config)
    again = wait_for(lambda: (r := env.record()) and r["state"] == "running" and r, 5, what="running again")
    assert again["seq"] > stopped["seq"]
    proc.kill()  # a crash, then the runtime state is lost too (not on a real host: /run survives restarts)
    proc.wait(5)
    crashed = env.record()
    shutil.rmtree(env.state)
    env.start(config)
    wait_for(lambda: (r := env.record()) and r["seq"] != crashed["seq"], 5)
    assert env.record()["seq"] > crashed["seq"]


def test_capacity_is_reported_after_the_allocation_ratios_and_the_reserve(env):
    """Without the operator's figures: vCPUs = usable CPUs x cpu_allocation_ratio, memory = the smaller of (MemTotal -
    reserve) x ram_allocation_ratio and MemAvailable - reserve, each minus what the running domains (256 MiB, 4 vCPUs)
    are given."""
    meminfo = env.base / "meminfo"
    meminfo.write_text("MemTotal:  %d kB\nMemFree:  1 kB\nMemAvailable:  %d kB\n" % (2048 * 1024, 1900 * 1024))
    capacity = {"mem_mib": None, "vcpus": None, "cpu_allocation_ratio": 3.0, "reserved_mem_mib": 100}
    proc = env.start(env.config(capacity=capacity, meminfo_path=str(meminfo), libvirt={"virsh": str(env.virsh)}))
    record = wait_for(lambda: (r := env.record()) and r["manifest"]["age_s"] is not None and r, 5, what="a record with the manifest")
    assert record["capacity"] == {"mem_free_mib": min(2048 - 100 - 256, 1900 - 100), "vcpus_free": max(0, len(os.sched_getaffinity(0)) * 3 - 4)}
    meminfo.write_text("MemTotal:  %d kB\nMemFree:  1 kB\nMemAvailable:  %d kB\n" % (2048 * 1024, 600 * 1024))
    later = wait_for(lambda: (r := env.record()) and r["capacity"]["mem_free_mib"] == 500 and r, 5, what="MemAvailable to bind")
    assert later["capacity"]["vcpus_free"] == record["capacity"]["vcpus_free"]
    assert env.stop(proc) == 0


def test_libvirt_down_or_hung_keeps_the_last_known_manifest(env):
    """virsh fallback; libvirtd first down (error), then hung (timeout), then back."""
    proc = env.start(env.config(libvirt={"method": "virsh", "virsh": str(env.virsh), "timeout": 0.5, "refresh_interval": 0.2}))
    wait_for(lambda: (r := env.record()) and vm_names(r) == ["g1", "g2"], 5, what="the manifest")
    (env.virsh.parent / "virsh.down").touch()
    down = wait_for(lambda: (r := env.record()) and r["manifest"]["error"] and r, 5, what="the libvirt error")
    assert vm_names(down) == ["g1", "g2"] and "failed to connect" in down["manifest"]["error"]
    seq = down["seq"]
    older = wait_for(lambda: (r := env.record()) and r["seq"] >= seq + 3 and r, 5)
    assert older["manifest"]["age_s"] > down["manifest"]["age_s"] and vm_names(older) == ["g1", "g2"]
    (env.virsh.parent / "virsh.down").unlink()
    (env.virsh.parent / "virsh.hang").touch()
    hung = wait_for(lambda: (r := env.record()) and "no answer" in r["manifest"]["error"] and r, 10, what="the libvirt timeout")
    assert vm_names(hung) == ["g1", "g2"]
    seq = hung["seq"]
    wait_for(lambda: env.record()["seq"] >= seq + 3, 5, what="beats to go on while virsh hangs")
    (env.virsh.parent / "virsh.hang").unlink()
    wait_for(lambda: env.record()["manifest"]["error"] == "", 10, what="libvirt to recover")
    assert "keeping the last known manifest" in env.log_text()
    assert env.stop(proc) == 0


def test_libvirt_never_reachable_says_so_and_never_crashes(env):
    missing = env.base / "no-such-node.xml"
    proc = env.start(env.config(libvirt={"method": "auto", "uri": "test://%s" % missing}))
    record = wait_for(lambda: (r := env.record()) and r["seq"] > 0 and r, 5)
    seq = record["seq"]
    record = wait_for(lambda: (r := env.record()) and r["seq"] >= seq + 3 and r, 5)
    assert record["vms"] == [] and record["manifest"]["age_s"] is None and record["manifest"]["error"]
    assert proc.poll() is None
    assert env.stop(proc) == 0


def test_a_hung_store_never_hangs_the_loop_nor_stacks_writes(env):
    proc = env.start(env.config(libvirt={"method": "none"}))
    first = wait_for(env.record, 5)
    env.hang.touch()
    time.sleep(0.5)
    seq = env.state_seq()
    wait_for(lambda: env.state_seq() >= seq + 5, 5, what="the main loop to keep beating")
    frozen = env.record()["seq"]
    threads = len(os.listdir("/proc/%d/task" % proc.pid))
    time.sleep(1.0)
    assert env.record()["seq"] == frozen, "nothing reaches a hung store"
    assert len(os.listdir("/proc/%d/task" % proc.pid)) <= threads, "blocked writes must not pile up threads"
    log = env.log_text()
    assert "not finished within 0.15 s" in log and "will not stack another" in log
    env.hang.unlink()
    wait_for(lambda: env.record()["seq"] > frozen + 2, 5, what="writes to resume")
    # the writer logs the recovery once the write is done: the record can be read a moment before the line
    wait_for(lambda: "recovered after" in env.log_text(), 5, what="the recovery in the log")
    assert env.record()["seq"] > first["seq"]
    # stop while the store hangs: the stopped record cannot be written, the writer still exits promptly with 0
    env.hang.touch()
    time.sleep(0.5)
    start = time.monotonic()
    assert env.stop(proc) == 0
    assert time.monotonic() - start < 30  # promptly despite the hung store; the bound only catches a hang
    assert "could not write the stopped record" in env.log_text()


def test_a_read_only_store_is_an_error_retried_every_beat(env):
    """A real EROFS: the writer runs in a private mount namespace where the store is a read-only bind mount."""
    needs_root_tools()
    store = str(env.store)
    prefix = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c",
              'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', store]
    proc = env.start(env.config(libvirt={"method": "none"}, require_mount=True), prefix=prefix)
    wait_for(lambda: "Read-only file system" in env.log_text(), 5, what="EROFS in the log")
    assert env.record() is None and proc.poll() is None
    subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "mount", "-o", "remount,bind,rw", store], check=True)
    wait_for(env.record, 5, what="the first record after the store came back")
    wait_for(lambda: "recovered after" in env.log_text(), 5, what="the recovery in the log")
    assert env.stop(proc) == 0


def test_require_mount_refuses_a_store_that_is_not_mounted(env, tmp_path):
    """An unmounted store is an empty local directory: writing there would fool the writer (and its self-fence)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        points = {line.split(" ")[4] for line in handle}
    require(not any(p != "/" and str(tmp_path).startswith(p.rstrip("/") + "/") for p in points),
            "the temporary directory %s is itself on a mount (a tmpfs /tmp?): give pytest a --basetemp on the root "
            "file system" % tmp_path)
    proc = env.start(env.config(libvirt={"method": "none"}, require_mount=True))
    wait_for(lambda: "not on a mounted file system" in env.log_text(), 5)
    assert env.record() is None
    assert env.stop(proc) == 0


def test_self_fence_fires_only_without_storage_and_without_a_peer_majority(env):
    """The writer runs in its own network namespace (loopback only); its peers are loopback addresses, reachable
    while ``lo`` is up. The fence action is a harmless command that writes a file."""
    needs_root_tools()
    fired = env.base / "fired"
    conf = env.config(interval=0.3, write_timeout=0.2, libvirt={"method": "none"}, self_fence={
        "armed": True, "deadline_s": 1.5, "peers": ["127.0.0.1", "127.0.0.2"], "probe": "icmp", "probe_timeout": 0.3,
        "probe_attempts": 1, "action": "command", "command": ["/bin/sh", "-c", "date +%s.%N >> " + str(fired)]})
    proc = env.start(conf, prefix=["unshare", "-n", "--"])

    def lo(state):
        subprocess.run(["nsenter", "-t", str(proc.pid), "-n", "ip", "link", "set", "lo", state], check=True)

    record = wait_for(env.record, 5)
    assert record["self_fence"]["armed"] is True and record["self_fence"]["deadline_s"] > 1.5
    # 1. peers unreachable (lo down) but the store works: no fence, however long
    time.sleep(2.5)
    assert not fired.exists()
    # 2. store hung, peers reachable: a shared storage outage, no fence
    lo("up")
    env.hang.touch()
    wait_for(lambda: "self-fence held back" in env.log_text(), 6, what="the held-back decision")
    time.sleep(0.5)
    assert not fired.exists()
    # 3. store hung and no peer reachable: fence
    lo("down")
    start = time.monotonic()
    # Whether it fires is the test; how fast is the writer's deadline_s, which a loaded machine must not fail.
    wait_for(fired.exists, 30, what="the self-fence action")
    assert time.monotonic() - start < 30
    assert "SELF-FENCE" in env.log_text()
    time.sleep(1.0)
    assert len(fired.read_text().splitlines()) == 1, "fired once per episode"
    env.hang.unlink()
    assert env.stop(proc) == 0


def test_bad_configuration_exits_2_with_a_reason(env):
    proc = env.start(env.config(self_fence={"armed": True}))
    assert proc.wait(5) == 2
    assert "needs peers" in env.log_text()
    check = subprocess.run(["/usr/bin/python3", "-I", "-B", str(env.pyz), "--config",
                            str(env.config()), "--check-config"], capture_output=True, text=True, check=False)
    assert check.returncode == 0 and "configuration OK" in check.stdout


@pytest.mark.parametrize("python", INTERPRETERS)
def test_a_reload_after_a_deploy_replaced_the_archive_runs_the_new_archive(env, python):
    """A deploy replaces kvmha-heartbeat.pyz under the running writer (a rename, as the copy module does), then
    reloads it: the old code beats on meanwhile (it imported everything at the start; the new archive's files lie at
    other offsets), and the reload re-executes the new archive, same PID, seq carrying on, no stopped record. The
    runtime state names the archive the writer runs (a deploy reloads a writer whose archive is not the installed
    one): the old one until the reload, the new one after. Also on Python 3.9, which has no sys.orig_argv."""
    proc = env.start(env.config(libvirt={"method": "none"}), python=python)
    wait_for(lambda: (r := env.record()) and r["seq"] > 0 and r, 5)
    started_from = digest(env.pyz)
    assert env.state_archive() == started_from
    new = env.install / "new.pyz"
    with zipfile.ZipFile(env.pyz) as old, zipfile.ZipFile(new, "w") as replacement:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "__main__.py":
                data = b"import sys\nsys.stderr.write('the new archive runs\\n')\n" + data
            replacement.writestr(info, data)
    os.replace(new, env.pyz)
    replaced = env.record()["seq"]
    wait_for(lambda: env.record()["seq"] >= replaced + 3, 5, what="beats from the old code after the replacement")
    assert proc.poll() is None and "the new archive runs" not in env.log_text()
    assert env.state_archive() == started_from != digest(env.pyz)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "the new archive runs" in env.log_text(), 10, what="the new archive")
    seq = env.record()["seq"]
    wait_for(lambda: (r := env.record()) and r["seq"] > seq and r["state"] == "running", 5, what="beats from the new archive")
    assert proc.poll() is None and "Traceback" not in env.log_text()
    assert env.state_archive() == digest(env.pyz)
    assert "re-executing %s -I -B %s --config" % (python, env.pyz) in env.log_text()
    assert env.stop(proc) == 0


def test_reload_reexecutes_in_place_without_a_stopped_record(env):
    """SIGHUP (systemctl reload, used by the role when code or configuration change): same PID, new
    configuration, seq carries on, and no reader ever sees a stopped record."""
    config = env.config(libvirt={"method": "none"})
    proc = env.start(config)
    before = wait_for(lambda: (r := env.record()) and r["seq"] > 0 and r, 5)
    env.config(libvirt={"method": "none"}, interval=0.3)  # same path, new content
    proc.send_signal(signal.SIGHUP)
    seen = set()
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        record = env.record()
        if record:
            seen.add((record["state"], record["interval"]))
        time.sleep(0.005)
    assert ("stopped", 0.2) not in seen and ("stopped", 0.3) not in seen
    after = env.record()
    assert after["interval"] == 0.3 and after["seq"] > before["seq"] and proc.poll() is None
    assert "reloading: re-executing" in env.log_text()
    # a reload while the store hangs is postponed (exec would wait for the blocked thread)
    env.hang.touch()
    time.sleep(0.6)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload postponed" in env.log_text(), 5)
    env.hang.unlink()
    wait_for(lambda: env.log_text().count("reloading: re-executing") == 2, 5, what="the postponed reload")
    assert env.stop(proc) == 0
