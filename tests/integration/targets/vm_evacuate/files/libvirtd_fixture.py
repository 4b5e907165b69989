# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private, isolated libvirtd instances for vm_evacuate's integration tests (a real libvirtd + QEMU, no lab).

    python libvirtd_fixture.py start    ROOT NAME   # prints {"name", "uri", "pid"} as JSON
    python libvirtd_fixture.py start    ROOT NAME --tls         # also listens for TLS: adds {"tls": {...}}
    python libvirtd_fixture.py start    ROOT NAME --group +GID  # rw socket for group GID (0770), ro for all
    python libvirtd_fixture.py start    ROOT NAME --polkit RULES  # rw socket behind polkit, sshd: adds {"ssh": {...}}
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
``qemu+unix:///system?socket=ROOT/NAME/sock/libvirt-sock``.
With ``--tls`` the instance also listens for TLS on 127.0.0.1:16514 of its own network namespace (only a process
that enters it, ``nsenter --net=NETNS``, can connect), with a CA, server and client certificates made for this
instance under ``ROOT/NAME/pki`` and ``tls_no_verify_certificate = 0``: ``pki`` is a client ``pkipath``
(``qemu+tls://localhost/system?pkipath=...``), ``rogue_pki`` one whose client certificate comes from another CA
(the server must refuse it), ``stranger_pki`` one that trusts only that other CA (it must refuse the server).
With ``--group`` the read-write socket belongs to that group (mode 0770, no authentication) and the read-only one
(``libvirt-sock-ro``) is open to all: a non-root process in the group may manage the daemon, one outside may
only read (ROOT and the instance's directory become traversable, mode 0711).
With ``--polkit RULES`` the read-write socket is authenticated by polkit (``auth_unix_rw = "polkit"``) and the
namespace gets what a host needs for docs/OPERATIONS.md's "SSH as a non-root user": its own D-Bus system bus
(``dbus-daemon`` on /run/dbus/system_bus_socket, a permissive policy: only this namespace's processes reach it),
``polkitd`` with the rule file RULES as the only file of /etc/polkit-1/rules.d, the users ``kvmha`` (uid 4243) and
``intruder`` (uid 4244, no rule) and ``controller`` (uid 4245, the controller side's user) in bind-mounted copies
of /etc/passwd and /etc/group, the sockets also at /run/libvirt (where ``virt-ssh-helper`` looks), and an sshd on
127.0.0.1:22 of the namespace (public key only, a host key and a client key made for this run) that lets kvmha
and intruder log in. ``ssh`` in the output gives the keys, a ``known_hosts`` file with the host key, and the
controller user's home (its ``~/.ssh`` holds the same).
Only processes started here are ever signalled, by the PIDs recorded at start, after checking that they still
are ours.
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

# Appended with --tls: certificates are verified (the default, written out because it is what is tested).
LIBVIRTD_TLS_CONF = """listen_tls = 1
listen_tcp = 0
listen_addr = "127.0.0.1"
auth_tls = "none"
tls_no_verify_certificate = 0
ca_file = "{pki}/server/cacert.pem"
cert_file = "{pki}/server/servercert.pem"
key_file = "{pki}/server/serverkey.pem"
"""

TLS_PORT = 16514
# What libvirt's certificate sanity checks ask of a CA, a server and a client certificate.
CA_EXT = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
LEAF_EXT = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
SERVER_EXT = LEAF_EXT + "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
CLIENT_EXT = LEAF_EXT + "extendedKeyUsage=clientAuth\n"

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
{services}libvirtd {listen}-f /etc/libvirt/libvirtd.conf > "{d}/log/libvirtd.out" 2>&1 &
wait
"""


# With --polkit: the bus, polkitd and sshd start before libvirtd (its first polkit check needs them).
POLKIT_SERVICES = """mkdir -p /run/libvirt /run/dbus /run/sshd
mount --bind "{d}/sock" /run/libvirt
mount --bind "{d}/polkit/rules.d" /etc/polkit-1/rules.d
mount --bind "{d}/polkit/passwd" /etc/passwd
mount --bind "{d}/polkit/group" /etc/group
dbus-daemon --config-file="{d}/polkit/dbus.conf" --nofork --nopidfile > "{d}/log/dbus.out" 2>&1 &
while [ ! -S /run/dbus/system_bus_socket ]; do sleep 0.05; done
/usr/lib/polkit-1/polkitd --no-debug > "{d}/log/polkitd.out" 2>&1 &
/usr/sbin/sshd -D -e -f "{d}/ssh/sshd_config" > "{d}/log/sshd.out" 2>&1 &
"""

DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- The private system bus of one libvirtd_fixture instance: only its namespace's processes can reach it. -->
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"""

SSHD_CONF = """# The private sshd of one libvirtd_fixture instance (127.0.0.1 of its own network namespace).
ListenAddress 127.0.0.1:22
HostKey {d}/ssh/ssh_host_ed25519_key
PidFile none
UsePAM no
AuthenticationMethods publickey
PermitRootLogin no
AllowUsers kvmha intruder
LogLevel VERBOSE
"""

# name: uid (= gid). kvmha is the rule's user, intruder has no rule, controller runs the modules' ssh client.
POLKIT_USERS = {"kvmha": 4243, "intruder": 4244, "controller": 4245}


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


def openssl(*args: str) -> None:
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_ca(path: str, cn: str) -> None:
    """A self-signed CA (P-256 key: fast to make) at ``path``/cacert.pem and cakey.pem, valid for one day."""
    os.makedirs(path)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=" + cn, "-keyout", os.path.join(path, "cakey.pem"), "-out", os.path.join(path, "cacert.pem"),
            *[arg for ext in CA_EXT for arg in ("-addext", ext)])


def make_leaf(ca: str, path: str, role: str, cn: str, ext: str) -> None:
    """``path``/{role}cert.pem and {role}key.pem, signed by the CA at ``ca``, valid for one day."""
    os.makedirs(path, exist_ok=True)
    key, csr, cert = (os.path.join(path, role + suffix) for suffix in ("key.pem", ".csr", "cert.pem"))
    extfile = os.path.join(path, role + ".ext")
    with open(extfile, "w") as handle:
        handle.write(ext)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
            "/O=kvmha test/CN=" + cn, "-keyout", key, "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", os.path.join(ca, "cacert.pem"), "-CAkey", os.path.join(ca, "cakey.pem"),
            "-CAcreateserial", "-days", "1", "-extfile", extfile, "-out", cert)
    os.remove(csr)


def make_pki(d: str) -> None:
    """CA, server and client certificates for this run only, and two clients of another CA."""
    pki = os.path.join(d, "pki")
    make_ca(os.path.join(pki, "ca"), "kvmha test CA")
    make_ca(os.path.join(pki, "rogue-ca"), "kvmha rogue CA")
    make_leaf(os.path.join(pki, "ca"), os.path.join(pki, "server"), "server", "localhost", SERVER_EXT)
    make_leaf(os.path.join(pki, "ca"), os.path.join(pki, "client"), "client", "controller", CLIENT_EXT)
    make_leaf(os.path.join(pki, "rogue-ca"), os.path.join(pki, "rogue"), "client", "intruder", CLIENT_EXT)
    shutil.copytree(os.path.join(pki, "rogue"), os.path.join(pki, "stranger"))
    for holder in ("server", "client"):
        shutil.copy(os.path.join(pki, "ca", "cacert.pem"), os.path.join(pki, holder, "cacert.pem"))
    # rogue trusts both CAs (libvirt's client refuses to present a certificate it cannot verify itself), so only
    # the server can refuse it; stranger trusts only the other CA, so it must refuse the server.
    with open(os.path.join(pki, "rogue", "cacert.pem"), "w") as handle:
        for ca in ("ca", "rogue-ca"):
            with open(os.path.join(pki, ca, "cacert.pem")) as source:
                handle.write(source.read())
    shutil.copy(os.path.join(pki, "rogue-ca", "cacert.pem"), os.path.join(pki, "stranger", "cacert.pem"))


def ssh_keygen(path: str) -> str:
    """A new ed25519 key pair at ``path`` (no passphrase); returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", os.path.basename(path), "-f", path],
                   check=True, stdout=subprocess.DEVNULL)
    with open(path + ".pub") as handle:
        return handle.read().strip()


def write_owned(path: str, text: str, uid: int, mode: int) -> None:
    with open(path, "w") as handle:
        handle.write(text)
    os.chown(path, uid, uid)
    os.chmod(path, mode)


def make_home(d: str, user: str, files: dict) -> None:
    """``d``/home/USER (the user's home in the namespace's passwd) with ``files`` in its ~/.ssh, all the user's."""
    uid = POLKIT_USERS[user]
    ssh = os.path.join(d, "home", user, ".ssh")
    os.makedirs(ssh, mode=0o700)
    for path in (os.path.dirname(ssh), ssh):
        os.chown(path, uid, uid)
    for name, text in files.items():
        write_owned(os.path.join(ssh, name), text, uid, 0o600)


def prepare_polkit(d: str, rules: str) -> None:
    """The users, the bus, polkit's rule and the sshd with its keys of ``--polkit`` (see the module's docstring)."""
    polkit = os.path.join(d, "polkit")
    os.makedirs(os.path.join(polkit, "rules.d"))
    shutil.copy(rules, os.path.join(polkit, "rules.d", "50-kvmha.rules"))
    with open(os.path.join(polkit, "dbus.conf"), "w") as handle:
        handle.write(DBUS_CONF)
    for name, line in (("passwd", "{0}:x:{1}:{1}::%s/home/{0}:/bin/sh\n" % d), ("group", "{0}:x:{1}:\n")):
        with open("/etc/" + name) as source, open(os.path.join(polkit, name), "w") as copy:
            copy.write(source.read() + "".join(line.format(user, uid) for user, uid in POLKIT_USERS.items()))
    ssh = os.path.join(d, "ssh")
    os.makedirs(ssh, mode=0o700)
    host_key = ssh_keygen(os.path.join(ssh, "ssh_host_ed25519_key"))
    client_key = ssh_keygen(os.path.join(ssh, "id_ed25519"))
    known_hosts = "127.0.0.1 %s\n" % " ".join(host_key.split()[:2])
    with open(os.path.join(ssh, "known_hosts"), "w") as handle:
        handle.write(known_hosts)
    with open(os.path.join(ssh, "sshd_config"), "w") as handle:
        handle.write(SSHD_CONF.format(d=d))
    for user in ("kvmha", "intruder"):
        make_home(d, user, {"authorized_keys": client_key + "\n"})
    with open(os.path.join(ssh, "id_ed25519")) as handle:
        make_home(d, "controller", {"id_ed25519": handle.read(), "known_hosts": known_hosts})


def prepare(d: str, tls: bool = False, group: str | None = None, polkit: str | None = None) -> None:
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
    conf = LIBVIRTD_CONF.format(sock=os.path.join(d, "sock"))
    if group is not None:
        conf = conf.replace('unix_sock_group = "root"', 'unix_sock_group = "%s"' % group)
        conf = conf.replace('unix_sock_rw_perms = "0700"', 'unix_sock_rw_perms = "0770"')
        conf = conf.replace('unix_sock_ro_perms = "0700"', 'unix_sock_ro_perms = "0777"')
    if polkit is not None:
        conf = conf.replace('auth_unix_rw = "none"', 'auth_unix_rw = "polkit"')
        conf = conf.replace('unix_sock_rw_perms = "0700"', 'unix_sock_rw_perms = "0777"')
        conf = conf.replace('unix_sock_ro_perms = "0700"', 'unix_sock_ro_perms = "0777"')
        prepare_polkit(d, polkit)
    if group is not None or polkit is not None:
        for path in (os.path.dirname(d), d):  # a non-root client must reach the socket directory
            os.chmod(path, 0o711)
        os.chmod(os.path.join(d, "sock"), 0o755)
    if tls:
        make_pki(d)
        conf += LIBVIRTD_TLS_CONF.format(pki=os.path.join(d, "pki"))
    with open(os.path.join(d, "etc", "libvirtd.conf"), "w") as handle:
        handle.write(conf)
    with open(os.path.join(d, "etc", "qemu.conf"), "w") as handle:
        handle.write(QEMU_CONF)
    with open(os.path.join(d, "init.sh"), "w") as handle:
        handle.write(INIT.format(d=d, listen="--listen " if tls else "",
                                 services=POLKIT_SERVICES.format(d=d) if polkit is not None else ""))


def answers(d: str) -> bool:
    try:
        return subprocess.run(["virsh", "-c", uri(d), "version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=5, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def describe(d: str, name: str, pid: int, init: int) -> dict:
    out = {"name": name, "uri": uri(d), "pid": pid}
    pki = os.path.join(d, "pki")
    if os.path.isdir(pki):
        out["tls"] = {"uri": "qemu+tls://localhost/system", "port": TLS_PORT, "netns": "/proc/%d/ns/net" % init,
                      "pki": os.path.join(pki, "client"), "rogue_pki": os.path.join(pki, "rogue"),
                      "stranger_pki": os.path.join(pki, "stranger")}
    ssh = os.path.join(d, "ssh")
    if os.path.isdir(ssh):
        out["ssh"] = {"host": "127.0.0.1", "netns": "/proc/%d/ns/net" % init, "mntns": "/proc/%d/ns/mnt" % init,
                      "pidns": "/proc/%d/ns/pid" % init, "keyfile": os.path.join(ssh, "id_ed25519"),
                      "known_hosts": os.path.join(ssh, "known_hosts"), "users": POLKIT_USERS,
                      "controller_home": os.path.join(d, "home", "controller")}
    return out


def start(root: str, name: str, keep: bool = False, tls: bool = False, group: str | None = None,
          polkit: str | None = None) -> dict:
    d = instance_dir(root, name)
    if ours(read_pid(os.path.join(d, "unshare.pid")), d):
        raise SystemExit("instance %s is already running" % name)
    if keep and os.path.isdir(os.path.join(d, "etc")):
        for sub in ("run", "sock"):
            shutil.rmtree(os.path.join(d, sub), ignore_errors=True)
            os.makedirs(os.path.join(d, sub))
    else:
        prepare(d, tls, group, polkit)
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
            return describe(d, name, proc.pid, init[0])
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
    parser.add_argument("--tls", action="store_true", help="start: also listen for TLS (certificates made here)")
    parser.add_argument("--group", help="start: the group (name or +GID) that may use the read-write socket")
    parser.add_argument("--polkit", metavar="RULES", help="start: the read-write socket behind polkit with this rule "
                                                          "file, a system bus, users and an sshd")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, bind mounts)")
    if args.action != "stop-all" and not args.name:
        parser.error("%s needs a NAME" % args.action)
    if args.action == "start":
        out = start(args.root, args.name, tls=args.tls, group=args.group,
                    polkit=os.path.abspath(args.polkit) if args.polkit else None)
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
