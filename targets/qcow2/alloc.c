// SPDX-License-Identifier: GPL-2.0
/*
 * Host cluster allocation: first fit from a hint, new refcount blocks,
 * refcount table growth, and deferred frees.  Everything here runs with
 * alloc_mutex held (see README.md, "Concurrency").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qcow2.h"
#include "util.h"

/* Marks the refcount table sector holding entry @idx dirty. */
static void qcow2_rt_touch(struct qcow2 *q, uint64_t idx)
{
	q->rt_dirty[idx * 8 / q->dio_align] = 1;
}

/* How many of the refcount ranges @r0..@r1 have no block yet. */
static uint64_t qcow2_rt_missing(const struct qcow2 *q, uint64_t r0, uint64_t r1)
{
	uint64_t r, missing = 0;

	for (r = r0; r <= r1; r++)
		if (r >= q->rt_size || !q->rt[r])
			missing++;
	return missing;
}

/*
 * Counts every cluster of the area [@start, @end) of free clusters once
 * (refcount 1): in @blocks, the bytes of the new blocks the area starts
 * with (one per range the table has no block for, in range order), or
 * through the cache where a range already has a block.  Returns 0 or
 * -errno.
 */
static int qcow2_area_count(struct qcow2 *q, uint64_t start, uint64_t end, void *blocks)
{
	uint64_t mask = (1ULL << q->rb_bits) - 1, r, c, k = 0;
	int ret;

	for (r = start >> q->rb_bits; r <= (end - 1) >> q->rb_bits; r++) {
		uint64_t lo = MAX(start, r << q->rb_bits);
		uint64_t hi = MIN(end, (r + 1) << q->rb_bits);

		if (r < q->rt_size && q->rt[r]) {
			ret = qcow2_refcount_update(q, lo << q->cluster_bits,
						    (hi - lo) << q->cluster_bits, 1);
			if (ret)
				return ret;
			continue;
		}
		for (c = lo; c < hi; c++)
			qcow2_rb_set(q, (char *)blocks + k * q->cluster_size, c & mask, 1);
		k++;
	}
	return 0;
}

/*
 * Grows the refcount table so that it has entry @need_idx.  The new table
 * goes to the end of the file together with the refcount blocks that the
 * new area itself needs.  Order (README.md, step R2): blocks and table
 * written, fdatasync, header switched with a synced write, then the old
 * table freed.  Returns 0 or -errno.
 */
