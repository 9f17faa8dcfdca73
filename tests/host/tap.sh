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
