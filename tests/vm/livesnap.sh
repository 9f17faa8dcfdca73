#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# livesnap.sh - snapshots of a running device: internal ones (-c, -l,
# -d) on a served qcow2, external ones (--external NEW, qcow2 and QED,
# and over a raw image) that switch the device to NEW while it serves:
# the data before and after reads back, the old top holds a backing
# file's locks (/proc/locks), the state file, list and query follow the
# new top, both images check clean, and each refusal says why in one line.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-img qemu-io stat

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
is() {
	if [ "$2" = "$3" ]; then ok "$1 ($2)"; else
		not_ok "$1"; diag "got '$2', want '$3'"; fi
}
# refused DESCRIPTION MESSAGE CMD...: CMD fails, saying MESSAGE in one line.
refused() {
	_d=$1
	_m=$2
	shift 2
	if "$@" > "$D/out" 2>&1; then
		not_ok "$_d"; diag "succeeded: $*"
	elif grep -qF -- "$_m" "$D/out" && [ "$(wc -l < "$D/out")" -eq 1 ]; then
		ok "$_d"
	else
		not_ok "$_d"; diag "expected one line: $_m"; diag_file "$D/out"
	fi
}
rd() {	# rd PATTERN OFF LEN: the device reads PATTERN there
	qemu-io -r -f raw -t none -c "read -P $1 $2 $3" "$DEV" | grep -q 'read '
}

# --- internal snapshots of a served qcow2 ---
qemu-img create -q -f qcow2 "$D/a.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 4M' "$D/a.qcow2" > /dev/null
add_dev "add a.qcow2" -f "$D/a.qcow2" || bail "no device"
A=$DEV_ID
check "snapshot -n -c s1" imgblk snapshot -n "$A" -c s1
qemu-io -f raw -t none -c 'write -P 0x22 0 2M' "$DEV" > /dev/null
check "snapshot -n -c s2 after a write" imgblk snapshot -n "$A" -c s2
imgblk snapshot -n "$A" -l > "$D/list" 2>&1
is "snapshot -n -l lists both" "$(awk '$2 ~ /^s[12]$/ { print $2 }' "$D/list" | tr '\n' ' ')" "s1 s2 "
refused "a name that exists is refused" "Snapshot with name 's1' already exists on device 'ublkb$A'" \
	imgblk snapshot -n "$A" -c s1
refused "deleting a missing one is refused" "does not exist on device" \
	imgblk snapshot -n "$A" -d nope
refused "-a on a running device is refused" "cannot revert a running device" \
	imgblk snapshot -n "$A" -a s1
check "the device still reads its data" rd 0x22 0 2M
check "and the older data" rd 0x11 2M 2M
check "snapshot -n -d s2" imgblk snapshot -n "$A" -d s2
imgblk snapshot -n "$A" -l > "$D/list" 2>&1
is "s2 is gone" "$(awk '$2 ~ /^s[12]$/ { print $2 }' "$D/list" | tr '\n' ' ')" "s1 "
del_dev "del" "$A"
check "qemu-img check clean after the live snapshots" qemu-img check -q "$D/a.qcow2"
qemu-img convert -l snapshot.name=s1 -O raw "$D/a.qcow2" "$D/s1.raw"
check "s1 holds the data of its moment" \
	qemu-io -r -f raw -c 'read -P 0x11 0 4M' "$D/s1.raw"

# --- external snapshot of a served qcow2 ---
qemu-img create -q -f qcow2 "$D/base.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x33 0 8M' "$D/base.qcow2" > /dev/null
add_dev "add base.qcow2" -f "$D/base.qcow2" || bail "no device"
B=$DEV_ID
is "the top holds a writer's locks" "$(lock_bytes "$D/base.qcow2")" "100 101 103 201 203"
qemu-io -f raw -t none -c 'write -P 0x44 0 1M' "$DEV" > /dev/null
(cd "$D" && imgblk snapshot -n "$B" --external snap1.qcow2) > "$D/out" 2>&1
if [ $? -eq 0 ]; then ok "snapshot --external snap1.qcow2 (relative name)"; else
	not_ok "snapshot --external snap1.qcow2"; diag_file "$D/out"; fi
is "the old top now holds a backing file's locks" "$(lock_bytes "$D/base.qcow2")" "100 201 203"
is "the new top a writer's" "$(lock_bytes "$D/snap1.qcow2")" "100 101 103 201 203"
qemu-img info -U "$D/snap1.qcow2" > "$D/info" 2>&1
is "snap1 names base by its absolute path" \
	"$(sed -n 's/^backing file: //p' "$D/info")" "$D/base.qcow2"
is "with its format" "$(sed -n 's/^backing file format: //p' "$D/info")" "qcow2"
is "the state file names the new top" "$(sed -n 's/^file=//p' "/run/imgblk/$B.state")" \
	"$D/snap1.qcow2"
imgblk list > "$D/list" 2>&1
check "imgblk list shows it" grep -qF "$D/snap1.qcow2" "$D/list"
imgblk query -n "$B" > "$D/query" 2>&1
check "imgblk query shows the chain" grep -qF "$D/base.qcow2" "$D/query"
check "the device reads the data from before" rd 0x44 0 1M
check "... all of it" rd 0x33 1M 7M
qemu-io -f raw -t none -c 'write -P 0x55 1M 1M' "$DEV" > /dev/null
check "a write after the switch reads back" rd 0x55 1M 1M
if qemu-io -c 'write 0 4k' "$D/base.qcow2" > "$D/out" 2>&1; then
	not_ok "qemu-io cannot write the old top"
elif grep -qF 'Failed to get "write" lock' "$D/out"; then
	ok "qemu-io cannot write the old top"
