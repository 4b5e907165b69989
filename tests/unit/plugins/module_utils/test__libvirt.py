# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""LibvirtClient against libvirt's real built-in test driver (no mocks), URI and domain XML validation."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, LibvirtError
from ansible_collections.kvmha.cluster.plugins.module_utils._libvirt import (
    LibvirtClient,
    connect_hint,
    parse_domain_xml,
    read_domain_xml,
    uri_warnings,
    validate_uri,
)
from ansible_collections.kvmha.cluster.tests._require import require_module

libvirt = require_module("libvirt", "the venv's libvirt binding (libvirt-python, built by scripts/setup.sh)")

NODE = """<node><cpu><mhz>1000</mhz><model>i686</model><active>4</active><nodes>1</nodes><sockets>1</sockets>
<cores>4</cores><threads>1</threads></cpu><memory>4194304</memory></node>"""


def domain_xml(vm_uuid, name="g1", memory="<memory unit='MiB'>64</memory>", vcpu="<vcpu>1</vcpu>", dom_type="qemu"):
    return ("<domain type='%s'><name>%s</name><uuid>%s</uuid>%s%s<os><type arch='x86_64'>hvm</type></os>"
            "<metadata><kvmha:ha xmlns:kvmha='http://kvmha.invalid/xmlns/ha/1' priority='50' group=''/></metadata>"
            "<devices><video><model type='none'/></video><memballoon model='none'/></devices></domain>"
            % (dom_type, name, vm_uuid, memory, vcpu))


@pytest.fixture
def node_uri(tmp_path):
    path = tmp_path / "node.xml"
    path.write_text(NODE)
    return "test://" + str(path)


# ----------------------------------------------------------------------------------------- URIs


@pytest.mark.parametrize("uri", [
    "qemu:///system", "qemu+ssh://root@h2/system", "qemu+unix:///system?socket=/tmp/x/libvirt-sock",
    "test:///default", "qemu+tls://h2.example.org/system", "qemu+libssh2://u@h2/system?known_hosts=/root/.ssh/kh",
    "qemu+ssh://root@h2:2222/system?keyfile=/root/.ssh/id&no_verify=1",
    "qemu+tls://h2.example.org/system?pkipath=/etc/kvmha/pki", "qemu+tls://h2/system?pkipath=/etc/pki&no_verify=1",
])
def test_good_uris(uri):
    assert validate_uri(uri) == uri


@pytest.mark.parametrize("uri, words", [
    ("", "non-empty"),
    (None, "non-empty"),
    ("qemu+ext:///system?command=/bin/sh", "transport 'ext'"),
    ("qemu+ssh://h2/system?command=/tmp/evil", "names a command"),
    ("qemu+ssh://h2/system?NETCAT=rm%20-rf", "names a command"),
    ("not a uri", "whitespace"),
    ("h2", "no driver"),
    ("/etc/passwd", "no driver"),
    ("q_emu+ssh://h2/system", "no driver"),
    ("qemu+unix:///system?socket=relative/sock", "absolute"),
    ("qemu+tls://h2/system?pkipath=pki", "the pkipath parameter must be an absolute path"),
    ("qemu+ssh://h2/system\n", "control"),
    ("qemu:///" + "x" * 3000, "longer"),
    ("qemu+foo://h2/system", "transport 'foo'"),
])
def test_bad_uris(uri, words):
    with pytest.raises(InvalidInput) as err:
        validate_uri(uri)
    assert words in str(err.value)


@pytest.mark.parametrize("uri, unchecked", [
    ("qemu+tls://h2/system?pkipath=/etc/pki&no_verify=1", "no_verify=1"),
    ("qemu+ssh://root@h2/system?No_Verify=1", "No_Verify=1"),
    ("qemu+libssh://u@h2/system?known_hosts_verify=IGNORE", "known_hosts_verify=IGNORE"),
    ("qemu+tls://h2/system?no_verify=0", None), ("qemu+tls://h2/system?no_verify=", None),
    ("qemu+libssh://u@h2/system?known_hosts_verify=auto", None), ("qemu+tls://h2/system", None),
    ("qemu+ssh://h2/system?keyfile=/k", None),
])
def test_uri_warnings(uri, unchecked):
    warnings = uri_warnings(uri)
    assert len(warnings) == (0 if unchecked is None else 1)
    if unchecked:
        assert "sets %s" % unchecked in warnings[0] and "is not checked" in warnings[0]


