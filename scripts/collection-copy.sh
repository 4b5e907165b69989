#!/usr/bin/env bash
# Prints the path of a fresh copy of the checkout at .cache/ansible-test/ansible_collections/kvmha/cluster.
# ansible-test locates the collection from the physical working directory, so a symlink is not enough;
# the copy is a git repository so that ansible-test takes its file list from git, as in a real checkout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=$ROOT/.cache/ansible-test/ansible_collections/kvmha/cluster
rm -rf "$DEST" && mkdir -p "$DEST"
cd "$ROOT"
git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -C "$DEST" -xf -
cd "$DEST" && git init -q && git add -A
echo "$DEST"
