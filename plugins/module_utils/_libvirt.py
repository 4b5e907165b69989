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

Domain XML read from the shared store is input from outside: ``parse_domain_xml`` caps its size, refuses
DTDs and entity declarations (no entity expansion at all), and checks that it describes the expected UUID.
"""

from __future__ import annotations

import math
import os
import re
import stat
import time
import uuid as uuidlib
from urllib.parse import parse_qsl, urlsplit
from xml.etree import ElementTree

from ._deadline import call_with_deadline
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
MAX_XML_BYTES = 1024 * 1024
# Transports that only open a connection. "ext" runs an arbitrary local command: refused.
TRANSPORTS = ("", "unix", "ssh", "libssh", "libssh2", "tls", "tcp")
# URI parameters that name commands to run locally or on the remote host: refused.
FORBIDDEN_PARAMS = ("command", "netcat")
_DRIVER = re.compile(r"^[a-z][a-z0-9]*$")

DOMAIN_STATES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff", 6: "crashed",
                 7: "pmsuspended"}
RUNNING_STATES = ("running", "blocked")

_UNITS = {
    "b": 1, "bytes": 1, "kb": 1000, "k": 1024, "kib": 1024, "mb": 1000 ** 2, "m": 1024 ** 2, "mib": 1024 ** 2,
    "gb": 1000 ** 3, "g": 1024 ** 3, "gib": 1024 ** 3, "tb": 1000 ** 4, "t": 1024 ** 4, "tib": 1024 ** 4,
}


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
        if key.lower() == "socket" and not value.startswith("/"):
            raise InvalidInput("libvirt URI %s: the socket parameter must be an absolute path" % shown)
    return uri


# --------------------------------------------------------------------------------------------------- domain XML


def _memory_mib(element) -> int | None:
    if element is None or element.text is None:
        return None
    try:
        amount = int(element.text.strip())
    except ValueError:
        raise InvalidInput("<memory> is not an integer: %r" % element.text.strip()[:40]) from None
    unit = (element.get("unit") or "KiB").lower()
    if unit not in _UNITS or amount < 0:
        raise InvalidInput("<memory> has an unknown unit %r or a negative amount" % element.get("unit"))
    return int(math.ceil(amount * _UNITS[unit] / float(1024 ** 2)))


def parse_domain_xml(text, expected_uuid: str | None = None, max_bytes: int = MAX_XML_BYTES) -> dict:
    """Validate domain XML from outside and return ``{"uuid", "name", "type", "memory_mib", "vcpus"}``.

    Refuses oversized documents, any DTD or entity declaration (so nothing can be expanded), XML that is not a
    ``<domain>``, and a UUID that differs from ``expected_uuid``. Raises ``InvalidInput`` with the reason.
    """
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise InvalidInput("domain XML is %d bytes, more than the %d-byte limit" % (len(text), max_bytes))
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("domain XML is not UTF-8") from None
    if not isinstance(text, str):
        raise InvalidInput("domain XML must be text")
    if len(text.encode("utf-8")) > max_bytes:
        raise InvalidInput("domain XML is more than the %d-byte limit" % max_bytes)
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise InvalidInput("domain XML contains a DTD or an entity declaration; refused")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as err:
        raise InvalidInput("domain XML is malformed: %s" % err) from None
    if root.tag != "domain":
        raise InvalidInput("domain XML has root element <%s>, expected <domain>" % str(root.tag)[:40])
    dom_type = root.get("type")
    if not dom_type:
        raise InvalidInput("domain XML has no type attribute")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise InvalidInput("domain XML has no <name>")
    raw_uuid = (root.findtext("uuid") or "").strip()
    if not raw_uuid:
        raise InvalidInput("domain XML has no <uuid>")
    try:
        found = str(uuidlib.UUID(raw_uuid))
    except ValueError:
        raise InvalidInput("domain XML has an invalid <uuid> %r" % raw_uuid[:40]) from None
    if expected_uuid is not None and found != str(uuidlib.UUID(expected_uuid)):
        raise InvalidInput("domain XML describes UUID %s, expected %s" % (found, expected_uuid))
    vcpus = None
    vcpu = root.find("vcpu")
    if vcpu is not None and vcpu.text is not None:
        try:
            vcpus = int(vcpu.text.strip())
        except ValueError:
            raise InvalidInput("<vcpu> is not an integer: %r" % vcpu.text.strip()[:40]) from None
    return {"uuid": found, "name": name, "type": dom_type, "memory_mib": _memory_mib(root.find("memory")), "vcpus": vcpus}


def read_domain_xml(path: str, expected_uuid: str, max_bytes: int = MAX_XML_BYTES) -> tuple:
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

        self._conn = self._call("connect", connect, timeout=self.connect_timeout, error_class=LibvirtUnreachable)
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
