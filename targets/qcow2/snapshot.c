// SPDX-License-Identifier: GPL-2.0
/*
 * Internal snapshots: the snapshot table, per-snapshot L1 copies, and the
 * refcount walks that share (create), unshare (delete) and swap (apply)
 * the clusters of a whole L1 tree.
 *
 * A cluster's refcount counts every path to it: an L2 table reachable
 * from the active L1 and from a snapshot's L1 has refcount 2, and every
 * data cluster it maps gets one reference per such path.  COPIED (L1 and
 * L2) is set exactly where the refcount is 1; writes to anything else copy
 * it first (cluster.c for L2 tables, cow.c for data).
 *
 * These run from the snapshot verb and from open only: the image is open
 * read-write by us alone, no guest I/O is in flight.  Crash ordering
 * (README.md, S1-S4): references are added before the structure that
 * needs them is reachable, and dropped only after it is unreachable on
 * disk; a crash in between leaks clusters, never frees one in use.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qcow2.h"
#include "util.h"

void qcow2_free_snapshots(struct qcow2 *q)
{
	uint32_t i;

	if (q->snaps)
		for (i = 0; i < q->nb_snapshots; i++) {
			free(q->snaps[i].id);
			free(q->snaps[i].name);
			free(q->snaps[i].extra);
		}
	free(q->snaps);
	free(q->snap_info);
	q->snaps = NULL;
	q->snap_info = NULL;
}

static char *qcow2_snap_strndup(const uint8_t *p, size_t len)
{
	char *s = malloc(len + 1);

	if (s) {
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

/* Makes sure the first @need bytes of the table are in *@tab.  Returns 0 or -errno. */
static int qcow2_snap_table_fill(struct qcow2 *q, uint8_t **tab, uint64_t *cap,
				 uint64_t need)
{
	uint64_t ncap = ALIGN_UP(need, q->cluster_size);
	uint8_t *t;
	int ret;

	if (need <= *cap)
		return 0;
	if (need > QCOW2_MAX_SNAPSHOT_TABLE_BYTES || q->snapshots_offset + need > q->file_bytes) {
		img_err("%s: qcow2 snapshot table runs past the end of the file", q->t->cfg.file);
		return -EINVAL;
	}
	if (posix_memalign((void **)&t, 4096, ncap))
		return -ENOMEM;
	if (*tab)
		memcpy(t, *tab, *cap);
	free(*tab);
	*tab = t;
	ret = qcow2_read_at(q->file, t + *cap, ncap - *cap, q->snapshots_offset + *cap);
	if (!ret)
		*cap = ncap;
	return ret;
}

/*
 * Reads the snapshot table into q->snaps.  Refuses (-EINVAL, printed) a
 * table QEMU would refuse: entries past the file, oversized extra data,
 * misaligned or oversized L1 copies.  Returns 0 or -errno.
 */
