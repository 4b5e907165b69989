"""The Pacemaker baseline: a stock Pacemaker + corosync cluster made of the lab's hosts, for benchmarks/rto.py.

What an operator would build with Debian's packages: corosync 3 (knet) on the private network, one
fence_ipmilan device per host (run by the other hosts, `stonith-action=off`), one VirtualDomain resource per
guest (its domain XML on the shared store, preferring its home host). The hosts reach the BMC network through a
fence leg of their own (fence0, 198.51.100.14N on the BMC bridge): the project's controller reaches the BMCs
itself, Pacemaker's fencing runs on the cluster nodes.

Nothing of this runs in a lab that does not ask for it: the daemons are masked in every host (fs.MASKED_UNITS)
until `start` unmasks them in the hosts it clusters, the fence legs exist only between `start` and `lab down`,
and the packages are installed on demand (they are the benchmark's, not the lab's).
"""

import json
import os
import re
import time
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from lab import bmcs, config, container, guests, net
from lab.util import LabError, run, write_text

PACKAGES = ('pacemaker', 'pacemaker-cli-utils', 'corosync', 'resource-agents', 'fence-agents')
UNITS = ('corosync.service', 'pacemaker.service')
FENCE_NIC = 'fence0'
XML_DIR = f'{config.STORE}/pacemaker'  # the guests' domain XML, as VirtualDomain's `config` (same path in hosts)
POLICY_RC_D = '/usr/sbin/policy-rc.d'


def fence_ip(host):
    return f'198.51.100.{140 + config.host_index(host)}'


def fence_cable(host):
    return f'kvmha-f-h{config.host_index(host)}'


def install():
    """Install the baseline's Debian packages if any is missing (the hosts are overlays of this root), with
    scripts/setup.sh's precaution: a policy-rc.d that keeps the packages from starting corosync here."""
    missing = [p for p in PACKAGES if run(['dpkg-query', '-W', '-f=${Status}', p], timeout=30,
                                          check=False).stdout.strip() != 'install ok installed']
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    created = not os.path.exists(POLICY_RC_D)
    if created:
        write_text(POLICY_RC_D, '#!/bin/sh\nexit 101\n', mode=0o755)
    try:
        run(['apt-get', 'update', '-q'], timeout=600, env=env)
        run(['apt-get', 'install', '-y', '-q', '--no-install-recommends', *missing], timeout=900, env=env)
    finally:
        if created:
            os.unlink(POLICY_RC_D)


# ---------------------------------------------------------------------------------------------- configuration

def corosync_conf(hosts, token_ms):
    """corosync.conf: knet on the private network, no crypto (a lab), `token_ms` (None: corosync's default)."""
    token = f'    token: {token_ms}\n' if token_ms else ''
    nodes = ''.join(f'    node {{\n        ring0_addr: {config.priv_ip(h)}\n        name: {h}\n'
                    f'        nodeid: {config.host_index(h)}\n    }}\n' for h in hosts)
    return ('totem {\n    version: 2\n    cluster_name: kvmha-baseline\n    transport: knet\n'
            f'{token}    crypto_cipher: none\n    crypto_hash: none\n}}\n'
            f'nodelist {{\n{nodes}}}\n'
            'quorum {\n    provider: corosync_votequorum\n}\n'
            'logging {\n    to_syslog: yes\n    to_stderr: no\n    timestamp: hires\n}\n')


def _nvpairs(owner, pairs):
    return ''.join(f'<nvpair id={quoteattr(f"{owner}-{k}")} name={quoteattr(k)} value={quoteattr(str(v))}/>'
                   for k, v in pairs.items())


def cib_configuration(hosts, homes):
    """The <configuration> section: properties, a fence device per host, a VirtualDomain per guest ({guest: home})."""
    props = {'stonith-enabled': 'true', 'stonith-action': 'off', 'no-quorum-policy': 'stop',
             'cluster-recheck-interval': '1min'}
    resources, constraints = [], []
    for host in hosts:
        rid = f'fence-{host}'
        attrs = {'ip': config.bmc_ip(host), 'username': config.BMC_USER, 'password': bmcs.controller_password(host),
                 'lanplus': '1', 'pcmk_host_list': host}
        resources.append(f'<primitive id="{rid}" class="stonith" type="fence_ipmilan">'
                         f'<instance_attributes id="{rid}-ia">{_nvpairs(rid, attrs)}</instance_attributes>'
                         f'<operations><op id="{rid}-mon" name="monitor" interval="60s"/></operations></primitive>')
        constraints.append(f'<rsc_location id="{rid}-not-self" rsc="{rid}" node="{host}" score="-INFINITY"/>')
    for guest, home in sorted(homes.items()):
        rid = f'vm-{guest}'
        attrs = {'config': f'{XML_DIR}/{guest}.xml', 'hypervisor': 'qemu:///system'}
        resources.append(f'<primitive id="{rid}" class="ocf" provider="heartbeat" type="VirtualDomain">'
                         f'<instance_attributes id="{rid}-ia">{_nvpairs(rid, attrs)}</instance_attributes>'
                         f'<operations><op id="{rid}-mon" name="monitor" interval="10s" timeout="30s"/>'
                         f'<op id="{rid}-start" name="start" interval="0s" timeout="60s"/>'
                         f'<op id="{rid}-stop" name="stop" interval="0s" timeout="60s"/></operations></primitive>')
        constraints.append(f'<rsc_location id="{rid}-home" rsc="{rid}" node="{home}" score="100"/>')
    return ('<configuration><crm_config><cluster_property_set id="cib-bootstrap-options">'
            f'{_nvpairs("opt", props)}</cluster_property_set></crm_config><nodes/>'
            f'<resources>{"".join(resources)}</resources><constraints>{"".join(constraints)}</constraints>'
            '</configuration>')


