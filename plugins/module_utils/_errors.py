# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# It is plain standard-library Python, so the heartbeat writer can ship it to hypervisors unchanged.
"""The collection's error vocabulary: one closed set of error kinds, and the exception classes that carry them.

Backends raise these; modules turn them into ``fail_json`` in exactly one place (``_common.KvmhaModule.run``),
with the error's kind as ``error_kind``. ``result`` carries partial results that belong in the failure (e.g. the
power state read before a fence timed out).

- ``ErrorKind`` is the closed set: every ``error_kind`` a module returns, and every ``vms[].error_kind`` of
  vm_evacuate, is one of its values. ``MEANINGS`` says what each one means; the modules' RETURN docs are tested
  against it (tests/unit/plugins/modules/test_error_kinds.py).
- Each exception class has exactly one kind, its ``kind`` attribute (``KIND_OF`` lists the mapping). A class never
  carries another class's kind: a bad argument is ``InvalidInput`` wherever it is found, never a ``StoreError`` with
  an ``invalid_input`` label. The one exception to "kind follows class" is wrapping: an error raised *because of*
  another one may keep its cause's kind (``kind=cause.kind``), and that kind must still be an ``ErrorKind``.
"""

from __future__ import annotations

import enum


class ErrorKind(str, enum.Enum):
    """Every error kind of the collection. Members are strings, equal to their values."""

    # --- the input
    INVALID_INPUT = "invalid_input"
    POLICY = "policy"
    MISSING_LIBRARY = "missing_library"
    # --- time
    TIMEOUT = "timeout"
    # --- the shared store
    STORE = "store"
    CONFLICT = "conflict"
    INVALID_DOCUMENT = "invalid_document"
    INVALID_OWED = "invalid_owed"
    LEASE_HELD = "lease_held"
    LEASE_LOST = "lease_lost"
    INCOMPLETE = "incomplete"
    # --- BMCs
    UNREACHABLE = "unreachable"
    AUTH = "auth"
    BMC_ERROR = "bmc_error"
    TLS = "tls"
    CONFIRM_TIMEOUT = "confirm_timeout"
    NOT_FENCED = "not_fenced"
    # --- libvirt
    LIBVIRT = "libvirt"
    CONNECTION = "connection"
    NO_DOMAIN = "no_domain"
    # --- peers
    PEER = "peer"
    # --- one VM's recovery (vm_evacuate's vms[].error_kind only)
    CLAIM = "claim"
    DUPLICATE = "duplicate"
    NOT_RUNNING = "not_running"
    UNKNOWN = "unknown"
    # --- the hypervisor side (the boot guard's own work; never a module's)
    BOOT_GUARD = "boot_guard"
    # --- the base class's kind: a bug when seen (every error the collection raises has a more specific one)
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


# What each kind means, in the words the modules' RETURN docs use (a unit test keeps them in step).
MEANINGS = {
    ErrorKind.INVALID_INPUT: "an argument, or a document from outside (policy, evidence, XML, record), is malformed;"
                             " nothing was changed because of it",
    ErrorKind.POLICY: "the decision policy is invalid (unknown key, bad value, malformed custom rule)",
    ErrorKind.MISSING_LIBRARY: "a Python library the task needs is not installed where it runs",
    ErrorKind.TIMEOUT: "an external call (the store, a BMC, libvirt) did not answer within its deadline; its effect is"
                       " unknown",
    ErrorKind.STORE: "the shared store cannot be read or written",
    ErrorKind.CONFLICT: "another writer changed a document on the store first (compare-and-replace lost)",
    ErrorKind.INVALID_DOCUMENT: "a document on the store is not valid (hand-edited, foreign, truncated, oversized)",
    ErrorKind.INVALID_OWED: "an owed-recovery document cannot be trusted; its host needs an operator",
    ErrorKind.LEASE_HELD: "another owner holds the cluster lease",
    ErrorKind.LEASE_LOST: "the cluster lease this run held moved on, so the run stopped acting",
    ErrorKind.INCOMPLETE: "recovery is incomplete - an owed VM still runs nowhere",
    ErrorKind.UNREACHABLE: "the BMC or libvirtd could not be reached (no answer, no route, connection refused)",
    ErrorKind.AUTH: "the BMC refused the credentials or the privilege",
    ErrorKind.BMC_ERROR: "the BMC answered with an error",
    ErrorKind.TLS: "the BMC's TLS certificate is not trusted, or the TLS handshake failed",
    ErrorKind.CONFIRM_TIMEOUT: "the chassis did not reach the requested power state in time",
    ErrorKind.NOT_FENCED: "no fence level confirmed the host off (every level's evidence is in the result)",
    ErrorKind.LIBVIRT: "libvirt refused a call",
    ErrorKind.CONNECTION: "the libvirt connection broke during a call",
    ErrorKind.NO_DOMAIN: "the libvirt domain does not exist",
    ErrorKind.PEER: "a probe of a peer (ping) cannot be run at all",
    ErrorKind.CLAIM: "the VM's claim on the store forbids starting it",
    ErrorKind.DUPLICATE: "the VM is active on more than one host",
    ErrorKind.NOT_RUNNING: "the VM was started but is not seen running",
    ErrorKind.UNKNOWN: "the outcome of a start or of a live migration is unknown",
    ErrorKind.BOOT_GUARD: "the boot guard could not do its local work (list the libvirt definitions, remove a link)",
    ErrorKind.ERROR: "an error without a more specific kind (a bug)",
}


