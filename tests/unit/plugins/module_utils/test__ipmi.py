# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""IpmiClient and PowerOperation against a fake pyghmi session (the transport is the only thing faked)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _ipmi, _power
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import Deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import (
    BmcAuthError,
    BmcError,
    BmcTimeout,
    BmcUnreachable,
    InvalidInput,
    PowerStateMismatch,
)
from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.ipmi_fake import ERROR, FakeSession
from pyghmi import exceptions as pyghmi_exceptions


@pytest.fixture(autouse=True)
def fresh_sessions():
    _ipmi._SESSIONS.clear()
    _ipmi._ABANDONED.clear()
    yield
    _ipmi._SESSIONS.clear()
    _ipmi._ABANDONED.clear()


def client_for(session, **kwargs):
    logins = []

    def login(address, port, username, password, kg):
        logins.append((address, port, username, password, kg))
        return session

    client = _ipmi.IpmiClient(address=kwargs.pop("address", "192.0.2.10"), username="admin", password="secret",
                              login=login, **kwargs)
    client.logins = logins
    return client


def operation(session, state, **kwargs):
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("timeout", 5)
    return _power.PowerOperation(client_for(session), state, **kwargs)


# ------------------------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    "error, login, kind, fragment",
    [
        (pyghmi_exceptions.IpmiException(None), True, "unreachable", "no answer from the BMC during login"),
        (pyghmi_exceptions.IpmiException(), True, "unreachable", "no answer"),
        (pyghmi_exceptions.IpmiException("timeout"), True, "unreachable", "no answer"),
        (pyghmi_exceptions.IpmiException("Session no longer connected"), False, "unreachable", "stopped answering"),
        (pyghmi_exceptions.IpmiException("Unable to transmit to specified address"), True, "unreachable", "login"),
        (pyghmi_exceptions.IpmiException("Incorrect password provided"), True, "auth", "Incorrect password"),
        (pyghmi_exceptions.IpmiException("Unauthorized name in RAKP2"), True, "auth", "Unauthorized name"),
        (pyghmi_exceptions.IpmiException("Unauthorized role or privilege level requested"), True, "auth", "role"),
        (pyghmi_exceptions.IpmiException("Username too long for IPMI, must not exceed 16"), True, "auth", "too long"),
        (pyghmi_exceptions.IpmiException("No Cipher suite match with proposed security algorithms"), True,
         "bmc_error", "cipher suite"),
        (pyghmi_exceptions.IpmiException("Insufficient resources to create new session"), True, "bmc_error",
         "Insufficient resources"),
        (socket.gaierror(-2, "Name or service not known"), True, "unreachable", "cannot resolve"),
        (OSError(101, "Network is unreachable"), True, "unreachable", "Network is unreachable"),
        (struct.error("pack expected 32 items"), True, "bmc_error", "pyghmi raised error"),
        (KeyError("x"), False, "bmc_error", "pyghmi raised KeyError"),
    ],
)
def test_classify_exception(error, login, kind, fragment):
    classified = _ipmi.classify_exception(error, "192.0.2.10:623", "login" if login else "reading", login)
    assert isinstance(classified, BmcError)
    assert classified.kind == kind
    assert fragment in classified.msg
    assert classified.msg and "None" not in classified.msg
    assert classified.msg.startswith("192.0.2.10:623: ")


def test_classify_exception_passes_bmc_errors_through():
    error = BmcAuthError("x")
    assert _ipmi.classify_exception(error, "t", "login", True) is error


@pytest.mark.parametrize(
    "response, kind",
    [
        ({"code": 0, "data": b"\x01"}, None),
        ({"code": 0xFFFF, "error": "timeout"}, "unreachable"),
        ({"code": 0xD4, "error": "Insufficient privilege level"}, "auth"),
        ({"code": 0xD5, "error": "Command not supported in present state"}, "bmc_error"),
        ({"code": 0xC1, "error": None}, "bmc_error"),
        ({"error": "odd"}, "bmc_error"),
        (None, "bmc_error"),
    ],
)
def test_classify_response(response, kind):
    classified = _ipmi.classify_response(response, "t:623", "power off")
    if kind is None:
        assert classified is None
    else:
        assert classified.kind == kind
        assert classified.msg and "None" not in classified.msg


