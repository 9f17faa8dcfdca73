#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# control.sh - a device's control channel (docs/control.md): the socket
# beside the state file, mode 0600 and its owner's, answering
# `imgblk qmp` (a command, an unknown one, a malformed line through
# --raw, many clients at once), announcing SHUTDOWN to a watcher, and
# gone after del; a killed server's leftover is removed by del; a user's
# device has its socket in the user's directory, closed to other users.
. "$(dirname "$0")/lib.sh"

need_imgblk
RUN=/run/imgblk

if ! add_dev "add a null device" -t null --size 64M; then
	bail "no device"
fi
S=$RUN/$DEV_ID.sock
if [ -S "$S" ]; then
	ok "$S is a socket"
else
	not_ok "$S is a socket"
	ls -la "$RUN" | sed 's/^/# /'
fi
m=$(stat -c '%a %u' "$S" 2>/dev/null)
[ "$m" = "600 0" ] && ok "it is mode 600, owned by root" ||
	not_ok "it is mode 600, owned by root (got '$m')"
# $RUN is 0755: only the socket's own mode keeps other users out.
if [ "$(su other -s /bin/sh -c 'id -u' 2>/dev/null)" = 1000 ]; then
	if su other -s /bin/sh -c "imgblk qmp -s $S query-version" > "$T_TMP/v" 2>&1; then
		not_ok "another user cannot connect to root's device"
	else
		ok "another user cannot connect to root's device: $(cat "$T_TMP/v")"
	fi
else
	skip "another user cannot connect to root's device" "no user other"
fi

if imgblk qmp -n "$DEV_ID" query-version > "$T_TMP/v" 2> "$T_TMP/e" &&
	grep -q '"package":"imgblk ' "$T_TMP/v"; then
	ok "query-version: $(cat "$T_TMP/v")"
else
	not_ok "query-version"
	diag_file "$T_TMP/v"
	diag_file "$T_TMP/e"
fi
if imgblk qmp -n "$DEV_ID" query-status > "$T_TMP/v" 2>&1 &&
	grep -q '"running":true' "$T_TMP/v"; then
	ok "query-status: running"
else
	not_ok "query-status: running"
	diag_file "$T_TMP/v"
fi
imgblk qmp -n "$DEV_ID" no-such-command > "$T_TMP/v" 2> "$T_TMP/e"
rc=$?
if [ $rc = 1 ] && grep -q 'CommandNotFound: The command no-such-command has not been found' "$T_TMP/e"; then
	ok "an unknown command: status 1, CommandNotFound"
else
	not_ok "an unknown command: status 1, CommandNotFound (status $rc)"
	diag_file "$T_TMP/e"
fi
imgblk qmp -n "$DEV_ID" query-status '{"verbose": true}' > "$T_TMP/v" 2> "$T_TMP/e"
rc=$?
if [ $rc = 1 ] && grep -q "Parameter 'verbose' is unexpected" "$T_TMP/e"; then
	ok "an unknown argument: status 1, GenericError"
else
	not_ok "an unknown argument: status 1, GenericError (status $rc)"
	diag_file "$T_TMP/e"
fi

# The lines as a client sends them, a malformed one among them.
printf '%s\n' '{"execute": }' '{"execute": "query-version"}' \
	'{"execute": "qmp_capabilities"}' '{"execute": "query-version", "id": 7}' |
	timeout 10 imgblk qmp -n "$DEV_ID" --raw > "$T_TMP/raw" 2>&1
if [ "$(wc -l < "$T_TMP/raw")" = 5 ] &&
	sed -n 1p "$T_TMP/raw" | grep -q '^{"QMP":' &&
	sed -n 2p "$T_TMP/raw" | grep -q '"desc":"Invalid JSON syntax' &&
	sed -n 3p "$T_TMP/raw" | grep -q '"class":"CommandNotFound","desc":"Expecting capabilities' &&
	sed -n 4p "$T_TMP/raw" | grep -q '^{"return":{}}$' &&
	sed -n 5p "$T_TMP/raw" | grep -q '"id":7}$'; then
	ok "raw lines: greeting, malformed, before negotiation, negotiation, reply with its id"
else
	not_ok "raw lines: greeting, malformed, before negotiation, negotiation, reply with its id"
	diag_file "$T_TMP/raw"
fi
# A line over 64 KiB, then a good one: refused, then served.
{
	printf '{"execute": "qmp_capabilities"}\n{"x": "'
	head -c 70000 /dev/zero | tr '\0' a
	printf '"}\n{"execute": "query-status", "id": "after"}\n'
} | timeout 10 imgblk qmp -n "$DEV_ID" --raw > "$T_TMP/raw" 2>&1
if grep -q 'Line longer than 65536 bytes' "$T_TMP/raw" &&
	tail -n 1 "$T_TMP/raw" | grep -q '"id":"after"'; then
	ok "a line over 64 KiB is refused and the next one served"
