#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# badinput.sh - every bad input is refused the same way: non-zero exit,
# exactly one line on stderr, and nothing left behind (no new ublk device
# node, no new state file under /run/imgblk, no imgblk process).
. "$(dirname "$0")/lib.sh"

need_imgblk

IMG=$T_TMP/disk.raw
truncate -s 16M "$IMG"
ln -s /nonexistent/disk.raw "$T_TMP/dangling"

# What exists besides the test's own doing: compared after each case.
snapshot() {
	{
		ls -1 /dev/ | grep -E '^ublk[bc][0-9]+$'
		ls -1 /run/imgblk 2>/dev/null | sed 's/^/state:/'
		# One grep, not a process per /proc entry: forks are slow under TCG.
		grep -lx imgblk /proc/[0-9]*/comm 2>/dev/null | sed 's,^/proc/\([0-9]*\)/comm$,proc:\1,'
	} | sort
}

# refused DESC [--as USER] ARGS...: imgblk ARGS must fail cleanly.
refused() {
	_desc=$1
	shift
	_su=
	if [ "$1" = --as ]; then _su=$2; shift 2; fi
	snapshot > "$T_TMP/before"
	if [ -n "$_su" ]; then
		su "$_su" -s /bin/sh -c "imgblk $*" > "$T_TMP/out" 2> "$T_TMP/err" < /dev/null
	else
		timeout 30 imgblk "$@" > "$T_TMP/out" 2> "$T_TMP/err" < /dev/null
	fi
	_rc=$?
	_lines=$(awk 'END { print NR }' "$T_TMP/err")
	if [ $_rc != 0 ] && [ $_rc != 124 ] && [ "$_lines" = 1 ]; then
		ok "$_desc: refused with one line on stderr"
	else
		not_ok "$_desc: refused with one line on stderr"
		diag "imgblk $*: exit status $_rc, $_lines stderr lines"
		diag_file "$T_TMP/err"
		diag_file "$T_TMP/out" 5
	fi
	# A server that forked before failing needs a moment to go away.
	sleep 0.3
	snapshot > "$T_TMP/after"
	if cmp -s "$T_TMP/before" "$T_TMP/after"; then
		ok "$_desc: nothing left behind"
	else
		not_ok "$_desc: nothing left behind"
		diff "$T_TMP/before" "$T_TMP/after" | grep '^[+-][^+-]' | sed 's/^/#   /'
		# Do not let one case's debris fail the next ones.
		timeout 30 imgblk del -a > /dev/null 2>&1
	fi
}

refused "missing file" add -t raw -f "$T_TMP/nonexistent.raw"
refused "directory as file" add -t raw -f "$T_TMP"
refused "dangling symlink as file" add -t raw -f "$T_TMP/dangling"
refused "no -f for raw" add -t raw
# (add -f FILE without -t is not bad input: the format is probed.)
refused "add without arguments" add
refused "-t without a value" add -t
refused "unknown target" add -t bogus -f "$IMG"
refused "-q 0" add -t raw -f "$IMG" -q 0
refused "-q abc" add -t raw -f "$IMG" -q abc
refused "-q 1x" add -t raw -f "$IMG" -q 1x
refused "-d 0" add -t raw -f "$IMG" -d 0
refused "-d 99999" add -t raw -f "$IMG" -d 99999
refused "-n -5" add -t raw -f "$IMG" -n -5
refused "-n abc" add -t raw -f "$IMG" -n abc
refused "unknown option" add -t raw -f "$IMG" --bogus
refused "null --size abc" add -t null --size abc
refused "unknown command" frobnicate
refused "del of unknown id 77" del -n 77
refused "del without -n or -a" del

# An id already in use: the first add must work, the second be refused
# without disturbing the first.
if add_dev "add -n 3" -t raw -f "$IMG" -n 3; then
	refused "add -n 3 again (id in use)" add -t raw -f "$IMG" -n 3
	if [ -b /dev/ublkb3 ] && listed 3; then ok "device 3 still there after the refused add"; else
		not_ok "device 3 still there after the refused add"; fi
	del_dev "del -n 3" 3
else
	skip "add -n 3 again (id in use)" "the first add -n 3 failed"
fi

skip "/dev/ublk-control absent" \
	"ublk_drv cannot be unloaded here (built for the whole run); covered by the host tests"

# Unprivileged: busybox su works for root without a password.
if [ "$(su nobody -s /bin/sh -c 'id -u' 2>/dev/null)" = 65534 ]; then
	chmod 755 "$T_TMP"
	chmod 644 "$IMG"
	refused "not root (add as nobody)" --as nobody add -t raw -f "$IMG"
	refused "not root (null add as nobody)" --as nobody add -t null --size 16M
else
	skip "not root" "cannot switch to user nobody in the guest"
fi
done_testing
