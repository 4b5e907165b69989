# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This doc fragment is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.

from __future__ import annotations


class ModuleDocFragment:
    # Matches REDFISH_CONNECTION_SPEC in plugins/module_utils/_argspec.py.
    DOCUMENTATION = r"""
options:
  address:
    description:
      - Host name or IP address of the BMC's Redfish service (C(kvmha_redfish_address)), without C(https://).
      - The service is spoken to over HTTPS from the host the task runs on.
    type: str
    required: true
    aliases: [bmc_address]
  port:
    description:
      - TCP port of the Redfish service (C(kvmha_redfish_port)).
    type: int
    default: 443
  username:
    description:
      - Redfish user name (C(kvmha_redfish_username)). Resetting a ComputerSystem needs the C(ConfigureComponents)
        privilege (the standard Operator and Administrator roles have it). Not treated as a secret.
    type: str
    required: true
    aliases: [user]
  password:
    description:
      - Redfish password (C(kvmha_redfish_password)); keep it in a vault or the environment. It is never logged.
      - When not given, the environment variable E(KVMHA_BMC_PASSWORD) is used, then E(REDFISH_PASSWORD).
    type: str
    required: true
  system_id:
    description:
      - The C(Id) of the ComputerSystem to drive (the last part of C(/redfish/v1/Systems/<Id>)).
      - Needed only when the BMC lists more than one system; with one system and no O(system_id) that system is
        used, with several the run fails with C(error_kind=invalid_input) rather than guess.
    type: str
  validate_certs:
    description:
      - Verify the BMC's TLS certificate and host name (against the system's trust store, or O(ca_path)).
      - Set V(false) only for a BMC whose self-signed certificate cannot be replaced; the module then warns on every
        run, because anyone on the path can then take the credentials and answer for the BMC - and a forged "Off"
        makes a live host's VMs start twice.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM file of the CA certificates that sign the BMCs' certificates, used instead of the system's trust store.
    type: path
  request_timeout_s:
    description:
      - Deadline in seconds for one HTTP request (connect, TLS handshake, request and the whole answer), within the
        run's O(timeout). A BMC that accepts the connection and never answers fails with C(error_kind=timeout).
    type: float
    default: 5.0
notes:
  - Authentication is HTTP Basic on each request over the verified TLS connection (no Redfish session is created,
    so none is left behind by a run that times out). One connection is kept alive through the run.
  - Only C(GET) of the ComputerSystem and C(POST) of its C(ComputerSystem.Reset) action with C(ResetType)
    C(ForceOff), C(On) or C(GracefulShutdown) are sent (DMTF DSP0268). C(ForceRestart), C(PowerCycle) and C(Nmi)
    never are.
requirements:
  - Python standard library only (http.client, ssl) on the host the task runs on.
"""
