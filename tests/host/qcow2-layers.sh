#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-layers.sh - the qcow2 engine's files call only down the layer
# order of targets/qcow2/README.md ("Layers"): no file names a function
# defined in a file later in the order.  A function is a file's when the
# file defines it, or, for a static inline of qcow2.h, when it sits in
# that file's section (/* file.c */).  Comments are ignored; struct and
# enum tags are not calls.  One TAP line per file.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need python3

SRC=$(dirname "$0")/../../targets/qcow2

python3 - "$SRC" > "$T_TMP/res" <<'EOF'
import glob, os, re, sys

d = sys.argv[1]
# Position in the order; files of one row share a number.
order = [["qcow2.h", "header.c", "crypt.c"], ["overlap.c"], ["cache.c"], ["refcount.c"],
         ["alloc.c"], ["cluster.c"], ["cow.c", "compress.c"], ["flush.c"], ["bitmap.c"], ["io.c"],
         ["snapshot.c", "check.c", "resize.c", "amend.c", "backing.c", "create.c"],
         ["qcow2.c"]]
rank = {f: i for i, row in enumerate(order) for f in row}

def code(s):
    return re.sub(r"/\*.*?\*/", " ", s, flags=re.S)

owner, text = {}, {}
for path in sorted(glob.glob(os.path.join(d, "*.c"))):
    f = os.path.basename(path)
    if f not in rank:
        print("new %s: not in the order" % f)
        rank[f] = -1
    s = open(path).read()
    for m in re.finditer(r"^(?!static)\w[\w \*]*?\b(qcow2_\w+)\(", s, re.M):
        owner[m.group(1)] = f
    text[f] = code(s)
sec, inline = "qcow2.h", None
for line in open(os.path.join(d, "qcow2.h")):
    m = re.match(r"/\* (\w+\.c) \*/", line)
    if m:
        sec = m.group(1)
    m = re.match(r"static inline .*?\b(qcow2_\w+)\(", line)
    if m:
        owner[m.group(1)] = sec
        inline = sec
    if inline:
        text[inline] = text.get(inline, "") + code(line)
    if line.startswith("}"):
        inline = None
for f in sorted(text):
    up = sorted({"%s (%s)" % (n, owner[n])
                 for n in re.findall(r"(?<!struct )(?<!enum )\b(qcow2_\w+)\b", text[f])
                 if n in owner and rank[owner[n]] > rank[f]})
    print("%s %s" % (f, " ".join(up) if up else "-"))
EOF
[ -s "$T_TMP/res" ] || { echo "Bail out! the scan printed nothing"; exit 1; }
while read -r f calls; do
	if [ "$f" = new ]; then not_ok "$calls"; continue; fi
	if [ "$calls" = - ]; then ok "$f calls nothing above it"
	else not_ok "$f calls nothing above it"; echo "# calls up: $calls"; fi
done < "$T_TMP/res"

done_testing
