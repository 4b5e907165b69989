# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ha_vm and ha_vm_info against libvirt's real test driver (test:///default). Its host is shared by the connections
of one process while one of them is open: the ``host`` fixture holds one, so that each module run - a connection of
its own - sees what the one before it wrote."""

from __future__ import annotations

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils._domainxml import HA_NAMESPACE
from ansible_collections.kvmha.cluster.plugins.modules import ha_vm, ha_vm_info
from ansible_collections.kvmha.cluster.tests._require import require_module

libvirt = require_module("libvirt", "the venv's libvirt binding (libvirt-python, built by scripts/setup.sh)")

URI = "test:///default"
HOSTILE = ['db "1" <&>', "-rf --config", "$(reboot); `id`", "名前 ünï", "a'b", " lead", "x" * 200]
DOMAIN = "<domain type='test'><name>%s</name><memory>1024</memory><os><type>hvm</type></os>%s</domain>"


def escaped(name: str) -> str:
    return name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Host:
    """The shared test:///default host, and the domains a test made on it (removed at the end)."""

    def __init__(self):
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.conn = libvirt.open(URI)
        self.made = []

    def define(self, name, metadata="", start=False, transient=False):
        xml = DOMAIN % (escaped(name), "<metadata>%s</metadata>" % metadata if metadata else "")
        dom = self.conn.createXML(xml, 0) if transient else self.conn.defineXML(xml)
        if start and not dom.isActive():
            dom.create()
        self.made.append(dom.UUIDString())
        return dom

    def marker(self, name, scope):
        flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if scope == "live" else libvirt.VIR_DOMAIN_AFFECT_CONFIG
        try:
            return self.conn.lookupByName(name).metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, HA_NAMESPACE, flags)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return None
            raise

    def close(self):
        for vm_uuid in self.made:
            try:
                dom = self.conn.lookupByUUIDString(vm_uuid)
            except libvirt.libvirtError:
                continue  # already gone
            persistent = dom.isPersistent()
            if dom.isActive():
                dom.destroy()  # a transient domain is gone with it
            if persistent:
                dom.undefine()
        test = self.conn.lookupByName("test")
        flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
        test.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, HA_NAMESPACE, flags)
        self.conn.close()


@pytest.fixture
def host():
    shared = Host()
    yield shared
    shared.close()


def tag(run_module, name, check_mode=False, diff=False, **options):
    return run_module(ha_vm, dict({"uri": URI, "name": name}, **options), check_mode=check_mode, diff=diff)


MARKED = {"ha": True, "priority": 90, "group": "db"}
UNMARKED = {"ha": False, "priority": None, "group": None}


def test_check_mode_reports_the_change_and_writes_nothing(run_module, host):
    host.define("cm", start=True)
    result = tag(run_module, "cm", check_mode=True, diff=True, priority=90, group="db")
    assert result["changed"] is True and result["written"] == ["live", "config"]
    assert result["diff"] == {"before": {"live": UNMARKED, "config": UNMARKED}, "after": {"live": MARKED, "config": MARKED}}
    assert host.marker("cm", "live") is None and host.marker("cm", "config") is None


def test_mark_live_and_persistent_then_nothing_to_do_then_unmark(run_module, host):
    host.define("pair", start=True)
    first = tag(run_module, "pair", priority=90, group="db")
    assert first["changed"] is True and first["after"] == {"live": MARKED, "config": MARKED}
    assert host.marker("pair", "live") == host.marker("pair", "config") == '<ha priority="90" group="db"/>'
    again = tag(run_module, "pair", check_mode=True, priority=90, group="db")
    assert again["changed"] is False and again["written"] == []
    assert tag(run_module, "pair", priority=90, group="db")["changed"] is False
    moved = tag(run_module, "pair", diff=True, priority=90, group="web")
    assert moved["diff"]["after"]["config"] == dict(MARKED, group="web")
    gone = tag(run_module, "pair", state="absent")
    assert gone["changed"] is True and gone["after"] == {"live": UNMARKED, "config": UNMARKED}
    assert host.marker("pair", "live") is None and host.marker("pair", "config") is None
    assert tag(run_module, "pair", state="absent")["changed"] is False


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_domain_names_are_only_names(run_module, host, name):
    host.define(name, start=True)
    result = tag(run_module, name, priority=7, group='<"&\'>')
    assert result["changed"] is True and result["domain"]["name"] == name
    assert host.marker(name, "config") == '<ha priority="7" group="&lt;&quot;&amp;\'&gt;"/>'
    listed = [vm for vm in run_module(ha_vm_info, {"uri": URI})["vms"] if vm["name"] == name]
    assert listed == [dict(result["domain"], ha=True, priority=7, group='<"&\'>', problems=[], in_sync=True)]


