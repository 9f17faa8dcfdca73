#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# logging.sh - where a server's messages go: with a logger on /dev/log
# (busybox syslogd here, the journal on a real system), a background
# server's lines reach syslog as "imgblk[PID]: ublkbN: ...", and
# --log-level err keeps its info lines out; without one they land in
# N.log beside the state file; in the foreground they go to stderr.
. "$(dirname "$0")/lib.sh"

need_imgblk
[ -e /dev/log ] && skip_all "/dev/log already exists: another logger runs"

LOG=$T_TMP/syslog
syslogd -n -O "$LOG" &
SYSLOGD=$!
on_exit "kill $SYSLOGD 2>/dev/null; rm -f /dev/log"
_i=0
while ! [ -S /dev/log ] && [ $_i -lt 50 ]; do sleep 0.1; _i=$((_i + 1)); done
[ -S /dev/log ] || bail "syslogd made no /dev/log"

# in_log FILE PATTERN: does PATTERN show up in FILE within 5 s?
in_log() {
	_i=0
	while [ $_i -lt 50 ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		_i=$((_i + 1))
	done
	return 1
}

add_dev "add a device (info, the default)" -t null --size 16M || bail "cannot add"
A=$DEV_ID
APID=$(imgblk list --json -n "$A" | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')
check "pause" imgblk pause -n "$A"
if in_log "$LOG" "imgblk\[$APID\]: ublkb$A: device $A: paused"; then
	ok "the pause reaches syslog with the device's name"
else
	not_ok "the pause reaches syslog with the device's name"; diag_file "$LOG"
fi
check "resume" imgblk resume -n "$A"

add_dev "add a device with --log-level err" -t null --size 16M --log-level err || bail "cannot add"
B=$DEV_ID
check "pause it" imgblk pause -n "$B"
check "resume it" imgblk resume -n "$B"
# The first device's resume is logged after the second's pause: wait for it.
in_log "$LOG" "ublkb$A: device $A: resumed"
sleep 1
if grep -q "ublkb$B:" "$LOG"; then not_ok "--log-level err: no info line"; diag_file "$LOG"
else ok "--log-level err: no info line"; fi
del_dev "del" "$A"
del_dev "del" "$B"

# No logger: the lines go to N.log.
kill $SYSLOGD
wait $SYSLOGD 2>/dev/null
rm -f /dev/log
add_dev "add without a logger" -t null --size 16M || bail "cannot add"
check "pause" imgblk pause -n "$DEV_ID"
if in_log "/run/imgblk/$DEV_ID.log" "device $DEV_ID: paused"; then ok "the line is in /run/imgblk/$DEV_ID.log"
else not_ok "the line is in /run/imgblk/$DEV_ID.log"; fi
check "resume" imgblk resume -n "$DEV_ID"
del_dev "del" "$DEV_ID"

# The foreground: stderr.
imgblk add -t null --size 16M --foreground > "$T_TMP/fg.out" 2> "$T_TMP/fg.err" &
FG=$!
in_log "$T_TMP/fg.out" "/dev/ublkb" || bail "no foreground device"
kill $FG
wait $FG
if grep -q "^imgblk: device [0-9]*: signal 15, shutting down\$" "$T_TMP/fg.err"; then
	ok "in the foreground, the lines go to stderr"
else
	not_ok "in the foreground, the lines go to stderr"; diag_file "$T_TMP/fg.err"
fi
done_testing
