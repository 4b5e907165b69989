# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One error vocabulary: the closed set of error kinds, the class -> kind mapping, and every module's RETURN.

- Every kind the code names (a class's ``kind``, a ``kind=`` argument) is an ``ErrorKind``; an unknown one is
  refused when the error is made.
- Every module documents ``error_kind`` in its RETURN with the kinds it can return as ``choices``.
- Each documented kind is produced here through the module's ``main()``, most from a real cause (a store path that
  is a file, a hung read, a bad argument). The modules' own tests add the rest: their ``run_module`` fixture fails
  any test in which a module returns a kind it does not document.
"""

from __future__ import annotations

import ast
import os
import re
import time

import pytest
import yaml

from ansible_collections.kvmha.cluster.plugins.module_utils import _errors, _ipmi, _power, _storefile
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import KIND_OF, MEANINGS, ErrorKind
from ansible_collections.kvmha.cluster.plugins.module_utils._domainxml import HA_NAMESPACE
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import (
    build_record,
    encode_record,
    record_path,
    store_dir,
    write_atomic,
)
from ansible_collections.kvmha.cluster.plugins.modules import (
    cluster_info,
    cluster_lease,
    fence_agent_power,
    ha_vm,
    ha_vm_info,
    host_drain,
    host_fence,
    host_investigate,
    host_mark,
    host_mark_info,
    ipmi_power,
    kvm_heartbeat,
    mgmt_probe,
    neighbor_ping,
    redfish_power,
    vm_disk_activity,
    vm_evacuate,
    vm_reconcile,
)
from ansible_collections.kvmha.cluster.tests.unit.plugins.modules.every_module import MODULES, name
from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.ipmi_fake import FakeSession
from ansible_collections.kvmha.cluster.tests._require import require_module
from pyghmi import exceptions as pyghmi_exceptions

libvirt = require_module("libvirt", "the venv's libvirt binding (libvirt-python, built by scripts/setup.sh)")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
# Kinds that never reach a module's error_kind: one VM's outcome in vm_evacuate's vms[], the boot guard's own,
# lease_held (cluster_lease answers acquired=false instead of failing), and the base class's (a bug).
NOT_A_MODULE_KIND = {ErrorKind.CLAIM, ErrorKind.DUPLICATE, ErrorKind.NOT_RUNNING,
                     ErrorKind.BOOT_GUARD, ErrorKind.LEASE_HELD, ErrorKind.ERROR}
FIRST_LINE = "Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means)."


def documented(module) -> dict:
    return yaml.safe_load(module.RETURN)["error_kind"]


# ------------------------------------------------------------------------------------------------ the set


def test_every_kind_has_a_meaning_and_is_its_own_value():
    assert set(MEANINGS) == set(ErrorKind)
    for kind in ErrorKind:
        assert kind == kind.value and str(kind) == kind.value and MEANINGS[kind]


def test_every_class_has_exactly_one_kind_of_the_set():
    assert set(KIND_OF) == set(_errors.error_classes())
    for cls, kind in KIND_OF.items():
        assert isinstance(kind, ErrorKind), cls
        error = cls("x")
        assert error.kind == kind.value and type(error.kind) is str, cls  # pylint: disable=unidiomatic-typecheck


def test_store_argument_errors_are_invalid_input_and_store_errors():
    error = _errors.InvalidStoreInput("bad name")
    assert isinstance(error, _errors.InvalidInput) and isinstance(error, _errors.StoreError)
    assert error.kind == "invalid_input"


def test_a_kind_outside_the_set_is_refused():
    with pytest.raises(ValueError):
        assert not _errors.StoreError("x", kind="invalid-input")
    assert _errors.StoreError("x", kind=ErrorKind.TIMEOUT).kind == "timeout"  # a wrapper keeping its cause's kind


def _named_kinds(tree) -> list:
    """(line, kind) for every class attribute ``kind = ...`` and every ``kind=...`` argument that is a constant."""
    found = []

    def constants(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ErrorKind":
            yield getattr(ErrorKind, node.attr).value
        elif isinstance(node, (ast.BoolOp, ast.IfExp)):
            for child in ast.iter_child_nodes(node):
                yield from constants(child)

    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "kind" for t in stmt.targets):
                    found += [(stmt.lineno, k) for k in constants(stmt.value)]
        elif isinstance(node, ast.keyword) and node.arg == "kind":
            found += [(node.value.lineno, k) for k in constants(node.value)]
    for job in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "VmJob"):
        for node in ast.walk(job):  # VmJob's outcomes: (outcome, reason, kind)
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 3:
                found += [(node.lineno, k) for k in constants(node.value.elts[2])]
    return found


def _error_sources():
    for top in ("plugins", os.path.join("roles", "heartbeat_writer", "files")):
        for directory, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for file_name in sorted(files):
                if file_name.endswith(".py"):
                    yield os.path.join(directory, file_name)


def test_every_kind_the_code_names_is_in_the_set():
    """Class attributes and ``kind=`` arguments (errors, and vm_evacuate's per-VM outcomes) alike."""
    values = {kind.value for kind in ErrorKind}
    seen = set()
    for path in _error_sources():
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for line, kind in _named_kinds(tree):
            if path.endswith("_storefile.py") or path.endswith("_marks.py"):
                continue  # there, "kind" is a document kind (lease, fenced ...), not an error kind
            assert kind in values or kind == "", "%s:%d names the error kind %r, which is not an ErrorKind" % (path, line, kind)
            seen.add(kind)
    assert {"duplicate", "claim", "not_running", "unknown", "boot_guard"} <= seen  # the scan reaches them all


# ------------------------------------------------------------------------------------------------ the modules


@pytest.mark.parametrize("module", MODULES, ids=name)
def test_every_module_documents_its_error_kinds(module):
    doc = documented(module)
    assert doc["returned"] == "failure" and doc["type"] == "str"
    description = doc["description"] if isinstance(doc["description"], list) else [doc["description"]]
    assert description[0] == FIRST_LINE
    choices = doc["choices"]
    assert len(choices) == len(set(choices))
    for kind in choices:
        assert ErrorKind(kind) not in NOT_A_MODULE_KIND, kind
    assert doc["sample"] in choices


def test_every_module_kind_is_returned_by_some_module():
    returned = {kind for module in MODULES for kind in documented(module)["choices"]}
    assert returned == {kind.value for kind in ErrorKind} - {kind.value for kind in NOT_A_MODULE_KIND}


# ------------------------------------------------------------------------------------------------ each kind produced


def hang(*_args, **_kwargs):
    time.sleep(5)  # abandoned by the deadline; a daemon thread that ends on its own


def a_file(tmp_path) -> str:
    path = tmp_path / "not-a-directory"
    path.write_text("x")
    return str(path)


def mark_args(tmp_path, **over):
    return dict({"store_path": str(tmp_path), "kind": "maintenance", "host": "h1", "owner": "o", "reason": "r"}, **over)


def lease_args(tmp_path, **over):
    return dict({"store_path": str(tmp_path), "cluster": "lab", "owner": "o"}, **over)


def a_file_where(store, kind, name):
    directory = store_dir(str(store), kind)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "w", encoding="utf-8") as handle:
        handle.write("not a document directory")


