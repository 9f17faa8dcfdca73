// SPDX-License-Identifier: GPL-2.0
/*
 * LUKS1 headers (parse, unlock, format) and per-sector AES ciphers, for
 * encrypted images.  The format is the LUKS1 on-disk specification as
 * QEMU's crypto/block-luks.c writes it: a 592-byte header, eight key
 * slots of anti-forensic split material, PBKDF2 everywhere.
 *
 * Why OpenSSL's libcrypto and not libcryptsetup: libcryptsetup would need
 * the header copied to a file, and on Debian 12 it decrypts key material
 * through the kernel's AF_ALG sockets (or a temporary dm-crypt device,
 * which needs root), runs whatever iteration count a header asks for,
 * and cannot take a key file for one image of a chain apart from the
 * next.  What LUKS1 needs beyond the ciphers is small: PBKDF2
 * (PKCS5_PBKDF2_HMAC), a hash (EVP_Digest*), and the AF merge/split,
 * a loop of XORs and hashes.  libcrypto has every one of them, uses
 * AES-NI for XTS and CBC (about 4-6 GB/s per core), is in every Debian
 * install (libssl3), and lets us bound the work a hostile header asks
 * for before doing any.  All cryptography is the library's; this file
 * only lays bytes out.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "luks.h"
#include "util.h"

static const uint8_t luks_magic[6] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };

/* The on-disk header (LUKS1 spec); integers big-endian. */
struct luks_hdr_disk {
	uint8_t magic[6];		/*   0 */
	uint16_t version;		/*   6: 1 */
	char cipher_name[32];		/*   8 */
	char cipher_mode[32];		/*  40 */
	char hash_spec[32];		/*  72 */
	uint32_t payload_offset;	/* 104: sectors */
	uint32_t key_bytes;		/* 108 */
	uint8_t mk_digest[20];		/* 112 */
	uint8_t mk_digest_salt[32];	/* 132 */
	uint32_t mk_digest_iter;	/* 164 */
	char uuid[40];			/* 168 */
	struct {
		uint32_t active;	/* 0 */
		uint32_t iterations;	/* 4 */
		uint8_t salt[32];	/* 8 */
		uint32_t key_material_offset; /* 40: sectors */
		uint32_t stripes;	/* 44 */
	} __attribute__((packed)) slot[LUKS_NUM_SLOTS]; /* 208 */
} __attribute__((packed));

_Static_assert(sizeof(struct luks_hdr_disk) == LUKS_HDR_BYTES, "LUKS1 header is 592 bytes");

void *luks_key_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Best effort: an unprivileged user may have no memlock allowance. */
	mlock(p, len);
	madvise(p, len, MADV_DONTDUMP);
	return p;
}

void luks_key_free(void *p, size_t len)
{
	if (!p)
		return;
	explicit_bzero(p, len);
	munlock(p, len);
	munmap(p, len);
}

static const EVP_MD *luks_md(const char *name)
{
	static const char *const ok[] = { "sha1", "sha224", "sha256", "sha384", "sha512" };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ok); i++)
		if (!strcmp(name, ok[i]))
			return EVP_get_digestbyname(name);
	return NULL;
}

/* The AES cipher for @mode with @key_bytes of key (both halves for XTS). */
static const EVP_CIPHER *luks_evp(const char *mode, unsigned int key_bytes)
{
	if (!strcmp(mode, "xts")) {
		if (key_bytes == 32)
			return EVP_aes_128_xts();
		if (key_bytes == 64)
			return EVP_aes_256_xts();
	} else if (!strcmp(mode, "cbc")) {
		if (key_bytes == 16)
			return EVP_aes_128_cbc();
		if (key_bytes == 24)
			return EVP_aes_192_cbc();
		if (key_bytes == 32)
			return EVP_aes_256_cbc();
	}
	return NULL;
}

