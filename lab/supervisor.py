"""`python -m lab.supervisor hN`: the power supply of one hypervisor container.

Started detached by lab.power.on(). It moves itself into the host's cgroups (so the container is born there,
and freezing or killing the cgroup takes the supervisor with it), then runs `systemd-nspawn --boot` as its own
child and reaps it. Exit status 133 means the host rebooted itself: boot it again. Any other exit (poweroff
from inside, nspawn failure) is power off: the host's NICs go down, because its network namespace outlives
the container and would otherwise still answer ping.
"""

import os
import subprocess
import sys

from lab import cgroups, config, fs, net
from lab.util import remove, write_text

REBOOT_EXIT = 133


def nspawn_command(host):
    merged = fs.host_paths(host)[2]
    return [
        'systemd-nspawn', '--boot', '--quiet',
        f'--directory={merged}', f'--machine={host}', f'--hostname={host}',
        f'--network-namespace-path=/run/netns/{host}',
        f'--bind={config.STORE_DATA}:{config.STORE}',
        '--bind=/dev/fuse',           # for the store-hang fault (sshfs inside the host)
        *_checkout_bind(),
        # No host systemd here: no machine registration, no scope unit (else "Failed to open system bus").
        '--register=no', '--keep-unit',
        '--link-journal=no',          # never write into the controller's /var/log/journal
        '--console=passive',
    ]


def _checkout_bind():
    """The checkout (its venv, for the watchdog_service molecule scenario) shows through the overlay, except under
    /tmp, where nspawn mounts a fresh tmpfs (a clone may live there): bind it read-only then, and only then."""
    return [f'--bind-ro={config.REPO}'] if config.REPO.startswith('/tmp/') else []


def main(host):
    cgroups.enter(host, os.getpid())
    write_text(config.pid_file(f'{host}.supervisor'), f'{os.getpid()}\n')
    try:
        while True:
            # The container's whole life: no timeout on purpose; power.off() kills this process and nspawn.
            nspawn = subprocess.Popen(nspawn_command(host), stdin=subprocess.DEVNULL)
            write_text(config.pid_file(f'{host}.nspawn'), f'{nspawn.pid}\n')
            if nspawn.wait() != REBOOT_EXIT:
                break
    finally:
        for nic in config.HOST_NICS.values():
            net.ip('link', 'set', nic, 'down', netns=host, check=False)
        remove(config.pid_file(f'{host}.nspawn'))
        remove(config.pid_file(f'{host}.supervisor'))


if __name__ == '__main__':
    if len(sys.argv) != 2 or not config.HOST_RE.match(sys.argv[1]):
        sys.exit('usage: python -m lab.supervisor hN')
    main(sys.argv[1])
