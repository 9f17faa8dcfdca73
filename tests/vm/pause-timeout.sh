#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# pause-timeout.sh - an error pause against the kernel's request timeout.
# The 6.12 driver SIGKILLs an unprivileged device's server when one of its
# requests waits past the block layer's timeout (ublk_timeout()), and only
# restarts the timer of a privileged one.  So: an unprivileged device fails
# its held requests before that (two thirds of io_timeout: 20 s by default,
# less when root lowers /sys/block/ublkbN/queue/io_timeout) and runs on
# with its server alive; one resumed in time completes the write; a user's
# pause fails the requests waiting at its gate in time too; a privileged
# device keeps its request held past several timeouts and completes it on
# resume.  The image lives on a small ext4 that is filled, so writes to its
# holes fail with ENOSPC.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd uevent su mkfs.ext4
[ "$(su nobody -s /bin/sh -c 'id -u' 2>/dev/null)" = 65534 ] ||
	skip_all "cannot switch to user nobody in the guest"
load_module loop 2>/dev/null

as() {	# as USER CMD: run a shell command as USER, output in $T_TMP/out, err
	su "$1" -s /bin/sh -c "$2" > "$T_TMP/out" 2> "$T_TMP/err" < /dev/null
}

now() {	# seconds since boot, with hundredths
	cut -d' ' -f1 /proc/uptime
}

since() {	# since T0: whole seconds from T0 to now
	awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d", b - a }'
}

# state USER ID: the state column of device ID in USER's imgblk list;
# pid USER ID: its server's pid.
state() {
	su "$1" -s /bin/sh -c "imgblk list -n $2" 2>/dev/null < /dev/null |
		awk 'NR == 2 { print $5 }'
}
pid() {
	su "$1" -s /bin/sh -c "imgblk list -n $2" 2>/dev/null < /dev/null |
		awk 'NR == 2 { print $6 }'
}

wait_state() {	# wait_state USER ID STATE SECONDS
	_i=0
	while [ "$(state "$1" "$2")" != "$3" ]; do
		[ $_i -ge $(($4 * 5)) ] && return 1
		sleep 0.2
		_i=$((_i + 1))
	done
}

# writer USER NAME SEEK: one 64 KiB direct write at SEEK (in 64 KiB) in
# the background; its status goes to $T_TMP/NAME.rc, $WR is its pid.
writer() {
	rm -f "$T_TMP/$2.rc"
	(su "$1" -s /bin/sh -c "dd if=/dev/zero of=$DEV bs=64k count=1 seek=$3 oflag=direct" \
		> "$T_TMP/$2.err" 2>&1 < /dev/null; echo "$?" > "$T_TMP/$2.rc") &
	WR=$!
	on_exit "kill -KILL $WR"
}

wait_writer() {	# wait_writer SECONDS: until $WR ends; 1 if it did not
	_i=0
	while kill -0 "$WR" 2>/dev/null; do
		[ $_i -ge $(($1 * 5)) ] && return 1
		sleep 0.2
		_i=$((_i + 1))
	done
}

fill() {	# the host filesystem has no free block left
	dd if=/dev/zero of="$HOST/ballast" bs=64k > /dev/null 2>&1
	sync
}

unfill() {
	rm -f "$HOST/ballast"
	sync
}

allow_users

# The host filesystem, without blocks reserved for root: the unprivileged
# server and root's ballast see the same room.
HOST=$T_TMP/host
mkdir -p "$HOST"
chmod 755 "$T_TMP"
check "a 24 MiB host ext4 (no reserved blocks)" mkfs.ext4 -q -F -m 0 "$T_TMP/host.ext4" 24M
check "mount it through a loop device" mount -o loop "$T_TMP/host.ext4" "$HOST"
on_exit "umount $HOST"
chmod 755 "$HOST"
IMG=$HOST/disk.raw
dd if=/dev/zero of="$IMG" bs=1M count=0 seek=64 2>/dev/null
chown nobody "$IMG"

