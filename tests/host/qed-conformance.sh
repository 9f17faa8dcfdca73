#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qed-conformance.sh - imgblk's QED engine against QEMU, both directions.
#
# For cluster sizes 4k, 64k, 1M x table sizes 1, 4, 16 x no backing file or
# a raw, qcow2 or QED one: one fixed sequence of data writes, zero writes
# and overwrites (partial clusters, cluster and table crossings, writes into
# zero clusters, past the end of a shorter backing file), mirrored on a raw
# shadow.
#   imgblk -> QEMU: imgblk creates and writes; qemu-img check is clean,
#     qemu-img compare equals the shadow; imgblk convert and check agree.
#   QEMU -> imgblk: qemu-img creates, qemu-io writes (write -z: zero
#     clusters); imgblk convert equals qemu-img convert, imgblk check is
#     clean, and QEMU's zero clusters show in imgblk map.
# QEMU 7.2 cannot open table_size=1 images, so those compare with the
# shadow only.  A qcow2 backing file needs imgblk's qcow2 engine: skipped
# until `imgblk info` recognises qcow2.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io cmp

SIZE=8M
BASE_SIZE=6M	# shorter than the overlay: reads past its end are zeros

# The write sequence, as qemu-io/imgblk io commands.  Offsets are 512
# aligned; they hit partial clusters, cross 4k/64k/1M cluster boundaries
# and (with 4k clusters, table_size 1) 2 MiB L2 tables.
OPS=(
	"write -P 0x11 0 4k"
	"write -P 0x22 6k 3k"
	"write -P 0x33 1020k 8k"
	"write -z 2M 2M"
	"write -z 5k 1k"
	"write -P 0x44 2097664 1k"
	"write -z 6148k 8k"
	"write -P 0x55 7M 1M"
	"write -P 0x66 7172k 4k"
	"write -z 7M 512k"
	"write -P 0x77 2620k 8k"
	"write -P 0x88 5M 1M"
	"write -P 0x99 4100k 4k"
)

# ops_args: the sequence as -c arguments
ops_args() {
	local o
	for o in "${OPS[@]}"; do printf '%s\0%s\0' -c "$o"; done
}

# make_base FMT FILE: a backing image of BASE_SIZE, patterned
make_base() {
	qemu-img create -q -f "$1" "$2" $BASE_SIZE &&
	qemu-io -f "$1" -c "write -P 0xb1 0 $BASE_SIZE" -c "write -P 0xb2 1M 64k" \
		-c "write -z 3M 64k" "$2" > /dev/null
}

# make_shadow BACKING_FMT|none BACKING SHADOW: the guest view before the writes
make_shadow() {
	rm -f "$3"
	if [ "$1" = none ]; then
		truncate -s $SIZE "$3"
	else
		qemu-img convert -f "$1" -O raw "$2" "$3" && truncate -s $SIZE "$3"
	fi &&
	xargs -0 qemu-io -f raw "$3" < <(ops_args) > /dev/null
}

have_qcow2() {
	qemu-img create -q -f qcow2 "$T_TMP/probe.qcow2" 1M &&
	"$IMGBLK" info "$T_TMP/probe.qcow2" 2> /dev/null | grep -q 'file format: qcow2'
}
QCOW2_OK=0
have_qcow2 && QCOW2_OK=1

