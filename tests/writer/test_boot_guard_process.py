# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Process-level tests of the boot guard: the real script, installed the way the role installs it, run by the
hypervisors' interpreter (/usr/bin/python3) against a temporary libvirt configuration tree and a temporary store
holding real ``_storefile`` documents; then against a real, private libvirtd (when this machine has one) to show
that libvirt really does not autostart what the guard unlinked. No lab, no network; every process started here
is ended by its own PID."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import PYTHON, ROOT  # pylint: disable=import-error

from ansible_collections.kvmha.cluster.tests._require import require
from ansible_collections.kvmha.cluster.tests._shipped import build_pyz

FIXTURE = ROOT / "tests" / "integration" / "targets" / "vm_evacuate" / "files" / "libvirtd_fixture.py"
HA = '<metadata><kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority="50" group=""/></metadata>'
VMS = {  # name: (uuid, HA marker, autostart)
    "g1": ("11111111-1111-4111-8111-111111111111", True, True),
    "g2": ("22222222-2222-4222-8222-222222222222", True, True),
    "g3": ("33333333-3333-4333-8333-333333333333", False, True),   # HA through the role's list (heartbeat_writer_ha_domains)
    "plain": ("44444444-4444-4444-8444-444444444444", False, True),
    "idle": ("55555555-5555-4555-8555-555555555555", True, False),
}
MOVED_ELSEWHERE = "66666666-6666-4666-8666-666666666666"  # in the mark, not defined on this host


def definition(name: str, uuid: str, ha: bool) -> str:
    return ("<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\nOVERWRITTEN AND LOST.\n-->\n"
            "<domain type='qemu'>\n  <name>%s</name>\n  <uuid>%s</uuid>\n  %s\n  <memory unit='KiB'>65536</memory>\n"
            "  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n</domain>\n" % (name, uuid, HA if ha else ""))


def marks_module():
    from ansible_collections.kvmha.cluster.plugins.module_utils import _marks  # pylint: disable=import-outside-toplevel

    return _marks


class Guard:
    """One host's libvirt tree, store, writer configuration and guard installation in a temporary directory."""

    def __init__(self, base):
        self.base = base
        (base / "install").mkdir(parents=True)
        self.pyz = build_pyz(base / "install")  # run as its unit runs it: <pyz> boot-guard --config ...
        self.qemu = base / "etc" / "libvirt" / "qemu"
        (self.qemu / "autostart").mkdir(parents=True)
        for name, (uuid, ha, autostart) in VMS.items():
            (self.qemu / ("%s.xml" % name)).write_text(definition(name, uuid, ha))
            if autostart:
                os.symlink(str(self.qemu / ("%s.xml" % name)), str(self.qemu / "autostart" / ("%s.xml" % name)))
        (self.qemu / "broken.xml").write_text("<domain type='qemu'><name>broken</name><uu")
        os.symlink(str(self.qemu / "broken.xml"), str(self.qemu / "autostart" / "broken.xml"))
        self.guests = base / "var" / "lib" / "libvirt" / "libvirt-guests"
        self.guests.parent.mkdir(parents=True)
        self.guests.write_text("qemu:///system %s %s %s\n" % (VMS["g1"][0], VMS["g2"][0], VMS["plain"][0]))
        self.store = base / "store"
        (self.store / "kvmha" / "hosts").mkdir(parents=True)
        self.hang = base / "hang"
        self.config = base / "heartbeat.json"
        self.write_config()

    def write_config(self, **overrides):
        conf = {"host": "h1", "store": str(self.store), "require_mount": False, "ha_domains": [{"name": "g3"}]}
        conf.update(overrides)
        self.config.write_text(json.dumps(conf))

    def mark(self, data=None, host="h1"):
        return marks_module().set_mark(str(self.store), "fenced", host, "watchdog@controller",
                                       {"vms": [VMS["g1"][0], MOVED_ELSEWHERE], "reason": "SUSPECT (R8)"} if data is None else data)

    def autostarted(self):
        return sorted(entry[:-4] for entry in os.listdir(str(self.qemu / "autostart")))

    def definitions_digest(self):
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(self.qemu.glob("*.xml"))}

    def run(self, *extra, timeout=2.0, env=None, qemu=None):
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KVMHA_HEARTBEAT_TEST_HANG_FILE": str(self.hang)}
        environ.update(env or {})
        argv = [PYTHON, "-I", "-B", str(self.pyz), "boot-guard", "--config", str(self.config), "--store-timeout", str(timeout),
                "--libvirt-config-dir", str(qemu or self.qemu), "--guests-list", str(self.guests),
                "--result", str(self.base / "result.json"), "--json"] + list(extra)
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=timeout + 30, check=False)
        done.elapsed = time.monotonic() - started
        done.summary = json.loads(done.stdout) if done.stdout.strip() else None
        return done


@pytest.fixture
def guard(tmp_path):
    return Guard(tmp_path)


ALL = ["broken", "g1", "g2", "g3", "plain"]


