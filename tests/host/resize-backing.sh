#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# resize-backing.sh - growing an image over a longer backing file, against
# qemu-img resize (QEMU 5.1+ zeroes the grown range the backing file
# covers, block.c bdrv_co_truncate).
#
# Backing files (raw and qcow2, 4M of 0xaa) under overlays of 1M with data
# written first.  qcow2 v3 (64k and 4k clusters, extended L2): the grown
# range reads zeros, qemu-img map shows what QEMU's own resize of a copy
# shows (zero clusters at depth 0) up to the backing file's end, past it
# the range reads zeros unallocated (QEMU zeroes it too: the one
# difference), qemu-img check is clean; also for an old end inside a
# cluster, a shrink then grow over written data, and a grow whose L1
# must grow.  qcow2 v2 and QED: the grow is refused as QEMU refuses it,
# with the image left byte for byte as it was; a v2 grow within the old
# end's cluster works (zero data), as in QEMU.  A backing file that ends
# at or before the old size changes nothing: every format grows.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io python3

M=1048576

# map FILE END: qemu-img map's extents below END, host offsets left out
# (the two images place their clusters differently), adjacent equal ones
# merged.
map() {
	qemu-img map --output=json "$1" | python3 -c '
import json, sys
end = int(sys.argv[1])
out = []
for e in json.load(sys.stdin):
    if e["start"] >= end:
        break
    k = (e["depth"], e.get("present"), e["zero"], e["data"])
    n = min(e["length"], end - e["start"])
    if out and out[-1][2] == k and out[-1][0] + out[-1][1] == e["start"]:
        out[-1][1] += n
    else:
        out.append([e["start"], n, k])
for s, n, k in out:
    print(s, n, *k)
' "$2"
}
same_map() {	# same_map A B END
	[ "$(map "$1" "$3")" = "$(map "$2" "$3")" ] && return 0
	diff <(map "$1" "$3") <(map "$2" "$3")
	return 1
}

qemu-img create -q -f raw "$T_TMP/bk.raw" 4M
qemu-io -f raw -c "write -P 0xaa 0 4M" "$T_TMP/bk.raw" > /dev/null
qemu-img convert -O qcow2 "$T_TMP/bk.raw" "$T_TMP/bk.qcow2"

# mk FILE FMT OPTS BACKING BFMT SIZE: an overlay with 0x11 at 0..256k.
mk() {
	rm -f "$1"
	qemu-img create -q -f "$2" ${3:+-o "$3"} -b "$4" -F "$5" "$1" "$6"
	qemu-io -f "$2" -c "write -P 0x11 0 256k" "$1" > /dev/null
}

