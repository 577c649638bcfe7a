#!/bin/sh
# SPDX-License-Identifier: MIT
# Raises every link named in /etc/tbctl/links.conf, waiting for udev to finish renaming it.
status=0
for link in $(grep -v '^#' /etc/tbctl/links.conf); do
    tries=0
    while [ ! -e "/sys/class/net/$link" ] && [ "$tries" -lt 100 ]; do
        sleep 0.2
        tries=$((tries + 1))
    done
    if ! ip link set dev "$link" up; then
        echo "cable link $link did not appear" >&2
        status=1
    fi
done
exit "$status"
