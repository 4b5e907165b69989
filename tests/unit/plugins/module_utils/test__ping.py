# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Target validation, ping output parsing, result shaping and the parallel runner (with stand-in ping scripts)."""

from __future__ import annotations

import os
import signal
import stat
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _ping
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, PeerError

# Real iputils 20221126 outputs (ping -n -q), as captured on Debian 12.
OK = """PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.

--- 127.0.0.1 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 408ms
rtt min/avg/max/mdev = 0.037/0.041/0.045/0.003 ms
"""
PARTIAL = """PING 198.51.100.7 (198.51.100.7) 56(84) bytes of data.

--- 198.51.100.7 ping statistics ---
4 packets transmitted, 1 received, 75% packet loss, time 3004ms
rtt min/avg/max/mdev = 1.204/1.204/1.204/0.000 ms
"""
NONE = """PING 198.51.100.200 (198.51.100.200) 56(84) bytes of data.

--- 198.51.100.200 ping statistics ---
6 packets transmitted, 0 received, 100% packet loss, time 1010ms

"""
ERRORS = """PING 198.51.100.9 (198.51.100.9) 56(84) bytes of data.

--- 198.51.100.9 ping statistics ---
3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2041ms
pipe 3
"""
DUPLICATES = """--- 127.0.0.1 ping statistics ---
2 packets transmitted, 2 received, +2 duplicates, 0% packet loss, time 1001ms
rtt min/avg/max/mdev = 0.030/0.035/0.040/0.005 ms
"""
IPV6 = """PING ::1(::1) 56 data bytes

--- ::1 ping statistics ---
2 packets transmitted, 2 received, 0% packet loss, time 202ms
rtt min/avg/max/mdev = 0.039/0.108/0.178/0.069 ms
"""
BUSYBOX = """--- 127.0.0.1 ping statistics ---
3 packets transmitted, 3 packets received, 0% packet loss
round-trip min/avg/max = 0.051/0.066/0.082 ms
"""


@pytest.mark.parametrize(
    "stdout, expected",
    [
        (OK, dict(transmitted=3, received=3, loss_percent=0.0, rtt_min_ms=0.037, rtt_avg_ms=0.041, rtt_max_ms=0.045,
                  rtt_mdev_ms=0.003, duplicates=0, errors=0)),
        (PARTIAL, dict(transmitted=4, received=1, loss_percent=75.0, rtt_min_ms=1.204, rtt_mdev_ms=0.0)),
        (NONE, dict(transmitted=6, received=0, loss_percent=100.0, rtt_min_ms=None, rtt_avg_ms=None, rtt_max_ms=None,
                    rtt_mdev_ms=None)),
        (ERRORS, dict(transmitted=3, received=0, errors=3, loss_percent=100.0)),
        (DUPLICATES, dict(received=2, duplicates=2, loss_percent=0.0)),
        (IPV6, dict(received=2, rtt_max_ms=0.178)),
        (BUSYBOX, dict(transmitted=3, received=3, rtt_avg_ms=0.066, rtt_mdev_ms=None)),
        ("", dict(transmitted=None, received=None, loss_percent=None, rtt_min_ms=None)),
        ("garbage\n", dict(transmitted=None)),
    ],
)
def test_parse_output(stdout, expected):
    parsed = _ping.parse_output(stdout)
    for key, value in expected.items():
        assert parsed[key] == value, key


@pytest.mark.parametrize(
    "stdout, stderr, rc, reachable, error",
    [
        (OK, "", 0, True, None),
        (PARTIAL, "", 1, True, None),
        (NONE, "", 1, False, None),
        (ERRORS, "", 1, False, None),
        ("", "ping: connect: Network is unreachable\n", 2, False, "ping: connect: Network is unreachable"),
        ("", "ping: h9: Name or service not known\n", 2, False, "ping: h9: Name or service not known"),
        ("", "", 2, False, "ping exited with status 2 and printed no statistics"),
        ("", "", -9, False, "ping exited with status -9 and printed no statistics"),
    ],
)
def test_shape(stdout, stderr, rc, reachable, error):
    result = _ping.shape("t", stdout, stderr, rc, 0.1234)
    assert result["reachable"] is reachable
    assert result["error"] == error
    assert result["rc"] == rc
    assert result["elapsed"] == 0.123
    assert isinstance(result["transmitted"], int) and isinstance(result["received"], int)
    assert isinstance(result["loss_percent"], float)
    assert set(result) == {"target", "reachable", "transmitted", "received", "duplicates", "errors", "loss_percent",
                           "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms", "rc", "error", "elapsed"}


def test_shape_keeps_a_note_and_partial_statistics():
    result = _ping.shape("t", PARTIAL, "", 1, 3.0, note="ping was interrupted")
    assert result["reachable"] is True and result["error"] == "ping was interrupted"


def test_duplicates_alone_do_not_make_a_target_reachable():
    out = "1 packets transmitted, 0 received, +1 duplicates, 100% packet loss, time 0ms\n"
    assert _ping.shape("t", out, "", 1, 0)["reachable"] is False


