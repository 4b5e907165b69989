# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A stand-in for a pyghmi session, shared by the ipmi unit tests (the transport is the only thing faked)."""

from __future__ import annotations

ERROR = "error"  # a scripted read that fails


class FakeSession:
    """A pyghmi session double: ``raw_command`` like pyghmi's, driven by a scripted chassis.

    ``reads`` scripts the answers to Get Chassis Status one by one ("on", "off" or ERROR); once it is used up the
    chassis answers with ``state``, which chassis control commands change unless ``stuck``.
    """

    def __init__(self, state="on", reads=(), stuck=False, control_response=None, control_raises=None):
        self.state = state
        self.reads = list(reads)
        self.stuck = stuck
        self.control_response = control_response
        self.control_raises = control_raises
        self.calls = []

    def raw_command(self, netfn, command, data=()):
        self.calls.append((netfn, command, tuple(data)))
        assert netfn == 0x00
        if command == 0x01:
            answer = self.reads.pop(0) if self.reads else self.state
            if answer == ERROR:
                return {"netfn": 1, "command": 1, "code": 0xFFFF, "error": "timeout"}
            return {"netfn": 1, "command": 1, "code": 0, "data": bytearray([1 if answer == "on" else 0, 0, 0])}
        if command == 0x02:
            if self.control_raises is not None:
                raise self.control_raises
            if self.control_response is not None:
                return self.control_response
            if not self.stuck:
                self.state = {0x00: "off", 0x01: "on", 0x05: "off"}[data[0]]
            return {"netfn": 1, "command": 2, "code": 0, "data": bytearray()}
        raise AssertionError("unexpected command %r" % command)

    @property
    def controls(self):
        return [data[0] for netfn, command, data in self.calls if command == 0x02]

    @property
    def status_reads(self):
        return sum(1 for _n, command, _d in self.calls if command == 0x01)
