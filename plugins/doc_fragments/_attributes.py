# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This doc fragment is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.

from __future__ import annotations


class ModuleDocFragment:
    # Every kvmha.cluster module.
    DOCUMENTATION = r"""
options: {}
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
"""

    # Action groups (meta/runtime.yml): one per shared option set (store_path, the BMC connection, the libvirt
    # connection). There is no group of every module: no option is shared by all of them, and modules refuse options
    # they do not have, so module_defaults through such a group could only break tasks.
    ACTIONGROUP_STORE = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/kvmha.cluster.store) in C(module_defaults) to set O(store_path) once for every module that reads the store.
    support: full
    membership:
      - kvmha.cluster.store
"""

    ACTIONGROUP_IPMI = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/kvmha.cluster.ipmi) in C(module_defaults) to set the BMC connection options once.
    support: full
    membership:
      - kvmha.cluster.ipmi
"""

    ACTIONGROUP_REDFISH = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/kvmha.cluster.redfish) in C(module_defaults) to set the Redfish connection options once.
    support: full
    membership:
      - kvmha.cluster.redfish
"""

    ACTIONGROUP_LIBVIRT = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/kvmha.cluster.libvirt) in C(module_defaults) to set the libvirt options once.
    support: full
    membership:
      - kvmha.cluster.libvirt
"""

    ACTIONGROUP_STORE_LIBVIRT = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/kvmha.cluster.store) or C(group/kvmha.cluster.libvirt) in C(module_defaults) to set shared options once.
    support: full
    membership:
      - kvmha.cluster.store
      - kvmha.cluster.libvirt
"""

    # Read-only modules: check mode runs them in full, there is never a diff.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module never changes anything, so check mode runs it in full.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff mode).
    support: N/A
    details: The module never changes anything.
  idempotent:
    description: When run twice in a row outside check mode with the same arguments, the second invocation indicates no change.
    support: full
"""

    # Attribute descriptions for modules that change things (each module states its own support level).
    CHECK_MODE = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff mode).
  idempotent:
    description: When run twice in a row outside check mode with the same arguments, the second invocation indicates no change.
"""
