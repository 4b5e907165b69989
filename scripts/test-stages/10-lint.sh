#!/usr/bin/env bash
# ansible-lint, production profile, and the changelog: every fragment and changelogs/changelog.yaml well formed
# (antsibull-changelog lint), and CHANGELOG.rst exactly what changelogs/changelog.yaml generates.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"
# A throwaway ANSIBLE_HOME: a collection copy left there by another tool would shadow the source tree.
ANSIBLE_HOME=$(mktemp -d)
export ANSIBLE_HOME
scratch=$(mktemp -d)
trap 'rm -rf "$ANSIBLE_HOME" "$scratch"' EXIT
ansible-lint --profile production
antsibull-changelog lint
antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
# Generated in a scratch copy, so that the check never rewrites the checkout.
mkdir -p "$scratch/changelogs"
cp galaxy.yml "$scratch/"
cp changelogs/config.yaml changelogs/changelog.yaml "$scratch/changelogs/"
(cd "$scratch" && antsibull-changelog generate)
cmp -s CHANGELOG.rst "$scratch/CHANGELOG.rst" || {
    echo "lint: CHANGELOG.rst is not what changelogs/changelog.yaml generates: run 'make changelog'" >&2; exit 1; }
