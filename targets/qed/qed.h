/* SPDX-License-Identifier: GPL-2.0 */
/*
 * QED (QEMU Enhanced Disk): on-disk layout and the engine's shared state.
 *
 * Spec: QEMU's docs/interop/qed_spec.rst.  The file is a sequence of
 * clusters: the header clusters, then the L1 table, L2 tables and data
 * clusters in any order, appended as they are allocated.  A guest offset
 * splits into L1 index | L2 index | offset in cluster.  Table entries are
 * file offsets; in an L2 table 0 means unallocated (read the backing file)
 * and 1 means a zero cluster.  Crash ordering and concurrency: README.md.
 */
#ifndef IMGBLK_QED_H
#define IMGBLK_QED_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "bfile.h"
#include "exec.h"
#include "tgt.h"

#define QED_MAGIC		0x00444551U	/* "QED\0" read as a little-endian u32 */

/* features: an unknown bit means we cannot read the image correctly. */
#define QED_F_BACKING_FILE	0x01ULL	/* backing_filename_* are valid */
#define QED_F_NEED_CHECK	0x02ULL	/* metadata may be inconsistent: check first */
#define QED_F_BACKING_RAW	0x04ULL	/* backing file is raw: never probe it */
#define QED_FEATURES_KNOWN	(QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_RAW)
/* No compat or autoclear bits are defined yet. */
#define QED_AUTOCLEAR_KNOWN	0ULL

#define QED_MIN_CLUSTER_SIZE	(4U * 1024)
#define QED_MAX_CLUSTER_SIZE	(64U * 1024 * 1024)
#define QED_MIN_TABLE_SIZE	1U
#define QED_MAX_TABLE_SIZE	16U
#define QED_DEFAULT_CLUSTER_SIZE (64U * 1024)
#define QED_DEFAULT_TABLE_SIZE	4U

/* L2 entry values with a meaning of their own. */
#define QED_UNALLOCATED		0ULL
#define QED_ZERO_CLUSTER	1ULL

/*
 * The file grows ahead of allocation in steps of this size, with blocks
 * reserved (bfile_grow()), and back to its last cluster on close:
 * writes past the end of a file are slow on common filesystems (ext4
 * journals every such O_DIRECT write), and so are writes into a hole,
 * which must allocate one by one; writes into reserved blocks are not.
 * A crash leaves the unused part as leaked clusters, never as a
 * corruption.
 */
#define QED_GROW_BYTES		(8U << 20)

/* Allocating writes idle this long: flush and clear need-check. */
#define QED_NEED_CHECK_IDLE_MS	5000

/*
 * Metadata I/O granule: tables and header blocks are read and written in
 * whole 4 KiB blocks so that O_DIRECT works on 4Kn storage too.  Clusters
 * are at least this large, so tables are always aligned to it.
 */
#define QED_META_BLOCK		4096U

/* The header, as stored at file offset 0; all fields little-endian. */
struct qed_header {
	uint32_t magic;			/*  0: QED_MAGIC */
	uint32_t cluster_size;		/*  4: bytes, power of 2, 4 KiB..64 MiB */
	uint32_t table_size;		/*  8: L1/L2 table size in clusters, 1..16 */
	uint32_t header_size;		/* 12: clusters before the first regular one */
	uint64_t features;		/* 16: QED_F_*; unknown bits: refuse */
	uint64_t compat_features;	/* 24: unknown bits: ignore */
	uint64_t autoclear_features;	/* 32: unknown bits: clear on rw open */
	uint64_t l1_table_offset;	/* 40: bytes, cluster aligned */
	uint64_t image_size;		/* 48: guest size in bytes, multiple of 512 */
	uint32_t backing_filename_offset; /* 56: bytes from the file start */
	uint32_t backing_filename_size;	/* 60: bytes, not NUL-terminated */
} __attribute__((packed));

_Static_assert(sizeof(struct qed_header) == 64, "QED header is 64 bytes");

/* One L2 table in the cache (table.c).  Fields under qed->lock unless said. */
struct qed_l2 {
	uint64_t offset;		/* file offset of the table: the key */
	uint64_t *entries;		/* cpu order, qed->table_nelems */
	unsigned int ref;		/* users; never evicted while > 0 */
	bool loading;			/* read in flight; waiters on qed->load_wq */
	int load_err;
	/* Serialises writes of this table so they reach the file in order. */
	struct exec_mutex wlock;
	/*
	 * Group commit: changes not yet written span entries
	 * [dirty_lo, dirty_hi); change_gen counts changes, written_gen is
	 * the count the last completed write covered.
	 */
	uint32_t dirty_lo, dirty_hi;
	uint64_t change_gen;
	uint64_t written_gen;
	struct qed_l2 *hnext;		/* hash chain */
	struct qed_l2 *lru_prev, *lru_next;
};

