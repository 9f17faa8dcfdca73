#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# units.sh - systemd accepts the units of data/systemd/ (imgblk-tab.service
# and imgblk@.service, as an instance): systemd-analyze verify finds no
# error and prints no warning.  The units name /usr/sbin/imgblk, where the
# package installs it; the copies verified here name the build's binary,
# which verify wants to exist.  --man=no: the man page is not installed.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
IMGBLK=$(cd "$(dirname "$IMGBLK")" && pwd)/$(basename "$IMGBLK")
. "$(dirname "$0")/tap.sh"
need systemd-analyze

UNITS=$(cd "$(dirname "$0")/../../data/systemd" && pwd)
mkdir -p "$T_TMP/units"
for u in imgblk-tab.service imgblk@.service; do
	sed "s|/usr/sbin/imgblk|$IMGBLK|g" "$UNITS/$u" > "$T_TMP/units/$u"
done
# A template is verified through an instance.
cp "$T_TMP/units/imgblk@.service" "$T_TMP/units/imgblk@web.service"
for u in imgblk-tab.service imgblk@web.service; do
	systemd-analyze verify --man=no "$T_TMP/units/$u" > "$T_TMP/out" 2>&1
	rc=$?
	if [ $rc = 0 ] && [ ! -s "$T_TMP/out" ]; then ok "systemd-analyze verify $u"; else
		not_ok "systemd-analyze verify $u (status $rc)"; diag_file "$T_TMP/out"; fi
done
# The test itself: a broken unit is caught.
sed 's/^Type=oneshot/Type=oneshoot/' "$T_TMP/units/imgblk-tab.service" > "$T_TMP/units/broken.service"
if systemd-analyze verify --man=no "$T_TMP/units/broken.service" 2>&1 | grep -q oneshoot; then
	ok "verify reports a broken unit"; else not_ok "verify reports a broken unit"; fi
done_testing
