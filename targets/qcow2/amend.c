// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 ->amend: change creation options of an existing image
 * (`imgblk amend -o KEY=VALUE,... FILE`).
 *
 * lazy_refcounts=on|off on a v3 image (A1/A2 in README.md), compat=0.10|1.1
 * either way (A3-A5), refcount_bits=1..64 on a v3 image (A6).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

/* Returns the value of @opt if its key is @key, else NULL. */
static const char *qcow2_amend_val(const char *opt, const char *key)
{
	size_t n = strlen(key);

	return !strncmp(opt, key, n) && opt[n] == '=' ? opt + n + 1 : NULL;
}

/* Bytes an extension of @len data bytes takes, header and padding included. */
static uint64_t qcow2_amend_ext_bytes(uint32_t len)
{
	return 8 + ALIGN_UP((uint64_t)len, 8);
}

/*
 * Builds in @nb (cluster_size bytes, zeroed) the first cluster of the
 * image at @version, laid out as QEMU writes it: the fixed header (v3:
 * 112 bytes, with compression_type), the backing format extension, the
 * other extensions in their order, the feature-name table (v3), the end
 * marker, the backing file name.  Sets *@new_end past the name and
 * *@old_end past what the old header looks at.  Returns 0 or -ENOSPC.
 */
static int qcow2_amend_build_header(struct qcow2 *q, unsigned int version, uint8_t *nb,
				    uint64_t *new_end, uint64_t *old_end)
{
	const uint8_t *ob = q->hdr_buf;
	uint64_t cs = q->cluster_size, pos = q->header_length, out, n;
	uint64_t hlen = version >= 3 ? sizeof(struct qcow2_header_disk) : QCOW2_V2_HEADER_BYTES;
	uint64_t bf_off = get_be64(ob + offsetof(struct qcow2_header_disk, backing_file_offset));
	uint32_t bf_len = get_be32(ob + offsetof(struct qcow2_header_disk, backing_file_size));
	struct qcow2_feature_name f[QCOW2_FEATURE_TABLE_ENTRIES];
	bool fmt_done = false;
	uint32_t type, len;

	memcpy(nb, ob, QCOW2_V2_HEADER_BYTES);
	put_be32(nb + offsetof(struct qcow2_header_disk, version), version);
	if (version >= 3) {
		/* compat, incompat, autoclear 0; compression_type zlib */
		put_be32(nb + offsetof(struct qcow2_header_disk, refcount_order), 4);
		put_be32(nb + offsetof(struct qcow2_header_disk, header_length), hlen);
	}
	out = hlen;
	/* Two passes over the old list: the backing format first, as QEMU puts it. */
	for (int pass = 0; pass < 2; pass++) {
		for (pos = q->header_length; pos + 8 <= cs; pos += n) {
			type = get_be32(ob + pos);
			len = get_be32(ob + pos + 4);
			n = MIN(qcow2_amend_ext_bytes(len), cs - pos);
			if (type == QCOW2_EXT_END)
				break;
			if ((type == QCOW2_EXT_BACKING_FORMAT) != !pass ||
			    type == QCOW2_EXT_FEATURE_TABLE || (pass == 0 && fmt_done))
				continue;
			fmt_done |= type == QCOW2_EXT_BACKING_FORMAT;
			if (out + n > cs)
				return -ENOSPC;
			memcpy(nb + out, ob + pos, n);
			out += n;
		}
	}
	*old_end = MIN(pos + 8, cs);
	/* The feature table only where it fits with the name (small clusters), as QEMU. */
	if (version >= 3 && out + qcow2_amend_ext_bytes(sizeof(f)) + 8 + bf_len <= cs) {
		qcow2_feature_table_fill(f);
		n = qcow2_amend_ext_bytes(sizeof(f));
		put_be32(nb + out, QCOW2_EXT_FEATURE_TABLE);
		put_be32(nb + out + 4, sizeof(f));
		memcpy(nb + out + 8, f, sizeof(f));
		out += n;
	}
	if (out + 8 > cs)
		return -ENOSPC;
	out += 8;	/* the end marker: zeros */
	if (bf_off && bf_len) {
		if (out + bf_len > cs)
			return -ENOSPC;
		memcpy(nb + out, ob + bf_off, bf_len);
		put_be64(nb + offsetof(struct qcow2_header_disk, backing_file_offset), out);
		*old_end = MAX(*old_end, bf_off + bf_len);
		out += bf_len;
	}
	*new_end = out;
	return 0;
}

