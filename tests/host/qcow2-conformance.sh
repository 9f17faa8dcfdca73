#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-conformance.sh - imgblk's qcow2 engine against QEMU, both directions.
#
# Matrix: compat 0.10/1.1 x cluster size 512, 4k, 64k, 2M x refcount_bits
# 1, 16, 64 (v2 has only 16), each with no backing file; 4k and 64k also
# over a raw and a qcow2 backing file (shorter than the overlay).
#   QEMU -> imgblk: qemu-img creates, qemu-io runs the write sequence;
#     imgblk io reads the patterns back, imgblk convert equals qemu-img
#     convert, imgblk check agrees with qemu-img check.
#   imgblk -> QEMU: imgblk creates and runs the same sequence; qemu-img
#     check is clean, qemu-img compare equals a raw shadow written by
#     qemu-io, imgblk check agrees with qemu-img check.
# Compressed: qemu-img convert -c (zlib, and zstd) of a written image;
# imgblk convert equals QEMU's, then imgblk overwrites parts of it and
# QEMU checks and compares.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io cmp python3

SIZE=8M
BASE_SIZE=6M

# 512-aligned, hitting partial clusters, cluster and L2-table crossings
# (512-byte clusters: an L2 table maps 32 KiB), zero writes over data and
# over nothing, discards of whole 2 MiB-aligned ranges.
OPS=(
	"write -P 0x11 0 4k"
	"write -P 0x22 6k 3k"
	"write -P 0x33 1020k 8k"
	"write -z 2M 2M"
	"write -z 5k 1k"
	"write -P 0x44 2097664 1k"
	"write -P 0x55 7M 1M"
	"write -P 0x66 7172k 4k"
	"write -z 7M 512k"
	"write -P 0x77 4M 2M"
	"discard 4M 2M"
	"write -P 0x88 4608k 100k"
	"write -P 0x99 31k 34k"
)
# What the sequence leaves, as patterns to verify (discard made zeros:
# whole clusters of a v3 image, or of a v2 one without a backing file).
VERIFY=(
	"read -P 0x11 0 4k"
	"read -P 0x22 6k 3k"
	"read -P 0x33 1020k 8k"
	"read -P 0x44 2097664 1k"
	"read -P 0 7M 512k"
	"read -P 0x55 7680k 512k"
	"read -P 0x88 4608k 100k"
	"read -P 0x99 31k 34k"
)

mapfile -t OPS_ARGS < <(io_args "${OPS[@]}")
mapfile -t VERIFY_ARGS < <(io_args "${VERIFY[@]}")

# check_agrees IMG: imgblk check and qemu-img check report the same numbers.
check_agrees() {
	"$IMGBLK" check --output=json "$1" > "$T_TMP/ic.json" 2> "$T_TMP/ic.err"
	local irc=$?
	qemu-img check --output=json "$1" > "$T_TMP/qc.json" 2> "$T_TMP/qc.err"
	local qrc=$?
	[ "$irc" = "$qrc" ] || { echo "exit codes differ: imgblk $irc, qemu-img $qrc"; return 1; }
	python3 "$HERE/qcow2-check-cmp.py" "$T_TMP/ic.json" "$T_TMP/qc.json"
}

# make_backing KIND: $T_TMP/base.KIND, BASE_SIZE, with patterns.
make_backing() {
	rm -f "$T_TMP/base.$1"
	qemu-img create -q -f "$1" "$T_TMP/base.$1" $BASE_SIZE &&
	qemu-io -f "$1" -c "write -P 0xb1 0 $BASE_SIZE" -c "write -P 0xb2 1M 64k" \
		"$T_TMP/base.$1" > /dev/null
}

run_case() {	# run_case NAME OPTS BACKING(none|raw|qcow2)
	local name=$1 opts=$2 bk=$3 bargs=() v=("${VERIFY_ARGS[@]}")

	if [ "$bk" != none ]; then
		make_backing "$bk" || { not_ok "$name: backing file"; return; }
		bargs=(-b "$T_TMP/base.$bk" -F "$bk")
	fi
	# v2 with a backing file: discard may let the backing file show: skip that range.
	[ "$bk" != none ] && [[ $opts == *compat=0.10* ]] &&
		mapfile -t v < <(io_args "${VERIFY[@]:0:5}" "read -P 0x88 4608k 100k" "read -P 0x99 31k 34k")

	# QEMU writes, imgblk reads.
	rm -f "$T_TMP/q.qcow2"
	if qemu-img create -q -f qcow2 -o "$opts" "${bargs[@]}" "$T_TMP/q.qcow2" $SIZE &&
	   qemu-io -f qcow2 "${OPS_ARGS[@]}" "$T_TMP/q.qcow2" > "$T_TMP/out" 2>&1; then
		check "$name: QEMU writes, imgblk reads the patterns" \
			"$IMGBLK" io -f qcow2 "${v[@]}" "$T_TMP/q.qcow2"
		qemu-img convert -O raw "$T_TMP/q.qcow2" "$T_TMP/q.ref"
		"$IMGBLK" convert -O raw "$T_TMP/q.qcow2" "$T_TMP/q.raw" > "$T_TMP/out" 2>&1
		check "$name: imgblk convert equals qemu-img convert" cmp "$T_TMP/q.raw" "$T_TMP/q.ref"
		check "$name: imgblk check agrees with qemu-img check (QEMU image)" \
			check_agrees "$T_TMP/q.qcow2"
	else
		not_ok "$name: qemu-img/qemu-io set up the image"; diag_file "$T_TMP/out"
	fi

	# imgblk writes, QEMU reads.  The shadow is what QEMU made of the same ops.
	rm -f "$T_TMP/i.qcow2"
	if ! "$IMGBLK" create -q -f qcow2 -o "$opts" "${bargs[@]}" "$T_TMP/i.qcow2" $SIZE \
		> "$T_TMP/out" 2>&1; then
		not_ok "$name: imgblk create"; diag_file "$T_TMP/out"; return
	fi
	check "$name: imgblk writes the sequence" "$IMGBLK" io -f qcow2 "${OPS_ARGS[@]}" "$T_TMP/i.qcow2"
	check "$name: qemu-img check is clean" qemu-img check -q "$T_TMP/i.qcow2"
	check "$name: QEMU reads imgblk's patterns" qemu-io -f qcow2 "${v[@]}" "$T_TMP/i.qcow2"
	if [ "$bk" = none ] || [[ $opts != *compat=0.10* ]]; then
		check "$name: qemu-img compare with QEMU's image" \
			qemu-img compare -q "$T_TMP/i.qcow2" "$T_TMP/q.qcow2"
	fi
	check "$name: imgblk check agrees with qemu-img check (imgblk image)" \
		check_agrees "$T_TMP/i.qcow2"
}

