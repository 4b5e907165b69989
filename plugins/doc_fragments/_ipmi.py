# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This doc fragment is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.

from __future__ import annotations


class ModuleDocFragment:
    # Matches IPMI_CONNECTION_SPEC in plugins/module_utils/_argspec.py.
    DOCUMENTATION = r"""
options:
  address:
    description:
      - Address of the BMC on the out-of-band network (IPv4, IPv6 or a DNS name); the inventory contract calls it
        C(kvmha_bmc_address).
      - The BMC is spoken to with IPMI 2.0 over LAN (RMCP+, UDP) from the host the task runs on.
    type: str
    required: true
    aliases: [bmc_address]
  port:
    description:
      - UDP port of the BMC (C(kvmha_bmc_port)).
    type: int
    default: 623
  username:
    description:
      - BMC user name (C(kvmha_bmc_username)), at most 16 bytes. Chassis power control needs the operator or the
        administrator privilege; the session asks for administrator and falls back to operator when the BMC refuses.
      - The user name is not treated as a secret.
    type: str
    required: true
    aliases: [user]
  password:
    description:
      - BMC password (C(kvmha_bmc_password)); keep it in a vault or the environment. It is never logged.
      - When not given, the environment variable E(KVMHA_BMC_PASSWORD) is used, then E(IPMI_PASSWORD)
        (the variable C(ipmitool -E) reads).
    type: str
    required: true
  kg:
    description:
      - The BMC key (K_g) for BMCs configured with one, as a plain string. Without it the password is used as the key,
        as the IPMI 2.0 specification says. Never logged.
    type: str
notes:
  - The session is set up by pyghmi. With an IPMI 2.0 BMC it asks for cipher suite 17 (HMAC-SHA256, AES-128) first and
    for suite 3 (HMAC-SHA1, AES-128) when the BMC refuses it; suites without authentication, integrity or encryption
    (0, 1, 2) are never used, and there is no option to force one. A BMC that only speaks IPMI 1.5 is driven with
    MD5 authentication and no encryption; put such a BMC on a trusted out-of-band network only.
  - A wrong user name or password fails at once (a single login attempt, no retry), with C(error_kind=auth).
requirements:
  - pyghmi (Python library, on the host the task runs on)
"""
