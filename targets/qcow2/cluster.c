// SPDX-License-Identifier: GPL-2.0
/*
 * Cluster lookup: L1 -> L2 -> one of the five cluster kinds, runs of
 * clusters with one kind, compressed clusters, and the L2 table a write
 * needs (allocated on first use).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "qcow2.h"
#include "util.h"

enum qcow2_kind qcow2_l2_kind(const struct qcow2 *q, uint64_t l2e)
{
	/*
	 * Offset 0 is a valid place in an external data file: there, a data
	 * cluster always has refcount 1, and COPIED tells it from unallocated.
	 */
	bool off = (l2e & QCOW2_L2_OFFSET_MASK) || (q->data_file && (l2e & QCOW2_COPIED));

	if (l2e & QCOW2_L2_COMPRESSED)
		return QCOW2_COMPRESSED;
	/* Extended L2: zeros are told per subcluster, by the bitmap. */
	if (q->version >= 3 && !q->extl2 && (l2e & QCOW2_L2_ZERO))
		return off ? QCOW2_ZERO_ALLOC : QCOW2_ZERO_PLAIN;
	return off ? QCOW2_NORMAL : QCOW2_UNALLOC;
}

/* Subclusters @first..@last (inclusive, 0..31) as an allocation-bitmap mask. */
uint64_t qcow2_sc_mask(unsigned int first, unsigned int last)
{
	return (QCOW2_SC_ALLOC_ALL >> (31 - last + first)) << first;
}

/*
 * Subcluster @sc of an extended entry: its own kind.  A host cluster with
 * the subcluster neither allocated nor zero reads like an unallocated one
 * (backing file); ZERO_ALLOC here is a zero subcluster in a host cluster.
 */
enum qcow2_kind qcow2_sc_kind(const struct qcow2 *q, uint64_t l2e, uint64_t bitmap,
			      unsigned int sc)
{
	enum qcow2_kind k = qcow2_l2_kind(q, l2e);

	if (k == QCOW2_COMPRESSED)
		return k;
	if (bitmap & (1ULL << sc))
		return QCOW2_NORMAL;
	if (bitmap & (1ULL << (32 + sc)))
		return k == QCOW2_NORMAL ? QCOW2_ZERO_ALLOC : QCOW2_ZERO_PLAIN;
	return QCOW2_UNALLOC;
}

/*
 * Is @bitmap consistent with @l2e?  Not when a subcluster is both
 * allocated and zero, or allocated without a host cluster.  (A compressed
 * cluster's bitmap is ignored on reads, as QEMU does; check reports it.)
 */
bool qcow2_sc_bitmap_valid(const struct qcow2 *q, uint64_t l2e, uint64_t bitmap)
{
	switch (qcow2_l2_kind(q, l2e)) {
	case QCOW2_COMPRESSED:
		return true;
	case QCOW2_NORMAL:
		return !(bitmap & (bitmap >> 32) & QCOW2_SC_ALLOC_ALL);
	default:
		return !(bitmap & QCOW2_SC_ALLOC_ALL);
	}
}

uint64_t qcow2_l2_host(const struct qcow2 *q, uint64_t l2e)
{
	if (l2e & QCOW2_L2_COMPRESSED)
		return l2e & q->coffset_mask;
	return l2e & QCOW2_L2_OFFSET_MASK;
}

/* Is @l2e a well-formed entry for this image (reserved bits, alignment)? */
bool qcow2_l2_valid(const struct qcow2 *q, uint64_t l2e)
{
	if (l2e & QCOW2_L2_COMPRESSED)
		return !(l2e & QCOW2_COPIED);
	if (l2e & QCOW2_L2_RESERVED)
		return false;
	/* v2 has no zero flag: bit 0 is reserved there (extended L2 ignores it). */
	if (q->version < 3 && (l2e & QCOW2_L2_ZERO))
		return false;
	return qcow2_off_in_cluster(q, l2e & QCOW2_L2_OFFSET_MASK) == 0;
}

/* The host bytes a compressed cluster's data occupies (sector granular). */
void qcow2_compressed_range(const struct qcow2 *q, uint64_t l2e, uint64_t *off,
			    uint64_t *len)
{
	uint64_t nb_sectors = ((l2e >> q->csize_shift) & q->csize_mask) + 1;

	*off = (l2e & q->coffset_mask) & ~511ULL;
	*len = nb_sectors * 512;
}

void qcow2_epoch_get(struct qcow2 *q, unsigned int *epoch)
{
	*epoch = q->epoch & 1;
	q->epoch_io[*epoch]++;
}

