#!/usr/bin/env bash
# Mutation testing of the safety core (docs/TESTING.md): `make mutation`, or
#   scripts/mutation.sh [--worktree | --commit REV] [--quick] [--jobs N] [--resume | --survivors] [target...]
# with the targets of tests/mutation/targets.ini. Not a test stage: a full run takes an hour or more on two cores
# (each mutant runs its file's tests); --quick mutates only the strict functions (interlocks, storm guard). The
# mutants are made in private copies of the last commit (of REV with --commit; with --worktree, of the files as
# they are now, tracked and untracked), never in the working tree others edit. Report: .cache/mutation/report.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh >/dev/null
source scripts/env.sh

# Pinned in requirements-mutation.txt, within the project's constraints; installed once.
want=$(cat requirements-mutation.txt constraints.txt | sha256sum | cut -d' ' -f1)
stamp=.venv/.kvmha-mutation-stamp
if [ "$(cat $stamp 2>/dev/null)" != "$want" ] || ! python -c 'import cosmic_ray' 2>/dev/null; then
    python -m pip install -q --disable-pip-version-check -r requirements-mutation.txt -c constraints.txt
    echo "$want" > $stamp
fi

# The code as it is now, copied once; scripts/mutation.py gives each target its own copy of it to mutate
# (.cache/mutation/<target>.tree), so runs of different targets may go on side by side.
WORK=$ROOT/.cache/mutation
mkdir -p "$WORK"
SOURCE=$(mktemp -d "$WORK/source.XXXXXX")
trap 'rm -rf "$SOURCE"' EXIT
if [ "${1:-}" = --worktree ]; then
    shift
    git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -C "$SOURCE" -xf -
elif [ "${1:-}" = --commit ]; then  # a given commit: a long run that others' commits must not invalidate
    git archive "$2" | tar -C "$SOURCE" -xf -
    shift 2
else
    git archive HEAD | tar -C "$SOURCE" -xf -
fi
python scripts/mutation.py --source "$SOURCE" --work "$WORK" "$@"