def test_no_mark_changes_nothing(guard):
    before = guard.definitions_digest()
    done = guard.run()
    assert done.returncode == 0, done.stderr
    assert done.summary["mode"] == "clear" and done.summary["removed"] == [] and "no fenced mark" in done.summary["reason"]
    assert guard.autostarted() == ALL and guard.definitions_digest() == before
    assert "autostart left as it is" in done.stderr and done.elapsed < 10 * 2.0  # the bound only catches a hang
    assert json.loads((guard.base / "result.json").read_text()) == done.summary


def test_another_hosts_mark_changes_nothing(guard):
    guard.mark(host="h2")
    done = guard.run()
    assert done.returncode == 0 and done.summary["mode"] == "clear" and guard.autostarted() == ALL


def test_an_active_mark_disables_autostart_of_the_moved_vms_only(guard):
    guard.mark()
    before = guard.definitions_digest()
    done = guard.run()
    assert done.returncode == 0, done.stderr
    summary = done.summary
    assert summary["mode"] == "fenced" and summary["vms"] == sorted([VMS["g1"][0], MOVED_ELSEWHERE])
    assert summary["mark"]["generation"] == 1 and summary["mark"]["owner"] == "watchdog@controller"
    assert sorted(r["name"] for r in summary["removed"]) == ["broken", "g1"]  # broken: cannot prove it is not g1
    assert guard.autostarted() == ["g2", "g3", "plain"] and summary["kept"] == ["g2", "g3", "plain"]
    assert summary["not_defined_here"] == [MOVED_ELSEWHERE]
    assert guard.definitions_digest() == before, "definitions are never touched"
    assert summary["guests_dropped"] == [VMS["g1"][0]]
    assert guard.guests.read_text() == "qemu:///system %s %s\n" % (VMS["g2"][0], VMS["plain"][0])
    assert "this host is marked fenced" in done.stderr and "disabled autostart of g1 (%s)" % VMS["g1"][0] in done.stderr
    assert "virsh autostart g1" in done.stderr
    again = guard.run()  # the next boot, still fenced: nothing left to do
    assert again.returncode == 0 and again.summary["mode"] == "fenced" and again.summary["removed"] == []
    assert guard.autostarted() == ["g2", "g3", "plain"]


def test_a_released_mark_changes_nothing(guard):
    guard.mark()
    marks_module().clear_mark(str(guard.store), "fenced", "h1", "watchdog@controller")
    done = guard.run()
    assert done.returncode == 0 and done.summary["mode"] == "clear" and "released" in done.summary["reason"]
    assert guard.autostarted() == ALL


def cautious(guard, done, reason):
    """The answer when the store cannot tell: every HA domain (marker or the role's list) and every definition that
    cannot be read lose their autostart; plain domains keep it."""
    assert done.returncode == 0, done.stderr
    assert done.summary["mode"] == "unknown" and reason in done.summary["reason"], done.summary
    assert sorted(r["name"] for r in done.summary["removed"]) == ["broken", "g1", "g2", "g3"]
    assert guard.autostarted() == ["plain"]
    assert guard.guests.read_text() == "qemu:///system %s\n" % VMS["plain"][0]
    assert "cannot tell whether this host was fenced" in done.stderr


def test_a_hung_store_disables_every_ha_domain_within_the_deadline(guard):
    guard.mark()
    guard.hang.write_text("")  # every store access blocks, as on a hung NFS mount
    done = guard.run(timeout=1.5)
    cautious(guard, done, "did not answer within 1.5 s")
    # The store never answers: any bound shows the deadline ended the wait; 10x it only catches a hang.
    assert done.summary["store_s"] < 10 * 1.5 and done.elapsed < 10 * 1.5, done.elapsed


def test_an_invalid_mark_disables_every_ha_domain(guard):
    directory = guard.store / "kvmha" / "fenced" / "h1"
    directory.mkdir(parents=True)
    (directory / "0000000001.json").write_text('{"version": 1, "kind": "fenced", "name": "h1"}')
    cautious(guard, guard.run(), "missing field")


def test_a_mark_that_does_not_list_the_moved_vms_disables_every_ha_domain(guard):
    guard.mark({"reason": "fenced by hand"})
    cautious(guard, guard.run(), "does not list the moved VMs")


def test_a_store_that_is_not_there_disables_every_ha_domain(guard):
    shutil.rmtree(str(guard.store / "kvmha"))  # an empty mount point: no kvmha/ directory
    cautious(guard, guard.run(), "not (yet) the kvmha store")


def test_a_store_that_is_not_mounted_disables_every_ha_domain_after_waiting(guard):
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        points = [line.split(" ")[4] for line in handle if len(line.split(" ")) > 4]
    store = os.path.realpath(str(guard.store))
    require(not any(p != "/" and (store == p or store.startswith(p.rstrip("/") + "/")) for p in points),
            "%s lies on a mounted file system here (a tmpfs /tmp?): give pytest a --basetemp on the root file system"
            % store)
    guard.mark()
    guard.write_config(require_mount=True)
    done = guard.run(timeout=1.0)
    cautious(guard, done, "not mounted")
    assert 0.6 < done.summary["store_s"] < 10 * 1.0  # it waited; the upper bound only catches a hang


