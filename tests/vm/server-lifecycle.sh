#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# server-lifecycle.sh - the server's ends: SIGTERM and SIGINT delete the
# device cleanly; a server killed with SIGKILL leaves a DEAD device that
# list shows and del removes; list --json describes a live device.
. "$(dirname "$0")/lib.sh"

need_imgblk
IMG=$T_TMP/disk.raw
dd if=/dev/zero of="$IMG" bs=1M count=16 2>/dev/null

server_pid() {	# server_pid ID: the pid recorded in the state file
	sed -n 's/^pid=//p' "/run/imgblk/$1.state" 2>/dev/null
}

for sig in TERM INT; do
	add_dev "add (for SIG$sig)" -t raw -f "$IMG" || continue
	pid=$(server_pid "$DEV_ID")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		ok "state file names the live server ($pid)"
	else
		not_ok "state file names the live server"
		continue
	fi
	kill -"$sig" "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		not_ok "server exits on SIG$sig"
	else
		ok "server exits on SIG$sig"
	fi
	if wait_gone "$DEV" 5 && [ ! -e "/dev/ublkc$DEV_ID" ]; then
		ok "SIG$sig: $DEV and its char device are gone"
	else
		not_ok "SIG$sig: $DEV and its char device are gone"
	fi
	if [ ! -e "/run/imgblk/$DEV_ID.state" ]; then
		ok "SIG$sig: state file removed"
	else
		not_ok "SIG$sig: state file removed"
	fi
done

if add_dev "add (for SIGKILL)" -t raw -f "$IMG" -q 2 -d 32; then
	imgblk list --json > "$T_TMP/list.json"
	if grep -q "\"id\": $DEV_ID" "$T_TMP/list.json" &&
	   grep -q '"state": "LIVE"' "$T_TMP/list.json" &&
	   grep -q '"queues": 2' "$T_TMP/list.json" &&
	   grep -q '"depth": 32' "$T_TMP/list.json" &&
	   grep -q "\"dev\": \"$DEV\"" "$T_TMP/list.json"; then
		ok "list --json describes the live device"
	else
		not_ok "list --json describes the live device"
		diag_file "$T_TMP/list.json"
	fi
	pid=$(server_pid "$DEV_ID")
	kill -KILL "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	# The driver stops the disk once it notices the server is gone.
	wait_gone "$DEV" 10
	imgblk list -n "$DEV_ID" > "$T_TMP/list.out" 2>&1
	if grep -q DEAD "$T_TMP/list.out"; then
		ok "list shows the killed server's device as DEAD"
	else
		not_ok "list shows the killed server's device as DEAD"
		diag_file "$T_TMP/list.out"
	fi
	del_dev "del removes the dead device" "$DEV_ID"
	if [ ! -e "/dev/ublkc$DEV_ID" ] && [ ! -e "/run/imgblk/$DEV_ID.state" ]; then
		ok "nothing left of the dead device"
	else
		not_ok "nothing left of the dead device"
	fi
fi
done_testing
