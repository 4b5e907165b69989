#!/usr/bin/env bash
# The README's test command: sets up what it needs (idempotent), then runs every test stage in
# scripts/test-stages/ in order (or only the stages named as arguments), stops at the first failure and
# prints how long each stage took. Stages that share a number (10-sanity, 10-lint, 10-units) share nothing and
# run side by side, their output shown stage by stage once all of them have finished; the others run one at a
# time (the lab stages need the machine to themselves, and the timing-sensitive ones a quiet one).
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

number() { basename "$1" | cut -d- -f1; }

record() {  # record NAME RC SECONDS [NOTE]
    if [ "$2" -eq 0 ]; then
        summary+=("PASS  $(printf '%5ss' "$3")  $1${4:-}")
    else
        summary+=("FAIL  $(printf '%5ss' "$3")  $1${4:-} (rc=$2)")
    fi
}

run_alone() {
    local name rc=0 start=$SECONDS
    name=$(basename "$1" .sh)
    printf '\n\033[1m== %s ==\033[0m\n' "$name"
    bash "$1" || rc=$?
    record "$name" "$rc" $((SECONDS - start))
    return "$rc"
}

run_side_by_side() {
    local logs stage name rc took first=0 start=$SECONDS
    local -a pids=()
    logs=$(mktemp -d)
    for stage in "$@"; do
        name=$(basename "$stage" .sh)
        ( s=$SECONDS; rc=0; bash "$stage" >"$logs/$name.log" 2>&1 || rc=$?; echo "$rc $((SECONDS - s))" >"$logs/$name.rc" ) &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    for stage in "$@"; do
        name=$(basename "$stage" .sh)
        printf '\n\033[1m== %s ==\033[0m (side by side with the other %s-* stages)\n' "$name" "$(number "$stage")"
        cat "$logs/$name.log"
        read -r rc took <"$logs/$name.rc"
        record "$name" "$rc" "$took" " (side by side)"
        [ "$first" -ne 0 ] || first=$rc
    done
    rm -rf "$logs"
    summary+=("      $(printf '%5ss' $((SECONDS - start)))  the $(number "$1")-* stages together")
    return "$first"
}

i=0
while [ $i -lt ${#stages[@]} ]; do
    group=("${stages[$i]}")
    next=$((i + 1))
    while [ $next -lt ${#stages[@]} ] && [ "$(number "${stages[$next]}")" = "$(number "${stages[$i]}")" ]; do
        group+=("${stages[$next]}")
        next=$((next + 1))
    done
    if [ ${#group[@]} -eq 1 ]; then
        run_alone "${group[0]}"
    else
        run_side_by_side "${group[@]}"
    fi
    i=$next
done
