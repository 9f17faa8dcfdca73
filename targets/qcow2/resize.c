// SPDX-License-Identifier: GPL-2.0
/*
 * Changing the guest size (tgt_ops->resize), from the `resize` verb on
 * an image nothing else uses.  Ordering (README.md, "Resize"):
 *
 * Grow, when the L1 table needs more entries (G1-G3): the new L1 goes to
 * new clusters and is synced with its refcounts, the header switches to
 * it (and to the new size) with a synced write, then the old L1's
 * clusters are released.  A crash leaves the old image or the new one,
 * and at worst a leaked table.
 *
 * Grow over a longer backing file (B1-B3): the grown range the backing
 * file covers must read zeros, as in QEMU, so its zero entries are made
 * durable past the old end, under the old size (and after G1-G2 if the
 * L1 grows, which then keeps the old size); only then does the header
 * take the new size.  A crash in between leaves the old size, and entries
 * past it that no read reaches and the next grow writes again.
 *
 * Shrink (K1-K2): the header switches to the new size and L1 length
 * first, so no guest offset reaches the cut clusters any more; then their
 * L2 entries and L1 entries are cleared and they are released after those
 * changes are on disk.  A crash in between leaks them, never more.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

static uint64_t qcow2_l1_entries_for(const struct qcow2 *q, uint64_t size_bytes)
{
	return DIV_ROUND_UP(DIV_ROUND_UP(size_bytes, q->cluster_size), qcow2_l2_entries(q));
}

/*
 * Switches the header's size, L1 offset and L1 length with a synced
 * write.  Returns 0 or -errno (the fields are left as they were).
 */
static int qcow2_switch_header(struct qcow2 *q, uint64_t size, uint64_t l1_off,
			       uint32_t l1_size)
{
	uint64_t os = q->size_bytes, oo = q->l1_offset;
	uint32_t ol = q->l1_size;
	int ret;

	exec_mutex_lock(&q->hdr_mutex);
	q->size_bytes = size;
	q->l1_offset = l1_off;
	q->l1_size = l1_size;
	ret = qcow2_write_header_fields(q);
	if (ret) {
		q->size_bytes = os;
		q->l1_offset = oo;
		q->l1_size = ol;
	}
	exec_mutex_unlock(&q->hdr_mutex);
	return ret;
}

/*
 * G1-G3: a larger L1 table of @entries, then the header with @size (the
 * old size when B1-B3 follow).  Returns 0 or -errno.
 */
static int qcow2_grow_l1(struct qcow2 *q, uint64_t size, uint64_t entries)
{
	uint64_t bytes = ALIGN_UP(entries * 8, q->cluster_size);
	uint64_t old_off = q->l1_offset, old_bytes = ALIGN_UP((uint64_t)q->l1_size * 8,
							      q->cluster_size);
	uint64_t *l1 = NULL;
	uint8_t *dirty = NULL;
	int64_t off;
	int ret;

	if (entries * 8 > QCOW2_MAX_L1_BYTES) {
		img_err("%s: %" PRIu64 " bytes need an L1 table larger than 32 MiB",
			q->t->cfg.file, size);
		return -EFBIG;
	}
	/* The in-memory L1 must equal the one on disk before it is copied. */
	ret = qcow2_flush_meta(q);
	if (ret)
		return ret;
	if (posix_memalign((void **)&l1, 4096, bytes) ||
	    !(dirty = calloc(bytes / q->dio_align, 1))) {
		ret = -ENOMEM;
		goto err;
	}
	memset(l1, 0, bytes);
	memcpy(l1, q->l1, (uint64_t)q->l1_size * 8);
	/* G1: the new table, its refcounts (flush: F1) and bytes (F2) durable. */
	off = qcow2_write_l1_copy(q, l1, entries, false);
	if (off < 0) {
		ret = off;
		goto err;
	}
	ret = qcow2_flush_meta(q);
	/* G2: the header points at it, synced. */
	if (!ret)
		ret = qcow2_switch_header(q, size, off, entries);
	if (ret) {
		exec_mutex_lock(&q->alloc_mutex);
		qcow2_refcount_update(q, off, bytes, -1);
		exec_mutex_unlock(&q->alloc_mutex);
		goto err;
	}
	pthread_mutex_lock(&q->lock);
	free(q->l1);
	free(q->l1_dirty);
	q->l1 = l1;
	q->l1_dirty = dirty;
	pthread_mutex_unlock(&q->lock);
	/* G3: nothing on disk names the old table now. */
	if (old_off && old_bytes) {
		exec_mutex_lock(&q->alloc_mutex);
		ret = qcow2_refcount_update(q, old_off, old_bytes, -1);
		exec_mutex_unlock(&q->alloc_mutex);
	}
	return ret ? ret : qcow2_flush_meta(q);
err:
	free(l1);
	free(dirty);
	return ret;
}

/*
 * Is anything allocated in this layer at guest clusters [c0, c1)?
 * Returns 1 yes, 0 no, -errno.
 */
