# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The power modules have one shape: the same run options (names, types, defaults, choices) and the same results,
so a playbook can switch a host from one backend to another by the module name and the connection alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import POWER_RUN_SPEC
from ansible_collections.kvmha.cluster.plugins.modules import fence_agent_power, ipmi_power, redfish_power

MODULES = [ipmi_power, redfish_power, fence_agent_power]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_run_options_are_shared_and_documented_alike(module):
    spec = module.ARGUMENT_SPEC
    options = yaml.safe_load(module.DOCUMENTATION)["options"]
    for name, entry in POWER_RUN_SPEC.items():
        assert spec[name] == entry
        assert options[name]["type"] == entry["type"]
        assert options[name].get("default") == entry.get("default")
        assert options[name].get("choices") == entry.get("choices")


def _returned(module) -> dict:
    return yaml.safe_load(module.RETURN)


@pytest.mark.parametrize("module", MODULES[1:], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_results_are_the_same_keys_types_and_choices(module):
    reference, other = _returned(ipmi_power), _returned(module)
    assert set(other) == set(reference)
    for key, doc in reference.items():
        assert other[key]["type"] == doc["type"] and other[key]["returned"] == doc["returned"]
        if key not in ("error_kind", "action"):
            assert other[key].get("choices") == doc.get("choices")
    # A backend may lack an action (agents have no soft off) and adds its own failure kinds; the shared ones mean
    # the same everywhere.
    assert set(other["action"]["choices"]) <= set(reference["action"]["choices"])
    # (missing_library is ipmi_power's own: pyghmi; the other backends need no library)
    assert set(reference["error_kind"]["choices"]) - {"missing_library"} <= set(other["error_kind"]["choices"])


def test_the_power_backends_load_no_ansible():
    """A backend is the protocol and the power state machine, nothing more: it runs as fast in a fresh process as a
    fence agent (benchmarks/fence_backends.py) and can be driven outside a module. The option specs that need
    Ansible's ``env_fallback`` live in ``_argspec``."""
    code = ("import sys\n"
            "from ansible_collections.kvmha.cluster.plugins.module_utils import _fence_agent, _ipmi, _power, _redfish\n"
            "print(sorted(m for m in sys.modules if m == 'ansible' or m.startswith('ansible.')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert run.stdout.strip() == "[]", run.stdout
