#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# nbd-base.sh - a qcow2 device whose backing file is an NBD export:
# ext4 on it, files that read back after del and re-add, and fio verify
# with 2 queues.  Then a raw device straight on a read-write export (one
# connection per queue where the server offers multi-conn): fio verify,
# discard, and QEMU reads what the device wrote.  The NBD server (qemu-nbd) runs inside the guest on a
# Unix socket: it is already in the initramfs as a test oracle, and it
# needs no guest network (the rig has none), while reaching the host's
# server through user-mode forwarding would add a network to every boot.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-img qemu-io qemu-nbd mkfs.ext4 e2fsck md5sum

BASE=$T_TMP/base.raw
SOCK=$T_TMP/base.sock
IMG=$T_TMP/ov.qcow2
MNT=$T_TMP/mnt
URI="nbd+unix:///base?socket=$SOCK"
mkdir -p "$MNT"
on_exit "umount $MNT 2>/dev/null"

check "a 160 MiB base, part of it written" sh -c \
	"qemu-img create -q -f raw '$BASE' 160M &&
	 qemu-io -f raw -c 'write -P 0x5a 0 16M' -c 'write -P 0xa5 128M 16M' '$BASE' > /dev/null"
qemu-nbd -f raw -r -t -e 4 -k "$SOCK" -x base "$BASE" 2> "$T_TMP/qemu-nbd.err" &
NBD_PID=$!
on_exit "kill $NBD_PID 2>/dev/null"
for _i in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || bail "qemu-nbd did not start"

check "imgblk creates an overlay on the NBD base" \
	imgblk create -q -f qcow2 -b "$URI" -F raw "$IMG"
add_dev "add the overlay (2 queues)" -t qcow2 -f "$IMG" -q 2 ||
	bail "cannot continue without a device"
ID=$DEV_ID
check "base data shows through the device" \
	qemu-io -f raw -n -c "read -P 0xa5 128M 16M" -c "read -P 0x5a 0 16M" "$DEV"
check "mkfs.ext4" mkfs.ext4 -q -F "$DEV"
check "mount" mount -t ext4 "$DEV" "$MNT"
check "write files" write_files "$MNT"
(cd "$MNT" && find . -type f | sort | xargs md5sum) > "$T_TMP/md5" 2>&1
check "umount" umount "$MNT"
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"
check "qemu-img check finds the overlay clean" qemu-img check -q "$IMG"

add_dev "re-add the overlay" -t qcow2 -f "$IMG" -q 2 || bail "cannot re-add"
ID=$DEV_ID
check "e2fsck finds the filesystem clean" e2fsck -fn "$DEV"
check "mount again" mount -t ext4 "$DEV" "$MNT"
check "md5sums intact after re-add" sh -c "cd '$MNT' && md5sum -c '$T_TMP/md5'"
check "umount again" umount "$MNT"
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"

if ! command -v fio > /dev/null 2>&1; then
	skip "fio on the overlay" "fio not available"
	done_testing
fi
rm -f "$IMG"
check "a fresh overlay for fio" imgblk create -q -f qcow2 -b "$URI" -F raw "$IMG"
add_dev "add it with -q 2 -d 64" -t qcow2 -f "$IMG" -q 2 -d 64 || bail "cannot add"
ID=$DEV_ID
run_fio nbd-base-bs4k --bs=4k
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"
check "qemu-img check clean after fio" qemu-img check -q "$IMG"

RW=$T_TMP/rw.raw
RSOCK=$T_TMP/rw.sock
RURI="nbd+unix:///rw?socket=$RSOCK"
check "a 96 MiB read-write export" qemu-img create -q -f raw "$RW" 96M
qemu-nbd -f raw -t -e 4 --discard=unmap -k "$RSOCK" -x rw "$RW" 2> "$T_TMP/qemu-nbd-rw.err" &
on_exit "kill $! 2>/dev/null"
for _i in $(seq 50); do [ -S "$RSOCK" ] && break; sleep 0.1; done
[ -S "$RSOCK" ] || bail "qemu-nbd (rw) did not start"
add_dev "add a raw device on the export (2 queues)" -t raw -f "$RURI" -q 2 -d 64 ||
	bail "cannot add the raw NBD device"
ID=$DEV_ID
run_fio nbd-raw-bs4k --bs=4k
check "write a pattern through the device" \
	qemu-io -f raw -n -c "write -P 0x3c 80M 8M" -c "flush" "$DEV"
check "discard through the device" blkdiscard -o $((88 << 20)) -l $((4 << 20)) "$DEV"
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"
check "QEMU reads what the device wrote, and zeros where it discarded" \
	sh -c "qemu-io -f raw -c 'read -P 0x3c 80M 8M' -c 'read -P 0 88M 4M' '$RURI' |
	       grep -q -e 'verification failed' -e 'failed:' && exit 1 || exit 0"
done_testing
