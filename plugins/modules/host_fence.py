#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_fence
short_description: Fence a host through ordered fence levels (IPMI, Redfish, fence agents), as Pacemaker's topology does
version_added: 0.1.0
description:
  - Powers a host off through its fence O(levels), tried in order. A level is a list of devices; it fences the host
    only when every device of it confirms off (a host fed by two PDUs keeps running while one outlet still feeds it).
    The first device of a level that does not confirm ends that level, and the next level is tried; the first level
    that confirms fences the host, and later levels are not touched.
  - Each device is driven by the backend of M(kvmha.cluster.ipmi_power), M(kvmha.cluster.redfish_power) or
    M(kvmha.cluster.fence_agent_power) with C(state=off) semantics - states compared, off confirmed by O(confirm)
    consecutive reads - so RV(fenced=true) means one level's every device was seen off O(confirm) times in a row.
  - O(deadline_s) bounds the whole; each device run gets the smaller of its own O(devices[].deadline_s) and what is
    left. Levels not reached in time are recorded with the outcome C(deadline).
  - When no level confirms, the run fails with C(error_kind=not_fenced) and RV(levels) carries every level's
    evidence. A host with one IPMI BMC as its only level behaves as M(kvmha.cluster.ipmi_power) with C(state=off).
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
      - Check mode reads every device it reaches and sends no command; only devices already off count as fenced, so
        in check mode the levels are usually all tried, which makes it a readiness check of the whole topology.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A level whose devices are all already off fences without a command.
options:
  levels:
    description:
      - The fence levels in the order they are tried, each a list of names from O(devices), for example
        C([[redfish], [pdu_a, pdu_b]]) (inventory C(kvmha_fence_levels)).
    type: list
    elements: list
    required: true
  devices:
    description:
      - The fence devices the levels name.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The name the levels use.
        type: str
        required: true
      protocol:
        description:
          - V(ipmi) (pyghmi, as M(kvmha.cluster.ipmi_power)), V(redfish) (as M(kvmha.cluster.redfish_power)) or
            V(agent) (a ClusterLabs fence agent, as M(kvmha.cluster.fence_agent_power)).
        type: str
        choices: [ipmi, redfish, agent]
        required: true
      address:
        description: The BMC address (V(ipmi), V(redfish)).
        type: str
      port:
        description: The BMC port; 623 for V(ipmi), 443 for V(redfish) when not given.
        type: int
      username:
        description: The BMC user (V(ipmi), V(redfish)).
        type: str
      password:
        description: The BMC password (V(ipmi), V(redfish)). Never logged.
        type: str
      kg:
        description: The IPMI K_g key (V(ipmi)). Never logged.
        type: str
      system_id:
        description: The Redfish ComputerSystem C(Id), when the BMC has several (V(redfish)).
        type: str
      validate_certs:
        description: Verify the Redfish TLS certificate (V(redfish)); V(false) warns.
        type: bool
        default: true
      ca_path:
        description: CA bundle for the Redfish certificate (V(redfish)).
        type: path
      request_timeout_s:
        description: Deadline of one Redfish HTTP request (V(redfish)).
        type: float
        default: 5.0
      agent:
        description: The fence agent, by name or absolute path (V(agent)).
        type: str
      options:
        description: The agent's options (V(agent)); logged - secrets go in O(devices[].secrets).
        type: dict
        default: {}
      secrets:
        description: The agent's secret options (V(agent)). Never logged, and masked in its output.
        type: dict
        default: {}
      agent_timeout_s:
        description: Deadline of one agent run (V(agent)).
        type: float
        default: 30.0
      deadline_s:
        description:
          - Deadline of this device's whole power-off and confirmation, within the run's O(deadline_s).
          - The old name C(timeout) is deprecated and will be removed in 1.0.0.
        type: float
        default: 10.0
        aliases: [timeout]
  confirm:
    description: Consecutive reads that must show a device off before it counts as confirmed.
    type: int
    default: 2
  poll_interval:
    description: Seconds between two reads of a device while confirming.
    type: float
    default: 0.1
  deadline_s:
    description: Deadline in seconds over all the levels.
    type: float
    default: 60
notes:
  - Run it on the controller (C(delegate_to=localhost)) with C(throttle), like the power modules.
  - Each device runs in a process of its own, killed if it outlives its deadline by half a second, so a device that
    never answered cannot slow the next one down (pyghmi shares one event loop per process, and goes on retrying a
    login it was given up on).
seealso:
  - module: kvmha.cluster.ipmi_power
  - module: kvmha.cluster.redfish_power
  - module: kvmha.cluster.fence_agent_power
