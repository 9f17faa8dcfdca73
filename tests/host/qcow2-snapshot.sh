#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-snapshot.sh - internal snapshots against QEMU, both directions.
#
# QEMU -> imgblk: qemu-img takes snapshots between qemu-io writes;
#   imgblk snapshot -l prints qemu-img's table byte for byte, imgblk
#   convert -l snapshot.name=S equals qemu-img's for every snapshot,
#   imgblk check is clean.  imgblk then writes into the shared clusters
#   and L2 tables: qemu-img check is clean, the result equals qemu-io
#   doing the same on a copy, and the snapshots are untouched.
# imgblk -> QEMU: imgblk takes, applies and deletes snapshots between
#   writes mirrored on raw shadows; after each step qemu-img check is
#   clean (no leaks) and QEMU reads the current state and every snapshot
#   as the shadows hold them.
# Large L1: 512-byte clusters at 1G, with 16- and 64-bit refcounts: the
#   L1 copies of create and apply are longer than a refcount block covers.
# Random: seeded sequences of writes, zero writes, discards, snapshot
#   create/apply/delete, each snapshot mirrored on its own shadow.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io cmp od

SIZE=8M
OPS1=("write -P 0x11 0 1M" "write -P 0x12 3M 70k" "write -P 0x13 7M 1M")
OPS2=("write -P 0x21 512k 1M" "write -z 3M 64k" "write -P 0x22 5M 3k" "discard 7M 512k")
OPS3=("write -P 0x31 100k 5k" "write -P 0x32 7680k 512k" "write -z 0 64k")
OPS4=("write -P 0x41 0 2M" "write -P 0x42 3M 1k" "write -z 7M 1M" "write -P 0x43 6M 4k")

same() {	# same IMG SNAPSHOT|'' RAW: QEMU reads IMG (or its snapshot) as RAW
	if [ -n "$2" ]; then
		qemu-img convert -f qcow2 -O raw -l "snapshot.name=$2" "$1" "$T_TMP/cmp.raw" &&
			cmp "$T_TMP/cmp.raw" "$3"
	else
		qemu-img compare -f qcow2 -F raw "$1" "$3"
	fi
}
shadow() {	# shadow RAW CMD...: the same commands on a raw shadow
	local r=$1
	shift
	qio raw "$r" "$@"
}

# ---- QEMU -> imgblk, and imgblk writing into QEMU's shared clusters ----
qemu_side() {	# qemu_side TAG CREATE_OPTS [BACKING]
	local tag=$1 opts=$2 back=${3:-} img=$T_TMP/q.qcow2 s
	local -a bopt=()

	[ -n "$back" ] && bopt=(-b "$back" -F qcow2)
	rm -f "$img"
	qemu-img create -q -f qcow2 -o "$opts" "${bopt[@]}" "$img" $SIZE || {
		not_ok "$tag: qemu-img create"; return; }
	qio qcow2 "$img" "${OPS1[@]}" && qemu-img snapshot -c s1 "$img" &&
		qio qcow2 "$img" "${OPS2[@]}" && qemu-img snapshot -c s2 "$img" &&
		qio qcow2 "$img" "${OPS3[@]}" || { not_ok "$tag: QEMU setup"; return; }
	qemu-img snapshot -l "$img" > "$T_TMP/list.qemu"
	"$IMGBLK" snapshot -l "$img" > "$T_TMP/list.imgblk" 2>&1
	check "$tag: snapshot -l prints qemu-img's table" cmp "$T_TMP/list.qemu" "$T_TMP/list.imgblk"
	for s in s1 s2 1; do
		qemu-img convert -f qcow2 -O raw -l "snapshot.id=$s" "$img" "$T_TMP/snap.qemu" 2>/dev/null ||
			qemu-img convert -f qcow2 -O raw -l "snapshot.name=$s" "$img" "$T_TMP/snap.qemu"
		"$IMGBLK" convert -f qcow2 -O raw -l "$s" "$img" "$T_TMP/snap.imgblk" > /dev/null 2>&1
		check "$tag: convert -l $s equals qemu-img's" cmp "$T_TMP/snap.qemu" "$T_TMP/snap.imgblk"
		[ $s = s1 ] && cp "$T_TMP/snap.qemu" "$T_TMP/s1.raw"
	done
	check "$tag: imgblk check is clean" "$IMGBLK" check -q "$img"

	# imgblk writes over clusters and L2 tables shared with both snapshots.
	cp "$img" "$T_TMP/q2.qcow2"
	check "$tag: imgblk writes into shared clusters" iio qcow2 "$img" "${OPS4[@]}"
	qio qcow2 "$T_TMP/q2.qcow2" "${OPS4[@]}"
	check "$tag: qemu-img check clean after imgblk's COW" qclean "$img"
	check "$tag: result equals QEMU's" qemu-img compare -f qcow2 -F qcow2 "$img" "$T_TMP/q2.qcow2"
	check "$tag: snapshot s1 untouched" same "$img" s1 "$T_TMP/s1.raw"
	check "$tag: imgblk check agrees" "$IMGBLK" check -q "$img"
	# QEMU reverts the image imgblk wrote: the shared refcounts add up.
	check "$tag: qemu-img snapshot -a s1 on it" qemu-img snapshot -a s1 "$img"
	check "$tag: it reads as s1" same "$img" "" "$T_TMP/s1.raw"
	check "$tag: clean after QEMU's revert" qclean "$img"
}

