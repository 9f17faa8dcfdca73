// SPDX-License-Identifier: GPL-2.0
/*
 * Guest I/O: read, write, discard, write zeroes and block status, run by
 * run through the cluster map.  Reads and in-place writes take no lock
 * across their I/O and never wait for allocations elsewhere.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

int qcow2_read(struct tgt *t, void *buf, uint32_t len, uint64_t off)
{
	struct qcow2 *q = t->priv;
	uint32_t done = 0;
	void *cbuf = NULL;
	int ret = 0;

	while (done < len) {
		struct qcow2_map m;
		uint64_t n;

		ret = qcow2_map(q, off + done, len - done, &m);
		if (ret)
			break;
		n = m.bytes;
		switch (m.kind) {
		case QCOW2_UNALLOC:
			if (t->backing)
				ret = tgt_read_backing(t->backing, (char *)buf + done, n, off + done);
			else
				memset((char *)buf + done, 0, n);
			break;
		case QCOW2_ZERO_PLAIN:
		case QCOW2_ZERO_ALLOC:
			memset((char *)buf + done, 0, n);
			break;
		case QCOW2_NORMAL:
			if (qcow2_encrypted(q))
				ret = qcow2_crypt_pread(q, (char *)buf + done, n, m.host, off + done);
			else
				ret = qcow2_read_at(q->dfile, (char *)buf + done, n, m.host);
			break;
		case QCOW2_COMPRESSED:
			if (!cbuf && posix_memalign(&cbuf, 4096, q->cluster_size)) {
				cbuf = NULL;
				ret = -ENOMEM;
				break;
			}
			ret = qcow2_read_compressed(q, m.l2e, cbuf);
			if (!ret)
				memcpy((char *)buf + done,
				       (char *)cbuf + qcow2_off_in_cluster(q, off + done), n);
			break;
		}
		if (m.kind == QCOW2_NORMAL || m.kind == QCOW2_COMPRESSED ||
		    m.kind == QCOW2_ZERO_ALLOC)
			qcow2_epoch_put(q, m.epoch);
		if (ret < 0)
			break;
		ret = 0;
		done += n;
	}
	free(cbuf);
	return ret < 0 ? ret : (int)len;
}

/*
 * Called before anything is written: refuses writes to an image found
 * corrupt or opened for reading only.  Returns 0 or -errno.
 */
int qcow2_before_write(struct qcow2 *q)
{
	/* Found corrupt while open: reported once already, at the time. */
	if (qcow2_is_corrupt(q))
		return -EIO;
	if (q->no_write_reason) {
		img_err("%s: writes refused: %s", q->t->cfg.file, q->no_write_reason);
		return -EROFS;
	}
	return 0;
}

/* Is a metadata flush writing tables back right now? */
static bool qcow2_flush_running(struct qcow2 *q)
{
	bool running;

	pthread_mutex_lock(&q->lock);
	running = q->flushing;
	pthread_mutex_unlock(&q->lock);
	return running;
}

/* The uncompressed write of [off, off + len).  Returns @len or -errno. */
static int qcow2_write_plain(struct qcow2 *q, const void *buf, uint32_t len, uint64_t off,
			     unsigned int flags)
{
	bool meta_changed = false;
	uint32_t done = 0;
	int ret;

	while (done < len) {
		struct qcow2_map m;
		uint64_t n;

		ret = qcow2_map(q, off + done, len - done, &m);
		if (ret)
			return ret;
		if (m.kind == QCOW2_NORMAL || m.kind == QCOW2_COMPRESSED ||
		    m.kind == QCOW2_ZERO_ALLOC) {
			if (m.kind == QCOW2_NORMAL && m.copied) {
				/*
				 * In place: no metadata changes, and FUA is the
				 * write's own, unless the entry that maps the
				 * cluster may not be durable yet (a recent
				 * allocation, or a flush still writing it):
				 * then the data alone would survive a crash
				 * unreachable, and a metadata flush follows.
				 */
				int rwf = 0;

				if (flags & TGT_W_FUA) {
					if (qcow2_meta_dirty(q) || qcow2_flush_running(q))
						meta_changed = true;
					else
						rwf = RWF_DSYNC;
				}
				ret = qcow2_overlap_check_data(q, m.host, m.bytes);
				if (!ret && qcow2_encrypted(q))
					ret = qcow2_crypt_pwrite(q, (const char *)buf + done, m.bytes,
								 m.host, off + done, rwf);
				else if (!ret)
					ret = bfile_pwrite(q->dfile, (const char *)buf + done,
							  m.bytes, m.host, rwf);
				qcow2_epoch_put(q, m.epoch);
				if (ret < 0)
					return ret;
				done += m.bytes;
				continue;
			}
			/* The writer owning the cluster's allocation protects it now. */
			qcow2_epoch_put(q, m.epoch);
		}
		ret = qcow2_write_alloc(q, (const char *)buf + done, off + done, len - done, &n);
		if (ret)
			return ret;
		done += n;
		meta_changed |= n > 0;
	}
	/* FUA after metadata changes: they and the data, durable together. */
	if ((flags & TGT_W_FUA) && meta_changed) {
		ret = qcow2_flush_meta(q);
		if (ret)
			return ret;
	}
	return len;
}