int qcow2_load_snapshots(struct qcow2 *q)
{
	const char *file = q->t->cfg.file;
	uint64_t pos = 0, cap = 0;
	uint8_t *tab = NULL;
	uint32_t i;
	int ret;

	if (!q->nb_snapshots)
		return 0;
	q->snaps = calloc(q->nb_snapshots, sizeof(*q->snaps));
	if (!q->snaps)
		return -ENOMEM;
	for (i = 0; i < q->nb_snapshots; i++) {
		struct qcow2_snapshot *sn = &q->snaps[i];
		struct qcow2_snapshot_disk d;
		uint32_t id_len, name_len;

		ret = qcow2_snap_table_fill(q, &tab, &cap, pos + sizeof(d));
		if (ret)
			goto err;
		memcpy(&d, tab + pos, sizeof(d));
		pos += sizeof(d);
		sn->extra_size = __builtin_bswap32(d.extra_data_size);
		id_len = __builtin_bswap16(d.id_str_size);
		name_len = __builtin_bswap16(d.name_size);
		if (sn->extra_size > QCOW2_MAX_SNAPSHOT_EXTRA) {
			img_err("%s: qcow2 snapshot %u has too much extra data", file, i);
			ret = -EINVAL;
			goto err;
		}
		ret = qcow2_snap_table_fill(q, &tab, &cap,
					    pos + sn->extra_size + id_len + name_len);
		if (ret)
			goto err;
		sn->l1_offset = __builtin_bswap64(d.l1_table_offset);
		sn->l1_size = __builtin_bswap32(d.l1_size);
		sn->date_sec = __builtin_bswap32(d.date_sec);
		sn->date_nsec = __builtin_bswap32(d.date_nsec);
		sn->vm_clock_nsec = __builtin_bswap64(d.vm_clock_nsec);
		sn->vm_state_size = __builtin_bswap32(d.vm_state_size);
		sn->extra = malloc(MAX(sn->extra_size, 1U));
		sn->id = qcow2_snap_strndup(tab + pos + sn->extra_size, id_len);
		sn->name = qcow2_snap_strndup(tab + pos + sn->extra_size + id_len, name_len);
		if (!sn->extra || !sn->id || !sn->name) {
			ret = -ENOMEM;
			goto err;
		}
		memcpy(sn->extra, tab + pos, sn->extra_size);
		pos = ALIGN_UP(pos + sn->extra_size + id_len + name_len, 8);
		sn->disk_size = q->size_bytes;
		sn->icount = UINT64_MAX;
		if (sn->extra_size >= 16)
			sn->disk_size = get_be64(sn->extra + 8);
		if (sn->extra_size >= 24)
			sn->icount = get_be64(sn->extra + 16);
		if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
		    (sn->l1_size && (qcow2_off_in_cluster(q, sn->l1_offset) ||
				     sn->l1_offset + (uint64_t)sn->l1_size * 8 > q->file_bytes))) {
			img_err("%s: qcow2 snapshot '%s' has an invalid L1 table", file, sn->name);
			ret = -EINVAL;
			goto err;
		}
	}
	free(tab);
	q->snap_table_bytes = pos;
	return 0;
err:
	free(tab);
	qcow2_free_snapshots(q);
	return ret;
}

/* Index of the snapshot whose id (then name) is @which, or -1. */
static int qcow2_snap_find(struct qcow2 *q, const char *which, bool by_id)
{
	uint32_t i;

	if (by_id)
		for (i = 0; i < q->nb_snapshots; i++)
			if (!strcmp(q->snaps[i].id, which))
				return i;
	for (i = 0; i < q->nb_snapshots; i++)
		if (!strcmp(q->snaps[i].name, which))
			return i;
	return -1;
}

/* Reads snapshot @sn's L1 into a host-order buffer of @entries (>= l1_size). */
static int qcow2_snap_read_l1(struct qcow2 *q, const struct qcow2_snapshot *sn,
			      uint64_t entries, uint64_t **out)
{
	uint64_t bytes = ALIGN_UP(MAX(entries * 8, 8ULL), q->cluster_size), i;
	uint64_t *l1;
	int ret;

	if (posix_memalign((void **)&l1, 4096, bytes))
		return -ENOMEM;
	memset(l1, 0, bytes);
	if (sn->l1_size) {
		ret = qcow2_read_at(q->file, l1, ALIGN_UP((uint64_t)sn->l1_size * 8, 512),
				    sn->l1_offset);
		if (ret) {
			free(l1);
			return ret;
		}
	}
	for (i = 0; i < sn->l1_size; i++)
		l1[i] = __builtin_bswap64(l1[i]);
	*out = l1;
	return 0;
}

/*
 * Opens snapshot @which (id or name) in place of the current state: its L1
 * and its guest size.  The caller made the image read-only.  Returns 0 or
 * -errno (printed).
 */
