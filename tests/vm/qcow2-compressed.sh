#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-compressed.sh - a compressed qcow2 image (QEMU's, zlib and zstd)
# served as a device: reads decompress, writes turn the clusters they
# touch into normal ones, and QEMU finds the result clean and identical
# to what the device showed.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-img qemu-io md5sum

D=$T_TMP
qemu-img create -q -f raw "$D/src.raw" 32M
qemu-io -f raw -c 'write -P 0x3c 0 8M' -c 'write -P 0x4d 12M 4M' "$D/src.raw" > /dev/null
for ct in zlib zstd; do
	IMG=$D/c-$ct.qcow2
	qemu-img convert -c -O qcow2 -o compression_type=$ct "$D/src.raw" "$IMG"
	add_dev "$ct: add a compressed image" -f "$IMG" -q 2 || continue
	check "$ct: the device reads the data" \
		qemu-io -f raw -t none -c 'read -P 0x3c 0 8M' -c 'read -P 0 8M 4M' \
		-c 'read -P 0x4d 12M 4M' "$DEV"
	check "$ct: write into compressed clusters" \
		qemu-io -f raw -t none -c 'write -P 0x5e 1M 4k' -c 'write -P 0x5e 13M 64k' "$DEV"
	dd if="$DEV" bs=1M count=32 iflag=direct 2>/dev/null | md5sum > "$D/dev.md5"
	del_dev "$ct: del" "$DEV_ID"
	check "$ct: qemu-img check clean" qemu-img check "$IMG"
	qemu-img convert -O raw "$IMG" "$D/out.raw"
	if [ "$(md5sum < "$D/out.raw")" = "$(cat "$D/dev.md5")" ]; then
		ok "$ct: QEMU reads what the device showed"
	else
		not_ok "$ct: QEMU reads what the device showed"
	fi
	check "$ct: the written data and the rest of its cluster" \
		qemu-io -f qcow2 -c 'read -P 0x3c 0 1M' -c 'read -P 0x5e 1M 4k' \
		-c 'read -P 0x3c 1028k 64k' -c 'read -P 0x5e 13M 64k' "$IMG"
done
done_testing
