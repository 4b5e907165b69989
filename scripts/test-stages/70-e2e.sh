#!/usr/bin/env bash
# End-to-end scenarios (tests/e2e) on the embedded lab: a 5-host lab is brought up, the heartbeat writers are
# deployed with the role, every scenario runs the real watchdog playbook against real faults, and the lab is
# always taken down at the end. Root only; it needs the lab to itself.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"

if [ "$(id -u)" -ne 0 ]; then
    echo "70-e2e: the end-to-end scenarios need root" >&2
    exit 1
fi
if [ -e /var/lib/kvmha-lab/lab.json ]; then
    echo "70-e2e: a lab is already up; run 'python -m lab down' first (this stage builds and removes its own)" >&2
    exit 1
fi

teardown() {
    local rc=$?
    python -m lab down || rc=1
    exit $rc
}
trap teardown EXIT
python -m pytest -q -p no:cacheprovider -rA --durations=0 tests/e2e "$@"
