# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role run for real by ansible-playbook without the lab: in a private mount namespace whose /etc/systemd/system
and /run are temporary directories, the install and configuration paths in it too, and a stand-in systemctl on PATH
that keeps each unit's state in files and logs every call. It stands in for the writer too: starting, restarting or
reloading kvmha-heartbeat.service records the installed archive's sha256 in the runtime state, as the writer does
(tests/writer/test_writer_process.py). Nothing of the machine is touched: the bind mounts live and die with the
namespace."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[4]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")

FAKE_SYSTEMCTL = r"""#!/bin/sh
# systemctl stand-in: <state>/<unit>.active and <unit>.enabled are the unit's state; every call is logged.
state=%(state)s
echo "$*" >> "$state/calls"
unit=$2
case $1 in
  show)
    shift
    for unit in "$@"; do
      case $unit in -*) continue ;; esac
      active=inactive; [ -e "$state/$unit.active" ] && active=active
      enabled=disabled; [ -e "$state/$unit.enabled" ] && enabled=enabled
      printf 'Id=%%s\nLoadState=loaded\nActiveState=%%s\nUnitFileState=%%s\n\n' "$unit" "$active" "$enabled"
    done ;;
  is-enabled)
    if [ -e "$state/$unit.enabled" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  is-active)
    if [ -e "$state/$unit.active" ]; then echo active; else echo inactive; exit 3; fi ;;
  start|restart|reload)
    touch "$state/$unit.active"
    if [ "$unit" = kvmha-heartbeat.service ]; then
      mkdir -p /run/kvmha-heartbeat
      printf '{"archive": "%%s"}' "$(sha256sum < %(archive)s | cut -d' ' -f1)" > /run/kvmha-heartbeat/state.json
    fi ;;
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


class FakeHost:
    """A hypervisor's writer paths under one temporary directory, with the stand-in systemctl."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.units = base / "systemd"
        self.install = base / "lib" / "kvmha-heartbeat"
        self.config = base / "etc" / "kvmha" / "heartbeat.json"
        self.state = base / "state"
        self.run = base / "run"  # /run in the namespace: the writer's runtime state is kvmha-heartbeat/state.json
        self.bin = base / "bin"
        for directory in (self.units, self.state, self.run, self.bin):
            directory.mkdir(parents=True)
        (self.state / "calls").touch()
        systemctl = self.bin / "systemctl"
        systemctl.write_text(FAKE_SYSTEMCTL % {"state": self.state, "archive": self.install / "kvmha-heartbeat.pyz"})
        systemctl.chmod(0o755)

    @property
    def runtime_state(self) -> pathlib.Path:
        return self.run / "kvmha-heartbeat" / "state.json"

    def deploy(self, hostvars: dict, *options):
        """deploy.yml on h1 (the local connection) with ``hostvars``; the result with .output and .calls."""
        inventory = {"all": {"children": {"kvm_hosts": {"hosts": {"h1": dict(
            {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "heartbeat_writer_install_dir": str(self.install), "heartbeat_writer_config_path": str(self.config)},
            **hostvars)}}}}}
        (self.base / "inventory.json").write_text(json.dumps(inventory))
        (self.state / "calls").write_text("")
        env = dict(os.environ, PATH="%s:%s" % (self.bin, os.environ["PATH"]), ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1",
                   ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   'mount --bind "$0" /etc/systemd/system && mount --bind "$1" /run && shift && exec "$@"', str(self.units), str(self.run),
                   str(ANSIBLE_PLAYBOOK), "-i", str(self.base / "inventory.json"), "kvmha.cluster.deploy"] + list(options)
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(self.base), check=False, timeout=300)
        done.output = done.stdout + done.stderr
        done.calls = (self.state / "calls").read_text().splitlines()
        return done
