"""The power switch of each hypervisor: the one place that starts, stops, freezes and reboots hosts.

The CLI, the Python API, the pyghmi BMCs and the ipmi_sim hook all go through here, so BMC, SSH, libvirt and
heartbeat always agree. State is read from the system, never from a file:
* on       = a process is in the host's freezer cgroup (a frozen host is on: its BMC says so);
* crashed  = frozen, host NICs down: nothing answers;
* hung     = frozen, NICs up: the kernel still answers ping and TCP handshakes, no service answers;
* off      = no process; NICs down.
"""

import os
import signal
import sys

from lab import cgroups, config, container, fs, net
from lab.util import LabError, is_mountpoint, locked, read_pid, spawn_detached, wait_until

SOFT_OFF_TIMEOUT = 30
# Signals systemd (PID 1 of the container) understands, as `systemctl reboot` / `systemctl poweroff` would.
SIG_REBOOT = signal.SIGRTMIN + 5
SIG_POWEROFF = signal.SIGRTMIN + 4


def lock_file(host):
    # In /tmp, not on the lab tmpfs: `down` must be able to power off hosts whatever is left of the lab root.
    return f'/tmp/kvmha-lab.{host}.lock'


def _lock(host):
    return locked(lock_file(host), timeout=60)


def status(host):
    """'on' or 'off' (what a BMC reports)."""
    return 'on' if cgroups.pids(host) else 'off'


def state(host):
    """'off', 'on', 'crashed' or 'hung'."""
    if status(host) == 'off':
        return 'off'
    if cgroups.freezer_state(host) == 'THAWED':
        return 'on'
    return 'hung' if _nics_up(host) else 'crashed'


def _nics_up(host):
    return all(net.is_up(nic, host) for nic in config.HOST_NICS.values())


def _set_nics(host, up, check=True):
    for nic in config.HOST_NICS.values():
        net.set_link(nic, up, host, check)


def on(host):
    """Power on (no-op if on). Returns once the container's supervisor runs; booting takes ~1-2 s more."""
    with _lock(host):
        if status(host) == 'on':
            return
        _require_built(host)
        cgroups.create(host)
        cgroups.thaw(host)
        _set_nics(host, True)
        _start_supervisor(host)


def _require_built(host):
    if not is_mountpoint(fs.host_paths(host)[2]) or host not in net.netns_list():
        raise LabError(f'{host} is not built (run `lab up`)')


def _start_supervisor(host):
    # Through the controller's netns handle: a BMC (in netns bN) may be the one pressing the button.
    cmd = ['nsenter', f'--net={config.CONTROLLER_NETNS}', config.PYTHON, '-m', 'lab.supervisor', host]
    spawn_detached(cmd, config.log_file(f'{host}.console'), config.pid_file(f'{host}.supervisor'), cwd=config.REPO)


def off(host):
    """Hard power off (no-op if off): NICs down, every process of the host killed, its cgroups removed."""
    with _lock(host):
        _hard_off(host)


def _hard_off(host):
    if host in net.netns_list():
        _set_nics(host, False, check=False)  # tolerant: `down` also cleans up half-built namespaces
    if os.path.isdir(cgroups.path('freezer', host)):
        cgroups.kill_all(host)
    cgroups.remove(host)


def crash(host):
    """Freeze the host and take its NICs down: it stops dead, its BMC still says on."""
    _freeze(host, nics_up=False)


def hang(host):
    """Freeze the host but leave its NICs up: ping and TCP handshakes answer, no service does."""
    _freeze(host, nics_up=True)


def _freeze(host, nics_up):
    with _lock(host):
        _require_on(host)
        cgroups.freeze(host)
        _set_nics(host, nics_up)


def _require_on(host):
    if status(host) != 'on':
        raise LabError(f'{host} is off')


def reboot(host):
    """Reboot from inside (like `systemctl reboot`): a new boot, a new boot_id; the host comes back alone."""
    with _lock(host):
        _require_running(host)
        os.kill(container.leader(host), SIG_REBOOT)


def shutdown(host):
    """Soft off (IPMI "soft"): ask systemd in the host to power off, hard off after SOFT_OFF_TIMEOUT."""
    with _lock(host):
        if status(host) == 'off':
            return
        pid = container.leader(host)
        if state(host) == 'on' and pid:
            os.kill(pid, SIG_POWEROFF)
            wait_until(lambda: not read_pid(config.pid_file(f'{host}.supervisor')), SOFT_OFF_TIMEOUT, 0.1)
        _hard_off(host)


def _require_running(host):
    current = state(host)
    if current != 'on':
        raise LabError(f'{host} is {current}')
    if not container.leader(host):
        raise LabError(f'{host} is still starting')


def reset(host):
    """Hard reset (IPMI reset/cycle): off then on. Like a real BMC, it does not power on a host that is off."""
    with _lock(host):
        _require_on(host)
        _hard_off(host)
    on(host)


ACTIONS = {'on': on, 'off': off, 'reset': reset, 'shutdown': shutdown}


def main(argv):
    """`python -m lab.power on|off|reset|shutdown hN`: the entry point of the ipmi_sim chassis hook."""
    if len(argv) != 2 or argv[0] not in ACTIONS or not config.HOST_RE.match(argv[1]):
        return f'usage: python -m lab.power {"|".join(ACTIONS)} hN'
    try:
        ACTIONS[argv[0]](argv[1])
    except LabError as e:
        return f'lab.power: {e}'
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
