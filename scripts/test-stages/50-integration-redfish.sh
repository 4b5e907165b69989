#!/usr/bin/env bash
# Integration tests of the fencing backends, no mocks (tests/fencing): redfish_power against sushy-tools' Redfish
# emulator (a peer implementation of DMTF Redfish) over HTTPS with a CA made for the run; fence_agent_power with the
# real fence_ipmilan against the project's IPMI BMC simulator (lab/bmc.py, standalone) and the real fence_redfish
# against the emulator; the real fence_apc_snmp against net-snmp's snmpd serving an APC rack PDU's outlets
# (tests/fencing/pdu_outlets.py), alone and as a fence level of two outlets; a closed port and a port that accepts
# and never answers. The suite runs in a network namespace of its own that has nothing but loopback, so no packet of
# this stage can leave the machine, and its ports cannot collide with the stages that run beside it. Every emulator
# is stopped by its PID when its tests end.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"

[ "$(id -u)" = 0 ] || { echo "integration-redfish: needs root (network namespace)" >&2; exit 1; }
for tool in unshare ip openssl sushy-emulator ipmitool fence_ipmilan fence_redfish fence_apc_snmp snmpd snmpget; do
    command -v "$tool" > /dev/null || { echo "integration-redfish: $tool not found (make setup)" >&2; exit 1; }
done

unshare --net bash -c 'ip link set lo up && exec python -m pytest -q -p no:cacheprovider -p randomly tests/fencing'
