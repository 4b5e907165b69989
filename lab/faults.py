"""Fault injection: each fault breaks exactly one thing, and heal undoes exactly that.

Faults are recorded in the lab record (state.py) and their effect is derived from the set of active faults,
so overlapping faults compose: the management cable of h1 is down while partition-mgmt *or* partition is
active, and healing one of them leaves it down if the other remains.

Three kinds, by how long they last:
* world faults (cables, BMCs, the controller's view): outside the host, they survive its reboots;
* host-boot faults (store, writer, libvirtd, clock): inside the host; a reboot or power cycle ends them, as
  it would on real hardware, and the record forgets them (each remembers the boot id it was made in);
* store-outage: every running host's store hangs at once (hosts that boot later get a working store).
"""

import re
import secrets
from dataclasses import dataclass

from lab import bmcs, config, container, net, power, store
from lab.util import LabError, remove, write_text

UNIT = config.HEARTBEAT_UNIT
DROPIN_DIR = f'/run/systemd/system/{UNIT}.d'
LIBVIRTD_UNITS = ('libvirtd.service', 'libvirtd.socket', 'libvirtd-ro.socket', 'libvirtd-admin.socket')
SKEW_RE = re.compile(r'^[+-]?\d{1,9}$')


@dataclass(frozen=True)
class Fault:
    name: str
    scope: str            # 'host' (needs hN) or 'cluster' (no host)
    boot: bool = False    # ends with the host's boot
    takes_arg: bool = False
    doc: str = ''


FAULTS = {f.name: f for f in (
    Fault('partition-mgmt', 'host', doc='cut the management cable: no SSH; private network and BMC still answer'),
    Fault('partition-private', 'host', doc='cut the private/storage cable: neighbours cannot ping it'),
    Fault('partition', 'host', doc='cut both cables (the BMC still answers)'),
    Fault('bmc-unreachable', 'host', doc="cut the BMC's cable"),
    Fault('bmc-wrong-password', 'host', doc="change the BMC's password (the inventory keeps the old one)"),
    Fault('bmc-slow', 'host', takes_arg=True,
          doc='the BMC answers every power read and command ARG milliseconds late, on both faces (pyghmi BMC only)'),
    Fault('bmc-power-restore', 'host', takes_arg=True,
          doc='after a power off the chassis answers off ARG times, then switches itself back on (pyghmi BMC only)'),
    Fault('store-readonly', 'host', boot=True, doc='new writes to the store fail with EROFS in the host'),
    Fault('store-hang', 'host', boot=True, doc='every new store access in the host blocks'),
    Fault('writer-stop', 'host', boot=True, doc=f'systemctl stop {UNIT} (graceful)'),
    Fault('writer-kill', 'host', boot=True, doc=f'SIGKILL {UNIT}, and no restart until healed'),
    Fault('libvirtd-stop', 'host', boot=True, doc='stop libvirtd and its sockets (guests keep running)'),
    Fault('clock-skew', 'host', boot=True, takes_arg=True, doc=f'{UNIT} sees the clock shifted by ARG seconds'),
    Fault('store-outage', 'cluster', doc="every running host's store hangs"),
    Fault('observer-store', 'cluster', doc="the controller's view of the store fails (ENOTCONN)"),
    Fault('observer-mgmt', 'cluster', doc="cut the controller's management cable"),
)}

# Faults the pyghmi BMC reads from a file of its own: its value is the fault's argument.
BMC_FILES = {'bmc-power-restore': config.bmc_power_restore_file, 'bmc-slow': config.bmc_slow_file}

CABLE_FAULTS = {'partition-mgmt': ('mgmt',), 'partition-private': ('priv',), 'partition': ('mgmt', 'priv'),
                'bmc-unreachable': ('oob',)}


def get(name):
    if name not in FAULTS:
        raise LabError(f'unknown fault {name!r}; faults: {", ".join(FAULTS)}')
    return FAULTS[name]


def lookup(name, host):
    """The Fault called name, checked against the target (a host or none) before anything changes."""
    fault = get(name)
    if fault.scope == 'host' and not host:
        raise LabError(f'{name} needs a host (lab fault {name} hN)')
    if fault.scope == 'cluster' and host:
        raise LabError(f'{name} is cluster-wide: no host (lab fault {name})')
    return fault


def check_arg(fault, arg):
    if fault.takes_arg and (arg is None or not SKEW_RE.match(str(arg))):
        raise LabError(f'{fault.name} needs a whole number, e.g. `lab fault {fault.name} h1 120` ({fault.doc})')
    if not fault.takes_arg and arg is not None:
        raise LabError(f'{fault.name} takes no argument')


