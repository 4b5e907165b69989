# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The writer: one beat = refresh the manifest, build the record, write it, check the self-fence."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time

from . import _heartbeat as hb
from ._deadline import call_with_deadline
from ._errors import DeadlineExceeded, KvmhaError
from ._workers import LOG, Reporter, Worker
from ._config import published_deadline, refresh_interval
from ._capacity import compute_capacity, read_meminfo_mib
from ._sources import make_source
from ._store import store_write
from ._fencing import Fencer, fence_decision, probe_peers
from ._runtime import Notifier, _read_json, _write_local, boottime, read_boot_id, start_seq

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def reexec_argv() -> list:
    """The command line this process was started with, to execute again on a reload.

    ``sys.orig_argv`` is Python 3.10+; on 3.9 (RHEL 9's python3) the interpreter options are rebuilt from
    ``sys.flags``: the units run ``python3 -I -B <archive> ...``, and ``-I`` implies ``-E -s``."""
    if hasattr(sys, "orig_argv"):
        return list(sys.orig_argv)
    options = (["-I"] if sys.flags.isolated else []) + (["-B"] if sys.flags.dont_write_bytecode else [])
    return [sys.executable] + options + sys.argv


class Writer:
    def __init__(self, conf: dict, archive_digest: str | None = None):
        self.conf = conf
        # The sha256 of the archive this process runs, kept in the runtime state: a deploy compares it with the
        # installed archive and reloads a writer that runs other code (docs/ARCHITECTURE.md, item 21).
        self.archive_digest = archive_digest
        self.host = conf["host"]
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self.boot_id = read_boot_id(conf["boot_id_path"])
        os.makedirs(conf["state_dir"], mode=0o750, exist_ok=True)
        self.state_path = os.path.join(conf["state_dir"], "state.json")
        self.manifest_path = os.path.join(conf["state_dir"], "manifest.json")
        state = _read_json(self.state_path)
        self.seq = start_seq(state, self.boot_id, boottime()) - 1
        now = time.monotonic()
        self.last_ok = now
        inherited = state and state.get("boot_id") == self.boot_id and isinstance(state.get("last_ok_mono"), (int, float))
        if inherited and state["last_ok_mono"] <= now:
            self.last_ok = state["last_ok_mono"]  # a crash-restart does not reset the self-fence clock
        self.source = make_source(conf)
        self.lv_worker = Worker("libvirt")
        self.store_worker = Worker("store")
        self.abandoned = 0
        self.manifest = {"vms": [], "xml": {}, "allocated": {"mem_mib": 0, "vcpus": 0}}
        self.manifest_read_at = None  # wall time of the last successful read
        self.manifest_error = ""
        self.manifest_source = self.source.method
        self.last_refresh = None
        saved = _read_json(self.manifest_path)
        if saved and saved.get("boot_id") == self.boot_id and isinstance(saved.get("vms"), list):
            self.manifest = {"vms": saved["vms"], "xml": {}, "allocated": saved.get("allocated") or {"mem_mib": 0, "vcpus": 0}}
            self.manifest_read_at = saved.get("read_at")
            self.manifest_error = "libvirt not read yet since the writer started; last known manifest kept"
            LOG.info("loaded the last known manifest (%d HA VMs) from %s", len(self.manifest["vms"]), self.manifest_path)
        elif self.source.method != "none":
            self.manifest_error = "libvirt not read yet since the writer started"
        self.xml_written = {}
        self._pending_hash = {}
        self.last_record = None
        self.reachable = None
        self.fencer = Fencer(conf)
        self.notifier = Notifier()
        self.store_report = Reporter("store write")
        self.lv_report = Reporter("libvirt")
        self.xml_report = Reporter("domain XML")
        self.beats = 0
        self.ready = False
        self.reexec = False

    # ---------------------------------------------------------------- state
    def _save_state(self, last_ok):
        data = {"boot_id": self.boot_id, "seq": self.seq, "last_ok_mono": last_ok, "archive": self.archive_digest}
        try:
            _write_local(self.state_path, json.dumps(data).encode())
        except OSError as err:
            LOG.error("cannot save runtime state %s: %s", self.state_path, err.strerror or err)

    def _save_manifest(self):
        data = {"boot_id": self.boot_id, "vms": self.manifest["vms"], "allocated": self.manifest["allocated"], "read_at": self.manifest_read_at}
        try:
            _write_local(self.manifest_path, json.dumps(data, sort_keys=True).encode())
        except OSError as err:
            LOG.error("cannot save the manifest %s: %s", self.manifest_path, err.strerror or err)

    # ---------------------------------------------------------------- libvirt
    def _apply_refresh(self, outcome):
        ok, value = outcome
        if not ok:
            self.manifest_error = str(value)
            kept = len(self.manifest["vms"])
            self.lv_report.failed("%s; keeping the last known manifest (%d HA VMs%s)" % (
                value, kept, "" if self.manifest_read_at is None else ", read %.0f s ago" % (time.time() - self.manifest_read_at)))
            return
        self.lv_report.ok()
        for warning in value["warnings"]:
            LOG.warning("%s", warning)
        changed = value["vms"] != self.manifest["vms"] or value["allocated"] != self.manifest["allocated"]
        self.manifest = value
        self.manifest_read_at = time.time()
        self.manifest_error = ""
        if changed:
            LOG.info("manifest: %d HA VMs running (%s)", len(value["vms"]), ", ".join(vm["name"] for vm in value["vms"]) or "none")
            self._save_manifest()

    def _refresh_manifest(self, now: float):
        lv = self.conf["libvirt"]
        stuck = self.lv_worker.busy_for()
        if stuck is not None:
            if stuck > max(30.0, 5 * lv["timeout"]) and self.abandoned < 5:
                self.abandoned += 1
                LOG.error("libvirt: a read has been stuck for %.0f s; abandoning it and reconnecting (%d abandoned)", stuck, self.abandoned)
                self.lv_worker = Worker("libvirt")
                self.source = make_source(self.conf)
            elif stuck > lv["timeout"]:
                self.manifest_error = "libvirt did not answer within %.1f s" % lv["timeout"]
                self.lv_report.failed("no answer for %.1f s (timeout %.1f s); keeping the last known manifest (%d HA VMs)" % (
                    stuck, lv["timeout"], len(self.manifest["vms"])), key="stuck")
            return
        if self.last_refresh is not None and now - self.last_refresh < refresh_interval(self.conf, self.source.method) - 0.01:
            return
        self.last_refresh = now
        self.lv_worker.submit(self.source.refresh, self.conf["ha_domains"])
        outcome = self.lv_worker.wait(min(lv["timeout"], 0.4 * self.conf["interval"]))
        if outcome is not None:
            self._apply_refresh(outcome)

    def _collect_late_refresh(self):
        if self.lv_worker.busy_for() is None:
            outcome = self.lv_worker.wait(0)
            if outcome is not None:
                self._apply_refresh(outcome)

    # ---------------------------------------------------------------- record
    def _manifest_field(self) -> dict:
        age = None if self.manifest_read_at is None else round(max(0.0, time.time() - self.manifest_read_at), 1)
        return {"source": self.manifest_source, "age_s": age, "error": self.manifest_error[:1024]}

    def build(self, state: str = "running", reason: str = "") -> dict:
        sf = self.conf["self_fence"]
        meminfo = read_meminfo_mib(self.conf["meminfo_path"])
        capacity = compute_capacity(self.conf["capacity"], meminfo["MemAvailable"], len(os.sched_getaffinity(0)), self.manifest["allocated"],
                                    meminfo["MemTotal"])
        vms = [{k: vm[k] for k in ("uuid", "name", "ha", "priority", "memory_mib", "vcpus", "disks", "group")} for vm in self.manifest["vms"]]
        self.seq += 1
        return hb.build_record(
            self.host, self.boot_id, self.seq, time.time(), self.conf["interval"],
            {"armed": self.fencer.armed, "deadline_s": published_deadline(self.conf)}, capacity, vms,
            state=state, manifest=self._manifest_field(), reason=reason,
        )

    # ---------------------------------------------------------------- store
    def _apply_write(self, outcome, finished: float):
        ok, value = outcome
        if not ok:
            err = value
            text = "%s: %s" % (type(err).__name__, err.strerror or err) if isinstance(err, OSError) else str(err)
            self.store_report.failed(text)
            return
        self.last_ok = finished
        self.store_report.ok()
        for uuid in value["xml_ok"]:
            self.xml_written[uuid] = self._pending_hash.get(uuid)
        if value["xml_errors"]:
            self.xml_report.failed("; ".join("%s: %s" % item for item in sorted(value["xml_errors"].items())))
        elif value["xml_ok"]:
            self.xml_report.ok()
            LOG.info("kept the XML of %s on the store", ", ".join(sorted(value["xml_ok"])))

    def _write(self, record: dict, now: float):
        stuck = self.store_worker.busy_for()
        if stuck is not None:
            self.store_report.failed("the previous write is still blocked after %.1f s; not stacking another" % stuck, key="blocked")
            return
        late = self.store_worker.wait(0)
        if late is not None:
            self._apply_write(late, now)
        pending, self._pending_hash = {}, {}
        for uuid, data in self.manifest.get("xml", {}).items():
            data = data.encode("utf-8") if isinstance(data, str) else data
            digest = hashlib.sha256(data).hexdigest()
            if self.xml_written.get(uuid) != digest:
                pending[uuid] = data
                self._pending_hash[uuid] = digest
        self.store_worker.submit(store_write, self.conf, hb.encode_record(record), pending)
        outcome = self.store_worker.wait(self.conf["write_timeout"])
        if outcome is None:
            self.store_report.failed("write not finished within %g s (store hung?); will not stack another" % self.conf["write_timeout"], key="blocked")
        else:
            self._apply_write(outcome, time.monotonic())

    def _collect_late_write(self):
        if self.store_worker.busy_for() is None:
            outcome = self.store_worker.wait(0)
            if outcome is not None:
                self._apply_write(outcome, time.monotonic())

    # ---------------------------------------------------------------- self-fence
    def _self_fence(self, now: float):
        if not self.fencer.armed:
            return
        sf = self.conf["self_fence"]
        stale_for = now - self.last_ok
        if stale_for < sf["deadline_s"]:
            self.reachable = None
            self.fencer.recovered()
            self.fencer.feed()
            return
        self.reachable = probe_peers(sf)
        fence, reason = fence_decision(True, time.monotonic() - self.last_ok, sf["deadline_s"], self.reachable, len(sf["peers"]))
        if fence:
            self.fencer.fence(reason)
        else:
            LOG.warning("self-fence held back: %s", reason)
            self.fencer.recovered()
            self.fencer.feed()

    # ---------------------------------------------------------------- loop
    def beat(self):
        self._collect_late_write()
        self._collect_late_refresh()
        now = time.monotonic()
        self._refresh_manifest(now)
        record = self.build()
        self.last_record = record
        self._save_state(self.last_ok)
        self._write(record, now)
        self._save_state(self.last_ok)
        self._self_fence(time.monotonic())
        self.beats += 1
        status = "seq %d, %d HA VMs, last write %.1f s ago%s" % (
            record["seq"], len(record["vms"]), time.monotonic() - self.last_ok,
            "" if not self.store_report.failing_since else ", store FAILING")
        if not self.ready:
            self.ready = True
            self.notifier.send("READY=1\nSTATUS=%s" % status)
        else:
            self.notifier.send("STATUS=%s%s" % (status, "\nWATCHDOG=1" if self.notifier.watchdog else ""))

    def request_stop(self, signum, _frame=None):
        self.stop_reason = "writer stopped (%s)" % signal.Signals(signum).name
        self.stop_event.set()

    def request_reexec(self, _signum, _frame=None):
        """SIGHUP (``systemctl reload``): load new code and configuration without a stopped record."""
        self.reexec = True
        self.stop_event.set()

    def _reexec(self):
        """Replace this process with a fresh writer (same PID, seq and self-fence clock carry over).

        Not while a store write is blocked: exec would wait for that thread, and self-fencing with it."""
        self.stop_event.clear()
        if self.store_worker.busy_for() is not None:
            self.store_report.failed("reload postponed: a store write is blocked; re-executing once the store answers", key="reload")
            return False
        argv = reexec_argv()
        LOG.info("reloading: re-executing %s (no stopped record; seq and self-fence clock carry over)", " ".join(argv))
        self._save_state(self.last_ok)
        self.fencer.close(graceful=False)
        self.source.close()
        for handler in LOG.handlers:
            handler.flush()
        # Signals stay blocked across exec (the mask is inherited) until the new writer has its handlers: a stop
        # that arrives meanwhile is delivered then, and still writes the stopped record.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            os.execv(sys.executable, argv)
        except OSError as err:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            LOG.error("reload failed, keeping the running writer: cannot execute %s: %s", sys.executable, err.strerror or err)
            self.reexec = False
            self.stop_event.clear()
            self.source = make_source(self.conf)
            self.fencer = Fencer(self.conf)
        return False

    def run(self) -> int:
        interval = self.conf["interval"]
        LOG.info("writing %s every %.1f s (seq from %d, boot %s, libvirt via %s)", hb.record_path(self.conf["store"], self.host),
                 interval, self.seq + 1, self.boot_id, self.source.method)
        next_beat = time.monotonic()
        while not self.stop_reason:
            if self.reexec:
                self._reexec()  # returns only when postponed or failed
            self.beat()
            next_beat += interval
            now = time.monotonic()
            if next_beat < now:
                missed = int((now - next_beat) // interval) + 1
                next_beat += missed * interval
            self.stop_event.wait(max(0.0, next_beat - time.monotonic()))
        return self.stop()

    def stop(self) -> int:
        self.notifier.send("STOPPING=1")
        self._collect_late_refresh()
        previous = self.last_record or self.build()
        record = hb.stopped_record(previous, self.host, time.time(), self.stop_reason or "writer stopped")
        # A stopped writer cannot fence its host any more: never let a reader trust a self-fence from here on.
        record["self_fence"] = {"armed": False, "deadline_s": record["self_fence"]["deadline_s"]}
        record["manifest"] = self._manifest_field()
        self.seq = record["seq"]
        self._save_state(None)
        if self.store_worker.busy_for() is not None:
            self.store_worker.wait(self.conf["stop_timeout"] / 2)
        try:
            # A store job that is still blocked is left alone; the stopped record gets its own thread and deadline.
            call_with_deadline(store_write, self.conf["stop_timeout"], "writing the stopped record", self.conf, hb.encode_record(record), {})
            LOG.info("wrote the stopped record (seq %d): %s", record["seq"], record.get("reason", ""))
        except DeadlineExceeded as err:
            LOG.error("could not write the stopped record: %s", err)
        except (OSError, KvmhaError) as err:
            LOG.error("could not write the stopped record: %s", getattr(err, "strerror", None) or err)
        self.fencer.close(graceful=True)
        self.source.close()
        return 0
