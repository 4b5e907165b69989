"""The lab's Python API: what the CLI (lab/__main__.py) and the end-to-end tests call.

    from lab import Lab, LabError
    lab = Lab()
    lab.up(hosts=3, guests=2, ipmi_sim=['h3'])
    lab.power('h1', 'crash')            # on | off | crash | hang | reboot | soft | status
    lab.fault('h2', 'partition-mgmt')   # lab.fault(None, 'store-outage') for cluster-wide faults
    lab.heal('h2')                      # heal(host, name), heal(None, name), heal() = everything
    rc, out, err = lab.ssh('h1', 'virsh list')
    lab.status()                        # structured: see status()
    lab.down()

Every call checks its input before it changes anything and raises LabError with a clear message.
Mutating calls hold a global lock, so concurrent callers (tests, CLI) are serialised.
"""

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

from lab import bmcs, cgroups, config, container, faults, fs, guests, inventory, net, power, state, store
from lab.util import LabError, is_mountpoint, locked, mounts_under, read_text, remove, run, wait_until

POWER_ACTIONS = ('on', 'off', 'crash', 'hang', 'reboot', 'soft', 'status')
SSH_TIMEOUT_RC = 124  # what lab.ssh returns when the command did not finish in time (like coreutils timeout)
SSH_OPTIONS = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
               '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=2', '-o', 'ServerAliveInterval=1',
               '-o', 'ServerAliveCountMax=2']
# Commands the lab runs, and the Debian package each comes from (checked by `up` before it changes anything).
REQUIRED = {'ip': 'iproute2', 'systemd-nspawn': 'systemd-container', 'nsenter': 'util-linux',
            'setsid': 'util-linux', 'ssh': 'openssh-client', 'ssh-keygen': 'openssh-client',
            '/usr/sbin/sshd': 'openssh-server', '/usr/lib/openssh/sftp-server': 'openssh-sftp-server',
            '/usr/sbin/libvirtd': 'libvirt-daemon', 'virsh': 'libvirt-clients',
            '/usr/lib/python3/dist-packages/libvirt.py': 'python3-libvirt',
            'qemu-system-x86_64': 'qemu-system-x86', 'ipmitool': 'ipmitool', 'ipmi_sim': 'openipmi',
            'sshfs': 'sshfs', config.FAKETIME_LIB: 'faketime', 'nasm': 'nasm'}


def missing_packages():
    """Debian packages whose commands or files the lab needs and cannot find."""
    def present(item):
        return os.path.exists(item) if item.startswith('/') else shutil.which(item) is not None
    return sorted({package for item, package in REQUIRED.items() if not present(item)})


def _require_root():
    if os.geteuid() != 0:
        raise LabError('the lab needs root (network namespaces, cgroups, mounts)')


