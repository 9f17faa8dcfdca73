#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# lock.sh - image locks against QEMU 7.2's, both ways and against imgblk.
#
# 1. For each role (read-write, read-only, -U, raw, a qcow2's backing file,
#    a raw backing file, an external data file), qemu-io and then imgblk io
#    hold the same images open (`sleep` keeps them open), and /proc/locks
#    must show the same lock bytes for both.
# 2. QEMU holds an image (qemu-nbd serving it, qemu-io reading it) while
#    imgblk verbs try it: writers are refused with one exact line, info
#    without -U is refused and works with -U, the backing file of QEMU's
#    overlay is readable but not writable, -U with writing is refused.
# 3. imgblk holds an image while qemu-io and qemu-img try it: refused with
#    QEMU's own messages where QEMU refuses itself.
# 4. imgblk against imgblk: a second writer, convert onto its own source,
#    commit into a base that another process reads.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
# Absolute: the script works in its temporary directory.
IMGBLK=$(cd "$(dirname "$IMGBLK")" && pwd)/$(basename "$IMGBLK")
HOLDER=
. "$(dirname "$0")/tap.sh"
on_exit '[ -n "$HOLDER" ] && kill $HOLDER 2>/dev/null; wait'

need qemu-img qemu-io qemu-nbd

# The lock bytes held on FILE, one line, sorted ("100 101 103 201 203").
# /proc/locks names the file as MAJOR:MINOR:INODE (hex device numbers) and
# merges neighbouring bytes of one holder into a range.
lock_bytes() {
	local dev ino id
	dev=$(stat -c %d "$1")
	ino=$(stat -c %i "$1")
	id=$(printf '%02x:%02x:%d' $(((dev >> 8) & 0xfff)) $(((dev & 0xff) | ((dev >> 12) & 0xfff00))) "$ino")
	awk -v id="$id" '$2 == "OFDLCK" && $6 == id {
		for (b = $7; b <= $8; b++) print b }' /proc/locks | sort -nu | tr '\n' ' ' |
		sed 's/ $//'
}

# hold CMD...: runs CMD in the background as $HOLDER and waits until it
# holds a lock on $HOLD_FILE (the caller sets it) or has exited.
hold() {
	local i
	"$@" > "$T_TMP/holder.out" 2>&1 &
	HOLDER=$!
	for i in $(seq 100); do
		[ -n "$(lock_bytes "$HOLD_FILE")" ] && return 0
		kill -0 $HOLDER 2>/dev/null || break
		sleep 0.1
	done
	echo "# holder did not lock $HOLD_FILE: $*"
	diag_file "$T_TMP/holder.out"
	return 1
}

release() {
	kill $HOLDER 2>/dev/null
	wait $HOLDER 2>/dev/null
	HOLDER=
}

# refused DESCRIPTION MESSAGE CMD...: CMD fails and prints MESSAGE (a
# fixed string) among its lines.
refused() {
	local d=$1 msg=$2
	shift 2
	if "$@" > "$T_TMP/out" 2>&1; then
		not_ok "$d"; echo "# unexpectedly succeeded: $*"
	elif grep -qF -- "$msg" "$T_TMP/out"; then
		ok "$d"
	else
		not_ok "$d"; echo "# expected: $msg"; diag_file "$T_TMP/out"
	fi
}

cd "$T_TMP" || exit 1
qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -c "write -P 0x11 0 4M" base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-img create -q -f raw r.raw 4M
qemu-img create -q -f qcow2 -b r.raw -F raw rtop.qcow2
qemu-img create -q -f qcow2 -o data_file=d.raw d.qcow2 4M

# ---- 1. the same bytes as QEMU, role by role ----

