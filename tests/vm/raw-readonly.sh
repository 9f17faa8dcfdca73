#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# raw-readonly.sh - a --read-only device is read-only to the kernel, refuses
# writes, and never changes its file.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd md5sum

IMG=$T_TMP/disk.raw
dd if=/dev/urandom of="$IMG" bs=1M count=16 2>/dev/null
sum=$(md5sum < "$IMG")

add_dev "add raw --read-only device" -t raw -f "$IMG" --read-only ||
	bail "cannot continue without a device"
ro=$(blockdev --getro "$DEV" 2>&1)
if [ "$ro" = 1 ]; then ok "blockdev --getro says 1"; else
	not_ok "blockdev --getro says 1"; diag "got: $ro"; fi
ro=$(cat "/sys/block/ublkb$DEV_ID/ro" 2>&1)
if [ "$ro" = 1 ]; then ok "/sys/block/ublkb$DEV_ID/ro is 1"; else
	not_ok "/sys/block/ublkb$DEV_ID/ro is 1"; diag "got: $ro"; fi
check "reading works and matches the file" \
	sh -c "[ \"\$(dd if=$DEV bs=1M iflag=direct 2>/dev/null | md5sum)\" = '$sum' ]"
check_fails "O_DIRECT write fails" \
	dd if=/dev/zero of="$DEV" bs=4k count=1 seek=1 oflag=direct conv=notrunc
check_fails "buffered write with fsync fails" \
	dd if=/dev/zero of="$DEV" bs=4k count=1 seek=2 conv=notrunc,fsync
if [ -x /usr/sbin/blkdiscard ]; then
	check_fails "discard fails" blkdiscard -o 0 -l 1048576 "$DEV"
fi
del_dev "del device" "$DEV_ID"
if [ "$(md5sum < "$IMG")" = "$sum" ]; then ok "file unchanged"; else
	not_ok "file unchanged"; fi
done_testing
