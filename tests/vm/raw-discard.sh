#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# raw-discard.sh - discard punches a hole in the backing file (its
# allocated blocks drop) and the range then reads zeros; write-zeroes reads
# zeros; the data around both ranges is untouched.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd md5sum stat
# busybox blkdiscard has no -z; the rig ships util-linux's.
blkdiscard --help 2>&1 | grep -q -- '--zeroout' ||
	skip_all "util-linux blkdiscard (with -z) not available"

MiB=1048576
IMG=$T_TMP/disk.raw
# A fully allocated file, so that a punched hole shows in its block count.
dd if=/dev/urandom of="$IMG" bs=1M count=64 2>/dev/null
add_dev "add raw 64 MiB device" -t raw -f "$IMG" || bail "cannot continue without a device"
Q=/sys/block/ublkb$DEV_ID/queue

region_md5() {	# region_md5 FILE_OR_DEV OFFSET_MIB LEN_MIB
	dd if="$1" bs=1M skip="$2" count="$3" 2>/dev/null | md5sum | cut -d' ' -f1
}
zero_md5() {	# zero_md5 LEN_MIB
	dd if=/dev/zero bs=1M count="$1" 2>/dev/null | md5sum | cut -d' ' -f1
}
# Check that [OFF, OFF+LEN) MiB of the device reads zeros, read with O_DIRECT
# so the page cache cannot answer for the server.
reads_zeros() {	# reads_zeros DESC OFFSET_MIB LEN_MIB
	got=$(dd if="$DEV" bs=1M skip="$2" count="$3" iflag=direct 2>/dev/null |
		md5sum | cut -d' ' -f1)
	if [ "$got" = "$(zero_md5 "$3")" ]; then ok "$1"; else not_ok "$1"; fi
}

before_head=$(region_md5 "$IMG" 0 8)
before_mid=$(region_md5 "$IMG" 24 8)
before_tail=$(region_md5 "$IMG" 40 24)

dmax=$(cat "$Q/discard_max_bytes" 2>/dev/null || echo 0)
if [ "$dmax" -gt 0 ]; then
	ok "device advertises discard (discard_max_bytes=$dmax)"
	blocks_before=$(stat -c %b "$IMG")
	check "blkdiscard 16 MiB at 8 MiB" blkdiscard -o $((8 * MiB)) -l $((16 * MiB)) "$DEV"
	blocks_after=$(stat -c %b "$IMG")
	# stat %b counts 512-byte units; allow some slack for partial pages.
	dropped=$((blocks_before - blocks_after))
	if [ "$dropped" -ge $((15 * 2048)) ]; then
		ok "backing file lost ~16 MiB of blocks (hole punched)"
	else
		not_ok "backing file lost ~16 MiB of blocks (hole punched)"
		diag "blocks before $blocks_before, after $blocks_after (512-byte units)"
	fi
	reads_zeros "discarded range reads zeros" 8 16
else
	skip "discard" "device does not advertise discard (discard_max_bytes=0)"
fi

wzmax=$(cat "$Q/write_zeroes_max_bytes" 2>/dev/null || echo 0)
if [ "$wzmax" -gt 0 ]; then
	ok "device advertises write-zeroes (write_zeroes_max_bytes=$wzmax)"
else
	# BLKZEROOUT still works then: the kernel writes zero pages instead.
	diag "device does not advertise write-zeroes; blkdiscard -z falls back to writes"
fi
check "blkdiscard -z 8 MiB at 32 MiB" blkdiscard -z -o $((32 * MiB)) -l $((8 * MiB)) "$DEV"
reads_zeros "write-zeroes range reads zeros" 32 8

# Data around the ranges, on the device and then in the file after del.
check "device data outside the ranges unchanged" sh -c "
	[ \"\$(dd if=$DEV bs=1M count=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)\" = $before_head ] &&
	[ \"\$(dd if=$DEV bs=1M skip=24 count=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)\" = $before_mid ] &&
	[ \"\$(dd if=$DEV bs=1M skip=40 count=24 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)\" = $before_tail ]"
del_dev "del device" "$DEV_ID"
if [ "$(region_md5 "$IMG" 32 8)" = "$(zero_md5 8)" ]; then
	ok "backing file has zeros where write-zeroes went"
else
	not_ok "backing file has zeros where write-zeroes went"
fi
if [ "$(region_md5 "$IMG" 0 8)$(region_md5 "$IMG" 24 8)$(region_md5 "$IMG" 40 24)" = \
     "$before_head$before_mid$before_tail" ]; then
	ok "backing file data outside the ranges unchanged"
else
	not_ok "backing file data outside the ranges unchanged"
fi
done_testing