/* Writes the dio_align blocks of @buf covering [@from, @to), then fdatasync. */
static int qcow2_amend_write_hdr(struct qcow2 *q, const uint8_t *buf, uint64_t from, uint64_t to)
{
	uint64_t a = ALIGN_DOWN(from, (uint64_t)q->dio_align);
	uint64_t b = ALIGN_UP(to, (uint64_t)q->dio_align);
	ssize_t n;

	if (from >= to)
		return 0;
	n = bfile_pwrite(q->file, buf + a, b - a, a, 0);
	if (n < 0)
		return n;
	return bfile_flush(q->file);
}

/*
 * v2 cannot say "reads as zeros" (A4): zero clusters of the active tree
 * become unallocated without a backing file (v2 reads those as zeros),
 * else clusters of written zeros.  Returns 0 or -errno.
 */
static int qcow2_amend_expand_zeros(struct qcow2 *q)
{
	uint64_t off = 0;
	int ret;

	while (off < q->size_bytes) {
		struct qcow2_map m;
		uint64_t n, done;

		ret = qcow2_map(q, off, q->size_bytes - off, &m);
		if (ret)
			return ret;
		/* No I/O on the host cluster here: drop the epoch reference at once. */
		if (m.kind == QCOW2_NORMAL || m.kind == QCOW2_COMPRESSED ||
		    m.kind == QCOW2_ZERO_ALLOC)
			qcow2_epoch_put(q, m.epoch);
		n = m.bytes;
		if (m.kind == QCOW2_ZERO_PLAIN || m.kind == QCOW2_ZERO_ALLOC) {
			/* amend opens no backing chain: the header says whether there is one. */
			if (!q->backing_name) {
				ret = qcow2_discard(q->t, off, n);
			} else {
				for (done = 0, ret = 0; done < n && !ret; done += QCOW2_ZERO_BUF_BYTES)
					ret = qcow2_write(q->t, q->zero_buf,
							  MIN(n - done, (uint64_t)QCOW2_ZERO_BUF_BYTES),
							  off + done, 0);
			}
			if (ret < 0)
				return ret;
		}
		off += n;
	}
	return qcow2_flush_meta(q);
}

/*
 * Changes the image's version (A3 upgrade, A4/A5 downgrade in README.md).
 * Returns 0 or -errno (printed).
 */
