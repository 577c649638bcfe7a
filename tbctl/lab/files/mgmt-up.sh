#!/bin/sh
# SPDX-License-Identifier: MIT
# Addresses the NIC whose MAC the seed names. udev may rename it meanwhile, so a failed
# `ip` is retried with the name found again.
mac=$(cat /etc/tbctl-lab/mgmt-mac)
tries=0
while [ "$tries" -lt 200 ]; do
    for dev in /sys/class/net/*; do
        if [ "$(cat "$dev/address" 2>/dev/null)" = "$mac" ]; then
            name=${dev##*/}
            if ip link set dev "$name" up && ip address replace 10.0.2.15/24 dev "$name"; then
                exit 0
            fi
        fi
    done
    sleep 0.1
    tries=$((tries + 1))
done
echo "management NIC $mac did not appear" >&2
exit 1