def mark_conflict(run_module, tmp_path, monkeypatch):
    assert not run_module(host_mark, mark_args(tmp_path)).get("failed")
    monkeypatch.setattr(_storefile.DocumentStore, "read", lambda self, name: None)  # another writer won the race
    return run_module(host_mark, mark_args(tmp_path, state="present"))


IPMI = {"address": "192.0.2.10", "username": "admin", "password": "pw", "poll_interval": 0.01}


def ipmi(run_module, monkeypatch, session=None, raises=None, **over):
    def login(*_args):
        if raises is not None:
            raise raises
        return session

    monkeypatch.setattr(_ipmi, "_pyghmi_login", login)
    _ipmi._SESSIONS.clear()  # pylint: disable=protected-access
    _ipmi._ABANDONED.clear()  # pylint: disable=protected-access
    return run_module(ipmi_power, dict(IPMI, **over))


class HangingSession(FakeSession):
    def raw_command(self, netfn, command, data=()):
        time.sleep(5)


def evacuation_raises(error):
    def run(run_module, tmp_path, monkeypatch):
        def fail(self):
            raise error

        monkeypatch.setattr(vm_evacuate.Evacuation, "run", fail)
        return run_module(vm_evacuate, {"store_path": str(tmp_path)})
    return run


def reconcile_raises(error):
    def run(run_module, tmp_path, monkeypatch):
        def fail(*_args, **_kwargs):
            raise error

        monkeypatch.setattr(vm_reconcile.LibvirtClient, "open", fail)
        return run_module(vm_reconcile, {"store_path": str(tmp_path), "uri": "test:///default", "host": "h1"})
    return run


