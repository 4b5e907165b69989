# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the fencing integration tests: sushy-tools' Redfish emulator (a peer implementation of DMTF Redfish,
PyPI sushy-tools, its fake systems driver) served over HTTPS on 127.0.0.1 with a certificate from a CA made for the
run, HTTP Basic users in a bcrypt file; the project's IPMI BMC simulator (lab/bmc.py, standalone, as the
integration-ipmi stage runs it) for the real fence_ipmilan; net-snmp's snmpd serving an APC rack PDU's outlets
(pdu_outlets.py) for the real fence_apc_snmp; a closed port and a port that accepts and never answers.
Every process started here is stopped by its own PID. scripts/test-stages/50-integration-redfish.sh runs this suite
in a network namespace of its own (loopback only)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

from ansible_collections.kvmha.cluster.tests._require import fail_skip_in_ci, require, require_module
from lab import tls

ROOT = pathlib.Path(__file__).resolve().parents[2]
USER = "fence"
PASSWORD = "it-redfish-%d" % os.getpid()
SYSTEM_ID = "27946b59-9e44-4fa7-8e91-f3527a1ef094"
OTHER_ID = "3fb2a0c4-0d0c-4d5e-9a4e-6f0a5b1c2d3e"
COMMUNITY = "kvmha-pdu-%d" % os.getpid()
PRIV_PASSWORD = "it-snmp-priv-%d" % os.getpid()
SNMPD = shutil.which("snmpd", path="/usr/sbin:/sbin:/usr/local/sbin") or shutil.which("snmpd")
EMULATOR = shutil.which("sushy-emulator", path=os.path.dirname(sys.executable)) or shutil.which("sushy-emulator")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    report = yield
    fail_skip_in_ci(report)
    return report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA, and a server certificate it signs for IP 127.0.0.1 (not for the name localhost), by lab/tls.py."""
    require(shutil.which("openssl"), "openssl is needed to make the test CA")
    d = tmp_path_factory.mktemp("pki")
    tls.ensure_server_certificate(str(d), "bmc", "127.0.0.1")  # d/ca.pem, d/bmc.pem, d/bmc.key
    return d


def terminate(process) -> None:
    """A simulator this suite started, by its PID."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)


