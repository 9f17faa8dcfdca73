# SPDX-License-Identifier: GPL-2.0
#
# tests/host/tap.sh - TAP output for the host test scripts (bash).  Source
# it, report with ok/not_ok/skip, and end with `echo "1..$N"` and an exit
# status from $FAIL.

N=0
FAIL=0

ok() { N=$((N + 1)); echo "ok $N - $*"; }
not_ok() { N=$((N + 1)); FAIL=$((FAIL + 1)); echo "not ok $N - $*"; }
skip() { N=$((N + 1)); echo "ok $N - $1 # SKIP $2"; }	# skip DESCRIPTION REASON
diag_file() { sed 's/^/#   /' "$1" | head -n "${2:-15}"; }	# diag_file FILE [LINES]

# check DESCRIPTION CMD...: one TAP line for whether CMD succeeds; its
# output (kept in $T/out: the script's temporary directory) only on failure.
check() {
	local d=$1 rc
	shift
	"$@" > "$T/out" 2>&1
	rc=$?
	if [ $rc = 0 ]; then ok "$d"; else
		not_ok "$d"; echo "# failed ($rc): $*"; diag_file "$T/out"; fi
}

# check_fails DESCRIPTION CMD...: CMD must fail.
check_fails() {
	local d=$1
	shift
	if "$@" > "$T/out" 2>&1; then not_ok "$d"; echo "# unexpectedly succeeded: $*"
	else ok "$d"; fi
}
