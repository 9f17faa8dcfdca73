#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# qed-ext4.sh - a QED device over a raw backing file carries ext4: what
# the device showed is what QEMU reads from the image after del, and
# qemu-img check finds it clean.  Then fio verify through two queues on a
# QED image without a backing file (concurrent allocating writes), and
# the need-check bit: set while allocating, cleared after ~5 s idle by the
# server's housekeeping tick, and clear after del.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd mkfs.ext4 e2fsck md5sum qemu-img fio od

BASE=$T_TMP/base.raw
IMG=$T_TMP/disk.qed
MNT=$T_TMP/mnt
mkdir -p "$MNT"
on_exit "umount $MNT"

# A backing file with content of its own, so COW has something to copy.
truncate -s 256M "$BASE"
dd if=/dev/urandom of="$BASE" bs=1M count=4 seek=100 conv=notrunc 2>/dev/null
check "create QED over a raw backing file" \
	imgblk create -f qed -b "$BASE" -F raw -o cluster_size=64k "$IMG"
add_dev "add QED device" -t qed -f "$IMG" -q 2 || bail "cannot continue without a device"
ID=$DEV_ID
check "mkfs.ext4" mkfs.ext4 -q -F "$DEV"
check "mount" mount -t ext4 "$DEV" "$MNT"
check "write 11 MiB in 52 files" write_files "$MNT"
(cd "$MNT" && find . -type f | sort | xargs md5sum) > "$T_TMP/md5" 2>&1
check "sync" sync
check "umount" umount "$MNT"
check "dd the whole device" dd if="$DEV" of="$T_TMP/dev.raw" bs=1M iflag=direct
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || not_ok "$DEV removed"
check "qemu-img check clean" qemu-img check "$IMG"
check "qemu-img convert -O raw" qemu-img convert -f qed -O raw "$IMG" "$T_TMP/qemu.raw"
check "QEMU reads what the device showed" same_bytes "$T_TMP/dev.raw" "$T_TMP/qemu.raw"
rm -f "$T_TMP/dev.raw" "$T_TMP/qemu.raw"
add_dev "re-add the image" -t qed -f "$IMG" || bail "cannot re-add"
ID=$DEV_ID
check "e2fsck clean" e2fsck -fn "$DEV"
check "mount again" mount -t ext4 "$DEV" "$MNT"
check "md5sums intact" sh -c "cd '$MNT' && md5sum -c '$T_TMP/md5'"
check "umount again" umount "$MNT"
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || not_ok "$DEV removed"
rm -f "$IMG" "$BASE"

# No backing file: concurrent allocating writes, need-check protocol.
IMG=$T_TMP/nb.qed
# 64k clusters: fio's 4k writes allocate and fill the same clusters concurrently.
check "create QED without backing" imgblk create -f qed "$IMG" 128M
add_dev "add with -q 2 -d 64" -t qed -f "$IMG" -q 2 -d 64 || bail "cannot continue"
ID=$DEV_ID
run_fio bs4k --bs=4k
run_fio bsrange --bsrange=4k-128k
# One allocating write beyond fio's 64 MiB, then the header at once.
check "an allocating write" dd if=/dev/urandom of="$DEV" bs=4k count=1 seek=30000 \
	oflag=direct conv=notrunc
if qed_needs_check "$IMG"; then ok "need-check set while allocating writes are recent"
else not_ok "need-check set while allocating writes are recent"; fi
sleep 8
if qed_needs_check "$IMG"; then not_ok "need-check cleared after 5 s without allocating writes"
else ok "need-check cleared after 5 s without allocating writes"; fi
check "dd the whole device" dd if="$DEV" of="$T_TMP/dev.raw" bs=1M iflag=direct
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || not_ok "$DEV removed"
if qed_needs_check "$IMG"; then not_ok "need-check clear after del"
else ok "need-check clear after del"; fi
check "qemu-img check clean after fio" qemu-img check "$IMG"
check "qemu-img convert -O raw" qemu-img convert -f qed -O raw "$IMG" "$T_TMP/qemu.raw"
check "QEMU reads what the device showed" same_bytes "$T_TMP/dev.raw" "$T_TMP/qemu.raw"
done_testing
