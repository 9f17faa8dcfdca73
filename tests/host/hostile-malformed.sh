#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# hostile-malformed.sh - malicious qcow2 and QED images: offsets past the
# end of the file or into metadata, refcount loops and overflow, compressed
# descriptors running past the file, gigantic sizes, backing loops, chains
# deeper than 64, backing names with path tricks.  Every verb on every
# image (info, check, map, io read, io write, convert) must end within 20 s,
# not by a signal, without a sanitizer report, and either succeed or say
# why in a line starting "imgblk:"; no file but the image itself may change
# (checksums of everything else, /etc/passwd included, before and after).
# Cases with a known right answer (refusals, reads) check it.  The name
# makes scripts/check.sh run it against the ASan/UBSan build too.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
RUNS=0
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io timeout md5sum
IMGBLK=$(realpath "$IMGBLK")

M56=$(( 0x00fffffffffffe00 ))

# Checksums of every file under $T_TMP but the image under test, and /etc/passwd.
sums() {
	find "$T_TMP" -type f ! -path "$1" ! -path "$T_TMP/work/*" ! -name out.raw -print0 |
		sort -z | xargs -0 md5sum 2> /dev/null
	md5sum /etc/passwd
}

# verb DESC CMD...: one run; prints a diagnostic and returns 1 if it crashed,
# hung, tripped a sanitizer, or failed without an "imgblk:" line.
verb() {
	local d=$1 rc
	shift
	RUNS=$((RUNS + 1))
	timeout -k 5 20 "$@" > "$T_TMP/work/out" 2> "$T_TMP/work/err" < /dev/null
	rc=$?
	if [ $rc = 124 ] || [ $rc = 137 ]; then
		echo "# $d: hung (killed after 20 s): ${*:2}"; return 1
	elif [ $rc -ge 128 ]; then
		echo "# $d: killed by signal $((rc - 128)): ${*:2}"; return 1
	elif grep -qE 'Sanitizer|runtime error:' "$T_TMP/work/err"; then
		echo "# $d: sanitizer report: ${*:2}"; grep -E 'ERROR|runtime error' "$T_TMP/work/err" | head -3 | sed 's/^/#   /'
		return 1
	elif [ "$2" = check ] && { [ $rc = 2 ] || [ $rc = 3 ]; }; then
		: # check's report of corruptions or leaks, on stdout: a defined answer
	elif [ $rc != 0 ] && ! head -n 1 "$T_TMP/work/err" | grep -q '^imgblk: '; then
		echo "# $d: exit $rc without an 'imgblk:' line: ${*:2}"; head -3 "$T_TMP/work/err" | sed 's/^/#   /'
		return 1
	fi
	LAST_RC=$rc
	return 0
}

# hostile DESC FMT IMG [SIZE_TO_READ]: every verb on a copy of IMG.
hostile() {
	local d=$1 fmt=$2 img=$3 len=${4:-64k} w bad=0 before after
	rm -rf "$T_TMP/work"
	mkdir -p "$T_TMP/work"
	# The copy stays beside the original, so relative backing names resolve alike.
	w=$(dirname "$img")/.w-$(basename "$img")
	cp --sparse=always "$img" "$w"
	before=$(sums "$w")
	verb "$d" "$IMGBLK" info "$w" || bad=1
	verb "$d" "$IMGBLK" check "$w" || bad=1
	verb "$d" "$IMGBLK" map "$w" || bad=1
	verb "$d" "$IMGBLK" io -r -f "$fmt" -c "read 0 $len" "$w" || bad=1
	verb "$d" "$IMGBLK" convert -f "$fmt" -O raw "$w" "$T_TMP/work/out.raw" || bad=1
	rm -f "$T_TMP/work/out.raw"
	verb "$d" "$IMGBLK" check -r all "$w" || bad=1
	# Last: an in-place write through an entry pointing 1 TiB out grows
	# the file to 1 TiB, as in QEMU, and a repair of that takes minutes.
	verb "$d" "$IMGBLK" io -f "$fmt" -c "write -P 0x33 0 8k" -c "read -P 0x33 0 8k" \
		-c "write -z 64k 64k" -c flush "$w" || bad=1
	after=$(sums "$w")
	if [ "$before" != "$after" ]; then
		echo "# $d: a file other than the image changed:"
		diff <(echo "$before") <(echo "$after") | head -5 | sed 's/^/#   /'
		bad=1
	fi
	rm -f "$w"
	if [ $bad = 0 ]; then ok "$d"; else not_ok "$d"; fi
}

