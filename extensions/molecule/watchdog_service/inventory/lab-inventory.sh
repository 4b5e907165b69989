#!/usr/bin/env bash
# Ansible inventory script: the embedded lab's inventory as JSON. It reads the file the lab keeps
# (/var/lib/kvmha-lab/inventory.yml, see docs/LAB.md) and never changes the lab; without a lab it is empty
# (create.yml brings the lab up first when it is not up).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "$0")")/../../../.." && pwd)
case "${1:-}" in
    --list) ;;
    --host) echo '{}'; exit 0 ;;
    *) echo "usage: $0 --list | --host NAME" >&2; exit 2 ;;
esac
inventory=/var/lib/kvmha-lab/inventory.yml
if [ ! -f "$inventory" ]; then
    echo '{"_meta": {"hostvars": {}}}'
    exit 0
fi
"$root/.venv/bin/ansible-inventory" -i "$inventory" --list
