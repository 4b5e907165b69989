#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redfish_power
short_description: Read, and fence with confirmation, the power of a host through its BMC's DMTF Redfish service
version_added: 0.1.0
description:
  - The Redfish twin of M(kvmha.cluster.ipmi_power), with the same run options, the same results and the same
    contract. It reads C(PowerState) of the host's ComputerSystem, or brings it to O(state=on), O(state=off) (the
    fence, C(ResetType=ForceOff)) or O(state=shutdown) (C(GracefulShutdown)) through C(ComputerSystem.Reset).
  - Compares B(states), not actions. Powering off a system that is already off changes nothing and still counts as
    fenced. Restart, power cycle and NMI are not offered - a restarted host comes back with its VMs.
  - After a command the module reads C(PowerState) until O(confirm) consecutive reads show the requested state. Only
    an B(off) confirmed that way sets RV(fenced=true). C(PoweringOff) and C(PoweringOn) read as C(on); a read that
    fails resets the count; an unknown state never counts as off.
  - O(deadline_s) is one hard wall-clock deadline over the whole run; each HTTP request also has its own
    O(request_timeout_s).
  - Every failure carries C(error_kind) - V(unreachable), V(auth), V(tls), V(timeout), V(bmc_error),
    V(confirm_timeout) or V(invalid_input) - a message, and the same result keys as a success.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_REDFISH
  - kvmha.cluster._attributes.check_mode
  - kvmha.cluster._redfish
  - kvmha.cluster._fence_token
attributes:
  check_mode:
    support: full
    details:
      - Check mode reads the power state (and confirms an C(off) system, so RV(fenced) can be trusted), reports whether
        a command would be sent, and never sends one.
  diff_mode:
    support: full
    details:
      - The diff is the power state before and after, for example C(powerstate=on) to C(powerstate=off).
  idempotent:
    support: full
    details:
      - O(state=status) never changes anything; the other states send a command only when the system is not already
        in the requested power state.
options:
  state:
    description:
      - V(status) reads the power state and changes nothing.
      - V(off) powers the system off at once (C(ForceOff)); this is the fence.
      - V(shutdown) asks the operating system to power off (C(GracefulShutdown)); it may take long or never happen.
      - V(on) powers the system on (C(On)).
    type: str
    choices: [status, "on", "off", shutdown]
    default: status
  confirm:
    description:
      - How many consecutive reads must show the requested power state before the run counts as done; as in
        M(kvmha.cluster.ipmi_power).
    type: int
    default: 2
  poll_interval:
    description:
      - Seconds between two power state reads while confirming (0.01 to 10). A read costs one HTTP GET.
    type: float
    default: 0.1
  deadline_s:
    description:
      - Hard wall-clock deadline in seconds for the whole run - discovery, the read, the command and the confirmation.
      - The old name O(timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10
    aliases: [timeout]
notes:
  - Run it where the out-of-band network is reachable, usually the controller (C(delegate_to=localhost)).
  - Many BMCs apply C(ForceOff) a few seconds after they accept it; give O(deadline_s) room for that.
seealso:
  - module: kvmha.cluster.ipmi_power
"""

EXAMPLES = r"""
- name: Fence through Redfish - power off and confirm with two consecutive reads, within 30 seconds
  kvmha.cluster.redfish_power:
    address: "{{ kvmha_redfish_address }}"
    username: "{{ kvmha_redfish_username }}"
    password: "{{ kvmha_redfish_password }}"
    ca_path: /etc/kvmha/bmc-ca.pem
    state: "off"
    deadline_s: 30
  delegate_to: localhost
  register: fence

- name: Only a confirmed fence lets recovery start
  ansible.builtin.assert:
    that: fence.fenced

- name: Read the power state of the second system of a multi-node chassis
  kvmha.cluster.redfish_power:
    address: chassis7-bmc.oob.example.com
    username: fence
    password: "{{ vault_chassis7_password }}"
    system_id: Node2
    state: status
  delegate_to: localhost
"""

RETURN = r"""
changed:
  description: Whether a power command was sent (in check mode, would be sent). On failure, true when a command was
    sent and may have taken effect.
  returned: always
  type: bool
  sample: true
state:
  description: The requested O(state).
  returned: always
  type: str
  sample: "off"
action:
  description: The power command sent (in check mode, the one that would be sent), or C(none).
  returned: always
  type: str
  choices: [none, "on", "off", shutdown]
  sample: "off"
powerstate:
  description: The power state read at the start and at the end of the run.
  returned: always
  type: dict
  contains:
    before:
      description: The first read, or C(unknown) when it could not be made.
      type: str
      choices: ["on", "off", unknown]
      sample: "on"
    after:
      description: The last read (in check mode, the state a real run would reach), or C(unknown) when the last read
        failed or was never made.
      type: str
      choices: ["on", "off", unknown]
      sample: "off"
fenced:
  description:
    - True only when this run saw the system off in O(confirm) consecutive reads. Never true after a failed or
      ambiguous read, never true in check mode unless the system was already off.
  returned: always
  type: bool
  sample: true
confirmations:
  description: Consecutive reads, at the end of the run, that showed the requested power state (for O(state=status),
    the C(off) state).
  returned: always
  type: int
  sample: 2
elapsed:
  description: Seconds from the start of the run to its end.
  returned: always
  type: float
  sample: 0.118
refused:
  description: Why the power-off was not sent although asked for - the host is in maintenance
    (O(fence_token)). Only then; the task succeeds with RV(fenced=false) and nothing changed.
  returned: when the fence token refused the power-off
  type: str
  sample: "h2 is in maintenance (by ops: firmware)"
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
  returned: failure
  type: str
  choices: [unreachable, auth, tls, timeout, bmc_error, confirm_timeout, invalid_input, store, lease_lost]
  sample: tls
diff:
  description: The power state before and after, when run with C(--diff).
  returned: success, in diff mode
  type: dict
  sample: {"before": {"powerstate": "on"}, "after": {"powerstate": "off"}}
"""

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import FENCE_TOKEN_SPEC, POWER_RUN_SPEC, REDFISH_CONNECTION_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._power import run_power
from ansible_collections.kvmha.cluster.plugins.module_utils._redfish import RedfishClient

INSECURE_WARNING = ("validate_certs is false: the BMC's TLS certificate is not checked, so anyone on the path can "
                    "take the Redfish credentials and answer for the BMC (a forged Off starts a live host's VMs twice)")


ARGUMENT_SPEC = merge_specs(REDFISH_CONNECTION_SPEC, POWER_RUN_SPEC, FENCE_TOKEN_SPEC)


def make_client(params: dict) -> RedfishClient:
    return RedfishClient(
        address=params["address"],
        port=params["port"],
        username=params["username"],
        password=params["password"],
        system_id=params["system_id"],
        validate_certs=params["validate_certs"],
        ca_path=params["ca_path"],
        request_timeout=params["request_timeout_s"],
    )


def run(module: KvmhaModule) -> dict:
    if not module.params["validate_certs"]:
        module.warn(INSECURE_WARNING)
    return run_power(module, make_client)


def main() -> None:
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