static int qcow2_amend_compat(struct qcow2 *q, unsigned int version)
{
	const char *file = q->t->cfg.file;
	uint64_t new_end, old_end, x, end;
	uint8_t *nb = NULL;
	int ret;

	if (version < 3) {
		/* What v2 cannot represent is refused, as QEMU refuses it. */
		if (q->refcount_order != 4) {
			img_err("%s: amend: compat=0.10 requires refcount_bits=16", file);
			return -ENOTSUP;
		}
		if (q->data_file) {
			img_err("%s: amend: cannot downgrade an image with a data file", file);
			return -ENOTSUP;
		}
		if (q->incompat & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_COMPRESSION)) {
			img_err("%s: amend: cannot downgrade an image with incompatible features 0x%llx set",
				file, (unsigned long long)(q->incompat & ~QCOW2_INCOMPAT_DIRTY));
			return -ENOTSUP;
		}
		if (q->compression_type != QCOW2_COMPRESSION_ZLIB) {
			/* QEMU 7.2 downgrades these and loses the type: we do not. */
			img_err("%s: amend: cannot downgrade an image with compression type zstd", file);
			return -ENOTSUP;
		}
		if (q->nb_snapshots) {
			img_err("%s: amend: downgrading an image with internal snapshots is not supported yet",
				file);
			return -ENOTSUP;
		}
		if (q->nr_bms) {
			/* v2 has no autoclear bits: QEMU refuses this too. */
			img_err("%s: amend: cannot downgrade an image with persistent bitmaps", file);
			return -ENOTSUP;
		}
		/*
		 * Clean, and eager refcounts from here: v2 has no dirty bit to
		 * cover refcounts the expansion would otherwise leave unwritten.
		 */
		if (q->lazy || q->lazy_dirty || (q->incompat & QCOW2_INCOMPAT_DIRTY)) {
			ret = qcow2_mark_clean(q);
			if (ret)
				return ret;
		}
		q->lazy = false;
		ret = qcow2_amend_expand_zeros(q);
		if (ret) {
			img_err("%s: amend: cannot expand zero clusters: %s", file, strerror(-ret));
			return ret;
		}
	} else {
		ret = qcow2_flush_meta(q);
		if (ret)
			return ret;
	}
	/* As big as hdr_buf (at least 4 KiB), which it replaces. */
	if (posix_memalign((void **)&nb, 4096, MAX(q->cluster_size, 4096ULL)))
		return -ENOMEM;
	memset(nb, 0, MAX(q->cluster_size, 4096ULL));
	ret = qcow2_amend_build_header(q, version, nb, &new_end, &old_end);
	if (ret) {
		img_err("%s: amend: the header does not fit in the first cluster", file);
		goto out;
	}
	exec_mutex_lock(&q->hdr_mutex);
	/*
	 * A5: blocks the old header never looks at go first; then the first
	 * block switches the version in one write (several blocks, as QEMU
	 * writes them, only when the old header reaches past the first one);
	 * then what is left of the old list is zeroed: no reader looks there.
	 */
	end = MAX(new_end, old_end);
	x = q->dio_align;
	if (new_end > x && old_end <= x)
		ret = qcow2_amend_write_hdr(q, nb, x, new_end);
	else if (new_end > x || old_end > x)
		x = new_end > x ? ALIGN_UP(end, (uint64_t)q->dio_align) : x;
	if (!ret)
		ret = qcow2_amend_write_hdr(q, nb, 0, MIN(x, ALIGN_UP(end, (uint64_t)q->dio_align)));
	if (!ret && end > x)
		ret = qcow2_amend_write_hdr(q, nb, x, end);
	if (!ret) {
		memcpy(q->hdr_buf, nb, MAX(q->cluster_size, 4096ULL));
		q->version = version;
		q->header_length = version >= 3 ? sizeof(struct qcow2_header_disk) :
						 QCOW2_V2_HEADER_BYTES;
		q->incompat = q->compat = q->autoclear = 0;
		q->lazy = false;
		q->refcount_order = 4;
	}
	exec_mutex_unlock(&q->hdr_mutex);
	if (ret)
		img_err("%s: amend: cannot write the header: %s", file, strerror(-ret));
out:
	free(nb);
	return ret;
}

/*
 * Changes the refcount width to 2^@order bits (A6 in README.md): the new
 * table and blocks go to the end of the file, are written and synced,
 * one synced header write switches refcount_order and the table, then
 * the old table and blocks are released.  Returns 0 or -errno (printed).
 */
