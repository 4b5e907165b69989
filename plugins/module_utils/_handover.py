# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# Plain standard-library Python.
"""The watch handover: what one watch of the heartbeats saw last, for the next watch on the same observer.

A watch judges a host stale by how long its ``(boot_id, seq)`` has not changed on the observer's monotonic clock
(``StalenessJudge``); a new watch has no such history and estimates each host's age from its file's mtime, less the
skew allowance. At its end a watch writes, per host, the identity it saw last and when that identity appeared::

    <store>/kvmha/handover/<cluster>/<observer>.json
    {"version": 1, "cluster": "prod-a", "observer": "<boot id>", "written": 81234.5,
     "hosts": {"h1": ["<boot id of h1>", 4242, 81233.9], ...}}

``written`` and the change times are readings of the observer's monotonic clock, which only means something within
one boot of one kernel: ``<observer>`` is the kernel's boot id (plus the time namespace, which can shift that clock),
so two controllers, an observer host reached by ``delegate_to`` and a rebooted controller each have their own file,
and a file is only ever read back by the boot that wrote it. The store is the place because it is what every run of
a cluster's watchdog sees - a job of AWX starts in a fresh container, but on an execution node whose kernel (boot
id, monotonic clock) the previous job shared.

A handover that cannot be read or trusted - unreadable, hostile, too large, nested too deep, written by another
boot or in the future of this clock - is ignored as a whole, with the reason: the next watch then estimates from
the mtimes as if there were none. ``StalenessJudge.seed`` bounds what a well-formed one can do.
"""

from __future__ import annotations

import json
import math
import os
import stat

from ._errors import InvalidStoreInput
from ._heartbeat import MAX_SAFE_INT, json_too_deep, store_dir, write_atomic
from ._storefile import validate_name

FORMAT_VERSION = 1
MAX_BYTES = 8 * 1024 * 1024  # about 300 bytes a host at the longest names: 25 000 hosts
PRUNE_AFTER_S = 86400.0  # another observer's handover this old belongs to a boot that is over, or is worth nothing
BOOT_ID = "/proc/sys/kernel/random/boot_id"
TIME_NAMESPACE = "/proc/self/ns/time"


def observer_id(boot_id_path: str = BOOT_ID, time_ns_path: str = TIME_NAMESPACE):
    """The identity of this observer's monotonic clock: the kernel's boot id and the process's time namespace
    (which can offset that clock). None where there is no boot id (not Linux): no handover then."""
    try:
        with open(boot_id_path, encoding="ascii") as f:
            boot = validate_name(f.read().strip(), "boot id")
    except (OSError, ValueError, InvalidStoreInput):
        return None
    try:
        namespace = os.readlink(time_ns_path)  # "time:[4026531834]"
    except OSError:
        return boot
    return "%s-t%s" % (boot, "".join(c for c in namespace if c.isdigit()))


def handover_path(store: str, cluster: str, observer: str) -> str:
    """Raises ``InvalidStoreInput`` for a cluster name that cannot be a file name."""
    return os.path.join(store_dir(store, "handover", validate_name(cluster, "cluster name")), observer + ".json")


def encode(cluster: str, observer: str, written: float, seen: dict) -> bytes:
    """``seen`` as ``StalenessJudge.export`` gives it, less what changed last ``PRUNE_AFTER_S`` ago or more (a host
    long stale is stale by its mtime too, and one no longer watched is dropped one day on)."""
    hosts = {host: [identity[0], identity[1], round(changed, 6)] for host, (identity, changed) in seen.items()
             if written - changed < PRUNE_AFTER_S}
    doc = {"version": FORMAT_VERSION, "cluster": cluster, "observer": observer, "written": round(written, 6), "hosts": hosts}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode(data: bytes, cluster: str, observer: str, now: float) -> dict:
    """The ``seen`` of a handover for ``StalenessJudge.seed``; raises ``ValueError`` saying why it is not usable."""
    if json_too_deep(data, 4):
        raise ValueError("nested deeper than a handover")
    doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError("not a version %d handover" % FORMAT_VERSION)
    if doc.get("cluster") != cluster or doc.get("observer") != observer:
        raise ValueError("written for another cluster or observer")
    written, hosts = doc.get("written"), doc.get("hosts")
    if not _clock_reading(written) or written > now:
        raise ValueError("not written earlier on this observer's clock")
    if not isinstance(hosts, dict):
        raise ValueError("no hosts")
    # The names need no check: a seed is only looked up by the name of a host being judged, never used as a path.
    return {host: _entry(host, entry, written) for host, entry in hosts.items()}


def _clock_reading(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _entry(host: str, entry, written: float) -> tuple:
    if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) and 0 < len(entry[0]) <= 64
            and isinstance(entry[1], int) and not isinstance(entry[1], bool) and 0 <= entry[1] <= MAX_SAFE_INT
            and _clock_reading(entry[2]) and entry[2] <= written):
        raise ValueError("host %s: not [boot id, seq, change time before the handover]" % host)
    return (entry[0], entry[1]), float(entry[2])


def load(path: str, cluster: str, observer: str, now: float) -> tuple:
    """``(seen, problem)``: the handover at ``path``, or ``({}, why not)``; no file is no problem."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return {}, ""
    except OSError as err:
        return {}, "cannot open %s: %s" % (path, err.strerror or err)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            return {}, "%s is not a regular file of at most %d bytes" % (path, MAX_BYTES)
        data = os.read(fd, MAX_BYTES + 1)
    except OSError as err:
        return {}, "cannot read %s: %s" % (path, err.strerror or err)
    finally:
        os.close(fd)
    try:
        if len(data) > MAX_BYTES:
            raise ValueError("grew beyond %d bytes while read" % MAX_BYTES)
        return decode(data, cluster, observer, now), ""
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {}, "%s is ignored: %s" % (path, err)


def save(path: str, data: bytes, store_now: float) -> None:
    """Replace the handover atomically, and remove other observers' handovers older than ``PRUNE_AFTER_S``."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    write_atomic(path, data)
    for name in os.listdir(directory):
        other = os.path.join(directory, name)
        try:
            info = os.lstat(other)
            if name.endswith(".json") and stat.S_ISREG(info.st_mode) and store_now - info.st_mtime > PRUNE_AFTER_S:
                os.unlink(other)
        except OSError:
            continue  # gone already, or not ours to remove: the next save tries again
