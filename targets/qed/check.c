// SPDX-License-Identifier: GPL-2.0
/*
 * QED consistency check and repair, with qemu-img check's accounting.
 *
 * Every cluster of the file may be referenced once: by the L1 table (its
 * own clusters), an L1 entry (a whole L2 table) or an L2 entry (a data
 * cluster).  A second reference is a corruption that cannot be repaired
 * (which of the two owners is right is unknown).  An offset that is not
 * cluster aligned, points into the header or past the end of the file
 * (rounded down to a cluster; a table must fit whole) is a corruption
 * that TGT_FIX_ERRORS repairs by setting the entry to 0: the guest then
 * reads the backing file or zeros there, and whatever data the entry
 * meant is lost.  Clusters nobody references are leaks; QED has no free
 * space management, so they are counted and never reclaimed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qed.h"
#include "util.h"

struct qed_check_ctx {
	struct qed *q;
	struct tgt_check_result *r;
	bool fix;
	uint64_t file_size;		/* rounded down to a cluster */
	uint64_t nclusters;
	uint64_t *used;			/* bitmap of referenced clusters */
	uint64_t *table;		/* one L2 table, cpu order */
};

static bool qed_check_cluster_ok(const struct qed_check_ctx *c, uint64_t off)
{
	const struct qed *q = c->q;

	return IS_ALIGNED(off, (uint64_t)q->cluster_size) &&
	       off >= (uint64_t)q->header_size * q->cluster_size && off < c->file_size;
}

/* A table must lie whole in the file: its last cluster too, not only its first. */
static bool qed_check_table_ok(const struct qed_check_ctx *c, uint64_t off)
{
	return qed_check_cluster_ok(c, off) && c->file_size - off >= c->q->table_bytes;
}

/* Marks @n clusters from @off referenced.  Returns false if one already was. */
static bool qed_check_mark(struct qed_check_ctx *c, uint64_t off, uint64_t n)
{
	uint64_t i = off >> c->q->cluster_shift;
	bool dup = false;

	for (; n--; i++) {
		if (c->used[i / 64] & (1ULL << (i % 64))) {
			c->r->corruptions++;
			dup = true;
		}
		c->used[i / 64] |= 1ULL << (i % 64);
	}
	return !dup;
}

/* Checks one L2 table in c->table.  Returns the number of entries cleared. */
static uint32_t qed_check_l2(struct qed_check_ctx *c, uint32_t l1i, uint64_t l2_off)
{
	struct qed *q = c->q;
	uint64_t prev = 0;
	uint32_t i, cleared = 0;

	for (i = 0; i < q->table_nelems; i++) {
		uint64_t e = c->table[i];

		if (!qed_is_data(e))
			continue;
		c->r->allocated_clusters++;
		if (prev && e != prev + q->cluster_size)
			c->r->fragmented_clusters++;
		prev = e;
		if (!qed_check_cluster_ok(c, e)) {
			if (c->fix) {
				img_err("%s: repairing: L2 table at %llu entry %u pointed at invalid offset %llu; set to unallocated, the data of guest offset %llu is lost",
					q->t->cfg.file, (unsigned long long)l2_off, i,
					(unsigned long long)e,
					(unsigned long long)((((uint64_t)l1i << (q->l1_shift - q->cluster_shift)) + i)
							     << q->cluster_shift));
				c->table[i] = QED_UNALLOCATED;
				c->r->corruptions_fixed++;
				cleared++;
			} else {
				c->r->corruptions++;
			}
			continue;
		}
		qed_check_mark(c, e, 1);
	}
	return cleared;
}