/*
 * TGT_W_COMPRESS (`convert -c`): compress.c stores what it can and stops
 * at a cluster better written as it is, which goes through the normal
 * path here.  Returns @len or -errno.
 */
static int qcow2_write_compress(struct qcow2 *q, const void *buf, uint32_t len, uint64_t off)
{
	uint32_t done = 0, n;
	int64_t stored;
	int ret;

	while (done < len) {
		stored = qcow2_write_compressed(q, (const char *)buf + done, len - done,
						off + done);
		if (stored < 0)
			return stored;
		done += stored;
		if (done == len)
			break;
		n = MIN(len - done, q->cluster_size);
		ret = qcow2_write_plain(q, (const char *)buf + done, n, off + done, 0);
		if (ret < 0)
			return ret;
		done += n;
	}
	return len;
}

/*
 * An encrypted image is written in whole 512-byte sectors, each its own
 * cipher block: part of a sector (only the verbs ask for that; devices
 * have 512-byte blocks) is read, patched and written whole.
 * Returns @len or -errno.
 */
static int qcow2_write_unaligned(struct qcow2 *q, const void *buf, uint32_t len, uint64_t off,
				 unsigned int flags)
{
	uint64_t a = ALIGN_DOWN(off, 512ULL), b = ALIGN_UP(off + len, 512ULL);
	void *rmw;
	int ret;

	if (posix_memalign(&rmw, 4096, b - a))
		return -ENOMEM;
	ret = qcow2_read(q->t, rmw, b - a, a);
	if (ret >= 0) {
		memcpy((char *)rmw + (off - a), buf, len);
		ret = qcow2_write_plain(q, rmw, b - a, a, flags);
	}
	free(rmw);
	return ret < 0 ? ret : (int)len;
}

/* A modifying request of a recoverable device starts: see qcow2_complete(). */
static void qcow2_begin(struct qcow2 *q)
{
	if (!q->recoverable)
		return;
	pthread_mutex_lock(&q->lock);
	q->rec_active++;
	pthread_mutex_unlock(&q->lock);
}

/*
 * A recoverable device's request that returns @ret (it called
 * qcow2_begin()): its table changes go into the file first, and so do
 * those of any other request whose clusters it may have written in
 * place (a completed in-place write into a cluster whose allocation is
 * still only in memory would be lost with it; qcow2_writeback_recoverable()
 * writes whenever any table is dirty).
 *
 * Group write-back: the last of the requests being served to finish
 * writes back for all of them; the others sleep until a write-back that
 * started after they finished is done.  Every such request holds no lock
 * or pinned slot, so those still being served only wait for I/O and
 * finish; with a bounded queue depth the last one always comes.
 */