def missing(module, attribute, args):
    def run(run_module, tmp_path, monkeypatch):
        monkeypatch.setattr(module, attribute, ImportError("No module named 'x'"))
        return run_module(module, dict(args, store_path=str(tmp_path)) if "store_path" in args else args)
    return run


RULES = {"rules": [{"id": "r", "when": "tags", "action": "alert"}]}
REDFISH = {"address": "127.0.0.1", "username": "admin", "password": "s3cr3t-pw"}
AGENT = {"agent": "fence_ipmilan", "options": {"ip": "127.0.0.1"}}


def power_raises(module, args, error):
    """A power module whose PowerOperation (the one state machine of every power backend) fails with ``error``."""
    def run(run_module, _tmp_path, monkeypatch):
        def fail(self):
            raise error

        monkeypatch.setattr(_power.PowerOperation, "run", fail)
        return run_module(module, args)
    return run


def libvirt_raises(module, args, error):
    def run(run_module, _tmp_path, monkeypatch):
        def fail(*_args, **_kwargs):
            raise error

        monkeypatch.setattr(module.LibvirtClient, "open", fail)
        return run_module(module, args)
    return run


DRAIN = {"store_path": "/nonexistent", "host": "h1", "uri": "test:///default", "targets": []}


def drain_to_itself(run_module, tmp_path):
    """A drain whose target is the source's own test host: after the (refused) migration the VM is active on both."""
    conn = libvirt.open("test:///default")
    dom = conn.createXML("<domain type='test'><name>drained</name><memory>1024</memory><os><type>hvm</type></os>"
                         "<metadata><kvmha:ha xmlns:kvmha='%s'/></metadata></domain>" % HA_NAMESPACE, 0)
    try:
        os.makedirs(tmp_path / "kvmha" / "hosts")
        record = build_record("h2", "b", 1, time.time(), 2.0, {"armed": False, "deadline_s": 60},
                              {"mem_free_mib": 4096, "vcpus_free": 8}, [])
        write_atomic(str(tmp_path / "kvmha" / "hosts" / "h2.json"), encode_record(record))
        return run_module(host_drain, dict(DRAIN, store_path=str(tmp_path),
                                           targets=[{"host": "h2", "uri": "test:///default", "address": "x"}]))
    finally:
        dom.destroy()
        conn.close()


def closed_port() -> int:
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def token_fails(module, args, kind):
    """A power-off whose fence token cannot hold: the store is a file, the lease is gone, or the store hangs."""
    def produce(run_module, tmp_path, monkeypatch):
        token = {"store_path": str(tmp_path), "cluster": "lab", "owner": "run-1", "generation": 7, "host": "h2",
                 "deadline_s": 0.3}
        if kind == "store":
            token["store_path"] = a_file(tmp_path)
        if kind == "timeout":
            monkeypatch.setattr(_storefile.DocumentStore, "read", hang)
        return run_module(module, dict(args, fence_token=token))
    return produce


FENCE_LEVELS = {"levels": [["a"]], "devices": [dict(REDFISH, name="a", protocol="redfish")]}
HA_VM = {"uri": "test:///default", "name": "nosuch"}
NO_SOCKET = "qemu+unix:///system?socket=/nonexistent/kvmha-test-sock"

