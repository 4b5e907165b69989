# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# Plain standard-library Python.
"""Does a host's SSH server answer on its management address? One TCP connection and the server's banner.

A dead host never answers, so a probe bounded by a task timeout spends the whole timeout on it. This one sends at
most ``attempts`` connection requests (one SYN each), each given ``deadline`` seconds to bring the server's
identification line (RFC 4253 4.2, ``SSH-...``). Like a ping it can only prove "up": a banner shows that the
host's kernel and its SSH server answer; no banner proves nothing (the path, a firewall or the controller may be
at fault), so callers must treat ``reachable: false`` as unknown, never as dead.

The decisions are pure (``parse_banner``, ``outcome``, ``shape``); ``probe`` and ``probe_all`` do the I/O.
"""

from __future__ import annotations

import socket
import threading
import time

from ._errors import check_range
from ._ping import validate_targets

# RFC 4253: the identification line is at most 255 bytes, other lines may come first; read no more than this.
MAX_BANNER_BYTES = 8192
_REFUSED = (ConnectionRefusedError, ConnectionResetError)


def validate_settings(port: int, attempts: int, deadline: float) -> None:
    check_range("port", port, 1, 65535)
    check_range("attempts", attempts, 1, 5)
    check_range("deadline_s", deadline, 0.05, 60, unit="seconds")


def parse_banner(data: bytes):
    """The server's identification line (``SSH-2.0-...``) among the complete lines of ``data``, or ``None``."""
    for raw in data.split(b"\n")[:-1]:
        line = raw.rstrip(b"\r")
        if line.startswith(b"SSH-"):
            return line[:255].decode("ascii", "replace")
    return None


def outcome(error) -> str:
    """How one attempt ended, from the exception that ended it (``None``: a banner came)."""
    if error is None:
        return "banner"
    if isinstance(error, _REFUSED):
        return "refused"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(error, EOFError):
        return "no_banner"
    return "error"


def retry(answer: str) -> bool:
    """Only silence is asked again: a refusal or a server that spoke is an answer already."""
    return answer in ("timeout", "error")


def shape(target: str, port: int, answer: str, banner, attempts: int, error, elapsed: float) -> dict:
    """One target's result. ``reachable`` is true exactly when the SSH server sent its identification line."""
    return {"target": target, "port": port, "reachable": answer == "banner", "answer": answer, "banner": banner,
            "attempts": attempts, "error": None if error is None else str(error) or type(error).__name__,
            "elapsed": round(elapsed, 3)}


def _read_banner(target: str, port: int, deadline: float, connect, clock):
    """One attempt: connect and read lines until the identification line, all within ``deadline`` seconds."""
    ends = clock() + deadline
    with connect((target, port), timeout=deadline) as sock:
        data = b""
        while len(data) < MAX_BANNER_BYTES:
            sock.settimeout(max(0.001, ends - clock()))
            chunk = sock.recv(1024)
            if not chunk:
                raise EOFError("the server closed the connection without an SSH identification line")
            data += chunk
            banner = parse_banner(data)
            if banner is not None:
                return banner
        raise EOFError("no SSH identification line in the first %d bytes" % MAX_BANNER_BYTES)


def probe(target: str, port: int = 22, attempts: int = 2, deadline: float = 1.0,
          connect=socket.create_connection, clock=time.monotonic) -> dict:
    """Ask one target, at most ``attempts`` times; never raises for a host that does not answer."""
    started = clock()
    answer, banner, error, tried = "error", None, None, 0
    while tried < attempts:
        tried += 1
        try:
            banner, error = _read_banner(target, port, deadline, connect, clock), None
        except (OSError, EOFError) as failure:
            banner, error = None, failure
        answer = outcome(error)
        if not retry(answer):
            break
    return shape(target, port, answer, banner, tried, error, clock() - started)


def probe_all(targets, port: int = 22, attempts: int = 2, deadline: float = 1.0, probe_one=probe) -> list:
    """Every target at once (one thread each), so the run lasts as long as its slowest target."""
    targets = validate_targets(targets)
    validate_settings(port, attempts, deadline)
    results: list = [None] * len(targets)

    def run(index, target):
        results[index] = probe_one(target, port, attempts, deadline)

    threads = [threading.Thread(target=run, args=(i, t), daemon=True) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