# expect DESC RC_WANT REGEX CMD...: CMD exits RC_WANT (0, or non-zero "!"),
# its stderr matches REGEX (if not empty), with verb()'s safety rules.
expect() {
	local d=$1 want=$2 re=$3
	shift 3
	rm -rf "$T_TMP/work"; mkdir -p "$T_TMP/work"
	if ! verb "$d" "$@"; then not_ok "$d"; return; fi
	if [ "$want" = "!" ] && [ "$LAST_RC" = 0 ]; then
		not_ok "$d"; echo "# succeeded but should have failed: ${*}"; return
	fi
	if [ "$want" = 0 ] && [ "$LAST_RC" != 0 ]; then
		not_ok "$d"; echo "# failed: $*"; sed 's/^/#   /' "$T_TMP/work/err" | head -3; return
	fi
	if [ -n "$re" ] && ! grep -qiE "$re" "$T_TMP/work/err"; then
		not_ok "$d"; echo "# stderr does not match /$re/:"; sed 's/^/#   /' "$T_TMP/work/err" | head -3
		return
	fi
	ok "$d"
}

# ------------------------------------------------------------------ qcow2
Q=$T_TMP/q
mkdir -p "$Q"
qnew() {	# qnew NAME [create -o]: 4 KiB clusters, 4 MiB, data at 0 and 1 MiB
	local f=$Q/$1.qcow2
	qemu-img create -q -f qcow2 -o cluster_size=4096${2:+,$2} "$f" 4M &&
	qemu-io -f qcow2 -c "write -P 0x42 0 64k" -c "write -P 0x43 1M 8k" "$f" > /dev/null
	echo "$f"
}
l1of() { peek "$1" 40 '>Q'; }
l2of() { echo $(( $(peek "$1" "$(l1of "$1")" '>Q') & M56 )); }
rtof() { peek "$1" 48 '>Q'; }
rbof() { echo $(( $(peek "$1" "$(rtof "$1")" '>Q') & M56 )); }
COPIED=$(( 1 << 63 ))

f=$(qnew size_huge); poke "$f" 24 '>Q' 0xffffffffffffff00
hostile "qcow2: virtual size 2^64 - 256" qcow2 "$f"
f=$(qnew size_huge_l1); poke "$f" 24 '>Q' $((1 << 56)); poke "$f" 36 '>I' 0x7fffffff
hostile "qcow2: 2^56-byte disk with a 2^31-entry L1 past the end" qcow2 "$f"
f=$(qnew l1_size_huge); poke "$f" 36 '>I' 0xffffffff
hostile "qcow2: l1_size 2^32 - 1" qcow2 "$f"
f=$(qnew rt_huge); poke "$f" 56 '>I' 0xffffffff
hostile "qcow2: refcount table of 2^32 - 1 clusters" qcow2 "$f"
f=$(qnew hdr_len_huge); poke "$f" 100 '>I' 0x7ffffff8
hostile "qcow2: header_length 2 GiB" qcow2 "$f"
f=$(qnew ext_len_huge); poke "$f" 112 '>I' 0xe2792aca; poke "$f" 116 '>I' 0xfffffff0
hostile "qcow2: header extension of 4 GiB" qcow2 "$f"
f=$(qnew bname_huge); poke "$f" 8 '>Q' 0x1000; poke "$f" 16 '>I' 0xffffffff
hostile "qcow2: backing name of 4 GiB" qcow2 "$f"
f=$(qnew bname_eof); poke "$f" 8 '>Q' 0x7ffffffffff0; poke "$f" 16 '>I' 64
hostile "qcow2: backing name past the end of the file" qcow2 "$f"
f=$(qnew snap_huge); poke "$f" 60 '>I' 0xffffffff; poke "$f" 64 '>Q' 0x1000
hostile "qcow2: 2^32 - 1 snapshots in a table over the L1" qcow2 "$f"
f=$(qnew snap_eof); poke "$f" 60 '>I' 2; poke "$f" 64 '>Q' 0x10000000000
hostile "qcow2: snapshot table past the end of the file" qcow2 "$f"

