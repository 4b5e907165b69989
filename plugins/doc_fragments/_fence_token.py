# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This doc fragment is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.

from __future__ import annotations


class ModuleDocFragment:
    # Matches FENCE_TOKEN_SPEC in plugins/module_utils/_argspec.py.
    DOCUMENTATION = r"""
options:
  fence_token:
    description:
      - The last look before a power-off, taken by the module itself just before it contacts the power device, so
        that only the device's login and first read lie between the check and the command.
      - The cluster lease (M(kvmha.cluster.cluster_lease)) must still be the O(fence_token.generation) this run
        holds - the fencing token that keeps a controller frozen past its lease from fencing. A lease that moved on
        fails the task with RV(error_kind=lease_lost) and nothing is sent. Not checked in check mode, which holds no
        lease.
      - A maintenance mark on O(fence_token.host) (M(kvmha.cluster.host_mark)) - live, or unreadable - means the
        operator took the host over. Nothing is sent, and the task succeeds with RV(fenced=false) and the reason in
        RV(refused).
      - Only with a power-off. Without it the module powers off whatever it is asked to.
    type: dict
    suboptions:
      store_path:
        description: Path of the shared store as mounted on the controller.
        type: path
        required: true
      cluster:
        description: The cluster whose lease the run holds.
        type: str
        required: true
      owner:
        description: The lease's owner, this run.
        type: str
        required: true
      generation:
        description: The generation of the lease this run holds (the C(lease.generation) that
          M(kvmha.cluster.cluster_lease) returned when it last took or renewed it).
        type: int
        required: true
      host:
        description: The inventory name of the host being fenced, whose maintenance mark is read.
        type: str
        required: true
      deadline_s:
        description: Seconds the two store reads may take together. A store that does not answer in time fails the
          task with RV(error_kind=timeout), and nothing is sent.
        type: float
        default: 10
"""
