// SPDX-License-Identifier: GPL-2.0
/*
 * Persistent dirty bitmaps (spec "Bitmaps extension"): the directory and
 * tables read at open, the bits kept in memory and marked by every
 * write, discard and write zeroes of this image, and stored back in
 * crash-safe order (README.md, "Dirty bitmaps", steps D1-D4).
 *
 * Tracking lives in the engine, below every writer (a served device, io,
 * commit, convert, resize): the marking and the in_use flag on disk are
 * ordered under one lock, which a hook above the engine could not do
 * across a store.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qcow2.h"
#include "util.h"

/* The bits are u64 words whose memory layout is the spec's byte order. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bitmap words are stored as they lie in memory: little-endian hosts only"
#endif

static uint64_t bm_nr_bits(const struct qcow2 *q, unsigned int gran_bits)
{
	return DIV_ROUND_UP(q->size_bytes, 1ULL << gran_bits);
}

/* Bitmap table entries a bitmap of @gran_bits needs for the image's size. */
static uint64_t bm_table_size(const struct qcow2 *q, unsigned int gran_bits)
{
	return DIV_ROUND_UP(DIV_ROUND_UP(bm_nr_bits(q, gran_bits), 8), q->cluster_size);
}

/* Bytes of the in-memory bits: whole clusters, so a table entry maps one. */
static uint64_t bm_mem_bytes(const struct qcow2 *q, uint64_t nr_bits)
{
	return ALIGN_UP(MAX(DIV_ROUND_UP(nr_bits, 8), 1), q->cluster_size);
}

static uint64_t bm_entry_bytes(const struct qcow2_bitmap *b)
{
	return ALIGN_UP(sizeof(struct qcow2_bitmap_dir_entry) + b->extra_size +
			strlen(b->name), 8);
}

static void bm_free_one(struct qcow2_bitmap *b)
{
	free(b->name);
	free(b->extra);
	free(b->bits);
	free(b->frozen);
}

void qcow2_bitmaps_free(struct qcow2 *q)
{
	unsigned int i;

	for (i = 0; i < q->nr_bms; i++)
		bm_free_one(&q->bms[i]);
	free(q->bms);
	free(q->bm_info);
	q->bms = NULL;
	q->bm_info = NULL;
	q->nr_bms = 0;
}

static struct qcow2_bitmap *bm_find(struct qcow2 *q, const char *name)
{
	unsigned int i;

	for (i = 0; i < q->nr_bms; i++)
		if (!strcmp(q->bms[i].name, name))
			return &q->bms[i];
	return NULL;
}

/* Recomputes bm_active under bm_lock: is any bitmap marked by writes? */
static void bm_update_active(struct qcow2 *q)
{
	bool active = false;
	unsigned int i;

	for (i = 0; i < q->nr_bms; i++)
		active |= q->bms[i].enabled && !q->bms[i].inconsistent;
	__atomic_store_n(&q->bm_active, active, __ATOMIC_RELEASE);
}

/*
 * Checks one directory entry as QEMU does before it uses the bitmap
 * (qcow2-bitmap.c, check_dir_entry): the verdicts are the same.  Returns
 * NULL if it is usable, else why not.
 */
static const char *bm_entry_bad(const struct qcow2 *q, const struct qcow2_bitmap *b)
{
	if (b->type != QCOW2_BM_TYPE_DIRTY)
		return "unknown bitmap type";
	if (b->gran_bits < QCOW2_BM_MIN_GRAN_BITS || b->gran_bits > QCOW2_BM_MAX_GRAN_BITS)
		return "granularity out of range";
	if (b->flags & ~QCOW2_BM_KNOWN)
		return "reserved flags set";
	if (b->extra_size && !(b->flags & QCOW2_BM_EXTRA_COMPAT))
		return "incompatible extra data";
	if (b->flags & QCOW2_BM_IN_USE)
		return NULL;	/* inconsistent: its table is never read */
	if (b->table_size > QCOW2_BM_MAX_TABLE_SIZE ||
	    b->table_size != bm_table_size(q, b->gran_bits))
		return "bitmap table size does not match the image size";
	if (bm_mem_bytes(q, bm_nr_bits(q, b->gran_bits)) > QCOW2_BM_MAX_BYTES)
		return "bitmap too large";
	/*
	 * Where the table lies is not checked here, as QEMU does not: a
	 * table past the end of the file reads as zeros, one over other
	 * metadata is for check to report (refcounts).
	 */
	if (qcow2_off_in_cluster(q, b->table_off) || !b->table_off)
		return "bitmap table offset invalid";
	return NULL;
}

