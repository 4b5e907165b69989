#!/usr/bin/python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: kvm_heartbeat
short_description: Read (and watch) every hypervisor's heartbeat on the shared store, or mark one stopped
version_added: 0.1.0
description:
  - With O(state=check), reads the heartbeat records of many hosts in one call and judges each one
    C(fresh), C(stale), C(stopped), C(missing), C(invalid) or C(clock_skew). This is the watchdog's healthy path,
    so its cost stays flat as the cluster grows and it opens no connection to any hypervisor.
  - Liveness is judged by the reader's clocks only, never by the timestamp the writer put in the record. While
    watching, a host is stale when its sequence number has not changed for O(misses) x its interval on the reader's
    monotonic clock. The first read of a host estimates its age from the file's modification time, which the store
    sets from its own clock.
  - With O(watch) greater than zero, keeps sampling every O(poll) seconds, and also at the moment a host would have
    missed a beat or turn stale by the reader's clock, and returns as soon as any host turns suspect, or when the
    window ends. A one-minute schedule with a 50-second window detects failures in seconds.
  - Hosts that die together go stale up to one interval apart (each writer beats on its own phase). When the first
    suspect appears while other hosts have already missed a beat (RV(overdue)), the watch goes on until those beat
    again or turn stale, so that they are investigated together and the storm guard sees all of them.
  - The observer judges itself too. When the store cannot be read in time, or every host (at least two) looks dead,
    the likelier explanation is that the observer is cut off, so RV(observer_ok) is false and nobody should be
    fenced on its word.
  - Reads the maintenance and fenced marks of the store too (see M(kvmha.cluster.host_mark)). A host in maintenance
    is never a suspect. A host marked fenced is expected to be dead and is not a suspect either; if its heartbeat is
    alive again it is listed in RV(returning), so it can be reconciled. When the watch ends with suspects, it reads
    their maintenance marks and operator's confirm-offs once more (RV(suspect_marks)), since an operator may have set
    one during the watch, and the decision takes them from there.
  - Reads the owed recoveries of the store too (see M(kvmha.cluster.vm_evacuate)). A host with an open owed document
    is not a suspect (it was confirmed down), and RV(owed) says which documents have VMs due for work. With
    O(until_work), a watch returns at the first sample where recovery work waits - a VM due, an owed document that
    cannot be read, a fenced host back (RV(work)).
  - With O(state=stopped), writes the graceful-stop marker for O(host), keeping everything its last record knew
    (its VM list in particular), so the watchdog investigates at once instead of waiting for staleness.
  - With O(handover), a check continues the judgement of the previous check on the same observer and leaves its
    own for the next one, so that back-to-back runs judge a host as one continuous watch would.
author:
  - kvmha.cluster developers (@kvmha)
extends_documentation_fragment:
  - kvmha.cluster._attributes
  - kvmha.cluster._attributes.ACTIONGROUP_STORE
  - kvmha.cluster._attributes.CHECK_MODE
  - kvmha.cluster._store
attributes:
  check_mode:
    support: full
    details: With O(state=stopped), reports whether the marker would be written, without writing it.
  diff_mode:
    support: full
    details: With O(state=stopped), shows the record's state and sequence number before and after.
  idempotent:
    support: full