int qcow2_open_snapshot(struct qcow2 *q, const char *which)
{
	int i = qcow2_snap_find(q, which, true);
	struct qcow2_snapshot *sn;
	uint64_t need, *l1;
	int ret;

	if (i < 0) {
		img_err("%s: no snapshot '%s'", q->t->cfg.file, which);
		return -ENOENT;
	}
	sn = &q->snaps[i];
	need = DIV_ROUND_UP(DIV_ROUND_UP(sn->disk_size, q->cluster_size), qcow2_l2_entries(q));
	if (need * 8 > QCOW2_MAX_L1_BYTES) {
		img_err("%s: snapshot '%s' has an invalid size", q->t->cfg.file, which);
		return -EINVAL;
	}
	ret = qcow2_snap_read_l1(q, sn, MAX(need, (uint64_t)sn->l1_size), &l1);
	if (ret)
		return ret;
	free(q->l1);
	q->l1 = l1;
	q->l1_offset = sn->l1_offset;
	q->l1_size = MAX(need, (uint64_t)sn->l1_size);
	free(q->l1_dirty);
	q->l1_dirty = calloc(ALIGN_UP(q->l1_size * 8ULL, q->cluster_size) / q->dio_align, 1);
	if (!q->l1_dirty)
		return -ENOMEM;
	q->size_bytes = sn->disk_size;
	return 0;
}

int qcow2_snapshot_list(struct tgt *t, const struct tgt_snapshot_info **list)
{
	struct qcow2 *q = t->priv;
	uint32_t i;

	free(q->snap_info);
	q->snap_info = calloc(MAX(q->nb_snapshots, 1U), sizeof(*q->snap_info));
	if (!q->snap_info)
		return -ENOMEM;
	for (i = 0; i < q->nb_snapshots; i++) {
		const struct qcow2_snapshot *sn = &q->snaps[i];
		struct tgt_snapshot_info *si = &q->snap_info[i];

		si->id = sn->id;
		si->name = sn->name;
		si->vm_state_bytes = sn->extra_size >= 8 ? get_be64(sn->extra) : 0;
		if (!si->vm_state_bytes)
			si->vm_state_bytes = sn->vm_state_size;
		si->date_sec = sn->date_sec;
		si->date_nsec = sn->date_nsec;
		si->vm_clock_nsec = sn->vm_clock_nsec;
		si->icount = sn->icount;
		si->size_bytes = sn->disk_size;
	}
	*list = q->snap_info;
	return q->nb_snapshots;
}

static int qcow2_refs(struct qcow2 *q, uint64_t off, uint64_t len, int delta)
{
	int ret;

	exec_mutex_lock(&q->alloc_mutex);
	ret = qcow2_refcount_update(q, off, len, delta);
	exec_mutex_unlock(&q->alloc_mutex);
	return ret;
}

static int qcow2_ref_get(struct qcow2 *q, uint64_t off, uint64_t *rc)
{
	int ret;

	exec_mutex_lock(&q->alloc_mutex);
	ret = qcow2_refcount_get(q, off >> q->cluster_bits, rc);
	exec_mutex_unlock(&q->alloc_mutex);
	return ret;
}

/*
 * Adds @delta to the refcount of every cluster the L1 tree @l1 reaches
 * (each L2 table once per entry, each data cluster once per L2 entry),
 * at most *@budget changes, counting them down.  An L2 table gains its
 * reference before its entries are read and (@l2_last) loses it after:
 * dropping to 0 punches it out of the file.  With @active (@l1 is
 * q->l1), also sets COPIED wherever the refcount is now 1 and clears it
 * elsewhere, in the caches; a flush writes them after the refcounts.
 * Returns 0 or -errno.
 */
