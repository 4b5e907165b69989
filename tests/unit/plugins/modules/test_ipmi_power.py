# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ipmi_power through main(): arguments, check mode, diff, failure shape, and RETURN kept honest - and every case the
same through its action plugin, which runs the module in the controller's process (plugins/action/ipmi_power.py).

Only pyghmi's session is replaced (by the FakeSession of the module_utils tests); everything above it is real.
"""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.kvmha.cluster.plugins.module_utils import _ipmi, _marks
from ansible_collections.kvmha.cluster.plugins.modules import ipmi_power
from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.ipmi_fake import FakeSession
from pyghmi import exceptions as pyghmi_exceptions

BASE = {"address": "192.0.2.10", "username": "admin", "password": "s3cr3t-pw", "poll_interval": 0.01}
RETURNED = yaml.safe_load(ipmi_power.RETURN)
DOCUMENTED = yaml.safe_load(ipmi_power.DOCUMENTATION)


@pytest.fixture
def run_module(run_either_way):  # noqa: F811 - every case both ways: a module run, and in the controller's process
    return run_either_way


@pytest.fixture
def bmc(monkeypatch):
    """The fake chassis behind every login; records the logins."""
    session = FakeSession(state="on")
    session.logins = []

    def login(address, port, username, password, kg):
        session.logins.append((address, port, username, password, kg))
        return session

    monkeypatch.setattr(_ipmi, "_pyghmi_login", login)
    _ipmi._SESSIONS.clear()
    _ipmi._ABANDONED.clear()
    yield session
    _ipmi._SESSIONS.clear()
    _ipmi._ABANDONED.clear()


def emitted_keys_are_documented(result: dict, failed: bool) -> None:
    ignored = {"invocation", "failed", "msg", "exception", "warnings", "deprecations"}
    for key in set(result) - ignored:
        assert key in RETURNED, "undocumented return key %r" % key
    for key, doc in RETURNED.items():
        if doc["returned"] == "always":
            assert key in result, "documented key %r missing" % key
    if failed:
        assert "error_kind" in result


@pytest.mark.parametrize(
    "state, initial, changed, after, fenced, controls",
    [
        ("status", "on", False, "on", False, []),
        ("status", "off", False, "off", True, []),
        ("off", "on", True, "off", True, [0x00]),
        ("off", "off", False, "off", True, []),
        ("shutdown", "on", True, "off", True, [0x05]),
        ("on", "off", True, "on", False, [0x01]),
        ("on", "on", False, "on", False, []),
    ],
)
def test_states(run_module, bmc, state, initial, changed, after, fenced, controls):
    bmc.state = initial
    result = run_module(ipmi_power, dict(BASE, state=state))
    assert not result.get("failed")
    assert result["changed"] is changed
    assert result["powerstate"] == {"before": initial, "after": after}
    assert result["fenced"] is fenced
    assert bmc.controls == controls
    assert "diff" not in result
    emitted_keys_are_documented(result, failed=False)


def test_second_off_is_not_changed_and_still_fenced(run_module, bmc):
    first = run_module(ipmi_power, dict(BASE, state="off"))
    _ipmi._SESSIONS.clear()  # a new process in real life
    second = run_module(ipmi_power, dict(BASE, state="off"))
    assert first["changed"] is True and second["changed"] is False
    assert first["fenced"] is True and second["fenced"] is True
    assert bmc.controls == [0x00]


@pytest.mark.parametrize("state, action", [("off", "off"), ("shutdown", "shutdown"), ("on", "none")])
def test_check_mode_reads_and_never_commands(run_module, bmc, state, action):
    result = run_module(ipmi_power, dict(BASE, state=state), check_mode=True)
    assert bmc.controls == []
    assert bmc.status_reads >= 1
    assert result["action"] == action
    assert result["changed"] is (action != "none")
    assert result["fenced"] is False


def test_diff(run_module, bmc):
    result = run_module(ipmi_power, dict(BASE, state="off"), diff=True)
    assert result["diff"] == {"before": {"powerstate": "on"}, "after": {"powerstate": "off"}}
    emitted_keys_are_documented(result, failed=False)


def test_diff_in_check_mode_predicts(run_module, bmc):
    result = run_module(ipmi_power, dict(BASE, state="off"), check_mode=True, diff=True)
    assert result["diff"] == {"before": {"powerstate": "on"}, "after": {"powerstate": "off"}}
    assert bmc.controls == []


def test_password_is_never_in_the_output(run_module, bmc):
    result = run_module(ipmi_power, dict(BASE, state="status"))
    assert "s3cr3t-pw" not in repr(result)
    assert bmc.logins == [("192.0.2.10", 623, "admin", "s3cr3t-pw", None)]


def test_username_is_not_masked(run_module, bmc):
    result = run_module(ipmi_power, dict(BASE, state="status"))
    assert result["invocation"]["module_args"]["username"] == "admin"


@pytest.mark.parametrize("variable", ["KVMHA_BMC_PASSWORD", "IPMI_PASSWORD"])
def test_password_from_the_environment(run_module, bmc, monkeypatch, variable):
    monkeypatch.delenv("KVMHA_BMC_PASSWORD", raising=False)
    monkeypatch.delenv("IPMI_PASSWORD", raising=False)
    monkeypatch.setenv(variable, "from-env")
    args = {k: v for k, v in BASE.items() if k != "password"}
    result = run_module(ipmi_power, args)
    assert not result.get("failed")
    assert bmc.logins[0][3] == "from-env"


def test_password_is_required(run_module, bmc, monkeypatch):
    monkeypatch.delenv("KVMHA_BMC_PASSWORD", raising=False)
    monkeypatch.delenv("IPMI_PASSWORD", raising=False)
    args = {k: v for k, v in BASE.items() if k != "password"}
    result = run_module(ipmi_power, args)
    assert result["failed"] and "password" in result["msg"]
    assert bmc.logins == []


def test_aliases_and_port_and_kg(run_module, bmc):
    args = {"bmc_address": "bmc1", "user": "op", "password": "pw", "port": 16230, "kg": "k"}
    result = run_module(ipmi_power, args)
    assert not result.get("failed")
    assert bmc.logins == [("bmc1", 16230, "op", "pw", "k")]
    assert "'k'" not in repr(result["invocation"])


def test_wrong_password_fails_fast_as_auth(run_module, monkeypatch):
    attempts = []

    def refuse(*args):
        attempts.append(args)
        raise pyghmi_exceptions.IpmiException("Incorrect password provided")

    monkeypatch.setattr(_ipmi, "_pyghmi_login", refuse)
    _ipmi._SESSIONS.clear()
    result = run_module(ipmi_power, dict(BASE, state="off"))
    assert result["failed"] and result["error_kind"] == "auth"
    assert "Incorrect password provided" in result["msg"]
    assert len(attempts) == 1  # no retry
    assert result["changed"] is False and result["fenced"] is False
    assert result["powerstate"] == {"before": "unknown", "after": "unknown"}
    emitted_keys_are_documented(result, failed=True)


def test_unreachable_message_is_never_none(run_module, monkeypatch):
    def silent(*args):
        raise pyghmi_exceptions.IpmiException(None)

    monkeypatch.setattr(_ipmi, "_pyghmi_login", silent)
    _ipmi._SESSIONS.clear()
    result = run_module(ipmi_power, dict(BASE, state="status"))
    assert result["error_kind"] == "unreachable"
    assert result["msg"] and result["msg"] != "None" and "None" not in result["msg"]


def test_confirm_timeout(run_module, bmc):
    bmc.stuck = True
    result = run_module(ipmi_power, dict(BASE, state="off", deadline_s=0.2))
    assert result["failed"] and result["error_kind"] == "confirm_timeout"
    assert result["changed"] is True and result["fenced"] is False
    assert result["action"] == "off"
    emitted_keys_are_documented(result, failed=True)


@pytest.mark.parametrize(
    "args, fragment",
    [
        ({"confirm": 0}, "confirm"),
        ({"deadline_s": 0}, "deadline_s"),
        ({"poll_interval": 0.001}, "poll_interval"),
        ({"username": "u" * 17}, "user name"),
        ({"port": 70000}, "port"),
    ],
)
def test_invalid_input_keeps_the_shape_and_touches_nothing(run_module, bmc, args, fragment):
    result = run_module(ipmi_power, dict(BASE, state="off", **args))
    assert result["failed"] and result["error_kind"] == "invalid_input"
    assert fragment in result["msg"]
    assert bmc.logins == [] and bmc.calls == []
    emitted_keys_are_documented(result, failed=True)


def test_state_choices_exclude_cycle_and_reset(run_module, bmc):
    result = run_module(ipmi_power, dict(BASE, state="reset"))
    assert result["failed"] and "value of state must be one of" in result["msg"]
    assert DOCUMENTED["options"]["state"]["choices"] == ["status", "on", "off", "shutdown"]


def test_missing_pyghmi(module_run, monkeypatch):
    """A module run only: where pyghmi does not import in the controller's process, the module runs as a module
    (tests/unit/plugins/action/test_in_process.py)."""
    monkeypatch.setattr(ipmi_power, "PYGHMI_IMPORT_ERROR", ImportError("No module named 'pyghmi'"))
    result = module_run(ipmi_power, dict(BASE))
    assert result["failed"] and "pyghmi" in result["msg"]


def test_documented_defaults_match_the_spec():
    spec = ipmi_power.ARGUMENT_SPEC
    for name, option in DOCUMENTED["options"].items():
        assert spec[name].get("default") == option.get("default"), name
        assert spec[name].get("choices") == option.get("choices"), name


# ---------------------------------------------------------------------------------- the fence token (fence_token)


@pytest.fixture
def token(tmp_path):
    """A store where run-1 holds the lab lease; the token of its power-off of h2."""
    store = str(tmp_path)
    generation = _marks.acquire_lease(store, "lab", "run-1", ttl=60)["lease"]["generation"]
    return {"store_path": store, "cluster": "lab", "owner": "run-1", "generation": generation, "host": "h2"}


def test_a_fence_token_that_holds_lets_the_power_off_go(run_module, bmc, token):
    result = run_module(ipmi_power, dict(BASE, state="off", fence_token=token))
    assert result["fenced"] is True and bmc.controls == [0x00] and "refused" not in result


def test_a_host_in_maintenance_is_refused_before_the_bmc_is_asked(run_module, bmc, token):
    _marks.set_mark(token["store_path"], "maintenance", "h2", "ops", {"reason": "firmware"}, ttl=600)
    for check_mode in (False, True):
        result = run_module(ipmi_power, dict(BASE, state="off", fence_token=token), check_mode=check_mode)
        assert not result.get("failed") and result["changed"] is False and result["fenced"] is False
        assert result["refused"] == "h2 is in maintenance (by ops: firmware)"
        emitted_keys_are_documented(result, failed=False)
    assert bmc.logins == [] and bmc.controls == [] and bmc.state == "on"


def test_a_lease_that_moved_on_fails_the_power_off_before_the_bmc_is_asked(run_module, bmc, token):
    _marks.renew_lease(token["store_path"], "lab", "run-1", token["generation"], ttl=60)
    result = run_module(ipmi_power, dict(BASE, state="off", fence_token=token))
    assert result["failed"] and result["error_kind"] == "lease_lost" and "no longer ours" in result["msg"]
    assert result["fenced"] is False and result["changed"] is False
    assert bmc.logins == [] and bmc.controls == []
    emitted_keys_are_documented(result, failed=True)
    planned = run_module(ipmi_power, dict(BASE, state="off", fence_token=token), check_mode=True)
    assert not planned.get("failed") and planned["action"] == "off" and bmc.controls == []  # check mode holds no lease


def test_a_fence_token_guards_power_offs_only(run_module, bmc, token):
    result = run_module(ipmi_power, dict(BASE, state="status", fence_token=token))
    assert result["failed"] and result["error_kind"] == "invalid_input" and "fence_token" in result["msg"]
    assert bmc.logins == []
