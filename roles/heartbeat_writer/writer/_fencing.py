# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Self-fencing: the quorum rule, the peer probes and the fence actions."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

from ._workers import LOG
from ._config import probe_budget

POWEROFF_ARGV = ("systemctl", "poweroff", "--force", "--force")


def has_quorum(reachable: int, peers: int) -> bool:
    """True when this host plus the peers it reaches form a strict majority of the cluster (1 + ``peers`` hosts).

    Ties count as no quorum: in an even split, each half must assume the other half may recover its VMs.
    """
    return 2 * (reachable + 1) > peers + 1


def fence_decision(armed: bool, stale_for: float, deadline_s: float, reachable, peers: int) -> tuple:
    """Return (fence, reason). ``reachable`` is None when no probe round was run."""
    if not armed:
        return False, "self-fence not armed"
    if stale_for < deadline_s:
        return False, "last successful write %.1f s ago (deadline %.1f s)" % (stale_for, deadline_s)
    if reachable is None:
        return False, "write deadline passed, peers not probed yet"
    if has_quorum(reachable, peers):
        return False, "no write for %.1f s but %d of %d peers reachable: a shared storage outage, not isolation" % (stale_for, reachable, peers)
    return True, "no write for %.1f s (deadline %.1f s) and only %d of %d peers reachable" % (stale_for, deadline_s, reachable, peers)


def in_container() -> bool:
    if os.path.exists("/run/systemd/container") or os.path.exists("/.dockerenv"):
        return True
    try:
        with open("/proc/1/environ", "rb") as handle:
            return b"container=" in handle.read()
    except OSError:
        return False


def started_by_systemd() -> bool:
    """A systemd service's main process: systemd set INVOCATION_ID and is its parent (PID 1 of its namespace)."""
    return bool(os.environ.get("INVOCATION_ID")) and os.getppid() == 1


def probe_peer(sf: dict, address: str) -> bool:
    """True if ``address`` answers: an ICMP echo reply, or for TCP an accepted or refused connection."""
    if sf["probe"] == "icmp":
        argv = [sf["ping"], "-n", "-q", "-c", str(sf["probe_attempts"]), "-i", "0.2", "-W", "%g" % sf["probe_timeout"], address]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=probe_budget(sf), check=False)
        except (subprocess.TimeoutExpired, OSError):
            return False
        return done.returncode == 0
    for _attempt in range(sf["probe_attempts"]):
        try:
            with socket.create_connection((address, sf["tcp_port"]), timeout=sf["probe_timeout"]):
                return True
        except ConnectionRefusedError:
            return True  # a RST comes from a live kernel on that address
        except OSError:
            continue
    return False


def probe_peers(sf: dict) -> int:
    """Probe every peer in parallel within ``probe_budget``; return how many answered."""
    results = {}

    def one(address):
        results[address] = probe_peer(sf, address)

    threads = [threading.Thread(target=one, args=(a,), name="probe:%s" % a, daemon=True) for a in sf["peers"]]
    for thread in threads:
        thread.start()
    end = time.monotonic() + probe_budget(sf) + 0.5
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return sum(1 for a in sf["peers"] if results.get(a))


class Fencer:
    """Carries out the self-fence action. Built-in actions never touch a machine they were not meant for: the
    ``poweroff`` action only runs in a systemd service (``started_by_systemd``), never in a writer started by hand or
    by a test; the ``watchdog`` action refuses to open a device inside a container (it would be the machine's)."""

    def __init__(self, conf: dict):
        self.sf = conf["self_fence"]
        self.interval = conf["interval"]
        self.armed = self.sf["armed"]
        self.problem = ""
        self.fd = None
        self.fencing = False
        self.fired_at = None
        self.fired_ok = False
        if not self.armed:
            return
        if self.sf["action"] == "watchdog":
            if in_container():
                self._disarm("refusing the watchdog action inside a container: its watchdog device would be the machine's")
                return
            try:
                self.fd = os.open(self.sf["watchdog_device"], os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as err:
                self._disarm("cannot open %s: %s" % (self.sf["watchdog_device"], err.strerror or err))
                return
            self._set_timeout()
            LOG.info("self-fence armed: watchdog %s (timeout %d s) is fed every beat", self.sf["watchdog_device"], self.sf["watchdog_timeout"])
        elif self.sf["action"] == "poweroff" and not started_by_systemd():
            self._disarm("refusing the poweroff action: not a systemd service (INVOCATION_ID set and parent PID 1); "
                         "use action 'command' when running the writer by hand")
        else:
            LOG.info("self-fence armed: action %s after %.0f s without a write and without a peer majority", self.sf["action"], self.sf["deadline_s"])

    def _disarm(self, why: str):
        self.armed = False
        self.problem = why
        LOG.error("self-fence NOT armed: %s", why)

    def _set_timeout(self):
        import fcntl  # pylint: disable=import-outside-toplevel
        import struct  # pylint: disable=import-outside-toplevel

        wdioc_settimeout = 0xC0045706
        try:
            fcntl.ioctl(self.fd, wdioc_settimeout, struct.pack("i", self.sf["watchdog_timeout"]))
        except OSError as err:
            LOG.warning("watchdog %s: cannot set the timeout to %d s (%s); its own timeout applies",
                        self.sf["watchdog_device"], self.sf["watchdog_timeout"], err.strerror or err)

    def feed(self):
        if self.fd is not None and not self.fencing:
            try:
                os.write(self.fd, b"\0")
            except OSError as err:
                LOG.error("watchdog %s: keep-alive failed: %s", self.sf["watchdog_device"], err.strerror or err)

    def fence(self, reason: str):
        """Fence (once per episode; a failed command is retried after 5 beats)."""
        now = time.monotonic()
        if self.fd is not None:
            if not self.fencing:
                self.fencing = True
                LOG.critical("SELF-FENCE: %s", reason)
                LOG.critical("SELF-FENCE: no longer feeding %s; the host resets within %d s", self.sf["watchdog_device"], self.sf["watchdog_timeout"])
            return
        if self.fired_ok or (self.fired_at is not None and now - self.fired_at < 5 * self.interval):
            return
        self.fencing = True
        self.fired_at = now
        argv = list(POWEROFF_ARGV) if self.sf["action"] == "poweroff" else list(self.sf["command"])
        LOG.critical("SELF-FENCE: %s; running %s", reason, " ".join(argv))
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.sf["command_timeout"], check=False)
        except (subprocess.TimeoutExpired, OSError) as err:
            LOG.critical("SELF-FENCE: %s failed: %s", argv[0], err)
            return
        if done.returncode != 0:
            LOG.critical("SELF-FENCE: %s exited %d: %s", argv[0], done.returncode, done.stderr.decode("utf-8", "replace").strip()[:300])
            return
        self.fired_ok = True

    def recovered(self):
        if self.fencing:
            LOG.warning("self-fence: conditions cleared (store writable or peer majority back)")
        self.fencing = False
        self.fired_ok = False
        self.fired_at = None

    def close(self, graceful: bool):
        if self.fd is None:
            return
        if graceful and not self.fencing:
            try:
                os.write(self.fd, b"V")  # magic close: disarm (unless the driver has nowayout)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None
