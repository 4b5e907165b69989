#!/usr/bin/env bash
# Molecule scenarios (extensions/molecule/) on the embedded lab: each role converges twice, the second time with
# no change, and is verified on real hypervisors. The stage brings a 3-host lab up and always takes it down.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"

if [ "$(id -u)" -ne 0 ]; then
    echo "60-molecule: the scenarios run on the lab and need root" >&2
    exit 1
fi
if [ -e /var/lib/kvmha-lab/lab.json ]; then
    echo "60-molecule: a lab is already up; run 'python -m lab down' first (this stage builds and removes its own)" >&2
    exit 1
fi
teardown() {
    local rc=$?
    python -m lab down || rc=1
    exit $rc
}
trap teardown EXIT
python -m lab up
for scenario in heartbeat_writer watchdog_service; do
    molecule test -s "$scenario"
done