def test_a_transient_domain_is_marked_live_only(run_module, host):
    host.define("tr", transient=True)
    result = tag(run_module, "tr", priority=60)
    assert (result["scopes"], result["written"], result["domain"]["persistent"]) == (["live"], ["live"], False)
    assert host.marker("tr", "live") == '<ha priority="60" group=""/>'
    assert tag(run_module, "tr", priority=60)["changed"] is False


def test_a_stopped_domain_is_marked_in_its_persistent_definition(run_module, host):
    dom = host.define("cold")
    result = tag(run_module, "cold", priority=30)
    assert (result["scopes"], result["written"]) == (["config"], ["config"])
    dom.create()
    assert host.marker("cold", "live") == '<ha priority="30" group=""/>', "a cold boot carries the marker into the live definition"


@pytest.mark.parametrize("metadata, problem", [
    ('<kvmha:ha xmlns:kvmha="%s" priority="high" group="db"/>' % HA_NAMESPACE, "priority 'high' is not an integer 0-100"),
    ('<kvmha:other xmlns:kvmha="%s" priority="90"/>' % HA_NAMESPACE, "the HA namespace holds <other>, not <ha>"),
])
def test_bad_metadata_already_present_is_listed_then_replaced(run_module, host, metadata, problem):
    host.define("bad", metadata=metadata)
    listed = [vm for vm in run_module(ha_vm_info, {"uri": URI})["vms"] if vm["name"] == "bad"]
    assert len(listed) == 1 and listed[0]["problems"][0].startswith(problem)
    result = tag(run_module, "bad", diff=True, priority=90, group="db")
    assert result["changed"] is True and result["diff"]["before"]["config"]["problems"][0].startswith(problem)
    assert host.marker("bad", "config") == '<ha priority="90" group="db"/>'
    assert tag(run_module, "bad", priority=90, group="db")["changed"] is False


def test_bad_metadata_is_removed_by_absent(run_module, host):
    host.define("junk", metadata='<kvmha:ha xmlns:kvmha="%s" priority="500"/>' % HA_NAMESPACE)
    assert tag(run_module, "junk", state="absent")["changed"] is True
    assert host.marker("junk", "config") is None


def test_a_marker_set_live_only_is_listed_out_of_sync(run_module, host):
    dom = host.define("drift", start=True)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, '<ha priority="80" group=""/>', "kvmha", HA_NAMESPACE,
                    libvirt.VIR_DOMAIN_AFFECT_LIVE)
    listed = [vm for vm in run_module(ha_vm_info, {"uri": URI})["vms"] if vm["name"] == "drift"]
    assert listed[0]["priority"] == 80 and listed[0]["in_sync"] is False
    assert tag(run_module, "drift", priority=80)["written"] == ["config"]


def test_the_list_holds_only_ha_domains_highest_priority_first(run_module, host):
    for name, priority in (("low", 10), ("high", 95), ("mid", 50)):
        host.define(name)
        tag(run_module, name, priority=priority)
    host.define("not-ha")
    result = run_module(ha_vm_info, {"uri": URI}, check_mode=True)
    assert result["changed"] is False
    assert [vm["name"] for vm in result["vms"] if vm["name"] in ("low", "high", "mid", "not-ha")] == ["high", "mid", "low"]


def test_by_uuid(run_module, host):
    dom = host.define("by-uuid")
    result = run_module(ha_vm, {"uri": URI, "uuid": dom.UUIDString().upper(), "priority": 1})
    assert result["changed"] is True and result["domain"]["name"] == "by-uuid"


@pytest.mark.parametrize("options, kind, message", [
    ({"name": "no-such-vm"}, "no_domain", "look up domain 'no-such-vm'"),
    ({"uuid": "not-a-uuid"}, "invalid_input", "uuid 'not-a-uuid' is not a UUID"),
    ({"name": "test", "priority": 101}, "invalid_input", "priority must be an integer 0-100"),
    ({"name": "test", "group": "a\x07b"}, "invalid_input", "holds control characters"),
    ({"name": "test", "uri": "qemu+ext:///system?command=/bin/sh"}, "invalid_input", "uses transport 'ext'"),
])
def test_failures_name_their_kind(run_module, host, options, kind, message):  # pylint: disable=unused-argument
    result = run_module(ha_vm, dict({"uri": URI}, **options))
    assert result["failed"] is True and result["error_kind"] == kind and message in result["msg"], result


def test_name_and_uuid_exclude_each_other(run_module):
    result = run_module(ha_vm, {"uri": URI, "name": "test", "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f"})
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
