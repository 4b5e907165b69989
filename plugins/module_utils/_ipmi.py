# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Chassis power of a BMC over IPMI 2.0 LAN (RMCP+), through pyghmi, under one hard wall-clock deadline.

Two layers:

* ``IpmiClient`` - one per BMC. It logs in (one pyghmi session per BMC per process: a second pyghmi session
  to a BMC that already has one in the same process can hang forever, measured), reads the power state and
  sends chassis control commands. Every call runs under ``call_with_deadline``, outside pyghmi's own retry loop,
  and every failure becomes one of the ``BmcError`` classes with a message that is never ``None`` (pyghmi's own
  "no answer" exception carries ``None``).
* ``_power.PowerOperation`` (shared with the Redfish and fence-agent backends) drives it: read, compare *states*,
  send at most one command, confirm with N consecutive reads.

Only the standard chassis commands are used (IPMI 2.0 §28.2 Get Chassis Status, §28.3 Chassis Control), as
``ipmitool`` and ``fence_ipmilan`` do; pyghmi's ``get_power``/``set_power`` are avoided because they first probe
the BMC's vendor (extra round trips, vendor code paths) and ``set_power(wait=...)`` polls only once a second.
Power cycle and hard reset are deliberately not offered: a reset is never a fence.

The first login of a process also installs ``fix_pyghmi_lost_wakeup`` (below): without it about one login in five
and one request in a hundred to a fast BMC wait 0.5-1 s for pyghmi's retry timer - several times a fence's own
0.11 s.
"""

from __future__ import annotations

import socket
import threading

from ._deadline import Deadline, call_with_deadline
from ._errors import (
    BmcAuthError,
    BmcError,
    BmcTimeout,
    BmcUnreachable,
    DeadlineExceeded,
    InvalidInput,
    check_range,
)
from ._power import OFF, ON

try:
    from pyghmi import exceptions as pyghmi_exceptions
    from pyghmi.ipmi.private import session as pyghmi_session
except ImportError as import_error:  # reported by the module through missing_required_lib
    PYGHMI_IMPORT_ERROR: ImportError | None = import_error
    pyghmi_exceptions = None
    pyghmi_session = None
else:
    PYGHMI_IMPORT_ERROR = None

NETFN_CHASSIS = 0x00
CMD_GET_CHASSIS_STATUS = 0x01
CMD_CHASSIS_CONTROL = 0x02
# Chassis Control data byte. 0x02 (power cycle) and 0x03 (hard reset) are absent on purpose.
CHASSIS_CONTROL = {"off": 0x00, "on": 0x01, "shutdown": 0x05}

CC_INSUFFICIENT_PRIVILEGE = 0xD4
CC_NO_RESPONSE = 0xFFFF  # pyghmi's code for "no answer to this request"

MAX_USERNAME_BYTES = 16  # IPMI 2.0 user names
MAX_PASSWORD_BYTES = 20  # IPMI 2.0 passwords

# pyghmi messages (IpmiException texts, RMCP+ status codes) that mean "these credentials are not accepted".
_AUTH_MARKERS = (
    "incorrect password",
    "unauthorized name",
    "unauthorized role",
    "invalid role",
    "privilege",
    "username too long",
    "password is too long",
    "invalid username length",
)
# ... and those that mean "nothing (useful) came back".
_NO_ANSWER_MARKERS = ("timeout", "no longer connected", "unable to transmit", "session failed to initialize")

# One pyghmi session per BMC per process, shared by every IpmiClient for the same BMC and credentials.
_SESSIONS: dict = {}
# Logins abandoned at their deadline: their thread may still sit in pyghmi, and another pyghmi session to that BMC
# could hang behind it, so this process does not try that BMC again.
_ABANDONED: set = set()
_SESSIONS_LOCK = threading.Lock()


# pyghmi (1.6.19 and, by its code, earlier releases) loses a wake-up when a BMC answers very fast: the caller sends
# a request, the I/O thread receives the answer and queues it *before* the caller has registered its waiter, and
# the caller then sleeps until pyghmi's retry timer fires - 0.5 to 1 s lost on that request. Measured against both
# lab/bmc.py and OpenIPMI's ipmi_sim: about one request in a hundred, and one login in five (docs/BENCHMARKS.md).
# The fix below replaces ``session._io_wait`` for the one path that waits for a given BMC's answer
# (``awaitresponse``): after queueing the waiter it checks whether the answer is already queued for that BMC and, if
# so, does not sleep. Every other call goes to pyghmi's own function unchanged, and nothing is patched when pyghmi's
# internals differ.
_PYGHMI_WAIT_NAMES = ("_io_wait", "_monotonic_time", "ioqueue", "iosockets", "myself", "Session")


def fix_pyghmi_lost_wakeup(session_module=None) -> bool:
    """Install the lost-wake-up fix into pyghmi's session module once; ``True`` when it is (now) installed."""
    module = session_module if session_module is not None else pyghmi_session
    if module is None or not all(hasattr(module, name) for name in _PYGHMI_WAIT_NAMES):
        return False
    if getattr(module._io_wait, "kvmha_fixed", False):
        return True
    original = module._io_wait

    def _io_wait(timeout, myaddr=None, evq=None):
        if myaddr is None or evq is not None:
            return original(timeout, myaddr, evq)
        event = threading.Event()
        deadline = timeout + module._monotonic_time()
        module.ioqueue.append((deadline, event, myaddr))
        if deadline < getattr(module, "selectdeadline", 0):
            waker = getattr(module.iosockets[0], "fd", module.iosockets[0])
            waker.sendto(b"\x01", (module.myself, module.iosockets[0].getsockname()[1]))
        # With one session to that BMC (IpmiClient keeps it so) its queue is the caller's: an answer already there
        # arrived before the waiter was queued, and nobody would wake us for it. With several sessions the queue
        # could be another caller's, and returning would spin; pyghmi's own behaviour is kept then.
        handlers = list(module.Session.bmc_handlers.get(myaddr, {}).values())
        if len(handlers) == 1 and handlers[0].pktqueue:
            return None
        event.wait()
        return None

    _io_wait.kvmha_fixed = True
    module._io_wait = _io_wait
    return True