static const EVP_CIPHER *luks_ecb(unsigned int key_bytes)
{
	switch (key_bytes) {
	case 16: return EVP_aes_128_ecb();
	case 24: return EVP_aes_192_ecb();
	case 32: return EVP_aes_256_ecb();
	}
	return NULL;
}

static void *luks_ctx(const EVP_CIPHER *ciph, const uint8_t *key, int enc)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	if (!ctx)
		return NULL;
	if (EVP_CipherInit_ex(ctx, ciph, NULL, key, NULL, enc) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	EVP_CIPHER_CTX_set_padding(ctx, 0);
	return ctx;
}

int luks_cipher_init(struct luks_cipher *c, const char *mode, unsigned int key_bytes,
		     enum luks_ivgen ivgen, const char *ivgen_hash, const uint8_t *key)
{
	const EVP_CIPHER *ciph = luks_evp(mode, key_bytes);
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned int hlen = 0;

	memset(c, 0, sizeof(*c));
	if (!ciph)
		return -ENOTSUP;
	c->ivgen = ivgen;
	c->iv_bytes = EVP_CIPHER_iv_length(ciph);
	if (ivgen == LUKS_IV_ESSIV) {
		const EVP_MD *md = luks_md(ivgen_hash);

		if (!md || EVP_MD_size(md) > 32 || !luks_ecb(EVP_MD_size(md)))
			return -ENOTSUP;
		if (EVP_Digest(key, key_bytes, h, &hlen, md, NULL) != 1)
			return -EIO;
		c->essiv = luks_ctx(luks_ecb(hlen), h, 1);
		explicit_bzero(h, sizeof(h));
		if (!c->essiv)
			return -EIO;
	}
	c->enc = luks_ctx(ciph, key, 1);
	c->dec = luks_ctx(ciph, key, 0);
	if (!c->enc || !c->dec) {
		luks_cipher_free(c);
		return -EIO;
	}
	return 0;
}

void luks_cipher_free(struct luks_cipher *c)
{
	/* EVP_CIPHER_CTX_free() wipes the key schedules it held. */
	EVP_CIPHER_CTX_free(c->enc);
	EVP_CIPHER_CTX_free(c->dec);
	EVP_CIPHER_CTX_free(c->essiv);
	memset(c, 0, sizeof(*c));
}

int luks_cipher_run(const struct luks_cipher *c, bool encrypt, uint64_t sector,
		    const void *in, void *out, size_t len)
{
	/*
	 * A context holds per-call state (the IV): each call works on its
	 * own copy of the keyed template, which keeps the key schedule.
	 */
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new(), *ectx = NULL;
	const uint8_t *src = in;
	uint8_t *dst = out;
	uint8_t iv[16];
	int outl, ret = -EIO;

	if (!ctx || EVP_CIPHER_CTX_copy(ctx, encrypt ? c->enc : c->dec) != 1)
		goto out;
	if (c->essiv) {
		ectx = EVP_CIPHER_CTX_new();
		if (!ectx || EVP_CIPHER_CTX_copy(ectx, c->essiv) != 1)
			goto out;
	}
	for (; len >= LUKS_SECTOR; len -= LUKS_SECTOR, sector++,
	     src += LUKS_SECTOR, dst += LUKS_SECTOR) {
		uint64_t le = htole64(c->ivgen == LUKS_IV_PLAIN ? (uint32_t)sector : sector);

		memset(iv, 0, sizeof(iv));
		memcpy(iv, &le, sizeof(le));
		if (ectx && EVP_EncryptUpdate(ectx, iv, &outl, iv, sizeof(iv)) != 1)
			goto out;
		if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1) != 1 ||
		    EVP_CipherUpdate(ctx, dst, &outl, src, LUKS_SECTOR) != 1)
			goto out;
	}
	ret = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_CTX_free(ectx);
	return ret;
}

/*
 * The AF diffusion: each digest-sized block of @buf replaced by the hash
 * of its big-endian index followed by the block (the last one short).
 */
