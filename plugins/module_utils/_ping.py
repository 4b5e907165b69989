# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# Plain standard-library Python.
"""ICMP echo probes with the system's ``ping`` (iputils), several targets in parallel.

This is CloudStack's PingTestCommand: a neighbour pings a suspect host's private IP. A reply proves that a kernel
answers at that address; no reply proves nothing (the path, a firewall or the neighbour itself may be at fault),
so callers must treat "not reachable" as *unknown*, never as "dead".

Every target is validated before anything runs (an IP literal, or an RFC 1123 host name whose last label is not
numeric), so a target can never be taken for an option or a shorthand address. Each ``ping`` gets its own ``-w``
deadline, and the process is also bounded by a timeout of its own: SIGINT (ping then prints its statistics) a
little after the deadline, SIGKILL if that does not end it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import threading
import time

from ._errors import InvalidInput, PeerError, check_range

# How long after its own -w deadline a ping may run before it is interrupted, and then killed.
GRACE_SECONDS = 2.0
KILL_AFTER_SECONDS = 1.0
MAX_TARGETS = 256

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,15}", re.ASCII)
_SUMMARY = re.compile(r"^(\d+) packets transmitted, (\d+) (?:packets )?received(.*?), ([\d.]+)% packet loss", re.M)
_EXTRA = re.compile(r"\+(\d+) (duplicates|corrupted|errors)")
_RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/(?:mdev|stddev))? = ([\d.]+)/([\d.]+)/([\d.]+)(?:/([\d.]+))? ms")


def validate_target(target) -> tuple[str, int | None]:
    """Return ``(target, ip_version)`` (``None`` for a host name), or raise ``InvalidInput`` saying why."""
    if not isinstance(target, str) or not target:
        raise InvalidInput("a ping target must be a non-empty string, not %r" % (target,))
    address, has_scope, scope = target.partition("%")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if ip is not None:
        if has_scope and (ip.version != 6 or not _SCOPE.fullmatch(scope)):
            raise InvalidInput("invalid zone in ping target %r" % target)
        return target, ip.version
    name = target[:-1] if target.endswith(".") else target
    if len(name) > 253:
        raise InvalidInput("ping target %r is longer than 253 characters" % target)
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(
            "ping target %r is neither an IP address nor an RFC 1123 host name (letters, digits and inner hyphens in "
            "dot-separated labels of at most 63 characters)" % target
        )
    if labels[-1].isdigit():
        raise InvalidInput("ping target %r looks like an incomplete IP address (its last label is numeric)" % target)
    return target, None


def validate_targets(targets) -> list[str]:
    """Validate every target before anything runs; duplicates are dropped, order is kept."""
    if not targets:
        raise InvalidInput("no ping target given")
    checked: list[str] = []
    for target in targets:
        name, _version = validate_target(target)
        if name not in checked:
            checked.append(name)
    if len(checked) > MAX_TARGETS:
        raise InvalidInput("at most %d ping targets per call, not %d" % (MAX_TARGETS, len(checked)))
    return checked


def validate_settings(count: int, interval: float, deadline: int) -> None:
    check_range("count", count, 1, 100)
    check_range("interval", interval, 0.01, 10, unit="seconds")
    check_range("deadline_s", deadline, 1, 60, unit="seconds")


def build_command(ping: str, target: str, count: int, interval: float, deadline: int) -> list[str]:
    """The argv of one probe: numeric, quiet, with ping's own deadline; the target after ``--``."""
    _name, version = validate_target(target)
    argv = [ping, "-n", "-q"]
    if version is not None:
        argv.append("-%d" % version)
    argv += ["-c", str(count), "-i", "%g" % interval, "-w", str(deadline), "--", target]
    return argv


def parse_output(stdout: str, stderr: str = "") -> dict:
    """The statistics of one ``ping -q`` run; fields are ``None`` when ping did not print them."""
    parsed = {
        "transmitted": None,
        "received": None,
        "duplicates": 0,
        "errors": 0,
        "loss_percent": None,
        "rtt_min_ms": None,
        "rtt_avg_ms": None,
        "rtt_max_ms": None,
        "rtt_mdev_ms": None,
    }
    summary = _SUMMARY.search(stdout or "")
    if summary:
        parsed["transmitted"] = int(summary.group(1))
        parsed["received"] = int(summary.group(2))
        parsed["loss_percent"] = float(summary.group(4))
        for number, kind in _EXTRA.findall(summary.group(3)):
            if kind in ("duplicates", "errors"):
                parsed[kind] = int(number)
    rtt = _RTT.search(stdout or "")
    if rtt:
        parsed["rtt_min_ms"] = float(rtt.group(1))
        parsed["rtt_avg_ms"] = float(rtt.group(2))
        parsed["rtt_max_ms"] = float(rtt.group(3))
        parsed["rtt_mdev_ms"] = float(rtt.group(4)) if rtt.group(4) is not None else None
    return parsed