void qcow2_epoch_put(struct qcow2 *q, unsigned int epoch)
{
	pthread_mutex_lock(&q->lock);
	if (!--q->epoch_io[epoch] && q->epoch_wq.head)
		exec_waitq_wake_all(&q->epoch_wq);
	pthread_mutex_unlock(&q->lock);
}

static bool qcow2_same_run(const struct qcow2 *q, uint64_t first, uint64_t e,
			   uint64_t i)
{
	enum qcow2_kind k = qcow2_l2_kind(q, first);

	if (qcow2_l2_kind(q, e) != k || !qcow2_l2_valid(q, e))
		return false;
	switch (k) {
	case QCOW2_NORMAL:
	case QCOW2_ZERO_ALLOC:
		return (e & QCOW2_COPIED) == (first & QCOW2_COPIED) &&
		       qcow2_l2_host(q, e) == qcow2_l2_host(q, first) + (i << q->cluster_bits);
	case QCOW2_COMPRESSED:
		return false;
	default:
		return true;
	}
}

/*
 * Does subcluster run: the subclusters from @sc on in the cluster of (@e,
 * @bm) that are of kind @k.  Returns how many (0 if @sc is not of @k).
 */
static unsigned int qcow2_sc_run(const struct qcow2 *q, uint64_t e, uint64_t bm,
				 unsigned int sc, enum qcow2_kind k)
{
	uint64_t alloc = bm & QCOW2_SC_ALLOC_ALL, zero = (bm >> 32) & ~alloc, match;

	switch (k) {
	case QCOW2_COMPRESSED:
		return qcow2_l2_kind(q, e) == k ? QCOW2_SUBCLUSTERS - sc : 0;
	case QCOW2_NORMAL:
		match = alloc;
		break;
	case QCOW2_ZERO_ALLOC:
	case QCOW2_ZERO_PLAIN:
		if ((qcow2_l2_kind(q, e) == QCOW2_NORMAL) != (k == QCOW2_ZERO_ALLOC))
			return 0;
		match = zero;
		break;
	default:
		match = ~(alloc | zero) & QCOW2_SC_ALLOC_ALL;
		break;
	}
	if (qcow2_l2_kind(q, e) == QCOW2_COMPRESSED)
		return 0;
	/* Trailing ones of match >> sc: the run's length. */
	return __builtin_ctzll(~(match >> sc));
}

/*
 * qcow2_map() for extended L2 entries, with the lock held: the run of
 * subclusters of one kind from byte @in of entry @l2i (host-contiguous
 * with one COPIED state for NORMAL and ZERO_ALLOC).  Returns 0, or -EIO
 * on a corrupt entry (the caller reports it).
 */
static int qcow2_map_sc(struct qcow2 *q, const uint64_t *l2, unsigned int l2i,
			uint64_t in, uint64_t limit, struct qcow2_map *m)
{
	uint64_t e = m->l2e, bm = qcow2_l2_get_bitmap(q, l2, l2i), n, host;
	unsigned int sc = in >> q->sc_bits, run, i;

	if (!qcow2_l2_valid(q, e) || !qcow2_sc_bitmap_valid(q, e, bm))
		return -EIO;
	m->kind = qcow2_sc_kind(q, e, bm, sc);
	m->copied = e & QCOW2_COPIED;
	run = qcow2_sc_run(q, e, bm, sc, m->kind);
	n = ((uint64_t)(sc + run) << q->sc_bits) - in;
	host = qcow2_l2_host(q, e);
	/* A run through the whole cluster may go on into the next ones. */
	for (i = 1; sc + run == QCOW2_SUBCLUSTERS && n < limit &&
		    l2i + i < qcow2_l2_entries(q); i++) {
		uint64_t ne = qcow2_l2_get(q, l2, l2i + i);
		uint64_t nbm = qcow2_l2_get_bitmap(q, l2, l2i + i);

		if (m->kind == QCOW2_COMPRESSED || !qcow2_l2_valid(q, ne) ||
		    !qcow2_sc_bitmap_valid(q, ne, nbm))
			break;
		/* Unallocated subclusters with and without a host cluster differ too. */
		if (m->kind == QCOW2_UNALLOC && !host != !qcow2_l2_host(q, ne))
			break;
		if ((m->kind == QCOW2_NORMAL || m->kind == QCOW2_ZERO_ALLOC ||
		     (m->kind == QCOW2_UNALLOC && host)) &&
		    ((ne & QCOW2_COPIED) != (e & QCOW2_COPIED) ||
		     qcow2_l2_host(q, ne) != host + ((uint64_t)i << q->cluster_bits)))
			break;
		sc = 0;
		run = qcow2_sc_run(q, ne, nbm, 0, m->kind);
		n += (uint64_t)run << q->sc_bits;
	}
	m->bytes = MIN(n, limit);
	if (m->kind == QCOW2_NORMAL || m->kind == QCOW2_COMPRESSED ||
	    m->kind == QCOW2_ZERO_ALLOC)
		qcow2_epoch_get(q, &m->epoch);
	m->host = host + (m->kind == QCOW2_COMPRESSED ? 0 : in);
	return 0;
}

