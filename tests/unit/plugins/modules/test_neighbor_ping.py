# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""neighbor_ping through main(), with a stand-in ping on PATH (no packet leaves the machine in unit tests)."""

from __future__ import annotations

import stat

import pytest
import yaml

from ansible_collections.kvmha.cluster.plugins.modules import neighbor_ping

RETURNED = yaml.safe_load(neighbor_ping.RETURN)
DOCUMENTED = yaml.safe_load(neighbor_ping.DOCUMENTATION)

STAND_IN = r"""#!/bin/sh
if [ "$1" = "-V" ]; then echo "ping from iputils 20221126"; exit 0; fi
for a in "$@"; do target="$a"; done
echo "$*" >> "${0%/*}/argv.log"
case "$target" in
  127.0.0.1|::1|up.example)
     printf '%s\n' "--- $target ping statistics ---" "2 packets transmitted, 2 received, 0% packet loss, time 1ms" \
                   "rtt min/avg/max/mdev = 0.020/0.030/0.040/0.010 ms" ;;
  *) printf '%s\n' "--- $target ping statistics ---" "2 packets transmitted, 0 received, 100% packet loss, time 1ms"
     exit 1 ;;
esac
"""


@pytest.fixture
def fake_ping(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ping = bindir / "ping"
    ping.write_text(STAND_IN)
    ping.chmod(ping.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bindir))
    return bindir


def test_reachable_and_unreachable(run_module, fake_ping):
    result = run_module(neighbor_ping, {"targets": ["127.0.0.1", "198.51.100.200", "::1"], "count": 2})
    assert not result.get("failed")
    assert result["changed"] is False
    assert [p["target"] for p in result["pings"]] == ["127.0.0.1", "198.51.100.200", "::1"]
    assert [p["reachable"] for p in result["pings"]] == [True, False, True]
    assert result["any_reachable"] is True and result["all_reachable"] is False
    assert result["reachable_count"] == 2 and result["unreachable_count"] == 1
    assert result["reachable_targets"] == ["127.0.0.1", "::1"]
    assert result["unreachable_targets"] == ["198.51.100.200"]
    assert result["pings"][0]["rtt_avg_ms"] == 0.03 and result["pings"][1]["rtt_avg_ms"] is None
    assert result["ran_on"]
    argv = (fake_ping / "argv.log").read_text()
    assert "-n -q -4 -c 2 -i 0.2 -w 2 -- 127.0.0.1" in argv and "-6" in argv
    documented(result)


def test_check_mode_runs_in_full(run_module, fake_ping):
    result = run_module(neighbor_ping, {"targets": "127.0.0.1"}, check_mode=True)
    assert result["any_reachable"] is True and result["changed"] is False
    assert (fake_ping / "argv.log").exists()


def test_single_target_alias(run_module, fake_ping):
    result = run_module(neighbor_ping, {"target": "up.example"})
    assert result["reachable_targets"] == ["up.example"]


@pytest.mark.parametrize("bad", ["-f", "127.1", "a b", "h1;reboot"])
def test_bad_target_is_an_error_and_nothing_runs(run_module, fake_ping, bad):
    result = run_module(neighbor_ping, {"targets": ["127.0.0.1", bad]})
    assert result["failed"] and result["error_kind"] == "invalid_input"
    assert repr(bad)[1:-1] in result["msg"] or bad in result["msg"]
    assert not (fake_ping / "argv.log").exists()


@pytest.mark.parametrize("args", [{"count": 0}, {"interval": 0.001}, {"deadline_s": 0}, {"deadline_s": 61}])
def test_bad_settings_are_errors_and_nothing_runs(run_module, fake_ping, args):
    result = run_module(neighbor_ping, dict({"targets": ["127.0.0.1"]}, **args))
    assert result["failed"] and result["error_kind"] == "invalid_input"
    assert not (fake_ping / "argv.log").exists()


def test_missing_ping_is_a_clear_error(run_module, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(neighbor_ping.KvmhaModule, "get_bin_path", lambda self, name, required=False: None)
    result = run_module(neighbor_ping, {"targets": ["127.0.0.1"]})
    assert result["failed"] and result["error_kind"] == "peer"
    assert "ping command was not found" in result["msg"] and "nothing was run" in result["msg"]


def documented(result):
    ignored = {"invocation", "failed", "msg", "exception", "warnings", "deprecations"}
    for key in set(result) - ignored:
        assert key in RETURNED, "undocumented return key %r" % key
    for key, doc in RETURNED.items():
        if doc["returned"] == "always":
            assert key in result, key
    documented_ping_keys = set(RETURNED["pings"]["contains"])
    for ping in result["pings"]:
        assert set(ping) == documented_ping_keys


def test_documented_defaults_match_the_spec():
    spec = neighbor_ping.ARGUMENT_SPEC
    for name, option in DOCUMENTED["options"].items():
        assert spec[name].get("default") == option.get("default"), name
