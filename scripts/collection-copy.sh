#!/usr/bin/env bash
# Prints the path of a fresh copy of the checkout, laid out as .../ansible_collections/kvmha/cluster.
# ansible-test locates the collection from the physical working directory, so a symlink is not enough;
# the copy is a git repository so that ansible-test takes its file list from git, as in a real checkout.
# Each call makes its own copy (callers remove it), so concurrent runs never share one.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$ROOT/.cache/ansible-test"
base=$(mktemp -d "$ROOT/.cache/ansible-test/copy.XXXXXX")
DEST=$base/ansible_collections/kvmha/cluster
mkdir -p "$DEST"
cd "$ROOT"
git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -C "$DEST" -xf -
cd "$DEST" && git init -q && git add -A
echo "$DEST"