# ------------------------------------------------------------------------------------------- client


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"address": ""}, "address is empty"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"username": ""}, "user name"),
        ({"username": "u" * 17}, "user name"),
        ({"password": "p" * 21}, "password"),
    ],
)
def test_client_rejects_bad_input(kwargs, fragment):
    args = dict(address="192.0.2.10", username="admin", password="secret")
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=fragment):
        _ipmi.IpmiClient(**args)


def test_format_target_brackets_ipv6():
    assert _ipmi.format_target("2001:db8::1", 623) == "[2001:db8::1]:623"
    assert _ipmi.format_target("bmc1", 6230) == "bmc1:6230"


def test_one_session_per_bmc_and_credentials():
    session = FakeSession()
    first = client_for(session)
    first.connect(Deadline(1))
    second = client_for(session)
    second.connect(Deadline(1))
    assert len(first.logins) == 1 and second.logins == []  # reused this process's session
    other = _ipmi.IpmiClient("192.0.2.10", "admin", "other", login=lambda *a: FakeSession())
    other.connect(Deadline(1))
    assert len(_ipmi._SESSIONS) == 2


def test_login_passes_kg_and_port():
    client = client_for(FakeSession(), port=16230, kg="key")
    client.connect(Deadline(1))
    assert client.logins == [("192.0.2.10", 16230, "admin", "secret", "key")]


def test_hanging_login_times_out_and_is_not_retried_in_this_process():
    release = threading.Event()
    calls = []

    def hanging_login(*args):
        calls.append(args)
        release.wait(10)
        return FakeSession()

    client = _ipmi.IpmiClient("192.0.2.10", "admin", "secret", login=hanging_login)
    started = time.monotonic()
    with pytest.raises(BmcTimeout) as info:
        client.connect(Deadline(0.2))
    assert time.monotonic() - started < 2  # the deadline, not pyghmi, decided
    assert info.value.kind == "timeout" and "login did not finish within the 0.2 s timeout" in info.value.msg
    again = _ipmi.IpmiClient("192.0.2.10", "admin", "secret", login=hanging_login)
    with pytest.raises(BmcTimeout, match="earlier login"):
        again.connect(Deadline(5))
    assert len(calls) == 1  # a second Command() to that BMC is never attempted
    release.set()


def test_exhausted_deadline_fails_before_calling():
    client = client_for(FakeSession())
    deadline = Deadline(0.001)
    time.sleep(0.01)
    with pytest.raises(BmcTimeout, match="ran out before login"):
        client.connect(deadline)
    assert client.logins == []


def test_login_errors_are_classified():
    def refuse(*args):
        raise pyghmi_exceptions.IpmiException("Incorrect password provided")

    client = _ipmi.IpmiClient("192.0.2.10", "admin", "wrong", login=refuse)
    with pytest.raises(BmcAuthError) as info:
        client.connect(Deadline(1))
    assert isinstance(info.value.__cause__, pyghmi_exceptions.IpmiException)
    assert _ipmi._SESSIONS == {}


@pytest.mark.parametrize("action, byte", [("off", 0x00), ("on", 0x01), ("shutdown", 0x05)])
def test_chassis_control_bytes(action, byte):
    session = FakeSession()
    client_for(session).chassis_control(action, Deadline(1))
    assert session.calls == [(0x00, 0x02, (byte,))]


@pytest.mark.parametrize("action", ["cycle", "reset", "boot", "diag", "soft"])
def test_no_cycle_or_reset_is_ever_sent(action):
    session = FakeSession()
    with pytest.raises(InvalidInput):
        client_for(session).chassis_control(action, Deadline(1))
    assert session.calls == []
    assert set(_ipmi.CHASSIS_CONTROL.values()) == {0x00, 0x01, 0x05}


@pytest.mark.parametrize("byte, state", [(0x01, "on"), (0x00, "off"), (0x61, "on"), (0x60, "off")])
def test_power_state_reads_bit_zero(byte, state):
    session = FakeSession()
    session.raw_command = lambda netfn, command, data=(): {"code": 0, "data": bytearray([byte, 0, 0])}
    assert client_for(session).power_state(Deadline(1)) == state


def test_power_state_without_data_is_a_bmc_error():
    session = FakeSession()
    session.raw_command = lambda netfn, command, data=(): {"code": 0, "data": bytearray()}
    with pytest.raises(BmcError, match="without data"):
        client_for(session).power_state(Deadline(1))


# ------------------------------------------------------------------------------------------- the operation


