#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kill9.sh - kill -9 of the server under load: ext4 on a qcow2 and a QED
# device, fio writing with periodic fsync plus a writer whose files are
# fsynced and logged, the server killed at a random moment.  After each
# round: the device deletes cleanly, qemu-img check finds no corruption
# (leaks allowed), e2fsck is clean after journal replay, and every file
# fsynced before the kill reads back intact.  Rounds per format: 2, or
# $SHARE/kill9.rounds (a soak sets more).
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio mkfs.ext4 e2fsck qemu-img md5sum

ROUNDS=2
[ -n "${SHARE:-}" ] && [ -s "$SHARE/kill9.rounds" ] && ROUNDS=$(cat "$SHARE/kill9.rounds")
D=$T_TMP
MNT=$D/mnt
mkdir -p "$MNT"
dd if=/dev/urandom of="$D/src" bs=1M count=16 2>/dev/null

# A number in [0, $1) from the kernel's random pool.
rnd() {
	echo $(( $(od -An -N2 -tu2 /dev/urandom) % $1 ))
}

# writer LOG: writes files from $D/src with fsync and logs each one only
# after its fsync returned: the log is what must survive.
writer() {
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

round() {	# round FMT N
	fmt=$1
	img=$D/disk.$fmt
	log=$D/log.$fmt
	rm -f "$img" "$log"
	qemu-img create -q -f "$fmt" "$img" 256M
	add_dev "$fmt round $2: add" -f "$img" -q 2 || return
	mkfs.ext4 -q "$DEV" && mount "$DEV" "$MNT" || { not_ok "$fmt round $2: mkfs+mount"; return; }
	: > "$log"
	fio --name=load --directory="$MNT" --rw=randwrite --bs=4k --size=32M \
		--ioengine=io_uring --direct=1 --iodepth=16 --fsync=32 --time_based \
		--runtime=60 > /dev/null 2>&1 &
	fio_pid=$!
	writer "$log" &
	w_pid=$!
	sleep $(( $(rnd 4) + 2 ))
	pid=$(sed -n 's/^pid=//p' "/run/imgblk/$DEV_ID.state")
	kill -KILL "$pid"
	# The writes in flight fail now; the filesystem sees I/O errors.
	wait "$w_pid" 2>/dev/null
	kill "$fio_pid" 2>/dev/null
	wait "$fio_pid" 2>/dev/null
	umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	del_dev "$fmt round $2: del after kill -9" "$DEV_ID"

	no_corruption "$fmt round $2: qemu-img check after the kill" "$img"
	# Served again: the engine repairs what the format says (need-check,
	# dirty bit); e2fsck replays the journal, then must find nothing.
	add_dev "$fmt round $2: add again" -f "$img" || return
	e2fsck -fy "$DEV" > "$D/fsck1.out" 2>&1
	if e2fsck -fn "$DEV" > "$D/fsck2.out" 2>&1; then
		ok "$fmt round $2: e2fsck clean after journal replay"
	else
		not_ok "$fmt round $2: e2fsck clean after journal replay"
		diag_file "$D/fsck1.out"
		diag_file "$D/fsck2.out"
	fi
	mount -o ro "$DEV" "$MNT" || { not_ok "$fmt round $2: mount"; del_dev "del" "$DEV_ID"; return; }
	n=0
	bad=0
	while read -r f skip cnt; do
		n=$((n + 1))
		want=$(dd if="$D/src" bs=64k skip="$skip" count="$cnt" 2>/dev/null | md5sum)
		got=$(md5sum < "$MNT/$f" 2>/dev/null)
		[ "$want" = "$got" ] || { bad=$((bad + 1)); diag "$f differs or is missing"; }
	done < "$log"
	if [ $bad = 0 ]; then
		ok "$fmt round $2: all $n files fsynced before the kill are intact"
	else
		not_ok "$fmt round $2: $bad of $n files fsynced before the kill are damaged"
	fi
	umount "$MNT"
	del_dev "$fmt round $2: del" "$DEV_ID"
	no_corruption "$fmt round $2: qemu-img check after the repairing open" "$img"
}

r=1
while [ $r -le "$ROUNDS" ]; do
	round qcow2 $r
	round qed $r
	r=$((r + 1))
done
done_testing
