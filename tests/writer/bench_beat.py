# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cost of one heartbeat: wall time of Writer.beat() in-process, and CPU per beat of a real writer process.

    .venv/bin/python tests/writer/bench_beat.py [domains]

Runs against a temporary store and libvirt's test:/// driver with N running domains (half of them HA), for the
binding, virsh and no-libvirt methods. Numbers go to docs/WRITER.md.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from conftest import NODE_XML, PYTHON, Env  # noqa: E402  pylint: disable=import-error,wrong-import-position

DOMAIN = """  <domain type='test'>
    <name>d{i}</name><uuid>{uuid}</uuid>{marker}
    <memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os>
    <devices><disk type='file' device='disk'><source file='/store/d{i}.img'/><target dev='vda' bus='virtio'/></disk></devices>
  </domain>
"""
MARKER = '<metadata><kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority="50" group=""/></metadata>'

IN_PROCESS = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from kvmha import writer
conf = writer.load_config(sys.argv[2])
w = writer.Writer(conf)
samples = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    w.beat()
    samples.append(time.perf_counter() - start)
    time.sleep(conf["interval"])
print(json.dumps(samples))
"""


def node_xml(domains: int) -> str:
    body = "".join(DOMAIN.format(i=i, uuid="%08d-0000-4000-8000-000000000000" % i, marker=MARKER if i % 2 == 0 else "")
                   for i in range(domains))
    return NODE_XML.replace("</node>", body + "</node>")


def main():
    domains = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for method in ("binding", "virsh", "none"):
        with tempfile.TemporaryDirectory() as tmp:
            env = Env(pathlib.Path(tmp))
            env.node_xml.write_text(node_xml(domains))
            config = env.config(interval=0.1, libvirt={"method": method, "virsh": "virsh", "timeout": 5})
            done = subprocess.run([PYTHON, "-I", "-c", IN_PROCESS, str(env.pyz), str(config), "60"],
                                  capture_output=True, text=True, check=True)
            beats = json.loads(done.stdout.strip().splitlines()[-1])[10:]
            # CPU of a real process over 10 s at interval 0.1 s
            proc = env.start(env.config(interval=0.1, libvirt={"method": method, "virsh": "virsh", "timeout": 5}))
            time.sleep(1.0)
            first = env.state_seq()
            ticks0 = _cpu_ticks(proc.pid)
            time.sleep(10.0)
            ticks1, last = _cpu_ticks(proc.pid), env.state_seq()
            env.cleanup()
            cpu_ms = (ticks1 - ticks0) * 1000.0 / os.sysconf("SC_CLK_TCK") / max(1, last - first)
            print("%-8s %3d domains: beat median %.2f ms, p95 %.2f ms, max %.2f ms; CPU %.2f ms per beat (%d beats)" % (
                method, domains, statistics.median(beats) * 1e3, sorted(beats)[int(len(beats) * 0.95)] * 1e3, max(beats) * 1e3,
                cpu_ms, last - first))


def _cpu_ticks(pid: int) -> int:
    """utime + stime + children's, in clock ticks (children: virsh)."""
    fields = pathlib.Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15])


if __name__ == "__main__":
    main()
