#!/usr/bin/env bash
# Idempotent setup shared by both README commands:
#   1. Debian packages listed in bindep.txt (apt-get only when something is missing),
#   2. .venv with the pinned Python packages (rebuilt only when the pins change),
#   3. the checkout made visible as .collections/ansible_collections/kvmha/cluster,
#   4. a repository-local HOME for test tools, with the offline get-pip stand-in ansible-test needs.
# A second run does nothing and takes a few seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

apt_packages() {
    # Every bindep entry that applies to Debian: no platform, or platform:dpkg.
    sed -e 's/#.*//' bindep.txt | awk 'NF && ($0 !~ /platform:/ || $0 ~ /platform:dpkg/) {print $1}'
    echo python3-venv
}

install_apt() {
    local missing=()
    for pkg in $(apt_packages); do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && { log "apt packages: all present"; return; }
    [ "$(id -u)" -eq 0 ] || { echo "setup: missing Debian packages (${missing[*]}); run as root" >&2; exit 1; }
    log "apt packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # policy-rc.d keeps the packages from starting daemons (libvirtd, sshd) on the build machine.
    local policy=/usr/sbin/policy-rc.d created=0
    [ -e $policy ] || { printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; created=1; }
    apt-get install -y -q --no-install-recommends "${missing[@]}" || { [ $created = 0 ] || rm -f $policy; exit 1; }
    [ $created = 0 ] || rm -f $policy
}

pick_python() {
    for py in python3.11 python3; do
        command -v $py >/dev/null && $py -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' && { echo $py; return; }
    done
    echo "setup: Python 3.11 is required (ansible-core 2.19 controller)" >&2; exit 1
}

install_venv() {
    local stamp=.venv/.kvmha-stamp want
    want=$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
    if [ -f $stamp ] && [ "$(cat $stamp)" = "$want" ] && .venv/bin/python -c 'import ansible, pyghmi, libvirt' 2>/dev/null; then
        log "venv: up to date"; return
    fi
    log "venv: installing pinned packages"
    [ -x .venv/bin/python ] || "$(pick_python)" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -U 'pip==26.3'
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
    echo "$want" > $stamp
}

check_bindings() {
    # The libvirt binding is built from its sdist against libvirt-dev; a build that "succeeds" into a broken module
    # would otherwise only show as tests skipped or failing far from the cause.
    local err
    if ! err=$(.venv/bin/python -c 'import libvirt, pyghmi, ansible' 2>&1); then
        printf '\033[31msetup: the venv cannot import its bindings:\033[0m\n%s\n' "$err" >&2
        echo "setup: check libvirt-dev and pkg-config (bindep.txt), then rm -rf .venv and run setup again" >&2
        exit 1
    fi
}

link_collection() {
    local dir=.collections/ansible_collections/kvmha
    mkdir -p $dir
    [ -L $dir/cluster ] || ln -sfn ../../.. $dir/cluster
}

prepare_test_home() {
    # ansible-test downloads get-pip from the internet; this stand-in bootstraps pip from ensurepip instead.
    local cache=.cache/home/.ansible/test/cache
    mkdir -p $cache
    cp scripts/get_pip_standin.py $cache/get_pip_24_2.py
}

install_apt
install_venv
check_bindings
link_collection
prepare_test_home
log "ready: $(.venv/bin/ansible --version 2>/dev/null | sed -n 1p)"