f=$(qnew l1_eof); poke "$f" "$(l1of "$f")" '>Q' $((COPIED | (1 << 40)))
hostile "qcow2: L1 entry past the end of the file" qcow2 "$f"
f=$(qnew l1_self); l1=$(l1of "$f"); poke "$f" "$l1" '>Q' $((COPIED | l1))
hostile "qcow2: L1 entry pointing at the L1 table itself" qcow2 "$f"
f=$(qnew l1_rt); poke "$f" "$(l1of "$f")" '>Q' $((COPIED | $(rtof "$f")))
hostile "qcow2: L1 entry pointing at the refcount table" qcow2 "$f"
f=$(qnew l1_unaligned); poke "$f" "$(l1of "$f")" '>Q' $((COPIED | ($(l2of "$f") + 512)))
hostile "qcow2: L1 entry not cluster aligned" qcow2 "$f"
f=$(qnew l2_eof); poke "$f" "$(l2of "$f")" '>Q' $((COPIED | (1 << 40)))
hostile "qcow2: L2 entry past the end of the file" qcow2 "$f"
f=$(qnew l2_hdr); poke "$f" "$(l2of "$f")" '>Q' $((COPIED | 4096)); poke "$f" 48 '>Q' 0x1000
hostile "qcow2: L2 entry pointing at a metadata cluster (the refcount table)" qcow2 "$f"
f=$(qnew l2_l1); poke "$f" "$(l2of "$f")" '>Q' $((COPIED | $(l1of "$f")))
hostile "qcow2: L2 entry pointing at the L1 table" qcow2 "$f"
f=$(qnew l2_self); l2=$(l2of "$f"); poke "$f" "$l2" '>Q' $((COPIED | l2))
hostile "qcow2: L2 entry pointing at its own L2 table" qcow2 "$f"
f=$(qnew l2_dup); l2=$(l2of "$f"); d=$(peek "$f" "$l2" '>Q')
for i in 1 2 3 4 5 6 7; do poke "$f" $((l2 + 8 * i)) '>Q' "$d"; done
hostile "qcow2: eight L2 entries sharing one COPIED cluster" qcow2 "$f"

f=$(qnew rt_loop); rt=$(rtof "$f"); poke "$f" "$rt" '>Q' "$rt"
hostile "qcow2: refcount table entry pointing at the refcount table" qcow2 "$f"
f=$(qnew rb_hdr); poke "$f" "$(rtof "$f")" '>Q' 0
hostile "qcow2: refcount block of the metadata missing (all free)" qcow2 "$f"
f=$(qnew rb_zero); rb=$(rbof "$f"); dd if=/dev/zero of="$f" bs=1 seek="$rb" count=64 conv=notrunc status=none
hostile "qcow2: header, L1 and refcount clusters with refcount 0" qcow2 "$f"
f=$(qnew rb_max); rb=$(rbof "$f")
for i in 0 1 2 3 4 5 6 7 8 9; do poke "$f" $((rb + 2 * i)) '>H' 0xffff; done
hostile "qcow2: refcounts at 0xffff (16-bit maximum)" qcow2 "$f"
expect "qcow2: snapshot of clusters at refcount 0xffff fails, no wrap" ! "refcount|overflow|too many|range" \
	"$IMGBLK" snapshot -c s1 "$f"
f=$(qnew rc1 refcount_bits=1)
expect "qcow2: snapshot with 1-bit refcounts fails, no wrap" ! "refcount|overflow|too many|range|bits" \
	"$IMGBLK" snapshot -c s1 "$f"
qemu-img check -q "$f" > /dev/null 2>&1
rc=$?
if [ $rc = 0 ] || [ $rc = 3 ]; then ok "qcow2: ... and leaves the image without corruption"
else not_ok "qcow2: ... and leaves the image without corruption (qemu-img check: $rc)"; fi