static int qcow2_rt_grow(struct qcow2 *q, uint64_t need_idx)
{
	uint64_t per_cluster = q->cluster_size / 8;
	uint64_t start = q->end_cluster, nb = 0, entries, nt, r, r0, r1, i;
	uint64_t old_off = q->rt_offset, old_clusters = q->rt_clusters;
	uint64_t *rt = NULL;
	void *blocks = NULL;
	uint8_t *dirty = NULL;
	int ret;

	entries = ALIGN_UP(MAX(need_idx + 1, q->rt_size * 2), per_cluster);
	/* Fixpoint: the area holds its own blocks and the table, all counted. */
	for (;;) {
		uint64_t missing;

		nt = entries / per_cluster;
		r0 = start >> q->rb_bits;
		r1 = (start + nb + nt - 1) >> q->rb_bits;
		if (r1 >= entries) {
			entries = ALIGN_UP(r1 + 1, per_cluster);
			continue;
		}
		missing = qcow2_rt_missing(q, r0, r1);
		if (missing == nb)
			break;
		nb = missing;
	}
	if (nt * q->cluster_size > QCOW2_MAX_RT_BYTES ||
	    ((start + nb + nt) << q->cluster_bits) > QCOW2_MAX_HOST_OFFSET) {
		img_err("%s: qcow2 refcount table would exceed its size limit", q->t->cfg.file);
		return -EFBIG;
	}

	if (posix_memalign((void **)&rt, 4096, nt * q->cluster_size) ||
	    (nb && posix_memalign(&blocks, 4096, nb * q->cluster_size)) ||
	    !(dirty = calloc(nt * q->cluster_size / q->dio_align, 1))) {
		ret = -ENOMEM;
		goto out;
	}
	memset(rt, 0, nt * q->cluster_size);
	memcpy(rt, q->rt, q->rt_size * 8);
	if (nb)
		memset(blocks, 0, nb * q->cluster_size);

	ret = qcow2_area_count(q, start, start + nb + nt, blocks);
	if (ret)
		goto out;
	/* Place the missing blocks at the start of the area, in range order. */
	i = 0;
	for (r = r0; r <= r1; r++)
		if (!rt[r])
			rt[r] = (start + i++) << q->cluster_bits;

	/* Blocks the new table points to must be on disk before it. */
	ret = qcow2_cache_writeback(q, &q->rbc);
	if (ret)
		goto out;
	/* Past every cluster in use: only refcounts that lie make it meet metadata. */
	ret = qcow2_overlap_check(q, 0, start << q->cluster_bits,
				  (nb + nt) << q->cluster_bits);
	if (ret)
		goto out;
	if (nb) {
		ret = bfile_pwrite(q->file, blocks, nb * q->cluster_size,
				  start << q->cluster_bits, 0);
		if (ret < 0)
			goto out;
	}
	for (i = 0; i < nt * per_cluster; i++)
		rt[i] = __builtin_bswap64(rt[i]);
	ret = bfile_pwrite(q->file, rt, nt * q->cluster_size,
			  (start + nb) << q->cluster_bits, 0);
	for (i = 0; i < nt * per_cluster; i++)
		rt[i] = __builtin_bswap64(rt[i]);
	if (ret < 0)
		goto out;
	ret = bfile_flush(q->file);
	if (ret)
		goto out;

	exec_mutex_lock(&q->hdr_mutex);
	q->rt_offset = (start + nb) << q->cluster_bits;
	q->rt_clusters = nt;
	ret = qcow2_write_header_fields(q);
	if (ret) {
		q->rt_offset = old_off;
		q->rt_clusters = old_clusters;
		exec_mutex_unlock(&q->hdr_mutex);
		goto out;
	}
	exec_mutex_unlock(&q->hdr_mutex);

	free(q->rt);
	free(q->rt_dirty);
	q->rt = rt;
	q->rt_dirty = dirty;
	q->rt_size = nt * per_cluster;
	rt = NULL;
	dirty = NULL;
	q->end_cluster = start + nb + nt;
	pthread_mutex_lock(&q->lock);
	for (i = 0, ret = 0; i < nb && !ret; i++)
		ret = qcow2_ovl_add(q, (start + i) << q->cluster_bits, QCOW2_META_RB);
	pthread_mutex_unlock(&q->lock);
	/* The header no longer points at the old table: it may go now. */
	if (!ret)
		ret = qcow2_refcount_update(q, old_off, old_clusters << q->cluster_bits, -1);
out:
	free(rt);
	free(blocks);
	free(dirty);
	return ret;
}

/*
 * Is cluster @c free?  When its range has no refcount block yet, @c
 * becomes that block (it describes itself) and is not free.
 * Returns 1 free, 0 in use, -errno.
 */
static int qcow2_cluster_free(struct qcow2 *q, uint64_t c)
{
	uint64_t idx = c >> q->rb_bits, v;
	struct qcow2_cslot *s;
	int ret;

	if (idx >= q->rt_size) {
		ret = qcow2_rt_grow(q, idx);
		if (ret)
			return ret;
	}
	if (!q->rt[idx]) {
		/*
		 * A range without a block holds no used cluster: the first
		 * one we look at becomes its block.  The table entry is
		 * written only after the block (README.md, step R1).
		 */
		ret = qcow2_cache_get(q, &q->rbc, c << q->cluster_bits, true, &s);
		if (ret)
			return ret;
		pthread_mutex_lock(&q->lock);
		ret = qcow2_ovl_add(q, c << q->cluster_bits, QCOW2_META_RB);
		if (ret) {
			pthread_mutex_unlock(&q->lock);
			qcow2_cache_put(q, &q->rbc, s);
			return ret;
		}
		qcow2_rb_set(q, s->buf, c & ((1ULL << q->rb_bits) - 1), 1);
		qcow2_cache_mark_dirty(&q->rbc, s);
		pthread_mutex_unlock(&q->lock);
		qcow2_cache_put(q, &q->rbc, s);
		q->rt[idx] = c << q->cluster_bits;
		qcow2_rt_touch(q, idx);
		q->end_cluster = MAX(q->end_cluster, c + 1);
		return 0;
	}
	ret = qcow2_refcount_get(q, c, &v);
	if (ret)
		return ret;
	return v == 0;
}

/*
 * Makes the file at least @end bytes long, growing it by whole
 * QCOW2_GROW_BYTES steps so that data writes land inside it, in reserved
 * blocks (bfile_grow()).  The growth reads as zeros.  Returns 0 or
 * -errno.
 */
static int qcow2_grow_file(struct qcow2 *q, uint64_t end)
{
	uint64_t size = ALIGN_UP(end, (uint64_t)MAX(QCOW2_GROW_BYTES, q->cluster_size));
	int ret;

	if (end <= q->file_bytes)
		return 0;
	ret = bfile_grow(q->file, q->file_bytes, size);
	if (ret)
		return ret;
	q->file_bytes = size;
	return 0;
}

