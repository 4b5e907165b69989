"""`python -m lab <verb>`: a thin command line over lab.api.Lab (see docs/LAB.md)."""

import argparse
import json
import sys
import time

from lab import config, demo, faults
from lab.api import POWER_ACTIONS, Lab
from lab.util import LabError


def parser():
    p = argparse.ArgumentParser(prog='python -m lab', description='The kvmha embedded lab cluster (root only).')
    verbs = p.add_subparsers(dest='verb', required=True, metavar='VERB')

    up = verbs.add_parser('up', help='build or repair the lab (idempotent)')
    up.add_argument('--hosts', type=int, default=config.DEFAULT_HOSTS, help=f'1..{config.MAX_HOSTS} (default 3)')
    up.add_argument('--guests', type=int, default=config.DEFAULT_GUESTS, help='guests per host (default 2)')
    up.add_argument('--ipmi-sim', nargs='+', default=[], metavar='hN', help="hosts whose BMC is OpenIPMI's ipmi_sim")

    verbs.add_parser('down', help='remove everything the lab made, and check that nothing is left')
    status = verbs.add_parser('status', help='one line per host (--json: everything, structured)')
    status.add_argument('--json', action='store_true')

    ssh = verbs.add_parser('ssh', help='run a command on a host over SSH')
    ssh.add_argument('host')
    ssh.add_argument('command', nargs=argparse.REMAINDER)

    verbs.add_parser('inventory', help=f'print the YAML inventory (also written to {config.INVENTORY})')

    power = verbs.add_parser('power', help='power switch of a host')
    power.add_argument('action', choices=POWER_ACTIONS)
    power.add_argument('host')

    fault = verbs.add_parser('fault', help='inject a fault: lab fault NAME [hN] [ARG]',
                             description='faults: ' + '; '.join(f'{f.name}: {f.doc}' for f in faults.FAULTS.values()))
    fault.add_argument('name')
    fault.add_argument('target', nargs='*', metavar='hN [ARG]')

    heal = verbs.add_parser('heal', help='heal faults: lab heal hN [NAME] | lab heal NAME | lab heal --all')
    heal.add_argument('target', nargs='*', metavar='hN|NAME')
    heal.add_argument('--all', action='store_true', help='heal every fault of the lab')

    guest = verbs.add_parser('guest', help='add, remove or change guests (HA priority, anti-affinity group)')
    gverbs = guest.add_subparsers(dest='guest_verb', required=True)
    add = gverbs.add_parser('add')
    add.add_argument('name')
    add.add_argument('host')
    _guest_options(add)
    gverbs.add_parser('remove').add_argument('name')
    change = gverbs.add_parser('set')
    change.add_argument('name')
    _guest_options(change)
    gverbs.add_parser('list')

    verbs.add_parser('demo', help='the main job: a fresh lab, a host crash, the watchdog recovering it (README)')
    return p


def _guest_options(p):
    p.add_argument('--priority', type=int)
    p.add_argument('--group')
    p.add_argument('--ha', action=argparse.BooleanOptionalAction, default=None)


# ---- verbs ----

def do_up(lab, args):
    start = time.monotonic()
    record = lab.up(args.hosts, args.guests, args.ipmi_sim)
    print(f'lab up: {len(record["hosts"])} hosts, {len(record["guests"])} guests in '
          f'{time.monotonic() - start:.1f} s; inventory: {lab.inventory_path()}')


def do_down(lab, args):
    start = time.monotonic()
    lab.down()
    print(f'lab down: nothing left ({time.monotonic() - start:.1f} s)')


def do_status(lab, args):
    status = lab.status()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return
    for host, s in status['hosts'].items():
        bmc = s['bmc']
        guests = ','.join(f'{g}:{st}' for g, st in (s['guests'] or {}).items()) or '-'
        print(f'{host}  power={s["power"]:<7} mgmt={s["mgmt"]} private={s["private"]} '
              f'bmc={bmc["kind"]}:{"running" if bmc["running"] else "DOWN"}/{bmc["link"]} '
              f'libvirtd={s["libvirtd"] or "-"} writer={s["writer"] or "-"} guests={guests} '
              f'faults={",".join(s["faults"]) or "-"}')
    c = status['controller']
    print(f'controller  mgmt={c["mgmt"]} store={c["store"]}  cluster faults={",".join(status["cluster_faults"]) or "-"}')


def do_ssh(lab, args):
    if not args.command:
        raise LabError('lab ssh hN COMMAND...')
    rc, out, err = lab.ssh(args.host, args.command if len(args.command) > 1 else args.command[0])
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


def do_inventory(lab, args):
    sys.stdout.write(lab.inventory())


def do_power(lab, args):
    print(f'{args.host}: {lab.power(args.host, args.action)}')


def do_fault(lab, args):
    host, arg = _fault_target(args.name, args.target)
    lab.fault(host, args.name, arg)
    print(f'fault {args.name} on {host or "the cluster"}{f" ({arg})" if arg is not None else ""}: active')


def _fault_target(name, words):
    """Split `NAME [hN] [ARG]`: cluster faults take no host."""
    fault = faults.get(name)
    if fault.scope == 'cluster':
        if words:
            raise LabError(f'{name} is cluster-wide: no host or argument')
        return None, None
    if not words or len(words) > 2:
        raise LabError(f'lab fault {name} hN' + (' ARG' if fault.takes_arg else ''))
    return words[0], (words[1] if len(words) > 1 else None)


def do_heal(lab, args):
    if args.all:
        if args.target:
            raise LabError('lab heal --all takes nothing else')
        lab.heal()
    elif len(args.target) == 1 and args.target[0] in faults.FAULTS:
        lab.heal(None, args.target[0])
    elif 1 <= len(args.target) <= 2:
        lab.heal(*args.target)
    else:
        raise LabError('lab heal hN [FAULT] | lab heal CLUSTER-FAULT | lab heal --all')
    print('healed')


def do_guest(lab, args):
    if args.guest_verb == 'list':
        for name, g in lab.status()['guests'].items():
            print(f'{name}  home={g["host"]} ha={g["ha"]} priority={g["priority"]} group={g["group"] or "-"}')
    elif args.guest_verb == 'add':
        options = {k: v for k, v in (('priority', args.priority), ('group', args.group), ('ha', args.ha))
                   if v is not None}
        lab.guest_add(args.name, args.host, **options)
    elif args.guest_verb == 'remove':
        lab.guest_remove(args.name)
    else:
        lab.guest_set(args.name, args.priority, args.group, args.ha)


def do_demo(lab, args):  # noqa: ARG001 - the verb signature
    return demo.main()


VERBS = {'up': do_up, 'down': do_down, 'status': do_status, 'ssh': do_ssh, 'inventory': do_inventory,
         'power': do_power, 'fault': do_fault, 'heal': do_heal, 'guest': do_guest, 'demo': do_demo}


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return VERBS[args.verb](Lab(), args) or 0
    except LabError as e:
        print(f'lab {args.verb}: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
