#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# job-chain.sh - the jobs that change a running device's own chain, each
# under fio verify=crc32c: stream (to a base, and of the whole chain),
# intermediate commit, active commit with pivot.  After each, the chain
# is what the job says (query, and the image headers), qemu-img check is
# clean on every image, and the images read back what the device read.
# Then the refusals (raw, nothing to do), and a server killed during a
# stream and during an intermediate commit comes back with `recover` on a
# chain that reads the same, the job gone.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio qemu-img

BASE=$T_TMP/base.qcow2
MID=$T_TMP/mid.qcow2
TOP=$T_TMP/top.qcow2

# chain: base (0x5a over 0-40M) <- mid (0xa5 over 20-60M) <- top (empty).
make_chain() {
	rm -f "$BASE" "$MID" "$TOP"
	qemu-img create -q -f qcow2 "$BASE" 128M &&
	qemu-io -c 'write -P 0x5a 0 40M' "$BASE" > /dev/null &&
	qemu-img create -q -f qcow2 -b "$BASE" -F qcow2 "$MID" &&
	qemu-io -c 'write -P 0xa5 20M 40M' -c 'write -z 30M 1M' "$MID" > /dev/null &&
	qemu-img create -q -f qcow2 -b "$MID" -F qcow2 "$TOP"
}

start_fio() {
	fio --name="$1" --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
		--bs=4k --size=48M --offset=8M --iodepth=16 --verify=crc32c --verify_backlog=512 \
		--verify_fatal=1 --do_verify=1 > "$T_TMP/fio-$1.out" 2>&1 &
	FIO=$!
}

fio_ok() {
	if wait "$FIO" && ! grep -qE 'err= *[1-9]|verify: bad|bad magic' "$T_TMP/fio-$1.out"; then
		ok "fio verify=crc32c during the $1, no errors"
	else
		not_ok "fio verify=crc32c during the $1, no errors"
		grep -E 'err=|verify|bad|error|fio:' "$T_TMP/fio-$1.out" | head -n 20 | sed 's/^/#   /'
	fi
}

# finish NAME IMAGE: the device read whole, del, every image checks
# clean, IMAGE (what the device served) reads the same.
finish() {
	check "$1: the device's content" dd if="$DEV" of="$T_TMP/ref.raw" bs=1M iflag=direct
	del_dev "$1: del" "$DEV_ID"
	for i in "$BASE" "$MID" "$TOP"; do
		check "$1: qemu-img check $(basename "$i") is clean" qemu-img check -q "$i"
	done
	check "$1: $(basename "$2") reads what the device read" \
		qemu-img compare -q -F raw "$2" "$T_TMP/ref.raw"
}

# 1. stream down to base: mid leaves the chain.
check "chain base <- mid <- top" make_chain
add_dev "stream: add" -f "$TOP" -q 2 || bail "cannot continue"
start_fio stream
sleep 1
check "stream --base base --wait" timeout 250 imgblk stream -n "$DEV_ID" --base "$BASE" --wait
fio_ok stream
check "stream: query shows top over base" sh -c \
	"imgblk query -n $DEV_ID | grep -q '$BASE' && ! imgblk query -n $DEV_ID | grep -q '$MID'"
finish stream "$TOP"
check "stream: top's header names base" sh -c "qemu-img info '$TOP' | grep -q 'backing file: $BASE'"

# 2. stream of the whole chain: the top stands alone.
check "chain again" make_chain
add_dev "full stream: add" -f "$TOP" -q 2 || bail "cannot continue"
start_fio full-stream
check "stream --wait -p" timeout 250 imgblk stream -n "$DEV_ID" --wait -p
fio_ok full-stream
finish "full stream" "$TOP"
check_fails "full stream: top has no backing file" sh -c "qemu-img info '$TOP' | grep -q 'backing file'"

# 3. intermediate commit: mid into base, top then reads base.
check "chain again" make_chain
add_dev "commit: add" -f "$TOP" -q 2 || bail "cannot continue"
start_fio commit
check "commit --top mid --base base --wait" \
	timeout 250 imgblk commit -n "$DEV_ID" --top "$MID" --base "$BASE" --wait
