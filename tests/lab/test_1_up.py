"""After `lab up`: every host, BMC and guest is really there and reachable the way the collection reaches it."""

import json
import os
import subprocess

import libvirt
import pytest
import yaml
from pyghmi.ipmi.command import Command

from conftest import GUESTS, HOSTS, IPMI_SIM, REPO, bmc_power, disk_advances, password, running_guests
from lab import config
from lab.inventory import WRITER_SETTINGS, libvirt_uri


def test_ansible_ping_reaches_every_host(lab):
    cp = subprocess.run(['ansible', '-i', lab.inventory_path(), 'kvm_hosts', '-m', 'ping'],
                        capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    for host in HOSTS:
        assert f'{host} | SUCCESS' in cp.stdout


def test_inventory_follows_the_contract(lab):
    text = lab.inventory()
    with open(lab.inventory_path(), encoding='utf-8') as f:
        assert f.read() == text
    inventory = yaml.safe_load(text)['all']
    assert inventory['vars'] == {'kvmha_store_path': config.STORE, 'kvmha_observers': ['localhost'],
                                 **WRITER_SETTINGS}
    assert inventory['hosts']['localhost']['ansible_connection'] == 'local'
    hosts = inventory['children']['kvm_hosts']['hosts']
    assert sorted(hosts) == HOSTS
    h2 = hosts['h2']
    assert (h2['ansible_host'], h2['kvmha_private_ip'], h2['kvmha_bmc_address'], h2['kvmha_bmc_port']) == \
        ('198.51.100.12', '198.51.100.72', '198.51.100.132', 623)
    assert h2['kvmha_cluster'] == 'lab' and h2['ansible_python_interpreter'] == '/usr/bin/python3'
    assert f'ControlPath={config.CONTROL_DIR}/%C' in h2['ansible_ssh_common_args']
    for host in HOSTS:
        assert password(host) not in text, 'a BMC password is printed in the inventory'
    assert os.stat(config.secret_file('h1')).st_mode & 0o777 == 0o600


@pytest.mark.parametrize('host', HOSTS)
def test_every_bmc_answers_ipmitool_lanplus(lab, host):
    assert bmc_power(host) == 'on'
    status = lab.status()['hosts'][host]['bmc']
    assert status == {'kind': 'ipmi_sim' if host in IPMI_SIM else 'pyghmi', 'running': True, 'link': 'up'}


@pytest.mark.parametrize('host', ['h1', 'h3'])  # the pyghmi BMC and the ipmi_sim one
def test_fence_ipmilan_reads_the_power_state(lab, host):
    cp = subprocess.run(['fence_ipmilan', '--lanplus', '--cipher=3', '-a', config.bmc_ip(host), '-l', config.BMC_USER,
                         '-p', password(host), '-o', 'status'], capture_output=True, text=True, timeout=60,
                        check=False)
    assert cp.returncode == 0 and 'Status: ON' in cp.stdout, cp.stdout + cp.stderr


def test_pyghmi_client_reads_the_power_state(lab):
    # What the collection's ipmi_power uses; without the BMC's open-session fix it fails (lab/bmc.py, quirks).
    ipmi = Command(bmc=config.bmc_ip('h2'), userid=config.BMC_USER, password=password('h2'))
    assert ipmi.get_power()['powerstate'] == 'on'


def test_ipmitool_refuses_other_cipher_suites(lab):
    cmd = ['ipmitool', '-I', 'lanplus', '-C', '17', '-H', config.bmc_ip('h1'), '-U', config.BMC_USER,
           '-P', password('h1'), 'power', 'status']
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert cp.returncode != 0 and 'no matching cipher suite' in cp.stderr


@pytest.mark.parametrize('host', HOSTS)
def test_guests_run_on_their_host(lab, host):
    assert running_guests(lab, host) == GUESTS[host]


@pytest.mark.parametrize('guest', [g for gs in GUESTS.values() for g in gs])
def test_guest_disk_on_the_store_changes_every_second(lab, guest):
    assert disk_advances(guest)


def test_guest_domain_carries_the_ha_marker(lab):
    rc, out, _err = lab.ssh('h2', 'virsh dumpxml g3')
    assert rc == 0
    assert ('<kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority="50" group=""/>') in out
    assert f"<source file='{config.IMAGES}/g3.img'" in out and "cache='none'" in out


def test_libvirt_uri_works_from_the_controller_without_writing_known_hosts(lab):
    home_ssh = os.path.expanduser('~/.ssh/known_hosts')
    before = os.path.exists(home_ssh)
    conn = libvirt.open(libvirt_uri('h1'))
    try:
        assert sorted(d.name() for d in conn.listAllDomains()) == GUESTS['h1']
    finally:
        conn.close()
    assert os.path.exists(home_ssh) == before


def test_store_is_the_same_path_everywhere(lab):
    marker = f'{config.STORE}/images/.lab-test-marker'
    with open(marker, 'w', encoding='ascii') as f:
        f.write('x')
    try:
        for host in HOSTS:
            assert lab.ssh(host, f'cat {marker}')[1] == 'x'
    finally:
        os.unlink(marker)


def test_status_reports_every_host(lab):
    status = lab.status()
    for host in HOSTS:
        s = status['hosts'][host]
        assert (s['power'], s['mgmt'], s['private'], s['libvirtd'], s['faults']) == ('on', 'up', 'up', 'active', [])
        assert sorted(s['guests']) == GUESTS[host] and set(s['guests'].values()) == {'running'}
        assert s['writer'] == 'not-found'  # no heartbeat writer deployed in this test lab
    assert status['controller'] == {'mgmt': 'up', 'store': 'ok'} and status['cluster_faults'] == []
    json.dumps(status)  # structured data only


def test_second_up_changes_nothing(lab):
    before = lab.status()
    bmc_pids = [bmc_pid(h) for h in HOSTS]
    lab.up(hosts=3, guests=2, ipmi_sim=IPMI_SIM)
    assert lab.status() == before  # same boots (boot ids), guests, faults
    assert [bmc_pid(h) for h in HOSTS] == bmc_pids


def bmc_pid(host):
    with open(config.pid_file(config.bmc_name(host)), encoding='ascii') as f:
        return f.read()
