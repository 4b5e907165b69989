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

import pytest

from conftest import PYTHON, ROOT  # pylint: disable=import-error

INVENTORY = {
    "all": {"children": {"kvm_hosts": {
        "hosts": {
            "h1": {"kvmha_private_ip": "198.51.100.71"},
            "h2": {"kvmha_private_ip": "198.51.100.72"},
            "h4": {"kvmha_private_ip": "198.51.100.74"},
            "h3": {"kvmha_private_ip": "198.51.100.73", "kvmha_cluster": "other"},
            "h5": {"kvmha_private_ip": "198.51.100.75", "kvmha_cluster": "other"},
        },
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": PYTHON},
    }}}
}


def render(tmp_path, limit, **extra):
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(INVENTORY))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    extra = dict({"kvmha_store_path": str(tmp_path), "render_dir": str(out)}, **extra)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), "--limit", limit,
         "-e", json.dumps(extra), str(ROOT / "tests" / "writer" / "render.yml")],
        capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    return done, out


def check_config(path):
    return subprocess.run([PYTHON, "-I", "-B", str(ROOT / "roles" / "heartbeat_writer" / "files" / "launcher.py"), "--config", str(path),
                           "--check-config"], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def launcher_layout(tmp_path_factory):
    """launcher.py imports kvmha.writer from its own directory: lay it out like the role does."""
    base = tmp_path_factory.mktemp("install")
    (base / "kvmha").mkdir()
    for name in ("_errors.py", "_deadline.py", "_heartbeat.py"):
        shutil.copy(ROOT / "plugins" / "module_utils" / name, base / "kvmha" / name)
    shutil.copy(ROOT / "roles" / "heartbeat_writer" / "files" / "writer.py", base / "kvmha" / "writer.py")
    shutil.copy(ROOT / "roles" / "heartbeat_writer" / "files" / "package_init.py", base / "kvmha" / "__init__.py")
    shutil.copy(ROOT / "roles" / "heartbeat_writer" / "files" / "launcher.py", base / "kvmha-heartbeat.py")
    return base


def run_check(layout, path):
    return subprocess.run([PYTHON, "-I", "-B", str(layout / "kvmha-heartbeat.py"), "--config", str(path), "--check-config"],
                          capture_output=True, text=True, check=False)


def test_default_render_peers_per_cluster_and_a_valid_configuration(tmp_path, launcher_layout):
    done, out = render(tmp_path, "all", heartbeat_writer_self_fence_armed=True, heartbeat_writer_ha_domains=[{"name": "g9"}])
    assert done.returncode == 0, done.stdout + done.stderr
    peers = {host: json.loads((out / ("%s.heartbeat.json" % host)).read_text())["self_fence"]["peers"] for host in ("h1", "h3")}
    assert peers == {"h1": ["198.51.100.72", "198.51.100.74"], "h3": ["198.51.100.75"]}
    for host in ("h1", "h2", "h3", "h4", "h5"):
        check = run_check(launcher_layout, out / ("%s.heartbeat.json" % host))
        assert check.returncode == 0, check.stdout + check.stderr
        assert "armed (poweroff)" in check.stdout
    unit = (out / "h1.kvmha-heartbeat.service").read_text()
    assert "SystemCallFilter=@reboot" in unit and "CAP_SYS_BOOT" in unit and "DeviceAllow" not in unit
    assert "Restart=always" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", str(out / "h1.kvmha-heartbeat.service")],
                                capture_output=True, text=True, timeout=60, check=False)
        complaints = [line for line in (verify.stdout + verify.stderr).splitlines() if "kvmha-heartbeat.service" in line]
        assert verify.returncode == 0 and not complaints, verify.stdout + verify.stderr


def test_unarmed_unit_gets_no_reboot_rights(tmp_path):
    done, out = render(tmp_path, "h1")
    assert done.returncode == 0, done.stdout + done.stderr
    unit = (out / "h1.kvmha-heartbeat.service").read_text()
    assert "@reboot" not in unit and "CAP_SYS_BOOT" not in unit


@pytest.mark.parametrize("extra, message", [
    ({"heartbeat_writer_self_fence_armed": True, "heartbeat_writer_self_fence_peers": []}, "self-fence armed on h1"),
    ({"heartbeat_writer_self_fence_armed": True, "heartbeat_writer_self_fence_deadline": 4}, "self-fence armed on h1"),
    ({"kvmha_store_path": "relative/store"}, "invalid input"),
    ({"heartbeat_writer_write_timeout": 5}, "invalid input"),
    ({"kvmha_store_path": "/nonexistent/kvmha-store"}, "is the shared store mounted"),
])
def test_preflight_refuses_bad_input(tmp_path, extra, message):
    done, _out = render(tmp_path, "h1", **extra)
    assert done.returncode != 0 and message in done.stdout + done.stderr
