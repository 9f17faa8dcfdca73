#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# livesnap-kill.sh - kill -9 of a --recoverable server at random points
# of external snapshots, under load on a mounted ext4: each round takes a
# snapshot, kills the server some milliseconds into it, and recovers.
# The recovered server serves the image its state file names, and that
# is the right one: every file the writer logged reads back intact,
# e2fsck finds the filesystem clean after its journal replay, and no
# image of the chain (nor an overlay left unused) is corrupt (qemu-img
# check: clean, or leaks only, as after any crash).
#
# The writer is not killed: the file being written at a kill is finished
# after the recovery and logged like the others, so it is checked too,
# and with it the writes the dead server had acknowledged without a flush
# (a recoverable device writes their metadata into the file before they
# complete).
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio qemu-img mkfs.ext4 e2fsck

D=$T_TMP
MNT=$D/mnt
ROUNDS=${LIVESNAP_KILL_ROUNDS:-8}
mkdir -p "$MNT"
dd if=/dev/urandom of="$D/src" bs=1M count=16 2>/dev/null
rnd() { echo $(( $(od -An -N2 -tu2 /dev/urandom) % $1 )); }
writer() {	# writer LOG: files of random slices of src, each fsynced, then logged
	i=0
	while :; do
		skip=$(rnd 200)
		cnt=$(( $(rnd 16) + 1 ))
		dd if="$D/src" of="$MNT/w$i" bs=64k skip="$skip" count="$cnt" conv=fsync \
			2>/dev/null || break
		echo "w$i $skip $cnt" >> "$1"
		i=$((i + 1))
	done
}

qemu-img create -q -f qcow2 "$D/base.qcow2" 128M
add_dev "add --recoverable base.qcow2" -f "$D/base.qcow2" -q 2 -d 32 --recoverable ||
	bail "no device"
ID=$DEV_ID
check "mkfs.ext4" mkfs.ext4 -q "$DEV"
check "mount" mount "$DEV" "$MNT"
on_exit "umount $MNT 2>/dev/null"
fio --name=load --directory="$MNT" --rw=randwrite --bs=4k --size=24M \
	--ioengine=io_uring --direct=1 --iodepth=16 --fsync=32 --time_based \
	--runtime=600 > "$D/fio.out" 2>&1 &
fio_pid=$!
: > "$D/log"
writer "$D/log" &
w_pid=$!
sleep 2

server_pid() { sed -n 's/^pid=//p' "/run/imgblk/$ID.state"; }
wait_state() {	# wait_state WORD: imgblk list shows it for the device
	_i=0
	while ! imgblk list -n "$ID" 2>/dev/null | grep -q "$1" && [ $_i -lt 150 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	imgblk list -n "$ID" 2>/dev/null | grep -q "$1"
}

bad=0
switched=0
for r in $(seq 1 "$ROUNDS"); do
	pid=$(server_pid)
	imgblk snapshot -n "$ID" --external "$D/s$r.qcow2" > /dev/null 2>&1 &
	snap_pid=$!
	# 0-290 ms into it: before, during and after the switch.
	sleep "0.$(( (r * 37) % 30 ))"
	kill -KILL "$pid"
	wait "$snap_pid"
	if ! wait_state QUIESCED; then
		bad=$((bad + 1)); diag "round $r: not QUIESCED"; continue
	fi
	if ! timeout 60 imgblk recover -n "$ID" > "$D/rec.out" 2>&1 || ! wait_state LIVE; then
		bad=$((bad + 1)); diag "round $r: recover failed"; diag_file "$D/rec.out"
		break
	fi
	top=$(sed -n 's/^file=//p' "/run/imgblk/$ID.state")
	[ "$top" = "$D/s$r.qcow2" ] && switched=$((switched + 1))
	diag "round $r: serving $(basename "$top")"
	sleep 1
done
if [ $bad -eq 0 ]; then ok "$ROUNDS rounds of kill -9 during a snapshot, each recovered"; else
	not_ok "$ROUNDS rounds of kill -9 during a snapshot, each recovered ($bad failed)"; fi
diag "$switched of $ROUNDS rounds had switched when killed"
kill "$w_pid" 2>/dev/null
wait "$w_pid" 2>/dev/null
kill "$fio_pid" 2>/dev/null
wait "$fio_pid" 2>/dev/null
if grep -qE 'err= *[1-9]' "$D/fio.out"; then
	not_ok "the load saw no I/O error"; diag_file "$D/fio.out" 20
else
	ok "the load saw no I/O error"
fi
check "umount" umount "$MNT"
e2fsck -fy "$DEV" > "$D/fsck1.out" 2>&1
if e2fsck -fn "$DEV" > "$D/fsck2.out" 2>&1; then
	ok "e2fsck clean after journal replay"
else
	not_ok "e2fsck clean after journal replay"; diag_file "$D/fsck1.out"; diag_file "$D/fsck2.out"
fi
check "mount again" mount -o ro "$DEV" "$MNT"
n=0
bad=0
while read -r f skip cnt; do
	n=$((n + 1))
	want=$(dd if="$D/src" bs=64k skip="$skip" count="$cnt" 2>/dev/null | md5sum)
	got=$(md5sum < "$MNT/$f" 2>/dev/null)
	[ "$want" = "$got" ] || { bad=$((bad + 1)); diag "$f differs or is missing"; }
done < "$D/log"
if [ $bad -eq 0 ] && [ $n -gt 0 ]; then ok "all $n files written are intact"; else
	not_ok "$bad of $n files written are damaged"; fi
umount "$MNT"
top=$(sed -n 's/^file=//p' "/run/imgblk/$ID.state")
del_dev "del" "$ID"
bad=0
for f in "$D"/*.qcow2; do
	qemu-img check "$f" > "$D/chk" 2>&1
	rc=$?
	[ $rc = 0 ] || [ $rc = 3 ] || { bad=$((bad + 1)); diag "$f: status $rc"; diag_file "$D/chk"; }
done
if [ $bad -eq 0 ]; then ok "no image, used or not, is corrupt"; else
	not_ok "no image, used or not, is corrupt ($bad are)"; fi
check "QEMU opens the final chain" qemu-img compare -q "$top" "$top"
done_testing
