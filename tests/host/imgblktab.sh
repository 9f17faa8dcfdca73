#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# imgblktab.sh - the boot-time table, read without a device (the host has
# no ublk_drv): comments, blank lines and fstab-style options are taken,
# and `add --tab` takes each entry as far as the driver; every bad line
# or entry is reported with its line number ("FILE:LINE: why") and the
# good entries still go on, the status then 1; a missing name or table
# is an error.  Also the checks of
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
# The host has no ublk_drv: an entry that parses goes on to the driver,
# which is not there, and says so naming the entry's line.
DRV="/dev/ublk-control not found"
IMGBLK_TAB=$TAB "$IMGBLK" add --tab > "$T_TMP/out" 2>&1
rc=$?
if [ $rc = 1 ] && grep -qF "$TAB:3: $DRV" "$T_TMP/out" && grep -qF "$TAB:4: $DRV" "$T_TMP/out" &&
   [ "$(wc -l < "$T_TMP/out")" = 2 ]; then
	ok "a good table is accepted; add --tab takes both entries to the driver"
else
	not_ok "a good table is accepted (status $rc)"; diag_file "$T_TMP/out"
fi
IMGBLK_TAB=$TAB "$IMGBLK" add --tab db > "$T_TMP/out" 2>&1
rc=$?
if [ $rc = 1 ] && grep -qF "$TAB:4: $DRV" "$T_TMP/out" && ! grep -qF "$TAB:3:" "$T_TMP/out"; then
	ok "add --tab NAME finds the entry, and only it"
else
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
want_lines 1 "every bad line is reported with its number, the good one goes on" \
	"$TAB.bad:2: want NAME IMAGE [OPTIONS], found only 'onlyname'" \
	"$TAB.bad:3: bad name 'bad/name'" \
	"$TAB.bad:4: unexpected 'extra' after the options" \
	"$TAB.bad:6: name 'y' already used on line 5" \
	"$TAB.bad:5: $DRV" \
	-- env IMGBLK_TAB="$TAB.bad" "$IMGBLK" add --tab
want_lines 1 "del --tab reads the table the same way, and goes on" "$TAB.bad:2:" \
	-- env IMGBLK_TAB="$TAB.bad" "$IMGBLK" del --tab

# Entries that parse as lines but not as add's options, or whose image is
# missing: each is named by its line, and the entries after it go on.
cat > "$TAB.opt" <<TAB
bad $T_TMP/b.raw format=qcow3
z $T_TMP/a.raw nosuch=1
gone $T_TMP/missing.qcow2
t $T_TMP/a.raw tab
good $T_TMP/a.raw readonly
TAB
want_lines 1 "bad entries are named by their lines; the good one after them goes on" \
	"$TAB.opt:1: add: unknown target 'qcow3'" \
	"$TAB.opt:2: add: unknown option '--nosuch'" \
	"$TAB.opt:3: " "missing.qcow2" \
	"$TAB.opt:4: add: --tab is not an option of an imgblktab entry" \
	"$TAB.opt:5: $DRV" \
	-- env IMGBLK_TAB="$TAB.opt" "$IMGBLK" add --tab
want_lines 2 "--tab takes the device from the table, not -f" "--tab takes the device from imgblktab: no --file" \
	-- env IMGBLK_TAB="$TAB" "$IMGBLK" add --tab -f "$T_TMP/a.raw"
want_lines 2 "a bad option beside --tab is a usage error" "--log-level must be" \
	-- env IMGBLK_TAB="$TAB" "$IMGBLK" add --tab --log-level loud
want_lines 2 "an operand without --tab" "unexpected argument 'web'" \
	-- "$IMGBLK" add -t null --size 1M web
want_lines 2 "del: an operand without --tab" "unexpected argument 'web'" \
	-- "$IMGBLK" del -n 0 web
want_lines 2 "del --tab: no -n" "no -n or -a" \
	-- env IMGBLK_TAB="$TAB" "$IMGBLK" del --tab -n 0

want_lines 1 "a name not in the table" "$TAB: no device named 'nosuch'" \
	-- env IMGBLK_TAB="$TAB" "$IMGBLK" add --tab nosuch
want_lines 1 "a missing table" "$T_TMP/none: No such file or directory" \
	-- env IMGBLK_TAB="$T_TMP/none" "$IMGBLK" add --tab
want_lines 2 "--foreground --tab wants one NAME" "give its NAME" \
	-- env IMGBLK_TAB="$TAB" "$IMGBLK" add --tab --foreground
want_lines 2 "--tab takes one NAME" "unexpected argument 'db'" \
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
