# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Entry point of kvmha-heartbeat.pyz (``__main__.py`` in the archive that build/build_pyz.py makes): the writer,
or with a first argument ``boot-guard`` the boot guard.

Run as ``python3 -I -B <install_dir>/kvmha-heartbeat.pyz --config <file>`` by kvmha-heartbeat.service and
``python3 -I -B <install_dir>/kvmha-heartbeat.pyz boot-guard --config <writer config> ...`` by
kvmha-boot-guard.service (``-I``: no environment, no user site; the archive is the first entry of sys.path).

Python reads a module from the archive only when it is imported, by path: a deploy that replaces the archive under
a running writer would hand a late import the new archive's contents. So nothing of ``kvmha`` is imported later:
writer.py and boot_guard.py import every module of the package they use at the top, as they are loaded here, at the
start. A reload re-executes the writer (its command line again: this archive's path), which reads the new archive.

The writer keeps the sha256 of the archive in its runtime state, for a deploy to reload a writer that runs other code
than the installed archive (a deploy that died between the copy and the reload). It is read here, before anything of
``kvmha`` is imported: an archive replaced meanwhile leaves the digest older than the code, never newer, so the
next deploy reloads once more rather than never.
"""

import hashlib
import importlib
import sys


def archive_digest() -> str:
    with open(sys.argv[0], "rb") as archive:
        return hashlib.sha256(archive.read()).hexdigest()


if len(sys.argv) > 1 and sys.argv[1] == "boot-guard":
    sys.exit(importlib.import_module("kvmha.boot_guard").main(sys.argv[2:]))
DIGEST = archive_digest()  # before the import below
sys.exit(importlib.import_module("kvmha.writer").main(archive_digest=DIGEST))
