#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# recovery.sh - a --recoverable device outlives its server: after kill -9
# the device is QUIESCED, `imgblk recover` starts a new server, and a
# mounted ext4 with a fio verify job running on it carries on without an
# error.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio mkfs.ext4 e2fsck

IMG=$T_TMP/disk.raw
MNT=$T_TMP/mnt
mkdir -p "$MNT"
dd if=/dev/zero of="$IMG" bs=1M count=256 2>/dev/null

add_dev "add --recoverable" -t raw -f "$IMG" -q 2 -d 32 --recoverable ||
	bail "no device"
check "mkfs.ext4" mkfs.ext4 -q "$DEV"
check "mount" mount "$DEV" "$MNT"
on_exit "umount $MNT 2>/dev/null"

fio --name=verify --filename="$MNT/fio.dat" --size=48M --rw=randwrite --bs=4k \
	--ioengine=io_uring --direct=1 --iodepth=16 --verify=crc32c \
	--verify_fatal=1 --do_verify=1 --output="$T_TMP/fio.out" &
fio_pid=$!
sleep 3

pid=$(sed -n 's/^pid=//p' "/run/imgblk/$DEV_ID.state")
kill -KILL "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
i=0
while ! imgblk list -n "$DEV_ID" 2>/dev/null | grep -q QUIESCED && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
if imgblk list -n "$DEV_ID" | grep -q QUIESCED; then
	ok "the device is QUIESCED after its server was killed"
else
	not_ok "the device is QUIESCED after its server was killed"
	imgblk list > "$T_TMP/list.out" 2>&1
	diag_file "$T_TMP/list.out"
fi
if [ -b "$DEV" ]; then
	ok "$DEV is still there"
else
	not_ok "$DEV is still there"
fi

check "imgblk recover -n $DEV_ID" timeout 30 imgblk recover -n "$DEV_ID"
if imgblk list -n "$DEV_ID" | grep -q LIVE; then
	ok "the device is LIVE again"
else
	not_ok "the device is LIVE again"
fi

if wait "$fio_pid"; then
	ok "fio verify job finished without errors across the recovery"
else
	not_ok "fio verify job finished without errors across the recovery"
	diag_file "$T_TMP/fio.out" 30
fi
check "umount" umount "$MNT"
check "e2fsck clean" e2fsck -fn "$DEV"
del_dev "del" "$DEV_ID"
done_testing
