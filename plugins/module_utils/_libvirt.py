# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""libvirt access for the collection: one ``LibvirtClient`` per target connection, and safe domain XML handling.

Every libvirt call, the connection included, runs under its own hard deadline (``_deadline.call_with_deadline``):
libvirt's own limits are far too long for HA (a dead TCP peer takes ~14.5 s *measured*, over ssh ~134 s).
``libvirt.libvirtError`` never escapes: it becomes a ``LibvirtError`` (``raise ... from``) of the class - and so
the kind of the collection's ``ErrorKind`` - that says what happened:

- ``LibvirtUnreachable`` (``unreachable``): the connection could not be opened;
- ``LibvirtTimeout`` (``timeout``): a call did not return within its deadline (its effect is unknown);
- ``LibvirtConnectionLost`` (``connection``): the connection broke during a call (RPC/remote errors, closed socket);
- ``DomainNotFound`` (``no_domain``): the domain does not exist;
- ``LibvirtError`` (``libvirt``): any other error reported by libvirt (the call itself was refused).

Domain XML read from the shared store is input from outside: ``read_domain_xml`` caps its size and checks it with
``_domainxml.parse_domain_xml`` (no DTD or entity declarations, so no entity expansion; the expected UUID).
"""

from __future__ import annotations

import os
import re
import stat
import time
from urllib.parse import parse_qsl, urlsplit

from ._deadline import call_with_deadline
from ._domainxml import MAX_DOMAIN_BYTES, parse_domain_xml
from ._errors import (
    DeadlineExceeded,
    DomainNotFound,
    InvalidInput,
    LibvirtConnectionLost,
    LibvirtError,
    LibvirtMissing,
    LibvirtTimeout,
    LibvirtUnreachable,
)

try:
    import libvirt
except ImportError as _import_error:  # the module reports it through require_library
    libvirt = None
    LIBVIRT_IMPORT_ERROR = _import_error
else:
    LIBVIRT_IMPORT_ERROR = None

    def _quiet(_ctx, _err):
        """Keep libvirt from printing every error to stderr; errors are raised and wrapped instead."""

    libvirt.registerErrorHandler(_quiet, None)

MAX_URI = 2048
# Transports that only open a connection. "ext" runs an arbitrary local command: refused.
TRANSPORTS = ("", "unix", "ssh", "libssh", "libssh2", "tls", "tcp")
# URI parameters that name commands to run locally or on the remote host: refused.
FORBIDDEN_PARAMS = ("command", "netcat")
_DRIVER = re.compile(r"^[a-z][a-z0-9]*$")

DOMAIN_STATES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff", 6: "crashed",
                 7: "pmsuspended"}
RUNNING_STATES = ("running", "blocked")

# --------------------------------------------------------------------------------------------------- URIs


def validate_uri(uri) -> str:
    """Return ``uri`` if it is an acceptable libvirt connection URI, else raise ``InvalidInput`` saying why."""
    if not isinstance(uri, str) or not uri:
        raise InvalidInput("libvirt URI must be a non-empty string")
    shown = repr(uri[:120])
    if len(uri) > MAX_URI:
        raise InvalidInput("libvirt URI %s... is longer than %d characters" % (shown, MAX_URI))
    if any(ord(c) < 33 or ord(c) == 127 for c in uri):
        raise InvalidInput("libvirt URI %s contains whitespace or control characters" % shown)
    try:
        parts = urlsplit(uri)
    except ValueError as err:
        raise InvalidInput("libvirt URI %s cannot be parsed: %s" % (shown, err)) from None
    if not parts.scheme or "://" not in uri:
        raise InvalidInput("libvirt URI %s has no driver (expected e.g. qemu+ssh://host/system)" % shown)
    driver, _sep, transport = parts.scheme.partition("+")
    if not _DRIVER.match(driver):
        raise InvalidInput("libvirt URI %s has an invalid driver %r" % (shown, driver))
    if transport not in TRANSPORTS:
        raise InvalidInput("libvirt URI %s uses transport %r; allowed: %s" % (shown, transport, ", ".join(t for t in TRANSPORTS if t)))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in FORBIDDEN_PARAMS:
            raise InvalidInput("libvirt URI %s sets %r, which names a command to run; refused" % (shown, key))
        if key.lower() in ("socket", "pkipath") and not value.startswith("/"):
            raise InvalidInput("libvirt URI %s: the %s parameter must be an absolute path" % (shown, key.lower()))
    return uri


# URI parameters that turn off the check of who answers: (parameter, the value(s) that do, what is then unchecked).
_UNCHECKED = (("no_verify", None, "the host's identity (the TLS certificate with qemu+tls, the SSH host key with qemu+ssh)"),
              ("known_hosts_verify", ("ignore",), "the SSH host key"))


def uri_warnings(uri: str) -> list:
    """Warnings for a valid URI that does not check the host it reaches (cf. redfish_power's validate_certs)."""
    warnings = []
    try:
        query = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
    except (ValueError, TypeError, AttributeError):
        return warnings  # not a URI: validate_uri says why when it is used
    if urlsplit(uri).scheme.partition("+")[2] == "ssh" and any(key.lower() == "known_hosts" for key, _value in query):
        warnings.append("libvirt URI %s sets known_hosts, which the ssh transport ignores: the host key is checked "
                        "against ~/.ssh/known_hosts of the user that runs the module; use qemu+libssh to name the "
                        "file" % uri[:120])
    for key, value in query:
        for name, values, what in _UNCHECKED:
            if key.lower() == name and (value.strip().lower() in values if values else value.strip() not in ("", "0")):
                warnings.append("libvirt URI %s sets %s=%s: %s is not checked, so anyone on the path can answer for the "
                                "hypervisor (and be told to start VMs); use qemu+tls with verification or known SSH "
                                "host keys" % (uri[:120], key, value, what))
    return warnings


# What a failed connection's libvirt message means (libvirt's own words are vague: "Input/output error"):
# (the transports it applies to, None for all; words of the message; the explanation).
_POLKIT_HINT = ("polkit: the host's polkit does not let the user this connection runs as manage libvirt (action "
                "org.libvirt.unix.manage): give that user a polkit rule (docs/OPERATIONS.md), or connect read-only")
_TLS = ("tls",)
_SSH = ("ssh", "libssh", "libssh2")
_CONNECT_HINTS = (
    (_TLS, "TLS confirmation", "TLS: the server refused this client's certificate (not signed by a CA the server "
                               "trusts, or its name is not in the server's tls_allowed_dn_list; the server's libvirtd "
                               "log says which)"),
    (_TLS, "verify peer's certificate", "TLS: the server's certificate does not verify against cacert.pem of the "
                                        "pkipath (another CA, expired, or it does not name the host of the URI)"),
    (_TLS, "failed validation", "TLS: this client's own certificate does not verify against cacert.pem of the pkipath"),
    (_TLS, "Cannot read", "TLS: the pkipath directory must hold cacert.pem, clientcert.pem and clientkey.pem, "
                          "readable by the user that runs the module"),
    (_SSH, "Host key verification failed", "SSH: the host's key is missing from, or differs from the one in, the "
                                           "~/.ssh/known_hosts of the user that runs the module"),
    (_SSH, "verify the session host key", "SSH: the host's key is not in the known_hosts file of the URI"),
    (_SSH, "differs from stored identity", "SSH: the host's key differs from the one in the known_hosts file of the "
                                           "URI (a new key, or another machine answers)"),
    # Any transport that ends at the unix socket (unix, ssh, libssh): "no polkit agent" when the action's default
    # asks for a password (auth_admin_keep), "access denied by policy" when a rule says no.
    (None, "polkit agent", _POLKIT_HINT),
    (None, "access denied by policy", _POLKIT_HINT),
)


def connect_hint(uri: str, message: str):
    """A plain explanation of a failed connection's message (TLS, SSH host keys, polkit), or None if there is none."""
    transport = urlsplit(uri).scheme.partition("+")[2]
    return next((hint for transports, words, hint in _CONNECT_HINTS
                 if (transports is None or transport in transports) and words in message), None)


# --------------------------------------------------------------------------------------------------- domain XML


def read_domain_xml(path: str, expected_uuid: str, max_bytes: int = MAX_DOMAIN_BYTES) -> tuple:
    """Read and validate a domain XML file from the store: returns ``(text, parse_domain_xml(...))``.

    The file must be a regular file (not a symbolic link) of at most ``max_bytes``. Raises ``InvalidInput``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InvalidInput("no domain XML at %s" % path) from None
    except OSError as err:
        raise InvalidInput("cannot open domain XML %s: %s" % (path, err.strerror or err)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput("domain XML %s is not a regular file" % path)
        if info.st_size > max_bytes:
            raise InvalidInput("domain XML %s is %d bytes, more than the %d-byte limit" % (path, info.st_size, max_bytes))
        data = os.read(fd, max_bytes + 1)
    except OSError as err:
        raise InvalidInput("cannot read domain XML %s: %s" % (path, err.strerror or err)) from None
    finally:
        os.close(fd)
    info = parse_domain_xml(data, expected_uuid, max_bytes)
    return data.decode("utf-8"), info


# --------------------------------------------------------------------------------------------------- client

_CONNECTION_CODES = ("VIR_ERR_NO_CONNECT", "VIR_ERR_INVALID_CONN", "VIR_ERR_RPC", "VIR_ERR_AUTH_FAILED",
                     "VIR_ERR_AUTH_CANCELLED", "VIR_ERR_AUTH_UNAVAILABLE")
_CONNECTION_DOMAINS = ("VIR_FROM_RPC", "VIR_FROM_REMOTE")


def _classify(err) -> type:
    """The ``LibvirtError`` class for a ``libvirt.libvirtError``."""
    code, domain = err.get_error_code(), err.get_error_domain()
    if code == getattr(libvirt, "VIR_ERR_NO_DOMAIN", -1):
        return DomainNotFound
    if code in [getattr(libvirt, n, -1) for n in _CONNECTION_CODES] or domain in [getattr(libvirt, n, -1) for n in _CONNECTION_DOMAINS]:
        return LibvirtConnectionLost
    return LibvirtError


class LibvirtClient:
    """One connection to one libvirtd, every call under a deadline.

    ``open()`` must be called first (``connect_timeout``); every other call gets ``call_timeout`` unless given.
    A call that times out is abandoned (its thread dies with the process): its effect on the host is unknown.
    """

    def __init__(self, uri: str, connect_timeout: float = 5.0, call_timeout: float = 10.0, read_only: bool = False,
                 label: str | None = None):
        self.uri = validate_uri(uri)
        self.connect_timeout = float(connect_timeout)
        self.call_timeout = float(call_timeout)
        self.read_only = read_only
        self.label = label or uri
        self._conn = None

    # -- plumbing

    def _call(self, what: str, func, *args, timeout: float | None = None, error_class: type | None = None):
        if libvirt is None:
            raise LibvirtMissing("the libvirt Python bindings (libvirt-python) are not installed")
        limit = self.call_timeout if timeout is None else timeout
        label = "%s on %s" % (what, self.label)
        try:
            return call_with_deadline(func, limit, label, *args)
        except DeadlineExceeded as err:
            raise LibvirtTimeout(str(err)) from err
        except libvirt.libvirtError as err:
            message = err.get_error_message() or str(err)
            raise (error_class or _classify(err))("%s failed: %s" % (label, message)) from err

    @property
    def conn(self):
        if self._conn is None:
            raise LibvirtConnectionLost("not connected to %s" % self.label)
        return self._conn

    # -- connection

    def open(self) -> "LibvirtClient":
        flags = libvirt.VIR_CONNECT_RO if (libvirt is not None and self.read_only) else 0
        auth = [[], None, None]  # no interactive credentials: never prompt on the module's stdin

        def connect():
            return libvirt.openAuth(self.uri, auth, flags)

        try:
            self._conn = self._call("connect", connect, timeout=self.connect_timeout, error_class=LibvirtUnreachable)
        except LibvirtUnreachable as err:
            hint = connect_hint(self.uri, str(err))
            if hint is None:
                raise
            raise LibvirtUnreachable("%s - %s" % (err, hint)) from err.__cause__
        return self

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            call_with_deadline(conn.close, min(self.call_timeout, 2.0), "close %s" % self.label)
        except (DeadlineExceeded, libvirt.libvirtError):
            pass

    def alive(self) -> bool:
        """True if the connection still answers (``isAlive`` plus a cheap round trip) within the deadline."""
        if self._conn is None:
            return False
        try:
            if not self._call("check connection", self._conn.isAlive, timeout=min(self.call_timeout, 3.0)):
                return False
            self._call("check connection", self._conn.getLibVersion, timeout=min(self.call_timeout, 3.0))
        except LibvirtError:
            return False
        return True

    # -- queries

    def active_uuids(self) -> set:
        """UUIDs of every active domain (running, paused, ...): any of them holds its disks."""
        conn = self.conn

        def collect():
            return set(dom.UUIDString() for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))

        return self._call("list active domains", collect)

    def domain_state(self, vm_uuid: str):
        """The domain's state name (running, paused, shutoff ...), or ``None`` if it is not defined here."""
        conn = self.conn

        def query():
            try:
                dom = conn.lookupByUUIDString(vm_uuid)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise
            return dom.state()[0]

        state = self._call("state of %s" % vm_uuid, query)
        return None if state is None else DOMAIN_STATES.get(state, "unknown")

    def find_domain(self, name: str | None = None, vm_uuid: str | None = None):
        """The domain named ``name`` (or with UUID ``vm_uuid``); ``LibvirtError`` kind ``no_domain`` if none."""
        conn = self.conn
        if vm_uuid is not None:
            return self._call("look up %s" % vm_uuid, conn.lookupByUUIDString, vm_uuid)
        return self._call("look up domain %r" % name, conn.lookupByName, name)

    def all_domains(self) -> list:
        """Every domain defined or running here, transient ones included."""
        return self._call("list domains", self.conn.listAllDomains, 0)

    def describe(self, dom) -> dict:
        """``{"name", "uuid", "active", "persistent"}`` of a domain handle."""
        return {"name": self._call("name of a domain", dom.name), "uuid": self._call("UUID of a domain", dom.UUIDString),
                "active": bool(self._call("state of a domain", dom.isActive)),
                "persistent": bool(self._call("persistence of a domain", dom.isPersistent))}

    def read_metadata(self, dom, namespace: str, scope: str):
        """The element of ``namespace`` in the domain's ``live`` or ``config`` metadata, or None if there is none."""
        flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if scope == "live" else libvirt.VIR_DOMAIN_AFFECT_CONFIG

        def get():
            try:
                return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace, flags)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                    return None
                raise

        return self._call("read the %s metadata of a domain" % scope, get)

    def write_metadata(self, dom, namespace: str, prefix: str, element, scopes) -> None:
        """Replace the element of ``namespace`` (``element`` None: remove it) in the given scopes at once."""
        flags = 0
        if "live" in scopes:
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        if "config" in scopes:
            flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
        self._call("write the %s metadata of a domain" % "+".join(scopes), dom.setMetadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                   element, prefix if element is not None else None, namespace, flags)

    # -- changes

    def define(self, xml: str) -> str:
        """Define (or redefine) a persistent domain and disable its autostart; return its UUID."""
        conn = self.conn
        dom = self._call("define domain", conn.defineXML, xml)
        self._call("disable autostart of %s" % dom.name(), dom.setAutostart, 0)
        return dom.UUIDString()

    def start(self, vm_uuid: str) -> None:
        conn = self.conn

        def create():
            conn.lookupByUUIDString(vm_uuid).create()

        self._call("start %s" % vm_uuid, create)

    def remove(self, vm_uuid: str) -> dict:
        """Destroy (if active) and undefine a stale copy; returns ``{"destroyed": bool, "undefined": bool}``.

        For the returning-host guard only (vm_evacuate never removes anything). libvirt's undefine never deletes
        disks; NVRAM is kept, managed-save images and snapshot/checkpoint metadata go with the definition so that
        nothing can resume the stale copy. A domain that is not defined here is ``{False, False}``.
        """
        conn = self.conn

        def lookup():
            try:
                return conn.lookupByUUIDString(vm_uuid)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise

        dom = self._call("look up %s" % vm_uuid, lookup)
        outcome = {"destroyed": False, "undefined": False}
        if dom is None:
            return outcome
        persistent = self._call("persistence of %s" % vm_uuid, dom.isPersistent)
        if self._call("state of %s" % vm_uuid, dom.isActive):
            self._call("destroy %s" % vm_uuid, dom.destroy)
            outcome["destroyed"] = True
        if not persistent:
            outcome["undefined"] = outcome["destroyed"]  # a transient domain is gone once destroyed
            return outcome
        basic = getattr(libvirt, "VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", 0) | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA", 0)
        full = basic | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_KEEP_NVRAM", 0) | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 0)
        try:
            self._call("undefine %s" % vm_uuid, dom.undefineFlags, full)
        except LibvirtError as err:
            cause = err.__cause__
            refused = (getattr(libvirt, "VIR_ERR_INVALID_ARG", -1), getattr(libvirt, "VIR_ERR_NO_SUPPORT", -1))
            if cause is None or not hasattr(cause, "get_error_code") or cause.get_error_code() not in refused:
                raise
            # A driver without NVRAM/checkpoint support refuses those flags; without KEEP_NVRAM libvirt refuses
            # to undefine a domain that has NVRAM rather than delete it, so nothing is lost either way.
            self._call("undefine %s" % vm_uuid, dom.undefineFlags, basic)
        outcome["undefined"] = True
        return outcome

    def domain_xml(self, vm_uuid: str) -> str:
        """The live XML of a domain."""
        return self._call("XML of %s" % vm_uuid, lambda: self.conn.lookupByUUIDString(vm_uuid).XMLDesc(0))

    def migrate_live(self, vm_uuid: str, dest: "LibvirtClient", migrate_uri: str, timeout: float, unsafe: bool = False) -> None:
        """Live-migrate a running domain to ``dest``, its data sent to ``migrate_uri`` (``tcp://address``).

        The destination gets a persistent definition and the source's is removed - by libvirt, and only once the
        domain runs there; a failed or aborted migration leaves it running here. Past ``timeout`` the job is aborted
        (the caller then checks where the domain runs: an abort that comes too late does not undo a migration).
        ``unsafe`` skips libvirt's check that the disks are on storage it knows to be shared (virsh's --unsafe).
        """
        conn = self.conn
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        if unsafe:
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        dom = self._call("look up %s" % vm_uuid, conn.lookupByUUIDString, vm_uuid)
        try:
            self._call("migrate %s to %s" % (vm_uuid, dest.label), dom.migrate3, dest.conn,
                       {libvirt.VIR_MIGRATE_PARAM_URI: migrate_uri}, flags, timeout=timeout)
        except LibvirtTimeout:
            try:
                self._call("abort the migration of %s" % vm_uuid, dom.abortJob, timeout=min(self.call_timeout, 5.0))
            except LibvirtError:
                pass  # the job may have ended meanwhile
            raise

    def wait_running(self, vm_uuid: str, timeout: float, poll: float = 0.05) -> str:
        """Poll until the domain runs or ``timeout`` passes; return the last state seen."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.domain_state(vm_uuid)
            if state in RUNNING_STATES or time.monotonic() >= deadline:
                return state
            if state in ("shutoff", "crashed", None):
                return state  # it is not going to run by itself
            time.sleep(poll)
