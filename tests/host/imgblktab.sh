#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# imgblktab.sh - the boot-time table, read without a device (the host has
# no ublk_drv): comments, blank lines and fstab-style options are taken,
# and `add --tab` gets as far as the driver; every bad line is reported
# with its line number before anything is added; a bad option names the
# entry's line; a missing name or file is an error.  Also the checks of
# the options that come with it (--name, --log-level) and of udev-name.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"
need

TAB=$T_TMP/imgblktab
truncate -s 16M "$T_TMP/a.raw" "$T_TMP/b.raw"

cat > "$TAB" <<TAB
# The devices of this test

web  $T_TMP/a.raw  format=raw,queues=2,recoverable   # trailing comment
	db   $T_TMP/b.raw  readonly
TAB
IMGBLK_TAB=$TAB "$IMGBLK" add --tab > "$T_TMP/out" 2>&1
rc=$?
if [ $rc = 1 ] && ! grep -q "$TAB" "$T_TMP/out"; then
	ok "a good table is accepted; add --tab goes on to the driver"
else
	not_ok "a good table is accepted (status $rc)"; diag_file "$T_TMP/out"
fi
IMGBLK_TAB=$TAB "$IMGBLK" add --tab db > "$T_TMP/out" 2>&1
rc=$?
if [ $rc = 1 ] && ! grep -q "$TAB" "$T_TMP/out"; then ok "add --tab NAME finds the entry"; else
	not_ok "add --tab NAME finds the entry (status $rc)"; diag_file "$T_TMP/out"; fi

# want_lines STATUS PATTERN... -- CMD...: CMD exits STATUS and prints each PATTERN.
want_lines() {
	local status=$1 d=$2 pats=() rc p
	shift 2
	while [ "$1" != -- ]; do pats+=("$1"); shift; done
	shift
	"$@" > "$T_TMP/out" 2>&1
	rc=$?
	for p in "${pats[@]}"; do
		if ! grep -qF -- "$p" "$T_TMP/out"; then
			not_ok "$d"; diag "missing: $p (status $rc)"; diag_file "$T_TMP/out"; return
		fi
	done
	if [ $rc != "$status" ]; then
		not_ok "$d"; diag "status $rc, wanted $status"; diag_file "$T_TMP/out"; return
	fi
	ok "$d"
}

cat > "$TAB.bad" <<TAB
# comment
onlyname
bad/name $T_TMP/a.raw
x $T_TMP/a.raw readonly extra
y $T_TMP/a.raw
y $T_TMP/b.raw
TAB
want_lines 2 "every bad line is reported with its number" \
	"$TAB.bad:2: want NAME IMAGE [OPTIONS], found only 'onlyname'" \
	"$TAB.bad:3: bad name 'bad/name'" \
	"$TAB.bad:4: unexpected 'extra' after the options" \
	"$TAB.bad:6: name 'y' already used on line 5" \
	-- env IMGBLK_TAB="$TAB.bad" "$IMGBLK" add --tab
want_lines 2 "del --tab reads the table the same way" "$TAB.bad:2:" \
	-- env IMGBLK_TAB="$TAB.bad" "$IMGBLK" del --tab

printf 'good %s readonly\nbad %s format=qcow3\n' "$T_TMP/a.raw" "$T_TMP/b.raw" > "$TAB.opt"
want_lines 2 "a bad option names the target and the line, and nothing is added" \
	"add: unknown target 'qcow3'" "$TAB.opt:2: in the options of 'bad'" \
	-- env IMGBLK_TAB="$TAB.opt" "$IMGBLK" add --tab
printf 'z %s nosuch=1\n' "$T_TMP/a.raw" > "$TAB.opt2"
want_lines 2 "an unknown option is named" "unknown option '--nosuch=1'" "$TAB.opt2:1:" \
	-- env IMGBLK_TAB="$TAB.opt2" "$IMGBLK" add --tab

want_lines 1 "a name not in the table" "$TAB: no device named 'nosuch'" \
	-- env IMGBLK_TAB="$TAB" "$IMGBLK" add --tab nosuch
want_lines 1 "a missing table" "$T_TMP/none: No such file or directory" \
	-- env IMGBLK_TAB="$T_TMP/none" "$IMGBLK" add --tab
want_lines 2 "--foreground --tab wants one NAME" "give its NAME" \
	-- env IMGBLK_TAB="$TAB" "$IMGBLK" add --tab --foreground
want_lines 2 "--tab takes one NAME" "at most one NAME" \
	-- env IMGBLK_TAB="$TAB" "$IMGBLK" add --tab web db
want_lines 0 "del --tab with nothing attached" -- env IMGBLK_TAB="$TAB" "$IMGBLK" del --tab
want_lines 2 "add --name checks the name" "--name must be 1 to 63 letters" \
	-- "$IMGBLK" add --name 'a b' -t null --size 1M
want_lines 2 "add --log-level checks the level" "--log-level must be err, warning, info or debug" \
	-- "$IMGBLK" add --log-level loud -t null --size 1M
want_lines 2 "udev-name wants a ublk name" "not a ublk disk or partition name" \
	-- "$IMGBLK" udev-name sda1
want_lines 1 "udev-name: no device, no name" -- "$IMGBLK" udev-name ublkb999999p1
done_testing
