#!/usr/bin/env bash
# Unit and property tests (pure logic, parsers, module wrappers). pytest exits 5 when it collects nothing,
# which `set -e` turns into a failure, as it should.
# The tests run in a random order (pytest-randomly) so that a test relying on another's leftovers fails here
# rather than in someone's reordered run. The seed is printed; KVMHA_TEST_SEED=<seed> replays an order.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"
seed=${KVMHA_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "units: pytest-randomly seed $seed (replay: KVMHA_TEST_SEED=$seed bash scripts/test.sh units)"
python -m pytest -q -n 2 -p randomly --randomly-seed="$seed" tests/unit