/*
 * Allocates up to @n contiguous host clusters (refcount 1 each, in the
 * cache) and returns the host offset of the first, with *got set to how
 * many; fewer than @n when the first free run is shorter.  *@fresh (if
 * not NULL) tells whether the run lies beyond every cluster ever used
 * since open and beyond the file's size at open: such clusters read as
 * zeros without being written.  Caller holds alloc_mutex.  Returns the
 * offset or -errno.
 */
int64_t qcow2_alloc_clusters(struct qcow2 *q, uint64_t n, uint64_t *got, bool *fresh)
{
	uint64_t c = q->free_hint, cnt;
	int ret;

	for (;;) {
		ret = qcow2_cluster_free(q, c);
		if (ret < 0)
			return ret;
		if (ret)
			break;
		c++;
	}
	for (cnt = 1; cnt < n; cnt++) {
		/*
		 * Growing the table here would put it in the end-of-file
		 * space this run is about to take: stop the run instead.
		 */
		if ((c + cnt) >> q->rb_bits >= q->rt_size)
			break;
		ret = qcow2_cluster_free(q, c + cnt);
		if (ret < 0)
			return ret;
		if (!ret)
			break;
	}
	if ((c + cnt) << q->cluster_bits > QCOW2_MAX_HOST_OFFSET) {
		img_err("%s: qcow2 image file would exceed 2^56 bytes", q->t->cfg.file);
		return -EFBIG;
	}
	ret = qcow2_grow_file(q, (c + cnt) << q->cluster_bits);
	if (ret)
		return ret;
	ret = qcow2_refcount_update(q, c << q->cluster_bits, cnt << q->cluster_bits, 1);
	if (ret)
		return ret;
	if (fresh)
		*fresh = c >= q->end_cluster;
	/* Every cluster below c was found in use. */
	q->free_hint = c + cnt;
	q->end_cluster = MAX(q->end_cluster, c + cnt);
	*got = cnt;
	return (int64_t)(c << q->cluster_bits);
}

/*
 * Is every cluster of [@start, @end) free?  Past end_cluster only a
 * refcount that leaked (a crash of another writer before the file grew)
 * or lies counts anything, and only in a range that has a block.  If
 * not, *@next is the cluster after the last one in use.
 * Returns 1 free, 0 not, -errno.
 */
static int qcow2_area_free(struct qcow2 *q, uint64_t start, uint64_t end, uint64_t *next)
{
	uint64_t c, v;
	int ret, all_free = 1;

	for (c = start; c < end; c++) {
		uint64_t r = c >> q->rb_bits;

		if (r >= q->rt_size || !q->rt[r]) {
			/* No block: nothing in this range is in use. */
			c = ((r + 1) << q->rb_bits) - 1;
			continue;
		}
		ret = qcow2_refcount_get(q, c, &v);
		if (ret)
			return ret;
		if (v) {
			*next = c + 1;
			all_free = 0;
		}
	}
	return all_free;
}

/*
 * Allocates @n contiguous clusters at the end of the file (refcount 1
 * each, README.md step R3) and returns the offset of the first.  For a
 * run longer than one refcount block covers, the first-fit allocator
 * cannot do it: each range without a block would take its first free
 * cluster as its block, cutting the run.  Here those blocks go in front
 * of the run, [start, start + nb), the run after them, and every block
 * counts the blocks and run clusters of its range.  The blocks are
 * written now; their table entries change in memory only, for the next
 * flush to write after its fdatasync (R1).  Caller holds alloc_mutex.
 * Returns the offset or -errno.
 */