/* Walks the tables.  Returns 0 if the whole image was scanned, else -errno. */
static int qed_check_tables(struct qed_check_ctx *c)
{
	struct qed *q = c->q;
	uint32_t i, l1_cleared = 0;
	int ret, last_err = 0;

	qed_check_mark(c, q->l1_table_offset, q->table_size);
	for (i = 0; i < q->table_nelems; i++) {
		uint64_t off = q->l1[i];

		if (!off)
			continue;
		if (!qed_check_table_ok(c, off)) {
			if (c->fix) {
				img_err("%s: repairing: L1 entry %u pointed at invalid offset %llu; set to unallocated, the data of guest offsets %llu..%llu is lost",
					q->t->cfg.file, i, (unsigned long long)off,
					(unsigned long long)((uint64_t)i << q->l1_shift),
					(unsigned long long)((((uint64_t)i + 1) << q->l1_shift) - 1));
				q->l1[i] = QED_UNALLOCATED;
				c->r->corruptions_fixed++;
				l1_cleared++;
			} else {
				c->r->corruptions++;
			}
			continue;
		}
		/* A table sharing clusters with something else: do not trust its entries. */
		if (!qed_check_mark(c, off, q->table_size))
			continue;
		ret = qed_table_read(q, off, c->table);
		if (ret) {
			c->r->check_errors++;
			last_err = ret;
			continue;
		}
		if (qed_check_l2(c, i, off) && c->fix) {
			ret = qed_table_write(q, off, c->table, 0, q->table_nelems);
			if (ret) {
				c->r->check_errors++;
				last_err = ret;
			}
		}
	}
	if (l1_cleared) {
		ret = qed_table_write(q, q->l1_table_offset, q->l1, 0, q->table_nelems);
		if (ret) {
			c->r->check_errors++;
			last_err = ret;
		}
	}
	return last_err;
}

/*
 * Runs the check on an image no request is using.  Tables are read from
 * the file, not the cache, and the cache is dropped afterwards since
 * repairs change tables behind it.  Returns 0 if the check ran (whatever
 * it found), -errno if it could not.
 */
static int qed_do_check(struct qed *q, bool fix, struct tgt_check_result *r)
{
	struct qed_check_ctx c = { .q = q, .r = r, .fix = fix };
	uint64_t i, file_bytes;
	int ret;

	if (fix && q->read_only)
		return -EROFS;
	ret = bfile_size(q->file, &file_bytes);
	if (ret)
		return ret;
	c.file_size = ALIGN_DOWN(file_bytes, (uint64_t)q->cluster_size);
	c.nclusters = c.file_size >> q->cluster_shift;
	c.used = calloc(DIV_ROUND_UP(c.nclusters, 64) + 1, sizeof(uint64_t));
	if (posix_memalign((void **)&c.table, QED_META_BLOCK, q->table_bytes))
		c.table = NULL;
	if (!c.used || !c.table) {
		ret = -ENOMEM;
		goto out;
	}
	r->total_clusters = DIV_ROUND_UP(q->image_size, q->cluster_size);
	r->image_end_offset = c.file_size;

	ret = qed_check_tables(&c);
	if (ret) {
		/* Leaks are only meaningful after a complete scan. */
		r->check_errors = MAX(r->check_errors, 1);
		ret = 0;
		goto out;
	}
	for (i = q->header_size; i < c.nclusters; i++)
		if (!(c.used[i / 64] & (1ULL << (i % 64))))
			r->leaks++;

	/* A clean result (repairs included) may clear need-check, after a flush. */
	if (fix && !r->corruptions && !r->check_errors && (q->features & QED_F_NEED_CHECK)) {
		ret = bfile_flush(q->file);
		if (!ret) {
			q->features &= ~QED_F_NEED_CHECK;
			ret = qed_header_write_features(q, true);
			if (ret)
				q->features |= QED_F_NEED_CHECK;
		}
		if (ret) {
			r->check_errors++;
			ret = 0;
		} else {
			q->nc_state = QED_NC_CLEAR;
			q->nc_ours = false;
		}
	}
out:
	qed_l2_cache_drop(q);
	free(c.table);
	free(c.used);
	return ret;
}

int qed_check(struct tgt *t, unsigned int fix, struct tgt_check_result *r)
{
	/* Leaks are never repaired, so only TGT_FIX_ERRORS changes anything but need-check. */
	return qed_do_check(t->priv, fix != 0, r);
}

int qed_check_on_open(struct qed *q)
{
	struct tgt_check_result r = { 0 };
	int ret;

	ret = qed_do_check(q, true, &r);
	if (ret) {
		img_err("%s: need-check is set and the check failed: %s", q->t->cfg.file,
			strerror(-ret));
		return ret;
	}
	if (r.corruptions || r.check_errors) {
		img_err("%s: need-check is set and the image has %llu corruptions that cannot be repaired (%llu check errors); it can only be opened read-only",
			q->t->cfg.file, (unsigned long long)r.corruptions,
			(unsigned long long)r.check_errors);
		return -EUCLEAN;
	}
	if (r.corruptions_fixed)
		img_err("%s: repaired %llu corruptions found by the need-check check",
			q->t->cfg.file, (unsigned long long)r.corruptions_fixed);
	return 0;
}
