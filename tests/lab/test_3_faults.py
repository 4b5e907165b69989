"""Faults: each breaks exactly what it claims (and nothing else), and heal undoes it."""

import errno
import os
import subprocess
import time
import uuid

import pytest

from conftest import (bmc_power, disk_advances, ensure_on, ipmitool, neighbour_pings, ping, ssh_banner, tcp_connects,
                      wait_for)
from lab import LabError, bmcs, config
from lab.api import SSH_OPTIONS

STORE_FILE = f'{config.STORE}/images/.fault-probe'
UNIT = config.HEARTBEAT_UNIT
# A stand-in heartbeat writer (the real one is deployed by the collection's role): it writes the time it
# believes it is, so clock-skew is visible; Restart=always like the real unit.
STUB_UNIT = """[Service]
ExecStart=/bin/sh -c 'while :; do date +%%s > /run/writer-stub-time; sleep 0.2; done'
Restart=always
RestartSec=0.2
"""


@pytest.fixture(autouse=True)
def healed(lab):
    """Every test starts and ends with no fault active."""
    lab.heal()
    yield
    lab.heal()
    status = lab.status()
    assert status['cluster_faults'] == [] and all(not s['faults'] for s in status['hosts'].values())


def faults_of(lab, host):
    return lab.status()['hosts'][host]['faults']


def store_write(lab, host, timeout=5):
    """rc of a write to the store inside host (0 ok, 1 error, 124 blocked).

    Each write has a file of its own: a write that blocked in an outage goes on (and removes its file) once the store
    is back, at the same time as the next write."""
    path = f'{STORE_FILE}.{host}.{uuid.uuid4().hex[:8]}'
    return lab.ssh(host, f'echo x > {path} && rm {path}', timeout=timeout)[0]


def test_partition_mgmt_cuts_ssh_only(lab):
    lab.fault('h1', 'partition-mgmt')
    assert faults_of(lab, 'h1') == ['partition-mgmt']
    assert not tcp_connects(config.mgmt_ip('h1')) and lab.ssh('h1', 'true')[0] == 255
    assert neighbour_pings(lab, 'h2', config.priv_ip('h1'))
    assert bmc_power('h1') == 'on'
    lab.heal('h1', 'partition-mgmt')
    assert lab.ssh('h1', 'true')[0] == 0


def test_partition_private_cuts_the_neighbours_ping_only(lab):
    lab.fault('h1', 'partition-private')
    assert not neighbour_pings(lab, 'h2', config.priv_ip('h1'))
    assert lab.ssh('h1', 'true')[0] == 0 and bmc_power('h1') == 'on'
    lab.heal('h1')
    assert neighbour_pings(lab, 'h2', config.priv_ip('h1'))


def test_partition_cuts_both_and_composes_with_partition_mgmt(lab):
    lab.fault('h1', 'partition')
    lab.fault('h1', 'partition-mgmt')
    assert not tcp_connects(config.mgmt_ip('h1'))
    assert not neighbour_pings(lab, 'h2', config.priv_ip('h1'))
    assert bmc_power('h1') == 'on'
    lab.heal('h1', 'partition')                  # partition-mgmt still holds the management cable down
    assert not tcp_connects(config.mgmt_ip('h1'))
    assert neighbour_pings(lab, 'h2', config.priv_ip('h1'))
    lab.heal('h1', 'partition-mgmt')
    assert wait_for(lambda: ssh_banner(config.mgmt_ip('h1')), 10)


def test_bmc_unreachable(lab):
    lab.fault('h1', 'bmc-unreachable')
    assert bmc_power('h1') is None
    assert lab.ssh('h1', 'true')[0] == 0
    lab.heal('h1', 'bmc-unreachable')
    assert bmc_power('h1') == 'on'


@pytest.mark.parametrize('host', ['h1', 'h3'])  # the pyghmi BMC (re-reads its password) and ipmi_sim
def test_bmc_wrong_password(lab, host):
    lab.fault(host, 'bmc-wrong-password')
    rc, out = ipmitool(host, 'power', 'status')
    assert rc != 0, out
    assert lab.status()['hosts'][host]['bmc']['running']
    lab.heal(host, 'bmc-wrong-password')
    assert bmc_power(host) == 'on'


def test_bmc_slow_delays_every_power_read_on_both_faces_and_is_refused_for_ipmi_sim(lab):
    lab.fault('h1', 'bmc-slow', 400)
    try:
        started = time.monotonic()
        assert bmc_power('h1') == 'on'
        assert time.monotonic() - started >= 0.4  # a lower bound: the BMC slept before it answered
    finally:
        lab.heal('h1', 'bmc-slow')
    assert not os.path.exists(config.bmc_slow_file('h1'))
    with pytest.raises(LabError, match='needs the pyghmi BMC'):
        lab.fault('h3', 'bmc-slow', 400)
    with pytest.raises(LabError, match='needs a whole number'):
        lab.fault('h1', 'bmc-slow', 'fast')


