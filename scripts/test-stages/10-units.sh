#!/usr/bin/env bash
# Unit and property tests (pure logic, parsers, module wrappers). pytest exits 5 when it collects nothing,
# which `set -e` turns into a failure, as it should.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"
python -m pytest -q -n 2 tests/unit
