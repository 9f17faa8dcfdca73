#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# host-luks.sh - what LUKS encryption costs the host engine: 4k random
# reads and writes (`imgblk bench --random`, depth 32, O_DIRECT) on an
# encrypted qcow2 against the same unencrypted, and `imgblk bench` against
# `qemu-img bench` on the same encrypted image (qemu-img bench walks with a
# step, 20k here, so both use it for that comparison).  qemu-img 7.2's
# bench takes no --object, so it cannot open an encrypted image: its
# column then reads n/a (a newer qemu-img fills it).
#
#   scripts/bench/host-luks.sh [-b BUILD_DIR] [-c COUNT] [-s SIZE]
#
# Prints IOPS and the ratios (goals of issue 18: encrypted/plain >= 0.7
# with AES-NI, imgblk/qemu-img >= 1.1).  A benchmark, not a test.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
COUNT=100000
SIZE=1G
while getopts "b:c:s:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	c) COUNT=$OPTARG ;;
	s) SIZE=$OPTARG ;;
	h) sed -n '4,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
IMGBLK=$BUILD_DIR/imgblk
[ -x "$IMGBLK" ] || { echo "host-luks.sh: build $IMGBLK first (make)" >&2; exit 1; }
mkdir -p "$BUILD_DIR/bench"
# On the build directory's filesystem: /tmp may be tmpfs, which has no O_DIRECT.
tmp=$(mktemp -d "$BUILD_DIR/bench/.luks.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
printf 'bench passphrase' > "$tmp/key"
PLAIN=$tmp/plain.qcow2
ENC=$tmp/enc.qcow2
QOPTS="driver=qcow2,file.filename=$ENC,encrypt.key-secret=k,cache.direct=on"

"$IMGBLK" create -q -f qcow2 "$PLAIN" "$SIZE"
"$IMGBLK" create -q -f qcow2 --object secret,id=k,file="$tmp/key" \
	-o encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=100 "$ENC" "$SIZE"
# Fully allocated, so that every request reads or writes a cluster in place.
"$IMGBLK" io -c "write -P 0x5a 0 $SIZE" "$PLAIN" > /dev/null
"$IMGBLK" io --key-file "$tmp/key" -c "write -P 0x5a 0 $SIZE" "$ENC" > /dev/null

seconds() {
	"$@" 2>&1 | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p'
}
iops() { awk -v c="$COUNT" -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", c / s; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }

# Whether this qemu-img's bench takes --object: its --help lists every
# verb's options, so only a run of it tells.
qemu_object=0
qemu-img bench -c 1 --object secret,id=k,file="$tmp/key" --image-opts "$QOPTS" \
	> /dev/null 2>&1 && qemu_object=1

printf '| 4k, depth 32 | plain (imgblk) | encrypted (imgblk) | enc/plain | encrypted, step 20k (imgblk) | (qemu-img) | imgblk/qemu |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for rw in read write; do
	w=
	[ $rw = write ] && w=-w
	p=$(iops "$(seconds "$IMGBLK" bench -c "$COUNT" -d 32 --random $w "$PLAIN")")
	e=$(iops "$(seconds "$IMGBLK" bench -c "$COUNT" -d 32 --random $w --key-file "$tmp/key" "$ENC")")
	es=$(iops "$(seconds "$IMGBLK" bench -c "$COUNT" -d 32 -S 20k $w --key-file "$tmp/key" "$ENC")")
	q=n/a
	[ $qemu_object = 1 ] &&
	q=$(iops "$(seconds qemu-img bench -c "$COUNT" -d 32 -S 20k $w --object secret,id=k,file="$tmp/key" \
		--image-opts "$QOPTS")")
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$rw" "$p" "$e" "$(ratio "$e" "$p")" \
		"$es" "$q" "$(ratio "$es" "$q")"
done | tee "$BUILD_DIR/bench/host-luks.md"
