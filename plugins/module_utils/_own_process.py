# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""A call in a process of its own, so that what it leaves behind cannot touch the next one.

pyghmi runs one event loop per process, shared by every session in it, and a login it gives up on is not ended:
its thread goes on driving that loop with retries. The next BMC asked by the same process was measured to suffer
for it (a login to a dead address abandoned at its deadline, then a live BMC, 96 processes on the lab: 27 of the
live logins 0.2-1.8 s late, 2 of the status reads never answered at all; docs/BENCHMARKS.md). ``call_in_own_process`` forks, runs the call in the
child and hands back its value - or its ``KvmhaError``, kind, message and partial result intact - through a pipe.
The child's standard input and output are ``/dev/null`` (a module's stdout is its JSON channel). A child that
outlives its time is killed and reaped; whatever it left running ends with it.

The value must be JSON-ready. Fork from a process that has not used pyghmi itself (its state would be copied
without the thread that serves it).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

from ._errors import DeadlineExceeded, KvmhaError

# A call whose own deadline ends it is waited for this much longer before its process is killed.
CHILD_GRACE_S = 0.5


def call_in_own_process(func, timeout: float, what: str):
    """Return ``func()`` as run in a forked child, or raise the ``KvmhaError`` it raised there; ``DeadlineExceeded``
    when the child has not answered within ``timeout`` seconds (it is then killed)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns from here
        os.close(reader)
        _run_child(func, writer, what)
    os.close(writer)
    answer = None
    try:
        answer = _read_until(reader, time.monotonic() + timeout)
    finally:
        os.close(reader)
        if answer is None:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if answer is None:
        raise DeadlineExceeded("%s did not finish within %g s; its process was ended" % (what, timeout))
    return _outcome(answer, what)


def _run_child(func, writer: int, what: str):
    try:
        quiet = os.open(os.devnull, os.O_RDWR)
        os.dup2(quiet, 0)
        os.dup2(quiet, 1)
        sys.stdout = os.fdopen(quiet, "w")  # whatever file object stood for the caller's stdout
        payload = _encode(_outcome_of(func, what), what)
        while payload:
            payload = payload[os.write(writer, payload):]
    finally:
        os._exit(0)  # no atexit handlers, no cleanup of the parent's files (AnsiballZ's temporary directory)


def _outcome_of(func, what: str) -> dict:
    try:
        return {"value": func()}
    except KvmhaError as error:
        return _error(error.kind, error.msg, error.result)
    except Exception as error:  # a bug, not a device's answer: still this call's clear error, not a hang
        return _error("error", "%s failed: %s: %s" % (what, type(error).__name__, error))


def _encode(outcome: dict, what: str) -> bytes:
    try:
        return json.dumps(outcome).encode("utf-8")
    except (TypeError, ValueError) as error:
        return json.dumps(_error("error", "%s returned what cannot be handed back: %s" % (what, error))).encode("utf-8")


def _error(kind: str, msg: str, result: dict | None = None) -> dict:
    return {"error": {"kind": kind, "msg": msg, "result": result or {}}}


def _read_until(reader: int, deadline: float) -> bytes | None:
    """Everything the child writes up to its end of the pipe, or ``None`` when ``deadline`` comes first."""
    chunks = []
    poller = select.poll()  # not select(): a worker of a large run may hold file descriptors past FD_SETSIZE
    poller.register(reader, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            return None
        chunk = os.read(reader, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _outcome(answer: bytes, what: str):
    try:
        outcome = json.loads(answer.decode("utf-8"))
    except ValueError:
        outcome = None
    if not isinstance(outcome, dict):  # the child died before it could answer (a crash in C, the OOM killer)
        raise KvmhaError("%s ended without an answer" % what)
    if "error" in outcome:
        error = outcome["error"]
        raise KvmhaError(error["msg"], error["result"], error["kind"])
    return outcome["value"]
