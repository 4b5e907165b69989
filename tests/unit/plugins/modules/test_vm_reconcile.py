# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_reconcile against libvirt's built-in test driver (a real libvirt connection, in process)."""

from __future__ import annotations

import uuid

import pytest

from ansible_collections.kvmha.cluster.plugins.modules import vm_reconcile

libvirt = pytest.importorskip("libvirt")

XML = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>64</memory>
<os><type>hvm</type></os></domain>"""


@pytest.fixture
def conn():
    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


def define(conn, running: bool) -> str:
    vm = str(uuid.uuid4())
    dom = conn.defineXML(XML.format(name="stale-" + vm[:8], uuid=vm))
    if running:
        dom.create()
    return vm


def defined(conn, vm: str) -> bool:
    try:
        conn.lookupByUUIDString(vm)
    except libvirt.libvirtError:
        return False
    return True


def test_stale_copies_are_destroyed_and_undefined(run_module, conn):
    running, stopped, elsewhere = define(conn, True), define(conn, False), str(uuid.uuid4())
    result = run_module(vm_reconcile, {"uri": "test:///default", "vms": [running, stopped, elsewhere]}, diff=True)
    assert result["changed"] is True, result
    by_uuid = {vm["uuid"]: vm for vm in result["vms"]}
    assert by_uuid[running] == {"uuid": running, "before": "running", "destroyed": True, "undefined": True}
    assert by_uuid[stopped] == {"uuid": stopped, "before": "shutoff", "destroyed": False, "undefined": True}
    assert by_uuid[elsewhere]["before"] == "absent" and not by_uuid[elsewhere]["undefined"]
    assert not defined(conn, running) and not defined(conn, stopped)
    assert result["diff"]["after"][running] == "absent"
    again = run_module(vm_reconcile, {"uri": "test:///default", "vms": [running, stopped]})
    assert again["changed"] is False


def test_check_mode_changes_nothing(run_module, conn):
    running = define(conn, True)
    result = run_module(vm_reconcile, {"uri": "test:///default", "vms": [running]}, check_mode=True)
    assert result["changed"] is True and result["vms"][0]["destroyed"] is True
    assert conn.lookupByUUIDString(running).isActive()
    conn.lookupByUUIDString(running).destroy()


@pytest.mark.parametrize("args, words", [
    ({"vms": ["not-a-uuid"]}, "is not a UUID"),
    ({"uri": "qemu+ssh://root@h1/system;rm"}, ""),
])
def test_bad_input_fails_and_changes_nothing(run_module, conn, args, words):
    vm = define(conn, True)
    result = run_module(vm_reconcile, dict({"uri": "test:///default", "vms": [vm]}, **args))
    assert result["failed"] is True and words in result["msg"]
    assert conn.lookupByUUIDString(vm).isActive()
    conn.lookupByUUIDString(vm).destroy()
