// SPDX-License-Identifier: GPL-2.0
/*
 * QED header: probing, parsing and validation on open, and in-place
 * rewrites of the feature bits (need-check, autoclear).
 *
 * Validation refuses everything the engine could not handle safely: a
 * header that does not fit the file, geometry out of the spec's ranges, an
 * L1 table outside the file, an image larger than its tables can map, a
 * backing name outside the header clusters.  Each refusal names the field.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qed.h"
#include "util.h"

int qed_probe(const void *buf, size_t len)
{
	if (len < sizeof(struct qed_header))
		return 0;
	return get_le32(buf) == QED_MAGIC ? 100 : 0;
}

bool qed_cluster_size_ok(uint64_t cluster_size)
{
	return is_pow2(cluster_size) && cluster_size >= QED_MIN_CLUSTER_SIZE &&
	       cluster_size <= QED_MAX_CLUSTER_SIZE;
}

bool qed_table_size_ok(uint64_t table_size)
{
	return is_pow2(table_size) && table_size >= QED_MIN_TABLE_SIZE &&
	       table_size <= QED_MAX_TABLE_SIZE;
}

/* What the L1 table can map: entries^2 clusters (spec, "Tables"). */
uint64_t qed_max_image_size(uint32_t cluster_size, uint32_t table_size)
{
	uint64_t nelems = (uint64_t)table_size * cluster_size / sizeof(uint64_t);

	/* At most 2^21 entries and 2^26-byte clusters: 2^68 overflows, cap it. */
	if (ilog2_u64(nelems) * 2 + ilog2_u64(cluster_size) >= 64)
		return UINT64_MAX;
	return nelems * nelems * cluster_size;
}

/* Reads the backing file name, which may lie anywhere in the header clusters. */
static int qed_read_backing_name(struct qed *q, uint32_t off, uint32_t size)
{
	uint64_t start = ALIGN_DOWN((uint64_t)off, QED_META_BLOCK);
	uint64_t end = ALIGN_UP((uint64_t)off + size, QED_META_BLOCK);
	void *buf;
	ssize_t n;
	int ret = 0;

	if (posix_memalign(&buf, QED_META_BLOCK, end - start))
		return -ENOMEM;
	n = bfile_pread(q->file, buf, end - start, start);
	if (n < 0) {
		ret = n;
		goto out;
	}
	if ((uint64_t)n < off + size - start) {
		ret = -EINVAL;
		goto out;
	}
	q->backing_name = strndup((char *)buf + (off - start), size);
	if (!q->backing_name)
		ret = -ENOMEM;
	/* A NUL inside the name would silently name a different file. */
	else if (strlen(q->backing_name) != size)
		ret = -EINVAL;
out:
	free(buf);
	return ret;
}

