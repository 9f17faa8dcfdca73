#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# imgblktab.sh - boot-time devices: an imgblktab with two devices and a
# comment line is attached by `add --tab` (names in list, the udev
# helper's names, options applied), a second `add --tab` skips what is
# attached, `del --tab NAME` and `del --tab` delete them; a table with a
# missing image and a bad line between good entries brings up the good
# ones and reports the others by line.  `add
# --foreground --tab NAME` as imgblk@NAME.service runs it reports READY=1
# only when the device and its partitions open (notify-recv plays
# systemd), and, --recoverable, a server killed under a mounted
# filesystem is recovered by running the same command again, as
# systemd's Restart=on-failure does.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd sfdisk mkfs.ext4 qemu-img notify-recv

TAB=$T_TMP/imgblktab
export IMGBLK_TAB=$TAB
MNT=$T_TMP/mnt
mkdir -p "$MNT"
on_exit "umount -l $MNT 2>/dev/null"

truncate -s 64M "$T_TMP/gpt.raw"
printf 'label: gpt\nsize=24MiB\nsize=24MiB\n' | sfdisk -q "$T_TMP/gpt.raw" || bail "sfdisk"
qemu-img convert -O qcow2 "$T_TMP/gpt.raw" "$T_TMP/web.qcow2" || bail "qemu-img"
truncate -s 16M "$T_TMP/db.raw"
cat > "$TAB" <<TAB
# name  image                 options
web     $T_TMP/web.qcow2      format=qcow2,queues=2

db      $T_TMP/db.raw         readonly   # a trailing comment
TAB

# id_of NAME: the id of the device named NAME, from list --json.
id_of() {
	imgblk list --json | tr '{' '\n' | grep "\"name\": \"$1\"" |
		sed -n 's/.*"id": \([0-9]*\),.*/\1/p'
}

check "add --tab" sh -c "imgblk add --tab > '$T_TMP/add.out' 2>&1"
diag_file "$T_TMP/add.out"
WEB=$(id_of web)
DB=$(id_of db)
if [ -n "$WEB" ] && [ -n "$DB" ]; then ok "list names web ($WEB) and db ($DB)"; else
	not_ok "list names web and db"; imgblk list | sed 's/^/# /'; fi
imgblk list > "$T_TMP/list.txt"
if grep -q "^     name: web\$" "$T_TMP/list.txt"; then ok "the text list shows the name"; else
	not_ok "the text list shows the name"; diag_file "$T_TMP/list.txt"; fi
if imgblk list --json -n "$WEB" | grep -q '"queues": 2,' &&
   imgblk list --json -n "$DB" | grep -q '"read_only": true'; then
	ok "the options apply: web has 2 queues, db is read-only"
else
	not_ok "the options apply"; imgblk list --json | sed 's/^/# /'
fi
check "the udev helper names the disk" sh -c "[ \"\$(imgblk udev-name ublkb$WEB)\" = web ]"
check "the udev helper names a partition" sh -c "[ \"\$(imgblk udev-name /dev/ublkb${WEB}p2)\" = web-part2 ]"
check_fails --status 1 "the udev helper: no name for an unnamed device" imgblk udev-name ublkb999
check "add --tab again skips both" sh -c "imgblk add --tab 2> '$T_TMP/again.err' && grep -q 'web: already attached' '$T_TMP/again.err'"
n=$(imgblk list --json | grep -c '"id"')
if [ "$n" = 2 ]; then ok "still two devices"; else not_ok "still two devices ($n)"; fi
check_fails --status 1 "add --name refuses a name in use" imgblk add --name web -t null --size 1M
check "del --tab db" imgblk del --tab db
if [ -z "$(id_of db)" ] && [ -n "$(id_of web)" ]; then ok "db gone, web still there"; else
	not_ok "db gone, web still there"; imgblk list | sed 's/^/# /'; fi
