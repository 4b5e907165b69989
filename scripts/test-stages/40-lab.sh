#!/usr/bin/env bash
# The embedded lab (tests/lab): brings a 3-host lab up (h3's BMC is ipmi_sim), checks every power action and
# fault against real sshd, libvirtd, IPMI and the store, and takes it down again, verifying nothing is left.
# Root only. About 3 minutes. It needs the lab to itself: it refuses to start while another lab is up
# (rather than tear down somebody's lab), and always leaves the lab down.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"

if [ "$(id -u)" -ne 0 ]; then
    echo "40-lab: the lab tests need root" >&2
    exit 1
fi
if [ -e /var/lib/kvmha-lab/lab.json ]; then
    echo "40-lab: a lab is already up; run 'python -m lab down' first (this stage builds and removes its own)" >&2
    exit 1
fi

teardown() {
    local rc=$?
    python -m lab down || rc=1
    python -c 'import sys; from lab.api import leftovers; left = leftovers(); print(*left, sep="\n"); sys.exit(bool(left))' \
        || { echo "40-lab: the lab left something behind" >&2; rc=1; }
    exit $rc
}
trap teardown EXIT
python -m pytest -q -p no:cacheprovider tests/lab
