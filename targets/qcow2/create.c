// SPDX-License-Identifier: GPL-2.0
/*
 * imgblk create -f qcow2: header (v2 or v3), refcount table and blocks,
 * L1 table, and with preallocation the L2 tables and data clusters.
 * Layout, as QEMU's: header, refcount table, refcount blocks, L1, then
 * (preallocated) L2 tables and data.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luks.h"
#include "qcow2.h"
#include "secret.h"
#include "util.h"

enum qcow2_prealloc { PREALLOC_OFF, PREALLOC_METADATA, PREALLOC_FALLOC, PREALLOC_FULL };

struct qcow2_create_params {
	unsigned int version;
	unsigned int cluster_bits;
	unsigned int refcount_order;
	bool lazy_refcounts;
	bool extended_l2;
	unsigned int compression_type;
	enum qcow2_prealloc prealloc;
	const char *data_file;		/* external data file name, as the image keeps it */
	bool data_file_raw;
	/* encrypt.format=luks: the LUKS header's parameters and secret. */
	bool luks;
	struct luks_params luks_p;
	const char *key_secret;
};

static int qcow2_parse_bool(const char *key, const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "true")) {
		*out = true;
	} else if (!strcmp(v, "off") || !strcmp(v, "false")) {
		*out = false;
	} else {
		img_err("create: %s must be on or off, not '%s'", key, v);
		return -EINVAL;
	}
	return 0;
}

static int qcow2_parse_create_opts(const struct tgt_create_opts *o,
				   struct qcow2_create_params *p)
{
	bool lazy_given = false, zstd_given = false, compat_given = false;
	unsigned int i, refcount_bits = 16;
	uint64_t v;