/* Parses the directory @dir of @size bytes into q->bms.  Returns 0 or -errno (printed). */
static int bm_parse_dir(struct qcow2 *q, const uint8_t *dir, uint64_t size)
{
	const char *file = q->t->cfg.file;
	uint64_t pos = 0;
	unsigned int i;

	q->bms = calloc(q->nb_bitmaps, sizeof(*q->bms));
	if (!q->bms)
		return -ENOMEM;
	for (i = 0; i < q->nb_bitmaps; i++) {
		struct qcow2_bitmap *b = &q->bms[i];
		struct qcow2_bitmap_dir_entry e;
		uint32_t name_size;
		const char *why;

		if (pos + sizeof(e) > size)
			goto bad_dir;
		memcpy(&e, dir + pos, sizeof(e));
		name_size = __builtin_bswap16(e.name_size);
		b->extra_size = __builtin_bswap32(e.extra_data_size);
		if (!name_size || name_size > QCOW2_BM_MAX_NAME ||
		    pos + sizeof(e) + b->extra_size + name_size > size)
			goto bad_dir;
		b->table_off = __builtin_bswap64(e.bitmap_table_offset);
		b->table_size = __builtin_bswap32(e.bitmap_table_size);
		b->flags = __builtin_bswap32(e.flags);
		b->type = e.type;
		b->gran_bits = e.granularity_bits;
		b->extra = malloc(MAX(b->extra_size, 1));
		b->name = malloc(name_size + 1);
		q->nr_bms = i + 1;
		if (!b->extra || !b->name)
			return -ENOMEM;
		memcpy(b->extra, dir + pos + sizeof(e), b->extra_size);
		memcpy(b->name, dir + pos + sizeof(e) + b->extra_size, name_size);
		b->name[name_size] = '\0';
		if (strlen(b->name) != name_size)
			goto bad_dir;
		why = bm_entry_bad(q, b);
		if (why) {
			img_err("%s: bitmap '%s' doesn't satisfy the constraints: %s", file,
				b->name, why);
			return -EINVAL;
		}
		if (bm_find(q, b->name) != b) {
			img_err("%s: two bitmaps named '%s'", file, b->name);
			return -EINVAL;
		}
		b->inconsistent = b->flags & QCOW2_BM_IN_USE;
		b->enabled = b->flags & QCOW2_BM_AUTO;
		pos += bm_entry_bytes(b);
	}
	if (pos != size)
		goto bad_dir;
	return 0;
bad_dir:
	img_err("%s: the bitmap directory is corrupt", file);
	return -EINVAL;
}

/* Is table entry @e (host order) one QEMU refuses to read? */
static bool bm_table_entry_bad(const struct qcow2 *q, uint64_t e)
{
	uint64_t off = e & QCOW2_BME_OFFSET_MASK;

	return (e & QCOW2_BME_RESERVED) ||
	       (off && ((e & QCOW2_BME_ALL_ONES) || qcow2_off_in_cluster(q, off)));
}

/*
 * Reads bitmap @b's table and checks its entries, as QEMU does for every
 * consistent bitmap at open.  Returns 0 or -EINVAL (printed).
 */
static int bm_check_table(struct qcow2 *q, const struct qcow2_bitmap *b)
{
	uint64_t tbytes = ALIGN_UP(MAX((uint64_t)b->table_size * 8, 8), q->cluster_size), i;
	uint64_t *tab;
	int ret;

	if (b->inconsistent)
		return 0;
	if (posix_memalign((void **)&tab, 4096, tbytes))
		return -ENOMEM;
	ret = qcow2_read_at(q->file, tab, tbytes, b->table_off);
	for (i = 0; !ret && i < b->table_size; i++) {
		if (bm_table_entry_bad(q, __builtin_bswap64(tab[i]))) {
			img_err("%s: could not read the bitmap table of bitmap '%s': entry %"
				PRIu64 " is invalid", q->t->cfg.file, b->name, i);
			ret = -EINVAL;
		}
	}
	free(tab);
	return ret;
}