static int qcow2_any_allocated(struct qcow2 *q, uint64_t c0, uint64_t c1)
{
	while (c0 < c1) {
		struct qcow2_map m;
		int ret = qcow2_map(q, c0 << q->cluster_bits, (c1 - c0) << q->cluster_bits, &m);

		if (ret)
			return ret;
		if (m.kind == QCOW2_NORMAL || m.kind == QCOW2_COMPRESSED ||
		    m.kind == QCOW2_ZERO_ALLOC)
			qcow2_epoch_put(q, m.epoch);
		if (m.kind != QCOW2_UNALLOC)
			return 1;
		c0 += DIV_ROUND_UP(m.bytes, q->cluster_size);
	}
	return 0;
}

/*
 * K2: clears the L2 entries of guest clusters [c0, end) and the L1
 * entries from @l1_keep on (their tables go too), queueing everything
 * they held for release after the cleared tables are on disk.
 * Returns 0 or -errno.
 */
static int qcow2_cut(struct qcow2 *q, uint64_t c0, uint64_t old_l1_size, uint64_t l1_keep)
{
	uint64_t l1i, i, n = qcow2_l2_entries(q);

	for (l1i = c0 >> q->l2_bits; l1i < old_l1_size; l1i++) {
		uint64_t l2off = q->l1[l1i] & QCOW2_L1_OFFSET_MASK, first, *l2;
		struct qcow2_cslot *slot;
		int ret;

		if (!l2off)
			continue;
		/* A table shared with a snapshot is copied first: its entries stay there. */
		ret = qcow2_l2_get_for_write(q, l1i << q->l2_bits, &slot);
		if (ret)
			return ret;
		pthread_mutex_lock(&q->lock);
		l2off = q->l1[l1i] & QCOW2_L1_OFFSET_MASK;
		pthread_mutex_unlock(&q->lock);
		l2 = slot->buf;
		first = l1i == c0 >> q->l2_bits ? qcow2_l2_index(q, c0) : 0;
		qcow2_commit_begin(q);
		for (i = first; i < n; i++) {
			uint64_t e = qcow2_l2_get(q, l2, i), foff, flen;

			switch (qcow2_l2_kind(q, e)) {
			case QCOW2_NORMAL:
			case QCOW2_ZERO_ALLOC:
				if (qcow2_l2_valid(q, e))
					qcow2_free_data_later(q, qcow2_l2_host(q, e), q->cluster_size);
				break;
			case QCOW2_COMPRESSED:
				qcow2_compressed_range(q, e, &foff, &flen);
				qcow2_free_data_later(q, foff, flen);
				break;
			default:
				break;
			}
			if (e || qcow2_l2_get_bitmap(q, l2, i)) {
				qcow2_l2_set(q, l2, i, 0, 0);
				qcow2_cache_mark_dirty(&q->l2c, slot);
			}
		}
		if (l1i >= l1_keep) {
			q->l1[l1i] = 0;
			q->l1_dirty[l1i * 8 / q->dio_align] = 1;
			qcow2_ovl_del(q, l2off, QCOW2_META_L2);
			qcow2_free_later(q, l2off, q->cluster_size);
		}
		qcow2_commit_end(q);
		qcow2_cache_put(q, &q->l2c, slot);
	}
	return qcow2_flush_meta(q);
}

/*
 * Where a grow to @size must stop reading the backing file: its end or
 * @size, whichever comes first; 0 when it ends at or before the current
 * size, so the grown range reads zeros already (QEMU's condition).
 */
static uint64_t qcow2_grow_zero_end(const struct qcow2 *q, uint64_t size)
{
	const struct tgt *b = q->t->backing;

	if (!b || b->caps.size_bytes <= q->size_bytes)
		return 0;
	return MIN(size, b->caps.size_bytes);
}

/*
 * Grows to @size.  Returns 0 or -errno; on failure the header keeps the
 * old size (a grown L1 may stay, it is valid for the old size too).
 */
static int qcow2_grow(struct qcow2 *q, uint64_t size)
{
	uint64_t entries = qcow2_l1_entries_for(q, size), old = q->size_bytes;
	uint64_t unit = 1ULL << (q->extl2 ? q->sc_bits : q->cluster_bits);
	uint64_t zend = qcow2_grow_zero_end(q, size), head_end = ALIGN_UP(old, unit);
	int ret;

	if (!zend) {
		if (entries > q->l1_size)
			return qcow2_grow_l1(q, size, entries);
		return qcow2_switch_header(q, size, q->l1_offset, q->l1_size);
	}
	/*
	 * Only the unit holding the old end can be zeroed with data on v2 (as
	 * QEMU does); past it the backing file could only be hidden by zero
	 * entries, which v2 lacks, or by writing zeros over all of it.
	 */
	if (q->version < 3 && zend > head_end) {
		img_err("%s: cannot grow a v2 image over its longer backing file: the new area would show the backing data and v2 has no zero clusters to hide it (amend to compat=1.1 first)",
			q->t->cfg.file);
		return -ENOTSUP;
	}
	/* B1: the L1 names every L2 table the zero entries need; old size kept. */
	if (entries > q->l1_size) {
		ret = qcow2_grow_l1(q, old, entries);
		if (ret)
			return ret;
	}
	/*
	 * B2: zeros over the rest of the old end's unit, zero entries up to
	 * the unit holding @zend (past @zend it reads zeros either way); an
	 * entry allocated there (a crash between K1 and K2) is released.
	 */
	ret = qcow2_write_zeroes(q->t, old, (zend > head_end ? ALIGN_UP(zend, unit) : zend) - old, 0);
	/* B3: durable before the size lets a read reach them. */
	if (!ret)
		ret = qcow2_flush_meta(q);
	if (!ret)
		ret = qcow2_switch_header(q, size, q->l1_offset, q->l1_size);
	return ret;
}