fio_ok commit
finish commit "$TOP"
check "commit: top's header names base" sh -c "qemu-img info '$TOP' | grep -q 'backing file: $BASE'"
check "commit: base holds mid's data" qemu-img compare -q "$MID" "$BASE"

# 4. active commit with pivot: the device ends on base.
check "chain again" make_chain
add_dev "active commit: add" -f "$TOP" -q 2 || bail "cannot continue"
start_fio active
sleep 1
check "commit (active) --pivot" timeout 250 imgblk commit -n "$DEV_ID" --pivot
fio_ok active
check "active commit: the device serves base" sh -c \
	"imgblk query -n $DEV_ID | grep -A1 '^chain' | grep -q '$BASE'"
finish "active commit" "$BASE"

# 5. refusals.
RAW=$T_TMP/r.raw
check "raw image" qemu-img create -q -f raw "$RAW" 16M
add_dev "raw: add" -f "$RAW" || bail "cannot continue"
check_fails "stream of a raw device is refused" imgblk stream -n "$DEV_ID"
imgblk stream -n "$DEV_ID" 2> "$T_TMP/err" ; check "with a reason" grep -q "stream needs a top image" "$T_TMP/err"
check_fails "commit of a raw device is refused" imgblk commit -n "$DEV_ID"
check "with a reason" sh -c "imgblk commit -n $DEV_ID 2>&1 | grep -q 'nothing to commit'"
check_fails "a job verb with --speed below a cluster/s is refused" \
	imgblk backup -n "$DEV_ID" --sync full --speed 100 "$T_TMP/b.raw"
del_dev "raw: del" "$DEV_ID"

# 6. kill -9 during a slow stream and a slow commit, then recover.
for job in stream commit active; do
	check "$job kill: chain" make_chain
	add_dev "$job kill: add --recoverable" -f "$TOP" -q 2 --recoverable || bail "cannot continue"
	check "$job kill: content before" dd if="$DEV" of="$T_TMP/before.raw" bs=1M iflag=direct
	if [ $job = stream ]; then
		check "$job kill: slow stream" imgblk stream -n "$DEV_ID" --speed 4M
		sleep 2
	elif [ $job = commit ]; then
		check "$job kill: slow commit" imgblk commit -n "$DEV_ID" --top "$MID" --speed 4M
		sleep 2
	else
		# Killed while it copies, becomes ready, or pivots: any is fine.
		imgblk commit -n "$DEV_ID" --pivot > /dev/null 2>&1 &
		sleep 1
	fi
	pid=$(sed -n 's/^pid=//p' "/run/imgblk/$DEV_ID.state")
	kill -KILL "$pid"
	i=0
	while ! imgblk list -n "$DEV_ID" 2>/dev/null | grep -q QUIESCED && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	had_job=0
	grep -q '^job=' "/run/imgblk/$DEV_ID.state" && had_job=1
	timeout 60 imgblk recover -n "$DEV_ID" > "$T_TMP/recover.out" 2>&1
	rc=$?
	want="block job ublkb[0-9]* \($job of .*\) ended with its server and is gone; the device serves $TOP"
	# An active commit may have pivoted before the kill: then no job died.
	[ $job = active ] && want="\(commit of .*\) ended with its server and is gone; the device serves ($TOP|$BASE)"
	[ $job = active ] && [ $had_job = 0 ] && want="/dev/ublkb$DEV_ID"
	if [ $rc = 0 ] && grep -Eq "$want" "$T_TMP/recover.out"; then
		ok "$job kill: recover succeeds and says the job is gone"
	else
		not_ok "$job kill: recover succeeds and says the job is gone"
		diag_file "$T_TMP/recover.out"
	fi
	check "$job kill: no job after recover" sh -c "imgblk job -n $DEV_ID | grep -q 'no block job'"
	dd if="$DEV" of="$T_TMP/after.raw" bs=1M iflag=direct 2>/dev/null
	check "$job kill: the content is the same" same_bytes "$T_TMP/before.raw" "$T_TMP/after.raw"
	del_dev "$job kill: del" "$DEV_ID"
	for i in "$BASE" "$MID" "$TOP"; do
		no_corruption "$job kill: qemu-img check $(basename "$i")" "$i"
	done
done
done_testing
