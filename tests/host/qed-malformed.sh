#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qed-malformed.sh - malformed QED headers are refused with a clear error
# naming the problem, never a crash; unknown compat bits are ignored and
# unknown autoclear bits cleared by a read-write open.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need

fresh() {	# fresh: a 64k-cluster, table_size 4, 16 MiB image with data
	rm -f "$T_TMP/img.qed"
	"$IMGBLK" create -f qed "$T_TMP/img.qed" 16M > /dev/null &&
	"$IMGBLK" io -c 'write -P 0x5a 0 128k' "$T_TMP/img.qed" > /dev/null
}

# refused NAME PATTERN: info, read-only and read-write opens all fail with a
# message matching PATTERN, and nothing crashes (status < 128, no sanitizer).
refused() {
	local name=$1 pat=$2 i rc good=1
	local -a verbs=("info" "io -r -c" "io -c")
	for i in 0 1 2; do
		case $i in
		0) "$IMGBLK" info -f qed "$T_TMP/img.qed" > "$T_TMP/out" 2>&1 ;;
		1) "$IMGBLK" io -f qed -r -c "read 0 512" "$T_TMP/img.qed" > "$T_TMP/out" 2>&1 ;;
		2) "$IMGBLK" io -f qed -c "read 0 512" "$T_TMP/img.qed" > "$T_TMP/out" 2>&1 ;;
		esac
		rc=$?
		if [ $rc = 0 ] || [ $rc -ge 128 ] || grep -q 'Sanitizer\|runtime error' "$T_TMP/out" ||
		   ! grep -qi -- "$pat" "$T_TMP/out"; then
			good=0
			echo "# imgblk ${verbs[$i]}: status $rc, expected a failure saying '$pat':"
			diag_file "$T_TMP/out"
		fi
	done
	if [ $good = 1 ]; then ok "$name: refused ($(head -n 1 "$T_TMP/out"))"; else not_ok "$name"; fi
}

fresh || skip_all "cannot create a QED image"

fresh; truncate -s 40 "$T_TMP/img.qed"; refused "truncated header" "truncated"
fresh; truncate -s 0 "$T_TMP/img.qed"; refused "empty file" "truncated\|not a QED\|format"
fresh; poke "$T_TMP/img.qed" 0 '<I' 0x00444552; refused "bad magic" "magic\|format"
fresh; poke "$T_TMP/img.qed" 4 '<I' 2048; refused "cluster size 2048" "cluster size"
fresh; poke "$T_TMP/img.qed" 4 '<I' $((128 << 20)); refused "cluster size 128 MiB" "cluster size"
fresh; poke "$T_TMP/img.qed" 4 '<I' 12288; refused "cluster size not a power of 2" "cluster size"
fresh; poke "$T_TMP/img.qed" 8 '<I' 0; refused "table size 0" "table size"
fresh; poke "$T_TMP/img.qed" 8 '<I' 32; refused "table size 32" "table size"
fresh; poke "$T_TMP/img.qed" 8 '<I' 3; refused "table size 3" "table size"
fresh; poke "$T_TMP/img.qed" 12 '<I' 0; refused "header size 0" "header size"
fresh; poke "$T_TMP/img.qed" 12 '<I' $((1 << 20)); refused "header size past the file" "header size"
fresh; poke "$T_TMP/img.qed" 40 '<Q' $((1 << 30)); refused "L1 table past EOF" "L1 table offset"
fresh; poke "$T_TMP/img.qed" 40 '<Q' $((65536 + 512)); refused "L1 table misaligned" "L1 table offset"
fresh; poke "$T_TMP/img.qed" 40 '<Q' 0; refused "L1 table over the header" "L1 table offset"
# The L1 table must fit whole: its last cluster inside the file too.
fresh; poke "$T_TMP/img.qed" 40 '<Q' $(($(stat -c %s "$T_TMP/img.qed") - 65536))
refused "L1 table cut by EOF" "L1 table offset"
# 64k clusters, table_size 4: 32768 entries each, 2^15 * 2^15 * 64k = 64 TiB.
fresh; poke "$T_TMP/img.qed" 48 '<Q' $((65 << 40)); refused "image size beyond the tables" "image size"
fresh; poke "$T_TMP/img.qed" 48 '<Q' $(((16 << 20) + 100)); refused "image size not sectors" "image size"
fresh; poke "$T_TMP/img.qed" 16 '<Q' 1; poke "$T_TMP/img.qed" 56 '<I' 65530; poke "$T_TMP/img.qed" 60 '<I' 100
refused "backing name outside the header" "backing file name"
fresh; poke "$T_TMP/img.qed" 16 '<Q' 1; poke "$T_TMP/img.qed" 56 '<I' 64; poke "$T_TMP/img.qed" 60 '<I' 0
refused "empty backing name" "backing file name"
fresh; poke "$T_TMP/img.qed" 16 '<Q' $((0x10)); refused "unknown feature bit" "feature bits 0x10"
fresh; poke "$T_TMP/img.qed" 16 '<Q' $((1 << 63)); refused "unknown high feature bit" "feature bits 0x8000000000000000"

