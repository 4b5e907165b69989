"""Repair and teardown (last: it takes the lab down and up again, then down)."""

import os
import signal
import subprocess
import sys

from conftest import HOSTS, IPMI_SIM, REPO, bmc_power, neighbour_pings, ping, ssh_banner, wait_for
from lab import config, net, pacemaker
from lab.api import leftovers


def assert_lab_works(lab):
    for host in HOSTS:
        assert wait_for(lambda: ssh_banner(config.mgmt_ip(host)), 30), host
        assert bmc_power(host) == 'on'
    assert neighbour_pings(lab, 'h1', config.priv_ip('h3'))


def test_up_repairs_a_half_broken_lab(lab):
    os.kill(int(open(config.pid_file('b1'), encoding='ascii').read()), signal.SIGKILL)
    lab.power('h2', 'off')
    net.set_link(config.cables('h3')['priv'], False)   # a cable down that no fault accounts for
    net.ip('link', 'del', config.CONTROLLER_MGMT_IF)   # and the controller's management NIC gone
    lab.up(hosts=3, guests=2, ipmi_sim=IPMI_SIM)
    assert_lab_works(lab)


def test_up_completes_after_the_cli_was_killed_midway(lab):
    lab.down()
    up = subprocess.Popen([sys.executable, '-m', 'lab', 'up', '--ipmi-sim', *IPMI_SIM], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.exists(config.pid_file('h1.supervisor')), 30)
    finally:
        up.kill()
        up.wait(timeout=10)
    lab.up(hosts=3, guests=2, ipmi_sim=IPMI_SIM)
    assert_lab_works(lab)
    assert all(s['guests'] and set(s['guests'].values()) == {'running'} for s in lab.status()['hosts'].values())


def test_the_pacemaker_baselines_fence_leg_reaches_the_bmcs_and_goes_with_the_lab(lab):
    assert not ping(config.bmc_ip('h1'), 'h2')  # a host has no way to the BMC network of its own
    pacemaker.fence_legs(['h2'])
    pacemaker.fence_legs(['h2'])  # a second time changes nothing
    assert net.addresses(pacemaker.FENCE_NIC, 'h2') == {f'{pacemaker.fence_ip("h2")}/{config.PREFIX}'}
    assert ping(config.bmc_ip('h1'), 'h2') and ping(config.bmc_ip('h3'), 'h2')
    assert pacemaker.fence_cable('h2') in net.lab_links()  # so `down` (next) removes it with the rest


def test_down_leaves_nothing_and_twice_is_fine(lab):
    lab.down()
    assert leftovers() == []
    lab.down()
    assert leftovers() == []
