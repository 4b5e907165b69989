# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Power of a host through its BMC's DMTF Redfish service, over HTTPS with the standard library only.

``RedfishClient`` has the three calls ``_power.PowerOperation`` drives (``connect``, ``power_state``,
``chassis_control``), so a Redfish run has exactly the contract of an IPMI one: states compared, at most one
command, confirmed off by N consecutive reads, one deadline over everything.

* Requests: ``GET`` of the ComputerSystem for ``PowerState``, ``POST`` of ``ComputerSystem.Reset`` with
  ``ResetType`` ``ForceOff`` (the fence), ``On`` or ``GracefulShutdown``. ``ForceRestart``, ``PowerCycle`` and
  ``Nmi`` are never sent: a restarted host comes back with its VMs.
* HTTP Basic authentication on every request (no Redfish session to create, leak or expire), one kept-alive
  connection per run, each request under its own ``request_timeout`` and the run's deadline (``call_with_deadline``
  also bounds a server that accepts and then dribbles or never answers).
* TLS is verified by default against the system trust store or ``ca_path``; ``validate_certs=False`` turns it off
  only when asked (the module warns).

Why not sushy or pyghmi's Redfish: docs/ARCHITECTURE.md ("Power backends").
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from urllib.parse import quote

from ._deadline import Deadline, call_with_deadline
from ._errors import (
    BmcAuthError,
    BmcError,
    BmcTimeout,
    BmcTlsError,
    BmcUnreachable,
    DeadlineExceeded,
    InvalidInput,
    check_range,
)
from ._power import OFF, ON

SERVICE_ROOT = "/redfish/v1"
SYSTEMS = SERVICE_ROOT + "/Systems"
RESET_ACTION = "#ComputerSystem.Reset"
# ResetType per requested action. ForceRestart, GracefulRestart, PowerCycle and Nmi are absent on purpose.
RESET_TYPES = {"off": "ForceOff", "on": "On", "shutdown": "GracefulShutdown"}
# Redfish PowerState -> ours. PoweringOff still has power (the OS may be shutting down): it is "on", never "off".
POWER_STATES = {"On": ON, "Off": OFF, "PoweringOn": ON, "PoweringOff": ON, "Paused": ON}

MAX_BODY_BYTES = 1 << 20  # a ComputerSystem is a few kB; a BMC sending more is broken


def format_target(address: str, port: int) -> str:
    return "[%s]:%d" % (address, port) if ":" in address else "%s:%d" % (address, port)


def parse_power_state(document, target: str) -> str:
    """``on`` or ``off`` from a ComputerSystem document; anything else is a ``BmcError`` (never read as off)."""
    value = document.get("PowerState") if isinstance(document, dict) else None
    if not isinstance(value, str) or value not in POWER_STATES:  # a list or an object is not hashable
        raise BmcError("%s: the ComputerSystem has no usable PowerState (%r)" % (target, value))
    return POWER_STATES[value]


def reset_target(document, system_path: str, target: str) -> tuple:
    """The ``ComputerSystem.Reset`` action's URI and the ResetTypes it allows (empty: not announced)."""
    action = ((document or {}).get("Actions") or {}).get(RESET_ACTION)
    if not isinstance(action, dict) or not isinstance(action.get("target"), str):
        raise BmcError("%s: %s offers no %s action" % (target, system_path, RESET_ACTION))
    allowed = action.get("ResetType@Redfish.AllowableValues") or []
    return action["target"], tuple(value for value in allowed if isinstance(value, str))


def member_paths(collection, target: str) -> list:
    members = collection.get("Members") if isinstance(collection, dict) else None
    if not isinstance(members, list):
        raise BmcError("%s: %s is not a Redfish collection" % (target, SYSTEMS))
    return [m["@odata.id"] for m in members if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)]


def only_system(paths: list, target: str) -> str:
    """The BMC's one ComputerSystem. A BMC with several must be told which (``system_id``): fencing a guessed one is
    not an option."""
    if len(paths) != 1:
        raise InvalidInput("%s: the BMC has %d ComputerSystems (%s); set system_id"
                           % (target, len(paths), ", ".join(paths) or "none"))
    return paths[0].rstrip("/")


def tls_context(validate_certs: bool, ca_path: str | None) -> ssl.SSLContext:
    if not validate_certs:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_path or None)
    except (OSError, ssl.SSLError) as error:
        raise InvalidInput("cannot load the CA bundle %s: %s" % (ca_path, error)) from error