/*
 * An allocating write in flight: the guest clusters whose L2 entries it
 * will change, and whether it creates the L2 table of @l1_index.  Others
 * touching the same clusters or that L2 table wait for it (README.md).
 */
struct qed_alloc {
	uint64_t first_cluster;		/* guest cluster index */
	uint64_t nr_clusters;
	uint32_t l1_index;
	bool new_l2;
	struct qed_alloc *next;
};

/* Where need-check stands (alloc.c). */
enum qed_nc_state {
	QED_NC_CLEAR,			/* bit clear on disk */
	QED_NC_SETTING,			/* header write with the bit in flight */
	QED_NC_SET,			/* bit set and synced */
	QED_NC_CLEARING,		/* flush + header write without the bit in flight */
};

struct qed {
	struct tgt *t;
	struct bfile *file;
	bool read_only;
	bool direct;

	/* Header fields, cpu order; only header.c writes them after open. */
	uint32_t cluster_size;
	uint32_t table_size;
	uint32_t header_size;
	uint64_t features;
	uint64_t compat_features;
	uint64_t autoclear_features;
	uint64_t l1_table_offset;
	uint64_t image_size;
	char *backing_name;		/* NUL-terminated copy, NULL without one */

	/* Derived geometry. */
	unsigned int cluster_shift;
	uint32_t table_bytes;
	uint32_t table_nelems;
	unsigned int l1_shift;		/* guest offset >> l1_shift = L1 index */

	/* First QED_META_BLOCK bytes of the file, rewritten when features change. */
	void *hdr_block;
	struct exec_mutex hdr_wlock;

	/* Everything below is under @lock, which is never held across I/O. */
	pthread_mutex_t lock;
	uint64_t *l1;			/* cpu order, table_nelems */
	struct exec_mutex l1_wlock;	/* serialises L1 writes */
	uint64_t file_end;		/* next allocation; cluster aligned */
	uint64_t file_bytes;		/* the file's size: grown ahead of file_end */

	struct qed_l2 **l2_hash;
	unsigned int l2_hash_size;
	unsigned int l2_count, l2_max;
	struct qed_l2 *lru_head, *lru_tail;	/* head = most recent */
	struct exec_waitq load_wq;

	struct qed_alloc *allocs;	/* allocating writes in flight */
	unsigned int nr_allocs;
	struct exec_waitq alloc_wq;	/* waiting for an alloc or need-check change */
	enum qed_nc_state nc_state;
	bool nc_ours;			/* we set need-check: clear it when idle/closed */
	struct timespec last_alloc;	/* when the last allocating write finished */

	/* Cleared on the first EOPNOTSUPP so we stop asking the filesystem. */
	bool falloc_ok;
};

static inline uint64_t qed_cluster_of(const struct qed *q, uint64_t off)
{
	return off >> q->cluster_shift;
}

static inline uint64_t qed_in_cluster(const struct qed *q, uint64_t off)
{
	return off & (q->cluster_size - 1);
}

static inline uint32_t qed_l1_index(const struct qed *q, uint64_t off)
{
	return off >> q->l1_shift;
}

static inline uint32_t qed_l2_index(const struct qed *q, uint64_t off)
{
	return (off >> q->cluster_shift) & (q->table_nelems - 1);
}

/* Is @e a data cluster offset (not one of the special values)? */
static inline bool qed_is_data(uint64_t e)
{
	return e > QED_ZERO_CLUSTER;
}

/* Offsets in an entry are cluster aligned; the low bits are reserved. */
static inline uint64_t qed_entry_offset(const struct qed *q, uint64_t e)
{
	return e & ~(uint64_t)(q->cluster_size - 1);
}