else
	not_ok "qemu-io cannot write the old top"; diag_file "$D/out"
fi
check "qemu-img can read the old top (-U not needed)" \
	qemu-io -r -c 'read -P 0x44 0 1M' "$D/base.qcow2"
refused "NEW that exists is refused" "file exists" \
	imgblk snapshot -n "$B" --external "$D/snap1.qcow2"
refused "a format that cannot be an overlay is refused" "cannot be an overlay" \
	imgblk snapshot -n "$B" --external "$D/x.raw" -f raw
check "a QED overlay on top of that" imgblk snapshot -n "$B" --external "$D/snap2.qed" -f qed
check "reads through two layers" rd 0x55 1M 1M
is "snap1 is now a backing file too" "$(lock_bytes "$D/snap1.qcow2")" "100 201 203"
qemu-io -f raw -t none -c 'write -P 0x66 2M 1M' "$DEV" > /dev/null
del_dev "del" "$B"
is "no lock left on any image" \
	"$(lock_bytes "$D/base.qcow2")$(lock_bytes "$D/snap1.qcow2")$(lock_bytes "$D/snap2.qed")" ""
for f in base.qcow2 snap1.qcow2 snap2.qed; do
	check "qemu-img check $f clean" qemu-img check -q "$D/$f"
done
check "QEMU reads the chain" qemu-io -r -c 'read -P 0x44 0 1M' -c 'read -P 0x55 1M 1M' \
	-c 'read -P 0x66 2M 1M' -c 'read -P 0x33 3M 5M' "$D/snap2.qed"

# --- the device's --backing policy binds the new overlay too ---
mkdir -p "$D/other"
qemu-img create -q -f qcow2 "$D/sd.qcow2" 16M
add_dev "add --backing=same-dir" --backing=same-dir -f "$D/sd.qcow2" || bail "no device"
S=$DEV_ID
refused "an overlay in another directory is refused under same-dir" \
	"and --backing=same-dir forbids it" \
	imgblk snapshot -n "$S" --external "$D/other/sd1.qcow2"
check "one in the same directory is taken" imgblk snapshot -n "$S" --external "$D/sd1.qcow2"
del_dev "del" "$S"
qemu-img create -q -f qcow2 "$D/bn.qcow2" 16M
add_dev "add --backing=none" --backing=none -f "$D/bn.qcow2" || bail "no device"
refused "no external snapshot under --backing=none" "added with --backing=none" \
	imgblk snapshot -n "$DEV_ID" --external "$D/bn1.qcow2"
del_dev "del" "$DEV_ID"

# --- --freeze: finds a filesystem on a partition, says when there is none ---
dd if=/dev/zero of="$D/p.raw" bs=1M count=32 2>/dev/null
# An MBR with one Linux partition from sector 2048 to the end.
printf '\000\000\000\000\203\000\000\000\000\010\000\000\000\370\000\000' |
	dd of="$D/p.raw" bs=1 seek=446 conv=notrunc 2>/dev/null
printf '\125\252' | dd of="$D/p.raw" bs=1 seek=510 conv=notrunc 2>/dev/null
qemu-img convert -O qcow2 "$D/p.raw" "$D/p.qcow2"
add_dev "add a partitioned p.qcow2" -f "$D/p.qcow2" || bail "no device"
P=$DEV_ID
imgblk snapshot -n "$P" --freeze -c nofs > "$D/out" 2>&1
is "--freeze with nothing mounted says so" "$(cat "$D/out")" \
	"imgblk: snapshot: --freeze: no filesystem of /dev/ublkb$P is mounted"
i=0
while [ ! -b "${DEV}p1" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
mkdir -p "$D/pm"
if [ -b "${DEV}p1" ] && mkfs.ext4 -q "${DEV}p1" && mount "${DEV}p1" "$D/pm"; then
	on_exit "umount $D/pm 2>/dev/null"
	echo hello > "$D/pm/f"
	imgblk snapshot -n "$P" --freeze -c onpart > "$D/out" 2>&1
	is "--freeze finds ext4 on ${DEV}p1 (nothing said)" "$?:$(cat "$D/out")" "0:"
	check "thawed after" sh -c "echo more >> '$D/pm/f' && sync"
	umount "$D/pm"
else
	skip "no partition ${DEV}p1 to mount"
fi
del_dev "del" "$P"

# --- external snapshot over a raw device; refusals on raw ---
dd if=/dev/zero of="$D/r.raw" bs=1M count=32 2>/dev/null
add_dev "add r.raw" -t raw -f "$D/r.raw" || bail "no raw device"
R=$DEV_ID
qemu-io -f raw -t none -c 'write -P 0x77 0 1M' "$DEV" > /dev/null
refused "an internal snapshot of raw is refused" "does not support internal snapshots" \
	imgblk snapshot -n "$R" -c s1
check "an external qcow2 snapshot over raw" imgblk snapshot -n "$R" --external "$D/r-snap.qcow2"
is "it records raw as the backing format" \
	"$(qemu-img info -U "$D/r-snap.qcow2" | sed -n 's/^backing file format: //p')" "raw"
check "reads the raw data through the overlay" rd 0x77 0 1M
qemu-io -f raw -t none -c 'write -P 0x78 1M 1M' "$DEV" > /dev/null
del_dev "del" "$R"
check "raw image unchanged after the switch" qemu-io -r -f raw -c 'read -P 0 1M 1M' "$D/r.raw"
check "the overlay holds the new write" qemu-io -r -c 'read -P 0x78 1M 1M' "$D/r-snap.qcow2"
check "qemu-img check r-snap.qcow2 clean" qemu-img check -q "$D/r-snap.qcow2"
done_testing
