#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# backup-incremental.sh - incremental backups of a running qcow2 device
# under fio verify=crc32c: a full backup, three incremental ones (each an
# overlay of the previous, taken with `backup --sync incremental --bitmap
# b0 -b PREV`) and a differential one, each started while fio writes.
# The reference of each point is the image read with `convert -U` while
# the device is paused around the job's start (as job-backup.sh does);
# each backup point, read through its chain, equals it (qemu-img
# compare) and checks clean.  The bitmap's sync: busy during a job, only
# the writes since the start after a success, its old marks back after a
# cancel, kept by a differential backup.  Refusals: missing, disabled
# and inconsistent (server killed) bitmaps.  QEMU's view of the bitmap
# after all that (qemu-img info consistent; qemu-nbd -B read with
# qemu-img map) equals imgblk's `map --bitmap`.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio qemu-img qemu-nbd

IMG=$T_TMP/disk.qcow2
B=$T_TMP/bk
SOCK=$T_TMP/nbd.sock

# bm FIELD: bitmap b0's FIELD (count, busy) from query-block.
bm() {
	imgblk qmp -n "$ID" query-block | tr -d ' \n' |
		sed -n "s/.*\"name\":\"b0\"[^}]*\"$1\":\([a-z0-9]*\).*/\1/p"
}

# dirty_runs: "start end" lines of the dirty runs of a map on stdin, either
# qemu-img map's (QEMU marks dirty as "data": false) or imgblk's ("dirty"),
# as in bitmaps.sh.
dirty_runs() {
	sed -n 's/.*"start": *\([0-9]*\), *"length": *\([0-9]*\).*"\(data\|dirty\)": *\(true\|false\).*/\1 \2 \3 \4/p' |
		awk '{ d = ($3 == "data") ? ($4 == "false") : ($4 == "true")
		       if (!d) next
		       if (have && $1 == e) { e = $1 + $2; next }
		       if (have) print s, e
		       s = $1; e = $1 + $2; have = 1 }
		     END { if (have) print s, e }'
}

# job_done: the device's job ends well, or has already ended (a small
# copy may finish before we ask; the backup's content is compared anyway).
job_done() {
	timeout 120 imgblk job -n "$ID" wait 2> "$T_TMP/wait.err" ||
		grep -q 'no block job runs' "$T_TMP/wait.err"
}

# point K SYNC ARGS...: the device paused, backup K starts (SYNC, ARGS),
# the reference is read, the device resumes.
point() {
	_k=$1
	shift
	check "pause for point $_k" imgblk pause -n "$ID"
	check "point $_k: backup $*" imgblk backup -n "$ID" "$@" "$B.$_k.qcow2"
	check "point $_k: the reference" qemu-img convert -U -f qcow2 -O raw "$IMG" "$B.$_k.raw"
	check "resume after point $_k" imgblk resume -n "$ID"
}

check "image with a bitmap made by qemu-img" sh -c "qemu-img create -q -f qcow2 '$IMG' 64M &&
	qemu-img bitmap --add '$IMG' b0"
add_dev "add a two-queue device" -f "$IMG" -q 2 || bail "cannot continue"
ID=$DEV_ID
check "data on the device" dd if=/dev/urandom of="$DEV" bs=1M count=16 oflag=direct

fio --name=inc --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
	--bs=4k --size=24M --offset=8M --iodepth=8 --rate_iops=400 --time_based --runtime=20 \
	--verify=crc32c --verify_backlog=256 --verify_fatal=1 > "$T_TMP/fio.out" 2>&1 &
FIO=$!
sleep 1

# The full backup and the bitmap's clear share one moment: the device is paused.
check "pause for point 0" imgblk pause -n "$ID"
check "point 0: bitmap --clear" imgblk bitmap -n "$ID" --clear b0
check "point 0: backup --sync full" imgblk backup -n "$ID" --sync full --speed 16M "$B.0.qcow2"
check "point 0: the reference" qemu-img convert -U -f qcow2 -O raw "$IMG" "$B.0.raw"
check "resume after point 0" imgblk resume -n "$ID"
check "point 0 completes" job_done

for k in 1 2 3; do
	sleep 1
	point $k --sync incremental --bitmap b0 -b "$B.$((k - 1)).qcow2" --speed 4M
	[ $k = 1 ] && check "b0 is busy during the job" test "$(bm busy)" = true
	check "point $k completes" job_done
done
check "b0 is free again" test "$(bm busy)" = false
check "a 64 KiB write at 60M" dd if=/dev/urandom of="$DEV" bs=64k count=1 seek=960 oflag=direct
C0=$(bm count)
point d --sync differential --bitmap b0 -b "$B.3.qcow2" --speed 4M
check "the differential backup completes" job_done
C=$(bm count)
check "the differential kept b0's marks ($C0 at its start, $C after)" \
	test "${C0:-0}" -ge 65536 -a "${C:-0}" -ge "${C0:-0}"

if wait "$FIO" && ! grep -qE 'err= *[1-9]|verify: bad|bad magic' "$T_TMP/fio.out"; then
	ok "fio verify=crc32c during the backups, no errors"
