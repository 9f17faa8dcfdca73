// SPDX-License-Identifier: GPL-2.0
/*
 * Consistency check and repair with qemu-img check's accounting.
 *
 * Every structure that occupies the file is counted into an in-memory
 * refcount array (header, L1/L2 tables and data of the active layer and of
 * each snapshot, the snapshot table, refcount table and blocks, bitmap
 * directory, tables and data).  The array is then compared with the
 * on-disk refcounts: too high is a leak, too low a corruption.  Finally
 * the COPIED flags are compared with the (repaired) refcounts.  Repair
 * patches refcount blocks in place, or rebuilds the whole refcount
 * structure at the end of the file when the old one cannot be trusted.
 *
 * Runs right after open (no I/O in flight, caches empty) with direct reads.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qcow2.h"
#include "util.h"

struct qcow2_chk {
	struct qcow2 *q;
	struct tgt_check_result *r;
	unsigned int fix;
	uint64_t *ref;			/* computed refcounts */
	uint64_t nb;			/* entries in ref */
	uint64_t file_clusters;
	uint64_t file_bytes;		/* the file's size when the check began */
	bool rebuild;
	/* One refcount block, read for comparison and patched in place. */
	void *rb;
	uint64_t rb_off;
	void *tbuf;			/* one table cluster */
	uint64_t next_contig;		/* fragmentation accounting, per L2 table */
};

static int chk_inc(struct qcow2_chk *c, uint64_t off, uint64_t len)
{
	struct qcow2 *q = c->q;
	uint64_t first, last, i;

	if (!len)
		return 0;
	first = off >> q->cluster_bits;
	last = (off + len - 1) >> q->cluster_bits;
	if (last >= QCOW2_MAX_HOST_OFFSET >> q->cluster_bits) {
		fprintf(stderr, "ERROR: offset 0x%" PRIx64 " beyond the qcow2 limit\n", off);
		c->r->corruptions++;
		return 0;
	}
	/*
	 * Like QEMU: a reference reaching a cluster or more past the end of
	 * the file is a corruption and is not counted.  Counting it would make
	 * a repair build refcount blocks out to wherever a hostile entry
	 * points (a 1 TiB offset: 2^28 refcounts written, for minutes).
	 */
	if (off + len > c->file_bytes && off + len - c->file_bytes >= q->cluster_size) {
		fprintf(stderr, "ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64 "\n",
			off, len);
		c->r->corruptions++;
		return 0;
	}
	if (last >= c->nb) {
		uint64_t nb = MAX(last + 1, c->nb * 2);
		uint64_t *ref = realloc(c->ref, nb * sizeof(*ref));

		if (!ref)
			return -ENOMEM;
		memset(ref + c->nb, 0, (nb - c->nb) * sizeof(*ref));
		c->ref = ref;
		c->nb = nb;
	}
	for (i = first; i <= last; i++) {
		if (c->ref[i] == q->refcount_max) {
			fprintf(stderr, "ERROR: overflow cluster offset=0x%" PRIx64 "\n",
				i << q->cluster_bits);
			c->r->corruptions++;
			continue;
		}
		c->ref[i]++;
	}
	return 0;
}

static int chk_read(struct qcow2_chk *c, void *buf, uint64_t len, uint64_t off)
{
	return qcow2_read_at(c->q->file, buf, len, off);
}

static int chk_write(struct qcow2_chk *c, const void *buf, uint64_t len, uint64_t off)
{
	ssize_t n = bfile_pwrite(c->q->file, buf, len, off, 0);

	return n < 0 ? (int)n : 0;
}

/*
 * An extended entry's subcluster bitmap, as qemu-img check judges it:
 * a compressed cluster has none, an allocated one never has a subcluster
 * both allocated and zero, an unallocated one no allocated subcluster.
 * Each is a corruption (not repaired).
 */
