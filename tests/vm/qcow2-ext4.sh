#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-ext4.sh - a qcow2 device over a qcow2 backing file carries an ext4
# filesystem; after del, qemu-img check finds the image clean and QEMU
# reads exactly what the device showed.  Then fio with crc32c verify on a
# two-queue qcow2 device, on an empty image (every write allocates) and
# again on the filled one (writes in place).
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd mkfs.ext4 e2fsck md5sum qemu-img qemu-io

BASE=$T_TMP/base.qcow2
IMG=$T_TMP/disk.qcow2
MNT=$T_TMP/mnt
mkdir -p "$MNT"
on_exit "umount $MNT"

check "qemu-img creates a 128 MiB qcow2 backing file" \
	qemu-img create -q -f qcow2 -o cluster_size=64k "$BASE" 128M
check "qemu-io fills part of the backing file" \
	qemu-io -f qcow2 -c "write -P 0x5a 0 32M" -c "write -P 0xa5 96M 16M" "$BASE"
check "imgblk creates the overlay" \
	imgblk create -q -f qcow2 -b "$BASE" -F qcow2 "$IMG"

add_dev "add qcow2 device over a qcow2 backing file" -t qcow2 -f "$IMG" -q 2 ||
	bail "cannot continue without a device"
ID=$DEV_ID
check "backing data shows through the device" \
	qemu-io -f raw -n -c "read -P 0xa5 96M 16M" "$DEV"
check "mkfs.ext4" mkfs.ext4 -q -F "$DEV"
check "mount" mount -t ext4 "$DEV" "$MNT"
check "write 11 MiB of random data in 52 files" write_files "$MNT"
(cd "$MNT" && find . -type f | sort | xargs md5sum) > "$T_TMP/md5" 2>&1
check "sync" sync
check "umount" umount "$MNT"
check "dd of the whole device" dd if="$DEV" of="$T_TMP/dev.raw" bs=1M iflag=direct
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"

check "qemu-img check finds the image clean" qemu-img check -q "$IMG"
check "qemu-img convert of the image" qemu-img convert -O raw "$IMG" "$T_TMP/qemu.raw"
check "QEMU reads what the device showed" same_bytes "$T_TMP/dev.raw" "$T_TMP/qemu.raw"
rm -f "$T_TMP/dev.raw" "$T_TMP/qemu.raw"

add_dev "re-add the image" -t qcow2 -f "$IMG" || bail "cannot re-add"
ID=$DEV_ID
check "e2fsck finds the filesystem clean" e2fsck -fn "$DEV"
check "mount again" mount -t ext4 "$DEV" "$MNT"
check "md5sums intact after re-add" sh -c "cd '$MNT' && md5sum -c '$T_TMP/md5'"
check "umount again" umount "$MNT"
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"
check "qemu-img check still clean" qemu-img check -q "$IMG"
rm -f "$IMG" "$BASE"

if ! command -v fio > /dev/null 2>&1; then
	skip "fio on a qcow2 device" "fio not available"
	done_testing
fi
FIMG=$T_TMP/fio.qcow2
check "imgblk creates an empty 128 MiB image" imgblk create -q -f qcow2 "$FIMG" 128M
add_dev "add qcow2 device with -q 2 -d 64" -t qcow2 -f "$FIMG" -q 2 -d 64 ||
	bail "cannot continue without a device"
ID=$DEV_ID
run_fio empty-bs4k --bs=4k
run_fio filled-bsrange --bsrange=4k-128k
check "dd of the fio device" dd if="$DEV" of="$T_TMP/dev.raw" bs=1M iflag=direct
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"
check "qemu-img check clean after fio" qemu-img check -q "$FIMG"
check "qemu-img convert after fio" qemu-img convert -O raw "$FIMG" "$T_TMP/qemu.raw"
check "QEMU reads what fio left on the device" same_bytes "$T_TMP/dev.raw" "$T_TMP/qemu.raw"
done_testing