int qcow2_bitmaps_load(struct qcow2 *q)
{
	const char *file = q->t->cfg.file;
	uint64_t bytes;
	uint64_t file_bytes;
	unsigned int i;
	uint8_t *dir;
	int ret;

	if (!q->nb_bitmaps)
		return 0;
	if (!(q->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
		/* What QEMU concludes: the extension is stale, its bitmaps are gone. */
		img_log("%s: a program lacking bitmap support modified this file, so all "
			"bitmaps are now considered inconsistent", file);
		q->nb_bitmaps = 0;
		return 0;
	}
	ret = bfile_size(q->file, &file_bytes);
	if (ret)
		return ret;
	if (q->nb_bitmaps > QCOW2_BM_MAX_BITMAPS || !q->bitmap_dir_size ||
	    q->bitmap_dir_size > QCOW2_BM_MAX_DIR_BYTES ||
	    q->bitmap_dir_size < q->nb_bitmaps * sizeof(struct qcow2_bitmap_dir_entry) ||
	    qcow2_off_in_cluster(q, q->bitmap_dir_offset) || !q->bitmap_dir_offset ||
	    q->bitmap_dir_offset + q->bitmap_dir_size > file_bytes) {
		img_err("%s: invalid bitmaps extension (directory at 0x%" PRIx64 ", %" PRIu64
			" bytes, %u bitmaps)", file, q->bitmap_dir_offset, q->bitmap_dir_size,
			q->nb_bitmaps);
		return -EINVAL;
	}
	bytes = ALIGN_UP(q->bitmap_dir_size, q->cluster_size);
	if (posix_memalign((void **)&dir, 4096, bytes))
		return -ENOMEM;
	ret = qcow2_read_at(q->file, dir, bytes, q->bitmap_dir_offset);
	if (!ret)
		ret = bm_parse_dir(q, dir, q->bitmap_dir_size);
	free(dir);
	for (i = 0; !ret && i < q->nr_bms; i++)
		ret = bm_check_table(q, &q->bms[i]);
	if (ret) {
		qcow2_bitmaps_free(q);
		return ret;
	}
	q->bm_loaded = true;
	bm_update_active(q);
	return 0;
}

/*
 * Reads bitmap @b's bits from its table (once).  Under bm_mutex.
 * Returns 0 or -errno (printed).
 */
static int bm_load_bits(struct qcow2 *q, struct qcow2_bitmap *b)
{
	uint64_t nr = bm_nr_bits(q, b->gran_bits), mem = bm_mem_bytes(q, nr);
	uint64_t tbytes = ALIGN_UP(MAX((uint64_t)b->table_size * 8, 8), q->cluster_size), i;
	uint64_t *bits, *tab = NULL;
	int ret = 0;

	if (b->bits)
		return 0;
	if (b->inconsistent) {
		img_err("%s: bitmap '%s' is inconsistent and cannot be used", q->t->cfg.file,
			b->name);
		return -EBUSY;
	}
	if (posix_memalign((void **)&bits, 4096, mem))
		return -ENOMEM;
	memset(bits, 0, mem);
	if (b->table_off) {
		if (posix_memalign((void **)&tab, 4096, tbytes)) {
			free(bits);
			return -ENOMEM;
		}
		ret = qcow2_read_at(q->file, tab, tbytes, b->table_off);
	}
	for (i = 0; !ret && b->table_off && i < b->table_size; i++) {
		uint64_t e = __builtin_bswap64(tab[i]), off = e & QCOW2_BME_OFFSET_MASK;
		uint8_t *dst = (uint8_t *)bits + (i << q->cluster_bits);

		if (bm_table_entry_bad(q, e)) {
			img_err("%s: bitmap '%s': corrupt bitmap table entry %" PRIu64,
				q->t->cfg.file, b->name, i);
			ret = -EINVAL;
		} else if (off) {
			ret = qcow2_read_at(q->file, dst, q->cluster_size, off);
		} else if (e & QCOW2_BME_ALL_ONES) {
			memset(dst, 0xff, q->cluster_size);
		}
	}
	free(tab);
	if (ret) {
		free(bits);
		return ret;
	}
	/* Bits past the image's end mean nothing: keep them clear. */
	if (nr % 64)
		bits[nr / 64] &= (1ULL << (nr % 64)) - 1;
	memset(bits + DIV_ROUND_UP(nr, 64), 0, mem - DIV_ROUND_UP(nr, 64) * 8);
	pthread_mutex_lock(&q->bm_lock);
	b->bits = bits;
	b->nr_bits = nr;
	pthread_mutex_unlock(&q->bm_lock);
	return 0;
}

/* Sets bits [@first, @last] of @bits. */
static void bm_set_bits(uint64_t *bits, uint64_t first, uint64_t last)
{
	uint64_t w0 = first / 64, w1 = last / 64, w;
	uint64_t m0 = ~0ULL << (first % 64), m1 = ~0ULL >> (63 - last % 64);

	if (w0 == w1) {
		bits[w0] |= m0 & m1;
		return;
	}
	bits[w0] |= m0;
	for (w = w0 + 1; w < w1; w++)
		bits[w] = ~0ULL;
	bits[w1] |= m1;
}

/* Marks guest bytes [@off, @off + @len) in @b.  Under bm_lock; @b loaded. */
static void bm_mark(struct qcow2_bitmap *b, uint64_t off, uint64_t len)
{
	uint64_t first = off >> b->gran_bits, last = (off + len - 1) >> b->gran_bits;

	if (!len || first >= b->nr_bits)
		return;
	bm_set_bits(b->bits, first, MIN(last, b->nr_bits - 1));
	b->changed = true;
}

/* Is granule @i marked, by a write or in the bits a backup took? */
static bool bm_test(const struct qcow2_bitmap *b, uint64_t i)
{
	uint64_t w = b->bits[i / 64] | (b->frozen ? b->frozen[i / 64] : 0);

	return w >> (i % 64) & 1;
}

int qcow2_bitmaps_track(struct qcow2 *q, uint64_t off, uint64_t len)
{
	unsigned int i;
	int ret = 0;

	/* Almost every image has no enabled bitmap: one atomic load. */
	if (!__atomic_load_n(&q->bm_active, __ATOMIC_ACQUIRE))
		return 0;
	for (;;) {
		/*
		 * Marked only while every enabled bitmap is in_use on disk,
		 * and under the lock a clean store takes to copy the bits and
		 * stop the marking: a write is either in the bits it stores
		 * or waits below until in_use is back on disk (D0).
		 */
		pthread_mutex_lock(&q->bm_lock);
		if (q->bm_marking) {
			for (i = 0; i < q->nr_bms; i++)
				if (q->bms[i].enabled && q->bms[i].bits)
					bm_mark(&q->bms[i], off, len);
			pthread_mutex_unlock(&q->bm_lock);
			return 0;
		}
		pthread_mutex_unlock(&q->bm_lock);
		exec_mutex_lock(&q->bm_mutex);
		for (i = 0; !ret && i < q->nr_bms; i++)
			if (q->bms[i].enabled && !q->bms[i].inconsistent)
				ret = bm_load_bits(q, &q->bms[i]);
		if (!ret && !q->bm_marking)
			ret = qcow2_bitmaps_store(q, true);
		exec_mutex_unlock(&q->bm_mutex);
		if (ret)
			return ret;
	}
}

/* An old bitmap table whose clusters go once the new directory is in the header. */
struct bm_old_table {
	uint64_t off;
	uint32_t size;
};

/*
 * Drops the references of a table no longer named and of its data
 * clusters.  Returns 0 or -errno.
 */
static int bm_free_table(struct qcow2 *q, uint64_t off, uint32_t size)
{
	uint64_t tbytes = ALIGN_UP(MAX((uint64_t)size * 8, 8), q->cluster_size), i;
	uint64_t *tab;
	int ret;

	if (!off)
		return 0;
	if (posix_memalign((void **)&tab, 4096, tbytes))
		return -ENOMEM;
	ret = qcow2_read_at(q->file, tab, tbytes, off);
	exec_mutex_lock(&q->alloc_mutex);
	for (i = 0; !ret && i < size; i++) {
		uint64_t e = __builtin_bswap64(tab[i]) & QCOW2_BME_OFFSET_MASK;

		/* Only clusters the file has: a stale table must not free others. */
		if (e && e < q->file_bytes)
			ret = qcow2_refcount_update(q, e, q->cluster_size, -1);
	}
	if (!ret && off + tbytes <= q->file_bytes)
		ret = qcow2_refcount_update(q, off, tbytes, -1);
	exec_mutex_unlock(&q->alloc_mutex);
	free(tab);
	return ret;
}

/*
 * D1: writes @bits (a copy, whole clusters) as a new table and data
 * clusters; all-zero clusters get no cluster (entry 0).  Nothing names
 * them yet.  Sets *@toff.  Returns 0 or -errno.
 */
static int bm_write_table(struct qcow2 *q, const uint64_t *bits, uint32_t size, uint64_t *toff)
{
	uint64_t tbytes = ALIGN_UP(MAX((uint64_t)size * 8, 8), q->cluster_size), i;
	uint64_t *tab;
	int64_t off;
	int ret = 0;

	if (posix_memalign((void **)&tab, 4096, tbytes))
		return -ENOMEM;
	memset(tab, 0, tbytes);
	for (i = 0; i < size; i++) {
		const void *src = (const uint8_t *)bits + (i << q->cluster_bits);
		ssize_t n;

		if (buf_is_zero(src, q->cluster_size))
			continue;
		off = qcow2_alloc_contig(q, 1);
		if (off < 0) {
			ret = off;
			break;
		}
		tab[i] = __builtin_bswap64(off);
		n = qcow2_pwrite_checked(q, 0, src, q->cluster_size, off);
		if (n < 0) {
			ret = n;
			break;
		}
	}
	if (!ret) {
		off = qcow2_alloc_contig(q, tbytes >> q->cluster_bits);
		if (off < 0) {
			ret = off;
		} else {
			ssize_t n = qcow2_pwrite_checked(q, 0, tab, tbytes, off);

			ret = n < 0 ? n : 0;
			*toff = off;
		}
	}
	/* On failure what was allocated leaks: check -r leaks reclaims it. */
	free(tab);
	return ret;
}

/* Builds the directory of q->bms, flags as they will be on disk. */
static uint8_t *bm_build_dir(struct qcow2 *q, bool in_use, uint64_t *bytes)
{
	uint64_t size = 0, pos = 0;
	unsigned int i;
	uint8_t *dir;

	for (i = 0; i < q->nr_bms; i++)
		size += bm_entry_bytes(&q->bms[i]);
	*bytes = size;
	if (posix_memalign((void **)&dir, 4096, ALIGN_UP(MAX(size, 1), q->cluster_size)))
		return NULL;
	memset(dir, 0, ALIGN_UP(MAX(size, 1), q->cluster_size));
	for (i = 0; i < q->nr_bms; i++) {
		struct qcow2_bitmap *b = &q->bms[i];
		uint32_t flags = (b->flags & QCOW2_BM_EXTRA_COMPAT) |
				 (b->enabled ? QCOW2_BM_AUTO : 0);
		struct qcow2_bitmap_dir_entry e = {
			.bitmap_table_offset = __builtin_bswap64(b->table_off),
			.bitmap_table_size = __builtin_bswap32(b->table_size),
			.type = b->type,
			.granularity_bits = b->gran_bits,
			.name_size = __builtin_bswap16(strlen(b->name)),
			.extra_data_size = __builtin_bswap32(b->extra_size),
		};

		if (b->inconsistent || (in_use && b->enabled))
			flags |= QCOW2_BM_IN_USE;
		e.flags = __builtin_bswap32(flags);
		memcpy(dir + pos, &e, sizeof(e));
		memcpy(dir + pos + sizeof(e), b->extra, b->extra_size);
		memcpy(dir + pos + sizeof(e) + b->extra_size, b->name, strlen(b->name));
		pos += bm_entry_bytes(b);
	}
	return dir;
}

/*
 * D2's flush: the new tables, directory and their refcounts durable.
 * With lazy refcounts a flush leaves refcount blocks in the cache (the
 * dirty bit covers tables it writes), but nothing covers a header naming
 * clusters whose refcount is 0 on disk: the blocks go out here too, as
 * qcow2_mark_clean() writes them.  Returns 0 or -errno.
 */
static int bm_flush(struct qcow2 *q)
{
	int ret = qcow2_flush_meta(q);

	if (ret || !q->lazy)
		return ret;
	exec_mutex_lock(&q->alloc_mutex);
	ret = qcow2_cache_writeback(q, &q->rbc);
	if (!ret)
		ret = bfile_flush(q->file);
	exec_mutex_unlock(&q->alloc_mutex);
	return ret;
}

/*
 * Stores the bitmaps (README.md, D1-D4): with @in_use every enabled
 * bitmap is flagged in use and writes may mark from then on; without,
 * the bits are written and the flags cleared, and writes first store
 * in_use again.  Under bm_mutex.  Returns 0 or -errno.
 */
int qcow2_bitmaps_store(struct qcow2 *q, bool in_use)
{
	uint64_t old_dir = q->bitmap_dir_offset, old_dir_size = q->bitmap_dir_size;
	uint32_t old_nb = q->nb_bitmaps;
	struct bm_old_table *old = NULL;
	uint64_t **copies = NULL, dir_bytes = 0, w;
	unsigned int i, nr_old = 0;
	uint8_t *dir = NULL;
	int64_t dir_off = 0;
	int ret = 0;

	if (q->read_only)
		return -EROFS;
	if (q->nr_bms && q->version < 3) {
		img_err("%s: cannot store dirty bitmaps in qcow2 v2 files", q->t->cfg.file);
		return -ENOTSUP;
	}
	copies = calloc(q->nr_bms + 1, sizeof(*copies));
	old = calloc(q->nr_bms + 1, sizeof(*old));
	if (!copies || !old) {
		ret = -ENOMEM;
		goto out;
	}
	/*
	 * The bits to write, copied at the instant the marking stops (a
	 * clean store): later writes wait for in_use (D0).  An in_use store
	 * writes only tables that do not exist or no longer fit the size:
	 * the bits of a bitmap in use mean nothing on disk.
	 */
	pthread_mutex_lock(&q->bm_lock);
	if (!in_use)
		q->bm_marking = false;
	for (i = 0; i < q->nr_bms; i++) {
		struct qcow2_bitmap *b = &q->bms[i];
		bool misfit = !b->table_off || b->table_size != bm_table_size(q, b->gran_bits);

		if (b->inconsistent || !b->bits || (!misfit && (in_use || !b->changed)))
			continue;
		if (posix_memalign((void **)&copies[i], 4096, bm_mem_bytes(q, b->nr_bits))) {
			ret = -ENOMEM;
			break;
		}
		memcpy(copies[i], b->bits, bm_mem_bytes(q, b->nr_bits));
		/* A backup's taken bits count until it succeeds. */
		for (w = 0; b->frozen && w < DIV_ROUND_UP(b->nr_bits, 64); w++)
			copies[i][w] |= b->frozen[w];
		b->changed = false;
	}
	pthread_mutex_unlock(&q->bm_lock);
	if (ret)
		goto undo_changed;

	/* D1: new tables and their data in new clusters. */
	for (i = 0; i < q->nr_bms; i++) {
		struct qcow2_bitmap *b = &q->bms[i];
		uint64_t toff = 0;

		if (!copies[i])
			continue;
		ret = bm_write_table(q, copies[i], bm_table_size(q, b->gran_bits), &toff);
		if (ret)
			goto undo_changed;
		old[nr_old++] = (struct bm_old_table){ b->table_off, b->table_size };
		b->table_off = toff;
		b->table_size = bm_table_size(q, b->gran_bits);
	}
	/* D2: the directory in new clusters; then refcounts and bytes durable. */
	if (q->nr_bms) {
		dir = bm_build_dir(q, in_use, &dir_bytes);
		if (!dir) {
			ret = -ENOMEM;
			goto undo_changed;
		}
		dir_off = qcow2_alloc_contig(q, DIV_ROUND_UP(dir_bytes, q->cluster_size));
		if (dir_off < 0) {
			ret = dir_off;
			goto undo_changed;
		}
		ret = qcow2_pwrite_checked(q, 0, dir, ALIGN_UP(dir_bytes, q->cluster_size),
					   dir_off);
		if (ret < 0)
			goto undo_changed;
	}
	ret = bm_flush(q);
	if (ret)
		goto undo_changed;
	/* D3: one synced header write switches to the new directory. */
	exec_mutex_lock(&q->hdr_mutex);
	ret = qcow2_write_bitmaps_ext(q, q->nr_bms, q->nr_bms ? dir_off : 0,
				      q->nr_bms ? dir_bytes : 0);
	exec_mutex_unlock(&q->hdr_mutex);
	if (ret)
		goto undo_changed;
	if (in_use) {
		pthread_mutex_lock(&q->bm_lock);
		q->bm_marking = true;
		pthread_mutex_unlock(&q->bm_lock);
	}
	/* D4: nothing names the old directory and tables now. */
	ret = qcow2_ovl_rebuild(q);
	if (!ret && old_nb) {
		exec_mutex_lock(&q->alloc_mutex);
		ret = qcow2_refcount_update(q, old_dir, ALIGN_UP(old_dir_size, q->cluster_size),
					    -1);
		exec_mutex_unlock(&q->alloc_mutex);
	}
	for (i = 0; !ret && i < nr_old; i++)
		ret = bm_free_table(q, old[i].off, old[i].size);
	if (!ret)
		ret = qcow2_flush_meta(q);
	goto out;
undo_changed:
	/* Not stored: the bits still differ from the disk. */
	for (i = 0; i < q->nr_bms; i++)
		if (copies[i])
			q->bms[i].changed = true;
out:
	for (i = 0; copies && i < q->nr_bms; i++)
		free(copies[i]);
	free(copies);
	free(old);
	free(dir);
	return ret < 0 ? ret : 0;
}

int qcow2_bitmaps_close(struct qcow2 *q)
{
	bool needed = false;
	unsigned int i;
	int ret = 0;

	if (q->read_only || !q->bm_loaded)
		return 0;
	exec_mutex_lock(&q->bm_mutex);
	needed = q->bm_marking;
	for (i = 0; i < q->nr_bms; i++)
		needed |= q->bms[i].changed;
	if (needed)
		ret = qcow2_bitmaps_store(q, false);
	exec_mutex_unlock(&q->bm_mutex);
	return ret;
}

int qcow2_bitmaps_resize(struct qcow2 *q, uint64_t size_bytes)
{
	uint64_t old_size = q->size_bytes;
	unsigned int i;
	int ret = 0;

	exec_mutex_lock(&q->bm_mutex);
	for (i = 0; !ret && i < q->nr_bms; i++) {
		if (q->bms[i].inconsistent || q->bms[i].frozen) {
			img_err("%s: cannot resize: bitmap '%s' is %s", q->t->cfg.file,
				q->bms[i].name, q->bms[i].frozen ? "busy" : "inconsistent");
			ret = -EBUSY;
		} else {
			ret = bm_load_bits(q, &q->bms[i]);
		}
	}
	q->size_bytes = size_bytes;
	for (i = 0; !ret && i < q->nr_bms; i++) {
		struct qcow2_bitmap *b = &q->bms[i];
		uint64_t nr = bm_nr_bits(q, b->gran_bits), mem = bm_mem_bytes(q, nr);
		uint64_t keep = MIN(nr, b->nr_bits);
		uint64_t *bits;

		if (mem > QCOW2_BM_MAX_BYTES || posix_memalign((void **)&bits, 4096, mem)) {
			ret = -ENOMEM;
			break;
		}
		/* Grown: the new bytes are clean.  Shrunk: the cut bits go. */
		memset(bits, 0, mem);
		memcpy(bits, b->bits, DIV_ROUND_UP(keep, 64) * 8);
		if (keep % 64)
			bits[keep / 64] &= (1ULL << (keep % 64)) - 1;
		pthread_mutex_lock(&q->bm_lock);
		free(b->bits);
		b->bits = bits;
		b->nr_bits = nr;
		b->changed = true;
		pthread_mutex_unlock(&q->bm_lock);
	}
	q->size_bytes = old_size;
	exec_mutex_unlock(&q->bm_mutex);
	return ret;
}

int qcow2_bitmap_list(struct tgt *t, const struct tgt_bitmap_info **list)
{
	struct qcow2 *q = t->priv;
	unsigned int i;

	exec_mutex_lock(&q->bm_mutex);
	free(q->bm_info);
	q->bm_info = calloc(q->nr_bms + 1, sizeof(*q->bm_info));
	if (!q->bm_info) {
		exec_mutex_unlock(&q->bm_mutex);
		return -ENOMEM;
	}
	for (i = 0; i < q->nr_bms; i++) {
		q->bm_info[i].name = q->bms[i].name;
		q->bm_info[i].granularity_bytes = 1ULL << q->bms[i].gran_bits;
		q->bm_info[i].in_use = q->bms[i].inconsistent;
		q->bm_info[i].enabled = q->bms[i].enabled;
		q->bm_info[i].busy = q->bms[i].frozen;
	}
	exec_mutex_unlock(&q->bm_mutex);
	*list = q->bm_info;
	return q->nr_bms;
}

/* Adds bitmap @name.  Under bm_mutex.  Returns 0 or -errno (printed). */
static int bm_add(struct qcow2 *q, const char *name, const struct tgt_bitmap_args *a)
{
	uint64_t gran = a && a->granularity_bytes ? a->granularity_bytes :
			1ULL << QCOW2_BM_DEFAULT_GRAN_BITS;
	unsigned int gb = ilog2_u64(gran);
	struct qcow2_bitmap *bms, nb = { 0 };
	uint64_t nr;

	if (q->version < 3) {
		img_err("%s: cannot store dirty bitmaps in qcow2 v2 files", q->t->cfg.file);
		return -ENOTSUP;
	}
	if (bm_find(q, name)) {
		img_err("Bitmap already exists: %s", name);
		return -EEXIST;
	}
	if (!*name || strlen(name) > QCOW2_BM_MAX_NAME) {
		img_err("%s: bitmap name must be 1 to %u bytes", q->t->cfg.file,
			QCOW2_BM_MAX_NAME);
		return -EINVAL;
	}
	if (!is_pow2(gran) || gb < QCOW2_BM_MIN_GRAN_BITS || gb > QCOW2_BM_MAX_GRAN_BITS) {
		img_err("Granularity must be power of 2 between 512 and 2147483648");
		return -EINVAL;
	}
	if (q->nr_bms >= QCOW2_BM_MAX_BITMAPS) {
		img_err("%s: too many bitmaps", q->t->cfg.file);
		return -EFBIG;
	}
	nr = bm_nr_bits(q, gb);
	if (bm_mem_bytes(q, nr) > QCOW2_BM_MAX_BYTES) {
		img_err("%s: bitmap '%s' would be too large", q->t->cfg.file, name);
		return -EFBIG;
	}
	nb.name = strdup(name);
	nb.extra = malloc(1);
	if (!nb.name || !nb.extra ||
	    posix_memalign((void **)&nb.bits, 4096, bm_mem_bytes(q, nr))) {
		bm_free_one(&nb);
		return -ENOMEM;
	}
	memset(nb.bits, 0, bm_mem_bytes(q, nr));
	nb.nr_bits = nr;
	nb.gran_bits = gb;
	nb.type = QCOW2_BM_TYPE_DIRTY;
	nb.enabled = !(a && a->disabled);
	nb.changed = true;
	pthread_mutex_lock(&q->bm_lock);
	bms = realloc(q->bms, (q->nr_bms + 1) * sizeof(*bms));
	if (bms) {
		q->bms = bms;
		q->bms[q->nr_bms++] = nb;
	}
	pthread_mutex_unlock(&q->bm_lock);
	if (!bms) {
		bm_free_one(&nb);
		return -ENOMEM;
	}
	return 0;
}

/*
 * Marks in @dst every granule that @src's bitmap @name marks.  @src is
 * another image (its own locks).  Returns 0 or -errno.
 */
static int bm_merge_from(struct qcow2 *q, struct qcow2_bitmap *dst, struct tgt *src,
			 const char *name)
{
	uint64_t off = 0, size = MIN(src->caps.size_bytes, q->size_bytes);

	if (!src->ops->bitmap_status) {
		img_err("%s: the %s format has no bitmaps", src->cfg.file, src->ops->name);
		return -ENOTSUP;
	}
	while (off < size) {
		bool dirty;
		int64_t n = src->ops->bitmap_status(src, name, off, size - off, &dirty);

		if (n < 0)
			return n;
		if (dirty) {
			pthread_mutex_lock(&q->bm_lock);
			bm_mark(dst, off, n);
			pthread_mutex_unlock(&q->bm_lock);
		}
		off += n;
	}
	return 0;
}

/* The same within this image: both bitmaps in memory.  Under bm_mutex. */
static void bm_merge_local(struct qcow2 *q, struct qcow2_bitmap *dst,
			   const struct qcow2_bitmap *src)
{
	uint64_t i;

	pthread_mutex_lock(&q->bm_lock);
	for (i = 0; i < src->nr_bits; i++)
		if (bm_test(src, i))
			bm_mark(dst, i << src->gran_bits, 1ULL << src->gran_bits);
	pthread_mutex_unlock(&q->bm_lock);
}

/*
 * TGT_BITMAP_TAKE: @b's bits go aside as @b->frozen and are lent to the
 * caller through @a; @b records on from zero (@a->clear) or from a copy.
 * Under bm_mutex, @b loaded.  Returns 0 or -ENOMEM.
 */
static int bm_take(struct qcow2 *q, struct qcow2_bitmap *b, struct tgt_bitmap_args *a)
{
	uint64_t mem = bm_mem_bytes(q, b->nr_bits);
	uint64_t *bits;

	if (posix_memalign((void **)&bits, 4096, mem))
		return -ENOMEM;
	pthread_mutex_lock(&q->bm_lock);
	if (a->clear)
		memset(bits, 0, mem);
	else
		memcpy(bits, b->bits, mem);
	b->frozen = b->bits;
	b->bits = bits;
	b->changed = true;
	pthread_mutex_unlock(&q->bm_lock);
	a->bits = b->frozen;
	a->nr_bits = b->nr_bits;
	a->granularity_bytes = 1ULL << b->gran_bits;
	return 0;
}

/* TGT_BITMAP_RELEASE: the taken bits go, marked again first if @restore. */
static void bm_release(struct qcow2 *q, struct qcow2_bitmap *b, bool restore)
{
	uint64_t w;

	pthread_mutex_lock(&q->bm_lock);
	for (w = 0; restore && w < DIV_ROUND_UP(b->nr_bits, 64); w++)
		b->bits[w] |= b->frozen[w];
	free(b->frozen);
	b->frozen = NULL;
	b->changed = true;
	pthread_mutex_unlock(&q->bm_lock);
}

int qcow2_bitmap(struct tgt *t, enum tgt_bitmap_op op, const char *name,
		 struct tgt_bitmap_args *a)
{
	struct qcow2 *q = t->priv;
	struct bm_old_table gone = { 0 };
	struct qcow2_bitmap *b = NULL;
	int ret = 0;

	if (q->read_only) {
		img_err("%s: cannot change bitmaps: %s", t->cfg.file,
			q->no_write_reason ?: "opened read-only");
		return -EROFS;
	}
	exec_mutex_lock(&q->bm_mutex);
	if (op != TGT_BITMAP_ADD && op != TGT_BITMAP_FLUSH) {
		b = bm_find(q, name);
		if (!b) {
			img_err("Dirty bitmap '%s' not found", name);
			ret = -ENOENT;
			goto out;
		}
		if (op != TGT_BITMAP_REMOVE && b->inconsistent) {
			img_err("Bitmap '%s' is inconsistent and cannot be used", name);
			ret = -EBUSY;
			goto out;
		}
		if (!b->frozen != (op != TGT_BITMAP_RELEASE)) {
			img_err(b->frozen ? "Bitmap '%s' is currently in use by another "
				"operation and cannot be used" : "Bitmap '%s' is not busy", name);
			ret = -EBUSY;
			goto out;
		}
		if (op == TGT_BITMAP_TAKE && !b->enabled) {
			img_err("Bitmap '%s' is disabled: it does not record the writes an "
				"incremental backup needs", name);
			ret = -EBUSY;
			goto out;
		}
		if (op != TGT_BITMAP_REMOVE)
			ret = bm_load_bits(q, b);
		if (ret)
			goto out;
	}
	switch (op) {
	case TGT_BITMAP_ADD:
		ret = bm_add(q, name, a);
		break;
	case TGT_BITMAP_REMOVE:
		/* A table that does not fit the image is not followed: it leaks. */
		if (b->table_size == bm_table_size(q, b->gran_bits) &&
		    !qcow2_off_in_cluster(q, b->table_off))
			gone = (struct bm_old_table){ b->table_off, b->table_size };
		pthread_mutex_lock(&q->bm_lock);
		bm_free_one(b);
		memmove(b, b + 1, (q->bms + --q->nr_bms - b) * sizeof(*b));
		pthread_mutex_unlock(&q->bm_lock);
		break;
	case TGT_BITMAP_CLEAR:
		pthread_mutex_lock(&q->bm_lock);
		memset(b->bits, 0, bm_mem_bytes(q, b->nr_bits));
		b->changed = true;
		pthread_mutex_unlock(&q->bm_lock);
		break;
	case TGT_BITMAP_ENABLE:
	case TGT_BITMAP_DISABLE:
		pthread_mutex_lock(&q->bm_lock);
		b->enabled = op == TGT_BITMAP_ENABLE;
		pthread_mutex_unlock(&q->bm_lock);
		break;
	case TGT_BITMAP_MERGE: {
		struct qcow2_bitmap *s;

		if (a->src != t) {
			ret = bm_merge_from(q, b, a->src, a->src_name);
			break;
		}
		s = bm_find(q, a->src_name);
		if (!s) {
			img_err("Dirty bitmap '%s' not found", a->src_name);
			ret = -ENOENT;
			break;
		}
		ret = bm_load_bits(q, s);
		if (!ret)
			bm_merge_local(q, b, s);
		break;
	}
	case TGT_BITMAP_FLUSH:
		break;
	case TGT_BITMAP_TAKE:
	case TGT_BITMAP_RELEASE:
		/*
		 * Not stored now: the disk holds a superset of the union
		 * (in_use, or consistent with the bits of the last store,
		 * marked since or taken), and close stores the rest.  So a
		 * backup's start and end under the drain write nothing.
		 */
		ret = op == TGT_BITMAP_TAKE ? bm_take(q, b, a) :
					      (bm_release(q, b, a->restore), 0);
		goto out;
	}
	if (ret)
		goto out;
	/*
	 * The change goes to disk now.  While writes mark, the enabled
	 * bitmaps stay in use on disk (a new one joins them); a flush, or a
	 * change with nothing marking, stores them clean.
	 */
	ret = qcow2_bitmaps_store(q, q->bm_marking && op != TGT_BITMAP_FLUSH);
	/* A removed bitmap's clusters go once the directory without it is in the header. */
	if (!ret && gone.off)
		ret = bm_free_table(q, gone.off, gone.size);
	pthread_mutex_lock(&q->bm_lock);
	bm_update_active(q);
	pthread_mutex_unlock(&q->bm_lock);
out:
	exec_mutex_unlock(&q->bm_mutex);
	return ret;
}

int64_t qcow2_bitmap_status(struct tgt *t, const char *name, uint64_t off, uint64_t len,
			    bool *dirty)
{
	struct qcow2 *q = t->priv;
	struct qcow2_bitmap *b;
	uint64_t i, end, last;
	int ret;

	exec_mutex_lock(&q->bm_mutex);
	b = bm_find(q, name);
	ret = b ? bm_load_bits(q, b) : -ENOENT;
	if (!b)
		img_err("Dirty bitmap '%s' not found", name);
	exec_mutex_unlock(&q->bm_mutex);
	if (ret)
		return ret;
	/* The list does not change under a reader that holds bm_lock. */
	pthread_mutex_lock(&q->bm_lock);
	b = bm_find(q, name);
	if (!b || !b->bits) {
		pthread_mutex_unlock(&q->bm_lock);
		return -ENOENT;
	}
	end = MIN(off + len, q->size_bytes);
	i = off >> b->gran_bits;
	*dirty = bm_test(b, i);
	last = (end - 1) >> b->gran_bits;
	while (i < last && bm_test(b, i + 1) == *dirty)
		i++;
	pthread_mutex_unlock(&q->bm_lock);
	return MIN((i + 1) << b->gran_bits, end) - off;
}
