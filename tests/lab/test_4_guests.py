"""Guests added, changed and removed through the API (placement tests need priorities and groups)."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import disk_advances, running_guests
from lab import LabError, config, guests

MARKER = '<kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority="{p}" group="{g}"/>'


def dumpxml(lab, host, guest, inactive=False):
    rc, out, _err = lab.ssh(host, f'virsh dumpxml {"--inactive " if inactive else ""}{guest}')
    assert rc == 0
    return out


def test_add_change_and_remove_a_guest(lab):
    lab.guest_add('web1', 'h1', priority=90, group='web')
    try:
        assert 'web1' in running_guests(lab, 'h1')
        assert MARKER.format(p=90, g='web') in dumpxml(lab, 'h1', 'web1')
        assert disk_advances('web1')
        assert lab.status()['guests']['web1'] == {'host': 'h1', 'priority': 90, 'group': 'web', 'ha': True}

        lab.guest_set('web1', priority=10, group='')
        for inactive in (False, True):  # the running domain and its persistent definition
            assert MARKER.format(p=10, g='') in dumpxml(lab, 'h1', 'web1', inactive)
        lab.guest_set('web1', ha=False)
        assert 'kvmha:ha' not in dumpxml(lab, 'h1', 'web1')
    finally:
        lab.guest_remove('web1')
    assert 'web1' not in lab.ssh('h1', 'virsh list --all --name')[1].split()
    assert not os.path.exists(f'{config.IMAGES}/web1.img')
    assert 'web1' not in lab.status()['guests']


@pytest.mark.parametrize('call, message', [
    (lambda lab: lab.guest_add('g1', 'h1'), 'exists'),
    (lambda lab: lab.guest_add('Bad_Name', 'h1'), 'bad guest name'),
    (lambda lab: lab.guest_add('x1', 'h1', priority=101), 'bad priority'),
    (lambda lab: lab.guest_add('x1', 'h1', group='a b'), 'bad group'),
    (lambda lab: lab.guest_add('x1', 'h7'), 'unknown host'),
    (lambda lab: lab.guest_set('nope', priority=1), 'unknown guest'),
    (lambda lab: lab.guest_remove('nope'), 'unknown guest'),
])
def test_bad_guest_requests_change_nothing(lab, call, message):
    before = lab.status()
    with pytest.raises(LabError, match=message):
        call(lab)
    assert lab.status() == before


def test_hosts_brought_up_at_once_all_read_a_whole_boot_sector(lab):
    # `up` provisions the hosts in parallel, each assembling the boot sector if it is missing: none may read it
    # half-written (a zeroed disk's guest never boots).
    os.unlink(f'{config.RUN}/guest_boot.bin')
    with ThreadPoolExecutor(8) as pool:
        sectors = list(pool.map(lambda _: guests.boot_sector(), range(64)))
    assert {len(s) for s in sectors} == {512} and len(set(sectors)) == 1 and sectors[0].endswith(b'\x55\xaa')
    assert not [name for name in os.listdir(config.RUN) if name.startswith('guest_boot.bin.')]
