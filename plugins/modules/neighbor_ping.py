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
    seconds until O(count) replies came back or its own O(deadline_s) passed, and reports per target whether any reply
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
        came back or O(deadline_s) passed, so a silent target gets up to O(deadline_s) / O(interval) requests.
    type: int
    default: 3
  interval:
    description:
      - Seconds between two echo requests to one target (0.01 to 10). iputils lets only root go below 0.002 s.
    type: float
    default: 0.2
  deadline_s:
    description:
      - Whole seconds the run pings at most (1 to 60) - every target at once, each with C(ping -w). A C(ping) process
        is also interrupted if it runs 2 s past it, and killed 1 s later, so a run lasts at most O(deadline_s) + 3 s.
      - The old name O(deadline) is deprecated and will be removed in 1.0.0.
    type: int
    default: 2
    aliases: [deadline]
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
    deadline_s: 2
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
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
    - No ping was sent in either case.
  returned: failure
  type: str
  choices: [invalid_input, peer]
  sample: invalid_input
"""

import socket
import time

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import renamed
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._ping import (
    PingProbe,
    aggregate,
    find_ping,
    validate_settings,
    validate_targets,
)


ARGUMENT_SPEC = {
    "targets": {"type": "list", "elements": "str", "required": True, "aliases": ["target"]},
    "count": {"type": "int", "default": 3},
    "interval": {"type": "float", "default": 0.2},
    "deadline_s": renamed({"type": "int", "default": 2}, "deadline"),
}


def run(module: KvmhaModule) -> dict:
    started = time.monotonic()
    params = module.params
    # Everything is checked before anything runs.
    targets = validate_targets(params["targets"])
    validate_settings(params["count"], params["interval"], params["deadline_s"])
    ping = find_ping(module.get_bin_path)
    pings = PingProbe(ping, count=params["count"], interval=params["interval"], deadline=params["deadline_s"]).run(targets)
    result = {"changed": False, "ran_on": socket.gethostname(), "pings": pings}
    result.update(aggregate(pings))
    result["elapsed"] = round(time.monotonic() - started, 3)
    return result


def main() -> None:
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