options:
  state:
    description:
      - V(check) reads heartbeats and changes nothing but the watch handover (O(handover)).
      - V(stopped) writes the stopped marker for O(host).
    type: str
    choices: [check, stopped]
    default: check
  cluster:
    description: The name of the cluster whose store this is; it only labels the result (journal, metrics).
    type: str
    default: default
  hosts:
    description:
      - The hosts to check. Default is every host that has a record in the store.
      - A listed host without a record is reported as C(missing).
      - A name that is not a valid host name (RFC 1123; it becomes a file name on the store) is reported in
        RV(invalid_hosts) with a warning and skipped; the other hosts are still watched.
    type: list
    elements: str
  exclude:
    description:
      - Hosts that are never reported as suspects, for example hosts in maintenance. They are still read and reported.
    type: list
    elements: str
    default: []
  host:
    description: The host whose stopped marker O(state=stopped) writes.
    type: str
  reason:
    description: A short text recorded in the stopped marker (who stopped it and why).
    type: str
    default: ""
  watch:
    description:
      - Seconds to keep watching. V(0) reads once.
      - Returns early as soon as a host is suspect (or, with O(until_work), when recovery work waits).
    type: float
    default: 0
  until_work:
    description:
      - Also end the watch at the first sample where recovery work waits (RV(work)), so that the caller can do it
        at once. The watchdog sets it on its first watch of a run and not on the watch that follows the work.
    type: bool
    default: false
  until_overdue:
    description:
      - Also end the watch at the first sample where a watched host has missed a beat (RV(overdue)) and none is
        suspect yet, with RV(resume) in the result, so that the caller can look up those hosts' management
        addresses and watch on with O(resume) and O(mgmt_targets). The host is not suspect - nothing may be done to
        it, but the read-only probes can start, so that the evidence is ready when it turns stale.
    type: bool
    default: false
  resume:
    description:
      - The RV(resume) of a watch that ended with O(until_overdue) - its early evidence (since when each late host
        was late, its first disk sample), so that the head start is kept. The judgement itself goes on through the
        watch handover (O(handover)). A malformed resume is ignored with a warning.
    type: dict
  mgmt_targets:
    description:
      - Hosts whose SSH server to ask at once, in the background, while the watch goes on - a dict of host name to
        a dict with C(address) and C(port) (22 by default). The same read-only probe as M(kvmha.cluster.mgmt_probe), with O(mgmt_attempts) connections
        of O(mgmt_timeout_s) each; each answer is in RV(early). When the watch ends with such a host among the
        suspects, it waits for that host's answer still coming (at most the probe's own time), so that the answer is
        there for the decision.
    type: dict
    default: {}
  mgmt_attempts:
    description: Connections per host of O(mgmt_targets) (only silence is asked again).
    type: int
    default: 2
  mgmt_timeout_s:
    description: Seconds each connection of O(mgmt_targets) is given to bring the server's banner.
    type: float
    default: 1.0
  activity_window_s:
    description:
      - When a host is found suspect and the first sample of its VM disks (taken when it was first late) is at least
        this many seconds old, take the second sample at once and give the verdict in RV(early) (C(disk_activity)),
        so that M(kvmha.cluster.vm_disk_activity) need not run for it. A host sampled later gets none.
      - V(0) takes no second sample.
    type: float
    default: 0
  overdue_grace_s:
    description:
      - When the window ends while a host has missed a beat (RV(overdue)), watch on up to this many seconds more,
        until it beats again or turns suspect (at most O(misses) x its interval). The run that started that host's
        probes at its first missed beat then acts on it, rather than the next run, which would start them afresh.
      - V(0) ends at the window, as before.
    type: float
    default: 0
  poll:
    description: Most seconds between two samples while watching (a sample is also taken the moment a host would
      turn overdue or stale).
    type: float
    default: 0.5
  misses:
    description: How many intervals without a new sequence number make a host stale.
    type: int
    default: 3
  skew_allowance:
    description:
      - Seconds by which clocks may disagree. A record whose timestamp is further than this from its file's
        modification time is reported as C(clock_skew) (alive, writer clock wrong).
      - The first-read age estimate is reduced by this much, so that it never overstates a host's age.
    type: float
    default: 2.0
  observer_host:
    description:
      - The inventory name of the host this module runs on, when that host is itself a hypervisor.
        If its own heartbeat does not look alive, the observer reports itself as not OK.
    type: str
  store_timeout_s:
    description:
      - Hard deadline in seconds for one sample of the whole store (and, with O(state=stopped), for the read and for
        the write of the marker). A hung store fails the observer, not the hosts.
      - The old name O(read_timeout) is deprecated and will be removed in 1.0.0.
    type: float
    default: 10
    aliases: [read_timeout]
  max_record_size:
    description: Records larger than this many bytes are reported as C(invalid).
    type: int
    default: 1048576
  handover:
    description:
      - At the end of a check, write what it saw last of each host - its boot id, its sequence number and when
        that last changed on the observer's monotonic clock - to C(<store>/kvmha/handover/<cluster>/<observer>.json),
        and start each check from that file. A host whose heartbeat did not change in between then keeps its exact
        age instead of the estimate from its file's modification time less O(skew_allowance).
      - The file belongs to one boot of one observer (its kernel's boot id), so that two controllers or an observer
        host never read each other's. A handover that cannot be read or trusted is ignored with a warning; a seeded
        age is never older than the file's own age plus O(skew_allowance). Not written in check mode.
    type: bool
    default: true
  detail:
    description:
      - V(full) returns every field of every host.
      - V(suspects) returns every field only for suspects and clock-skewed hosts; alive hosts get C(status), C(age),
        C(seq) and C(boot_id). This keeps the result small on large clusters (the healthy path of the watchdog).
    type: str
    choices: [full, suspects]
    default: full
notes:
  - A C(missing), C(invalid), C(stale) or C(stopped) heartbeat is not proof that a host is down. It only makes the host
    a suspect that M(kvmha.cluster.host_investigate) then looks at with evidence from other paths.
  - The records are written by the C(kvmha.cluster.heartbeat_writer) role on every hypervisor.
seealso:
  - module: kvmha.cluster.host_investigate
"""

EXAMPLES = r"""
- name: Watch the cluster for up to 50 seconds, return as soon as a host is suspect
  kvmha.cluster.kvm_heartbeat:
    store_path: /var/lib/kvmha-lab/store
    hosts: "{{ groups['kvm_hosts'] }}"
    exclude: "{{ hosts_in_maintenance }}"
    watch: 50
  register: heartbeat

- name: Investigate only the suspects
  ansible.builtin.debug:
    msg: "{{ heartbeat.suspects }}"
  when: heartbeat.observer_ok and heartbeat.suspects | length > 0

- name: Mark h1 as gracefully stopped before maintenance
  kvmha.cluster.kvm_heartbeat:
    store_path: /var/lib/kvmha-lab/store
    state: stopped
    host: h1
    reason: "maintenance by alice: firmware update"
"""

RETURN = r"""
hosts:
  description:
    - Per host, the reader's judgement and what the last valid record said.
    - C(manifest) says where the VM list came from and how old it is (null for writers that do not report it); a
      writer that cannot reach libvirt keeps its last known list and reports the error there.
    - With O(detail=suspects), fresh hosts only have C(status), C(age), C(seq), C(boot_id) and C(rebooted).
  returned: state=check
  type: dict
  sample:
    h1:
      status: fresh
      reason: ""
      age: 1.2
      seq: 4242
      boot_id: 5f0c7a1e-4f1c-4b6e-9a59-0f3c2b0d9d11
      rebooted: false
      state: running
      interval: 2.0
      ts: 1764063000.5
      clock_offset: 0.001
      self_fence: {armed: false, deadline_s: 60.0}
      capacity: {mem_free_mib: 3900, vcpus_free: 6}
      vms: [{uuid: 0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e, name: g1, ha: true, priority: 50, memory_mib: 64,
             vcpus: 1, disks: [/var/lib/kvmha-lab/store/images/g1.img], group: ""}]
      manifest: {source: libvirt, age_s: 0.1, error: ""}
suspects:
  description: Hosts whose heartbeat is C(stale), C(stopped), C(missing) or C(invalid), minus O(exclude).
  returned: state=check
  type: list
  elements: str
  sample: [h1]
overdue:
  description: Hosts whose heartbeat is alive but has missed a beat (older than 1.5 intervals).
  returned: state=check
  type: list
  elements: str
  sample: []
since_last_sample:
  description: Seconds between the last sample, which the ages in RV(hosts) are from, and the module's return.
  returned: state=check
  type: float
  sample: 0.002
settled:
  description: Seconds the module went on after it found the first suspect - waiting for overdue hosts, and for the
    answers of O(mgmt_targets) still coming. The suspect was found this long before the module returned.
  returned: state=check
  type: float
  sample: 0.0
fresh:
  description: Hosts whose heartbeat is alive (C(fresh) or C(clock_skew)).
  returned: state=check
  type: list
  elements: str
  sample: [h2, h3]
maintenance:
  description: Active maintenance marks by host (an unreadable mark counts as active and has only a C(invalid) reason).
  returned: state=check
  type: dict
  sample: {h2: {owner: alice, expires_at: 1764070200.0, data: {reason: BIOS update}}}
maintenance_expired:
  description: Maintenance marks whose expiry has passed - the maintenance has ended by itself; worth an alert.
  returned: state=check
  type: dict
  sample: {}
suspect_marks:
  description:
    - The suspects' maintenance marks and operator's confirm-offs (M(kvmha.cluster.host_mark) kinds C(maintenance) and
      C(confirmed_off)), read again as the watch ended - an operator may have set one during the watch. Each kind has
      C(active) (the marks by host), C(expired) (no evidence any more) and C(invalid) (the reason a host's mark cannot
      be read; the watchdog takes an unreadable maintenance mark as maintenance), as M(kvmha.cluster.host_mark_info)
      returns them.
    - When the marks cannot be read in time, every suspect is listed under C(maintenance.invalid), the cautious reading.
  returned: state=check and the watch ended with suspects
  type: dict
  sample:
    maintenance: {active: {}, expired: {}, invalid: {}}
    confirmed_off: {active: {h2: {owner: alice, generation: 1, data: {reason: cords pulled, seq: 812}}}, expired: {}, invalid: {}}
handover:
  description:
    - C(loaded) is the number of hosts in the handover this check started from (0 without one), C(written) whether
      it left its own for the next check.
  returned: state=check and the store could be read
  type: dict
  sample: {loaded: 16, written: true}
store_now:
  description:
    - The store's clock (Unix time) at the end of the watch - the clock every expiry (RV(maintenance) C(expires_at))
      is on; the controller's own may be off.
  returned: state=check and the store could be read
  type: float
  sample: 1764756900.25
fenced:
  description: Active fenced marks by host (an unreadable mark counts as active).
  returned: state=check
  type: dict
  sample: {h1: {owner: watchdog-42, data: {verdict: SUSPECT, vms: [g1, g2]}}}
returning:
  description: Hosts marked fenced whose heartbeat is alive again; they must be reconciled before they count as live.
  returned: state=check
  type: list
  elements: str
  sample: []
owed:
  description:
    - Open owed recoveries by host - how many of its VMs are in each state (C(states)), whether any is due for work
      now (C(due)), and the earliest retry time of those that wait (C(next_try), or null).
  returned: state=check
  type: dict
  sample: {h1: {due: true, next_try: null, states: {owed: 1, claimed: 0, started: 0, verified: 1, unplaced: 0,
           failed: 0, abandoned: 0, moved: 0}}}
owed_invalid:
  description: Owed documents that cannot be read or trusted, by host, with the reason. Their hosts need an operator.
  returned: state=check
  type: dict
  sample: {}
work:
  description: The recovery work that waits, one line per host (owed VMs due, unreadable owed documents, returns).
  returned: state=check
  type: list
  elements: str
  sample: ["h1: 1 owed VM(s) due", "h3: back after a fence"]
skewed:
  description: Hosts whose writer clock disagrees with the store's clock by more than O(skew_allowance).
  returned: state=check
  type: list
  elements: str
  sample: []
observer_ok:
  description:
    - False when the store could not be read in time, or every host (at least two, not counting hosts in maintenance
      or marked fenced) or the observer's own heartbeat looks dead.
  returned: state=check
  type: bool
  sample: true
observer_reason:
  description: Why the observer is not OK; empty when it is.
  returned: state=check
  type: str
  sample: ""
ignored_files:
  description: Files in the heartbeat directory that are not records of a valid host name, with the reason.
  returned: state=check
  type: dict
  sample: {"..json": "host name '.' starts with a dot"}
invalid_hosts:
  description:
    - Names in O(hosts) or O(exclude) that are not valid host names, with the reason (names cut to 100 characters).
      They are skipped - neither read nor watched - and each one is also a warning.
  returned: state=check
  type: dict
  sample: {"hv_9": "host name 'hv_9' is not an RFC 1123 name (label 'hv_9': letters, digits and inner hyphens, 1-63)"}
ended:
  description:
    - Why the watch ended - V(suspects), V(work) (O(until_work)), V(overdue) (O(until_overdue)), V(observer) (the
      observer is not OK) or V(window).
  returned: state=check and the store could be read
  type: str
  sample: window
early:
  description:
    - For each suspect or overdue host, what is known since it was first late - C(since) (Unix time) and the answer
      of its SSH server if it was in O(mgmt_targets) and the probe has ended (C(mgmt), shaped like
      M(kvmha.cluster.mgmt_probe)'s result, with C(asked_at)), else C(mgmt) null.
  returned: state=check and the store could be read
  type: dict
  sample: {h1: {since: 1764063000.2, mgmt: {any_reachable: false, asked_at: 1764063000.5, early: true,
           probes: [{target: 198.51.100.11, port: 22, reachable: false, answer: timeout}]}}}
resume:
  description: What a following watch needs to keep the early evidence of this one (see O(resume)).
  returned: when the watch ended because a host is overdue (O(until_overdue))
  type: dict
  sample: {early: {since: {h1: 1764063000.2}, baselines: {h1: {sampled_at: 1764063000.2, disks: {}}},
           identities: {h1: [5f0c7a1e-4f1c-4b6e-9a59-0f3c2b0d9d11, 4242]}}}
disk_samples:
  description:
    - For each suspect, a first sample of its HA VMs' disks (size, modification time in ns, allocated blocks),
      taken when it was first late (overdue), or when it was found.
      Pass it to M(kvmha.cluster.vm_disk_activity) as O(kvmha.cluster.vm_disk_activity#module:baseline).
  returned: state=check
  type: dict
  sample: {h1: {sampled_at: 1764063000.2, disks: {/var/lib/kvmha-lab/store/images/g1.img: [1048576, 1764063000123456789, 2048]}}}
cluster:
  description: The O(cluster) label.
  returned: state=check
  type: str
  sample: lab
samples:
  description: How many times the store was read.
  returned: state=check
  type: int
  sample: 1
elapsed:
  description: Seconds spent in the module.
  returned: always
  type: float
  sample: 0.012
record:
  description: The stopped marker as written (or as it would be written in check mode).
  returned: state=stopped
  type: dict
  sample: {host: h1, state: stopped, seq: 4243}
error_kind:
  description:
    - Why the task failed, one of the collection's error kinds (C(docs/OPERATIONS.md) says what each means).
    - With O(state=check), a store that cannot be read is no failure - RV(observer_ok) is false instead.
  returned: failure
  type: str
  choices: [invalid_input, timeout, store]
  sample: invalid_input
"""

import os
import time

from ansible_collections.kvmha.cluster.plugins.module_utils._argspec import STORE_SPEC, merge_specs, renamed
from ansible_collections.kvmha.cluster.plugins.module_utils._common import KvmhaModule, run_module
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import call_with_deadline
from ansible_collections.kvmha.cluster.plugins.module_utils._diskactivity import baseline, ha_disks
from ansible_collections.kvmha.cluster.plugins.module_utils._early import EarlyEvidence, read_resume, resume_state
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import (
    DeadlineExceeded,
    InvalidInput,
    InvalidStoreInput,
    StoreError,
    check_range,
)
from ansible_collections.kvmha.cluster.plugins.module_utils._handover import encode, handover_path, load, observer_id, save
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import (
    RecordReader,
    StalenessJudge,
    encode_record,
    next_turn_in,
    record_path,
    stopped_record,
    validate_host_name,
    write_atomic,
)
from ansible_collections.kvmha.cluster.plugins.module_utils._marks import (
    CONFIRMED_OFF,
    FENCED,
    MAINTENANCE,
    MARK_KINDS,
    read_marks,
    store_clock,
    suspect_marks,
)
from ansible_collections.kvmha.cluster.plugins.module_utils._recovery import OwedBook, counts, due, is_open

OVERDUE = 1.5  # a live host whose heartbeat is older than this many intervals has missed a beat
TURN_MARGIN = 0.01  # seconds past the moment a host turns overdue or stale at which the watch samples it

ARGUMENT_SPEC = merge_specs(
    STORE_SPEC,
    {
        "state": {"type": "str", "choices": ["check", "stopped"], "default": "check"},
        "cluster": {"type": "str", "default": "default"},
        "hosts": {"type": "list", "elements": "str"},
        "exclude": {"type": "list", "elements": "str", "default": []},
        "host": {"type": "str"},
        "reason": {"type": "str", "default": ""},
        "watch": {"type": "float", "default": 0},
        "poll": {"type": "float", "default": 0.5},
        "misses": {"type": "int", "default": 3},
        "skew_allowance": {"type": "float", "default": 2.0},
        "observer_host": {"type": "str"},
        "store_timeout_s": renamed({"type": "float", "default": 10}, "read_timeout"),
        "max_record_size": {"type": "int", "default": 1048576},
        "detail": {"type": "str", "choices": ["full", "suspects"], "default": "full"},
        "until_work": {"type": "bool", "default": False},
        "until_overdue": {"type": "bool", "default": False},
        "overdue_grace_s": {"type": "float", "default": 0.0},
        "activity_window_s": {"type": "float", "default": 0.0},
        "resume": {"type": "dict"},
        "mgmt_targets": {"type": "dict", "default": {}},
        "mgmt_attempts": {"type": "int", "default": 2},
        "mgmt_timeout_s": {"type": "float", "default": 1.0},
        "handover": {"type": "bool", "default": True},
    },
)


class HeartbeatCheck:
    """One observation session: samples the store until a host turns suspect or the watch window ends."""

    def __init__(self, params: dict, check_mode: bool = False):
        self.params = params
        self.reader = RecordReader(params["store_path"], max_bytes=params["max_record_size"])
        self.store_time = time.time  # the store's clock from the first sample on (see _sample)
        self.judge = StalenessJudge(misses=params["misses"], skew_allowance=params["skew_allowance"], wall=self._store_now)
        self.invalid_hosts = {}  # one bad inventory name is reported and skipped, never the end of the whole watch
        self.exclude = set(self._valid_names(params["exclude"]))
        self.hosts = None if params["hosts"] is None else sorted(set(self._valid_names(params["hosts"])))
        self.observer = params["observer_host"] and validate_host_name(params["observer_host"])
        self.marks = None  # read once per run: marks change rarely, and only between runs
        self.owed = ({}, {})
        self.early = EarlyEvidence(params["mgmt_targets"], params["mgmt_attempts"], params["mgmt_timeout_s"])
        for name in ("watch", "overdue_grace_s", "activity_window_s"):
            check_range(name, params[name], 0)
        for name in ("poll", "store_timeout_s"):
            check_range(name, params[name], 0, exclusive_minimum=True)
        self.warnings = []
        if params["resume"] is not None:
            self._resume(params["resume"])
        self.handover = self._handover_file() if params["handover"] else None
        self.handover_out = self.handover if not check_mode else None
        self.handover_result = {"loaded": 0, "written": False}

    def _store_now(self) -> float:
        return self.store_time()  # looked up at each call: _sample replaces store_time with the store's clock

    def _resume(self, resume: dict) -> None:
        """Take over the early evidence of the watch that ended at a host's first missed beat (until_overdue). Its
        judgement comes through the watch handover (handover); a resume that cannot be used costs the head start."""
        try:
            self.early.take_over(read_resume(resume))
        except InvalidInput as err:
            self.early.forget()
            self.warnings.append("resume is not used, the early evidence starts afresh: %s" % err)

    def _valid_names(self, names):
        for name in names:
            try:
                yield validate_host_name(name)
            except InvalidInput as err:
                self.invalid_hosts[str(name)[:100]] = str(err)

    def run(self) -> dict:
        start = time.monotonic()
        window_end = start + self.params["watch"]
        samples, first_suspect = 0, None
        self.early.start()
        while True:
            samples += 1
            try:
                states, ignored = call_with_deadline(self._sample, self.params["store_timeout_s"], "reading the store")
            except (StoreError, DeadlineExceeded) as err:
                return self._isolated(str(err), samples, start)
            result = self._summarise(states, ignored)
            self._note_early(states, result)
            now = time.monotonic()
            if result["suspects"] and first_suspect is None:
                first_suspect = now
            wait = self._until_next_sample(states)
            ended = self._ended(result, states, now - (first_suspect or now), now + wait - window_end)
            if ended:
                break
            time.sleep(wait)
        result["disk_samples"] = self._disk_samples(result["suspects"])
        if result["suspects"]:
            result["suspect_marks"] = self._suspect_marks(result["suspects"])
        self.early.settle(result["suspects"])
        result["early"] = self.early.report(result["suspects"] + result["overdue"], self._disk_activity(result["suspects"]))
        if ended == "overdue":
            result["resume"] = resume_state(self.early)
        result["handover"] = dict(self.handover_result, written=self._hand_over())
        result.update(changed=False, cluster=self.params["cluster"], samples=samples, store_now=round(self.store_time(), 3),
                      settled=round(time.monotonic() - first_suspect, 3) if first_suspect else 0.0, ended=ended,
                      since_last_sample=round(time.monotonic() - now, 3), elapsed=round(time.monotonic() - start, 3))
        return result

    def _until_next_sample(self, states: list) -> float:
        """The poll interval, or less when a host turns overdue or stale sooner: the watch samples it as it turns, not
        up to a poll interval later (on the default policy that was 0.25 s of every detection, 0.5 s at worst)."""
        turn = next_turn_in(states, (OVERDUE, self.params["misses"]))
        return min(self.params["poll"], turn + TURN_MARGIN)

    def _ended(self, result: dict, states: list, settling_for: float, past_window: float):
        """Why the watch ends after this sample, or ``None`` to go on (``past_window`` > 0: the window is over)."""
        if not result["observer_ok"]:
            return "observer"
        if result["suspects"] and not self._waiting_for_overdue(result, states, settling_for):
            return "suspects"
        if result["work"] and self.params["until_work"]:
            return "work"
        if result["overdue"] and not result["suspects"] and self.params["until_overdue"]:
            return "overdue"
        if past_window > 0 and not self._waiting_for_overdue(result, states, past_window, self.params["overdue_grace_s"]):
            return "window"
        return None

    def _note_early(self, states: list, result: dict) -> None:
        """Start the read-only probes of every host that has missed a beat (see _early): the first disk sample."""
        late = result["overdue"] + result["suspects"]
        if set(late) == set(self.early.since):
            return  # nobody new is late, nobody is back: the healthy path costs no thread
        records = {s.host: s.record for s in states if s.host in late or s.host in self.early.since}
        try:
            call_with_deadline(self.early.note, self.params["store_timeout_s"], "sampling the late hosts' VM disks",
                               late, records, lambda record: baseline(ha_disks(record)))
        except DeadlineExceeded:
            pass  # the probe play samples them again; a hung disk never stops the watch

    def _waiting_for_overdue(self, result: dict, states: list, waited: float, most: float = float("inf")) -> bool:
        """Whether to keep watching while hosts are overdue: each beats again or turns stale within O(misses) x its
        interval, and ``most`` bounds the wait.

        After the first suspect: hosts that die together (a power strip, a switch) go stale up to one interval apart,
        because each writer beats on its own phase. The moment the first one is stale, the others have already missed
        a beat: waiting until they beat again or turn stale lets the storm guard see all of them at once. A lone
        failure, the common case, has no overdue host and costs nothing. At the end of the window (O(overdue_grace_s)):
        the host found late in this run is decided in this run.
        """
        overdue = [s for s in states if s.host in result["overdue"]]
        return bool(overdue) and waited < min(most, max(self.params["misses"] * s.record["interval"] for s in overdue))

    def _suspect_marks(self, suspects: list) -> dict:
        """The suspects' maintenance marks and confirm-offs, read again: the watch read the marks when it started."""
        try:
            return call_with_deadline(suspect_marks, self.params["store_timeout_s"], "reading the suspects' marks again",
                                      self.params["store_path"], suspects, self.store_time())
        except (StoreError, DeadlineExceeded) as err:
            reason = "the marks could not be read again as the watch ended: %s" % err
            return {MAINTENANCE: {"active": {}, "expired": {}, "invalid": dict.fromkeys(suspects, reason)},
                    CONFIRMED_OFF: {"active": {}, "expired": {}, "invalid": {}}}

    def _disk_samples(self, suspects: list) -> dict:
        """First samples of the suspects' VM disks, taken when each was first late (_note_early; none where that
        sample ran out of time - vm_disk_activity then samples twice itself)."""
        return {h: self.early.baselines[h] for h in suspects if h in self.early.baselines}

    def _disk_activity(self, suspects: list) -> dict:
        """The second sample of the suspects' VM disks, where the first is old enough (O(activity_window_s))."""
        if not self.params["activity_window_s"] or not suspects:
            return {}
        try:
            return call_with_deadline(self.early.disk_activity, self.params["store_timeout_s"], "sampling the suspects' VM disks",
                                      suspects, self.params["activity_window_s"])
        except DeadlineExceeded:
            return {}  # vm_disk_activity samples them in the probe play, and says why it cannot

    def _sample(self) -> tuple:
        ignored = {}
        hosts = self.hosts
        if hosts is None:
            hosts, ignored = self.reader.hosts_in_store()
        if self.marks is None:
            # Every mtime is on the store's clock; a controller's own may be hours off.
            self.store_time = store_clock(self.params["store_path"])
            now = self.store_time()
            self.marks = {kind: read_marks(self.params["store_path"], kind, now=now) for kind in MARK_KINDS}
            self.owed = self._read_owed(hosts)
            self._take_over()
        return [self.judge.judge(self.reader.read(host)) for host in hosts], ignored

    def _handover_file(self):
        """(path, observer) of this observer's watch handover, or None where there is none."""
        observer = observer_id()
        if observer is None:
            return None
        try:
            return handover_path(self.params["store_path"], self.params["cluster"], observer), observer
        except InvalidStoreInput as err:
            self.warnings.append("no watch handover: %s" % err)
            return None

    def _take_over(self) -> None:
        """Seed the judge with the previous check's handover (first sample only, inside its store deadline)."""
        if self.handover is None:
            return
        path, observer = self.handover
        seen, problem = load(path, self.params["cluster"], observer, time.monotonic())
        if problem:
            self.warnings.append("watch handover: %s; ages are estimated from the records' times" % problem)
        self.judge.seed(seen)
        self.handover_result["loaded"] = len(seen)

    def _hand_over(self) -> bool:
        """Leave what this check saw last for the next one; a failure costs the next check its history only."""
        if self.handover_out is None:
            return False
        path, observer = self.handover_out
        data = encode(self.params["cluster"], observer, time.monotonic(), self.judge.export())
        try:
            call_with_deadline(save, self.params["store_timeout_s"], "writing %s" % path, path, data, self.store_time())
        except (OSError, DeadlineExceeded) as err:
            self.warnings.append("watch handover not written: %s" % (getattr(err, "strerror", None) or err))
            return False
        return True

    def _read_owed(self, hosts) -> tuple:
        """Open owed documents ({host: data}) and unreadable ones ({host: reason}), read once per run like the marks."""
        documents, invalid = OwedBook(self.params["store_path"], "kvm_heartbeat").read_all(hosts)
        return dict((h, d.data) for h, d in documents.items() if not d.released and is_open(d.data)), invalid

    def _owed_summary(self, now: float) -> dict:
        summary = {}
        for host, data in sorted(self.owed[0].items()):
            waiting = [vm["next_try"] for vm in data["vms"] if vm["next_try"] is not None and not due(vm, now)]
            summary[host] = {"due": any(due(vm, now) for vm in data["vms"]), "next_try": min(waiting) if waiting else None,
                             "states": counts(data)}
        return summary

    def _summarise(self, states: list, ignored: dict) -> dict:
        maintenance = _active(self.marks[MAINTENANCE])
        fenced = _active(self.marks[FENCED])
        owed = self._owed_summary(self.store_time())
        owed_invalid = self.owed[1]
        out = self.exclude | set(maintenance) | set(fenced) | set(owed) | set(owed_invalid)
        live = [s.host for s in states if s.live]
        suspects = [s.host for s in states if not s.live and s.host not in out]
        overdue = [s.host for s in states if s.live and s.host not in out and s.age > OVERDUE * s.record["interval"]]
        counted = [s for s in states if s.host not in out]
        returning = [s.host for s in states if s.live and s.host in fenced]
        reason = ""
        if len(counted) >= 2 and not any(s.live for s in counted):
            reason = "no host's heartbeat looks alive (%d checked): the observer or the store is the likelier fault" % len(counted)
        elif self.observer and any(s.host == self.observer and not s.live for s in states):
            reason = "the observer's own heartbeat (%s) does not look alive" % self.observer
        return {
            "hosts": {s.host: self._report(s) for s in states},
            "suspects": suspects,
            "overdue": overdue,
            "fresh": live,
            "skewed": [s.host for s in states if s.status == "clock_skew"],
            "observer_ok": not reason,
            "observer_reason": reason,
            "ignored_files": ignored,
            "invalid_hosts": self.invalid_hosts,
            "maintenance": maintenance,
            "maintenance_expired": self.marks[MAINTENANCE]["expired"],
            "fenced": fenced,
            "returning": returning,
            "owed": owed,
            "owed_invalid": owed_invalid,
            "work": (["%s: %d owed VM(s) due" % (h, sum(n for k, n in o["states"].items() if k not in ("verified", "abandoned", "moved")))
                      for h, o in owed.items() if o["due"]]
                     + ["%s: its owed document cannot be read" % h for h in sorted(owed_invalid)]
                     + ["%s: back after a fence" % h for h in returning]),
        }

    def _report(self, state) -> dict:
        report = state.as_dict()
        if self.params["detail"] == "suspects" and state.status == "fresh":
            report = {key: report[key] for key in ("status", "age", "seq", "boot_id", "rebooted")}
        return report

    def _isolated(self, reason: str, samples: int, start: float) -> dict:
        return {
            "changed": False, "hosts": {}, "suspects": [], "overdue": [], "fresh": [], "skewed": [], "ignored_files": {},
            "maintenance": {}, "maintenance_expired": {}, "fenced": {}, "returning": [], "disk_samples": {},
            "invalid_hosts": self.invalid_hosts,
            "owed": {}, "owed_invalid": {}, "work": [],
            "observer_ok": False, "observer_reason": reason, "samples": samples, "cluster": self.params["cluster"],
            "elapsed": round(time.monotonic() - start, 3),
        }


class StoppedMarker:
    """Writes the graceful-stop marker for one host, keeping its last record's content."""

    def __init__(self, params: dict, check_mode: bool, diff_mode: bool):
        if not params["host"]:
            raise InvalidInput("state=stopped needs host")
        self.host = validate_host_name(params["host"])
        self.params = params
        self.check_mode = check_mode
        self.diff_mode = diff_mode

    def run(self) -> dict:
        start = time.monotonic()
        reader = RecordReader(self.params["store_path"], max_bytes=self.params["max_record_size"])
        reading = call_with_deadline(reader.read, self.params["store_timeout_s"], "reading the heartbeat of %s" % self.host, self.host)
        if reading.status == "invalid":
            raise StoreError("refusing to replace the invalid heartbeat of %s (%s): repair or remove it first" % (self.host, reading.reason))
        previous = reading.record
        changed = previous is None or previous["state"] != "stopped"
        record = stopped_record(previous, self.host, time.time(), self.params["reason"]) if changed else previous
        if changed and not self.check_mode:
            path = record_path(self.params["store_path"], self.host)
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                call_with_deadline(write_atomic, self.params["store_timeout_s"], "writing %s" % path, path, encode_record(record))
            except OSError as err:
                raise StoreError("cannot write %s: %s" % (path, err.strerror or err)) from err
        result = {"changed": changed, "record": record, "elapsed": round(time.monotonic() - start, 3)}
        if self.diff_mode:
            result["diff"] = {"before": _summary(previous), "after": _summary(record)}
        return result


def _active(marks: dict) -> dict:
    """Active marks, with unreadable ones counted as active (the cautious reading)."""
    active = dict(marks["active"])
    active.update({host: {"invalid": reason} for host, reason in marks["invalid"].items()})
    return active


def _summary(record) -> dict:
    if record is None:
        return {}
    return {"state": record["state"], "seq": record["seq"], "boot_id": record["boot_id"]}


def run(module: KvmhaModule) -> dict:
    params = module.params
    if params["state"] == "stopped":
        return StoppedMarker(params, module.check_mode, module.diff_mode).run()
    check = HeartbeatCheck(params, module.check_mode)
    result = check.run()
    for name, reason in sorted(result["invalid_hosts"].items()):
        module.warn("%r is skipped, it is not watched: %s" % (name, reason))
    for warning in check.warnings:
        module.warn(warning)
    return result


def main():
    run_module(ARGUMENT_SPEC, run, required_if=[("state", "stopped", ["host"])])


if __name__ == "__main__":
    main()
