#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run.sh - run the libFuzzer targets built by `make fuzz-build`.
#
#   tests/fuzz/run.sh -b BUILD [-t SECONDS] [-c CORPUS] [-R] [TARGET...]
#
# For each target (default: every BUILD/tests/fuzz/fuzz_*): replay its
# saved crashes in tests/fuzz/regress/<target>/, then (unless -R, replay
# only) fuzz it for SECONDS (default 60) with the corpus in
# CORPUS/<target> (default BUILD/corpus, kept between runs), seeded by
# tests/fuzz/seed.sh when empty.
# A crash, leak, timeout (10 s per input), out-of-memory or (fuzz_ops)
# a read the model does not allow leaves its
# input in BUILD/crashes/<target>/ (and, up to 4 KiB, in base64 on the
# failure's lines) and makes the run fail: copy it into
# tests/fuzz/regress/<target>/ once the bug is fixed.  Prints one line
# per target with its executions and time.  Exits non-zero on any failure.
set -uo pipefail

B=build/fuzz SECONDS_EACH=60 REPLAY_ONLY=0 CORPUS=
while getopts b:t:c:R o; do
	case $o in
	b) B=$OPTARG ;;
	t) SECONDS_EACH=$OPTARG ;;
	c) CORPUS=$OPTARG ;;
	R) REPLAY_ONLY=1 ;;
	*) echo "usage: $0 -b BUILD [-t SECONDS] [-c CORPUS] [-R] [TARGET...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
cd "$(dirname "$0")/../.." || exit 2

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for t in "$B"/tests/fuzz/fuzz_*; do
		case $t in *.o | *.d) continue ;; esac
		[ -x "$t" ] && targets+=("$(basename "$t")")
	done
fi
[ ${#targets[@]} -gt 0 ] || { echo "run.sh: no fuzz targets in $B/tests/fuzz (make fuzz-build)" >&2; exit 2; }

# The targets' scratch files (image.h), removed even after a crash.
TMP=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/imgblk-fuzz-run.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export IMGBLK_FUZZ_TMPDIR=$TMP
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

fail=0
for t in "${targets[@]}"; do
	bin=$B/tests/fuzz/$t
	[ -x "$bin" ] || { echo "run.sh: $bin not built" >&2; fail=1; continue; }

	# Saved crashes first: each must now run clean.
	reg=(tests/fuzz/regress/"$t"/*)
	if [ -e "${reg[0]}" ]; then
		if "$bin" -timeout=10 "${reg[@]}" > "$TMP/replay.log" 2>&1; then
			echo "$t: replayed ${#reg[@]} saved inputs, clean"
		else
			echo "$t: a saved input of tests/fuzz/regress/$t fails again:"
			grep -E '^fuzz_[a-z0-9_]+: |ERROR|runtime error|Running:|SUMMARY' "$TMP/replay.log" |
				tail -n 20 | sed 's/^/  /'
			fail=1
		fi
	fi
	[ "$REPLAY_ONLY" = 1 ] && continue

	corpus=${CORPUS:-$B/corpus}/$t
	if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
		tests/fuzz/seed.sh "$TMP/seed" || { fail=1; continue; }
		mkdir -p "$corpus"
		cp "$TMP/seed/$t"/* "$corpus"/ 2>/dev/null || true
	fi
	dict=()
	[ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
	mkdir -p "$B/crashes/$t"
	start=$SECONDS
	"$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$B/crashes/$t/" "${dict[@]}" \
		"$corpus" > "$TMP/$t.log" 2>&1
	rc=$?
	secs=$((SECONDS - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/$t.log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$TMP/$t.log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$TMP/$t.log" | tail -n 1)
	if [ "$rc" -eq 0 ]; then
		printf '%s: %s executions in %s s (%s/s), %s, corpus %s inputs\n' "$t" \
			"${execs:-?}" "$secs" "${rate:-?}" "${cov:-cov ?}" "$(ls "$corpus" | wc -l)"
	else
		echo "$t: FAILED after $secs s (status $rc); input saved in $B/crashes/$t/:"
		# In the log too: CI keeps the log, not the build directory.
		unit=$(sed -n 's/.*Test unit written to //p' "$TMP/$t.log" | tail -n 1)
		if [ -f "$unit" ] && [ "$(stat -c %s "$unit")" -le 4096 ]; then
			echo "  replay: echo $(base64 -w 0 "$unit") | base64 -d > in && $bin in"
		fi
		grep -E '^fuzz_[a-z0-9_]+: |ERROR|runtime error|SUMMARY|artifact|Test unit written' \
			"$TMP/$t.log" | tail -n 8 | sed 's/^/  /'
		grep -E '^ +#[0-9]+ ' "$TMP/$t.log" | head -n 12 | sed 's/^/  /'
		fail=1
	fi
done
exit $fail
