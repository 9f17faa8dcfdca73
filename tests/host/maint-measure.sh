#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# maint-measure.sh - imgblk measure against qemu-img measure, which must
# print the same thing (text and JSON): qcow2 output for sizes from 0 to
# 100G with cluster sizes 512..2M, refcount_bits 1..64, extended_l2,
# compat=0.10, preallocation=full, backing_file; raw output; input images
# (qcow2 with data, zeros, a compressed cluster, persistent bitmaps, a
# backing chain; sparse raw; QED).  QEMU 7.2 cannot measure QED: our
# numbers are checked against the files qemu-img create and convert make
# (required >= what convert writes; an empty image is exactly "required";
# a fully written one exactly "fully allocated").
set -u
. "$(dirname "$0")/tap.sh"

IMGBLK=${IMGBLK:-build/imgblk}
case $IMGBLK in /*) ;; *) IMGBLK=$PWD/$IMGBLK ;; esac
need qemu-img qemu-io
cd "$T_TMP" || exit 1

same() {	# same ARGS...: imgblk measure and qemu-img measure agree
	local a q
	a=$("$IMGBLK" measure "$@" 2>&1)
	q=$(qemu-img measure "$@" 2>&1)
	if [ "$a" = "$q" ]; then ok "measure $*"; else
		not_ok "measure $*"; echo "# imgblk:"; echo "$a" | sed 's/^/#   /'
		echo "# qemu-img:"; echo "$q" | sed 's/^/#   /'; fi
}
field() {	# field NAME ARGS...: one number of imgblk measure's output
	local f=$1
	shift
	"$IMGBLK" measure "$@" | sed -n "s/^$f: //p"
}

for s in 0 1000 1M 1G 100G; do
	for o in "" cluster_size=512 cluster_size=4k cluster_size=2M refcount_bits=1 \
		 refcount_bits=64,cluster_size=4k extended_l2=on \
		 extended_l2=on,cluster_size=16k compat=0.10 preallocation=full \
		 preallocation=metadata,refcount_bits=8; do
		same -O qcow2 ${o:+-o $o} --size $s
	done
	same -O raw --size $s
	same -O qcow2 --output=json --size $s
done
# Too large for the L1 table: both refuse.
check_refused() {
	if "$IMGBLK" measure "$@" > out 2>&1; then not_ok "refused: $*"; else
		ok "refused: $*"; fi
}
check_refused -O qcow2 -o cluster_size=512 --size 3T
check_refused -O qcow2 -o cluster_size=1000 --size 1G
check_refused -O qcow2 -o bogus=1 --size 1G

# Input images.
qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -c 'write -P 0x11 0 4M' -c 'write -P 0x12 9M 100k' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 0x22 6M 1M' -c 'write -z 1M 1M' -c 'write -P 0x23 12345 1000' \
	-c 'write -P 0x24 15M 512' top.qcow2 > /dev/null
qemu-img bitmap --add top.qcow2 bm0
qemu-img bitmap --add -g 4k top.qcow2 a-longer-bitmap-name
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 8M
qemu-io -c 'write -P 0x33 1M 3M' v2.qcow2 > /dev/null
qemu-img convert -c -O qcow2 base.qcow2 comp.qcow2
qemu-img create -q -f raw sparse.raw 20M
qemu-io -f raw -c 'write -P 0x44 2M 1M' -c 'write -P 0x45 10M 4k' sparse.raw > /dev/null
qemu-img create -q -f qed in.qed 8M
qemu-io -f qed -c 'write -P 0x55 0 1M' in.qed > /dev/null
for f in base.qcow2 top.qcow2 v2.qcow2 comp.qcow2 sparse.raw in.qed; do
	for o in "" cluster_size=4k compat=0.10 extended_l2=on backing_file=x refcount_bits=2; do
		same -O qcow2 ${o:+-o $o} $f
	done
	same -O qcow2 --output=json $f
	same -O raw $f
done

# QED output, which QEMU cannot measure: compare with real files.
qemu-img create -q -f qed e.qed 1G
check "qed: an empty image is exactly 'required'" \
	test "$(field 'required size' -O qed --size 1G)" = "$(stat -c %s e.qed)"
qemu-img create -q -f qed -o cluster_size=4k,table_size=1 e.qed 64M
check "qed cluster_size=4k,table_size=1: an empty image is exactly 'required'" \
	test "$(field 'required size' -O qed -o cluster_size=4k,table_size=1 --size 64M)" \
	= "$(stat -c %s e.qed)"
# (QEMU 7.2 cannot open table_size=1 images: imgblk writes it.)
"$IMGBLK" io -c "write -P 1 0 64M" e.qed > /dev/null
check "qed: a fully written image is exactly 'fully allocated'" \
	test "$(field 'fully allocated size' -O qed -o cluster_size=4k,table_size=1 --size 64M)" \
	= "$(stat -c %s e.qed)"
for f in base.qcow2 top.qcow2 sparse.raw in.qed; do
	qemu-img convert -O qed $f c.qed
	check "qed: 'required' for $f covers what qemu-img convert writes" \
		test "$(field 'required size' -O qed $f)" -ge "$(stat -c %s c.qed)"
done

done_testing