static int qcow2_tree_walk(struct qcow2 *q, uint64_t *l1, uint64_t l1_size, int delta,
			   bool active, bool l2_last, uint64_t *budget)
{
	uint64_t i, j, rc;
	int ret = 0;

	for (i = 0; i < l1_size && *budget; i++) {
		uint64_t l2off = l1[i] & QCOW2_L1_OFFSET_MASK, *l2;
		struct qcow2_cslot *slot;
		bool dirty = false;

		if (!l2off)
			continue;
		if ((l1[i] & QCOW2_L1_RESERVED) || qcow2_off_in_cluster(q, l2off))
			return qcow2_mark_corrupt(q, "L1 entry with reserved bits or unaligned L2 offset");
		if (delta && !l2_last) {
			ret = qcow2_refs(q, l2off, q->cluster_size, delta);
			if (ret)
				return ret;
			--*budget;
		}
		ret = qcow2_cache_get(q, &q->l2c, l2off, false, &slot);
		if (ret)
			return ret;
		l2 = slot->buf;
		for (j = 0; j < qcow2_l2_entries(q) && !ret && *budget; j++) {
			uint64_t e = qcow2_l2_get(q, l2, j), off, len, ne;

			switch (qcow2_l2_kind(q, e)) {
			case QCOW2_COMPRESSED:
				if (delta) {
					qcow2_compressed_range(q, e, &off, &len);
					ret = qcow2_refs(q, off, len, delta);
					*budget -= !ret;
				}
				break;
			case QCOW2_NORMAL:
			case QCOW2_ZERO_ALLOC:
				off = qcow2_l2_host(q, e);
				if (!qcow2_l2_valid(q, e))
					break;
				if (delta) {
					ret = qcow2_refs(q, off, q->cluster_size, delta);
					*budget -= !ret;
				}
				if (ret || !active)
					break;
				ret = qcow2_ref_get(q, off, &rc);
				ne = rc == 1 ? e | QCOW2_COPIED : e & ~QCOW2_COPIED;
				if (!ret && ne != e) {
					qcow2_l2_set(q, l2, j, ne, qcow2_l2_get_bitmap(q, l2, j));
					dirty = true;
				}
				break;
			default:
				break;
			}
		}
		if (dirty) {
			pthread_mutex_lock(&q->lock);
			qcow2_cache_mark_dirty(&q->l2c, slot);
			pthread_mutex_unlock(&q->lock);
		}
		qcow2_cache_put(q, &q->l2c, slot);
		if (ret)
			return ret;
		if (delta && l2_last && *budget) {
			ret = qcow2_refs(q, l2off, q->cluster_size, delta);
			if (ret)
				return ret;
			--*budget;
		}
		if (active) {
			uint64_t ne;

			ret = qcow2_ref_get(q, l2off, &rc);
			if (ret)
				return ret;
			ne = rc == 1 ? l1[i] | QCOW2_COPIED : l1[i] & ~QCOW2_COPIED;
			if (ne != l1[i]) {
				l1[i] = ne;
				q->l1_dirty[i * 8 / q->dio_align] = 1;
			}
		}
	}
	return 0;
}

/* qcow2_tree_walk() over the whole tree; an L2 table loses its reference last. */
static int qcow2_tree_refs(struct qcow2 *q, uint64_t *l1, uint64_t l1_size, int delta,
			   bool active)
{
	uint64_t all = UINT64_MAX;

	return qcow2_tree_walk(q, l1, l1_size, delta, active, delta < 0, &all);
}

/*
 * Adds a reference to the whole tree, all or nothing: a refcount at its
 * maximum (2-bit refcounts, a cluster in three snapshots) takes back the
 * references added before it, in the same order, and the COPIED flags
 * they changed, so that a refused snapshot create or apply leaves no
 * leak behind.  *@undone says whether the tree is as it was after a
 * failure.  Returns 0 or -errno.
 */
static int qcow2_tree_ref_all(struct qcow2 *q, uint64_t *l1, uint64_t l1_size, bool active,
			      bool *undone)
{
	uint64_t budget = UINT64_MAX, done;
	int ret;

	*undone = false;
	ret = qcow2_tree_walk(q, l1, l1_size, 1, active, false, &budget);
	if (!ret)
		return 0;
	done = UINT64_MAX - budget;
	if (qcow2_tree_walk(q, l1, l1_size, -1, false, false, &done))
		return ret;
	*undone = !active || !qcow2_tree_refs(q, l1, l1_size, 0, true);
	return ret;
}

/*
 * Writes the host-order L1 @l1 (@entries, COPIED flags stripped: a copy
 * is never written in place) to @n new contiguous clusters, no sync.
 * Returns the offset or -errno.
 */
