#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qed-malformed.sh - malformed QED headers are refused with a clear error
# naming the problem, never a crash; unknown compat bits are ignored and
# unknown autoclear bits cleared by a read-write open.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
T=$(mktemp -d "${TMPDIR:-/tmp}/qed-bad.XXXXXX")
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.sh"

need

# put32/put64 FILE OFFSET VALUE: little-endian field write in place
put_le() {
	local file=$1 off=$2 val=$3 bytes=$4 s='' i
	for ((i = 0; i < bytes; i++)); do
		s+=$(printf '\\x%02x' $(((val >> (8 * i)) & 0xff)))
	done
	printf "$s" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none
}
put32() { put_le "$1" "$2" "$3" 4; }
put64() { put_le "$1" "$2" "$3" 8; }
get64() { od -A n -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }

fresh() {	# fresh: a 64k-cluster, table_size 4, 16 MiB image with data
	rm -f "$T/img.qed"
	"$IMGBLK" create -f qed "$T/img.qed" 16M > /dev/null &&
	"$IMGBLK" io -c 'write -P 0x5a 0 128k' "$T/img.qed" > /dev/null
}

# refused NAME PATTERN: info, read-only and read-write opens all fail with a
# message matching PATTERN, and nothing crashes (status < 128, no sanitizer).
refused() {
	local name=$1 pat=$2 i rc good=1
	local -a verbs=("info" "io -r -c" "io -c")
	for i in 0 1 2; do
		case $i in
		0) "$IMGBLK" info -f qed "$T/img.qed" > "$T/out" 2>&1 ;;
		1) "$IMGBLK" io -f qed -r -c "read 0 512" "$T/img.qed" > "$T/out" 2>&1 ;;
		2) "$IMGBLK" io -f qed -c "read 0 512" "$T/img.qed" > "$T/out" 2>&1 ;;
		esac
		rc=$?
		if [ $rc = 0 ] || [ $rc -ge 128 ] || grep -q 'Sanitizer\|runtime error' "$T/out" ||
		   ! grep -qi -- "$pat" "$T/out"; then
			good=0
			echo "# imgblk ${verbs[$i]}: status $rc, expected a failure saying '$pat':"
			diag_file "$T/out"
		fi
	done
	if [ $good = 1 ]; then ok "$name: refused ($(head -n 1 "$T/out"))"; else not_ok "$name"; fi
}

fresh || { echo "1..0 # SKIP cannot create a QED image"; exit 0; }

fresh; truncate -s 40 "$T/img.qed"; refused "truncated header" "truncated"
fresh; truncate -s 0 "$T/img.qed"; refused "empty file" "truncated\|not a QED\|format"
fresh; put32 "$T/img.qed" 0 0x00444552; refused "bad magic" "magic\|format"
fresh; put32 "$T/img.qed" 4 2048; refused "cluster size 2048" "cluster size"
fresh; put32 "$T/img.qed" 4 $((128 << 20)); refused "cluster size 128 MiB" "cluster size"
fresh; put32 "$T/img.qed" 4 12288; refused "cluster size not a power of 2" "cluster size"
fresh; put32 "$T/img.qed" 8 0; refused "table size 0" "table size"
fresh; put32 "$T/img.qed" 8 32; refused "table size 32" "table size"
fresh; put32 "$T/img.qed" 8 3; refused "table size 3" "table size"
fresh; put32 "$T/img.qed" 12 0; refused "header size 0" "header size"
fresh; put32 "$T/img.qed" 12 $((1 << 20)); refused "header size past the file" "header size"
fresh; put64 "$T/img.qed" 40 $((1 << 30)); refused "L1 table past EOF" "L1 table offset"
fresh; put64 "$T/img.qed" 40 $((65536 + 512)); refused "L1 table misaligned" "L1 table offset"
fresh; put64 "$T/img.qed" 40 0; refused "L1 table over the header" "L1 table offset"
# The L1 table must fit whole: its last cluster inside the file too.
fresh; put64 "$T/img.qed" 40 $(($(stat -c %s "$T/img.qed") - 65536))
refused "L1 table cut by EOF" "L1 table offset"
# 64k clusters, table_size 4: 32768 entries each, 2^15 * 2^15 * 64k = 64 TiB.
fresh; put64 "$T/img.qed" 48 $((65 << 40)); refused "image size beyond the tables" "image size"
fresh; put64 "$T/img.qed" 48 $(((16 << 20) + 100)); refused "image size not sectors" "image size"
fresh; put64 "$T/img.qed" 16 1; put32 "$T/img.qed" 56 65530; put32 "$T/img.qed" 60 100
refused "backing name outside the header" "backing file name"
fresh; put64 "$T/img.qed" 16 1; put32 "$T/img.qed" 56 64; put32 "$T/img.qed" 60 0
refused "empty backing name" "backing file name"
fresh; put64 "$T/img.qed" 16 $((0x10)); refused "unknown feature bit" "feature bits 0x10"
fresh; put64 "$T/img.qed" 16 $((1 << 63)); refused "unknown high feature bit" "feature bits 0x8000000000000000"

# Unknown compat bits: ignored, and kept.
fresh; put64 "$T/img.qed" 24 $((0x100))
if "$IMGBLK" io -c 'read -P 0x5a 0 128k' "$T/img.qed" > "$T/out" 2>&1 &&
   [ "$(get64 "$T/img.qed" 24)" = 256 ]; then
	ok "unknown compat bit: opens, data intact, bit kept"
else
	not_ok "unknown compat bit: opens, data intact, bit kept"; diag_file "$T/out"
fi
# Unknown autoclear bits: a read-only open leaves them, a read-write one clears them.
fresh; put64 "$T/img.qed" 32 $((0x30))
"$IMGBLK" io -r -c 'read -P 0x5a 0 128k' "$T/img.qed" > "$T/out" 2>&1
if [ $? = 0 ] && [ "$(get64 "$T/img.qed" 32)" = 48 ]; then
	ok "unknown autoclear bits: read-only open leaves them"
else
	not_ok "unknown autoclear bits: read-only open leaves them"; diag_file "$T/out"
fi
"$IMGBLK" io -c 'read -P 0x5a 0 128k' "$T/img.qed" > "$T/out" 2>&1
if [ $? = 0 ] && [ "$(get64 "$T/img.qed" 32)" = 0 ]; then
	ok "unknown autoclear bits: read-write open clears them"
else
	not_ok "unknown autoclear bits: read-write open clears them"; diag_file "$T/out"
fi
if command -v qemu-img > /dev/null; then
	if qemu-img check -q "$T/img.qed" > "$T/out" 2>&1; then
		ok "qemu-img check clean after the autoclear rewrite"
	else
		not_ok "qemu-img check clean after the autoclear rewrite"; diag_file "$T/out"
	fi
fi

# A raw backing file that looks like a QED image is not probed with bit 0x04.
rm -f "$T/base.raw" "$T/img.qed"
"$IMGBLK" create -f qed "$T/base.raw" 1M > /dev/null
truncate -s 16M "$T/base.raw"
"$IMGBLK" create -f qed -b base.raw -F raw "$T/img.qed" > /dev/null 2>&1
if "$IMGBLK" io -c 'read -P 0x51 0 1' -c 'read -P 0 64k 64k' "$T/img.qed" > "$T/out" 2>&1; then
	ok "raw backing bit: a QED-looking backing file is read as raw"
else
	not_ok "raw backing bit: a QED-looking backing file is read as raw"; diag_file "$T/out"
fi

echo "1..$N"
[ $FAIL = 0 ]
