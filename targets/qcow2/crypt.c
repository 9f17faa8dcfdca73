// SPDX-License-Identifier: GPL-2.0
/*
 * Encrypted qcow2 (header crypt_method 1 and 2): the engine's one door to
 * the ciphers.  The read and write paths call qcow2_crypt_read() after
 * reading a normal data cluster and qcow2_crypt_write() before writing
 * one; nothing else in the engine knows about keys.
 *
 * LUKS (method 2): the LUKS1 header lives in the image's own clusters,
 * where the "full disk encryption header pointer" extension (0x0537be77:
 * u64 offset, u64 length) points; lib/luks.c parses it and unlocks it
 * with the image's passphrase (include/secret.h).  Each 512-byte sector
 * of a data cluster is encrypted with the sector number of its *host*
 * offset as IV (QEMU's crypt_physical_offset, true for LUKS): data moved
 * to another cluster (COW) is re-encrypted, never copied as it is.
 * Compressed clusters are stored unencrypted; QEMU reads them so and
 * refuses to write them, and so do we.  Zero and unallocated clusters
 * read as zeros without touching the cipher.
 *
 * Legacy AES (method 1): AES-128-CBC keyed with the passphrase's first
 * 16 bytes (zero-padded), IV the *guest* sector number.  Readable, so
 * that `convert` can take images out of it; never written, and refused
 * for devices, as QEMU 7.2 refuses it to its system emulators.
 *
 * Why OpenSSL's libcrypto: see lib/luks.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luks.h"
#include "qcow2.h"
#include "secret.h"
#include "util.h"

#define QCOW2_CRYPT_AES		1
#define QCOW2_CRYPT_LUKS	2

/* The LUKS header area QEMU makes is about 2 MiB; far more is hostile. */
#define QCOW2_CRYPT_MAX_AREA	(64U << 20)

struct qcow2_crypt {
	unsigned int method;
	bool unlocked;
	struct luks_cipher c;
	struct luks_hdr hdr;		/* LUKS: what info shows */
	char *info_text, *info_json;	/* qcow2_crypt_info() */
};

#define QCOW2_CRYPT_INFO_BYTES	4096

static const char *qcow2_crypt_ivgen_name(enum luks_ivgen g)
{
	switch (g) {
	case LUKS_IV_PLAIN:
		return "plain";
	case LUKS_IV_ESSIV:
		return "essiv";
	default:
		return "plain64";
	}
}

/* The passphrase for this image, or NULL after printing why there is none. */
static const struct secret *qcow2_crypt_secret(struct qcow2 *q)
{
	const struct secret *s = secret_for_image(q->t->cfg.file, q->t->chain_depth == 0);

	if (!s)
		img_err("%s: the image is encrypted: give its passphrase with --key-file FILE%s",
			q->t->cfg.file,
			q->t->chain_depth ? " (for a backing file: --key-file IMAGE=FILE)" : "");
	return s;
}

static int qcow2_crypt_open_aes(struct qcow2 *q, struct qcow2_crypt *k, unsigned int flags)
{
	const struct secret *s;
	uint8_t key[16] = { 0 };
	int ret;

	if (flags & TGT_O_FIXED_SIZE) {
		img_err("%s: Use of AES-CBC encrypted qcow2 images is no longer supported in system emulators; convert the image (imgblk convert -O qcow2 -o encrypt.format=luks)",
			q->t->cfg.file);
		return -ENOTSUP;
	}
	q->no_write_reason = "AES-CBC encryption is insecure and only read, for converting the image to LUKS or unencrypted";
	if (flags & TGT_O_NO_IO)
		return 0;
	s = qcow2_crypt_secret(q);
	if (!s)
		return -ENOKEY;
	memcpy(key, s->data, MIN(s->len, sizeof(key)));
	ret = luks_cipher_init(&k->c, "cbc", sizeof(key), LUKS_IV_PLAIN64, NULL, key);
	explicit_bzero(key, sizeof(key));
	if (ret)
		return ret;
	k->unlocked = true;
	return 0;
}

static int qcow2_crypt_open_luks(struct qcow2 *q, struct qcow2_crypt *k, unsigned int flags)
{
	const char *file = q->t->cfg.file;
	uint64_t off = q->crypt_hdr_off, len = q->crypt_hdr_len;
	const struct secret *s;
	char why[256] = "";
	void *area;
	int ret;

	if (!q->crypt_ext) {
		img_err("%s: LUKS encrypted qcow2 image has no encryption header extension", file);
		return -EINVAL;
	}
	if (!off || !IS_ALIGNED(off, q->cluster_size) || len < LUKS_HDR_BYTES ||
	    len > QCOW2_CRYPT_MAX_AREA || off >= QCOW2_MAX_HOST_OFFSET) {
		img_err("%s: invalid LUKS header area at 0x%llx, %llu bytes", file,
			(unsigned long long)off, (unsigned long long)len);
		return -EINVAL;
	}
	area = luks_key_alloc(ALIGN_UP(len, 4096ULL));
	if (!area)
		return -ENOMEM;
	ret = bfile_pread(q->file, area, len, off);
	if (ret >= 0 && (uint64_t)ret < len) {
		img_err("%s: LUKS header area at 0x%llx, %llu bytes, is past the end of the file",
			file, (unsigned long long)off, (unsigned long long)len);
		ret = -EINVAL;
		goto out;
	}
	if (ret < 0)
		goto out;
	ret = luks_parse(area, len, &k->hdr, why, sizeof(why));
	if (ret) {
		img_err("%s: %s", file, why);
		goto out;
	}
	if (flags & TGT_O_NO_IO)
		goto out;
	s = qcow2_crypt_secret(q);
	if (!s) {
		ret = -ENOKEY;
		goto out;
	}
	ret = luks_unlock(&k->hdr, area, len, s->data, s->len, &k->c);
	if (ret == -EACCES)
		img_err("%s: Invalid password, cannot unlock any keyslot", file);
	else if (ret)
		img_err("%s: cannot unlock the LUKS header: %s", file, strerror(-ret));
	else
		k->unlocked = true;
out:
	luks_key_free(area, ALIGN_UP(len, 4096ULL));
	return ret;
}