/*
 * Fills @m from L2 table @l2 for entry @l2i onwards, under q->lock.
 * Returns 0, or -EINVAL for an entry the caller must report as corrupt
 * (not under the lock).
 */
static int qcow2_map_l2_locked(struct qcow2 *q, const uint64_t *l2, unsigned int l2i,
			       uint64_t in, uint64_t limit, struct qcow2_map *m)
{
	uint64_t i, n;

	m->l2e = qcow2_l2_get(q, l2, l2i);
	if (q->extl2)
		return qcow2_map_sc(q, l2, l2i, in, limit, m) ? -EINVAL : 0;
	if (!qcow2_l2_valid(q, m->l2e))
		return -EINVAL;
	m->kind = qcow2_l2_kind(q, m->l2e);
	m->copied = m->l2e & QCOW2_COPIED;
	n = q->cluster_size - in;
	for (i = 1; n < limit && l2i + i < qcow2_l2_entries(q); i++) {
		if (!qcow2_same_run(q, m->l2e, qcow2_l2_get(q, l2, l2i + i), i))
			break;
		n += q->cluster_size;
	}
	m->bytes = MIN(n, limit);
	if (m->kind == QCOW2_NORMAL || m->kind == QCOW2_COMPRESSED ||
	    m->kind == QCOW2_ZERO_ALLOC)
		qcow2_epoch_get(q, &m->epoch);
	return 0;
}

/*
 * Maps the run starting at guest @off (at most @len bytes, within one L2
 * table).  For kinds with host data the caller gets an epoch reference
 * (m->epoch) to drop with qcow2_epoch_put() once its I/O is done.
 * Returns 0 or -errno (-EIO on a corrupt entry).
 */
int qcow2_map(struct qcow2 *q, uint64_t off, uint64_t len, struct qcow2_map *m)
{
	uint64_t gc = off >> q->cluster_bits, in = qcow2_off_in_cluster(q, off);
	uint64_t l1i = qcow2_l1_index(q, gc), l1e, l2off, limit;
	unsigned int l2i = qcow2_l2_index(q, gc);
	struct qcow2_cslot *slot;
	const uint64_t *l2;
	int ret;

	memset(m, 0, sizeof(*m));
	limit = ((qcow2_l2_entries(q) - l2i) << q->cluster_bits) - in;
	limit = MIN(limit, len);

	/*
	 * The common case, a table already in the cache, takes the lock
	 * once: L1 entry, cache lookup and L2 entries in one hold, so the
	 * table needs no pin (nothing evicts it while we hold the lock).
	 */
	pthread_mutex_lock(&q->lock);
	l1e = q->l1[l1i];
	l2off = l1e & QCOW2_L1_OFFSET_MASK;
	if (!l2off) {
		pthread_mutex_unlock(&q->lock);
		m->kind = QCOW2_UNALLOC;
		m->bytes = limit;
		return 0;
	}
	if ((l1e & QCOW2_L1_RESERVED) || qcow2_off_in_cluster(q, l2off)) {
		pthread_mutex_unlock(&q->lock);
		return qcow2_mark_corrupt(q, "L1 entry with reserved bits or unaligned L2 offset");
	}
	slot = qcow2_cache_lookup_locked(&q->l2c, l2off);
	if (slot) {
		ret = qcow2_map_l2_locked(q, slot->buf, l2i, in, limit, m);
		pthread_mutex_unlock(&q->lock);
		goto done;
	}
	pthread_mutex_unlock(&q->lock);

	/* Not cached: load it (pinned while the lock is dropped for the read). */
	ret = qcow2_cache_get(q, &q->l2c, l2off, false, &slot);
	if (ret)
		return ret;
	l2 = slot->buf;
	pthread_mutex_lock(&q->lock);
	ret = qcow2_map_l2_locked(q, l2, l2i, in, limit, m);
	pthread_mutex_unlock(&q->lock);
	qcow2_cache_put(q, &q->l2c, slot);
done:
	if (ret)
		return qcow2_mark_corrupt(q, q->extl2 ?
			"L2 entry with reserved bits, unaligned offset or invalid subcluster bitmap" :
			"L2 entry with reserved bits or unaligned offset");
	/* qcow2_map_sc() has set it for extended entries. */
	if (!q->extl2)
		m->host = qcow2_l2_host(q, m->l2e) + (m->kind == QCOW2_COMPRESSED ? 0 : in);
	return 0;
}

