#!/usr/bin/env bash
# Runs the benchmarks of docs/BENCHMARKS.md (not part of the test command: they take about an hour and their
# numbers only mean something on a quiet machine). With arguments, only the named ones, e.g.
# `scripts/bench.sh heartbeat_check rto`. The lab benchmarks (rto, soak) and evacuation need root; the lab ones
# take the lab for themselves and leave it down. rto measures the Pacemaker baseline beside kvmha.cluster on the same
# lab (its Debian packages are installed on first use).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh >/dev/null
source scripts/env.sh

all=(heartbeat_check watchdog_scale ipmi_fence evacuation rto soak)
selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=("${all[@]}")
for name in "${selected[@]}"; do
    [ -f "benchmarks/$name.py" ] || { echo "bench: no benchmark named '$name' (have: ${all[*]})" >&2; exit 2; }
done
for name in "${selected[@]}"; do
    printf '\n\033[1m== %s ==\033[0m\n' "$name"
    python "benchmarks/$name.py"
done
