# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The writer's logger and its two helpers for slow work: a worker thread that never stacks a blocked job, and a
reporter that logs a failure when it starts or changes, not every beat."""

from __future__ import annotations

import logging
import threading
import time

LOG = logging.getLogger("kvmha-heartbeat")


class Worker:
    """One background thread running one job at a time. A job that is still running (a hung store, a stuck
    libvirt call) is never stacked up again: ``submit`` refuses until it has finished."""

    def __init__(self, name: str):
        self.name = name
        self._cond = threading.Condition()
        self._job = None
        self._since = None
        self._outcome = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            with self._cond:
                while self._job is None:
                    self._cond.wait()
                func, args = self._job
            try:
                outcome = (True, func(*args))
            except Exception as exc:  # the job's failure is the main loop's to report
                outcome = (False, exc)
            with self._cond:
                self._job = None
                self._since = None
                self._outcome = outcome
                self._cond.notify_all()

    def busy_for(self):
        """Seconds the current job has been running, or None when idle."""
        with self._cond:
            return None if self._since is None else time.monotonic() - self._since

    def submit(self, func, *args) -> bool:
        with self._cond:
            if self._job is not None:
                return False
            self._job = (func, args)
            self._since = time.monotonic()
            self._outcome = None
            self._cond.notify_all()
            return True

    def wait(self, timeout: float):
        """Wait up to ``timeout`` for the current job; return its (ok, value) once, or None if still running."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._job is not None:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            outcome, self._outcome = self._outcome, None
            return outcome


class Reporter:
    """Logs a failure when it starts or changes, then at most once a minute while it lasts, and its recovery."""

    def __init__(self, what: str, repeat: float = 60.0):
        self.what = what
        self.repeat = repeat
        self.failing_since = None
        self.count = 0
        self._last_msg = None
        self._last_log = 0.0

    def failed(self, message: str, key: str | None = None, level=logging.ERROR):
        """Count a failure; ``key`` (default: the message) decides what counts as the same failure."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        self.count += 1
        key = message if key is None else key
        if key != self._last_msg or now - self._last_log >= self.repeat:
            suffix = "" if self.count == 1 else " (failing for %.0f s, %d times)" % (now - self.failing_since, self.count)
            LOG.log(level, "%s: %s%s", self.what, message, suffix)
            self._last_msg, self._last_log = key, now

    def ok(self):
        if self.failing_since is not None:
            LOG.warning("%s: recovered after %.1f s (%d failures)", self.what, time.monotonic() - self.failing_since, self.count)
        self.failing_since, self.count, self._last_msg = None, 0, None
