#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-resize.sh - imgblk resize of qcow2 images against qemu-img resize.
#
# For cluster sizes 512 (an L1 cluster then maps only 2 MiB), 4k and 64k,
# v2 and v3: the same image is resized by imgblk and by qemu-img (on a
# copy), grown past several L1 clusters, written at the new end, then
# shrunk with --shrink: after each step qemu-img compare says equal,
# qemu-img check is clean (no leak of the old L1 or the cut clusters),
# qemu-img info shows the size.  Shrinking over allocated data without
# --shrink is refused and changes nothing; shrinking over unallocated
# space works without it.  QEMU-resized images are read by imgblk.
# Snapshots: growing works (v3), shrinking is refused.  512-byte clusters
# with 16- and 64-bit refcounts: growing to an L1 longer than one refcount
# block covers (its blocks go in front of it at the end of the file).
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io

same() {	# same NAME A B SIZE: compare, check, size
	local name=$1 a=$2 b=$3 sz=$4
	check "$name: equals qemu-img's result" qemu-img compare -q "$a" "$b"
	check "$name: qemu-img check clean" qemu-img check -q "$a"
	check "$name: virtual size $sz" test "$(vsize "$a")" = "$sz"
}

for compat in 0.10 1.1; do
	for cs in 512 4k 64k; do
		name="v$compat cs=$cs"
		a=$T_TMP/a.qcow2 q=$T_TMP/q.qcow2
		rm -f "$a" "$q"
		qemu-img create -q -f qcow2 -o compat=$compat,cluster_size=$cs "$a" 3M
		qemu-io -c "write -P 0x11 0 1M" -c "write -P 0x22 2M 1M" "$a" > /dev/null
		cp "$a" "$q"
		check "$name: grow +61M" "$IMGBLK" resize -q "$a" +61M
		qemu-img resize -q "$q" +61M
		same "$name: grow" "$a" "$q" 67108864
		check "$name: imgblk writes at the new end" \
			"$IMGBLK" io -c "write -P 0x33 60M 1M" -c "read -P 0x22 2M 1M" "$a"
		qemu-io -c "write -P 0x33 60M 1M" "$q" > /dev/null
		same "$name: write after grow" "$a" "$q" 67108864
		check_fails "$name: shrink over data without --shrink is refused" \
			"$IMGBLK" resize -q "$a" 10M
		check "$name: ...and changed nothing" test "$(vsize "$a")" = 67108864
		check "$name: shrink over nothing needs no --shrink" "$IMGBLK" resize -q "$a" 62M
		qemu-img resize -q --shrink "$q" 62M
		same "$name: shrink over nothing" "$a" "$q" 65011712
		check "$name: shrink --shrink to 2560k" "$IMGBLK" resize -q --shrink "$a" 2560k
		qemu-img resize -q --shrink "$q" 2560k
		same "$name: shrink" "$a" "$q" 2621440
		check "$name: the data below the new end is intact" \
			"$IMGBLK" io -c "read -P 0x22 2M 512k" "$a"
		"$IMGBLK" resize -q "$a" 4M
		check "$name: the cut range reads zeros after growing back" \
			qemu-io -c "read -P 0 2560k 1536k" -c "read -P 0x11 0 1M" "$a"
		check "$name: qemu-img check clean at the end" qemu-img check -q "$a"

		# QEMU resizes, imgblk reads and writes.
		cp "$q" "$T_TMP/q2.qcow2"
		qemu-img resize -q "$T_TMP/q2.qcow2" 40M
		check "$name: imgblk reads QEMU's grown image" \
			"$IMGBLK" io -c "read -P 0x11 0 1M" -c "read -P 0 3M 37M" \
			-c "write -P 0x44 39M 1M" "$T_TMP/q2.qcow2"
		check "$name: QEMU reads imgblk's write there" \
			qemu-io -c "read -P 0x44 39M 1M" "$T_TMP/q2.qcow2"
	done
done

# A new L1 longer than one refcount block covers: with 512-byte clusters an
# L1 entry maps 32 KiB, so 1G needs 512 L1 clusters, while a block covers
# 256 clusters (16-bit refcounts) or 64 (64-bit).  The L1 goes to the end
# of the file with the blocks its ranges lack in front of it.  The last
# size (20G, 10240 L1 clusters, with 16-bit refcounts; 8G with 64-bit)
# makes the refcount table grow first; larger ones only slow qemu-img
# resize down (minutes at 40G).
for v in "16 2M 20G" "64 1M 8G"; do
	read -r rb data big <<< "$v"
	name="cs=512 refcount_bits=$rb"
	opts=cluster_size=512,refcount_bits=$rb
	a=$T_TMP/a.qcow2 q=$T_TMP/q.qcow2
	rm -f "$a" "$q"
	qemu-img create -q -f qcow2 -o "$opts" "$a" 64M
	qemu-img create -q -f qcow2 -o "$opts" "$q" 64M
	check "$name: grow an empty image 64M -> 1G" "$IMGBLK" resize -q "$a" 1G
	qemu-img resize -q "$q" 1G
	same "$name: empty, grown" "$a" "$q" 1073741824

	rm -f "$a" "$q"
	qemu-img create -q -f qcow2 -o "$opts" "$a" 64M
	tail=$((64 * 1048576 - $(numfmt --from=iec "$data")))
	qemu-io -c "write -P 0x11 0 $data" -c "write -P 0x22 $tail $data" "$a" > /dev/null
	cp "$a" "$q"
	p=3
	for sz in 1G 3G $big; do
		bytes=$(numfmt --from=iec "$sz")
		end=$((bytes - 1048576))
		check "$name: grow with data to $sz" "$IMGBLK" resize -q "$a" "$sz"
		qemu-img resize -q "$q" "$sz"
		same "$name: grown to $sz" "$a" "$q" "$bytes"
		check "$name: imgblk writes at the end of $sz, old data intact" \
			"$IMGBLK" io -c "write -P 0x$p$p $end 1M" -c "read -P 0x11 0 $data" \
			-c "read -P 0x22 $tail $data" "$a"
		qemu-io -c "write -P 0x$p$p $end 1M" "$q" > /dev/null
		same "$name: written at the end of $sz" "$a" "$q" "$bytes"
		p=$((p + 1))
	done
done

# Snapshots: grow (v3) works and the snapshot keeps its size; shrink is refused.
s=$T_TMP/s.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k "$s" 4M
qemu-io -c "write -P 0x55 0 4M" "$s" > /dev/null
"$IMGBLK" snapshot -c s1 "$s"
check "snapshots: grow" "$IMGBLK" resize -q "$s" 16M
check "snapshots: check clean" qemu-img check -q "$s"
check_fails "snapshots: shrink refused" "$IMGBLK" resize -q --shrink "$s" 2M
check "snapshots: apply the old snapshot after growing" "$IMGBLK" snapshot -a s1 "$s"
check "snapshots: its size is back" test "$(vsize "$s")" = 4194304
check "snapshots: its data is back" qemu-io -c "read -P 0x55 0 4M" "$s"

done_testing
