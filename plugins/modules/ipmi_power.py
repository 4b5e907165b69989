#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ipmi_power
short_description: Read, and fence with confirmation, the chassis power of a host through its BMC (IPMI 2.0 LAN)
version_added: 0.1.0
description:
  - Reads the chassis power state of a host from its BMC, or brings it to O(state=on), O(state=off) (hard power off,
    the fence) or O(state=shutdown) (soft off through ACPI), over IPMI 2.0 LAN (RMCP+) with pyghmi.
  - Compares B(states), not actions. Powering off a chassis that is already off changes nothing and still counts as
    fenced. Power cycle and reset are not offered - a reset host comes back with its VMs, so it is never a fence.
  - After a power command the module reads the power state until O(confirm) consecutive reads show the requested
    state. Only then is the run a success, and only an B(off) confirmed that way sets RV(fenced=true). A read that
    fails or says otherwise resets the count; an unknown state never counts as off.
  - O(deadline_s) is one hard wall-clock deadline over the whole run, login included. It is enforced outside pyghmi,
    whose own retry loop can wait for seconds (about 4.7 s before it reports that nothing answers) or, in some
    cases, forever.
  - Every failure carries RV(error_kind), a message, and the same result keys as a success (with what was learnt before
    the failure).
  - The module never retries a login, so a wrong password fails within milliseconds and cannot lock the BMC user out.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_IPMI
  - kvmha.cluster._attributes.check_mode
  - kvmha.cluster._ipmi
  - kvmha.cluster._fence_token
attributes:
  check_mode:
    support: full
    details:
      - Check mode logs in and reads the power state (and confirms an C(off) chassis, so RV(fenced) can be trusted),
        reports whether a command would be sent, and never sends one.
  diff_mode:
    support: full
    details:
      - The diff is the power state before and after, for example C(powerstate=on) to C(powerstate=off).
  idempotent:
    support: full
    details:
      - O(state=status) never changes anything; O(state=on), O(state=off) and O(state=shutdown) send a command only
        when the chassis is not already in the requested power state.
options:
  state:
    description:
      - V(status) reads the power state and changes nothing.
      - V(off) powers the chassis off at once (Chassis Control "power down"); this is the fence.
      - V(shutdown) asks the operating system to power off (ACPI soft off). The chassis goes off only when the OS obeys,
        which may take long or never happen; give it a long O(deadline_s) and fall back to V(off).
      - V(on) powers the chassis on.
    type: str
    choices: [status, "on", "off", shutdown]
    default: status
  confirm:
    description:
      - How many consecutive reads must show the requested power state before the run counts as done.
      - After a command the first read is immediate and the next ones come every O(poll_interval). A chassis that was
        already in the state counts its first read, so O(confirm=2) then costs one more read.
      - With O(state=status), an C(off) chassis is confirmed the same way before RV(fenced) is set.
    type: int
    default: 2
  poll_interval:
    description:
      - Seconds between two power state reads while confirming (0.01 to 10). A read costs one small UDP exchange.
    type: float
    default: 0.1
  deadline_s:
    description:
      - Hard wall-clock deadline in seconds for the whole run - login, the read, the command and the confirmation
        (more than 0, at most 3600).
      - Without an answer from the BMC the run fails with C(error_kind=timeout) when it runs out, or with
        C(error_kind=unreachable) when pyghmi gives up first (after about 4.7 s).
      - The old name O(timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10
    aliases: [timeout]
notes:
  - Run it where the out-of-band network is reachable, usually the controller (C(delegate_to=localhost)), and use
    C(throttle) to bound how many hosts are fenced at once.
  - One pyghmi session is opened per BMC and per run; the module logs out by ending its process.
  - The only IPMI commands sent are Get Chassis Status and Chassis Control (IPMI 2.0 section 28), as C(ipmitool) and
    C(fence_ipmilan) do; no vendor-specific command is used.
  - A BMC that shares its network port with the host may stop answering as the host powers off; the power off is then
    not confirmed (C(error_kind=confirm_timeout), RV(fenced=false)), as it should be - confirm it later with
    O(state=status).
seealso:
  - module: kvmha.cluster.neighbor_ping
"""

EXAMPLES = r"""
- name: Read the power state of a suspect host's BMC
  kvmha.cluster.ipmi_power:
    address: "{{ kvmha_bmc_address }}"
    port: "{{ kvmha_bmc_port | default(623) }}"
    username: "{{ kvmha_bmc_username }}"
    password: "{{ kvmha_bmc_password }}"
    state: status
    deadline_s: 5
  delegate_to: localhost
  register: bmc

- name: Fence - power off and confirm with three consecutive reads, within 15 seconds
  kvmha.cluster.ipmi_power:
    address: "{{ kvmha_bmc_address }}"
    username: "{{ kvmha_bmc_username }}"
    password: "{{ kvmha_bmc_password }}"
    state: "off"
    confirm: 3
    deadline_s: 15
  delegate_to: localhost
  throttle: 2
  register: fence

- name: Only a confirmed fence lets recovery start
  ansible.builtin.assert:
    that: fence.fenced

- name: Set the BMC connection once for the modules that drive a BMC (password from the environment)
  # The ipmi group, not group/kvmha.cluster.kvmha: that group reaches every module, and the others refuse a username.
  module_defaults:
    group/kvmha.cluster.ipmi:
      username: "{{ kvmha_bmc_username }}"
  environment:
    KVMHA_BMC_PASSWORD: "{{ kvmha_bmc_password }}"
  block:
    - name: Power the host back on after repair
      kvmha.cluster.ipmi_power:
        address: "{{ kvmha_bmc_address }}"
        state: "on"
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
  description: The chassis control command sent (in check mode, the one that would be sent), or C(none).
  returned: always
  type: str
  choices: [none, "on", "off", shutdown]
  sample: "off"
powerstate:
  description: The chassis power state read at the start and at the end of the run.
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
    - True only when this run saw the chassis off in O(confirm) consecutive reads - after powering it off, or because
      it was already off. Never true after a failed or ambiguous read, never true in check mode unless the chassis
      was already off.
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
  description: Seconds from the start of the run (before the login) to its end.
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
  choices: [invalid_input, missing_library, unreachable, auth, timeout, bmc_error, confirm_timeout, store, lease_lost]
  sample: confirm_timeout
diff:
  description: The power state before and after, when run with C(--diff).
  returned: success, in diff mode
  type: dict
  sample: {"before": {"powerstate": "on"}, "after": {"powerstate": "off"}}
"""

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import FENCE_TOKEN_SPEC, IPMI_CONNECTION_SPEC, POWER_RUN_SPEC, merge_specs
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._ipmi import PYGHMI_IMPORT_ERROR, IpmiClient
from ansible_collections.kvmha.cluster.plugins.module_utils._power import run_power


ARGUMENT_SPEC = merge_specs(IPMI_CONNECTION_SPEC, POWER_RUN_SPEC, FENCE_TOKEN_SPEC)


def make_client(params: dict) -> IpmiClient:
    return IpmiClient(
        address=params["address"],
        port=params["port"],
        username=params["username"],
        password=params["password"],
        kg=params["kg"],
    )


def run(module: KvmhaModule) -> dict:
    return run_power(module, make_client)


def main() -> None:
    run_module(ARGUMENT_SPEC, run, libraries=(("pyghmi", PYGHMI_IMPORT_ERROR),))


if __name__ == "__main__":
    main()
