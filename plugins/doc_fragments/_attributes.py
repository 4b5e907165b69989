# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This doc fragment is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.

from __future__ import annotations


class ModuleDocFragment:
    # Every kvmha.cluster module: runs where Ansible runs modules, is in the kvmha action group.
    DOCUMENTATION = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/kvmha.cluster.kvmha) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - kvmha.cluster.kvmha
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
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
