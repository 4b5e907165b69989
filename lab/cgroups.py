"""Per-host cgroups (v1 freezer and name=systemd, plus the v2 unified hierarchy) under kvmha-lab/.

Why per-host cgroups at all: without systemd as PID 1, `systemd-nspawn --keep-unit` creates /payload and
/supervisor at the root of the systemd and unified hierarchies, shared by every container. Starting each
host's supervisor inside kvmha-lab/hN keeps them apart. The freezer cgroup is also the host's power state:
the host is on while any process is in it, and freezing it is a crash.
"""

import os
import signal

from lab import config
from lab.util import LabError, read_text, wait_until

FREEZE_WAIT = 1.0


def path(hierarchy, host=None):
    parts = [config.CGROUP_FS, hierarchy, config.CGROUP_PARENT] + ([host] if host else [])
    return os.path.join(*parts)


def _subtree(directory):
    """Every cgroup directory below and including directory, deepest first."""
    found = []
    for root, dirs, _files in os.walk(directory):
        found.extend(os.path.join(root, d) for d in dirs)
    return sorted(found, key=lambda p: p.count('/'), reverse=True) + ([directory] if os.path.isdir(directory) else [])


def create(host):
    for hierarchy in config.CGROUP_HIERARCHIES:
        os.makedirs(path(hierarchy, host), exist_ok=True)


def enter(host, pid):
    """Move pid into the host's cgroups (its children will be born there)."""
    for hierarchy in config.CGROUP_HIERARCHIES:
        with open(os.path.join(path(hierarchy, host), 'cgroup.procs'), 'w', encoding='ascii') as f:
            f.write(str(pid))


def pids(host):
    """Every process in the host's freezer cgroup tree."""
    found = []
    for directory in _subtree(path('freezer', host)):
        found += [int(p) for p in read_text(os.path.join(directory, 'cgroup.procs'), '').split()]
    return found


def freezer_state(host):
    return read_text(os.path.join(path('freezer', host), 'freezer.state'), 'THAWED').strip()


def freeze(host):
    """Freeze the host (FREEZING -> FROZEN takes 3-8 ms for ~12 tasks, measured).

    A task in uninterruptible sleep (e.g. blocked on a hung store) cannot be frozen: the cgroup then stays
    FREEZING, which is as frozen as it gets (that task cannot run either). So wait a little, never fail.
    """
    _write_freezer(host, 'FROZEN')
    wait_until(lambda: freezer_state(host) == 'FROZEN', FREEZE_WAIT)


def thaw(host):
    _write_freezer(host, 'THAWED')
    if not wait_until(lambda: freezer_state(host) == 'THAWED', 10):
        raise LabError(f'{host}: freezer stuck in {freezer_state(host)} (wanted THAWED)')


def _write_freezer(host, state):
    state_file = os.path.join(path('freezer', host), 'freezer.state')
    if os.path.exists(state_file):
        with open(state_file, 'w', encoding='ascii') as f:
            f.write(state)


def kill_all(host):
    """SIGKILL every process of the host: freeze first so nothing forks meanwhile, kill, thaw to deliver.

    Processes blocked on a hung store die too: killing the host's sshfs client aborts their requests.
    """
    freeze(host)
    for pid in pids(host):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    thaw(host)
    if not wait_until(lambda: not pids(host), 10):
        raise LabError(f'{host}: processes survived SIGKILL: {pids(host)}')


def remove(host):
    """Remove the host's (empty) cgroups in every hierarchy."""
    for hierarchy in config.CGROUP_HIERARCHIES:
        for directory in _subtree(path(hierarchy, host)):
            _rmdir(directory)


def remove_all():
    """Remove kvmha-lab/ in every hierarchy (down, after every host is off)."""
    for hierarchy in config.CGROUP_HIERARCHIES:
        for directory in _subtree(path(hierarchy)):
            _rmdir(directory)


def leftovers():
    return [path(h) for h in config.CGROUP_HIERARCHIES if os.path.isdir(path(h))]


def _rmdir(directory):
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise LabError(f'cannot remove cgroup {directory}: {e}') from e
