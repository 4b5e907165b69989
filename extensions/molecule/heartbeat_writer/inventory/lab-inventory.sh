#!/usr/bin/env bash
# Ansible inventory script: the embedded lab's inventory (`python -m lab inventory`), whatever format the lab
# prints (INI, YAML or JSON text, or the path of an inventory file), handed to Ansible as JSON.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "$0")")/../../../.." && pwd)
case "${1:-}" in
    --list) ;;
    --host) echo '{}'; exit 0 ;;
    *) echo "usage: $0 --list | --host NAME" >&2; exit 2 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$(cd "$root" && "$root/.venv/bin/python" -m lab inventory)
if [ -f "$out" ]; then
    src=$out
else
    # The first line that is neither blank nor a comment tells the format (the lab prints YAML).
    case "$(printf '%s\n' "$out" | sed -n '/^[[:space:]]*\(#.*\)\{0,1\}$/d;p;q')" in
        '{'*) src=$tmp/lab.json ;;
        '['*) src=$tmp/lab.ini ;;
        *) src=$tmp/lab.yml ;;
    esac
    printf '%s\n' "$out" > "$src"
fi
"$root/.venv/bin/ansible-inventory" -i "$src" --list
