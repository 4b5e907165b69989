"""The end-to-end harness: the lab as a cluster under test, the watchdog run as a user runs it, and the invariants.

Every scenario starts from `Cluster.reset()` (a healthy cluster, every guest running once on its home host),
injects a fault through the lab, runs the real watchdog playbook with the real inventory, heals, and asserts
`Cluster.assert_invariants()`:
  * every HA VM runs exactly once (counted from the qemu processes of all hosts, frozen ones included),
  * no healthy host was fenced - by the journal, and by the lab BMCs' own logs (no IPMI power-off of another host),
  * no domain XML or disk was lost from the store,
  * the watchdog never tried to start a VM whose original might still run, and no guest started more often than the
    watchdog says it started it (the qemu logs of every host, counted since the reset), and
  * the incident records name the expected verdicts and rules.
QEMU's own image lock is not what is tested: the harness checks that no second start was attempted at all.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from lab import Lab, config, guests as lab_guests, power

REPO = config.REPO
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
PLAYBOOK = os.path.join(REPO, "playbooks", "watchdog.yml")
sys.path.insert(0, os.path.join(REPO, ".collections"))

from ansible_collections.kvmha.cluster.plugins.module_utils import _marks, _recovery  # noqa: E402
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import RecordReader  # noqa: E402

QEMU_LOG = "/var/log/libvirt/qemu/%s.log"


def descendants(pid) -> list:
    """Every process below ``pid`` (Ansible runs a module in a session of its own, out of our process group)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry, encoding="utf-8") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _state(pid) -> str:
    """The process's state letter (R, S, D, T, Z ...), or "gone"."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def signal_all(pids, sig):
    """Send sig to each of pids that still exists (any may have ended meanwhile)."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def freeze(pid) -> list:
    """SIGSTOP ``pid`` and every process below it, until no new one appears; returns them all, ``pid`` first.

    One snapshot of the tree races a fork: Ansible forks a worker per task, and one forked right after the snapshot
    ran on - in CI it escaped a kill and, its parent gone, waited forever on the result queue's lock that a killed
    process held. Each round waits until the processes it stopped are stopped (a stopped process forks nothing), so
    the round that finds no new process has them all."""
    stopped = []
    while True:
        new = [p for p in [pid] + descendants(pid) if p not in stopped]
        if not new:
            return stopped
        signal_all(new, signal.SIGSTOP)
        deadline = time.monotonic() + 5  # a process in uninterruptible sleep stops when it wakes
        while time.monotonic() < deadline and not all(_state(p) in ("T", "t", "Z", "X", "gone") for p in new):
            time.sleep(0.01)
        stopped += new


def _runs_module(pid, module) -> bool:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return ("AnsiballZ_%s" % module).encode() in f.read()
    except OSError:
        return False