def format_target(address: str, port: int) -> str:
    return "[%s]:%d" % (address, port) if ":" in address else "%s:%d" % (address, port)


def _pyghmi_login(address, port, username, password, kg):
    """A logged-in pyghmi session. ``Session`` rather than ``Command``: ``Command()`` only wraps it, and importing
    ``pyghmi.ipmi.command`` (vendor handlers, SDR, FRU ...) costs 50 ms more on every run (measured)."""
    kwargs = {"bmc": address, "userid": username, "password": password, "port": port}
    if kg:
        kwargs["kg"] = kg
    return pyghmi_session.Session(**kwargs)


def classify_exception(error: BaseException, target: str, what: str, login: bool) -> BmcError:
    """The ``BmcError`` for an exception raised by pyghmi (or the socket layer) while doing ``what``."""
    if isinstance(error, BmcError):
        return error
    if isinstance(error, socket.gaierror):
        return BmcUnreachable("%s: cannot resolve the BMC address (%s)" % (target, error))
    if isinstance(error, OSError):
        return BmcUnreachable("%s: network error during %s: %s" % (target, what, error))
    message = error.args[0] if error.args else None
    text = "" if message is None else str(message)
    lowered = text.lower()
    if pyghmi_exceptions is not None and not isinstance(error, pyghmi_exceptions.IpmiException):
        return BmcError("%s: %s failed: pyghmi raised %s: %s" % (target, what, type(error).__name__, text or "(no message)"))
    if any(marker in lowered for marker in _AUTH_MARKERS):
        return BmcAuthError("%s: the BMC refused the credentials (%s)" % (target, text))
    if message is None or not text or any(marker in lowered for marker in _NO_ANSWER_MARKERS):
        if login:
            return BmcUnreachable(
                "%s: no answer from the BMC during login (IPMI over UDP): check the address, the port and the "
                "out-of-band network%s" % (target, "" if not text else " (%s)" % text)
            )
        return BmcUnreachable("%s: the BMC stopped answering during %s%s" % (target, what, "" if not text else " (%s)" % text))
    if "cipher suite" in lowered:
        return BmcError("%s: no common cipher suite with the BMC (pyghmi offers suites 17 and 3): %s" % (target, text))
    return BmcError("%s: %s failed: %s" % (target, what, text))