static int qcow2_amend_refcount_order(struct qcow2 *q, unsigned int order)
{
	const char *file = q->t->cfg.file;
	uint64_t cs = q->cluster_size, per_tbl = cs / 8, start, end, nb = 0, nt = 1;
	unsigned int rb_bits = q->cluster_bits + 3 - order, i_nr;
	uint64_t max = order == 6 ? UINT64_MAX : (1ULL << (1U << order)) - 1;
	uint64_t old_rt_off = q->rt_offset, old_rt_clusters = q->rt_clusters, i, v;
	uint64_t *old_rt = NULL, old_rt_size = q->rt_size, *rt = NULL;
	uint8_t *blocks = NULL;
	struct qcow2 geo = { 0 };
	int ret;

	/* Eager refcounts, all on disk. */
	ret = q->lazy ? qcow2_mark_clean(q) : qcow2_flush_meta(q);
	if (ret)
		return ret;
	q->lazy = false;
	start = q->end_cluster;
	/* Fixpoint: the new blocks cover the whole file, themselves and the table too. */
	for (;;) {
		uint64_t b = DIV_ROUND_UP(start + nb + nt, 1ULL << rb_bits);
		uint64_t t = DIV_ROUND_UP(b, per_tbl);

		if (b == nb && t == nt)
			break;
		nb = b;
		nt = t;
	}
	end = start + nb + nt;
	if (nt * cs > QCOW2_MAX_RT_BYTES) {
		img_err("%s: amend: the refcount table would be too large", file);
		return -EFBIG;
	}
	geo.refcount_order = order;
	if (posix_memalign((void **)&rt, 4096, nt * cs) ||
	    posix_memalign((void **)&blocks, 4096, nb * cs)) {
		ret = -ENOMEM;
		goto out;
	}
	memset(rt, 0, nt * cs);
	memset(blocks, 0, nb * cs);
	exec_mutex_lock(&q->alloc_mutex);
	for (i = 0; i < end; i++) {
		v = 1;	/* the new structures */
		if (i < start) {
			ret = qcow2_refcount_get(q, i, &v);
			if (ret)
				break;
		}
		if (v > max) {
			img_err("%s: amend: cannot decrease refcount entry width to %u bits: cluster at offset 0x%" PRIx64 " has a refcount of %" PRIu64,
				file, 1U << order, i * cs, v);
			ret = -EINVAL;
			break;
		}
		if (v)
			qcow2_rb_set(&geo, blocks + (i >> rb_bits) * cs, i & ((1ULL << rb_bits) - 1), v);
	}
	exec_mutex_unlock(&q->alloc_mutex);
	if (ret)
		goto out;
	for (i = 0; i < nb; i++)
		rt[i] = __builtin_bswap64((start + i) * cs);
	/* A6: the new structures on disk, synced; nothing points at them yet. */
	ret = bfile_pwrite(q->file, blocks, nb * cs, start * cs, 0);
	if (ret >= 0)
		ret = bfile_pwrite(q->file, rt, nt * cs, (start + nb) * cs, 0);
	if (ret >= 0)
		ret = bfile_flush(q->file);
	if (ret < 0)
		goto out;
	/* One synced header write switches width and table. */
	exec_mutex_lock(&q->hdr_mutex);
	put_be32((uint8_t *)q->hdr_buf + offsetof(struct qcow2_header_disk, refcount_order), order);
	q->rt_offset = (start + nb) * cs;
	q->rt_clusters = nt;
	ret = qcow2_write_header_fields(q);
	if (ret) {
		put_be32((uint8_t *)q->hdr_buf + offsetof(struct qcow2_header_disk, refcount_order),
			 q->refcount_order);
		q->rt_offset = old_rt_off;
		q->rt_clusters = old_rt_clusters;
		exec_mutex_unlock(&q->hdr_mutex);
		goto out;
	}
	exec_mutex_unlock(&q->hdr_mutex);
	/* The engine reads the new structures from here on. */
	old_rt = q->rt;
	q->rt = NULL;
	i_nr = q->rbc.nr;
	qcow2_cache_destroy(q, &q->rbc);
	ret = qcow2_cache_init(&q->rbc, i_nr, false, NULL);
	q->refcount_order = order;
	q->rb_bits = rb_bits;
	q->refcount_max = max;
	q->end_cluster = MAX(q->end_cluster, end);
	if (!ret)
		ret = qcow2_load_refcount_table(q);
	/* The new blocks are the refcount blocks now; the old ones go below. */
	if (!ret)
		ret = qcow2_ovl_rebuild(q);
	if (ret)
		goto out;
	/* Only now the old table and blocks go: a crash before leaks them. */
	exec_mutex_lock(&q->alloc_mutex);
	for (i = 0; i < old_rt_size && !ret; i++)
		if (old_rt[i])
			ret = qcow2_refcount_update(q, old_rt[i], cs, -1);
	if (!ret)
		ret = qcow2_refcount_update(q, old_rt_off, old_rt_clusters * cs, -1);
	exec_mutex_unlock(&q->alloc_mutex);
	if (!ret)
		ret = qcow2_flush_meta(q);
out:
	if (ret)
		img_err("%s: amend: cannot change refcount_bits: %s", file, strerror(-ret));
	free(old_rt);
	free(rt);
	free(blocks);
	return ret;
}

