"""The running container of a host: its PID 1, its boot id, and running commands inside it.

Commands run through nsenter into the container's namespaces, not over SSH: fault injection and status are
"console access" and keep working while the host is partitioned. They do not join the host's cgroups, so a
frozen host cannot freeze them (they time out instead).
"""

import os
import signal
import subprocess
import time

from lab import config
from lab.util import LabError, _show, mount_stack, read_pid, read_text


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
    argv = ['nsenter', f'--target={pid}', '--mount', '--uts', '--ipc', '--net', '--pid', '--',
            'timeout', '-k', '1', str(timeout)] + cmd
    done = _run_nsenter(argv, timeout + 3, input)
    if check and done.returncode != 0:
        raise LabError(f'{_show(argv)}: exit {done.returncode}: {(done.stderr or done.stdout).strip()}')
    return done


def _run_nsenter(argv, timeout, input):
    """subprocess.run for a forking nsenter that is never left stopped. nsenter waits for its child with WUNTRACED and
    stops itself when the child stops - which a host that shuts down does to every process in it (SIGSTOP, SIGTERM,
    SIGCONT). Left stopped, it would never reap its child, and the host's systemd would wait 90 s for that zombie
    before rebooting (CI saw it). So it is continued whenever it stops; it then continues its child and reaps it."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        while True:
            try:
                out, err = proc.communicate(input, timeout=0.2)
                return subprocess.CompletedProcess(argv, proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                input = None  # sent once; communicate() goes on with the rest
            if time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                raise LabError(f'{_show(argv)}: timed out after {timeout} s')
            if _stopped(proc.pid):
                os.kill(proc.pid, signal.SIGCONT)


def _stopped(pid):
    try:
        with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'T'
    except OSError:
        return False


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