for bfmt in none raw qcow2 qed; do
	base=$T_TMP/base.$bfmt
	if [ "$bfmt" = qcow2 ] && [ $QCOW2_OK = 0 ]; then
		skip "qcow2 backing: all cases" "imgblk has no qcow2 engine yet"
		continue
	fi
	if [ "$bfmt" != none ]; then
		make_base "$bfmt" "$base" || { not_ok "make $bfmt base"; continue; }
	fi
	make_shadow "$bfmt" "$base" "$T_TMP/shadow.raw" ||
		{ not_ok "make shadow over $bfmt"; continue; }
	for cs in 4k 64k 1M; do
		for ts in 1 4 16; do
			name="cluster $cs table $ts backing $bfmt"
			img=$T_TMP/img.qed
			bopts=()
			[ "$bfmt" != none ] && bopts=(-b "$base" -F "$bfmt")
			rm -f "$img"

			# imgblk writes, QEMU reads.
			if ! "$IMGBLK" create -f qed "${bopts[@]}" \
			     -o "cluster_size=$cs,table_size=$ts" "$img" $SIZE > "$T_TMP/out" 2>&1; then
				not_ok "$name: imgblk create"; diag_file "$T_TMP/out"; continue
			fi
			if ! xargs -0 "$IMGBLK" io -f qed "$img" < <(ops_args) > "$T_TMP/out" 2>&1; then
				not_ok "$name: imgblk io writes"; diag_file "$T_TMP/out"; continue
			fi
			if [ "$ts" = 1 ]; then
				skip "$name: qemu-img check of imgblk's image" \
				     "QEMU 7.2 cannot open table_size=1"
				skip "$name: qemu-img compare" "QEMU 7.2 cannot open table_size=1"
			else
				check "$name: qemu-img check of imgblk's image" qemu-img check -q "$img"
				check "$name: QEMU reads what imgblk wrote" \
				      qemu-img compare -q -f raw -F qed "$T_TMP/shadow.raw" "$img"
			fi
			rm -f "$T_TMP/conv.raw"
			if "$IMGBLK" convert -f qed -O raw "$img" "$T_TMP/conv.raw" > "$T_TMP/out" 2>&1 &&
			   cmp -s "$T_TMP/conv.raw" "$T_TMP/shadow.raw"; then
				ok "$name: imgblk reads back the shadow"
			else
				not_ok "$name: imgblk reads back the shadow"; diag_file "$T_TMP/out"
			fi
			check "$name: imgblk check of its own image" "$IMGBLK" check -q "$img"

			# QEMU writes, imgblk reads.
			[ "$ts" = 1 ] && continue
			rm -f "$img"
			qbopts=()
			[ "$bfmt" != none ] && qbopts=(-b "$base" -F "$bfmt")
			if ! qemu-img create -q -f qed "${qbopts[@]}" \
			     -o "cluster_size=$cs,table_size=$ts" "$img" $SIZE > "$T_TMP/out" 2>&1 ||
			   ! xargs -0 qemu-io -f qed "$img" < <(ops_args) > "$T_TMP/out" 2>&1; then
				not_ok "$name: QEMU create and writes"; diag_file "$T_TMP/out"; continue
			fi
			# Against QEMU's own reading, not the shadow: QEMU 7.2 fills
			# the rest of a zero cluster it writes into from the backing
			# file, where the spec (and imgblk) say zeros.
			rm -f "$T_TMP/conv.raw" "$T_TMP/qconv.raw"
			if qemu-img convert -f qed -O raw "$img" "$T_TMP/qconv.raw" &&
			   "$IMGBLK" convert -f qed -O raw "$img" "$T_TMP/conv.raw" > "$T_TMP/out" 2>&1 &&
			   cmp -s "$T_TMP/conv.raw" "$T_TMP/qconv.raw"; then
				ok "$name: imgblk reads what QEMU wrote"
			else
				not_ok "$name: imgblk reads what QEMU wrote"; diag_file "$T_TMP/out"
			fi
			check "$name: imgblk check of QEMU's image" "$IMGBLK" check -q "$img"
			# Zero clusters made by QEMU show as zero in imgblk's map.
			if [ "$bfmt" != none ]; then
				if "$IMGBLK" map --output=json "$img" 2> "$T_TMP/out" |
				   grep -q '"depth": 0, "present": true, "zero": true, "data": false'; then
					ok "$name: QEMU's zero clusters are zero in imgblk map"
				else
					not_ok "$name: QEMU's zero clusters are zero in imgblk map"
					"$IMGBLK" map --output=json "$img" 2>&1 | head -n 8 | sed 's/^/#   /'
				fi
			fi
		done
	done
done

done_testing
