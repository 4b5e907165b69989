# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Evidence gathered while the watch goes on, so that it is ready when a host turns suspect.

A host that has missed one beat (``overdue``) is still alive by the policy, and nothing may be done to it. But the
read-only probes can start: the first sample of its VM disks, and - when the caller passes its management address -
the banner of its SSH server (the probe of ``_reach``). When it turns stale ``misses`` beats later, the disk window
has passed: the second disk sample is taken the moment it is found, and the management answer is there; investigation
starts with evidence instead of waiting for it.
Nothing here decides or acts: the decision still waits for the policy's missed-beat count.

A watch that returns at the first overdue host (so that the caller can look up that host's management address)
hands its early evidence to the next watch as ``resume``; its judgement goes over through the watch handover
(``_handover``), like any two watches of one observer.
"""

from __future__ import annotations

import threading
import time

from ._diskactivity import sample, second_verdicts
from ._errors import InvalidInput
from ._heartbeat import validate_host_name
from ._ping import aggregate
from ._reach import probe, validate_settings


class EarlyEvidence:
    """The early evidence of one watch: disk baselines of overdue hosts, and their management banners."""

    def __init__(self, mgmt_targets: dict, attempts: int = 2, deadline: float = 1.0, probe_one=probe, wall=time.time):
        self.since: dict = {}  # host -> wall time it was first seen overdue (or suspect)
        self.baselines: dict = {}  # host -> first disk sample (see _diskactivity.baseline)
        self.mgmt: dict = {}  # host -> mgmt_probe-shaped result, once its probe has ended
        self.identities: dict = {}  # host -> (boot_id, seq) of its record when it was first late
        self._targets = _valid_targets(mgmt_targets or {}, attempts, deadline)
        self._attempts, self._deadline = attempts, deadline
        self._probe, self._wall = probe_one, wall
        self._asking: dict = {}  # host -> the thread that asks its SSH server

    def start(self) -> None:
        """Ask every given host's SSH server now, each in its own thread; the watch does not wait for them."""
        for host, (address, port) in self._targets.items():
            self._asking[host] = threading.Thread(target=self._ask, args=(host, address, port), daemon=True)
            self._asking[host].start()

    def settle(self, hosts: list, clock=time.monotonic) -> None:
        """Wait for the answers still coming for ``hosts`` (at most the probe's own deadline): the probe play would
        otherwise ask again and wait longer."""
        until = clock() + self._attempts * self._deadline + 0.5
        for host in hosts:
            if host in self._asking:
                self._asking[host].join(max(0.0, until - clock()))

    def _ask(self, host: str, address: str, port: int) -> None:
        asked_at = self._wall()
        answer = self._probe(address, port, self._attempts, self._deadline)
        self.mgmt[host] = dict(aggregate([answer]), probes=[answer], asked_at=round(asked_at, 3), early=True)

    def note(self, late: list, records: dict, sample) -> None:
        """Take the first disk sample of every host late for the first time; forget hosts that beat again.

        Only a new record (another seq or boot) is a beat: a host whose age estimate dips under "late" for a sample
        (a new watch's first look is younger by the skew allowance) keeps its head start."""
        for host in list(self.since):
            if host not in late and _identity(records.get(host)) != self.identities.get(host):
                self.forget(host)
        for host in late:
            if host not in self.since:
                self.since[host] = self._wall()
                self.identities[host] = _identity(records.get(host))
                self.baselines[host] = sample(records.get(host))

    def disk_activity(self, hosts: list, window: float, sample_disks=sample) -> dict:
        """The verdict on the VM disks of each of ``hosts`` whose first sample is at least ``window`` seconds old,
        from a second sample taken now (shaped like vm_disk_activity's); a host sampled later is left to the probe play."""
        ready = {h: sorted(self.baselines[h]["disks"]) for h in hosts if h in self.baselines
                 and self._wall() - self.baselines[h]["sampled_at"] >= window}
        return second_verdicts(ready, self.baselines, sample_disks, self._wall) if ready else {}

    def report(self, hosts: list, disk_activity=None) -> dict:
        """What is known early of ``hosts``: since when each was late, its management answer if it came, and the
        verdict on its disks if the second sample was taken (``disk_activity``)."""
        disk_activity = disk_activity or {}
        return {h: {"since": round(self.since[h], 3), "mgmt": self.mgmt.get(h), "disk_activity": disk_activity.get(h)}
                for h in hosts if h in self.since}

    def forget(self, host=None) -> None:
        for known in (self.since, self.baselines, self.identities):
            if host is None:
                known.clear()
            else:
                known.pop(host, None)

    def handover(self) -> dict:
        return {"since": dict(self.since), "baselines": dict(self.baselines),
                "identities": {h: list(i) if i else None for h, i in self.identities.items()}}

    def take_over(self, state: dict) -> None:
        if set(state) - {"since", "baselines", "identities"}:
            raise InvalidInput("resume: the early evidence has only since, baselines and identities")
        since, baselines, identities = _section(state, "since"), _section(state, "baselines"), _section(state, "identities")
        for host, when in since.items():
            validate_host_name(host)
            if isinstance(when, bool) or not isinstance(when, (int, float)) or not isinstance(baselines.get(host), dict):
                raise InvalidInput("resume: the early evidence of %s is not a time and a disk sample" % host)
            identity = identities.get(host)
            if identity is not None and not (isinstance(identity, list) and len(identity) == 2):
                raise InvalidInput("resume: the identity of %s is not [boot_id, seq]" % host)
        self.since.update(since)
        self.baselines.update((h, baselines[h]) for h in since)
        self.identities.update((h, tuple(identities[h]) if identities.get(h) else None) for h in since)


def resume_state(early: EarlyEvidence) -> dict:
    """What the next watch needs to go on with the same early evidence (see ``read_resume``)."""
    return {"early": early.handover()}


def read_resume(resume: dict) -> dict:
    """The early evidence of ``resume``, or ``InvalidInput`` saying why it cannot be used."""
    if not isinstance(resume, dict):
        raise InvalidInput("resume must be the resume of an earlier watch")
    return _section(resume, "early")


def _identity(record):
    return (record["boot_id"], record["seq"]) if record else None


def _section(doc: dict, key: str) -> dict:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise InvalidInput("resume: %s must be a dict" % key)
    return value


def _valid_targets(targets: dict, attempts: int, deadline: float) -> dict:
    valid = {}
    for host, target in targets.items():
        if not isinstance(target, dict) or not isinstance(target.get("address"), str) or not target["address"]:
            raise InvalidInput("mgmt_targets: %s needs an address" % str(host)[:100])
        port = target.get("port", 22)
        if isinstance(port, str) and port.isdigit():
            port = int(port)  # an inventory's ansible_port may be a string
        if isinstance(port, bool) or not isinstance(port, int):
            raise InvalidInput("mgmt_targets: the port of %s must be an integer" % str(host)[:100])
        validate_settings(port, attempts, deadline)
        valid[validate_host_name(host)] = (target["address"], port)
    return valid