@pytest.mark.parametrize(
    "target, version",
    [
        ("127.0.0.1", 4),
        ("198.51.100.71", 4),
        ("::1", 6),
        ("2001:db8::5", 6),
        ("fe80::1%eth0", 6),
        ("fe80::1%br-oob.10", 6),
        ("h1", None),
        ("h1.private", None),
        ("hv-01.example.com", None),
        ("hv-01.example.com.", None),
        ("a" * 63 + ".example", None),
        ("1host", None),
        ("h1.2a", None),
    ],
)
def test_valid_targets(target, version):
    assert _ping.validate_target(target) == (target, version)


@pytest.mark.parametrize(
    "target",
    [
        "",
        "-rf",
        "-c1",
        "--help",
        "a b",
        "h1;reboot",
        "$(id)",
        "`id`",
        "h1\nh2",
        "h1\n",
        "127.0.0.1\n",
        "fe80::1%eth0\n",
        "h1/..",
        "a..b",
        ".h1",
        "h1-.example",
        "-h1.example",
        "h_1",
        "höst",
        "a" * 64,
        ".".join(["a" * 60] * 5),
        "127.1",
        "2130706433",
        "0x7f.1",
        "10.0.0.256",
        "1.2.3.4%eth0",
        "fe80::1%eth0;id",
        "fe80::1%",
        "::1::1",
        None,
        42,
    ],
)
def test_invalid_targets(target):
    with pytest.raises(InvalidInput):
        _ping.validate_target(target)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_a_valid_target_is_never_an_option(text):
    try:
        target, _version = _ping.validate_target(text)
    except InvalidInput:
        return
    assert not target.startswith("-")
    assert not any(c.isspace() for c in target)


def test_validate_targets_dedupes_in_order_and_checks_all_first():
    assert _ping.validate_targets(["h2", "h1", "h2", "::1"]) == ["h2", "h1", "::1"]
    with pytest.raises(InvalidInput):
        _ping.validate_targets(["h1", "bad target"])
    with pytest.raises(InvalidInput, match="no ping target"):
        _ping.validate_targets([])
    with pytest.raises(InvalidInput, match="at most 256"):
        _ping.validate_targets(["h%d" % i for i in range(257)])


@pytest.mark.parametrize(
    "count, interval, deadline",
    [(0, 0.2, 2), (101, 0.2, 2), (3, 0.001, 2), (3, 11, 2), (3, 0.2, 0), (3, 0.2, 61)],
)
def test_invalid_settings(count, interval, deadline):
    with pytest.raises(InvalidInput):
        _ping.validate_settings(count, interval, deadline)


@pytest.mark.parametrize(
    "target, expected",
    [
        ("127.0.0.1", ["/bin/ping", "-n", "-q", "-4", "-c", "3", "-i", "0.2", "-w", "2", "--", "127.0.0.1"]),
        ("::1", ["/bin/ping", "-n", "-q", "-6", "-c", "3", "-i", "0.2", "-w", "2", "--", "::1"]),
        ("h1.private", ["/bin/ping", "-n", "-q", "-c", "3", "-i", "0.2", "-w", "2", "--", "h1.private"]),
    ],
)
def test_build_command(target, expected):
    assert _ping.build_command("/bin/ping", target, 3, 0.2, 2) == expected


def test_build_command_refuses_a_bad_target():
    with pytest.raises(InvalidInput):
        _ping.build_command("/bin/ping", "-f", 3, 0.2, 2)


def test_aggregate():
    results = [{"target": "a", "reachable": True}, {"target": "b", "reachable": False},
               {"target": "c", "reachable": True}]
    assert _ping.aggregate(results) == {
        "any_reachable": True,
        "all_reachable": False,
        "reachable_count": 2,
        "unreachable_count": 1,
        "reachable_targets": ["a", "c"],
        "unreachable_targets": ["b"],
    }
    assert _ping.aggregate([])["any_reachable"] is False
    assert _ping.aggregate([])["all_reachable"] is False


# ------------------------------------------------------------------------------ the runner, with stand-in pings


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_find_ping_missing_binary():
    with pytest.raises(PeerError, match="not found"):
        _ping.find_ping(lambda name: None)


def test_find_ping_refuses_a_non_iputils_ping(tmp_path):
    fake = script(tmp_path, "ping", 'echo "BusyBox v1.36.1 multi-call binary."\n')
    with pytest.raises(PeerError, match="not iputils"):
        _ping.find_ping(lambda name: fake)


def test_find_ping_accepts_iputils(tmp_path):
    fake = script(tmp_path, "ping", 'echo "ping from iputils 20221126"\n')
    assert _ping.find_ping(lambda name: fake) == fake


def test_find_ping_unrunnable(tmp_path):
    path = tmp_path / "ping"
    path.write_text("not executable")
    with pytest.raises(PeerError, match="cannot be run"):
        _ping.find_ping(lambda name: str(path))