# ---------------------------------------------------------------------------------------------- lifecycle

def fence_legs(hosts):
    """Each host's leg on the BMC network (idempotent): fence0 in the host, its cable on the BMC bridge."""
    for host in hosts:
        net.host_leg(host, fence_cable(host), FENCE_NIC, 'oob', f'{fence_ip(host)}/{config.PREFIX}')


def write_domains(record_guests):
    for name, guest in record_guests.items():
        write_text(f'{XML_DIR}/{name}.xml', guests.domain_xml(name, guest))


def _sh(host, script, timeout=60):
    return container.execute(host, ['sh', '-c', script], timeout=timeout)


def start(hosts, record_guests, token_ms=1000, timeout=180):
    """Cluster `hosts` (all running, every guest at home) from scratch; return once every guest's resource runs at
    home and the cluster is idle. token_ms None: corosync's default token."""
    install()
    fence_legs(hosts)
    write_domains(record_guests)
    homes = {name: guest['host'] for name, guest in record_guests.items()}
    conf = corosync_conf(hosts, token_ms)
    for host in hosts:
        container.execute(host, ['sh', '-c', 'cat > /etc/corosync/corosync.conf'], input=conf)
        _sh(host, 'rm -f /var/lib/pacemaker/cib/cib* && systemctl unmask ' + ' '.join(UNITS))
    for host in hosts:
        _sh(host, 'systemctl start --no-block pacemaker.service')
    deadline = time.monotonic() + timeout
    # The configuration goes in once a DC is elected: before, a node's own CIB can lose to the DC's at the join.
    _wait(lambda: (snapshot(hosts[0]) or {}).get('dc'), deadline, 'a DC to be elected')
    container.execute(hosts[0], ['cibadmin', '--replace', '--scope', 'configuration', '--xml-pipe'],
                      input=cib_configuration(hosts, homes), timeout=30)
    wait_home(hosts, homes, deadline - time.monotonic())


def wait_home(hosts, homes, timeout):
    """Wait until every node is online, every guest's resource runs on its home host, and nothing is pending."""
    deadline = time.monotonic() + timeout
    observer = hosts[-1]

    def home():
        seen = snapshot(observer)
        return seen and seen['online'] >= set(hosts) and all(
            seen['resources'].get(f'vm-{g}') == [h] for g, h in homes.items())

    _wait(home, deadline, 'every node online and every guest at home')
    settle(observer, max(5, deadline - time.monotonic()))


def _wait(predicate, deadline, what):
    while not predicate():
        if time.monotonic() > deadline:
            raise LabError(f'pacemaker baseline: timed out waiting for {what}')
        time.sleep(0.5)


def settle(host, timeout):
    """Wait until the cluster has nothing left to do (crm_resource --wait), as seen from host."""
    container.execute(host, ['crm_resource', '--wait', f'--timeout={int(timeout)}s'], timeout=timeout + 5)


def snapshot(host):
    """What crm_mon shows on host: {'dc', 'online': {node}, 'resources': {id: [node, ...]}}, or None."""
    result = container.execute(host, ['crm_mon', '-1', '--output-as=xml'], check=False, timeout=10)
    return parse_crm_mon(result.stdout) if result.returncode == 0 else None


def parse_crm_mon(text):
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    dc = root.find('./summary/current_dc')
    return {
        'dc': dc.get('name') if dc is not None and dc.get('present') == 'true' else None,
        'online': {n.get('name') for n in root.iterfind('./nodes/node') if n.get('online') == 'true'},
        'resources': {r.get('id'): [n.get('name') for n in r.iterfind('node')]
                      for r in root.iterfind('./resources/resource') if r.get('active') == 'true'},
    }


# ---------------------------------------------------------------------------------------------- an incident

# What the survivors' journals say, in Pacemaker 2.1's words, about the loss of a node.
MARKS = {
    'declared': r'Node {node} state is now lost',
    'fence_requested': r'Requesting fencing \(\w+\) (?:of|targeting) node {node}\b',
    'fenced': r'Peer {node} was terminated \(\w+\) by \S+ .*: OK',
    'start_initiated': r'Initiating start operation vm-\S+_start_0',
}
STARTED = re.compile(r'Result of start operation for vm-(\S+) on \S+: ok')


def incident_marks(entries, node):
    """From journal entries [(epoch seconds, message)] of the survivors: the first time of each mark and
    {guest: time its start returned ok}. Marks absent from the entries are absent from the result."""
    patterns = {mark: re.compile(p.format(node=re.escape(node))) for mark, p in MARKS.items()}
    marks, started = {}, {}
    for when, message in sorted(entries):
        for mark, pattern in patterns.items():
            after_fence = mark != 'start_initiated' or 'fenced' in marks
            if mark not in marks and after_fence and pattern.search(message):
                marks[mark] = when
        found = STARTED.search(message)
        if found and 'fenced' in marks:  # starts before the fence are the cluster's start-up, not the recovery
            started.setdefault(found.group(1), when)
    return marks, started


def journal(host, since):
    """[(epoch seconds, message)] of host's journal since the epoch time `since`."""
    out = container.execute(host, ['journalctl', '-o', 'json', '--no-pager', f'--since=@{int(since)}'],
                            check=False, timeout=30).stdout
    entries = []
    for line in out.splitlines():
        try:
            entry = json.loads(line)
            entries.append((int(entry['__REALTIME_TIMESTAMP']) / 1e6, str(entry.get('MESSAGE', ''))))
        except (ValueError, KeyError, TypeError):
            continue  # a message journald stored as bytes, or a torn line
    return entries
