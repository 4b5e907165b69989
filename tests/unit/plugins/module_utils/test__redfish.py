# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the Redfish backend: documents in, decisions out. The HTTP side is tested against sushy-tools'
Redfish emulator in tests/fencing (scripts/test-stages/50-integration-redfish.sh)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _redfish
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import BmcError, InvalidInput

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
                    max_leaves=10)


@pytest.mark.parametrize("value, expected", [("On", "on"), ("Off", "off"), ("PoweringOn", "on"),
                                             ("PoweringOff", "on"), ("Paused", "on")])
def test_power_states(value, expected):
    assert _redfish.parse_power_state({"PowerState": value}, "t") == expected


@pytest.mark.parametrize("value", [[], ["Off"], {"Off": 1}, 0, None, True])
def test_a_power_state_that_is_not_a_string_is_an_error(value):
    """Found by the property below in CI: a list was looked up in the table of states and raised TypeError."""
    with pytest.raises(BmcError, match="no usable PowerState"):
        _redfish.parse_power_state({"PowerState": value}, "t")


@given(JSON)
def test_only_the_exact_off_reads_off(document):
    """Whatever a BMC sends, "off" comes only from PowerState == "Off"; anything unusable is an error, not a state."""
    try:
        state = _redfish.parse_power_state(document, "t")
    except BmcError:
        return
    assert state in ("on", "off")
    assert (state == "off") == (document["PowerState"] == "Off")


@given(JSON)
def test_reset_target_never_crashes_on_odd_documents(document):
    try:
        uri, allowed = _redfish.reset_target(document if isinstance(document, dict) else {}, "/s", "t")
    except BmcError:
        return
    assert isinstance(uri, str) and all(isinstance(a, str) for a in allowed)


def test_reset_target_reads_the_action():
    document = {"Actions": {"#ComputerSystem.Reset": {
        "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
        "ResetType@Redfish.AllowableValues": ["On", "ForceOff", 7]}}}
    assert _redfish.reset_target(document, "/s", "t") == ("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                                                          ("On", "ForceOff"))


@pytest.mark.parametrize("paths", [["/redfish/v1/Systems/1"], ["/redfish/v1/Systems/1/"]])
def test_the_only_system(paths):
    assert _redfish.only_system(paths, "t") == "/redfish/v1/Systems/1"


@pytest.mark.parametrize("paths", [[], ["/redfish/v1/Systems/a", "/redfish/v1/Systems/b"]])
def test_several_systems_are_never_guessed(paths):
    with pytest.raises(InvalidInput):
        _redfish.only_system(paths, "t")


def test_members_of_a_collection():
    collection = {"Members": [{"@odata.id": "/redfish/v1/Systems/1"}, {"x": 1}, "junk"]}
    assert _redfish.member_paths(collection, "t") == ["/redfish/v1/Systems/1"]
    with pytest.raises(BmcError):
        _redfish.member_paths({"Members": "no"}, "t")


def test_reset_types_never_include_a_restart():
    assert set(_redfish.RESET_TYPES.values()) == {"ForceOff", "On", "GracefulShutdown"}


@pytest.mark.parametrize("body, message", [
    (json.dumps({"error": {"@Message.ExtendedInfo": [{"Message": "no such action"}]}}).encode(), "no such action"),
    (json.dumps({"error": {"message": "bad"}}).encode(), "bad"),
    (b"<html>oops</html>", "<html>oops</html>"),
    (b"\xff\xfe", "\ufffd\ufffd"),
])
def test_redfish_message(body, message):
    assert _redfish.redfish_message(body) == message


@pytest.mark.parametrize("kwargs", [
    {"address": ""}, {"address": "https://bmc/"}, {"port": 0}, {"username": ""}, {"request_timeout": 0},
    {"ca_path": "/nonexistent/ca.pem"},
])
def test_client_refuses_bad_input(kwargs):
    args = dict({"address": "bmc", "username": "u", "password": "p"}, **kwargs)
    with pytest.raises(InvalidInput):
        _redfish.RedfishClient(**args)


def test_unverified_context_only_when_asked():
    assert _redfish.tls_context(True, None).verify_mode.name == "CERT_REQUIRED"
    insecure = _redfish.tls_context(False, None)
    assert insecure.verify_mode.name == "CERT_NONE" and not insecure.check_hostname
