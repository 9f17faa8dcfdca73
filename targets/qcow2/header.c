// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 header: v2 and v3 fields, header extensions, the feature-name
 * table, and every reason to refuse an image before touching its tables.
 *
 * The first cluster is kept as read.  Header updates patch fields in that
 * copy and rewrite its first sector(s), so extensions we do not know (and
 * the padding QEMU leaves) survive byte for byte.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "util.h"

static const char *const qcow2_default_names[3][8] = {
	{ "dirty bit", "corrupt bit", "external data file", "compression type",
	  "extended L2 entries" },
	{ "lazy refcounts" },
	{ "bitmaps", "raw external data" },
};

const char *qcow2_feature_name(struct qcow2 *q, unsigned int type, unsigned int bit)
{
	if (q->feature_names[type][bit])
		return q->feature_names[type][bit];
	if (bit < 8 && qcow2_default_names[type][bit])
		return qcow2_default_names[type][bit];
	return NULL;
}

static char *qcow2_strndup(const void *p, size_t len)
{
	char *s = malloc(len + 1);

	if (s) {
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

/*
 * Walks the extensions between the end of the header and @end.
 * Returns 0, or -EINVAL (printed) when one is malformed.
 */
static int qcow2_parse_extensions(struct qcow2 *q, const char *file, uint64_t start,
				  uint64_t end)
{
	const uint8_t *h = q->hdr_buf;
	uint64_t pos = start;

	while (pos + 8 <= end) {
		uint32_t type = get_be32(h + pos);
		uint32_t len = get_be32(h + pos + 4);
		const uint8_t *d = h + pos + 8;

		if (type == QCOW2_EXT_END)
			return 0;
		if (len > end - pos - 8) {
			img_err("%s: qcow2 header extension 0x%08x is longer than the header cluster",
				file, type);
			return -EINVAL;
		}
		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			free(q->backing_fmt);
			q->backing_fmt = qcow2_strndup(d, strnlen((const char *)d, len));
			if (!q->backing_fmt)
				return -ENOMEM;
			break;
		case QCOW2_EXT_FEATURE_TABLE: {
			uint32_t i;

			for (i = 0; i + sizeof(struct qcow2_feature_name) <= len;
			     i += sizeof(struct qcow2_feature_name)) {
				const struct qcow2_feature_name *f = (const void *)(d + i);

				if (f->type > 2 || f->bit > 63)
					continue;
				free(q->feature_names[f->type][f->bit]);
				q->feature_names[f->type][f->bit] =
					qcow2_strndup(f->name, strnlen(f->name, sizeof(f->name)));
			}
			break;
		}
		case QCOW2_EXT_BITMAPS: {
			struct qcow2_bitmaps_ext b;

			if (len < sizeof(b)) {
				img_err("%s: qcow2 bitmaps extension too short", file);
				return -EINVAL;
			}
			memcpy(&b, d, sizeof(b));
			q->nb_bitmaps = __builtin_bswap32(b.nb_bitmaps);
			q->bitmap_dir_size = __builtin_bswap64(b.bitmap_directory_size);
			q->bitmap_dir_offset = __builtin_bswap64(b.bitmap_directory_offset);
			break;
		}
		case QCOW2_EXT_DATA_FILE:
			free(q->data_file_name);
			q->data_file_name = qcow2_strndup(d, strnlen((const char *)d, len));
			if (!q->data_file_name)
				return -ENOMEM;
			break;
		case QCOW2_EXT_CRYPTO: {
			struct qcow2_crypto_ext c;

			if (len != sizeof(c)) {
				img_err("%s: qcow2 encryption header extension has length %u, not %zu",
					file, len, sizeof(c));
				return -EINVAL;
			}
			memcpy(&c, d, sizeof(c));
			q->crypt_ext = true;
			q->crypt_hdr_off = __builtin_bswap64(c.offset);
			q->crypt_hdr_len = __builtin_bswap64(c.length);
			break;
		}
		default:
			/* Unknown extensions: kept verbatim, not interpreted. */
			break;
		}
		pos += 8 + ALIGN_UP((uint64_t)len, 8);
	}
	return 0;
}

/* Prints the unknown incompatible bits by name.  Returns -ENOTSUP. */
static int qcow2_refuse_incompat(struct qcow2 *q, const char *file, uint64_t bits)
{
	char msg[512] = "";
	size_t n = 0;
	unsigned int b;

	/* Feature names come from the image: stop once the message is full. */
	for (b = 0; b < 64 && n < sizeof(msg); b++) {
		const char *name;

		if (!(bits & (1ULL << b)))
			continue;
		name = q->feature_names[0][b];
		if (name)
			n += snprintf(msg + n, sizeof(msg) - MIN(n, sizeof(msg)), "%s'%s'",
				      n ? ", " : "", name);
		else
			n += snprintf(msg + n, sizeof(msg) - MIN(n, sizeof(msg)),
				      "%sunknown incompatible feature bit %u", n ? ", " : "", b);
	}
	img_err("%s: unsupported qcow2 feature(s): %s", file, msg);
	return -ENOTSUP;
}

/* Is [off, off + len) cluster aligned and inside a file of @file_bytes? */
static bool qcow2_table_ok(const struct qcow2 *q, uint64_t off, uint64_t len,
			   uint64_t file_bytes)
{
	return qcow2_off_in_cluster(q, off) == 0 && off < QCOW2_MAX_HOST_OFFSET &&
	       len <= QCOW2_MAX_HOST_OFFSET && off + len <= file_bytes;
}

int qcow2_read_header(struct qcow2 *q, const char *file, unsigned int open_flags)
{
	struct qcow2_header_disk hd;
	uint64_t file_bytes, l1_need, ext_end;
	ssize_t n;
	int ret;

	ret = bfile_size(q->file, &file_bytes);
	if (ret)
		return ret;
	/* Read 4 KiB first: the cluster size is not known yet. */
	if (posix_memalign(&q->hdr_buf, 4096, 4096))
		return -ENOMEM;
	memset(q->hdr_buf, 0, 4096);
	n = bfile_pread(q->file, q->hdr_buf, 4096, 0);
	if (n < 0) {
		img_err("%s: reading the qcow2 header: %s", file, strerror(-n));
		return n;
	}
	if (n < QCOW2_V2_HEADER_BYTES) {
		img_err("%s: file too short for a qcow2 header", file);
		return -EINVAL;
	}
	memcpy(&hd, q->hdr_buf, sizeof(hd));
	if (__builtin_bswap32(hd.magic) != QCOW2_MAGIC) {
		img_err("%s: not a qcow2 image (bad magic)", file);
		return -EINVAL;
	}
	q->version = __builtin_bswap32(hd.version);
	if (q->version != 2 && q->version != 3) {
		img_err("%s: unsupported qcow2 version %u", file, q->version);
		return -ENOTSUP;
	}
	q->cluster_bits = __builtin_bswap32(hd.cluster_bits);
	if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    q->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		img_err("%s: unsupported qcow2 cluster size: 2^%u bytes", file, q->cluster_bits);
		return -EINVAL;
	}
	q->cluster_size = 1ULL << q->cluster_bits;

	if (q->version == 2) {
		q->header_length = QCOW2_V2_HEADER_BYTES;
		q->refcount_order = 4;
		/* Bytes 72.. are extensions in v2: the v3 fields do not exist. */
		hd.incompatible_features = hd.compatible_features = 0;
		hd.autoclear_features = 0;
	} else {
		q->header_length = __builtin_bswap32(hd.header_length);
		q->refcount_order = __builtin_bswap32(hd.refcount_order);
		if (q->header_length < QCOW2_V3_HEADER_BYTES) {
			img_err("%s: qcow2 header too short (%u bytes)", file, q->header_length);
			return -EINVAL;
		}
		if (q->header_length > q->cluster_size || q->header_length % 8) {
			img_err("%s: invalid qcow2 header length %u", file, q->header_length);
			return -EINVAL;
		}
	}
	if (q->refcount_order > 6) {
		img_err("%s: invalid qcow2 refcount order %u (at most 6)", file,
			q->refcount_order);
		return -EINVAL;
	}

	/* The whole first cluster: extensions may fill it. */
	if (q->cluster_size > 4096) {
		void *big;

		if (posix_memalign(&big, 4096, q->cluster_size))
			return -ENOMEM;
		memset(big, 0, q->cluster_size);
		n = bfile_pread(q->file, big, q->cluster_size, 0);
		free(q->hdr_buf);
		q->hdr_buf = big;
		if (n < 0)
			return n;
	}

	q->incompat = __builtin_bswap64(hd.incompatible_features);
	q->compat = __builtin_bswap64(hd.compatible_features);
	q->autoclear = __builtin_bswap64(hd.autoclear_features);
	q->size_bytes = __builtin_bswap64(hd.size);
	q->l1_size = __builtin_bswap32(hd.l1_size);
	q->l1_offset = __builtin_bswap64(hd.l1_table_offset);
	q->rt_offset = __builtin_bswap64(hd.refcount_table_offset);
	q->rt_clusters = __builtin_bswap32(hd.refcount_table_clusters);
	q->nb_snapshots = __builtin_bswap32(hd.nb_snapshots);
	q->snapshots_offset = __builtin_bswap64(hd.snapshots_offset);
	q->compression_type = q->header_length > QCOW2_V3_HEADER_BYTES ?
			      hd.compression_type : QCOW2_COMPRESSION_ZLIB;

	{
		uint64_t bf_off = __builtin_bswap64(hd.backing_file_offset);
		uint32_t bf_len = __builtin_bswap32(hd.backing_file_size);

		ext_end = q->cluster_size;
		if (bf_off) {
			if (bf_len > QCOW2_MAX_BACKING_NAME || bf_off > q->cluster_size ||
			    bf_off + bf_len > q->cluster_size) {
				img_err("%s: qcow2 backing file name too long or outside the header",
					file);
				return -EINVAL;
			}
			q->backing_name = qcow2_strndup((char *)q->hdr_buf + bf_off, bf_len);
			if (!q->backing_name)
				return -ENOMEM;
			ext_end = bf_off;
		}
	}
	ret = qcow2_parse_extensions(q, file, q->header_length, ext_end);
	if (ret)
		return ret;

	/* Refusals, in the order QEMU applies them. */
	if (q->incompat & ~QCOW2_INCOMPAT_KNOWN)
		return qcow2_refuse_incompat(q, file, q->incompat & ~QCOW2_INCOMPAT_KNOWN);
	if ((q->incompat & QCOW2_INCOMPAT_CORRUPT) &&
	    !(open_flags & (TGT_O_RDONLY | TGT_O_CHECK))) {
		img_err("%s: qcow2 image is marked corrupt; it can only be opened read-only "
			"(repair it with imgblk check -r all)", file);
		return -EROFS;
	}
	/* crypt.c unlocks it once the file is open. */
	q->crypt_method = __builtin_bswap32(hd.crypt_method);
	if (q->compression_type > QCOW2_COMPRESSION_ZSTD) {
		img_err("%s: unknown qcow2 compression type %u", file, q->compression_type);
		return -ENOTSUP;
	}
	if (!!(q->incompat & QCOW2_INCOMPAT_COMPRESSION) != !!q->compression_type) {
		img_err("%s: qcow2 compression type %u does not match the compression "
			"type feature bit", file, q->compression_type);
		return -EINVAL;
	}
	if ((q->incompat & QCOW2_INCOMPAT_EXTL2) && q->cluster_bits < 14) {
		img_err("%s: extended L2 entries need clusters of at least 16 KiB", file);
		return -EINVAL;
	}
	if ((q->incompat & QCOW2_INCOMPAT_DATA_FILE) && !q->data_file_name) {
		img_err("%s: qcow2 image has an external data file but does not name it", file);
		return -EINVAL;
	}

	q->l2_bits = q->cluster_bits - 3 - !!(q->incompat & QCOW2_INCOMPAT_EXTL2);
	q->rb_bits = q->cluster_bits + 3 - q->refcount_order;
	q->refcount_max = q->refcount_order == 6 ? UINT64_MAX :
			  (1ULL << (1U << q->refcount_order)) - 1;
	q->csize_shift = 62 - (q->cluster_bits - 8);
	q->csize_mask = (1ULL << (q->cluster_bits - 8)) - 1;
	q->coffset_mask = (1ULL << q->csize_shift) - 1;

	if (q->size_bytes > (1ULL << 62)) {
		img_err("%s: qcow2 image size too large", file);
		return -EINVAL;
	}
	l1_need = DIV_ROUND_UP(DIV_ROUND_UP(q->size_bytes, q->cluster_size),
			       qcow2_l2_entries(q));
	if ((uint64_t)q->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		img_err("%s: qcow2 L1 table too large (%u entries)", file, q->l1_size);
		return -EFBIG;
	}
	if (q->l1_size < l1_need) {
		img_err("%s: qcow2 L1 table too small for the image size (%u < %" PRIu64 ")",
			file, q->l1_size, l1_need);
		return -EINVAL;
	}
	if (q->l1_size && !qcow2_table_ok(q, q->l1_offset, (uint64_t)q->l1_size * 8,
					  file_bytes)) {
		img_err("%s: qcow2 L1 table offset 0x%" PRIx64 " invalid or past end of file",
			file, q->l1_offset);
		return -EINVAL;
	}
	if (!q->rt_clusters || (uint64_t)q->rt_clusters * q->cluster_size > QCOW2_MAX_RT_BYTES) {
		img_err("%s: qcow2 refcount table size invalid (%u clusters)", file,
			q->rt_clusters);
		return -EINVAL;
	}
	if (!qcow2_table_ok(q, q->rt_offset, (uint64_t)q->rt_clusters * q->cluster_size,
			    file_bytes)) {
		img_err("%s: qcow2 refcount table offset 0x%" PRIx64 " invalid or past end of file",
			file, q->rt_offset);
		return -EINVAL;
	}
	if (q->nb_snapshots > 65536 ||
	    (q->nb_snapshots && !qcow2_table_ok(q, q->snapshots_offset, 1, file_bytes))) {
		img_err("%s: qcow2 snapshot table invalid", file);
		return -EINVAL;
	}
	return 0;
}