# ---- what the active faults add up to ----

def cut_cables(record):
    cut = {config.cables(host)[n] for host, active in record['faults'].items()
           for name in active for n in CABLE_FAULTS.get(name, ())}
    if 'observer-mgmt' in record['cluster_faults']:
        cut.add(config.CONTROLLER_MGMT_CABLE)
    return cut


def apply_cables(record):
    cut = cut_cables(record)
    for host in record['hosts']:
        for cable in config.cables(host).values():
            net.set_link(cable, cable not in cut)
    net.set_link(config.CONTROLLER_MGMT_CABLE, config.CONTROLLER_MGMT_CABLE not in cut)


def wanted_store_layer(record, host):
    active = record['faults'].get(host, {})
    if 'store-readonly' in active:
        return store.READONLY
    outage = record['cluster_faults'].get('store-outage', {})
    if 'store-hang' in active or host in outage.get('hosts', []):
        return store.HANG
    return None


def apply_store(record, host):
    """Bring the host's store layer to what the active faults want."""
    layers = record.setdefault('store_layers', {})
    want, have = wanted_store_layer(record, host), layers.get(host)
    if have and have['kind'] != want:
        store.remove_host_layer(host, have['kind'])
        del layers[host]
    if want and not layers.get(host):
        store.add_host_layer(host, want)
        layers[host] = {'kind': want, 'boot': container.boot_id(host)}


# ---- inject / heal ----

def inject(record, name, host=None, arg=None):
    fault = lookup(name, host)
    check_arg(fault, arg)
    arg = None if arg is None else str(int(arg))
    if fault.scope == 'cluster':
        _inject_cluster(record, name)
        return
    current = record['faults'].get(host, {}).get(name)
    if current and current['arg'] == arg:
        return  # already active: idempotent
    if fault.boot:
        _require_running(host)
        _check_conflicts(record, host, name)
    _change(record, host, name, {'arg': arg, 'boot': container.boot_id(host) if fault.boot else None}, current)


def heal(record, name, host=None):
    if lookup(name, host).scope == 'cluster':
        _heal_cluster(record, name)
        return
    current = record['faults'].get(host, {}).get(name)
    if current:
        _change(record, host, name, None, current)


def _change(record, host, name, entry, previous):
    """Record the fault's new entry (None: healed) and apply it; on failure the record goes back."""
    _set_entry(record, host, name, entry)
    try:
        _apply(record, name, host, (entry or previous)['arg'], on=entry is not None)
    except LabError:
        _set_entry(record, host, name, previous)
        raise


def _set_entry(record, host, name, entry):
    active = record['faults'].setdefault(host, {})
    if entry is None:
        active.pop(name, None)
    else:
        active[name] = entry
    if not active:
        del record['faults'][host]


def heal_all(record, host=None):
    """Heal every fault of host, or every fault of the lab (host None)."""
    for target in [host] if host else list(record['faults']):
        for name in list(record['faults'].get(target, {})):
            heal(record, name, target)
    if host is None:
        for name in list(record['cluster_faults']):
            heal(record, name)


def _require_running(host):
    current = power.state(host)
    if current != 'on' or not container.leader(host):
        raise LabError(f'{host} is {current}: this fault acts inside a running host')


def _check_conflicts(record, host, name):
    active = record['faults'].get(host, {})
    pairs = ({'store-readonly', 'store-hang'}, {'writer-stop', 'writer-kill'})
    for pair in pairs:
        other = (pair - {name}).pop() if name in pair else None
        if other in active:
            raise LabError(f'{host}: {name} conflicts with active {other}; heal it first')
    if name == 'store-readonly' and wanted_store_layer(record, host) == store.HANG:
        raise LabError(f'{host}: store-readonly conflicts with the store-outage; heal it first')


def _apply(record, name, host, arg, on):
    if name in CABLE_FAULTS:
        apply_cables(record)
    elif name == 'bmc-wrong-password':
        new = secrets.token_urlsafe(12) if on else bmcs.controller_password(host)
        bmcs.set_password(host, host in record['ipmi_sim'], new)
    elif name in BMC_FILES:
        if host in record['ipmi_sim']:
            raise LabError(f'{host}: {name} needs the pyghmi BMC (this host has ipmi_sim)')
        if on:
            write_text(BMC_FILES[name](host), f'{max(0, int(arg))}\n')
        else:
            remove(BMC_FILES[name](host))
    elif name in ('store-readonly', 'store-hang'):
        apply_store(record, host)
    elif container.leader(host):  # the rest act inside the host; after a reboot there is nothing to undo
        HOST_ACTIONS[name](host, arg, on)