/*
 * Turns lazy refcounts on or off (A1/A2 in README.md).  Returns 0 or
 * -errno (printed).
 */
static int qcow2_amend_lazy(struct qcow2 *q, bool on)
{
	int ret;

	if (!!(q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) == on)
		return 0;
	/*
	 * A2 (off): every refcount on disk and the dirty bit clear first
	 * (Z2), then the compatible bit goes with a synced header write.  A
	 * crash in between leaves a clean image that still says lazy.
	 */
	ret = q->lazy ? qcow2_mark_clean(q) : qcow2_flush_meta(q);
	if (ret)
		return ret;
	exec_mutex_lock(&q->hdr_mutex);
	if (on)
		q->compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;	/* A1: one synced write */
	else
		q->compat &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
	ret = qcow2_write_header_fields(q);
	exec_mutex_unlock(&q->hdr_mutex);
	/* This session goes on with eager refcounts either way: close is a clean point. */
	q->lazy = false;
	return ret;
}

int qcow2_amend(struct tgt *t, char *const *options, unsigned int nr_options)
{
	struct qcow2 *q = t->priv;
	int lazy = -1, order = -1;
	unsigned int i, version = q->version;
	const char *v;
	int ret;

	if (q->read_only) {
		img_err("%s: cannot amend: %s", t->cfg.file, q->no_write_reason ?: "read-only");
		return -EROFS;
	}
	for (i = 0; i < nr_options; i++) {
		const char *o = options[i];

		if ((v = qcow2_amend_val(o, "lazy_refcounts"))) {
			if (!strcmp(v, "on") || !strcmp(v, "true")) {
				lazy = 1;
			} else if (!strcmp(v, "off") || !strcmp(v, "false")) {
				lazy = 0;
			} else {
				img_err("amend: lazy_refcounts must be on or off, not '%s'", v);
				return -EINVAL;
			}
		} else if ((v = qcow2_amend_val(o, "compat"))) {
			unsigned int ver = !strcmp(v, "0.10") || !strcmp(v, "v2") ? 2 :
					   !strcmp(v, "1.1") || !strcmp(v, "v3") ? 3 : 0;

			if (!ver) {
				img_err("amend: invalid compat '%s' (0.10 or 1.1)", v);
				return -EINVAL;
			}
			version = ver;
		} else if ((v = qcow2_amend_val(o, "refcount_bits"))) {
			char *end;
			unsigned long bits = strtoul(v, &end, 10);

			if (*end || !bits || bits > 64 || (bits & (bits - 1))) {
				img_err("amend: refcount_bits must be a power of 2 up to 64");
				return -EINVAL;
			}
			order = __builtin_ctzl(bits);
		} else {
			img_err("amend: option '%s' cannot be amended on qcow2 "
				"(lazy_refcounts, compat, refcount_bits can)", o);
			return -EINVAL;
		}
	}
	if (lazy == 1 && version < 3) {
		/* As QEMU: lazy refcounts need compat=1.1. */
		img_err("%s: amend: lazy refcounts only supported with compatibility level 1.1 "
			"and above (use compat=1.1 or greater)", t->cfg.file);
		return -EINVAL;
	}
	if (order >= 0 && order != 4 && version < 3) {
		img_err("%s: amend: refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)",
			t->cfg.file);
		return -EINVAL;
	}
	if (version != q->version) {
		/* A downgrade drops lazy refcounts with the other v3 features. */
		ret = qcow2_amend_compat(q, version);
		if (ret)
			return ret;
	}
	if (order >= 0 && (unsigned int)order != q->refcount_order) {
		ret = qcow2_amend_refcount_order(q, order);
		if (ret)
			return ret;
	}
	if (lazy >= 0 && version >= 3) {
		ret = qcow2_amend_lazy(q, lazy);
		if (ret) {
			img_err("%s: amend: cannot write the header: %s", t->cfg.file,
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}