@pytest.mark.parametrize(
    "state, initial, check_mode, changed, action, after, fenced, controls",
    [
        ("status", "on", False, False, "none", "on", False, []),
        ("status", "off", False, False, "none", "off", True, []),
        ("status", "on", True, False, "none", "on", False, []),
        ("status", "off", True, False, "none", "off", True, []),
        ("off", "on", False, True, "off", "off", True, [0x00]),
        ("off", "off", False, False, "none", "off", True, []),
        ("off", "on", True, True, "off", "off", False, []),
        ("off", "off", True, False, "none", "off", True, []),
        ("shutdown", "on", False, True, "shutdown", "off", True, [0x05]),
        ("shutdown", "off", False, False, "none", "off", True, []),
        ("shutdown", "on", True, True, "shutdown", "off", False, []),
        ("on", "off", False, True, "on", "on", False, [0x01]),
        ("on", "on", False, False, "none", "on", False, []),
        ("on", "off", True, True, "on", "on", False, []),
    ],
)
def test_states_not_actions(state, initial, check_mode, changed, action, after, fenced, controls):
    session = FakeSession(state=initial)
    result = operation(session, state, check_mode=check_mode).run()
    assert result["changed"] is changed
    assert result["action"] == action
    assert result["powerstate"] == {"before": initial, "after": after}
    assert result["fenced"] is fenced
    assert session.controls == controls
    assert result["state"] == state
    assert set(result) == {"changed", "state", "action", "powerstate", "fenced", "confirmations", "elapsed"}
    if check_mode:
        assert session.controls == []


@pytest.mark.parametrize("confirm", [1, 2, 3, 5])
def test_off_needs_confirm_consecutive_reads(confirm):
    session = FakeSession(state="on")
    result = operation(session, "off", confirm=confirm).run()
    assert result["confirmations"] == confirm and result["fenced"] is True
    assert session.status_reads == 1 + confirm  # the first read, then exactly confirm reads after the command


@pytest.mark.parametrize("confirm", [1, 2, 4])
def test_already_off_counts_its_first_read(confirm):
    session = FakeSession(state="off")
    result = operation(session, "off", confirm=confirm).run()
    assert result["fenced"] is True and result["changed"] is False
    assert session.status_reads == confirm


def test_slow_chassis_is_polled_until_off():
    session = FakeSession(state="on", stuck=True)
    session.reads = ["on"] + ["on"] * 5 + ["off", "off"]
    result = operation(session, "off", confirm=2).run()
    assert result["fenced"] is True and result["confirmations"] == 2
    assert session.status_reads == 8


def test_a_failed_read_resets_the_count():
    session = FakeSession(state="on", stuck=True)
    session.reads = ["on", "off", ERROR, "off", "on", "off", "off"]
    result = operation(session, "off", confirm=2).run()
    assert result["fenced"] is True
    assert session.status_reads == 7


def test_stuck_chassis_fails_with_confirm_timeout_and_is_not_fenced():
    session = FakeSession(state="on", stuck=True)
    with pytest.raises(PowerStateMismatch) as info:
        operation(session, "off", timeout=0.3, poll_interval=0.05).run()
    error = info.value
    assert error.kind == "confirm_timeout"
    assert "power off was sent" in error.msg and "0.3 s" in error.msg
    assert error.result["fenced"] is False
    assert error.result["changed"] is True and error.result["action"] == "off"
    assert error.result["powerstate"] == {"before": "on", "after": "on"}
    assert error.result["confirmations"] == 0
    assert 0.25 <= error.result["elapsed"] < 10 * 0.3  # it waited for the timeout; the upper bound only catches a hang


def test_unknown_never_counts_as_off():
    session = FakeSession(state="on", stuck=True)
    session.reads = ["on"] + [ERROR] * 1000
    with pytest.raises(PowerStateMismatch) as info:
        operation(session, "off", timeout=0.2, poll_interval=0.02).run()
    assert info.value.result["fenced"] is False
    assert info.value.result["powerstate"]["after"] == "unknown"
    assert "last read failed" in info.value.msg


def test_chassis_flipping_on_while_confirming_off_fails_without_a_command():
    session = FakeSession(state="off", stuck=True)
    session.reads = ["off", "on"]
    with pytest.raises(PowerStateMismatch, match="no power command was sent") as info:
        operation(session, "off", confirm=3).run()
    assert session.controls == []
    assert info.value.result["fenced"] is False and info.value.result["changed"] is False


