# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""The recovery engine behind ``vm_evacuate``: every run moves every owed VM one step closer to "runs exactly once".

One ``Evacuation`` is one pass:

1. open the owed documents of the hosts newly confirmed down (from their last heartbeat record) and mark them
   fenced from that state (``_recovery``);
2. read every open owed document and take a census: where does each owed VM run now, asked of libvirt on every
   live target (not the records' word);
3. for each VM that runs nowhere and is due: read its claim, pin it to the target of a claim whose target can be
   checked (a retry there is always safe) or place it (``_placement``), claim it, then define, start and verify it
   (``VmJob``), in parallel across targets;
4. wait briefly for the targets' heartbeats to list what was started (the hand-over: from then on the target's
   own heartbeat covers the VM), and write every transition back to the owed documents.

Any step may be cut short by the death of the process: the claims and owed documents on the store are enough
for the next pass to finish the job and never start a second copy (see ``_claims`` and ``_recovery``).
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time

from . import _recovery as owed
from ._claims import ClaimBook
from ._deadline import call_with_deadline
from ._errors import InvalidInput, KvmhaError, LibvirtError, RecoveryIncomplete, StoreError, check_range
from ._heartbeat import RecordReader, store_dir, validate_host_name
from ._libvirt import RUNNING_STATES, LibvirtClient, read_domain_xml, validate_uri
from ._marks import FENCED, MAINTENANCE, LeaseKeeper, LeaseLost, read_marks, set_mark, store_clock
from ._own_process import CHILD_GRACE_S, call_in_own_process
from ._placement import place, vm_order_key
from ._power import OFF, ON, UNKNOWN, PowerOperation
from ._storefile import Conflict

STATUSES = ("started", "running", "planned", "waiting", "unplaced", "failed")
BROKEN_KINDS = ("timeout", "connection", "unreachable")


def _now() -> float:
    return round(time.time(), 3)


class Target:
    """One live host that may take VMs: its record, its connection, and what happened to it."""

    def __init__(self, host: str, uri: str, spare: bool):
        self.host = host
        self.uri = uri
        self.spare = spare
        self.status = "excluded"
        self.reason = ""
        self.connectable = False
        self.record = None
        self.placeable = False
        self.client = None
        self.active = set()
        self.broken = ""

    def lists(self, vm_uuid: str) -> bool:
        return self.record is not None and any(vm["uuid"] == vm_uuid for vm in self.record["vms"])

    def as_dict(self) -> dict:
        capacity = (self.record or {}).get("capacity") or {}
        return {
            "host": self.host, "uri": self.uri, "status": self.status, "reason": self.reason,
            "mem_free_mib": capacity.get("mem_free_mib"), "vcpus_free": capacity.get("vcpus_free"),
            "spare": self.spare, "broken": bool(self.broken),
        }


class VmJob:
    """Define, start and verify one VM on one target. ``run`` returns (outcome, reason, kind).

    outcome: started; failed (definitely not running); unknown (may run there); replan (not attempted here).
    """

    def __init__(self, vm: dict, target: Target, verify_timeout: float):
        self.vm = vm
        self.target = target
        self.verify_timeout = verify_timeout

    def _broke(self, err) -> bool:
        return err.kind in BROKEN_KINDS or not self.target.client.alive()

    def run(self) -> tuple:
        vm, target, client = self.vm, self.target, self.target.client
        vm["tried"].append(target.host)  # a definition may exist there from now on, whatever happens next
        try:
            client.define(vm["xml"])
            vm["timestamps"]["defined"] = _now()
        except LibvirtError as err:
            if self._broke(err):
                target.broken = "connection to %s broke: %s" % (target.host, err)
                return "replan", target.broken, err.kind
            return "failed", "define on %s failed: %s" % (target.host, err), err.kind
        try:
            client.start(vm["uuid"])
            vm["timestamps"]["started"] = _now()
        except LibvirtError as err:
            if self._broke(err):
                target.broken = "connection to %s broke: %s" % (target.host, err)
                return "unknown", "start on %s did not complete (%s); it may run there" % (target.host, err), err.kind
            if self._state() not in RUNNING_STATES:  # "already running" after a retry is a success
                return "failed", "start on %s failed: %s" % (target.host, err), err.kind
        return self._verify()

    def _state(self):
        try:
            return self.target.client.domain_state(self.vm["uuid"])
        except LibvirtError:
            return None

    def _verify(self) -> tuple:
        host = self.target.host
        try:
            state = self.target.client.wait_running(self.vm["uuid"], self.verify_timeout)
        except LibvirtError as err:
            return "unknown", "started on %s, but its state could not be read: %s" % (host, err), err.kind
        if state in RUNNING_STATES:
            self.vm["timestamps"]["running"] = _now()
            return "started", "", ""
        if state in ("shutoff", "crashed"):
            return "failed", "started on %s, but it is %s right after" % (host, state), "not_running"
        return "unknown", "started on %s, but it is %s after %.1f s" % (host, state, self.verify_timeout), "not_running"


