// SPDX-License-Identifier: GPL-2.0
/*
 * Metadata overlap checks, as QEMU's overlap-check=cached: before a write
 * to the image file, the range must not touch metadata other than the
 * structure being written.  A hostile or damaged image can map a guest
 * cluster (L2 entry with COPIED) onto its own L1 table, an L2 table, a
 * refcount block...; without the check a guest write would go over it.
 * On a hit the write is not done and the image is marked corrupt.
 *
 * What is checked: the header cluster, the active L1 table and the
 * refcount table (fixed ranges, compared directly), and, in an index of
 * host clusters, the active L2 tables (from the in-memory L1), the
 * refcount blocks (from the in-memory refcount table), the snapshot
 * table, the snapshots' L1 tables and the bitmap directory.  As in QEMU's
 * cached mode, the snapshots' L2 tables are not: finding them means
 * reading every snapshot's L1 and is not worth it on every write.
 *
 * The index is a hash multiset (linear probing) keyed by host offset,
 * with the kind in the low bits (offsets are cluster aligned): a write
 * costs one probe per cluster it touches, never a scan of the L1 or
 * refcount table.  It is kept in step where L1 and refcount table
 * entries change (qcow2_ovl_add/del) and rebuilt where whole tables or
 * the snapshot list are replaced (qcow2_ovl_rebuild).  Under q->lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

#define QCOW2_OVL_KIND_MASK	7ULL
#define QCOW2_OVL_MIN_BITS	6

static const char *const qcow2_meta_names[QCOW2_META_NR] = {
	[QCOW2_META_HEADER] = "the header",
	[QCOW2_META_L1] = "the active L1 table",
	[QCOW2_META_L2] = "an active L2 table",
	[QCOW2_META_RT] = "the refcount table",
	[QCOW2_META_RB] = "a refcount block",
	[QCOW2_META_SNAP_TABLE] = "the snapshot table",
	[QCOW2_META_SNAP_L1] = "a snapshot's L1 table",
	[QCOW2_META_BITMAP_DIR] = "the bitmap directory",
};

static uint64_t qcow2_ovl_slot(const struct qcow2 *q, const struct qcow2_ovl *o, uint64_t off)
{
	/* Fibonacci hashing of the cluster index: neighbours spread out. */
	return ((off >> q->cluster_bits) * 0x9e3779b97f4a7c15ULL) >> (64 - o->bits);
}

/* Puts @key in @o, which has a free slot.  No growth. */
static void qcow2_ovl_put(const struct qcow2 *q, struct qcow2_ovl *o, uint64_t key)
{
	uint64_t mask = (1ULL << o->bits) - 1, i;

	for (i = qcow2_ovl_slot(q, o, key); o->slot[i]; i = (i + 1) & mask)
		;
	o->slot[i] = key;
	o->nr++;
}

/* Makes @o hold 2^@bits slots (at least twice its entries).  Returns 0 or -ENOMEM. */
static int qcow2_ovl_resize(const struct qcow2 *q, struct qcow2_ovl *o, unsigned int bits)
{
	struct qcow2_ovl n = { .bits = bits, .on = o->on };
	uint64_t i;

	n.slot = calloc(1ULL << bits, sizeof(*n.slot));
	if (!n.slot)
		return -ENOMEM;
	for (i = 0; o->slot && i < 1ULL << o->bits; i++)
		if (o->slot[i])
			qcow2_ovl_put(q, &n, o->slot[i]);
	free(o->slot);
	*o = n;
	return 0;
}

/*
 * Adds the cluster at @off as metadata of @kind.  Under q->lock.  The
 * index grows at half full; without memory it fills up further, and
 * only a full index fails.  Returns 0 or -ENOMEM.
 */
int qcow2_ovl_add(struct qcow2 *q, uint64_t off, enum qcow2_meta kind)
{
	struct qcow2_ovl *o = &q->ovl;

	if (!o->on || !off || qcow2_off_in_cluster(q, off))
		return 0;
	if ((o->nr + 1) * 2 > 1ULL << o->bits &&
	    qcow2_ovl_resize(q, o, o->bits + 1) && o->nr + 1 >= 1ULL << o->bits)
		return -ENOMEM;
	qcow2_ovl_put(q, o, off | kind);
	return 0;
}

