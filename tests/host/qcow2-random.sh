#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-random.sh [SEED] - seeded random sequences of write / write -z /
# discard / flush of random sizes and 512-byte alignments, through
# imgblk io, mirrored on a raw shadow by qemu-io.  After each sequence:
# imgblk convert -O raw equals the shadow, qemu-img check is clean, and
# imgblk check agrees with qemu-img check.  The sequences are split over
# several imgblk io runs so that images are closed and reopened.
#
# Discards are whole, cluster-aligned ranges on images whose discarded
# clusters read as zeros (no backing file, or v3 with one); the shadow
# zeroes them.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
HERE=$(cd "$(dirname "$0")" && pwd)
SEED=${1:-${QCOW2_RANDOM_SEED:-20240601}}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io cmp python3
echo "# seed $SEED"
RANDOM=$SEED

SIZE_K=12288	# 12 MiB
RUNS=4		# imgblk io runs per image
OPS=40		# operations per run

rnd() { echo $(( (RANDOM << 15 | RANDOM) % $1 )); }

# gen CS_K DISCARD(0/1): one run's ops on stdout, one per line.
gen() {
	local cs_k=$1 can_discard=$2 i op off len
	for ((i = 0; i < OPS; i++)); do
		op=$(rnd 10)
		# Mostly small, sometimes cluster-crossing or large.
		case $(rnd 4) in
		0) len=$(( (1 + $(rnd 8)) * 512 )) ;;
		1) len=$(( (1 + $(rnd 64)) * 512 )) ;;
		2) len=$(( (1 + $(rnd 512)) * 512 )) ;;
		*) len=$(( (1 + $(rnd 4096)) * 512 )) ;;
		esac
		off=$(( $(rnd $((SIZE_K * 2))) * 512 ))
		[ $((off + len)) -gt $((SIZE_K * 1024)) ] && len=$((SIZE_K * 1024 - off))
		[ $len -le 0 ] && len=512
		if [ $op -lt 6 ]; then
			echo "write -P $(( 1 + $(rnd 254) )) $off $len"
		elif [ $op -lt 8 ]; then
			echo "write -z $off $len"
		elif [ $op = 8 ] && [ $can_discard = 1 ]; then
			local c=$((cs_k * 1024))
			off=$(( off / c * c )); len=$(( (len + c - 1) / c * c ))
			[ $((off + len)) -gt $((SIZE_K * 1024)) ] && len=$((SIZE_K * 1024 - off))
			echo "discard $off $len"
		else
			echo "flush"
		fi
	done
}

run_image() {	# run_image NAME CREATE_OPTS CS_K BACKING(none|qcow2) DISCARD
	local name=$1 opts=$2 cs_k=$3 bk=$4 disc=$5 r args sargs line
	local img=$T_TMP/r.qcow2 shadow=$T_TMP/r.raw bargs=()

	rm -f "$img" "$shadow" "$T_TMP/base.qcow2"
	if [ "$bk" = qcow2 ]; then
		qemu-img create -q -f qcow2 -o cluster_size=64k "$T_TMP/base.qcow2" 8M
		qemu-io -f qcow2 -c "write -P 0xba 0 8M" -c "write -z 3M 1M" "$T_TMP/base.qcow2" > /dev/null
		bargs=(-b "$T_TMP/base.qcow2" -F qcow2)
		qemu-img convert -O raw "$T_TMP/base.qcow2" "$shadow"
		truncate -s ${SIZE_K}k "$shadow"
	else
		truncate -s ${SIZE_K}k "$shadow"
	fi
	"$IMGBLK" create -q -f qcow2 -o "$opts" "${bargs[@]}" "$img" ${SIZE_K}k > "$T_TMP/out" 2>&1 ||
		{ not_ok "$name: create"; diag_file "$T_TMP/out"; return; }
	for ((r = 0; r < RUNS; r++)); do
		args=()
		sargs=()
		while read -r line; do
			args+=(-c "$line")
			case $line in
			discard*) sargs+=(-c "write -z ${line#discard }") ;;
			*) sargs+=(-c "$line") ;;
			esac
		done < <(gen "$cs_k" "$disc")
		"$IMGBLK" io -f qcow2 "${args[@]}" "$img" > "$T_TMP/out" 2>&1 ||
			{ not_ok "$name: run $r: imgblk io"; diag_file "$T_TMP/out"; return; }
		qemu-io -f raw "${sargs[@]}" "$shadow" > /dev/null 2>&1
	done
	ok "$name: $((RUNS * OPS)) operations"
	"$IMGBLK" convert -O raw "$img" "$T_TMP/out.raw" > "$T_TMP/out" 2>&1
	if cmp -s "$T_TMP/out.raw" "$shadow"; then ok "$name: imgblk convert equals the shadow"
	else not_ok "$name: imgblk convert equals the shadow"; cmp "$T_TMP/out.raw" "$shadow" | sed 's/^/#   /'; fi
	if qemu-img compare -q -f qcow2 -F raw "$img" "$shadow"; then ok "$name: QEMU reads the shadow's content"
	else not_ok "$name: QEMU reads the shadow's content"; fi
	if qemu-img check -q "$img" > "$T_TMP/out" 2>&1; then ok "$name: qemu-img check is clean"
	else not_ok "$name: qemu-img check is clean"; diag_file "$T_TMP/out"; fi
	"$IMGBLK" check --output=json "$img" > "$T_TMP/ic.json" 2> /dev/null
	qemu-img check --output=json "$img" > "$T_TMP/qc.json" 2> /dev/null
	if python3 "$HERE/qcow2-check-cmp.py" "$T_TMP/ic.json" "$T_TMP/qc.json" > "$T_TMP/out"; then
		ok "$name: imgblk check agrees with qemu-img check"
	else not_ok "$name: imgblk check agrees with qemu-img check"; diag_file "$T_TMP/out"; fi
}

run_image "v3 cs=64k" compat=1.1,cluster_size=64k 64 none 1
run_image "v3 cs=512 rb=1" compat=1.1,cluster_size=512,refcount_bits=1 1 none 1
run_image "v3 cs=4k rb=64" compat=1.1,cluster_size=4k,refcount_bits=64 4 none 1
run_image "v2 cs=4k" compat=0.10,cluster_size=4k 4 none 1
run_image "v3 cs=1M over qcow2" compat=1.1,cluster_size=1M 1024 qcow2 1
run_image "v2 cs=64k over qcow2" compat=0.10,cluster_size=64k 64 qcow2 0

done_testing