class Lab:
    """One lab on this machine (there is only one: its paths and addresses are fixed)."""

    # ---- lifecycle ----

    def up(self, hosts=config.DEFAULT_HOSTS, guests=config.DEFAULT_GUESTS, ipmi_sim=()):
        """Build or repair the lab; a second call changes nothing. Returns the record."""
        _require_root()
        names = self._check_shape(hosts, guests, ipmi_sim)
        missing = missing_packages()
        if missing:
            raise LabError(f'missing Debian packages: {" ".join(missing)} (run `make setup` as root)')
        with locked(config.GLOBAL_LOCK, timeout=120):
            record = self._existing_or_new(names, guests, sorted(ipmi_sim))
            fs.mount_lab_root()
            fs.ssh_keypair()
            state.save(record)  # from here on, `down` and a repeated `up` know the lab's shape
            net.setup(names, cut=faults.cut_cables(record))
            with ThreadPoolExecutor(max_workers=2 * len(names)) as pool:
                for result in [pool.submit(self._host_up, h, record) for h in names] + \
                              [pool.submit(bmcs.start, h, h in record['ipmi_sim']) for h in names]:
                    result.result()
            faults.prune(record)
            inventory.write(names)
            state.save(record)
            return record

    @staticmethod
    def _check_shape(hosts, guests, ipmi_sim):
        if not isinstance(hosts, int) or not 1 <= hosts <= config.MAX_HOSTS:
            raise LabError(f'--hosts must be 1..{config.MAX_HOSTS}')
        if not isinstance(guests, int) or not 0 <= guests <= 20:
            raise LabError('--guests must be 0..20 per host')
        names = [config.host_name(n) for n in range(1, hosts + 1)]
        unknown = [h for h in ipmi_sim if h not in names]
        if unknown:
            raise LabError(f'--ipmi-sim: no such host {", ".join(unknown)} (hosts: {", ".join(names)})')
        return names

    @staticmethod
    def _existing_or_new(names, per_host, ipmi_sim):
        record = state.load()
        if record is None:
            record = state.new(names, per_host, ipmi_sim)
            record['guests'] = {name: guests.new_guest(host) for name, host in
                                guests.default_names(names, per_host).items()}
            record['provisioned'] = []
            return record
        shape = (record['hosts'], record['guests_per_host'], record['ipmi_sim'])
        if shape != (names, per_host, ipmi_sim):
            raise LabError(f'the lab is up with {len(record["hosts"])} hosts, {record["guests_per_host"]} guests '
                           f'per host, ipmi_sim on {record["ipmi_sim"] or "none"}; run `lab down` first')
        return record

    def _host_up(self, host, record):
        fs.prepare_host(host, record['hosts'])
        if power.status(host) == 'off':
            power.on(host)
        if power.state(host) != 'on':
            return  # crashed or hung on purpose: `up` repairs, it does not heal
        container.wait_booted(host)
        if host not in record['provisioned']:
            mine = {name: g for name, g in record['guests'].items() if g['host'] == host}
            guests.provision(host, mine)
            record['provisioned'].append(host)
        cut = faults.cut_cables(record)
        if not {config.cables(host)['mgmt'], config.CONTROLLER_MGMT_CABLE} & cut:  # else SSH cannot answer
            self._wait_ssh(host)

    @staticmethod
    def _wait_ssh(host):
        if not wait_until(lambda: ssh_banner(host), 30, 0.1):
            raise LabError(f'{host}: sshd does not answer on {config.mgmt_ip(host)}')

    def down(self):
        """Remove everything the lab made; tolerant of partial state; verifies that nothing is left."""
        _require_root()
        with locked(config.GLOBAL_LOCK, timeout=120):
            _close_ssh_masters()
            for tag in [config.host_name(n) for n in range(1, config.MAX_HOSTS + 1)] + ['controller']:
                store.cleanup(tag)
            for n in range(1, config.MAX_HOSTS + 1):
                host = config.host_name(n)
                bmcs.stop(host)
                _kill_netns_processes(config.bmc_name(host))
                power.off(host)
            cgroups.remove_all()
            fs.unmount_all()
            net.teardown()
            _remove_empty_netns_dir()
        for lock in _lock_files():
            remove(lock)
        left = leftovers()
        if left:
            raise LabError('lab down left: ' + '; '.join(left))

    # ---- power and faults ----

    def power(self, host, action):
        """Power action on host; returns the host's state afterwards (off, on, crashed, hung)."""
        _require_root()
        self._require_host(host)
        if action not in POWER_ACTIONS:
            raise LabError(f'unknown power action {action!r}; actions: {", ".join(POWER_ACTIONS)}')
        if action != 'status':
            {'on': power.on, 'off': power.off, 'crash': power.crash, 'hang': power.hang,
             'reboot': power.reboot, 'soft': power.shutdown}[action](host)
        return power.state(host)

    def fault(self, host, name, arg=None):
        """Inject fault name on host (None for cluster-wide faults). Injecting an active fault is a no-op."""
        _require_root()
        if host is not None:
            self._require_host(host)
        with self._record() as record:
            faults.inject(record, name, host, arg)  # validates name, target and arg before changing anything

    def heal(self, host=None, name=None):
        """Heal one fault (host, name), all of a host's (host), a cluster fault (None, name), or all (no args)."""
        _require_root()
        if host is not None:
            self._require_host(host)
        with self._record() as record:
            if name:
                faults.heal(record, name, host)
            else:
                faults.heal_all(record, host)

    # ---- looking ----

    def status(self):
        """{'hosts': {hN: {...}}, 'cluster_faults': [...], 'controller': {...}} of the running lab."""
        _require_root()
        with self._record() as record:
            with ThreadPoolExecutor(max_workers=len(record['hosts'])) as pool:
                hosts = dict(zip(record['hosts'], pool.map(lambda h: _host_status(h, record), record['hosts'])))
            cut = faults.cut_cables(record)
            return {'hosts': hosts, 'cluster_faults': sorted(record['cluster_faults']),
                    'controller': {'mgmt': 'cut' if config.CONTROLLER_MGMT_CABLE in cut else 'up',
                                   'store': 'dead' if 'observer-store' in record['cluster_faults'] else 'ok'},
                    'guests': record['guests']}

    def ssh(self, host, cmd, timeout=30):
        """Run cmd (a string, or a list to be quoted) on host over SSH as root: (rc, stdout, stderr).

        rc is 255 when SSH itself fails (e.g. the host is unreachable) and 124 on timeout.
        """
        _require_root()  # the lab key is root's
        self._require_host(host)
        command = cmd if isinstance(cmd, str) else shlex.join(cmd)
        argv = ['ssh', '-i', config.SSH_KEY] + SSH_OPTIONS + [f'root@{config.mgmt_ip(host)}', command]
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                check=False)
        except subprocess.TimeoutExpired as e:
            return SSH_TIMEOUT_RC, _text(e.stdout), _text(e.stderr) + f'\nlab ssh: timed out after {timeout} s'
        return cp.returncode, cp.stdout, cp.stderr

    def inventory(self):
        """The YAML inventory text (also written to inventory_path())."""
        _require_root()
        return inventory.write(self._loaded()['hosts'])

    @staticmethod
    def inventory_path():
        return config.INVENTORY

    def hosts(self):
        return list(self._loaded()['hosts'])

    # ---- guests ----

    @staticmethod
    def guest_copies():
        """{guest: [host, ...]}: where each guest's qemu process runs (frozen hosts included)."""
        return guests.copies()

    def guest_add(self, name, host, priority=guests.DEFAULT_PRIORITY, group='', ha=True):
        """Create guest name on host (disk on the store, defined and started there)."""
        _require_root()
        self._require_host(host)
        guests.validate(name, priority, group)
        with self._record() as record:
            if name in record['guests']:
                raise LabError(f'guest {name} exists')
            if power.state(host) != 'on':
                raise LabError(f'{host} is {power.state(host)}')
            guest = guests.new_guest(host, priority, group, ha)
            guests.provision(host, {name: guest})
            record['guests'][name] = guest

    def guest_remove(self, name):
        """Destroy and undefine guest name on every running host, and delete its disk."""
        _require_root()
        with self._record() as record:
            self._require_guest(record, name)
            for host in _running_hosts(record):
                guests.libvirt_call(host, remove=[name])
            guests.remove_image(name)
            del record['guests'][name]

    def guest_set(self, name, priority=None, group=None, ha=None):
        """Change a guest's HA marker (live and persistent) wherever it is defined."""
        _require_root()
        with self._record() as record:
            guest = dict(self._require_guest(record, name))
            guest.update({k: v for k, v in (('priority', priority), ('group', group), ('ha', ha)) if v is not None})
            guests.validate(name, guest['priority'], guest['group'])
            item = {'name': name, 'element': guests.ha_element(guest)}
            for host in _running_hosts(record):
                guests.libvirt_call(host, metadata=[item])
            record['guests'][name] = guest

    # ---- helpers ----

    @staticmethod
    def _loaded():
        record = state.load()
        if record is None:
            raise LabError('the lab is not up (run `lab up`)')
        return record

    def _require_host(self, host):
        hosts = self._loaded()['hosts']
        if host not in hosts:
            raise LabError(f'unknown host {host!r}; hosts: {", ".join(hosts)}')

    @staticmethod
    def _require_guest(record, name):
        if name not in record['guests']:
            raise LabError(f'unknown guest {name!r}; guests: {", ".join(record["guests"]) or "none"}')
        return record['guests'][name]

    @contextlib.contextmanager
    def _record(self):
        """The lab record under the global lock, pruned of ended faults, saved afterwards."""
        with locked(config.GLOBAL_LOCK, timeout=120):
            record = self._loaded()
            faults.prune(record)
            try:
                yield record
            finally:
                state.save(record)


