"""The running container of a host: its PID 1, its boot id, and running commands inside it.

Commands run through nsenter into the container's namespaces, not over SSH: fault injection and status are
"console access" and keep working while the host is partitioned. They do not join the host's cgroups, so a
frozen host cannot freeze them (they time out instead).
"""

import time

from lab import config
from lab.util import LabError, mount_stack, read_pid, read_text, run


def leader(host):
    """Controller pid of the container's PID 1 (systemd) — the child of nspawn — or None."""
    nspawn = read_pid(config.pid_file(f'{host}.nspawn'))
    if not nspawn:
        return None
    children = read_text(f'/proc/{nspawn}/task/{nspawn}/children', '').split()
    return int(children[0]) if children else None


def boot_id(host):
    """The container's boot id (nspawn gives every boot its own), or None when it is not running."""
    pid = leader(host)
    text = read_text(f'/proc/{pid}/root/proc/sys/kernel/random/boot_id') if pid else None
    return text.strip() if text else None


def nsenter_mount(host):
    """Prefix that runs a process in the host's mount namespace only (no fork: the pid stays the process's)."""
    pid = leader(host)
    if not pid:
        raise LabError(f'{host} is not running')
    return ['nsenter', f'--target={pid}', '--mount', '--']


def execute(host, cmd, timeout=10, check=True, input=None):
    """Run cmd inside the host (its mount, uts, ipc, net and pid namespaces), bounded by timeout.

    nsenter --pid forks, and killing nsenter would not kill that child: the inner `timeout` bounds it.
    """
    pid = leader(host)
    if not pid:
        raise LabError(f'{host} is not running')
    prefix = ['nsenter', f'--target={pid}', '--mount', '--uts', '--ipc', '--net', '--pid', '--',
              'timeout', '-k', '1', str(timeout)]
    return run(prefix + cmd, timeout=timeout + 3, check=check, input=input)  # run() never leaves nsenter stopped


def mounts(host, target):
    """The host's mounts on target, bottom first, as (fstype, options) pairs."""
    pid = leader(host)
    return mount_stack(pid, target) if pid else []


def wait_booted(host, timeout=30):
    """Wait until systemd in the host has finished booting; returns 'running' or 'degraded'."""
    deadline = time.monotonic() + timeout
    state = 'not started'
    while time.monotonic() < deadline:
        # Early in the boot systemd is not reachable yet ("offline"/"unknown"); --wait covers "starting".
        if leader(host):
            left = max(1.0, deadline - time.monotonic())
            state = execute(host, ['systemctl', 'is-system-running', '--wait'], timeout=left, check=False)
            state = state.stdout.strip()
            if state in ('running', 'degraded'):
                return state
        time.sleep(0.1)
    raise LabError(f'{host}: boot did not finish within {timeout} s (systemd: {state})')
