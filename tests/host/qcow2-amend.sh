#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-amend.sh - imgblk amend against qemu-img amend on copies.
# lazy_refcounts on and off (v3): qemu-img info says the same, check is
# clean, the data is untouched; turning it off on an image QEMU left
# dirty (qemu-io abort) repairs the refcounts first.  lazy_refcounts=on on
# a v2 image is refused as QEMU refuses it; compat=1.1 on a v2 image
# writes a v3 header as QEMU's (112 bytes), compat=0.10 expands zero
# clusters and gives what QEMU's downgrade gives, and refuses what v2
# cannot hold; refcount_bits= changes the width as qemu-img does (and
# refuses a refcount that does not fit); unknown options are refused.
set -u
. "$(dirname "$0")/tap.sh"

IMGBLK=${IMGBLK:-build/imgblk}
case $IMGBLK in /*) ;; *) IMGBLK=$PWD/$IMGBLK ;; esac
need qemu-img qemu-io
cd "$T_TMP" || exit 1

spec() {	# the format-specific part of qemu-img info, and the dirty flag
	qemu-img info --output=json "$1" | sed -n '/format-specific/,$p' | grep -v '"filename"'
	qemu-img info --output=json "$1" | grep '"dirty-flag"'
}
same() {	# same NAME A Q
	check "$1: qemu-img info agrees with qemu-img amend's" test "$(spec "$2")" = "$(spec "$3")"
	check "$1: qemu-img check clean" qemu-img check -q "$2"
	check "$1: same data" qemu-img compare -q "$2" "$3"
}

for cs in 512 64k; do
	name="cs=$cs"
	qemu-img create -q -f qcow2 -o cluster_size=$cs a.qcow2 8M
	qemu-io -c 'write -P 0x11 0 1M' -c 'write -z 2M 1M' a.qcow2 > /dev/null
	cp a.qcow2 q.qcow2
	check "$name: lazy_refcounts=on" "$IMGBLK" amend -o lazy_refcounts=on a.qcow2
	qemu-img amend -o lazy_refcounts=on q.qcow2
	same "$name: on" a.qcow2 q.qcow2
	check "$name: QEMU writes the lazy image" qemu-io -c 'write -P 0x22 4M 1M' a.qcow2
	cp a.qcow2 q.qcow2
	check "$name: lazy_refcounts=off" "$IMGBLK" amend -o lazy_refcounts=off a.qcow2
	qemu-img amend -o lazy_refcounts=off q.qcow2
	same "$name: off" a.qcow2 q.qcow2
	check "$name: lazy_refcounts=off again changes nothing" \
		"$IMGBLK" amend -o lazy_refcounts=off a.qcow2
	same "$name: off twice" a.qcow2 q.qcow2

	# A dirty image (QEMU aborted with lazy refcounts): off repairs first.
	"$IMGBLK" amend -o lazy_refcounts=on a.qcow2
	( qemu-io -c 'write -P 0x33 5M 1M' -c 'write -P 0x34 6M 64k' -c abort a.qcow2 \
		> /dev/null 2>&1 ) 2> /dev/null
	check "$name: the aborted image is dirty" grep -q '"dirty-flag": true' \
		<(qemu-img info --output=json a.qcow2)
	check "$name: lazy_refcounts=off on a dirty image" \
		"$IMGBLK" amend -o lazy_refcounts=off a.qcow2
	check "$name: ...it is clean" grep -q '"dirty-flag": false' \
		<(qemu-img info --output=json a.qcow2)
	check "$name: ...lazy refcounts off" grep -q '"lazy-refcounts": false' \
		<(qemu-img info --output=json a.qcow2)
	check "$name: ...qemu-img check clean" qemu-img check -q a.qcow2
	check "$name: ...the data written before the abort is there" \
		qemu-io -c 'read -P 0x33 5M 1M' -c 'read -P 0x34 6M 64k' -c 'read -P 0x11 0 1M' a.qcow2
done

# v2: lazy refcounts refused, as QEMU refuses them; lazy_refcounts=off is fine.
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
cp v2.qcow2 v2.orig
check_fails "v2: lazy_refcounts=on refused" "$IMGBLK" amend -o lazy_refcounts=on v2.qcow2
check_fails "v2: (qemu-img refuses it too)" qemu-img amend -o lazy_refcounts=on v2.orig
check "v2: lazy_refcounts=off accepted" "$IMGBLK" amend -o compat=0.10,lazy_refcounts=off v2.qcow2
check "v2: qemu-img check clean" qemu-img check -q v2.qcow2

# Not supported yet: refused with a message, image unchanged.
qemu-img create -q -f qcow2 c.qcow2 4M
cp c.qcow2 c.orig
check "compat=1.1 and refcount_bits=16 on such an image: accepted" \
	"$IMGBLK" amend -o compat=1.1,refcount_bits=16 c.qcow2
check_fails "an unknown option is refused" "$IMGBLK" amend -o cluster_size=4k c.qcow2
check "the image is as it was" cmp c.qcow2 c.orig

# compat: upgrade and downgrade against qemu-img amend on copies.
for cs in 512 4k 64k; do
	for bk in none backed; do
		name="compat cs=$cs $bk"
		rm -f base.qcow2 a.qcow2 q.qcow2
		if [ $bk = backed ]; then
			qemu-img create -q -f qcow2 base.qcow2 4M
			qemu-io -c 'write -P 0x05 0 4M' base.qcow2 > /dev/null
			qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=$cs \
				-b base.qcow2 -F qcow2 a.qcow2 4M
		else
			qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=$cs a.qcow2 4M
		fi
		qemu-io -c 'write -P 0x11 0 1M' -c 'write -z 2M 256k' a.qcow2 > /dev/null
		cp a.qcow2 q.qcow2
		check "$name: compat=1.1" "$IMGBLK" amend -o compat=1.1 a.qcow2
		qemu-img amend -o compat=1.1 q.qcow2
		check "$name: ...version 3, header_length 112" test \
			"$(od -An -tx1 -j4 -N4 a.qcow2 | tr -d ' ')$(od -An -tx1 -j100 -N4 a.qcow2 | tr -d ' ')" \
			= 0000000300000070
		same "$name: up" a.qcow2 q.qcow2
		# v3 zero clusters (over the backing file too), then back to v2.
		qemu-io -c 'write -z 3M 512k' -c 'write -P 0x22 1M 64k' -c 'write -z 64k 64k' \
			a.qcow2 > /dev/null
		cp a.qcow2 q.qcow2
		check "$name: compat=0.10" "$IMGBLK" amend -o compat=0.10 a.qcow2
		qemu-img amend -o compat=0.10 q.qcow2
		same "$name: down" a.qcow2 q.qcow2
		check "$name: ...zeros read as zeros" qemu-io -r -c 'read -P 0 3M 512k' \
			-c 'read -P 0 2M 256k' -c 'read -P 0x22 1M 64k' a.qcow2
		check "$name: compat=1.1,lazy_refcounts=on on v2" \
			"$IMGBLK" amend -o compat=1.1,lazy_refcounts=on a.qcow2
		qemu-img amend -o compat=1.1,lazy_refcounts=on q.qcow2
		same "$name: up with lazy" a.qcow2 q.qcow2
	done
done

# A lazy-refcounts image with zero clusters down to v2: refcounts written.
for bk in none backed; do
	rm -f a.qcow2 q.qcow2
	if [ $bk = backed ]; then
		qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k \
			-b base.qcow2 -F qcow2 a.qcow2 4M
	else
		qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k a.qcow2 4M
	fi
	qemu-io -c 'write -P 0x11 0 256k' -c 'write -z 1M 1M' -c 'write -z 8k 8k' a.qcow2 > /dev/null
	cp a.qcow2 q.qcow2
	check "lazy $bk: compat=0.10" "$IMGBLK" amend -o compat=0.10 a.qcow2
	qemu-img amend -o compat=0.10 q.qcow2
	same "lazy $bk: down" a.qcow2 q.qcow2
done

# refcount_bits: every width, over snapshots (refcount 2), against qemu-img.
for cs in 512 4k 64k; do
	for b in 1 2 4 8 32 64 16; do
		name="refcount_bits=$b cs=$cs"
		rm -f a.qcow2 q.qcow2
		qemu-img create -q -f qcow2 -o cluster_size=$cs a.qcow2 16M
		qemu-io -c 'write -P 0x11 0 3M' -c 'write -z 5M 1M' a.qcow2 > /dev/null
		[ $b = 1 ] || qemu-img snapshot -c s1 a.qcow2
		qemu-io -c 'write -P 0x22 1M 64k' a.qcow2 > /dev/null
		cp a.qcow2 q.qcow2
		check "$name" "$IMGBLK" amend -o refcount_bits=$b a.qcow2
		qemu-img amend -o refcount_bits=$b q.qcow2
		same "$name" a.qcow2 q.qcow2
		check "$name: QEMU writes on" qemu-io -c 'write -P 0x33 8M 1M' a.qcow2
		check "$name: ...check clean" qemu-img check -q a.qcow2
	done
done
qemu-img create -q -f qcow2 -o cluster_size=4k a.qcow2 4M
qemu-io -c 'write -P 0x11 0 1M' a.qcow2 > /dev/null
qemu-img snapshot -c s1 a.qcow2
cp a.qcow2 a.orig
check_fails "refcount_bits=1 with a refcount of 2: refused" \
	"$IMGBLK" amend -o refcount_bits=1 a.qcow2
cp check.out refusal
check "...naming the cluster, as QEMU" grep -q "has a refcount of 2" refusal
check "...image unchanged" cmp a.qcow2 a.orig
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
check_fails "refcount_bits=8 on v2: refused" "$IMGBLK" amend -o refcount_bits=8 v2.qcow2

# What v2 cannot hold: refused like QEMU, image unchanged.
for o in refcount_bits=8 extended_l2=on data_file=d.raw compression_type=zstd; do
	rm -f x.qcow2 d.raw
	qemu-img create -q -f qcow2 -o $o x.qcow2 1M
	cp x.qcow2 x.orig
	check_fails "compat=0.10 with $o: refused" "$IMGBLK" amend -o compat=0.10 x.qcow2
	check "...image unchanged" cmp x.qcow2 x.orig
done
qemu-img create -q -f qcow2 x.qcow2 1M
check_fails "compat=0.10,lazy_refcounts=on refused" \
	"$IMGBLK" amend -o compat=0.10,lazy_refcounts=on x.qcow2

done_testing
