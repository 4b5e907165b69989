#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mgmt_probe
short_description: Ask hosts' SSH servers over the management network whether they answer - a TCP connection and the banner
version_added: 0.1.0
description:
  - Opens a TCP connection to every target at once and waits for the SSH server's identification line
    (C(SSH-2.0-...), RFC 4253). Each target gets at most O(attempts) connections (one SYN each), each given
    O(deadline_s) seconds to bring the line, so a host that does not answer costs O(attempts) x O(deadline_s), not a
    task timeout. Only silence (a timeout or a network error) is asked again; a refusal is an answer.
  - Meant to run on the controller (C(delegate_to=localhost)) against a suspect hypervisor's management address,
    before a login is tried - the watchdog logs in (C(ansible.builtin.ping)) only where the banner came, so a dead
    host costs its probe deadline and an ordinary C(ok) result, not a failed task.
  - B(Like a ping, it can only prove "up".) A banner shows that the host's kernel and SSH server answer. No banner
    proves nothing - the path, a firewall or the controller may be at fault - so RV(probes[].reachable=false) is
    I(unknown) evidence, never proof that a host is dead. An unanswered target is a normal result, not a failure.
  - Every target is validated before anything is sent (an IP literal or an RFC 1123 host name). A name is resolved
    by the system's resolver, which the deadline does not bound.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.info_module
options:
  targets:
    description:
      - Management addresses to ask - IP literals or host names. Duplicates are asked once. At most 256.
    type: list
    elements: str
    required: true
    aliases: [target]
  port:
    description:
      - TCP port of the SSH server (1 to 65535), the same for every target.
    type: int
    default: 22
  attempts:
    description:
      - Connections opened at most per target (1 to 5), one after the other, each after the previous one timed out.
    type: int
    default: 2
  deadline_s:
    description:
      - Seconds each connection has, from the SYN to the identification line (0.05 to 60). The watchdog gives each
        attempt half of the policy's C(probe_timeout_s), so the whole probe stays within it.
    type: float
    default: 1.0
notes:
  - Always runs in check mode, since it only observes. Needs no privileges (a plain TCP connection).
seealso:
  - module: kvmha.cluster.neighbor_ping
"""

EXAMPLES = r"""
- name: Does the suspect's SSH server answer? (from the controller, within the policy's probe deadline)
  kvmha.cluster.mgmt_probe:
    targets: ["{{ hostvars[inventory_hostname].ansible_host | default(inventory_hostname) }}"]
    port: "{{ hostvars[inventory_hostname].ansible_port | default(22) }}"
    attempts: 2
    deadline_s: 1.0
  delegate_to: localhost
  register: banner

- name: A banner proves the SSH server is up; silence is only unknown
  ansible.builtin.debug:
    msg: "{{ banner.reachable_targets }} answered; {{ banner.unreachable_targets }} did not (not proof of death)"
"""

RETURN = r"""
changed:
  description: Always false - the module only observes.
  returned: always
  type: bool
  sample: false
probes:
  description: One entry per distinct target, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description: The target as given.
      type: str
      sample: 198.51.100.71
    port:
      description: The port asked.
      type: int
      sample: 22
    reachable:
      description: True when the SSH server sent its identification line. False is unknown, not proof of death.
      type: bool
      sample: true
    answer:
      description:
        - How the last attempt ended - C(banner) (the identification line came), C(refused) (the connection was
          refused or reset - a kernel answers, no SSH server does), C(no_banner) (the server closed the connection or
          sent no identification line), C(timeout) (no answer within O(deadline_s)), C(error) (another network
          error, in RV(probes[].error)).
      type: str
      choices: [banner, refused, no_banner, timeout, error]
      sample: banner
    banner:
      description: The server's identification line, or null.
      type: str
      sample: SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3
    attempts:
      description: Connections opened.
      type: int
      sample: 1
    error:
      description: Why the last attempt brought no banner, or null.
      type: str
      sample: timed out
    elapsed:
      description: Seconds this target took, every attempt included.
      type: float
      sample: 0.004
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
    - Nothing was sent.
  returned: failure
  type: str
  choices: [invalid_input]
  sample: invalid_input
"""

import time

from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._ping import aggregate
from ansible_collections.kvmha.cluster.plugins.module_utils._reach import probe_all


ARGUMENT_SPEC = {
    "targets": {"type": "list", "elements": "str", "required": True, "aliases": ["target"]},
    "port": {"type": "int", "default": 22},
    "attempts": {"type": "int", "default": 2},
    "deadline_s": {"type": "float", "default": 1.0},
}


def run(module: KvmhaModule) -> dict:
    started = time.monotonic()
    params = module.params
    probes = probe_all(params["targets"], params["port"], params["attempts"], params["deadline_s"])
    result = {"changed": False, "probes": probes}
    result.update(aggregate(probes))
    result["elapsed"] = round(time.monotonic() - started, 3)
    return result


def main() -> None:
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
