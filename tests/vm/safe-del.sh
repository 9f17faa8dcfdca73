#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# safe-del.sh - `imgblk del` refuses a device whose disk or partition is
# mounted or open elsewhere, in one line naming the node and the holder,
# and leaves it working; `del -a` deletes the idle ones and refuses the
# busy; `--force` deletes a device whose partition is mounted.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd sfdisk mkfs.ext4

MNT=$T_TMP/mnt
mkdir -p "$MNT"
on_exit "umount -l $MNT 2>/dev/null"

truncate -s 64M "$T_TMP/mbr.raw"
printf 'label: dos\nstart=1MiB, size=24MiB\nsize=24MiB\n' | sfdisk -q "$T_TMP/mbr.raw" ||
	bail "sfdisk failed"
truncate -s 16M "$T_TMP/b.raw" "$T_TMP/c.raw"

add_dev "add the MBR image" -f "$T_TMP/mbr.raw" || bail "cannot add"
A=$DEV_ID
ADEV=$DEV
check "mkfs.ext4 on ${ADEV}p1" mkfs.ext4 -q -F "${ADEV}p1"
check "mount ${ADEV}p1" mount -t ext4 "${ADEV}p1" "$MNT"

# refused DESC WANT CMD...: CMD exits 1 and prints exactly the line WANT.
refused() {
	_d=$1
	_want=$2
	shift 2
	"$@" > "$T_TMP/out" 2>&1
	_rc=$?
	if [ $_rc = 1 ] && [ "$(cat "$T_TMP/out")" = "$_want" ]; then
		ok "$_d"
	else
		not_ok "$_d"
		diag "status $_rc, wanted 1 and: $_want"
		diag_file "$T_TMP/out"
	fi
}

refused "del refused while p1 is mounted" \
	"imgblk: ${ADEV}p1 is mounted on $MNT" timeout 30 imgblk del -n "$A"
if listed "$A"; then ok "the device is still listed"; else not_ok "the device is still listed"; fi
check "the mounted filesystem still works" sh -c "echo hello > '$MNT/f' && sync && grep -q hello '$MNT/f'"

# A plain open (no mount, no exclusive claim) of a partition.
sleep 300 < "${ADEV}p2" &
SLEEPER=$!
on_exit "kill $SLEEPER 2>/dev/null"
check "umount p1" umount "$MNT"
refused "del refused while a process has p2 open" \
	"imgblk: ${ADEV}p2 is open by process $SLEEPER (sleep)" timeout 30 imgblk del -n "$A"
kill $SLEEPER
wait $SLEEPER 2>/dev/null

# del -a: the idle devices go, the busy one stays, the status says so.
check "mount ${ADEV}p1 again" mount -t ext4 "${ADEV}p1" "$MNT"
add_dev "add a second device" -f "$T_TMP/b.raw" || bail "cannot add"
B=$DEV_ID
add_dev "add a third device" -f "$T_TMP/c.raw" || bail "cannot add"
C=$DEV_ID
refused "del -a refuses the mounted device, exit 1" \
	"imgblk: ${ADEV}p1 is mounted on $MNT" timeout 60 imgblk del -a
if listed "$B" || listed "$C"; then not_ok "del -a deleted the idle devices"
	diag_file "$T_TMP/list.out"; else ok "del -a deleted the idle devices"; fi
if listed "$A"; then ok "del -a left the busy device"; else not_ok "del -a left the busy device"; fi

# --force: today's behaviour, the device goes from under the filesystem.
t0=$(cut -d' ' -f1 /proc/uptime)
check "del --force deletes it while p1 is mounted" timeout 90 imgblk del -n "$A" --force
t1=$(cut -d' ' -f1 /proc/uptime)
diag "del --force took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
if listed "$A"; then not_ok "the device is gone"; diag_file "$T_TMP/list.out"
else ok "the device is gone"; fi
umount -l "$MNT" 2>/dev/null

# Idle again: a plain del works.
add_dev "add the MBR image again" -f "$T_TMP/mbr.raw" || bail "cannot add"
check "e2fsck -p repairs what --force left" sh -c "e2fsck -fp ${DEV}p1; [ \$? -le 1 ]"
del_dev "del of an idle device" "$DEV_ID"
done_testing
