#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# info-parity.sh - `imgblk info` against `qemu-img info` 7.2 on the kinds
# of image the conformance tests use: qcow2 v2 and v3 (lazy refcounts,
# 1- and 64-bit refcounts, small clusters, extended L2, zstd, external
# data files raw or not, a backing file, internal snapshots, bitmaps
# consistent and in use, the dirty and corrupt bits), QED with and
# without a backing file, raw.
#
# JSON (also --backing-chain): every key qemu-img prints must be there
# with the same value; imgblk may print more.  Text: the same lines,
# except the deliberate differences below.
#
# Deliberate differences:
# - QED: imgblk prints a "Format specific information" block (its
#   table_size, header_size, need_check) where qemu-img prints none; an
#   extra key in JSON, extra lines in the text.
# - "encrypt" (qcow2 with encryption) is not compared: encrypted images
#   are the luks branch's.
# - actual-size / "disk size" are compared as printed: both read the
#   file's allocated blocks at the same moment, nothing writes between.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io python3
IMGBLK=$(realpath "$IMGBLK")

cd "$T_TMP" || bail "no temporary directory"
qemu-img create -q -f qcow2 v3.qcow2 64M
qemu-io -f qcow2 -c "write 0 1M" v3.qcow2 > /dev/null
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
qemu-img create -q -f qcow2 -o lazy_refcounts=on,refcount_bits=1,cluster_size=4096 lazy.qcow2 64M
qemu-img create -q -f qcow2 -o refcount_bits=64,cluster_size=2M big.qcow2 64M
qemu-img create -q -f qcow2 -o extended_l2=on,compression_type=zstd ext.qcow2 64M
qemu-img create -q -f qcow2 -o data_file=data.raw df.qcow2 64M
qemu-img create -q -f qcow2 -o data_file=data2.raw,data_file_raw=on dfr.qcow2 64M
qemu-img create -q -f qcow2 -b v3.qcow2 -F qcow2 overlay.qcow2
qemu-img create -q -f qcow2 snaps.qcow2 64M
qemu-img snapshot -c one snaps.qcow2
qemu-io -f qcow2 -c "write 64k 64k" snaps.qcow2 > /dev/null
qemu-img snapshot -c two snaps.qcow2
qemu-img create -q -f qcow2 bitmaps.qcow2 64M
qemu-img bitmap --add bitmaps.qcow2 on
qemu-img bitmap --add -g 1M --disable bitmaps.qcow2 off
cp bitmaps.qcow2 inuse.qcow2
"$IMGBLK" io -f qcow2 -c "write 0 4k" -c "sleep 10000" inuse.qcow2 > /dev/null 2>&1 &
pid=$!
for i in $(seq 100); do
	qemu-img info -U inuse.qcow2 2> /dev/null | grep -q in-use && break
	sleep 0.1
done
{ kill -9 $pid; wait $pid; } 2> /dev/null
cp lazy.qcow2 dirty.qcow2
# Aborted after an allocating write with lazy refcounts: the dirty bit stays set.
bash -c 'qemu-io -f qcow2 -c "write 0 4k" -c abort dirty.qcow2; :' > /dev/null 2>&1
cp v3.qcow2 corrupt.qcow2
poke corrupt.qcow2 72 '>Q' 2
qemu-img create -q -f qed plain.qed 64M
qemu-img create -q -f qed -b v3.qcow2 -F qcow2 overlay.qed
qemu-img create -q -f raw disk.raw 64M

# same_keys QEMU_JSON IMGBLK_JSON: every key of the first in the second, same value.
same_keys() {
	python3 - "$1" "$2" <<'EOF'
import json, sys
q, i = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
bad = []
def walk(a, b, p):
    if isinstance(a, dict):
        if not isinstance(b, dict):
            bad.append("%s: not an object" % p)
            return
        for k in a:
            if k not in b:
                bad.append("%s%s missing" % (p, k))
            else:
                walk(a[k], b[k], p + k + ".")
    elif isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            bad.append("%s: list differs" % p)
            return
        for n, (x, y) in enumerate(zip(a, b)):
            walk(x, y, "%s%d." % (p, n))
    elif a != b or type(a) != type(b):
        bad.append("%s: qemu-img %r, imgblk %r" % (p, a, b))
walk(q, i, "")
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
EOF
}

for f in v3.qcow2 v2.qcow2 lazy.qcow2 big.qcow2 ext.qcow2 df.qcow2 dfr.qcow2 overlay.qcow2 \
	 snaps.qcow2 bitmaps.qcow2 inuse.qcow2 dirty.qcow2 corrupt.qcow2 plain.qed overlay.qed \
	 disk.raw; do
	for chain in "" --backing-chain; do
		qemu-img info $chain --output=json "$f" > q.json 2> /dev/null
		"$IMGBLK" info $chain --output=json "$f" > i.json
		check "$f${chain:+ $chain}: JSON carries qemu-img's keys and values" same_keys q.json i.json
	done
	qemu-img info "$f" > q.txt 2> /dev/null
	"$IMGBLK" info "$f" > i.txt
	case $f in
	*.qed)
		# The deliberate difference: imgblk's QED block, and nothing else.
		sed -i '/^Format specific information:$/,$d' i.txt ;;
	esac
	check "$f: text as qemu-img prints it" diff q.txt i.txt
done

done_testing