def test_an_unusable_configuration_disables_the_marked_ha_domains(guard):
    guard.config.write_text("{not json")
    done = guard.run()
    assert done.returncode == 0 and done.summary["mode"] == "unknown" and "is not JSON" in done.summary["reason"]
    # Without the configuration the role's HA list is unknown too: g3 (HA only through that list) keeps autostart.
    assert guard.autostarted() == ["g3", "plain"]


def test_dry_run_changes_nothing_and_says_what_it_would_do(guard):
    guard.mark()
    guards_list = guard.guests.read_text()
    done = guard.run("--dry-run")
    assert done.returncode == 0 and done.summary["dry_run"] is True
    assert sorted(r["name"] for r in done.summary["removed"]) == ["broken", "g1"]
    assert guard.autostarted() == ALL and guard.guests.read_text() == guards_list
    assert "would disable autostart of g1" in done.stderr


def test_no_libvirt_definitions_at_all_is_fine(guard, tmp_path):
    guard.mark()
    done = guard.run(qemu=tmp_path / "nowhere")
    assert done.returncode == 0 and done.summary["removed"] == [] and done.summary["not_defined_here"] == sorted(
        [VMS["g1"][0], MOVED_ELSEWHERE])


def test_a_read_only_libvirt_directory_fails_loudly(guard):
    require(os.geteuid() != 0 or shutil.which("unshare"), "root ignores permissions and unshare is missing")
    guard.mark()
    script = ("mount --bind {q} {q} && mount -o remount,bind,ro {q} && exec \"$@\"".format(q=guard.qemu / "autostart")
              if os.geteuid() == 0 else 'exec "$@"')
    if os.geteuid() != 0:
        (guard.qemu / "autostart").chmod(0o555)
    argv = [PYTHON, "-I", "-B", str(guard.pyz), "boot-guard", "--config", str(guard.config), "--store-timeout", "2",
            "--libvirt-config-dir", str(guard.qemu), "--guests-list", str(guard.guests), "--json"]
    prefix = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", script, "sh"] if os.geteuid() == 0 else []
    done = subprocess.run(prefix + argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1, done.stderr
    assert "could not disable autostart of g1" in done.stderr and guard.autostarted() == ALL
    assert json.loads(done.stdout)["errors"]


# ------------------------------------------------------------------------------------------ a real libvirtd


def libvirt_tools() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("unshare", "libvirtd", "virsh", "qemu-system-x86_64"))


def fixture(*args):
    done = subprocess.run([sys.executable, str(FIXTURE)] + list(args), capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def virsh(uri, *args):
    return subprocess.run(["virsh", "-c", uri] + list(args), capture_output=True, text=True, timeout=30, check=False)


def test_libvirtd_does_not_autostart_what_the_guard_unlinked(tmp_path):
    """A private libvirtd (own mount, PID and network namespaces; the integration tests' fixture) with two
    autostarted TCG guests. The host is marked fenced for g1; the guard runs on the instance's own /etc/libvirt/qemu
    while libvirtd is down, as at boot; libvirtd then starts g2 by itself, but not g1 - whose definition is still there."""
    require(libvirt_tools(), "needs root, unshare, libvirtd, virsh and qemu-system-x86_64")
    instances = tmp_path / "libvirtd"
    guard = Guard(tmp_path / "guard")
    try:
        uri = fixture("start", str(instances), "bg")["uri"]
        for name in ("g1", "g2"):
            xml = tmp_path / ("%s.xml" % name)
            xml.write_text(definition(name, VMS[name][0], True).replace(
                "</domain>", "<devices><video><model type='none'/></video><memballoon model='none'/></devices></domain>"))
            for command in (["define", str(xml)], ["autostart", name]):
                done = virsh(uri, *command)
                assert done.returncode == 0, done.stderr
        fixture("stop", str(instances), "bg")  # the host is down (its guests die with it)
        guard.mark()
        done = guard.run(qemu=instances / "bg" / "etc" / "qemu")
        assert done.returncode == 0, done.stderr
        assert [r["name"] for r in done.summary["removed"]] == ["g1"] and done.summary["kept"] == ["g2"]
        uri = fixture("restart", str(instances), "bg")["uri"]  # the host boots: libvirtd autostarts what is left
        end = time.monotonic() + 30
        while "g2" not in virsh(uri, "list", "--name").stdout and time.monotonic() < end:
            time.sleep(0.2)
        assert virsh(uri, "list", "--name").stdout.split() == ["g2"]
        assert sorted(virsh(uri, "list", "--all", "--name").stdout.split()) == ["g1", "g2"], "g1 is still defined"
        assert "Autostart:      disable" in virsh(uri, "dominfo", "g1").stdout
    finally:
        subprocess.run([sys.executable, str(FIXTURE), "stop-all", str(instances)], capture_output=True, timeout=60, check=False)
