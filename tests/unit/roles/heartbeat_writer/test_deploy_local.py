# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""deploy.yml run for real by ansible-playbook without the lab: in a private mount namespace whose
/etc/systemd/system is a temporary directory, the install and configuration paths in it too, and a stand-in
systemctl that keeps each unit's state in files and logs every call (as test_uninstall.py). The artifact is built
on the controller and installed as one file; a second deploy changes nothing, with the module runs counted; an
install of the layout before it is upgraded; check mode installs nothing."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from ansible_collections.kvmha.cluster.tests._require import require
from ansible_collections.kvmha.cluster.tests._shipped import ARTIFACT, build_pyz

ROOT = pathlib.Path(__file__).resolve().parents[4]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
OLD_LAYOUT = ("kvmha", "kvmha-heartbeat.py", "kvmha-boot-guard.py")
# Module runs on the host of a deploy that changes nothing (role defaults but no packages): the preflight's one
# check, two directories, then stat + file for the archive and each of the three templates (a copy that finds the
# file up to date still applies owner and mode), and two units kept enabled.
WARM_MODULE_RUNS = 1 + 2 + 2 * 4 + 2

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
  start|restart|reload) touch "$state/$unit.active" ;;
  stop) rm -f "$state/$unit.active" ;;
  enable) touch "$state/$unit.enabled" ;;
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
    """A hypervisor's writer paths under one temporary directory."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.units = base / "systemd"
        self.install = base / "lib" / "kvmha-heartbeat"
        self.config = base / "etc" / "kvmha" / "heartbeat.json"
        self.state = base / "state"
        self.bin = base / "bin"
        for directory in (self.units, self.state, self.bin):
            directory.mkdir(parents=True)
        systemctl = self.bin / "systemctl"
        systemctl.write_text(FAKE_SYSTEMCTL % {"state": self.state})
        systemctl.chmod(0o755)

    def deploy(self, *options):
        # The store is only looked at, and must lie where the unit's sandbox leaves it writable (not under /tmp).
        inventory = {"all": {"children": {"kvm_hosts": {"hosts": {"h1": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "kvmha_store_path": "/var/lib",
            "heartbeat_writer_packages": [], "heartbeat_writer_python": sys.executable,
            "heartbeat_writer_install_dir": str(self.install), "heartbeat_writer_config_path": str(self.config)}}}}}}
        (self.base / "inventory.json").write_text(json.dumps(inventory))
        (self.state / "calls").write_text("")
        env = dict(os.environ, PATH="%s:%s" % (self.bin, os.environ["PATH"]), ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1",
                   ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   'mount --bind "$0" /etc/systemd/system && exec "$@"', str(self.units),
                   str(ANSIBLE_PLAYBOOK), "-vvv", "-i", str(self.base / "inventory.json"), "kvmha.cluster.deploy"] + list(options)
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(self.base), check=False, timeout=300)
        done.output = done.stdout + done.stderr
        done.calls = (self.state / "calls").read_text().splitlines()
        # One EXEC of the interpreter per module run (pipelining); the controller's are localhost's.
        done.module_runs = len(re.findall(r"^<h1> EXEC .*%s" % re.escape(sys.executable), done.stdout, re.M))
        return done

    def exec_start(self, unit):
        return [line.split("=", 1)[1] for line in (self.units / unit).read_text().splitlines() if line.startswith("ExecStart=")]


@pytest.fixture
def host(tmp_path):
    require(namespaces_work(), "root and unshare -m, to give the role a private /etc/systemd/system")
    return Host(tmp_path)


def recap_changed(output) -> int:
    return int(re.search(r"^h1\s*:.*changed=(\d+)", output, re.M).group(1))


def test_deploy_installs_one_archive_and_again_changes_nothing_in_fewer_module_runs(host, tmp_path):
    done = host.deploy()
    assert done.returncode == 0, done.output[-5000:]
    assert sorted(p.name for p in host.install.iterdir()) == [ARTIFACT]
    (tmp_path / "expected").mkdir()
    assert (host.install / ARTIFACT).read_bytes() == build_pyz(tmp_path / "expected").read_bytes()
    assert host.exec_start("kvmha-heartbeat.service")[0].endswith("%s --config %s" % (host.install / ARTIFACT, host.config))
    assert " %s boot-guard --config %s " % (host.install / ARTIFACT, host.config) in host.exec_start("kvmha-boot-guard.service")[0]
    assert "start kvmha-heartbeat.service" in done.calls and "enable kvmha-boot-guard.service" in done.calls, done.calls
    assert not list(pathlib.Path(tmp_path).glob("kvmha-heartbeat-*")), "the build directory is removed"
    again = host.deploy()
    assert again.returncode == 0 and recap_changed(again.output) == 0, again.output[-5000:]
    assert not [call for call in again.calls if call.split()[0] in ("restart", "reload", "start")], again.calls
    assert again.module_runs == WARM_MODULE_RUNS, again.module_runs


def test_deploy_upgrades_the_layout_before_the_archive(host):
    (host.install / "kvmha").mkdir(parents=True)
    (host.install / "kvmha" / "writer.py").write_text("")
    (host.install / "kvmha-heartbeat.py").write_text("")
    (host.install / "kvmha-boot-guard.py").write_text("")
    (host.units / "kvmha-heartbeat.service").write_text("[Service]\nExecStart=/usr/bin/python3 -I -B %s/kvmha-heartbeat.py\n" % host.install)
    (host.state / "kvmha-heartbeat.service.active").touch()
    done = host.deploy()
    assert done.returncode == 0, done.output[-5000:]
    assert sorted(p.name for p in host.install.iterdir()) == [ARTIFACT]
    assert "restart kvmha-heartbeat.service" in done.calls, done.calls  # a new unit: a restart, not a reload
    assert "Remove the writer's files from before kvmha-heartbeat.pyz" in done.output


def test_check_mode_on_a_new_host_installs_nothing(host):
    done = host.deploy("--check", "--diff")
    assert done.returncode == 0, done.output[-5000:]
    assert not host.install.exists() and not host.config.exists() and not list(host.units.iterdir())
    assert not [call for call in done.calls if call.split()[0] not in ("show", "is-enabled", "is-active")], done.calls
