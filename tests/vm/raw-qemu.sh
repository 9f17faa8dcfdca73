#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# raw-qemu.sh - qemu-io as an independent oracle: it sees what dd wrote
# through the device, and dd sees what qemu-io wrote.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-io md5sum

IMG=$T_TMP/disk.raw
truncate -s 16M "$IMG"
add_dev "add raw 16 MiB device" -t raw -f "$IMG" || bail "cannot continue without a device"

# qemu-io of older QEMUs exits 0 even when a command fails, so also look at
# what it printed.
dev_qio() {	# dev_qio CMD: qemu-io on the device without the page cache
	qemu-io -f raw -n "$DEV" -c "$1" > "$T_TMP/qio.out" 2>&1 &&
		! grep -qiE 'fail|error|mismatch' "$T_TMP/qio.out"
}
check_qio() {	# check_qio DESC CMD
	if dev_qio "$2"; then ok "$1"; else not_ok "$1"; diag_file "$T_TMP/qio.out"; fi
}
check_qio_fails() {
	if dev_qio "$2"; then not_ok "$1"; diag_file "$T_TMP/qio.out"; else ok "$1"; fi
}

pattern() {	# pattern BYTE_OCTAL LEN: LEN bytes of one value
	head -c "$2" /dev/zero | tr '\0' "\\$1"
}
pattern 253 1048576 > "$T_TMP/ab.bin"	# 0xab
check "dd writes 1 MiB of 0xab at 0" \
	dd if="$T_TMP/ab.bin" of="$DEV" bs=1M count=1 oflag=direct conv=notrunc
check_qio "qemu-io reads pattern 0xab at 0" "read -P 0xab 0 1M"
check_qio_fails "qemu-io pattern check 0xcd at 0 fails" "read -P 0xcd 0 1M"
check_qio "qemu-io reads zeros after the pattern" "read -P 0 1M 1M"

check_qio "qemu-io writes 1 MiB of 0x5a at 2 MiB" "write -P 0x5a 2M 1M"
pattern 132 1048576 > "$T_TMP/5a.bin"	# 0x5a
want=$(md5sum < "$T_TMP/5a.bin")
got=$(dd if="$DEV" bs=1M skip=2 count=1 iflag=direct 2>/dev/null | md5sum)
if [ "$got" = "$want" ]; then ok "dd reads qemu-io's 0x5a pattern"; else
	not_ok "dd reads qemu-io's 0x5a pattern"; fi
check_qio "qemu-io writes 4k at unaligned-to-64k offset" "write -P 0x11 4100k 4k"
check_qio "qemu-io reads it back" "read -P 0x11 4100k 4k"
if command -v qemu-img > /dev/null; then
	check "qemu-img compare: device equals its file" \
		qemu-img compare -f raw -F raw "$DEV" "$IMG"
fi
del_dev "del device" "$DEV_ID"
done_testing
