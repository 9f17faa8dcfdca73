#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-bitmap-incremental.sh - the incremental backup of a stopped image:
# `convert --bitmap NAME -B PREV` copies only what the bitmap marks
# (data, write-zeroes and discards alike) into an overlay of the previous
# backup, and each backup point, read through its chain, equals the image
# as it was then (qemu-img compare against a raw copy taken at that
# point); every backup checks clean and allocates only the marked
# clusters.  The bitmap is left as it was.  A missing or inconsistent
# bitmap is refused with one line, and the option combinations that
# cannot work are usage errors.  (The live backup job's bitmap sync is
# exercised in the VM: tests/vm/backup-incremental.sh.)
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io python3

IMG=$T_TMP/disk.qcow2
B=$T_TMP/bk

# allocated_top IMG: bytes IMG itself (depth 0) provides, data or zeros.
allocated_top() {
	qemu-img map --output=json "$1" | python3 -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin) if e["depth"] == 0))'
}

# dirty_bytes IMG NAME: bytes bitmap NAME marks, by imgblk map --bitmap.
dirty_bytes() {
	"$IMGBLK" map --bitmap "$2" --output=json "$1" | python3 -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin) if e["dirty"]))'
}

check "image with a bitmap and 8 MiB of data" sh -c "
	qemu-img create -q -f qcow2 '$IMG' 32M &&
	qemu-img bitmap --add '$IMG' b0 &&
	qemu-io -c 'write -P 0x11 0 8M' '$IMG' > /dev/null"
check "full backup" "$IMGBLK" convert -O qcow2 "$IMG" "$B.0.qcow2"
check "reference 0" qemu-img convert -O raw "$IMG" "$B.0.raw"
check "the bitmap is cleared at the full backup" "$IMGBLK" bitmap --clear "$IMG" b0

# Period 1: a data write, a write-zeroes over data, a discard.
check "period 1 writes" sh -c "qemu-io -c 'write -P 0x22 1M 64k' -c 'write -z 2M 128k' \
	-c 'discard 6M 64k' -c 'write -P 0x23 20M 4k' '$IMG' > /dev/null"
check "reference 1" qemu-img convert -O raw "$IMG" "$B.1.raw"
D1=$(dirty_bytes "$IMG" b0)
check "incremental 1: convert --bitmap b0 -B the full backup" \
	"$IMGBLK" convert -O qcow2 --bitmap b0 -B "$B.0.qcow2" -F qcow2 "$IMG" "$B.1.qcow2"
check "the bitmap is left as it was" test "$(dirty_bytes "$IMG" b0)" = "$D1"
check "the incremental holds only the marked clusters ($D1 bytes)" \
	test "$(allocated_top "$B.1.qcow2")" = "$D1"
check "bitmap --clear for period 2" "$IMGBLK" bitmap --clear "$IMG" b0

# Period 2: through imgblk's own writer, and a write over period 1's zeros.
check "period 2 writes" "$IMGBLK" io -c 'write -P 0x33 2M 4k' -c 'write -P 0x34 30M 1M' "$IMG"
check "reference 2" qemu-img convert -O raw "$IMG" "$B.2.raw"
check "incremental 2 with -o backing_file=,backing_fmt=" \
	"$IMGBLK" convert -O qcow2 --bitmap b0 \
	-o "backing_file=$B.1.qcow2,backing_fmt=qcow2" "$IMG" "$B.2.qcow2"
check "incremental 2 names incremental 1 as its backing file" \
	sh -c "qemu-img info '$B.2.qcow2' | grep -q 'backing file: $B.1.qcow2'"

for k in 0 1 2; do
	check "backup point $k checks clean" qemu-img check -q "$B.$k.qcow2"
	check "backup point $k (its chain) equals the image then" \
		qemu-img compare -q -F qcow2 -f raw "$B.$k.raw" "$B.$k.qcow2"
done
check "the image checks clean; its bitmap is consistent" sh -c "
	qemu-img check -q '$IMG' && qemu-img info '$IMG' | grep -B3 'name: b0' | grep -q auto &&
	! qemu-img info '$IMG' | grep -q in-use"

# Refusals, each with one line.
"$IMGBLK" convert -O qcow2 --bitmap nope -B "$B.2.qcow2" "$IMG" "$T_TMP/x.qcow2" \
	2> "$T_TMP/err"
check "a missing bitmap is refused, no output made" \
	sh -c "grep -q \"Dirty bitmap 'nope' not found\" '$T_TMP/err' && test ! -e '$T_TMP/x.qcow2'"
cp "$IMG" "$T_TMP/inuse.qcow2"
DIR=$(python3 - "$T_TMP/inuse.qcow2" <<'EOF'
import struct, sys
d = open(sys.argv[1], "rb").read()
pos = struct.unpack(">I", d[100:104])[0]
while True:
    t, l = struct.unpack(">II", d[pos:pos + 8])
    if t == 0x23852875:
        print(struct.unpack(">Q", d[pos + 24:pos + 32])[0])
        break
    if t == 0:
        break
    pos += 8 + (l + 7) // 8 * 8
EOF
)
poke "$T_TMP/inuse.qcow2" $((DIR + 12)) '>I' 3
"$IMGBLK" convert -O qcow2 --bitmap b0 "$T_TMP/inuse.qcow2" "$T_TMP/y.qcow2" 2> "$T_TMP/err"
check "an inconsistent (in-use) bitmap is refused" \
	sh -c "[ \$(wc -l < '$T_TMP/err') = 1 ] && grep -q 'inconsistent' '$T_TMP/err'"
check_fails "a raw INPUT has no bitmaps" \
	"$IMGBLK" convert -O qcow2 --bitmap b0 "$B.0.raw" "$T_TMP/z.qcow2"
check_fails --status 1 "-c with --bitmap is a usage error" \
	"$IMGBLK" convert -c -O qcow2 --bitmap b0 "$IMG" "$T_TMP/z.qcow2"
check_fails --status 1 "-F without -B is a usage error" \
	"$IMGBLK" convert -O qcow2 -F qcow2 "$IMG" "$T_TMP/z.qcow2"

# -B without --bitmap: the whole content over a backing file, zeros written.
check "convert -B without --bitmap" \
	"$IMGBLK" convert -O qcow2 -B "$B.2.qcow2" "$B.0.raw" "$T_TMP/rev.qcow2"
check "... reads as INPUT, not as its backing file" \
	qemu-img compare -q -f raw -F qcow2 "$B.0.raw" "$T_TMP/rev.qcow2"
done_testing