	*p = (struct qcow2_create_params){ .version = 3, .cluster_bits = 16 };
	/* QEMU's defaults for encrypt.*. */
	p->luks_p = (struct luks_params){ .cipher_alg = "aes-256", .cipher_mode = "xts",
					  .ivgen_alg = "plain64", .ivgen_hash_alg = "sha256",
					  .hash_alg = "sha256", .iter_time_ms = 2000 };
	for (i = 0; i < o->nr_options; i++) {
		const char *kv = o->options[i], *eq = strchr(kv, '=');
		size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
		const char *val = eq ? eq + 1 : "";

#define KEY_IS(k) (klen == strlen(k) && !strncmp(kv, k, klen))
		if (KEY_IS("cluster_size")) {
			if (parse_size(val, &v) || !is_pow2(v) || v < 512 || v > (2U << 20)) {
				img_err("create: cluster_size must be a power of two from 512 to 2M, not '%s'",
					val);
				return -EINVAL;
			}
			p->cluster_bits = ilog2_u64(v);
		} else if (KEY_IS("compat")) {
			compat_given = true;
			if (!strcmp(val, "0.10") || !strcmp(val, "v2")) {
				p->version = 2;
			} else if (!strcmp(val, "1.1") || !strcmp(val, "v3")) {
				p->version = 3;
			} else {
				img_err("create: compat must be 0.10 or 1.1, not '%s'", val);
				return -EINVAL;
			}
		} else if (KEY_IS("refcount_bits")) {
			if (parse_uint(val, 1, 64, &v) || !is_pow2(v)) {
				img_err("create: refcount_bits must be a power of two from 1 to 64, not '%s'",
					val);
				return -EINVAL;
			}
			refcount_bits = v;
		} else if (KEY_IS("lazy_refcounts")) {
			if (qcow2_parse_bool("lazy_refcounts", val, &p->lazy_refcounts))
				return -EINVAL;
			lazy_given = p->lazy_refcounts;
		} else if (KEY_IS("extended_l2")) {
			if (qcow2_parse_bool("extended_l2", val, &p->extended_l2))
				return -EINVAL;
		} else if (KEY_IS("compression_type")) {
			if (!strcmp(val, "zlib")) {
				p->compression_type = QCOW2_COMPRESSION_ZLIB;
			} else if (!strcmp(val, "zstd")) {
				p->compression_type = QCOW2_COMPRESSION_ZSTD;
				zstd_given = true;
			} else {
				img_err("create: compression_type must be zlib or zstd, not '%s'", val);
				return -EINVAL;
			}
		} else if (KEY_IS("data_file")) {
			if (!*val || strlen(val) > QCOW2_MAX_BACKING_NAME) {
				img_err("create: data_file must be a file name of up to %u bytes",
					QCOW2_MAX_BACKING_NAME);
				return -EINVAL;
			}
			p->data_file = val;
		} else if (KEY_IS("data_file_raw")) {
			if (qcow2_parse_bool("data_file_raw", val, &p->data_file_raw))
				return -EINVAL;
		} else if (KEY_IS("preallocation")) {
			if (!strcmp(val, "off"))
				p->prealloc = PREALLOC_OFF;
			else if (!strcmp(val, "metadata"))
				p->prealloc = PREALLOC_METADATA;
			else if (!strcmp(val, "falloc"))
				p->prealloc = PREALLOC_FALLOC;
			else if (!strcmp(val, "full"))
				p->prealloc = PREALLOC_FULL;
			else {
				img_err("create: preallocation must be off, metadata, falloc or full, not '%s'",
					val);
				return -EINVAL;
			}
		} else if (KEY_IS("encrypt.format")) {
			if (!strcmp(val, "aes")) {
				img_err("create: AES-CBC encrypted qcow2 images are insecure and no longer created; use encrypt.format=luks");
				return -EINVAL;
			}
			if (strcmp(val, "luks")) {
				img_err("create: encrypt.format must be luks, not '%s'", val);
				return -EINVAL;
			}
			p->luks = true;
		} else if (KEY_IS("encrypt.key-secret")) {
			p->key_secret = val;
		} else if (KEY_IS("encrypt.cipher-alg")) {
			p->luks_p.cipher_alg = val;
		} else if (KEY_IS("encrypt.cipher-mode")) {
			p->luks_p.cipher_mode = val;
		} else if (KEY_IS("encrypt.ivgen-alg")) {
			p->luks_p.ivgen_alg = val;
		} else if (KEY_IS("encrypt.ivgen-hash-alg")) {
			p->luks_p.ivgen_hash_alg = val;
		} else if (KEY_IS("encrypt.hash-alg")) {
			p->luks_p.hash_alg = val;
		} else if (KEY_IS("encrypt.iter-time")) {
			if (parse_uint(val, 1, 60000, &v)) {
				img_err("create: encrypt.iter-time must be 1 to 60000 ms, not '%s'", val);
				return -EINVAL;
			}
			p->luks_p.iter_time_ms = v;
		} else {
			img_err("create: qcow2 does not support option '%.*s'", (int)klen, kv);
			return -EINVAL;
		}
#undef KEY_IS
	}
	p->refcount_order = ilog2_u64(refcount_bits);
	if (p->version == 2 && refcount_bits != 16) {
		img_err("create: refcount_bits other than 16 need compat=1.1");
		return -EINVAL;
	}
	if (p->version == 2 && lazy_given) {
		img_err("create: lazy_refcounts need compat=1.1");
		return -EINVAL;
	}
	if (p->extended_l2 && p->version == 2) {
		img_err("create: extended_l2 needs compat=1.1");
		return -EINVAL;
	}
	/* 32 subclusters of at least 512 bytes (QEMU's limit). */
	if (p->extended_l2 && p->cluster_bits < 14) {
		img_err("create: extended_l2 needs cluster_size of at least 16k");
		return -EINVAL;
	}
	/* QEMU's rules for an external data file. */
	if (p->data_file_raw && !p->data_file) {
		img_err("create: data_file_raw requires data_file");
		return -EINVAL;
	}
	if (p->data_file && p->version == 2) {
		img_err("create: external data files need compat=1.1%s",
			compat_given ? "" : " (the default)");
		return -EINVAL;
	}
	if (p->luks && !p->key_secret) {
		img_err("create: Parameter 'encrypt.key-secret' is required for cipher");
		return -EINVAL;
	}
	if (p->key_secret && !p->luks) {
		img_err("create: encrypt.key-secret needs encrypt.format=luks");
		return -EINVAL;
	}
	if (p->luks && (p->prealloc != PREALLOC_OFF || p->data_file_raw)) {
		img_err("create: encryption is not supported here with preallocation or data_file_raw");
		return -EINVAL;
	}
	if (p->luks && luks_area_bytes(&p->luks_p) < 0) {
		img_err("create: unsupported encryption: cipher %s in mode %s",
			p->luks_p.cipher_alg, p->luks_p.cipher_mode);
		return -EINVAL;
	}
	if (p->version == 2 && zstd_given) {
		img_err("create: compression_type=zstd needs compat=1.1");
		return -EINVAL;
	}
	return 0;
}