int64_t qcow2_write_l1_copy(struct qcow2 *q, const uint64_t *l1, uint64_t entries,
			    bool strip_copied)
{
	uint64_t bytes = ALIGN_UP(MAX(entries * 8, 8ULL), q->cluster_size), i;
	uint64_t *buf;
	int64_t off;
	ssize_t n;

	if (posix_memalign((void **)&buf, 4096, bytes))
		return -ENOMEM;
	memset(buf, 0, bytes);
	for (i = 0; i < entries; i++)
		buf[i] = __builtin_bswap64(strip_copied ? l1[i] & ~QCOW2_COPIED : l1[i]);
	off = qcow2_alloc_contig(q, bytes >> q->cluster_bits);
	if (off >= 0) {
		/* New clusters meet metadata only if a refcount lied. */
		n = qcow2_pwrite_checked(q, 0, buf, bytes, off);
		if (n < 0) {
			qcow2_refs(q, off, bytes, -1);
			off = n;
		}
	}
	free(buf);
	return off;
}

/* The serialized size of entry @sn in the table. */
static uint64_t qcow2_snap_entry_bytes(const struct qcow2_snapshot *sn)
{
	return ALIGN_UP(sizeof(struct qcow2_snapshot_disk) + sn->extra_size +
			strlen(sn->id) + strlen(sn->name), 8);
}

/*
 * Writes @snaps (@nb entries) as the new snapshot table.  Order (S1):
 * new table in new clusters, refcounts and table synced, header switched
 * with a synced write, then the old table's clusters released.  On
 * success q->snaps takes @snaps.  Returns 0 or -errno.
 */
static int qcow2_write_snapshot_table(struct qcow2 *q, struct qcow2_snapshot *snaps,
				      uint32_t nb)
{
	uint64_t bytes = 0, pos = 0, old_off = q->snapshots_offset;
	uint64_t old_bytes = q->snap_table_bytes;
	uint32_t old_nb = q->nb_snapshots, i;
	int64_t off = 0;
	uint8_t *buf = NULL;
	ssize_t n;
	int ret;

	for (i = 0; i < nb; i++)
		bytes += qcow2_snap_entry_bytes(&snaps[i]);
	if (bytes > QCOW2_MAX_SNAPSHOT_TABLE_BYTES || nb > QCOW2_MAX_SNAPSHOTS) {
		img_err("%s: too many snapshots", q->t->cfg.file);
		return -EFBIG;
	}
	if (nb) {
		uint64_t abytes = ALIGN_UP(bytes, q->cluster_size);

		if (posix_memalign((void **)&buf, 4096, abytes))
			return -ENOMEM;
		memset(buf, 0, abytes);
		for (i = 0; i < nb; i++) {
			const struct qcow2_snapshot *sn = &snaps[i];
			struct qcow2_snapshot_disk d = {
				.l1_table_offset = __builtin_bswap64(sn->l1_offset),
				.l1_size = __builtin_bswap32(sn->l1_size),
				.id_str_size = __builtin_bswap16(strlen(sn->id)),
				.name_size = __builtin_bswap16(strlen(sn->name)),
				.date_sec = __builtin_bswap32(sn->date_sec),
				.date_nsec = __builtin_bswap32(sn->date_nsec),
				.vm_clock_nsec = __builtin_bswap64(sn->vm_clock_nsec),
				.vm_state_size = __builtin_bswap32(sn->vm_state_size),
				.extra_data_size = __builtin_bswap32(sn->extra_size),
			};
			uint64_t p = pos;

			memcpy(buf + p, &d, sizeof(d));
			p += sizeof(d);
			memcpy(buf + p, sn->extra, sn->extra_size);
			p += sn->extra_size;
			memcpy(buf + p, sn->id, strlen(sn->id));
			p += strlen(sn->id);
			memcpy(buf + p, sn->name, strlen(sn->name));
			pos += qcow2_snap_entry_bytes(sn);
		}
		off = qcow2_alloc_contig(q, abytes >> q->cluster_bits);
		if (off < 0) {
			free(buf);
			return off;
		}
		n = qcow2_pwrite_checked(q, 0, buf, abytes, off);
		free(buf);
		if (n < 0)
			return n;
	}
	/* The new table's refcounts and bytes durable before the header names it. */
	ret = qcow2_flush_meta(q);
	if (ret)
		return ret;
	exec_mutex_lock(&q->hdr_mutex);
	q->nb_snapshots = nb;
	q->snapshots_offset = off;
	q->snap_table_bytes = bytes;
	ret = qcow2_write_header_fields(q);
	if (ret) {
		q->nb_snapshots = old_nb;
		q->snapshots_offset = old_off;
		q->snap_table_bytes = old_bytes;
	}
	exec_mutex_unlock(&q->hdr_mutex);
	if (ret)
		return ret;
	/* Now nothing on disk names the old table. */
	pthread_mutex_lock(&q->lock);
	for (i = 0; old_nb && i < DIV_ROUND_UP(old_bytes, q->cluster_size); i++)
		qcow2_ovl_del(q, old_off + ((uint64_t)i << q->cluster_bits), QCOW2_META_SNAP_TABLE);
	pthread_mutex_unlock(&q->lock);
	if (old_nb && old_bytes) {
		ret = qcow2_refs(q, old_off, old_bytes, -1);
		if (ret)
			return ret;
	}
	return 0;
}

