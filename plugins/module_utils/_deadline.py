# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# Plain standard-library Python (shipped to hypervisors with the heartbeat writer).
"""Hard wall-clock deadlines around calls that may block forever.

Libraries such as pyghmi, or a read on a hung NFS/FUSE mount, can block without any timeout of their own.
``call_with_deadline`` runs the call in a daemon thread and stops waiting when the deadline passes: the caller
gets ``DeadlineExceeded`` and carries on; the abandoned thread dies with the (short-lived) process.
"""

from __future__ import annotations

import threading
import time

from ._errors import DeadlineExceeded


def call_with_deadline(func, timeout: float, what: str, *args, **kwargs):
    """Return ``func(*args, **kwargs)``, or raise ``DeadlineExceeded`` after ``timeout`` seconds.

    Exceptions raised by ``func`` propagate unchanged.
    """
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = func(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="deadline:%s" % what, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise DeadlineExceeded("%s did not finish within %.1f s" % (what, timeout))
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class Deadline:
    """A point in monotonic time by which a multi-step operation must be done."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.expires
