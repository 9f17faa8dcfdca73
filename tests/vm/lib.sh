# SPDX-License-Identifier: GPL-2.0
#
# tests/vm/lib.sh - helpers for the guest tests (busybox sh, no bash).
#
# A test sources this, prints TAP through ok/not_ok/skip, and ends with
# done_testing.  A missing prerequisite is a skip with its reason, never a
# pass.  The EXIT trap deletes every imgblk device the test left behind
# and runs the commands the test registered with on_exit.
#
# The rig (scripts/vm/init) gives: $SHARE (the host's share), /tmp as
# tmpfs, imgblk in PATH when it was built, modules loaded except brd and
# null_blk (see load_module).

T_NUM=0
T_FAIL=0
T_PLANNED=
T_CLEANUP=
T_NAME=$(basename "$0" .sh)
T_TMP=/tmp/$T_NAME
mkdir -p "$T_TMP"

# busybox sh runs its own applets before searching PATH, so the util-linux
# tools the rig ships (busybox's lack options we need: blkdiscard -z,
# losetup --direct-io) must be called by path.
[ -x /usr/sbin/blkdiscard ] && blkdiscard() { /usr/sbin/blkdiscard "$@"; }
[ -x /usr/sbin/losetup ] && losetup() { /usr/sbin/losetup "$@"; }

plan() {	# plan N: announce N tests up front
	T_PLANNED=$1
	echo "1..$1"
}

ok() {		# ok DESCRIPTION
	T_NUM=$((T_NUM + 1))
	echo "ok $T_NUM - $*"
}

not_ok() {	# not_ok DESCRIPTION
	T_NUM=$((T_NUM + 1))
	T_FAIL=$((T_FAIL + 1))
	echo "not ok $T_NUM - $*"
}

skip() {	# skip DESCRIPTION REASON
	T_NUM=$((T_NUM + 1))
	echo "ok $T_NUM - $1 # SKIP $2"
}

diag() {	# diag TEXT...: a TAP comment, one per line of input
	printf '%s\n' "$*" | sed 's/^/# /'
}

diag_file() {	# diag_file FILE [MAX_LINES]: show a command's output
	[ -s "$1" ] && head -n "${2:-20}" "$1" | sed 's/^/#   /'
	return 0
}

# check DESCRIPTION CMD [ARGS...]: one TAP line for whether CMD succeeds;
# its output is shown only when it fails.
check() {
	_d=$1
	shift
	if "$@" > "$T_TMP/check.out" 2>&1; then
		ok "$_d"
	else
		_rc=$?
		not_ok "$_d"
		diag "command failed with status $_rc: $*"
		diag_file "$T_TMP/check.out"
	fi
}

# check_fails DESCRIPTION CMD [ARGS...]: CMD must fail.
check_fails() {
	_d=$1
	shift
	if "$@" > "$T_TMP/check.out" 2>&1; then
		not_ok "$_d"
		diag "command succeeded but should have failed: $*"
		diag_file "$T_TMP/check.out"
	else
		ok "$_d"
	fi
}

skip_all() {	# skip_all REASON: the whole test (or the rest of it) cannot run
	if [ "$T_NUM" = 0 ]; then
		echo "1..0 # SKIP $*"
		exit 0
	fi
	skip "remaining tests" "$*"
	done_testing
}

bail() {	# bail REASON: the rest cannot run; report and stop
	not_ok "$*"
	exit 1
}

on_exit() {	# on_exit CMD: run CMD (a string) at exit, newest first
	T_CLEANUP="$*; $T_CLEANUP"
}

_t_cleanup() {
	set +e
	[ -n "$T_CLEANUP" ] && eval "$T_CLEANUP" > /dev/null 2>&1
	if command -v imgblk > /dev/null 2>&1; then
		timeout 30 imgblk del -a > /dev/null 2>&1
	fi
	rm -rf "$T_TMP"
}
trap '_t_cleanup' EXIT
trap 'exit 143' TERM INT

done_testing() {	# print the plan if not given up front; exit status
	[ -n "$T_PLANNED" ] || echo "1..$T_NUM"
	[ "$T_FAIL" = 0 ] && exit 0
	exit 1
}

need_cmd() {	# need_cmd CMD...: skip the whole test if a tool is missing
	for _c in "$@"; do
		command -v "$_c" > /dev/null 2>&1 || skip_all "$_c not available"
	done
}

need_imgblk() {	# the binary and the driver
	command -v imgblk > /dev/null 2>&1 ||
		skip_all "imgblk binary not in the VM (build/imgblk missing at image build)"
	[ -c /dev/ublk-control ] || skip_all "/dev/ublk-control missing (ublk_drv not loaded)"
}

load_module() {	# load_module NAME [PARAMS...]: insmod a rig module once
	_m=$1
	shift
	[ -d "/sys/module/$_m" ] && return 0
	[ -f "/lib/imgblk-modules/$_m.ko" ] || return 1
	insmod "/lib/imgblk-modules/$_m.ko" "$@"
}

# add_dev DESCRIPTION ARGS...: imgblk add ARGS; on success sets DEV
# (/dev/ublkbN) and DEV_ID (N) and reports ok, else not ok with stderr.
add_dev() {
	_d=$1
	shift
	DEV=
	DEV_ID=
	timeout 60 imgblk add "$@" > "$T_TMP/add.out" 2> "$T_TMP/add.err"
	_rc=$?
	if [ $_rc -eq 0 ]; then
		DEV=$(head -n 1 "$T_TMP/add.out")
		case $DEV in
		/dev/ublkb[0-9]*)
			DEV_ID=${DEV#/dev/ublkb}
			if [ -b "$DEV" ]; then
				ok "$_d"
				return 0
			fi
			not_ok "$_d"
			diag "imgblk add printed $DEV but it is not a block device"
			return 1 ;;
		esac
		not_ok "$_d"
		diag "imgblk add $* printed no /dev/ublkbN on stdout:"
		diag_file "$T_TMP/add.out"
		diag_file "$T_TMP/add.err"
		return 1
	fi
	not_ok "$_d"
	diag "imgblk add $* failed with status $_rc:"
	diag_file "$T_TMP/add.err"
	return 1
}

# del_dev DESCRIPTION ID: imgblk del -n ID, bounded in time.
del_dev() {
	check "$1" timeout 30 imgblk del -n "$2"
}

# listed ID: is device ID in imgblk list?  Matches a row whose first
# column is ID or that names /dev/ublkbID.
listed() {
	imgblk list > "$T_TMP/list.out" 2>&1 || return 2
	awk -v id="$1" -v dev="/dev/ublkb$1" '
		$1 == id { f = 1 }
		{ for (i = 1; i <= NF; i++) if ($i == dev) f = 1 }
		END { exit !f }' "$T_TMP/list.out"
}

# wait_gone PATH SECONDS: wait for a file or device node to disappear.
wait_gone() {
	_i=0
	while [ -e "$1" ]; do
		[ $_i -ge $(($2 * 10)) ] && return 1
		sleep 0.1
		_i=$((_i + 1))
	done
	return 0
}
