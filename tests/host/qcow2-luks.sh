#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-luks.sh - LUKS-encrypted qcow2 against QEMU 7.2, both ways.
#
# 1. Images qemu-img makes (default aes-256-xts-plain64/sha256, and
#    aes-128-xts, aes-256-cbc-essiv:sha256, aes-256-cbc-plain with sha1,
#    sha512) with patterns qemu-io wrote: imgblk io reads the patterns,
#    writes its own (partial sectors, COW of partial clusters), and
#    qemu-io reads them back; qemu-img check stays clean.
# 2. imgblk create -o encrypt.*: qemu-io reads what imgblk wrote, info
#    matches qemu-img info line for line, no plaintext of the pattern is
#    in the file.
# 3. Wrong passphrase and missing key: one line, exit 1.
# 4. An encrypted image over an encrypted backing file under another key;
#    convert out of and into encrypted images.
# 5. Hostile headers: bad magic, a key slot past the header area, the
#    area past end of file, absurd iteration counts: refused within 25 s.
# 6. Legacy AES (crypt_method 1), made by qemu-img: read by convert and
#    info, never written.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
IMGBLK=$(realpath "$IMGBLK")
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io timeout python3
cd "$T_TMP" || bail "no temporary directory"

printf 'correct horse' > k1
printf 'battery staple' > k2
printf 'wrong' > kw

# qemu-img's LUKS creation measures PBKDF2 with thread CPU time, which
# reads 0 now and then under some hypervisors ("Unable to get accurate
# CPU usage"): retry a few times.
qcreate() {
	local i
	for i in 1 2 3 4 5 6; do
		qemu-img create -q -f qcow2 --object secret,id=s0,file=k1 "$@" 2> qcreate.err && return 0
	done
	cat qcreate.err >&2
	return 1
}

# qio_enc KEYFILE IMG CMD...: qemu-io on an encrypted qcow2; fails on a
# pattern mismatch or an I/O error.
qio_enc() {
	local key=$1 img=$2 c
	shift 2
	local args=()
	for c in "$@"; do args+=(-c "$c"); done
	qemu-io --object secret,id=q0,file="$key" \
		--image-opts "driver=qcow2,file.filename=$img,encrypt.key-secret=q0" "${args[@]}" \
		> qio.out 2>&1
	cat qio.out
	! grep -q -e 'Pattern verification failed' -e 'failed' -e 'Could not' qio.out
}

# iio KEYFILE IMG CMD...: imgblk io on an encrypted qcow2.
iio() {
	local key=$1 img=$2 c
	shift 2
	local args=()
	for c in "$@"; do args+=(-c "$c"); done
	"$IMGBLK" io --key-file "$key" "${args[@]}" "$img"
}

qcheck() {
	qemu-img check --object secret,id=q0,file="$1" \
		--image-opts "driver=qcow2,file.filename=$2,encrypt.key-secret=q0"
}

VARIANTS=(
	"default:"
	"aes128xts:encrypt.cipher-alg=aes-128"
	"cbcessiv:encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256"
	"cbcplain-sha1:encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain,encrypt.hash-alg=sha1"
	"sha512:encrypt.hash-alg=sha512"
)
M10=$((10 * 1048576 + 512))
M5=$((5 * 1048576 + 512))
M3=$((3 * 1048576 + 102400))

