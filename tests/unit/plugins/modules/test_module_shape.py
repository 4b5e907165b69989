# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One module shape and one option vocabulary.

- Every module has the same skeleton: ``ARGUMENT_SPEC``, ``run(module)``, and a ``main()`` that is one
  ``run_module`` call (plugins/module_utils/_common.py).
- Time limits are named by one rule: ``<what>_timeout_s`` for one external call, ``deadline_s`` for the whole
  operation. Renamed options keep their old names as deprecated aliases, which still work and say so.
- A module option that a policy setting drives (the playbooks pass the setting) has the policy's default.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re

import pytest
import yaml

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import COLLECTION, REMOVED_IN
from ansible_collections.kvmha.cluster.plugins.module_utils._placement import place
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import default_policy
from ansible_collections.kvmha.cluster.plugins.modules import (
    cluster_lease,
    fence_agent_power,
    ha_vm,
    ha_vm_info,
    host_drain,
    host_mark,
    host_mark_info,
    ipmi_power,
    kvm_heartbeat,
    neighbor_ping,
    redfish_power,
    vm_disk_activity,
    vm_evacuate,
    vm_reconcile,
)
from ansible_collections.kvmha.cluster.tests.unit.plugins.modules.every_module import MODULES, name


def options(module) -> dict:
    """The module's documented options, those of its doc fragments included."""
    doc = yaml.safe_load(module.DOCUMENTATION)
    found = dict(doc["options"])
    for fragment in doc.get("extends_documentation_fragment", []):
        parts = fragment.split(".")  # kvmha.cluster._libvirt or kvmha.cluster._attributes.CHECK_MODE
        source = importlib.import_module("ansible_collections.kvmha.cluster.plugins.doc_fragments." + parts[2])
        text = getattr(source.ModuleDocFragment, parts[3].upper() if len(parts) > 3 else "DOCUMENTATION")
        found.update(yaml.safe_load(text).get("options") or {})
    return found


def spec(module) -> dict:
    return module.ARGUMENT_SPEC


# ------------------------------------------------------------------------------------------------ the skeleton


@pytest.mark.parametrize("module", MODULES, ids=name)
def test_every_module_has_the_one_skeleton(module):
    assert isinstance(module.ARGUMENT_SPEC, dict) and module.ARGUMENT_SPEC
    assert list(inspect.signature(module.run).parameters) == ["module"]
    main = ast.parse(inspect.getsource(module.main)).body[0]
    assert len(main.body) == 1, "main() is one run_module call"
    call = main.body[0].value
    assert isinstance(call, ast.Call) and call.func.id == "run_module"
    assert [a.id for a in call.args] == ["ARGUMENT_SPEC", "run"]
    tree = ast.parse(inspect.getsource(module))
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert "argument_spec" not in defined  # the spec is the ARGUMENT_SPEC constant, not a function beside it


# ------------------------------------------------------------------------------------------------ option names


@pytest.mark.parametrize("module", MODULES, ids=name)
def test_time_limits_follow_the_naming_rule(module):
    for option in spec(module):
        if "timeout" in option:
            assert option.endswith("_timeout_s"), "%s: %s" % (name(module), option)
        if "deadline" in option:
            assert option == "deadline_s", "%s: %s" % (name(module), option)


@pytest.mark.parametrize("module", MODULES, ids=name)
def test_renamed_options_keep_their_old_names_as_deprecated_aliases(module):
    documented = options(module)
    for option, entry in spec(module).items():
        assert sorted(entry.get("aliases", [])) == sorted(documented[option].get("aliases", [])), option
        for alias in entry.get("deprecated_aliases", []):
            assert alias == {"name": alias["name"], "version": REMOVED_IN, "collection_name": COLLECTION}
            assert alias["name"] in entry["aliases"]
            text = " ".join(documented[option]["description"])  # a list in every module
            assert "O(%s) is deprecated and will be removed in %s" % (alias["name"], REMOVED_IN) in text


# Arguments that fail at once on invalid input, before anything is read, written or run.
FAIL_FAST = {
    host_mark_info: lambda tmp: {"store_path": tmp, "hosts": ["../x"]},
    ipmi_power: lambda tmp: {"address": "192.0.2.10", "username": "admin", "password": "s3cr3t-pw", "port": 70000},
    kvm_heartbeat: lambda tmp: {"store_path": tmp, "poll": 0},
    neighbor_ping: lambda tmp: {"targets": ["-f"]},
    vm_disk_activity: lambda tmp: {"store_path": tmp, "hosts": ["../x"]},
    vm_evacuate: lambda tmp: {"store_path": tmp, "failed_hosts": ["../x"]},
    vm_reconcile: lambda tmp: {"store_path": tmp, "uri": "qemu+ext:///x", "host": "h1"},
    redfish_power: lambda tmp: {"address": "127.0.0.1", "username": "admin", "password": "s3cr3t-pw", "port": 70000},
    fence_agent_power: lambda tmp: {"agent": "fence_ipmilan", "agent_timeout_s": 0},
    ha_vm: lambda tmp: {"uri": "qemu+ext:///x", "name": "x"},
    ha_vm_info: lambda tmp: {"uri": "qemu+ext:///x"},
    host_drain: lambda tmp: {"store_path": tmp, "host": "h1", "uri": "qemu+ext:///x", "targets": []},
}
OLD_NAMES = [(module, option, alias["name"]) for module in MODULES for option, entry in spec(module).items()
             for alias in entry.get("deprecated_aliases", [])]


