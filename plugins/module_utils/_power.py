# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""One power run - read, compare states, send at most one command, confirm - for any power backend.

``PowerOperation`` is the state machine of one ``ipmi_power``/``redfish_power``/``fence_agent_power`` run. It drives
a client with three calls, each under the run's ``Deadline``: ``connect(deadline)``, ``power_state(deadline)``
(``on`` or ``off``, or a ``BmcError``) and ``chassis_control(action, deadline)`` (``on``, ``off`` or ``shutdown``).
It compares *states*, not actions, sends at most one command, then confirms with N consecutive reads. ``fenced``
is true only when this run saw the power off N times in a row; a read that failed or said "on" resets the count,
so "unknown" never counts as off. Power cycle and reset are not offered by any backend: a reset is never a fence.
"""

from __future__ import annotations

import time

from ._deadline import Deadline, call_with_deadline
from ._errors import BmcError, BmcTimeout, BmcUnreachable, InvalidInput, KvmhaError, PowerStateMismatch, check_range
from ._marks import check_fence_token

ON = "on"
OFF = "off"
UNKNOWN = "unknown"

STATES = ("status", "on", "off", "shutdown")
# The power state each requested state leads to (``status`` changes nothing).
TARGET_POWERSTATE = {"on": ON, "off": OFF, "shutdown": OFF}


def empty_result(state: str) -> dict:
    """The result shape of every ``ipmi_power`` run, success or failure."""
    return {
        "changed": False,
        "state": state,
        "action": "none",
        "powerstate": {"before": UNKNOWN, "after": UNKNOWN},
        "fenced": False,
        "confirmations": 0,
        "elapsed": 0.0,
    }


class PowerOperation:
    """One run: bring the chassis to ``state`` (or just read it), confirmed by ``confirm`` consecutive reads."""

    def __init__(self, client, state: str, confirm: int = 2, poll_interval: float = 0.1,
                 timeout: float = 10.0, check_mode: bool = False, sleep=time.sleep, clock=time.monotonic):
        if state not in STATES:
            raise InvalidInput("state must be one of %s, not %r" % (", ".join(STATES), state))
        check_range("confirm", confirm, 1, 100)
        check_range("poll_interval", poll_interval, 0.01, 10, unit="seconds")
        check_range("deadline_s", timeout, 0, 3600, exclusive_minimum=True, unit="seconds")
        self.client = client
        self.state = state
        self.confirm = confirm
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.check_mode = check_mode
        self._sleep = sleep
        self._clock = clock
        self.result = empty_result(state)

    def run(self) -> dict:
        started = self._clock()
        deadline = Deadline(self.timeout)
        try:
            self._run(deadline)
        except (BmcError, InvalidInput) as error:  # a backend may find its input wrong only once it asks the device
            error.result = dict(self._finish(started), **error.result)
            raise
        return self._finish(started)

    def _finish(self, started: float) -> dict:
        self.result["elapsed"] = round(self._clock() - started, 3)
        return self.result

    def _run(self, deadline: Deadline) -> None:
        result = self.result
        self.client.connect(deadline)
        before = self.client.power_state(deadline)
        result["powerstate"]["before"] = before
        result["powerstate"]["after"] = before
        want = TARGET_POWERSTATE.get(self.state)

        if want is None:  # status: report; confirm an "off" so that fenced can be trusted
            if before == OFF:
                self._confirm(OFF, deadline, counted=1, command_sent=False)
            return

        if before == want:
            self._confirm(want, deadline, counted=1, command_sent=False)
            return

        result["changed"] = True
        result["action"] = self.state
        if self.check_mode:
            result["powerstate"]["after"] = want  # what a real run would reach
            return
        try:
            self.client.chassis_control(self.state, deadline)
        except BmcError as error:
            # The command may or may not have reached the chassis when the BMC stopped answering.
            if not isinstance(error, (BmcTimeout, BmcUnreachable)):
                result["changed"] = False
            result["powerstate"]["after"] = UNKNOWN
            raise
        self._confirm(want, deadline, counted=0, command_sent=True)

    def _confirm(self, want: str, deadline: Deadline, counted: int, command_sent: bool) -> None:
        """Read until ``confirm`` consecutive reads say ``want``, or raise ``PowerStateMismatch``.

        After a command the first read is immediate and later ones come every ``poll_interval``; a read saying
        otherwise, or failing, resets the count, and polling goes on until the deadline. Without a command (the
        chassis was already in the state, which counts as the first read) a read saying the other state means the
        chassis changed under us: ``status`` reports it, the other states fail without sending anything.
        """
        result = self.result
        result["confirmations"] = counted
        last_error = None
        flipped = False
        immediate = command_sent
        while counted < self.confirm:
            if not immediate:
                self._sleep(max(0.0, min(self.poll_interval, deadline.remaining())))
            immediate = False
            if deadline.expired():
                break
            try:
                seen = self.client.power_state(deadline)
            except BmcError as error:  # unknown: never counts, and resets the count
                last_error = error
                seen = UNKNOWN
            result["powerstate"]["after"] = seen
            counted = counted + 1 if seen == want else 0
            result["confirmations"] = counted
            if not command_sent and seen not in (want, UNKNOWN):
                flipped = True
                break
        confirmed = counted >= self.confirm
        if want == OFF:
            result["fenced"] = confirmed
        if confirmed or (flipped and self.state == "status"):
            return
        target = self.client.target
        if flipped:
            raise PowerStateMismatch(
                "%s: the chassis was %s, then read %s while it was being confirmed; no power command was sent"
                % (target, want, result["powerstate"]["after"]))
        raise PowerStateMismatch(
            "%s: %s, but %d consecutive reads saying %s did not come within the %g s timeout (%d so far)%s"
            % (
                target,
                "power %s was sent" % self.state if command_sent else "the chassis read %s" % want,
                self.confirm,
                want,
                self.timeout,
                counted,
                "" if last_error is None else "; last read failed: %s" % last_error,
            )
        )


def fence_token_refusal(token: dict | None, check_mode: bool) -> str | None:
    """Check a module's ``fence_token`` (``FENCE_TOKEN_SPEC``) under its own deadline: the reason a power-off must
    not be sent (the host is in maintenance), or None. A lease that moved on raises ``LeaseLost``, whose result the
    caller replaces with its own shape (the lease's fields are not a power result)."""
    if token is None:
        return None
    seconds = check_range("fence_token.deadline_s", token["deadline_s"], 0, 600, exclusive_minimum=True, unit="seconds")
    return call_with_deadline(check_fence_token, seconds, "checking the fencing token of %s" % token["host"],
                              token["store_path"], token["cluster"], token["owner"], token["generation"],
                              token["host"], check_mode=check_mode)


def run_power(module, make_client) -> dict:
    """One power module run: ``make_client(params)`` builds the backend's client, ``PowerOperation`` drives it.

    With a ``fence_token`` the token is checked first, right before the device is contacted.
    """
    params = module.params
    token = params.get("fence_token")
    if token is not None and params["state"] not in ("off", "shutdown"):
        raise InvalidInput("fence_token guards a power-off: it needs state off or shutdown, not %s" % params["state"],
                           result=empty_result(params["state"]))
    try:
        refused = fence_token_refusal(token, module.check_mode)
    except KvmhaError as error:
        error.result = empty_result(params["state"])
        raise
    if refused:
        return dict(empty_result(params["state"]), refused=refused)
    try:
        operation = PowerOperation(
            make_client(params),
            state=params["state"],
            confirm=params["confirm"],
            poll_interval=params["poll_interval"],
            timeout=params["deadline_s"],
            check_mode=module.check_mode,
        )
    except InvalidInput as error:
        error.result = dict(empty_result(params["state"]), **error.result)
        raise
    result = operation.run()
    if module.diff_mode:
        result["diff"] = {
            "before": {"powerstate": result["powerstate"]["before"]},
            "after": {"powerstate": result["powerstate"]["after"]},
        }
    return result
