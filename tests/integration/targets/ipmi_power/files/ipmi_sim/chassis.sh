#!/bin/sh
# Chassis control hook of the OpenIPMI ipmi_sim fixture (the lan.conf "chassis_control" line):
#   chassis.sh <mc> get power ...        prints "power:1" or "power:0"
#   chassis.sh <mc> set power 0|1 ...    powers the simulated host off/on at once
#   chassis.sh <mc> set shutdown 1       soft off: the host powers off SOFT_OFF_DELAY seconds later, like an OS
# The power state lives in the file "power" beside this script; every call is logged to chassis.log.
dir=${0%/*}
state="$dir/power"
[ -f "$state" ] || echo 1 > "$state"
mc=$1
op=$2
shift 2
echo "$(date +%s.%N) $mc $op $*" >> "$dir/chassis.log"
case $op in
    get)
        for parm in "$@"; do
            case $parm in
                power) echo "power:$(cat "$state")" ;;
                boot) echo "boot:default" ;;
                *) echo "unsupported parameter $parm"; exit 1 ;;
            esac
        done
        ;;
    set)
        while [ $# -ge 2 ]; do
            case $1 in
                power) echo "$2" > "$state.tmp" && mv "$state.tmp" "$state" ;;
                shutdown)
                    if [ "$2" = 1 ]; then
                        (sleep "${SOFT_OFF_DELAY:-0.5}"; echo 0 > "$state.tmp" && mv "$state.tmp" "$state") \
                            > /dev/null 2>&1 &
                    fi
                    ;;
                reset|boot|identify) ;;
                *) echo "unsupported parameter $1"; exit 1 ;;
            esac
            shift 2
        done
        ;;
    *) echo "unsupported operation $op"; exit 1 ;;
esac
