#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# rbd.sh - images and backing files on Ceph RBD (lib/bfile_rbd.c), on a
# one-node cluster of its own (scripts/ceph-cluster.sh), against QEMU 7.2
# with its rbd driver (qemu-block-extra) as the oracle.
#
# 1. a raw RBD image: imgblk writes (io, and bench with 64 in flight),
#    QEMU reads, and the other way round; write-zeroes and discard read
#    back as zeros.
# 2. qcow2 made on RBD by QEMU, written by imgblk as it grows the image,
#    read by QEMU, qemu-img check clean; and the other way round.
# 3. RBD as the backing file of a local overlay, in the rbd: and json:
#    forms; --backing=same-dir refuses it.
# 4. convert from RBD; a missing pool, a missing image, a missing config,
#    each one line; --rbd-conf names the config.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
IMGBLK=$(cd "$(dirname "$IMGBLK")" && pwd)/$(basename "$IMGBLK")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io rbd ceph-mon ceph-osd ceph-mgr
[ -e /usr/lib/x86_64-linux-gnu/qemu/block-rbd.so ] ||
	skip_all "QEMU's rbd driver (qemu-block-extra) not installed"

CL=$T_TMP/ceph
mkdir -p "$CL"
"$ROOT/scripts/ceph-cluster.sh" start "$CL" > "$T_TMP/ceph.out" 2>&1 ||
	{ diag_file "$T_TMP/ceph.out"; skip_all "the one-node Ceph cluster did not start"; }
on_exit "'$ROOT/scripts/ceph-cluster.sh' stop '$CL' > /dev/null 2>&1"
export CEPH_CONF=$CL/ceph.conf

one_line() {	# one_line DESCRIPTION PATTERN CMD...: fails with one line matching PATTERN
	local d=$1 pat=$2
	shift 2
	"$@" > "$T_TMP/one.out" 2>&1
	if [ $? != 0 ] && [ "$(wc -l < "$T_TMP/one.out")" = 1 ] &&
	   grep -q "$pat" "$T_TMP/one.out"; then
		ok "$d"
	else
		not_ok "$d"
		diag_file "$T_TMP/one.out"
	fi
}

# 1. Raw.
rbd create --size 64M rbd/raw1
r=rbd:rbd/raw1
check "raw on RBD: imgblk writes" "$IMGBLK" io -f raw -c "write -P 0x42 1M 1M" -c flush "$r"
check "raw on RBD: QEMU reads what imgblk wrote" qio raw "$r" "read -P 0x42 1M 1M" "read -P 0 0 1M"
qemu-io -f raw -c "write -P 0x24 4M 64k" "$r" > /dev/null
check "raw on RBD: imgblk reads what QEMU wrote" \
	"$IMGBLK" io -f raw -c "read -P 0x24 4M 64k" -c "read -P 0x42 1M 1M" "$r"
check "raw on RBD: write-zeroes and discard read back as zeros" \
	"$IMGBLK" io -f raw -c "write -z 1M 64k" -c "discard 1088k 64k" \
	-c "read -P 0 1M 128k" -c "read -P 0x42 1152k 896k" "$r"
check "raw on RBD: bench writes (64 in flight)" "$IMGBLK" bench -w -f raw -c 8000 --pattern=7 "$r"
check "raw on RBD: QEMU reads what bench wrote" qio raw "$r" "read -P 7 0 31M"

# 2. qcow2 on RBD, growing.
qemu-img create -q -f qcow2 rbd:rbd/q1 32M
q=rbd:rbd/q1
check "qcow2 on RBD: imgblk writes (the image grows)" \
	"$IMGBLK" io -f qcow2 -c "write -P 0x51 2M 4M" "$q"
check "qcow2 on RBD: QEMU reads what imgblk wrote" qio qcow2 "$q" "read -P 0x51 2M 4M" "read -P 0 0 2M"
check "qcow2 on RBD: qemu-img check clean" qemu-img check -q -f qcow2 "$q"
qemu-io -f qcow2 -c "write -P 0x52 8M 1M" "$q" > /dev/null
check "qcow2 on RBD: imgblk reads what QEMU wrote" \
	"$IMGBLK" io -f qcow2 -c "read -P 0x52 8M 1M" -c "read -P 0x51 2M 4M" "$q"

# 3. RBD as a backing file.
check "a local overlay on an RBD base" \
	"$IMGBLK" create -q -f qcow2 -b rbd:rbd/raw1 -F raw "$T_TMP/ov.qcow2"
check "the overlay writes over the RBD base" \
	"$IMGBLK" io -c "write -P 0x66 0 64k" -c "read -P 7 4M 64k" "$T_TMP/ov.qcow2"
check "QEMU reads the overlay over its RBD base" \
	qio qcow2 "$T_TMP/ov.qcow2" "read -P 0x66 0 64k" "read -P 7 64k 4M"
js='json:{"driver":"rbd","pool":"rbd","image":"raw1"}'
qemu-img create -q -f qcow2 -u -b "$js" -F raw "$T_TMP/json.qcow2" 64M
check "a json: RBD backing name opens" \
	"$IMGBLK" io -c "read -P 7 4M 64k" "$T_TMP/json.qcow2"
one_line "--backing=same-dir refuses an RBD backing" "same-dir" \
	"$IMGBLK" io --backing=same-dir -c "read 0 4k" "$T_TMP/ov.qcow2"
one_line "--allow-protocol=file,nbd refuses an RBD backing" "allow-protocol" \
	"$IMGBLK" io --allow-protocol=file,nbd -c "read 0 4k" "$T_TMP/ov.qcow2"

# 4. convert, errors, --rbd-conf.
check "convert from RBD" "$IMGBLK" convert -f raw -O raw "$r" "$T_TMP/conv.raw"
check "convert from RBD: the same data" qemu-img compare -f raw -F raw "$r" "$T_TMP/conv.raw"
one_line "a missing pool: one line" "pool 'nopool'" "$IMGBLK" info rbd:nopool/x
one_line "a missing image: one line" "image 'nosuch'" "$IMGBLK" info rbd:rbd/nosuch
one_line "a missing config: one line" "config" \
	"$IMGBLK" info "rbd:rbd/raw1:conf=$T_TMP/none.conf"
check "--rbd-conf names the config" env -u CEPH_CONF \
	"$IMGBLK" info --rbd-conf "$CL/ceph.conf" rbd:rbd/raw1

# 5. A backing name from an image may not make the server read or write
# local files through Ceph options; the user's own name may.
qemu-img create -q -f qcow2 -F raw -b "rbd:rbd/raw1:conf=$CL/ceph.conf" \
	"$T_TMP/ovconf.qcow2" 2>/dev/null
one_line "an image's backing name with conf=: one line" "conf" \
	"$IMGBLK" io -c "read 0 4k" "$T_TMP/ovconf.qcow2"
check "... accepted when --rbd-conf names the same config" \
	"$IMGBLK" io --rbd-conf "$CL/ceph.conf" -c "read -P 7 1M 4k" "$T_TMP/ovconf.qcow2"
qemu-img create -q -f qcow2 -F raw -u -b "rbd:rbd/raw1:log_file=$T_TMP/pwned" \
	"$T_TMP/ovlog.qcow2" 64M
one_line "an image's backing name with log_file=: one line" "log_file" \
	"$IMGBLK" io -c "read 0 4k" "$T_TMP/ovlog.qcow2"
check "... and the file was not made" test ! -e "$T_TMP/pwned"
check "the user's own name may set it" \
	"$IMGBLK" info "rbd:rbd/raw1:log_file=$T_TMP/mine.log"

done_testing
