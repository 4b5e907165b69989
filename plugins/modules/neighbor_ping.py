#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: neighbor_ping
short_description: Ping one or more addresses from a neighbour host, in parallel (CloudStack's PingTestCommand)
version_added: 0.1.0
description:
  - Runs the system's C(ping) (iputils) against every target at once, each sending an echo request every O(interval)
    seconds until O(count) replies came back or its own O(deadline) passed, and reports per target whether any reply
    came back, the loss and the round-trip times, plus an aggregate.
  - Meant to run on a live neighbour of a suspect hypervisor with C(delegate_to), pinging the suspect's
    private/storage address (C(kvmha_private_ip)), so the probe travels a path that does not involve the controller.
  - B(A ping can only prove "up".) A reply shows that a kernel answers at that address (even a host whose VMs and
    services are dead may answer). No reply proves nothing - the path, a firewall, the neighbour itself or a full
    queue can be at fault - so RV(pings[].reachable=false) is I(unknown) evidence, never proof that a host is dead.
  - Every target is validated before anything runs - an IPv4 or IPv6 literal, or an RFC 1123 host name whose last
    label is not numeric - so a bad target is a clear error and no ping is sent.
  - A target that cannot be pinged at all (no route, a name that does not resolve) is reported with
    RV(pings[].error); the module fails only when the input is invalid or C(ping) cannot be run.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_KVMHA
  - kvmha.cluster._attributes.info_module
options:
  targets:
    description:
      - Addresses to ping - IP literals (an IPv6 link-local address may carry a zone, C(fe80::1%eth0)) or host names.
        Duplicates are pinged once. At most 256.
    type: list
    elements: str
    required: true
    aliases: [target]
  count:
    description:
      - Replies wanted per target (1 to 100). C(ping) sends an echo request every O(interval) until this many replies
        came back or O(deadline) passed, so a silent target gets up to O(deadline) / O(interval) requests.
    type: int
    default: 3
  interval:
    description:
      - Seconds between two echo requests to one target (0.01 to 10). iputils lets only root go below 0.002 s.
    type: float
    default: 0.2
  deadline:
    description:
      - Whole seconds a target is pinged at most (1 to 60), passed to C(ping -w). The C(ping) process is also
        interrupted if it runs 2 s past it, and killed 1 s later, so a run lasts at most O(deadline) + 3 s.
    type: int
    default: 2
notes:
  - Needs iputils C(ping) on the host the task runs on (Debian C(iputils-ping)); without it the module fails and
    runs nothing. Replies are counted by C(ping) itself, so C(ping) must be allowed to send ICMP (root,
    C(cap_net_raw), or C(net.ipv4.ping_group_range)).
  - Always runs in check mode, since it only observes.
seealso:
  - module: kvmha.cluster.ipmi_power
"""

EXAMPLES = r"""
- name: Ask two live neighbours whether the suspect's private address answers
  kvmha.cluster.neighbor_ping:
    targets: "{{ hostvars[suspect].kvmha_private_ip }}"
    count: 3
    interval: 0.2
    deadline: 2
  delegate_to: "{{ item }}"
  loop: "{{ live_neighbours[:2] }}"
  register: neighbour_pings

- name: One neighbour pings several hosts at once
  kvmha.cluster.neighbor_ping:
    targets:
      - 198.51.100.71
      - 198.51.100.72
      - h3.private.example
  register: ping

- name: Any answer proves a kernel is up; silence is only unknown
  ansible.builtin.debug:
    msg: "{{ ping.reachable_targets }} answered; {{ ping.unreachable_targets }} gave no answer (not proof of death)"
"""

RETURN = r"""
changed:
  description: Always false - the module only observes.
  returned: always
  type: bool
  sample: false
ran_on:
  description: Host name of the machine that ran the pings - check it to be sure the probe really ran on the
    neighbour and not on the controller.
  returned: always
  type: str
  sample: h2
pings:
  description: One entry per distinct target, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description: The target as given.
      type: str
      sample: 198.51.100.71
    reachable:
      description: True when at least one echo reply came back. False is unknown, not proof of death.
      type: bool
      sample: true
    transmitted:
      description: Echo requests sent.
      type: int
      sample: 3
    received:
      description: Distinct echo replies received.
      type: int
      sample: 3
    duplicates:
      description: Duplicate replies.
      type: int
      sample: 0
    errors:
      description: ICMP errors received instead of replies (for example "destination host unreachable").
      type: int
      sample: 0
    loss_percent:
      description: Packet loss as C(ping) computed it (100 when nothing could be sent).
      type: float
      sample: 0.0
    rtt_min_ms:
      description: Minimum round-trip time in milliseconds, or null without replies.
      type: float
      sample: 0.031
    rtt_avg_ms:
      description: Average round-trip time in milliseconds, or null without replies.
      type: float
      sample: 0.042
    rtt_max_ms:
      description: Maximum round-trip time in milliseconds, or null without replies.
      type: float
      sample: 0.055
    rtt_mdev_ms:
      description: Mean deviation of the round-trip time in milliseconds, or null without replies.
      type: float
      sample: 0.009
    rc:
      description: Exit status of C(ping) - 0 all requested replies came, 1 fewer (or none), 2 an error.
      type: int
      sample: 0
    error:
      description: Why the target could not be pinged properly (C(ping)'s own message, or a note that it had to be
        interrupted), or null.
      type: str
      sample: "ping: connect: Network is unreachable"
    elapsed:
      description: Seconds from the start of the run until this target's C(ping) ended.
      type: float
      sample: 0.412
any_reachable:
  description: True when at least one target answered.
  returned: always
  type: bool
  sample: true
all_reachable:
  description: True when every target answered.
  returned: always
  type: bool
  sample: false
reachable_count:
  description: Number of targets that answered.
  returned: always
  type: int
  sample: 1
unreachable_count:
  description: Number of targets that did not answer (unknown, not dead).
  returned: always
  type: int
  sample: 1
reachable_targets:
  description: The targets that answered, in the order given.
  returned: always
  type: list
  elements: str
  sample: [198.51.100.71]
unreachable_targets:
  description: The targets that did not answer, in the order given.
  returned: always
  type: list
  elements: str
  sample: [198.51.100.72]
elapsed:
  description: Seconds the whole module run took.
  returned: always
  type: float
  sample: 2.013
error_kind:
  description: Why the module failed - C(invalid_input) for a bad target or setting, C(peer) when C(ping) cannot be
    run. No ping was sent in either case.
  returned: failure
  type: str
  sample: invalid_input
"""

import socket
import time

from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule
from ansible_collections.kvmha.cluster.plugins.module_utils._ping import (
    PingProbe,
    aggregate,
    find_ping,
    validate_settings,
    validate_targets,
)


def argument_spec() -> dict:
    return {
        "targets": {"type": "list", "elements": "str", "required": True, "aliases": ["target"]},
        "count": {"type": "int", "default": 3},
        "interval": {"type": "float", "default": 0.2},
        "deadline": {"type": "int", "default": 2},
    }


class PingManager:
    def __init__(self, module: KvmhaModule, probe_class=None):
        self.module = module
        self.probe_class = probe_class or PingProbe

    def run(self) -> dict:
        started = time.monotonic()
        params = self.module.params
        # Everything is checked before anything runs.
        targets = validate_targets(params["targets"])
        validate_settings(params["count"], params["interval"], params["deadline"])
        ping = find_ping(self.module.get_bin_path)
        probe = self.probe_class(ping, count=params["count"], interval=params["interval"], deadline=params["deadline"])
        pings = probe.run(targets)
        result = {"changed": False, "ran_on": socket.gethostname(), "pings": pings}
        result.update(aggregate(pings))
        result["elapsed"] = round(time.monotonic() - started, 3)
        return result


def main() -> None:
    module = KvmhaModule(argument_spec=argument_spec(), supports_check_mode=True)
    module.run(lambda: PingManager(module).run())


if __name__ == "__main__":
    main()
