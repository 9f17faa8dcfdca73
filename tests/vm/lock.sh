#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# lock.sh - a device holds its image locked as QEMU would, for its whole
# life: a second add of the image is refused before any device exists,
# qemu-io and imgblk snapshot cannot write it, read-only users share, and
# del leaves no lock behind.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-img qemu-io qemu-nbd stat

D=$T_TMP
# lock_bytes FILE: the OFD lock bytes held on FILE, sorted, on one line.
lock_bytes() {
	_dev=$(stat -c %d "$1")
	_ino=$(stat -c %i "$1")
	_id=$(printf '%02x:%02x:%d' $(((_dev >> 8) & 0xfff)) \
		$(((_dev & 0xff) | ((_dev >> 12) & 0xfff00))) "$_ino")
	awk -v id="$_id" '$2 == "OFDLCK" && $6 == id {
		for (b = $7; b <= $8; b++) print b }' /proc/locks | sort -nu |
		tr '\n' ' ' | sed 's/ $//'
}
# is DESCRIPTION GOT WANT
is() {
	if [ "$2" = "$3" ]; then ok "$1 ($2)"; else
		not_ok "$1"; diag "got '$2', want '$3'"; fi
}
# refused DESCRIPTION MESSAGE CMD...: CMD fails, saying MESSAGE.
refused() {
	_d=$1
	_m=$2
	shift 2
	if "$@" > "$D/out" 2>&1; then
		not_ok "$_d"; diag "succeeded: $*"
	elif grep -qF -- "$_m" "$D/out"; then
		ok "$_d"
	else
		not_ok "$_d"; diag "expected: $_m"; diag_file "$D/out"
	fi
}
ublk_nodes() { ls /dev | grep -c '^ublk[bc]'; }

qemu-img create -q -f qcow2 "$D/base.qcow2" 64M
qemu-io -c 'write -P 0x11 0 64M' "$D/base.qcow2" > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$D/top.qcow2"

add_dev "add top.qcow2" -f "$D/top.qcow2" || bail "no device"
TOP_ID=$DEV_ID
is "the server holds a QEMU writer's locks on top" "$(lock_bytes "$D/top.qcow2")" \
	"100 101 103 201 203"
is "and a backing file's on base" "$(lock_bytes "$D/base.qcow2")" "100 201 203"

nodes=$(ublk_nodes)
refused "a second add of top is refused" \
	'top.qcow2: failed to get "write" lock: is another process using the image?' \
	timeout 60 imgblk add -f "$D/top.qcow2"
is "... and leaves no device node behind" "$(ublk_nodes)" "$nodes"
imgblk list > "$D/list" 2>&1
is "... nor a device in imgblk list" "$(grep -c ublkb "$D/list")" 1
refused "a second add --read-only of top is refused too" \
	'top.qcow2: failed to get shared "write" lock' \
	timeout 60 imgblk add --read-only -f "$D/top.qcow2"
refused "qemu-io write on the served image is refused" \
	'Failed to get "write" lock' qemu-io -c 'write 0 4k' "$D/top.qcow2"
refused "qemu-img info is refused" 'Failed to get shared "write" lock' \
	qemu-img info "$D/top.qcow2"
check "qemu-img info -U works" qemu-img info -U "$D/top.qcow2"
refused "imgblk snapshot -c on the served file is refused" \
	'top.qcow2: failed to get "write" lock' imgblk snapshot -c snapA "$D/top.qcow2"
refused "qemu-io write on its backing file is refused" \
	'Failed to get "write" lock' qemu-io -c 'write 0 4k' "$D/base.qcow2"

# Read-only users share the backing file with the device.
add_dev "add --read-only of the backing file beside the device" \
	--read-only -f "$D/base.qcow2" || bail "no second device"
RO_ID=$DEV_ID
check "the read-only device reads the data" \
	qemu-io -r -f raw -t none -c 'read -P 0x11 0 1M' "/dev/ublkb$RO_ID"
check "qemu-io -r reads the backing file too" qemu-io -r -c 'read -P 0x11 0 1M' "$D/base.qcow2"
add_dev "a second add --read-only of it" --read-only -f "$D/base.qcow2" || bail "no third device"
RO2_ID=$DEV_ID
refused "add of it read-write is refused" 'base.qcow2: failed to get "write" lock' \
	timeout 60 imgblk add -f "$D/base.qcow2"
check "writes through the served top work" \
	qemu-io -f raw -t none -c 'write -P 0x22 0 1M' "/dev/ublkb$TOP_ID"
del_dev "del the read-only devices" "$RO_ID"
del_dev "del the second one" "$RO2_ID"
del_dev "del the top device" "$TOP_ID"
is "no lock left on top after del" "$(lock_bytes "$D/top.qcow2")" ""
is "no lock left on base after del" "$(lock_bytes "$D/base.qcow2")" ""
check "qemu-io writes top now" qemu-io -c 'write -P 0x33 1M 4k' "$D/top.qcow2"
check "top reads what the device wrote" qemu-io -r -c 'read -P 0x22 0 1M' "$D/top.qcow2"
check "qemu-img check clean" qemu-img check "$D/top.qcow2"

# A raw device holds what qemu-nbd holds: nobody may resize its file.
qemu-img create -q -f raw "$D/r.raw" 16M
qemu-nbd -k "$D/nbd.sock" -f raw "$D/r.raw" > /dev/null 2>&1 &
nbd=$!
i=0
while [ -z "$(lock_bytes "$D/r.raw")" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
want=$(lock_bytes "$D/r.raw")
kill $nbd
wait $nbd 2>/dev/null
if add_dev "add a raw file" -t raw -f "$D/r.raw"; then
	is "a raw device holds qemu-nbd's locks" "$(lock_bytes "$D/r.raw")" "$want"
	refused "qemu-img resize of its file is refused" 'Failed to get "resize" lock' \
		qemu-img resize -f raw "$D/r.raw" 32M
	del_dev "del the raw device" "$DEV_ID"
	is "no lock left on the raw file" "$(lock_bytes "$D/r.raw")" ""
fi
done_testing