else
	not_ok "a line over 64 KiB is refused and the next one served"
	diag_file "$T_TMP/raw"
fi

# Twenty clients at once.
i=0
while [ $i -lt 20 ]; do
	imgblk qmp -n "$DEV_ID" query-version > "$T_TMP/many.$i" 2>&1 &
	i=$((i + 1))
done
wait
n=$(cat "$T_TMP"/many.* | grep -c '"package":"imgblk ')
[ "$n" = 20 ] && ok "20 clients at once all answered" ||
	not_ok "20 clients at once all answered (got $n)"

# A watcher sees SHUTDOWN when the device is deleted, then the socket is gone.
imgblk qmp -n "$DEV_ID" --events > "$T_TMP/ev" 2>&1 &
watcher=$!
sleep 1
del_dev "del the device" "$DEV_ID"
i=0
while kill -0 $watcher 2>/dev/null && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
if kill -0 $watcher 2>/dev/null; then
	not_ok "the watcher ends when the server goes"
	kill $watcher
else
	wait $watcher
	rc=$?
	[ $rc = 0 ] && ok "the watcher ends when the server goes" ||
		not_ok "the watcher ends when the server goes (status $rc)"
fi
if grep -q '^{"event":"SHUTDOWN","data":{},"timestamp":{"seconds":[0-9]*,"microseconds":[0-9]*}}$' "$T_TMP/ev"; then
	ok "it saw the SHUTDOWN event"
else
	not_ok "it saw the SHUTDOWN event"
	diag_file "$T_TMP/ev"
fi
[ ! -e "$S" ] && ok "the socket is gone after del" || not_ok "the socket is gone after del"

# A killed server leaves its socket; del removes it with the state file.
if add_dev "add another" -t null --size 64M; then
	S=$RUN/$DEV_ID.sock
	imgblk list -n "$DEV_ID" > "$T_TMP/list" 2>&1
	pid=$(awk 'NR == 2 { print $6 }' "$T_TMP/list")
	kill -9 "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -S "$S" ] && ok "a killed server leaves its socket" ||
		not_ok "a killed server leaves its socket"
	imgblk qmp -n "$DEV_ID" query-version > "$T_TMP/v" 2> "$T_TMP/e"
	rc=$?
	if [ $rc = 1 ] && grep -q 'does not answer' "$T_TMP/e"; then
		ok "qmp on it fails: $(cat "$T_TMP/e")"
	else
		not_ok "qmp on a killed server fails clearly (status $rc)"
		diag_file "$T_TMP/e"
	fi
	del_dev "del it" "$DEV_ID"
	[ ! -e "$S" ] && ok "del removed the leftover socket" ||
		not_ok "del removed the leftover socket"
fi

# A user's device: the socket is in the user's directory and theirs.
if ! command -v su > /dev/null 2>&1 || ! command -v uevent > /dev/null 2>&1 ||
	[ "$(su nobody -s /bin/sh -c 'id -u' 2>/dev/null)" != 65534 ] ||
	[ "$(su other -s /bin/sh -c 'id -u' 2>/dev/null)" != 1000 ]; then
	skip "a user's device has its own socket" "no su, uevent or users nobody and other"
	done_testing
fi
allow_users
U=$T_TMP/nobody
mkdir -p "$U"
chown nobody "$U"
chmod 755 "$T_TMP"
if su nobody -s /bin/sh -c "imgblk add -t null --size 16M" > "$T_TMP/out" 2> "$T_TMP/err" < /dev/null; then
	ID=$(sed -n 's,^/dev/ublkb,,p' "$T_TMP/out")
	on_exit "su nobody -s /bin/sh -c 'imgblk del -a' >/dev/null 2>&1"
	S=/tmp/imgblk-65534/$ID.sock
	m=$(stat -c '%a %u' "$S" 2>/dev/null)
	[ "$m" = "600 65534" ] && ok "nobody's device has its socket $S, mode 600, nobody's" ||
		not_ok "nobody's device has its socket $S, mode 600, nobody's (got '$m')"
	if su nobody -s /bin/sh -c "imgblk qmp -n $ID query-status" > "$T_TMP/v" 2>&1 &&
		grep -q '"running":true' "$T_TMP/v"; then
		ok "nobody talks to it"
	else
		not_ok "nobody talks to it"
		diag_file "$T_TMP/v"
	fi
	if su other -s /bin/sh -c "imgblk qmp -s $S query-status" > "$T_TMP/v" 2>&1; then
		not_ok "another user cannot"
	else
		ok "another user cannot: $(cat "$T_TMP/v")"
	fi
	check "nobody deletes it" su nobody -s /bin/sh -c "imgblk del -n $ID"
	[ ! -e "$S" ] && ok "its socket is gone" || not_ok "its socket is gone"
else
	not_ok "nobody adds a device"
	diag_file "$T_TMP/err"
fi
done_testing
