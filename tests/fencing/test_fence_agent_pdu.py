# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A switched PDU: the real fence_apc_snmp of Debian's fence-agents (it runs net-snmp's snmpget/snmpset/snmpwalk)
through fence_agent_power and host_fence, against net-snmp's snmpd serving an APC rack PDU's outlets (conftest.SnmpPdu,
on loopback). Outlet states are checked outside the collection, with snmpget. Elapsed bounds are hang bounds."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _fence_agent
from ansible_collections.kvmha.cluster.plugins.modules import fence_agent_power, host_fence
from ansible_collections.kvmha.cluster.tests._require import require
from ansible_collections.kvmha.cluster.tests.fencing.conftest import (
    COMMUNITY, PASSWORD, PRIV_PASSWORD, USER, free_port_udp)

# Each agent run starts an interpreter and net-snmp tools (about 0.3 s, several seconds on a busy machine), and waits
# up to 6 s for an SNMP answer that never comes (net-snmp's default 1 s timeout and 5 retries).
DEADLINE_S = 30


@pytest.fixture(autouse=True)
def agent_installed():
    require(shutil.which("fence_apc_snmp", path=":".join(_fence_agent.SEARCH_PATH)),
            "fence_apc_snmp not installed (fence-agents)")


@pytest.fixture(autouse=True)
def outlets_on(pdu):
    """Every test starts with every outlet on, whatever the one before it left (the PDU is the module's)."""
    pdu.all_on()


def apc(pdu, plug, **extra) -> dict:
    """SNMP v2c with the community as a secret: the simplest setup a PDU has."""
    args = {"agent": "fence_apc_snmp", "options": {"ip": "127.0.0.1", "ipport": pdu.port, "plug": plug,
                                                   "snmp_version": "2c"},
            "secrets": {"community": COMMUNITY}, "deadline_s": DEADLINE_S}
    args["options"].update(extra.pop("options", {}))
    args["secrets"].update(extra.pop("secrets", {}))
    args.update(extra)
    return args


def apc_v3(pdu, plug, **extra) -> dict:
    options = {"ip": "127.0.0.1", "ipport": pdu.port, "plug": plug, "snmp_version": "3", "username": USER,
               "snmp_sec_level": "authPriv", "snmp_auth_prot": "SHA", "snmp_priv_prot": "AES"}
    return dict({"agent": "fence_apc_snmp", "options": options, "deadline_s": DEADLINE_S,
                 "secrets": {"password": PASSWORD, "snmp_priv_passwd": PRIV_PASSWORD}}, **extra)


def test_outlet_fenced_read_and_powered_on(run_module, pdu):
    status = run_module(fence_agent_power, apc(pdu, 2, state="status"))
    assert not status.get("failed"), status
    assert status["powerstate"] == {"before": "on", "after": "on"} and status["fenced"] is False

    fence = run_module(fence_agent_power, apc(pdu, 2, state="off"), diff=True)
    assert not fence.get("failed"), fence
    assert fence["changed"] is True and fence["fenced"] is True and fence["confirmations"] == 2
    assert fence["diff"] == {"before": {"powerstate": "on"}, "after": {"powerstate": "off"}}
    assert pdu.outlet_state(2) == "off"
    assert [pdu.outlet_state(n) for n in (1, 3, 4)] == ["on", "on", "on"]  # only the outlet named

    again = run_module(fence_agent_power, apc(pdu, 2, state="status"))
    assert again["changed"] is False and again["powerstate"] == {"before": "off", "after": "off"}
    assert again["fenced"] is True

    on = run_module(fence_agent_power, apc(pdu, 2, state="on"))
    assert not on.get("failed"), on
    assert on["changed"] is True and on["powerstate"]["after"] == "on" and pdu.outlet_state(2) == "on"


def test_outlet_by_name_over_snmp_v3(run_module, pdu):
    """A plug given by its name is looked up in the PDU's outlet name table; v3 authPriv with both secrets."""
    fence = run_module(fence_agent_power, apc_v3(pdu, "node2-psu1", state="off"))
    assert not fence.get("failed"), fence
    assert fence["fenced"] is True and pdu.outlet_state(3) == "off" and pdu.outlet_state(4) == "on"