# ---- module helpers ----

def _text(data):
    return data.decode(errors='replace') if isinstance(data, bytes) else (data or '')


def ssh_banner(host):
    """True once sshd on the host sends its banner (a TCP connect alone is answered even by a hung kernel)."""
    try:
        with socket.create_connection((config.mgmt_ip(host), 22), timeout=1) as s:
            s.settimeout(1)
            return s.recv(4).startswith(b'SSH-')
    except OSError:
        return False


def _running_hosts(record):
    return [h for h in record['hosts'] if power.state(h) == 'on' and container.leader(h)]


def _host_status(host, record):
    cables = config.cables(host)
    cut = faults.cut_cables(record)
    info = {'power': power.state(host), 'boot_id': container.boot_id(host),
            'mgmt': 'cut' if cables['mgmt'] in cut else 'up', 'private': 'cut' if cables['priv'] in cut else 'up',
            'bmc': {'kind': 'ipmi_sim' if host in record['ipmi_sim'] else 'pyghmi',
                    'running': bmcs.running(host), 'link': 'cut' if cables['oob'] in cut else 'up'},
            'libvirtd': None, 'writer': None, 'guests': None, 'faults': faults.active_names(record, host)}
    if info['power'] == 'on' and container.leader(host):
        info.update(_inside_status(host))
    return info


