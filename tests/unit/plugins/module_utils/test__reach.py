# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_reach: the management probe (TCP + SSH banner). Pure parts with made-up input, I/O against loopback only."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _reach
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.loopback_tcp import Server, closed_port


# ------------------------------------------------------------------------------------------------ pure


@pytest.mark.parametrize("data, banner", [
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "SSH-2.0-OpenSSH_9.2p1 Debian-2"),
    (b"SSH-2.0-x\n", "SSH-2.0-x"),
    (b"welcome\r\nto this host\r\nSSH-1.99-old\r\n", "SSH-1.99-old"),  # RFC 4253 4.2: other lines may come first
    (b"SSH-2.0-not yet complete", None),
    (b"HTTP/1.1 400 Bad Request\r\n", None),
    (b"", None),
])
def test_the_banner_is_the_first_complete_line_that_starts_with_ssh(data, banner):
    assert _reach.parse_banner(data) == banner


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_no_bytes_without_an_ssh_line_are_ever_a_banner(data):
    """Property: only a complete line starting with SSH- counts; anything else is no answer from an SSH server."""
    banner = _reach.parse_banner(data)
    lines = [line.rstrip(b"\r") for line in data.split(b"\n")[:-1]]
    assert (banner is not None) == any(line.startswith(b"SSH-") for line in lines)
    if banner is not None:
        assert banner.startswith("SSH-") and len(banner) <= 255 and "\n" not in banner


@pytest.mark.parametrize("error, answer, again", [
    (None, "banner", False),
    (ConnectionRefusedError(111, "refused"), "refused", False),
    (ConnectionResetError(104, "reset"), "refused", False),
    (socket.timeout("timed out"), "timeout", True),
    (EOFError("closed"), "no_banner", False),
    (OSError(113, "No route to host"), "error", True),
])
def test_only_silence_is_asked_again(error, answer, again):
    assert _reach.outcome(error) == answer and _reach.retry(answer) is again


@settings(max_examples=100)
@given(st.sampled_from(["banner", "refused", "no_banner", "timeout", "error"]), st.integers(1, 5))
def test_only_a_banner_is_reachable(answer, attempts):
    """Property: reachable is true exactly for a banner - a refusal or silence proves nothing (unknown)."""
    shaped = _reach.shape("h1", 22, answer, None, attempts, None, 0.1)
    assert shaped["reachable"] is (answer == "banner") and shaped["answer"] == answer


@pytest.mark.parametrize("port, attempts, deadline", [(0, 2, 1.0), (65536, 2, 1.0), (22, 0, 1.0), (22, 6, 1.0),
                                                      (22, 2, 0.0), (22, 2, 61.0)])
def test_settings_out_of_range_are_refused_before_anything_is_sent(port, attempts, deadline):
    sent = []
    with pytest.raises(InvalidInput):
        _reach.probe_all(["127.0.0.1"], port, attempts, deadline, probe_one=lambda *a: sent.append(a))
    assert sent == []


def test_a_bad_target_is_refused_before_anything_is_sent():
    sent = []
    with pytest.raises(InvalidInput):
        _reach.probe_all(["127.0.0.1", "-oProxyCommand=x"], probe_one=lambda *a: sent.append(a))
    assert sent == []


# ------------------------------------------------------------------------------------------------ attempts, made up


class FakeConnect:
    """Each connection ends as the next of ``plan`` says: an exception, or bytes the server sends."""

    def __init__(self, plan):
        self.plan = list(plan)
        self.calls = []

    def __call__(self, address, timeout):
        self.calls.append((address, timeout))
        step = self.plan.pop(0)
        if isinstance(step, BaseException):
            raise step
        return FakeSocket(step)