class RedfishClient:
    """One BMC's ComputerSystem: power state and Reset, each request under the caller's ``Deadline``."""

    def __init__(self, address: str, username: str, password: str, port: int = 443, system_id: str | None = None,
                 validate_certs: bool = True, ca_path: str | None = None, request_timeout: float = 5.0):
        if not address or "/" in address:
            raise InvalidInput("the BMC address must be a host name or an IP address, not %r" % address)
        check_range("the BMC port", port, 1, 65535)
        if not username:
            raise InvalidInput("the BMC user name is empty")
        check_range("request_timeout_s", request_timeout, 0, 600, exclusive_minimum=True, unit="seconds")
        self.address = address
        self.port = port
        self.target = format_target(address, port)
        self.system_id = system_id or None
        self.request_timeout = request_timeout
        self._context = tls_context(validate_certs, ca_path)
        token = base64.b64encode(("%s:%s" % (username, password or "")).encode("utf-8")).decode("ascii")
        self._headers = {"Authorization": "Basic " + token, "Accept": "application/json", "OData-Version": "4.0"}
        self._connection = None
        self._unread = None  # the system document read by connect(): the first power_state() needs no new GET
        self.system_path = None
        self.reset_uri = None
        self.reset_types = ()

    def connect(self, deadline: Deadline) -> None:
        """Find the ComputerSystem and its Reset action (two GETs; the second also tells the power state)."""
        if self.system_path is not None:
            return
        if self.system_id:  # named: read it directly (one round trip less on every run)
            system_path = "%s/%s" % (SYSTEMS, quote(self.system_id, safe=""))
            document = self._request("GET", system_path, deadline, "reading the system", missing_ok=True)
            if document is None:
                raise InvalidInput("%s: the BMC has no ComputerSystem %r (%s)"
                                   % (self.target, self.system_id, system_path))
        else:
            paths = member_paths(self._request("GET", SYSTEMS, deadline, "listing the systems"), self.target)
            system_path = only_system(paths, self.target)
            document = self._request("GET", system_path, deadline, "reading the system")
        self.reset_uri, self.reset_types = reset_target(document, system_path, self.target)
        self.system_path = system_path
        self._unread = document

    def power_state(self, deadline: Deadline) -> str:
        self.connect(deadline)
        document, self._unread = self._unread, None
        if document is None:
            document = self._request("GET", self.system_path, deadline, "reading the power state")
        return parse_power_state(document, self.target)

    def chassis_control(self, action: str, deadline: Deadline) -> None:
        if action not in RESET_TYPES:
            raise InvalidInput("unsupported power action %r (only %s)" % (action, ", ".join(sorted(RESET_TYPES))))
        self.connect(deadline)
        reset_type = RESET_TYPES[action]
        if self.reset_types and reset_type not in self.reset_types:
            raise BmcError("%s: the BMC does not allow ResetType %s (it allows %s)"
                           % (self.target, reset_type, ", ".join(self.reset_types)))
        self._request("POST", self.reset_uri, deadline, "power %s (ResetType %s)" % (action, reset_type),
                      body={"ResetType": reset_type})

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _request(self, method: str, path: str, deadline: Deadline, what: str, body=None, missing_ok=False):
        remaining = deadline.remaining()
        if remaining <= 0:
            raise BmcTimeout("%s: the %g s timeout ran out before %s" % (self.target, deadline.seconds, what))
        limit = min(self.request_timeout, remaining)
        try:
            return call_with_deadline(self._exchange, limit, what, method, path, body, limit, missing_ok)
        except DeadlineExceeded as error:
            self._connection = None  # abandoned in its thread; the next request opens a new one
            raise BmcTimeout("%s: %s got no complete answer within %g s" % (self.target, what, limit)) from error
        except ssl.SSLCertVerificationError as error:
            raise BmcTlsError("%s: the BMC's TLS certificate is not trusted (%s); give its CA in ca_path"
                              % (self.target, error.verify_message or error)) from error
        except ssl.SSLError as error:
            raise BmcTlsError("%s: TLS failed during %s: %s" % (self.target, what, error)) from error
        except socket.timeout as error:
            self._connection = None
            raise BmcTimeout("%s: %s got no answer within %g s" % (self.target, what, limit)) from error
        except (OSError, http.client.HTTPException) as error:
            self._connection = None
            raise BmcUnreachable("%s: %s failed: %s: %s" % (self.target, what, type(error).__name__, error)) from error

    def _exchange(self, method: str, path: str, body, timeout: float, missing_ok: bool):
        """One HTTP request on the kept-alive connection; a connection the BMC closed while idle is reopened once
        (sending a ForceOff twice is harmless: it names a state, not a toggle)."""
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = dict(self._headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        reused = self._connection is not None
        try:
            return self._send(method, path, payload, headers, timeout, missing_ok)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            if not reused:
                raise
        return self._send(method, path, payload, headers, timeout, missing_ok)

    def _send(self, method: str, path: str, payload, headers: dict, timeout: float, missing_ok: bool):
        if self._connection is None:
            self._connection = http.client.HTTPSConnection(self.address, self.port, timeout=timeout,
                                                           context=self._context)
        elif self._connection.sock is not None:
            self._connection.sock.settimeout(timeout)
        self._connection.request(method, path, body=payload, headers=headers)
        return self._read(self._connection.getresponse(), method, path, missing_ok)

    def _read(self, response, method: str, path: str, missing_ok: bool):
        data = response.read(MAX_BODY_BYTES + 1)
        if response.will_close:
            self.close()
        status = response.status
        if status == 404 and missing_ok:
            return None
        if status in (401, 403):
            raise BmcAuthError("%s: the BMC refused the credentials for %s %s (HTTP %d)"
                               % (self.target, method, path, status))
        if not 200 <= status < 300:
            raise BmcError("%s: %s %s failed with HTTP %d: %s"
                           % (self.target, method, path, status, redfish_message(data)))
        if method != "GET":
            return None
        if len(data) > MAX_BODY_BYTES:
            raise BmcError("%s: %s is larger than %d bytes" % (self.target, path, MAX_BODY_BYTES))
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as error:
            raise BmcError("%s: %s is not JSON: %s" % (self.target, path, error)) from error


def redfish_message(data: bytes) -> str:
    """The message of a Redfish error body (``{"error": {"message": ...}}``), or the body's start."""
    try:
        error = json.loads(data.decode("utf-8")).get("error") or {}
        extended = error.get("@Message.ExtendedInfo") or [{}]
        return str(extended[0].get("Message") or error.get("message") or "")[:300]
    except (ValueError, AttributeError, TypeError, IndexError):
        return data[:300].decode("utf-8", "replace")