class KvmhaError(Exception):
    """Base class of every error the collection raises on purpose."""

    kind = ErrorKind.ERROR

    def __init__(self, msg: str, result: dict | None = None, kind: ErrorKind | str | None = None):
        super().__init__(msg)
        self.msg = msg
        self.result = dict(result or {})
        # A plain string (JSON-ready), always a member of the closed set: ErrorKind() refuses anything else.
        self.kind = ErrorKind(type(self).kind if kind is None else kind).value

    def __str__(self) -> str:
        return self.msg


# --------------------------------------------------------------------------------------------------- input


class InvalidInput(KvmhaError):
    """An argument or a document from outside is malformed (host name, policy, XML, ...)."""

    kind = ErrorKind.INVALID_INPUT


class PolicyError(InvalidInput):
    """The decision policy is invalid (unknown key, bad value, malformed custom rule)."""

    kind = ErrorKind.POLICY


class MissingLibrary(KvmhaError):
    """A Python library the task needs (jmespath, pyghmi, libvirt-python) is not installed."""

    kind = ErrorKind.MISSING_LIBRARY


class DeadlineExceeded(KvmhaError):
    """An external call did not finish within its own deadline."""

    kind = ErrorKind.TIMEOUT


# --------------------------------------------------------------------------------------------------- the store


class StoreError(KvmhaError):
    """The shared store cannot be read or written."""

    kind = ErrorKind.STORE


class InvalidStoreInput(InvalidInput, StoreError):
    """A bad argument to a store operation (a document name, an owner, a ttl, data that is no JSON or too large).

    Invalid input by kind; a ``StoreError`` too, so that a caller handling any failure of a store call handles it.
    """

    kind = ErrorKind.INVALID_INPUT


class Conflict(StoreError):
    """The document exists already (create) or is no longer at the expected generation (replace).

    ``current`` is the document as read right after the conflict (``None`` if it could not be read).
    """

    kind = ErrorKind.CONFLICT

    def __init__(self, msg: str, current=None):
        super().__init__(msg)
        self.current = current


class InvalidDocument(StoreError):
    """The current generation of a document is not a valid document (hand-edited, foreign, oversized ...)."""

    kind = ErrorKind.INVALID_DOCUMENT

    def __init__(self, msg: str, name: str = "", generation: int = 0):
        super().__init__(msg)
        self.name = name
        self.generation = generation


class InvalidOwed(StoreError):
    """An owed document cannot be trusted (hand-edited, truncated, foreign). Its host needs an operator."""

    kind = ErrorKind.INVALID_OWED


class LeaseHeld(KvmhaError):
    """Another owner holds the cluster lease."""

    kind = ErrorKind.LEASE_HELD


class LeaseLost(KvmhaError):
    """The lease this run held moved on (expired and taken over, or released): it must not act any more."""

    kind = ErrorKind.LEASE_LOST


class RecoveryIncomplete(KvmhaError):
    """An owed VM still runs nowhere at the end of a recovery call (vm_evacuate's fail_on_incomplete)."""

    kind = ErrorKind.INCOMPLETE


# --------------------------------------------------------------------------------------------------- BMCs