/* The next free numeric id, as QEMU picks it: one above the highest. */
static char *qcow2_snap_new_id(struct qcow2 *q)
{
	unsigned long max = 0;
	char buf[32];
	uint32_t i;

	for (i = 0; i < q->nb_snapshots; i++) {
		unsigned long v = strtoul(q->snaps[i].id, NULL, 10);

		max = MAX(max, v);
	}
	snprintf(buf, sizeof(buf), "%lu", max + 1);
	return strdup(buf);
}

/*
 * Create (S2): the L1 copy written, the whole active tree's refcounts
 * raised and its COPIED flags cleared (flush: refcounts, L2, L1, synced),
 * then the new table switched in.  *@clean: a failure left the image as
 * it was (the refcounts refused and taken back).
 */
static int qcow2_snap_create(struct qcow2 *q, const char *name, bool *clean)
{
	struct qcow2_snapshot *snaps, *sn;
	struct qcow2_snapshot_extra ex;
	struct timespec ts;
	bool undone;
	int64_t l1off;
	int ret;

	if (strlen(name) > 0xffff) {
		img_err("%s: snapshot name too long", q->t->cfg.file);
		return -EINVAL;
	}
	snaps = calloc(q->nb_snapshots + 1, sizeof(*snaps));
	if (!snaps)
		return -ENOMEM;
	/* The first snapshot: q->snaps is NULL, and memcpy from NULL is undefined. */
	if (q->nb_snapshots)
		memcpy(snaps, q->snaps, q->nb_snapshots * sizeof(*snaps));
	sn = &snaps[q->nb_snapshots];
	sn->id = qcow2_snap_new_id(q);
	sn->name = strdup(name);
	sn->extra = malloc(sizeof(ex));
	if (!sn->id || !sn->name || !sn->extra) {
		ret = -ENOMEM;
		goto err;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	sn->date_sec = ts.tv_sec;
	sn->date_nsec = ts.tv_nsec;
	sn->extra_size = sizeof(ex);
	sn->disk_size = q->size_bytes;
	/* qemu-img records icount 0 (no VM ran); we do the same. */
	sn->icount = 0;
	put_be64(&ex.vm_state_size_large, 0);
	put_be64(&ex.disk_size, q->size_bytes);
	put_be64(&ex.icount, 0);
	memcpy(sn->extra, &ex, sizeof(ex));

	ret = qcow2_flush_meta(q);
	if (ret)
		goto err;
	l1off = qcow2_write_l1_copy(q, q->l1, q->l1_size, true);
	if (l1off < 0) {
		ret = l1off;
		goto err;
	}
	sn->l1_offset = l1off;
	sn->l1_size = q->l1_size;
	ret = qcow2_tree_ref_all(q, q->l1, q->l1_size, true, &undone);
	if (ret) {
		*clean = undone && !qcow2_refs(q, l1off, MAX(q->l1_size * 8, 8ULL), -1) &&
			 !qcow2_flush_meta(q);
		goto err;
	}
	ret = qcow2_flush_meta(q);
	if (!ret)
		ret = qcow2_write_snapshot_table(q, snaps, q->nb_snapshots + 1);
	if (ret)
		goto err;
	free(q->snaps);
	q->snaps = snaps;
	/* The new table and the snapshot's L1 copy are metadata now. */
	ret = qcow2_ovl_rebuild(q);
	if (ret)
		return ret;
	return qcow2_flush_meta(q);
err:
	free(sn->id);
	free(sn->name);
	free(sn->extra);
	free(snaps);
	return ret;
}

/*
 * Delete (S3): the table without the entry switched in first; then the
 * snapshot's tree and L1 copy lose their references, and the active
 * tree's COPIED flags are recomputed.
 */
static int qcow2_snap_delete(struct qcow2 *q, int idx)
{
	struct qcow2_snapshot gone = q->snaps[idx], *snaps;
	uint64_t *l1;
	int ret;

	ret = qcow2_flush_meta(q);
	if (ret)
		return ret;
	ret = qcow2_snap_read_l1(q, &gone, gone.l1_size, &l1);
	if (ret)
		return ret;
	snaps = calloc(MAX(q->nb_snapshots - 1, 1U), sizeof(*snaps));
	if (!snaps) {
		free(l1);
		return -ENOMEM;
	}
	memcpy(snaps, q->snaps, idx * sizeof(*snaps));
	memcpy(snaps + idx, q->snaps + idx + 1, (q->nb_snapshots - idx - 1) * sizeof(*snaps));
	ret = qcow2_write_snapshot_table(q, snaps, q->nb_snapshots - 1);
	if (ret) {
		free(snaps);
		free(l1);
		return ret;
	}
	free(q->snaps);
	q->snaps = snaps;
	/* Before its L1 copy is released: that cluster may be reused for anything. */
	ret = qcow2_ovl_rebuild(q);
	free(gone.id);
	free(gone.name);
	free(gone.extra);

	if (!ret)
		ret = qcow2_tree_refs(q, l1, gone.l1_size, -1, false);
	free(l1);
	if (!ret && gone.l1_size)
		ret = qcow2_refs(q, gone.l1_offset, gone.l1_size * 8ULL, -1);
	if (!ret)
		ret = qcow2_tree_refs(q, q->l1, q->l1_size, 0, true);
	if (!ret)
		ret = qcow2_flush_meta(q);
	return ret;
}

/*
 * Apply (S4): the snapshot's tree gains a reference, a new active L1
 * holding its entries is written and synced, the header switches to it
 * (and to the snapshot's guest size) with a synced write; only then does
 * the old active tree lose its references and its L1 its clusters.
 * *@clean as for create.
 */
static int qcow2_snap_apply(struct qcow2 *q, int idx, bool *clean)
{
	struct qcow2_snapshot *sn = &q->snaps[idx];
	uint64_t need, entries, *l1, *old_l1 = q->l1, old_off = q->l1_offset;
	uint64_t old_size = q->l1_size, old_bytes = q->size_bytes;
	uint8_t *dirty;
	bool undone;
	int64_t off;
	int ret;

	need = DIV_ROUND_UP(DIV_ROUND_UP(sn->disk_size, q->cluster_size), qcow2_l2_entries(q));
	entries = MAX(need, (uint64_t)sn->l1_size);
	if (entries * 8 > QCOW2_MAX_L1_BYTES || sn->disk_size > (1ULL << 62)) {
		img_err("%s: snapshot '%s' has an invalid size", q->t->cfg.file, sn->name);
		*clean = true;
		return -EINVAL;
	}
	ret = qcow2_flush_meta(q);
	if (ret)
		return ret;
	ret = qcow2_snap_read_l1(q, sn, entries, &l1);
	if (ret)
		return ret;
	dirty = calloc(ALIGN_UP(entries * 8, q->cluster_size) / q->dio_align, 1);
	if (!dirty) {
		free(l1);
		return -ENOMEM;
	}
	ret = qcow2_tree_ref_all(q, l1, entries, false, &undone);
	if (ret) {
		*clean = undone && !qcow2_flush_meta(q);
		goto err;
	}
	off = qcow2_write_l1_copy(q, l1, entries, true);
	if (off < 0) {
		ret = off;
		*clean = !qcow2_tree_refs(q, l1, entries, -1, false) && !qcow2_flush_meta(q);
		goto err;
	}
	ret = qcow2_flush_meta(q);
	if (ret)
		goto err;
	exec_mutex_lock(&q->hdr_mutex);
	q->l1_offset = off;
	q->l1_size = entries;
	q->size_bytes = sn->disk_size;
	ret = qcow2_write_header_fields(q);
	if (ret) {
		q->l1_offset = old_off;
		q->l1_size = old_size;
		q->size_bytes = old_bytes;
		exec_mutex_unlock(&q->hdr_mutex);
		goto err;
	}
	exec_mutex_unlock(&q->hdr_mutex);
	for (need = 0; need < entries; need++)
		l1[need] &= ~QCOW2_COPIED;
	pthread_mutex_lock(&q->lock);
	q->l1 = l1;
	free(q->l1_dirty);
	q->l1_dirty = dirty;
	pthread_mutex_unlock(&q->lock);
	q->t->caps.size_bytes = ALIGN_DOWN(q->size_bytes, 512ULL);

	/*
	 * The new tree's L2 tables are the active ones now, before the old
	 * ones may be released and reused.  Then the header no longer
	 * reaches the old tree.
	 */
	ret = qcow2_ovl_rebuild(q);
	if (!ret)
		ret = qcow2_tree_refs(q, old_l1, old_size, -1, false);
	free(old_l1);
	if (!ret && old_size)
		ret = qcow2_refs(q, old_off, old_size * 8, -1);
	if (!ret)
		ret = qcow2_tree_refs(q, q->l1, q->l1_size, 0, true);
	if (!ret)
		ret = qcow2_flush_meta(q);
	return ret;
err:
	free(l1);
	free(dirty);
	return ret;
}

int qcow2_snapshot(struct tgt *t, enum tgt_snapshot_op op, const char *name)
{
	struct qcow2 *q = t->priv;
	bool lazy = q->lazy, clean = false;
	int idx, ret;

	if (q->read_only) {
		img_err("%s: cannot change snapshots: %s", t->cfg.file,
			q->no_write_reason ?: "the image is open read-only");
		return -EROFS;
	}
	if (q->dfile != q->file) {
		img_err("%s: internal snapshots are not possible with an external data file",
			t->cfg.file);
		return -ENOTSUP;
	}
	idx = qcow2_snap_find(q, name, op == TGT_SNAPSHOT_APPLY);
	if (op != TGT_SNAPSHOT_CREATE && idx < 0)
		return -ENOENT;
	/*
	 * S1-S4 rely on refcounts reaching the disk before the header names
	 * what they count: no lazy refcounts while the snapshots change.
	 */
	if (lazy) {
		ret = qcow2_mark_clean(q);
		if (ret)
			return ret;
		q->lazy = false;
	}
	/* Every cluster of the tree gains a reference: 1-bit refcounts cannot. */
	if (op != TGT_SNAPSHOT_DELETE && q->refcount_max < 2) {
		img_err("%s: snapshots need refcount_bits of 2 or more", t->cfg.file);
		ret = -ERANGE;
		goto out;
	}
	/*
	 * S0: no order of the refcount and L2 writes is consistent at every
	 * moment (a cluster counted twice still COPIED, or counted once and
	 * not COPIED: qemu-img check calls both corrupt).  v3 images carry
	 * the dirty bit, synced, across the change, so that a crash inside
	 * it is repaired at the next open, like lazy refcounts; it is
	 * cleared once everything is durable.  A failed change leaves it
	 * set for the same repair.  v2 has no such bit (nor has QEMU's).
	 */
	if (q->version >= 3) {
		ret = qcow2_set_dirty_bit(q, true);
		if (ret)
			goto out;
	}
	if (op == TGT_SNAPSHOT_CREATE)
		ret = qcow2_snap_create(q, name, &clean);
	else if (op == TGT_SNAPSHOT_APPLY)
		ret = qcow2_snap_apply(q, idx, &clean);
	else
		ret = qcow2_snap_delete(q, idx);
	/* A change refused and taken back needs no repair either. */
	if ((!ret || clean) && q->version >= 3) {
		int dirty = qcow2_set_dirty_bit(q, false);

		ret = ret ?: dirty;
	}
out:
	q->lazy = lazy;
	return ret;
}
