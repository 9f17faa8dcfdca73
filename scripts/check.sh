#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check.sh - run imgblk's test suites and count the results.
#
#   scripts/check.sh host|vm|all
#
# Host: every unit test program in $O/tests/host/ (kselftest harness) and
# every tests/host/*.sh script, each under a time limit, each printing TAP.
# VM: tests/vm/*.sh in one boot of the test VM (scripts/vm/run.sh).  The
# TAP of each is shown as it comes, and the last line is the plain count
# `N passed, N failed, N skipped`.  Exits non-zero if anything failed.  A
# program that exits non-zero or prints no result counts as a failure:
# a crash is never a pass.  Each test's wall time is shown (`# time NAME:
# N s`), and the slowest are listed at the end.
set -uo pipefail

O=${O:-build}
HOST_TIMEOUT=${HOST_TIMEOUT:-600}
what=${1:-all}
cd "$(dirname "$0")/.." || exit 2

pass=0 fail=0 skip=0
failed=()
times=()	# "SECONDS NAME" of each test, for the slowest at the end

# Counts the TAP lines of one test's output ($2) under the name $1, with
# its exit status $3.
count() {
	local name=$1 out=$2 rc=$3 p=0 f=0 s=0 line
	while IFS= read -r line; do
		case $line in
		"not ok "*"# TODO"*) ;;
		"not ok "*) f=$((f + 1)) ;;
		"ok "*"# SKIP"* | "ok "*"# skip"*) s=$((s + 1)) ;;
		"ok "*) p=$((p + 1)) ;;
		esac
	done <<<"$out"
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name: exited with status $rc"
		f=$((f + 1))
	fi
	if [ $((p + f + s)) -eq 0 ]; then
		echo "not ok - $name: printed no test result"
		f=1
	fi
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
	[ "$f" -eq 0 ] || failed+=("$name")
}

run_one() {
	local name=$1 out rc t0=$SECONDS
	shift
	echo "# --- $name"
	out=$(IMGBLK=$O/imgblk UBSAN_OPTIONS=print_stacktrace=1 timeout --kill-after=10 "$HOST_TIMEOUT" "$@" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	[ "$rc" -ne 124 ] || echo "not ok - $name: timed out after ${HOST_TIMEOUT}s"
	echo "# time $name: $((SECONDS - t0)) s"
	times+=("$((SECONDS - t0)) $name")
	count "$name" "$out" "$rc"
}

# run_units DIR LABEL: the unit test programs built in DIR.
run_units() {
	local t
	for t in "$1"/tests/host/*; do
		[ -x "$t" ] && [ -f "$t" ] || continue
		case $t in *.o | *.d) continue ;; esac
		run_one "$2/$(basename "$t")" "$t"
	done
}

run_host() {
	local t
	run_units "$O" host
	for t in tests/host/*.sh; do
		# tap.sh sources the test library (tests/lib/); it is not a test.
		[ -f "$t" ] && [ "$(basename "$t")" != tap.sh ] || continue
		run_one "host/$(basename "$t")" bash "$t"
	done
	# Under ASan and UBSan: the unit tests, and whatever feeds imgblk
	# hostile input (tests/host/*malformed*.sh), with the sanitized binary.
	if [ -x "$O/san/imgblk" ]; then
		run_units "$O/san" san
		for t in tests/host/*malformed*.sh; do
			[ -f "$t" ] || continue
			O=$O/san run_one "san/$(basename "$t")" bash "$t"
		done
	fi
}

run_vm() {
	local tests=() t out rc
	for t in tests/vm/*.sh; do
		[ "$(basename "$t")" = lib.sh ] || tests+=("$t")
	done
	echo "# --- vm (${#tests[@]} scripts)"
	# Shown as it comes; -a because a plain tee truncates a log file
	# that stderr is redirected to, erasing what the host tests printed.
	out=$(scripts/vm/run.sh -b "$O" "${tests[@]}" 2>&1 | tee -a /dev/stderr)
	rc=${PIPESTATUS[0]}
	count vm "$out" "$rc"
	# run.sh's `# time NAME: N s` lines.
	while read -r _ _ t secs _; do
		times+=("$secs vm/${t%:}")
	done < <(grep '^# time ' <<<"$out")
}

start=$SECONDS
case $what in
host) run_host ;;
vm) run_vm ;;
all) run_host; run_vm ;;
*) echo "usage: $0 host|vm|all" >&2; exit 2 ;;
esac

echo "# time: $((SECONDS - start)) s"
if [ ${#times[@]} -gt 0 ]; then
	echo "# slowest:"
	printf '%s\n' "${times[@]}" | sort -rn | head -n 12 | sed 's/^\([^ ]*\) \(.*\)/#   \2: \1 s/'
fi
[ ${#failed[@]} -eq 0 ] || echo "# failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