static void chk_sc_bitmap(struct qcow2_chk *c, uint64_t e, uint64_t bm, uint64_t i)
{
	struct qcow2 *q = c->q;

	switch (qcow2_l2_kind(q, e)) {
	case QCOW2_COMPRESSED:
		if (bm) {
			fprintf(stderr, "ERROR compressed cluster %" PRIu64 " has a subcluster bitmap, entry=0x%" PRIx64 "\n",
				i, e);
			c->r->corruptions++;
		}
		break;
	default:
		if (!qcow2_sc_bitmap_valid(q, e, bm)) {
			fprintf(stderr, "ERROR offset=%" PRIx64 ": %s cluster has an invalid subcluster bitmap 0x%016" PRIx64 "\n",
				(uint64_t)(e & QCOW2_L2_OFFSET_MASK),
				qcow2_l2_kind(q, e) == QCOW2_NORMAL ? "Allocated" : "Unallocated", bm);
			c->r->corruptions++;
		}
		break;
	}
}

/* Counts one L2 table's clusters; fixes what FIX_ERRORS allows. */
static int chk_l2(struct qcow2_chk *c, uint64_t l2_off, bool active)
{
	struct qcow2 *q = c->q;
	uint64_t *l2 = c->tbuf, i, n = qcow2_l2_entries(q);
	bool changed = false;
	int ret;

	/* Like qemu-img, contiguity is judged within one L2 table. */
	c->next_contig = 0;
	ret = chk_read(c, l2, q->cluster_size, l2_off);
	if (ret) {
		fprintf(stderr, "ERROR: cannot read L2 table at 0x%" PRIx64 "\n", l2_off);
		c->r->check_errors++;
		return 0;
	}
	for (i = 0; i < n; i++) {
		uint64_t e = __builtin_bswap64(l2[i << q->extl2]), off, len;
		uint64_t bm = q->extl2 ? __builtin_bswap64(l2[(i << 1) + 1]) : 0;

		if (q->extl2)
			chk_sc_bitmap(c, e, bm, i);
		switch (qcow2_l2_kind(q, e)) {
		case QCOW2_COMPRESSED:
			if (e & QCOW2_COPIED) {
				fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for compressed clusters\n",
					e & q->coffset_mask);
				c->r->corruptions++;
			}
			qcow2_compressed_range(q, e, &off, &len);
			ret = chk_inc(c, off, len);
			if (ret)
				return ret;
			if (active) {
				c->r->allocated_clusters++;
				c->r->compressed_clusters++;
				/* Compressed clusters are fragmented by nature. */
				c->r->fragmented_clusters++;
			}
			break;
		case QCOW2_NORMAL:
		case QCOW2_ZERO_ALLOC:
			off = e & QCOW2_L2_OFFSET_MASK;
			if (qcow2_off_in_cluster(q, off)) {
				bool prealloc = qcow2_l2_kind(q, e) == QCOW2_ZERO_ALLOC;

				c->r->corruptions++;
				fprintf(stderr, "%s offset=%" PRIx64 ": %s cluster is not properly aligned; L2 entry corrupted.\n",
					prealloc && (c->fix & TGT_FIX_ERRORS) ? "Repairing" : "ERROR",
					off, prealloc ? "Preallocated" : "Data");
				if (prealloc && (c->fix & TGT_FIX_ERRORS)) {
					/* Never with extended L2: no ZERO_ALLOC kind there. */
					l2[i] = __builtin_bswap64(QCOW2_L2_ZERO);
					changed = true;
					c->r->corruptions--;
					c->r->corruptions_fixed++;
					continue;
				}
			}
			if (active) {
				c->r->allocated_clusters++;
				if (c->next_contig && off != c->next_contig)
					c->r->fragmented_clusters++;
				c->next_contig = off + q->cluster_size;
			}
			/* In an external data file: not counted in this file (QEMU's rule). */
			if (q->data_file)
				break;
			ret = chk_inc(c, off, q->cluster_size);
			if (ret)
				return ret;
			break;
		default:
			break;
		}
	}
	if (changed) {
		ret = chk_write(c, l2, q->cluster_size, l2_off);
		if (ret)
			return ret;
	}
	return 0;
}