qemu_side "512 B clusters" cluster_size=512
qemu_side "4 KiB clusters" cluster_size=4k
qemu_side "64 KiB clusters" cluster_size=64k
qemu_side "compat 0.10" compat=0.10
qemu_side "refcount_bits=64" refcount_bits=64
qemu-img create -q -f qcow2 "$T_TMP/base.qcow2" 6M
qio qcow2 "$T_TMP/base.qcow2" "write -P 0xba 0 6M"
qemu_side "over a backing file" cluster_size=4k "$T_TMP/base.qcow2"

# ---- imgblk -> QEMU ----
imgblk_side() {	# imgblk_side TAG CREATE_OPTS
	local tag=$1 opts=$2 img=$T_TMP/i.qcow2 r=$T_TMP/cur.raw

	rm -f "$img" "$r"
	"$IMGBLK" create -q -f qcow2 -o "$opts" "$img" $SIZE || {
		not_ok "$tag: imgblk create"; return; }
	truncate -s $SIZE "$r"
	iio qcow2 "$img" "${OPS1[@]}" && shadow "$r" "${OPS1[@]}"
	check "$tag: imgblk snapshot -c s1" "$IMGBLK" snapshot -c s1 "$img"
	cp "$r" "$T_TMP/i.s1"
	check "$tag: clean after create" qclean "$img"
	iio qcow2 "$img" "${OPS2[@]}" && shadow "$r" "${OPS2[@]//discard/write -z}"
	check "$tag: imgblk snapshot -c s2" "$IMGBLK" snapshot -c s2 "$img"
	cp "$r" "$T_TMP/i.s2"
	iio qcow2 "$img" "${OPS3[@]}" && shadow "$r" "${OPS3[@]}"
	check "$tag: clean after writes over two snapshots" qclean "$img"
	check "$tag: QEMU reads the current state" same "$img" "" "$r"
	check "$tag: QEMU reads s1" same "$img" s1 "$T_TMP/i.s1"
	check "$tag: QEMU reads s2" same "$img" s2 "$T_TMP/i.s2"
	qemu-img snapshot -l "$img" | awk 'NR > 2 { print $1, $2 }' > "$T_TMP/ids"
	check "$tag: qemu-img lists ids 1 2, names s1 s2" \
		test "$(tr '\n' ' ' < "$T_TMP/ids")" = "1 s1 2 s2 "
	check "$tag: imgblk snapshot -a s1" "$IMGBLK" snapshot -a s1 "$img"
	check "$tag: clean after apply" qclean "$img"
	check "$tag: reads as s1 after apply" same "$img" "" "$T_TMP/i.s1"
	cp "$T_TMP/i.s1" "$r"
	iio qcow2 "$img" "${OPS4[@]}" && shadow "$r" "${OPS4[@]}"
	check "$tag: writes after apply: clean" qclean "$img"
	check "$tag: writes after apply: content" same "$img" "" "$r"
	check "$tag: s1 unchanged by them" same "$img" s1 "$T_TMP/i.s1"
	check "$tag: imgblk snapshot -d s1" "$IMGBLK" snapshot -d s1 "$img"
	check "$tag: clean after delete" qclean "$img"
	check "$tag: s2 survives the delete" same "$img" s2 "$T_TMP/i.s2"
	check "$tag: current state survives the delete" same "$img" "" "$r"
	check "$tag: imgblk snapshot -d s2" "$IMGBLK" snapshot -d s2 "$img"
	check "$tag: clean with no snapshots left" qclean "$img"
	check "$tag: snapshot -l prints nothing then" test -z "$("$IMGBLK" snapshot -l "$img")"
	# COPIED is back wherever the refcount is 1: in-place writes again.
	check "$tag: QEMU finds no COPIED errors" qemu-img check -f qcow2 "$img"
	check "$tag: imgblk writes after all deletes" iio qcow2 "$img" "write -P 0x51 1M 64k"
	shadow "$r" "write -P 0x51 1M 64k"
	check "$tag: final content" same "$img" "" "$r"
	check "$tag: final check" qclean "$img"
}