/* Appends a header extension at *pos (8-byte padded).  Returns false if it does not fit. */
static bool qcow2_put_ext(uint8_t *h, size_t cap, size_t *pos, uint32_t type,
			  const void *data, uint32_t len)
{
	if (*pos + 8 + ALIGN_UP((size_t)len, 8) > cap)
		return false;
	put_be32(h + *pos, type);
	put_be32(h + *pos + 4, len);
	memcpy(h + *pos + 8, data, len);
	*pos += 8 + ALIGN_UP((size_t)len, 8);
	return true;
}

static const struct {
	uint8_t type, bit;
	const char *name;
} qcow2_feature_table[] = {
	{ 0, 0, "dirty bit" },
	{ 0, 1, "corrupt bit" },
	{ 0, 2, "external data file" },
	{ 0, 3, "compression type" },
	{ 0, 4, "extended L2 entries" },
	{ 1, 0, "lazy refcounts" },
	{ 2, 0, "bitmaps" },
	{ 2, 1, "raw external data" },
};

static_assert(ARRAY_SIZE(qcow2_feature_table) == QCOW2_FEATURE_TABLE_ENTRIES,
	      "qcow2.h counts the feature table");

unsigned int qcow2_feature_table_fill(struct qcow2_feature_name *f)
{
	unsigned int i;

	memset(f, 0, sizeof(*f) * ARRAY_SIZE(qcow2_feature_table));
	for (i = 0; i < ARRAY_SIZE(qcow2_feature_table); i++) {
		f[i].type = qcow2_feature_table[i].type;
		f[i].bit = qcow2_feature_table[i].bit;
		strncpy(f[i].name, qcow2_feature_table[i].name, sizeof(f[i].name));
	}
	return ARRAY_SIZE(qcow2_feature_table);
}