def classify_response(response, target: str, what: str) -> BmcError | None:
    """The ``BmcError`` for an IPMI response that carries an error (pyghmi returns those, it does not raise)."""
    if not isinstance(response, dict):
        return BmcError("%s: %s returned no response" % (target, what))
    if "error" not in response:
        return None
    code = response.get("code")
    text = response.get("error") or "completion code 0x%02X" % (code or 0)
    if code == CC_NO_RESPONSE:
        return BmcUnreachable("%s: the BMC did not answer %s (%s)" % (target, what, text))
    if code == CC_INSUFFICIENT_PRIVILEGE:
        return BmcAuthError("%s: the BMC user lacks the privilege for %s (%s)" % (target, what, text))
    if isinstance(code, int):
        return BmcError("%s: the BMC refused %s: %s (completion code 0x%02X)" % (target, what, text, code))
    return BmcError("%s: the BMC refused %s: %s" % (target, what, text))


class IpmiClient:
    """One BMC: login, power state, chassis control; each call under the caller's ``Deadline``."""

    def __init__(self, address: str, username: str, password: str, port: int = 623, kg: str | None = None,
                 login=None):
        if not address:
            raise InvalidInput("the BMC address is empty")
        check_range("the BMC port", port, 1, 65535)
        if not username or len(username.encode("utf-8")) > MAX_USERNAME_BYTES:
            raise InvalidInput("the BMC user name must be 1 to %d bytes long" % MAX_USERNAME_BYTES)
        if len((password or "").encode("utf-8")) > MAX_PASSWORD_BYTES:
            raise InvalidInput("the BMC password must be at most %d bytes long (IPMI 2.0)" % MAX_PASSWORD_BYTES)
        self.address = address
        self.port = port
        self.username = username
        self._password = password or ""
        self._kg = kg or None
        self._login = login or _pyghmi_login
        self._session = None
        self.target = format_target(address, port)

    @property
    def _key(self):
        return (self.address, self.port, self.username, self._password, self._kg)

    def connect(self, deadline: Deadline) -> None:
        """Log in, or reuse this process's session to the same BMC."""
        if self._session is not None:
            return
        key = self._key
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(key)
            abandoned = key in _ABANDONED
        if session is None and abandoned:
            raise BmcTimeout("%s: an earlier login to this BMC in this process never finished" % self.target)
        if session is None:
            with _SESSIONS_LOCK:
                fix_pyghmi_lost_wakeup()
            try:
                session = self._call(
                    lambda: self._login(self.address, self.port, self.username, self._password, self._kg),
                    deadline, "login", login=True)
            except BmcTimeout:
                with _SESSIONS_LOCK:
                    _ABANDONED.add(key)
                raise
            with _SESSIONS_LOCK:
                _SESSIONS[key] = session
        self._session = session

    def power_state(self, deadline: Deadline) -> str:
        """``on`` or ``off``, from Get Chassis Status (bit 0 of the current power state byte)."""
        response = self._raw(CMD_GET_CHASSIS_STATUS, (), deadline, "reading the power state")
        data = response.get("data")
        if not data:
            raise BmcError("%s: the BMC answered Get Chassis Status without data" % self.target)
        return ON if data[0] & 0x01 else OFF

    def chassis_control(self, action: str, deadline: Deadline) -> None:
        """Send Chassis Control ``action`` (``on``, ``off`` or ``shutdown``); the BMC acts asynchronously."""
        if action not in CHASSIS_CONTROL:
            raise InvalidInput("unsupported chassis control %r (only %s)" % (action, ", ".join(sorted(CHASSIS_CONTROL))))
        self._raw(CMD_CHASSIS_CONTROL, (CHASSIS_CONTROL[action],), deadline, "power %s" % action)

    def _raw(self, command: int, data, deadline: Deadline, what: str) -> dict:
        if self._session is None:
            self.connect(deadline)
        session = self._session
        response = self._call(
            lambda: session.raw_command(netfn=NETFN_CHASSIS, command=command, data=data), deadline, what)
        error = classify_response(response, self.target, what)
        if error is not None:
            raise error
        return response

    def _call(self, func, deadline: Deadline, what: str, login: bool = False):
        remaining = deadline.remaining()
        if remaining <= 0:
            raise BmcTimeout("%s: the %g s timeout ran out before %s" % (self.target, deadline.seconds, what))
        try:
            return call_with_deadline(func, remaining, what)
        except DeadlineExceeded as error:
            raise BmcTimeout(
                "%s: %s did not finish within the %g s timeout%s"
                % (self.target, what, deadline.seconds, " (no answer from the BMC)" if login else "")
            ) from error
        except BmcError:
            raise
        except Exception as error:  # pyghmi's and the socket layer's errors become a classified BmcError
            raise classify_exception(error, self.target, what, login) from error