imgblk_side "imgblk 4 KiB clusters" cluster_size=4k
imgblk_side "imgblk 64 KiB clusters" cluster_size=64k
imgblk_side "imgblk 512 B clusters" cluster_size=512
imgblk_side "imgblk compat 0.10" compat=0.10

# ---- errors, as qemu-img's ----
"$IMGBLK" create -q -f qcow2 "$T_TMP/e.qcow2" 1M
"$IMGBLK" snapshot -c x "$T_TMP/e.qcow2"
check_fails --status 1 "delete of a missing snapshot fails" "$IMGBLK" snapshot -d nosuch "$T_TMP/e.qcow2"
check_fails --status 1 "apply of a missing snapshot fails" "$IMGBLK" snapshot -a nosuch "$T_TMP/e.qcow2"
check_fails --status 1 "delete goes by name, not id" "$IMGBLK" snapshot -d 1 "$T_TMP/e.qcow2"
check "apply goes by id too" "$IMGBLK" snapshot -a 1 "$T_TMP/e.qcow2"
check_fails --status 1 "convert -l of a missing snapshot fails" \
	"$IMGBLK" convert -O raw -l snapshot.name=nosuch "$T_TMP/e.qcow2" "$T_TMP/e.raw"
check "duplicate names are allowed, as in qemu-img" "$IMGBLK" snapshot -c x "$T_TMP/e.qcow2"
check "two snapshots named x" test "$("$IMGBLK" snapshot -l "$T_TMP/e.qcow2" | grep -c ' x ')" = 2
truncate -s 1M "$T_TMP/e.raw"
check_fails --status 1 "raw has no snapshots" "$IMGBLK" snapshot -c x -f raw "$T_TMP/e.raw"

# ---- refused for a refcount at its maximum: taken back, nothing leaked ----
# 2-bit refcounts: the second half's data is in the active tree and both
# snapshots (refcount 3), the first half's only in the active tree and b
# (2, like the L2 table).  A third reference to the whole tree is refused
# part-way, after the L2 table and the first half took theirs.
img=$T_TMP/full.qcow2
qemu-img create -q -f qcow2 -o refcount_bits=2,cluster_size=4k "$img" 1M
qio qcow2 "$img" "write -P 0x51 0 1M" && "$IMGBLK" snapshot -c a "$img" &&
	qio qcow2 "$img" "write -P 0x52 0 512k" && "$IMGBLK" snapshot -c b "$img"
check_fails --status 1 "refcount_bits=2: a third snapshot is refused" "$IMGBLK" snapshot -c c "$img"
cp "$T_TMP/check.out" "$T_TMP/refused"
check "the refusal names the overflow" grep -q 'would overflow' "$T_TMP/refused"
check "the refused create leaked nothing (qemu-img check)" qclean "$img"
check "it left the dirty bit clear (no incompatible bit set)" test "$(qcow2_incompat "$img")" = 0
check_fails --status 1 "applying a (shared three times) is refused too" "$IMGBLK" snapshot -a a "$img"
check "the refused apply leaked nothing (qemu-img check)" qclean "$img"
check "it left the dirty bit clear (no incompatible bit set)" test "$(qcow2_incompat "$img")" = 0
check "the data and both snapshots are as they were" sh -c "
	qemu-io -c 'read -P 0x52 0 512k' -c 'read -P 0x51 512k 512k' '$img' | grep -q '^read 524288/' &&
	test \"\$(qemu-img snapshot -l '$img' | grep -c -e ' a ' -e ' b ')\" = 2"