"""

EXAMPLES = r"""
- name: Fence through the BMC's Redfish, and through both PDU outlets when the BMC died with the host
  kvmha.cluster.host_fence:
    levels: "{{ kvmha_fence_levels }}"     # [[redfish], [pdu_a, pdu_b]]
    devices:
      - name: redfish
        protocol: redfish
        address: "{{ kvmha_redfish_address }}"
        username: "{{ kvmha_redfish_username }}"
        password: "{{ kvmha_redfish_password }}"
        ca_path: /etc/kvmha/bmc-ca.pem
        deadline_s: 20
      - name: pdu_a
        protocol: agent
        agent: fence_apc_snmp
        options: {ip: pdu-a.oob.example.com, plug: "{{ kvmha_pdu_a_outlet }}"}
        secrets: {community: "{{ vault_pdu_community }}"}
      - name: pdu_b
        protocol: agent
        agent: fence_apc_snmp
        options: {ip: pdu-b.oob.example.com, plug: "{{ kvmha_pdu_b_outlet }}"}
        secrets: {community: "{{ vault_pdu_community }}"}
    deadline_s: 90
  delegate_to: localhost
  register: fence
  ignore_errors: true

- name: Recover only when a level confirmed the host off
  ansible.builtin.group_by:
    key: kvmha_recover
  when: fence.fenced | default(false)
"""

RETURN = r"""
changed:
  description: Whether any device was sent a power-off (in check mode, would have been).
  returned: always
  type: bool
  sample: true
fenced:
  description: True only when one level's every device confirmed off.
  returned: always
  type: bool
  sample: true
level:
  description: The 1-based number of the level that fenced the host, or C(null).
  returned: always
  type: int
  sample: 2
devices:
  description: The devices of the level that fenced the host (empty when none did).
  returned: always
  type: list
  elements: str
  sample: [pdu_a, pdu_b]
power:
  description:
    - What the levels say of the host's power - V(on) when a device's run read it on without an error (this wins),
      else V(off) when a level fenced, else V(unknown). In check mode (nothing is switched) it is the watchdog's status read of a
      host with fence levels.
  returned: always
  type: str
  choices: ["on", "off", unknown]
  sample: "off"
levels:
  description: One record per level, in order - the evidence of every level tried.
  returned: always
  type: list
  elements: dict
  contains:
    level:
      description: The level's 1-based number.
      type: int
    devices:
      description: The level's devices.
      type: list
      elements: str
    outcome:
      description: C(fenced), C(failed) (a device did not confirm), C(deadline) (not reached in time) or C(not_needed)
        (an earlier level fenced).
      type: str
      choices: [fenced, failed, deadline, not_needed]
    attempts:
      description: Each device tried, in order, with its power run's result (C(fenced), C(changed), C(powerstate),
        C(confirmations), C(elapsed)) and, when it failed, C(error_kind) and C(msg).
      type: list
      elements: dict
  sample: [{"level": 1, "devices": [redfish], "outcome": failed,
            "attempts": [{"device": redfish, "protocol": redfish, "fenced": false, "error_kind": unreachable,
                          "msg": "10.2.0.11:443: reading the power state failed: ..."}]},
           {"level": 2, "devices": [pdu_a, pdu_b], "outcome": fenced, "attempts": []}]
elapsed:
  description: Seconds from the start of the run to its end.
  returned: always
  type: float
  sample: 3.2
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
  choices: [invalid_input, missing_library, not_fenced, timeout, store, lease_lost]
  sample: not_fenced
