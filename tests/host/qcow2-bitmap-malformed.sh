#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-bitmap-malformed.sh - broken bitmap directories and tables: imgblk
# gives QEMU 7.2's verdict.  For each image, `imgblk check` exits as
# `qemu-img check` does (0 clean, 1 cannot open, 2 corrupt) and finds the
# same numbers of errors and leaks, and `imgblk info` opens it when
# `qemu-img info` does and refuses it when QEMU refuses.  A write must end
# within 20 s without a signal, succeeding or saying why in an "imgblk:"
# line.  Deliberate difference: where QEMU's write to an image whose
# bitmap table lies over other metadata goes on (freeing that metadata's
# clusters when it stores the bitmap), imgblk's overlap check may stop it
# and mark the image corrupt instead.  The name makes scripts/check.sh
# run it against the ASan/UBSan build too.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io python3 timeout

BASE=$T_TMP/base.qcow2
qemu-img create -q -f qcow2 "$BASE" 10M
qemu-img bitmap --add "$BASE" b0
qemu-io -f qcow2 -c "write 0 64k" "$BASE" > /dev/null

# Where things are: the bitmaps extension's data, the directory, the table.
read -r EXT DIR TAB L1 RT < <(python3 - "$BASE" <<'EOF'
import struct, sys
d = open(sys.argv[1], "rb").read()
pos = struct.unpack(">I", d[100:104])[0]
while True:
    t, l = struct.unpack(">II", d[pos:pos + 8])
    if t == 0x23852875:
        ext = pos + 8
    if t == 0:
        break
    pos += 8 + (l + 7) // 8 * 8
doff = struct.unpack(">Q", d[ext + 16:ext + 24])[0]
print(ext, doff, struct.unpack(">Q", d[doff:doff + 8])[0],
      struct.unpack(">Q", d[40:48])[0], struct.unpack(">Q", d[48:56])[0])
EOF
)

# case NAME OFFSET FORMAT VALUE: a copy of the base image with one field changed.
case_img() {
	cp "$BASE" "$T_TMP/$1.qcow2"
	poke "$T_TMP/$1.qcow2" "$2" "$3" "$4"
}
case_img inuse $((DIR + 12)) '>I' 3
case_img tab-eof $DIR '>Q' $((0x10000000))
case_img tab-over-rt $DIR '>Q' "$RT"
case_img tab-unaligned $DIR '>Q' $((TAB + 512))
case_img tab-size $((DIR + 8)) '>I' 5
case_img dir-eof $((EXT + 16)) '>Q' $((0x10000000))
case_img dir-over-l1 $((EXT + 16)) '>Q' "$L1"
case_img nb-too-many "$EXT" '>I' 2
case_img flags-reserved $((DIR + 12)) '>I' $((2 | 8))
case_img gran-40 $((DIR + 17)) '>B' 40
case_img type-2 $((DIR + 16)) '>B' 2
case_img name-empty $((DIR + 18)) '>H' 0
data=$(peek "$BASE" "$TAB" '>Q')
case_img data-eof "$TAB" '>Q' $((0x10000000))
case_img data-over-l1 "$TAB" '>Q' "$L1"
case_img data-reserved "$TAB" '>Q' $((data | 2))
case_img autoclear-off 88 '>Q' 0

# numbers FILE: "errors leaks" from check's output (0 0 when none).
numbers() {
	local e l
	e=$(sed -n 's/^\([0-9]*\) errors were found.*/\1/p' "$1")
	l=$(sed -n 's/^\([0-9]*\) leaked clusters were found.*/\1/p' "$1")
	echo "${e:-0} ${l:-0}"
}

for f in inuse tab-eof tab-over-rt tab-unaligned tab-size dir-eof dir-over-l1 nb-too-many \
	 flags-reserved gran-40 type-2 name-empty data-eof data-over-l1 data-reserved \
	 autoclear-off; do
	img=$T_TMP/$f.qcow2
	qemu-img check -f qcow2 "$img" > "$T_TMP/q.out" 2>&1
	qrc=$?
	timeout -k 5 20 "$IMGBLK" check -f qcow2 "$img" > "$T_TMP/i.out" 2>&1
	irc=$?
	if [ $irc = $qrc ] && [ "$(numbers "$T_TMP/i.out")" = "$(numbers "$T_TMP/q.out")" ]; then
		ok "$f: check exits $irc with $(numbers "$T_TMP/i.out") errors/leaks, as qemu-img"
	else
		not_ok "$f: check exits $irc ($(numbers "$T_TMP/i.out")), qemu-img $qrc ($(numbers "$T_TMP/q.out"))"
		diag_file "$T_TMP/i.out" 6
		diag_file "$T_TMP/q.out" 6
	fi
	qemu-img info -f qcow2 "$img" > /dev/null 2>&1
	qrc=$?
	timeout -k 5 20 "$IMGBLK" info -f qcow2 "$img" > /dev/null 2> "$T_TMP/i.err"
	irc=$?
	if [ $((irc != 0)) = $((qrc != 0)) ]; then ok "$f: info ${irc/#0/opens} as qemu-img"; else
		not_ok "$f: info exits $irc, qemu-img $qrc"; diag_file "$T_TMP/i.err"; fi
	cp "$img" "$T_TMP/w.qcow2"
	timeout -k 5 20 "$IMGBLK" io -f qcow2 -c "write 0 4k" "$T_TMP/w.qcow2" \
		> /dev/null 2> "$T_TMP/w.err"
	irc=$?
	if [ $irc = 0 ] || { [ $irc -lt 124 ] && grep -q '^imgblk:' "$T_TMP/w.err"; }; then
		ok "$f: a write ends cleanly (exit $irc)"
	else
		not_ok "$f: a write exits $irc"; diag_file "$T_TMP/w.err"
	fi
done

done_testing
