#!/usr/bin/env bash
# Molecule scenarios (extensions/molecule/) on the embedded lab: each role converges twice, the second time with
# no change, and is verified on real hypervisors. A 3-host lab, to itself (see scripts/lab-stage.sh).
set -euo pipefail
source "$(dirname "$0")/../lab-stage.sh" 60-molecule
python -m lab up
for scenario in heartbeat_writer watchdog_service; do
    molecule test -s "$scenario"
done
