"""Benchmark: a warm `kvmha.cluster.deploy` (nothing to change) on 3 and on 5 lab hosts (issue 17: 5 hosts in <= 15 s
and <= 1.2x the 3-host time).

Needs the lab up with at least 5 hosts and the writers deployed once (`python -m lab up --hosts 5`, then
`ansible-playbook -i /var/lib/kvmha-lab/inventory.yml playbooks/deploy.yml`). The two sizes alternate (3, 5, 3, 5,
...) so that a change in the machine's load falls on both; every run must report changed=0 on every host, or the
benchmark stops (a warm deploy that changes something is a bug, not a data point). Prints the wall time of each
run, the medians, their ratio, and the SSH round trips to one host (`SSH: EXEC` lines of one -vvv run).

    .venv/bin/python benchmarks/deploy.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVENTORY = "/var/lib/kvmha-lab/inventory.yml"
PLAYBOOK = os.path.join(ROOT, "playbooks", "deploy.yml")
ANSIBLE_PLAYBOOK = os.path.join(ROOT, ".venv", "bin", "ansible-playbook")
SIZES = {3: "h1:h2:h3", 5: "h1:h2:h3:h4:h5"}


def deploy(limit: str, *extra: str) -> tuple:
    """(seconds, output) of one deploy run limited to ``limit``; stops the benchmark unless it changed nothing."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    started = time.monotonic()
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", INVENTORY, PLAYBOOK, "--limit", limit, *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    seconds = time.monotonic() - started
    recap = dict(re.findall(r"^(h\d+)\s*:.*changed=(\d+)", done.stdout, re.M))
    if done.returncode != 0 or set(recap) != set(limit.split(":")) or set(recap.values()) != {"0"}:
        sys.exit("deploy to %s was not a warm no-op (rc %s):\n%s" % (limit, done.returncode, done.stdout[-3000:]))
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not os.path.exists(INVENTORY):
        sys.exit("the lab is not up (python -m lab up --hosts 5)")
    times = {size: [] for size in SIZES}
    for rep in range(args.repeat):
        for size, limit in SIZES.items():
            seconds = deploy(limit)[0]
            times[size].append(seconds)
            print("rep %d: %d hosts %.1f s" % (rep + 1, size, seconds), flush=True)
    verbose = deploy("h1", "-vvv")[1]
    runs = len(re.findall(r"^<[^>]+> SSH: EXEC ", verbose, re.M))  # h1 only: the controller's tasks run locally
    medians = {size: statistics.median(values) for size, values in times.items()}
    print("\nwarm deploy, median of %d: 3 hosts %.1f s, 5 hosts %.1f s, ratio 5/3 = %.2f; SSH round trips to a host: %d"
          % (args.repeat, medians[3], medians[5], medians[5] / medians[3], runs))


if __name__ == "__main__":
    main()
