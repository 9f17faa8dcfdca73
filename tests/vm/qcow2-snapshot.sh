#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-snapshot.sh - add --snapshot NAME serves an internal snapshot,
# read-only, while the image's current state stays what it is.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-img qemu-io

IMG=$T_TMP/snap.qcow2
qemu-img create -q -f qcow2 "$IMG" 64M
qemu-io -f qcow2 -c 'write -P 0xa1 0 4M' "$IMG" > /dev/null
check "imgblk snapshot -c before" imgblk snapshot -c before "$IMG"
qemu-io -f qcow2 -c 'write -P 0xb2 0 2M' "$IMG" > /dev/null

if add_dev "add --snapshot before" -f "$IMG" --snapshot before; then
	check "the device reads the snapshot's data" \
		qemu-io -r -f raw -t none -c 'read -P 0xa1 0 4M' "$DEV"
	[ "$(cat "/sys/block/ublkb$DEV_ID/ro")" = 1 ] &&
		ok "the snapshot device is read-only" || not_ok "the snapshot device is read-only"
	check_fails "writes to it fail" dd if=/dev/zero of="$DEV" bs=4k count=1 oflag=direct
	del_dev "del" "$DEV_ID"
fi
if add_dev "add the image itself" -f "$IMG"; then
	check "the device reads the current data" \
		qemu-io -f raw -t none -c 'read -P 0xb2 0 2M' -c 'read -P 0xa1 2M 2M' "$DEV"
	del_dev "del" "$DEV_ID"
fi
check "qemu-img check clean" qemu-img check "$IMG"
qemu-img snapshot -l "$IMG" > "$T_TMP/snaps"
grep -q before "$T_TMP/snaps" && ok "QEMU lists the snapshot" || not_ok "QEMU lists the snapshot"
refused=0
imgblk add -f "$IMG" --snapshot nosuch > /dev/null 2> "$T_TMP/err" || refused=1
[ $refused = 1 ] && [ "$(wc -l < "$T_TMP/err")" = 1 ] &&
	ok "an unknown snapshot is refused with one line" ||
	not_ok "an unknown snapshot is refused with one line"
done_testing
