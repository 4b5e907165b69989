"""The three lab networks: bridges in the controller's namespace, one netns per host (hN) and per BMC (bN).

Every host NIC is a veth pair: the end inside the namespace is the host's "power" (down while it is off or
crashed, because the namespace and its kernel stack outlive the container and would still answer ping), the
bridge end is its "cable" (cut by the partition faults). The two never fight over one link.
No namespace gets a default route: nothing can leave 198.51.100.0/24.
"""

import json
import os

from lab import config
from lab.util import LabError, run

NETNS_DIR = '/run/netns'


def ip(*args, netns=None, check=True):
    cmd = ['ip'] + (['-n', netns] if netns else []) + list(args)
    return run(cmd, timeout=10, check=check)


def links(netns=None):
    """{name: link dict} of `ip -j link` in a namespace (the controller's by default)."""
    out = ip('-j', 'link', 'show', netns=netns).stdout
    return {link['ifname']: link for link in json.loads(out or '[]')}


def addresses(name, netns=None):
    out = ip('-j', 'addr', 'show', 'dev', name, netns=netns).stdout
    return {f"{a['local']}/{a['prefixlen']}" for link in json.loads(out or '[]') for a in link.get('addr_info', [])
            if a.get('family') == 'inet'}


def netns_list():
    return sorted(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else []


def is_up(name, netns=None):
    link = links(netns).get(name)
    return bool(link) and 'UP' in link.get('flags', [])


def set_link(name, up, netns=None, check=True):
    ip('link', 'set', name, 'up' if up else 'down', netns=netns, check=check)


# ---- build (every step checks first, so `up` is idempotent and repairs partial state) ----

def setup(hosts, cut=frozenset()):
    """Build whatever is missing. Cables in `cut` (cut by active faults) are left down: repair heals no fault."""
    _bridges()
    _controller_mgmt_nic(cut)
    _add_address(config.BRIDGES['oob'], f'{config.CONTROLLER_OOB_IP}/{config.PREFIX}')
    for host in hosts:
        _host_netns(host, cut)
        _bmc_netns(host, cut)


def _bridges():
    existing = links()
    for bridge in config.BRIDGES.values():
        if bridge not in existing:
            ip('link', 'add', bridge, 'type', 'bridge')
        set_link(bridge, True)


def _controller_mgmt_nic(cut):
    # A veth rather than an address on the bridge, so that observer-mgmt can cut the controller's cable
    # without stopping the bridge (a bridge that is down forwards nothing between the hosts either).
    _veth(config.CONTROLLER_MGMT_CABLE, config.CONTROLLER_MGMT_IF, None, config.BRIDGES['mgmt'], cut)
    _add_address(config.CONTROLLER_MGMT_IF, f'{config.CONTROLLER_MGMT_IP}/{config.PREFIX}')
    set_link(config.CONTROLLER_MGMT_IF, True)


def _host_netns(host, cut):
    _netns(host)
    cable = config.cables(host)
    for net, nic in config.HOST_NICS.items():
        _veth(cable[net], nic, host, config.BRIDGES[net], cut)
    _add_address(config.HOST_NICS['mgmt'], f'{config.mgmt_ip(host)}/{config.PREFIX}', host)
    _add_address(config.HOST_NICS['priv'], f'{config.priv_ip(host)}/{config.PREFIX}', host)


def _bmc_netns(host, cut):
    bmc = config.bmc_name(host)
    _netns(bmc)
    _veth(config.cables(host)['oob'], config.BMC_NIC, bmc, config.BRIDGES['oob'], cut)
    _add_address(config.BMC_NIC, f'{config.bmc_ip(host)}/{config.PREFIX}', bmc)
    set_link(config.BMC_NIC, True, bmc)


def host_leg(host, cable, nic, network, cidr):
    """One more NIC of a host on a lab network (idempotent): nic in the host, cable on the network's bridge."""
    _veth(cable, nic, host, config.BRIDGES[network], frozenset())
    _add_address(nic, cidr, host)
    set_link(nic, True, host)


def _netns(name):
    if name not in netns_list():
        ip('netns', 'add', name)
    set_link('lo', True, name)


def _veth(cable, inner, netns, bridge, cut):
    """A veth pair: `cable` enslaved to the bridge (up unless cut), `inner` in netns (left as it is)."""
    if cable not in links():
        if inner in links(netns):  # half-made pair from an interrupted run: start over
            ip('link', 'del', inner, netns=netns)
        peer = ['peer', 'name', inner] + (['netns', netns] if netns else [])
        ip('link', 'add', cable, 'type', 'veth', *peer)
    ip('link', 'set', cable, 'master', bridge)
    set_link(cable, cable not in cut)


def _add_address(dev, cidr, netns=None):
    if cidr not in addresses(dev, netns):
        ip('addr', 'add', cidr, 'dev', dev, netns=netns)


# ---- teardown (tolerant: removes whatever of the lab is there) ----

def lab_netns():
    return [n for n in netns_list() if n[:1] in 'hb' and n[1:].isdigit() and 1 <= int(n[1:]) <= config.MAX_HOSTS]


def lab_links():
    return [name for name in links() if name.startswith('kvmha-')]


def teardown():
    # Delete the veths explicitly: measured, `ip netns del` alone can leave a namespace (and its veth)
    # alive while orphaned TCP sockets of killed sessions retransmit over a downed link.
    for name in lab_links():
        if name not in config.BRIDGES.values():
            ip('link', 'del', name, check=False)
    for name in lab_netns():
        ip('netns', 'del', name, check=False)
    for bridge in config.BRIDGES.values():
        ip('link', 'del', bridge, check=False)
    left = lab_links() + lab_netns()
    if left:
        raise LabError(f'network teardown left: {", ".join(left)}')
