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

# Queue threads and CPUs: a queue the kernel maps several CPUs to keeps
# its thread on them; a queue of one CPU leaves its thread to the
# scheduler, so that it does not share that CPU with its submitter.
# taskset -c 0 makes the difference visible: pinned threads leave CPU 0.
queue_cpus() {	# queue_cpus ID: the queue threads' CPU lists, sorted
	_pid=$(imgblk list -n "$1" | awk 'NR == 2 { print $6 }')
	for _st in /proc/$_pid/task/*/status; do
		case $(awk '$1 == "Name:" { print $2 }' "$_st") in
		imgblk-q*) awk '$1 == "Cpus_allowed_list:" { print $2 }' "$_st" ;;
		esac
	done | sort | tr '\n' ' ' | sed 's/ $//'
}
if [ "$(nproc)" = 2 ]; then
	cpus=$(queue_cpus "$DEV_ID")
	[ "$cpus" = "0-1 0-1" ] && ok "-q 2 on 2 CPUs: queue threads left to the scheduler" ||
		not_ok "-q 2 on 2 CPUs: queue threads left to the scheduler (found: $cpus)"
	truncate -s 8M "$T_TMP/small.raw"
	for q in 1:"0-1" 2:"0 0"; do
		want=${q#*:}
		q=${q%%:*}
		out=$(taskset -c 0 imgblk add -t raw -f "$T_TMP/small.raw" -q "$q" -r) ||
			{ not_ok "taskset -c 0 imgblk add -q $q"; continue; }
		cpus=$(queue_cpus "${out#/dev/ublkb}")
		[ "$cpus" = "$want" ] && ok "taskset -c 0, -q $q: queue threads on $want" ||
			not_ok "taskset -c 0, -q $q: queue threads on $cpus, want $want"
		imgblk del -n "${out#/dev/ublkb}"
	done
else
	skip "queue threads and CPUs" "the VM has $(nproc) CPUs, not 2"
fi

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
