#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# install.sh - make install lays out the binary, the man page, the bash
# completion and every udev rule and systemd unit of data/ under DESTDIR,
# for the default PREFIX and for PREFIX=/usr with the Debian package's
# directories, with the rules' and units' imgblk path following SBINDIR;
# make uninstall removes every file again.  Builds nothing: it installs
# the build that $IMGBLK belongs to (O=its directory).  The package's
# version, debian/changelog's newest entry, is the tree's VERSION.
#
#   IMGBLK=build/imgblk bash tests/host/install.sh
set -u

IMGBLK=${IMGBLK:-build/imgblk}
case $IMGBLK in /*) ;; *) IMGBLK=$PWD/$IMGBLK ;; esac
. "$(dirname "$0")/tap.sh"
need make install sed

repo=$(cd "$(dirname "$0")/../.." && pwd)
# A native package: its version is VERSION itself, no Debian revision.
deb=$(sed -n '1s/^imgblk (\([^)]*\)).*/\1/p' "$repo/debian/changelog")
ver=$(cat "$repo/VERSION")
if [ -n "$deb" ] && [ "$deb" = "$ver" ]; then
	ok "debian/changelog's version is VERSION ($ver)"
else
	not_ok "debian/changelog's version is VERSION"
	diag "debian/changelog: '$deb', VERSION: '$ver'"
fi
O=$(dirname "$IMGBLK")
[ -e "$O/imgblk.8" ] && [ -e "$O/imgblk.bash-completion" ] ||
	skip_all "$O has no imgblk.8 or imgblk.bash-completion (make builds them)"

# The files every install has, relative to the prefix's directories.
rules=$(cd "$repo" && ls data/udev/*.rules 2>/dev/null)
units=$(cd "$repo" && ls data/systemd/*.service data/systemd/*.target \
	data/systemd/*.socket data/systemd/*.timer 2>/dev/null)

# round NAME SBINDIR UDEV_DIR UNIT_DIR MAKE_ARGS...: install, check, uninstall.
round() {
	local name=$1 sbin=$2 udev=$3 unitdir=$4 dest=$T_TMP/$1 want=() missing= extra f man comp left
	shift 4
	mkdir -p "$dest"
	want=("$sbin/imgblk")
	check "$name: make install" make -C "$repo" --no-print-directory O="$O" \
		DESTDIR="$dest" "$@" install
	[ -x "$dest$sbin/imgblk" ] || missing+=" $sbin/imgblk (executable)"
	for f in $rules; do
		want+=("$udev/${f##*/}")
	done
	for f in $units; do
		want+=("$unitdir/${f##*/}")
	done
	for f in "${want[@]}"; do
		[ -f "$dest$f" ] || missing+=" $f"
	done
	man=$(find "$dest" -path '*/man8/imgblk.8' -type f)
	comp=$(find "$dest" -path '*/share/bash-completion/completions/imgblk' -type f)
	[ -n "$man" ] || missing+=" man8/imgblk.8"
	[ -n "$comp" ] || missing+=" bash-completion/completions/imgblk"
	if [ -z "$missing" ]; then
		ok "$name: binary, man page, completion, $(echo $rules $units | wc -w) rules and units"
	else
		not_ok "$name: binary, man page, completion, rules and units"
		diag "missing:$missing" "installed: $(cd "$dest" && find . -type f | tr '\n' ' ')"
	fi
	cmp -s "$man" "$O/imgblk.8" && cmp -s "$comp" "$O/imgblk.bash-completion" &&
		cmp -s "$dest$sbin/imgblk" "$IMGBLK" &&
		ok "$name: the installed files are the build's" ||
		not_ok "$name: the installed files are the build's"
	extra=$(grep -l '/usr/sbin/imgblk' $(for f in "${want[@]}"; do
		case $f in *.rules|*.service|*.target|*.socket|*.timer) echo "$dest$f" ;; esac
	done) /dev/null 2>/dev/null)
	if [ "$sbin" = /usr/sbin ] || [ -z "$extra" ]; then
		ok "$name: the rules and units run $sbin/imgblk"
	else
		not_ok "$name: the rules and units run $sbin/imgblk"
		diag "still naming /usr/sbin/imgblk: $extra"
	fi
	check "$name: make uninstall" make -C "$repo" --no-print-directory O="$O" \
		DESTDIR="$dest" "$@" uninstall
	left=$(find "$dest" ! -type d)
	[ -z "$left" ] && ok "$name: nothing left after uninstall" ||
		{ not_ok "$name: nothing left after uninstall"; diag "left: $left"; }
}

round default /usr/local/sbin /usr/local/lib/udev/rules.d /usr/local/lib/systemd/system
round debian /usr/sbin /lib/udev/rules.d /lib/systemd/system PREFIX=/usr \
	UDEVRULESDIR=/lib/udev/rules.d SYSTEMDUNITDIR=/lib/systemd/system

done_testing
