#!/usr/bin/env bash
# The README's demo command: sets up what it needs (idempotent), then runs the watchdog on the embedded lab
# cluster with a hypervisor crash injected and recovered (see `python -m lab demo --help`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
source scripts/env.sh
exec python -m lab demo "$@"
