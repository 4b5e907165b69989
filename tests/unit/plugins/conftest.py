# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest
import yaml
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
        result = json.loads(capsys.readouterr().out)
        if "error_kind" in result:  # every failure of every test: its kind is one the module documents
            documented = yaml.safe_load(module.RETURN)["error_kind"]["choices"]
            assert result["error_kind"] in documented, "%s returned the undocumented error_kind %r: %s" % (
                module.__name__, result["error_kind"], result.get("msg"))
        return result

    return run