check "once b is deleted, a applies" sh -c "'$IMGBLK' snapshot -d b '$img' && '$IMGBLK' snapshot -a a '$img'"
check "a's data is back" qemu-io -c 'read -P 0x51 0 1M' "$img"
check "clean after the apply" qclean "$img"
# The L2 table copied by a write after two snapshots has refcount 1 and
# COPIED, its data 3: the refused create raised the table to 2 and left
# COPIED set (qemu-img check: 1 error, 3 leaks), before the fix.
img=$T_TMP/cow.qcow2
qemu-img create -q -f qcow2 -o refcount_bits=2,cluster_size=4k "$img" 1M
qio qcow2 "$img" "write -P 0x51 0 1M" && "$IMGBLK" snapshot -c a "$img" &&
	"$IMGBLK" snapshot -c b "$img" && qio qcow2 "$img" "write -P 0x52 0 4k"
check_fails --status 1 "a third snapshot over a copied L2 table is refused" "$IMGBLK" snapshot -c c "$img"
check "its COPIED flags and refcounts are as they were (qemu-img check)" qclean "$img"

# ---- a snapshot taken at another guest size (QEMU resized in between) ----
img=$T_TMP/z.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k "$img" 8M
qio qcow2 "$img" "write -P 0x71 0 8M" && qemu-img snapshot -c small "$img" &&
	qemu-img resize -q "$img" 40M && qio qcow2 "$img" "write -P 0x72 30M 2M" &&
	qemu-img snapshot -c big "$img"
check "apply a smaller snapshot" "$IMGBLK" snapshot -a small "$img"
check "guest size back to 8 MiB" sh -c "qemu-img info '$img' | grep -q '(8388608 bytes)'"
check "its content" qemu-io -c 'read -P 0x71 0 8M' "$img"
check "clean after the shrinking apply" qclean "$img"
check "apply the larger one again" "$IMGBLK" snapshot -a big "$img"
check "guest size 40 MiB, content" qemu-io -c 'read -P 0x72 30M 2M' -c 'read -P 0x71 0 8M' "$img"
check "clean after the growing apply" qclean "$img"

# ---- an L1 copy longer than one refcount block covers ----
# 512-byte clusters at 1G: the L1 takes 512 clusters, while a refcount
# block covers 256 (16-bit refcounts) or 64 (64-bit).  Create and apply
# copy it to the end of the file, the blocks its ranges lack in front.
L1OPS=("write -P 0x61 0 1M" "write -P 0x62 1023M 1M")
for rb in 16 64; do
	tag="512 B clusters, refcount_bits=$rb, 1G"
	img=$T_TMP/l.qcow2 r=$T_TMP/l.raw
	rm -f "$img" "$r"
	qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=$rb "$img" 1G
	truncate -s 1G "$r"
	iio qcow2 "$img" "${L1OPS[@]}" && shadow "$r" "${L1OPS[@]}"
	check "$tag: imgblk snapshot -c" "$IMGBLK" snapshot -c big "$img"
	cp "$r" "$T_TMP/l.s"
	check "$tag: clean after create" qclean "$img"
	iio qcow2 "$img" "write -P 0x63 512k 1M" && shadow "$r" "write -P 0x63 512k 1M"
	check "$tag: clean after writes over the snapshot" qclean "$img"
	check "$tag: QEMU reads the current state" same "$img" "" "$r"
	check "$tag: QEMU reads the snapshot" same "$img" big "$T_TMP/l.s"
	check "$tag: imgblk snapshot -a" "$IMGBLK" snapshot -a big "$img"
	check "$tag: clean after apply" qclean "$img"
	check "$tag: reads as the snapshot after apply" same "$img" "" "$T_TMP/l.s"
	check "$tag: imgblk snapshot -d" "$IMGBLK" snapshot -d big "$img"
	check "$tag: clean after delete" qclean "$img"
done