@given(st.text(max_size=60))
def test_uri_warnings_never_raise_and_need_a_parameter(text):
    """Whatever it is given, it answers a list, and without a no_verify/known_hosts(_verify) parameter nothing."""
    warnings = uri_warnings(text)
    assert isinstance(warnings, list)
    if "verify" not in text.lower() and "known_hosts" not in text.lower():
        assert warnings == []


@pytest.mark.parametrize("uri, warned", [
    ("qemu+ssh://kvmha@h2/system?keyfile=/k&known_hosts=/kh", True),
    ("qemu+ssh://kvmha@h2/system?KNOWN_HOSTS=/kh", True),
    ("qemu+libssh://kvmha@h2/system?keyfile=/k&known_hosts=/kh", False),
    ("qemu+libssh2://kvmha@h2/system?known_hosts=/kh", False),
])
def test_uri_warnings_known_hosts_the_ssh_transport_ignores(uri, warned):
    """libvirt's ssh transport (OpenSSH) does not read a known_hosts parameter: a file the user thinks pins the
    host key does not."""
    warnings = uri_warnings(uri)
    assert len(warnings) == int(warned)
    if warned:
        assert "the ssh transport ignores" in warnings[0] and "qemu+libssh" in warnings[0]


@pytest.mark.parametrize("uri, message, words", [
    ("qemu+tls://h2/system", "connect failed: Unable to read TLS confirmation: Input/output error",
     "the server refused this client's certificate"),
    ("qemu+tls://h2/system", "authentication failed: Failed to verify peer's certificate",
     "the server's certificate does not verify"),
    ("qemu+tls://h2/system", "Our own certificate /p/clientcert.pem failed validation against /p/cacert.pem",
     "this client's own certificate"),
    ("qemu+tls://h2/system", "Cannot read CA certificate '/p/cacert.pem': No such file", "cacert.pem, clientcert.pem"),
    ("qemu+tls://h2/system", "unable to connect to server at 'h2:16514': Connection refused", None),
    ("qemu+ssh://h2/system", "Unable to read TLS confirmation", None),
    ("qemu+ssh://kvmha@h2/system", "authentication unavailable: no polkit agent available to authenticate action "
                                   "'org.libvirt.unix.manage'", "polkit: the host's polkit"),
    ("qemu:///system", "authentication failed: access denied by policy", "(action org.libvirt.unix.manage)"),
    ("qemu+tls://h2/system", "authentication failed: access denied by policy", "(action org.libvirt.unix.manage)"),
    ("qemu+ssh://kvmha@h2/system", "Cannot recv data: Host key verification failed.: Connection reset by peer",
     "~/.ssh/known_hosts of the user"),
    ("qemu+libssh://kvmha@h2/system?known_hosts=/k", "libssh transport error: No user interaction callback provided: "
                                                     "Can't verify the session host key", "SSH: the host's key is not in"),
    ("qemu+libssh://kvmha@h2/system?known_hosts=/k", "authentication failed: !!! SSH HOST KEY VERIFICATION FAILED !!!: "
                                                     "Identity of host 'h2:22' differs from stored identity.",
     "differs from the one in the known_hosts file of the URI"),
    ("qemu+tls://h2/system", "Host key verification failed", None),
    ("qemu:///system", "Cannot read CA certificate '/p/cacert.pem': No such file", None),  # no transport: not TLS
])
def test_connect_hint(uri, message, words):
    hint = connect_hint(uri, message)
    if words is None:
        assert hint is None
    else:
        assert hint.startswith(("TLS: ", "SSH: ", "polkit: ")) and words in hint


# ----------------------------------------------------------------------------------------- domain XML


def test_parse_domain_xml_good():
    vm_uuid = str(uuid.uuid4())
    info = parse_domain_xml(domain_xml(vm_uuid), vm_uuid.upper())
    assert info == {"uuid": vm_uuid, "name": "g1", "type": "qemu", "memory_mib": 64, "vcpus": 1}