static int qcow2_inflate_zlib(const void *in, size_t in_len, void *out, size_t out_len)
{
	z_stream zs = { 0 };
	int ret;

	zs.next_in = (Bytef *)in;
	zs.avail_in = in_len;
	zs.next_out = out;
	zs.avail_out = out_len;
	/* Raw deflate with a 4 KiB window: QEMU's qcow2 compression. */
	if (inflateInit2(&zs, -12) != Z_OK)
		return -ENOMEM;
	ret = inflate(&zs, Z_FINISH);
	inflateEnd(&zs);
	/*
	 * The sector-rounded input may carry bytes past the stream: a full
	 * output buffer is what counts.
	 */
	if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK) && zs.avail_out == 0)
		return 0;
	return -EIO;
}

/*
 * Spare zstd decompression contexts.  Creating one costs more than
 * inflating a 64 KiB cluster (about 60% of a zstd read's profile), so
 * contexts are kept for reuse by any thread and any image; the few left
 * here at exit are still reachable, not leaked.
 */
#define QCOW2_ZSTD_SPARES	8
static pthread_mutex_t qcow2_zstd_lock = PTHREAD_MUTEX_INITIALIZER;
static ZSTD_DCtx *qcow2_zstd_spare[QCOW2_ZSTD_SPARES];
static unsigned int qcow2_zstd_nr_spare;

static ZSTD_DCtx *qcow2_zstd_get(void)
{
	ZSTD_DCtx *dctx = NULL;

	pthread_mutex_lock(&qcow2_zstd_lock);
	if (qcow2_zstd_nr_spare)
		dctx = qcow2_zstd_spare[--qcow2_zstd_nr_spare];
	pthread_mutex_unlock(&qcow2_zstd_lock);
	return dctx ?: ZSTD_createDCtx();
}

static void qcow2_zstd_put(ZSTD_DCtx *dctx)
{
	/* A context left mid-frame by a bad stream must start afresh. */
	ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
	pthread_mutex_lock(&qcow2_zstd_lock);
	if (qcow2_zstd_nr_spare < QCOW2_ZSTD_SPARES) {
		qcow2_zstd_spare[qcow2_zstd_nr_spare++] = dctx;
		dctx = NULL;
	}
	pthread_mutex_unlock(&qcow2_zstd_lock);
	ZSTD_freeDCtx(dctx);
}

static int qcow2_inflate_zstd(const void *in, size_t in_len, void *out, size_t out_len)
{
	ZSTD_inBuffer ib = { in, in_len, 0 };
	ZSTD_outBuffer ob = { out, out_len, 0 };
	ZSTD_DCtx *dctx = qcow2_zstd_get();
	int ret = -EIO;

	if (!dctx)
		return -ENOMEM;
	/*
	 * One or more frames back to back, no length prefix; the sector
	 * padding after the last frame is never parsed because the cluster
	 * is full by then.
	 */
	while (ob.pos < ob.size && ib.pos < ib.size) {
		size_t r = ZSTD_decompressStream(dctx, &ob, &ib);

		if (ZSTD_isError(r))
			break;
	}
	if (ob.pos == ob.size)
		ret = 0;
	qcow2_zstd_put(dctx);
	return ret;
}

/*
 * Reads and decompresses the compressed cluster @l2e into @cluster_buf
 * (cluster_size bytes).  Returns 0 or -errno.
 */
