#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# soak.sh - long runs kept out of make check, in the VM: kill -9 under
# load for many rounds (-r, default 25 per format), and PARTITION_ROUNDS
# (default 50) add/del rounds of tests/vm/partitions.sh.
#
#   scripts/soak.sh [-b BUILD_DIR] [-r ROUNDS]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=$REPO/build
ROUNDS=25
PARTITION_ROUNDS=${PARTITION_ROUNDS:-50}
while getopts "b:r:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	h) sed -n '4,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: -r wants a positive number" >&2; exit 2; }
[[ $PARTITION_ROUNDS =~ ^[1-9][0-9]*$ ]] ||
	{ echo "soak.sh: PARTITION_ROUNDS wants a positive number" >&2; exit 2; }
share=$(mktemp -d)
trap 'rm -rf "$share"' EXIT
echo "$ROUNDS" > "$share/kill9.rounds"
echo "$PARTITION_ROUNDS" > "$share/partitions.rounds"
exec "$REPO/scripts/vm/run.sh" -b "$BUILD_DIR" -s "$share" -t $((ROUNDS * 120 + 300)) \
	"$REPO/tests/vm/kill9.sh" "$REPO/tests/vm/partitions.sh"
