# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role's preflight and templates, rendered for a fake inventory on the controller: peers per cluster,
a configuration the writer accepts, a unit systemd accepts, and refusals of bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT  # pylint: disable=import-error

from ansible_collections.kvmha.cluster.tests._require import optional, require
from ansible_collections.kvmha.cluster.tests._shipped import build_pyz

INVENTORY = {
    "all": {"children": {"kvm_hosts": {
        "hosts": {
            "h1": {"kvmha_private_ip": "198.51.100.71", "heartbeat_writer_self_fence_armed": True},
            "h2": {"kvmha_private_ip": "198.51.100.72"},
            "h4": {"kvmha_private_ip": "198.51.100.74", "heartbeat_writer_self_fence_armed": True},
            "h3": {"kvmha_private_ip": "198.51.100.73", "kvmha_cluster": "other", "heartbeat_writer_self_fence_armed": True},
            "h5": {"kvmha_private_ip": "198.51.100.75", "kvmha_cluster": "other", "heartbeat_writer_self_fence_armed": True},
        },
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": PYTHON},
    }}}
}


# The preflight stats the store and refuses stores the unit's sandbox hides or makes read-only (/tmp, /home, /usr
# ...), so neither a temporary directory nor the checkout (which may itself lie under /tmp) will do. The render
# never writes to the store, so an existing directory the sandbox leaves writable serves: /var/lib.
STORE = Path("/var/lib")


def render(tmp_path, limit, **extra):
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(INVENTORY))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    extra = dict({"kvmha_store_path": str(STORE), "render_dir": str(out)}, **extra)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), "--limit", limit,
         "-e", json.dumps(extra), str(ROOT / "tests" / "writer" / "render.yml")],
        capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    return done, out


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """kvmha-heartbeat.pyz as the role builds and installs it."""
    return build_pyz(tmp_path_factory.mktemp("install"))


def run_check(pyz, path):
    """The check that the role's validate: runs before a new configuration replaces the old one."""
    return subprocess.run([PYTHON, "-I", "-B", str(pyz), "--config", str(path), "--check-config"],
                          capture_output=True, text=True, check=False)


def test_default_render_peers_per_cluster_and_a_valid_configuration(tmp_path, artifact):
    done, out = render(tmp_path, "all", heartbeat_writer_ha_domains=[{"name": "g9"}])
    assert done.returncode == 0, done.stdout + done.stderr
    peers = {host: json.loads((out / ("%s.heartbeat.json" % host)).read_text())["self_fence"]["peers"] for host in ("h1", "h3")}
    assert peers == {"h1": ["198.51.100.72", "198.51.100.74"], "h3": ["198.51.100.75"]}
    for host in ("h1", "h2", "h3", "h4", "h5"):
        check = run_check(artifact, out / ("%s.heartbeat.json" % host))
        assert check.returncode == 0, check.stdout + check.stderr
        assert ("self-fence off" if host == "h2" else "armed (poweroff)") in check.stdout
    unarmed = (out / "h2.kvmha-heartbeat.service").read_text()
    assert "@reboot" not in unarmed and "CAP_SYS_BOOT" not in unarmed
    unit = (out / "h1.kvmha-heartbeat.service").read_text()
    assert "SystemCallFilter=@reboot" in unit and "CAP_SYS_BOOT" in unit and "DeviceAllow" not in unit
    assert "Restart=always" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert unit_settings(unit)["ExecStart"] == [
        "/usr/bin/python3 -I -B /usr/lib/kvmha-heartbeat/kvmha-heartbeat.pyz --config /etc/kvmha/heartbeat.json"]
    if optional(shutil.which("systemd-analyze"), "systemd-analyze is not installed: the unit is not verified"):
        verify = subprocess.run(["systemd-analyze", "verify", str(out / "h1.kvmha-heartbeat.service")],
                                capture_output=True, text=True, timeout=60, check=False)
        complaints = [line for line in (verify.stdout + verify.stderr).splitlines() if "kvmha-heartbeat.service" in line]
        assert verify.returncode == 0 and not complaints, verify.stdout + verify.stderr


BAD_INPUT = {
    "b1": ({"heartbeat_writer_self_fence_armed": True, "heartbeat_writer_self_fence_peers": []}, "self-fence armed on b1"),
    "b2": ({"heartbeat_writer_self_fence_armed": True, "heartbeat_writer_self_fence_deadline": 4}, "self-fence armed on b2"),
    "b3": ({"kvmha_store_path": "relative/store"}, "invalid input"),
    "b4": ({"heartbeat_writer_write_timeout": 5}, "invalid input"),
    "b5": ({"kvmha_store_path": "/nonexistent/kvmha-store"}, "is the shared store mounted"),
    "b6": ({"kvmha_store_path": "/home/store"}, "ProtectSystem=full"),
    "b7": ({"heartbeat_writer_boot_guard_store_timeout": 0}, "invalid input"),
    "b8": ({"heartbeat_writer_boot_guard_libvirt_config_dir": "etc/libvirt/qemu"}, "invalid input"),
}


