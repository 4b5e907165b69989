# shellcheck shell=bash
# Environment shared by the test stages and the demo: repository-local HOME and ANSIBLE_HOME so that
# test tools (ansible-test, molecule) never write outside the checkout, and the venv first on PATH.
# Always the checkout this file is in: a ROOT left set by sourcing another checkout's env.sh in the same shell
# would point everything below at that one.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KVMHA_ROOT=$ROOT
export HOME=$ROOT/.cache/home
export ANSIBLE_HOME=$ROOT/.cache/ansible
export ANSIBLE_CONFIG=$ROOT/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=$ROOT/.collections
export PATH=$ROOT/.venv/bin:$PATH
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$HOME" "$ANSIBLE_HOME"