class FakeSocket:
    def __init__(self, data):
        self.chunks = [data[i:i + 7] for i in range(0, len(data), 7)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def settimeout(self, value):
        assert value > 0

    def recv(self, size):
        return self.chunks.pop(0) if self.chunks else b""


def test_silence_is_asked_once_more_with_the_same_deadline_then_given_up():
    connect = FakeConnect([socket.timeout("timed out"), socket.timeout("timed out")])
    result = _reach.probe("198.51.100.7", 22, attempts=2, deadline=0.5, connect=connect)
    assert connect.calls == [(("198.51.100.7", 22), 0.5)] * 2
    assert (result["reachable"], result["answer"], result["attempts"], result["error"]) == (False, "timeout", 2, "timed out")


def test_a_banner_on_the_second_attempt_is_reachable():
    connect = FakeConnect([OSError(113, "No route to host"), b"SSH-2.0-OpenSSH_9.2\r\n"])
    result = _reach.probe("h1", 2222, attempts=2, deadline=1.0, connect=connect)
    assert (result["reachable"], result["banner"], result["attempts"], result["port"]) == (True, "SSH-2.0-OpenSSH_9.2", 2, 2222)


@pytest.mark.parametrize("first, answer", [(ConnectionRefusedError(111, "refused"), "refused"), (b"220 smtp ready\r\n", "no_banner")])
def test_an_answer_that_is_not_a_banner_is_not_asked_again(first, answer):
    connect = FakeConnect([first, b"SSH-2.0-never asked\r\n"])
    result = _reach.probe("h1", attempts=2, connect=connect)
    assert (result["reachable"], result["answer"], result["attempts"]) == (False, answer, 1)


def test_a_server_that_talks_forever_without_a_banner_is_cut_off():
    class Chatty(FakeSocket):
        def recv(self, size):
            return b"x" * size
    result = _reach.probe("h1", attempts=1, connect=lambda address, timeout: Chatty(b""))
    assert result["answer"] == "no_banner" and "first 8192 bytes" in result["error"]


def test_every_target_is_asked_at_once():
    """Three targets that each take 0.3 s take about 0.3 s together, not 0.9 s."""
    def slow(target, port, attempts, deadline):
        time.sleep(0.3)
        return _reach.shape(target, port, "timeout", None, attempts, None, 0.3)
    started = time.monotonic()
    results = _reach.probe_all(["h1", "h2", "h3", "h2"], probe_one=slow)
    assert time.monotonic() - started < 0.8
    assert [r["target"] for r in results] == ["h1", "h2", "h3"]


# ------------------------------------------------------------------------------------------------ loopback


@pytest.fixture
def server():
    servers = []

    def start(greeting, close=False):
        servers.append(Server(greeting, close))
        return servers[-1]
    yield start
    for one in servers:
        one.stop()


def test_loopback_banner(server):
    ssh = server(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    result = _reach.probe("127.0.0.1", ssh.port, attempts=2, deadline=2.0)
    assert (result["reachable"], result["answer"], result["attempts"]) == (True, "banner", 1)
    assert result["banner"] == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"


def test_loopback_refused_is_an_answer_and_not_reachable():
    result = _reach.probe("127.0.0.1", closed_port(), attempts=2, deadline=2.0)
    assert (result["reachable"], result["answer"], result["attempts"]) == (False, "refused", 1)
    assert result["elapsed"] < 1.0


def test_loopback_silence_costs_attempts_times_deadline_and_no_more(server):
    silent = server(None)
    started = time.monotonic()
    result = _reach.probe("127.0.0.1", silent.port, attempts=2, deadline=0.2)
    took = time.monotonic() - started
    assert (result["reachable"], result["answer"], result["attempts"]) == (False, "timeout", 2)
    assert 0.4 <= took < 1.5


def test_loopback_a_server_that_hangs_up_gave_no_banner(server):
    closing = server(b"", close=True)
    result = _reach.probe("127.0.0.1", closing.port, attempts=2, deadline=1.0)
    assert (result["reachable"], result["answer"], result["attempts"]) == (False, "no_banner", 1)
