#!/usr/bin/env bash
# Integration tests of ipmi_power and neighbor_ping against real components, no mocks:
#   - the project's BMC simulator (lab/bmc.py, standalone): a normal one, a --stuck one, a slow one (--off-delay);
#   - OpenIPMI's ipmi_sim (a third-party BMC) with a chassis-control hook script;
#   - iputils ping;
# every power operation cross-checked with ipmitool.
# Everything runs inside a network namespace of its own (kvmha-it-ipmi-<pid>): loopback for the fixtures, and a
# link that swallows packets plus a blackhole route for the "silent BMC" and "no route" cases. The
# namespace has no default route, so no packet of this stage can leave the machine. Fixtures, namespace and the
# collection copy are removed on exit.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"

[ "$(id -u)" = 0 ] || { echo "integration-ipmi: needs root (network namespace)" >&2; exit 1; }
for tool in ip nsenter ipmitool ipmi_sim ping; do
    command -v "$tool" > /dev/null || { echo "integration-ipmi: $tool not found (make setup)" >&2; exit 1; }
done

NS=kvmha-it-ipmi-$$
WORK=$(mktemp -d /tmp/kvmha-it-ipmi.XXXXXX)
FIXTURES=tests/integration/targets/ipmi_power/files
USER_NAME="admin"
PASSWORD=it-$RANDOM$RANDOM
ADDRESS=127.0.0.1
PORT_BMC=16230          # lab/bmc.py
PORT_STUCK=16231        # lab/bmc.py --stuck
PORT_SLOW=16232         # lab/bmc.py --off-delay 1.5
PORT_SIM=16240          # OpenIPMI ipmi_sim
PORT_CLOSED=16299       # nothing listens: the kernel answers ICMP port unreachable, pyghmi ignores it
SILENT=198.51.100.100   # on the veth link, to a MAC address nobody has: packets vanish, nothing answers
NOROUTE=198.51.100.200  # blackhole route (198.51.100.128/25): sending fails at once
copy=""
pids=()

cleanup() {
    local rc=$?
    for pid in "${pids[@]}"; do
        kill "$pid" 2> /dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2> /dev/null || true
    done
    ip netns delete "$NS" 2> /dev/null || true
    [ -n "$copy" ] && rm -rf "${copy%/ansible_collections/kvmha/cluster}"
    if [ $rc -ne 0 ]; then
        for log in "$WORK"/*.log "$WORK"/ipmi_sim/chassis.log; do
            [ -s "$log" ] && { echo "--- $log"; tail -n 20 "$log"; }
        done
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# nsenter execs the command (no fork for a network namespace), so "$!" of a background in_ns is the fixture
# itself; a shell function would put a subshell in between, and killing that would leave the fixture running.
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }
NSENTER=(nsenter "--net=/run/netns/$NS")

ip netns add "$NS"
ip -n "$NS" link set lo up
# A veth pair with nothing behind it: kvmha-it0 has the address, its peer kvmha-it1 has none and forwards nothing.
# A permanent neighbour entry sends frames for $SILENT to a MAC address nobody has, so they vanish without even an
# ARP failure (the dummy link type is not available on this kernel). The blackhole route covers 198.51.100.128/25.
ip -n "$NS" link add kvmha-it0 type veth peer name kvmha-it1
ip -n "$NS" addr add 198.51.100.1/25 dev kvmha-it0
ip -n "$NS" link set kvmha-it1 up
ip -n "$NS" link set kvmha-it0 up
ip -n "$NS" neigh add "$SILENT" lladdr 02:00:00:00:00:64 dev kvmha-it0 nud permanent
ip -n "$NS" route add blackhole 198.51.100.128/25
if [ -n "$(ip -n "$NS" route show default)" ]; then
    echo "integration-ipmi: $NS has a default route; refusing to run" >&2
    exit 1
fi

printf '%s\n' "$PASSWORD" > "$WORK/password"

# start_bmc NAME PORT [lab.bmc options]: a standalone lab BMC in the namespace; waits for its READY line.
start_bmc() {
    local name=$1 port=$2
    shift 2
    "${NSENTER[@]}" .venv/bin/python -m lab.bmc --address "$ADDRESS" --port "$port" --user "$USER_NAME" \
        --password-file "$WORK/password" --state-file "$WORK/$name.state" "$@" \
        > "$WORK/$name.out" 2> "$WORK/$name.log" &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q "^READY $ADDRESS:$port" "$WORK/$name.out" 2> /dev/null && return 0
        kill -0 "${pids[-1]}" 2> /dev/null || break
        sleep 0.05
    done
    echo "integration-ipmi: BMC $name did not become ready" >&2
    return 1
}

start_bmc bmc "$PORT_BMC"
grep -q 'lab.bmc' "/proc/${pids[0]}/cmdline" || { echo "integration-ipmi: fixture pid is not the BMC" >&2; exit 1; }
start_bmc stuck "$PORT_STUCK" --stuck
start_bmc slow "$PORT_SLOW" --off-delay 1.5

# OpenIPMI ipmi_sim with our chassis-control hook; ready when ipmitool gets an answer.
mkdir -p "$WORK/ipmi_sim/state"
cp "$FIXTURES/ipmi_sim/chassis.sh" "$FIXTURES/ipmi_sim/sim.emu" "$WORK/ipmi_sim/"
sed -e "s|@ADDRESS@|$ADDRESS|" -e "s|@PORT@|$PORT_SIM|" -e "s|@USER@|$USER_NAME|" -e "s|@PASSWORD@|$PASSWORD|" \
    -e "s|@DIR@|$WORK/ipmi_sim|" "$FIXTURES/ipmi_sim/lan.conf.in" > "$WORK/ipmi_sim/lan.conf"
"${NSENTER[@]}" ipmi_sim -n -c "$WORK/ipmi_sim/lan.conf" -f "$WORK/ipmi_sim/sim.emu" -s "$WORK/ipmi_sim/state" \
    > "$WORK/ipmi_sim.log" 2>&1 < /dev/null &
pids+=($!)
ready=""
for _ in $(seq 50); do
    if IPMI_PASSWORD=$PASSWORD in_ns ipmitool -I lanplus -C 3 -H "$ADDRESS" -p "$PORT_SIM" -U "$USER_NAME" -E \
        -N 1 -R 1 power status > /dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.1
done
[ -n "$ready" ] || { echo "integration-ipmi: ipmi_sim did not become ready" >&2; exit 1; }

copy=$(scripts/collection-copy.sh)
cat > "$copy/tests/integration/integration_config.yml" << EOF
---
# Written by scripts/test-stages/50-integration-ipmi.sh for this run only.
kvmha_it_netns: $NS
kvmha_it_address: $ADDRESS
kvmha_it_username: $USER_NAME
kvmha_it_password: $PASSWORD
kvmha_it_port_bmc: $PORT_BMC
kvmha_it_port_stuck: $PORT_STUCK
kvmha_it_port_slow: $PORT_SLOW
kvmha_it_port_sim: $PORT_SIM
kvmha_it_port_closed: $PORT_CLOSED
kvmha_it_silent: $SILENT
kvmha_it_noroute: $NOROUTE
EOF

cd "$copy"
in_ns ansible-test integration --local --python 3.11 --color no ipmi_power neighbor_ping