# (module, kind) -> how to get it: run(run_module, tmp_path, monkeypatch) -> result
PRODUCE = {
    (fence_agent_power, "store"): token_fails(fence_agent_power, dict(AGENT, state="off"), "store"),
    (fence_agent_power, "lease_lost"): token_fails(fence_agent_power, dict(AGENT, state="off"), "lease_lost"),
    (ipmi_power, "store"): token_fails(ipmi_power, dict(IPMI, state="off"), "store"),
    (ipmi_power, "lease_lost"): token_fails(ipmi_power, dict(IPMI, state="off"), "lease_lost"),
    (redfish_power, "store"): token_fails(redfish_power, dict(REDFISH, state="off"), "store"),
    (redfish_power, "lease_lost"): token_fails(redfish_power, dict(REDFISH, state="off"), "lease_lost"),
    (host_fence, "timeout"): token_fails(host_fence, FENCE_LEVELS, "timeout"),
    (host_fence, "store"): token_fails(host_fence, FENCE_LEVELS, "store"),
    (host_fence, "lease_lost"): token_fails(host_fence, FENCE_LEVELS, "lease_lost"),
    (cluster_info, "invalid_input"): lambda r, t, m: r(cluster_info, {"store_path": str(t), "deadline_s": 0}),
    (cluster_info, "timeout"): lambda r, t, m: (m.setattr(cluster_info, "read_snapshot", hang),
                                                r(cluster_info, {"store_path": str(t), "deadline_s": 0.2}))[1],
    (cluster_info, "store"): lambda r, t, m: r(cluster_info, {"store_path": a_file(t)}),
    (fence_agent_power, "invalid_input"): lambda r, t, m: r(fence_agent_power, dict(AGENT, agent_timeout_s=0)),
    (fence_agent_power, "unreachable"): power_raises(fence_agent_power, AGENT, _errors.BmcUnreachable("x")),
    (fence_agent_power, "auth"): power_raises(fence_agent_power, AGENT, _errors.BmcAuthError("x")),
    (fence_agent_power, "timeout"): power_raises(fence_agent_power, AGENT, _errors.BmcTimeout("x")),
    (fence_agent_power, "bmc_error"): power_raises(fence_agent_power, AGENT, _errors.BmcError("x")),
    (fence_agent_power, "confirm_timeout"): power_raises(fence_agent_power, AGENT, _errors.PowerStateMismatch("x")),
    (ha_vm, "invalid_input"): lambda r, t, m: r(ha_vm, dict(HA_VM, uri="qemu+ext:///x")),
    (ha_vm, "missing_library"): missing(ha_vm, "LIBVIRT_IMPORT_ERROR", HA_VM),
    (ha_vm, "unreachable"): lambda r, t, m: r(ha_vm, dict(HA_VM, uri=NO_SOCKET, connect_timeout_s=2)),
    (ha_vm, "timeout"): libvirt_raises(ha_vm, HA_VM, _errors.LibvirtTimeout("x")),
    (ha_vm, "connection"): libvirt_raises(ha_vm, HA_VM, _errors.LibvirtConnectionLost("x")),
    (ha_vm, "libvirt"): libvirt_raises(ha_vm, HA_VM, _errors.LibvirtError("x")),
    (ha_vm, "no_domain"): libvirt_raises(ha_vm, HA_VM, _errors.DomainNotFound("x")),
    (host_drain, "invalid_input"): lambda r, t, m: r(host_drain, dict(DRAIN, uri="qemu+ext:///x")),
    (host_drain, "missing_library"): missing(host_drain, "LIBVIRT_IMPORT_ERROR", DRAIN),
    (host_drain, "unreachable"): lambda r, t, m: r(host_drain, dict(DRAIN, uri=NO_SOCKET, connect_timeout_s=2)),
    (host_drain, "timeout"): libvirt_raises(host_drain, DRAIN, _errors.LibvirtTimeout("x")),
    (host_drain, "connection"): libvirt_raises(host_drain, DRAIN, _errors.LibvirtConnectionLost("x")),
    (host_drain, "libvirt"): libvirt_raises(host_drain, DRAIN, _errors.LibvirtError("x")),
    (host_drain, "unknown"): lambda r, t, m: drain_to_itself(r, t),
    (ha_vm_info, "invalid_input"): lambda r, t, m: r(ha_vm_info, {"uri": "qemu+ext:///x"}),
    (ha_vm_info, "missing_library"): missing(ha_vm_info, "LIBVIRT_IMPORT_ERROR", {"uri": "test:///default"}),
    (ha_vm_info, "unreachable"): lambda r, t, m: r(ha_vm_info, {"uri": NO_SOCKET, "connect_timeout_s": 2}),
    (ha_vm_info, "timeout"): libvirt_raises(ha_vm_info, {"uri": "test:///default"}, _errors.LibvirtTimeout("x")),
    (ha_vm_info, "connection"): libvirt_raises(ha_vm_info, {"uri": "test:///default"}, _errors.LibvirtConnectionLost("x")),
    (ha_vm_info, "libvirt"): libvirt_raises(ha_vm_info, {"uri": "test:///default"}, _errors.LibvirtError("x")),
    (host_fence, "invalid_input"): lambda r, t, m: r(host_fence, {"levels": [["a"]], "devices": [{"name": "a", "protocol": "redfish"}]}),
    (host_fence, "missing_library"): missing(host_fence, "PYGHMI_IMPORT_ERROR", {
        "levels": [["a"]], "devices": [{"name": "a", "protocol": "ipmi", "address": "127.0.0.1", "username": "u"}]}),
    (host_fence, "not_fenced"): lambda r, t, m: r(host_fence, {"levels": [["a"]], "deadline_s": 5, "devices": [dict(
        REDFISH, name="a", protocol="redfish", port=closed_port(), deadline_s=2, request_timeout_s=1)]}),
    (redfish_power, "invalid_input"): lambda r, t, m: r(redfish_power, dict(REDFISH, port=70000)),
    (redfish_power, "unreachable"): lambda r, t, m: r(redfish_power, dict(REDFISH, port=closed_port(), deadline_s=5)),
    (redfish_power, "auth"): power_raises(redfish_power, REDFISH, _errors.BmcAuthError("x")),
    (redfish_power, "tls"): power_raises(redfish_power, REDFISH, _errors.BmcTlsError("x")),
    (redfish_power, "timeout"): power_raises(redfish_power, REDFISH, _errors.BmcTimeout("x")),
    (redfish_power, "bmc_error"): power_raises(redfish_power, REDFISH, _errors.BmcError("x")),
    (redfish_power, "confirm_timeout"): power_raises(redfish_power, REDFISH, _errors.PowerStateMismatch("x")),
    (cluster_lease, "invalid_input"): lambda r, t, m: r(cluster_lease, lease_args(t, cluster="a/b")),
    (cluster_lease, "timeout"): lambda r, t, m: (m.setattr(_storefile.DocumentStore, "read", hang),
                                                 r(cluster_lease, lease_args(t, deadline_s=0.2)))[1],
    (cluster_lease, "store"): lambda r, t, m: r(cluster_lease, lease_args(t, store_path=a_file(t))),
    (cluster_lease, "lease_lost"): lambda r, t, m: (r(cluster_lease, lease_args(t)),
                                                    r(cluster_lease, lease_args(t, state="held", generation=7)))[1],
    (cluster_lease, "invalid_document"): lambda r, t, m: (a_file_where(t, "lease", "lab"), r(cluster_lease, lease_args(t)))[1],
    (host_mark, "invalid_input"): lambda r, t, m: r(host_mark, mark_args(t, host="../x")),
    (host_mark, "timeout"): lambda r, t, m: (m.setattr(_storefile.DocumentStore, "read", hang),
                                             r(host_mark, mark_args(t, deadline_s=0.2)))[1],
    (host_mark, "store"): lambda r, t, m: r(host_mark, mark_args(t, store_path=a_file(t))),
    (host_mark, "conflict"): mark_conflict,
    (host_mark, "invalid_document"): lambda r, t, m: (a_file_where(t, "maintenance", "h1"), r(host_mark, mark_args(t)))[1],
    (host_mark_info, "invalid_input"): lambda r, t, m: r(host_mark_info, {"store_path": str(t), "hosts": ["../x"]}),
    (host_mark_info, "timeout"): lambda r, t, m: (m.setattr(host_mark_info, "read_marks_of", hang),
                                                  r(host_mark_info, {"store_path": str(t), "deadline_s": 0.2}))[1],
    (host_mark_info, "store"): lambda r, t, m: r(host_mark_info, {"store_path": a_file(t)}),
    (host_investigate, "invalid_input"): lambda r, t, m: r(host_investigate, {"hosts": [{"host": "a/b"}], "clusters": {}}),
    (host_investigate, "policy"): lambda r, t, m: r(host_investigate, {"hosts": [], "clusters": {}, "policy": {"nope": 1}}),
    (host_investigate, "missing_library"): missing(host_investigate, "JMESPATH_IMPORT_ERROR",
                                                   {"hosts": [], "clusters": {}, "policy": RULES}),
    (ipmi_power, "invalid_input"): lambda r, t, m: ipmi(r, m, FakeSession(), port=70000),
    (ipmi_power, "missing_library"): missing(ipmi_power, "PYGHMI_IMPORT_ERROR", IPMI),
    (ipmi_power, "unreachable"): lambda r, t, m: ipmi(r, m, raises=pyghmi_exceptions.IpmiException(None)),
    (ipmi_power, "auth"): lambda r, t, m: ipmi(r, m, raises=pyghmi_exceptions.IpmiException("Incorrect password provided")),
    (ipmi_power, "timeout"): lambda r, t, m: ipmi(r, m, HangingSession(), deadline_s=0.3),
    (ipmi_power, "bmc_error"): lambda r, t, m: ipmi(r, m, FakeSession(control_response={"code": 0xC1, "error": "invalid"}),
                                                    state="off"),
    # 2 s: room for the first read and the command on a loaded machine, so that the confirmation is what runs out.
    (ipmi_power, "confirm_timeout"): lambda r, t, m: ipmi(r, m, FakeSession(stuck=True), state="off", deadline_s=2.0),
    (kvm_heartbeat, "invalid_input"): lambda r, t, m: r(kvm_heartbeat, {"store_path": str(t), "poll": 0}),
    (kvm_heartbeat, "timeout"): lambda r, t, m: (m.setattr(kvm_heartbeat.RecordReader, "read", hang),
                                                 r(kvm_heartbeat, {"store_path": str(t), "state": "stopped", "host": "h1",
                                                                   "store_timeout_s": 0.2}))[1],
    (kvm_heartbeat, "store"): lambda r, t, m: (os.makedirs(os.path.dirname(record_path(str(t), "h1"))),
                                               open(record_path(str(t), "h1"), "w", encoding="utf-8").close(),
                                               r(kvm_heartbeat, {"store_path": str(t), "state": "stopped", "host": "h1"}))[2],
    (mgmt_probe, "invalid_input"): lambda r, t, m: r(mgmt_probe, {"targets": ["-f"]}),
    (neighbor_ping, "invalid_input"): lambda r, t, m: r(neighbor_ping, {"targets": ["-f"]}),
    (neighbor_ping, "peer"): lambda r, t, m: (m.setenv("PATH", str(t)),
                                              m.setattr(neighbor_ping.KvmhaModule, "get_bin_path", lambda *a, **k: None),
                                              r(neighbor_ping, {"targets": ["127.0.0.1"]}))[2],
    (vm_disk_activity, "invalid_input"): lambda r, t, m: r(vm_disk_activity, {"store_path": str(t), "hosts": ["h1"], "window": 0}),
    (vm_evacuate, "invalid_input"): lambda r, t, m: r(vm_evacuate, {"store_path": str(t), "failed_hosts": ["../x"]}),
    (vm_evacuate, "missing_library"): missing(vm_evacuate, "LIBVIRT_IMPORT_ERROR", {"store_path": ""}),
    (vm_evacuate, "timeout"): evacuation_raises(_errors.StoreError("x", kind=ErrorKind.TIMEOUT)),
    (vm_evacuate, "store"): evacuation_raises(_errors.StoreError("x")),
    (vm_evacuate, "conflict"): evacuation_raises(_errors.Conflict("x")),
    (vm_evacuate, "invalid_document"): evacuation_raises(_errors.InvalidDocument("x")),
    (vm_evacuate, "invalid_owed"): evacuation_raises(_errors.InvalidOwed("x")),
    (vm_evacuate, "lease_lost"): evacuation_raises(_errors.LeaseLost("x")),
    (vm_evacuate, "incomplete"): evacuation_raises(_errors.RecoveryIncomplete("x")),
    (vm_reconcile, "invalid_input"): lambda r, t, m: r(vm_reconcile, {"store_path": str(t), "uri": "qemu+ext:///x", "host": "h1"}),
    (vm_reconcile, "missing_library"): missing(vm_reconcile, "LIBVIRT_IMPORT_ERROR",
                                               {"store_path": "", "uri": "test:///default", "host": "h1"}),
    (vm_reconcile, "timeout"): reconcile_raises(_errors.LibvirtTimeout("x")),
    (vm_reconcile, "store"): lambda r, t, m: r(vm_reconcile, {"store_path": a_file(t), "uri": "test:///default", "host": "h1"}),
    (vm_reconcile, "conflict"): reconcile_raises(_errors.Conflict("x")),
    (vm_reconcile, "invalid_document"): reconcile_raises(_errors.InvalidDocument("x")),
    (vm_reconcile, "invalid_owed"): reconcile_raises(_errors.InvalidOwed("x")),
    (vm_reconcile, "unreachable"): lambda r, t, m: r(vm_reconcile, {"store_path": str(t), "host": "h1", "connect_timeout_s": 2,
                                                                    "uri": "qemu+unix:///system?socket=%s" % (t / "nothing")}),
    (vm_reconcile, "connection"): reconcile_raises(_errors.LibvirtConnectionLost("x")),
    (vm_reconcile, "libvirt"): reconcile_raises(_errors.LibvirtError("x")),
    (vm_reconcile, "no_domain"): reconcile_raises(_errors.DomainNotFound("x")),
}