def error_text(stderr: str) -> str | None:
    """ping's own complaint (e.g. ``ping: connect: Network is unreachable``), or ``None``."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    return "; ".join(lines) if lines else None


def shape(target: str, stdout: str, stderr: str, rc: int | None, elapsed: float, note: str | None = None) -> dict:
    """One target's result. ``reachable`` is true exactly when at least one echo reply came back."""
    result = {"target": target}
    result.update(parse_output(stdout, stderr))
    received = result["received"] or 0
    result["reachable"] = received > 0
    if result["transmitted"] is None:
        result["transmitted"] = 0
        result["received"] = 0
        result["loss_percent"] = 100.0
    result["rc"] = rc
    messages = [m for m in (note, error_text(stderr)) if m]
    if not messages and not result["reachable"] and rc not in (0, 1):
        messages.append("ping exited with status %s and printed no statistics" % rc)
    result["error"] = "; ".join(messages) if messages else None
    result["elapsed"] = round(elapsed, 3)
    return result


def aggregate(results: list[dict]) -> dict:
    reachable = [r["target"] for r in results if r["reachable"]]
    unreachable = [r["target"] for r in results if not r["reachable"]]
    return {
        "any_reachable": bool(reachable),
        "all_reachable": bool(results) and not unreachable,
        "reachable_count": len(reachable),
        "unreachable_count": len(unreachable),
        "reachable_targets": reachable,
        "unreachable_targets": unreachable,
    }


def find_ping(get_bin_path) -> str:
    """The path of an iputils ``ping``, or ``PeerError`` (nothing is sent either way)."""
    path = get_bin_path("ping")
    if not path:
        raise PeerError("the ping command was not found (install iputils-ping); nothing was run")
    try:
        version = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=5, check=False,
                                 env=_environment())
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PeerError("%s cannot be run: %s; nothing was run" % (path, error)) from error
    if "iputils" not in (version.stdout + version.stderr):
        raise PeerError("%s is not iputils ping (its -V said %r); nothing was run"
                        % (path, (version.stdout + version.stderr).strip()[:200]))
    return path


def _environment() -> dict:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


class PingProbe:
    """Ping every target in parallel, each with its own deadline; never raises for an unreachable target."""

    def __init__(self, ping: str, count: int = 3, interval: float = 0.2, deadline: int = 2, popen=subprocess.Popen,
                 clock=time.monotonic):
        validate_settings(count, interval, deadline)
        self.ping = ping
        self.count = count
        self.interval = interval
        self.deadline = deadline
        self._popen = popen
        self._clock = clock

    def run(self, targets) -> list[dict]:
        targets = validate_targets(targets)
        started = self._clock()
        running = []
        for target in targets:
            argv = build_command(self.ping, target, self.count, self.interval, self.deadline)
            try:
                process = self._popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=_environment())
            except OSError as error:
                for _target, other in running:
                    _stop(other)
                raise PeerError("cannot run %s: %s" % (self.ping, error)) from error
            running.append((target, process))
        limit = started + self.deadline + GRACE_SECONDS
        results: list = [None] * len(running)

        def collect(index, target, process):
            results[index] = self._collect(target, process, limit, started)

        # One waiter per process, so each target's elapsed time is its own.
        waiters = [threading.Thread(target=collect, args=(index, target, process), daemon=True)
                   for index, (target, process) in enumerate(running)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
        return results

    def _collect(self, target, process, limit, started) -> dict:
        note = None
        try:
            stdout, stderr = process.communicate(timeout=max(0.0, limit - self._clock()))
        except subprocess.TimeoutExpired:
            note = "ping did not end within %g s of its %d s deadline and was interrupted" % (
                GRACE_SECONDS, self.deadline)
            stdout, stderr = _stop(process)
        return shape(target, stdout, stderr, process.returncode, self._clock() - started, note)


def _stop(process) -> tuple[str, str]:
    """SIGINT (ping prints its statistics), then SIGKILL; the output gathered so far."""
    try:
        process.send_signal(signal.SIGINT)
        return process.communicate(timeout=KILL_AFTER_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()
