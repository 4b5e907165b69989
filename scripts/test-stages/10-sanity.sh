#!/usr/bin/env bash
# ansible-test sanity with zero ignore entries, on a copy of the checkout.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"
for f in tests/sanity/ignore-*.txt; do
    [ -e "$f" ] || continue
    if grep -qv '^\s*\(#.*\)\?$' "$f"; then echo "sanity: $f has entries; fix the cause instead" >&2; exit 1; fi
done
copy=$(scripts/collection-copy.sh)
trap 'rm -rf "${copy%/ansible_collections/kvmha/cluster}"' EXIT
cd "$copy"
ansible-test sanity --venv --python 3.11 --color no