def test_status_reports_a_flip_without_failing():
    session = FakeSession(state="on", stuck=True)
    session.reads = ["off", "on"]
    result = operation(session, "status", confirm=3).run()
    assert result["powerstate"] == {"before": "off", "after": "on"}
    assert result["fenced"] is False and result["confirmations"] == 0


def test_status_of_a_running_chassis_reads_once():
    session = FakeSession(state="on")
    result = operation(session, "status", confirm=5).run()
    assert session.status_reads == 1 and result["confirmations"] == 0


def test_login_failure_keeps_the_result_shape():
    def refuse(*args):
        raise pyghmi_exceptions.IpmiException("Incorrect password provided")

    client = _ipmi.IpmiClient("192.0.2.10", "admin", "wrong", login=refuse)
    with pytest.raises(BmcAuthError) as info:
        _power.PowerOperation(client, "off").run()
    result = info.value.result
    assert result["powerstate"] == {"before": "unknown", "after": "unknown"}
    assert result["changed"] is False and result["fenced"] is False and result["action"] == "none"
    assert isinstance(result["elapsed"], float)


def test_refused_command_changed_nothing():
    session = FakeSession(state="on", control_response={"code": 0xD5, "error": "Command not supported in present state"})
    with pytest.raises(BmcError) as info:
        operation(session, "off").run()
    assert info.value.kind == "bmc_error"
    assert info.value.result["changed"] is False
    assert info.value.result["fenced"] is False


def test_command_without_answer_may_have_changed_something():
    session = FakeSession(state="on", control_response={"code": 0xFFFF, "error": "timeout"})
    with pytest.raises(BmcUnreachable) as info:
        operation(session, "off").run()
    assert info.value.result["changed"] is True
    assert info.value.result["powerstate"]["after"] == "unknown"
    assert info.value.result["fenced"] is False


def test_insufficient_privilege_for_the_command_is_auth():
    session = FakeSession(state="on", control_response={"code": 0xD4, "error": "Insufficient privilege level"})
    with pytest.raises(BmcAuthError):
        operation(session, "off").run()


def test_timeout_covers_a_hanging_command():
    release = threading.Event()
    session = FakeSession(state="on")

    def hang(*args, **kwargs):
        release.wait(10)

    session.control_raises = None
    original = session.raw_command

    def raw_command(netfn, command, data=()):
        if command == 0x02:
            hang()
        return original(netfn, command, data)

    session.raw_command = raw_command
    started = time.monotonic()
    with pytest.raises(BmcTimeout) as info:
        operation(session, "off", timeout=0.3).run()
    assert time.monotonic() - started < 10 * 0.3  # the deadline, not the 10 s hang, ended it
    assert info.value.result["changed"] is True  # the command may have reached the chassis
    release.set()