# same_bytes ROLE "FILES" QEMU_IO_ARGS -- IMGBLK_IO_ARGS: the first file is
# the one opened; the bytes of every file must match.
same_bytes() {
	local role=$1 files=$2 f q=() i=()
	shift 2
	while [ "$1" != -- ]; do q+=("$1"); shift; done
	shift
	i=("$@")
	HOLD_FILE=${files%% *}
	declare -A qb
	hold qemu-io "${q[@]}" -c "sleep 20000" || { not_ok "$role: qemu-io holds"; release; return; }
	for f in $files; do qb[$f]=$(lock_bytes "$f"); done
	release
	hold "$IMGBLK" io "${i[@]}" -c "sleep 20000" || { not_ok "$role: imgblk holds"; release; return; }
	for f in $files; do
		local ib
		ib=$(lock_bytes "$f")
		if [ "$ib" = "${qb[$f]}" ]; then ok "$role: $f holds QEMU's bytes ($ib)"
		else not_ok "$role: $f holds QEMU's bytes"; echo "# qemu-io: ${qb[$f]}; imgblk: $ib"; fi
	done
	release
	[ -z "$(lock_bytes "$HOLD_FILE")" ] && ok "$role: no lock left after exit" ||
		not_ok "$role: no lock left after exit"
}

same_bytes "qcow2 read-write" "top.qcow2 base.qcow2" -f qcow2 top.qcow2 -- -f qcow2 top.qcow2
same_bytes "qcow2 read-only" "top.qcow2 base.qcow2" -r -f qcow2 top.qcow2 -- -r -f qcow2 top.qcow2
same_bytes "qcow2 -U" "top.qcow2 base.qcow2" -r -U -f qcow2 top.qcow2 -- -r -U -f qcow2 top.qcow2
same_bytes "raw read-write" "r.raw" -f raw r.raw -- -f raw r.raw
same_bytes "raw read-only" "r.raw" -r -f raw r.raw -- -r -f raw r.raw
same_bytes "raw backing file" "rtop.qcow2 r.raw" -f qcow2 rtop.qcow2 -- -f qcow2 rtop.qcow2
same_bytes "data file read-write" "d.qcow2 d.raw" -f qcow2 d.qcow2 -- -f qcow2 d.qcow2
same_bytes "data file read-only" "d.qcow2 d.raw" -r -f qcow2 d.qcow2 -- -r -f qcow2 d.qcow2

# info holds its locks only for an instant: strace shows them.
setlk_bytes() {	# setlk_bytes CMD...: the bytes CMD F_RDLCKs, sorted
	strace -f -e trace=fcntl "$@" 2>&1 >/dev/null |
		sed -n 's/.*F_OFD_SETLK, {l_type=F_RDLCK, l_whence=SEEK_SET, l_start=\([0-9]*\).*/\1/p' |
		sort -nu | tr '\n' ' ' | sed 's/ $//'
}
if command -v strace > /dev/null; then
	for a in "" "-U"; do
		qb=$(setlk_bytes qemu-img info $a top.qcow2)
		ib=$(setlk_bytes "$IMGBLK" info $a top.qcow2)
		[ "$qb" = "$ib" ] && ok "info $a: QEMU's bytes ($ib)" ||
			{ not_ok "info $a: QEMU's bytes"; echo "# qemu-img: $qb; imgblk: $ib"; }
	done
else
	skip "info: QEMU's bytes" "strace not available"
fi

# ---- 2. QEMU holds, imgblk tries ----

