# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This doc fragment is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.

from __future__ import annotations


class ModuleDocFragment:
    # Matches LIBVIRT_CONNECTION_SPEC in plugins/module_utils/_argspec.py.
    DOCUMENTATION = r"""
options:
  connect_timeout_s:
    description:
      - Hard deadline in seconds for opening one libvirt connection.
      - libvirt's own limits are far longer (a dead TCP peer ~14.5 s, over SSH ~134 s, both measured), so a host
        whose libvirtd does not answer within this time is treated as unreachable.
      - Connection URIs come from the inventory variable C(kvmha_libvirt_uri), for example
        C(qemu+tls://h2.example.org/system?pkipath=/etc/kvmha/pki) or C(qemu+ssh://kvmha@h2/system). The C(ext)
        transport and the C(command)/C(netcat) URI parameters are refused, as they name commands to run; C(socket)
        and C(pkipath) must be absolute paths. C(no_verify=1) (and C(known_hosts_verify=ignore)) is accepted with a
        warning, as the host's identity is then not checked.
      - The old name O(connect_timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10.0
    aliases: [connect_timeout]
  call_timeout_s:
    description:
      - Hard deadline in seconds for every single libvirt call (list, define, start, state).
      - A call that misses it is abandoned and its effect is treated as unknown.
      - The old name O(call_timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10.0
    aliases: [call_timeout]
"""
