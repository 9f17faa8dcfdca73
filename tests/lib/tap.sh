# SPDX-License-Identifier: GPL-2.0
#
# tests/lib/tap.sh - the TAP core every shell test uses, on the host
# (bash, through tests/host/tap.sh) and in the VM (busybox sh, through
# tests/vm/lib.sh); so it is plain POSIX sh: no arrays, no `local`.
#
# A test reports each result with ok/not_ok/skip or check/check_fails,
# and ends with done_testing, which prints the plan (unless plan gave it
# up front) and exits non-zero when anything failed.  A missing
# prerequisite is a skip with its reason (need, need_cmd, skip_all), never
# a pass.  Sourcing it makes $T_TMP, a temporary directory of the test's
# own, and an EXIT trap that runs what on_exit registered and removes
# $T_TMP; a test registers its cleanup with on_exit rather than setting
# its own EXIT trap, which would replace this one.
#
# Names it takes: the functions below, T_NAME, T_TMP and, for its own
# use, variables starting with T_ or _t_.

T_NUM=0		# results so far
T_FAIL=0	# failures so far
T_PLANNED=	# the plan, when plan gave one
T_CLEANUP=	# on_exit's commands, newest first
T_NAME=$(basename "$0" .sh)
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$T_NAME.XXXXXX") || {
	echo "Bail out! $T_NAME: cannot make a temporary directory"
	exit 1
}

plan() {	# plan N: announce N results up front
	T_PLANNED=$1
	echo "1..$1"
}

ok() {		# ok DESCRIPTION...
	T_NUM=$((T_NUM + 1))
	echo "ok $T_NUM - $*"
}

not_ok() {	# not_ok DESCRIPTION...
	T_NUM=$((T_NUM + 1))
	T_FAIL=$((T_FAIL + 1))
	echo "not ok $T_NUM - $*"
}

skip() {	# skip DESCRIPTION REASON: a result that could not be tested
	T_NUM=$((T_NUM + 1))
	echo "ok $T_NUM - $1 # SKIP $2"
}

# diag LINE...: TAP comments, one per argument (and per line within one).
diag() {
	printf '%s\n' "$@" | sed 's/^/# /'
}

# diag_file FILE [MAX_LINES]: the first lines (20) of a command's output,
# as comments; nothing for an empty or missing file.
diag_file() {
	[ -s "$1" ] && head -n "${2:-20}" "$1" | sed 's/^/#   /'
	return 0
}

# check DESCRIPTION CMD [ARG...]: one result, whether CMD succeeds.  CMD's
# output goes to $T_TMP/check.out and is shown only when it fails.
check() {
	_t_d=$1
	shift
	if "$@" > "$T_TMP/check.out" 2>&1; then
		ok "$_t_d"
	else
		_t_rc=$?
		not_ok "$_t_d"
		diag "failed with status $_t_rc: $*"
		diag_file "$T_TMP/check.out"
	fi
}

# check_fails [--status N] DESCRIPTION CMD [ARG...]: one result, passing
# only when CMD fails, and with exit status N when N is given (a refusal
# is told from a crash or a usage error by its status).  Output as check.
check_fails() {
	_t_want=
	if [ "$1" = --status ]; then
		_t_want=$2
		shift 2
	fi
	_t_d=$1
	shift
	"$@" > "$T_TMP/check.out" 2>&1
	_t_rc=$?
	if [ $_t_rc = 0 ]; then
		not_ok "$_t_d"
		diag "succeeded but should have failed: $*"
		diag_file "$T_TMP/check.out"
	elif [ -n "$_t_want" ] && [ $_t_rc != "$_t_want" ]; then
		not_ok "$_t_d"
		diag "failed with status $_t_rc, wanted $_t_want: $*"
		diag_file "$T_TMP/check.out"
	else
		ok "$_t_d"
	fi
}

# skip_all REASON: the test, or the rest of it, cannot run.  Before any
# result that is the TAP skip of the whole test (exit 0); after some, one
# skip stands for the rest and the test ends as done_testing.
skip_all() {
	if [ "$T_NUM" = 0 ]; then
		echo "1..0 # SKIP $*"
		exit 0
	fi
	skip "remaining tests" "$*"
	done_testing
}

bail() {	# bail REASON: the rest cannot run; one failure, and stop
	not_ok "$*"
	exit 1
}

# need_cmd CMD...: skip the whole test unless every CMD can be run (a
# name on the PATH or a path to an executable).
need_cmd() {
	for _t_c in "$@"; do
		command -v "$_t_c" > /dev/null 2>&1 || skip_all "$_t_c not available"
	done
}

# need [CMD...]: the imgblk under test ($IMGBLK: the build's on the host,
# the one on the PATH in the VM) and every CMD, or skip the whole test.
need() {
	command -v "${IMGBLK:-imgblk}" > /dev/null 2>&1 ||
		skip_all "${IMGBLK:-imgblk} not built"
	need_cmd "$@"
}

# on_exit CMD: run the shell command CMD (one string, evaluated then) when
# the test exits, after the commands registered later.
on_exit() {
	T_CLEANUP="$*; $T_CLEANUP"
}

_t_cleanup() {
	set +e
	[ -n "$T_CLEANUP" ] && eval "$T_CLEANUP" > /dev/null 2>&1
	rm -rf "$T_TMP"
}
trap '_t_cleanup' EXIT
# A signal ends the test through exit, so the cleanup above still runs.
trap 'exit 143' TERM INT

done_testing() {	# the plan if plan did not give it; exit status
	[ -n "$T_PLANNED" ] || echo "1..$T_NUM"
	[ "$T_FAIL" = 0 ] && exit 0
	exit 1
}