check "del --tab" imgblk del --tab
n=$(imgblk list --json | grep -c '"id"')
if [ "$n" = 0 ]; then ok "no device left"; else not_ok "no device left ($n)"; fi

# At boot one broken entry must not keep the others down: a missing image
# and a bad line are reported by their lines, web and db still come up.
cat > "$TAB.broken" <<TAB
web     $T_TMP/web.qcow2      format=qcow2
gone    $T_TMP/missing.qcow2
bad line with extra fields
db      $T_TMP/db.raw         readonly
TAB
IMGBLK_TAB=$TAB.broken imgblk add --tab > "$T_TMP/broken.out" 2> "$T_TMP/broken.err"
rc=$?
if [ $rc = 1 ] && grep -q "^imgblk: $TAB.broken:2: .*missing.qcow2" "$T_TMP/broken.err" &&
   grep -q "^imgblk: $TAB.broken:3: " "$T_TMP/broken.err"; then
	ok "add --tab: the missing image and the bad line are reported by line, status 1"
else
	not_ok "add --tab reports the broken entries (status $rc)"; diag_file "$T_TMP/broken.err"
fi
if [ -n "$(id_of web)" ] && [ -n "$(id_of db)" ] && [ -z "$(id_of gone)" ]; then
	ok "the good entries around them came up"
else
	not_ok "the good entries around them came up"; imgblk list | sed 's/^/# /'
fi
check_fails --status 1 "del --tab deletes them, and still reports the bad line" \
	env IMGBLK_TAB="$TAB.broken" imgblk del --tab
n=$(imgblk list --json | grep -c '"id"')
if [ "$n" = 0 ]; then ok "no device left after del --tab"; else
	not_ok "no device left after del --tab ($n)"; fi

# imgblk@web.service: the foreground server reports ready with its nodes.
notify-recv "$T_TMP/notify" 2 60 imgblk add --foreground --recoverable --tab web \
	> "$T_TMP/notify.out" 2> "$T_TMP/fg.err"
rc=$?
if [ $rc = 0 ]; then ok "READY=1 came when /dev/ublkbN, p1 and p2 opened"; else
	not_ok "READY=1 came when the nodes opened (status $rc)"; diag_file "$T_TMP/notify.out"
	diag_file "$T_TMP/fg.err"; fi
PID=$(sed -n 's/^pid //p' "$T_TMP/notify.out")
DEV=$(sed -n 's/^ready //p' "$T_TMP/notify.out")
[ -n "$PID" ] && [ -n "$DEV" ] || bail "no foreground server"
check "mkfs.ext4 on ${DEV}p1" mkfs.ext4 -q -F "${DEV}p1"
check "mount ${DEV}p1" mount -t ext4 "${DEV}p1" "$MNT"
check "write a file" sh -c "echo before > '$MNT/f' && sync"

# The server dies; "systemd" runs the same command again.
kill -9 "$PID"
sleep 1
notify-recv "$T_TMP/notify2" 2 60 imgblk add --foreground --recoverable --tab web \
	> "$T_TMP/notify2.out" 2> "$T_TMP/fg2.err"
rc=$?
if [ $rc = 0 ] && grep -q "^ready $DEV\$" "$T_TMP/notify2.out"; then
	ok "the restarted server recovered $DEV and reported ready"
else
	not_ok "the restarted server recovered $DEV (status $rc)"; diag_file "$T_TMP/notify2.out"
	diag_file "$T_TMP/fg2.err"
fi
PID=$(sed -n 's/^pid //p' "$T_TMP/notify2.out")
check "the mounted filesystem carries on" sh -c "grep -q before '$MNT/f' && echo after >> '$MNT/f' && sync"
check "umount" umount "$MNT"
if [ -n "$PID" ]; then
	kill "$PID"
	if wait_gone "$DEV" 20; then ok "SIGTERM to the foreground server deletes $DEV"; else
		not_ok "SIGTERM to the foreground server deletes $DEV"; fi
fi
done_testing