def test_an_ipmi_sim_password_may_start_with_a_dash(lab):
    """The lab's random passwords (token_urlsafe) sometimes start with '-': changing ipmi_sim's to one over IPMI must
    set exactly that password, not what ipmitool's option parser makes of it."""
    bmcs.set_password('h3', True, '-sec5fzt7InNbSUy')
    try:
        assert bmcs.ipmitool('h3', '-sec5fzt7InNbSUy', 'power', 'status', check=False).returncode == 0
    finally:
        bmcs.set_password('h3', True, bmcs.controller_password('h3'))
    assert bmc_power('h3') == 'on'


def test_store_readonly_reaches_new_writes_not_running_guests(lab):
    lab.fault('h1', 'store-readonly')
    rc, _out, err = lab.ssh('h1', f'touch {STORE_FILE}')
    assert rc != 0 and 'Read-only file system' in err
    assert store_write(lab, 'h2') == 0
    assert disk_advances('g1')  # libvirt gave its qemu its own mount namespace, still read-write
    lab.heal('h1', 'store-readonly')
    assert store_write(lab, 'h1') == 0


def test_store_hang_blocks_the_host_only(lab):
    lab.fault('h1', 'store-hang')
    assert store_write(lab, 'h1', timeout=3) == 124
    assert store_write(lab, 'h2') == 0 and os.listdir(config.STORE)
    lab.heal('h1', 'store-hang')
    assert store_write(lab, 'h1') == 0


def test_store_hang_heals_while_a_process_still_uses_the_layer(lab):
    # A process that entered the hanging layer (its cwd) keeps the detached layer busy after the heal. The sshfs
    # client of the layer once exited cleanly then, unmounting what its mount point had become: the store itself
    # (CI of 95b70d8: the write after a store-outage failed with ENOENT on h3).
    lab.fault('h1', 'store-hang')
    argv = ['ssh', '-i', config.SSH_KEY] + SSH_OPTIONS + [
        f'root@{config.mgmt_ip("h1")}', f'echo $$ && cd {config.IMAGES} && exec sleep 15']
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True) as user:
        try:
            pid = user.stdout.readline().strip()
            assert pid.isdigit()
            lab.heal('h1', 'store-hang')
            # it is in the layer: sleep runs only once its cd went through
            assert wait_for(lambda: lab.ssh('h1', f'cat /proc/{pid}/comm')[1].strip() == 'sleep', 5)
            assert store_write(lab, 'h1') == 0
        finally:
            user.kill()


def test_store_outage_hangs_every_host_but_not_the_controller(lab):
    lab.fault(None, 'store-outage')
    assert lab.status()['cluster_faults'] == ['store-outage']
    for host in ('h1', 'h2', 'h3'):
        assert store_write(lab, host, timeout=2) == 124
    assert os.listdir(config.STORE)
    lab.heal(None, 'store-outage')
    for host in ('h1', 'h2', 'h3'):
        assert store_write(lab, host) == 0


def test_observer_store_fails_the_controllers_view_only(lab):
    lab.fault(None, 'observer-store')
    with pytest.raises(OSError) as failure:
        os.listdir(config.STORE)
    assert failure.value.errno == errno.ENOTCONN
    assert lab.status()['controller']['store'] == 'dead'
    assert store_write(lab, 'h1') == 0
    lab.heal(None, 'observer-store')
    assert 'images' in os.listdir(config.STORE)


def test_observer_mgmt_cuts_the_controller_not_the_hosts(lab):
    lab.fault(None, 'observer-mgmt')
    assert not tcp_connects(config.mgmt_ip('h1'))
    assert ping(config.mgmt_ip('h1'), netns='h2')  # hosts still reach each other on management
    assert bmc_power('h1') == 'on'                 # out-of-band is another network
    lab.heal(None, 'observer-mgmt')
    assert wait_for(lambda: ssh_banner(config.mgmt_ip('h1')), 10)


def test_libvirtd_stop_leaves_guests_running(lab):
    lab.fault('h2', 'libvirtd-stop')
    assert lab.ssh('h2', 'virsh list')[0] != 0
    assert lab.status()['hosts']['h2']['libvirtd'] == 'stopped'
    assert disk_advances('g3')
    lab.heal('h2', 'libvirtd-stop')
    assert sorted(lab.ssh('h2', 'virsh list --name')[1].split()) == ['g3', 'g4']


def test_writer_faults_before_the_writer_exists(lab):
    for name, arg in (('writer-stop', None), ('clock-skew', 30)):
        lab.fault('h3', name, arg)
    assert faults_of(lab, 'h3') == ['clock-skew=30', 'writer-stop']
    lab.heal('h3', 'writer-stop')
    lab.fault('h3', 'writer-kill')
    assert faults_of(lab, 'h3') == ['clock-skew=30', 'writer-kill']


