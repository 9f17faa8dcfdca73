#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-commit.sh - imgblk commit against qemu-img commit, on copies.
#
# Chain base <- mid <- top (qcow2; top larger than its backing files,
# zero writes that must hide older data, partial clusters).  For each of
# `commit top` (into mid, top emptied), `commit -b base top` (through mid
# into base, nothing emptied), `commit -d top`, and a raw base: imgblk
# and qemu-img each run on their own copy of the chain; then every image
# equals its QEMU counterpart (qemu-img compare), qemu-img check is clean
# and top still reads as before the commit.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io

make_chain() {	# make_chain DIR CS BASEFMT
	local d=$1 cs=$2 bf=$3
	mkdir -p "$d"
	if [ "$bf" = raw ]; then
		truncate -s 8M "$d/base.img"
		qemu-io -f raw -c "write -P 0x11 0 8M" "$d/base.img" > /dev/null
	else
		qemu-img create -q -f qcow2 -o cluster_size=$cs "$d/base.img" 8M
		qemu-io -f qcow2 -c "write -P 0x11 0 8M" "$d/base.img" > /dev/null
	fi
	qemu-img create -q -f qcow2 -o cluster_size=$cs -b base.img -F $bf "$d/mid.qcow2"
	qemu-io -c "write -P 0x22 1M 1M" -c "write -z 3M 1M" -c "write -P 0x23 5000k 3k" \
		"$d/mid.qcow2" > /dev/null
	qemu-img create -q -f qcow2 -o cluster_size=$cs -b mid.qcow2 -F qcow2 "$d/top.qcow2" 12M
	qemu-io -c "write -P 0x33 1536k 3k" -c "write -P 0x44 10M 1M" -c "write -z 6M 64k" \
		-c "write -P 0x45 3584k 1k" "$d/top.qcow2" > /dev/null
}

run_case() {	# run_case NAME CS BASEFMT COMMIT_ARGS...
	local name=$1 cs=$2 bf=$3 f
	shift 3
	rm -rf "$T_TMP/a" "$T_TMP/q"
	make_chain "$T_TMP/a" $cs $bf
	cp -r "$T_TMP/a" "$T_TMP/q"
	qemu-img convert -O raw "$T_TMP/a/top.qcow2" "$T_TMP/before.raw"
	local args=("$@")
	check "$name: imgblk commit ${args[*]}" \
		"$IMGBLK" commit -q "${args[@]//@/$T_TMP/a/}" "$T_TMP/a/top.qcow2"
	qemu-img commit -q "${args[@]//@/$T_TMP/q/}" "$T_TMP/q/top.qcow2"
	for f in base.img mid.qcow2 top.qcow2; do
		check "$name: $f equals qemu-img's" qemu-img compare -q "$T_TMP/a/$f" "$T_TMP/q/$f"
		check "$name: $f: qemu-img check clean" \
			sh -c "qemu-img info '$T_TMP/a/$f' | grep -q 'file format: raw' || qemu-img check -q '$T_TMP/a/$f'"
	done
	check "$name: top reads as before" qemu-img compare -q -F raw "$T_TMP/a/top.qcow2" "$T_TMP/before.raw"
}

for cs in 4k 64k; do
	run_case "cs=$cs into mid" $cs qcow2
	run_case "cs=$cs -b base" $cs qcow2 -b @base.img
	run_case "cs=$cs -d" $cs qcow2 -d
done
run_case "raw base, -b base" 64k raw -b @base.img
run_case "raw base, into mid" 64k raw

"$IMGBLK" commit -q "$T_TMP/before.raw" > "$T_TMP/out" 2>&1
if [ $? != 0 ]; then ok "commit of an image without a backing file fails"
else not_ok "commit of an image without a backing file fails"; fi

done_testing
