# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# It is plain standard-library Python, so the heartbeat writer can ship it to hypervisors unchanged.
"""The collection's exception hierarchy.

Backends raise these; modules turn them into ``fail_json`` in exactly one place (``_common.KvmhaModule.run``).
``kind`` is a short machine-readable classification that playbooks can branch on; ``result`` carries partial
results that belong in the failure (e.g. the power state read before a fence timed out).
"""

from __future__ import annotations


class KvmhaError(Exception):
    """Base class of every error the collection raises on purpose."""

    kind = "error"

    def __init__(self, msg: str, result: dict | None = None, kind: str | None = None):
        super().__init__(msg)
        self.msg = msg
        self.result = dict(result or {})
        if kind is not None:
            self.kind = kind

    def __str__(self) -> str:
        return self.msg


class InvalidInput(KvmhaError):
    """An argument or a document from outside is malformed (host name, policy, XML, ...)."""

    kind = "invalid_input"


class DeadlineExceeded(KvmhaError):
    """An external call did not finish within its own deadline."""

    kind = "timeout"


class StoreError(KvmhaError):
    """The shared store cannot be read or written."""

    kind = "store"


class PolicyError(InvalidInput):
    """The decision policy is invalid (unknown key, bad value, malformed custom rule)."""

    kind = "policy"


class BmcError(KvmhaError):
    """A BMC could not be driven. ``kind`` is one of unreachable, auth, timeout, bmc_error."""

    kind = "bmc_error"


class BmcUnreachable(BmcError):
    kind = "unreachable"


class BmcAuthError(BmcError):
    kind = "auth"


class BmcTimeout(BmcError):
    kind = "timeout"


class BmcTlsError(BmcError):
    """The BMC's TLS certificate is not trusted, or the TLS handshake failed."""

    kind = "tls"


class PowerStateMismatch(BmcError):
    """The chassis did not reach the requested power state in time."""

    kind = "confirm_timeout"


class FenceLevelsFailed(KvmhaError):
    """No fence level confirmed the host off; ``result`` carries every level's evidence."""

    kind = "not_fenced"


class LibvirtError(KvmhaError):
    """A libvirt connection or call failed."""

    kind = "libvirt"


class PeerError(KvmhaError):
    """A probe of a peer (ping, ssh) could not be run at all."""

    kind = "peer"