static int qcow2_complete(struct qcow2 *q, int ret)
{
	uint64_t want, mine;
	int err;

	if (!q->recoverable)
		return ret;
	pthread_mutex_lock(&q->lock);
	q->rec_active--;
	want = q->rec_started + 1;
	if (q->rec_active) {
		if (ret < 0) {
			pthread_mutex_unlock(&q->lock);
			return ret;
		}
		while (q->rec_done < want)
			exec_waitq_sleep(&q->rec_wq, &q->lock);
		err = q->rec_err;
		pthread_mutex_unlock(&q->lock);
		return err ? err : ret;
	}
	mine = ++q->rec_started;
	pthread_mutex_unlock(&q->lock);

	err = qcow2_writeback_recoverable(q);

	pthread_mutex_lock(&q->lock);
	if (mine > q->rec_done) {
		q->rec_done = mine;
		q->rec_err = err;
	}
	exec_waitq_wake_all(&q->rec_wq);
	pthread_mutex_unlock(&q->lock);
	return ret < 0 ? ret : err ? err : ret;
}

static int qcow2_write_one(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
			   unsigned int flags)
{
	struct qcow2 *q = t->priv;
	int ret;

	ret = qcow2_before_write(q);
	if (!ret && !(flags & TGT_W_SAME_DATA))
		ret = qcow2_bitmaps_track(q, off, len);
	if (ret)
		return ret;
	if ((flags & TGT_W_COMPRESS) && qcow2_encrypted(q)) {
		img_err("%s: Compression and encryption not supported at the same time",
			t->cfg.file);
		return -ENOTSUP;
	}
	if (flags & TGT_W_COMPRESS)
		return qcow2_write_compress(q, buf, len, off);
	if (qcow2_encrypted(q) && !IS_ALIGNED(off | len, 512ULL))
		return qcow2_write_unaligned(q, buf, len, off, flags);
	return qcow2_write_plain(q, buf, len, off, flags);
}

int qcow2_write(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
		unsigned int flags)
{
	qcow2_begin(t->priv);
	return qcow2_complete(t->priv, qcow2_write_one(t, buf, len, off, flags));
}

int qcow2_flush(struct tgt *t)
{
	return qcow2_flush_meta(t->priv);
}

/*
 * Writes zeros over [off, off + len) through the normal write path: for
 * partial clusters and v2 images whose backing file would show through.
 */
