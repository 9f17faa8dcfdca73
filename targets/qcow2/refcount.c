// SPDX-License-Identifier: GPL-2.0
/*
 * Refcounts: the refcount table (host order, in memory) and refcount
 * blocks (on-disk bytes, in the refcount cache), with entries of
 * 2^refcount_order bits.  Sub-byte entries pack from the least significant
 * bit of each byte; wider ones are big-endian.
 *
 * The refcount table and cache are used only with alloc_mutex held (the
 * allocator, flushes, releases), so refcounts never change under a flush.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

uint64_t qcow2_rb_get(const struct qcow2 *q, const void *rb, uint64_t i)
{
	const uint8_t *p = rb;

	switch (q->refcount_order) {
	case 0:
		return (p[i / 8] >> (i % 8)) & 1;
	case 1:
		return (p[i / 4] >> (2 * (i % 4))) & 3;
	case 2:
		return (p[i / 2] >> (4 * (i % 2))) & 15;
	case 3:
		return p[i];
	case 4:
		return get_be16(p + 2 * i);
	case 5:
		return get_be32(p + 4 * i);
	default:
		return get_be64(p + 8 * i);
	}
}

void qcow2_rb_set(const struct qcow2 *q, void *rb, uint64_t i, uint64_t v)
{
	uint8_t *p = rb;
	unsigned int bits, shift;

	switch (q->refcount_order) {
	case 0:
	case 1:
	case 2:
		bits = 1U << q->refcount_order;
		shift = (i % (8 / bits)) * bits;
		p += i / (8 / bits);
		*p = (*p & ~(((1U << bits) - 1) << shift)) | (v << shift);
		break;
	case 3:
		p[i] = v;
		break;
	case 4:
		put_be16(p + 2 * i, v);
		break;
	case 5:
		put_be32(p + 4 * i, v);
		break;
	default:
		put_be64(p + 8 * i, v);
		break;
	}
}

/*
 * The refcount block slot for @cluster, pinned, or *slot = NULL when the
 * table has no block for it (its refcount is 0).  Returns 0 or -errno.
 */
static int qcow2_rb_slot(struct qcow2 *q, uint64_t cluster, struct qcow2_cslot **slot)
{
	uint64_t idx = cluster >> q->rb_bits, off;

	*slot = NULL;
	if (idx >= q->rt_size || !q->rt[idx])
		return 0;
	off = q->rt[idx];
	if (qcow2_off_in_cluster(q, off) || off >= QCOW2_MAX_HOST_OFFSET) {
		img_err("%s: refcount block %" PRIu64 " at unaligned offset 0x%" PRIx64,
			q->t->cfg.file, idx, off);
		return -EIO;
	}
	return qcow2_cache_get(q, &q->rbc, off, false, slot);
}

int qcow2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *val)
{
	struct qcow2_cslot *s;
	int ret = qcow2_rb_slot(q, cluster, &s);

	if (ret)
		return ret;
	*val = 0;
	if (s) {
		*val = qcow2_rb_get(q, s->buf, cluster & ((1ULL << q->rb_bits) - 1));
		qcow2_cache_put(q, &q->rbc, s);
	}
	return 0;
}

/*
 * Adds @delta to the refcount of every cluster touching [off, off + len).
 * An increase is all or nothing: a compressed cluster may straddle two
 * host clusters, and a caller taking back what it added counts whole
 * calls.  A cluster whose refcount drops to 0 is punched out of the file:
 * it holds nothing anyone may read, and a hole reads as zeros when it is
 * reused.  Returns 0 or -errno (-ERANGE on overflow, -EIO on a missing
 * block or an underflow: both mean the image is corrupt).
 */
int qcow2_refcount_update(struct qcow2 *q, uint64_t off, uint64_t len, int delta)
{
	uint64_t c, first = off >> q->cluster_bits;
	uint64_t last = (off + len - 1) >> q->cluster_bits;
	uint64_t mask = (1ULL << q->rb_bits) - 1;
	int ret = 0;

	for (c = first; c <= last; c++) {
		struct qcow2_cslot *s;
		uint64_t v;

		ret = qcow2_rb_slot(q, c, &s);
		if (ret)
			break;
		if (!s) {
			img_err("%s: cluster %" PRIu64 " has no refcount block", q->t->cfg.file, c);
			ret = -EIO;
			break;
		}
		pthread_mutex_lock(&q->lock);
		v = qcow2_rb_get(q, s->buf, c & mask);
		if ((delta < 0 && v < (uint64_t)-delta) ||
		    (delta > 0 && q->refcount_max - v < (uint64_t)delta)) {
			pthread_mutex_unlock(&q->lock);
			qcow2_cache_put(q, &q->rbc, s);
			img_err("%s: refcount of cluster %" PRIu64 " would %s", q->t->cfg.file, c,
				delta < 0 ? "drop below zero" : "overflow");
			ret = delta < 0 ? -EIO : -ERANGE;
			break;
		}
		if (v + delta == 0) {
			/*
			 * A cluster still in use as metadata never drops to 0:
			 * it would be punched and handed out again.  Only an
			 * entry that lies (data naming metadata) gets here.
			 * alloc_mutex keeps v valid while the lock is dropped.
			 */
			pthread_mutex_unlock(&q->lock);
			ret = qcow2_overlap_check(q, 0, c << q->cluster_bits, q->cluster_size);
			if (ret) {
				qcow2_cache_put(q, &q->rbc, s);
				break;
			}
			pthread_mutex_lock(&q->lock);
		}
		v += delta;
		qcow2_rb_set(q, s->buf, c & mask, v);
		qcow2_rb_mark_dirty(q, s, c & mask);
		pthread_mutex_unlock(&q->lock);
		qcow2_cache_put(q, &q->rbc, s);
		if (!v) {
			if (c < q->free_hint)
				q->free_hint = c;
			/* Compressed packing must not continue into a freed cluster. */
			if (q->comp_next && c == q->comp_next >> q->cluster_bits)
				q->comp_next = 0;
			/* Best effort: a filesystem without hole punching keeps the bytes. */
			bfile_fallocate(q->file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       c << q->cluster_bits, q->cluster_size);
		}
	}
	/* Back to where they were. */
	if (ret && delta > 0 && c > first)
		qcow2_refcount_update(q, first << q->cluster_bits,
				      (c - first) << q->cluster_bits, -delta);
	return ret;
}

int qcow2_load_refcount_table(struct qcow2 *q)
{
	uint64_t bytes = (uint64_t)q->rt_clusters * q->cluster_size, i;
	ssize_t n;

	free(q->rt);
	free(q->rt_dirty);
	q->rt = NULL;
	q->rt_dirty = calloc(bytes / q->dio_align, 1);
	if (!q->rt_dirty || posix_memalign((void **)&q->rt, 4096, bytes))
		return -ENOMEM;
	n = bfile_pread(q->file, q->rt, bytes, q->rt_offset);
	if (n < 0)
		return n;
	memset((char *)q->rt + n, 0, bytes - n);
	q->rt_size = bytes / 8;
	for (i = 0; i < q->rt_size; i++)
		q->rt[i] = __builtin_bswap64(q->rt[i]);
	return 0;
}