@pytest.mark.parametrize("memory, mib", [
    ("<memory>65536</memory>", 64), ("<memory unit='KiB'>1</memory>", 1), ("<memory unit='G'>2</memory>", 2048),
    ("<memory unit='bytes'>1048577</memory>", 2), ("<memory unit='MB'>1000</memory>", 954), ("", None),
])
def test_memory_units(memory, mib):
    vm_uuid = str(uuid.uuid4())
    assert parse_domain_xml(domain_xml(vm_uuid, memory=memory))["memory_mib"] == mib


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<domain type='qemu'><name>&lol2;</name><uuid>%s</uuid></domain>"""


@pytest.mark.parametrize("text, words", [
    (BILLION_LAUGHS, "DTD"),
    ("<domain type='qemu'><name>a</name><uuid>%s</uuid>", "malformed"),
    ("<network><name>a</name><uuid>%s</uuid></network>", "<network>"),
    ("<domain><name>a</name><uuid>%s</uuid></domain>", "no type"),
    ("<domain type='qemu'><uuid>%s</uuid></domain>", "no <name>"),
    ("<domain type='qemu'><name>a</name></domain>", "no <uuid>"),
    ("<domain type='qemu'><name>a</name><uuid>not-a-uuid</uuid></domain>", "invalid <uuid>"),
    ("<domain type='qemu'><name>a</name><uuid>%s</uuid><memory unit='parsecs'>1</memory></domain>", "unit"),
    ("<domain type='qemu'><name>a</name><uuid>%s</uuid><memory>lots</memory></domain>", "<memory>"),
    ("<domain type='qemu'><name>a</name><uuid>%s</uuid><vcpu>many</vcpu></domain>", "<vcpu>"),
])
def test_parse_domain_xml_refuses(text, words):
    vm_uuid = str(uuid.uuid4())
    with pytest.raises(InvalidInput) as err:
        parse_domain_xml(text.replace("%s", vm_uuid), vm_uuid)
    assert words in str(err.value)


def test_parse_domain_xml_uuid_must_match():
    with pytest.raises(InvalidInput) as err:
        parse_domain_xml(domain_xml(str(uuid.uuid4())), str(uuid.uuid4()))
    assert "expected" in str(err.value)


def test_parse_domain_xml_size_and_encoding():
    vm_uuid = str(uuid.uuid4())
    with pytest.raises(InvalidInput):
        parse_domain_xml(domain_xml(vm_uuid).encode(), vm_uuid, max_bytes=100)
    with pytest.raises(InvalidInput):
        parse_domain_xml(domain_xml(vm_uuid), vm_uuid, max_bytes=100)
    with pytest.raises(InvalidInput):
        parse_domain_xml(b"\xff" + domain_xml(vm_uuid).encode(), vm_uuid)
    with pytest.raises(InvalidInput):
        parse_domain_xml(42, vm_uuid)


def test_read_domain_xml(tmp_path):
    vm_uuid = str(uuid.uuid4())
    good = tmp_path / "good.xml"
    good.write_text(domain_xml(vm_uuid))
    text, info = read_domain_xml(str(good), vm_uuid)
    assert text == domain_xml(vm_uuid) and info["name"] == "g1"
    link = tmp_path / "link.xml"
    os.symlink(str(good), str(link))
    for path, words in ((link, "cannot open"), (tmp_path / "missing.xml", "no domain XML"), (tmp_path, "not a regular file")):
        with pytest.raises(InvalidInput) as err:
            read_domain_xml(str(path), vm_uuid)
        assert words in str(err.value)
    with pytest.raises(InvalidInput) as err:
        read_domain_xml(str(good), vm_uuid, max_bytes=64)
    assert "limit" in str(err.value)


# ----------------------------------------------------------------------------------------- client (test driver)


def test_client_define_start_verify(node_uri):
    client = LibvirtClient(node_uri, connect_timeout=5, call_timeout=5, label="h2").open()
    try:
        vm_uuid = str(uuid.uuid4())
        assert client.domain_state(vm_uuid) is None
        assert client.define(domain_xml(vm_uuid)) == vm_uuid
        assert client.domain_state(vm_uuid) == "shutoff"
        assert client.conn.lookupByUUIDString(vm_uuid).autostart() == 0
        assert vm_uuid not in client.active_uuids()
        client.start(vm_uuid)
        assert client.wait_running(vm_uuid, 5) == "running"
        assert vm_uuid in client.active_uuids()
        assert client.alive()
        with pytest.raises(LibvirtError) as err:
            client.start(vm_uuid)  # already running: libvirt refuses, the connection is fine
        assert err.value.kind == "libvirt" and "h2" in str(err.value)
        with pytest.raises(LibvirtError) as err:
            client.start(str(uuid.uuid4()))
        assert err.value.kind == "no_domain"
    finally:
        client.close()
    assert not client.alive()
    with pytest.raises(LibvirtError) as err:
        client.active_uuids()
    assert err.value.kind == "connection"


def test_wait_running_gives_up_on_a_stopped_domain(node_uri):
    client = LibvirtClient(node_uri).open()
    vm_uuid = str(uuid.uuid4())
    client.define(domain_xml(vm_uuid))
    started = time.monotonic()
    assert client.wait_running(vm_uuid, 60) == "shutoff"
    assert time.monotonic() - started < 10  # gave up on seeing it stopped, not at the 60 s timeout
    client.close()


def test_broken_connection_is_classified(node_uri):
    client = LibvirtClient(node_uri).open()
    client.conn.close()  # the real connection is gone; the client still holds its handle
    with pytest.raises(LibvirtError) as err:
        client.define(domain_xml(str(uuid.uuid4())))
    assert err.value.kind == "connection"
    assert isinstance(err.value.__cause__, libvirt.libvirtError)
    assert not client.alive()


def test_connection_refused_is_unreachable(tmp_path):
    started = time.monotonic()
    client = LibvirtClient("qemu+unix:///system?socket=%s" % (tmp_path / "nothing"), connect_timeout=60)
    with pytest.raises(LibvirtError) as err:
        client.open()
    # "unreachable", not "timeout": the refusal ended it; the bound only catches waiting for the 60 s deadline
    assert err.value.kind == "unreachable" and time.monotonic() - started < 30


def test_a_libvirtd_that_never_answers_hits_the_connect_deadline(tmp_path):
    path = str(tmp_path / "silent-sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)  # accepts connections in the backlog, never answers: a hung libvirtd
    try:
        client = LibvirtClient("qemu+unix:///system?socket=" + path, connect_timeout=0.5, label="h9")
        started = time.monotonic()
        with pytest.raises(LibvirtError) as err:
            client.open()
        took = time.monotonic() - started
        assert err.value.kind == "timeout" and "h9" in str(err.value)
        assert 0.4 < took < 10 * 0.5  # it waited for the deadline; the upper bound only catches a hang
    finally:
        server.close()


def test_read_only_client_cannot_define(node_uri):
    client = LibvirtClient(node_uri, read_only=True).open()
    try:
        with pytest.raises(LibvirtError):
            client.define(domain_xml(str(uuid.uuid4())))
    finally:
        client.close()


def test_tls_failure_says_tls(tmp_path):
    """A TLS client without its certificates fails before any packet is sent; the error says what TLS needs."""
    client = LibvirtClient("qemu+tls://localhost/system?pkipath=%s" % tmp_path, connect_timeout=5)
    with pytest.raises(LibvirtError) as err:
        client.open()
    assert err.value.kind == "unreachable"
    assert "cacert.pem" in str(err.value) and "TLS: the pkipath directory must hold" in str(err.value)


def test_invalid_uri_refused_before_any_connection():
    with pytest.raises(InvalidInput):
        LibvirtClient("qemu+ext:///system?command=/bin/true")


def test_not_connected():
    client = LibvirtClient("test:///default")
    with pytest.raises(LibvirtError) as err:
        client.active_uuids()
    assert err.value.kind == "connection"
    client.close()


def test_remove_destroys_and_undefines_a_stale_copy(node_uri, tmp_path):
    client = LibvirtClient(node_uri).open()
    try:
        running, defined, transient = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        client.define(domain_xml(running, name="run"))
        client.start(running)
        client.define(domain_xml(defined, name="off"))
        client.conn.createXML(domain_xml(transient, name="tmp"), 0)
        assert client.remove(running) == {"destroyed": True, "undefined": True}
        assert client.remove(defined) == {"destroyed": False, "undefined": True}
        assert client.remove(transient) == {"destroyed": True, "undefined": True}
        assert client.remove(str(uuid.uuid4())) == {"destroyed": False, "undefined": False}
        for vm_uuid in (running, defined, transient):
            assert client.domain_state(vm_uuid) is None
    finally:
        client.close()