/* Builds the header cluster into @h (cluster_size bytes).  Returns 0 or -EINVAL. */
static int qcow2_build_header(const struct tgt_create_opts *o,
			      const struct qcow2_create_params *p, uint8_t *h,
			      uint64_t l1_off, uint32_t l1_size, uint64_t rt_off,
			      uint32_t rt_clusters, uint64_t luks_off, uint64_t luks_bytes)
{
	uint64_t cs = 1ULL << p->cluster_bits;
	struct qcow2_header_disk hd = { 0 };
	size_t pos, hlen = p->version >= 3 ? sizeof(hd) : QCOW2_V2_HEADER_BYTES;

	hd.magic = __builtin_bswap32(QCOW2_MAGIC);
	hd.version = __builtin_bswap32(p->version);
	hd.cluster_bits = __builtin_bswap32(p->cluster_bits);
	hd.size = __builtin_bswap64(o->size_bytes);
	hd.l1_size = __builtin_bswap32(l1_size);
	hd.l1_table_offset = __builtin_bswap64(l1_off);
	hd.refcount_table_offset = __builtin_bswap64(rt_off);
	hd.refcount_table_clusters = __builtin_bswap32(rt_clusters);
	hd.crypt_method = __builtin_bswap32(p->luks ? 2 : 0);
	if (p->version >= 3) {
		hd.incompatible_features = __builtin_bswap64(
			(p->compression_type ? QCOW2_INCOMPAT_COMPRESSION : 0) |
			(p->extended_l2 ? QCOW2_INCOMPAT_EXTL2 : 0) |
			(p->data_file ? QCOW2_INCOMPAT_DATA_FILE : 0));
		hd.autoclear_features = __builtin_bswap64(
			p->data_file_raw ? QCOW2_AUTOCLEAR_DATA_FILE_RAW : 0);
		hd.compatible_features = __builtin_bswap64(
			p->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0);
		hd.refcount_order = __builtin_bswap32(p->refcount_order);
		hd.header_length = __builtin_bswap32(sizeof(hd));
		hd.compression_type = p->compression_type;
	}
	memset(h, 0, cs);
	memcpy(h, &hd, hlen);
	pos = hlen;

	if (p->luks) {
		struct qcow2_crypto_ext ce = { __builtin_bswap64(luks_off),
					       __builtin_bswap64(luks_bytes) };

		if (!qcow2_put_ext(h, cs, &pos, QCOW2_EXT_CRYPTO, &ce, sizeof(ce)))
			goto too_big;
	}
	if (o->backing_fmt &&
	    !qcow2_put_ext(h, cs, &pos, QCOW2_EXT_BACKING_FORMAT, o->backing_fmt,
			   strlen(o->backing_fmt)))
		goto too_big;
	if (p->data_file &&
	    !qcow2_put_ext(h, cs, &pos, QCOW2_EXT_DATA_FILE, p->data_file, strlen(p->data_file)))
		goto too_big;
	if (p->version >= 3) {
		struct qcow2_feature_name f[ARRAY_SIZE(qcow2_feature_table)];

		qcow2_feature_table_fill(f);
		/* Only when it fits: with 512-byte clusters it would crowd out the backing name. */
		if (pos + 8 + sizeof(f) + 8 + (o->backing_file ? strlen(o->backing_file) : 0) <= cs)
			qcow2_put_ext(h, cs, &pos, QCOW2_EXT_FEATURE_TABLE, f, sizeof(f));
	}
	if (pos + 8 > cs)
		goto too_big;
	pos += 8;	/* end of extensions: type 0, length 0 */
	if (o->backing_file) {
		size_t len = strlen(o->backing_file);

		if (len > QCOW2_MAX_BACKING_NAME || pos + len > cs)
			goto too_big;
		memcpy(h + pos, o->backing_file, len);
		put_be64(h + offsetof(struct qcow2_header_disk, backing_file_offset), pos);
		put_be32(h + offsetof(struct qcow2_header_disk, backing_file_size), len);
	}
	return 0;
too_big:
	img_err("create: %s: the backing or data file name does not fit in the header cluster",
		o->file);
	return -EINVAL;
}

/*
 * A new LUKS header for @p in *@area (@bytes, locked memory), key slot 0
 * opened by the secret encrypt.key-secret names.  Prints one line on
 * failure.  Returns 0 or -errno.
 */
static int qcow2_create_luks(const struct tgt_create_opts *o,
			     const struct qcow2_create_params *p, uint64_t bytes, void **area)
{
	const struct secret *s = secret_by_id(p->key_secret);
	char why[256] = "";
	int ret;

	if (!s) {
		img_err("create: No secret with id '%s' (give --object secret,id=%s,file=FILE)",
			p->key_secret, p->key_secret);
		return -ENOKEY;
	}
	*area = luks_key_alloc(bytes);
	if (!*area)
		return -ENOMEM;
	ret = luks_format(&p->luks_p, s->data, s->len, *area, bytes, why, sizeof(why));
	if (ret) {
		img_err("create: %s: %s", o->file, why[0] ? why : strerror(-ret));
		luks_key_free(*area, bytes);
		*area = NULL;
	}
	return ret;
}

