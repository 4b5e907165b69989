"""`python -m lab demo`: the project's main job, on the embedded lab, as it happens.

1. builds a fresh lab (3 hypervisors with 2 HA guests each, 3 BMCs, the shared store),
2. deploys the heartbeat writers with the collection's role (`kvmha.cluster.deploy`),
3. starts the watchdog (`kvmha.cluster.watchdog`) as a scheduled run would, and while it watches,
4. crashes h1 (frozen, links down, BMC still says on),
5. shows detection, the verdict and its reasons, the confirmed fence and the guests coming up elsewhere,
6. checks that every guest runs exactly once, prints the incident record and the measured time to recovery.

Safe to run again: it always starts from a fresh lab. The lab is left up to explore (`python -m lab status`);
`python -m lab down` removes it.
"""

import json
import os
import subprocess
import sys
import time

from lab import config
from lab.api import Lab

JOURNAL = os.path.join(config.REPO, '.cache', 'demo-journal')
WATCH_S = 60
VICTIM = 'h1'


def say(text=''):
    print(text, flush=True)


def step(text):
    say('\n\033[1m== %s\033[0m' % text)


def ansible_env():
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(config.REPO, 'ansible.cfg'), KVMHA_JOURNAL_DIR=JOURNAL,
                ANSIBLE_COLLECTIONS_PATH=os.path.join(config.REPO, '.collections'))


def playbook(name, *args):
    return [os.path.join(config.REPO, '.venv', 'bin', 'ansible-playbook'), '-i', config.INVENTORY,
            os.path.join(config.REPO, 'playbooks', name), *args]


def build(lab):
    step('1. a fresh lab: 3 hypervisors (systemd-nspawn, libvirtd, qemu guests), 3 IPMI BMCs, a shared store')
    if os.path.exists(config.STATE_FILE):
        say('an earlier lab is up: taking it down first')
        lab.down()
    started = time.monotonic()
    lab.up(hosts=3, guests=2)
    say('lab up in %.1f s' % (time.monotonic() - started))
    show_layout(lab)


def deploy():
    step('2. deploying the heartbeat writers with the role (ansible-playbook kvmha.cluster.deploy)')
    started = time.monotonic()
    proc = subprocess.run(playbook('deploy.yml'), capture_output=True, text=True, env=ansible_env(), check=False)
    if proc.returncode != 0:
        say(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit('deploy failed')
    say('writers running on h1, h2, h3 (%.0f s); each writes a heartbeat to the store every 2 s' % (time.monotonic() - started))


def watchdog_is_watching():
    return subprocess.run(['pgrep', '-f', 'AnsiballZ_kvm_heartbeat'], capture_output=True, check=False).returncode == 0


def run_watchdog_and_crash(lab):
    step('3. the watchdog runs (ansible-playbook kvmha.cluster.watchdog), watching the heartbeats for up to %d s' % WATCH_S)
    subprocess.run(['rm', '-rf', JOURNAL], check=True)
    proc = subprocess.Popen(playbook('watchdog.yml', '-e', 'kvmha_watch_s=%d' % WATCH_S), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ansible_env())
    deadline = time.monotonic() + 60
    while not watchdog_is_watching():
        if proc.poll() is not None or time.monotonic() > deadline:
            say(proc.stdout.read())
            raise SystemExit('the watchdog did not start watching')
        time.sleep(0.1)
    time.sleep(2)
    step('4. crashing %s: frozen, its network links down, its BMC still says "on"' % VICTIM)
    crashed_at = time.time()
    lab.power(VICTIM, 'crash')
    say('%s crashed at %s' % (VICTIM, stamp(crashed_at)))
    step('5. what the watchdog sees and does (its journal, live)')
    lines, in_summary = [], False
    for line in proc.stdout:
        lines.append(line)
        in_summary = in_summary or line.startswith('kvmha: run')
        if line.startswith('kvmha') or (in_summary and line.startswith('  ')):
            say(line.rstrip())
    proc.wait()
    if proc.returncode != 0:
        say(''.join(lines[-60:]))
        raise SystemExit('the watchdog run failed (rc=%d)' % proc.returncode)
    return crashed_at


def show_layout(lab):
    copies = lab.guest_copies()
    for host in lab.hosts():
        mine = sorted(g for g, hosts in copies.items() if host in hosts)
        say('  %s: %s' % (host, ', '.join(mine) or '-'))
    return copies


def check_and_report(lab, crashed_at):
    step('6. every guest runs exactly once')
    copies = show_layout(lab)
    twice = {g: h for g, h in copies.items() if len(h) != 1}
    expected = set(lab.status()['guests'])
    if twice or set(copies) != expected:
        raise SystemExit('invariant broken: %s' % (twice or expected - set(copies)))
    say('%d guests, each on exactly one host; %s is powered off (fenced): %s' % (len(copies), VICTIM, lab.power(VICTIM, 'status')))
    records = sorted(os.listdir(os.path.join(JOURNAL, 'incidents')))
    with open(os.path.join(JOURNAL, 'incidents', records[-1]), encoding='utf-8') as f:
        record = json.load(f)
    step('the incident record (%s)' % os.path.join(JOURNAL, 'incidents', records[-1]))
    summary = {key: record[key] for key in ('host', 'verdict', 'rule', 'action', 'reasons', 'outcome', 'timestamps')}
    summary['evidence'] = {key: record['evidence'][key] for key in ('mgmt', 'neighbors', 'bmc', 'disk_activity')}
    summary['evidence']['heartbeat'] = {k: record['evidence']['heartbeat'][k] for k in ('status', 'reason', 'age')}
    summary['actions'] = [{k: a[k] for k in ('action', 'ok', 'detail')} for a in record['actions']]
    summary['vms'] = [{k: vm.get(k) for k in ('name', 'status', 'host')} for vm in record['vms']]
    say(json.dumps(summary, indent=2))
    running = [vm['timestamps']['running'] for vm in record['vms'] if vm.get('status') == 'started']
    step('time to recovery')
    say('crash -> last guest verified running elsewhere: %.1f s (measured by this demo)' % (max(running) - crashed_at))
    say('last heartbeat seen -> last guest running:      %.1f s (rto_s in the record)' % record['rto_s'])
    say('\nThe lab is still up: `python -m lab status` to look around, `python -m lab down` to remove it.')


def stamp(when):
    return time.strftime('%H:%M:%S', time.localtime(when)) + ('%.3f' % (when % 1))[1:]


def main():
    lab = Lab()
    build(lab)
    deploy()
    crashed_at = run_watchdog_and_crash(lab)
    check_and_report(lab, crashed_at)
    return 0


if __name__ == '__main__':
    sys.exit(main())