/* Counts an L1 table and everything it points to. */
static int chk_l1(struct qcow2_chk *c, uint64_t l1_off, uint32_t l1_size, bool active)
{
	struct qcow2 *q = c->q;
	uint64_t bytes = ALIGN_UP(MAX((uint64_t)l1_size * 8, 1), q->cluster_size), i;
	uint64_t *l1;
	int ret;

	if (!l1_size)
		return 0;
	/*
	 * Only a snapshot's table can be this large here (open refuses such
	 * an active one): a corruption, as in QEMU, not a 32 GiB allocation.
	 */
	if ((uint64_t)l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		fprintf(stderr, "ERROR l1_size=%#" PRIx32 ": L1 table is too large; snapshot table entry corrupted\n",
			l1_size);
		c->r->corruptions++;
		return 0;
	}
	ret = chk_inc(c, l1_off, (uint64_t)l1_size * 8);
	if (ret)
		return ret;
	if (posix_memalign((void **)&l1, 4096, bytes))
		return -ENOMEM;
	ret = chk_read(c, l1, bytes, l1_off);
	if (ret) {
		fprintf(stderr, "ERROR: cannot read L1 table at 0x%" PRIx64 "\n", l1_off);
		c->r->check_errors++;
		free(l1);
		return 0;
	}
	for (i = 0; i < l1_size; i++) {
		uint64_t l2_off = __builtin_bswap64(l1[i]) & QCOW2_L1_OFFSET_MASK;

		if (!l2_off)
			continue;
		ret = chk_inc(c, l2_off, q->cluster_size);
		if (ret)
			break;
		if (qcow2_off_in_cluster(q, l2_off)) {
			fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry corrupted\n",
				l2_off);
			c->r->corruptions++;
			continue;
		}
		ret = chk_l2(c, l2_off, active);
		if (ret)
			break;
	}
	free(l1);
	return ret;
}

/*
 * Makes *@tab, the in-memory copy of the snapshot table (*@cap bytes),
 * hold at least its first @need bytes.  It doubles, so a long table
 * costs linear time, and refuses (-EFBIG) a table running past the end
 * of the file or over QCOW2_MAX_SNAPSHOT_TABLE_BYTES, as open does:
 * entries with hostile extra_data_size values once grew it cluster by
 * cluster out to gigabytes of zeros.  Returns 0 or -errno.
 */
static int chk_snap_grow(struct qcow2_chk *c, uint8_t **tab, uint64_t *cap, uint64_t need)
{
	struct qcow2 *q = c->q;
	uint64_t ncap;
	uint8_t *t;
	int ret;

	if (need <= *cap)
		return 0;
	if (need > QCOW2_MAX_SNAPSHOT_TABLE_BYTES || need > c->file_bytes ||
	    q->snapshots_offset > c->file_bytes - need)
		return -EFBIG;
	ncap = ALIGN_UP(MAX(need, *cap * 2), q->cluster_size);
	ncap = MIN(ncap, ALIGN_UP(c->file_bytes - q->snapshots_offset, q->cluster_size));
	if (posix_memalign((void **)&t, 4096, ncap))
		return -ENOMEM;
	if (*tab)
		memcpy(t, *tab, *cap);
	free(*tab);
	*tab = t;
	ret = chk_read(c, t + *cap, ncap - *cap, q->snapshots_offset + *cap);
	*cap = ncap;
	return ret;
}

/* Counts the snapshot table and each snapshot's tables. */
static int chk_snapshots(struct qcow2_chk *c)
{
	struct qcow2 *q = c->q;
	uint64_t pos = 0, cap = 0, i;
	uint8_t *tab = NULL;
	int ret = 0;

	for (i = 0; i < q->nb_snapshots; i++) {
		struct qcow2_snapshot_disk sn;
		uint64_t need;

		ret = chk_snap_grow(c, &tab, &cap, pos + sizeof(sn));
		if (ret)
			goto err;
		memcpy(&sn, tab + pos, sizeof(sn));
		need = pos + sizeof(sn) + __builtin_bswap32(sn.extra_data_size) +
		       __builtin_bswap16(sn.id_str_size) + __builtin_bswap16(sn.name_size);
		need = ALIGN_UP(need, 8);
		pos = need;
		ret = chk_l1(c, __builtin_bswap64(sn.l1_table_offset),
			     __builtin_bswap32(sn.l1_size), false);
		if (ret)
			goto err;
		/* Make sure the next header and this entry's tail are read. */
		if (i + 1 < q->nb_snapshots) {
			ret = chk_snap_grow(c, &tab, &cap, pos + sizeof(sn));
			if (ret)
				goto err;
		}
	}
	free(tab);
	return chk_inc(c, q->snapshots_offset, pos);
err:
	free(tab);
	fprintf(stderr, "ERROR: cannot read the snapshot table\n");
	c->r->check_errors++;
	return ret == -ENOMEM ? ret : 0;
}

