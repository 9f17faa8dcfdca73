#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# unprivileged.sh - a user without root adds, uses and deletes its own
# devices (UBLK_F_UNPRIVILEGED_DEV), only for files it can open, and
# another user cannot control them.  busybox's uevent stands in for udev
# running scripts/udev/99-imgblk.rules.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd uevent su
[ "$(su nobody -s /bin/sh -c 'id -u' 2>/dev/null)" = 65534 ] ||
	skip_all "cannot switch to user nobody in the guest"
[ "$(su other -s /bin/sh -c 'id -u' 2>/dev/null)" = 1000 ] ||
	skip_all "cannot switch to user other in the guest"

as() {	# as USER CMD: run a shell command as USER, output in $T_TMP/out, err
	su "$1" -s /bin/sh -c "$2" > "$T_TMP/out" 2> "$T_TMP/err" < /dev/null
}

allow_users

U=$T_TMP/nobody
mkdir -p "$U" "$T_TMP/other"
chown nobody "$U"
chown other "$T_TMP/other"
chmod 755 "$T_TMP"
dd if=/dev/zero of="$U/disk.raw" bs=1M count=32 2>/dev/null
chown nobody "$U/disk.raw"
dd if=/dev/zero of="$T_TMP/root-only.raw" bs=1M count=8 2>/dev/null
chmod 600 "$T_TMP/root-only.raw"

if as nobody "imgblk add -t raw -f $U/disk.raw"; then
	DEV=$(head -n 1 "$T_TMP/out")
	ID=${DEV#/dev/ublkb}
	ok "nobody adds a device for its own file ($DEV)"
else
	not_ok "nobody adds a device for its own file"
	diag_file "$T_TMP/err"
	bail "no unprivileged device"
fi
on_exit "su nobody -s /bin/sh -c 'imgblk del -a' >/dev/null 2>&1"
[ "$(stat -c %u "$DEV" 2>/dev/null)" = 65534 ] && ok "$DEV belongs to nobody" ||
	not_ok "$DEV belongs to nobody"
# Its buffers are registered within the user's memlock limit (the
# default budget is larger): halved until they fit, not given up.
lim=$(su nobody -s /bin/sh -c 'ulimit -l')
as nobody "imgblk list -n $ID"
pid=$(awk 'NR == 2 { print $6 }' "$T_TMP/out")
pin=$(awk '$1 == "VmPin:" { print $2 }' "/proc/$pid/status" 2>/dev/null)
if [ "$lim" = unlimited ]; then
	skip "nobody's server pins within its memlock limit" "no memlock limit here"
elif [ "$lim" -ge 512 ] && [ "${pin:-0}" -gt 0 ] && [ "$pin" -le "$lim" ]; then
	ok "nobody's server pins $pin kB, within its memlock limit of $lim kB"
else
	not_ok "nobody's server pins ${pin:-?} kB, memlock limit $lim kB"
fi
check "nobody writes and reads its device" su nobody -s /bin/sh -c \
	"dd if=/dev/urandom of=$DEV bs=64k count=16 oflag=direct && dd if=$DEV of=/dev/null bs=64k count=16 iflag=direct"
if as nobody "imgblk list -n $ID" && grep -q LIVE "$T_TMP/out"; then
	ok "nobody's imgblk list shows it LIVE"
else
	not_ok "nobody's imgblk list shows it LIVE"
	diag_file "$T_TMP/out"
	diag_file "$T_TMP/err"
fi

# Another user, given nobody's state file, is still refused by the driver.
cp /tmp/imgblk-65534/$ID.state "$T_TMP/other/" 2>/dev/null
chown other "$T_TMP/other/$ID.state" 2>/dev/null
if as other "IMGBLK_RUN_DIR=$T_TMP/other imgblk del -n $ID"; then
	not_ok "another user cannot delete nobody's device"
else
	ok "another user cannot delete nobody's device"
	diag "$(cat "$T_TMP/err")"
fi
[ -b "$DEV" ] && ok "$DEV is still there" || not_ok "$DEV is still there"

if as nobody "imgblk add -t raw -f $T_TMP/root-only.raw"; then
	not_ok "nobody cannot serve a file it cannot open"
	as nobody "imgblk del -n $(head -n 1 "$T_TMP/out" | sed 's,/dev/ublkb,,')"
elif [ "$(wc -l < "$T_TMP/err")" = 1 ]; then
	ok "nobody cannot serve a file it cannot open (one line: $(cat "$T_TMP/err"))"
else
	not_ok "nobody cannot serve a file it cannot open (one line)"
	diag_file "$T_TMP/err"
fi
if as nobody "imgblk add -t raw -f $U/disk.raw --recoverable"; then
	not_ok "--recoverable is refused without root"
else
	ok "--recoverable is refused without root"
fi

check "nobody deletes its device" su nobody -s /bin/sh -c "imgblk del -n $ID"
if wait_gone "$DEV" 10 && [ ! -e "/dev/ublkc$ID" ]; then
	ok "its nodes are gone"
else
	not_ok "its nodes are gone"
fi
done_testing
