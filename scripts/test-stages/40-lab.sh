#!/usr/bin/env bash
# The embedded lab (tests/lab): first the BMC simulator alone on loopback (its IPMI face with ipmitool and
# fence_ipmilan, its Redfish face with redfish_power's client and fence_redfish over verified TLS), then brings a
# 3-host lab up (h3's BMC is ipmi_sim), checks every power action and fault against real sshd, libvirtd, IPMI and
# the store, and takes it down again, verifying nothing is left.
# Root only. About 3 minutes. It needs the lab to itself (see scripts/lab-stage.sh).
set -euo pipefail
source "$(dirname "$0")/../lab-stage.sh" 40-lab
python -m pytest -q -p no:cacheprovider tests/lab
