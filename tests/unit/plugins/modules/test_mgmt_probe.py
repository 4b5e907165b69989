# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""mgmt_probe through main(), against servers on 127.0.0.1 (no packet leaves the machine)."""

from __future__ import annotations

import socket
import time

import yaml

from ansible_collections.kvmha.cluster.plugins.modules import mgmt_probe

from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.loopback_tcp import Server, closed_port

RETURNED = yaml.safe_load(mgmt_probe.RETURN)


def test_an_answering_and_a_silent_host_are_both_ok_results(run_module):
    ssh, silent = Server(b"SSH-2.0-OpenSSH_9.2\r\n"), Server(None)
    try:
        answered = run_module(mgmt_probe, {"targets": ["127.0.0.1"], "port": ssh.port, "deadline_s": 1.0})
        started = time.monotonic()
        unanswered = run_module(mgmt_probe, {"targets": ["127.0.0.1"], "port": silent.port, "attempts": 2, "deadline_s": 0.2})
        took = time.monotonic() - started
    finally:
        ssh.stop()
        silent.stop()
    assert not answered.get("failed") and answered["changed"] is False and answered["any_reachable"] is True
    assert answered["probes"][0]["banner"] == "SSH-2.0-OpenSSH_9.2"
    # The dead host's case: not a failed task, reachable false (unknown), within attempts x deadline.
    assert not unanswered.get("failed") and unanswered["any_reachable"] is False
    assert unanswered["unreachable_targets"] == ["127.0.0.1"] and unanswered["probes"][0]["answer"] == "timeout"
    assert took < 2.0
    for result in (answered, unanswered):
        assert set(result) - {"invocation", "warnings", "deprecations"} <= set(RETURNED)  # ansible adds these to any result
        assert set(result["probes"][0]) == set(RETURNED["probes"]["contains"])


def test_a_refused_connection_is_not_reachable(run_module):
    result = run_module(mgmt_probe, {"targets": ["127.0.0.1"], "port": closed_port()}, check_mode=True)
    assert not result.get("failed") and result["probes"][0]["answer"] == "refused" and not result["any_reachable"]


def test_invalid_input_fails_before_anything_is_sent(run_module):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    try:
        for args in ({"targets": ["-oProxyCommand=x"], "port": listener.getsockname()[1]},
                     {"targets": ["127.0.0.1"], "port": listener.getsockname()[1], "deadline_s": 0}):
            result = run_module(mgmt_probe, args)
            assert result["failed"] and result["error_kind"] == "invalid_input"
        try:
            listener.accept()
            raise AssertionError("a connection was opened")
        except socket.timeout:
            pass
    finally:
        listener.close()