@pytest.mark.parametrize(
    "state, kwargs, fragment",
    [
        ("cycle", {}, "state must be"),
        ("reset", {}, "state must be"),
        ("off", {"confirm": 0}, "confirm"),
        ("off", {"confirm": 101}, "confirm"),
        ("off", {"poll_interval": 0}, "poll_interval"),
        ("off", {"poll_interval": 11}, "poll_interval"),
        ("off", {"timeout": 0}, "deadline_s"),
        ("off", {"timeout": -1}, "deadline_s"),
        ("off", {"timeout": 3601}, "deadline_s"),
    ],
)
def test_operation_rejects_bad_settings(state, kwargs, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        _power.PowerOperation(client_for(FakeSession()), state, **kwargs)


@settings(max_examples=150)
@given(
    initial=st.sampled_from(["on", "off"]),
    reads=st.lists(st.sampled_from(["on", "off", ERROR]), max_size=8),
    confirm=st.integers(min_value=1, max_value=4),
    state=st.sampled_from(["status", "off", "shutdown", "on"]),
)
def test_fenced_only_after_confirm_consecutive_off_reads(initial, reads, confirm, state):
    """Property: fenced implies the last `confirm` reads made all said off; nothing else sets it."""
    _ipmi._SESSIONS.clear()
    session = FakeSession(state=initial, stuck=True, reads=[initial] + reads)
    op = _power.PowerOperation(client_for(session), state, confirm=confirm, poll_interval=0.01, timeout=0.1)
    seen = []
    real = session.raw_command

    def recording(netfn, command, data=()):
        response = real(netfn, command, data)
        if command == 0x01:
            seen.append("off" if "error" not in response and not response["data"][0] & 1 else
                        ("on" if "error" not in response else ERROR))
        return response

    session.raw_command = recording
    try:
        result = op.run()
    except BmcError as error:
        result = error.result
    assert session.controls in ([], [_ipmi.CHASSIS_CONTROL.get(state)])
    if result["fenced"]:
        assert state != "on"
        assert len(seen) >= confirm and seen[-confirm:] == ["off"] * confirm
        assert result["confirmations"] >= confirm
    assert 0x02 not in session.controls and 0x03 not in session.controls


# ------------------------------------------------------------------------------------------- pyghmi wake-up fix


class FakePyghmiSessionModule:
    """Just the names of pyghmi.ipmi.private.session that the fix touches."""

    def __init__(self):
        import collections

        self.ioqueue = collections.deque()
        self.iosockets = []
        self.myself = None
        self.selectdeadline = 0  # no wake-up packet is sent when the I/O thread already waits less than us
        self.original_calls = []
        handlers = {}

        class Session:
            bmc_handlers = handlers

        self.Session = Session
        self.handlers = handlers

        def original(timeout, myaddr=None, evq=None):
            self.original_calls.append((timeout, myaddr, evq))

        self._io_wait = original
        self._monotonic_time = time.monotonic


class Handler:
    def __init__(self, queued=()):
        import collections

        self.pktqueue = collections.deque(queued)


def test_wakeup_fix_returns_at_once_when_the_answer_is_already_queued():
    fake = FakePyghmiSessionModule()
    assert _ipmi.fix_pyghmi_lost_wakeup(fake) is True
    fake.handlers[("::ffff:192.0.2.10", 623, 0, 0)] = {40000: Handler(queued=[b"answer"])}
    started = time.monotonic()
    fake._io_wait(60, ("::ffff:192.0.2.10", 623, 0, 0))
    assert time.monotonic() - started < 10  # at once, not after the 60 s wait (a bound that only catches the wait)
    assert len(fake.ioqueue) == 1  # the waiter is still queued, as pyghmi expects
    assert fake.original_calls == []


def test_wakeup_fix_waits_for_the_io_thread_otherwise():
    fake = FakePyghmiSessionModule()
    _ipmi.fix_pyghmi_lost_wakeup(fake)
    fake.handlers[("bmc", 623)] = {40000: Handler()}
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (fake._io_wait(5, ("bmc", 623)), done.set()), daemon=True)
    waiter.start()
    assert not done.wait(0.2)  # nothing queued: it sleeps
    _deadline, event, addr = fake.ioqueue.popleft()  # what pyghmi's I/O thread does when the answer comes
    assert addr == ("bmc", 623)
    event.set()
    assert done.wait(2)


@pytest.mark.parametrize("args", [(1, None, None), (1, ("bmc", 623), ["evq"]), (1, None, ["evq"])])
def test_wakeup_fix_leaves_other_waits_to_pyghmi(args):
    fake = FakePyghmiSessionModule()
    _ipmi.fix_pyghmi_lost_wakeup(fake)
    fake._io_wait(*args)
    assert fake.original_calls == [args]
    assert not fake.ioqueue


def test_wakeup_fix_is_installed_once():
    fake = FakePyghmiSessionModule()
    _ipmi.fix_pyghmi_lost_wakeup(fake)
    installed = fake._io_wait
    assert _ipmi.fix_pyghmi_lost_wakeup(fake) is True
    assert fake._io_wait is installed


def test_wakeup_fix_is_not_installed_into_an_unknown_pyghmi():
    fake = FakePyghmiSessionModule()
    del fake.ioqueue
    original = fake._io_wait
    assert _ipmi.fix_pyghmi_lost_wakeup(fake) is False
    assert fake._io_wait is original


def test_wakeup_fix_fits_the_installed_pyghmi():
    from pyghmi.ipmi.private import session

    assert _ipmi.fix_pyghmi_lost_wakeup() is True
    assert getattr(session._io_wait, "kvmha_fixed", False) is True


def test_wakeup_fix_keeps_pyghmi_behaviour_with_several_sessions_to_one_bmc():
    fake = FakePyghmiSessionModule()
    _ipmi.fix_pyghmi_lost_wakeup(fake)
    fake.handlers[("bmc", 623)] = {40000: Handler(queued=[b"someone else's"]), 40001: Handler()}
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (fake._io_wait(5, ("bmc", 623)), done.set()), daemon=True)
    waiter.start()
    assert not done.wait(0.2)  # not returned early: the queued packet may be another session's
    fake.ioqueue.popleft()[1].set()
    assert done.wait(2)