/* Drops one entry of the cluster at @off as @kind, if any.  Under q->lock. */
void qcow2_ovl_del(struct qcow2 *q, uint64_t off, enum qcow2_meta kind)
{
	struct qcow2_ovl *o = &q->ovl;
	uint64_t mask = (1ULL << o->bits) - 1, key = off | kind, i, j;

	if (!o->nr || !off || qcow2_off_in_cluster(q, off))
		return;
	for (i = qcow2_ovl_slot(q, o, off); o->slot[i] != key; i = (i + 1) & mask)
		if (!o->slot[i])
			return;
	/*
	 * Backward-shift deletion: move up every later entry of the run
	 * whose home slot does not lie between the hole and itself, so no
	 * probe ever stops early at the hole.
	 */
	for (j = (i + 1) & mask; o->slot[j]; j = (j + 1) & mask) {
		uint64_t h = qcow2_ovl_slot(q, o, o->slot[j]);

		if (((j - h) & mask) >= ((j - i) & mask)) {
			o->slot[i] = o->slot[j];
			i = j;
		}
	}
	o->slot[i] = 0;
	o->nr--;
}

/* Adds every cluster of [off, off + len) as @kind.  Returns 0 or -ENOMEM. */
static int qcow2_ovl_add_range(struct qcow2 *q, uint64_t off, uint64_t len,
			       enum qcow2_meta kind)
{
	uint64_t c;
	int ret;