/* Counts the bitmap directory, bitmap tables and their data clusters. */
static int chk_bitmaps(struct qcow2_chk *c)
{
	struct qcow2 *q = c->q;
	uint64_t dsize = ALIGN_UP(MAX(q->bitmap_dir_size, 1), q->cluster_size), pos = 0, i;
	uint8_t *dir;
	int ret;

	if (!q->nb_bitmaps || !(q->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	ret = chk_inc(c, q->bitmap_dir_offset, q->bitmap_dir_size);
	if (ret)
		return ret;
	if (q->bitmap_dir_size > (64U << 20) || posix_memalign((void **)&dir, 4096, dsize))
		return -ENOMEM;
	ret = chk_read(c, dir, dsize, q->bitmap_dir_offset);
	for (i = 0; !ret && i < q->nb_bitmaps &&
		    pos + sizeof(struct qcow2_bitmap_dir_entry) <= q->bitmap_dir_size; i++) {
		struct qcow2_bitmap_dir_entry be;
		uint64_t toff, tbytes, j;
		uint64_t *bt;

		memcpy(&be, dir + pos, sizeof(be));
		toff = __builtin_bswap64(be.bitmap_table_offset);
		tbytes = (uint64_t)__builtin_bswap32(be.bitmap_table_size) * 8;
		pos = ALIGN_UP(pos + sizeof(be) + __builtin_bswap32(be.extra_data_size) +
			       __builtin_bswap16(be.name_size), 8);
		ret = chk_inc(c, toff, tbytes);
		if (ret || !tbytes)
			continue;
		if (posix_memalign((void **)&bt, 4096, ALIGN_UP(tbytes, q->cluster_size))) {
			ret = -ENOMEM;
			break;
		}
		ret = chk_read(c, bt, ALIGN_UP(tbytes, q->cluster_size), toff);
		for (j = 0; !ret && j < tbytes / 8; j++) {
			uint64_t off = __builtin_bswap64(bt[j]) & QCOW2_BME_OFFSET_MASK;

			if (off)
				ret = chk_inc(c, off, q->cluster_size);
		}
		free(bt);
	}
	free(dir);
	return ret;
}

/* Counts the refcount table and blocks; flags a rebuild when they are unusable. */
static int chk_refblocks(struct qcow2_chk *c)
{
	struct qcow2 *q = c->q;
	uint64_t i;
	int ret;

	ret = chk_inc(c, q->rt_offset, (uint64_t)q->rt_clusters * q->cluster_size);
	if (ret)
		return ret;
	for (i = 0; i < q->rt_size; i++) {
		uint64_t off = q->rt[i] & ~511ULL, cl = off >> q->cluster_bits;

		if (q->rt[i] & 511) {
			fprintf(stderr, "ERROR refcount table entry %" PRIu64 " has reserved bits set\n", i);
			c->r->corruptions++;
			c->rebuild = true;
			continue;
		}
		if (!off)
			continue;
		if (qcow2_off_in_cluster(q, off)) {
			fprintf(stderr, "ERROR refcount block %" PRIu64 " is not cluster aligned; refcount table entry corrupted\n", i);
			c->r->corruptions++;
			c->rebuild = true;
			continue;
		}
		if (cl >= c->file_clusters) {
			fprintf(stderr, "ERROR refcount block %" PRIu64 " is outside image\n", i);
			c->r->corruptions++;
			c->rebuild = true;
			continue;
		}
		ret = chk_inc(c, off, q->cluster_size);
		if (ret)
			return ret;
		if (c->ref[cl] != 1) {
			fprintf(stderr, "ERROR refcount block %" PRIu64 " refcount=%" PRIu64 "\n", i,
				c->ref[cl]);
			c->r->corruptions++;
			c->rebuild = true;
		}
	}
	return 0;
}

/*
 * The on-disk refcount of @cl through the one-block buffer; *has_block
 * false when no usable block covers it.  Returns 0 or -errno.
 */
static int chk_disk_refcount(struct qcow2_chk *c, uint64_t cl, uint64_t *v, bool *has_block)
{
	struct qcow2 *q = c->q;
	uint64_t idx = cl >> q->rb_bits, off;
	int ret;

	*v = 0;
	*has_block = false;
	if (idx >= q->rt_size)
		return 0;
	off = q->rt[idx];
	if (!off || (off & (q->cluster_size - 1)) || (off >> q->cluster_bits) >= c->file_clusters)
		return 0;
	if (c->rb_off != off) {
		c->rb_off = 0;
		ret = chk_read(c, c->rb, q->cluster_size, off);
		if (ret)
			return ret;
		c->rb_off = off;
	}
	*has_block = true;
	*v = qcow2_rb_get(q, c->rb, cl & ((1ULL << q->rb_bits) - 1));
	return 0;
}

/* Compares computed and on-disk refcounts; patches what @fix allows. */
static int chk_compare(struct qcow2_chk *c, uint64_t *highest)
{
	struct qcow2 *q = c->q;
	uint64_t n = MAX(c->nb, c->file_clusters), i;
	int ret;

	*highest = 0;
	for (i = 0; i < n; i++) {
		uint64_t disk, want = i < c->nb ? c->ref[i] : 0;
		uint64_t *fixed = NULL;
		bool has_block;

		ret = chk_disk_refcount(c, i, &disk, &has_block);
		if (ret) {
			fprintf(stderr, "Can't get refcount for cluster %" PRIu64 ": %s\n", i,
				strerror(-ret));
			c->r->check_errors++;
			continue;
		}
		if (disk || want)
			*highest = i;
		if (disk == want)
			continue;
		if (disk > want && (c->fix & TGT_FIX_LEAKS))
			fixed = &c->r->leaks_fixed;
		else if (disk < want && (c->fix & TGT_FIX_ERRORS))
			fixed = &c->r->corruptions_fixed;
		fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64 "\n",
			fixed ? "Repairing" : disk < want ? "ERROR" : "Leaked", i, disk, want);
		if (fixed && has_block) {
			qcow2_rb_set(q, c->rb, i & ((1ULL << q->rb_bits) - 1), want);
			ret = chk_write(c, c->rb, q->cluster_size, c->rb_off);
			if (!ret) {
				(*fixed)++;
				continue;
			}
		} else if (fixed) {
			/* No block to patch: only a new refcount structure can hold it. */
			c->rebuild = true;
			(*fixed)++;
			continue;
		}
		if (disk < want)
			c->r->corruptions++;
		else
			c->r->leaks++;
	}
	return 0;
}

/*
 * Writes a new refcount structure from the computed array at the end of
 * the file and switches the header to it (R2's order: structures, sync,
 * header, sync).  The old table and blocks are not counted: they become
 * free space.  Returns 0 or -errno.
 */
static int chk_rebuild(struct qcow2_chk *c)
{
	struct qcow2 *q = c->q;
	uint64_t per_rb = 1ULL << q->rb_bits, per_rt = q->cluster_size / 8;
	uint64_t start, nb = 0, nt = 1, used, i, j, k;
	uint64_t *rt = NULL;
	uint8_t *blocks = NULL;
	int ret;

	/* The old structure's clusters are no longer referenced. */
	for (i = q->rt_offset >> q->cluster_bits;
	     i < (q->rt_offset >> q->cluster_bits) + q->rt_clusters && i < c->nb; i++)
		if (c->ref[i])
			c->ref[i]--;
	for (i = 0; i < q->rt_size; i++) {
		uint64_t cl = q->rt[i] >> q->cluster_bits;

		if (q->rt[i] && !(q->rt[i] & (q->cluster_size - 1)) && cl < c->nb && c->ref[cl])
			c->ref[cl]--;
	}
	for (used = c->nb; used && !c->ref[used - 1]; used--)
		;
	start = MAX(used, c->file_clusters);
	/* Blocks for every range up to the end of the new area, then the table. */
	for (;;) {
		uint64_t end = start + nb + nt, ranges = DIV_ROUND_UP(end, per_rb);
		uint64_t t = DIV_ROUND_UP(ranges, per_rt);

		if (ranges == nb && t == nt)
			break;
		nb = ranges;
		nt = t;
	}
	if (nt * q->cluster_size > QCOW2_MAX_RT_BYTES)
		return -EFBIG;
	if (posix_memalign((void **)&rt, 4096, nt * q->cluster_size) ||
	    posix_memalign((void **)&blocks, 4096, q->cluster_size)) {
		ret = -ENOMEM;
		goto out;
	}
	memset(rt, 0, nt * q->cluster_size);
	for (k = 0; k < nb; k++) {
		memset(blocks, 0, q->cluster_size);
		for (j = 0; j < per_rb; j++) {
			uint64_t cl = k * per_rb + j, v = cl < c->nb ? c->ref[cl] : 0;

			if (cl >= start && cl < start + nb + nt)
				v = 1;
			if (v)
				qcow2_rb_set(q, blocks, j, MIN(v, q->refcount_max));
		}
		ret = chk_write(c, blocks, q->cluster_size, (start + k) << q->cluster_bits);
		if (ret)
			goto out;
		rt[k] = __builtin_bswap64((start + k) << q->cluster_bits);
	}
	ret = chk_write(c, rt, nt * q->cluster_size, (start + nb) << q->cluster_bits);
	if (!ret)
		ret = bfile_flush(q->file);
	if (ret)
		goto out;
	q->rt_offset = (start + nb) << q->cluster_bits;
	q->rt_clusters = nt;
	ret = qcow2_write_header_fields(q);
	if (!ret)
		ret = qcow2_load_refcount_table(q);
	/* The new structure lies past the old end of the file. */
	c->file_clusters = start + nb + nt;
	c->rb_off = 0;
	fprintf(stderr, "Rebuilt the refcount structure\n");
out:
	free(rt);
	free(blocks);
	return ret;
}

/* COPIED flags must say refcount == 1 (against the repaired refcounts). */
static int chk_copied(struct qcow2_chk *c)
{
	struct qcow2 *q = c->q;
	uint64_t i, j, rc;
	bool has, l1_changed = false;
	int ret;

	for (i = 0; i < q->l1_size; i++) {
		uint64_t l1e = q->l1[i], l2_off = l1e & QCOW2_L1_OFFSET_MASK;
		uint64_t *l2 = c->tbuf;
		bool changed = false;

		if (!l2_off || qcow2_off_in_cluster(q, l2_off))
			continue;
		ret = chk_disk_refcount(c, l2_off >> q->cluster_bits, &rc, &has);
		if (ret)
			return ret;
		if ((rc == 1) != !!(l1e & QCOW2_COPIED)) {
			fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64 " l1_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
				(c->fix & TGT_FIX_ERRORS) ? "Repairing" : "ERROR", i, l1e, rc);
			if (c->fix & TGT_FIX_ERRORS) {
				q->l1[i] = rc == 1 ? l1e | QCOW2_COPIED : l1e & ~QCOW2_COPIED;
				q->l1_dirty[i * 8 / q->dio_align] = 1;
				l1_changed = true;
				c->r->corruptions_fixed++;
			} else {
				c->r->corruptions++;
			}
		}
		ret = chk_read(c, l2, q->cluster_size, l2_off);
		if (ret)
			return ret;
		for (j = 0; j < qcow2_l2_entries(q); j++) {
			uint64_t e = __builtin_bswap64(l2[j << q->extl2]), off = e & QCOW2_L2_OFFSET_MASK;
			enum qcow2_kind k = qcow2_l2_kind(q, e);

			/* Data file clusters are not counted here: COPIED always. */
			if ((k != QCOW2_NORMAL && k != QCOW2_ZERO_ALLOC) ||
			    qcow2_off_in_cluster(q, off) || q->data_file)
				continue;
			ret = chk_disk_refcount(c, off >> q->cluster_bits, &rc, &has);
			if (ret)
				return ret;
			if ((rc == 1) == !!(e & QCOW2_COPIED))
				continue;
			fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
				(c->fix & TGT_FIX_ERRORS) ? "Repairing" : "ERROR", e, rc);
			if (c->fix & TGT_FIX_ERRORS) {
				e = rc == 1 ? e | QCOW2_COPIED : e & ~QCOW2_COPIED;
				l2[j << q->extl2] = __builtin_bswap64(e);
				changed = true;
				c->r->corruptions_fixed++;
			} else {
				c->r->corruptions++;
			}
		}
		if (changed) {
			ret = chk_write(c, l2, q->cluster_size, l2_off);
			if (ret)
				return ret;
		}
	}
	if (l1_changed) {
		ret = qcow2_write_table_sectors(q, QCOW2_META_L1, q->l1_offset, q->l1,
						q->l1_dirty,
						ALIGN_UP((uint64_t)q->l1_size * 8, q->cluster_size) /
						q->dio_align);
		if (ret)
			return ret;
	}
	return 0;
}