int qcow2_read_compressed(struct qcow2 *q, uint64_t l2e, void *cluster_buf)
{
	uint64_t off, len, byte_off = l2e & q->coffset_mask;
	void *cbuf;
	ssize_t n;
	int ret;

	qcow2_compressed_range(q, l2e, &off, &len);
	/* Sector-aligned superset of the byte range, for O_DIRECT. */
	if (posix_memalign(&cbuf, 4096, len))
		return -ENOMEM;
	n = bfile_pread(q->file, cbuf, len, off);
	if (n < 0) {
		free(cbuf);
		return n;
	}
	memset((char *)cbuf + n, 0, len - n);
	if (q->compression_type == QCOW2_COMPRESSION_ZSTD)
		ret = qcow2_inflate_zstd((char *)cbuf + (byte_off - off), len - (byte_off - off),
					 cluster_buf, q->cluster_size);
	else
		ret = qcow2_inflate_zlib((char *)cbuf + (byte_off - off), len - (byte_off - off),
					 cluster_buf, q->cluster_size);
	free(cbuf);
	if (ret == -EIO)
		img_err("%s: compressed cluster at 0x%" PRIx64 " does not decompress",
			q->t->cfg.file, byte_off);
	return ret;
}

/* Waits, with lock held, until no flush is ordering metadata; then the caller may change L1/L2. */
void qcow2_commit_begin(struct qcow2 *q)
{
	pthread_mutex_lock(&q->lock);
	while (q->flushing)
		exec_waitq_sleep(&q->flush_wq, &q->lock);
}

void qcow2_commit_end(struct qcow2 *q)
{
	pthread_mutex_unlock(&q->lock);
}

static void qcow2_l1_touch(struct qcow2 *q, uint64_t l1i)
{
	q->l1_dirty[l1i * 8 / q->dio_align] = 1;
}

static bool qcow2_l2_allocating(struct qcow2 *q, uint64_t l1i)
{
	unsigned int i;

	for (i = 0; i < q->nr_l2_allocating; i++)
		if (q->l2_allocating[i] == l1i)
			return true;
	return false;
}

static void qcow2_l2_allocating_del(struct qcow2 *q, uint64_t l1i)
{
	unsigned int i;

	for (i = 0; i < q->nr_l2_allocating; i++)
		if (q->l2_allocating[i] == l1i) {
			q->l2_allocating[i] = q->l2_allocating[--q->nr_l2_allocating];
			break;
		}
	exec_waitq_wake_all(&q->l2_alloc_wq);
}

/*
 * Allocates and installs an empty L2 table for L1 index @l1i.  Order
 * (README.md, step W4): refcount in cache, table dirty in cache, L1 entry
 * dirty; a flush writes them refcounts first, table second, L1 last.
 */
static int qcow2_l2_alloc(struct qcow2 *q, uint64_t l1i, struct qcow2_cslot **slot)
{
	uint64_t got;
	int64_t off;
	int ret;

	exec_mutex_lock(&q->alloc_mutex);
	off = qcow2_alloc_clusters(q, 1, &got, NULL);
	exec_mutex_unlock(&q->alloc_mutex);
	if (off < 0)
		return off;
	ret = qcow2_cache_get(q, &q->l2c, off, true, slot);
	if (ret)
		return ret;
	qcow2_commit_begin(q);
	ret = qcow2_ovl_add(q, off, QCOW2_META_L2);
	if (ret) {
		/* Nothing names the cluster: a leak, never a corruption. */
		qcow2_commit_end(q);
		qcow2_cache_put(q, &q->l2c, *slot);
		return ret;
	}
	qcow2_cache_mark_dirty(&q->l2c, *slot);
	q->l1[l1i] = (uint64_t)off | QCOW2_COPIED;
	qcow2_l1_touch(q, l1i);
	qcow2_commit_end(q);
	return 0;
}

/*
 * Makes the L2 table of L1 entry @l1i, @l1e (without COPIED), writable.
 * Refcount 1: the flag was merely stale, set it.  Shared with a snapshot:
 * copy the table to a new cluster (its entries lose COPIED: what they map
 * stays shared), point the L1 entry there, and release the old table's
 * reference once the new L1 entry is on disk (F5).  Returns, pinned, the
 * table to write, or -errno.
 */
static int qcow2_l2_unshare(struct qcow2 *q, uint64_t l1i, uint64_t l1e,
			    struct qcow2_cslot **slot)
{
	uint64_t old = l1e & QCOW2_L1_OFFSET_MASK, rc, got, i, *dst;
	const uint64_t *src;
	struct qcow2_cslot *os;
	int64_t off;
	int ret;

	exec_mutex_lock(&q->alloc_mutex);
	ret = qcow2_refcount_get(q, old >> q->cluster_bits, &rc);
	exec_mutex_unlock(&q->alloc_mutex);
	if (ret)
		return ret;
	if (rc == 0)
		return qcow2_mark_corrupt(q, "L2 table with refcount 0");
	if (rc == 1) {
		qcow2_commit_begin(q);
		q->l1[l1i] |= QCOW2_COPIED;
		qcow2_l1_touch(q, l1i);
		qcow2_commit_end(q);
		return qcow2_cache_get(q, &q->l2c, old, false, slot);
	}