# --- a. unprivileged ---------------------------------------------------
if as nobody "imgblk add -t raw -f $IMG --werror=stop"; then
	DEV=$(head -n 1 "$T_TMP/out")
	ID=${DEV#/dev/ublkb}
	ok "nobody adds $DEV with --werror=stop"
else
	not_ok "nobody adds a device with --werror=stop"
	diag_file "$T_TMP/err"
	bail "no unprivileged device"
fi
on_exit "su nobody -s /bin/sh -c 'imgblk del -a' >/dev/null 2>&1"
TMO=/sys/block/ublkb$ID/queue/io_timeout
if [ "$(cat "$TMO" 2>/dev/null)" = 30000 ]; then ok "io_timeout is 30000 ms"; else
	not_ok "io_timeout is 30000 ms"; diag "io_timeout: $(cat "$TMO" 2>&1)"; fi
if su nobody -s /bin/sh -c "echo 5000 > $TMO" 2>/dev/null; then
	not_ok "the device's owner cannot change io_timeout"
else
	ok "the device's owner cannot change io_timeout"
fi
SRV=$(pid nobody "$ID")
diag "server pid $SRV"
fill
su nobody -s /bin/sh -c "imgblk qmp -n $ID --events" > "$T_TMP/events" 2>&1 < /dev/null &
on_exit "kill $!"
diag "host filesystem: $(df -k "$HOST" | awk 'NR == 2 { print $4 }') kB free"

# a1: held past the hold limit (20 s with the default 30 s timeout).
t0=$(now)
writer nobody a1 0
if wait_state nobody "$ID" PAUSED 10; then ok "a1: the failing write pauses the device"; else
	not_ok "a1: the failing write pauses the device"; diag "state: $(state nobody "$ID")"; fi
as nobody "imgblk query -n $ID"
check "a1: imgblk query says why" grep -qi 'no space left' "$T_TMP/out"
sleep 5
if kill -0 "$WR" 2>/dev/null; then ok "a1: the writer is held, not failed"; else
	not_ok "a1: the writer is held, not failed"; fi
wait_writer 40
el=$(since "$t0")
if [ "$(cat "$T_TMP/a1.rc" 2>/dev/null)" != 0 ] && [ -f "$T_TMP/a1.rc" ]; then
	ok "a1: the writer gets an error after $el s"
else
	not_ok "a1: the writer gets an error"
	diag "status $(cat "$T_TMP/a1.rc" 2>&1), after $el s"
fi
if [ "$el" -ge 18 ] && [ "$el" -le 26 ]; then ok "a1: after 20 s, before the kernel's 30 s"; else
	not_ok "a1: after 20 s, before the kernel's 30 s"; diag "$el s"; fi
diag "$(cat "$T_TMP/a1.err")"
if kill -0 "$SRV" 2>/dev/null; then ok "a1: the server is alive"; else
	not_ok "a1: the server is alive"; fi
if wait_state nobody "$ID" LIVE 3; then ok "a1: the device is LIVE again"; else
	not_ok "a1: the device is LIVE again"; diag "state: $(state nobody "$ID")"; fi
check "a1: it still serves reads" su nobody -s /bin/sh -c \
	"dd if=$DEV of=/dev/null bs=64k count=4 iflag=direct"
check "a1: a RESUME event ends the STOP" grep -q '"RESUME"' "$T_TMP/events"

# a2: resumed within the limit: the write completes.
writer nobody a2 16
if wait_state nobody "$ID" PAUSED 10; then ok "a2: paused again"; else
	not_ok "a2: paused again"; diag "state: $(state nobody "$ID")"; fi
sleep 3
unfill
check "a2: nobody resumes it" su nobody -s /bin/sh -c "imgblk resume -n $ID"
wait_writer 20
if [ "$(cat "$T_TMP/a2.rc" 2>/dev/null)" = 0 ]; then ok "a2: the held write completes"; else
	not_ok "a2: the held write completes"; diag_file "$T_TMP/a2.err"; fi
if [ "$(state nobody "$ID")" = LIVE ]; then ok "a2: LIVE"; else
	not_ok "a2: LIVE"; diag "state: $(state nobody "$ID")"; fi
fill

# a3: root lowers the timeout below the 20 s: the hold limit follows it.
if echo 6000 > "$TMO" 2>/dev/null && [ "$(cat "$TMO")" = 6000 ]; then
	ok "root lowers io_timeout to 6000 ms"
	t0=$(now)
	writer nobody a3 32
	wait_state nobody "$ID" PAUSED 5 || diag "a3: not seen PAUSED"
	wait_writer 30
	el=$(since "$t0")
	if [ -f "$T_TMP/a3.rc" ] && [ "$(cat "$T_TMP/a3.rc")" != 0 ] && [ "$el" -le 6 ]; then
		ok "a3: the writer gets an error within the 6 s ($el s)"
	else
		not_ok "a3: the writer gets an error within the 6 s"
		diag "status $(cat "$T_TMP/a3.rc" 2>&1), after $el s"
	fi
	if kill -0 "$SRV" 2>/dev/null; then ok "a3: the server is alive"; else
		not_ok "a3: the server is alive"; fi
	if wait_state nobody "$ID" LIVE 3; then ok "a3: LIVE again"; else
		not_ok "a3: LIVE again"; diag "state: $(state nobody "$ID")"; fi

	# a4: a user's pause: what waits at its gate fails in time too, and
	# the device stays paused.  The write goes where a2 made room.
	check "a4: nobody pauses the device" su nobody -s /bin/sh -c "imgblk pause -n $ID"
	t0=$(now)
	writer nobody a4 16
	wait_writer 30
	el=$(since "$t0")
	if [ -f "$T_TMP/a4.rc" ] && [ "$(cat "$T_TMP/a4.rc")" != 0 ] && [ "$el" -le 6 ]; then
		ok "a4: the write waiting at the pause fails within the 6 s ($el s)"
	else
		not_ok "a4: the write waiting at the pause fails within the 6 s"
		diag "status $(cat "$T_TMP/a4.rc" 2>&1), after $el s"
	fi
	if kill -0 "$SRV" 2>/dev/null; then ok "a4: the server is alive"; else
		not_ok "a4: the server is alive"; fi
	if [ "$(state nobody "$ID")" = PAUSED ]; then ok "a4: still paused"; else
		not_ok "a4: still paused"; diag "state: $(state nobody "$ID")"; fi
	check "a4: resume" su nobody -s /bin/sh -c "imgblk resume -n $ID"
	check "a4: a write completes after it" su nobody -s /bin/sh -c \
		"dd if=/dev/zero of=$DEV bs=64k count=1 seek=16 oflag=direct"
else
	skip "a3, a4: a lowered io_timeout" "io_timeout is not writable"
fi
grep -q '"STOP"' "$T_TMP/events" && grep -q '"BLOCK_IO_ERROR"' "$T_TMP/events" &&
	ok "STOP and BLOCK_IO_ERROR events" || {
	not_ok "STOP and BLOCK_IO_ERROR events"; diag_file "$T_TMP/events"; }
diag "$(grep -E 'io_timeout|held for|waited' /tmp/imgblk-65534/$ID.log 2>&1)"
check "nobody deletes the device" su nobody -s /bin/sh -c "imgblk del -n $ID"
wait_gone "$DEV" 10

# --- b. privileged ------------------------------------------------------
add_dev "root adds the image with --werror=stop" -t raw -f "$IMG" --werror=stop ||
	bail "no privileged device"
ID=$DEV_ID
TMO=/sys/block/ublkb$ID/queue/io_timeout
SRV=$(pid root "$ID")
if echo 3000 > "$TMO" 2>/dev/null && [ "$(cat "$TMO")" = 3000 ]; then
	ok "b: io_timeout lowered to 3000 ms"
	HOLD=10
else
	skip "b: io_timeout lowered" "not writable: holding past the default 30 s"
	HOLD=36
fi
writer root b 48
if wait_state root "$ID" PAUSED 10; then ok "b: the failing write pauses the device"; else
	not_ok "b: the failing write pauses the device"; diag "state: $(state root "$ID")"; fi
sleep "$HOLD"
if kill -0 "$WR" 2>/dev/null; then ok "b: still held after $HOLD s"; else
	not_ok "b: still held after $HOLD s"; diag "status $(cat "$T_TMP/b.rc")"; fi
if kill -0 "$SRV" 2>/dev/null; then ok "b: the server is alive"; else
	not_ok "b: the server is alive"; fi
if [ "$(state root "$ID")" = PAUSED ]; then ok "b: still PAUSED"; else
	not_ok "b: still PAUSED"; diag "state: $(state root "$ID")"; fi
unfill
check "b: imgblk resume" imgblk resume -n "$ID"
wait_writer 20
if [ "$(cat "$T_TMP/b.rc" 2>/dev/null)" = 0 ]; then ok "b: the write completes"; else
	not_ok "b: the write completes"; diag_file "$T_TMP/b.err"; fi
if [ "$(state root "$ID")" = LIVE ]; then ok "b: LIVE"; else
	not_ok "b: LIVE"; diag "state: $(state root "$ID")"; fi
del_dev "b: del" "$ID"
done_testing