HOLD_FILE=top.qcow2
if hold qemu-nbd -k "$T_TMP/nbd.sock" -f qcow2 top.qcow2; then
	refused "qemu-nbd serves top: imgblk io write refused" \
		'imgblk: top.qcow2: failed to get "write" lock: is another process using the image?' \
		"$IMGBLK" io -f qcow2 -c "write 0 4k" top.qcow2
	refused "qemu-nbd serves top: imgblk io -r refused" \
		'imgblk: top.qcow2: failed to get shared "write" lock: is another process using the image?' \
		"$IMGBLK" io -r -f qcow2 -c "read 0 4k" top.qcow2
	refused "qemu-nbd serves top: imgblk info refused" \
		'imgblk: top.qcow2: failed to get shared "write" lock: is another process using the image?' \
		"$IMGBLK" info top.qcow2
	check "qemu-nbd serves top: imgblk info -U works" "$IMGBLK" info -U top.qcow2
	check "qemu-nbd serves top: imgblk map -U works" "$IMGBLK" map -U top.qcow2
	check "qemu-nbd serves top: imgblk check -U works" "$IMGBLK" check -U top.qcow2
	check "qemu-nbd serves top: imgblk measure -U works" "$IMGBLK" measure -U -O qcow2 top.qcow2
	check "qemu-nbd serves top: imgblk convert -U works" \
		"$IMGBLK" convert -U -O raw top.qcow2 copy.raw
	check "qemu-nbd serves top: imgblk io -r -U works" \
		"$IMGBLK" io -r -U -c "read -P 0x11 0 4k" top.qcow2
	refused "imgblk check -U -r all refused (writes)" \
		'imgblk: top.qcow2: -U/--force-share can only be used with read-only images' \
		"$IMGBLK" check -U -r all top.qcow2
	refused "imgblk snapshot -U -c refused (writes)" \
		'-U/--force-share can only be used with read-only images' \
		"$IMGBLK" snapshot -U -c s1 top.qcow2
	refused "qemu-nbd serves top: imgblk snapshot -c refused" \
		'imgblk: top.qcow2: failed to get "write" lock' \
		"$IMGBLK" snapshot -c s1 top.qcow2
	refused "qemu-nbd serves top: imgblk resize refused" \
		'imgblk: top.qcow2: failed to get "write" lock' \
		"$IMGBLK" resize top.qcow2 8M
	refused "qemu-nbd serves top: imgblk create over it refused" \
		'imgblk: top.qcow2: failed to get "write" lock' \
		"$IMGBLK" create -q -f qcow2 top.qcow2 1M
	check "... and top is still an image" qemu-img info -U top.qcow2
	check "qemu-nbd serves top: imgblk create of an overlay of it works, as qemu-img's" \
		"$IMGBLK" create -q -f qcow2 -b top.qcow2 -F qcow2 over.qcow2
	check "backing file of QEMU's overlay: imgblk info works" "$IMGBLK" info base.qcow2
	check "backing file of QEMU's overlay: imgblk io -r works" \
		"$IMGBLK" io -r -c "read -P 0x11 0 64k" base.qcow2
	check "backing file of QEMU's overlay: imgblk map works" "$IMGBLK" map base.qcow2
	refused "backing file of QEMU's overlay: imgblk io write refused" \
		'imgblk: base.qcow2: failed to get "write" lock: is another process using the image?' \
		"$IMGBLK" io -c "write 0 4k" base.qcow2
	refused "backing file of QEMU's overlay: imgblk commit of top refused" \
		'imgblk: top.qcow2: failed to get "write" lock' "$IMGBLK" commit top.qcow2
else
	not_ok "qemu-nbd holds top.qcow2"
fi
release

HOLD_FILE=top.qcow2
if hold qemu-io -r -f qcow2 -c "sleep 20000" top.qcow2; then
	check "qemu-io -r reads top: imgblk io -r works" \
		"$IMGBLK" io -r -c "read -P 0x11 0 4k" top.qcow2
	check "qemu-io -r reads top: imgblk info works" "$IMGBLK" info top.qcow2
	refused "qemu-io -r reads top: imgblk io write refused" \
		'imgblk: top.qcow2: failed to get "write" lock' \
		"$IMGBLK" io -c "write 0 4k" top.qcow2
fi
release

# Raw writers share a file in QEMU; qemu-nbd refuses resizing to others.
HOLD_FILE=r.raw
if hold qemu-nbd -k "$T_TMP/nbd.sock" -f raw r.raw; then
	check "qemu-nbd serves raw: imgblk io write works, as qemu-io's" \
		"$IMGBLK" io -f raw -c "write 0 4k" r.raw
	refused "qemu-nbd serves raw: imgblk resize refused" \
		'imgblk: r.raw: failed to get "resize" lock' "$IMGBLK" resize -f raw r.raw 8M