# Compressed clusters: an image made by convert -c, then its descriptors broken.
qemu-img create -q -f raw "$Q/plain.raw" 1M
qemu-io -f raw -c "write -P 0x61 0 1M" "$Q/plain.raw" > /dev/null
qemu-img convert -c -f raw -O qcow2 -o cluster_size=4096 "$Q/plain.raw" "$Q/comp.qcow2"
X=$((62 - (12 - 8)))	# 4 KiB clusters: bits 0..X-1 offset, then 4 bits of sectors
cdesc() { echo $(( (1 << 62) | ($2 << X) | $1 )); }	# cdesc HOSTOFF EXTRA_SECTORS
f=$Q/c_eof.qcow2; cp "$Q/comp.qcow2" "$f"; l2=$(l2of "$f")
poke "$f" "$l2" '>Q' "$(cdesc $(( $(stat -c %s "$f") - 100 )) 15)"
hostile "qcow2: compressed data running past the end of the file" qcow2 "$f"
f=$Q/c_far.qcow2; cp "$Q/comp.qcow2" "$f"; l2=$(l2of "$f")
poke "$f" "$l2" '>Q' "$(cdesc $(( (1 << X) - 512 )) 15)"
hostile "qcow2: compressed descriptor at the top of the offset range" qcow2 "$f"
f=$Q/c_hdr.qcow2; cp "$Q/comp.qcow2" "$f"; l2=$(l2of "$f")
poke "$f" "$l2" '>Q' "$(cdesc 0 15)"
hostile "qcow2: compressed descriptor over the header (garbage deflate)" qcow2 "$f"
f=$Q/c_zstd.qcow2; cp "$Q/comp.qcow2" "$f"
poke "$f" 72 '>Q' 8; poke "$f" 104 '>B' 1
hostile "qcow2: deflate data declared zstd" qcow2 "$f"
expect "qcow2: compressed past EOF reads fail with a message" ! "" \
	"$IMGBLK" io -r -f qcow2 -c "read 0 4k" "$Q/c_eof.qcow2"

# ------------------------------------------------------------------ QED
D=$T_TMP/qed
mkdir -p "$D"
dnew() {	# dnew NAME: 4 KiB clusters, table_size 2, 8 MiB, data at 0 and 4 MiB
	local f=$D/$1.qed
	qemu-img create -q -f qed -o cluster_size=4096,table_size=2 "$f" 8M &&
	qemu-io -f qed -c "write -P 0x42 0 64k" -c "write -P 0x43 4M 8k" "$f" > /dev/null
	echo "$f"
}
dl1() { peek "$1" 40 '<Q'; }
dl2() { peek "$1" "$(dl1 "$1")" '<Q'; }

f=$(dnew size_huge); poke "$f" 48 '<Q' 0xfffffffffffffe00
hostile "qed: image size 2^64 - 512" qed "$f"
f=$(dnew cs_huge); poke "$f" 4 '<I' 0x80000000
hostile "qed: cluster size 2 GiB" qed "$f"
f=$(dnew ts_huge); poke "$f" 8 '<I' 0x80000000
hostile "qed: table size 2^31 clusters" qed "$f"
f=$(dnew hs_huge); poke "$f" 12 '<I' 0xffffffff
hostile "qed: header size 2^32 - 1 clusters" qed "$f"
f=$(dnew l1_eof); poke "$f" 40 '<Q' $((1 << 40))
hostile "qed: L1 table past the end of the file" qed "$f"
f=$(dnew l1_hdr); poke "$f" 40 '<Q' 0
hostile "qed: L1 table over the header" qed "$f"
f=$(dnew l1e_eof); poke "$f" "$(dl1 "$f")" '<Q' $((1 << 40))
hostile "qed: L1 entry past the end of the file" qed "$f"
f=$(dnew l1e_self); l1=$(dl1 "$f"); poke "$f" "$l1" '<Q' "$l1"
hostile "qed: L1 entry pointing at the L1 table (L2 = L1)" qed "$f"
f=$(dnew l2e_hdr); poke "$f" "$(dl2 "$f")" '<Q' 4096; poke "$f" 12 '<I' 2
hostile "qed: L2 entry inside a 2-cluster header" qed "$f"
f=$(dnew l2e_eof); poke "$f" "$(dl2 "$f")" '<Q' $((1 << 40))
hostile "qed: L2 entry past the end of the file" qed "$f"
f=$(dnew l2e_unal); l2=$(dl2 "$f"); poke "$f" "$l2" '<Q' $(( $(peek "$f" "$l2" '<Q') + 512 ))
hostile "qed: L2 entry not cluster aligned" qed "$f"
f=$(dnew l2e_dup); l2=$(dl2 "$f"); d=$(peek "$f" "$l2" '<Q'); poke "$f" $((l2 + 8)) '<Q' "$d"
poke "$f" 16 '<Q' 2
hostile "qed: two L2 entries sharing a cluster, need-check set" qed "$f"
expect "qed: duplicate references refuse a read-write open" ! "" \
	"$IMGBLK" io -f qed -c "write 0 4k" "$f"