int qcow2_write_header_fields(struct qcow2 *q)
{
	uint8_t *h = q->hdr_buf;
	ssize_t n;

	put_be64(h + offsetof(struct qcow2_header_disk, size), q->size_bytes);
	put_be64(h + offsetof(struct qcow2_header_disk, l1_table_offset), q->l1_offset);
	put_be32(h + offsetof(struct qcow2_header_disk, l1_size), q->l1_size);
	put_be64(h + offsetof(struct qcow2_header_disk, refcount_table_offset), q->rt_offset);
	put_be32(h + offsetof(struct qcow2_header_disk, refcount_table_clusters),
		 q->rt_clusters);
	put_be32(h + offsetof(struct qcow2_header_disk, nb_snapshots), q->nb_snapshots);
	put_be64(h + offsetof(struct qcow2_header_disk, snapshots_offset), q->snapshots_offset);
	if (q->version >= 3) {
		put_be64(h + offsetof(struct qcow2_header_disk, compatible_features),
			 q->compat);
		put_be64(h + offsetof(struct qcow2_header_disk, incompatible_features),
			 q->incompat);
		put_be64(h + offsetof(struct qcow2_header_disk, autoclear_features),
			 q->autoclear);
	}
	/*
	 * Every caller changes what the rest of the image is read through:
	 * the write is durable before anything depending on it happens.
	 */
	n = bfile_pwrite(q->file, h, q->hdr_bytes, 0, 0);
	if (n < 0)
		return n;
	return bfile_flush(q->file);
}