int qcow2_crypt_open(struct qcow2 *q, unsigned int flags)
{
	struct qcow2_crypt *k;
	int ret;

	if (!q->crypt_method)
		return 0;
	if (q->crypt_method != QCOW2_CRYPT_AES && q->crypt_method != QCOW2_CRYPT_LUKS) {
		img_err("%s: unsupported qcow2 encryption method %u", q->t->cfg.file,
			q->crypt_method);
		return -ENOTSUP;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->method = q->crypt_method;
	if (k->method == QCOW2_CRYPT_AES)
		ret = qcow2_crypt_open_aes(q, k, flags);
	else
		ret = qcow2_crypt_open_luks(q, k, flags);
	if (ret) {
		luks_cipher_free(&k->c);
		free(k);
		return ret;
	}
	q->crypt = k;
	return 0;
}

void qcow2_crypt_close(struct qcow2 *q)
{
	if (!q->crypt)
		return;
	luks_cipher_free(&q->crypt->c);
	free(q->crypt->info_text);
	free(q->crypt->info_json);
	explicit_bzero(q->crypt, sizeof(*q->crypt));
	free(q->crypt);
	q->crypt = NULL;
}

/* The first IV sector: the host offset for LUKS, the guest one for AES. */
static uint64_t qcow2_crypt_sector(struct qcow2 *q, uint64_t host, uint64_t goff)
{
	return (q->crypt->method == QCOW2_CRYPT_LUKS ? host : goff) / LUKS_SECTOR;
}

int qcow2_crypt_read(struct qcow2 *q, uint64_t host, uint64_t goff, void *buf, uint64_t len)
{
	if (!q->crypt->unlocked)
		return -ENOKEY;
	if (!IS_ALIGNED(host | goff | len, (uint64_t)LUKS_SECTOR))
		return -EINVAL;
	return luks_cipher_run(&q->crypt->c, false, qcow2_crypt_sector(q, host, goff), buf, buf,
			       len);
}

int qcow2_crypt_write(struct qcow2 *q, uint64_t host, uint64_t goff, const void *src,
		      void *dst, uint64_t len)
{
	if (!q->crypt->unlocked || q->crypt->method != QCOW2_CRYPT_LUKS)
		return -EROFS;
	if (!IS_ALIGNED(host | goff | len, (uint64_t)LUKS_SECTOR))
		return -EINVAL;
	return luks_cipher_run(&q->crypt->c, true, qcow2_crypt_sector(q, host, goff), src, dst,
			       len);
}

int qcow2_crypt_pread(struct qcow2 *q, void *buf, uint64_t len, uint64_t host, uint64_t goff)
{
	uint64_t d = host & (LUKS_SECTOR - 1), a_len;
	uint8_t *b;
	int ret;

	if ((goff & (LUKS_SECTOR - 1)) != d)
		return -EINVAL;
	if (!d && IS_ALIGNED(len, (uint64_t)LUKS_SECTOR)) {
		ret = qcow2_read_at(q->dfile, buf, len, host);
		return ret ? ret : qcow2_crypt_read(q, host, goff, buf, len);
	}
	/* Part of a sector: the whole sectors are read and decrypted, the part copied. */
	a_len = ALIGN_UP(d + len, (uint64_t)LUKS_SECTOR);
	if (posix_memalign((void **)&b, 4096, a_len))
		return -ENOMEM;
	ret = qcow2_read_at(q->dfile, b, a_len, host - d);
	if (!ret)
		ret = qcow2_crypt_read(q, host - d, goff - d, b, a_len);
	if (!ret)
		memcpy(buf, b + d, len);
	explicit_bzero(b, a_len);
	free(b);
	return ret;
}

ssize_t qcow2_crypt_pwrite(struct qcow2 *q, const void *buf, uint64_t len, uint64_t host,
			   uint64_t goff, int rwf)
{
	uint8_t *b;
	ssize_t ret;

	if (posix_memalign((void **)&b, 4096, len))
		return -ENOMEM;
	ret = qcow2_crypt_write(q, host, goff, buf, b, len);
	if (!ret)
		ret = bfile_pwrite(q->dfile, b, len, host, rwf);
	free(b);
	return ret;
}

/* Appends to @b (size @n, used *@at) as snprintf does. */
static void qcow2_crypt_cat(char *b, size_t n, size_t *at, const char *fmt, ...)
	__printf(4, 5);
static void qcow2_crypt_cat(char *b, size_t n, size_t *at, const char *fmt, ...)
{
	va_list ap;

	if (*at >= n)
		return;
	va_start(ap, fmt);
	*at += vsnprintf(b + *at, n - *at, fmt, ap);
	va_end(ap);
}

int qcow2_crypt_info(struct qcow2 *q, const char **out_text, const char **out_json)
{
	size_t text_len = QCOW2_CRYPT_INFO_BYTES, json_len = QCOW2_CRYPT_INFO_BYTES;
	struct qcow2_crypt *k = q->crypt;
	const struct luks_hdr *h;
	char *text, *json;
	size_t t = 0, j = 0;
	char alg[48];
	unsigned int i, aes_bits;

	if (!k->info_text) {
		k->info_text = malloc(text_len);
		k->info_json = malloc(json_len);
		if (!k->info_text || !k->info_json)
			return -ENOMEM;
	}
	text = k->info_text;
	json = k->info_json;
	*out_text = text;
	*out_json = json;
	if (k->method == QCOW2_CRYPT_AES) {
		qcow2_crypt_cat(text, text_len, &t, "format: aes\n");
		qcow2_crypt_cat(json, json_len, &j, "{\"format\": \"aes\"}");
		return 0;
	}
	h = &q->crypt->hdr;
	aes_bits = h->key_bytes * 8 / (strcmp(h->mode, "xts") ? 1 : 2);
	snprintf(alg, sizeof(alg), "%s-%u", h->cipher_name, aes_bits);
	/* qemu-img 7.2's order of the QCryptoBlockInfoLUKS fields. */
	qcow2_crypt_cat(text, text_len, &t, "ivgen alg: %s\n", qcow2_crypt_ivgen_name(h->ivgen));
	qcow2_crypt_cat(json, json_len, &j, "{\"ivgen-alg\": \"%s\"",
			qcow2_crypt_ivgen_name(h->ivgen));
	qcow2_crypt_cat(text, text_len, &t, "hash alg: %s\ncipher alg: %s\nuuid: %s\n", h->hash,
			alg, h->uuid);
	qcow2_crypt_cat(json, json_len, &j, ", \"hash-alg\": \"%s\", \"cipher-alg\": \"%s\", \"uuid\": \"%s\"",
			h->hash, alg, h->uuid);
	if (h->ivgen == LUKS_IV_ESSIV) {
		qcow2_crypt_cat(text, text_len, &t, "ivgen hash alg: %s\n", h->ivgen_hash);
		qcow2_crypt_cat(json, json_len, &j, ", \"ivgen-hash-alg\": \"%s\"", h->ivgen_hash);
	}
	qcow2_crypt_cat(text, text_len, &t, "format: luks\ncipher mode: %s\nslots:\n", h->mode);
	qcow2_crypt_cat(json, json_len, &j, ", \"format\": \"luks\", \"cipher-mode\": \"%s\", \"slots\": [",
			h->mode);
	for (i = 0; i < LUKS_NUM_SLOTS; i++) {
		const struct luks_slot *s = &h->slot[i];
		bool on = s->active == LUKS_SLOT_ACTIVE;
		unsigned long long ko = (unsigned long long)s->key_offset_sectors * LUKS_SECTOR;

		qcow2_crypt_cat(text, text_len, &t, "    [%u]:\n        active: %s\n", i,
				on ? "true" : "false");
		qcow2_crypt_cat(json, json_len, &j, "%s{\"active\": %s", i ? ", " : "",
				on ? "true" : "false");
		if (on) {
			qcow2_crypt_cat(text, text_len, &t, "        iters: %u\n", s->iters);
			qcow2_crypt_cat(json, json_len, &j, ", \"iters\": %u", s->iters);
		}
		qcow2_crypt_cat(text, text_len, &t, "        key offset: %llu\n", ko);
		qcow2_crypt_cat(json, json_len, &j, ", \"key-offset\": %llu", ko);
		if (on) {
			qcow2_crypt_cat(text, text_len, &t, "        stripes: %u\n", s->stripes);
			qcow2_crypt_cat(json, json_len, &j, ", \"stripes\": %u", s->stripes);
		}
		qcow2_crypt_cat(json, json_len, &j, "}");
	}
	qcow2_crypt_cat(text, text_len, &t, "payload offset: %llu\nmaster key iters: %u\n",
			(unsigned long long)h->payload_sectors * LUKS_SECTOR, h->mk_iters);
	qcow2_crypt_cat(json, json_len, &j, "], \"payload-offset\": %llu, \"master-key-iters\": %u}",
			(unsigned long long)h->payload_sectors * LUKS_SECTOR, h->mk_iters);
	/* Eight slots take about 1 KiB of either: the buffers cannot fill. */
	return 0;
}
