#!/usr/bin/env bash
# Process-level tests of the heartbeat writer (no lab): the real script under /usr/bin/python3 against a
# temporary store, libvirt's test:/// driver and a virsh stand-in, loopback only; and the role's preflight and
# templates rendered for a fake inventory. About 40 s.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"
python -m pytest -q -p no:cacheprovider tests/writer
