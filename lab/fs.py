"""Filesystems of the lab: the lab root tmpfs, the shared store, nspawn's runtime tmpfs, and each host's overlay.

Measured gotchas this follows (LAB-RECIPE.md §2b):
* the upper layer of an overlay whose lower layer is / must not live on / (ELOOP, "overlapping layers"),
  so the lab root is a tmpfs; teardown is then a plain unmount;
* /run is on disk here, and nspawn refuses to clean up its propagation directory unless
  /run/systemd/nspawn is a tmpfs;
* write upper-layer files before mounting the overlay (changes to a mounted upper give stale views).

The store has two paths: the real directory .store (what hosts bind-mount) and store, a bind mount of it that
is the controller's view. The fault observer-store mounts a dead filesystem over the controller's view only;
hosts powered on meanwhile still bind the real directory.
"""

import os
import secrets
import shutil

from lab import config
from lab.util import LabError, is_mountpoint, mounts_under, run, write_text

# Units that fail or waste CPU in a container (measured: without the masks every host starts PostgreSQL).
MASKED_UNITS = (
    'postgresql.service', 'openipmi.service', 'libvirt-guests.service', 'systemd-timesyncd.service',
    'getty@tty1.service', 'console-getty.service', 'e2scrub_reap.service', 'systemd-pstore.service',
    'apt-daily.timer', 'apt-daily-upgrade.timer', 'man-db.timer', 'dpkg-db-backup.timer', 'e2scrub_all.timer',
    'fstrim.timer', 'logrotate.timer',
    # The Pacemaker baseline's daemons (lab/pacemaker.py unmasks them in the hosts it clusters).
    'corosync.service', 'pacemaker.service', 'logd.service',
)
# Directories of / hidden from the hosts (made opaque in the upper layer): the controller's own libvirt
# domains and networks, and root's ssh files, must not show up inside the hypervisors.
OPAQUE_DIRS = ('etc/libvirt/qemu', 'root/.ssh')
QEMU_CONF_EXTRA = (
    '\n# kvmha lab: no cgroup controllers in a container (else "Failed to create v1 controller cpu")\n'
    'cgroup_controllers = [ ]\nuser = "root"\ngroup = "root"\n'
)
HOST_KEY = 'etc/ssh/ssh_host_ed25519_key'
# HostKey: only the host's own key, never the controller's RSA/ECDSA keys that show through the overlay.
SSHD_CONF = (f'HostKey /{HOST_KEY}\nPasswordAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n'
             'MaxStartups 100:30:200\n')


def mount(source, target, *options, fstype=None):
    os.makedirs(target, exist_ok=True)
    cmd = ['mount'] + (['-t', fstype] if fstype else []) + [a for o in options for a in ('-o', o)] + [source, target]
    run(cmd, timeout=10)


def mount_lab_root():
    """The lab tmpfs, the store (real dir + controller bind), nspawn's tmpfs, the controller netns handle."""
    if not is_mountpoint(config.ROOT):
        mount('kvmha-lab', config.ROOT, 'size=4G,mode=0755', fstype='tmpfs')
        run(['mount', '--make-private', config.ROOT], timeout=10)
    for directory in (config.STORE_DATA, config.SSH_DIR, config.CONTROL_DIR, config.RUN, config.HOSTS_DIR):
        os.makedirs(directory, exist_ok=True)
    os.makedirs(config.SECRETS, mode=0o700, exist_ok=True)
    os.makedirs(config.BMC_DIR, mode=0o700, exist_ok=True)
    if not is_mountpoint(config.STORE):
        mount(config.STORE_DATA, config.STORE, 'bind')
    os.makedirs(config.IMAGES, exist_ok=True)
    if not is_mountpoint(config.NSPAWN_RUN):
        mount('kvmha-nspawn', config.NSPAWN_RUN, 'mode=0755', fstype='tmpfs')
    _controller_netns_handle()


