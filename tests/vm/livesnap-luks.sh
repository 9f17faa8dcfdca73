#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# livesnap-luks.sh - an external snapshot of an encrypted (LUKS qcow2)
# device added with an unqualified --key-file: the key stays with the
# image it was given for.  The state file records it as IMAGE=FILE, so
# after the snapshot (the image is now the backing file of an unencrypted
# overlay) the device serves both layers, a kill -9 and `recover` open
# the chain with the key for the right image, an active commit can reopen
# the old top read-write to merge into it, and a later add of the overlay
# needs the key named by image (an unqualified one is for the top, which
# is not encrypted).
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-img qemu-io grep

D=$T_TMP
IMG=$D/enc.qcow2
KEY=$D/key
printf 'livesnap luks 7731' > "$KEY"
QOPTS="driver=qcow2,file.filename=$IMG,encrypt.key-secret=k"
state() { sed -n "s/^$1=//p" "/run/imgblk/$ID.state"; }
wait_state() {	# wait_state WORD: imgblk list shows it for the device
	_i=0
	while ! imgblk list -n "$ID" 2>/dev/null | grep -q "$1" && [ $_i -lt 100 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	imgblk list -n "$ID" 2>/dev/null | grep -q "$1"
}

check "an encrypted 64 MiB image" imgblk create -q -f qcow2 --object "secret,id=k,file=$KEY" \
	-o encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=20 "$IMG" 64M
add_dev "add --recoverable with an unqualified --key-file" -f "$IMG" --key-file "$KEY" \
	--recoverable -q 1 || bail "no device"
ID=$DEV_ID
check "the state file records the key for the image it was given for" \
	test "$(state key_files)" = "$IMG=$KEY"
check "a pattern through the device" qemu-io -f raw -n -c "write -P 0x5c 0 1M" "$DEV"

# (a) The old top, now a backing file, keeps serving with its key.
check "external snapshot" imgblk snapshot -n "$ID" --external "$D/new.qcow2"
check "the state file names the overlay" test "$(state file)" = "$D/new.qcow2"
check "the key still names the old top" test "$(state key_files)" = "$IMG=$KEY"
check "the device reads the old top and writes the overlay" qemu-io -f raw -n \
	-c "write -P 0xa1 1M 1M" -c "read -P 0x5c 0 1M" -c "read -P 0xa1 1M 1M" "$DEV"

# (b) kill -9 and recover: the chain new -> enc opens with enc's key.
kill -KILL "$(state pid)"
wait_state QUIESCED || diag "not QUIESCED"
check "recover opens the overlay over the encrypted image" timeout 60 imgblk recover -n "$ID"
wait_state LIVE || diag "not LIVE"
check "the recovered device reads both layers" qemu-io -f raw -n \
	-c "read -P 0x5c 0 1M" -c "read -P 0xa1 1M 1M" "$DEV"
check "the recovered state file keeps the key qualified" test "$(state key_files)" = "$IMG=$KEY"

# An active commit reopens the encrypted image read-write, then pivots to it.
check "active commit into the encrypted image, pivot" \
	timeout 60 imgblk commit -n "$ID" --pivot --wait
check "the device serves the encrypted image again" test "$(state file)" = "$IMG"
check "it reads both patterns" qemu-io -f raw -n -c "read -P 0x5c 0 1M" -c "read -P 0xa1 1M 1M" "$DEV"

# (c) After del, the overlay is added with the key named by image.
check "a second snapshot" imgblk snapshot -n "$ID" --external "$D/new2.qcow2"
check "write into it" qemu-io -f raw -n -c "write -P 0xb7 2M 1M" "$DEV"
del_dev "del" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"
check_fails "add of the overlay with an unqualified key is refused" \
	timeout 60 imgblk add -f "$D/new2.qcow2" --key-file "$KEY"
cp "$T_TMP/check.out" "$D/refused.out"
check "it says how to name the backing file's key" grep -q "$IMG.*IMAGE=FILE" "$D/refused.out"
add_dev "add of the overlay with --key-file IMAGE=FILE" -f "$D/new2.qcow2" --key-file "$IMG=$KEY" ||
	bail "cannot add the overlay"
ID=$DEV_ID
check "it reads all three patterns" qemu-io -f raw -n \
	-c "read -P 0x5c 0 1M" -c "read -P 0xa1 1M 1M" -c "read -P 0xb7 2M 1M" "$DEV"
del_dev "del" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"
check "qemu-img check: the encrypted image is clean" \
	qemu-img check --object "secret,id=k,file=$KEY" --image-opts "$QOPTS"
check "qemu-img check: the overlay is clean" qemu-img check -U \
	--object "secret,id=k,file=$KEY" --image-opts \
	"driver=qcow2,file.filename=$D/new2.qcow2,backing.encrypt.key-secret=k"
done_testing
