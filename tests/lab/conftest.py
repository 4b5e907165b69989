"""Lab tests: one lab (3 hosts x 2 guests, h3's BMC is ipmi_sim) shared by the whole session.

Run as root through scripts/test-stages/40-lab.sh, which also takes the lab down at the end. Modules run in
file order (test_1_* ... test_9_*); the last one tears the lab down and checks that nothing is left.
Nothing here asserts a duration: waits are bounded polls.
"""

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from lab import Lab, config

HOSTS = ['h1', 'h2', 'h3']
IPMI_SIM = ['h3']
GUESTS = {'h1': ['g1', 'g2'], 'h2': ['g3', 'g4'], 'h3': ['g5', 'g6']}
REPO = config.REPO


def pytest_configure(config):  # noqa: ARG001 - pytest hook signature
    if os.geteuid() != 0:
        pytest.exit('tests/lab must run as root (network namespaces, cgroups, mounts)', returncode=2)


@pytest.fixture(scope='session')
def lab():
    lab = Lab()
    lab.up(hosts=len(HOSTS), guests=2, ipmi_sim=IPMI_SIM)
    yield lab
    lab.down()


# ---- probes, each bounded ----

def wait_for(predicate, timeout=20, interval=0.1):
    """Poll until predicate() is truthy; return its value (falsy after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def tcp_connects(ip, port=22, timeout=1.0):
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def ssh_banner(ip, timeout=1.5):
    """True if sshd sends its banner: a frozen host completes the TCP handshake but never sends it."""
    try:
        with socket.create_connection((ip, 22), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b'SSH-')
    except OSError:
        return False


def ping(ip, netns=None):
    cmd = (['nsenter', f'--net=/run/netns/{netns}'] if netns else []) + ['ping', '-c1', '-W1', ip]
    return subprocess.run(cmd, capture_output=True, timeout=5, check=False).returncode == 0


def neighbour_pings(lab, neighbour, ip):
    """The neighbour itself pings (over SSH): what the collection's neighbor_ping does."""
    return lab.ssh(neighbour, f'ping -c1 -W1 {ip}', timeout=10)[0] == 0


def password(host):
    with open(config.secret_file(host), encoding='ascii') as f:
        return f.read().strip()


def ipmitool(host, *command, pw=None, timeout=15):
    """ipmitool -I lanplus from the controller with the inventory's credentials; (rc, output)."""
    cmd = ['ipmitool', '-I', 'lanplus', '-C', '3', '-N', '1', '-R', '2', '-H', config.bmc_ip(host),
           '-U', config.BMC_USER, '-P', pw or password(host)] + list(command)
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return cp.returncode, cp.stdout + cp.stderr


def bmc_power(host):
    rc, out = ipmitool(host, 'power', 'status')
    return out.split()[-1] if rc == 0 else None


def lab_cli(*args, timeout=120, env=None, user=None):
    """`python -m lab ARGS` as a subprocess (optionally as another user): (rc, stdout, stderr).

    Another user may not be able to read the checkout (a clone under root's mode-700 home) nor the venv's
    interpreter, so it runs a world-readable copy of the lab package with the system's Python 3.
    """
    cmd, cwd = [sys.executable, '-m', 'lab'] + list(args), REPO
    if user:
        cwd = _world_readable_lab()
        cmd = ['setpriv', f'--reuid={user}', f'--regid={user}', '--clear-groups', SYSTEM_PYTHON, '-m', 'lab'] + list(args)
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False)
    return cp.returncode, cp.stdout, cp.stderr


SYSTEM_PYTHON = '/usr/bin/python3'  # Debian's; the venv's may live where another user cannot go


def _world_readable_lab():
    """A copy of the lab package in a fresh 0755 directory under /tmp, removed when the test session ends."""
    if not _COPIES:
        base = tempfile.mkdtemp(prefix='kvmha-lab-cli-')
        shutil.copytree(os.path.join(REPO, 'lab'), os.path.join(base, 'lab'), ignore=shutil.ignore_patterns('__pycache__'))
        for root, dirs, files in os.walk(base):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        atexit.register(shutil.rmtree, base, True)
        _COPIES.append(base)
    return _COPIES[0]


_COPIES = []


def image_counter(guest):
    """The guest's counter (LBA 2 of its disk), bumped every second by its boot sector."""
    with open(f'{config.IMAGES}/{guest}.img', 'rb') as f:
        f.seek(2 * 512)
        return int.from_bytes(f.read(4), 'little')


def disk_advances(guest, timeout=6):
    """True if the guest's disk changes (mtime and counter) within timeout: the guest really runs."""
    path = f'{config.IMAGES}/{guest}.img'
    mtime, counter = os.stat(path).st_mtime_ns, image_counter(guest)
    return bool(wait_for(lambda: os.stat(path).st_mtime_ns > mtime and image_counter(guest) > counter, timeout))


def running_guests(lab, host):
    rc, out, _err = lab.ssh(host, 'virsh list --name --state-running')
    assert rc == 0, f'virsh on {host} failed'
    return sorted(out.split())


def start_guests(lab, host):
    """After a power cycle the host's guests are defined but shut off (no autostart): start them again."""
    for guest in GUESTS[host]:
        lab.ssh(host, f'virsh domstate {guest} | grep -q running || virsh start {guest}')
    assert wait_for(lambda: running_guests(lab, host) == GUESTS[host], 20)


def ensure_on(lab, host):
    """Bring a host back to normal (on, booted, SSH up, guests running) after a power test.

    A host that stays silent is reported with what its console said, then power-cycled, so that one bad boot
    fails one test and not every later test that needs the host.
    """
    if lab.power(host, 'status') != 'on':
        power_cycle(lab, host)
    silent_report = None if wait_for(lambda: ssh_banner(config.mgmt_ip(host)), 30) else host_report(lab, host)
    if silent_report:
        power_cycle(lab, host)
        wait_for(lambda: ssh_banner(config.mgmt_ip(host)), 30)
    start_guests(lab, host)
    if silent_report:
        pytest.fail(f'{host}: no SSH 30 s after power on (power-cycled it since)\n{silent_report}')


def power_cycle(lab, host):
    lab.power(host, 'off')
    lab.power(host, 'on')


def host_report(lab, host, lines=40):
    """What to look at when a host misbehaves: its power state, boot id and the tail of its console."""
    info = lab.status()['hosts'][host]
    console = config.log_file(f'{host}.console')
    with open(console, encoding='utf-8', errors='replace') as f:
        tail = f.readlines()[-lines:]
    return f"power={info['power']} boot_id={info['boot_id']}; console ({console}):\n" + ''.join(tail)
