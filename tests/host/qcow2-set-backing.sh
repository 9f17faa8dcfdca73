#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-set-backing.sh - imgblk rebase -u on qcow2 against qemu-img rebase -u
# on a copy: v2 and v3, backing files raw and qcow2, an image with a
# persistent bitmap (qemu-img bitmap --add), one with an unknown header
# extension (it must survive byte for byte), a missing old backing file,
# -b "" (no backing file) and back, a name added where there was none, a
# 1000-byte name, and a name that cannot fit in a 512-byte first cluster
# (refused, image unchanged).  After each step qemu-img info shows the same
# backing file and format for both, qemu-img check is clean, and QEMU reads
# the same data from both; the other extensions are kept byte for byte
# (QEMU moves its bitmap directory on every open: only the kinds compared).
set -u
. "$(dirname "$0")/tap.sh"

IMGBLK=${IMGBLK:-build/imgblk}
case $IMGBLK in /*) ;; *) IMGBLK=$PWD/$IMGBLK ;; esac
need qemu-img qemu-io python3
cd "$T_TMP" || exit 1

backing() {	# backing IMG: "file|format" as qemu-img info --output=json says
	qemu-img info --output=json "$1" | python3 -c '
import json, sys
i = json.load(sys.stdin)
print("%s|%s" % (i.get("backing-filename", ""), i.get("backing-filename-format", "")))'
}
# ext_dump IMG: every header extension but the backing format, as hex.
ext_dump() {
	python3 - "$1" <<'PY'
import struct, sys
h = open(sys.argv[1], "rb").read(65536)
ver = struct.unpack(">I", h[4:8])[0]
bo, = struct.unpack(">Q", h[8:16])
pos = 72 if ver == 2 else struct.unpack(">I", h[100:104])[0]
end = bo if bo else len(h)
while pos + 8 <= end:
    t, l = struct.unpack(">II", h[pos:pos + 8])
    if t == 0:
        break
    if t != 0xe2792aca:
        print("%08x %s" % (t, h[pos + 8:pos + 8 + l].hex()))
    pos += 8 + (l + 7) // 8 * 8
PY
}
# add_unknown_ext IMG: insert extension 0x7a7a7a7a ("zzz" data, 5 bytes) first.
add_unknown_ext() {
	python3 - "$1" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
h = bytearray(f.read(65536))
ver = struct.unpack(">I", h[4:8])[0]
start = 72 if ver == 2 else struct.unpack(">I", h[100:104])[0]
bo, bl = struct.unpack(">QI", h[8:20])
ext = struct.pack(">II", 0x7a7a7a7a, 5) + b"zzz\x01\x02" + b"\0" * 3
h[start:start] = ext
del h[-len(ext):]
if bo:
    h[8:16] = struct.pack(">Q", bo + len(ext))
f.seek(0)
f.write(h)
PY
}
# same NAME A Q: A (imgblk's) and Q (qemu-img's) agree.
same() {
	local name=$1 a=$2 q=$3
	check "$name: same backing file and format as qemu-img's" \
		test "$(backing "$a")" = "$(backing "$q")"
	check "$name: qemu-img check clean" qemu-img check -q "$a"
	check "$name: the same kinds of extension as qemu-img's" \
		test "$(ext_dump "$a" | cut -c1-8 | sort)" = "$(ext_dump "$q" | cut -c1-8 | sort)"
	check "$name: QEMU reads the same data" qemu-img compare -q "$a" "$q"
}
step() {	# step NAME A Q ARGS...: rebase -u both, then compare
	local name=$1 a=$2 q=$3
	shift 3
	ext_dump "$a" > ext.before
	check "$name: imgblk rebase -u $*" "$IMGBLK" rebase -u "$@" "$a"
	check "$name: other extensions kept byte for byte" \
		test "$(ext_dump "$a" | sort)" = "$(sort ext.before)"
	qemu-img rebase -u "$@" "$q"
	same "$name" "$a" "$q"
}

qemu-img create -q -f raw b1.raw 4M
qemu-io -f raw -c 'write -P 0x11 0 4M' b1.raw > /dev/null
cp b1.raw b2.raw
# A 1000-byte name of a file that is there: four 240-byte directories.
c=$(printf 'd%.0s' $(seq 240))
LONG=$c/$c/$c/$c
mkdir -p "$LONG" && cp b2.raw "$LONG/b.raw"
qemu-img create -q -f qcow2 b3.qcow2 4M
qemu-io -c 'write -P 0x33 0 2M' b3.qcow2 > /dev/null

for compat in 0.10 1.1; do
	for variant in plain bitmap unknown; do
		[ $compat = 0.10 ] && [ $variant = bitmap ] && continue
		name="v$compat $variant"
		a=a.qcow2 q=q.qcow2
		rm -f $a $q
		qemu-img create -q -f qcow2 -o compat=$compat -b b1.raw -F raw $a
		qemu-io -c 'write -P 0x22 1M 64k' $a > /dev/null
		[ $variant = bitmap ] && qemu-img bitmap --add $a bm0
		[ $variant = unknown ] && add_unknown_ext $a
		cp $a $q
		[ $variant = unknown ] && check "$name: QEMU sees the unknown extension" \
			grep -q 7a7a7a7a <(ext_dump $q)
		step "$name: raw to raw" $a $q -b b2.raw -F raw
		step "$name: to qcow2" $a $q -b b3.qcow2 -F qcow2
		step "$name: no backing file" $a $q -b ""
		step "$name: a backing file again" $a $q -b b1.raw -F raw
		long=$LONG/b.raw
		step "$name: a 1000-byte name" $a $q -b "$long" -F raw
		step "$name: back to a short one" $a $q -b b2.raw -F raw
		[ $variant = bitmap ] && check "$name: the bitmap is still there" \
			grep -q bm0 <(qemu-img info $a)
		[ $variant = unknown ] && check "$name: the unknown extension survived" \
			grep -q '^7a7a7a7a 7a7a7a0102$' <(ext_dump $a)
	done
done

# A missing old backing file, and a new one given without -F (probed).
rm -f a.qcow2 q.qcow2
qemu-img create -q -f qcow2 -b b1.raw -F raw a.qcow2
qemu-io -c 'write -P 0x22 1M 64k' a.qcow2 > /dev/null
mv b1.raw gone.raw
check "missing old backing file: imgblk rebase -u" "$IMGBLK" rebase -u -b b3.qcow2 a.qcow2
check "missing old backing file: format probed as qcow2" \
	test "$(backing a.qcow2)" = "b3.qcow2|qcow2"
check "missing old backing file: check clean" qemu-img check -q a.qcow2
check "missing old backing file: QEMU reads through the new one" \
	qemu-io -c 'read -P 0x33 0 1M' -c 'read -P 0x22 1M 64k' -c 'read -P 0 2M 2M' a.qcow2
mv gone.raw b1.raw

# An image with no backing file gets one.
qemu-img create -q -f qcow2 a.qcow2 4M
cp a.qcow2 q.qcow2
step "no backing file before" a.qcow2 q.qcow2 -b b1.raw -F raw

# A name that cannot fit in a 512-byte first cluster: refused, nothing changed.
qemu-img create -q -f qcow2 -o cluster_size=512 -b b1.raw -F raw a.qcow2
cp a.qcow2 q.qcow2
long=$(printf 'e%.0s' $(seq 600))
check_fails "cluster 512: a 600-byte name is refused" "$IMGBLK" rebase -u -b "$long" -F raw a.qcow2
cp check.out refusal
check "cluster 512: with a message" grep -q "do not fit in the first cluster" refusal
check "cluster 512: the image is unchanged" cmp a.qcow2 q.qcow2
step "cluster 512: a name that fits" a.qcow2 q.qcow2 -b b2.raw -F raw

done_testing