f=$(dnew bname_eof); poke "$f" 16 '<Q' 1; poke "$f" 56 '<I' 0x7ffffff0; poke "$f" 60 '<I' 64
hostile "qed: backing name past the end of the file" qed "$f"
f=$(dnew bname_huge); poke "$f" 16 '<Q' 1; poke "$f" 56 '<I' 64; poke "$f" 60 '<I' 0xffffffff
hostile "qed: backing name of 4 GiB" qed "$f"

# ------------------------------------------------------------------ chains
C=$T_TMP/chain
mkdir -p "$C"
qemu-img create -q -f raw "$C/base.raw" 1M
qemu-io -f raw -c "write -P 0x77 0 1M" "$C/base.raw" > /dev/null
# chain FMT DEPTH: DEPTH overlays over base.raw; prints the top one.
chain() {
	local fmt=$1 n=$2 i prev=base.raw pf=raw
	for ((i = 1; i <= n; i++)); do
		qemu-img create -q -f "$fmt" -u -b "$prev" -F "$pf" "$C/$fmt-$i.$fmt" 1M
		prev=$fmt-$i.$fmt pf=$fmt
	done
	echo "$C/$prev"
}
top=$(chain qcow2 62)
expect "qcow2: a chain of 63 images reads the bottom" 0 "" \
	"$IMGBLK" io -r -c "read -P 0x77 0 64k" "$top"
top=$(chain qcow2 70)
expect "qcow2: a chain of 71 images is refused" ! "deeper|chain" "$IMGBLK" io -r -c "read 0 4k" "$top"
hostile "qcow2: top of a 71-image chain" qcow2 "$top"
top=$(chain qed 70)
expect "qed: a chain of 71 images is refused" ! "deeper|chain" "$IMGBLK" io -r -c "read 0 4k" "$top"
qemu-img create -q -f qcow2 -u -b self.qcow2 -F qcow2 "$C/self.qcow2" 1M
hostile "qcow2: its own backing file" qcow2 "$C/self.qcow2"
qemu-img create -q -f qed -u -b self.qed -F qed "$C/self.qed" 1M
hostile "qed: its own backing file" qed "$C/self.qed"
ln -s self-link.qcow2 "$C/self-link2.qcow2" 2> /dev/null
qemu-img create -q -f qcow2 -u -b self-link2.qcow2 -F qcow2 "$C/self-link.qcow2" 1M
hostile "qcow2: backing through a symlink to itself" qcow2 "$C/self-link.qcow2"
qemu-img create -q -f qcow2 -u -b b.qed -F qed "$C/a.qcow2" 1M
qemu-img create -q -f qed -u -b a.qcow2 -F qcow2 "$C/b.qed" 1M
hostile "qcow2 -> qed -> qcow2 loop" qcow2 "$C/a.qcow2"
mkfifo "$C/fifo"
qemu-img create -q -f qcow2 -u -b fifo -F raw "$C/fifo.qcow2" 1M
hostile "qcow2: a FIFO as raw backing file" qcow2 "$C/fifo.qcow2"
qemu-img create -q -f qcow2 -u -b fifo -F qcow2 "$C/fifo-q.qcow2" 1M
hostile "qcow2: a FIFO as qcow2 backing file" qcow2 "$C/fifo-q.qcow2"
qemu-img create -q -f qed -u -b fifo -F qed "$C/fifo.qed" 1M
hostile "qed: a FIFO as QED backing file" qed "$C/fifo.qed"
qemu-img create -q -f qcow2 -u -b . -F raw "$C/dir.qcow2" 1M
hostile "qcow2: a directory as backing file" qcow2 "$C/dir.qcow2"
qemu-img create -q -f qcow2 -u -b /dev/zero -F raw "$C/devzero.qcow2" 1M
hostile "qcow2: /dev/zero as raw backing file" qcow2 "$C/devzero.qcow2"
qemu-img create -q -f qed -u -b /nonexistent/x -F raw "$C/missing.qed" 1M
hostile "qed: backing file missing" qed "$C/missing.qed"

