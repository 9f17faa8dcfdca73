#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# maint-rebase.sh - imgblk rebase (safe mode, no -u) on qcow2 (v2, v3,
# 512-byte and 64k clusters) and QED overlays, against qemu-img rebase on a
# copy.  Chains base <- mid <- top with data, zeros and sub-cluster writes
# in mid and top; top is rebased onto base (skipping mid), onto nothing
# (-b ""), onto a shorter raw file, and an image without a backing file is
# given one.  After each: the overlay through its new chain reads what it
# read before (qemu-img compare with a raw copy taken first), qemu-img
# check is clean, qemu-img info names the new backing file and format, and
# QEMU's rebased copy reads the same.  A missing old backing file makes
# safe mode refuse, leaving the image as it was.
set -u
. "$(dirname "$0")/tap.sh"

IMGBLK=${IMGBLK:-build/imgblk}
case $IMGBLK in /*) ;; *) IMGBLK=$PWD/$IMGBLK ;; esac
need qemu-img qemu-io
cd "$T_TMP" || exit 1

# rebase NAME FMT IMG ARGS...: imgblk rebases IMG, qemu-img a copy; both
# must still read what IMG read before.
rebase() {
	local name=$1 fmt=$2 a=$3 bk
	shift 3
	qemu-img convert -O raw "$a" before.raw
	cp "$a" q.img
	check "$name: imgblk rebase $*" "$IMGBLK" rebase "$@" "$a"
	qemu-img rebase -f "$fmt" "$@" q.img
	check "$name: reads what it read before" qemu-img compare -q "$a" before.raw
	check "$name: qemu-img check clean" qemu-img check -q "$a"
	check "$name: reads what QEMU's rebased copy reads" qemu-img compare -q "$a" q.img
	bk=$(qemu-img info "$a" | sed -n 's/^backing file: //p')
	check "$name: qemu-img info names the same backing file" \
		test "$bk" = "$(qemu-img info q.img | sed -n 's/^backing file: //p')"
}

for v in "qcow2 compat=1.1,cluster_size=64k" "qcow2 compat=0.10,cluster_size=64k" \
	 "qcow2 compat=1.1,cluster_size=512" "qed cluster_size=64k"; do
	set -- $v
	fmt=$1 opts=$2 name="$1 $2"
	rm -f ./*.img ./*.raw
	qemu-img create -q -f $fmt -o $opts base.img 8M
	qemu-io -f $fmt -c 'write -P 0x11 0 8M' base.img > /dev/null
	qemu-img create -q -f $fmt -o $opts -b base.img -F $fmt mid.img
	qemu-io -f $fmt -c 'write -P 0x22 1M 1M' -c 'write -z 3M 512k' \
		-c 'write -P 0x23 5000 3000' -c 'write -P 0x24 7M 4k' mid.img > /dev/null
	qemu-img create -q -f $fmt -o $opts -b mid.img -F $fmt top.img
	qemu-io -f $fmt -c 'write -P 0x33 1536k 64k' -c 'write -P 0x34 6M 100k' \
		-c 'write -P 0x35 7M 512' top.img > /dev/null
	cp top.img top2.img
	rebase "$name: onto base, past mid" $fmt top.img -b base.img -F $fmt
	rebase "$name: onto nothing" $fmt top.img -b ""
	# A shorter raw file: past its end the new chain reads zeros.
	qemu-img create -q -f raw short.raw 2M
	qemu-io -f raw -c 'write -P 0x11 0 1M' short.raw > /dev/null
	rebase "$name: an image without a backing file gets one" $fmt top.img -b short.raw -F raw
	rebase "$name: mid onto a shorter raw file" $fmt mid.img -b short.raw -F raw
	check "$name: top still reads through the rebased mid" \
		qemu-img compare -q top2.img "$(qemu-img convert -O raw top2.img t2.raw; echo t2.raw)"
	mv mid.img gone.img
	cp top2.img top3.img
	check_fails "$name: safe mode refuses a missing old backing file" \
		"$IMGBLK" rebase -b short.raw -F raw top2.img
	check "$name: ...and leaves the image as it was" cmp top2.img top3.img
	mv gone.img mid.img
	# Without -F the new file's format is probed and recorded.
	check "$name: no -F: rebase" "$IMGBLK" rebase -b base.img top2.img
	# (QED records only "raw"; any other backing format is probed.)
	[ $fmt = qcow2 ] && check "$name: no -F: the format is recorded" \
		grep -q "^backing file format: $fmt" <(qemu-img info top2.img)
	check "$name: no -F: reads what it read before" qemu-img compare -q top2.img t2.raw
done

# -p prints progress.
qemu-img create -q -f qcow2 p.img 4M
check "-p prints progress" "$IMGBLK" rebase -p -b short.raw -F raw p.img
cp check.out progress
check "-p: the last line says 100%" grep -q '100.00/100%' progress

done_testing
