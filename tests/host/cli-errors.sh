#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# cli-errors.sh - the command line's error contract, on a host without
# the ublk driver: bad input gets one clear line on stderr and a non-zero
# exit, and leaves no process and no state file behind; help always works.
#
#   IMGBLK=build/imgblk bash tests/host/cli-errors.sh
#
# Prints TAP.  Runs in a temporary IMGBLK_RUN_DIR.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
case $IMGBLK in /*) ;; *) IMGBLK=$PWD/$IMGBLK ;; esac

. "$(dirname "$0")/tap.sh"
export IMGBLK_RUN_DIR=$T_TMP/run

# fail_why NAME WHY...: a failure, with one comment line per reason.
fail_why() {
	not_ok "$1"
	shift
	diag "$@"
}

# run ARGS...: runs imgblk; sets rc, out (stdout) and err (stderr).
run() {
	"$IMGBLK" "$@" >"$T_TMP/out" 2>"$T_TMP/err"
	rc=$?
	out=$(cat "$T_TMP/out")
	err=$(cat "$T_TMP/err")
}

lines() { [ -z "$1" ] && echo 0 || printf '%s\n' "$1" | wc -l; }

# expect_one_line NAME WANT_RC PATTERN: the last run exited WANT_RC
# ("nonzero" for any failure) with one stderr line matching PATTERN (ERE).
expect_one_line() {
	local name=$1 want=$2 pat=$3 why=()

	if [ "$want" = nonzero ]; then
		[ "$rc" -ne 0 ] || why+=("exit status 0, wanted a failure")
	else
		[ "$rc" -eq "$want" ] || why+=("exit status $rc, wanted $want")
	fi
	[ "$(lines "$err")" -eq 1 ] || why+=("$(lines "$err") lines on stderr, wanted 1")
	printf '%s' "$err" | grep -Eq -- "$pat" || why+=("stderr does not match /$pat/")
	if [ ${#why[@]} -eq 0 ]; then
		ok "$name"
	else
		fail_why "$name" "${why[@]}" "stderr: $err"
	fi
}

# Nothing left under the run directory, and no process serving FILE.
expect_nothing_left() {
	local name=$1 file=$2 why=()

	if [ -d "$IMGBLK_RUN_DIR" ] && [ -n "$(ls -A "$IMGBLK_RUN_DIR")" ]; then
		why+=("left in the run dir: $(ls -A "$IMGBLK_RUN_DIR" | tr '\n' ' ')")
	fi
	# The file name is unique to this run: any process naming it is ours.
	sleep 0.2
	if pgrep -f -- "$file" >/dev/null; then
		why+=("a process still names $file: $(pgrep -af -- "$file" | head -3)")
	fi
	if [ ${#why[@]} -eq 0 ]; then
		ok "$name"
	else
		fail_why "$name" "${why[@]}"
	fi
}

need

img=$T_TMP/cli-errors-$$.img
truncate -s 1M "$img"

# --- the driver is not loaded
if [ -e /dev/ublk-control ]; then
	skip "add without ublk_drv: one line naming the module" "/dev/ublk-control exists here (the VM suite covers it)"
	skip "add without ublk_drv: nothing on stdout" "/dev/ublk-control exists here"
	skip "add without ublk_drv: nothing left behind" "/dev/ublk-control exists here"
	skip "add -t null without ublk_drv: one line" "/dev/ublk-control exists here"
elif [ "$(id -u)" -ne 0 ]; then
	skip "add without ublk_drv: one line naming the module" "not root: add stops at the root check first"
	skip "add without ublk_drv: nothing on stdout" "not root"
	skip "add without ublk_drv: nothing left behind" "not root"
	skip "add -t null without ublk_drv: one line" "not root"
else
	run add -t raw -f "$img"
	expect_one_line "add without ublk_drv: one line naming the module" nonzero \
		'ublk_drv.*modprobe ublk_drv'
	if [ -z "$out" ]; then
		ok "add without ublk_drv: nothing on stdout"
	else
		fail_why "add without ublk_drv: nothing on stdout" "stdout: $out"
	fi
	expect_nothing_left "add without ublk_drv: nothing left behind" "$img"
	run add -t null --size 1M
	expect_one_line "add -t null without ublk_drv: one line" nonzero 'ublk_drv'
fi

# --- not root
# A copy of the binary where the unprivileged user can run it.
as_nobody=()
mkdir -p "$T_TMP/bin" && cp "$IMGBLK" "$T_TMP/bin/imgblk" && chmod 755 "$T_TMP" "$T_TMP/bin"
chmod 644 "$img"
if [ "$(id -u)" -ne 0 ]; then
	as_nobody=(env)		# already unprivileged
elif setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null; then
	as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
if [ ${#as_nobody[@]} -eq 0 ]; then
	skip "add as non-root: one line (the missing driver)" "setpriv cannot drop to uid 65534 here"
	skip "del as non-root: one line (no such device)" "setpriv cannot drop to uid 65534 here"
elif ! "${as_nobody[@]}" "$T_TMP/bin/imgblk" help >/dev/null 2>&1; then
	skip "add as non-root: one line (the missing driver)" "uid 65534 cannot run $T_TMP/bin/imgblk"
	skip "del as non-root: one line (no such device)" "uid 65534 cannot run $T_TMP/bin/imgblk"
else
	"${as_nobody[@]}" "$T_TMP/bin/imgblk" add -t raw -f "$img" >"$T_TMP/out" 2>"$T_TMP/err"
	rc=$? out=$(cat "$T_TMP/out") err=$(cat "$T_TMP/err")
	# Users may add unprivileged devices: here the driver is what is missing.
	expect_one_line "add as non-root: one line (the missing driver)" nonzero 'ublk_drv'
	expect_nothing_left "add as non-root: nothing left behind" "$img"
	"${as_nobody[@]}" "$T_TMP/bin/imgblk" del -n 0 >"$T_TMP/out" 2>"$T_TMP/err"
	rc=$? out=$(cat "$T_TMP/out") err=$(cat "$T_TMP/err")
	expect_one_line "del as non-root: one line (no such device)" nonzero 'no imgblk device'
fi

# --- del and list of devices that do not exist
run del -n 77
expect_one_line "del -n 77 of no such device: one line" nonzero 77
run list -n 77
expect_one_line "list -n 77 of no such device: one line" nonzero '77'
run list
if [ "$rc" -eq 0 ] && [ -z "$err" ] && [ "$(lines "$out")" -eq 1 ]; then
	ok "list with no devices: the header only"
else
	fail_why "list with no devices: the header only" "rc=$rc" "stdout: $out" "stderr: $err"
fi
run list --json
if [ "$rc" -eq 0 ] && [ "$out" = "[]" ]; then
	ok "list --json with no devices: []"
else
	fail_why "list --json with no devices: []" "rc=$rc" "stdout: $out" "stderr: $err"
fi

# --- bad arguments: exit 2 (usage), one line
run add -t raw -f "$img" -q 0
expect_one_line "add -q 0: exit 2, one line" 2 '-q'
run add -t floppy -f "$img"
expect_one_line "add -t floppy: exit 2, one line" 2 'floppy'
run add -t raw -f "$img" --pinned-buffers 2G
expect_one_line "add --pinned-buffers 2G: exit 2, one line" 2 -- '--pinned-buffers'
run add -t raw -f "$img" --bogus
expect_one_line "add --bogus: exit 2, one line" 2 -- '--bogus'
run del
expect_one_line "del without -n or -a: exit 2, one line" 2 '-n'
run bogus
expect_one_line "imgblk bogus: exit 2, one line" 2 'bogus'
run help bogus
expect_one_line "imgblk help bogus: exit 2, one line" 2 'bogus'

# --- the block job verbs: their usage errors, and a device that is not there
run backup -n 0 "$T_TMP/t.qcow2"
expect_one_line "backup without --sync: exit 2, one line" 2 '--sync'
run backup -n 0 --sync half "$T_TMP/t.qcow2"
expect_one_line "backup --sync half: exit 2, one line" 2 'half'
run mirror -n 0
expect_one_line "mirror without TARGET: exit 2, one line" 2 'TARGET'
run stream -n 0 --speed lots
expect_one_line "stream --speed lots: exit 2, one line" 2 '--speed'
run job -n 0 frobnicate
expect_one_line "job frobnicate: exit 2, one line" 2 'frobnicate'
run job -n 0 set-speed
expect_one_line "job set-speed without --speed: exit 2, one line" 2 '--speed'
run job
expect_one_line "job without -n: exit 2, one line" 2 '-n'
run commit -n 0 -d
expect_one_line "commit -n with the offline -d: exit 1 (an image verb), one line" 1 '-d'
run commit --top "$img" "$img"
expect_one_line "commit FILE with the live --top: exit 1, one line" 1 '--top'
run commit -n 0 "$img"
expect_one_line "commit -n with a FILE: exit 1, one line" 1 'FILE'
run commit
expect_one_line "commit with neither FILE nor -n: exit 1, one line" 1 'FILE'
run stream -n 77
expect_one_line "stream -n 77 of no such device: one line" 1 77
run commit -n 77 --wait
expect_one_line "commit -n 77 of no such device: one line" 1 77

# --- help
run
if [ "$rc" -eq 2 ] && printf '%s' "$err" | grep -q '^usage: imgblk' && [ -z "$out" ]; then
	ok "imgblk without a command: usage on stderr, exit 2"
else
	fail_why "imgblk without a command: usage on stderr, exit 2" "rc=$rc" "stderr: $err"
fi
for h in help --help -h; do
	run $h
	if [ "$rc" -eq 0 ] && printf '%s' "$out" | grep -q '^usage: imgblk COMMAND' &&
	   [ -z "$err" ]; then
		ok "imgblk $h: usage on stdout, exit 0"
	else
		fail_why "imgblk $h: usage on stdout, exit 0" "rc=$rc" "stdout: $out" "stderr: $err"
	fi
done

run help
cmds=$(printf '%s\n' "$out" | awk '/^commands:/ { f = 1; next } /^$/ { f = 0 } f { print $1 }')
if [ "$(printf '%s\n' "$cmds" | grep -c .)" -ge 4 ]; then
	ok "imgblk help lists the commands: $(echo $cmds)"
else
	fail_why "imgblk help lists the commands" "found: $cmds"
fi
for c in $cmds; do
	run "$c" --help
	cmd_help=$out
	# `help --help` may show the general usage, which describes help too.
	want="^usage: imgblk $c\b"
	[ "$c" != help ] || want='^usage: imgblk (help|COMMAND)\b'
	if [ "$rc" -eq 0 ] && [ -z "$err" ] &&
	   printf '%s' "$out" | head -1 | grep -Eq "$want"; then
		ok "imgblk $c --help: its usage, exit 0"
	else
		fail_why "imgblk $c --help: its usage, exit 0" "rc=$rc" "stdout: $(printf '%s' "$out" | head -2)" "stderr: $err"
	fi
	[ "$c" != help ] || continue
	run help "$c"
	if [ "$rc" -eq 0 ] && [ "$out" = "$cmd_help" ]; then
		ok "imgblk help $c: the same as $c --help"
	else
		fail_why "imgblk help $c: the same as $c --help" "rc=$rc" "stderr: $err"
	fi
done

# Nothing above may have left a state file or a server.
expect_nothing_left "no state file or process left by any of the above" "$img"

done_testing