	if (!len || qcow2_off_in_cluster(q, off))
		return 0;
	for (c = off; c < off + len; c += q->cluster_size) {
		ret = qcow2_ovl_add(q, c, kind);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Builds the index again from the in-memory L1 and refcount table, the
 * snapshot list and the bitmap directory.  Called where one of them was
 * replaced as a whole (open, snapshot operations, L1 or refcount table
 * switches, check), with q->snaps matching the header.  Returns 0 or
 * -ENOMEM (the old index is kept).
 */
int qcow2_ovl_rebuild(struct qcow2 *q)
{
	struct qcow2_ovl old;
	uint64_t i, n;
	unsigned int bits = QCOW2_OVL_MIN_BITS;
	int ret;

	if (!q->ovl.on)
		return 0;
	pthread_mutex_lock(&q->lock);
	n = q->nb_snapshots + 2;
	for (i = 0; i < q->l1_size; i++)
		n += !!(q->l1[i] & QCOW2_L1_OFFSET_MASK);
	for (i = 0; i < q->rt_size; i++)
		n += !!q->rt[i];
	while ((1ULL << bits) < 2 * n)
		bits++;
	old = q->ovl;
	q->ovl = (struct qcow2_ovl){ .bits = bits, .on = true };
	q->ovl.slot = calloc(1ULL << bits, sizeof(*q->ovl.slot));
	ret = q->ovl.slot ? 0 : -ENOMEM;
	for (i = 0; !ret && i < q->l1_size; i++)
		ret = qcow2_ovl_add(q, q->l1[i] & QCOW2_L1_OFFSET_MASK, QCOW2_META_L2);
	for (i = 0; !ret && i < q->rt_size; i++)
		ret = qcow2_ovl_add(q, q->rt[i], QCOW2_META_RB);
	if (!ret && q->nb_snapshots)
		ret = qcow2_ovl_add_range(q, q->snapshots_offset,
					  ALIGN_UP(q->snap_table_bytes, q->cluster_size),
					  QCOW2_META_SNAP_TABLE);
	for (i = 0; !ret && i < q->nb_snapshots; i++) {
		const struct qcow2_snapshot *sn = &q->snaps[i];

		ret = qcow2_ovl_add_range(q, sn->l1_offset,
					  ALIGN_UP((uint64_t)sn->l1_size * 8, q->cluster_size),
					  QCOW2_META_SNAP_L1);
	}
	if (!ret && q->nb_bitmaps)
		ret = qcow2_ovl_add_range(q, q->bitmap_dir_offset,
					  ALIGN_UP(q->bitmap_dir_size, q->cluster_size),
					  QCOW2_META_BITMAP_DIR);
	if (ret) {
		free(q->ovl.slot);
		q->ovl = old;
	} else {
		free(old.slot);
	}
	pthread_mutex_unlock(&q->lock);
	return ret;
}

/* Turns the checks on for a read-write open and builds the index.  Returns 0 or -ENOMEM. */
int qcow2_ovl_init(struct qcow2 *q)
{
	q->ovl.on = true;
	return qcow2_ovl_rebuild(q);
}

void qcow2_ovl_free(struct qcow2 *q)
{
	free(q->ovl.slot);
	memset(&q->ovl, 0, sizeof(q->ovl));
}

static bool qcow2_ranges_meet(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

/*
 * The metadata [off, off + len) touches, other than the kinds in @ign:
 * its kind and its offset in *at; QCOW2_META_NR for none.  Under q->lock.
 */
static enum qcow2_meta qcow2_ovl_find(struct qcow2 *q, unsigned int ign, uint64_t off,
				      uint64_t len, uint64_t *at)
{
	const struct qcow2_ovl *o = &q->ovl;
	uint64_t mask = (1ULL << o->bits) - 1, first, last, c, i;

	/* The header's cluster holds the header extensions and backing name too. */
	if (!(ign & QCOW2_OL(QCOW2_META_HEADER)) && off < q->cluster_size) {
		*at = 0;
		return QCOW2_META_HEADER;
	}
	if (!(ign & QCOW2_OL(QCOW2_META_L1)) &&
	    qcow2_ranges_meet(off, len, q->l1_offset,
			      ALIGN_UP((uint64_t)q->l1_size * 8, q->cluster_size))) {
		*at = q->l1_offset;
		return QCOW2_META_L1;
	}
	if (!(ign & QCOW2_OL(QCOW2_META_RT)) &&
	    qcow2_ranges_meet(off, len, q->rt_offset,
			      (uint64_t)q->rt_clusters << q->cluster_bits)) {
		*at = q->rt_offset;
		return QCOW2_META_RT;
	}
	if (!o->nr)
		return QCOW2_META_NR;
	first = ALIGN_DOWN(off, q->cluster_size);
	last = ALIGN_DOWN(off + len - 1, q->cluster_size);
	if (((last - first) >> q->cluster_bits) < o->nr) {
		/* The usual case, a few clusters: one probe each. */
		for (c = first; c <= last; c += q->cluster_size)
			for (i = qcow2_ovl_slot(q, o, c); o->slot[i]; i = (i + 1) & mask)
				if ((o->slot[i] & ~QCOW2_OVL_KIND_MASK) == c &&
				    !(ign & QCOW2_OL(o->slot[i] & QCOW2_OVL_KIND_MASK))) {
					*at = c;
					return o->slot[i] & QCOW2_OVL_KIND_MASK;
				}
		return QCOW2_META_NR;
	}
	/* A range of more clusters than the index holds: look at each entry once. */
	for (i = 0; i <= mask; i++) {
		c = o->slot[i] & ~QCOW2_OVL_KIND_MASK;
		if (o->slot[i] && c >= first && c <= last &&
		    !(ign & QCOW2_OL(o->slot[i] & QCOW2_OVL_KIND_MASK))) {
			*at = c;
			return o->slot[i] & QCOW2_OVL_KIND_MASK;
		}
	}
	return QCOW2_META_NR;
}

/*
 * Called before every write of [off, off + len) to the image file; @ign
 * names the kinds of metadata the write may cover (the structure being
 * written).  Not with q->lock held.  Returns 0, or -EIO when the range
 * touches other metadata: then nothing may be written, and the image is
 * marked corrupt.
 */
int qcow2_overlap_check(struct qcow2 *q, unsigned int ign, uint64_t off, uint64_t len)
{
	enum qcow2_meta kind;
	char why[160];
	uint64_t at = 0;

	if (!q->ovl.on || !len)
		return 0;
	pthread_mutex_lock(&q->lock);
	kind = qcow2_ovl_find(q, ign, off, len, &at);
	pthread_mutex_unlock(&q->lock);
	if (kind == QCOW2_META_NR)
		return 0;
	snprintf(why, sizeof(why), "refused a write of 0x%" PRIx64 "+0x%" PRIx64
		 " over %s (at 0x%" PRIx64 ")", off, len, qcow2_meta_names[kind], at);
	return qcow2_mark_corrupt(q, why);
}

ssize_t qcow2_pwrite_checked(struct qcow2 *q, unsigned int ign, const void *buf,
			     size_t len, uint64_t off)
{
	int ret = qcow2_overlap_check(q, ign, off, len);

	return ret ? ret : bfile_pwrite(q->file, buf, len, off, 0);
}
