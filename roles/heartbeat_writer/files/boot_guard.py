# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvmha boot guard: keeps the VMs that were moved off a fenced host from starting on it again when it boots.

When the watchdog fences a host, it restarts the host's HA VMs elsewhere and leaves a *fenced mark* on the store
(``<store>/kvmha/fenced/<host>/``, ``data.vms`` = the moved VMs' UUIDs). When the host is powered on again, libvirtd
starts every domain whose autostart is on at once, long before the watchdog's next run reconciles the host. This
guard runs once per boot, before libvirtd (systemd unit ``kvmha-boot-guard.service``), reads the mark under a
deadline and removes the autostart links (``<libvirt config dir>/autostart/<name>.xml``) of:

- the moved VMs, when an active mark lists them (mode ``fenced``);
- every HA domain, when the store cannot tell within the deadline (down, hung, not mounted) or the mark cannot be
  read (mode ``unknown``): a VM that does not start can be started by hand, a VM that runs twice destroys its disks;
- nothing when there is no active mark (mode ``clear``).

It also removes the same UUIDs from libvirt-guests' list of guests to resume at boot. It never touches a domain
definition or a disk, only autostart links. Packed next to the writer in kvmha-heartbeat.pyz as
``kvmha/boot_guard.py``; the mark format is the collection's own ``_marks.py``/``_storefile.py``, packed unchanged.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import sys
import time

from . import _heartbeat as hb
from . import _marks
from . import writer
from ._deadline import Deadline, call_with_deadline
from ._errors import DeadlineExceeded, ErrorKind, KvmhaError, StoreError

LOG = logging.getLogger("kvmha-boot-guard")

CLEAR = "clear"
FENCED = "fenced"
UNKNOWN = "unknown"
DEFAULT_STORE_TIMEOUT = 30.0
MAX_STORE_TIMEOUT = 600.0
MOUNT_POLL_S = 0.25
MAX_GUESTS_LIST_BYTES = 2**20
LIBVIRT_CONFIG_DIR = "/etc/libvirt/qemu"
GUESTS_LIST = "/var/lib/libvirt/libvirt-guests"
REENABLE_HINT = "virsh autostart"


class GuardError(KvmhaError):
    """The guard could not do its local work (list the libvirt definitions, remove a link)."""

    kind = ErrorKind.BOOT_GUARD


class Verdict:
    """What the store says about this host: ``mode`` (clear, fenced, unknown), why, and the moved VMs' UUIDs."""

    __slots__ = ("mode", "reason", "vms", "mark")

    def __init__(self, mode: str, reason: str, vms=frozenset(), mark=None):
        self.mode = mode
        self.reason = reason
        self.vms = frozenset(vms)
        self.mark = mark

    def as_dict(self) -> dict:
        return {"mode": self.mode, "reason": self.reason, "vms": sorted(self.vms), "mark": self.mark}


class Definition:
    """One persistent domain definition ``<config dir>/<stem>.xml``; ``error`` says why it could not be read."""

    __slots__ = ("stem", "path", "name", "uuid", "ha", "error")

    def __init__(self, stem, path, name="", uuid="", ha=False, error=""):
        self.stem = stem
        self.path = path
        self.name = name
        self.uuid = uuid
        self.ha = ha
        self.error = error

    def label(self) -> str:
        if self.error:
            return "%s (definition unreadable)" % self.stem
        return "%s (%s)" % (self.name or self.stem, self.uuid)


# --------------------------------------------------------------------------------------------------- pure parts


def printable(value, limit: int = 200) -> str:
    """``value`` as one log-safe line: control characters replaced, at most ``limit`` characters."""
    return "".join(c if c.isprintable() else "?" for c in str(value)[:limit])


def verdict_from_mark(mark) -> Verdict:
    """The verdict for the current generation of this host's fenced mark (a ``_storefile.Document`` or None).

    A mark is active while its current generation is not released; fenced marks never expire, so its ``ttl`` is
    not looked at. An active mark that does not list the moved VMs as UUIDs cannot say which VMs must stay down:
    that is ``unknown``, the cautious reading.
    """
    if mark is None:
        return Verdict(CLEAR, "no fenced mark for this host")
    if mark.released:
        return Verdict(CLEAR, "the fenced mark (generation %d) is released: the host was reconciled" % mark.generation)
    reason = printable(mark.data.get("reason") or "no reason given")
    described = "fenced mark generation %d by %s (%s)" % (mark.generation, printable(mark.owner), reason)
    vms = mark.data.get("vms")
    if not isinstance(vms, list):
        return Verdict(UNKNOWN, "active %s does not list the moved VMs (data.vms is %s)" % (described, type(vms).__name__),
                       mark=mark.as_dict())
    uuids = [writer.uuid_or_none(vm) for vm in vms]
    bad = [vm for vm, canonical in zip(vms, uuids) if canonical is None]
    if bad:
        return Verdict(UNKNOWN, "active %s lists entries that are not UUIDs: %s" % (described, json.dumps(bad[:5])[:200]),
                       mark=mark.as_dict())
    return Verdict(FENCED, "active %s: %d VM(s) were restarted elsewhere" % (described, len(uuids)), uuids, mark.as_dict())


def parse_definition(raw: bytes, ha_domains=()) -> tuple:
    """``(name, uuid, ha)`` of a persistent domain definition as libvirt saves it; raises ``ValueError``.

    Defensive, the writer's ``domain_root`` (module_utils/_domainxml.py): a size limit, no DTD or entity declarations,
    the root must be ``<domain>``; then a valid ``<uuid>``. HA means what it means to the writer: the HA metadata
    marker, or the name or UUID listed in ``ha_domains``.
    """
    root = writer.domain_root(raw, writer.MAX_DEFINITION_BYTES)  # its DomainXMLError is a ValueError
    name = (root.findtext("name") or "").strip()
    raw_uuid = (root.findtext("uuid") or "").strip()
    uuid = writer.uuid_or_none(raw_uuid)
    if not name or uuid is None:
        raise ValueError("no domain name or no valid <uuid>")
    listed = writer.listed_entry(ha_domains, name, raw_uuid) or writer.listed_entry(ha_domains, name, uuid)
    return name, uuid, writer.ha_marker(root) is not None or listed is not None


def plan_removals(verdict: Verdict, definitions, links: dict) -> list:
    """The autostart links to remove: ``[(definition, link path, why)]``, sorted by link.

    libvirt autostarts the definition ``<stem>.xml`` when ``autostart/<stem>.xml`` points to it, so links are matched
    to definitions by stem; a link without a definition starts nothing and is left alone. With a fenced or unknown
    verdict, a link whose definition cannot be read is removed too: nothing proves it is not one of the moved VMs.
    """
    if verdict.mode == CLEAR:
        return []
    by_stem = {definition.stem: definition for definition in definitions}
    removals = []
    for stem in sorted(links):
        definition = by_stem.get(stem)
        if definition is None:
            continue
        if definition.error:
            why = "its definition cannot be read (%s), so it may be one of the VMs moved away" % definition.error
        elif verdict.mode == FENCED and definition.uuid in verdict.vms:
            why = "it was restarted on another host while this one was fenced"
        elif verdict.mode == UNKNOWN and definition.ha:
            why = "it is an HA domain and the store cannot say whether it runs elsewhere (%s)" % verdict.reason
        else:
            continue
        removals.append((definition, links[stem], why))
    return removals


def guests_to_drop(verdict: Verdict, definitions) -> frozenset:
    """UUIDs that libvirt-guests must not resume: the moved VMs (fenced) or every HA domain (unknown)."""
    if verdict.mode == FENCED:
        return verdict.vms
    if verdict.mode == UNKNOWN:
        return frozenset(d.uuid for d in definitions if d.ha and not d.error)
    return frozenset()


def filter_guests_list(text: str, drop) -> tuple:
    """libvirt-guests' list (lines ``<uri> <uuid> <uuid> ...``) without the UUIDs in ``drop``.

    Returns ``(new text, dropped UUIDs)``; a line left without guests is removed, every other line kept as it was.
    """
    lines, dropped = [], []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            lines.append(line)
            continue
        kept = [guest for guest in fields[1:] if writer.uuid_or_none(guest) not in drop]
        dropped.extend(guest for guest in fields[1:] if writer.uuid_or_none(guest) in drop)
        if len(kept) == len(fields) - 1:
            lines.append(line)
        elif kept:
            lines.append(" ".join([fields[0]] + kept))
    return ("\n".join(lines) + "\n" if lines else ""), dropped


# --------------------------------------------------------------------------------------------------- the store


def read_verdict(conf: dict, deadline: Deadline) -> Verdict:
    """Ask the store about this host within ``deadline``; every failure to get an answer is ``unknown``.

    All store access (including resolving the store path, which stats it) runs on a worker thread: a hung mount
    blocks that thread, never the guard.
    """
    store, host = conf["store"], conf["host"]
    progress = {"step": "starting"}

    def job():
        writer._hang_hook()  # pylint: disable=protected-access
        if conf["require_mount"]:
            progress["step"] = "waiting for %s to be mounted" % store
            while not _store_mounted(store):
                if deadline.remaining() <= MOUNT_POLL_S:
                    raise StoreError("%s is not on a mounted file system (require_mount): the shared store is not mounted" % store)
                time.sleep(MOUNT_POLL_S)
        progress["step"] = "reading the fenced mark"
        top = hb.store_dir(store)
        if not os.path.isdir(top):
            raise StoreError("%s does not exist: this is not (yet) the kvmha store" % top)
        return _marks.documents(store, _marks.FENCED).read(host)

    try:
        mark = call_with_deadline(job, deadline.remaining(), "the store")
    except DeadlineExceeded:
        return Verdict(UNKNOWN, "the store did not answer within %.1f s (%s)" % (deadline.seconds, progress["step"]))
    except StoreError as err:  # InvalidDocument included: an unreadable mark may well be an active one
        return Verdict(UNKNOWN, "the store cannot be read: %s" % err)
    except (OSError, KvmhaError) as err:
        return Verdict(UNKNOWN, "the store cannot be read: %s" % (getattr(err, "strerror", None) or err))
    return verdict_from_mark(mark)


def _store_mounted(store: str) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        mountinfo = handle.read()
    return writer.mounted_under(os.path.realpath(store), mountinfo)


# --------------------------------------------------------------------------------------------------- local files


def read_definitions(config_dir: str, ha_domains=()) -> list:
    """Every ``<config_dir>/*.xml`` (libvirt's persistent definitions), each parsed or with its error."""
    try:
        entries = sorted(os.listdir(config_dir))
    except FileNotFoundError:
        return []  # no persistent domain at all
    except OSError as err:
        raise GuardError("cannot list %s: %s" % (config_dir, err.strerror or err)) from err
    definitions = []
    for entry in entries:
        stem = entry[:-4]
        if not entry.endswith(".xml") or not stem:
            continue
        path = os.path.join(config_dir, entry)
        try:
            raw = _read_file(path, writer.MAX_DEFINITION_BYTES)
        except IsADirectoryError:
            continue
        except OSError as err:
            definitions.append(Definition(stem, path, error=err.strerror or str(err)))
            continue
        try:
            name, uuid, ha = parse_definition(raw, ha_domains)
        except ValueError as err:
            definitions.append(Definition(stem, path, error=str(err)))
            continue
        definitions.append(Definition(stem, path, name, uuid, ha))
    return definitions


def _read_file(path: str, limit: int) -> bytes:
    """A regular file's content, at most ``limit`` + 1 bytes (O_NONBLOCK: a FIFO cannot block the guard)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def autostart_links(config_dir: str) -> dict:
    """``{stem: path}`` of the entries in ``<config_dir>/autostart`` named ``<stem>.xml``."""
    directory = os.path.join(config_dir, "autostart")
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise GuardError("cannot list %s: %s" % (directory, err.strerror or err)) from err
    return {entry[:-4]: os.path.join(directory, entry) for entry in entries if entry.endswith(".xml") and entry[:-4]}


def remove_link(path: str) -> None:
    """Remove one autostart link (a symbolic link, or a file); never a directory, never what it points to."""
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode):
        raise OSError("is a directory")
    os.unlink(path)


def update_guests_list(path: str, drop, dry_run: bool) -> list:
    """Drop ``drop`` from libvirt-guests' resume list; returns the dropped UUIDs. A missing list is no work."""
    if not drop:
        return []
    try:
        raw = _read_file(path, MAX_GUESTS_LIST_BYTES)
    except FileNotFoundError:
        return []
    text, dropped = filter_guests_list(raw.decode("utf-8", "replace"), drop)
    if dropped and not dry_run:
        hb.write_atomic(path, text.encode("utf-8"), mode=stat.S_IMODE(os.stat(path).st_mode))
    return dropped


# --------------------------------------------------------------------------------------------------- the run


def run(args) -> tuple:
    """One guard run: ``(summary, exit status)``. Every failure to learn about the store is the cautious
    ``unknown``; only failures of the local work (listing definitions, removing a link) make the status 1."""
    started = time.monotonic()
    deadline = Deadline(args.store_timeout)
    summary = new_summary(args)
    try:
        conf = writer.load_config(args.config)
    except writer.ConfigError as err:
        conf = None
        verdict = Verdict(UNKNOWN, "the writer's configuration cannot be used: %s" % err)
    else:
        summary.update(host=conf["host"], store=conf["store"])
        LOG.info("checking whether %s was fenced: store %s, deadline %.1f s", conf["host"], conf["store"], args.store_timeout)
        verdict = read_verdict(conf, deadline)
    summary["store_s"] = round(time.monotonic() - started, 3)
    status = apply(verdict, conf["ha_domains"] if conf else [], args, summary)
    summary["elapsed_s"] = round(time.monotonic() - started, 3)
    LOG.info("done in %.2f s: mode %s, %d autostart link(s) %s, %d kept, %d error(s)", summary["elapsed_s"], verdict.mode,
             len(summary["removed"]), "to remove" if args.dry_run else "removed", len(summary["kept"]), len(summary["errors"]))
    return summary, status


def new_summary(args) -> dict:
    return {"host": None, "store": None, "dry_run": args.dry_run, "removed": [], "kept": [], "guests_dropped": [],
            "errors": []}


def apply(verdict: Verdict, ha_domains, args, summary: dict) -> int:
    """Act on ``verdict`` on the local libvirt files; fills ``summary``, returns the exit status."""
    summary.update(verdict.as_dict())
    if verdict.mode == CLEAR:
        LOG.info("%s: autostart left as it is", verdict.reason)
        return 0
    if verdict.mode == FENCED:
        LOG.warning("this host is marked fenced: %s; disabling autostart of those VMs: %s", verdict.reason,
                    ", ".join(sorted(verdict.vms)) or "none")
    else:
        LOG.error("cannot tell whether this host was fenced: %s; disabling autostart of every HA domain (a VM that "
                  "does not start can be started by hand, a VM that runs twice destroys its disks)", verdict.reason)
    status = 0
    try:
        definitions = read_definitions(args.libvirt_config_dir, ha_domains)
        links = autostart_links(args.libvirt_config_dir)
    except GuardError as err:
        LOG.critical("%s", err)
        summary["errors"].append(str(err))
        definitions, links, status = [], {}, 1
    for definition in definitions:
        if definition.error:
            LOG.warning("cannot read the definition %s: %s", definition.path, definition.error)
    removals = plan_removals(verdict, definitions, links)
    for definition, link, why in removals:
        try:
            if not args.dry_run:
                remove_link(link)
        except OSError as err:
            LOG.critical("could not disable autostart of %s: %s: %s", definition.label(), link, err.strerror or err)
            summary["errors"].append("%s: %s" % (link, err.strerror or err))
            status = 1
            continue
        LOG.warning("%s autostart of %s: %s; once it is safe: %s %s", "would disable" if args.dry_run else "disabled",
                    definition.label(), why, REENABLE_HINT, definition.name or definition.stem)
        summary["removed"].append({"name": definition.name or definition.stem, "uuid": definition.uuid, "link": link, "why": why})
    removed_links = {link for _definition, link, _why in removals}
    summary["kept"] = sorted(d.name for d in definitions if d.stem in links and links[d.stem] not in removed_links)
    if verdict.mode == FENCED:
        summary["not_defined_here"] = sorted(verdict.vms - {d.uuid for d in definitions if not d.error})

    try:
        summary["guests_dropped"] = update_guests_list(args.guests_list, guests_to_drop(verdict, definitions), args.dry_run)
    except OSError as err:
        LOG.critical("could not update libvirt-guests' list %s: %s", args.guests_list, err.strerror or err)
        summary["errors"].append("%s: %s" % (args.guests_list, err.strerror or err))
        status = 1
    if summary["guests_dropped"]:
        LOG.warning("%s %s from libvirt-guests' resume list %s", "would remove" if args.dry_run else "removed",
                    ", ".join(summary["guests_dropped"]), args.guests_list)
    return status


def write_result(path: str, summary: dict) -> None:
    try:
        hb.write_atomic(path, (json.dumps(summary, sort_keys=True, indent=1) + "\n").encode("utf-8"))
    except OSError as err:
        LOG.warning("could not write the result to %s: %s", path, err.strerror or err)


def _timeout(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_STORE_TIMEOUT:
        raise argparse.ArgumentTypeError("must be in (0, %d] seconds" % MAX_STORE_TIMEOUT)
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kvmha-boot-guard", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the heartbeat writer's JSON configuration (host, store, HA list)")
    parser.add_argument("--store-timeout", type=_timeout, default=DEFAULT_STORE_TIMEOUT,
                        help="seconds to wait for the store (mount and read) in all (default %(default)s)")
    parser.add_argument("--libvirt-config-dir", default=LIBVIRT_CONFIG_DIR, help="libvirt's persistent definitions")
    parser.add_argument("--guests-list", default=GUESTS_LIST, help="libvirt-guests' list of guests to resume")
    parser.add_argument("--result", help="also write the summary (JSON) to this file")
    parser.add_argument("--json", action="store_true", help="print the summary (JSON) on stdout")
    parser.add_argument("--dry-run", action="store_true", help="change nothing, say what would be done")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    writer.setup_logging(args.verbose, LOG)
    try:
        summary, status = run(args)
    except Exception as err:  # pylint: disable=broad-except
        # A bug must not leave autostart on for a host that may be fenced: fall back to the cautious answer.
        LOG.critical("boot guard failed: %s: %s", type(err).__name__, err, exc_info=True)
        summary, status = new_summary(args), 1
        try:
            apply(Verdict(UNKNOWN, "the guard failed (%s)" % type(err).__name__), [], args, summary)
        except Exception as again:  # pylint: disable=broad-except
            LOG.critical("the cautious fallback failed too: %s: %s", type(again).__name__, again)
    if args.result:
        write_result(args.result, summary)
    if args.json:
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    return status


if __name__ == "__main__":  # pragma: no cover - run through the archive (kvmha-heartbeat.pyz boot-guard)
    sys.exit(main())