else
	not_ok "fio verify=crc32c during the backups, no errors"
	grep -E 'err=|verify|bad|error|fio:' "$T_TMP/fio.out" | head -n 20 | sed 's/^/#   /'
fi

for k in 0 1 2 3 d; do
	check "point $k checks clean" qemu-img check -q "$B.$k.qcow2"
	check "point $k (its chain) equals the device then" \
		qemu-img compare -q -f raw -F qcow2 "$B.$k.raw" "$B.$k.qcow2"
done
check "point 2 is an overlay of point 1" \
	sh -c "qemu-img info '$B.2.qcow2' | grep -q 'backing file: $B.1.qcow2'"

# The sync, with the device idle: a differential kept the marks, a
# cancelled incremental gives them back, a successful one clears them.
C=$(bm count)
check "a slow incremental starts" imgblk backup -n "$ID" --sync incremental --bitmap b0 \
	-b "$B.d.qcow2" --speed 64K "$T_TMP/cancel.qcow2"
check_fails "... cancelled" imgblk job -n "$ID" cancel --wait
check "b0 has its marks back after the cancel" test "$(bm count)" = "$C"
check "an incremental with nothing written meanwhile" timeout 120 imgblk backup -n "$ID" \
	--sync incremental --bitmap b0 -b "$B.d.qcow2" --wait "$T_TMP/last.qcow2"
check "b0 is empty after its success" test "$(bm count)" = 0
check "a 64 KiB write at 40M" dd if=/dev/urandom of="$DEV" bs=64k count=1 seek=640 oflag=direct
check "b0 marks just that" test "$(bm count)" = 65536
check "imgblk query lists it" sh -c "imgblk query -n $ID |
	grep -q '^  b0: granularity 65536, recording, 65536 bytes dirty$'"

# Refusals, each one line before anything is created.
imgblk backup -n "$ID" --sync incremental --bitmap nope "$T_TMP/x.qcow2" 2> "$T_TMP/err"
check "a missing bitmap is refused" sh -c "grep -q \"Dirty bitmap 'nope' not found\" \
	'$T_TMP/err' && test ! -e '$T_TMP/x.qcow2'"
check "live --add --disabled b1" imgblk bitmap -n "$ID" --add --disable b1
imgblk backup -n "$ID" --sync incremental --bitmap b1 "$T_TMP/x.qcow2" 2> "$T_TMP/err"
check "a disabled bitmap is refused" grep -q "Bitmap 'b1' is disabled" "$T_TMP/err"
check_fails "--sync incremental without --bitmap is a usage error" \
	imgblk backup -n "$ID" --sync incremental "$T_TMP/x.qcow2"
check "live --remove b1" imgblk bitmap -n "$ID" --remove b1
del_dev "del" "$ID"

# QEMU's view of b0 equals imgblk's.
check "qemu-img info: b0 consistent" sh -c "qemu-img info '$IMG' | grep -B3 'name: b0' |
	grep -q auto && ! qemu-img info '$IMG' | grep -q in-use"
check "qemu-img check of the image is clean" qemu-img check -q "$IMG"
rm -f "$SOCK"
qemu-nbd -r -f qcow2 -B b0 -k "$SOCK" "$IMG" > /dev/null 2>&1 &
NBD=$!
i=0
while [ ! -S "$SOCK" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
qemu-img map --output=json --image-opts \
	"driver=nbd,server.type=unix,server.path=$SOCK,x-dirty-bitmap=qemu:dirty-bitmap:b0" |
	dirty_runs > "$T_TMP/q.b0"
wait $NBD
imgblk map -f qcow2 --bitmap b0 --output=json "$IMG" | dirty_runs > "$T_TMP/i.b0"
check "QEMU's view of b0 equals imgblk's map --bitmap" cmp "$T_TMP/q.b0" "$T_TMP/i.b0"
check "... the one write at 40M" test "$(cat "$T_TMP/i.b0")" = "$((40 << 20)) $(((40 << 20) + 65536))"

# A server that dies leaves b0 in use: refused for an incremental backup.
add_dev "add again" -f "$IMG" || bail "cannot continue"
ID=$DEV_ID
check "a write" dd if=/dev/urandom of="$DEV" bs=4k count=1 oflag=direct
PID=$(imgblk list | awk -v id="$ID" '$1 == id { print $6 }')
check "kill -9 the server" kill -9 "$PID"
timeout 30 imgblk del -n "$ID" > /dev/null 2>&1
wait_gone "$DEV" 30
add_dev "add the image with b0 in use" -f "$IMG" || bail "cannot continue"
ID=$DEV_ID
imgblk backup -n "$ID" --sync incremental --bitmap b0 "$T_TMP/x.qcow2" 2> "$T_TMP/err"
check "an inconsistent bitmap is refused" sh -c "[ \$(wc -l < '$T_TMP/err') = 1 ] &&
	grep -q \"Bitmap 'b0' is inconsistent\" '$T_TMP/err'"
check "query-block says inconsistent" test "$(bm inconsistent)" = true
del_dev "del" "$ID"
done_testing