class BmcError(KvmhaError):
    """A BMC could not be driven: it answered with an error (the subclasses say more)."""

    kind = ErrorKind.BMC_ERROR


class BmcUnreachable(BmcError):
    kind = ErrorKind.UNREACHABLE


class BmcAuthError(BmcError):
    kind = ErrorKind.AUTH


class BmcTimeout(BmcError):
    kind = ErrorKind.TIMEOUT


class BmcTlsError(BmcError):
    """The BMC's TLS certificate is not trusted, or the TLS handshake failed."""

    kind = ErrorKind.TLS


class PowerStateMismatch(BmcError):
    """The chassis did not reach the requested power state in time."""

    kind = ErrorKind.CONFIRM_TIMEOUT


# --------------------------------------------------------------------------------------------------- libvirt


class FenceLevelsFailed(KvmhaError):
    """No fence level confirmed the host off; ``result`` carries every level's evidence."""

    kind = ErrorKind.NOT_FENCED


class LibvirtError(KvmhaError):
    """libvirt refused a call (the subclasses say more)."""

    kind = ErrorKind.LIBVIRT


class LibvirtUnreachable(LibvirtError):
    """The connection to libvirtd could not be opened."""

    kind = ErrorKind.UNREACHABLE


class LibvirtTimeout(LibvirtError):
    """A libvirt call did not return within its deadline: its effect is unknown."""

    kind = ErrorKind.TIMEOUT


class LibvirtConnectionLost(LibvirtError):
    """The connection broke during a call (RPC or remote errors, a closed socket), or there is none."""

    kind = ErrorKind.CONNECTION


class DomainNotFound(LibvirtError):
    kind = ErrorKind.NO_DOMAIN


class LibvirtMissing(LibvirtError, MissingLibrary):
    """The libvirt Python bindings are not installed (a ``LibvirtError`` too, so libvirt callers handle it)."""

    kind = ErrorKind.MISSING_LIBRARY


class MigrationUnknown(LibvirtError):
    """After a live migration a VM is active on both hosts or on neither (host_drain): a human must look."""

    kind = ErrorKind.UNKNOWN


# --------------------------------------------------------------------------------------------------- peers


class PeerError(KvmhaError):
    """A probe of a peer (ping, ssh) could not be run at all."""

    kind = ErrorKind.PEER


# --------------------------------------------------------------------------------------------------- range checks


def check_range(name: str, value, minimum=None, maximum=None, exclusive_minimum: bool = False, unit: str = "",
                error=InvalidInput):
    """Return ``value`` if it lies within the bounds, else raise ``error`` naming ``name`` and the bounds in words.

    The one range check of the collection (module options, policy settings, client settings). ``minimum`` is
    inclusive unless ``exclusive_minimum``; ``maximum`` is always inclusive; ``None`` is no bound.
    """
    if not in_range(value, minimum, maximum, exclusive_minimum):
        raise error("%s must be %s%s, got %s" % (name, bounds_in_words(minimum, maximum, exclusive_minimum),
                                                 " " + unit if unit else "", _shown(value)))
    return value


def in_range(value, minimum=None, maximum=None, exclusive_minimum: bool = False) -> bool:
    """Whether ``value`` lies within the bounds. Written so that NaN is within none."""
    above = minimum is None or (value > minimum if exclusive_minimum else value >= minimum)
    return above and (maximum is None or value <= maximum)


def bounds_in_words(minimum=None, maximum=None, exclusive_minimum: bool = False) -> str:
    low, high = _shown(minimum), _shown(maximum)
    if maximum is None:
        if minimum == 0:
            return "positive" if exclusive_minimum else "zero or more"
        return ("more than %s" if exclusive_minimum else "at least %s") % low
    if minimum is None:
        return "at most %s" % high
    return ("more than %s and at most %s" if exclusive_minimum else "between %s and %s") % (low, high)


def _shown(number) -> str:
    return "%g" % number if isinstance(number, float) else str(number)


def error_classes() -> list:
    """Every exception class of the collection, the base first."""
    found, pending = [], [KvmhaError]
    while pending:
        cls = pending.pop(0)
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


# The one mapping class -> kind (each class's ``kind`` attribute, gathered).
KIND_OF = {cls: ErrorKind(cls.kind) for cls in error_classes()}