def _inside_status(host):
    """libvirtd, writer and guests, asked inside the host (not over SSH: works when partitioned)."""
    script = (f'systemctl is-active libvirtd.service libvirtd.socket; '
              f'systemctl show -p LoadState -p ActiveState --value {config.HEARTBEAT_UNIT}')
    try:
        lines = container.execute(host, ['sh', '-c', script], check=False).stdout.split()
    except LabError:
        return {}
    service, socket_state, load, active = (lines + ['unknown'] * 4)[:4]
    libvirtd = 'active' if service == 'active' else 'socket' if socket_state == 'active' else 'stopped'
    writer = active if load == 'loaded' else load
    found = None
    if libvirtd != 'stopped':
        with contextlib.suppress(LabError, ValueError):
            found = {name: d['state'] for name, d in guests.libvirt_call(host, timeout=15).items()}
    return {'libvirtd': libvirtd, 'writer': writer, 'guests': found}


def _lock_files():
    return [config.GLOBAL_LOCK] + [power.lock_file(config.host_name(n)) for n in range(1, config.MAX_HOSTS + 1)]


def _close_ssh_masters():
    if not os.path.isdir(config.CONTROL_DIR):
        return
    for sock in os.listdir(config.CONTROL_DIR):
        run(['ssh', '-o', f'ControlPath={config.CONTROL_DIR}/{sock}', '-O', 'exit', 'lab'], timeout=5, check=False)


def _kill_netns_processes(netns):
    """Kill whatever still runs in a lab namespace (e.g. a BMC whose pid file is gone)."""
    if netns not in net.netns_list():
        return
    for pid in run(['ip', 'netns', 'pids', netns], timeout=5, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _remove_empty_netns_dir():
    # `ip netns add` created /run/netns (a mount point of itself); leave the machine as we found it.
    if os.path.isdir(net.NETNS_DIR) and not os.listdir(net.NETNS_DIR):
        if is_mountpoint(net.NETNS_DIR):
            run(['umount', net.NETNS_DIR], timeout=10)
        with contextlib.suppress(OSError):
            os.rmdir(net.NETNS_DIR)


LAB_PROCESS_MARKS = (config.ROOT, 'lab.supervisor', '--lab-host', 'systemd-nspawn --boot')


def lab_processes():
    """Processes that belong to a lab: their command line names the lab root, a supervisor, a lab BMC."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        cmdline = read_text(f'/proc/{pid}/cmdline', '').replace('\0', ' ')
        if int(pid) != os.getpid() and any(mark in cmdline for mark in LAB_PROCESS_MARKS):
            found.append(f'{pid} {cmdline[:80]}')
    return found


def leftovers():
    """What of a lab is still on this machine (empty after a clean `down`)."""
    left = [f'netns {n}' for n in net.lab_netns()] + [f'link {n}' for n in net.lab_links()]
    left += [f'cgroup {p}' for p in cgroups.leftovers()]
    left += [f'mount {m}' for m in mounts_under(config.ROOT) + mounts_under(config.NSPAWN_RUN)]
    left += [f'file {p}' for p in (config.ROOT, config.NSPAWN_RUN, *_lock_files()) if os.path.exists(p)]
    left += [f'process {p}' for p in lab_processes()]
    return left