class Emulator:
    """One sushy-emulator process (fake driver) and what a test needs to talk to it or check on it."""

    def __init__(self, workdir: pathlib.Path, pki: pathlib.Path, systems: list):
        require(EMULATOR, "sushy-emulator not found (pip install -r requirements.txt)")
        bcrypt = require_module("bcrypt", "sushy-tools' basic auth needs bcrypt")
        self.port = free_port()
        self.ca = str(pki / "ca.pem")
        self.log = workdir / "emulator.log"
        # bcrypt cost 4: the emulator checks the password on every request, and cost 12 would add 0.25 s to each.
        (workdir / "htpasswd").write_text(
            "%s:%s\n" % (USER, bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()))
        (workdir / "emulator.conf").write_text(
            "SUSHY_EMULATOR_AUTH_FILE = %r\nSUSHY_EMULATOR_STATE_DIR = %r\nSUSHY_EMULATOR_FAKE_SYSTEMS = %r\n"
            % (str(workdir / "htpasswd"), str(workdir / "state"), systems))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [EMULATOR, "--fake", "--config", str(workdir / "emulator.conf"), "-i", "127.0.0.1", "-p",
                 str(self.port), "--ssl-certificate", str(pki / "bmc.pem"), "--ssl-key", str(pki / "bmc.key")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self):
        for _attempt in range(300):  # a generous hang bound (30 s); it is ready in about 1 s
            if self.process.poll() is not None:
                break
            try:
                self.get("/redfish/v1/Systems")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("sushy-emulator did not become ready:\n%s" % self.log.read_text()[-2000:])

    def get(self, path: str) -> dict:
        """An independent read (urllib, not the collection's client)."""
        request = urllib.request.Request("https://127.0.0.1:%d%s" % (self.port, path))
        request.add_header("Authorization", "Basic " + __import__("base64").b64encode(
            ("%s:%s" % (USER, PASSWORD)).encode()).decode())
        context = ssl.create_default_context(cafile=self.ca)
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return json.load(response)

    def power(self, system_id: str = SYSTEM_ID) -> str:
        return self.get("/redfish/v1/Systems/%s" % system_id)["PowerState"]

    def resets(self) -> int:
        return self.log.read_text().count("POST /redfish/v1/Systems/")

    def connection(self, **extra) -> dict:
        return dict({"address": "127.0.0.1", "port": self.port, "username": USER, "password": PASSWORD,
                     "ca_path": self.ca}, **extra)

    def stop(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def fake_system(uuid: str, name: str, power: str) -> dict:
    return {"uuid": uuid, "name": name, "power_state": power, "external_notifier": False, "nics": []}


@pytest.fixture(scope="module")
def bmc(tmp_path_factory, pki):
    """One system, powered on."""
    emulator = Emulator(tmp_path_factory.mktemp("bmc"), pki, [fake_system(SYSTEM_ID, "h1", "On")])
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def chassis(tmp_path_factory, pki):
    """Two systems behind one BMC (a multi-node chassis)."""
    emulator = Emulator(tmp_path_factory.mktemp("chassis"), pki,
                        [fake_system(SYSTEM_ID, "node1", "On"), fake_system(OTHER_ID, "node2", "Off")])
    yield emulator
    emulator.stop()


class IpmiBmc:
    """A standalone lab/bmc.py on 127.0.0.1 (UDP); its power state is a file, read here independently."""

    def __init__(self, workdir: pathlib.Path):
        self.port = free_port()
        self.state_file = workdir / "power.state"
        self.state_file.write_text("on\n")
        (workdir / "password").write_text(PASSWORD + "\n")
        self.out = workdir / "bmc.out"
        with open(self.out, "wb") as out, open(workdir / "bmc.log", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lab.bmc", "--address", "127.0.0.1", "--port", str(self.port), "--user", USER,
                 "--password-file", str(workdir / "password"), "--state-file", str(self.state_file)],
                cwd=ROOT, stdout=out, stderr=log, stdin=subprocess.DEVNULL)
        for _attempt in range(300):  # hang bound 30 s; ready in well under 1 s
            if "READY" in self.out.read_text() or self.process.poll() is not None:
                break
            time.sleep(0.1)
        if "READY" not in self.out.read_text():
            self.stop()
            pytest.fail("lab/bmc.py did not become ready: %s" % (workdir / "bmc.log").read_text()[-2000:])

    def power(self) -> str:
        return self.state_file.read_text().strip()

    def set_power(self, state: str) -> None:
        self.state_file.write_text(state + "\n")

    def stop(self):
        terminate(self.process)


@pytest.fixture(scope="module")
def ipmi_bmc(tmp_path_factory):
    bmc_ = IpmiBmc(tmp_path_factory.mktemp("ipmi"))
    yield bmc_
    bmc_.stop()


@pytest.fixture(scope="module")
def ipmi_bmc2(tmp_path_factory):
    """A second power switch (the second PDU of a host with two power supplies, in the levels tests)."""
    bmc_ = IpmiBmc(tmp_path_factory.mktemp("ipmi2"))
    yield bmc_
    bmc_.stop()