fi
release

# ---- 3. imgblk holds, QEMU tries ----

HOLD_FILE=top.qcow2
if hold "$IMGBLK" io -f qcow2 -c "sleep 20000" top.qcow2; then
	refused "imgblk writes top: qemu-io write refused" \
		'Failed to get "write" lock' qemu-io -f qcow2 -c "write 0 4k" top.qcow2
	refused "imgblk writes top: qemu-img info refused" \
		'Failed to get shared "write" lock' qemu-img info top.qcow2
	check "imgblk writes top: qemu-img info -U works" qemu-img info -U top.qcow2
	refused "imgblk writes top: qemu-img snapshot -c refused" \
		'Failed to get "write" lock' qemu-img snapshot -c s1 top.qcow2
	refused "imgblk writes top: qemu-nbd refused" \
		'Failed to get "write" lock' qemu-nbd -k "$T_TMP/nbd2.sock" -f qcow2 top.qcow2
	check "imgblk writes top: qemu-io -r of its backing file works" \
		qemu-io -r -c "read -P 0x11 0 4k" base.qcow2
	refused "imgblk writes top: qemu-io write to its backing file refused" \
		'Failed to get "write" lock' qemu-io -c "write 0 4k" base.qcow2
	refused "imgblk writes top: qemu-img resize of its backing file refused" \
		'Failed to get "write" lock' qemu-img resize base.qcow2 8M

	# ---- 4. imgblk against imgblk ----
	refused "imgblk writes top: a second imgblk io write refused" \
		'imgblk: top.qcow2: failed to get "write" lock: is another process using the image?' \
		"$IMGBLK" io -c "write 0 4k" top.qcow2
	refused "imgblk writes top: imgblk info refused" \
		'imgblk: top.qcow2: failed to get shared "write" lock' "$IMGBLK" info top.qcow2
	check "imgblk writes top: imgblk info -U works" "$IMGBLK" info -U top.qcow2
	check "imgblk writes top: imgblk io -r of the backing file works" \
		"$IMGBLK" io -r -c "read -P 0x11 0 4k" base.qcow2
fi
release

HOLD_FILE=top.qcow2
if hold "$IMGBLK" io -r -U -c "sleep 20000" top.qcow2; then
	check "imgblk io -r -U reads top: qemu-io write works" \
		qemu-io -f qcow2 -c "write -P 0x11 0 4k" top.qcow2
fi
release

HOLD_FILE=base.qcow2
if hold "$IMGBLK" io -r -c "sleep 20000" base.qcow2; then
	check "imgblk io -r reads base: qemu-io -r works" qemu-io -r -c "read 0 4k" base.qcow2
	check "imgblk io -r reads base: a second imgblk reader works" \
		"$IMGBLK" io -r -c "read -P 0x11 0 4k" base.qcow2
	refused "imgblk io -r reads base: imgblk commit into it refused" \
		'imgblk: base.qcow2: failed to get "write" lock' "$IMGBLK" commit -d top.qcow2
fi
release

qemu-img convert -O raw base.qcow2 base.before
refused "imgblk convert onto its own source refused" \
	'imgblk: base.qcow2: failed to get "write" lock' \
	"$IMGBLK" convert -O qcow2 base.qcow2 base.qcow2
check "... and the source is untouched" qemu-img compare -q -F raw base.qcow2 base.before
check "imgblk commit works with nobody else there" "$IMGBLK" commit -q top.qcow2
for f in top.qcow2 base.qcow2 r.raw d.qcow2 d.raw; do
	b=$(lock_bytes $f)
	[ -z "$b" ] && ok "$f: no lock left" || { not_ok "$f: no lock left"; echo "# $b"; }
done

done_testing