def test_every_documented_kind_has_a_way_to_produce_it():
    """A new module, or a new kind of one, needs its entry in PRODUCE: how to make the module fail that way."""
    assert sorted((name(m), k) for m, k in PRODUCE) == sorted((name(m), k) for m in MODULES for k in documented(m)["choices"])


@pytest.mark.parametrize("module, kind", sorted(PRODUCE, key=lambda mk: (name(mk[0]), mk[1])),
                         ids=["%s-%s" % (name(m), k) for m, k in sorted(PRODUCE, key=lambda mk: (name(mk[0]), mk[1]))])
def test_each_documented_kind_is_returned(run_module, tmp_path, monkeypatch, module, kind):
    result = PRODUCE[(module, kind)](run_module, tmp_path, monkeypatch)
    assert result.get("failed") is True and result["error_kind"] == kind, result.get("msg")
    assert result["msg"]


# ------------------------------------------------------------------------------------------------ docs/OPERATIONS.md


def test_the_operations_guide_lists_every_kind_with_its_meaning_and_modules():
    with open(os.path.join(ROOT, "docs", "OPERATIONS.md"), encoding="utf-8") as handle:
        text = handle.read().split("## Error kinds", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (.+?) \| (.+?) \|$", text, re.M)
    assert [kind for kind, _meaning, _by in rows] == [kind.value for kind in ErrorKind]
    for kind, meaning, by in rows:
        assert meaning == MEANINGS[ErrorKind(kind)], kind
        returned_by = [name(m) for m in MODULES if kind in documented(m)["choices"]]
        if returned_by:
            assert by.split(", ") == returned_by, kind
        else:
            assert by.startswith("none ("), kind
