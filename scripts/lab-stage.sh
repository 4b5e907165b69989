# shellcheck shell=bash
# Sourced by the test stages that need the embedded lab to themselves (40-lab, 60-molecule, 70-e2e):
# root only, refuse to start over somebody's running lab, and always take the lab down (checking that nothing is
# left) when the stage ends, however it ends. $1 is the stage's name, for the messages.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$KVMHA_ROOT" || exit 1
LAB_STAGE=$1

if [ "$(id -u)" -ne 0 ]; then
    echo "$LAB_STAGE: the lab needs root" >&2
    exit 1
fi
if [ -e /var/lib/kvmha-lab/lab.json ]; then
    echo "$LAB_STAGE: a lab is already up; run 'python -m lab down' first (this stage builds and removes its own)" >&2
    exit 1
fi

lab_stage_teardown() {
    local rc=$?
    python -m lab down || rc=1
    python -c 'import sys; from lab.api import leftovers; left = leftovers(); print(*left, sep="\n"); sys.exit(bool(left))' \
        || { echo "$LAB_STAGE: the lab left something behind" >&2; rc=1; }
    exit $rc
}
trap lab_stage_teardown EXIT