def test_metadata_refuses_a_typo_and_a_missing_plug_before_the_pdu_is_touched(run_module, pdu):
    typo = run_module(fence_agent_power, apc(pdu, 2, state="off", options={"snmp_verison": "2c"}))
    assert typo["failed"] and typo["error_kind"] == "invalid_input"
    assert "unknown option 'snmp_verison'" in typo["msg"]
    no_plug = apc(pdu, 2, state="off")
    del no_plug["options"]["plug"]
    missing = run_module(fence_agent_power, no_plug)
    assert missing["error_kind"] == "invalid_input" and "required option 'plug' is missing" in missing["msg"]
    assert pdu.outlet_state(2) == "on"


def test_wrong_v3_password_is_auth_and_never_shown(run_module, pdu):
    wrong = "wrong-" + PASSWORD
    result = run_module(fence_agent_power, apc_v3(pdu, 2, state="off",
                                                  secrets={"password": wrong, "snmp_priv_passwd": PRIV_PASSWORD}))
    assert result["failed"] and result["error_kind"] == "auth"
    assert "Authentication failure" in result["msg"] and wrong not in result["msg"]
    assert result["fenced"] is False and pdu.outlet_state(2) == "on"


def test_wrong_community_is_silence_so_unreachable(run_module, pdu):
    """An SNMP v1/v2c agent drops a request with a community it does not know, without a word: to the fence agent
    that is no answer at all, the same as a PDU that is down."""
    wrong = "wrong-" + COMMUNITY
    result = run_module(fence_agent_power, apc(pdu, 2, state="off", secrets={"community": wrong}))
    assert result["failed"] and result["error_kind"] == "unreachable", result
    assert "Timeout: No Response" in result["msg"] and wrong not in result["msg"]
    assert result["changed"] is False and result["fenced"] is False and pdu.outlet_state(2) == "on"


def test_nothing_listening_is_bounded_by_the_deadline(run_module, pdu):
    port = free_port_udp()  # nothing answers there
    result = run_module(fence_agent_power, apc(pdu, 2, state="off", deadline_s=3, options={"ipport": port}))
    # timeout, not unreachable: the deadline cut the agent's first 6 s request short (a whole run would end after
    # status and monitor as unreachable, as with a wrong community)
    assert result["failed"] and result["error_kind"] == "timeout"
    assert result["elapsed"] < 30  # hang bound, ten times the deadline (docs/TESTING.md)
    # The agent's snmpwalk is killed with its process group; allow the kernel a moment to deliver that.
    give_up = time.monotonic() + 10
    while _leftovers(port) and time.monotonic() < give_up:
        time.sleep(0.1)
    assert _leftovers(port) == []


def _leftovers(port: int) -> list:
    target = b"127.0.0.1:%d" % port
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if target in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def test_a_host_with_two_power_supplies_is_fenced_by_both_outlets(run_module, pdu):
    """kvmha_fence_levels: [[pdu_a, pdu_b]] - one level, both outlets must confirm off."""
    devices = [dict(apc(pdu, outlet), name=name, protocol="agent") for name, outlet in (("pdu_a", 1), ("pdu_b", 2))]
    result = run_module(host_fence, {"levels": [["pdu_a", "pdu_b"]], "devices": devices, "deadline_s": 60})
    assert not result.get("failed"), result
    assert result["fenced"] is True and result["level"] == 1 and result["devices"] == ["pdu_a", "pdu_b"]
    attempts = result["levels"][0]["attempts"]
    assert [(a["device"], a["powerstate"]["after"], a["confirmations"]) for a in attempts] == [
        ("pdu_a", "off", 2), ("pdu_b", "off", 2)]
    assert [pdu.outlet_state(n) for n in (1, 2, 3, 4)] == ["off", "off", "on", "on"]
    assert COMMUNITY not in str(result)


def test_one_outlet_of_the_level_failing_leaves_the_host_not_fenced(run_module, pdu):
    """The second power supply's outlet refuses the credentials: the first outlet went off, but the host may still
    run on the second."""
    wrong = {"password": "wrong-" + PASSWORD, "snmp_priv_passwd": PRIV_PASSWORD}
    devices = [dict(apc(pdu, 1), name="pdu_a", protocol="agent"),
               dict(apc_v3(pdu, 2, secrets=wrong), name="pdu_b", protocol="agent")]
    result = run_module(host_fence, {"levels": [["pdu_a", "pdu_b"]], "devices": devices, "deadline_s": 60})
    assert result["failed"] and result["error_kind"] == "not_fenced" and result["fenced"] is False
    assert [(a["fenced"], a.get("error_kind")) for a in result["levels"][0]["attempts"]] == [
        (True, None), (False, "auth")]
    assert pdu.outlet_state(1) == "off" and pdu.outlet_state(2) == "on"