def _controller_netns_handle():
    # Processes in a BMC's namespace (BMC, ipmi_sim hook) power hosts on; the host's supervisor must not
    # live in that BMC namespace, so it is started through this handle on the controller's namespace.
    handle = config.CONTROLLER_NETNS
    if is_mountpoint(handle):
        return
    if not os.path.exists(handle):
        open(handle, 'w', encoding='ascii').close()
    run(['mount', '--bind', f'/proc/{os.getpid()}/ns/net', handle], timeout=10)


def ssh_keypair():
    if not os.path.exists(config.SSH_KEY):
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'kvmha-lab', '-f', config.SSH_KEY], timeout=30)


def host_paths(host):
    base = config.host_dir(host)
    return f'{base}/upper', f'{base}/work', f'{base}/merged'


def prepare_host(host, hosts):
    """Create the host's upper layer if missing (returns True then) and mount its overlay if needed."""
    upper, work, merged = host_paths(host)
    fresh = not os.path.isdir(upper)
    if fresh:
        staging = upper + '.new'  # build aside and rename, so an interrupted build is never taken as done
        shutil.rmtree(staging, ignore_errors=True)
        _populate_upper(staging, host, hosts)
        os.rename(staging, upper)
    if not is_mountpoint(merged):
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        mount('overlay', merged, f'lowerdir=/,upperdir={upper},workdir={work}', fstype='overlay')
    return fresh


def _populate_upper(upper, host, hosts):
    for directory in OPAQUE_DIRS:
        os.makedirs(f'{upper}/{directory}', mode=0o700 if directory.endswith('.ssh') else 0o755)
        os.setxattr(f'{upper}/{directory}', 'trusted.overlay.opaque', b'y')
    write_text(f'{upper}/etc/hostname', f'{host}\n')
    write_text(f'{upper}/etc/hosts', _etc_hosts(hosts))
    write_text(f'{upper}/etc/machine-id', secrets.token_hex(16) + '\n', mode=0o444)
    with open(f'{config.SSH_KEY}.pub', encoding='ascii') as f:
        write_text(f'{upper}/root/.ssh/authorized_keys', f.read(), mode=0o600)
    write_text(f'{upper}/etc/ssh/sshd_config.d/kvmha-lab.conf', SSHD_CONF)
    # The host's own host key. Ed25519 only: `ssh-keygen -A` (RSA 3072 too) took 1.6 s per host, most of `up`.
    run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', host, '-f', f'{upper}/{HOST_KEY}'], timeout=30)
    os.makedirs(f'{upper}/etc/systemd/system', exist_ok=True)
    for unit in MASKED_UNITS:
        os.symlink('/dev/null', f'{upper}/etc/systemd/system/{unit}')
    with open('/etc/libvirt/qemu.conf', encoding='utf-8') as f:
        write_text(f'{upper}/etc/libvirt/qemu.conf', f.read() + QEMU_CONF_EXTRA, mode=0o600)


def _etc_hosts(hosts):
    lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback']
    for h in hosts:
        lines.append(f'{config.mgmt_ip(h)}\t{h}')
        lines.append(f'{config.priv_ip(h)}\t{h}-priv')
    lines.append(f'{config.CONTROLLER_MGMT_IP}\tcontroller')
    return '\n'.join(lines) + '\n'


def unmount_host(host):
    merged = host_paths(host)[2]
    if is_mountpoint(merged):
        run(['umount', merged], timeout=30)


def unmount_all():
    """Unmount everything of the lab (deepest first) and remove its directories."""
    for point in mounts_under(config.ROOT) + mounts_under(config.NSPAWN_RUN):
        run(['umount', '-l', point], timeout=30, check=False)
    for directory in (config.ROOT, config.NSPAWN_RUN):
        if os.path.isdir(directory) and not is_mountpoint(directory):
            _remove_empty_or_fail(directory)
    left = mounts_under(config.ROOT) + mounts_under(config.NSPAWN_RUN)
    if left:
        raise LabError(f'mounts left: {", ".join(left)}')


def _remove_empty_or_fail(directory):
    # Both are mount points created by `up`; once unmounted they must be empty. Refuse to delete content
    # that is not ours (e.g. a lab root that was never a tmpfs).
    if os.listdir(directory):
        raise LabError(f'{directory} is not empty after unmount; not removing it')
    os.rmdir(directory)