class Evacuation:
    """One recovery pass over the owed documents (see the module docstring).

    ``client_factory(uri, connect_timeout, call_timeout, read_only, label)`` opens a target's connection;
    ``power_client(check)`` builds the power client of an entry of ``power_checks`` (``IpmiClient`` in the module).
    """

    def __init__(self, params: dict, check_mode: bool = False, diff_mode: bool = False, client_factory=LibvirtClient,
                 clock=None, power_client=None):
        self.params = params
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.client_factory = client_factory
        self.power_client = power_client
        self.store = params["store_path"]
        self.warnings = []
        self.plan = []
        self.replanned = []
        self.unreadable = []
        self.aborted = []  # failed hosts not off, or back (a new boot), right before their recovery was opened
        self.powerstate = {}  # host -> its power state read right before its recovery opened
        self.interrupted = []
        self.opened = []
        self.closed = []
        self.documents = {}
        self.books = {}
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._validate()
        # Backoffs and the documents' times are on the store's clock, the one every controller shares.
        self.clock = clock or self._store_call("read the store's clock", store_clock, self.store)
        self.book = owed.OwedBook(self.store, self.owner)
        self.retry = (params["retry_s"], params["retry_max_s"])
        lease = params.get("lease")
        self.keeper = None if not lease or check_mode else LeaseKeeper(
            self.store, lease["cluster"], self.owner, lease["generation"], lease["ttl"])
        self.lease_lost = ""
        self._connecting = None  # the run's connection pool (_open_in_pool)
        self._early = {}  # the early connections (_connect_early): {target host: future of (client, active)}

    # ------------------------------------------------------------------------------------------- input

    def _validate(self) -> None:
        p = self.params
        self.failed_hosts = [validate_host_name(h) for h in p["failed_hosts"]]
        twice = sorted(set(h for h in self.failed_hosts if self.failed_hosts.count(h) > 1))
        if twice:
            raise InvalidInput("failed host %s is listed twice" % ", ".join(twice))
        if p["incident"] and len(self.failed_hosts) != 1:
            raise InvalidInput("incident is only for a single failed host")
        if p["abandon"] and self.failed_hosts:
            raise InvalidInput("abandon does nothing else: give no failed_hosts with it")
        for key in ("connect_timeout_s", "call_timeout_s", "verify_timeout_s", "store_timeout_s", "retry_s", "retry_max_s"):
            check_range(key, p[key], 0, exclusive_minimum=True)
        check_range("beat_timeout_s", p["beat_timeout_s"], 0)
        check_range("parallel", p["parallel"], 1)
        self.spares = set(validate_host_name(h) for h in p["spare_hosts"])
        self.owner = p["owner"] if p["owner"] else "%s/%d" % (socket.gethostname(), os.getpid())
        self.targets = []
        seen = set()
        for entry in p["targets"]:
            host = validate_host_name(entry["host"])
            if host in seen:
                raise InvalidInput("target %s is listed twice" % host)
            seen.add(host)
            target = Target(host, entry["uri"], host in self.spares)
            if host in self.failed_hosts:
                target.reason = "is a failed host"
            else:
                try:
                    validate_uri(entry["uri"])
                    target.connectable = True
                except InvalidInput as err:
                    target.reason = str(err)
                    self.warnings.append("target %s excluded: %s" % (host, err))
            self.targets.append(target)
        self.power_checks = {}
        for check in p.get("power_checks") or []:
            host = validate_host_name(check["host"])
            if host not in self.failed_hosts:
                raise InvalidInput("power check of %s, which is not a failed host" % host)
            if host in self.power_checks:
                raise InvalidInput("power check of %s is listed twice" % host)
            self.power_checks[host] = check
        check_range("power_timeout_s", p["power_timeout_s"], 0, exclusive_minimum=True)
        unknown_spares = self.spares - seen
        if unknown_spares:
            self.warnings.append("spare_hosts not among the targets: %s" % ", ".join(sorted(unknown_spares)))

    def _store_call(self, what: str, func, *args, **kwargs):
        return call_with_deadline(func, self.params["store_timeout_s"], what, *args, **kwargs)

    def _hold(self) -> None:
        """Before every claim and start: the cluster lease must still be ours (a fencing token), else ``LeaseLost``."""
        if self.lease_lost:
            raise LeaseLost(self.lease_lost)
        if self.keeper is not None:
            try:
                self._store_call("hold the cluster lease", self.keeper.hold)
            except KvmhaError as err:
                self.lease_lost = "the cluster lease is not ours any more, nothing more is started: %s" % err
                raise LeaseLost(self.lease_lost) from err

    # ------------------------------------------------------------------------------------------- owed documents

    def _open_new(self) -> None:
        """Open the owed document of every newly failed host, then mark it fenced from that document."""
        reader = RecordReader(self.store)
        in_maintenance = self._in_maintenance() if self.failed_hosts else set()
        self.powerstate = self._read_power()
        for host in self.failed_hosts:
            if host in in_maintenance:
                # Put into maintenance since it was judged: an operator took it down on purpose. Its VMs are theirs.
                self.warnings.append("%s is in maintenance (or its mark cannot be read): its VMs are not recovered" % host)
                continue
            if not self._still_off(host):
                continue
            try:
                reading = self._store_call("read the heartbeat record of %s" % host, reader.read, host)
                current = self._store_call("read the owed document of %s" % host, self.book.read, host)
            except KvmhaError as err:
                self.unreadable.append({"host": host, "status": "error", "reason": str(err)})
                continue
            if current is not None and not current.released and owed.is_open(current.data):
                continue  # already owed (a rerun, or opened by an interrupted run): it is worked below
            if reading.status != "ok":
                self.unreadable.append({"host": host, "status": reading.status, "reason": reading.reason})
                continue
            record = reading.record
            if self._booted_since_judged(host, record):
                continue
            incident = self.params["incident"] or "%s/%s" % (host, record["boot_id"])
            if current is not None and not current.released and current.data["incident"] == incident:
                continue  # this death was recovered already and the host was not returned since
            decision = (self.params["decisions"] or {}).get(host) or {}
            data = owed.new_document(host, self.params["cluster"] or "", incident, str(decision.get("verdict") or ""),
                                     str(decision.get("rule") or ""), record["vms"], self.clock(), self.owner)
            try:
                self._take_over_listed(host, data)
            except KvmhaError as err:
                self.unreadable.append({"host": host, "status": "error", "reason": "cannot read the other owed documents: %s" % err})
                continue
            if self.check_mode:
                self.documents[host] = _Planned(host, data)
                self.opened.append(host)
                continue
            try:
                self._store_call("open the owed document of %s" % host, self.book.open, host, data, current)
            except Conflict:
                continue  # another run opened it meanwhile (link(2): one wins); it is worked below like any open one
            except KvmhaError as err:
                self.unreadable.append({"host": host, "status": "error", "reason": "cannot open its owed document: %s" % err})
                continue
            self.opened.append(host)
            self._ensure_fenced(host, data)

    def _read_power(self) -> dict:
        """The power state of every failed host with a power check, read from its BMC right before its recovery opens
        (a BIOS power-on policy or a person may have switched it back on since its fence): all hosts at once, each
        read under its own deadline. {host: (state, why unknown)}. Several BMCs are read each in a process of its own:
        pyghmi serves every BMC of a process on one event loop, where a dead one's login retries delay the others
        (_own_process.py)."""
        if not self.power_checks:
            return {}
        alone = len(self.power_checks) > 1
        with concurrent.futures.ThreadPoolExecutor(len(self.power_checks)) as pool:
            reads = dict((host, pool.submit(self._power_of, check, alone)) for host, check in self.power_checks.items())
        return dict((host, read.result()) for host, read in reads.items())

    def _power_of(self, check: dict, alone: bool) -> tuple:
        timeout = self.params["power_timeout_s"]

        def read():
            return PowerOperation(self.power_client(check), "status", confirm=1, timeout=timeout).run()["powerstate"]["after"]
        try:
            if alone:
                return call_in_own_process(read, timeout + CHILD_GRACE_S, "reading the power state of %s" % check["host"]), ""
            return read(), ""
        except KvmhaError as err:
            return UNKNOWN, "%s: %s" % (err.kind, err)

    def _still_off(self, host: str) -> bool:
        """A host with a power check is recovered only when its BMC reads it off - or cannot be read, for a host judged
        down without its BMC (``unknown_ok``: a self-fence guarantee, an operator's confirm-off) - never when it reads
        on. Nothing of a host that is not is started elsewhere; it is reported in ``aborted``."""
        if host not in self.power_checks:
            return True
        state, why = self.powerstate[host]
        if state == OFF or (state == UNKNOWN and self.power_checks[host]["unknown_ok"]):
            return True
        reason = ("not off any more right before its recovery (power on)" if state == ON else
                  "its power could not be read right before its recovery (%s)" % why)
        self.aborted.append({"host": host, "reason": reason})
        self.warnings.append("%s: %s" % (host, self.aborted[-1]["reason"]))
        return False

    def _booted_since_judged(self, host: str, record: dict) -> bool:
        """The host wrote a record of another boot since it was judged: switched back on after its fence (a BIOS
        power-on policy, a person). Its VMs may come back with it, so nothing of it is started elsewhere."""
        judged = (self.params["boot_ids"] or {}).get(host)
        if not judged or record["boot_id"] == judged:
            return False
        self.aborted.append({"host": host, "reason": "booted again since it was judged (boot %s, judged in boot %s): its "
                             "recovery is not opened; its VMs are on it, stopped unless they autostart" % (record["boot_id"], judged)})
        self.warnings.append("%s: %s" % (host, self.aborted[-1]["reason"]))
        return True

    def _take_over_listed(self, host: str, data: dict) -> None:
        """A dying target's own record lists VMs another open document still owes: they are ``moved`` there.

        Each VM is then owed by exactly one open document - this host's, whose last record proves the VM ran here.
        """
        listed = set(vm["uuid"] for vm in data["vms"])
        documents = self._open_documents()
        documents.update((h, d) for h, d in self.documents.items() if isinstance(d, _Planned))  # check mode: not written
        for other, doc in sorted(documents.items()):
            if other == host:
                continue
            now = self.clock()
            entries = [owed.transition(vm, owed.MOVED, now, target=host, error="listed by the last record of %s, whose "
                                       "recovery owes it now" % host)
                       if vm["uuid"] in listed and vm["state"] not in owed.TERMINAL else vm for vm in doc.data["vms"]]
            if entries != doc.data["vms"]:
                self._save(other, dict(doc.data, vms=entries))

    def _open_documents(self) -> dict:
        docs, invalid = self._store_call("read the owed documents", self.book.read_all)
        for host, reason in sorted(invalid.items()):
            if not any(u["host"] == host for u in self.unreadable):
                self.unreadable.append({"host": host, "status": "invalid", "reason": reason})
        cluster = self.params["cluster"]
        return dict((host, doc) for host, doc in docs.items()
                    if not doc.released and owed.is_open(doc.data) and (not cluster or doc.data["cluster"] in ("", cluster)))

    def _save(self, host: str, data: dict) -> None:
        """Write ``data`` over the document of ``host`` as read (compare-and-replace); errors are that host's."""
        current = self.documents.get(host) or self._store_call("read the owed document of %s" % host, self.book.read, host)
        if self.check_mode or isinstance(current, _Planned):
            self.documents[host] = _Planned(host, data)
            return
        try:
            self.documents[host] = self._store_call("write the owed document of %s" % host, self.book.write, current, data)
        except KvmhaError as err:
            self.unreadable.append({"host": host, "status": "error", "reason": "cannot write its owed document: %s" % err})

    def _read_owed(self) -> list:
        """Every VM of every open owed document, as a work item; marks the documents as worked by this run."""
        try:
            documents = self._open_documents()
        except KvmhaError as err:
            raise StoreError("cannot read the owed documents: %s" % err, result=self._result([]), kind=err.kind) from err
        for host, planned in self.documents.items():
            if isinstance(planned, _Planned):
                documents[host] = planned
        self.documents = documents
        for target in self.targets:
            if target.host in documents and target.connectable:
                target.connectable = False
                target.reason = "is fenced: its recovery is owed"
        now = self.clock()
        vms = []
        for host, doc in sorted(documents.items()):
            gone = owed.interrupted_run(doc.data, self.owner)
            if gone is not None:
                self.interrupted.append(dict(gone, host=host))
            if any(owed.due(vm, now, self.params["retry_max_s"]) for vm in doc.data["vms"]) and not self.check_mode:
                self._save(host, dict(doc.data, worked_by=self.owner, work_started=now, work_finished=None))
            data = self.documents[host].data
            vms.extend(self._work_item(host, data, entry) for entry in data["vms"])
        wanted = self.params["vms"]
        if wanted is not None:
            names = set(wanted)
            vms = [vm for vm in vms if vm["name"] in names or vm["uuid"] in names]
        return vms

    def _work_item(self, host: str, data: dict, entry: dict) -> dict:
        vm = dict((k, entry[k]) for k in ("uuid", "name", "priority", "group", "memory_mib", "vcpus"))
        vm.update(failed_host=host, incident=data["incident"], entry=entry, previous=entry["state"], status="", host=None,
                  order=None, round=None, reason="", error_kind="", claim_info={}, timestamps={}, xml=None, claim=None,
                  decision=None, pinned=None, outcome=None, tried=[])
        if entry["state"] in owed.TERMINAL:
            vm["status"] = "done"
        elif not owed.due(entry, self.clock(), self.params["retry_max_s"]):
            self._finish(vm, "waiting", "next try at %s (attempt %d failed: %s)" % (
                _iso(entry["next_try"]), entry["attempts"], entry["last_error"] or entry["state"]))
        return vm

    # ------------------------------------------------------------------------------------------- gathering

    def _read_targets(self) -> None:
        reader = RecordReader(self.store)
        for target in self.targets:
            problem = ""
            try:
                reading = self._store_call("read the heartbeat record of %s" % target.host, reader.read, target.host)
            except KvmhaError as err:
                problem = "heartbeat record: %s" % err
            else:
                if reading.status != "ok":
                    problem = "heartbeat record is %s: %s" % (reading.status, reading.reason)
                else:
                    target.record = reading.record
                    if reading.record["state"] != "running":
                        problem = "heartbeat writer is stopped"
                    else:
                        target.placeable = target.connectable
            if problem:
                target.reason = "; ".join(r for r in (target.reason, problem) if r)

    def _open_client(self, target: Target) -> tuple:
        """The target's connection and the VMs active there."""
        p = self.params
        client = self.client_factory(target.uri, p["connect_timeout_s"], p["call_timeout_s"], self.check_mode, target.host)
        client.open()
        try:
            return client, client.active_uuids()
        except LibvirtError:
            client.close()
            raise

    def _open_in_pool(self, target: Target) -> concurrent.futures.Future:
        """The target's ``_open_client`` in the run's one connection pool, made at its first use."""
        if self._connecting is None:
            self._connecting = concurrent.futures.ThreadPoolExecutor(max_workers=self.params["parallel"])
        return self._connecting.submit(self._open_client, target)

    def _connect_early(self) -> None:
        """A run that opens recoveries needs the live targets: connect to them now, while the failed hosts' BMCs and
        the store are read (an SSH handshake a target, on the path after the fence); ``_connect`` takes them."""
        if self.failed_hosts:
            self._early = dict((t.host, self._open_in_pool(t)) for t in self.targets if t.connectable)

    def _connect(self) -> list:
        """One connection per target, opened in parallel (or early); returns the reachable targets."""
        candidates = [t for t in self.targets if t.connectable]
        reachable = []
        futures = dict((self._early.pop(t.host, None) or self._open_in_pool(t), t) for t in candidates)
        for future in concurrent.futures.as_completed(futures):
            target = futures[future]
            try:
                target.client, target.active = future.result()
            except KvmhaError as err:
                target.reason = "; ".join(r for r in (target.reason, "libvirt: %s" % err) if r)
                target.placeable = False
                continue
            reachable.append(target)
            target.status = "used" if target.placeable else "searched"
        return sorted(reachable, key=lambda t: t.host)

    def _drop_early(self) -> None:
        """Close the connection pool and the early connections no target took (nothing was worked, or the target
        turned out fenced), once they are made: each under its connect deadline, the same wait as ``_connect``'s."""
        if self._connecting is None:
            return
        self._connecting.shutdown(wait=True)
        self._connecting = None
        for future in self._early.values():
            if future.exception() is None:
                future.result()[0].close()
        self._early = {}

    def _in_maintenance(self) -> set:
        """Hosts with an active (or unreadable) maintenance mark, read now: the mark may be newer than the decision."""
        marks = self._store_call("read the maintenance marks", read_marks, self.store, MAINTENANCE)
        return set(marks["active"]) | set(marks["invalid"])

    def _fenced_hosts(self) -> set:
        """Hosts whose power-off is confirmed: marked fenced, owed, or confirmed down by our caller."""
        confirmed = set(self.failed_hosts) | set(self.documents)
        try:
            marks = self._store_call("read the fenced marks", read_marks, self.store, FENCED)
        except KvmhaError as err:
            self.warnings.append("fenced marks unreadable (%s): only owed and failed hosts count as fenced" % err)
            return confirmed
        return confirmed | set(marks["active"])

    # ------------------------------------------------------------------------------------------- deciding

    def _census(self, vms: list, reachable: list, fenced: set) -> None:
        """Where each owed VM runs now, asked of libvirt on every reachable target (a fenced host's record runs nothing)."""
        for vm in self._pending(vms):
            where = [t for t in reachable if vm["uuid"] in t.active]
            if len(where) > 1:
                self._finish(vm, "waiting", "active on %s at once: an operator must look (nothing is stopped)"
                             % ", ".join(t.host for t in where), kind="duplicate")
                self.warnings.append("%s is active on more than one host: %s" % (vm["name"], ", ".join(t.host for t in where)))
            elif where:
                vm["host"] = where[0].host
                self._finish(vm, "running", "runs on %s" % where[0].host)
            elif vm["status"] == "":
                unseen = [t.host for t in self.targets if t.client is None and t.host not in fenced and t.lists(vm["uuid"])]
                if unseen:
                    self._finish(vm, "waiting", "listed as running on %s by its heartbeat, whose libvirt cannot be "
                                 "reached" % ", ".join(unseen))

    def _book(self, vm: dict) -> ClaimBook:
        key = (vm["failed_host"], vm["incident"])
        if key not in self.books:
            self.books[key] = ClaimBook(self.store, self.owner, vm["failed_host"], vm["incident"], None)
        return self.books[key]

    def _inspect_claims(self, vms: list, reachable: list, fenced: set) -> None:
        hosts = [t.host for t in reachable]
        for vm in self._pending(vms):
            try:
                decision = self._store_call("read the claim of %s" % vm["name"], self._book(vm).inspect, vm["uuid"], hosts, fenced)
            except KvmhaError as err:
                self._finish(vm, "failed", "cannot read its claim: %s" % err, kind=err.kind)
                continue
            vm["decision"] = decision
            vm["claim_info"] = {"action": decision.action, "reason": decision.reason}
            if decision.action == "skip":
                self._finish(vm, "waiting", decision.reason)
            elif decision.action == "fail":
                self._finish(vm, "failed", decision.reason, kind="claim")
            elif decision.action == "retry":
                vm["pinned"] = decision.current.data.get("target")

    def _load_xml(self, vms: list) -> None:
        for vm in self._pending(vms):
            path = os.path.join(store_dir(self.store, "vms"), vm["uuid"] + ".xml")
            try:
                text, info = self._store_call("read the domain XML of %s" % vm["name"], read_domain_xml, path, vm["uuid"])
            except KvmhaError as err:
                self._finish(vm, "failed", "its domain XML: %s" % err, kind=err.kind)
                continue
            vm["xml"] = text
            # Size the VM by what will really be allocated, never by less than the record said.
            if info["memory_mib"] is not None:
                vm["memory_mib"] = max(vm["memory_mib"], info["memory_mib"])
            if info["vcpus"] is not None:
                vm["vcpus"] = max(vm["vcpus"], info["vcpus"])
            if info["name"] != vm["name"]:
                self.warnings.append("%s: the domain XML names it %r" % (vm["name"], info["name"]))

    def _place(self, vms: list, hosts: list, capacity: dict, round_no: int) -> list:
        """Pinned VMs go back to their claim's target; the others are planned on ``hosts``. Returns the placements."""
        placed_at = _now()
        placements = []
        for vm in [v for v in vms if v["pinned"]]:
            placements.append(self._planned(vm, {"host": vm["pinned"], "spare": vm["pinned"] in self.spares}, round_no, placed_at))
            left = capacity.get(vm["pinned"])
            if left is not None:  # what a retry takes is not free for the others
                capacity[vm["pinned"]] = {"mem_free_mib": max(0, left["mem_free_mib"] - vm["memory_mib"]),
                                          "vcpus_free": max(0, left["vcpus_free"] - vm["vcpus"]),
                                          "groups": left["groups"] + ([vm["group"]] if vm["group"] else [])}
        free = [vm for vm in vms if not vm["pinned"]]
        plan = place(
            [dict((k, vm[k]) for k in ("uuid", "name", "priority", "memory_mib", "vcpus", "group")) for vm in free],
            [dict(capacity[t.host], host=t.host) for t in hosts],
            [t.host for t in hosts if t.spare],
            self.params["strategy"],
        )
        by_uuid = dict((vm["uuid"], vm) for vm in free)
        for entry in plan["unplaced"]:
            vm = by_uuid[entry["uuid"]]
            vm["timestamps"]["placed"] = placed_at
            reason = entry["reason"] if round_no == 1 else "planned again after its target broke: %s" % entry["reason"]
            self._finish(vm, "unplaced", reason)
        for entry in plan["placements"]:
            placements.append(self._planned(by_uuid[entry["uuid"]], entry, round_no, placed_at))
        for host, left in plan["hosts"].items():
            capacity[host] = {"mem_free_mib": left["mem_free_mib"], "vcpus_free": left["vcpus_free"], "groups": left["groups"]}
        return placements

    def _planned(self, vm: dict, entry: dict, round_no: int, placed_at: float) -> dict:
        planned = dict((k, vm[k]) for k in ("uuid", "name", "priority", "memory_mib", "vcpus", "group"))
        planned.update(host=entry["host"], spare=entry["spare"], failed_host=vm["failed_host"], round=round_no,
                       order=len(self.plan) + 1, retry=bool(vm["pinned"]))
        self.plan.append(planned)
        vm.update(host=entry["host"], order=planned["order"], round=round_no)
        vm["timestamps"]["placed"] = placed_at
        return vm

    # ------------------------------------------------------------------------------------------- acting

    def _claim(self, vm: dict) -> bool:
        book = self._book(vm)
        try:
            self._hold()
        except LeaseLost as err:
            vm["host"] = None
            self._finish(vm, "waiting", str(err), kind="lease_lost")
            return False
        try:
            if vm["claim"] is None:
                claim = self._store_call("claim %s" % vm["name"], book.acquire, vm["uuid"], vm["name"], vm["host"], vm["decision"])
            else:
                claim = self._store_call("re-target the claim of %s" % vm["name"], book.retarget, vm["claim"], vm["host"])
        except Conflict as err:
            who = err.current.owner if err.current is not None else "another evacuator"
            vm["host"] = None
            self._finish(vm, "waiting", "claimed by %s first (%s)" % (who, err))
            return False
        except KvmhaError as err:
            vm["host"] = None
            self._finish(vm, "failed", "cannot write its claim: %s" % err, kind=err.kind)
            return False
        self._set_claim(vm, claim)
        vm["timestamps"]["claimed"] = _now()
        return True

    @staticmethod
    def _set_claim(vm: dict, claim) -> None:
        vm["claim"] = claim
        vm["claim_info"].update(owner=claim.owner, generation=claim.generation, state=claim.data.get("state"))

    def _work_vm(self, target: Target, vm: dict) -> tuple:
        if target.broken:  # another of its VMs found the connection broken
            return vm, "replan", target.broken, ""
        try:
            self._hold()
        except LeaseLost as err:
            return vm, "lost", str(err), "lease_lost"
        return (vm,) + VmJob(vm, target, self.params["verify_timeout_s"]).run()

    def _execute(self, placements: list) -> list:
        """Claim, then define/start ``parallel`` VMs at a time, in their order, on one target or several (libvirt starts
        different domains of one connection concurrently). Returns the VMs to plan again."""
        claimed = [vm for vm in placements if self._claim(vm)]
        targets = dict((t.host, t) for t in self.targets)
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.params["parallel"]) as pool:
            results = list(pool.map(lambda vm: self._work_vm(targets[vm["host"]], vm), claimed))
        replan = []
        for vm, outcome, reason, kind in sorted(results, key=lambda r: r[0]["order"]):
            vm["outcome"] = outcome
            if outcome == "started":
                self._finish(vm, "started", "")
                self._update_claim(vm, self._book(vm).mark_started, vm["host"])
            elif outcome == "failed":
                self._finish(vm, "failed", reason, kind=kind)
                self._update_claim(vm, self._book(vm).mark_failed, reason)
            elif outcome == "unknown":
                self._finish(vm, "failed", reason, kind=kind or "unknown")
            elif outcome == "lost":
                vm["outcome"] = None
                self._finish(vm, "waiting", reason, kind=kind)
            elif vm["pinned"]:
                # A retry stays on its claim's target: the claim's earlier holder may still start it there, and
                # only there does libvirt refuse the second start. It waits, like a claim whose target cannot be checked.
                self._finish(vm, "waiting", "%s; not placed elsewhere: its claim's earlier holder may still start it "
                             "on %s" % (reason, vm["host"]), kind=kind or "connection")
            else:
                self.replanned.append({"uuid": vm["uuid"], "name": vm["name"], "from_host": vm["host"], "to_host": None,
                                       "reason": reason})
                vm["host"] = None
                vm["pinned"] = None
                replan.append(vm)
        return replan

    def _update_claim(self, vm: dict, method, arg) -> None:
        try:
            self._set_claim(vm, self._store_call("update the claim of %s" % vm["name"], method, vm["claim"], arg))
        except KvmhaError as err:
            self.warnings.append("%s: the claim could not be updated (%s); it stays %s" % (vm["name"], err, vm["claim"].data.get("state")))

    def _await_beats(self, vms: list) -> None:
        """Wait (at most ``beat_timeout_s``) until each target's heartbeat lists the VMs running there: the hand-over."""
        waiting = [vm for vm in vms if vm["status"] in ("started", "running") and not self._listed(vm)]
        deadline = time.monotonic() + self.params["beat_timeout_s"]
        reader = RecordReader(self.store)
        targets = dict((t.host, t) for t in self.targets)
        while waiting and time.monotonic() < deadline:
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
            for host in set(vm["host"] for vm in waiting):
                try:
                    reading = self._store_call("read the heartbeat record of %s" % host, reader.read, host)
                except KvmhaError:
                    continue
                if reading.status == "ok":
                    targets[host].record = reading.record
            waiting = [vm for vm in waiting if not self._listed(vm)]

    def _listed(self, vm: dict) -> bool:
        target = next((t for t in self.targets if t.host == vm["host"]), None)
        return target is not None and target.lists(vm["uuid"])

    # ------------------------------------------------------------------------------------------- recording

    def _transition(self, vm: dict, now: float) -> dict:
        """The VM's new owed entry, from what this pass found and did."""
        entry, status, retry = vm["entry"], vm["status"], self.retry
        attempted = vm["outcome"] is not None or status == "unplaced"
        for host in vm["tried"]:
            entry = owed.add_copy(entry, host)
        claimed_on = self._claim_target(vm)
        if claimed_on:
            entry = owed.add_copy(entry, claimed_on)  # a definition may have been made there
        if status in ("started", "running"):
            state = owed.VERIFIED if self._listed(vm) else owed.STARTED
            return owed.transition(entry, state, now, target=vm["host"], attempted=attempted, retry=retry)
        if status == "unplaced":
            return owed.transition(entry, owed.UNPLACED, now, error=vm["reason"], attempted=True, retry=retry)
        if status == "failed" and vm["outcome"] == "unknown":
            return owed.transition(entry, owed.CLAIMED, now, target=vm["host"], error=vm["reason"], attempted=True, retry=retry)
        if status == "failed":
            return owed.transition(entry, owed.FAILED, now, error=vm["reason"], attempted=True, retry=retry)
        held = entry["state"] in (owed.CLAIMED, owed.STARTED) and entry["target"] == claimed_on
        if status == "waiting" and vm["decision"] is not None and vm["decision"].action in ("skip", "retry") and claimed_on and not held:
            return owed.transition(entry, owed.CLAIMED, now, target=claimed_on, error=vm["reason"], retry=retry)
        if status == "waiting" and vm["reason"] != entry["last_error"] and entry["state"] not in owed.RETRYING:
            return dict(entry, last_error=vm["reason"][:owed.MAX_TEXT], updated=now)
        return entry

    @staticmethod
    def _claim_target(vm: dict):
        """The target of the VM's current claim of this incident, if any."""
        decision = vm["decision"]
        if decision is None or decision.current is None or decision.current.released:
            return None
        data = decision.current.data
        return data.get("target") if data.get("incident") == vm["incident"] else None

    def _record(self, vms: list) -> list:
        """Write every transition to its owed document; close the documents that are done. Returns the transitions."""
        now = self.clock()
        transitions = []
        for host in sorted(self.documents):
            doc = self.documents[host]
            new_entries = {}
            for vm in vms:
                if vm["failed_host"] == host and vm["status"] != "done":
                    new = self._transition(vm, now)
                    vm["entry"] = new
                    new_entries[vm["uuid"]] = new
                    if new["state"] != vm["previous"]:
                        transitions.append({"host": host, "vm": vm["name"], "uuid": vm["uuid"], "from": vm["previous"],
                                            "to": new["state"], "target": new["target"], "reason": new["last_error"],
                                            "attempts": new["attempts"]})
            entries = [new_entries.get(entry["uuid"], entry) for entry in doc.data["vms"]]
            data = owed.close_if_done(dict(doc.data, vms=entries), now)
            if data["worked_by"] == self.owner:
                data["work_finished"] = now
            if data != doc.data:
                self._save(host, data)
            if not owed.is_open(data):
                self.closed.append(host)
            self._ensure_fenced(host, data)  # no-op while the mark is there; writes it after a run died before it
        return transitions

    def _ensure_fenced(self, host: str, data: dict) -> None:
        """The fenced mark is written from the owed document: the VMs it lists are the ones the boot guard holds."""
        if self.check_mode:
            return
        mark = {"verdict": data["verdict"], "rule": data["rule"], "incident": data["incident"],
                "vms": [vm["uuid"] for vm in data["vms"]]}
        try:
            self._store_call("mark %s fenced" % host, set_mark, self.store, FENCED, host, self.owner, mark)
        except KvmhaError as err:
            self.unreadable.append({"host": host, "status": "error", "reason": "cannot write its fenced mark: %s" % err})

    # ------------------------------------------------------------------------------------------- bookkeeping

    @staticmethod
    def _pending(vms: list) -> list:
        return [vm for vm in vms if vm["status"] == ""]

    @staticmethod
    def _finish(vm: dict, status: str, reason: str, kind: str = "") -> None:
        vm["status"] = status
        vm["reason"] = reason
        vm["error_kind"] = kind if status in ("failed", "waiting") else ""

    # ------------------------------------------------------------------------------------------- main

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self._drop_early()
            for target in self.targets:
                if target.client is not None:
                    target.client.close()

    def _run(self) -> dict:
        self._hold()  # a run whose lease moved on (frozen, or a clock off) does nothing at all
        self._connect_early()
        self._open_new()
        vms = self._read_owed()
        worked = [vm for vm in vms if vm["status"] != "done"]
        reachable = []
        if worked:
            self._read_targets()
            reachable = self._connect()
        self._drop_early()
        before = self._where(worked, reachable)
        fenced = self._fenced_hosts() if worked else set()
        self._census(worked, reachable, fenced)
        self._load_xml(worked)
        self._inspect_claims(worked, reachable, fenced)
        hosts = [t for t in reachable if t.placeable]
        capacity = dict((t.host, {"mem_free_mib": t.record["capacity"]["mem_free_mib"],
                                  "vcpus_free": t.record["capacity"]["vcpus_free"],
                                  "groups": [v["group"] for v in t.record["vms"] if v["group"]]}) for t in hosts)
        pending = sorted(self._pending(worked), key=vm_order_key)
        round_no = 1
        while pending:
            placements = self._place(pending, hosts, capacity, round_no)
            for vm in pending:
                if vm["status"] == "unplaced" and vm["claim"] is not None:  # re-planned, never started: let go
                    self._update_claim(vm, self._book(vm).mark_failed, vm["reason"])
            if self.check_mode:
                for vm in placements:
                    self._finish(vm, "planned", "")
                break
            pending = sorted(self._execute(placements), key=vm_order_key)
            hosts = [t for t in hosts if not t.broken]
            round_no += 1
        for target in self.targets:
            if target.broken:
                target.reason = target.broken
        if not self.check_mode:
            self._await_beats(worked)
        transitions = self._record(vms)
        return self._result(vms, before, transitions)

    def _where(self, vms: list, reachable: list) -> dict:
        where = {}
        for vm in vms:
            hosts = [t.host for t in reachable if vm["uuid"] in t.active]
            where[vm["uuid"]] = hosts[0] if hosts else "nowhere"
        return where

    def _result(self, vms: list, before=None, transitions=()) -> dict:
        for entry in self.replanned:
            vm = next(v for v in vms if v["uuid"] == entry["uuid"])
            if vm["status"] in ("started", "planned") or (vm["status"] == "failed" and vm["host"]):
                entry["to_host"] = vm["host"]
        worked = [vm for vm in vms if vm["status"] != "done"]
        ordered = sorted(worked, key=lambda v: (v["order"] is None, v["order"] or 0, vm_order_key(v)))
        out_vms = [self._vm_result(vm) for vm in ordered]
        counts = dict((s, sum(1 for v in out_vms if v["status"] == s)) for s in STATUSES)
        changed = (counts["planned"] > 0 or bool(self.opened)) if self.check_mode else (
            any("defined" in v["timestamps"] for v in out_vms) or bool(self.opened) or bool(transitions))
        owed_now = dict((host, owed.counts(doc.data)) for host, doc in sorted(self.documents.items()))
        result = {
            "changed": changed, "owner": self.owner, "failed_hosts": list(self.failed_hosts), "opened": self.opened,
            "closed": sorted(set(self.closed)), "incidents": dict((h, d.data["incident"]) for h, d in self.documents.items()),
            "unreadable": [dict(u) for u in self.unreadable], "aborted": list(self.aborted),
            "powerstate": dict((host, read[0]) for host, read in self.powerstate.items()), "interrupted": self.interrupted,
            "plan": self.plan,
            "vms": out_vms, "counts": counts, "owed": owed_now, "transitions": list(transitions),
            "attempts": sum(1 for vm in worked if vm["outcome"] is not None or vm["status"] == "unplaced"),
            "targets": [t.as_dict() for t in self.targets],
            "replanned": self.replanned, "started_at": round(self.started_at, 3), "finished_at": _now(),
            "elapsed": round(time.monotonic() - self._t0, 3),
        }
        if self.diff_mode and before is not None:
            result["diff"] = self._diff(out_vms, before)
        self._raise_if_incomplete(result, out_vms)
        return result

    @staticmethod
    def _vm_result(vm: dict) -> dict:
        entry = vm["entry"]
        return {
            "uuid": vm["uuid"], "name": vm["name"], "failed_host": vm["failed_host"], "priority": vm["priority"],
            "group": vm["group"], "memory_mib": vm["memory_mib"], "vcpus": vm["vcpus"], "status": vm["status"],
            "state": entry["state"], "previous": vm["previous"], "host": vm["host"], "order": vm["order"],
            "round": vm["round"], "reason": vm["reason"], "error_kind": vm["error_kind"], "attempts": entry["attempts"],
            "next_try": entry["next_try"], "claim": dict(vm["claim_info"]), "timestamps": dict(vm["timestamps"]),
        }

    @staticmethod
    def _diff(out_vms: list, before: dict) -> dict:
        diff = {"before": {"vms": {}}, "after": {"vms": {}}}
        labels = _labels(out_vms)
        for vm in out_vms:
            label = labels[vm["uuid"]]
            diff["before"]["vms"][label] = before.get(vm["uuid"], "nowhere")
            runs = vm["status"] in ("started", "planned", "running") and vm["host"]
            diff["after"]["vms"][label] = vm["host"] if runs else "nowhere"
        return diff

    def _raise_if_incomplete(self, result: dict, out_vms: list) -> None:
        if self.lease_lost:
            raise LeaseLost(self.lease_lost, result=result)
        if self.unreadable:
            raise StoreError("recovery incomplete: %s; %d started, %d still owed of the others"
                             % ("; ".join("%s: %s (%s)" % (u["host"], u["status"], u["reason"]) for u in self.unreadable),
                                result["counts"]["started"], self._still_owed(out_vms)), result=result)
        if self.params["fail_on_incomplete"] and not self.check_mode and self._still_owed(out_vms):
            names = ", ".join("%s (%s: %s)" % (vm["name"], vm["state"], vm["reason"] or vm["status"])
                              for vm in out_vms if vm["state"] in owed.NOT_RUNNING)
            raise RecoveryIncomplete("recovery incomplete: %d VM(s) run nowhere yet and stay owed: %s"
                                     % (self._still_owed(out_vms), names), result=result)

    @staticmethod
    def _still_owed(out_vms: list) -> int:
        return sum(1 for vm in out_vms if vm["state"] in owed.NOT_RUNNING)

    # ------------------------------------------------------------------------------------------- abandon

    def abandon(self, names: list, operator: str, reason: str) -> dict:
        """Mark the named owed VMs ``abandoned`` (an operator's decision, recorded with name and reason)."""
        documents = self._open_documents()
        self.documents = documents
        now = self.clock()
        wanted = set(names)
        transitions, found = [], set()
        for host, doc in sorted(documents.items()):
            entries = []
            for entry in doc.data["vms"]:
                if (entry["name"] in wanted or entry["uuid"] in wanted) and entry["state"] not in owed.TERMINAL:
                    found.update((entry["name"], entry["uuid"]))
                    new = dict(owed.transition(entry, owed.ABANDONED, now), abandoned_by=operator[:owed.MAX_TEXT],
                               abandon_reason=reason[:owed.MAX_TEXT])
                    transitions.append({"host": host, "vm": entry["name"], "uuid": entry["uuid"], "from": entry["state"],
                                        "to": owed.ABANDONED, "target": None, "reason": "abandoned by %s: %s" % (operator, reason),
                                        "attempts": entry["attempts"], "operator": operator})
                    entry = new
                entries.append(entry)
            if transitions and entries != doc.data["vms"]:
                data = owed.close_if_done(dict(doc.data, vms=entries), now)
                self._save(host, data)
                if not owed.is_open(data):
                    self.closed.append(host)
        unknown = sorted(wanted - found)
        if unknown:
            raise InvalidInput("not owed by any open recovery: %s (see the owed documents under %s)"
                               % (", ".join(unknown), owed.owed_dir(self.store)))
        result = {"changed": bool(transitions), "owner": self.owner, "failed_hosts": [], "transitions": transitions,
                  "closed": sorted(set(self.closed)), "unreadable": self.unreadable, "aborted": [],
                  "owed": dict((host, owed.counts(doc.data)) for host, doc in sorted(self.documents.items()))}
        if self.unreadable:
            raise StoreError("abandon incomplete: %s" % "; ".join("%s: %s" % (u["host"], u["reason"]) for u in self.unreadable),
                             result=result)
        return result


class _Planned:
    """An owed document as it would be written (check mode): quacks like a ``Document`` for the engine."""

    released = False

    def __init__(self, host: str, data: dict):
        self.name = host
        self.data = data


def _iso(ts) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _labels(vms: list) -> dict:
    names = [vm["name"] for vm in vms]
    return dict((vm["uuid"], vm["name"] if names.count(vm["name"]) == 1 else "%s (%s)" % (vm["name"], vm["uuid"])) for vm in vms)