int qcow2_write_bitmaps_ext(struct qcow2 *q, uint32_t nb, uint64_t dir_off,
			    uint64_t dir_size)
{
	const size_t ext_bytes = 8 + sizeof(struct qcow2_bitmaps_ext);
	uint8_t *h = q->hdr_buf;
	uint64_t bf_off = get_be64(h + offsetof(struct qcow2_header_disk, backing_file_offset));
	uint32_t bf_len = get_be32(h + offsetof(struct qcow2_header_disk, backing_file_size));
	uint64_t limit = bf_off ? bf_off : q->cluster_size, pos = q->header_length;
	uint64_t bm = 0, end = 0, cover;
	struct qcow2_bitmaps_ext e = {
		.nb_bitmaps = __builtin_bswap32(nb),
		.bitmap_directory_size = __builtin_bswap64(dir_size),
		.bitmap_directory_offset = __builtin_bswap64(dir_off),
	};

	/* The list was validated at open and only we changed it since. */
	while (pos + 8 <= limit) {
		uint32_t type = get_be32(h + pos);

		if (type == QCOW2_EXT_END) {
			end = pos;
			break;
		}
		if (type == QCOW2_EXT_BITMAPS)
			bm = pos;
		pos += 8 + ALIGN_UP((uint64_t)get_be32(h + pos + 4), 8);
	}
	if (!end)
		return -EINVAL;
	if (nb && !bm) {
		/* Insert before the end marker; a backing name in the way moves after it. */
		if (end + ext_bytes + 8 > limit) {
			uint64_t name_off = end + ext_bytes + 8;

			if (!bf_off || name_off + bf_len > q->cluster_size) {
				img_err("%s: no room in the header for the bitmaps extension",
					q->t->cfg.file);
				return -ENOSPC;
			}
			memmove(h + name_off, h + bf_off, bf_len);
			put_be64(h + offsetof(struct qcow2_header_disk, backing_file_offset),
				 name_off);
			bf_off = name_off;
		}
		bm = end;
		end += ext_bytes;
		put_be32(h + bm, QCOW2_EXT_BITMAPS);
		put_be32(h + bm + 4, sizeof(e));
		memset(h + end, 0, 8);
	}
	if (nb) {
		memcpy(h + bm + 8, &e, sizeof(e));
		q->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
	} else {
		if (bm) {
			/* Drop it, as QEMU does with the last bitmap. */
			memmove(h + bm, h + bm + ext_bytes, end + 8 - bm - ext_bytes);
			end -= ext_bytes;
			memset(h + end + 8, 0, ext_bytes);
		}
		q->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
	}
	q->nb_bitmaps = nb;
	q->bitmap_dir_offset = dir_off;
	q->bitmap_dir_size = dir_size;
	cover = MAX(end + 8, bf_off ? bf_off + bf_len : 0);
	q->hdr_bytes = MAX(q->hdr_bytes, ALIGN_UP(cover, (uint64_t)q->dio_align));
	return qcow2_write_header_fields(q);
}

