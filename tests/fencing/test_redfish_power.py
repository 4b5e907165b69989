# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redfish_power against sushy-tools' Redfish emulator over HTTPS on loopback: the protocol (discovery, PowerState,
ComputerSystem.Reset), the power contract (states compared, confirmed off, check mode, diff), TLS, credentials and
deadlines. sushy's fake driver applies a power change 1 to 11 s after it accepts it, as slow BMCs do, so a power
change gets a 40 s timeout here; the bounds on elapsed time are hang bounds, not speed checks."""

from __future__ import annotations

import os
import subprocess
import textwrap

from ansible_collections.kvmha.cluster.plugins.modules import redfish_power
from ansible_collections.kvmha.cluster.tests.fencing.conftest import OTHER_ID, PASSWORD, ROOT, SYSTEM_ID

SLOW = 40  # covers the fake driver's delay of up to 11 s with room to spare on a loaded machine


def test_status_of_a_running_system(run_module, bmc):
    result = run_module(redfish_power, bmc.connection(state="status"))
    assert not result.get("failed"), result
    assert result["powerstate"] == {"before": "on", "after": "on"}
    assert result["fenced"] is False and result["changed"] is False and result["action"] == "none"


def test_check_mode_sends_nothing(run_module, bmc):
    resets = bmc.resets()
    result = run_module(redfish_power, bmc.connection(state="off"), check_mode=True, diff=True)
    assert result["changed"] is True and result["action"] == "off"
    assert result["fenced"] is False
    assert result["diff"] == {"before": {"powerstate": "on"}, "after": {"powerstate": "off"}}
    assert bmc.resets() == resets
    assert bmc.power() == "On"


def test_fence_then_again_then_power_on(run_module, bmc):
    """The sequence of ipmi_power's integration target: off (confirmed), off again (nothing sent, still fenced),
    status (confirmed off), on."""
    fence = run_module(redfish_power, bmc.connection(state="off", deadline_s=SLOW), diff=True)
    assert not fence.get("failed"), fence
    assert fence["changed"] is True and fence["fenced"] is True and fence["confirmations"] == 2
    assert fence["diff"]["after"] == {"powerstate": "off"}
    assert bmc.power() == "Off"  # an independent read
    resets = bmc.resets()

    again = run_module(redfish_power, bmc.connection(state="off", confirm=3))
    assert again["changed"] is False and again["fenced"] is True and again["confirmations"] == 3
    status = run_module(redfish_power, bmc.connection(state="status"))
    assert status["fenced"] is True and status["powerstate"]["after"] == "off"
    assert bmc.resets() == resets

    on = run_module(redfish_power, bmc.connection(state="on", deadline_s=SLOW))
    assert not on.get("failed"), on
    assert on["changed"] is True and on["fenced"] is False and on["powerstate"]["after"] == "on"
    assert bmc.power() == "On"


def test_wrong_password_fails_as_auth(run_module, bmc):
    result = run_module(redfish_power, bmc.connection(password="not-" + PASSWORD, state="off"))
    assert result["failed"] and result["error_kind"] == "auth"
    assert result["fenced"] is False and result["changed"] is False
    assert PASSWORD not in result["msg"]


def test_untrusted_certificate_fails_as_tls(run_module, bmc):
    """Without the CA (the system trust store does not know it) the certificate is refused, nothing is sent."""
    resets = bmc.resets()
    result = run_module(redfish_power, dict(bmc.connection(state="off"), ca_path=None))
    assert result["failed"] and result["error_kind"] == "tls"
    assert bmc.resets() == resets


def test_host_name_is_verified(run_module, bmc):
    """The certificate names IP 127.0.0.1 only; "localhost" reaches the same server and must be refused."""
    result = run_module(redfish_power, bmc.connection(address="localhost", state="status"))
    assert result["failed"] and result["error_kind"] == "tls"


def test_validate_certs_false_works_and_warns(run_module, bmc):
    result = run_module(redfish_power, dict(bmc.connection(state="status"), ca_path=None, validate_certs=False))
    assert not result.get("failed"), result
    assert result["powerstate"]["before"] == "on"
    assert any("validate_certs is false" in str(w) for w in result.get("warnings", []))


def test_closed_port_is_unreachable(run_module, bmc, closed_port):
    result = run_module(redfish_power, bmc.connection(port=closed_port, state="off"))
    assert result["failed"] and result["error_kind"] == "unreachable"
    assert result["powerstate"]["before"] == "unknown" and result["fenced"] is False


def test_silent_port_times_out_per_request(run_module, bmc, silent_port):
    result = run_module(redfish_power, bmc.connection(port=silent_port, state="off", request_timeout_s=0.5,
                                                      deadline_s=30))
    assert result["failed"] and result["error_kind"] == "timeout"
    assert result["elapsed"] < 10  # hang bound: one 0.5 s request, far from the 30 s run deadline


def test_run_deadline_cuts_a_request_short(run_module, bmc, silent_port):
    """The run's timeout holds even when one request alone could wait longer."""
    result = run_module(redfish_power, bmc.connection(port=silent_port, state="off", request_timeout_s=60,
                                                      deadline_s=1))
    assert result["failed"] and result["error_kind"] == "timeout"
    assert result["elapsed"] < 10  # hang bound: far below the 60 s request timeout


def test_several_systems_need_system_id(run_module, chassis):
    result = run_module(redfish_power, chassis.connection(state="off"))
    assert result["failed"] and result["error_kind"] == "invalid_input"
    assert chassis.resets() == 0

    node2 = run_module(redfish_power, chassis.connection(state="status", system_id=OTHER_ID))
    assert node2["fenced"] is True and node2["powerstate"]["before"] == "off"
    node1 = run_module(redfish_power, chassis.connection(state="status", system_id=SYSTEM_ID))
    assert node1["fenced"] is False and node1["powerstate"]["before"] == "on"
    for wrong in ("nope", "../Systems"):  # the Id is one path segment, quoted
        missing = run_module(redfish_power, chassis.connection(state="status", system_id=wrong))
        assert missing["error_kind"] == "invalid_input", missing


def test_through_ansible_the_password_is_never_logged(bmc, tmp_path):
    """A real ansible-playbook run at -vvv: the module works through Ansible, and the password appears nowhere."""
    playbook = tmp_path / "status.yml"
    playbook.write_text(textwrap.dedent("""\
        - hosts: localhost
          gather_facts: false
          tasks:
            - kvmha.cluster.redfish_power:
                address: 127.0.0.1
                port: %d
                username: fence
                password: "{{ lookup('ansible.builtin.env', 'IT_PW') }}"
                ca_path: %s
                state: status
              register: r
            - ansible.builtin.assert:
                that: [r.powerstate.before == "on", not r.fenced]
        """ % (bmc.port, bmc.ca)))
    env = dict(os.environ, IT_PW=PASSWORD, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    run = subprocess.run(["ansible-playbook", "-vvv", "-i", "localhost,", "-c", "local", "-e",
                          "ansible_python_interpreter={{ ansible_playbook_python }}", str(playbook)],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert PASSWORD not in run.stdout + run.stderr
