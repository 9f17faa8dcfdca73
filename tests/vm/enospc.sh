#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# enospc.sh - a full host filesystem pauses the device instead of losing
# writes (werror=enospc, the default): ext4 mounted on a qcow2 device
# whose image lives on a small filesystem; a write that fills it pauses
# the device (imgblk list says PAUSED, an event goes out), space is freed,
# `imgblk resume` retries, the write completes, e2fsck is clean and every
# byte is there.  Then --werror=report gives the writer EIO at once, and
# `del` of a paused device ends in bounded time with no hung task.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd mkfs.ext4 e2fsck md5sum qemu-img losetup
load_module loop 2>/dev/null

HOSTFS=$T_TMP/host.ext4
HOST=$T_TMP/host
MNT=$T_TMP/mnt
mkdir -p "$HOST" "$MNT"
on_exit "umount $MNT; umount $HOST"

# state ID: the state column of device ID in imgblk list.
state() {
	imgblk list -n "$1" 2>/dev/null | awk 'NR > 1 { print $5; exit }'
}

# wait_state ID STATE SECONDS
wait_state() {
	_i=0
	while [ "$(state "$1")" != "$2" ]; do
		[ $_i -ge $(($3 * 10)) ] && return 1
		sleep 0.1
		_i=$((_i + 1))
	done
}

# The host filesystem: 160 MiB, of which a 72 MiB ballast file takes a
# share, so the image can grow by some 70 MiB before it runs out.
check "make a 160 MiB host filesystem" mkfs.ext4 -q -F -b 4096 "$HOSTFS" 160M
check "mount it through a loop device" mount -o loop "$HOSTFS" "$HOST"
check "ballast file" dd if=/dev/zero of="$HOST/ballast" bs=1M count=72 conv=fsync
IMG=$HOST/disk.qcow2
check "qcow2 image of 1 GiB on it" imgblk create -q -f qcow2 "$IMG" 1G

add_dev "add the device (werror=enospc by default)" -f "$IMG" -q 2 ||
	bail "cannot continue without a device"
ID=$DEV_ID
check "mkfs.ext4 on the device" mkfs.ext4 -q -F -E lazy_itable_init=1,nodiscard "$DEV"
check "mount it" mount -t ext4 "$DEV" "$MNT"

# 110 MiB of data: more than the host has room for.
check "make 110 MiB of data" dd if=/dev/urandom of=/tmp/enospc.data bs=1M count=110
on_exit "rm -f /tmp/enospc.data"
SUM=$(md5sum < /tmp/enospc.data)
imgblk qmp -n "$ID" --events > "$T_TMP/events" 2>&1 &
EVP=$!
on_exit "kill $EVP"
sleep 0.5

(cp /tmp/enospc.data "$MNT/data" && sync; echo "rc=$?" > "$T_TMP/writer.rc") &
WR=$!
on_exit "kill -KILL $WR"

if wait_state "$ID" PAUSED 60; then ok "the device pauses when the host is full"; else
	not_ok "the device pauses when the host is full"
	diag "state: $(state "$ID")"
	diag_file "$T_TMP/events"
fi
check "imgblk query says why" sh -c "imgblk query -n $ID | grep -i 'no space left'"
sleep 2
if kill -0 "$WR" 2>/dev/null; then ok "the writer waits, it got no error"; else
	not_ok "the writer waits, it got no error"
	diag_file "$T_TMP/writer.rc"
fi
if grep -q '"BLOCK_IO_ERROR"' "$T_TMP/events" && grep -q '"nospace": *true' "$T_TMP/events" &&
   grep -q '"STOP"' "$T_TMP/events"; then
	ok "BLOCK_IO_ERROR (nospace) and STOP events"
else
	not_ok "BLOCK_IO_ERROR (nospace) and STOP events"
	diag_file "$T_TMP/events"
fi

check "free space on the host" rm -f "$HOST/ballast"
check "imgblk resume" imgblk resume -n "$ID"
_i=0
while kill -0 "$WR" 2>/dev/null && [ $_i -lt 600 ]; do
	# The host may fill again before the copy ends: resume each time.
	[ "$(state "$ID")" = PAUSED ] && imgblk resume -n "$ID" > /dev/null 2>&1
	sleep 0.2
	_i=$((_i + 1))
done
if grep -q 'rc=0' "$T_TMP/writer.rc" 2>/dev/null; then ok "the write completes after resume"; else
	not_ok "the write completes after resume"
	diag_file "$T_TMP/writer.rc"
fi
check "a RESUME event" grep -q '"RESUME"' "$T_TMP/events"
if [ "$(state "$ID")" = LIVE ]; then ok "the device is LIVE again"; else
	not_ok "the device is LIVE again"; diag "state: $(state "$ID")"; fi
check "umount" umount "$MNT"
check "e2fsck is clean" e2fsck -fn "$DEV"
check "mount again" mount -t ext4 -o ro "$DEV" "$MNT"
if [ "$(md5sum < "$MNT/data")" = "$SUM" ]; then ok "every byte is there"; else
	not_ok "every byte is there"; fi
check "umount again" umount "$MNT"
kill "$EVP" 2>/dev/null
del_dev "del the device" "$ID"
check "qemu-img check: no corruption" sh -c "qemu-img check -q '$IMG'; [ \$? -ne 2 ]"
rm -f "$IMG"

# --werror=report: the writer gets EIO at once, the device stays LIVE.
check "ballast again" dd if=/dev/zero of="$HOST/ballast" bs=1M count=120 conv=fsync
check "a new image" imgblk create -q -f qcow2 "$IMG" 1G
add_dev "add with --werror=report" -f "$IMG" --werror=report || bail "cannot add"
ID=$DEV_ID
check_fails "a direct write past the room fails with an error" \
	dd if=/dev/zero of="$DEV" bs=1M count=100 oflag=direct
if [ "$(state "$ID")" = LIVE ]; then ok "the device did not pause"; else
	not_ok "the device did not pause"; diag "state: $(state "$ID")"; fi
check "the failures are counted" sh -c \
	"imgblk stats -n $ID --json | grep -q '\"failed_wr_operations\": [1-9]'"
check "imgblk set --werror=stop" imgblk set -n "$ID" --werror=stop
(dd if=/dev/zero of="$DEV" bs=1M count=100 oflag=direct seek=200 2> "$T_TMP/dd2.err";
 echo "rc=$?" > "$T_TMP/dd2.rc") &
DD=$!
if wait_state "$ID" PAUSED 60; then ok "after set --werror=stop it pauses"; else
	not_ok "after set --werror=stop it pauses"; diag "state: $(state "$ID")"; fi

# del of a paused device: the held requests fail, the server exits.
# dd still has the device open: without --force del would refuse.
t0=$(cut -d' ' -f1 /proc/uptime)
check "del --force of the paused device" timeout 30 imgblk del -n "$ID" --force
t1=$(cut -d' ' -f1 /proc/uptime)
diag "del took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
wait "$DD"
check "the held writer got an error" grep -qv 'rc=0' "$T_TMP/dd2.rc"
if wait_gone "$DEV" 10; then ok "$DEV is gone"; else not_ok "$DEV is gone"; fi

done_testing