for bf in raw qcow2; do
	bk=$T_TMP/bk.$bf
	for v in "v3:compat=1.1" "v3-4k:compat=1.1,cluster_size=4k" \
		 "v3-extl2:compat=1.1,extended_l2=on"; do
		name="${v%%:*} over $bf" opts=${v#*:}
		a=$T_TMP/a.qcow2 q=$T_TMP/q.qcow2

		# Grow to the backing file's size, an old end on a cluster boundary.
		mk "$a" qcow2 "$opts" "$bk" $bf 1M
		cp "$a" "$q"
		check "$name: grow 1M -> 4M" "$IMGBLK" resize -q "$a" 4M
		check "$name: qemu-img resize grows the copy" qemu-img resize -q "$q" 4M
		check "$name: the grown range reads zeros, the rest as before" \
			qemu-io -c "read -P 0 1M 3M" -c "read -P 0x11 0 256k" \
			-c "read -P 0xaa 256k 768k" "$a"
		check "$name: imgblk reads the same" "$IMGBLK" io \
			-c "read -P 0 1M 3M" -c "read -P 0x11 0 256k" -c "read -P 0xaa 256k 768k" "$a"
		check "$name: qemu-img map as after QEMU's resize" same_map "$a" "$q" $((4 * M))
		check "$name: equals QEMU's result" qemu-img compare -q "$a" "$q"
		check "$name: qemu-img check clean" qemu-img check -q "$a"

		# Past the backing file's end: zeros, nothing allocated for them.
		check "$name: grow on to 8M" "$IMGBLK" resize -q "$a" 8M
		check "$name: 4M..8M reads zeros" qemu-io -c "read -P 0 1M 7M" "$a"
		check "$name: 4M..8M unallocated (QEMU: zero clusters)" \
			test "$(map "$a" $((8 * M)) | tail -n 1)" = "$((4 * M)) $((4 * M)) 0 False True False"

		# Straight past the backing file's end, with the L1 growing.
		mk "$a" qcow2 "$opts" "$bk" $bf 1M
		cp "$a" "$q"
		check "$name: grow 1M -> 3G" "$IMGBLK" resize -q "$a" 3G
		qemu-img resize -q "$q" 3G
		check "$name: 3G: map up to the backing end as QEMU's" same_map "$a" "$q" $((4 * M))
		check "$name: 3G: reads zeros from 1M" \
			qemu-io -c "read -P 0 1M 7M" -c "read -P 0 3071M 1M" -c "read -P 0x11 0 256k" "$a"
		check "$name: 3G: equals QEMU's result" qemu-img compare -q "$a" "$q"
		check "$name: 3G: qemu-img check clean" qemu-img check -q "$a"

		# An old end inside a cluster: the rest of it is zeroed with data.
		mk "$a" qcow2 "$opts" "$bk" $bf 1049088
		cp "$a" "$q"
		check "$name: grow 1M+512 -> 4M" "$IMGBLK" resize -q "$a" 4M
		qemu-img resize -q "$q" 4M
		check "$name: unaligned: zeros from the old end" \
			qemu-io -c "read -P 0xaa 256k 786944" -c "read -P 0 1049088 3144704" "$a"
		check "$name: unaligned: map as QEMU's" same_map "$a" "$q" $((4 * M))
		check "$name: unaligned: qemu-img check clean" qemu-img check -q "$a"

		# Shrink over written data, then grow back over the backing file.
		mk "$a" qcow2 "$opts" "$bk" $bf 4M
		qemu-io -c "write -P 0x22 2M 1M" "$a" > /dev/null
		cp "$a" "$q"
		check "$name: shrink 4M -> 1M" "$IMGBLK" resize -q --shrink "$a" 1M
		check "$name: grow back to 4M" "$IMGBLK" resize -q "$a" 4M
		qemu-img resize -q --shrink "$q" 1M
		qemu-img resize -q "$q" 4M
		check "$name: regrown range reads zeros, neither 0x22 nor 0xaa" \
			qemu-io -c "read -P 0 1M 3M" -c "read -P 0xaa 256k 768k" "$a"
		check "$name: regrown: map as QEMU's" same_map "$a" "$q" $((4 * M))
		check "$name: regrown: qemu-img check clean" qemu-img check -q "$a"
	done

	# v2 and QED: refused as QEMU refuses, the image untouched.
	for f in "qcow2:compat=0.10" "qed:"; do
		fmt=${f%%:*} opts=${f#*:}
		name="$fmt${opts:+ $opts} over $bf"
		a=$T_TMP/a.$fmt q=$T_TMP/q.$fmt
		mk "$a" $fmt "$opts" "$bk" $bf 1M
		cp "$a" "$q"
		check_fails "$name: qemu-img resize refuses 1M -> 4M" qemu-img resize -q "$q" 4M
		check_fails "$name: imgblk resize refuses it too" "$IMGBLK" resize -q "$a" 4M
		cp "$T_TMP/check.out" "$T_TMP/msg"
		check "$name: the message says why" grep -q "longer backing file" "$T_TMP/msg"
		check "$name: the image is untouched" cmp "$a" "$q"
		check "$name: still 1M" test "$(vsize "$a")" = $M
		check "$name: still reads as before" \
			qemu-io -f $fmt -c "read -P 0x11 0 256k" -c "read -P 0xaa 256k 768k" "$a"
	done

	# v2, the grow within the old end's cluster: zero data, as QEMU does.
	name="v2 over $bf, within the last cluster"
	mk "$a" qcow2 compat=0.10 "$bk" $bf 1049088
	cp "$a" "$q"
	check "$name: grow 1M+512 -> 1M+32k" "$IMGBLK" resize -q "$a" 1081344
	check "$name: qemu-img resize does it too" qemu-img resize -q "$q" 1081344
	check "$name: zeros from the old end" \
		qemu-io -c "read -P 0 1049088 32256" -c "read -P 0xaa 256k 786944" "$a"
	check "$name: equals QEMU's result" qemu-img compare -q "$a" "$q"
	check "$name: map as QEMU's" same_map "$a" "$q" 1081344
	check "$name: qemu-img check clean" qemu-img check -q "$a"
	check_fails "$name: but not past that cluster" "$IMGBLK" resize -q "$a" 2M
done

# A backing file that ends at or before the old size: nothing to hide,
# every format grows and the new range stays unallocated, as in QEMU.
qemu-img create -q -f raw "$T_TMP/short.raw" 1M
qemu-io -f raw -c "write -P 0xaa 0 1M" "$T_TMP/short.raw" > /dev/null
for f in "qcow2:compat=1.1" "qcow2:compat=0.10" "qed:"; do
	fmt=${f%%:*} opts=${f#*:}
	name="$fmt${opts:+ $opts} over a 1M backing file"
	a=$T_TMP/a.$fmt q=$T_TMP/q.$fmt
	mk "$a" $fmt "$opts" "$T_TMP/short.raw" raw 1M
	cp "$a" "$q"
	check "$name: grow 1M -> 4M" "$IMGBLK" resize -q "$a" 4M
	check "$name: qemu-img resize too" qemu-img resize -q "$q" 4M
	check "$name: grown range reads zeros" qemu-io -f $fmt -c "read -P 0 1M 3M" "$a"
	check "$name: map as QEMU's" same_map "$a" "$q" $((4 * M))
	check "$name: qemu-img check clean" qemu-img check -q "$a"
done

done_testing