"""

import time

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import FENCE_TOKEN_SPEC, renamed
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import FenceLevelsFailed, InvalidInput, KvmhaError
from ansible_collections.kvmha.cluster.plugins.module_utils._fence_agent import FenceAgentClient
from ansible_collections.kvmha.cluster.plugins.module_utils._fence_levels import power_read, run_levels, validate_levels
from ansible_collections.kvmha.cluster.plugins.module_utils._ipmi import PYGHMI_IMPORT_ERROR, IpmiClient
from ansible_collections.kvmha.cluster.plugins.module_utils._own_process import CHILD_GRACE_S, call_in_own_process
from ansible_collections.kvmha.cluster.plugins.module_utils._power import PowerOperation, fence_token_refusal
from ansible_collections.kvmha.cluster.plugins.module_utils._redfish import RedfishClient

DEVICE_SPEC = {
    "name": {"type": "str", "required": True},
    "protocol": {"type": "str", "choices": ["ipmi", "redfish", "agent"], "required": True},
    "address": {"type": "str"},
    "port": {"type": "int"},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "kg": {"type": "str", "no_log": True},
    "system_id": {"type": "str"},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "request_timeout_s": {"type": "float", "default": 5.0},
    "agent": {"type": "str"},
    "options": {"type": "dict", "default": {}},
    "secrets": {"type": "dict", "default": {}, "no_log": True},
    "agent_timeout_s": {"type": "float", "default": 30.0},
    "deadline_s": renamed({"type": "float", "default": 10.0}, "timeout"),
}
REQUIRED = {"ipmi": ("address", "username"), "redfish": ("address", "username"), "agent": ("agent",)}


ARGUMENT_SPEC = {
    "levels": {"type": "list", "elements": "list", "required": True},
    "devices": {"type": "list", "elements": "dict", "required": True, "options": DEVICE_SPEC},
    "confirm": {"type": "int", "default": 2},
    "poll_interval": {"type": "float", "default": 0.1},
    "deadline_s": {"type": "float", "default": 60},
    **FENCE_TOKEN_SPEC,
}


def make_client(device: dict):
    protocol = device["protocol"]
    if protocol == "ipmi":
        return IpmiClient(address=device["address"], port=device["port"] or 623, username=device["username"],
                          password=device["password"], kg=device["kg"])
    if protocol == "redfish":
        return RedfishClient(address=device["address"], port=device["port"] or 443, username=device["username"],
                             password=device["password"], system_id=device["system_id"],
                             validate_certs=device["validate_certs"], ca_path=device["ca_path"],
                             request_timeout=device["request_timeout_s"])
    return FenceAgentClient(device["agent"], device["options"], device["secrets"],
                            agent_timeout=device["agent_timeout_s"])


class LevelsManager:
    def __init__(self, module: KvmhaModule):
        self.module = module
        params = module.params
        self.devices = {}
        for device in params["devices"]:
            missing = [key for key in REQUIRED[device["protocol"]] if not device[key]]
            if missing:
                raise InvalidInput("fence device %s (%s) needs %s"
                                   % (device["name"], device["protocol"], ", ".join(missing)))
            if device["name"] in self.devices:
                raise InvalidInput("fence device %s is defined twice" % device["name"])
            self.devices[device["name"]] = device
        self.levels = validate_levels(params["levels"], self.devices)

    def fence_device(self, name: str, seconds: float) -> dict:
        device = self.devices[name]
        params = self.module.params
        evidence = {"protocol": device["protocol"]}
        timeout = min(device["deadline_s"], seconds)

        def power_off():
            return PowerOperation(make_client(device), "off", confirm=params["confirm"],
                                  poll_interval=params["poll_interval"], timeout=timeout,
                                  check_mode=self.module.check_mode).run()
        try:
            # Each device in a process of its own: a device that never answered leaves pyghmi retrying its login,
            # and that would slow or stall the next device's BMC in the same process (_own_process.py).
            result = call_in_own_process(power_off, timeout + CHILD_GRACE_S, "fence device %s" % name)
        except KvmhaError as error:
            evidence.update(error.result)
            evidence.update(fenced=False, error_kind=error.kind, msg=error.msg)
            return evidence
        evidence.update(result)
        return evidence

    def run(self) -> dict:
        started = time.monotonic()
        try:
            refused = fence_token_refusal(self.module.params["fence_token"], self.module.check_mode)
        except KvmhaError as error:
            error.result = nothing_sent(started)
            raise
        if refused:
            return dict(nothing_sent(started), refused=refused)
        deadline = started + self.module.params["deadline_s"]
        outcome = run_levels(self.levels, self.fence_device, lambda: max(0.0, deadline - time.monotonic()))
        outcome["changed"] = any(a.get("changed") for r in outcome["levels"] for a in r["attempts"])
        outcome["elapsed"] = round(time.monotonic() - started, 3)
        outcome["power"] = power_read(outcome)
        if not outcome["fenced"]:
            raise FenceLevelsFailed("no fence level confirmed the host off: %s" % summary(outcome["levels"]),
                                    result=outcome)
        return outcome


def nothing_sent(started: float) -> dict:
    """The result of a run that stopped at its fence token, before any device was asked."""
    return {"changed": False, "fenced": False, "level": None, "devices": [], "levels": [], "power": "unknown",
            "elapsed": round(time.monotonic() - started, 3)}


def summary(records: list) -> str:
    parts = []
    for record in records:
        failed = [a for a in record["attempts"] if not a["fenced"]]
        reason = "%s: %s" % (failed[0]["device"], failed[0].get("error_kind", "not confirmed")) if failed else ""
        parts.append("level %d %s%s" % (record["level"], record["outcome"], " (%s)" % reason if reason else ""))
    return "; ".join(parts)


def run(module: KvmhaModule) -> dict:
    if any(device["protocol"] == "ipmi" for device in module.params["devices"]):
        module.require_library("pyghmi", PYGHMI_IMPORT_ERROR)
    if any(device["protocol"] == "redfish" and not device["validate_certs"] for device in module.params["devices"]):
        module.warn("a Redfish fence device has validate_certs false: its TLS certificate is not checked")
    return LevelsManager(module).run()


def main() -> None:
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
