# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private, isolated libvirtd instances for vm_evacuate's integration tests (a real libvirtd + QEMU, no lab).

    python libvirtd_fixture.py start    ROOT NAME   # prints {"name", "uri", "pid"} as JSON
    python libvirtd_fixture.py stop     ROOT NAME   # libvirtd and its guests die with their PID namespace
    python libvirtd_fixture.py freeze   ROOT NAME   # SIGSTOP libvirtd: a hung daemon (connections hang)
    python libvirtd_fixture.py thaw     ROOT NAME
    python libvirtd_fixture.py stop-all ROOT

Each instance runs as PID 1's child of its own PID, mount and network namespaces (``unshare``):
- mount: private bind mounts of ``ROOT/NAME/{run,lib,log,cache,etc}`` over /run, /var/lib/libvirt,
  /var/log/libvirt, /var/cache/libvirt and /etc/libvirt, so the machine's own libvirt state is never touched;
  /etc/libvirt is a copy without networks, with ``cgroup_controllers = [ ]`` and QEMU running as root;
- network: an empty namespace (loopback only), so no bridge, firewall rule or packet can reach the machine
  (with a sysfs of its own, so libvirt does not even see the machine's interfaces);
- PID: killing the namespace's first process (``unshare --kill-child`` passes SIGKILL on) kills libvirtd and
  every QEMU guest in it; nothing outlives ``stop``.
The libvirtd socket is exposed at ``ROOT/NAME/sock/libvirt-sock``; connect with
``qemu+unix:///system?socket=ROOT/NAME/sock/libvirt-sock``. Only processes started here are ever signalled, by
the PIDs recorded at start, after checking that they still are ours.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

LIBVIRTD_CONF = """# Private libvirtd for vm_evacuate's integration tests.
unix_sock_dir = "{sock}"
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

QEMU_CONF = """# Private libvirtd for vm_evacuate's integration tests: no cgroups, no security driver, guests as root.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
cgroup_controllers = [ ]
security_driver = "none"
stdio_handler = "file"
"""

# Runs as PID 1 of the new PID namespace; refuses to run anywhere else (it bind-mounts over /run).
INIT = """set -eu
if [ "$$" != 1 ]; then echo "libvirtd_fixture: init must run as PID 1 of its own namespace" >&2; exit 1; fi
mount --bind "{d}/run" /run
mount --bind "{d}/lib" /var/lib/libvirt
mount --bind "{d}/log" /var/log/libvirt
mount --bind "{d}/cache" /var/cache/libvirt
mount --bind "{d}/etc" /etc/libvirt
mount -t sysfs sysfs /sys
ip link set lo up
libvirtd -f /etc/libvirt/libvirtd.conf > "{d}/log/libvirtd.out" 2>&1 &
wait
"""


def instance_dir(root: str, name: str) -> str:
    if not name.replace("-", "").isalnum():
        raise SystemExit("bad instance name %r" % name)
    return os.path.join(os.path.abspath(root), name)


def socket_path(d: str) -> str:
    return os.path.join(d, "sock", "libvirt-sock")


def uri(d: str) -> str:
    return "qemu+unix:///system?socket=" + socket_path(d)


def read_pid(path: str):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> list:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def children(pid: int) -> list:
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def ours(pid, d: str) -> bool:
    """True if ``pid`` is still the unshare process (or its namespace init) of instance ``d``."""
    return pid is not None and alive(pid) and os.path.join(d, "init.sh") in cmdline(pid)


def prepare(d: str) -> None:
    if os.path.exists(d):
        shutil.rmtree(d)
    for sub in ("run", "lib", "log", "cache", "sock"):
        os.makedirs(os.path.join(d, sub))
    shutil.copytree("/etc/libvirt", os.path.join(d, "etc"), symlinks=True)
    for sub in ("qemu/networks", "storage"):  # no networks, no pools: nothing that reaches outside
        path = os.path.join(d, "etc", sub)
        if os.path.isdir(path):
            shutil.rmtree(path)
    os.makedirs(os.path.join(d, "etc", "qemu", "networks", "autostart"))
    with open(os.path.join(d, "etc", "libvirtd.conf"), "w") as handle:
        handle.write(LIBVIRTD_CONF.format(sock=os.path.join(d, "sock")))
    with open(os.path.join(d, "etc", "qemu.conf"), "w") as handle:
        handle.write(QEMU_CONF)
    with open(os.path.join(d, "init.sh"), "w") as handle:
        handle.write(INIT.format(d=d))


def answers(d: str) -> bool:
    try:
        return subprocess.run(["virsh", "-c", uri(d), "version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=5, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def start(root: str, name: str, keep: bool = False) -> dict:
    d = instance_dir(root, name)
    if ours(read_pid(os.path.join(d, "unshare.pid")), d):
        raise SystemExit("instance %s is already running" % name)
    if keep and os.path.isdir(os.path.join(d, "etc")):
        for sub in ("run", "sock"):
            shutil.rmtree(os.path.join(d, sub), ignore_errors=True)
            os.makedirs(os.path.join(d, sub))
    else:
        prepare(d)
    with open(os.path.join(d, "unshare.log"), "ab") as log:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with  # it outlives this helper on purpose
            ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private",
             "sh", os.path.join(d, "init.sh")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    with open(os.path.join(d, "unshare.pid"), "w") as handle:
        handle.write("%d\n" % proc.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("instance %s exited at start (rc %s); see %s" % (name, proc.returncode, d))
        init = [c for c in children(proc.pid) if ours(c, d)]
        if init and os.path.exists(socket_path(d)) and answers(d):
            with open(os.path.join(d, "init.pid"), "w") as handle:
                handle.write("%d\n" % init[0])
            return {"name": name, "uri": uri(d), "pid": proc.pid}
        time.sleep(0.1)
    stop(root, name)
    raise SystemExit("instance %s did not answer within 30 s; see %s" % (name, d))


def libvirtd_pid(d: str):
    init = read_pid(os.path.join(d, "init.pid"))
    if not ours(init, d):
        return None
    for child in children(init):
        if cmdline(child)[:1] == ["libvirtd"]:
            return child
    return None


def signal_libvirtd(root: str, name: str, signo: int) -> None:
    pid = libvirtd_pid(instance_dir(root, name))
    if pid is None:
        raise SystemExit("instance %s has no libvirtd" % name)
    os.kill(pid, signo)


def stop(root: str, name: str) -> bool:
    d = instance_dir(root, name)
    pid = read_pid(os.path.join(d, "unshare.pid"))
    init = read_pid(os.path.join(d, "init.pid"))
    stopped = False
    if ours(pid, d):
        os.kill(pid, signal.SIGKILL)  # --kill-child: the namespace's init gets SIGKILL, the kernel kills the rest
        stopped = True
    elif ours(init, d):
        os.kill(init, signal.SIGKILL)
        stopped = True
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (ours(pid, d) or ours(init, d)):
        time.sleep(0.05)
    if ours(pid, d) or ours(init, d):
        raise SystemExit("instance %s did not stop" % name)
    return stopped


def stop_all(root: str) -> list:
    root = os.path.abspath(root)
    stopped = []
    if not os.path.isdir(root):
        return stopped
    for name in sorted(os.listdir(root)):
        if os.path.exists(os.path.join(root, name, "init.sh")) and stop(root, name):
            stopped.append(name)
    return stopped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("action", choices=["start", "restart", "stop", "freeze", "thaw", "stop-all"])
    parser.add_argument("root")
    parser.add_argument("name", nargs="?")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, bind mounts)")
    if args.action != "stop-all" and not args.name:
        parser.error("%s needs a NAME" % args.action)
    if args.action == "start":
        out = start(args.root, args.name)
    elif args.action == "restart":
        stop(args.root, args.name)
        out = start(args.root, args.name, keep=True)
    elif args.action == "stop":
        out = {"name": args.name, "stopped": stop(args.root, args.name)}
    elif args.action == "freeze":
        signal_libvirtd(args.root, args.name, signal.SIGSTOP)
        out = {"name": args.name, "frozen": True}
    elif args.action == "thaw":
        signal_libvirtd(args.root, args.name, signal.SIGCONT)
        out = {"name": args.name, "frozen": False}
    else:
        out = {"stopped": stop_all(args.root)}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
