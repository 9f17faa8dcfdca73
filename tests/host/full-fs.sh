#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# full-fs.sh - qcow2 and QED images on a filesystem that fills up.
#
# The engines grow an image file 8 MiB ahead of allocation with its blocks
# reserved.  On a nearly full filesystem that reserve may not fit while
# the writes themselves still do: they must go on as far as the space
# allows.  Past that, a write fails with ENOSPC, and the image stays
# consistent (QEMU finds leaks at most, never corruption) with the data
# written before intact.  The filesystem is a 20 MiB tmpfs.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"
FS=$T_TMP/fs
on_exit 'umount "$FS"'

need qemu-img qemu-io
mkdir -p "$FS"
mount -t tmpfs -o size=20m tmpfs "$FS" 2> "$T_TMP/mount.err" ||
	skip_all "cannot mount a tmpfs here: $(head -n 1 "$T_TMP/mount.err")"

# qemu-img check: 0 clean, 3 leaked clusters only; anything else is not.
check_consistent() {	# check_consistent DESCRIPTION FMT IMG
	local rc
	qemu-img check -f "$2" "$3" > "$T_TMP/check.out" 2>&1
	rc=$?
	if [ $rc = 0 ] || [ $rc = 3 ]; then ok "$1 (qemu-img check exit $rc)"; else
		not_ok "$1 (qemu-img check exit $rc)"; diag_file "$T_TMP/check.out"; fi
}

for fmt in qcow2 qed; do
	I=$FS/a.$fmt
	rm -f "$FS"/*
	check "$fmt: create 64M on the 20M filesystem" "$IMGBLK" create -f "$fmt" "$I" 64M
	# The third 8 MiB reserve (to 24 MiB) cannot fit; the data can.
	check "$fmt: 17M of writes fit although the reserve does not" \
		"$IMGBLK" io -f "$fmt" -c "write -P 0x5a 0 17M" "$I"
	check "$fmt: QEMU reads them back" qemu-io -f "$fmt" -c "read -P 0x5a 0 17M" "$I"
	check "$fmt: qemu-img check clean" qemu-img check -f "$fmt" "$I"

	rm -f "$I"
	check "$fmt: create again" "$IMGBLK" create -f "$fmt" "$I" 64M
	check "$fmt: write 8M" "$IMGBLK" io -f "$fmt" -c "write -P 0x6b 0 8M" "$I"
	"$IMGBLK" io -f "$fmt" -c "write -P 0x7c 8M 40M" "$I" > "$T_TMP/io.out" 2>&1
	rc=$?
	if [ $rc != 0 ] && grep -qi "space" "$T_TMP/io.out"; then
		ok "$fmt: 40M more fail with ENOSPC (exit $rc)"
	else
		not_ok "$fmt: 40M more fail with ENOSPC (exit $rc)"
		diag_file "$T_TMP/io.out"
	fi
	check_consistent "$fmt: the image is consistent after the failed writes" "$fmt" "$I"
	check "$fmt: the data written before is intact" \
		qemu-io -f "$fmt" -c "read -P 0x6b 0 8M" "$I"
done

done_testing