int qcow2_set_dirty_bit(struct qcow2 *q, bool dirty)
{
	int ret;

	exec_mutex_lock(&q->hdr_mutex);
	if (dirty)
		q->incompat |= QCOW2_INCOMPAT_DIRTY;
	else
		q->incompat &= ~QCOW2_INCOMPAT_DIRTY;
	ret = qcow2_write_header_fields(q);
	exec_mutex_unlock(&q->hdr_mutex);
	return ret;
}

int qcow2_mark_corrupt(struct qcow2 *q, const char *why)
{
	/* Reported and recorded once, as QEMU does: later events add nothing. */
	if (__atomic_exchange_n(&q->corrupt, true, __ATOMIC_ACQ_REL))
		return -EIO;
	img_err("%s: qcow2 image corrupt: %s; further writes refused", q->t->cfg.file, why);
	/* v2 has no feature bits: the refusal lasts while the image is open. */
	if (q->read_only || q->version < 3)
		return -EIO;
	exec_mutex_lock(&q->hdr_mutex);
	q->incompat |= QCOW2_INCOMPAT_CORRUPT;
	qcow2_write_header_fields(q);
	exec_mutex_unlock(&q->hdr_mutex);
	return -EIO;
}

void qcow2_header_free(struct qcow2 *q)
{
	unsigned int i, j;

	for (i = 0; i < 3; i++)
		for (j = 0; j < 64; j++)
			free(q->feature_names[i][j]);
	free(q->backing_name);
	free(q->backing_fmt);
	free(q->data_file_name);
	free(q->hdr_buf);
}
