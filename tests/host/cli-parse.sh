#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# cli-parse.sh - the one option parser (ublksrv/cli.c) through the verbs:
# clustered short options work everywhere and a bad one is named by its
# letter (the image verbs used to name the word before the cluster: `info
# -f raw -Ux` said "bad option 'raw'"); every usage error is one line
# ending "Try 'imgblk VERB --help'." with the verb's usage status (2 for
# the device verbs, 1 for the image verbs as qemu-img); --version.
#
#   IMGBLK=build/imgblk bash tests/host/cli-parse.sh
set -u

IMGBLK=${IMGBLK:-build/imgblk}
case $IMGBLK in /*) ;; *) IMGBLK=$PWD/$IMGBLK ;; esac
. "$(dirname "$0")/tap.sh"
export IMGBLK_RUN_DIR=$T_TMP/run

need

# run ARGS...: runs imgblk; sets rc, out and err.
run() {
	"$IMGBLK" "$@" >"$T_TMP/out" 2>"$T_TMP/err"
	rc=$?
	out=$(cat "$T_TMP/out")
	err=$(cat "$T_TMP/err")
}

# usage_error NAME WANT_RC VERB PATTERN ARGS...: imgblk VERB ARGS exits
# WANT_RC with one stderr line matching PATTERN and pointing at --help.
usage_error() {
	local name=$1 want=$2 verb=$3 pat=$4 why=()
	shift 4
	run "$verb" "$@"
	[ "$rc" = "$want" ] || why+=("exit status $rc, wanted $want")
	[ "$(printf '%s' "$err" | grep -c .)" = 1 ] || why+=("not one line on stderr")
	printf '%s' "$err" | grep -Eq -- "$pat" || why+=("stderr does not match /$pat/")
	printf '%s' "$err" | grep -Fq -- "Try 'imgblk $verb --help'." ||
		why+=("no pointer to imgblk $verb --help")
	if [ ${#why[@]} = 0 ]; then
		ok "$name"
	else
		not_ok "$name"
		diag "${why[@]}" "stderr: $err"
	fi
}

img=$T_TMP/a.raw
truncate -s 1M "$img"

# --- clustered short options
usage_error "info -f raw -Ux: names -x, not the word before" 1 info "unknown option '-x'" \
	-f raw -Ux "$img"
if printf '%s' "$err" | grep -q "'raw'"; then
	not_ok "info -f raw -Ux: 'raw' is not called an option"
	diag "stderr: $err"
else
	ok "info -f raw -Ux: 'raw' is not called an option"
fi
usage_error "check -qx: names -x" 1 check "unknown option '-x'" -qx "$img"
usage_error "map -Uf (no value): names -f" 1 map "option '-f' needs a value" "$img" -Uf
usage_error "add --foreground -xr: names -x" 2 add "unknown option '-x'" \
	-t null --size 1M --foreground -xr
usage_error "del -an: names -n's missing value" 2 del "option '-n' needs a value" -an

check "create -qf qcow2: a value after a cluster" "$IMGBLK" create -qf qcow2 "$T_TMP/b.qcow2" 1M
check "check -qU FILE: a cluster of flags" "$IMGBLK" check -qU "$T_TMP/b.qcow2"
run info -Ufqcow2 --output=json "$T_TMP/b.qcow2"
if [ "$rc" = 0 ] && printf '%s' "$out" | grep -q '"format": "qcow2"'; then
	ok "info -Ufqcow2: a value attached to a cluster"
else
	not_ok "info -Ufqcow2: a value attached to a cluster"
	diag "rc=$rc" "stderr: $err"
fi
check "convert -cpO qcow2 IN OUT: flags then a value" \
	"$IMGBLK" convert -cqO qcow2 "$T_TMP/b.qcow2" "$T_TMP/c.qcow2"

# --- long options, operands, the same line everywhere
usage_error "info --bogus" 1 info "unknown option '--bogus'" --bogus "$img"
usage_error "info --output (no value)" 1 info "option '--output' needs a value" "$img" --output
usage_error "info --backing-chain=x: a flag takes no value" 1 info \
	"option '--backing-chain' takes no value" --backing-chain=x "$img"
usage_error "list --j is --json, --p is nothing" 2 list "unknown option '--p'" --p
run list --j
if [ "$rc" = 0 ] && [ "$out" = "[]" ]; then
	ok "list --j: an unambiguous prefix of --json"
else
	not_ok "list --j: an unambiguous prefix of --json"
	diag "rc=$rc" "stdout: $out" "stderr: $err"
fi
usage_error "add --i: ambiguous (--iops-*)" 2 add "option '--i' is ambiguous" --i 5
usage_error "info without FILE" 1 info "give FILE" -U
usage_error "info with two files" 1 info "unexpected argument" "$img" "$img"
usage_error "convert with one file" 1 convert "give INPUT and OUTPUT" "$img"
usage_error "stats without -n" 2 stats "give the device with -n ID"
usage_error "qmp with -n and -s" 2 qmp "exactly one of -n ID and -s SOCKET" -n 0 -s x query-status
usage_error "set with nothing to change" 2 set "nothing to change" -n 0
check "info FILE -U: options after the operand" "$IMGBLK" info "$img" -U
check "resize FILE -512K: a negative size is an operand" \
	"$IMGBLK" resize -q --shrink -f raw "$img" -512K
[ "$(stat -c %s "$img")" = 524288 ] && ok "resize -512K --shrink: 512K left" ||
	not_ok "resize -512K --shrink: 512K left"
usage_error "resize FILE SIZE --shrink: options end at FILE" 1 resize \
	"unexpected argument '--shrink'" "$img" 1M --shrink
check "-- ends the options" "$IMGBLK" info -- "$img"

# --- --version
run --version
v=$out
if [ "$rc" = 0 ] && printf '%s' "$out" | grep -Eq '^imgblk [^ ]+$' && [ -z "$err" ]; then
	ok "imgblk --version: one line, exit 0 ($out)"
else
	not_ok "imgblk --version: one line, exit 0"
	diag "rc=$rc" "stdout: $out" "stderr: $err"
fi
run version
[ "$rc" = 0 ] && [ "$out" = "$v" ] && ok "imgblk version: the same" ||
	not_ok "imgblk version: the same"

done_testing