/* header.c */
/* Reads, validates and applies the header.  Prints why on failure. */
int qed_header_load(struct qed *q);
/* Writes q->features and q->autoclear_features in place.  Returns 0 or -errno. */
int qed_header_write_features(struct qed *q, bool sync);
int qed_probe(const void *buf, size_t len);
uint64_t qed_max_image_size(uint32_t cluster_size, uint32_t table_size);
bool qed_cluster_size_ok(uint64_t cluster_size);
bool qed_table_size_ok(uint64_t table_size);
/* Grows the image (tgt_ops->resize). */
int qed_resize(struct tgt *t, uint64_t size_bytes, unsigned int flags);
/* Records a new backing file name and format (tgt_ops->set_backing). */
int qed_set_backing(struct tgt *t, const char *name, const char *fmt);

/* table.c */
/* Reads a table at @off into cpu-order @entries; past EOF reads as 0. */
int qed_table_read(struct qed *q, uint64_t off, uint64_t *entries);
/*
 * Writes entries [@first, @first + @n) of the table at @off from @entries,
 * widened to whole metadata blocks.  The caller serialises writers of the
 * table and keeps @entries stable meanwhile.  Returns 0 or -errno.
 */
int qed_table_write(struct qed *q, uint64_t off, const uint64_t *entries,
		    uint32_t first, uint32_t n);
/*
 * Writes entries [@first, @first + @n) of cached table @l2, widened to
 * whole metadata blocks, from a copy taken under q->lock (other requests
 * change other entries meanwhile).  Returns 0 or -errno.
 */
int qed_l2_write(struct qed *q, struct qed_l2 *l2, uint32_t first, uint32_t n);
int qed_l2_cache_init(struct qed *q);
void qed_l2_cache_destroy(struct qed *q);
/* Drops every cached table; no I/O may be in flight. */
void qed_l2_cache_drop(struct qed *q);
/* Returns the table at @off loaded and referenced, or an ERR value in *@err. */
struct qed_l2 *qed_l2_get(struct qed *q, uint64_t off, int *err);
/* Inserts a new, all-unallocated table at @off, referenced.  Under q->lock. */
struct qed_l2 *qed_l2_new_locked(struct qed *q, uint64_t off);
void qed_l2_put(struct qed *q, struct qed_l2 *l2);
void qed_l2_put_locked(struct qed *q, struct qed_l2 *l2);

/*
 * What the guest range at @off maps to, for at most @len bytes within one
 * L2 table: *@entry is the L2 entry of the first cluster (0, 1 or a file
 * offset, which has been made the offset of @off itself).  Returns the
 * length of the run with the same kind (for data, contiguous in the file),
 * or -errno.
 */
int64_t qed_map(struct qed *q, uint64_t off, uint64_t len, uint64_t *entry);

/* alloc.c */
int qed_alloc_init(struct qed *q);
void qed_alloc_destroy(struct qed *q);
/*
 * Called under q->lock by a write about to change the L2 entries @a
 * describes.  Returns 0 once @a is registered (no other allocation
 * overlaps it, need-check is set when it must be); 1 if it slept or
 * dropped the lock, so the caller must look its entries up again; -errno.
 */
int qed_alloc_begin_locked(struct qed *q, struct qed_alloc *a);
/*
 * Reserves @bytes of file space at the end, and grows the file ahead of
 * it in QED_GROW_BYTES steps: space inside the file but past every
 * allocation reads as zeros.  Under q->lock.
 */
uint64_t qed_reserve_locked(struct qed *q, uint64_t bytes);
/* Unregisters @a and wakes the writes waiting for it. */
void qed_alloc_end(struct qed *q, struct qed_alloc *a);
/* Clears need-check when allocating writes have been idle long enough. */
void qed_tick(struct tgt *t);
/* Clears need-check on a clean shutdown; the caller has flushed. */
int qed_clear_need_check(struct qed *q);

/* write.c */
/*
 * Writes @len bytes at guest @off, stopping at the end of its L2 table;
 * @zero writes zeros (zero clusters where whole clusters) and ignores
 * @buf.  Returns the bytes handled, a prefix of the range, or -errno.
 */
int64_t qed_write_range(struct qed *q, const void *buf, uint64_t off, uint64_t len,
			bool zero);
int qed_read(struct tgt *t, void *buf, uint32_t len, uint64_t off);
int qed_write(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
	      unsigned int flags);
int qed_write_zeroes(struct tgt *t, uint64_t off, uint64_t len, unsigned int flags);
int qed_flush(struct tgt *t);

/* check.c */
int qed_check(struct tgt *t, unsigned int fix, struct tgt_check_result *r);
/* Check at open: repair what can be repaired, clear need-check if clean. */
int qed_check_on_open(struct qed *q);

/* create.c */
int qed_create(const struct tgt_create_opts *o);

#endif