# ------------------------------------------------------------------ path tricks
# $T_TMP/p/a/b/o.qcow2 names ../../etc/passwd: a decoy at $T_TMP/p/etc/passwd.
P=$T_TMP/p
mkdir -p "$P/a/b" "$P/etc"
# 1 KiB: a raw file's size is taken in whole sectors (QEMU reads a partial
# last sector too, as zeros past the end; we drop it).
printf 'root:x:0:0:deco\n%.0s' {1..64} > "$P/etc/passwd"
qemu-img create -q -f qcow2 -u -b ../../etc/passwd -F raw "$P/a/b/o.qcow2" 1M
hostile "qcow2: ../../etc/passwd as raw backing (any)" qcow2 "$P/a/b/o.qcow2" 4k
cp "$P/a/b/o.qcow2" "$P/a/b/r.qcow2"
if timeout 20 "$IMGBLK" convert -O raw "$P/a/b/r.qcow2" "$P/got.raw" 2> /dev/null &&
   cmp -s -n "$(stat -c %s "$P/etc/passwd")" "$P/got.raw" "$P/etc/passwd"; then
	ok "qcow2: ../../etc/passwd backing reads the file it names"
else
	not_ok "qcow2: ../../etc/passwd backing reads the file it names"
fi
expect "qcow2: ../../etc/passwd refused with --backing=same-dir" ! "outside|same-dir" \
	"$IMGBLK" io --backing=same-dir -c "read 0 4k" "$P/a/b/o.qcow2"
expect "qcow2: ../../etc/passwd refused with --backing=none" ! "none" \
	"$IMGBLK" io --backing=none -c "read 0 4k" "$P/a/b/o.qcow2"
qemu-img create -q -f qcow2 -u -b /etc/passwd -F raw "$P/abs.qcow2" 1M
hostile "qcow2: /etc/passwd as raw backing: read, written over, never changed" qcow2 "$P/abs.qcow2" 4k
expect "qcow2: /etc/passwd refused with --backing=same-dir" ! "outside|same-dir" \
	"$IMGBLK" io --backing=same-dir -c "read 0 4k" "$P/abs.qcow2"
qemu-img create -q -f qed -u -b ../../etc/passwd -F raw "$P/a/b/o.qed" 1M
hostile "qed: ../../etc/passwd as raw backing (any)" qed "$P/a/b/o.qed" 4k
expect "qed: ../../etc/passwd refused with --backing=same-dir" ! "outside|same-dir" \
	"$IMGBLK" io --backing=same-dir -c "read 0 4k" "$P/a/b/o.qed"
# A symlink in the image's own directory that leads out of it.
ln -s ../../etc/passwd "$P/a/b/innocent.raw"
qemu-img create -q -f qcow2 -u -b innocent.raw -F raw "$P/a/b/link.qcow2" 1M
expect "qcow2: same-dir symlink leading out refused with --backing=same-dir" ! "outside|same-dir" \
	"$IMGBLK" io --backing=same-dir -c "read 0 4k" "$P/a/b/link.qcow2"
qemu-img create -q -f raw "$P/a/b/ok.raw" 1M
qemu-img create -q -f qcow2 -u -b ok.raw -F raw "$P/a/b/ok.qcow2" 1M
expect "qcow2: a backing file beside the image is fine with --backing=same-dir" 0 "" \
	"$IMGBLK" io --backing=same-dir -c "read -P 0 0 4k" "$P/a/b/ok.qcow2"
# The policy holds for the whole chain: a same-dir backing whose own backing leaves.
qemu-img create -q -f qcow2 -u -b link.qcow2 -F qcow2 "$P/a/b/top.qcow2" 1M
expect "qcow2: a chain leaving the directory two levels down is refused" ! "outside|same-dir" \
	"$IMGBLK" io --backing=same-dir -c "read 0 4k" "$P/a/b/top.qcow2"

echo "# $RUNS imgblk runs on $T_NUM cases"
done_testing
