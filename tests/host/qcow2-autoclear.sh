#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-autoclear.sh - autoclear feature bits against QEMU.
#
# The spec says a program that changes an image without maintaining the
# structure an autoclear bit vouches for must clear that bit.  imgblk
# maintains persistent bitmaps (targets/qcow2/bitmap.c), so:
# - autoclear bit 0 (header byte 88, big-endian u64) stays set through
#   its writes, and QEMU finds the bitmap consistent and the image clean;
# - a read-only open, or a read-write open that writes nothing, keeps it;
# - many writes, also concurrent ones (depth 32), keep it and the image
#   stays readable by QEMU with the data written.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io od python3

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
check "writes keep the bit" test "$(autoclear "$I")" = 1
check "QEMU reads the data written" \
	qemu-io -r -f qcow2 -c "read -P 0x33 64k 64k" -c "read -P 0x22 128k 64k" "$I"
qemu-img check -f qcow2 "$I" > "$T_TMP/check" 2>&1
check "QEMU: the image is clean" grep -q "No errors were found" "$T_TMP/check"
check_fails "QEMU: no program lacking bitmap support" \
	grep -q "lacking bitmap support" "$T_TMP/check"
qemu-img info --output=json "$I" > "$T_TMP/info"
check "QEMU: the bitmap is consistent and enabled" \
	python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["format-specific"]["data"]["bitmaps"]; sys.exit(b != [{"flags": ["auto"], "name": "bm0", "granularity": 65536}])' "$T_TMP/info"

# Concurrent writers race to the first write: one header write, no error.
check "another image with a bitmap" bitmap_image "$I"
check "32 concurrent allocating writes" \
	"$IMGBLK" bench -f qcow2 -t none -w -c 2000 -d 32 -s 4k -S 8k -o 2M "$I"
check "the bit is set after them" test "$(autoclear "$I")" = 1
check "QEMU: clean after them" qemu-img check -q -f qcow2 "$I"

done_testing
