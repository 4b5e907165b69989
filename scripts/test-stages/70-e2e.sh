#!/usr/bin/env bash
# End-to-end scenarios (tests/e2e) on the embedded lab: a 5-host lab is brought up, the heartbeat writers are
# deployed with the role, every scenario runs the real watchdog playbook against real faults. The lab to itself
# (see scripts/lab-stage.sh). Extra arguments go to pytest (e.g. -k test_19).
set -euo pipefail
source "$(dirname "$0")/../lab-stage.sh" 70-e2e
python -m pytest -q -p no:cacheprovider -rA --durations=0 tests/e2e "$@"
