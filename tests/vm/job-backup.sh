#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# job-backup.sh - a backup of a running qcow2 device (over a backing file)
# under fio verify=crc32c holds exactly the content of its start: the
# reference is the image chain read with `convert -U` while the device
# was paused around the job's start (the start flushes the top, and a
# paused device's I/O, the job's included, waits).  Then the refusals of
# the job verbs, and pause, resume, cancel through `imgblk job`.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio qemu-img

BASE=$T_TMP/base.qcow2
IMG=$T_TMP/disk.qcow2
BK=$T_TMP/backup.qcow2
REF=$T_TMP/ref.raw
check "base image with data" sh -c "qemu-img create -q -f qcow2 '$BASE' 128M &&
	qemu-io -c 'write -P 0x5a 0 40M' '$BASE' > /dev/null"
check "overlay" qemu-img create -q -f qcow2 -b "$BASE" -F qcow2 "$IMG"
add_dev "add a two-queue qcow2 device" -f "$IMG" -q 2 || bail "cannot continue"
ID=$DEV_ID
check "random data over part of the device" \
	dd if=/dev/urandom of="$DEV" bs=1M count=24 seek=16 oflag=direct

# The job's moment, with the device paused around it.
check "pause" imgblk pause -n "$ID"
check "backup --sync full starts (paused device, 4 MiB/s)" \
	imgblk backup -n "$ID" --sync full -f qcow2 --speed 4M "$BK"
check "the reference: convert -U of the chain" \
	qemu-img convert -U -f qcow2 -O raw "$IMG" "$REF"
check "job list shows the backup" sh -c "imgblk job -n $ID | grep -q backup"
check "resume" imgblk resume -n "$ID"

# Over the end of the backup's data only: copy-before-write saves a
# whole 64 KiB cluster at a guest write, and would save all of it within
# a second; below 32M the job copies at its pace, and is still running
# for the pause that follows.
fio --name=bk --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
	--bs=4k --offset=32M --size=32M --iodepth=16 --verify=crc32c --verify_backlog=512 \
	--verify_fatal=1 --do_verify=1 --loops=2 > "$T_TMP/fio.out" 2>&1 &
FIO=$!
sleep 2
check "job pause" imgblk job -n "$ID" pause
check "job list says paused" sh -c "imgblk job -n $ID | grep -q paused"
check_fails "a second job is refused" imgblk mirror -n "$ID" "$T_TMP/m.qcow2"
check "job resume" imgblk job -n "$ID" resume
check "job set-speed 0" imgblk job -n "$ID" set-speed --speed 0
check "job wait: the backup completes" timeout 200 imgblk job -n "$ID" wait
if wait "$FIO" && ! grep -qE 'err= *[1-9]|verify: bad|bad magic' "$T_TMP/fio.out"; then
	ok "fio verify=crc32c during the backup, no errors"
else
	not_ok "fio verify=crc32c during the backup, no errors"
	grep -E 'err=|verify|bad|error|fio:' "$T_TMP/fio.out" | head -n 20 | sed 's/^/#   /'
fi
check "qemu-img check of the backup is clean" qemu-img check -q "$BK"
check "the backup equals the device at the start" \
	qemu-img compare -q -f raw -F qcow2 "$REF" "$BK"

# sync=top: only the overlay's data, over the same backing file.
TOP=$T_TMP/top.qcow2
check "backup --sync top --wait" timeout 200 imgblk backup -n "$ID" --sync top --wait "$TOP"
check "the top backup names the base" sh -c "qemu-img info -U '$TOP' | grep -q 'backing file: $BASE'"
check "qemu-img check of the top backup is clean" qemu-img check -q "$TOP"

# Refusals and cancel.
check_fails "--speed below a cluster a second is refused" \
	imgblk backup -n "$ID" --sync full --speed 1000 "$T_TMP/slow.qcow2"
check_fails "a target in use is refused" imgblk backup -n "$ID" --sync full --existing "$IMG"
check "backup at 1 MiB/s" imgblk backup -n "$ID" --sync full --speed 1M "$T_TMP/c.qcow2"
check_fails "job cancel --wait exits non-zero" imgblk job -n "$ID" cancel --wait
check "no job left" sh -c "imgblk job -n $ID | grep -q 'no block job'"
check "query-block-jobs is empty" sh -c \
	"imgblk qmp -n $ID query-block-jobs | grep -q '\\[\\]'"

# A target whose filesystem is too small is refused up front.
SMALL=$T_TMP/small
mkdir -p "$SMALL"
check "an 8 MiB tmpfs" mount -t tmpfs -o size=8m tmpfs "$SMALL"
on_exit "umount $SMALL 2>/dev/null"
imgblk backup -n "$ID" --sync full "$SMALL/b.qcow2" 2> "$T_TMP/room.err"
if [ $? != 0 ] && grep -q "not enough room for $SMALL/b.qcow2" "$T_TMP/room.err"; then
	ok "a target without room is refused with a reason"
else
	not_ok "a target without room is refused with a reason"
	diag_file "$T_TMP/room.err"
fi
imgblk backup -n "$ID" --sync full -p "$T_TMP/p.qcow2" > "$T_TMP/p.out" 2>&1
check "progress (-p): a backup draws its percentage and waits for the end" \
	sh -c "grep -q '/100%)' '$T_TMP/p.out' && qemu-img check -q '$T_TMP/p.qcow2'"

del_dev "del" "$ID"
check "qemu-img check of the image is clean" qemu-img check -q "$IMG"
check "the image (idle since) equals the top backup" qemu-img compare -q "$IMG" "$TOP"

# kill -9 at random moments of a backup, three rounds: recover serves
# the image, the job is gone, the data is as it was.
add_dev "add --recoverable" -f "$IMG" -q 2 --recoverable || bail "cannot continue"
ID=$DEV_ID
check "device content before" dd if="$DEV" of="$T_TMP/k0.raw" bs=1M iflag=direct
for r in 1 2 3; do
	imgblk backup -n "$ID" --sync full --speed 16M "$T_TMP/k$r.qcow2" > /dev/null 2>&1
	usleep $((r * 300000)) 2>/dev/null || sleep 1
	pid=$(sed -n 's/^pid=//p' "/run/imgblk/$ID.state")
	kill -KILL "$pid"
	i=0
	while ! imgblk list -n "$ID" 2>/dev/null | grep -q QUIESCED && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	timeout 60 imgblk recover -n "$ID" > "$T_TMP/rec.out" 2>&1
	if [ $? = 0 ] && grep -q "backup of $T_TMP/k$r.qcow2) ended with its server" "$T_TMP/rec.out"; then
		ok "kill round $r: recover says the backup is gone"
	else
		not_ok "kill round $r: recover says the backup is gone"
		diag_file "$T_TMP/rec.out"
	fi
	check "kill round $r: no job" sh -c "imgblk job -n $ID | grep -q 'no block job'"
	dd if="$DEV" of="$T_TMP/k.raw" bs=1M iflag=direct 2>/dev/null
	check "kill round $r: same content" same_bytes "$T_TMP/k0.raw" "$T_TMP/k.raw"
done
del_dev "del" "$ID"
no_corruption "qemu-img check of the image after the kills" "$IMG"
for r in 1 2 3; do
	no_corruption "the incomplete target of round $r" "$T_TMP/k$r.qcow2"
done
done_testing
