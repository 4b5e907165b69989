#!/usr/bin/env bash
# Process-level tests of the heartbeat writer and its boot guard (no lab): the real scripts under /usr/bin/python3
# against a temporary store, libvirt's test:/// driver, a virsh stand-in and a temporary /etc/libvirt/qemu tree,
# loopback only; the boot guard once more against a private, namespaced libvirtd (skipped without root, libvirtd or
# qemu); and the role's preflight and templates rendered for a fake inventory. About 45 s.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"
python -m pytest -q -p no:cacheprovider tests/writer
