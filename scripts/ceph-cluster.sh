#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A throwaway one-node Ceph cluster for the RBD tests: one monitor, one
# manager and one OSD on memstore, all on 127.0.0.1 (or ADDR, another
# loopback address: the VM tests use one the guest can route to, see
# scripts/vm/run.sh), authentication off,
# pools of size 1.  Everything (config, monitor store, logs, sockets) lives
# under DIR, so several clusters can run side by side and `stop` leaves
# nothing behind.  Built from Debian 12's ceph-mon, ceph-osd, ceph-mgr and
# ceph-common packages (scripts/setup.sh deps --ceph installs them).
#
#   scripts/ceph-cluster.sh start DIR [PORT [ADDR]] # prints CEPH_CONF=DIR/ceph.conf
#   scripts/ceph-cluster.sh stop DIR
#
# Clients use `--conf DIR/ceph.conf` (or CEPH_CONF); the pool `rbd` exists
# and is initialised for RBD once `start` returns.
set -euo pipefail

die() { echo "ceph-cluster: $*" >&2; exit 1; }

# Waits up to $1 seconds for "$2..." to succeed.
wait_for() {
	local t=$(( $1 * 10 )); shift
	while ! "$@" >/dev/null 2>&1; do
		t=$((t - 1))
		[ "$t" -gt 0 ] || return 1
		sleep 0.1
	done
}

start() {
	local dir=$1 port=${2:-0} addr=${3:-127.0.0.1}
	local fsid conf
	for b in ceph-mon ceph-osd ceph-mgr ceph rbd monmaptool uuidgen; do
		command -v "$b" >/dev/null || die "$b not found (scripts/setup.sh deps --ceph)"
	done
	[ -e "$dir/ceph.conf" ] && die "$dir already holds a cluster"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	# The monitor's port: a free one unless given, so that parallel test
	# runs do not collide on 6789.
	if [ "$port" = 0 ]; then
		port=$(python3 -c 'import socket, sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$addr")
	fi
	fsid=$(uuidgen)
	conf=$dir/ceph.conf
	mkdir -p "$dir/mon" "$dir/osd" "$dir/mgr" "$dir/run" "$dir/log"
	cat > "$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:$addr:$port
mon initial members = a
public network = $addr/32
public addr = $addr
cluster addr = $addr
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon data avail crit = 0
mon data avail warn = 0
mon allow pool delete = true
osd objectstore = memstore
memstore device bytes = 1073741824
run dir = $dir/run
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
ms bind ipv6 = false
[mon.a]
mon data = $dir/mon
[osd.0]
osd data = $dir/osd
[mgr.x]
mgr data = $dir/mgr
EOF
	monmaptool --create --fsid "$fsid" --addv a "[v2:$addr:$port]" \
		"$dir/monmap" >/dev/null
	ceph-mon --conf "$conf" --mkfs -i a --monmap "$dir/monmap" >/dev/null
	ceph-mon --conf "$conf" -i a 2>>"$dir/log/stderr"
	wait_for 30 ceph --conf "$conf" --connect-timeout 5 mon stat ||
		die "the monitor did not come up (see $dir/log/mon.a.log)"
	ceph-mgr --conf "$conf" -i x 2>>"$dir/log/stderr"
	ceph --conf "$conf" osd create >/dev/null
	ceph-osd --conf "$conf" -i 0 --mkfs >/dev/null 2>&1 ||
		die "ceph-osd --mkfs failed (see $dir/log/osd.0.log)"
	ceph-osd --conf "$conf" -i 0 2>>"$dir/log/stderr"
	wait_for 60 sh -c "ceph --conf '$conf' osd stat | grep -q '1 up'" ||
		die "the OSD did not come up (see $dir/log/osd.0.log)"
	ceph --conf "$conf" osd pool create rbd 8 >/dev/null 2>&1
	ceph --conf "$conf" osd pool set rbd size 1 --yes-i-really-mean-it \
		>/dev/null 2>&1 || true
	rbd --conf "$conf" pool init rbd
	echo "CEPH_CONF=$conf"
}

stop() {
	local dir=$1 pidf pid
	[ -d "$dir/run" ] || return 0
	for pidf in "$dir"/run/*.pid; do
		[ -e "$pidf" ] || continue
		pid=$(cat "$pidf")
		kill "$pid" 2>/dev/null || true
	done
	# memstore keeps everything in the OSD's memory: nothing to flush, so
	# a daemon that does not leave within 10 s is killed.
	for pidf in "$dir"/run/*.pid; do
		[ -e "$pidf" ] || continue
		pid=$(cat "$pidf")
		wait_for 10 sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
	done
	rm -rf "$dir"
}

case "${1:-}" in
start) [ $# -ge 2 ] || die "usage: $0 start DIR [PORT [ADDR]]"; start "$2" "${3:-0}" "${4:-}" ;;
stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
*) die "usage: $0 start DIR [PORT [ADDR]] | stop DIR" ;;
esac