int qed_header_load(struct qed *q)
{
	const char *file = q->t->cfg.file;
	struct qed_header h;
	uint64_t file_size, header_bytes, max;
	uint64_t file_bytes;
	ssize_t n;
	int ret;

	if (posix_memalign(&q->hdr_block, QED_META_BLOCK, QED_META_BLOCK))
		return -ENOMEM;
	memset(q->hdr_block, 0, QED_META_BLOCK);
	n = bfile_pread(q->file, q->hdr_block, QED_META_BLOCK, 0);
	if (n < 0) {
		img_err("%s: reading the QED header: %s", file, strerror(-n));
		return n;
	}
	if ((size_t)n < sizeof(h)) {
		img_err("%s: truncated QED header (%zd of %zu bytes)", file, n, sizeof(h));
		return -EINVAL;
	}
	ret = bfile_size(q->file, &file_bytes);
	if (ret) {
		img_err("%s: %s", file, strerror(-ret));
		return ret;
	}

	/* The boundary: every field converted from little-endian here, once. */
	memcpy(&h, q->hdr_block, sizeof(h));
	if (get_le32(&h.magic) != QED_MAGIC) {
		img_err("%s: not a QED image (bad magic)", file);
		return -EINVAL;
	}
	q->cluster_size = get_le32(&h.cluster_size);
	q->table_size = get_le32(&h.table_size);
	q->header_size = get_le32(&h.header_size);
	q->features = get_le64(&h.features);
	q->compat_features = get_le64(&h.compat_features);
	q->autoclear_features = get_le64(&h.autoclear_features);
	q->l1_table_offset = get_le64(&h.l1_table_offset);
	q->image_size = get_le64(&h.image_size);

	if (q->features & ~QED_FEATURES_KNOWN) {
		img_err("%s: unsupported QED feature bits 0x%llx; refusing to open",
			file, (unsigned long long)(q->features & ~QED_FEATURES_KNOWN));
		return -EOPNOTSUPP;
	}
	if (!qed_cluster_size_ok(q->cluster_size)) {
		img_err("%s: invalid QED cluster size %u (a power of 2 in %u..%u)", file,
			q->cluster_size, QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE);
		return -EINVAL;
	}
	if (!qed_table_size_ok(q->table_size)) {
		img_err("%s: invalid QED table size %u (a power of 2 in %u..%u clusters)",
			file, q->table_size, QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE);
		return -EINVAL;
	}
	q->cluster_shift = ilog2_u64(q->cluster_size);
	q->table_bytes = q->table_size * q->cluster_size;
	q->table_nelems = q->table_bytes / sizeof(uint64_t);
	q->l1_shift = q->cluster_shift + ilog2_u64(q->table_nelems);

	/* As QEMU: a trailing partial cluster is not part of the image. */
	file_size = ALIGN_DOWN(file_bytes, (uint64_t)q->cluster_size);
	/* 32-bit fields locate the backing name: the header fits 4 GiB. */
	header_bytes = (uint64_t)q->header_size * q->cluster_size;
	if (!q->header_size || header_bytes > UINT32_MAX || header_bytes > file_size) {
		img_err("%s: invalid QED header size %u clusters", file, q->header_size);
		return -EINVAL;
	}
	if (q->image_size % 512) {
		img_err("%s: QED image size %llu is not a multiple of 512", file,
			(unsigned long long)q->image_size);
		return -EINVAL;
	}
	max = qed_max_image_size(q->cluster_size, q->table_size);
	if (q->image_size > max) {
		img_err("%s: QED image size %llu exceeds what the tables map (%llu)", file,
			(unsigned long long)q->image_size, (unsigned long long)max);
		return -EINVAL;
	}
	/*
	 * The L1 table must lie whole inside the file, after the header.
	 * QEMU 7.2 compares the table's last cluster with <= here and so
	 * refuses its own table_size=1 images; the table fits when its end is
	 * at or before the end of the file.
	 */
	if (!IS_ALIGNED(q->l1_table_offset, (uint64_t)q->cluster_size) ||
	    q->l1_table_offset < header_bytes || q->l1_table_offset > file_size ||
	    file_size - q->l1_table_offset < q->table_bytes) {
		img_err("%s: invalid QED L1 table offset %llu (file has %llu bytes of clusters)",
			file, (unsigned long long)q->l1_table_offset,
			(unsigned long long)file_size);
		return -EINVAL;
	}

	if (q->features & QED_F_BACKING_FILE) {
		uint32_t off = get_le32(&h.backing_filename_offset);
		uint32_t size = get_le32(&h.backing_filename_size);

		if (!size || size >= PATH_MAX || (uint64_t)off + size > header_bytes) {
			img_err("%s: QED backing file name (offset %u, %u bytes) is empty or outside the header",
				file, off, size);
			return -EINVAL;
		}
		ret = qed_read_backing_name(q, off, size);
		if (ret) {
			img_err("%s: cannot read the QED backing file name: %s", file,
				ret == -EINVAL ? "malformed" : strerror(-ret));
			return ret;
		}
	}
	q->file_end = file_size;
	q->file_bytes = file_size;
	return 0;
}

int qed_header_write_features(struct qed *q, bool sync)
{
	struct qed_header *h = q->hdr_block;
	ssize_t n;
	int ret;

	/*
	 * Only the feature words change; the rest of the block (the backing
	 * name, unknown compat data) is written back as read at open.
	 */
	exec_mutex_lock(&q->hdr_wlock);
	put_le64(&h->features, q->features);
	put_le64(&h->autoclear_features, q->autoclear_features);
	n = bfile_pwrite(q->file, q->hdr_block, QED_META_BLOCK, 0, 0);
	ret = n < 0 ? (int)n : 0;
	if (!ret && sync)
		ret = bfile_flush(q->file);
	exec_mutex_unlock(&q->hdr_wlock);
	return ret;
}

