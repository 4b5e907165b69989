#!/usr/bin/env bash
# ansible-lint, production profile, and the changelog fragments.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"
# A throwaway ANSIBLE_HOME: a collection copy left there by another tool would shadow the source tree.
ANSIBLE_HOME=$(mktemp -d)
export ANSIBLE_HOME
trap 'rm -rf "$ANSIBLE_HOME"' EXIT
ansible-lint --profile production
antsibull-changelog lint
