#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# demo.sh - the main job, as README's first command runs it: make a qcow2
# image, serve it as /dev/ublkbN, mkfs.ext4, mount, write and read a file,
# unmount, delete, and let qemu-img judge the image.  Also part of the VM
# suite, so the README's promise is tested on every run.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd mkfs.ext4 qemu-img md5sum

IMG=$T_TMP/disk.qcow2
MNT=$T_TMP/mnt
mkdir -p "$MNT"

diag "imgblk create -f qcow2 $IMG 1G"
check "create a 1 GiB qcow2 image" imgblk create -q -f qcow2 "$IMG" 1G
add_dev "serve it: imgblk add -f $IMG" -f "$IMG" -q 2 || bail "no device"
diag "served as $DEV"
check "mkfs.ext4 $DEV" mkfs.ext4 -q "$DEV"
check "mount $DEV $MNT" mount "$DEV" "$MNT"
dd if=/dev/urandom of="$MNT/hello.bin" bs=1M count=8 2>/dev/null
echo "hello from imgblk" > "$MNT/hello.txt"
sum=$(md5sum < "$MNT/hello.bin")
check "sync" sync
check "umount" umount "$MNT"
check "mount again" mount "$DEV" "$MNT"
if [ "$(cat "$MNT/hello.txt" 2>/dev/null)" = "hello from imgblk" ] &&
   [ "$(md5sum < "$MNT/hello.bin")" = "$sum" ]; then
	ok "the files read back"
else
	not_ok "the files read back"
fi
diag "$(df -h "$MNT" | tail -n 1)"
check "umount" umount "$MNT"
del_dev "imgblk del -n $DEV_ID" "$DEV_ID"
check "qemu-img check: no errors, no leaks" qemu-img check "$IMG"
diag "$(qemu-img info "$IMG" | head -n 4)"
done_testing