for compat in 1.1 0.10; do
	for cs in 512 4k 64k 2M; do
		for rb in 1 16 64; do
			[ $compat = 0.10 ] && [ $rb != 16 ] && continue
			run_case "v$compat cs=$cs rb=$rb" \
				"compat=$compat,cluster_size=$cs,refcount_bits=$rb" none
		done
	done
	for cs in 4k 64k; do
		for bk in raw qcow2; do
			run_case "v$compat cs=$cs backing=$bk" "compat=$compat,cluster_size=$cs" $bk
		done
	done
done

# Compressed images: QEMU compresses, imgblk reads, then writes over them.
for ct in zlib zstd; do
	for cs in 4k 64k; do
		name="compressed $ct cs=$cs"
		rm -f "$T_TMP/src.qcow2" "$T_TMP/c.qcow2"
		qemu-img create -q -f qcow2 -o cluster_size=$cs "$T_TMP/src.qcow2" $SIZE &&
		qemu-io -f qcow2 -c "write -P 0x5a 0 3M" -c "write -P 0x5b 5M 1M" \
			-c "write -P 0x5c 6147k 3k" "$T_TMP/src.qcow2" > /dev/null &&
		qemu-img convert -c -O qcow2 -o cluster_size=$cs,compression_type=$ct \
			"$T_TMP/src.qcow2" "$T_TMP/c.qcow2" || { not_ok "$name: set up"; continue; }
		qemu-img convert -O raw "$T_TMP/c.qcow2" "$T_TMP/c.ref"
		"$IMGBLK" convert -O raw "$T_TMP/c.qcow2" "$T_TMP/c.raw" > "$T_TMP/out" 2>&1
		check "$name: imgblk convert equals qemu-img convert" cmp "$T_TMP/c.raw" "$T_TMP/c.ref"
		check "$name: imgblk check agrees with qemu-img check" check_agrees "$T_TMP/c.qcow2"
		cp "$T_TMP/c.qcow2" "$T_TMP/w.qcow2"
		cp "$T_TMP/c.ref" "$T_TMP/w.ref"
		W=(-c "write -P 0x6a 1k 2k" -c "write -z 64k 64k" -c "discard 1M 1M"
		   -c "write -P 0x6b 5M 4k")
		check "$name: imgblk writes into compressed clusters" \
			"$IMGBLK" io -f qcow2 "${W[@]}" "$T_TMP/w.qcow2"
		qemu-io -f raw "${W[@]}" "$T_TMP/w.ref" > /dev/null
		check "$name: qemu-img check is clean after imgblk's writes" \
			qemu-img check -q "$T_TMP/w.qcow2"
		check "$name: qemu-img compare equals the shadow" \
			qemu-img compare -q -f qcow2 -F raw "$T_TMP/w.qcow2" "$T_TMP/w.ref"
	done
done

# Zero clusters QEMU made (with and without a preallocated cluster) read as zeros.
rm -f "$T_TMP/z.qcow2"
qemu-img create -q -f qcow2 -o cluster_size=4k "$T_TMP/z.qcow2" 1M
qemu-io -f qcow2 -c "write -P 0x12 0 1M" -c "write -z 0 64k" -c "write -z -u 128k 64k" \
	"$T_TMP/z.qcow2" > /dev/null
check "zero and zero-allocated clusters read as zeros" \
	"$IMGBLK" io -f qcow2 -c "read -P 0 0 64k" -c "read -P 0x12 64k 64k" \
	-c "read -P 0 128k 64k" -c "read -P 0x12 192k 832k" "$T_TMP/z.qcow2"
check "imgblk writes over zero-allocated clusters" \
	"$IMGBLK" io -f qcow2 -c "write -P 0x13 1k 1k" -c "write -P 0x14 130k 1k" "$T_TMP/z.qcow2"
check "QEMU reads them and check is clean" qemu-io -f qcow2 -c "read -P 0 0 1k" \
	-c "read -P 0x13 1k 1k" -c "read -P 0 2k 62k" -c "read -P 0 128k 2k" \
	-c "read -P 0x14 130k 1k" "$T_TMP/z.qcow2"
check "qemu-img check is clean after writes over zero clusters" qemu-img check -q "$T_TMP/z.qcow2"

done_testing