int qcow2_create(const struct tgt_create_opts *o)
{
	struct qcow2_create_params p;
	struct qcow2 geo = { 0 };
	uint64_t cs, gclusters, l1_size, l1c, l2c = 0, datac = 0, rtc = 1, rbc = 0, total;
	uint64_t l1_off, rt_off, rb_off, l2_off, data_off, i, luks_off = 0, lc = 0;
	int64_t luks_bytes = 0;
	void *luks_area = NULL;
	uint8_t *buf = NULL;
	uint64_t *table = NULL;
	char data_path[PATH_MAX];
	int fd, dfd = -1, ret;
	bool map_all;

	ret = qcow2_parse_create_opts(o, &p);
	if (ret)
		return ret;
	if (o->size_bytes % 512) {
		img_err("create: %s: the image size must be a multiple of 512 bytes", o->file);
		return -EINVAL;
	}
	cs = 1ULL << p.cluster_bits;
	geo.refcount_order = p.refcount_order;
	gclusters = DIV_ROUND_UP(o->size_bytes, cs);
	/* L2 entries are 8 bytes, 16 with extended L2. */
	l1_size = DIV_ROUND_UP(gclusters, cs / (p.extended_l2 ? 16 : 8));
	if (l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		img_err("create: %s: image too large for %" PRIu64 "-byte clusters", o->file, cs);
		return -EFBIG;
	}
	l1c = DIV_ROUND_UP(l1_size * 8, cs);
	/*
	 * Preallocation maps every guest cluster; so does a raw data file
	 * (as QEMU does), whose clusters sit at their guest offsets in the
	 * data file and are not counted here.
	 */
	map_all = p.prealloc != PREALLOC_OFF || p.data_file_raw;
	if (map_all) {
		l2c = l1_size;
		datac = p.data_file ? 0 : gclusters;
	}
	if (p.luks) {
		luks_bytes = luks_area_bytes(&p.luks_p);
		lc = DIV_ROUND_UP((uint64_t)luks_bytes, cs);
	}
	/* Refcount blocks and table clusters cover everything, themselves included. */
	for (;;) {
		uint64_t nb, nt;

		total = 1 + rtc + rbc + l1c + lc + l2c + datac;
		nb = DIV_ROUND_UP(total, 1ULL << (p.cluster_bits + 3 - p.refcount_order));
		nt = DIV_ROUND_UP(nb * 8, cs);
		if (nb == rbc && nt == rtc)
			break;
		rbc = nb;
		rtc = nt;
	}
	if (rtc * cs > QCOW2_MAX_RT_BYTES) {
		img_err("create: %s: refcount table too large; use larger clusters", o->file);
		return -EFBIG;
	}
	rt_off = cs;
	rb_off = rt_off + rtc * cs;
	l1_off = rb_off + rbc * cs;
	/* The LUKS header's clusters follow the L1 table, as QEMU places them. */
	luks_off = l1_off + l1c * cs;
	l2_off = luks_off + lc * cs;
	data_off = l2_off + l2c * cs;

	if (posix_memalign((void **)&buf, 4096, cs) ||
	    posix_memalign((void **)&table, 4096, MAX(rtc, MAX(l1c, 1ULL)) * cs)) {
		ret = -ENOMEM;
		goto out;
	}
	if (p.data_file) {
		/*
		 * Made empty at the guest size, as qemu-img does; the name is
		 * resolved beside the image, where opening it will look (qemu-img
		 * resolves it from its working directory).
		 */
		tgt_resolve_path(o->file, p.data_file, data_path, sizeof(data_path));
		dfd = tgt_create_file(data_path);
		ret = dfd < 0 ? dfd : ftruncate(dfd, o->size_bytes) ? -errno : 0;
		if (ret) {
			if (ret != -EBUSY)
				img_err("create: data file %s: %s", data_path, strerror(-ret));
			goto out;
		}
	}
	fd = tgt_create_file(o->file);
	if (fd < 0) {
		ret = fd;
		if (ret != -EBUSY)
			img_err("create: %s: %s", o->file, strerror(-ret));
		goto out;
	}

	if (p.luks) {
		ret = qcow2_create_luks(o, &p, lc * cs, &luks_area);
		if (ret) {
			close(fd);
			unlink(o->file);
			goto out;
		}
	}
	ret = qcow2_build_header(o, &p, buf, l1_size ? l1_off : 0, l1_size, rt_off, rtc,
				 luks_off, luks_bytes);
	if (ret) {
		/* Already said why; leave no half-made image behind. */
		close(fd);
		unlink(o->file);
		goto out;
	}
	ret = exec_file_write(fd, buf, cs, 0);
	if (ret)
		goto out_close;

	/* Refcount table. */
	memset(table, 0, rtc * cs);
	for (i = 0; i < rbc; i++)
		table[i] = __builtin_bswap64(rb_off + i * cs);
	ret = exec_file_write(fd, table, rtc * cs, rt_off);
	if (ret)
		goto out_close;
	/* Refcount blocks: every cluster up to total has refcount 1. */
	for (i = 0; i < rbc; i++) {
		uint64_t per = 1ULL << (p.cluster_bits + 3 - p.refcount_order), j;

		memset(buf, 0, cs);
		for (j = 0; j < per && i * per + j < total; j++)
			qcow2_rb_set(&geo, buf, j, 1);
		ret = exec_file_write(fd, buf, cs, rb_off + i * cs);
		if (ret)
			goto out_close;
	}
	if (luks_area) {
		ret = exec_file_write(fd, luks_area, lc * cs, luks_off);
		if (ret)
			goto out_close;
	}
	/* L1 (and with preallocation each L2 table, entries COPIED). */
	if (l1c) {
		memset(table, 0, l1c * cs);
		for (i = 0; i < l2c; i++)
			table[i] = __builtin_bswap64((l2_off + i * cs) | QCOW2_COPIED);
		ret = exec_file_write(fd, table, l1c * cs, l1_off);
		if (ret)
			goto out_close;
	}
	for (i = 0; i < l2c; i++) {
		uint64_t per = cs / (p.extended_l2 ? 16 : 8), j, *l2 = (uint64_t *)buf;

		/*
		 * With extended L2 the bitmaps stay 0, as QEMU leaves them: the
		 * preallocated subclusters read as unallocated.
		 */
		memset(buf, 0, cs);
		for (j = 0; j < per && i * per + j < gclusters; j++)
			l2[j << p.extended_l2] =
				__builtin_bswap64(((p.data_file ? 0 : data_off) + (i * per + j) * cs) |
						  QCOW2_COPIED);
		ret = exec_file_write(fd, buf, cs, l2_off + i * cs);
		if (ret)
			goto out_close;
	}
	/* The data clusters read as zeros: a sparse tail, reserved, or written. */
	if (ftruncate(fd, data_off + datac * cs)) {
		ret = -errno;
		goto out_close;
	}
	if (p.data_file) {
		/* The preallocated data lives in the data file, at the guest offsets. */
		datac = p.prealloc >= PREALLOC_FALLOC ? gclusters : 0;
		data_off = 0;
	}
	if (p.prealloc == PREALLOC_FALLOC && datac &&
	    fallocate(dfd >= 0 ? dfd : fd, 0, data_off,
		      dfd >= 0 ? o->size_bytes : datac * cs)) {
		ret = -errno;
		goto out_close;
	}
	if (p.prealloc == PREALLOC_FULL) {
		memset(buf, 0, cs);
		for (i = 0; i < datac && !ret; i++)
			ret = exec_file_write(dfd >= 0 ? dfd : fd, buf,
					       dfd >= 0 ? MIN(cs, o->size_bytes - i * cs) : cs,
					       data_off + i * cs);
		if (ret)
			goto out_close;
	}
	/* Through the executor's helpers, so a crash-state replay sees what create writes. */
	if (dfd >= 0)
		ret = exec_file_sync(dfd);
	if (!ret)
		ret = exec_file_sync(fd);
	/* The secret opens the new image for the rest of the command (convert). */
	if (!ret && p.key_secret)
		ret = secret_bind(p.key_secret, o->file);
out_close:
	if (ret) {
		img_err("create: %s: %s", o->file, strerror(-ret));
		unlink(o->file);
	}
	close(fd);
out:
	if (dfd >= 0)
		close(dfd);
	if (luks_area)
		luks_key_free(luks_area, lc * cs);
	free(buf);
	free(table);
	return ret;
}