	ret = qcow2_cache_get(q, &q->l2c, old, false, &os);
	if (ret)
		return ret;
	exec_mutex_lock(&q->alloc_mutex);
	off = qcow2_alloc_clusters(q, 1, &got, NULL);
	exec_mutex_unlock(&q->alloc_mutex);
	if (off < 0) {
		qcow2_cache_put(q, &q->l2c, os);
		return off;
	}
	ret = qcow2_cache_get(q, &q->l2c, off, true, slot);
	if (ret) {
		qcow2_cache_put(q, &q->l2c, os);
		return ret;
	}
	qcow2_commit_begin(q);
	ret = qcow2_ovl_add(q, off, QCOW2_META_L2);
	if (ret) {
		/* Nothing names the new cluster: a leak, never a corruption. */
		qcow2_commit_end(q);
		qcow2_cache_put(q, &q->l2c, *slot);
		qcow2_cache_put(q, &q->l2c, os);
		return ret;
	}
	src = os->buf;
	dst = (*slot)->buf;
	for (i = 0; i < qcow2_l2_entries(q); i++)
		qcow2_l2_set(q, dst, i, qcow2_l2_get(q, src, i) & ~QCOW2_COPIED,
			     qcow2_l2_get_bitmap(q, src, i));
	qcow2_cache_mark_dirty(&q->l2c, *slot);
	q->l1[l1i] = (uint64_t)off | QCOW2_COPIED;
	qcow2_l1_touch(q, l1i);
	qcow2_ovl_del(q, old, QCOW2_META_L2);
	qcow2_free_later(q, old, q->cluster_size);
	qcow2_commit_end(q);
	qcow2_cache_put(q, &q->l2c, os);
	return 0;
}

/*
 * Returns, pinned, the L2 table for guest cluster @gc, allocating it if
 * the L1 entry is empty and copying it if it is shared with a snapshot.
 * Two writers needing the same new table never both allocate: the second
 * waits for the first.  Returns 0 or -errno.
 */
int qcow2_l2_get_for_write(struct qcow2 *q, uint64_t gc, struct qcow2_cslot **slot)
{
	uint64_t l1i = qcow2_l1_index(q, gc), l1e;
	int ret;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		l1e = q->l1[l1i];
		if ((l1e & QCOW2_L1_OFFSET_MASK) && (l1e & QCOW2_COPIED))
			break;
		if (qcow2_l2_allocating(q, l1i)) {
			exec_waitq_sleep(&q->l2_alloc_wq, &q->lock);
			continue;
		}
		if (q->nr_l2_allocating == q->cap_l2_allocating) {
			unsigned int cap = q->cap_l2_allocating ? q->cap_l2_allocating * 2 : 16;
			uint64_t *a = realloc(q->l2_allocating, cap * sizeof(*a));

			if (!a) {
				pthread_mutex_unlock(&q->lock);
				return -ENOMEM;
			}
			q->l2_allocating = a;
			q->cap_l2_allocating = cap;
		}
		q->l2_allocating[q->nr_l2_allocating++] = l1i;
		pthread_mutex_unlock(&q->lock);

		if (!(l1e & QCOW2_L1_OFFSET_MASK))
			ret = qcow2_l2_alloc(q, l1i, slot);
		else if ((l1e & QCOW2_L1_RESERVED) ||
			 qcow2_off_in_cluster(q, l1e & QCOW2_L1_OFFSET_MASK))
			ret = qcow2_mark_corrupt(q, "L1 entry with reserved bits or unaligned L2 offset");
		else
			ret = qcow2_l2_unshare(q, l1i, l1e, slot);

		pthread_mutex_lock(&q->lock);
		qcow2_l2_allocating_del(q, l1i);
		pthread_mutex_unlock(&q->lock);
		return ret;
	}
	pthread_mutex_unlock(&q->lock);

	if ((l1e & QCOW2_L1_RESERVED) || qcow2_off_in_cluster(q, l1e & QCOW2_L1_OFFSET_MASK))
		return qcow2_mark_corrupt(q, "L1 entry with reserved bits or unaligned L2 offset");
	return qcow2_cache_get(q, &q->l2c, l1e & QCOW2_L1_OFFSET_MASK, false, slot);
}
