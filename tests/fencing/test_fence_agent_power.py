# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fence_agent_power with the real agents of Debian's fence-agents package: fence_ipmilan against the project's IPMI
BMC simulator (lab/bmc.py, UDP on loopback) and fence_redfish against sushy-tools' Redfish emulator (HTTPS, verified
with the run's CA). Elapsed-time bounds are hang bounds, not speed checks."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _fence_agent
from ansible_collections.kvmha.cluster.plugins.modules import fence_agent_power
from ansible_collections.kvmha.cluster.tests._require import require
from ansible_collections.kvmha.cluster.tests.fencing.conftest import PASSWORD, SYSTEM_ID, USER

SLOW = 40  # sushy's fake driver applies a power change up to 11 s after accepting it


@pytest.fixture(autouse=True)
def agents_installed():
    for agent in ("fence_ipmilan", "fence_redfish"):
        require(shutil.which(agent, path=":".join(_fence_agent.SEARCH_PATH)), "%s not installed (fence-agents)" % agent)
    require(shutil.which("ipmitool"), "ipmitool not installed (fence_ipmilan runs it)")


def ipmilan(bmc, **extra) -> dict:
    args = {"agent": "fence_ipmilan",
            "options": {"ip": "127.0.0.1", "ipport": bmc.port, "username": USER, "lanplus": True},
            "secrets": {"password": PASSWORD}}
    args["options"].update(extra.pop("options", {}))
    args.update(extra)
    return args


def test_ipmilan_status_fence_again_and_on(run_module, ipmi_bmc):
    ipmi_bmc.set_power("on")
    status = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="status"))
    assert not status.get("failed"), status
    assert status["powerstate"] == {"before": "on", "after": "on"} and status["fenced"] is False

    fence = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="off", deadline_s=SLOW), diff=True)
    assert not fence.get("failed"), fence
    assert fence["changed"] is True and fence["fenced"] is True and fence["confirmations"] == 2
    assert fence["diff"] == {"before": {"powerstate": "on"}, "after": {"powerstate": "off"}}
    assert ipmi_bmc.power() == "off"  # the simulator's own state, read independently

    again = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="off", confirm=3, deadline_s=SLOW))
    assert again["changed"] is False and again["fenced"] is True and again["confirmations"] == 3

    on = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="on", deadline_s=SLOW))
    assert not on.get("failed"), on
    assert on["changed"] is True and on["powerstate"]["after"] == "on" and ipmi_bmc.power() == "on"


def test_check_mode_runs_no_action(run_module, ipmi_bmc):
    ipmi_bmc.set_power("on")
    result = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="off", deadline_s=SLOW), check_mode=True)
    assert result["changed"] is True and result["action"] == "off" and result["fenced"] is False
    assert ipmi_bmc.power() == "on"


def test_unknown_option_is_refused_before_the_device_is_touched(run_module, ipmi_bmc):
    ipmi_bmc.set_power("on")
    result = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="off", options={"lan_plus": True}))
    assert result["failed"] and result["error_kind"] == "invalid_input"
    assert "unknown option 'lan_plus'" in result["msg"]
    assert result["powerstate"]["before"] == "unknown" and ipmi_bmc.power() == "on"


def test_missing_required_option(run_module, sushy_agent_env, bmc):
    """fence_redfish declares username required (or login, which it obsoletes)."""
    result = run_module(fence_agent_power, {"agent": "fence_redfish", "options": {"ip": "127.0.0.1"},
                                            "state": "status"})
    assert result["failed"] and result["error_kind"] == "invalid_input"
    assert "required option 'username' is missing" in result["msg"]


def test_shutdown_and_reserved_options_are_refused(run_module, ipmi_bmc):
    ipmi_bmc.set_power("on")
    shutdown = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="shutdown"))
    assert shutdown["error_kind"] == "invalid_input" and ipmi_bmc.power() == "on"
    action = run_module(fence_agent_power, ipmilan(ipmi_bmc, options={"action": "reboot"}))
    assert action["error_kind"] == "invalid_input"


def test_wrong_password_fails_and_is_never_shown(run_module, ipmi_bmc):
    """The agent's output is in the message, with the secret masked - here a verbose agent that prints its input."""
    ipmi_bmc.set_power("on")
    wrong = "wrong-" + PASSWORD
    result = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="off", secrets={"password": wrong},
                                                   options={"verbose": True, "debug_file": "/dev/stdout"}))
    assert result["failed"] and result["error_kind"] in ("unreachable", "auth", "bmc_error")
    assert result["fenced"] is False and ipmi_bmc.power() == "on"
    assert wrong not in result["msg"] and "action=status failed" in result["msg"]


def test_agent_deadline_kills_the_agent_and_what_it_started(run_module, ipmi_bmc, closed_port):
    """Nothing answers on a closed UDP port; fence_ipmilan (ipmitool) would retry for 20 s."""
    result = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="off", agent_timeout_s=1, timeout=30,
                                                   options={"ipport": closed_port}))
    assert result["failed"] and result["error_kind"] == "timeout"
    assert result["elapsed"] < 15  # hang bound: one or two 1 s agent runs, not ipmitool's 20 s
    # SIGKILL to the agent's group is delivered to its ipmitool asynchronously: allow the kernel a moment to end it
    # (well under the 20 s that ipmitool would go on retrying if it had not been killed).
    give_up = time.monotonic() + 10
    while _leftovers(closed_port) and time.monotonic() < give_up:
        time.sleep(0.1)
    assert _leftovers(closed_port) == []


def _leftovers(port: int) -> list:
    return [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(pid, "-p %d " % port)]


def test_run_deadline_holds(run_module, ipmi_bmc, closed_port):
    result = run_module(fence_agent_power, ipmilan(ipmi_bmc, state="status", agent_timeout_s=60, timeout=1.5,
                                                   options={"ipport": closed_port}))
    assert result["failed"] and result["error_kind"] == "timeout"
    assert result["elapsed"] < 15  # hang bound


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return text in f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return False


@pytest.fixture
def sushy_agent_env(monkeypatch, bmc):
    """fence_redfish verifies TLS through python3-requests, which takes a CA bundle from REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bmc.ca)


def redfish(bmc, **extra) -> dict:
    args = {"agent": "fence_redfish",
            "options": {"ip": "127.0.0.1", "ipport": bmc.port, "username": USER, "ssl_secure": True,
                        "systems_uri": "/redfish/v1/Systems/%s" % SYSTEM_ID},
            "secrets": {"password": PASSWORD}}
    args.update(extra)
    return args


def test_fence_redfish_against_sushy(run_module, sushy_agent_env, bmc):
    status = run_module(fence_agent_power, redfish(bmc, state="status"))
    assert not status.get("failed"), status
    assert status["powerstate"]["before"] == "on"

    fence = run_module(fence_agent_power, redfish(bmc, state="off", deadline_s=SLOW, agent_timeout_s=SLOW))
    assert not fence.get("failed"), fence
    assert fence["fenced"] is True and bmc.power() == "Off"

    on = run_module(fence_agent_power, redfish(bmc, state="on", deadline_s=SLOW, agent_timeout_s=SLOW))
    assert not on.get("failed"), on
    assert bmc.power() == "On"