def test_every_module_with_an_old_name_is_tried():
    assert {module for module, _option, _alias in OLD_NAMES} == set(FAIL_FAST)


@pytest.mark.parametrize("module, option, alias", OLD_NAMES, ids=["%s-%s" % (name(m), a) for m, _o, a in OLD_NAMES])
def test_an_old_name_still_works_and_says_it_is_deprecated(run_module, tmp_path, module, option, alias):
    value = 2 if spec(module)[option]["type"] == "int" else 2.5
    result = run_module(module, dict(FAIL_FAST[module](str(tmp_path)), **{alias: value}))
    assert result["failed"] is True and result["error_kind"] == "invalid_input"  # the value was taken, the input refused
    assert result["invocation"]["module_args"][option] == value
    said = [d for d in result.get("deprecations", []) if "Alias '%s' is deprecated" % alias in str(d)]
    assert said and said[0]["version"] == REMOVED_IN and COLLECTION in str(said[0])


# ------------------------------------------------------------------------------------------------ defaults


# policy setting -> the module options it stands for: same defaults. The playbooks pass the setting to most of them;
# the mark and lease modules' deadline_s take the policy's store_timeout_s by default.
DRIVEN_BY_POLICY = {
    "placement_strategy": [(vm_evacuate, "strategy")],
    "recover_parallel": [(vm_evacuate, "parallel")],
    "recover_retry_s": [(vm_evacuate, "retry_s")],
    "recover_retry_max_s": [(vm_evacuate, "retry_max_s")],
    "spare_hosts": [(vm_evacuate, "spare_hosts")],
    "libvirt_timeout_s": [(vm_evacuate, "connect_timeout_s"), (vm_evacuate, "call_timeout_s"),
                          (vm_reconcile, "connect_timeout_s"), (vm_reconcile, "call_timeout_s")],
    "store_timeout_s": [(kvm_heartbeat, "store_timeout_s"), (vm_disk_activity, "store_timeout_s"),
                        (vm_evacuate, "store_timeout_s"), (vm_reconcile, "store_timeout_s"),
                        (host_mark_info, "deadline_s"), (host_mark, "deadline_s"), (cluster_lease, "deadline_s")],
    "heartbeat_misses": [(kvm_heartbeat, "misses")],
    "poll_s": [(kvm_heartbeat, "poll")],
    "skew_allowance_s": [(kvm_heartbeat, "skew_allowance")],
    "activity_window_s": [(vm_disk_activity, "window")],
    "probe_timeout_s": [(neighbor_ping, "deadline_s")],
    "fence_confirm": [(ipmi_power, "confirm")],
    "lease_ttl_s": [(cluster_lease, "ttl")],
}
# Deliberately not the policy's default, and why.
NOT_DRIVEN = {
    (kvm_heartbeat, "watch"): "watch_s: a module call reads once unless it is asked to watch",
    (ipmi_power, "deadline_s"): "probe_timeout_s (a status read) and fence_timeout_s (a fence) both drive it",
}


@pytest.mark.parametrize("setting", sorted(DRIVEN_BY_POLICY))
def test_module_defaults_are_the_policys(setting):
    for module, option in DRIVEN_BY_POLICY[setting]:
        assert spec(module)[option].get("default") == default_policy()[setting], "%s %s" % (name(module), option)
        assert options(module)[option].get("default") == default_policy()[setting], "%s %s" % (name(module), option)


def test_the_placement_default_is_the_policys_everywhere():
    vms = [{"uuid": str(i), "name": "v%d" % i, "priority": 50, "memory_mib": 64, "vcpus": 1, "group": ""} for i in range(4)]
    hosts = [{"host": "h2", "mem_free_mib": 1000, "vcpus_free": 8}, {"host": "h3", "mem_free_mib": 1000, "vcpus_free": 8}]
    assert place(vms, hosts) == place(vms, hosts, strategy=default_policy()["placement_strategy"])


def test_not_driven_options_differ_for_a_reason():
    for (module, option), why in NOT_DRIVEN.items():
        assert option in spec(module) and why


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
CALL = re.compile(r"^(\s*)kvmha\.cluster\.(\w+):\s*$")
OPTION = re.compile(r"^(\s*)(\w+):")


def _module_calls(path):
    """(line number, module, option) for every option of every kvmha.cluster module task (or module_defaults entry)."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    module, indent = None, 0
    for number, line in enumerate(lines, 1):
        call = CALL.match(line)
        if call:
            module, indent = call.group(2), len(call.group(1))
            continue
        option = OPTION.match(line)
        if module and line.strip() and len(line) - len(line.lstrip()) <= indent:
            module = None
        elif module and option and len(option.group(1)) == indent + 2:
            yield number, module, option.group(2)


def test_playbooks_roles_and_examples_use_the_new_option_names():
    old = {name(m): {a["name"] for entry in spec(m).values() for a in entry.get("deprecated_aliases", [])} for m in MODULES}
    found, used = [], 0
    for top in ("playbooks", "roles", "examples", "extensions", os.path.join("tests", "integration")):
        for directory, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for file_name in files:
                if file_name.endswith((".yml", ".yaml")):
                    path = os.path.join(directory, file_name)
                    for number, module, option in _module_calls(path):
                        used += 1
                        if option in old.get(module, ()):
                            found.append("%s:%d %s %s" % (os.path.relpath(path, ROOT), number, module, option))
    assert used > 100 and not found, found
