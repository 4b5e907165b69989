# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest
from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def run_module(capsys, monkeypatch):
    """Run a module's main() with the given arguments; return its JSON result (``failed`` set on failure)."""
    # A module runs on a target. Once any test of the session has imported controller code (the journal callback's
    # tests do), ansible believes it is the controller and sends module warnings to its display instead of the
    # result: tests reading result["warnings"] would then pass or fail by what else was collected with them.
    monkeypatch.setattr(_internal, "is_controller", False)

    def run(module, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
        args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                module.main()
        return json.loads(capsys.readouterr().out)

    return run