static int luks_diffuse(uint8_t *buf, size_t len, const EVP_MD *md)
{
	size_t ds = EVP_MD_size(md), i, n;
	uint8_t h[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ret = -EIO;

	if (!ctx)
		return -ENOMEM;
	for (i = 0; i * ds < len; i++) {
		uint32_t be = htobe32(i);

		n = MIN(ds, len - i * ds);
		if (EVP_DigestInit_ex(ctx, md, NULL) != 1 ||
		    EVP_DigestUpdate(ctx, &be, sizeof(be)) != 1 ||
		    EVP_DigestUpdate(ctx, buf + i * ds, n) != 1 ||
		    EVP_DigestFinal_ex(ctx, h, NULL) != 1)
			goto out;
		memcpy(buf + i * ds, h, n);
	}
	ret = 0;
out:
	explicit_bzero(h, sizeof(h));
	EVP_MD_CTX_free(ctx);
	return ret;
}

/* AF merge: the key of @len bytes from @stripes stripes of @split. */
static int luks_af_merge(const uint8_t *split, size_t len, unsigned int stripes,
			 const EVP_MD *md, uint8_t *key)
{
	unsigned int i;
	size_t j;
	int ret;

	memset(key, 0, len);
	for (i = 0; i < stripes; i++) {
		for (j = 0; j < len; j++)
			key[j] ^= split[i * len + j];
		if (i + 1 == stripes)
			break;
		ret = luks_diffuse(key, len, md);
		if (ret)
			return ret;
	}
	return 0;
}

/* AF split: @stripes stripes into @split that merge back to @key. */
static int luks_af_split(const uint8_t *key, size_t len, unsigned int stripes,
			 const EVP_MD *md, uint8_t *split)
{
	uint8_t d[LUKS_MAX_KEY_BYTES] = { 0 };
	unsigned int i;
	size_t j;
	int ret = 0;

	if (RAND_bytes(split, (stripes - 1) * len) != 1)
		return -EIO;
	for (i = 0; i + 1 < stripes; i++) {
		for (j = 0; j < len; j++)
			d[j] ^= split[i * len + j];
		ret = luks_diffuse(d, len, md);
		if (ret)
			goto out;
	}
	for (j = 0; j < len; j++)
		split[i * len + j] = d[j] ^ key[j];
out:
	explicit_bzero(d, sizeof(d));
	return ret;
}

/* PBKDF2 iterations of @md this thread runs per millisecond (a short run). */
static uint64_t luks_iters_per_ms(const EVP_MD *md)
{
	static const char pass[] = "calibration";
	uint8_t salt[LUKS_SALT_BYTES] = { 0 }, out[32];
	uint64_t n = 1024, ns;
	struct timespec a, b;

	for (;;) {
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
		PKCS5_PBKDF2_HMAC(pass, sizeof(pass) - 1, salt, sizeof(salt), n, md,
				  sizeof(out), out);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
		ns = (b.tv_sec - a.tv_sec) * 1000000000ULL + b.tv_nsec - a.tv_nsec;
		if (ns >= 20000000 || n >= (1ULL << 24))
			break;
		n *= 2;
	}
	return MAX(1ULL, n * 1000000ULL / MAX(ns, 1ULL));
}

static void luks_copy_str(char *dst, const char *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = 0;
}

/* Splits "xts-plain64" / "cbc-essiv:sha256" into mode, ivgen and its hash. */
static int luks_parse_mode(struct luks_hdr *h)
{
	char *dash = strchr(h->cipher_mode, '-');
	const char *iv;

	if (!dash || (size_t)(dash - h->cipher_mode) >= sizeof(h->mode))
		return -EINVAL;
	luks_copy_str(h->mode, h->cipher_mode, dash - h->cipher_mode);
	iv = dash + 1;
	h->ivgen_hash[0] = 0;
	if (!strcmp(iv, "plain64")) {
		h->ivgen = LUKS_IV_PLAIN64;
	} else if (!strcmp(iv, "plain")) {
		h->ivgen = LUKS_IV_PLAIN;
	} else if (!strncmp(iv, "essiv:", 6) && strlen(iv + 6) < sizeof(h->ivgen_hash)) {
		h->ivgen = LUKS_IV_ESSIV;
		strcpy(h->ivgen_hash, iv + 6);
	} else {
		return -EINVAL;
	}
	return 0;
}

int luks_parse(const void *buf, size_t area_bytes, struct luks_hdr *h, char *why,
	       size_t why_len)
{
	const struct luks_hdr_disk *d = buf;
	uint64_t rate, total_iters = 0, mat;
	const EVP_MD *md;
	unsigned int i;

	memset(h, 0, sizeof(*h));
	if (area_bytes < LUKS_HDR_BYTES || memcmp(d->magic, luks_magic, sizeof(luks_magic))) {
		snprintf(why, why_len, "Volume is not in LUKS format");
		return -EINVAL;
	}
	if (be16toh(d->version) != 1) {
		snprintf(why, why_len, "Unsupported LUKS version %u", be16toh(d->version));
		return -ENOTSUP;
	}
	luks_copy_str(h->cipher_name, d->cipher_name, 32);
	luks_copy_str(h->cipher_mode, d->cipher_mode, 32);
	luks_copy_str(h->hash, d->hash_spec, 32);
	luks_copy_str(h->uuid, d->uuid, 40);
	h->payload_sectors = be32toh(d->payload_offset);
	h->key_bytes = be32toh(d->key_bytes);
	memcpy(h->mk_digest, d->mk_digest, sizeof(h->mk_digest));
	memcpy(h->mk_salt, d->mk_digest_salt, sizeof(h->mk_salt));
	h->mk_iters = be32toh(d->mk_digest_iter);
	if (strcmp(h->cipher_name, "aes")) {
		snprintf(why, why_len, "Unsupported LUKS cipher '%s' (only aes)", h->cipher_name);
		return -ENOTSUP;
	}
	if (luks_parse_mode(h) || !luks_evp(h->mode, h->key_bytes) ||
	    (h->ivgen == LUKS_IV_ESSIV && !luks_md(h->ivgen_hash))) {
		snprintf(why, why_len, "Unsupported LUKS cipher mode '%s' with %u-byte key",
			 h->cipher_mode, h->key_bytes);
		return -ENOTSUP;
	}
	md = luks_md(h->hash);
	if (!md) {
		snprintf(why, why_len, "Unsupported LUKS hash '%s'", h->hash);
		return -ENOTSUP;
	}
	if (!h->mk_iters) {
		snprintf(why, why_len, "LUKS master key iteration count is 0");
		return -EINVAL;
	}
	for (i = 0; i < LUKS_NUM_SLOTS; i++) {
		struct luks_slot *s = &h->slot[i];

		s->active = be32toh(d->slot[i].active);
		s->iters = be32toh(d->slot[i].iterations);
		memcpy(s->salt, d->slot[i].salt, sizeof(s->salt));
		s->key_offset_sectors = be32toh(d->slot[i].key_material_offset);
		s->stripes = be32toh(d->slot[i].stripes);
		if (s->active != LUKS_SLOT_ACTIVE && s->active != LUKS_SLOT_INACTIVE) {
			snprintf(why, why_len, "LUKS key slot %u state %#x is corrupted", i,
				 s->active);
			return -EINVAL;
		}
		if (s->active != LUKS_SLOT_ACTIVE)
			continue;
		if (s->stripes != LUKS_STRIPES) {
			snprintf(why, why_len, "LUKS key slot %u is corrupted (stripes %u != %u)",
				 i, s->stripes, LUKS_STRIPES);
			return -EINVAL;
		}
		mat = ALIGN_UP((uint64_t)s->stripes * h->key_bytes, LUKS_SECTOR);
		if ((uint64_t)s->key_offset_sectors * LUKS_SECTOR < LUKS_HDR_BYTES ||
		    (uint64_t)s->key_offset_sectors * LUKS_SECTOR + mat > area_bytes) {
			snprintf(why, why_len,
				 "LUKS key slot %u material at %llu+%llu is outside the %zu-byte header area",
				 i, (unsigned long long)s->key_offset_sectors * LUKS_SECTOR,
				 (unsigned long long)mat, area_bytes);
			return -EINVAL;
		}
		if (!s->iters) {
			snprintf(why, why_len, "LUKS key slot %u iteration count is 0", i);
			return -EINVAL;
		}
		total_iters += (uint64_t)s->iters + h->mk_iters;
	}
	if (!total_iters) {
		snprintf(why, why_len, "LUKS header has no active key slot");
		return -EINVAL;
	}
	rate = luks_iters_per_ms(md);
	if (total_iters / rate > LUKS_MAX_UNLOCK_MS) {
		snprintf(why, why_len,
			 "LUKS iteration counts (%llu in all) would take about %llu s to try, more than the %u s allowed",
			 (unsigned long long)total_iters,
			 (unsigned long long)(total_iters / rate / 1000), LUKS_MAX_UNLOCK_MS / 1000);
		return -EINVAL;
	}
	return 0;
}

/* Tries key slot @s with @pass; on a match keys @c.  Returns 0, -EACCES or -errno. */
static int luks_try_slot(const struct luks_hdr *h, const struct luks_slot *s,
			 const uint8_t *area, const void *pass, size_t pass_len,
			 struct luks_cipher *c)
{
	size_t split_len = (size_t)s->stripes * h->key_bytes;
	size_t mat_len = ALIGN_UP(split_len, (size_t)LUKS_SECTOR);
	const EVP_MD *md = luks_md(h->hash);
	uint8_t *dk = luks_key_alloc(2 * LUKS_MAX_KEY_BYTES), *mk;
	uint8_t digest[LUKS_DIGEST_BYTES];
	struct luks_cipher kc;
	uint8_t *split = NULL;
	int ret = -EIO;

	if (!dk)
		return -ENOMEM;
	mk = dk + LUKS_MAX_KEY_BYTES;
	/* The split key is the master key in all but name: keep it locked too. */
	split = luks_key_alloc(mat_len);
	if (!split) {
		ret = -ENOMEM;
		goto out;
	}
	if (PKCS5_PBKDF2_HMAC(pass, pass_len, s->salt, sizeof(s->salt), s->iters, md,
			      h->key_bytes, dk) != 1)
		goto out;
	ret = luks_cipher_init(&kc, h->mode, h->key_bytes, h->ivgen, h->ivgen_hash, dk);
	if (ret)
		goto out;
	ret = luks_cipher_run(&kc, false, 0, area + (size_t)s->key_offset_sectors * LUKS_SECTOR,
			      split, mat_len);
	luks_cipher_free(&kc);
	if (ret)
		goto out;
	ret = luks_af_merge(split, h->key_bytes, s->stripes, md, mk);
	if (ret)
		goto out;
	ret = -EIO;
	if (PKCS5_PBKDF2_HMAC((const char *)mk, h->key_bytes, h->mk_salt, sizeof(h->mk_salt),
			      h->mk_iters, md, sizeof(digest), digest) != 1)
		goto out;
	if (memcmp(digest, h->mk_digest, sizeof(digest))) {
		ret = -EACCES;
		goto out;
	}
	ret = luks_cipher_init(c, h->mode, h->key_bytes, h->ivgen, h->ivgen_hash, mk);
out:
	luks_key_free(split, mat_len);
	luks_key_free(dk, 2 * LUKS_MAX_KEY_BYTES);
	return ret;
}

int luks_unlock(const struct luks_hdr *h, const void *area, size_t area_bytes,
		const void *pass, size_t pass_len, struct luks_cipher *c)
{
	unsigned int i;
	int ret;

	(void)area_bytes;	/* luks_parse() checked every slot against it */
	for (i = 0; i < LUKS_NUM_SLOTS; i++) {
		if (h->slot[i].active != LUKS_SLOT_ACTIVE)
			continue;
		ret = luks_try_slot(h, &h->slot[i], area, pass, pass_len, c);
		if (ret != -EACCES)
			return ret;
	}
	return -EACCES;
}

/* Key bytes for @p's cipher, or 0 when the combination is not ours. */
static unsigned int luks_params_key_bytes(const struct luks_params *p)
{
	unsigned int aes;

	if (!strcmp(p->cipher_alg, "aes-128"))
		aes = 16;
	else if (!strcmp(p->cipher_alg, "aes-192"))
		aes = 24;
	else if (!strcmp(p->cipher_alg, "aes-256"))
		aes = 32;
	else
		return 0;
	if (!strcmp(p->cipher_mode, "xts"))
		return aes == 24 ? 0 : 2 * aes;
	if (!strcmp(p->cipher_mode, "cbc"))
		return aes;
	return 0;
}

static uint64_t luks_slot_bytes(unsigned int key_bytes)
{
	return ALIGN_UP((uint64_t)LUKS_STRIPES * key_bytes, (uint64_t)LUKS_ALIGN_BYTES);
}

int64_t luks_area_bytes(const struct luks_params *p)
{
	unsigned int kb = luks_params_key_bytes(p);

	if (!kb)
		return -EINVAL;
	/* QEMU's layout: header in the first 4 KiB, then the eight slots. */
	return LUKS_ALIGN_BYTES + LUKS_NUM_SLOTS * luks_slot_bytes(kb);
}

static void luks_uuid(char *out, const uint8_t r[16])
{
	uint8_t u[16];

	memcpy(u, r, 16);
	u[6] = (u[6] & 0x0f) | 0x40;	/* version 4 */
	u[8] = (u[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	sprintf(out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
		u[12], u[13], u[14], u[15]);
}

int luks_format(const struct luks_params *p, const void *pass, size_t pass_len,
		void *area, size_t area_bytes, char *why, size_t why_len)
{
	unsigned int kb = luks_params_key_bytes(p), i;
	struct luks_hdr_disk *d = area;
	uint64_t rate, iters, mk_iters, slot_bytes;
	enum luks_ivgen ivgen;
	const EVP_MD *md = luks_md(p->hash_alg);
	struct luks_cipher kc;
	uint8_t *mk, *dk, *split = NULL, rnd[16];
	char mode[32], uuid[37];
	int ret = -EIO;

	if (!kb) {
		snprintf(why, why_len, "Unsupported cipher %s in mode %s", p->cipher_alg,
			 p->cipher_mode);
		return -EINVAL;
	}
	if (!md) {
		snprintf(why, why_len, "Unsupported hash algorithm %s", p->hash_alg);
		return -EINVAL;
	}
	if (!strcmp(p->ivgen_alg, "plain64")) {
		ivgen = LUKS_IV_PLAIN64;
		snprintf(mode, sizeof(mode), "%s-plain64", p->cipher_mode);
	} else if (!strcmp(p->ivgen_alg, "plain")) {
		ivgen = LUKS_IV_PLAIN;
		snprintf(mode, sizeof(mode), "%s-plain", p->cipher_mode);
	} else if (!strcmp(p->ivgen_alg, "essiv") && luks_md(p->ivgen_hash_alg) &&
		   EVP_MD_size(luks_md(p->ivgen_hash_alg)) <= 32 &&
		   luks_ecb(EVP_MD_size(luks_md(p->ivgen_hash_alg)))) {
		ivgen = LUKS_IV_ESSIV;
		snprintf(mode, sizeof(mode), "%s-essiv:%s", p->cipher_mode, p->ivgen_hash_alg);
	} else {
		snprintf(why, why_len, "Unsupported ivgen algorithm %s", p->ivgen_alg);
		return -EINVAL;
	}
	slot_bytes = luks_slot_bytes(kb);
	if ((int64_t)area_bytes < luks_area_bytes(p))
		return -EINVAL;
	memset(area, 0, area_bytes);

	mk = luks_key_alloc(2 * LUKS_MAX_KEY_BYTES);
	if (!mk)
		return -ENOMEM;
	dk = mk + LUKS_MAX_KEY_BYTES;
	split = luks_key_alloc(slot_bytes);
	if (!split) {
		ret = -ENOMEM;
		goto out;
	}
	/*
	 * Iterations as QEMU and cryptsetup size them: the key slot takes
	 * iter-time here, the master key digest an eighth of it; never
	 * fewer than 1000, and never more than luks_parse() accepts.
	 */
	rate = luks_iters_per_ms(md);
	iters = MIN(MAX(rate * p->iter_time_ms, 1000ULL), rate * LUKS_MAX_UNLOCK_MS / 4);
	mk_iters = MIN(MAX(rate * p->iter_time_ms / 8, 1000ULL), rate * LUKS_MAX_UNLOCK_MS / 4);
	iters = MIN(iters, (uint64_t)UINT32_MAX);
	mk_iters = MIN(mk_iters, (uint64_t)UINT32_MAX);

	memcpy(d->magic, luks_magic, sizeof(luks_magic));
	d->version = htobe16(1);
	strcpy(d->cipher_name, "aes");
	strcpy(d->cipher_mode, mode);
	strcpy(d->hash_spec, p->hash_alg);
	d->payload_offset = htobe32(luks_area_bytes(p) / LUKS_SECTOR);
	d->key_bytes = htobe32(kb);
	d->mk_digest_iter = htobe32(mk_iters);
	if (RAND_bytes(mk, kb) != 1 || RAND_bytes(d->mk_digest_salt, LUKS_SALT_BYTES) != 1 ||
	    RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto out;
	/* XTS refuses a key whose halves are equal; a random one never has them. */
	if (PKCS5_PBKDF2_HMAC((const char *)mk, kb, d->mk_digest_salt, LUKS_SALT_BYTES,
			      mk_iters, md, LUKS_DIGEST_BYTES, d->mk_digest) != 1)
		goto out;
	luks_uuid(uuid, rnd);
	memcpy(d->uuid, uuid, 36);
	for (i = 0; i < LUKS_NUM_SLOTS; i++) {
		d->slot[i].active = htobe32(i ? LUKS_SLOT_INACTIVE : LUKS_SLOT_ACTIVE);
		d->slot[i].iterations = htobe32(i ? 0 : iters);
		d->slot[i].key_material_offset =
			htobe32((LUKS_ALIGN_BYTES + i * slot_bytes) / LUKS_SECTOR);
		d->slot[i].stripes = htobe32(LUKS_STRIPES);
	}
	if (RAND_bytes(d->slot[0].salt, LUKS_SALT_BYTES) != 1 ||
	    PKCS5_PBKDF2_HMAC(pass, pass_len, d->slot[0].salt, LUKS_SALT_BYTES, iters, md, kb,
			      dk) != 1)
		goto out;
	ret = luks_af_split(mk, kb, LUKS_STRIPES, md, split);
	if (ret)
		goto out;
	ret = luks_cipher_init(&kc, p->cipher_mode, kb, ivgen, p->ivgen_hash_alg, dk);
	if (ret) {
		snprintf(why, why_len, "Unsupported cipher mode %s", mode);
		goto out;
	}
	ret = luks_cipher_run(&kc, true, 0, split, (uint8_t *)area + LUKS_ALIGN_BYTES,
			      ALIGN_UP((size_t)LUKS_STRIPES * kb, (size_t)LUKS_SECTOR));
	luks_cipher_free(&kc);
out:
	if (ret == -EIO && !why[0])
		snprintf(why, why_len, "LUKS header creation failed in libcrypto");
	luks_key_free(split, slot_bytes);
	luks_key_free(mk, 2 * LUKS_MAX_KEY_BYTES);
	return ret;
}
