#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# raw-del-under-io.sh - deleting a device while fio hammers it is refused
# without --force, and with it completes in bounded time: in-flight I/O is failed or finished, never left hanging (a
# dropped completion hangs the deletion; the rig reports hung tasks from
# dmesg), the server exits and the device disappears.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio

DEL_LIMIT=20
IMG=$T_TMP/disk.raw
truncate -s 128M "$IMG"
add_dev "add raw device with -q 2" -t raw -f "$IMG" -q 2 || bail "cannot continue without a device"
ID=$DEV_ID

# listed_pid: the server's pid from imgblk list (json first, then the
# table's pid column), to check that it really exits.
listed_pid() {
	p=$(imgblk list -n "$ID" --json 2>/dev/null |
		sed -n 's/.*"pid"[^0-9]*\([0-9][0-9]*\).*/\1/p' | head -n 1)
	if [ -z "$p" ]; then
		p=$(imgblk list -n "$ID" 2>/dev/null | awk '
			NR == 1 { for (i = 1; i <= NF; i++) if (tolower($i) == "pid") c = i; next }
			c && $c ~ /^[0-9]+$/ { print $c; exit }')
	fi
	echo "$p"
}
SPID=$(listed_pid)
if [ -n "$SPID" ] && [ -d "/proc/$SPID" ]; then ok "server pid $SPID from imgblk list"; else
	not_ok "server pid from imgblk list"; diag "got '$SPID'"; fi

fio --name=hammer --filename="$DEV" --ioengine=io_uring --direct=1 \
	--rw=randwrite --bs=4k --iodepth=32 --numjobs=2 --time_based \
	--runtime=30 --group_reporting > "$T_TMP/fio.out" 2>&1 &
FIO=$!
on_exit "kill -KILL $FIO"
sleep 2
if kill -0 "$FIO" 2>/dev/null; then ok "fio is running"; else
	not_ok "fio is running"; diag_file "$T_TMP/fio.out"; fi

# Without --force, del refuses a device open elsewhere and names who has it.
timeout $DEL_LIMIT imgblk del -n "$ID" > "$T_TMP/del.out" 2>&1
rc=$?
if [ $rc = 1 ] && grep -q "^imgblk: $DEV is open by process [0-9]* (fio)\$" "$T_TMP/del.out"; then
	ok "del without --force refused: $(cat "$T_TMP/del.out")"
else
	not_ok "del without --force refused, naming fio (status $rc)"; diag_file "$T_TMP/del.out"
fi

t0=$(cut -d' ' -f1 /proc/uptime)
timeout $DEL_LIMIT imgblk del -n "$ID" --force > "$T_TMP/del.out" 2>&1
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
if [ $rc = 0 ]; then ok "imgblk del under I/O succeeded in ${secs}s"; else
	not_ok "imgblk del under I/O succeeded within ${DEL_LIMIT}s"
	diag "status $rc after ${secs}s (124 = timed out)"; diag_file "$T_TMP/del.out"; fi

# fio must notice: its I/O fails once the device is gone.
i=0
while kill -0 "$FIO" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$FIO" 2>/dev/null; then
	not_ok "fio ended within 20 s of del"
	diag "fio still running: $(cat /proc/$FIO/wchan 2>/dev/null)"
else
	wait "$FIO"
	ok "fio ended within 20 s of del (status $?, errors expected)"
fi

if [ -n "$SPID" ]; then
	i=0
	while [ -d "/proc/$SPID" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	if [ -d "/proc/$SPID" ]; then
		not_ok "server process $SPID is gone"
		diag "state: $(grep State /proc/$SPID/status 2>/dev/null)"
	else
		ok "server process $SPID is gone"
	fi
else
	skip "server process is gone" "pid unknown"
fi
if listed "$ID"; then not_ok "imgblk list no longer shows device $ID"
	diag_file "$T_TMP/list.out"; else ok "imgblk list no longer shows device $ID"; fi
if wait_gone "/dev/ublkb$ID" 5; then ok "/dev/ublkb$ID is gone"; else
	not_ok "/dev/ublkb$ID is gone"; fi
if wait_gone "/dev/ublkc$ID" 5; then ok "/dev/ublkc$ID is gone"; else
	not_ok "/dev/ublkc$ID is gone"; fi

# The file is still usable: a new device on it works.
if add_dev "re-add the file afterwards" -t raw -f "$IMG"; then
	check "read from the re-added device" dd if="$DEV" of=/dev/null bs=1M count=4 iflag=direct
	del_dev "del re-added device" "$DEV_ID"
fi
done_testing
