# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This doc fragment is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.

from __future__ import annotations


class ModuleDocFragment:
    # Matches STORE_SPEC in plugins/module_utils/_argspec.py.
    DOCUMENTATION = r"""
options:
  store_path:
    description:
      - Path of the shared store as mounted where the module runs (the same path on every hypervisor and observer).
      - The collection keeps its files under C(<store_path>/kvmha/) - heartbeats in C(hosts/), domain XML in C(vms/),
        VM claims, the cluster lease, fenced and maintenance marks.
    type: path
    required: true
"""