# ---- randomised sequences mirrored on shadows ----
random_run() {	# random_run SEED CLUSTER_SIZE STEPS
	local seed=$1 cs=$2 steps=$3 img=$T_TMP/r.qcow2 r=$T_TMP/r.raw i op off len p
	local -a snaps=()
	local nsnap=0 bad=0 csb

	RANDOM=$seed
	csb=$(numfmt --from=iec "${cs^^}")
	rm -f "$img" "$r" "$T_TMP"/r.snap.*
	"$IMGBLK" create -q -f qcow2 -o cluster_size=$cs "$img" 4M
	truncate -s 4M "$r"
	for ((i = 0; i < steps; i++)); do
		op=$((RANDOM % 10))
		off=$(((RANDOM % 8192) * 512))
		len=$(((RANDOM % 256 + 1) * 512))
		[ $((off + len)) -gt 4194304 ] && len=$((4194304 - off))
		p=$((RANDOM % 255 + 1))
		case $op in
		0|1|2|3)
			iio qcow2 "$img" "write -P $p $off $len" && shadow "$r" "write -P $p $off $len" ||
				{ echo "# step $i: write $off $len failed"; bad=1; break; } ;;
		4)
			iio qcow2 "$img" "write -z $off $len" && shadow "$r" "write -z $off $len" ||
				{ echo "# step $i: zero failed"; bad=1; break; } ;;
		5)	# whole clusters: discarded clusters of a v3 image read as zeros
			off=$((off / csb * csb)); len=$(((len + csb - 1) / csb * csb))
			[ $((off + len)) -gt 4194304 ] && len=$((4194304 - off))
			iio qcow2 "$img" "discard $off $len" && shadow "$r" "write -z $off $len" ||
				{ echo "# step $i: discard failed"; bad=1; break; } ;;
		6|7)
			nsnap=$((nsnap + 1))
			"$IMGBLK" snapshot -c "r$nsnap" "$img" > "$T_TMP/out" 2>&1 ||
				{ echo "# step $i: create r$nsnap failed"; bad=1; break; }
			cp "$r" "$T_TMP/r.snap.r$nsnap"
			snaps+=("r$nsnap") ;;
		8)
			[ ${#snaps[@]} = 0 ] && continue
			p=${snaps[$((RANDOM % ${#snaps[@]}))]}
			"$IMGBLK" snapshot -a "$p" "$img" > "$T_TMP/out" 2>&1 ||
				{ echo "# step $i: apply $p failed"; bad=1; break; }
			cp "$T_TMP/r.snap.$p" "$r" ;;
		9)
			[ ${#snaps[@]} = 0 ] && continue
			p=$((RANDOM % ${#snaps[@]}))
			"$IMGBLK" snapshot -d "${snaps[$p]}" "$img" > "$T_TMP/out" 2>&1 ||
				{ echo "# step $i: delete ${snaps[$p]} failed"; bad=1; break; }
			rm -f "$T_TMP/r.snap.${snaps[$p]}"
			snaps=("${snaps[@]:0:$p}" "${snaps[@]:$((p + 1))}") ;;
		esac
		if ((i % ${CHECK_EVERY:-8} == ${CHECK_EVERY:-8} - 1)) && ! { qclean "$img" && same "$img" "" "$r"; } > "$T_TMP/out" 2>&1; then
			echo "# step $i (op $op $off $len): check or compare failed"; diag_file "$T_TMP/out"; bad=1; break
		fi
	done
	if [ $bad = 0 ]; then ok "seed $seed, $cs clusters: $steps steps ran"; else
		not_ok "seed $seed, $cs clusters: $steps steps ran"; return; fi
	check "seed $seed: qemu-img check clean" qclean "$img"
	check "seed $seed: current state equals the shadow" same "$img" "" "$r"
	for p in "${snaps[@]}"; do
		same "$img" "$p" "$T_TMP/r.snap.$p" > "$T_TMP/out" 2>&1 || { bad=1; echo "# $p differs"; }
	done
	if [ $bad = 0 ]; then ok "seed $seed: ${#snaps[@]} snapshots equal their shadows"; else
		not_ok "seed $seed: snapshots equal their shadows"; fi
}

SEED=${SEED:-$(date +%s)}
echo "# random seed base $SEED (SEED=$SEED to repeat)"
random_run $((SEED)) 4k 60
random_run $((SEED + 1)) 64k 60
random_run $((SEED + 2)) 512 40

done_testing
