# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Process-level tests of the heartbeat writer: the real kvmha-heartbeat.pyz, built by the role's own build code and
run the way its unit runs it, by the hypervisors' interpreter (/usr/bin/python3) against a temporary store. No lab, no network but loopback;
every process started here is killed by its own PID."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

from ansible_collections.kvmha.cluster.tests._require import fail_skip_in_ci
from ansible_collections.kvmha.cluster.tests._shipped import build_pyz

ROOT = pathlib.Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")

NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads><active>4</active><mhz>2000</mhz></cpu>
  <memory>8388608</memory>
  <domain type='test'>
    <name>g1</name><uuid>11111111-1111-4111-8111-111111111111</uuid>
    <metadata><kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority="80" group="db"/></metadata>
    <memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os>
    <devices><disk type='file' device='disk'><source file='/store/g1.img'/><target dev='vda' bus='virtio'/></disk></devices>
  </domain>
  <domain type='test'>
    <name>g2</name><uuid>33333333-3333-4333-8333-333333333333</uuid>
    <metadata><kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority="20" group=""/></metadata>
    <memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os>
  </domain>
  <domain type='test'>
    <name>plain</name><uuid>22222222-2222-4222-8222-222222222222</uuid>
    <memory unit='MiB'>128</memory><vcpu>2</vcpu><os><type>hvm</type></os>
  </domain>
</node>
"""

VIRSH_WRAPPER = """#!/bin/sh
d=$(dirname "$0")
[ -e "$d/virsh.down" ] && { echo "error: failed to connect to the hypervisor" >&2; exit 1; }
[ -e "$d/virsh.hang" ] && exec sleep 30
exec virsh "$@"
"""


def has_libvirt_binding() -> bool:
    return subprocess.run([PYTHON, "-c", "import libvirt"], capture_output=True, check=False).returncode == 0


def wait_for(predicate, timeout: float, step: float = 0.05, what: str = "condition"):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(step)


class Env:
    """One writer installation, store and state dir in a temporary directory."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.install = base / "install"
        self.install.mkdir()
        self.pyz = build_pyz(self.install)
        self.store = base / "store"
        self.store.mkdir()
        self.state = base / "run"
        self.node_xml = base / "node.xml"
        self.node_xml.write_text(NODE_XML)
        self.virsh = base / "bin" / "virsh"
        self.virsh.parent.mkdir()
        self.virsh.write_text(VIRSH_WRAPPER)
        self.virsh.chmod(0o755)
        self.hang = base / "hang"
        self.procs = []
        self.logs = []

    @property
    def record_path(self) -> pathlib.Path:
        return self.store / "kvmha" / "hosts" / "h1.json"

    def config(self, **overrides) -> pathlib.Path:
        conf = {
            "host": "h1", "store": str(self.store), "interval": 0.2, "write_timeout": 0.15, "stop_timeout": 1.0,
            "require_mount": False, "state_dir": str(self.state),
            "libvirt": {"method": "auto", "uri": "test://%s" % self.node_xml, "timeout": 0.5},
            "capacity": {"mem_mib": 4096, "vcpus": 8},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(conf.get(key), dict):
                conf[key] = dict(conf[key], **value)
            else:
                conf[key] = value
        path = self.base / "heartbeat.json"
        path.write_text(json.dumps(conf))
        return path

    def start(self, config: pathlib.Path, prefix=(), env=None, python=PYTHON):
        log = open(self.base / ("writer-%d.log" % len(self.procs)), "wb")  # pylint: disable=consider-using-with
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KVMHA_HEARTBEAT_TEST_HANG_FILE": str(self.hang)}
        environ.update(env or {})
        argv = list(prefix) + [python, "-I", "-B", str(self.pyz), "--config", str(config)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environ)  # pylint: disable=consider-using-with
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def log_text(self, index: int = -1) -> str:
        return (self.base / ("writer-%d.log" % (len(self.procs) + index if index < 0 else index))).read_text(errors="replace")

    def record(self):
        from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import parse_record  # pylint: disable=import-outside-toplevel

        try:
            data = self.record_path.read_bytes()
        except FileNotFoundError:
            return None
        return parse_record(data, expected_host="h1")

    def state_seq(self):
        try:
            return json.loads((self.state / "state.json").read_text())["seq"]
        except (OSError, ValueError, KeyError):
            return None

    def state_archive(self):
        """The sha256 of the archive the writer says it runs (its runtime state), or None."""
        try:
            return json.loads((self.state / "state.json").read_text()).get("archive")
        except (OSError, ValueError):
            return None

    def stop(self, proc, timeout: float = 5.0) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # by PID: only what this test started
                proc.wait(5)
        for log in self.logs:
            log.close()


@pytest.fixture
def env(tmp_path):
    environment = Env(tmp_path)
    try:
        yield environment
    finally:
        environment.cleanup()


# Under CI=true no test may skip (tests/_require.py): a skip there hides a broken setup.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    report = yield
    fail_skip_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):  # pylint: disable=unused-argument
    report = yield
    fail_skip_in_ci(report)
    return report
