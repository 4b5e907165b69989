#!/usr/bin/env bash
# Integration tests of redfish_power (and of the fence-agent backend's fence_redfish runs) against sushy-tools'
# Redfish emulator, a peer implementation of DMTF Redfish, served over HTTPS with a CA made for the run; plus a
# closed port and a port that accepts and never answers (tests/redfish). The suite runs in a network namespace of
# its own that has nothing but loopback, so no packet of this stage can leave the machine, and its ports cannot
# collide with the stages that run beside it. Every emulator is stopped by its PID when its tests end.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"

[ "$(id -u)" = 0 ] || { echo "integration-redfish: needs root (network namespace)" >&2; exit 1; }
for tool in unshare ip openssl sushy-emulator; do
    command -v "$tool" > /dev/null || { echo "integration-redfish: $tool not found (make setup)" >&2; exit 1; }
done

unshare --net bash -c 'ip link set lo up && exec python -m pytest -q -p no:cacheprovider -p randomly tests/redfish'