class SnmpPdu:
    """An APC Switched Rack PDU: net-snmp's snmpd on 127.0.0.1 (UDP) with sysObjectID rPDU, community COMMUNITY
    (v1/v2c, read-write) and the v3 user USER (SHA/AES, authPriv), its outlet tables served by tests/fencing/
    pdu_outlets.py from a file of outlets; the tests read them through snmpget (net-snmp's client, not the agent)."""

    OUTLETS = ("node1-psu1", "node1-psu2", "node2-psu1", "node2-psu2")

    def __init__(self, workdir: pathlib.Path):
        require(SNMPD, "snmpd not installed (Debian package snmpd)")
        require(shutil.which("snmpget"), "snmpget not installed (Debian package snmp; fence_apc_snmp runs it)")
        self.port = free_port_udp()
        self.outlets = workdir / "outlets"
        self.log = workdir / "snmpd.log"
        self.all_on()
        (workdir / "snmpd.conf").write_text(
            "agentAddress udp:127.0.0.1:%d\n"
            "sysObjectID .1.3.6.1.4.1.318.1.3.4.5\n"  # an APC rack PDU: fence_apc_snmp picks its rPDU OIDs from this
            "rwcommunity %s 127.0.0.1\n"
            "createUser %s SHA \"%s\" AES \"%s\"\n"
            "rwuser %s priv\n"
            "pass_persist .1.3.6.1.4.1.318 %s %s %s\n"
            % (self.port, COMMUNITY, USER, PASSWORD, PRIV_PASSWORD, USER, sys.executable,
               ROOT / "tests/fencing/pdu_outlets.py", self.outlets))
        # Its own persistent directory (the v3 user's keys), no MIBs (OIDs are numeric here), the log in a file.
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(workdir / "persist"), MIBS="")
        self.process = subprocess.Popen(
            [SNMPD, "-f", "-C", "-c", str(workdir / "snmpd.conf"), "-Lf", str(self.log)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _attempt in range(100):  # hang bound 30 s; ready in well under 1 s
            if self.process.poll() is not None:
                break
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail("snmpd did not become ready:\n%s" % self.log.read_text()[-2000:])

    def _answers(self) -> bool:
        return self.snmpget(".1.3.6.1.2.1.1.2.0", "-t", "0.2", "-r", "0") is not None

    def snmpget(self, oid: str, *extra) -> str | None:
        """A read by net-snmp's own client (not the agent, not the collection): the value, or None with no answer."""
        run = subprocess.run(["snmpget", "-m", "", "-Oqvn", "-v2c", "-c", COMMUNITY, *extra,
                              "127.0.0.1:%d" % self.port, oid], capture_output=True, text=True, timeout=30,
                             check=False)
        return run.stdout.strip() if run.returncode == 0 else None

    def outlet_state(self, outlet: int) -> str:
        """rPDUOutletStatusOutletState over SNMP: 1 is on, 2 off."""
        return {"1": "on", "2": "off"}[self.snmpget(".1.3.6.1.4.1.318.1.1.12.3.5.1.1.4.%d" % outlet)]

    def all_on(self) -> None:
        self.outlets.write_text("".join("%s on\n" % name for name in self.OUTLETS))

    def stop(self):
        """snmpd by its PID; its pass_persist script ends at the end of its stdin."""
        terminate(self.process)


@pytest.fixture(scope="module")
def pdu(tmp_path_factory):
    pdu_ = SnmpPdu(tmp_path_factory.mktemp("pdu"))
    yield pdu_
    pdu_.stop()


def free_port_udp() -> int:
    with socket.socket(type=socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on: the kernel refuses the connection at once."""
    return free_port()


@pytest.fixture
def silent_port():
    """A loopback port that completes TCP handshakes (the kernel does, from the backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def silent_udp_port():
    """A loopback UDP port bound by a socket that never reads: a BMC that died (its datagrams go nowhere)."""
    with socket.socket(type=socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield sink.getsockname()[1]


@pytest.fixture
def run_module(capsys, monkeypatch):
    """A module's main() in this process (the unit tests' fixture): its JSON result."""
    from ansible.module_utils import _internal
    from ansible.module_utils.testing import patch_module_args

    monkeypatch.setattr(_internal, "is_controller", False)

    def run(module, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
        with patch_module_args(dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)):
            with pytest.raises(SystemExit):
                module.main()
        return json.loads(capsys.readouterr().out)

    return run
