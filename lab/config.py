"""Names, paths and the address plan of the lab. Everything here is part of the contract in docs/LAB.md."""

import os
import re
import sys

ROOT = '/var/lib/kvmha-lab'               # tmpfs: `lab down` unmounts it and everything is gone
STORE = f'{ROOT}/store'                   # the shared store, same path on the controller and in every host
STORE_DATA = f'{ROOT}/.store'             # the store's real directory (see hostfs.py: why two paths)
IMAGES = f'{STORE}/images'
SSH_DIR = f'{ROOT}/ssh'
SSH_KEY = f'{SSH_DIR}/id_ed25519'
CONTROL_DIR = f'{SSH_DIR}/cp'             # ansible ControlPath sockets, closed by `lab down`
SECRETS = f'{ROOT}/secrets'               # the BMC passwords as the controller knows them (inventory)
BMC_DIR = f'{ROOT}/bmc'                   # each BMC's own state: password, ipmi_sim config
PKI = f'{ROOT}/pki'                       # the lab CA (ca.pem) and each BMC's Redfish server certificate
RUN = f'{ROOT}/run'                       # pid files, locks, logs
HOSTS_DIR = f'{ROOT}/hosts'               # per host: upper/, work/, merged/ of the overlay
STATE_FILE = f'{ROOT}/lab.json'
INVENTORY = f'{ROOT}/inventory.yml'
CONTROLLER_NETNS = f'{RUN}/controller.netns'  # handle on the controller's netns (see power.py)
NSPAWN_RUN = '/run/systemd/nspawn'        # nspawn needs it on tmpfs; /run is on disk here
GLOBAL_LOCK = '/tmp/kvmha-lab.lock'       # outside ROOT, because ROOT comes and goes
CGROUP_FS = '/sys/fs/cgroup'
CGROUP_HIERARCHIES = ('freezer', 'systemd', 'unified')
CGROUP_PARENT = 'kvmha-lab'

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # cwd for `python -m lab...` children
PYTHON = sys.executable

MAX_HOSTS = 9
DEFAULT_HOSTS = 3
DEFAULT_GUESTS = 2
BMC_USER = 'admin'
BMC_PORT = 623
REDFISH_PORT = 443  # the pyghmi BMCs' Redfish face (HTTPS, lab/redfish.py); ipmi_sim BMCs have none

BRIDGES = {'mgmt': 'kvmha-mgmt', 'priv': 'kvmha-priv', 'oob': 'kvmha-oob'}
CONTROLLER_MGMT_IP = '198.51.100.1'
CONTROLLER_OOB_IP = '198.51.100.129'
PREFIX = 26
# The controller's management "NIC": a veth whose bridge end is its cable (fault observer-mgmt).
CONTROLLER_MGMT_IF = 'kvmha-ctl'
CONTROLLER_MGMT_CABLE = 'kvmha-c-ctl'

HA_NAMESPACE = 'http://kvmha.invalid/xmlns/ha/1'
HA_PREFIX = 'kvmha'
HEARTBEAT_UNIT = 'kvmha-heartbeat.service'
FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'
HOST_PYTHON = '/usr/bin/python3'

HOST_RE = re.compile(r'^h([1-9])$')
GUEST_RE = re.compile(r'^[a-z][a-z0-9-]{0,30}$')

# Debian packages the lab needs on the controller (the hosts are overlays of it).
PACKAGES = ('iproute2', 'openssh-server', 'openssh-client', 'ipmitool', 'libvirt-daemon-system',
            'libvirt-daemon-driver-qemu', 'libvirt-clients', 'python3-libvirt', 'qemu-system-x86',
            'systemd-container', 'openipmi', 'fence-agents', 'sshfs', 'faketime', 'nasm', 'util-linux')


def host_index(host):
    return int(HOST_RE.match(host).group(1))


def host_name(n):
    return f'h{n}'


def bmc_name(host):
    return f'b{host_index(host)}'


def mgmt_ip(host):
    return f'198.51.100.{10 + host_index(host)}'


def priv_ip(host):
    return f'198.51.100.{70 + host_index(host)}'


def bmc_ip(host):
    return f'198.51.100.{130 + host_index(host)}'


def cables(host):
    """Bridge-side veth ends (the cables that faults cut), keyed by network."""
    n = host_index(host)
    return {'mgmt': f'kvmha-m-h{n}', 'priv': f'kvmha-p-h{n}', 'oob': f'kvmha-o-b{n}'}


# Inside the host and BMC namespaces. The host's inner links are its power: down when it is off/crashed.
HOST_NICS = {'mgmt': 'mgmt0', 'priv': 'priv0'}
BMC_NIC = 'oob0'


def host_dir(host):
    return f'{HOSTS_DIR}/{host}'


def secret_file(host):
    return f'{SECRETS}/{bmc_name(host)}.password'


def bmc_password_file(host):
    return f'{BMC_DIR}/{bmc_name(host)}/password'


def bmc_slow_file(host):
    """Present while the bmc-slow fault is active: how many milliseconds the BMC waits before each power request."""
    return f'{BMC_DIR}/{bmc_name(host)}/slow-ms'


def bmc_power_restore_file(host):
    """Present while the bmc-power-restore fault is active: how many off reads the BMC gives before it powers on."""
    return f'{BMC_DIR}/{bmc_name(host)}/power-restore'


def pid_file(name):
    return f'{RUN}/{name}.pid'


def log_file(name):
    return f'{RUN}/{name}.log'