int64_t qcow2_alloc_end(struct qcow2 *q, uint64_t n)
{
	uint64_t start, end, nb, r0, r1, r, k, next;
	void *blocks = NULL;
	int ret;

	for (;;) {
		start = q->end_cluster;
		nb = 0;
		/* Fixpoint: the blocks take clusters too, which may reach a further range. */
		for (;;) {
			uint64_t missing;

			r0 = start >> q->rb_bits;
			r1 = (start + nb + n - 1) >> q->rb_bits;
			missing = qcow2_rt_missing(q, r0, r1);
			if (missing == nb)
				break;
			nb = missing;
		}
		end = start + nb + n;
		if (end > QCOW2_MAX_HOST_OFFSET >> q->cluster_bits) {
			img_err("%s: qcow2 image file would exceed 2^56 bytes", q->t->cfg.file);
			return -EFBIG;
		}
		if (r1 >= q->rt_size) {
			/*
			 * The table grows first (R2), at the end of the file:
			 * the area then starts past it.
			 */
			ret = qcow2_rt_grow(q, r1);
			if (ret)
				return ret;
			continue;
		}
		ret = qcow2_area_free(q, start, end, &next);
		if (ret < 0)
			return ret;
		if (ret)
			break;
		q->end_cluster = next;
	}

	if (nb) {
		if (posix_memalign(&blocks, 4096, nb << q->cluster_bits))
			return -ENOMEM;
		memset(blocks, 0, nb << q->cluster_bits);
	}
	/* Past every cluster in use: only refcounts that lie make it meet metadata. */
	ret = qcow2_overlap_check(q, 0, start << q->cluster_bits, (end - start) << q->cluster_bits);
	if (!ret)
		ret = qcow2_grow_file(q, end << q->cluster_bits);
	if (!ret)
		ret = qcow2_area_count(q, start, end, blocks);
	if (ret)
		goto out;
	/* From here on the area is in use, whatever happens below. */
	q->end_cluster = end;
	if (nb) {
		/* Before any table entry names them: F2 syncs them ahead of R1. */
		ret = bfile_pwrite(q->file, blocks, nb << q->cluster_bits, start << q->cluster_bits, 0);
		if (ret < 0)
			goto out;
		ret = 0;
	}
	/*
	 * An entry is set only once the overlap index knows its block.  On
	 * failure the run is not handed out: what was counted leaks.
	 */
	pthread_mutex_lock(&q->lock);
	for (r = r0, k = 0; r <= r1; r++) {
		if (q->rt[r])
			continue;
		ret = qcow2_ovl_add(q, (start + k) << q->cluster_bits, QCOW2_META_RB);
		if (ret)
			break;
		q->rt[r] = (start + k++) << q->cluster_bits;
		qcow2_rt_touch(q, r);
	}
	pthread_mutex_unlock(&q->lock);
out:
	free(blocks);
	return ret ? ret : (int64_t)((start + nb) << q->cluster_bits);
}

/*
 * Allocates @n contiguous clusters (refcount 1).  A first fit may be
 * shorter: give it back and take the end of the file, where the run gets
 * the refcount blocks it needs in front of it.  Returns the offset or
 * -errno.
 */
int64_t qcow2_alloc_contig(struct qcow2 *q, uint64_t n)
{
	uint64_t got;
	int64_t off;
	int ret;

	exec_mutex_lock(&q->alloc_mutex);
	off = qcow2_alloc_clusters(q, n, &got, NULL);
	if (off >= 0 && got < n) {
		ret = qcow2_refcount_update(q, off, got << q->cluster_bits, -1);
		off = ret ? ret : qcow2_alloc_end(q, n);
	}
	exec_mutex_unlock(&q->alloc_mutex);
	return off;
}

/*
 * Queues [off, off + len) for a refcount decrement once the L2 change
 * that dropped it is on disk (README.md, step F3).  Caller holds lock.
 */
void qcow2_free_later(struct qcow2 *q, uint64_t off, uint64_t len)
{
	if (q->nr_frees == q->cap_frees) {
		size_t cap = q->cap_frees ? q->cap_frees * 2 : 64;
		struct qcow2_free *f = realloc(q->frees, cap * sizeof(*f));

		/* Without memory the cluster just stays allocated: a leak, never a corruption. */
		if (!f)
			return;
		q->frees = f;
		q->cap_frees = cap;
	}
	q->frees[q->nr_frees].off = off;
	q->frees[q->nr_frees].len = len;
	q->nr_frees++;
}

/*
 * Applies the queued frees.  Called by a flush, with alloc_mutex held,
 * after the L2/L1 tables that no longer point at these clusters are on
 * disk.  It first waits for data I/O that looked the clusters up before
 * they were dropped: the clusters are punched and may be reused at once.
 * Returns 0 or -errno.
 */
int qcow2_release_frees(struct qcow2 *q)
{
	struct qcow2_free *frees;
	unsigned int old;
	size_t n, i;
	int ret = 0;

	pthread_mutex_lock(&q->lock);
	frees = q->frees;
	n = q->nr_frees;
	q->frees = NULL;
	q->nr_frees = q->cap_frees = 0;
	old = q->epoch & 1;
	q->epoch++;
	while (q->epoch_io[old])
		exec_waitq_sleep(&q->epoch_wq, &q->lock);
	pthread_mutex_unlock(&q->lock);

	for (i = 0; i < n; i++) {
		int r = qcow2_refcount_update(q, frees[i].off, frees[i].len, -1);

		if (r && !ret)
			ret = r;
	}
	free(frees);
	return ret;
}