def test_preflight_refuses_bad_input(tmp_path):
    """One host per bad input, in one run: each fails with its own reason, before anything is rendered."""
    inventory = tmp_path / "inventory.json"
    hosts = {name: dict(bad, kvmha_private_ip="198.51.100.8%s" % name[1]) for name, (bad, _message) in BAD_INPUT.items()}
    inventory.write_text(json.dumps({"all": {"children": {"kvm_hosts": {
        "hosts": hosts,
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": PYTHON, "kvmha_store_path": str(STORE)}}}}}))
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory),
         "-e", json.dumps({"render_dir": str(out)}),
         str(ROOT / "tests" / "writer" / "render.yml")],
        capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    text = done.stdout + done.stderr
    assert done.returncode != 0
    for name, (_bad, message) in BAD_INPUT.items():
        failures = [line for line in text.splitlines() if line.startswith("fatal: [%s]" % name)]
        assert failures and message in failures[0], (name, text)
    assert not list(out.iterdir()), "nothing may be rendered for a host that failed its preflight"


def unit_settings(text):
    """``{key: [values]}`` of a unit file (comments and section headers dropped)."""
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture(scope="module")
def guard_unit(tmp_path_factory):
    """The boot guard's unit rendered for h2 with a store timeout and a libvirt directory of its own."""
    done, out = render(tmp_path_factory.mktemp("guard"), "h2", heartbeat_writer_boot_guard_store_timeout=12.5,
                       heartbeat_writer_boot_guard_libvirt_config_dir="/srv/libvirt/qemu")
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "h2.kvmha-boot-guard.service"


def test_boot_guard_unit_runs_once_before_libvirt_within_its_deadline(guard_unit):
    path = guard_unit
    unit = unit_settings(path.read_text())
    assert unit["Before"] == ["libvirtd.service virtqemud.service libvirt-guests.service"]
    assert unit["WantedBy"] == ["multi-user.target libvirtd.service virtqemud.service libvirt-guests.service"]
    assert unit["After"] == ["local-fs.target remote-fs.target"], "libvirtd waits for these anyway; nothing slower"
    assert "Wants" not in unit and "Requires" not in unit, "the guard must pull in nothing that could wait"
    assert unit["Type"] == ["oneshot"] and unit["RemainAfterExit"] == ["yes"]
    assert unit["TimeoutStartSec"] == ["42"], "an outer bound: the store deadline plus 30 s"
    assert unit["ExecStart"] == [
        "/usr/bin/python3 -I -B /usr/lib/kvmha-heartbeat/kvmha-heartbeat.pyz boot-guard --config /etc/kvmha/heartbeat.json "
        "--store-timeout 12.5 --libvirt-config-dir /srv/libvirt/qemu --result /run/kvmha-boot-guard/result.json"]
    assert unit["ProtectSystem"] == ["yes"], "/etc/libvirt must stay writable"
    if optional(shutil.which("systemd-analyze"), "systemd-analyze is not installed: the unit is not verified"):
        verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False)
        complaints = [line for line in (verify.stdout + verify.stderr).splitlines() if "kvmha-boot-guard.service" in line]
        assert verify.returncode == 0 and not complaints, verify.stdout + verify.stderr


def test_enabling_the_boot_guard_makes_libvirt_want_it_even_where_libvirt_guests_is_masked(tmp_path, guard_unit):
    """What the role's ``enabled: true`` does, offline in a scratch root (``systemctl --root``): the lab masks
    libvirt-guests.service, and hosts without the modular daemons have no virtqemud.service."""
    require(shutil.which("systemctl"), "needs systemctl")
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    shutil.copy(guard_unit, units / "kvmha-boot-guard.service")
    os.symlink("/dev/null", str(units / "libvirt-guests.service"))
    enable = subprocess.run(["systemctl", "--root", str(root), "enable", "kvmha-boot-guard.service"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert enable.returncode == 0, enable.stderr
    for wanting in ("multi-user.target", "libvirtd.service", "virtqemud.service", "libvirt-guests.service"):
        link = units / ("%s.wants" % wanting) / "kvmha-boot-guard.service"
        assert os.readlink(str(link)) == "/etc/systemd/system/kvmha-boot-guard.service", wanting
