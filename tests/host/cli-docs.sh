#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# cli-docs.sh - what the build generates from the command table
# (`imgblk __gen man|bash`): the man page renders with groff -ww (and
# man -l) without a warning and has the sections and one per verb; the
# bash completion, sourced in a bash run here, completes verbs, options,
# option values, files, job's actions and, after --tab, imgblktab's
# names; every verb's --help lists every option its table entry has (read
# back from the completion, which lists them all).
# When the build's own imgblk.8 and imgblk.bash-completion sit beside
# $IMGBLK, they must be what the binary prints (not stale).
#
#   IMGBLK=build/imgblk bash tests/host/cli-docs.sh
set -u

IMGBLK=${IMGBLK:-build/imgblk}
case $IMGBLK in /*) ;; *) IMGBLK=$PWD/$IMGBLK ;; esac
. "$(dirname "$0")/tap.sh"

need

man8=$T_TMP/imgblk.8
comp=$T_TMP/imgblk.bash-completion
check "__gen man" sh -c '"$1" __gen man > "$2"' sh "$IMGBLK" "$man8"
check "__gen bash" sh -c '"$1" __gen bash > "$2"' sh "$IMGBLK" "$comp"
dir=$(dirname "$IMGBLK")
for f in imgblk.8 imgblk.bash-completion; do
	if [ ! -e "$dir/$f" ]; then
		skip "$dir/$f is what the binary prints" "not built beside $IMGBLK"
	elif cmp -s "$dir/$f" "$T_TMP/$f"; then
		ok "$dir/$f is what the binary prints"
	else
		not_ok "$dir/$f is what the binary prints"
	fi
done

verbs=$(awk '/^commands:/ { f = 1; next } /^$/ { f = 0 } f { print $1 }' \
	< <("$IMGBLK" help))

# --- the man page
if ! command -v groff > /dev/null; then
	skip "groff -ww renders the page without warnings" "groff not installed"
else
	groff -ww -man -Tutf8 "$man8" > "$T_TMP/man.txt" 2> "$T_TMP/man.err"
	rc=$?
	if [ $rc = 0 ] && [ ! -s "$T_TMP/man.err" ]; then
		ok "groff -ww renders the page without warnings"
	else
		not_ok "groff -ww renders the page without warnings"
		diag "exit status $rc"
		diag_file "$T_TMP/man.err"
	fi
	text=$(sed 's/.\x08//g' "$T_TMP/man.txt")
	missing=
	for s in NAME SYNOPSIS DESCRIPTION COMMANDS TARGETS FILES IMGBLKTAB ENVIRONMENT \
		 'EXIT STATUS' 'SEE ALSO'; do
		printf '%s\n' "$text" | grep -q "^$s\$" || missing+=" [$s]"
	done
	for v in $verbs; do
		printf '%s\n' "$text" | grep -q "^   imgblk $v\$" || missing+=" [imgblk $v]"
	done
	[ -z "$missing" ] && ok "the page has its sections and one per verb" ||
		{ not_ok "the page has its sections and one per verb"; diag "missing:$missing"; }
fi
if ! command -v man > /dev/null; then
	skip "man -l renders the page without warnings" "man not installed"
else
	MANWIDTH=80 man --warnings -l "$man8" > /dev/null 2> "$T_TMP/manl.err"
	rc=$?
	if [ $rc = 0 ] && [ ! -s "$T_TMP/manl.err" ]; then
		ok "man -l renders the page without warnings"
	else
		not_ok "man -l renders the page without warnings"
		diag "exit status $rc"
		diag_file "$T_TMP/manl.err"
	fi
fi

# --- the completion, in a bash of its own
# complete_words WORD...: the COMPREPLY of completing the last WORD,
# sorted, on one line.
complete_words() {
	bash --norc --noprofile -c '
		. "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
		_imgblk
		printf "%s\n" "${COMPREPLY[@]}"' bash "$comp" "$@" 2>&1 | sort | tr '\n' ' ' |
		sed 's/ $//'
}

# expect NAME WANT WORD...: completing WORD... offers exactly WANT.
expect() {
	local name=$1 want=$2 got
	shift 2
	got=$(complete_words "$@")
	if [ "$got" = "$want" ]; then
		ok "completion: $name"
	else
		not_ok "completion: $name"
		diag "wanted: $want" "got:    $got"
	fi
}

expect "verbs" "commit convert" imgblk co
expect "--version" "--version" imgblk --v
expect "a verb's long options" "--backing --bps-read --bps-total --bps-write --buffered" \
	imgblk add --b
expect "a verb's option values" "any none same-dir" imgblk add --backing ""
expect "--name=value" "same-dir" imgblk io --backing = s
expect "targets for add -t" "qcow2 qed" imgblk add -t q
expect "formats for -f" "raw" imgblk convert -f r
expect "verbs for help" "info io" imgblk help i
mkdir "$T_TMP/files" && touch "$T_TMP/files/disk.qcow2" "$T_TMP/files/disk.raw"
expect "image files for the operand" "$T_TMP/files/disk.qcow2 $T_TMP/files/disk.raw" \
	imgblk info "$T_TMP/files/di"
expect "files for add -f" "$T_TMP/files/disk.qcow2" imgblk add -f "$T_TMP/files/disk.q"
expect "nothing for a number" "" imgblk add -q ""
# Device ids come from `imgblk list` of the imgblk typed: a stand-in here.
cat > "$T_TMP/fake-imgblk" <<'EOF'
#!/bin/sh
printf 'ID   TARGET   QUEUES DEPTH STATE    PID     DEV           FILE\n'
printf '3    qcow2    1      128   LIVE     100     /dev/ublkb3   a.qcow2\n'
printf '12   raw      1      128   LIVE     101     /dev/ublkb12  b.raw\n'
EOF
chmod +x "$T_TMP/fake-imgblk"
expect "device ids for -n, from imgblk list" "12 3" "$T_TMP/fake-imgblk" del -n ""
expect "job's actions" "cancel complete" imgblk job -n 3 c
expect "no action after an action" "" imgblk job -n 3 pause ""
printf '# name image options\n\nweb /srv/web.qcow2 queues=2  # web\ndb /srv/db.raw ro\n' \
	> "$T_TMP/imgblktab"
export IMGBLK_TAB=$T_TMP/imgblktab
expect "imgblktab's names after add --tab" "db web" imgblk add --tab ""
expect "imgblktab's names after del --force --tab" "web" imgblk del --force --tab w
expect "no names without --tab" "" imgblk add ""
unset IMGBLK_TAB

# --- every verb's --help lists every option of its table entry
for v in $verbs; do
	opts=$(awk -v v="$v" '$0 == "\t" v ")" { f = 1; next }
		f && /opts=/ { sub(/.*opts=./, ""); sub(/.$/, ""); print; exit }' "$comp")
	if [ -z "$opts" ]; then
		not_ok "imgblk $v --help lists its options"
		diag "no options for $v in the completion"
		continue
	fi
	help=$("$IMGBLK" "$v" --help 2>&1)
	missing=
	for o in $opts; do
		printf '%s\n' "$help" | grep -Eq -- "(^|[ ,])$o( |,|\$)" || missing+=" $o"
	done
	[ -z "$missing" ] && ok "imgblk $v --help lists its $(echo $opts | wc -w) options" ||
		{ not_ok "imgblk $v --help lists its options"; diag "missing:$missing"; }
done

done_testing
