"""Power actions: each has the effect it claims, on SSH, ping, TCP, the BMC and the guests."""

import concurrent.futures
import os
import signal
import subprocess
import time

import pytest

from conftest import (GUESTS, bmc_power, disk_advances, ensure_on, host_report, ipmitool, password, ping,
                      running_guests, ssh_banner, tcp_connects, wait_for)
from lab import config, container


@pytest.fixture
def h2(lab):
    """h2, put back to normal after the test whatever it did."""
    yield 'h2'
    ensure_on(lab, 'h2')


def test_crash_silences_everything_but_the_bmc(lab, h2):
    assert lab.power(h2, 'crash') == 'crashed'
    mgmt, priv = config.mgmt_ip(h2), config.priv_ip(h2)
    assert not ping(mgmt) and not tcp_connects(mgmt)
    assert not ping(priv, netns='h1')
    assert bmc_power(h2) == 'on'
    assert not disk_advances(GUESTS[h2][0], timeout=2.5)  # its guests are frozen too
    # A BMC power-off of a crashed host really kills it.
    rc, out = ipmitool(h2, 'power', 'off')
    assert rc == 0, out
    assert wait_for(lambda: lab.power(h2, 'status') == 'off', 10)
    assert bmc_power(h2) == 'off'
    assert not lab.status()['hosts'][h2]['boot_id']


def test_hang_answers_ping_and_tcp_but_no_service(lab, h2):
    assert lab.power(h2, 'hang') == 'hung'
    mgmt = config.mgmt_ip(h2)
    assert ping(mgmt) and tcp_connects(mgmt)      # the kernel still answers...
    assert not ssh_banner(mgmt)                   # ...sshd does not
    assert bmc_power(h2) == 'on'
    cp = subprocess.run(['fence_ipmilan', '--lanplus', '--cipher=3', '-a', config.bmc_ip(h2), '-l',
                         config.BMC_USER, '-p', password(h2), '-o', 'off'],
                        capture_output=True, text=True, timeout=60, check=False)
    assert cp.returncode == 0 and 'Success: Powered OFF' in cp.stdout, cp.stdout + cp.stderr
    assert lab.power(h2, 'status') == 'off' and not ping(mgmt)


def test_off_and_on(lab, h2):
    assert lab.power(h2, 'off') == 'off'
    assert bmc_power(h2) == 'off'
    assert not ping(config.mgmt_ip(h2)) and not ping(config.priv_ip(h2), netns='h1')
    assert lab.power(h2, 'off') == 'off'  # idempotent
    assert lab.power(h2, 'on') == 'on'
    assert wait_for(lambda: ssh_banner(config.mgmt_ip(h2)), 30)
    assert lab.ssh(h2, 'hostname')[1].strip() == h2
    # No autostart: its guests are defined but shut off after the power cycle.
    assert running_guests(lab, h2) == []
    assert lab.power(h2, 'on') == 'on'  # idempotent


@pytest.mark.parametrize('host', ['h2', 'h3'])  # the pyghmi BMC and ipmi_sim
def test_bmc_power_off_and_on(lab, host):
    try:
        assert ipmitool(host, 'power', 'off')[0] == 0
        assert wait_for(lambda: lab.power(host, 'status') == 'off', 10) and bmc_power(host) == 'off'
        assert ipmitool(host, 'power', 'on')[0] == 0
        assert wait_for(lambda: lab.power(host, 'status') == 'on', 10) and bmc_power(host) == 'on'
        assert wait_for(lambda: ssh_banner(config.mgmt_ip(host)), 30)
    finally:
        ensure_on(lab, host)


def test_bmc_soft_off_shuts_the_host_down(lab, h2):
    assert ipmitool(h2, 'power', 'soft')[0] == 0
    assert wait_for(lambda: lab.power(h2, 'status') == 'off', 40)
    assert bmc_power(h2) == 'off' and not ping(config.mgmt_ip(h2))


def test_reboot_comes_back_by_itself_with_a_new_boot_id(lab, h2):
    before = lab.status()['hosts'][h2]['boot_id']
    assert lab.power(h2, 'reboot') == 'on'
    assert wait_for(lambda: lab.status()['hosts'][h2]['boot_id'] not in (None, before), 40), host_report(lab, h2)
    assert wait_for(lambda: lab.ssh(h2, 'true')[0] == 0, 30), host_report(lab, h2)
    assert bmc_power(h2) == 'on'


def test_a_console_command_caught_in_a_shutdown_is_reaped_at_once(lab):
    """systemd-shutdown stops, terminates and continues every process of the host. A console command (the lab's
    status, faults) caught in it must be reaped at once: a zombie left in the host holds its reboot 90 s (CI saw it)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        command = pool.submit(container.execute, 'h2', ['sleep', '60'], timeout=60, check=False)
        assert wait_for(lambda: 'sleep' in _seen_by('h2').values(), 10)
        caught = [pid for pid in _seen_by(None) if _pid_ns(pid) == _pid_ns(container.leader('h2'))
                  and _comm('/proc', pid) in ('sleep', 'timeout')]
        for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGCONT):
            for pid in caught:
                os.kill(pid, sig)
            if sig == signal.SIGSTOP:
                time.sleep(0.5)  # as in a shutdown of many processes: their waiters see them stopped
        assert command.result(timeout=20).returncode == -signal.SIGTERM
    assert wait_for(lambda: not {'sleep', 'timeout'} & set(_seen_by('h2').values()), 5), _seen_by('h2')


def _seen_by(host):
    """{pid: name} of the processes in host's own /proc (zombies included), or in the controller's for None."""
    proc = f'/proc/{container.leader(host)}/root/proc' if host else '/proc'
    return {int(p): _comm(proc, p) for p in os.listdir(proc) if p.isdigit()}


def _comm(proc, pid):
    try:
        with open(f'{proc}/{pid}/comm', encoding='utf-8') as f:
            return f.read().strip()
    except OSError:
        return None


def _pid_ns(pid):
    try:
        return os.readlink(f'/proc/{pid}/ns/pid')
    except OSError:  # gone, or a zombie
        return None


def test_power_status_never_changes_anything(lab):
    before = lab.status()
    assert lab.power('h1', 'status') == 'on'
    assert lab.status() == before


def test_the_redfish_face_switches_the_same_chassis(lab, h2):
    """Each pyghmi BMC also speaks Redfish (HTTPS on port 443, a certificate of the lab CA): fence_redfish, verifying
    that certificate, powers h2 off from the controller over the oob network, and the IPMI face reads it off."""
    agent = ['fence_redfish', '--ssl-secure', '-a', config.bmc_ip(h2), '-u', str(config.REDFISH_PORT), '-l',
             config.BMC_USER, '-p', password(h2)]
    env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'REQUESTS_CA_BUNDLE': f'{config.PKI}/ca.pem'}
    status = subprocess.run(agent + ['-o', 'status'], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert status.returncode == 0 and 'Status: ON' in status.stdout, status.stdout + status.stderr
    off = subprocess.run(agent + ['-o', 'off'], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert off.returncode == 0 and 'Success: Powered OFF' in off.stdout, off.stdout + off.stderr
    assert lab.power(h2, 'status') == 'off' and bmc_power(h2) == 'off'
