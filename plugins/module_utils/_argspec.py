# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Argument specs shared by several modules, and the collection's option vocabulary.

Each shared constant has exactly one matching doc fragment.

Option names follow one rule for time limits, in seconds: ``<what>_timeout_s`` bounds one external call (one
libvirt call, one read or write on the store), ``deadline_s`` bounds the module's whole operation. Options renamed
to follow it keep their old names as deprecated aliases (``renamed``) until ``REMOVED_IN``.
"""

from __future__ import annotations

import copy

from ansible.module_utils.basic import env_fallback

from ._power import STATES as POWER_STATES

# plugins/doc_fragments/_store.py
STORE_SPEC = {
    "store_path": {"type": "path", "required": True},
}

# plugins/doc_fragments/_ipmi.py (inventory contract: kvmha_bmc_address, kvmha_bmc_port, kvmha_bmc_username,
# kvmha_bmc_password). Only the secrets are no_log; a user name is not a secret.
IPMI_CONNECTION_SPEC = {
    "address": {"type": "str", "required": True, "aliases": ["bmc_address"]},
    "port": {"type": "int", "default": 623},
    "username": {"type": "str", "required": True, "aliases": ["user"]},
    "password": {
        "type": "str",
        "required": True,
        "no_log": True,
        "fallback": (env_fallback, ["KVMHA_BMC_PASSWORD", "IPMI_PASSWORD"]),
    },
    "kg": {"type": "str", "no_log": True},
}

COLLECTION = "kvmha.cluster"
# The release that drops the deprecated option names (the old timeout names).
REMOVED_IN = "1.0.0"


def renamed(spec: dict, *old_names: str) -> dict:
    """``spec`` of an option that was renamed: its ``old_names`` stay as deprecated aliases until ``REMOVED_IN``."""
    return dict(spec, aliases=list(old_names),
                deprecated_aliases=[{"name": name, "version": REMOVED_IN, "collection_name": COLLECTION} for name in old_names])


# plugins/doc_fragments/_redfish.py (inventory contract: kvmha_redfish_address, kvmha_redfish_port, ...). The same
# names as IPMI_CONNECTION_SPEC where the meaning is the same, so a host's BMC can move from one to the other.
REDFISH_CONNECTION_SPEC = {
    "address": {"type": "str", "required": True, "aliases": ["bmc_address"]},
    "port": {"type": "int", "default": 443},
    "username": {"type": "str", "required": True, "aliases": ["user"]},
    "password": {
        "type": "str",
        "required": True,
        "no_log": True,
        "fallback": (env_fallback, ["KVMHA_BMC_PASSWORD", "REDFISH_PASSWORD"]),
    },
    "system_id": {"type": "str"},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "request_timeout_s": {"type": "float", "default": 5.0},
}

# The run options every power module has, with the same names, types and defaults (each module documents them in
# its own words; tests/unit/plugins/modules/test_power_modules.py keeps the modules in one shape).
POWER_RUN_SPEC = {
    "state": {"type": "str", "choices": list(POWER_STATES), "default": "status"},
    "confirm": {"type": "int", "default": 2},
    "poll_interval": {"type": "float", "default": 0.1},
    "deadline_s": renamed({"type": "float", "default": 10}, "timeout"),
}

# plugins/doc_fragments/_fence_token.py
FENCE_TOKEN_SPEC = {
    # A fencing token is a lease's generation, not a secret (validate-modules guesses by the name).
    "fence_token": {"type": "dict", "no_log": False, "options": {
        "store_path": {"type": "path", "required": True},
        "cluster": {"type": "str", "required": True},
        "owner": {"type": "str", "required": True},
        "generation": {"type": "int", "required": True},
        "host": {"type": "str", "required": True},
        "deadline_s": {"type": "float", "default": 10.0},
    }},
}

# plugins/doc_fragments/_libvirt.py
LIBVIRT_CONNECTION_SPEC = {
    "connect_timeout_s": renamed({"type": "float", "default": 10.0}, "connect_timeout"),
    "call_timeout_s": renamed({"type": "float", "default": 10.0}, "call_timeout"),
}


def merge_specs(*specs: dict) -> dict:
    """A fresh argument spec from shared constants and the module's own options (later ones win)."""
    merged: dict = {}
    for spec in specs:
        merged.update(copy.deepcopy(spec))
    return merged