CANNED = r"""
target=""
for a in "$@"; do target="$a"; done
case "$target" in
  up) printf '%s\n' "--- up ping statistics ---" "2 packets transmitted, 2 received, 0% packet loss, time 1ms" \
          "rtt min/avg/max/mdev = 0.010/0.020/0.030/0.005 ms" ;;
  down) sleep 0.3; printf '%s\n' "2 packets transmitted, 0 received, 100% packet loss, time 300ms"; exit 1 ;;
  noroute) echo "ping: connect: Network is unreachable" >&2; exit 2 ;;
  hang) trap 'echo "3 packets transmitted, 1 received, 66.6667% packet loss, time 9ms"; exit 1' INT; while :; do sleep 0.05; done ;;
  deaf) trap '' INT; while :; do sleep 0.05; done ;;
  meet*) touch "$(dirname "$0")/met.$target"
         while [ "$(ls "$(dirname "$0")"/met.* | wc -l)" -lt 3 ]; do sleep 0.02; done
         printf '%s\n' "2 packets transmitted, 2 received, 0% packet loss, time 1ms" \
                "rtt min/avg/max/mdev = 0.010/0.020/0.030/0.005 ms" ;;
esac
echo "$*" >> "$(dirname "$0")/argv.log"
"""


def test_probe_runs_targets_in_parallel_and_keeps_order(tmp_path):
    fake = script(tmp_path, "ping", CANNED)
    started = time.monotonic()
    results = _ping.PingProbe(fake, count=2, interval=0.2, deadline=1).run(["down", "up", "noroute", "down"])
    assert [r["target"] for r in results] == ["down", "up", "noroute"]
    assert [r["reachable"] for r in results] == [False, True, False]
    assert results[2]["error"] == "ping: connect: Network is unreachable" and results[2]["rc"] == 2
    assert results[1]["elapsed"] < results[0]["elapsed"]  # each target's own time
    assert time.monotonic() - started < 10 * 1  # catches a hang; test_probe_runs_targets_at_once checks parallelism
    log = (tmp_path / "argv.log").read_text()
    assert "-n -q -c 2 -i 0.2 -w 1 -- up" in log


def test_probe_runs_targets_at_once(tmp_path):
    """Each fake ping answers only once all three have started: a probe running them one after another would see
    the first one overrun its deadline. Parallelism shown by the pings' own state, not by a stopwatch."""
    fake = script(tmp_path, "ping", CANNED)
    results = _ping.PingProbe(fake, count=2, interval=0.2, deadline=5).run(["meet1", "meet2", "meet3"])
    assert [r["reachable"] for r in results] == [True, True, True], results


@pytest.fixture
def sigint_not_ignored():
    """A suite started in the background of a non-interactive shell (nohup … &) inherits SIGINT ignored, and a shell
    script cannot trap a signal ignored at its entry - the fake ping would never print its statistics. (The real
    iputils ping installs its own handler, so the product is not affected.) A handler here makes the child start
    with SIGINT at its default: exec resets handled signals, never ignored ones."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_probe_interrupts_a_ping_that_overruns_its_deadline(tmp_path, monkeypatch, sigint_not_ignored):
    # A generous grace: the fake prints its statistics at once on SIGINT; only the SIGINT path is tested here.
    monkeypatch.setattr(_ping, "GRACE_SECONDS", 5.0)
    fake = script(tmp_path, "ping", CANNED)
    results = _ping.PingProbe(fake, count=3, interval=0.2, deadline=1).run(["hang"])
    assert results[0]["reachable"] is True  # ping's statistics, printed on SIGINT, are used
    assert "interrupted" in results[0]["error"]


def test_probe_kills_a_ping_that_ignores_sigint(tmp_path, monkeypatch):
    monkeypatch.setattr(_ping, "GRACE_SECONDS", 0.1)
    monkeypatch.setattr(_ping, "KILL_AFTER_SECONDS", 0.2)
    fake = script(tmp_path, "ping", CANNED)
    started = time.monotonic()
    results = _ping.PingProbe(fake, count=3, interval=0.2, deadline=1).run(["deaf"])
    assert time.monotonic() - started < 10 * 1.3  # deadline + grace + kill delay; the bound only catches a hang
    assert results[0]["reachable"] is False and results[0]["rc"] == -9
    assert "interrupted" in results[0]["error"]


def test_probe_validates_before_running_anything(tmp_path):
    fake = script(tmp_path, "ping", CANNED)
    with pytest.raises(InvalidInput):
        _ping.PingProbe(fake).run(["up", "-x"])
    assert not os.path.exists(tmp_path / "argv.log")


def test_probe_that_cannot_start_is_a_peer_error(tmp_path):
    with pytest.raises(PeerError, match="cannot run"):
        _ping.PingProbe(str(tmp_path / "missing")).run(["up"])


def test_probe_runs_with_the_c_locale(tmp_path):
    fake = script(tmp_path, "ping", 'echo "$LC_ALL/$LANG" > "$(dirname "$0")/locale"\n')
    _ping.PingProbe(fake).run(["up"])
    assert (tmp_path / "locale").read_text().strip() == "C/C"