/*
 * tgt_ops->make_empty: every L2 entry cleared (the L2 tables stay), the
 * clusters released once the cleared tables are on disk.
 */
int qcow2_make_empty(struct tgt *t)
{
	struct qcow2 *q = t->priv;
	int ret;

	if (q->data_raw) {
		/* Unmapping would stop the data file from reading as the disk. */
		img_err("%s: cannot empty an image with a raw external data file", t->cfg.file);
		return -ENOTSUP;
	}
	ret = qcow2_before_write(q);
	if (!ret)
		ret = qcow2_flush_meta(q);
	if (!ret)
		ret = qcow2_cut(q, 0, q->l1_size, q->l1_size);
	if (ret)
		img_err("%s: cannot empty the image: %s", t->cfg.file, strerror(-ret));
	return ret;
}

static int qcow2_resize_eager(struct tgt *t, uint64_t size, unsigned int flags)
{
	struct qcow2 *q = t->priv;
	uint64_t entries = qcow2_l1_entries_for(q, size), old_l1 = q->l1_size;
	uint64_t c0 = DIV_ROUND_UP(size, q->cluster_size);
	uint64_t c1 = DIV_ROUND_UP(q->size_bytes, q->cluster_size);
	int ret;

	if (q->data_file) {
		img_err("%s: resizing an image with an external data file is not supported yet",
			t->cfg.file);
		return -ENOTSUP;
	}
	ret = qcow2_before_write(q);
	if (ret)
		return ret;
	if (q->nb_snapshots && (q->version < 3 || size < q->size_bytes)) {
		/* Snapshot L1s keep their own sizes; QEMU refuses these too. */
		img_err("%s: cannot %s an image with internal snapshots", t->cfg.file,
			q->version < 3 ? "resize a v2" : "shrink");
		return -ENOTSUP;
	}
	if (size > (1ULL << 62)) {
		img_err("%s: %" PRIu64 " bytes is too large for qcow2", t->cfg.file, size);
		return -EFBIG;
	}
	if (size >= q->size_bytes) {
		ret = qcow2_grow(q, size);
		goto out;
	}

	ret = qcow2_any_allocated(q, c0, c1);
	if (ret < 0)
		goto out;
	if (ret && !(flags & TGT_RESIZE_SHRINK)) {
		img_err("%s: shrinking would cut allocated data; use --shrink", t->cfg.file);
		return -EINVAL;
	}
	/* K1: no guest offset reaches the cut clusters any more. */
	ret = qcow2_flush_meta(q);
	if (!ret)
		ret = qcow2_switch_header(q, size, q->l1_offset, MIN(entries, old_l1));
	/* K2: clear and release them, and the L1 clusters past the new length. */
	if (!ret)
		ret = qcow2_cut(q, c0, old_l1, entries);
	if (!ret) {
		uint64_t keep = ALIGN_UP(entries * 8, q->cluster_size);
		uint64_t had = ALIGN_UP(old_l1 * 8, q->cluster_size);

		if (had > keep && keep) {
			exec_mutex_lock(&q->alloc_mutex);
			ret = qcow2_refcount_update(q, q->l1_offset + keep, had - keep, -1);
			exec_mutex_unlock(&q->alloc_mutex);
			if (!ret)
				ret = qcow2_flush_meta(q);
		}
	}
out:
	if (ret) {
		img_err("%s: resize failed: %s", t->cfg.file, strerror(-ret));
		return ret;
	}
	t->caps.size_bytes = ALIGN_DOWN(q->size_bytes, 512ULL);
	return 0;
}

int qcow2_resize(struct tgt *t, uint64_t size, unsigned int flags)
{
	struct qcow2 *q = t->priv;
	bool lazy = q->lazy;
	uint64_t old_size;
	int ret;

	/*
	 * G1 writes the new L1 outside F3/F4, so with lazy refcounts nothing
	 * sets the dirty bit and close never writes its refcount: the header
	 * would name a table with refcount 0, and the old one would leak.  As
	 * for snapshots, make the image clean and resize with eager refcounts.
	 */
	if (lazy) {
		ret = qcow2_mark_clean(q);
		if (ret)
			return ret;
		q->lazy = false;
	}
	/* The bitmaps follow the size, as QEMU's do; close stores them. */
	old_size = q->size_bytes;
	ret = qcow2_bitmaps_resize(q, size);
	if (!ret) {
		ret = qcow2_resize_eager(t, size, flags);
		if (ret)
			qcow2_bitmaps_resize(q, old_size);
	}
	q->lazy = lazy;
	return ret;
}
