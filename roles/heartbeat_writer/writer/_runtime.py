# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runtime state kept across restarts of one boot (seq, self-fence clock, manifest), the boot id, sd_notify."""

from __future__ import annotations

import json
import os
import socket
import time

from ._errors import InvalidInput
from ._workers import LOG


def start_seq(state: dict | None, boot_id: str, boottime: float) -> int:
    """The first seq of this process: above anything this boot has published, even without saved state.

    Normally the saved runtime state (``state_dir``, kept across restarts, gone at reboot) gives the last seq.
    The floor, milliseconds of CLOCK_BOOTTIME, covers a lost state: seq grows by one per beat (at least 0.1 s
    apart), per stopped record and per process start (tens of milliseconds each), never by 1000 a second.
    """
    floor = int(boottime * 1000)
    if state and state.get("boot_id") == boot_id and isinstance(state.get("seq"), int):
        return max(state["seq"] + 1, floor)
    return max(floor, 1)


def _write_local(path: str, data: bytes):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _read_json(path: str):
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def read_boot_id(path: str) -> str:
    """The boot id systemd gave us (KVMHA_BOOT_ID=%b in the unit), else the kernel's.

    systemd's own is the one to trust: in a container, hardening options such as ProtectControlGroups= remount
    /proc and hide the container's boot id, so the file would show the host kernel's, the same for every
    container and across container reboots.
    """
    boot_id = os.environ.get("KVMHA_BOOT_ID", "").strip()
    if not boot_id:
        with open(path, encoding="ascii") as handle:
            boot_id = handle.read().strip()
    if not boot_id or len(boot_id) > 64:
        raise InvalidInput("%s does not hold a boot id" % path)
    return boot_id


def boottime() -> float:
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


class Notifier:
    """sd_notify(3) without libsystemd."""

    def __init__(self):
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.sock = None
        if address:
            if address.startswith("@"):
                address = "\0" + address[1:]
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0))
                self.sock.connect(address)
            except OSError as err:
                LOG.warning("cannot reach systemd's notify socket: %s", err)
                self.sock = None
        self.watchdog = bool(os.environ.get("WATCHDOG_USEC"))

    def send(self, message: str):
        if self.sock is not None:
            try:
                self.sock.send(message.encode("utf-8", "replace"))
            except OSError:
                pass
