#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-bitmap-random.sh - seeded random writes, write zeroes and discards
# through `imgblk io`, with two bitmaps (64K and 4K granularity) enabled
# and disabled at random points by `imgblk bitmap`, checked against a
# model (a bitmap marks every granule a request touches while it is
# enabled) and against QEMU doing the same on a copy.  SEED=N picks the
# sequence (default: three fixed seeds); ROUNDS=N its length.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io python3

SEEDS=${SEED:-"1 7 42"}
ROUNDS=${ROUNDS:-12}
SIZE=$((48 << 20))

for seed in $SEEDS; do
	A=$T_TMP/a$seed.qcow2
	Q=$T_TMP/q$seed.qcow2
	qemu-img create -q -f qcow2 "$A" $SIZE
	"$IMGBLK" bitmap --add "$A" big
	"$IMGBLK" bitmap --add -g 4K "$A" small
	cp "$A" "$Q"
	# One line per round: the bitmap toggles, then the io commands.
	python3 - "$seed" "$ROUNDS" $SIZE > "$T_TMP/plan" <<'EOF'
import random, sys
seed, rounds, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
for _ in range(rounds):
    toggles = []
    for b in ("big", "small"):
        if r.random() < 0.3:
            toggles.append(("--enable" if r.random() < 0.5 else "--disable") + ":" + b)
    cmds = []
    for _ in range(r.randint(1, 6)):
        kind = r.choice(["write", "write", "zero", "discard"])
        length = r.choice([512, 4096, 5000 // 512 * 512, 65536, 200 * 1024, 3 << 20])
        off = r.randrange(0, (size - length) // 512) * 512
        cmds.append({"write": "write -P %d %d %d" % (r.randrange(256), off, length),
                     "zero": "write -z %d %d" % (off, length),
                     "discard": "discard %d %d" % (off, length)}[kind])
    print(" ".join(toggles) + "|" + "|".join(cmds))
EOF
	fail=0
	while IFS='|' read -r toggles rest; do
		for t in $toggles; do
			"$IMGBLK" bitmap "${t%%:*}" "$A" "${t##*:}" || fail=1
			qemu-img bitmap "${t%%:*}" "$Q" "${t##*:}" || fail=1
		done
		args=()
		IFS='|' read -r -a cmds <<< "$rest"
		for c in "${cmds[@]}"; do args+=(-c "$c"); done
		"$IMGBLK" io -f qcow2 "${args[@]}" "$A" > /dev/null || fail=1
		qemu-io -f qcow2 "${args[@]}" "$Q" > /dev/null || fail=1
	done < "$T_TMP/plan"
	if [ $fail = 0 ]; then ok "seed $seed: every command ran"; else
		not_ok "seed $seed: a command failed"; fi
	check "seed $seed: qemu-img check clean" qemu-img check -q -f qcow2 "$A"
	for b in big small; do
		"$IMGBLK" map -f qcow2 --bitmap $b --output=json "$A" > "$T_TMP/map.$b"
		check "seed $seed: bitmap $b equals the model and QEMU's" python3 - "$T_TMP/plan" \
			"$T_TMP/map.$b" $b $SIZE "$Q" <<'EOF'
import json, subprocess, sys
plan, mapf, name, size, qimg = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
gran = 65536 if name == "big" else 4096
enabled, dirty = True, set()
for line in open(plan):
    toggles, rest = line.rstrip("\n").split("|", 1)
    for t in toggles.split():
        op, b = t.split(":")
        if b == name:
            enabled = op == "--enable"
    for c in rest.split("|"):
        w = c.split()
        off, length = int(w[-2]), int(w[-1])
        if enabled:
            dirty.update(range(off // gran, (off + length - 1) // gran + 1))
got = set()
for e in json.load(open(mapf)):
    if e["dirty"]:
        assert e["start"] % gran == 0, e
        got.update(range(e["start"] // gran, (e["start"] + e["length"] + gran - 1) // gran))
if got != dirty:
    print("imgblk differs from the model: extra", sorted(got - dirty)[:10],
          "missing", sorted(dirty - got)[:10])
    sys.exit(1)
# QEMU on the copy: the same granules, through its own bitmap code.
out = subprocess.run(["qemu-img", "info", "--output=json", qimg], capture_output=True,
                     text=True, check=True).stdout
if name not in [b["name"] for b in json.load(__import__("io").StringIO(out))["format-specific"]["data"]["bitmaps"]]:
    sys.exit("QEMU lost the bitmap")
EOF
	done
	# QEMU's extents of the copy against imgblk's, granule for granule.
	for b in big small; do
		rm -f "$T_TMP/s"
		timeout 30 qemu-nbd -r -f qcow2 -B $b -k "$T_TMP/s" "$Q" 2> /dev/null &
		pid=$!
		for i in $(seq 100); do [ -S "$T_TMP/s" ] && break; sleep 0.05; done
		timeout 30 qemu-img map --output=json --image-opts \
			"driver=nbd,server.type=unix,server.path=$T_TMP/s,x-dirty-bitmap=qemu:dirty-bitmap:$b" \
			> "$T_TMP/qmap.$b"
		wait $pid 2> /dev/null
		check "seed $seed: bitmap $b: QEMU's copy marks the same bytes" python3 - \
			"$T_TMP/map.$b" "$T_TMP/qmap.$b" <<'EOF'
import json, sys
def runs(f, key):
    out = []
    for e in json.load(open(f)):
        if key(e):
            if out and out[-1][1] == e["start"]:
                out[-1][1] += e["length"]
            else:
                out.append([e["start"], e["start"] + e["length"]])
    return out
a = runs(sys.argv[1], lambda e: e["dirty"])
b = runs(sys.argv[2], lambda e: not e["data"])
if a != b:
    print("imgblk", a[:8], "\nQEMU", b[:8])
    sys.exit(1)
EOF
	done
done

done_testing
