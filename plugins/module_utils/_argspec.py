# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Argument specs shared by several modules. Each constant has exactly one matching doc fragment."""

from __future__ import annotations

import copy

# plugins/doc_fragments/_store.py
STORE_SPEC = {
    "store_path": {"type": "path", "required": True},
}


def merge_specs(*specs: dict) -> dict:
    """A fresh argument spec from shared constants and the module's own options (later ones win)."""
    merged: dict = {}
    for spec in specs:
        merged.update(copy.deepcopy(spec))
    return merged
