#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# smoke.sh - the driver is there and the simplest device works: a null
# target can be added, read, written and deleted.  The first test to run
# while the binary is young.
. "$(dirname "$0")/lib.sh"

if [ -d /sys/module/ublk_drv ]; then
	ok "ublk_drv loaded"
else
	not_ok "ublk_drv loaded"
fi
if [ -c /dev/ublk-control ]; then
	ok "/dev/ublk-control exists"
else
	not_ok "/dev/ublk-control exists"
fi
need_imgblk

check "imgblk help" imgblk help
if add_dev "add a 64 MiB null device" -t null --size 64M; then
	if [ -b "/dev/ublkc$DEV_ID" ] || [ -c "/dev/ublkc$DEV_ID" ]; then
		ok "char device /dev/ublkc$DEV_ID exists"
	else
		not_ok "char device /dev/ublkc$DEV_ID exists"
	fi
	check "read 1 MiB with O_DIRECT" \
		dd if="$DEV" of=/dev/null bs=64k count=16 iflag=direct
	check "write 1 MiB with O_DIRECT" \
		dd if=/dev/zero of="$DEV" bs=64k count=16 oflag=direct
	sz=$(cat "/sys/block/ublkb$DEV_ID/size" 2>/dev/null || echo 0)
	if [ "$sz" = $((64 * 2048)) ]; then
		ok "size is 64 MiB"
	else
		not_ok "size is 64 MiB"
		diag "/sys/block/ublkb$DEV_ID/size is $sz sectors"
	fi
	if listed "$DEV_ID"; then
		ok "imgblk list shows the device"
	else
		not_ok "imgblk list shows the device"
		diag_file "$T_TMP/list.out"
	fi
	del_dev "del the device" "$DEV_ID"
	if wait_gone "$DEV" 10; then
		ok "$DEV is gone after del"
	else
		not_ok "$DEV is gone after del"
	fi
fi
done_testing
