"""`python -m lab.bench`: the lab's numbers for docs/BENCHMARKS.md ("## Lab"). Root; takes the lab down first.

Measures, on a lab of 3 hosts x 2 guests:
* `lab up` from nothing (several runs, each after `lab down`), and a second `up` on a running lab;
* idle CPU of the running lab over a window: every process of the hosts (containers, libvirtd, qemu guests,
  via the hosts' cgroup v2 cpu.stat) plus the BMC processes;
* power on -> SSH banner, and power on -> first successful `lab ssh` command, over several power cycles.
"""

import argparse
import os
import statistics
import time

from lab import Lab, config
from lab.api import ssh_banner
from lab.util import read_pid, read_text, wait_until

CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def timed(func, *args):
    start = time.monotonic()
    func(*args)
    return time.monotonic() - start


def summary(values):
    return f'median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})'


def cpu_seconds(hosts):
    """CPU time used so far by the lab: the hosts' cgroup (v2 cpu.stat) plus the BMC processes."""
    stat = read_text(f'{config.CGROUP_FS}/unified/{config.CGROUP_PARENT}/cpu.stat', '')
    usage = int(dict(line.split() for line in stat.splitlines()).get('usage_usec', 0)) / 1e6
    for host in hosts:
        pid = read_pid(config.pid_file(config.bmc_name(host)))
        fields = read_text(f'/proc/{pid}/stat', '').rsplit(')', 1)[-1].split() if pid else []
        usage += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS if fields else 0
    return usage


def main():
    p = argparse.ArgumentParser(prog='python -m lab.bench', description=__doc__.split('\n\n', maxsplit=1)[0])
    p.add_argument('--runs', type=int, default=3, help='lab up runs and power cycles (default 3)')
    p.add_argument('--idle-seconds', type=float, default=30)
    args = p.parse_args()
    lab = Lab()
    ups = []
    for _run in range(args.runs):
        lab.down()
        ups.append(timed(lab.up, 3, 2))
    print(f'lab up (3 hosts x 2 guests, from nothing): {summary(ups)}')
    print(f'lab up again on the running lab: {timed(lab.up, 3, 2):.2f} s')

    hosts = lab.hosts()
    time.sleep(5)  # let the boots settle
    before, start = cpu_seconds(hosts), time.monotonic()
    time.sleep(args.idle_seconds)
    used = (cpu_seconds(hosts) - before) / (time.monotonic() - start)
    print(f'idle CPU of the running lab over {args.idle_seconds:.0f} s: {100 * used:.1f} % of one core '
          f'({100 * used / os.cpu_count():.1f} % of the machine\'s {os.cpu_count()} cores)')

    banner, command = [], []
    for _run in range(args.runs):
        lab.power('h2', 'off')
        start = time.monotonic()
        lab.power('h2', 'on')
        wait_until(lambda: ssh_banner('h2'), 30, 0.02)
        banner.append(time.monotonic() - start)
        wait_until(lambda: lab.ssh('h2', 'true')[0] == 0, 30, 0.02)
        command.append(time.monotonic() - start)
    print(f'power on -> SSH banner: {summary(banner)}')
    print(f'power on -> first `lab ssh h2 true` that succeeds: {summary(command)}')
    lab.down()


if __name__ == '__main__':
    main()
