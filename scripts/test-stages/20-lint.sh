#!/usr/bin/env bash
# ansible-lint, production profile, and the changelog fragments.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"
ansible-lint --profile production
antsibull-changelog lint
