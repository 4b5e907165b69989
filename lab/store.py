"""Layers mounted over a view of the store to break it: read-only, hanging, or dead.

* read-only (a host): a read-only bind of the store mounted on top of it inside the host. A new mount has no
  writers yet, so this never fails with EBUSY the way remounting the host's store would while a file is open
  for writing. Already-open files keep writing through the mount below (as do running guests: libvirt gives
  each qemu its own mount namespace).
* hang (a host): an sshfs mount on top, inside the host, served by an sftp-server on the controller over a
  pipe (`sshfs -o passive`). Stopping the server (SIGSTOP) is a storage server that stops answering: every
  new access blocks in D state, like a hard NFS mount, until the server continues.
* dead (the controller's view): the same sshfs, killed: every access fails with ENOTCONN.

The sshfs client of a host is moved into the host's cgroups: a crash freezes it with the host, power off
kills it. Layers are removed only after checking that the top mount is really the layer we put there.
"""

import errno
import os
import signal

from lab import cgroups, config, container
from lab.util import LabError, kill_pid_file, mount_stack, read_pid, run, spawn_detached, wait_until, with_pid_file

SFTP_SERVER = '/usr/lib/openssh/sftp-server'
# No client-side caching: every access must reach the (stopped) server, or the hang would be partial.
SSHFS_OPTIONS = 'passive,allow_other,dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0'
READONLY, HANG, DEAD = 'readonly', 'hang', 'dead'


def _is_layer(kind, stack):
    """Is the top of a mount stack ((fstype, options) pairs) a layer of this kind? Never the store itself."""
    if len(stack) < 2:
        return False
    fstype, options = stack[-1]
    return options.split(',')[0] == 'ro' if kind == READONLY else fstype == 'fuse.sshfs'


def _pids(tag):
    return config.pid_file(f'{tag}.store-server'), config.pid_file(f'{tag}.store-client')


# ---- hosts ----

def add_host_layer(host, kind):
    if kind == READONLY:
        container.execute(host, ['mount', '-o', 'bind,ro', config.STORE, config.STORE])
        _readonly_in_service_namespaces(host)
    else:
        _sshfs(host, container.nsenter_mount(host), lambda: container.mounts(host, config.STORE))
        cgroups.enter(host, read_pid(_pids(host)[1]))
        os.kill(read_pid(_pids(host)[0]), signal.SIGSTOP)


def _readonly_in_service_namespaces(host):
    """Make the read-only layer read-only in the host's other mount namespaces too.

    systemd makes / shared in the host, so the new layer propagates into the private mount namespaces of
    hardened services (the heartbeat writer) and of libvirt's qemu processes. But `mount -o bind,ro` is a bind
    followed by a remount, and only the bind propagates: the copies there would stay writable. A real read-only
    NFS export is read-only for everyone; so remount each copy read-only where it appeared.
    """
    leader = container.leader(host)
    own = os.readlink('/proc/%d/ns/mnt' % leader)
    for pid in _namespace_representatives(host, own):
        if _is_layer(READONLY, mount_stack(pid, config.STORE)) or len(mount_stack(pid, config.STORE)) < 2:
            continue  # already read-only there, or the layer did not propagate into it
        run(['nsenter', '--target=%d' % pid, '--mount', '--', 'mount', '-o', 'remount,bind,ro', config.STORE], timeout=10)


def _namespace_representatives(host, exclude):
    """One pid per mount namespace among the host's processes, other than the namespace ``exclude``."""
    seen = {exclude}
    for pid in cgroups.pids(host):
        try:
            namespace = os.readlink('/proc/%d/ns/mnt' % pid)
        except OSError:
            continue  # gone meanwhile
        if namespace not in seen:
            seen.add(namespace)
            yield pid


def remove_host_layer(host, kind):
    """Undo add_host_layer on a running host (after a reboot the layer is gone already: see cleanup())."""
    if kind == HANG:
        _continue_server(host)
    if _is_layer(kind, container.mounts(host, config.STORE)):
        # Lazy: processes that still hold files open there keep them; nothing new goes through the layer.
        container.execute(host, ['umount', '-l', config.STORE])
    cleanup(host)


def _continue_server(tag):
    server = read_pid(_pids(tag)[0])
    if server:
        os.kill(server, signal.SIGCONT)  # blocked requests complete before the layer goes away


def cleanup(tag):
    """Stop the sshfs client and server of a layer (the server first continued, so nothing stays blocked).

    The client is killed, never asked to exit: an sshfs that exits cleanly unmounts its mount point, and once the
    layer is detached (`umount -l`) but still busy - a process with its cwd or a file there - the mount point is
    the store itself, which it would unmount from the whole host. Killed, it leaves the detached layer to go
    away with its last user (whose requests fail with ENOTCONN).
    """
    _continue_server(tag)
    server_pid, client_pid = _pids(tag)
    kill_pid_file(client_pid, signal.SIGKILL)
    kill_pid_file(server_pid)


# ---- the controller's view (observer-store) ----

def kill_controller_view():
    _sshfs('controller', [], lambda: mount_stack(os.getpid(), config.STORE))
    # SIGKILL: sshfs gets no chance to unmount (it does on a clean exit), so the mount stays, dead.
    os.kill(read_pid(_pids('controller')[1]), signal.SIGKILL)
    if not wait_until(_controller_view_dead, 5):
        raise LabError('observer-store: the controller still reads the store')
    cleanup('controller')


def _controller_view_dead():
    try:
        os.stat(config.STORE)
    except OSError as e:
        return e.errno == errno.ENOTCONN
    return False


def restore_controller_view():
    if _is_layer(DEAD, mount_stack(os.getpid(), config.STORE)):
        run(['umount', '-l', config.STORE], timeout=10)
    cleanup('controller')


# ---- sshfs over a pipe ----

def _sshfs(tag, nsenter_prefix, stack):
    """Mount sshfs on config.STORE (in the namespace nsenter_prefix enters), served from the real store."""
    server_pid, client_pid = _pids(tag)
    to_server_r, to_server_w = os.pipe()
    to_client_r, to_client_w = os.pipe()
    try:
        spawn_detached(with_pid_file([SFTP_SERVER], server_pid), config.log_file(f'{tag}.store'), server_pid,
                       stdin=to_server_r, stdout=to_client_w)
        client = nsenter_prefix + ['sshfs', '-f', '-o', SSHFS_OPTIONS, f':{config.STORE_DATA}', config.STORE]
        spawn_detached(with_pid_file(client, client_pid), config.log_file(f'{tag}.store'), client_pid,
                       stdin=to_client_r, stdout=to_server_w)
    finally:
        for fd in (to_server_r, to_server_w, to_client_r, to_client_w):
            os.close(fd)
    if not wait_until(lambda: _is_layer(HANG, stack()), 10):
        cleanup(tag)
        raise LabError(f'{tag}: sshfs layer did not mount (see {config.log_file(f"{tag}.store")})')