for v in "${VARIANTS[@]}"; do
	name=${v%%:*}
	extra=${v#*:}
	img=q-$name.qcow2
	if ! qcreate -o "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=20${extra:+,$extra}" "$img" 16M; then
		not_ok "$name: qemu-img creates the image"
		continue
	fi
	check "$name: qemu-io writes patterns" qio_enc k1 "$img" \
		'write -P 0xab 0 128k' 'write -P 0xcd 1M 4k' 'write -P 0x11 70k 3k'
	check "$name: imgblk reads QEMU's patterns" iio k1 "$img" \
		'read -P 0xab 0 64k' 'read -P 0xcd 1M 4k' 'read -P 0x11 70k 3k' 'read -P 0 2M 64k' \
		'read -P 0xab 73k 55k'
	check "$name: imgblk writes (in place, COW, partial sectors)" iio k1 "$img" \
		'write -P 0x77 4k 8k' 'write -P 0x66 3M 100k' 'write -P 0x55 1000 100' \
		"write -P 0x44 $M10 3k"
	check "$name: qemu-io reads imgblk's patterns" qio_enc k1 "$img" \
		'read -P 0x77 4k 8k' 'read -P 0xab 12k 52k' 'read -P 0x66 3M 100k' \
		'read -P 0x55 1000 100' 'read -P 0xab 0 1000' "read -P 0x44 $M10 3k" \
		'read -P 0 10M 512' "read -P 0 $M3 28k"
	check "$name: qemu-img check is clean" qcheck k1 "$img"
	check "$name: imgblk check is clean" "$IMGBLK" check --key-file k1 "$img"
done

# 2. imgblk-created images.
for v in "${VARIANTS[@]}"; do
	name=${v%%:*}
	extra=${v#*:}
	img=i-$name.qcow2
	check "$name: imgblk create" "$IMGBLK" create -q -f qcow2 --object secret,id=s0,file=k1 \
		-o "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=20${extra:+,$extra}" \
		"$img" 16M
	check "$name: imgblk writes its image" iio k1 "$img" \
		'write -P 0x3c 0 1M' "write -P 0x3d $M5 7k"
	check "$name: qemu-io reads imgblk's image" qio_enc k1 "$img" \
		'read -P 0x3c 0 1M' "read -P 0x3d $M5 7k" 'read -P 0 5M 512' 'read -P 0 8M 1M'
	check "$name: qemu-img check of imgblk's image is clean" qcheck k1 "$img"
	if "$IMGBLK" info "$img" > info.i 2>&1 && qemu-img info "$img" > info.q 2>&1 &&
	   diff info.i info.q > info.diff; then
		ok "$name: info matches qemu-img info"
	else
		not_ok "$name: info matches qemu-img info"; diag_file info.diff
	fi
	if grep -q "$(printf '\x3c%.0s' $(seq 64))" "$img"; then
		not_ok "$name: no plaintext of the pattern in the file"
	else
		ok "$name: no plaintext of the pattern in the file"
	fi
done
jenc() {
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps([d["encrypted"], d["format-specific"]["data"]["encrypt"]], sort_keys=True))'
}
"$IMGBLK" info --output=json q-cbcessiv.qcow2 | jenc > j.i 2>&1
qemu-img info --output=json q-cbcessiv.qcow2 | jenc > j.q 2>&1
check "info --output=json: encrypted and encrypt as qemu-img's" diff j.i j.q

# 3. Keys.
check_fails --status 1 "wrong passphrase: exit 1" iio kw q-default.qcow2 'read 0 4k'
cp check.out wrong.out
check "wrong passphrase: one clear line" \
	grep -qx 'imgblk: q-default.qcow2: Invalid password, cannot unlock any keyslot' wrong.out
check_fails --status 1 "no key: exit 1" "$IMGBLK" io -c 'read 0 4k' q-default.qcow2
cp check.out nokey.out
check "no key: says how to give one" grep -q -- '--key-file' nokey.out
check "info needs no key" "$IMGBLK" info q-default.qcow2

# 4. Backing chains under two keys, convert both ways.
check "encrypted base" "$IMGBLK" create -q -f qcow2 --object secret,id=s0,file=k1 \
	-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=20 base.qcow2 16M
check "base written" iio k1 base.qcow2 'write -P 0xa1 0 256k'
check "encrypted overlay under another key" "$IMGBLK" create -q -f qcow2 -b base.qcow2 -F qcow2 \
	--object secret,id=s1,file=k2 -o encrypt.format=luks,encrypt.key-secret=s1,encrypt.iter-time=20 \
	top.qcow2 16M
check "overlay: COW from the encrypted base" "$IMGBLK" io --key-file k2 --key-file base.qcow2=k1 \
	-c 'write -P 0xb2 4k 4k' -c 'read -P 0xa1 0 4k' -c 'read -P 0xb2 4k 4k' \
	-c 'read -P 0xa1 8k 56k' top.qcow2
check "QEMU reads the chain" qemu-io --object secret,id=a,file=k1 --object secret,id=b,file=k2 \
	--image-opts "driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=b,backing.encrypt.key-secret=a" \
	-c 'read -P 0xa1 0 4k' -c 'read -P 0xb2 4k 4k' -c 'read -P 0xa1 8k 56k'
check_fails --status 1 "the base's key is needed too" "$IMGBLK" io --key-file k2 -c 'read 0 4k' top.qcow2
check "convert out of an encrypted chain" "$IMGBLK" convert --key-file k2 --key-file base.qcow2=k1 \
	-O raw top.qcow2 out.raw
check "converted content" qemu-io -f raw -c 'read -P 0xa1 0 4k' -c 'read -P 0xb2 4k 4k' out.raw
check "convert into an encrypted image" "$IMGBLK" convert -O qcow2 --object secret,id=s9,file=k2 \
	-o encrypt.format=luks,encrypt.key-secret=s9,encrypt.iter-time=20 out.raw enc2.qcow2
check "QEMU compares it equal" qemu-img compare --object secret,id=s9,file=k2 --image-opts \
	"driver=qcow2,file.filename=enc2.qcow2,encrypt.key-secret=s9" "driver=raw,file.filename=out.raw"
check_fails "convert -c into an encrypted image is refused" "$IMGBLK" convert -c -O qcow2 \
	--object secret,id=s9,file=k2 -o encrypt.format=luks,encrypt.key-secret=s9,encrypt.iter-time=20 \
	out.raw enc3.qcow2

# 5. Hostile headers.  The LUKS header starts where the extension points.
ext_pos() {	# the encryption extension's place in the header (type 0x0537be77)
	local p=112
	while [ "$(peek "$1" $p '>I')" != $((0x0537be77)) ]; do
		p=$(( p + 8 + ($(peek "$1" $((p + 4)) '>I') + 7) / 8 * 8 ))
		[ $p -lt 4096 ] || return 1
	done
	echo $p
}
luks_off() { peek "$1" $(( $(ext_pos "$1") + 8 )) '>Q'; }
hostile() {
	local d=$1 re=$2 f=$3 rc t0=$SECONDS
	timeout 30 "$IMGBLK" io --key-file k1 -c 'read 0 4k' "$f" > out 2> err
	rc=$?
	if [ $rc = 1 ] && grep -qiE "$re" err && [ $((SECONDS - t0)) -le 25 ]; then
		ok "$d"
	else
		not_ok "$d"; diag "status $rc after $((SECONDS - t0)) s"; diag_file err
	fi
}
fresh() { cp i-default.qcow2 "h-$1.qcow2"; echo "h-$1.qcow2"; }
f=$(fresh magic); o=$(luks_off "$f"); poke "$f" "$o" '>B' 0
hostile "bad LUKS magic" "not in LUKS format" "$f"
f=$(fresh slot); o=$(luks_off "$f"); poke "$f" $((o + 208 + 40)) '>I' 100000
hostile "key slot past the header area" "outside" "$f"
f=$(fresh iters); o=$(luks_off "$f"); poke "$f" $((o + 208 + 4)) '>I' 0xfffffff0
hostile "absurd key slot iterations: refused, bounded time" "iteration" "$f"
f=$(fresh mkiters); o=$(luks_off "$f"); poke "$f" $((o + 164)) '>I' 0xfffffff0
hostile "absurd master key iterations: refused, bounded time" "iteration" "$f"
f=$(fresh stripes); o=$(luks_off "$f"); poke "$f" $((o + 208 + 44)) '>I' 1
hostile "stripes != 4000" "stripes" "$f"
f=$(fresh area); p=$(ext_pos "$f"); poke "$f" $((p + 8)) '>Q' $((1 << 40))
hostile "LUKS area past end of file" "past the end" "$f"
f=$(fresh cipher); o=$(luks_off "$f"); poke "$f" $((o + 8)) '>I' 0x74776f66
hostile "unsupported cipher: refused by name" "cipher" "$f"

# 6. Legacy AES.
if qemu-img create -q -f qcow2 --object secret,id=s0,file=k1 \
	-o encrypt.format=aes,encrypt.key-secret=s0 aes.qcow2 4M 2> /dev/null &&
   qio_enc k1 aes.qcow2 'write -P 0x5e 0 64k' 'write -P 0x5f 1M 4k' > /dev/null; then
	check "legacy AES: convert reads it" "$IMGBLK" convert --key-file k1 -O raw aes.qcow2 aes.raw
	check "legacy AES: content" qemu-io -f raw -c 'read -P 0x5e 0 64k' -c 'read -P 0x5f 1M 4k' aes.raw
	"$IMGBLK" info aes.qcow2 > aes.i 2>&1
	qemu-img info aes.qcow2 > aes.q 2>&1
	check "legacy AES: info as qemu-img's" diff aes.i aes.q
	check_fails --status 1 "legacy AES: writes refused" iio k1 aes.qcow2 'write 0 4k'
	cp check.out aes.out
	check "legacy AES: says why" grep -q 'AES' aes.out
else
	skip "legacy AES" "qemu-img cannot create encrypt.format=aes images"
fi

done_testing
