#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# partitions.sh - when `imgblk add` returns, the partition nodes of the
# image's partition table exist and open, every time: a qcow2 image with
# a GPT and a raw one with an MBR, ext4 on each partition, added and
# deleted ROUNDS times (every 10th round, or the last of fewer, also
# mounting and unmounting every partition), with no missing node.  ROUNDS
# is 5, or $SHARE/partitions.rounds (the soak sets 50).  `imgblk list` shows
# the partitions, and a table written through the device with sfdisk is
# read again by the kernel, its nodes appearing.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd sfdisk mkfs.ext4 qemu-img

ROUNDS=5
[ -n "${SHARE:-}" ] && [ -s "$SHARE/partitions.rounds" ] && ROUNDS=$(cat "$SHARE/partitions.rounds")
MOUNT_EVERY=10
[ "$ROUNDS" -ge "$MOUNT_EVERY" ] || MOUNT_EVERY=$ROUNDS
MNT=$T_TMP/mnt
mkdir -p "$MNT"
on_exit "umount $MNT 2>/dev/null"

# mk_image FILE LABEL: a 64 MiB raw file with two 24 MiB partitions.
mk_image() {
	truncate -s 64M "$1" &&
	printf 'label: %s\nstart=1MiB, size=24MiB, type=linux\nsize=24MiB, type=linux\n' "$2" |
		sfdisk -q "$1"
}

# nodes_ok DEV: both partition nodes are block devices that open and read.
nodes_ok() {
	for _p in 1 2; do
		[ -b "${1}p$_p" ] || return 1
		dd if="${1}p$_p" of=/dev/null bs=4k count=1 2>/dev/null || return 1
	done
}

check "GPT table on a raw file" mk_image "$T_TMP/gpt.raw" gpt
check "convert it to qcow2" qemu-img convert -O qcow2 "$T_TMP/gpt.raw" "$T_TMP/gpt.qcow2"
check "MBR table on a raw file" mk_image "$T_TMP/mbr.raw" dos

# First add of each: the filesystems, and what list says.
for img in gpt.qcow2 mbr.raw; do
	add_dev "add $img" -f "$T_TMP/$img" || bail "cannot add $img"
	if nodes_ok "$DEV"; then ok "$img: ${DEV}p1 and p2 open when add returns"
	else not_ok "$img: ${DEV}p1 and p2 open when add returns"; ls -l /dev/ublkb* | sed 's/^/# /'; fi
	check "$img: mkfs.ext4 on p1" mkfs.ext4 -q -F "${DEV}p1"
	check "$img: mkfs.ext4 on p2" mkfs.ext4 -q -F "${DEV}p2"
	imgblk list > "$T_TMP/list.txt" 2>&1
	if grep -q "partitions: ${DEV}p1 ${DEV}p2\$" "$T_TMP/list.txt"; then
		ok "$img: imgblk list shows the partitions"
	else
		not_ok "$img: imgblk list shows the partitions"; diag_file "$T_TMP/list.txt"
	fi
	imgblk list --json > "$T_TMP/list.json" 2>&1
	if grep -q "\"partitions\": \[\"${DEV}p1\", \"${DEV}p2\"\]" "$T_TMP/list.json"; then
		ok "$img: imgblk list --json shows the partitions"
	else
		not_ok "$img: imgblk list --json shows the partitions"; diag_file "$T_TMP/list.json"
	fi
	del_dev "$img: del" "$DEV_ID"
done

# rounds IMG: ROUNDS add/check/del rounds; mounts both partitions every
# MOUNT_EVERY-th round.  One result for the lot.
rounds() {
	_missing=0
	_fail=0
	_start=$(date +%s)
	_r=1
	while [ $_r -le "$ROUNDS" ]; do
		_dev=$(timeout 60 imgblk add -f "$T_TMP/$1" 2> "$T_TMP/round.err")
		if [ -z "$_dev" ]; then
			_fail=$((_fail + 1))
			diag "round $_r: add failed: $(cat "$T_TMP/round.err")"
			break
		fi
		nodes_ok "$_dev" || { _missing=$((_missing + 1)); diag "round $_r: a partition node of $_dev is missing"; }
		if [ $((_r % MOUNT_EVERY)) = 0 ]; then
			for _p in 1 2; do
				if mount -t ext4 "${_dev}p$_p" "$MNT"; then
					echo "$_r" > "$MNT/round" && umount "$MNT" ||
						{ _fail=$((_fail + 1)); diag "round $_r: p$_p write/umount failed"; }
				else
					_fail=$((_fail + 1)); diag "round $_r: mount ${_dev}p$_p failed"
				fi
			done
		fi
		timeout 30 imgblk del -n "${_dev#/dev/ublkb}" ||
			{ _fail=$((_fail + 1)); diag "round $_r: del failed"; break; }
		_r=$((_r + 1))
	done
	_secs=$(($(date +%s) - _start))
	if [ $_missing = 0 ] && [ $_fail = 0 ] && [ $_r -gt "$ROUNDS" ]; then
		ok "$1: $ROUNDS rounds (mounting every $MOUNT_EVERY), no missing node (${_secs}s)"
	else
		not_ok "$1: $ROUNDS rounds, no missing node ($_missing missing, $_fail failures, ${_secs}s)"
	fi
}
rounds gpt.qcow2
rounds mbr.raw
check "e2fsck clean on the MBR image's p1 after the rounds" sh -c \
	"dev=\$(imgblk add -f '$T_TMP/mbr.raw' -r) && e2fsck -fn \${dev}p1; rc=\$?; imgblk del -n \${dev#/dev/ublkb}; exit \$rc"

# A table written through the device: the kernel reads it again, and the
# nodes appear (sfdisk asks for the re-read itself).
truncate -s 64M "$T_TMP/blank.raw"
add_dev "add a raw image without a partition table" -f "$T_TMP/blank.raw" || bail "cannot add"
if [ -e "${DEV}p1" ]; then not_ok "no partition node before the table"; else ok "no partition node before the table"; fi
check "sfdisk writes a GPT with three partitions through $DEV" sh -c \
	"printf 'label: gpt\nsize=8MiB\nsize=8MiB\nsize=8MiB\n' | sfdisk -q '$DEV'"
_i=0
while [ $_i -lt 50 ] && ! [ -b "${DEV}p3" ]; do sleep 0.1; _i=$((_i + 1)); done
if [ -b "${DEV}p1" ] && [ -b "${DEV}p2" ] && [ -b "${DEV}p3" ]; then
	ok "the new table's nodes appear"
else
	not_ok "the new table's nodes appear"; ls -l /dev/ublkb* | sed 's/^/# /'
fi
imgblk list > "$T_TMP/list.txt" 2>&1
if grep -q "partitions: ${DEV}p1 ${DEV}p2 ${DEV}p3\$" "$T_TMP/list.txt"; then
	ok "imgblk list shows the new partitions"
else
	not_ok "imgblk list shows the new partitions"; diag_file "$T_TMP/list.txt"
fi
del_dev "del" "$DEV_ID"
check "the table was written to the image" sh -c "sfdisk -d '$T_TMP/blank.raw' | grep -c '^$T_TMP/blank.raw' | grep -qx 3"
done_testing