int qed_resize(struct tgt *t, uint64_t size_bytes, unsigned int flags)
{
	struct qed *q = t->priv;
	struct qed_header *h = q->hdr_block;
	uint64_t max = qed_max_image_size(q->cluster_size, q->table_size);
	ssize_t n;
	int ret;

	(void)flags;
	/* QED has no way to drop clusters past a new end: no shrinking. */
	if (size_bytes < q->image_size) {
		img_err("%s: QED images cannot shrink", t->cfg.file);
		return -EINVAL;
	}
	if (size_bytes > max) {
		img_err("%s: %llu bytes do not fit this image's tables (at most %llu)",
			t->cfg.file, (unsigned long long)size_bytes, (unsigned long long)max);
		return -EFBIG;
	}
	/*
	 * The grown range must read zeros, but it is unallocated and would
	 * show a backing file longer than the old size.  QEMU refuses such a
	 * grow for QED (its truncate takes no zero-write flag); so do we.
	 */
	if (size_bytes > q->image_size && t->backing &&
	    t->backing->caps.size_bytes > q->image_size) {
		img_err("%s: cannot grow a QED image over its longer backing file: the new area would show the backing data",
			t->cfg.file);
		return -ENOTSUP;
	}
	/* image_size lives in the first sector: one write switches it. */
	exec_mutex_lock(&q->hdr_wlock);
	put_le64(&h->image_size, size_bytes);
	n = bfile_pwrite(q->file, q->hdr_block, QED_META_BLOCK, 0, 0);
	ret = n < 0 ? (int)n : bfile_flush(q->file);
	if (ret)
		put_le64(&h->image_size, q->image_size);
	else
		q->image_size = size_bytes;
	exec_mutex_unlock(&q->hdr_wlock);
	if (ret) {
		img_err("%s: cannot write the header: %s", t->cfg.file, strerror(-ret));
		return ret;
	}
	t->caps.size_bytes = size_bytes;
	return 0;
}

/*
 * Where a new backing name of @len bytes can go in the header area
 * without overlapping the old one, so that the old header stays whole
 * until the switch.  Returns the offset, or 0 if there is no room.
 */
static uint32_t qed_backing_name_slot(const struct qed *q, uint32_t len)
{
	struct qed_header *h = q->hdr_block;
	uint32_t limit = MIN((uint64_t)q->header_size * q->cluster_size, QED_META_BLOCK);
	uint32_t oo = get_le32(&h->backing_filename_offset);
	uint32_t oe = (q->features & QED_F_BACKING_FILE) ? oo + get_le32(&h->backing_filename_size) : oo;
	uint32_t off;

	for (off = sizeof(*h); off + len <= limit; off = ALIGN_DOWN(off, 512) + 512)
		if (off + len <= oo || off >= oe)
			return off;
	return 0;
}

int qed_set_backing(struct tgt *t, const char *name, const char *fmt)
{
	struct qed *q = t->priv;
	struct qed_header *h = q->hdr_block;
	uint32_t len = name ? strlen(name) : 0, off = 0;
	uint64_t features = q->features & ~(QED_F_BACKING_FILE | QED_F_BACKING_RAW);
	char *copy = NULL;
	ssize_t n;
	int ret;

	if (name) {
		off = qed_backing_name_slot(q, len);
		copy = strdup(name);
		if (!off || !copy) {
			free(copy);
			img_err("%s: the backing file name does not fit in the QED header",
				t->cfg.file);
			return -ENAMETOOLONG;
		}
		features |= QED_F_BACKING_FILE;
		/* A raw backing file is never probed, so record that it is raw. */
		if (fmt && !strcmp(fmt, "raw"))
			features |= QED_F_BACKING_RAW;
	}

	exec_mutex_lock(&q->hdr_wlock);
	/*
	 * Two synced writes: the new name where the old header does not look,
	 * then the first sector with the fields that point at it.  A crash in
	 * between leaves the old header, whole.
	 */
	if (name) {
		memcpy((char *)q->hdr_block + off, name, len);
		n = bfile_pwrite(q->file, q->hdr_block, QED_META_BLOCK, 0, 0);
		ret = n < 0 ? (int)n : bfile_flush(q->file);
		if (ret)
			goto out;
	}
	put_le64(&h->features, features);
	put_le32(&h->backing_filename_offset, off);
	put_le32(&h->backing_filename_size, len);
	n = bfile_pwrite(q->file, q->hdr_block, QED_META_BLOCK, 0, 0);
	ret = n < 0 ? (int)n : bfile_flush(q->file);
	if (!ret) {
		q->features = features;
		free(q->backing_name);
		q->backing_name = copy;
		copy = NULL;
	}
out:
	exec_mutex_unlock(&q->hdr_wlock);
	free(copy);
	if (ret)
		img_err("%s: cannot write the header: %s", t->cfg.file, strerror(-ret));
	return ret;
}
