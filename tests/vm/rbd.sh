#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# rbd.sh - a device on a raw Ceph RBD image (imgblk add -f rbd:POOL/IMAGE):
# ext4 on it, files that read back after del and re-add, discard reading
# back as zeros, and fio verify with 2 queues.  Small (a 64 MiB image, fio
# over 16 MiB): each request crosses TCG, librbd and QEMU's user-mode
# network.  The cluster runs on the
# host (run.sh starts it for the line below); the guest reaches it through
# user-mode networking, with a route for the cluster's loopback address
# (lib.sh: need_ceph, and docs/protocols.md on why).
# vm-host: ceph
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd mkfs.ext4 e2fsck md5sum qemu-io fio
need_ceph

IMG=rbd/vm-ext4
MNT=$T_TMP/mnt
mkdir -p "$MNT"
on_exit "umount $MNT 2>/dev/null"

check "rbd create a 64 MiB image" rbd create --size 64M $IMG
add_dev "add rbd:$IMG (2 queues)" -f "rbd:$IMG" -q 2 -d 64 ||
	bail "cannot continue without a device"
ID=$DEV_ID
check "mkfs.ext4" mkfs.ext4 -q -F "$DEV"
check "mount" mount -t ext4 "$DEV" "$MNT"
check "write files" write_files "$MNT"
(cd "$MNT" && find . -type f | sort | xargs md5sum) > "$T_TMP/md5" 2>&1
check "umount" umount "$MNT"
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"

add_dev "re-add the image" -f "rbd:$IMG" -q 2 -d 64 || bail "cannot re-add"
ID=$DEV_ID
check "e2fsck finds the filesystem clean" e2fsck -fn "$DEV"
check "mount again" mount -t ext4 "$DEV" "$MNT"
check "md5sums intact after re-add" sh -c "cd '$MNT' && md5sum -c '$T_TMP/md5'"
check "umount again" umount "$MNT"

# The same device, its filesystem no longer needed: one add fewer, as
# each opens the image twice (the check in add, then the server).
run_fio rbd-bs4k --bs=4k 8M
check "write a pattern through the device" \
	qemu-io -f raw -n -c "write -P 0x3c 0 4M" -c flush "$DEV"
check "discard through the device" blkdiscard -o $((1 << 20)) -l $((1 << 20)) "$DEV"
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"
check "imgblk reads the image back: the pattern, zeros where discarded" \
	imgblk io -f raw -c "read -P 0x3c 0 1M" -c "read -P 0 1M 1M" \
	-c "read -P 0x3c 2M 2M" rbd:$IMG
done_testing
