#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-autoclear.sh - autoclear feature bits against QEMU.
#
# The spec says a program that changes an image without maintaining the
# structure an autoclear bit vouches for must clear that bit.  imgblk
# does not maintain persistent bitmaps, so:
# - its first write to an image with bitmaps clears autoclear bit 0
#   (header byte 88, big-endian u64) before anything else changes, and
#   QEMU then says a program lacking bitmap support modified the file;
# - a read-only open, or a read-write open that writes nothing, keeps it;
# - many writes, also concurrent ones (depth 32), clear it once and the
#   image stays readable by QEMU with the data written.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io od

# Autoclear bits, low byte (header byte 88, big-endian u64).
autoclear() { peek "$1" 95 '>B'; }	# the low byte of autoclear_features

bitmap_image() {	# bitmap_image FILE
	rm -f "$1"
	qemu-img create -q -f qcow2 "$1" 64M &&
		qemu-io -f qcow2 -c "write -P 0x22 0 1M" "$1" > /dev/null &&
		qemu-img bitmap --add "$1" bm0
}

I=$T_TMP/a.qcow2
check "image with a bitmap" bitmap_image "$I"
check "QEMU sets autoclear bit 0 with a bitmap" test "$(autoclear "$I")" = 1
check "read-only read" "$IMGBLK" io -r -f qcow2 -c "read -P 0x22 0 64k" "$I"
check "read-only open keeps the bit" test "$(autoclear "$I")" = 1
check "read-write open, reads only" "$IMGBLK" io -f qcow2 -c "read -P 0x22 0 64k" "$I"
check "reads only keep the bit" test "$(autoclear "$I")" = 1
check "write" "$IMGBLK" io -f qcow2 -c "write -P 0x33 64k 64k" "$I"
check "the first write clears the bit" test "$(autoclear "$I")" = 0
check "QEMU reads the data written" \
	qemu-io -r -f qcow2 -c "read -P 0x33 64k 64k" -c "read -P 0x22 128k 64k" "$I"
qemu-img check -f qcow2 "$I" > "$T_TMP/check" 2>&1
check "QEMU: a program lacking bitmap support modified the file" \
	grep -q "lacking bitmap support" "$T_TMP/check"

# Concurrent writers race to the first write: one header write, no error.
check "another image with a bitmap" bitmap_image "$I"
check "32 concurrent allocating writes" \
	"$IMGBLK" bench -f qcow2 -t none -w -c 2000 -d 32 -s 4k -S 8k -o 2M "$I"
check "the bit is clear after them" test "$(autoclear "$I")" = 0

done_testing
