#!/usr/bin/env bash
# The README's test command: sets up what it needs (idempotent), then runs every test stage in
# scripts/test-stages/ in order (or only the stages named as arguments), stops at the first failure and
# prints how long each stage took.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
source scripts/env.sh

stages=()
if [ $# -gt 0 ]; then
    for name in "$@"; do
        match=(scripts/test-stages/*-"$name".sh)
        [ -e "${match[0]}" ] || { echo "test: no stage named '$name'" >&2; exit 2; }
        stages+=("${match[0]}")
    done
else
    stages=(scripts/test-stages/*.sh)
fi

summary=()
finish() {
    local rc=$?
    printf '\n\033[1m== test summary ==\033[0m\n'
    printf '%s\n' "${summary[@]}"
    [ $rc -eq 0 ] && printf '\033[32mALL STAGES PASSED\033[0m\n' || printf '\033[31mFAILED (rc=%s)\033[0m\n' "$rc"
}
trap finish EXIT

for stage in "${stages[@]}"; do
    name=$(basename "$stage" .sh)
    printf '\n\033[1m== %s ==\033[0m\n' "$name"
    start=$SECONDS
    if bash "$stage"; then
        summary+=("PASS  $(printf '%5ss' $((SECONDS - start)))  $name")
    else
        rc=$?
        summary+=("FAIL  $(printf '%5ss' $((SECONDS - start)))  $name (rc=$rc)")
        exit $rc
    fi
done