int qcow2_check(struct tgt *t, unsigned int fix, struct tgt_check_result *r)
{
	struct qcow2 *q = t->priv;
	struct qcow2_chk c = { .q = q, .r = r, .fix = fix };
	uint64_t highest;
	uint64_t file_bytes;
	int ret;

	if (fix && q->file && (t->cfg.open_flags & TGT_O_RDONLY))
		return -EROFS;
	ret = bfile_size(q->file, &file_bytes);
	if (ret)
		return ret;
	/* Writes by this open (none for check) must be on disk before we read. */
	ret = qcow2_flush_meta(q);
	if (ret && ret != -EBADF)
		return ret;
	c.file_clusters = DIV_ROUND_UP(file_bytes, q->cluster_size);
	c.file_bytes = file_bytes;
	if (posix_memalign(&c.rb, 4096, q->cluster_size) ||
	    posix_memalign(&c.tbuf, 4096, q->cluster_size)) {
		ret = -ENOMEM;
		goto out;
	}
	r->total_clusters = DIV_ROUND_UP(q->size_bytes, q->cluster_size);

	ret = chk_inc(&c, 0, q->cluster_size);
	/* The LUKS header's clusters (encryption extension), as QEMU counts them. */
	if (!ret && q->crypt_ext && q->crypt_method && q->crypt_hdr_len)
		ret = chk_inc(&c, q->crypt_hdr_off, q->crypt_hdr_len);
	if (!ret)
		ret = chk_l1(&c, q->l1_offset, q->l1_size, true);
	if (!ret)
		ret = chk_snapshots(&c);
	if (!ret)
		ret = chk_bitmaps(&c);
	if (!ret)
		ret = chk_refblocks(&c);
	if (!ret && c.rebuild && (fix & TGT_FIX_ERRORS)) {
		/* The refcount structure itself is broken: replace it outright. */
		ret = chk_rebuild(&c);
		if (!ret) {
			r->corruptions_fixed += r->corruptions;
			r->corruptions = 0;
		}
		c.rb_off = 0;
	} else if (!ret) {
		ret = chk_compare(&c, &highest);
		if (!ret && c.rebuild && fix) {
			ret = chk_rebuild(&c);
			c.rb_off = 0;
		}
		if (!ret)
			r->image_end_offset = (highest + 1) << q->cluster_bits;
	}
	if (!ret)
		ret = chk_copied(&c);
	if (!ret && fix && !r->corruptions && !r->check_errors &&
	    (q->incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))) {
		q->incompat &= ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
		ret = qcow2_write_header_fields(q);
	}
	if (!ret && fix)
		ret = bfile_flush(q->file);
	/* A repair may have moved or dropped tables. */
	if (!ret && fix)
		ret = qcow2_ovl_rebuild(q);
	/* The allocator starts over from what is now on disk. */
	q->free_hint = 0;
	if (bfile_size(q->file, &file_bytes) == 0)
		q->end_cluster = MAX(q->end_cluster, DIV_ROUND_UP(file_bytes, q->cluster_size));
out:
	free(c.ref);
	free(c.rb);
	free(c.tbuf);
	return ret;
}