@pytest.fixture
def writer(lab):
    """A stand-in kvmha-heartbeat.service on h3, removed afterwards."""
    path = f'/run/systemd/system/{UNIT}'
    lab.ssh('h3', f"cat > {path} <<'EOF'\n{STUB_UNIT}EOF\nsystemctl daemon-reload && systemctl start {UNIT}")
    assert wait_for(lambda: unit_state(lab) == 'active', 10)
    yield
    lab.ssh('h3', f'systemctl stop {UNIT}; rm -f {path}; systemctl daemon-reload')


def unit_state(lab):
    return lab.ssh('h3', f'systemctl is-active {UNIT}')[1].strip()


def writer_time(lab):
    return int(lab.ssh('h3', 'cat /run/writer-stub-time')[1])


def test_writer_stop_is_graceful_and_healed(lab, writer):
    lab.fault('h3', 'writer-stop')
    assert unit_state(lab) == 'inactive'
    lab.heal('h3', 'writer-stop')
    assert unit_state(lab) == 'active'


def test_writer_kill_is_not_restarted_until_healed(lab, writer):
    lab.fault('h3', 'writer-kill')
    assert wait_for(lambda: unit_state(lab) in ('failed', 'inactive'), 5)
    time.sleep(1)  # RestartSec is 0.2 s: long enough for systemd to restart it if it were going to
    assert unit_state(lab) in ('failed', 'inactive')
    lab.heal('h3', 'writer-kill')
    assert wait_for(lambda: unit_state(lab) == 'active', 5)


def test_clock_skew_shifts_the_writers_clock_only(lab, writer):
    lab.fault('h3', 'clock-skew', 3600)
    assert wait_for(lambda: abs(writer_time(lab) - time.time() - 3600) < 30, 10)
    assert abs(int(lab.ssh('h3', 'date +%s')[1]) - time.time()) < 30  # the host's own clock is right
    lab.fault('h3', 'clock-skew', -600)  # re-injecting with another value changes it
    assert wait_for(lambda: abs(writer_time(lab) - time.time() + 600) < 30, 10)
    lab.heal('h3', 'clock-skew')
    assert wait_for(lambda: abs(writer_time(lab) - time.time()) < 30, 10)


def test_a_reboot_ends_the_faults_inside_the_host(lab):
    lab.fault('h2', 'libvirtd-stop')
    lab.fault('h2', 'partition-private')
    boot = lab.status()['hosts']['h2']['boot_id']
    lab.power('h2', 'reboot')
    assert wait_for(lambda: lab.status()['hosts']['h2']['boot_id'] not in (None, boot), 40)
    assert faults_of(lab, 'h2') == ['partition-private']  # the cable is still cut
    assert wait_for(lambda: lab.status()['hosts']['h2']['libvirtd'] in ('active', 'socket'), 20)
    lab.heal()
    assert wait_for(lambda: lab.ssh('h2', 'true')[0] == 0, 20)
    for guest in ('g3', 'g4'):
        lab.ssh('h2', f'virsh start {guest}')


def test_heal_all_heals_everything(lab):
    lab.fault('h1', 'partition-mgmt')
    lab.fault('h2', 'bmc-unreachable')
    lab.fault(None, 'observer-mgmt')
    lab.heal()
    assert lab.ssh('h1', 'true')[0] == 0 and bmc_power('h2') == 'on' and tcp_connects(config.mgmt_ip('h2'))


def test_faults_inside_a_host_need_it_running(lab):
    lab.power('h3', 'crash')
    try:
        with pytest.raises(LabError, match='crashed'):
            lab.fault('h3', 'writer-stop')
        lab.fault('h3', 'partition-mgmt')  # a cable can be cut whatever the power state
    finally:
        lab.heal()
        lab.power('h3', 'off')
        lab.power('h3', 'on')
        assert wait_for(lambda: lab.ssh('h3', 'true')[0] == 0, 30)
        for guest in ('g5', 'g6'):
            lab.ssh('h3', f'virsh start {guest}')


def test_power_off_kills_a_host_blocked_on_a_hung_store(lab):
    # What fencing a host with a hung store does: its blocked processes cannot even be frozen.
    lab.fault('h1', 'store-hang')
    assert store_write(lab, 'h1', timeout=2) == 124    # leaves a writer blocked in the host
    try:
        assert lab.power('h1', 'crash') == 'crashed'
        assert ipmitool('h1', 'power', 'off')[0] == 0
        assert wait_for(lambda: lab.power('h1', 'status') == 'off', 10)
        assert faults_of(lab, 'h1') == []               # the hang ended with the host's boot
    finally:
        ensure_on(lab, 'h1')
