# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The store job: the record and the HA domains' XML, written on the shared store."""

from __future__ import annotations

import os
import time

from . import _heartbeat as hb
from ._errors import StoreError

# Test hook: while the file named by this variable exists, every store operation of the writer blocks, exactly
# where a hung NFS/FUSE mount would block it. Used by the process-level tests (tests/writer/).
HANG_HOOK_ENV = "KVMHA_HEARTBEAT_TEST_HANG_FILE"


def mounted_under(path: str, mountinfo: str) -> bool:
    """True when ``path`` is, or lies below, a mount point other than ``/`` (per /proc/self/mountinfo)."""
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = fields[4].encode("utf-8").decode("unicode_escape") if "\\" in fields[4] else fields[4]
        if point != "/" and (path == point or path.startswith(point.rstrip("/") + "/")):
            return True
    return False


def _hang_hook():
    path = os.environ.get(HANG_HOOK_ENV)
    while path and os.path.exists(path):
        time.sleep(0.05)


def store_write(conf: dict, record_bytes: bytes, xml_items: dict) -> dict:
    """The store job: the record first, then the HA domains' XML. Returns {"xml_ok": [...], "xml_errors": {...}}."""
    _hang_hook()
    store = conf["store"]
    if conf["require_mount"]:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            mountinfo = handle.read()
        if not mounted_under(os.path.realpath(store), mountinfo):
            raise StoreError("%s is not on a mounted file system (require_mount): is the shared store mounted?" % store)
    path = hb.record_path(store, conf["host"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    hb.write_atomic(path, record_bytes)
    result = {"xml_ok": [], "xml_errors": {}}
    if xml_items:
        vms_dir = hb.store_dir(store, "vms")
        os.makedirs(vms_dir, exist_ok=True)
        for uuid, data in xml_items.items():
            _hang_hook()
            try:
                hb.write_atomic(os.path.join(vms_dir, uuid + ".xml"), data, mode=conf["xml_mode"])
                result["xml_ok"].append(uuid)
            except OSError as err:
                result["xml_errors"][uuid] = err.strerror or str(err)
    return result
