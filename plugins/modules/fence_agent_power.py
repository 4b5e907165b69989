#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: fence_agent_power
short_description: Read, and fence with confirmation, a host's power through any installed ClusterLabs fence agent
version_added: 0.1.0
description:
  - Drives a fence agent of the ClusterLabs C(fence-agents) package (C(fence_ipmilan), C(fence_redfish), C(fence_idrac),
    C(fence_ilo*), C(fence_apc_snmp), C(fence_raritan), C(fence_ifmib), ...) through its standard stdin protocol - one
    C(key=value) per line - with the run options and results of M(kvmha.cluster.ipmi_power).
  - Before anything else the agent's C(action=metadata) is read and the options are checked against it - an unknown
    option name or a missing required one fails with C(error_kind=invalid_input) before the device is touched.
  - C(action=status) reads the power (exit 0 on, 2 off); C(action=off) is the fence; C(action=on) powers on.
    C(reboot) is never sent (a reset is never a fence), and there is no soft off (O(state=shutdown) is refused).
  - After a command O(confirm) consecutive C(status) runs must report off before RV(fenced=true); the agent's own
    wait for the off (its C(power_timeout)) comes first and is not trusted alone.
  - Each agent run has its own deadline, O(agent_timeout_s), within the run's O(deadline_s); at either the agent and
    everything it started (its process group) is killed. When C(status) or C(off) fail, C(action=monitor) is run
    once to tell an unreachable device (C(error_kind=unreachable)) from one that answers but fails (V(bmc_error)).
  - The agent's output is kept in the failure message, its last 1500 characters, with every value of O(secrets)
    replaced by C(********).
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.check_mode
  - kvmha.cluster._fence_token
attributes:
  check_mode:
    support: full
    details:
      - Check mode runs C(metadata) and C(status) (and confirms an C(off) device), reports whether C(off) or C(on) would
        be sent, and never sends it.
  diff_mode:
    support: full
    details:
      - The diff is the power state before and after, for example C(powerstate=on) to C(powerstate=off).
  idempotent:
    support: full
    details:
      - O(state=status) changes nothing; O(state=off) and O(state=on) run the agent's action only when the device does
        not already report that state.
options:
  agent:
    description:
      - The fence agent, by name (C(fence_ipmilan), looked up in C(/usr/sbin), C(/sbin), C(/usr/local/sbin), C(/usr/bin))
        or by absolute path.
    type: str
    required: true
  options:
    description:
      - The agent's options, as its metadata names them (C(fence_ipmilan -o metadata)), for example C(ip), C(username),
        C(lanplus), C(plug). Booleans become C(1)/C(0).
      - C(action) is set by the module. Secrets go in O(secrets), never here (this option is logged).
    type: dict
    default: {}
  secrets:
    description:
      - The agent's secret options, for example C(password) or C(snmp_priv_passwd), as a dict. Never logged, and
        masked in the agent output the module returns.
    type: dict
    default: {}
  agent_timeout_s:
    description:
      - Deadline in seconds for one agent run. Agents wait for the device themselves (C(fence_ipmilan) polls up to its
        C(power_timeout), 20 s by default, after C(off)); keep this above that wait, and O(deadline_s) above it too.
    type: float
    default: 30
  state:
    description:
      - V(status) runs C(action=status) and changes nothing.
      - V(off) runs C(action=off); this is the fence.
      - V(on) runs C(action=on).
      - V(shutdown) is refused with C(error_kind=invalid_input), because fence agents have no soft off. It is a
        choice only so that every power module takes the same options.
    type: str
    choices: [status, "on", "off", shutdown]
    default: status
  confirm:
    description:
      - How many consecutive C(status) runs must report the requested state before the run counts as done.
    type: int
    default: 2
  poll_interval:
    description:
      - Seconds between two C(status) runs while confirming (0.01 to 10).
    type: float
    default: 0.1
  deadline_s:
    description:
      - Hard wall-clock deadline in seconds for the whole run - metadata, status, the action and the confirmation.
      - The old name O(timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10
    aliases: [timeout]
notes:
  - Run it where the fence device is reachable, usually the controller (C(delegate_to=localhost)), with the
    C(fence-agents) package installed there.
  - An agent is a process per run, so every C(status) costs an interpreter start and a login to the device; a fence
    through C(fence_ipmilan) takes about ten times as long as through M(kvmha.cluster.ipmi_power) (docs/BENCHMARKS.md).
    Use the agents for the devices the native modules do not speak (PDUs, vendor controllers).
seealso:
  - module: kvmha.cluster.ipmi_power
  - module: kvmha.cluster.redfish_power
"""

EXAMPLES = r"""
- name: Fence through a switched PDU outlet (APC, SNMP v3)
  kvmha.cluster.fence_agent_power:
    agent: fence_apc_snmp
    options:
      ip: pdu-a.oob.example.com
      plug: 7
      snmp_version: "3"
      username: fence
      snmp_sec_level: authPriv
      snmp_auth_prot: SHA
      snmp_priv_prot: AES
    secrets:
      password: "{{ vault_pdu_auth_password }}"
      snmp_priv_passwd: "{{ vault_pdu_priv_password }}"
    state: "off"
    deadline_s: 60
  delegate_to: localhost
  register: fence

- name: Read the power through fence_ipmilan
  kvmha.cluster.fence_agent_power:
    agent: fence_ipmilan
    options: {ip: "{{ kvmha_bmc_address }}", username: "{{ kvmha_bmc_username }}", lanplus: true}
    secrets: {password: "{{ kvmha_bmc_password }}"}
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
  description: The agent action sent (in check mode, the one that would be sent), or C(none).
  returned: always
  type: str
  choices: [none, "on", "off"]
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
    - True only when this run saw the device report off (C(action=status) exit 2) in O(confirm) consecutive reads. Never true after a failed or
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
  choices: [unreachable, auth, timeout, bmc_error, confirm_timeout, invalid_input, store, lease_lost]
  sample: unreachable
diff:
  description: The power state before and after, when run with C(--diff).
  returned: success, in diff mode
  type: dict
  sample: {"before": {"powerstate": "on"}, "after": {"powerstate": "off"}}
"""

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import FENCE_TOKEN_SPEC, POWER_RUN_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._fence_agent import FenceAgentClient
from ansible_collections.kvmha.cluster.plugins.module_utils._power import run_power


ARGUMENT_SPEC = merge_specs(
    {
        "agent": {"type": "str", "required": True},
        "options": {"type": "dict", "default": {}},
        "secrets": {"type": "dict", "default": {}, "no_log": True},
        "agent_timeout_s": {"type": "float", "default": 30.0},
    },
    POWER_RUN_SPEC,
    FENCE_TOKEN_SPEC,
)


def make_client(params: dict) -> FenceAgentClient:
    return FenceAgentClient(params["agent"], params["options"], params["secrets"],
                            agent_timeout=params["agent_timeout_s"])


def run(module: KvmhaModule) -> dict:
    return run_power(module, make_client)


def main() -> None:
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
