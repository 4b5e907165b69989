# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""heartbeat_writer_state=absent, run for real by ansible-playbook without the lab or molecule: in a private mount
namespace whose /etc/systemd/system is a temporary directory, with the install and configuration paths in it too,
and a stand-in systemctl on PATH that keeps each unit's state in files and logs every call. Nothing of the machine
is touched: the bind mount lives and dies with the namespace."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from ansible_collections.kvmha.cluster.tests._require import require

ROOT = pathlib.Path(__file__).resolve().parents[4]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
UNITS = ("kvmha-heartbeat.service", "kvmha-boot-guard.service")

FAKE_SYSTEMCTL = r"""#!/bin/sh
# systemctl stand-in: <state>/<unit>.active and <unit>.enabled are the unit's state; every call is logged.
state=%(state)s
echo "$*" >> "$state/calls"
unit=$2
case $1 in
  show)
    active=inactive; [ -e "$state/$unit.active" ] && active=active
    enabled=disabled; [ -e "$state/$unit.enabled" ] && enabled=enabled
    printf 'Id=%%s\nLoadState=loaded\nActiveState=%%s\nUnitFileState=%%s\n' "$unit" "$active" "$enabled" ;;
  is-enabled)
    if [ -e "$state/$unit.enabled" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  is-active)
    if [ -e "$state/$unit.active" ]; then echo active; else echo inactive; exit 3; fi ;;
  stop) rm -f "$state/$unit.active" ;;
  disable) rm -f "$state/$unit.enabled" ;;
  daemon-reload) ;;
  *) echo "unexpected systemctl call: $*" >&2; exit 1 ;;
esac
"""


def namespaces_work() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False).returncode == 0


class Host:
    """An installed writer as the role leaves it, under one temporary directory."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.units = base / "systemd"
        self.install = base / "lib" / "kvmha-heartbeat"
        self.config = base / "etc" / "kvmha" / "heartbeat.json"
        self.state = base / "state"
        self.bin = base / "bin"
        for directory in (self.units, self.install / "kvmha", self.config.parent, self.state, self.bin):
            directory.mkdir(parents=True)
        for unit in UNITS:
            (self.units / unit).write_text("[Service]\n")
            (self.state / (unit + ".active")).touch()
            (self.state / (unit + ".enabled")).touch()
        (self.units / "other.service").write_text("[Service]\n")  # not the role's: stays
        (self.install / "kvmha-heartbeat.pyz").write_text("")
        (self.install / "kvmha" / "writer.py").write_text("")  # and the layout before the one archive
        (self.install / "kvmha-heartbeat.py").write_text("")
        self.config.write_text("{}")
        (self.state / "calls").touch()
        systemctl = self.bin / "systemctl"
        systemctl.write_text(FAKE_SYSTEMCTL % {"state": self.state})
        systemctl.chmod(0o755)
        (base / "store").mkdir()

    def uninstall(self):
        inventory = {"all": {"children": {"kvm_hosts": {"hosts": {"h1": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "kvmha_store_path": str(self.base / "store"), "heartbeat_writer_state": "absent",
            "heartbeat_writer_install_dir": str(self.install), "heartbeat_writer_config_path": str(self.config)}}}}}}
        (self.base / "inventory.json").write_text(json.dumps(inventory))
        (self.base / "calls").write_text("")
        (self.state / "calls").write_text("")
        env = dict(os.environ, PATH="%s:%s" % (self.bin, os.environ["PATH"]), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   'mount --bind "$0" /etc/systemd/system && exec "$@"', str(self.units),
                   str(ANSIBLE_PLAYBOOK), "-i", str(self.base / "inventory.json"), "kvmha.cluster.deploy"]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(self.base), check=False, timeout=300)
        done.output = done.stdout + done.stderr
        done.calls = (self.state / "calls").read_text().splitlines()
        return done


@pytest.fixture
def host(tmp_path):
    require(namespaces_work(), "root and unshare -m, to give the role a private /etc/systemd/system")
    return Host(tmp_path)


def test_absent_stops_disables_and_removes_what_the_role_installed_and_nothing_else(host):
    done = host.uninstall()
    assert done.returncode == 0, done.output
    assert "stop kvmha-heartbeat.service" in done.calls and "disable kvmha-heartbeat.service" in done.calls, done.calls
    assert "stop kvmha-boot-guard.service" in done.calls and "disable kvmha-boot-guard.service" in done.calls, done.calls
    assert "daemon-reload" in done.calls, done.calls
    assert sorted(p.name for p in host.units.iterdir()) == ["other.service"]
    assert not host.install.exists() and not host.config.exists() and not host.config.parent.exists()
    assert sorted(p.name for p in host.state.iterdir()) == ["calls"]  # every unit stopped and disabled
    assert "Deploy the heartbeat writers" in done.output and "Install the writer" not in done.output  # nothing deployed


def test_absent_again_changes_nothing(host):
    assert host.uninstall().returncode == 0
    again = host.uninstall()
    assert again.returncode == 0 and "changed=0" in again.output, again.output
    assert not [call for call in again.calls if call.split()[0] in ("stop", "disable")], again.calls


def test_absent_keeps_a_configuration_directory_that_holds_more_than_the_writers(host):
    (host.config.parent / "notes.txt").write_text("mine")
    assert host.uninstall().returncode == 0
    assert not host.config.exists() and (host.config.parent / "notes.txt").read_text() == "mine"