static int qcow2_write_zero_data(struct qcow2 *q, uint64_t off, uint64_t len,
				 unsigned int flags)
{
	while (len) {
		uint32_t n = MIN(len, (uint64_t)QCOW2_ZERO_BUF_BYTES);
		int ret = qcow2_write_one(q->t, q->zero_buf, n, off, flags);

		if (ret < 0)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

/* The entry a full cluster gets on discard (@zero false) or write zeroes. */
static uint64_t qcow2_cleared_entry(struct qcow2 *q, uint64_t old, bool zero)
{
	if (q->version < 3)
		return 0;	/* v2 callers ensured unallocated reads right */
	if (q->t->backing)
		return QCOW2_L2_ZERO;	/* hide the backing file */
	return zero && old ? QCOW2_L2_ZERO : 0;
}

/* The bitmap a full cluster gets with extended L2 (its descriptor becomes 0). */
static uint64_t qcow2_cleared_bitmap(struct qcow2 *q, uint64_t old, uint64_t old_bm, bool zero)
{
	return q->t->backing || (zero && (old || old_bm)) ? QCOW2_SC_ZERO_ALL : 0;
}

/* The unit discard and write zeroes work in: a subcluster with extended L2. */
static uint64_t qcow2_clear_unit(const struct qcow2 *q)
{
	return 1ULL << (q->extl2 ? q->sc_bits : q->cluster_bits);
}

/*
 * Clears guest bytes [a, b), whole units (clusters, or subclusters with
 * extended L2; b may be the unit-rounded end of the image), for discard
 * or write zeroes: the new entries in the cache, the old host clusters
 * released after they reach disk.  Part of a cluster only changes its
 * subcluster bitmap (the host cluster stays); part of a compressed
 * cluster cannot, so write zeroes writes zero data there (discard leaves
 * it).  Returns 0 or -errno.
 */
static int qcow2_clear_range(struct qcow2 *q, uint64_t a, uint64_t b, bool zero)
{
	uint64_t c0 = a >> q->cluster_bits, c1 = ((b - 1) >> q->cluster_bits) + 1;

	while (c0 < c1) {
		unsigned int l2i = qcow2_l2_index(q, c0), i, nz = 0;
		uint64_t last = MIN(c1 - 1, c0 + qcow2_l2_entries(q) - l2i - 1), l1e;
		uint64_t zoff[2], zlen[2];
		struct range_entry inf;
		struct qcow2_cslot *slot;
		uint64_t *l2;
		int ret;

		qcow2_clusters_lock(q, &inf, c0, last);
		pthread_mutex_lock(&q->lock);
		l1e = q->l1[qcow2_l1_index(q, c0)];
		pthread_mutex_unlock(&q->lock);
		/* No table and nothing to hide: the clusters already read as zeros/backing. */
		if (!(l1e & QCOW2_L1_OFFSET_MASK) &&
		    !(q->version >= 3 && q->t->backing)) {
			qcow2_clusters_unlock(q, &inf);
			c0 = last + 1;
			continue;
		}
		ret = qcow2_l2_get_for_write(q, c0, &slot);
		if (ret) {
			qcow2_clusters_unlock(q, &inf);
			return ret;
		}
		l2 = slot->buf;
		qcow2_commit_begin(q);
		for (i = 0; i <= last - c0; i++) {
			uint64_t cstart = (c0 + i) << q->cluster_bits;
			uint64_t sa = MAX(a, cstart) - cstart;
			uint64_t sb = MIN(b, cstart + q->cluster_size) - cstart;
			uint64_t old = qcow2_l2_get(q, l2, l2i + i);
			uint64_t old_bm = qcow2_l2_get_bitmap(q, l2, l2i + i), e, bm, foff, flen;

			if (sa || (sb < q->cluster_size && cstart + sb < q->size_bytes)) {
				/* Part of a cluster (extended L2): its subcluster bits only. */
				uint64_t m = qcow2_sc_mask(sa >> q->sc_bits, (sb - 1) >> q->sc_bits);

				if (qcow2_l2_kind(q, old) == QCOW2_COMPRESSED) {
					if (zero) {
						zoff[nz] = cstart + sa;
						zlen[nz++] = sb - sa;
					}
					continue;
				}
				bm = old_bm & ~m;
				if (zero || q->t->backing)
					bm |= m << 32;
				else
					bm &= ~(m << 32);
				if (bm != old_bm) {
					qcow2_l2_set(q, l2, l2i + i, old, bm);
					qcow2_l2_mark_dirty(q, slot, l2i + i, 1);
				}
				continue;
			}
			if (q->extl2) {
				e = 0;
				bm = qcow2_cleared_bitmap(q, old, old_bm, zero);
			} else {
				e = qcow2_cleared_entry(q, old, zero);
				bm = 0;
			}
			if (old == e && old_bm == bm)
				continue;
			switch (qcow2_l2_kind(q, old)) {
			case QCOW2_NORMAL:
			case QCOW2_ZERO_ALLOC:
				if (qcow2_l2_valid(q, old))
					qcow2_free_data_later(q, qcow2_l2_host(q, old), q->cluster_size);
				break;
			case QCOW2_COMPRESSED:
				qcow2_compressed_range(q, old, &foff, &flen);
				qcow2_free_data_later(q, foff, flen);
				break;
			default:
				break;
			}
			qcow2_l2_set(q, l2, l2i + i, e, bm);
			qcow2_l2_mark_dirty(q, slot, l2i + i, 1);
		}
		qcow2_commit_end(q);
		qcow2_cache_put(q, &q->l2c, slot);
		qcow2_clusters_unlock(q, &inf);
		for (i = 0; i < nz; i++) {
			ret = qcow2_write_zero_data(q, zoff[i], zlen[i], 0);
			if (ret)
				return ret;
		}
		c0 = last + 1;
	}
	return 0;
}

/*
 * The whole units of [off, off + len): [*a, *b), with the last partial
 * unit of the image counted whole when the range reaches its end.
 * Returns false when there is none.
 */
static bool qcow2_clear_bounds(struct qcow2 *q, uint64_t off, uint64_t len, uint64_t *a,
			       uint64_t *b)
{
	uint64_t unit = qcow2_clear_unit(q);

	*a = ALIGN_UP(off, unit);
	*b = ALIGN_DOWN(off + len, unit);
	if (off + len == q->size_bytes)
		*b = ALIGN_UP(q->size_bytes, unit);
	return *a < *b;
}

static int qcow2_discard_one(struct tgt *t, uint64_t off, uint64_t len)
{
	struct qcow2 *q = t->priv;
	uint64_t a, b;
	int ret;

	ret = qcow2_before_write(q);
	if (!ret)
		ret = qcow2_bitmaps_track(q, off, len);
	if (ret)
		return ret;
	/*
	 * Partial units are left alone: discarded data may read back as
	 * anything.  A raw data file keeps every cluster mapped.
	 */
	if (q->data_raw || !qcow2_clear_bounds(q, off, len, &a, &b))
		return 0;
	return qcow2_clear_range(q, a, b, false);
}

int qcow2_discard(struct tgt *t, uint64_t off, uint64_t len)
{
	qcow2_begin(t->priv);
	return qcow2_complete(t->priv, qcow2_discard_one(t, off, len));
}

static int qcow2_write_zeroes_one(struct tgt *t, uint64_t off, uint64_t len,
				  unsigned int flags)
{
	struct qcow2 *q = t->priv;
	uint64_t a, b;
	int ret;

	ret = qcow2_before_write(q);
	if (!ret)
		ret = qcow2_bitmaps_track(q, off, len);
	if (ret)
		return ret;
	/*
	 * v2 has no zero flag: with a backing file only real zeros hide it.
	 * A raw data file must hold the zeros itself.
	 */
	if (!qcow2_clear_bounds(q, off, len, &a, &b) || (q->version < 3 && t->backing) ||
	    q->data_raw)
		return qcow2_write_zero_data(q, off, len, flags);
	b = MIN(b, off + len);
	ret = qcow2_write_zero_data(q, off, a - off, 0);
	if (!ret)
		ret = qcow2_write_zero_data(q, b, off + len - b, 0);
	if (!ret)
		ret = qcow2_clear_range(q, a, ALIGN_UP(b, qcow2_clear_unit(q)), true);
	if (!ret && (flags & TGT_W_FUA))
		ret = qcow2_flush_meta(q);
	return ret;
}

int qcow2_write_zeroes(struct tgt *t, uint64_t off, uint64_t len, unsigned int flags)
{
	qcow2_begin(t->priv);
	return qcow2_complete(t->priv, qcow2_write_zeroes_one(t, off, len, flags));
}

int64_t qcow2_block_status(struct tgt *t, uint64_t off, uint64_t len,
				  struct tgt_extent *ext)
{
	struct qcow2 *q = t->priv;
	struct qcow2_map m;
	int ret;

	ret = qcow2_map(q, off, len, &m);
	if (ret)
		return ret;
	ext->host_off = 0;
	switch (m.kind) {
	case QCOW2_UNALLOC:
		ext->flags = 0;
		/* An unallocated subcluster of a host cluster: QEMU names its place. */
		if (q->extl2 && (m.l2e & QCOW2_L2_OFFSET_MASK) &&
		    qcow2_l2_kind(q, m.l2e) == QCOW2_NORMAL) {
			ext->flags = TGT_EXT_OFFSET_VALID;
			ext->host_off = m.host;
		}
		break;
	case QCOW2_ZERO_PLAIN:
		ext->flags = TGT_EXT_ALLOCATED | TGT_EXT_ZERO;
		break;
	case QCOW2_ZERO_ALLOC:
		ext->flags = TGT_EXT_ALLOCATED | TGT_EXT_ZERO | TGT_EXT_OFFSET_VALID;
		ext->host_off = m.host;
		break;
	case QCOW2_NORMAL:
		ext->flags = TGT_EXT_ALLOCATED | TGT_EXT_DATA | TGT_EXT_OFFSET_VALID;
		ext->host_off = m.host;
		break;
	case QCOW2_COMPRESSED:
		ext->flags = TGT_EXT_ALLOCATED | TGT_EXT_DATA;
		break;
	}
	if (m.kind == QCOW2_NORMAL || m.kind == QCOW2_COMPRESSED || m.kind == QCOW2_ZERO_ALLOC)
		qcow2_epoch_put(q, m.epoch);
	return m.bytes;
}