# Unknown compat bits: ignored, and kept.
fresh; poke "$T_TMP/img.qed" 24 '<Q' $((0x100))
if "$IMGBLK" io -c 'read -P 0x5a 0 128k' "$T_TMP/img.qed" > "$T_TMP/out" 2>&1 &&
   [ "$(peek "$T_TMP/img.qed" 24 '<Q')" = 256 ]; then
	ok "unknown compat bit: opens, data intact, bit kept"
else
	not_ok "unknown compat bit: opens, data intact, bit kept"; diag_file "$T_TMP/out"
fi
# Unknown autoclear bits: a read-only open leaves them, a read-write one clears them.
fresh; poke "$T_TMP/img.qed" 32 '<Q' $((0x30))
"$IMGBLK" io -r -c 'read -P 0x5a 0 128k' "$T_TMP/img.qed" > "$T_TMP/out" 2>&1
if [ $? = 0 ] && [ "$(peek "$T_TMP/img.qed" 32 '<Q')" = 48 ]; then
	ok "unknown autoclear bits: read-only open leaves them"
else
	not_ok "unknown autoclear bits: read-only open leaves them"; diag_file "$T_TMP/out"
fi
"$IMGBLK" io -c 'read -P 0x5a 0 128k' "$T_TMP/img.qed" > "$T_TMP/out" 2>&1
if [ $? = 0 ] && [ "$(peek "$T_TMP/img.qed" 32 '<Q')" = 0 ]; then
	ok "unknown autoclear bits: read-write open clears them"
else
	not_ok "unknown autoclear bits: read-write open clears them"; diag_file "$T_TMP/out"
fi
if command -v qemu-img > /dev/null; then
	if qemu-img check -q "$T_TMP/img.qed" > "$T_TMP/out" 2>&1; then
		ok "qemu-img check clean after the autoclear rewrite"
	else
		not_ok "qemu-img check clean after the autoclear rewrite"; diag_file "$T_TMP/out"
	fi
fi

# A raw backing file that looks like a QED image is not probed with bit 0x04.
rm -f "$T_TMP/base.raw" "$T_TMP/img.qed"
"$IMGBLK" create -f qed "$T_TMP/base.raw" 1M > /dev/null
truncate -s 16M "$T_TMP/base.raw"
"$IMGBLK" create -f qed -b base.raw -F raw "$T_TMP/img.qed" > /dev/null 2>&1
if "$IMGBLK" io -c 'read -P 0x51 0 1' -c 'read -P 0 64k 64k' "$T_TMP/img.qed" > "$T_TMP/out" 2>&1; then
	ok "raw backing bit: a QED-looking backing file is read as raw"
else
	not_ok "raw backing bit: a QED-looking backing file is read as raw"; diag_file "$T_TMP/out"
fi

done_testing