def _inject_cluster(record, name):
    if name in record['cluster_faults']:
        return
    if name == 'store-outage':
        hosts = [h for h in record['hosts'] if power.state(h) == 'on' and container.leader(h)
                 and 'store-readonly' not in record['faults'].get(h, {})]
        record['cluster_faults'][name] = {'hosts': hosts}
        for host in hosts:
            apply_store(record, host)
    elif name == 'observer-store':
        store.kill_controller_view()
        record['cluster_faults'][name] = {}
    else:
        record['cluster_faults'][name] = {}
        apply_cables(record)


def _heal_cluster(record, name):
    entry = record['cluster_faults'].pop(name, None)
    if entry is None:
        return
    if name == 'store-outage':
        for host in entry['hosts']:
            if container.leader(host):
                apply_store(record, host)
    elif name == 'observer-store':
        store.restore_controller_view()
    else:
        apply_cables(record)


# ---- faults inside the host (systemd units) ----

def _systemctl(host, *args, check=True):
    return container.execute(host, ['systemctl'] + list(args), timeout=30, check=check)


def _unit_loaded(host):
    return _systemctl(host, 'show', '-p', 'LoadState', '--value', UNIT).stdout.strip() == 'loaded'


def _dropin(host, tag, content):
    """Write (content) or remove (None) a runtime drop-in of the writer unit, then reload systemd."""
    path = f'/proc/{container.leader(host)}/root{DROPIN_DIR}/50-kvmha-lab-{tag}.conf'
    if content is None:
        remove(path)
    else:
        write_text(path, content)
    _systemctl(host, 'daemon-reload')


def writer_stop(host, arg, on):
    if _unit_loaded(host):
        _systemctl(host, 'stop' if on else 'start', UNIT)


def writer_kill(host, arg, on):
    # Restart=no first, so systemd does not restart the killed writer while the fault is active.
    if on:
        _dropin(host, 'writer-kill', '[Service]\nRestart=no\n')
        if _unit_loaded(host):
            _systemctl(host, 'kill', '--signal=KILL', '--kill-whom=all', UNIT)
    else:
        _dropin(host, 'writer-kill', None)
        if _unit_loaded(host):
            _systemctl(host, 'reset-failed', UNIT, check=False)
            _systemctl(host, 'start', UNIT)


def clock_skew(host, arg, on):
    content = None
    if on:
        seconds = int(arg)
        # libfaketime fakes CLOCK_MONOTONIC too unless told not to; a skewed NTP clock does not move it.
        content = (f'[Service]\nEnvironment=LD_PRELOAD={config.FAKETIME_LIB} FAKETIME={seconds:+d}s '
                   'FAKETIME_DONT_FAKE_MONOTONIC=1\n')
    _dropin(host, 'clock-skew', content)
    if _unit_loaded(host):
        _systemctl(host, 'try-restart', UNIT)


def libvirtd_stop(host, arg, on):
    if on:
        _systemctl(host, 'stop', *LIBVIRTD_UNITS)  # the sockets too, or the next client would start it again
    else:
        _systemctl(host, 'start', *reversed(LIBVIRTD_UNITS))


HOST_ACTIONS = {'writer-stop': writer_stop, 'writer-kill': writer_kill, 'clock-skew': clock_skew,
                'libvirtd-stop': libvirtd_stop}


# ---- the record follows the hosts' boots ----

def prune(record):
    """Forget host-boot faults (and store layers) whose boot has ended; returns the names dropped."""
    dropped = []
    for host in record['hosts']:
        boot = container.boot_id(host)
        active = record['faults'].get(host, {})
        for name in [n for n, e in active.items() if FAULTS[n].boot and e['boot'] != boot]:
            del active[name]
            dropped.append(f'{host}:{name}')
        if not active:
            record['faults'].pop(host, None)
        layer = record.get('store_layers', {}).get(host)
        if layer and layer['boot'] != boot:
            store.cleanup(host)
            del record['store_layers'][host]
            outage = record['cluster_faults'].get('store-outage')
            if outage and host in outage['hosts']:
                outage['hosts'].remove(host)
    return dropped


def active_names(record, host):
    active = record['faults'].get(host, {})
    return sorted(f'{n}={e["arg"]}' if e['arg'] is not None else n for n, e in active.items())
