#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# raw-fio.sh - data integrity under concurrent direct I/O: fio writes with
# crc32c checksums through two queues of depth 64 from two jobs and
# verifies every block it wrote, at 4k and at mixed block sizes.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio

IMG=$T_TMP/disk.raw
truncate -s 128M "$IMG"
add_dev "add raw device with -q 2 -d 64" -t raw -f "$IMG" -q 2 -d 64 ||
	bail "cannot continue without a device"

nq=$(ls -d /sys/block/ublkb$DEV_ID/mq/* 2>/dev/null | wc -l)
if [ "$nq" = 2 ]; then ok "device has 2 hardware queues"; else
	not_ok "device has 2 hardware queues"; diag "found $nq"; fi

# Each queue thread runs on the CPUs the kernel maps to its queue: with
# as many queues as CPUs, one CPU each, no two the same.
pid=$(imgblk list -n "$DEV_ID" | awk 'NR == 2 { print $6 }')
cpus=
for st in /proc/$pid/task/*/status; do
	case $(awk '$1 == "Name:" { print $2 }' "$st") in
	imgblk-q[01]) cpus="$cpus $(awk '$1 == "Cpus_allowed_list:" { print $2 }' "$st")" ;;
	esac
done
cpus=$(echo $cpus | tr ' ' '\n' | sort | tr '\n' ' ')
if [ "$(nproc)" = 2 ]; then
	if [ "$cpus" = "0 1 " ]; then ok "queue threads pinned to CPUs 0 and 1"; else
		not_ok "queue threads pinned to CPUs 0 and 1"; diag "found: $cpus"; fi
else
	skip "queue threads pinned to CPUs 0 and 1" "the VM has $(nproc) CPUs, not 2"
fi

# Each job gets its own 32 MiB (offset_increment): two jobs verifying the
# same blocks would overwrite each other's data and report false errors.
run_fio() {	# run_fio NAME BS_OPTION
	fio --name="$1" --filename="$DEV" --ioengine=io_uring --direct=1 \
		--rw=randrw --rwmixread=30 "$2" --iodepth=32 --numjobs=2 \
		--size=32M --offset_increment=32M --verify=crc32c \
		--verify_fatal=1 --do_verify=1 --group_reporting \
		> "$T_TMP/fio-$1.out" 2>&1
	rc=$?
	if [ $rc = 0 ] && ! grep -qE 'err= *[1-9]|verify: bad|bad magic' "$T_TMP/fio-$1.out"; then
		ok "fio $1 verify=crc32c, no errors"
	else
		not_ok "fio $1 verify=crc32c, no errors"
		diag "fio exit status $rc"
		grep -E 'err=|verify|bad|error|fio:' "$T_TMP/fio-$1.out" | head -n 20 | sed 's/^/#   /'
	fi
}
run_fio bs4k --bs=4k
run_fio bsrange --bsrange=4k-128k

# The device content and the file agree once the writes are done.
if command -v qemu-img > /dev/null; then
	check "device and backing file are identical" \
		qemu-img compare -f raw -F raw "$DEV" "$IMG"
else
	skip "device and backing file are identical" "qemu-img not available"
fi
del_dev "del device" "$DEV_ID"
done_testing
