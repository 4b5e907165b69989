#!/usr/bin/env bash
# Integration tests of vm_evacuate and ha_vm against real libvirt, no mocks:
#   - three private libvirtd instances (h2, h3, h4), each in its own mount, PID and network namespace, with bind
#     mounts over /run, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt, so the machine's
#     own libvirt is never touched; they run real QEMU TCG guests (64 MiB, raw disks under a temp dir) and are
#     reached over unix sockets only (tests/integration/targets/vm_evacuate/files/libvirtd_fixture.py);
#   - libvirt's built-in test driver (test:///default and test:///<file>);
#   - one more instance, tr1, for the libvirt_transports target: it also listens for TLS (certificates made for
#     this run, verification on) on 127.0.0.1 of its own network namespace, and its read-write socket belongs to
#     group 4242 (mode 0770) for a non-root user (uid 65534, through setpriv);
#   - one more, tr2, also for libvirt_transports: its read-write socket is authenticated by polkit, with the rule
#     of docs/OPERATIONS.md (taken from the doc itself), its own D-Bus system bus, polkitd, users kvmha, intruder
#     and controller in bind-mounted copies of /etc/passwd and /etc/group, and an sshd on 127.0.0.1:22 of its
#     network namespace (keys made for this run).
# The instances, their guests (they die with their PID namespace), the stores and the collection copy are
# removed on exit.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"

[ "$(id -u)" = 0 ] || { echo "integration-libvirt: needs root (namespaces, bind mounts)" >&2; exit 1; }
for tool in unshare libvirtd virsh qemu-system-x86_64 ip truncate openssl nsenter setpriv dbus-daemon \
            /usr/lib/polkit-1/polkitd /usr/sbin/sshd ssh-keygen virt-ssh-helper; do
    command -v "$tool" > /dev/null || { echo "integration-libvirt: $tool not found (make setup)" >&2; exit 1; }
done

FIXTURE=$KVMHA_ROOT/tests/integration/targets/vm_evacuate/files/libvirtd_fixture.py
WORK=$(mktemp -d /tmp/kvmha-it-libvirt.XXXXXX)
INSTANCES=$WORK/libvirtd
STORES=$WORK/stores
copy=""

cleanup() {
    local rc=$?
    python "$FIXTURE" stop-all "$INSTANCES" > /dev/null || rc=1
    [ -n "$copy" ] && rm -rf "${copy%/ansible_collections/kvmha/cluster}"
    if [ $rc -ne 0 ]; then
        for log in "$INSTANCES"/*/log/libvirtd.log "$INSTANCES"/*/log/qemu/*.log "$INSTANCES"/*/unshare.log \
                   "$INSTANCES"/*/log/{dbus,polkitd,sshd}.out; do
            # Known noise: no cgroups and no interfaces are visible inside the instances' namespaces.
            [ -s "$log" ] && { echo "--- $log"; grep -v -e cgroup -e ethtool "$log" | tail -n 15; }
            true
        done
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

mkdir -p "$INSTANCES" "$STORES"
chmod 711 "$WORK"  # uid 65534 reaches tr1's sockets (only traversal: the names under it are not listed)
declare -A uris
for host in h2 h3 h4; do
    uris[$host]=$(python "$FIXTURE" start "$INSTANCES" "$host" | python -c 'import json, sys; print(json.load(sys.stdin)["uri"])')
    echo "integration-libvirt: $host ready at ${uris[$host]}"
done

transports=$(python "$FIXTURE" start "$INSTANCES" tr1 --tls --group +4242 | python -c 'import json, sys; d = json.load(sys.stdin); d["gid"] = 4242; print(json.dumps(d))')
echo "integration-libvirt: tr1 ready (TLS and group socket)"

# The polkit rule under test is the one docs/OPERATIONS.md shows (its indented js block).
awk '/^  ```js$/ {on = 1; next} on && /^  ```$/ {exit} on {sub(/^  /, ""); print}' docs/OPERATIONS.md > "$WORK/50-kvmha.rules"
grep -q 'org.libvirt.unix.manage' "$WORK/50-kvmha.rules" || { echo "integration-libvirt: no polkit rule in docs/OPERATIONS.md" >&2; exit 1; }
polkit=$(python "$FIXTURE" start "$INSTANCES" tr2 --polkit "$WORK/50-kvmha.rules")
echo "integration-libvirt: tr2 ready (polkit and sshd)"

copy=$(scripts/collection-copy.sh)
cat > "$copy/tests/integration/integration_config.yml" << EOF
---
# Written by scripts/test-stages/50-integration-libvirt.sh for this run only.
kvmha_evac_work: $STORES
kvmha_evac_instances: $INSTANCES
kvmha_evac_hosts:
  h2: "${uris[h2]}"
  h3: "${uris[h3]}"
  h4: "${uris[h4]}"
kvmha_transports: $transports
kvmha_polkit: $polkit
EOF

cd "$copy"
ansible-test integration --local --python 3.11 --color no vm_evacuate ha_vm libvirt_transports
