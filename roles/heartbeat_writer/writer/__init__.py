# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvmha heartbeat writer: the daemon that ``kvmha.cluster.heartbeat_writer`` installs on every hypervisor.

One file, ``kvmha/writer.py`` in the archive the role installs (kvmha-heartbeat.pyz), assembled from the parts in
``roles/heartbeat_writer/writer/``, next to the collection's own ``_errors.py``, ``_deadline.py`` and ``_heartbeat.py``
(packed unchanged from ``plugins/module_utils``), so the record format has one definition.
Standard library only; the libvirt Python binding is used when it is importable, else ``virsh``.

Every ``interval`` it writes ``<store>/kvmha/hosts/<host>.json`` atomically and keeps the XML of each running
HA domain at ``<store>/kvmha/vms/<uuid>.xml``. Nothing slow runs on the main loop: store writes and libvirt
reads run on their own worker threads with deadlines, a job still blocked is never stacked up again, and every
failure is logged and retried at the next beat. See docs/WRITER.md for the behaviour on each failure.
"""

# The sources of the writer, one file per concern. The role ships them as ONE file, files/writer.py, which
# scripts/build_writer.py assembles from these parts in this order (a part may use only what earlier parts define
# at import time); a unit test keeps files/writer.py equal to a fresh assembly.
# The collection's module_utils that the file holds too, ahead of the parts (they import from it as from a part):
# domain XML is read one way by the modules and the writer.
MODULE_UTILS = ("_domainxml",)
PARTS = ("_workers", "_config", "_domains", "_capacity", "_sources", "_store", "_fencing", "_runtime", "_daemon", "_main")
