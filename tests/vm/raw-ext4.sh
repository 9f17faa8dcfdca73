#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# raw-ext4.sh - a filesystem on a raw-backed device survives del and
# re-add: what was written and synced before del is read back intact from
# the same file, and e2fsck finds the filesystem clean.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd mkfs.ext4 e2fsck md5sum

IMG=$T_TMP/disk.raw
MNT=$T_TMP/mnt
mkdir -p "$MNT"
truncate -s 256M "$IMG"
on_exit "umount $MNT"

add_dev "add raw 256 MiB device" -t raw -f "$IMG" || bail "cannot continue without a device"
ID=$DEV_ID
if listed "$ID"; then ok "imgblk list shows device $ID"; else
	not_ok "imgblk list shows device $ID"; diag_file "$T_TMP/list.out"; fi
check "mkfs.ext4" mkfs.ext4 -q -F "$DEV"
check "mount" mount -t ext4 "$DEV" "$MNT"

check "write 11 MiB of random data in 52 files" write_files "$MNT"
(cd "$MNT" && find . -type f | sort | xargs md5sum) > "$T_TMP/md5" 2>&1
check "sync" sync
check "umount" umount "$MNT"
del_dev "del device $ID" "$ID"
if wait_gone "$DEV" 10; then ok "$DEV removed"; else not_ok "$DEV removed"; fi
if listed "$ID"; then not_ok "imgblk list no longer shows device $ID"
	diag_file "$T_TMP/list.out"; else ok "imgblk list no longer shows device $ID"; fi

add_dev "re-add the same file" -t raw -f "$IMG" || bail "cannot re-add"
ID=$DEV_ID
check "e2fsck finds the filesystem clean" e2fsck -fn "$DEV"
check "mount again" mount -t ext4 "$DEV" "$MNT"
check "md5sums intact after re-add" sh -c "cd '$MNT' && md5sum -c '$T_TMP/md5'"
check "umount again" umount "$MNT"
del_dev "del device $ID" "$ID"
if wait_gone "$DEV" 10; then ok "$DEV removed"; else not_ok "$DEV removed"; fi
if listed "$ID"; then not_ok "imgblk list no longer shows device $ID"
	diag_file "$T_TMP/list.out"; else ok "imgblk list no longer shows device $ID"; fi
done_testing