def wait_for(predicate, timeout, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


class WatchdogRun:
    """One finished watchdog run: its exit code, output, and the journal it wrote."""

    def __init__(self, rc, output, journal_dir, started, finished):
        self.rc = rc
        self.output = output
        self.journal_dir = journal_dir
        self.started = started
        self.finished = finished

    @property
    def incidents(self) -> dict:
        records = {}
        for path in sorted(glob.glob(os.path.join(self.journal_dir, "incidents", "*.json"))):
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            records[record["host"]] = record
        return records

    @property
    def events(self) -> list:
        path = os.path.join(self.journal_dir, "events.jsonl")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def events_of(self, kind) -> list:
        return [e for e in self.events if e["event"] == kind]

    def fenced(self) -> set:
        return {e["host"] for e in self.events_of("fence") if e.get("ok")}

    def started_vms(self) -> dict:
        """{vm name: failed host} for every VM the watchdog started."""
        return {e["vm"]: e["host"] for e in self.events_of("vm_started")}

    def rto(self, host):
        return self.incidents.get(host, {}).get("rto_s")

    def explain(self) -> str:
        return "watchdog rc=%s\n%s" % (self.rc, self.output[-6000:])


class Cluster:
    """The lab, seen as the cluster under test."""

    def __init__(self, hosts: int, guests_per_host: int, workdir: str):
        self.lab = Lab()
        self.host_count = hosts
        self.guests_per_host = guests_per_host
        self.workdir = workdir
        self.runs = 0
        self.starts_at_reset, self.power_offs_at_reset = None, {}  # set by reset()

    # ------------------------------------------------------------------------------------------ lifecycle

    def up(self):
        self.lab.up(hosts=self.host_count, guests=self.guests_per_host)
        self.deploy()

    def deploy(self):
        self.ansible_playbook("deploy.yml")
        self.wait_all_alive()

    def ansible_playbook(self, playbook, *args, timeout=600, env=None):
        cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", self.lab.inventory_path(),
               os.path.join(REPO, "playbooks", playbook), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **(env or {})),
                              cwd=REPO, check=False)
        if proc.returncode != 0 and playbook != "watchdog.yml":
            raise AssertionError("%s failed:\n%s" % (playbook, (proc.stdout + proc.stderr)[-6000:]))
        return proc

    @property
    def hosts(self) -> list:
        return self.lab.hosts()

    @property
    def guest_homes(self) -> dict:
        return {name: guest["host"] for name, guest in self.lab.status()["guests"].items()}

    # ------------------------------------------------------------------------------------------ observation

    def qemu_copies(self) -> dict:
        return self.lab.guest_copies()

    def bmc_power_offs(self) -> dict:
        """{host: power-off commands its BMC executed so far}, from the lab BMCs' own logs - not the product's journal."""
        counts = {}
        for host in self.hosts:
            try:
                with open(config.log_file(config.bmc_name(host)), encoding="utf-8", errors="replace") as f:
                    counts[host] = sum(1 for line in f if line.strip() == "power off")
            except FileNotFoundError:
                counts[host] = 0
        return counts

    def wait_all_alive(self, timeout=60):
        """Every host's heartbeat advances: a "running" record whose (seq, boot id) differs from the first valid one
        seen here. Polled, so the wait is one beat of the slowest writer, not a fixed two."""
        reader, first, advanced = RecordReader(config.STORE), {}, set()

        def each_advanced():
            for host in set(self.hosts) - advanced:
                reading = reader.read(host)
                if reading.status != "ok":
                    first.pop(host, None)  # a restarting writer: its next valid record is a new first one
                    continue
                key = (reading.record["seq"], reading.record["boot_id"])
                if first.setdefault(host, key) != key and reading.record["state"] == "running":
                    advanced.add(host)
            return advanced == set(self.hosts)

        wait_for(each_advanced, timeout, interval=0.1, what="every heartbeat to advance")

    def manifests_match_layout(self) -> bool:
        reader = RecordReader(config.STORE)
        for host in self.hosts:
            reading = reader.read(host)
            listed = {vm["name"] for vm in reading.record["vms"]} if reading.status == "ok" else set()
            if listed != {g for g, copies in self.qemu_copies().items() if host in copies}:
                return False
        return True

    def records(self, host) -> list:
        """The VMs listed by the host's current heartbeat record ([] without a valid one)."""
        reading = RecordReader(config.STORE).read(host)
        return reading.record["vms"] if reading.status == "ok" else []

    def wait_reported(self, **guests):
        """Wait until the heartbeat records list each guest with the given fields (``g1={"priority": 90}``): the
        last records are what recovery plans from, and a writer reports a change of a guest's HA marker only with a
        later beat - a crash right after the change recovers by the marker before it."""
        def reported():
            listed = {vm["name"]: vm for host in self.hosts for vm in self.records(host)}
            return all(listed.get(name, {}).get(key) == value for name, fields in guests.items() for key, value in fields.items())

        wait_for(reported, 30, what="the writers to report %s" % guests)

    @staticmethod
    def marks_fenced() -> set:
        return set(_marks.read_marks(config.STORE, _marks.FENCED)["active"])

    def ansible_playbook_rc(self, playbook, *args, timeout=600):
        """Run an operations playbook that may fail; the CompletedProcess (stdout and stderr together)."""
        cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", self.lab.inventory_path(),
               os.path.join(REPO, "playbooks", playbook), *args]
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=REPO,
                              check=False)

    def qemu_starts(self) -> dict:
        """{guest: number of 'starting up' lines} in the qemu logs of every host (each host has its own /var/log)."""
        starts = {}
        for host in self.hosts:
            root = os.path.join(config.HOSTS_DIR, host, "upper")
            for path in glob.glob(root + QEMU_LOG % "*"):
                with open(path, encoding="utf-8", errors="replace") as f:
                    count = f.read().count("starting up")
                name = os.path.basename(path)[:-4]
                starts[name] = starts.get(name, 0) + count
        return starts

    # ------------------------------------------------------------------------------------------ reset

    def reset(self, policy_hosts=None):
        """A healthy cluster: faults healed, every host on and alive, no marks, every guest once on its home host."""
        self.lab.heal()
        for name, guest in self.lab.status()["guests"].items():
            if (guest["priority"], guest["group"], guest["ha"]) != (50, "", True):
                self.lab.guest_set(name, priority=50, group="", ha=True)
        for host in self.hosts:
            state = power.state(host)
            if state in ("crashed", "hung"):
                self.lab.power(host, "off")
                state = "off"
            if state == "off":
                self.lab.power(host, "on")
        self.wait_all_alive()
        self.clear_store_state()
        self.restore_layout()
        self.rewrite_markers_the_writers_miss()
        wait_for(self.manifests_match_layout, 30, interval=0.5, what="the writers' manifests to show the layout")
        self.wait_reported(**{name: {"priority": 50, "group": ""} for name in self.guest_homes})
        self.store_snapshot = self.snapshot_store()
        # What the lab itself counted at the healthy start, for the invariants (never the product's journal).
        self.starts_at_reset = self.qemu_starts()
        self.power_offs_at_reset = self.bmc_power_offs()

    def clear_store_state(self):
        for kind in (_marks.FENCED, _marks.MAINTENANCE, _marks.CONFIRMED_OFF):
            for host in _marks.documents(config.STORE, kind).names():
                _marks.clear_mark(config.STORE, kind, host, "e2e-reset")
        book = _recovery.OwedBook(config.STORE, "e2e-reset")
        for doc in book.read_all()[0].values():
            if not doc.released:
                book.release(doc)
        leases = _marks.documents(config.STORE, _marks.LEASE)
        for cluster in leases.names():
            current = leases.read(cluster)
            if current is not None and not current.released:
                leases.release(current)

    def restore_layout(self):
        """Every guest runs exactly once, on its home host (stale copies elsewhere are removed first)."""
        homes = self.guest_homes
        record = self.lab.status()["guests"]
        copies = self.qemu_copies()
        for guest, hosts in copies.items():
            assert len(hosts) <= 1, "%s runs %d times: %s" % (guest, len(hosts), hosts)
        # A running stray copy goes before any guest starts at home (its disk lock would stop the start): first,
        # on the hosts that run one; then one call a host removes what is left and starts its own guests.
        strays = {host: [g for g in homes if homes[g] != host] for host in self.hosts}
        running_strays = sorted({host for guest, hosts in copies.items() for host in hosts if homes.get(guest) != host})
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            list(pool.map(lambda host: lab_guests.libvirt_call(host, remove=strays[host]), running_strays))
            list(pool.map(lambda host: lab_guests.provision(host, {g: record[g] for g in homes if homes[g] == host},
                                                            remove=strays[host]), self.hosts))
        copies = self.qemu_copies()
        assert all(copies.get(g) == [h] for g, h in homes.items()), copies

    def rewrite_markers_the_writers_miss(self):
        """A scenario may change a guest's HA marker behind the lab's record (ha_vm unmarks it): a guest running at
        home that its host's record does not list gets the lab record's marker written back (live and persistent)."""
        reader = RecordReader(config.STORE)
        copies = self.qemu_copies()
        for host in self.hosts:
            reading = reader.read(host)
            listed = {vm["name"] for vm in reading.record["vms"]} if reading.status == "ok" else set()
            for guest in sorted(g for g, hosts in copies.items() if host in hosts and g not in listed):
                self.lab.guest_set(guest)

    def snapshot_store(self) -> dict:
        files = {}
        for pattern in ("kvmha/vms/*.xml", "images/*.img"):
            for path in glob.glob(os.path.join(config.STORE, pattern)):
                files[os.path.relpath(path, config.STORE)] = os.path.getsize(path)
        return files

    # ------------------------------------------------------------------------------------------ the watchdog

    def watchdog(self, watch_s=30, policy=None, extra_vars=None, timeout=300, background=False, env=None, inventory=None):
        """Run the watchdog playbook as a user would; returns a WatchdogRun (or a Popen when background).

        ``env`` adds to the controller's environment (e.g. libfaketime for a controller whose clock is off)."""
        self.runs += 1
        journal = os.path.join(self.workdir, "journal-%03d" % self.runs)
        variables = {"kvmha_watch_s": watch_s}
        if policy is not None:
            variables["kvmha_policy"] = policy
        variables.update(extra_vars or {})
        cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", inventory or self.lab.inventory_path(), PLAYBOOK,
               "-e", json.dumps(variables)]
        env = dict(os.environ, KVMHA_JOURNAL_DIR=journal, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), **(env or {}))
        started = time.time()
        # Its own process group, so that a scenario can kill the whole run (the controller dying) at once.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                                start_new_session=True)
        if background:
            proc.kvmha = (journal, started)
            return proc
        return self.finish(proc, timeout, journal, started)

    @staticmethod
    def watching(*procs) -> bool:
        """True once every one of these runs (Popen of ansible-playbook or ansible-runner) is in its watch window:
        its own kvm_heartbeat module is running - looked for among the run's descendants, never machine-wide."""
        return all(any(_runs_module(pid, "kvm_heartbeat") for pid in descendants(proc.pid)) for proc in procs)

    def during_watch(self, inject, watch_s=40, **kwargs):
        """Start a watchdog run, inject the fault while it watches, return the finished run."""
        proc = self.watchdog(watch_s=watch_s, background=True, **kwargs)
        wait_for(lambda: self.watching(proc), 60, interval=0.1, what="the watchdog to start watching")
        time.sleep(0.5)
        inject()
        return self.finish(proc)

    @staticmethod
    def finish(proc, timeout=300, journal=None, started=None):
        journal, started = (journal, started) if journal else proc.kvmha
        output = proc.communicate(timeout=timeout)[0]
        return WatchdogRun(proc.returncode, output, journal, started, time.time())

    # ------------------------------------------------------------------------------------------ invariants

    def assert_invariants(self, runs, verdicts=None, fenced=(), starts_before=None, down_hosts=(), migrated=()):
        """The invariants of every scenario (see the module docstring).

        ``down_hosts`` are hosts left dead on purpose whose VMs must NOT have been restarted (UNKNOWN, a reboot):
        their guests may run zero times, never twice. ``migrated`` guests were live-migrated once by the scenario
        (an incoming migration starts a qemu on the target, which its log counts as a start).
        """
        runs = runs if isinstance(runs, list) else [runs]
        starts_before = self.starts_at_reset if starts_before is None else starts_before
        may_be_down = {g for g, home in self.guest_homes.items() if home in down_hosts}
        try:
            wait_for(lambda: self._each_guest_once(may_be_down), 30, what="every guest to run exactly once")
        except AssertionError:
            raise AssertionError("not every guest runs exactly once: %s" % self.qemu_copies()) from None
        fenced_now = set().union(*(run.fenced() for run in runs))
        assert fenced_now == set(fenced), "fenced %s, expected %s" % (sorted(fenced_now), sorted(fenced))
        # The BMCs' own logs, not the journal: no host was powered off over IPMI that was not to be fenced.
        offs = self.bmc_power_offs()
        commanded = {h for h, n in offs.items() if n > self.power_offs_at_reset.get(h, 0)}
        assert commanded <= set(fenced), "the BMCs of %s powered off, expected only %s" % (sorted(commanded), sorted(fenced))
        missing = {f for f in self.store_snapshot if not os.path.exists(os.path.join(config.STORE, f))}
        assert not missing, "lost from the store: %s" % sorted(missing)
        started = dict((guest, 1) for guest in migrated)
        for run in runs:
            for vm, failed_host in run.started_vms().items():
                verdict = run.incidents[failed_host]["verdict"]
                assert failed_host in fenced_now or verdict in ("DOWN", "DOWN_SELF_FENCED", "DOWN_CONFIRMED"), \
                    "%s of %s was started although %s was neither fenced nor down" % (vm, failed_host, failed_host)
                started[vm] = started.get(vm, 0) + 1
        if starts_before is not None:  # every scenario: the qemu logs of every host count the starts
            after = self.qemu_starts()
            for guest in self.guest_homes:
                extra = after.get(guest, 0) - starts_before.get(guest, 0)
                assert extra <= started.get(guest, 0), \
                    "%s was started %d times, the watchdog started it %d times" % (guest, extra, started.get(guest, 0))
        for host, (verdict, rule) in (verdicts or {}).items():
            records = [run.incidents[host] for run in reversed(runs) if host in run.incidents]
            assert records, "no incident record for %s\n%s" % (host, runs[-1].explain())
            record = records[0]  # the latest run that investigated the host
            assert (record["verdict"], record["rule"]) == (verdict, rule), \
                "%s: %s/%s, expected %s/%s: %s" % (host, record["verdict"], record["rule"], verdict, rule, record["reasons"])
            assert record["reasons"] and record["evidence"]["host"] == host

    def _each_guest_once(self, may_be_down=frozenset()):
        copies = self.qemu_copies()
        for guest, hosts in copies.items():
            assert len(hosts) == 1, "%s runs on %s" % (guest, hosts)
        return copies if set(copies) | set(may_be_down) == set(self.guest_homes) else None
