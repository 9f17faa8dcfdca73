/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The qcow2 format engine: on-disk layout and the engine's shared state.
 *
 * Layout facts come from QEMU's docs/interop/qcow2.rst; every field below
 * names its byte offset there.  Everything on disk is big-endian; tables
 * are converted to host order when read into memory (L1, L2, refcount
 * table) and back when written.  Refcount blocks stay in their on-disk
 * form (entries may be 1 bit wide) behind qcow2_rb_get()/qcow2_rb_set().
 *
 * Concurrency and crash ordering: README.md in this directory.
 */
#ifndef IMGBLK_QCOW2_H
#define IMGBLK_QCOW2_H

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bfile.h"
#include "exec.h"
#include "rangelock.h"
#include "tgt.h"

#define QCOW2_MAGIC		0x514649fbU	/* "QFI\xfb" */

/* The fixed part of the header (spec "Header"); all fields big-endian. */
struct qcow2_header_disk {
	uint32_t magic;			/*   0: QFI\xfb */
	uint32_t version;		/*   4: 2 or 3 */
	uint64_t backing_file_offset;	/*   8: name, not NUL-terminated; 0 = none */
	uint32_t backing_file_size;	/*  16: name length, < 1024 */
	uint32_t cluster_bits;		/*  20: 9..21 in QEMU */
	uint64_t size;			/*  24: guest size in bytes */
	uint32_t crypt_method;		/*  32: 0 none, 1 AES, 2 LUKS */
	uint32_t l1_size;		/*  36: L1 entries */
	uint64_t l1_table_offset;	/*  40: cluster aligned */
	uint64_t refcount_table_offset;	/*  48: cluster aligned */
	uint32_t refcount_table_clusters; /* 56 */
	uint32_t nb_snapshots;		/*  60 */
	uint64_t snapshots_offset;	/*  64 */
	/* v3 only from here; v2 implies the values noted. */
	uint64_t incompatible_features;	/*  72: v2: 0 */
	uint64_t compatible_features;	/*  80: v2: 0 */
	uint64_t autoclear_features;	/*  88: v2: 0 */
	uint32_t refcount_order;	/*  96: v2: 4 */
	uint32_t header_length;		/* 100: v2: 72 */
	uint8_t compression_type;	/* 104: only if header_length > 104 */
	uint8_t padding[7];		/* 105: to a multiple of 8 */
} __attribute__((packed));

static_assert(offsetof(struct qcow2_header_disk, incompatible_features) == 72,
	      "qcow2 v3 header fields start at byte 72");
static_assert(offsetof(struct qcow2_header_disk, compression_type) == 104,
	      "compression_type is byte 104");
static_assert(sizeof(struct qcow2_header_disk) == 112, "qcow2 header is 112 bytes");

#define QCOW2_V2_HEADER_BYTES	72
#define QCOW2_V3_HEADER_BYTES	104

/* Incompatible feature bits (header byte 72). */
#define QCOW2_INCOMPAT_DIRTY		(1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT		(1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE	(1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION	(1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2		(1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN		0x1fULL
/* Compatible feature bits (byte 80). */
#define QCOW2_COMPAT_LAZY_REFCOUNTS	(1ULL << 0)
/* Autoclear feature bits (byte 88). */
#define QCOW2_AUTOCLEAR_BITMAPS		(1ULL << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW	(1ULL << 1)

/* compression_type values (byte 104). */
#define QCOW2_COMPRESSION_ZLIB		0
#define QCOW2_COMPRESSION_ZSTD		1

/* Header extension: u32 type, u32 length, data padded to 8 bytes (spec "Header extensions"). */
#define QCOW2_EXT_END			0x00000000U
#define QCOW2_EXT_BACKING_FORMAT	0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE		0x6803f857U
#define QCOW2_EXT_BITMAPS		0x23852875U
#define QCOW2_EXT_CRYPTO		0x0537be77U
#define QCOW2_EXT_DATA_FILE		0x44415441U

/* One feature-name table entry (extension 0x6803f857): 48 bytes. */
struct qcow2_feature_name {
	uint8_t type;			/* 0: 0 incompatible, 1 compatible, 2 autoclear */
	uint8_t bit;			/* 1: bit number */
	char name[46];			/* 2: NUL-padded */
} __attribute__((packed));

/* Bitmaps extension data (0x23852875, spec "Bitmaps extension"): 24 bytes. */
struct qcow2_bitmaps_ext {
	uint32_t nb_bitmaps;		/* 0: entries in the directory, 1..65535 */
	uint32_t reserved;		/* 4: zero */
	uint64_t bitmap_directory_size;	/* 8: bytes, at most 64 KiB per bitmap */
	uint64_t bitmap_directory_offset; /* 16: cluster aligned */
} __attribute__((packed));

/*
 * Bitmap directory entry (spec "Bitmap directory"), followed by
 * extra_data_size bytes of extra data and name_size bytes of name (no
 * NUL), the whole entry padded with zeros to a multiple of 8 bytes.
 */
struct qcow2_bitmap_dir_entry {
	uint64_t bitmap_table_offset;	/*  0: cluster aligned */
	uint32_t bitmap_table_size;	/*  8: entries (u64 each) */
	uint32_t flags;			/* 12: QCOW2_BM_* */
	uint8_t type;			/* 16: 1, dirty tracking */
	uint8_t granularity_bits;	/* 17: one bit covers 2^this guest bytes */
	uint16_t name_size;		/* 18: 1..1023 */
	uint32_t extra_data_size;	/* 20: bytes of extra data */
} __attribute__((packed));

static_assert(sizeof(struct qcow2_bitmap_dir_entry) == 24, "bitmap directory entry is 24 bytes");

/* Directory entry flags (byte 12). */
#define QCOW2_BM_IN_USE		(1U << 0)	/* being changed: may be stale */
#define QCOW2_BM_AUTO		(1U << 1)	/* tracks every write ("enabled") */
#define QCOW2_BM_EXTRA_COMPAT	(1U << 2)	/* unknown extra data may be ignored */
#define QCOW2_BM_KNOWN		0x7U
#define QCOW2_BM_TYPE_DIRTY	1
/* QEMU's limits on bitmaps (qcow2-bitmap.c, qcow2.h). */
#define QCOW2_BM_MIN_GRAN_BITS	9
#define QCOW2_BM_MAX_GRAN_BITS	31
#define QCOW2_BM_DEFAULT_GRAN_BITS 16
#define QCOW2_BM_MAX_NAME	1023
#define QCOW2_BM_MAX_BITMAPS	65535
#define QCOW2_BM_MAX_DIR_BYTES	(1024ULL * QCOW2_BM_MAX_BITMAPS)
#define QCOW2_BM_MAX_TABLE_SIZE	0x8000000U	/* entries */
#define QCOW2_BM_MAX_BYTES	0x20000000ULL	/* a bitmap's bytes in memory */
/* Bitmap table entry (spec "Bitmap table"): bits 9-55 data cluster; bit 0 with offset 0: all ones. */
#define QCOW2_BME_ALL_ONES	(1ULL << 0)
#define QCOW2_BME_RESERVED	0xff000000000001feULL

/*
 * One persistent bitmap, in memory (bitmap.c).  The directory fields
 * say where it is on disk; @bits, once loaded, is the truth while the
 * image is open: bit i covers guest bytes [i << gran_bits, (i + 1) <<
 * gran_bits), in the spec's order (bit i of byte i / 8, least
 * significant first), which is that of little-endian u64 words.
 */
struct qcow2_bitmap {
	char *name;
	uint32_t flags;			/* as on disk at open, QCOW2_BM_* */
	unsigned int gran_bits;
	uint8_t type;
	uint8_t *extra;			/* kept verbatim */
	uint32_t extra_size;
	uint64_t table_off;		/* on disk; 0: none written yet */
	uint32_t table_size;
	bool inconsistent;		/* in_use at open: only removable */
	bool enabled;			/* auto: writes mark it */
	uint64_t *bits;			/* NULL: not loaded (or inconsistent) */
	uint64_t nr_bits;
	bool changed;			/* @bits differ from the table on disk */
	/*
	 * Taken by a running incremental backup (TGT_BITMAP_TAKE): the bits
	 * of its start, busy until released.  Stored as @bits | @frozen.
	 */
	uint64_t *frozen;
};

/* Snapshot table entry header, then extra data, id and name (spec "Snapshots"). */
struct qcow2_snapshot_disk {
	uint64_t l1_table_offset;	/*  0 */
	uint32_t l1_size;		/*  8 */
	uint16_t id_str_size;		/* 12 */
	uint16_t name_size;		/* 14 */
	uint32_t date_sec;		/* 16 */
	uint32_t date_nsec;		/* 20 */
	uint64_t vm_clock_nsec;		/* 24 */
	uint32_t vm_state_size;		/* 32 */
	uint32_t extra_data_size;	/* 36 */
} __attribute__((packed));

/* Snapshot extra data (spec "Snapshots", v3 needs at least the first two). */
struct qcow2_snapshot_extra {
	uint64_t vm_state_size_large;	/*  0 */
	uint64_t disk_size;		/*  8: guest size when taken */
	uint64_t icount;		/* 16: optional; -1: none */
} __attribute__((packed));

/* QEMU's limits on the snapshot table. */
#define QCOW2_MAX_SNAPSHOTS		65536
#define QCOW2_MAX_SNAPSHOT_EXTRA	1024
#define QCOW2_MAX_SNAPSHOT_TABLE_BYTES	(64U << 20)

/* One snapshot table entry, in memory (snapshot.c). */
struct qcow2_snapshot {
	uint64_t l1_offset;
	uint32_t l1_size;
	char *id;
	char *name;
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint32_t vm_state_size;
	uint8_t *extra;			/* kept verbatim, disk_size patched */
	uint32_t extra_size;
	uint64_t disk_size;		/* from extra, else the image's size */
	uint64_t icount;
};

/* L1 entry (spec "Cluster mapping"). */
#define QCOW2_L1_OFFSET_MASK	0x00fffffffffffe00ULL	/* bits 9-55: L2 table */
#define QCOW2_L1_RESERVED	0x7f000000000001ffULL	/* bits 0-8, 56-62 */
/* Both L1 and L2: bit 63, the refcount is exactly one (write in place). */
#define QCOW2_COPIED		(1ULL << 63)
/* L2 entry. */
#define QCOW2_L2_COMPRESSED	(1ULL << 62)
#define QCOW2_L2_OFFSET_MASK	0x00fffffffffffe00ULL	/* bits 9-55: host cluster */
#define QCOW2_L2_ZERO		(1ULL << 0)		/* v3: reads as zeros */
#define QCOW2_L2_RESERVED	0x3f000000000001feULL	/* bits 1-8, 56-61 */
/*
 * Extended L2 entries (incompatible bit 4): 128 bits each, the descriptor
 * above (its zero flag unused) then a subcluster bitmap.  Bit i (0..31):
 * subcluster i has data at host + i * subcluster size; bit 32 + i: it
 * reads as zeros; neither: it reads from the backing file (or as zeros).
 * Both set is a corruption, as is an allocated bit without a host cluster.
 */
#define QCOW2_SUBCLUSTERS	32
#define QCOW2_SC_ALLOC_ALL	0x00000000ffffffffULL
#define QCOW2_SC_ZERO_ALL	0xffffffff00000000ULL
/* Bitmap table entry: bits 9-55 data cluster (flags above, beside the directory). */
#define QCOW2_BME_OFFSET_MASK	0x00fffffffffffe00ULL

/* Host offsets are below 2^56 (QEMU's limit, 56 bits of L2 offset). */
#define QCOW2_MAX_HOST_OFFSET	(1ULL << 56)
#define QCOW2_MIN_CLUSTER_BITS	9
#define QCOW2_MAX_CLUSTER_BITS	21
#define QCOW2_MAX_L1_BYTES	(32U << 20)
#define QCOW2_MAX_RT_BYTES	(8U << 20)
#define QCOW2_MAX_BACKING_NAME	1023

/* The five kinds of cluster an L2 entry describes. */
enum qcow2_kind {
	QCOW2_UNALLOC,		/* this layer has nothing: backing file or zeros */
	QCOW2_ZERO_PLAIN,	/* reads as zeros, no host cluster */
	QCOW2_ZERO_ALLOC,	/* reads as zeros, host cluster kept */
	QCOW2_NORMAL,		/* data at a host cluster */
	QCOW2_COMPRESSED,	/* compressed data at a host byte offset */
};

struct qcow2;

/*
 * A cache of cluster-sized tables: L2 tables (host-endian u64 entries) or
 * refcount blocks (on-disk bytes).  Slots are found by host offset through
 * a hash; users pin a slot while they look at it.  Everything here is under
 * qcow2.lock; I/O happens with the lock dropped and the slot marked
 * loading (readers wait on @wq) or pinned.
 */
struct qcow2_cslot {
	uint64_t off;			/* host offset of the table; 0: empty (never a table) */
	void *buf;
	unsigned int pin;
	bool loading;
	bool dirty;
	/* Bytes [dlo, dhi) of the table changed since its last write (dhi clamped). */
	uint32_t dlo, dhi;
	uint64_t lru;
	uint64_t gen;			/* bumped by every change; write-back compares */
	int hnext;			/* hash chain, -1 ends */
};

struct qcow2_cache {
	struct qcow2_cslot *s;
	unsigned int nr;
	int *hash;
	unsigned int hash_mask;
	uint64_t lru_clock;
	bool is_l2;			/* entries are converted to host order */
	/*
	 * Makes room when every unpinned slot is dirty: writes the dirty
	 * tables back in crash-safe order, after what they depend on (QEMU's
	 * qcow2_cache_set_dependency).  Set at open by the layer that knows
	 * the order (flush.c for L2 tables); NULL: qcow2_cache_writeback(),
	 * for tables that depend on nothing (refcount blocks).
	 */
	int (*ordered_writeback)(struct qcow2 *q);
	unsigned int nr_dirty;
	struct exec_waitq wq;		/* loads done, slots unpinned */
};

/*
 * Kinds of metadata the overlap check (overlap.c) knows, as in QEMU's
 * overlap-check=cached.  HEADER must stay 0: index keys are offset | kind
 * and never 0.
 */
enum qcow2_meta {
	QCOW2_META_HEADER,
	QCOW2_META_L1,
	QCOW2_META_L2,
	QCOW2_META_RT,
	QCOW2_META_RB,
	QCOW2_META_SNAP_TABLE,
	QCOW2_META_SNAP_L1,
	QCOW2_META_BITMAP_DIR,
	QCOW2_META_NR
};
#define QCOW2_OL(kind)		(1U << (kind))

/* Host clusters holding metadata (overlap.c): a hash multiset. */
struct qcow2_ovl {
	uint64_t *slot;			/* host offset | kind; 0: empty */
	unsigned int bits;		/* log2 slots */
	uint64_t nr;
	bool on;			/* read-write open: writes are checked */
};

/* A host range to release once the L2 change that dropped it is on disk. */
struct qcow2_free {
	uint64_t off;
	uint64_t len;
};

struct qcow2 {
	struct tgt *t;
	struct bfile *file;
	struct bfile *dfile;		/* external data file, else file */
	/*
	 * External data file (incompatible bit 2): a data cluster's host
	 * offset is its guest offset in the data file, as QEMU places it, and
	 * is not counted in the image's refcounts.  data_raw (autoclear bit
	 * 1): every guest cluster is mapped there, the data file reads as the
	 * guest disk by itself.
	 */
	bool data_file;
	bool data_raw;
	unsigned int dio_align;		/* bytes; 512 when buffered */
	bool buffered;

	/* Header, as read (the first cluster, extensions included). */
	void *hdr_buf;
	uint32_t hdr_bytes;		/* what we rewrite: a dio_align multiple */
	unsigned int version;
	unsigned int cluster_bits;
	uint64_t cluster_size;
	uint64_t size_bytes;
	uint64_t incompat, compat, autoclear;
	unsigned int refcount_order;
	unsigned int header_length;
	unsigned int compression_type;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t bitmap_dir_offset, bitmap_dir_size;
	uint32_t nb_bitmaps;
	char *backing_name;
	char *backing_fmt;
	char *data_file_name;
	/*
	 * Encryption (crypt.c): the header's crypt_method, the extension
	 * that places the LUKS header, and once open the cipher; NULL crypt:
	 * not encrypted.
	 */
	uint32_t crypt_method;
	bool crypt_ext;
	uint64_t crypt_hdr_off, crypt_hdr_len;
	struct qcow2_crypt *crypt;
	/* Names of feature bits from the feature-name table: [type][bit]. */
	char *feature_names[3][64];

	/* Derived geometry. */
	bool extl2;			/* 128-bit L2 entries with subcluster bitmaps */
	unsigned int sc_bits;		/* log2 subcluster size (extl2), else cluster_bits */
	unsigned int l2_bits;		/* log2 entries per L2 table */
	unsigned int rb_bits;		/* log2 entries per refcount block */
	uint64_t refcount_max;
	unsigned int csize_shift;	/* compressed descriptor: sectors field */
	uint64_t csize_mask;
	uint64_t coffset_mask;

	/* Why writes are refused (snapshots, extended L2...); NULL: writable. */
	const char *no_write_reason;
	bool read_only;
	/* TGT_O_RECOVERABLE: see qcow2_writeback_recoverable(). */
	bool recoverable;

	/*
	 * lock protects every field below, the caches and the lists.  It is
	 * never held across an exec_* call.
	 */
	pthread_mutex_t lock;
	uint64_t l1_offset;
	uint32_t l1_size;
	uint64_t *l1;			/* host order, cluster-rounded buffer */
	uint8_t *l1_dirty;		/* per dio_align sector of the L1 */
	uint64_t rt_offset;
	uint32_t rt_clusters;
	uint64_t rt_size;		/* entries */
	uint64_t *rt;			/* host order */
	uint8_t *rt_dirty;		/* per dio_align sector */
	struct qcow2_cache l2c;
	struct qcow2_cache rbc;
	struct qcow2_ovl ovl;
	/*
	 * Set once the image was found corrupt while open: every later
	 * write and flush fails with -EIO (the corrupt bit is on disk).
	 */
	bool corrupt;

	/* Guest bytes being allocated, discarded or zeroed (W1). */
	struct range_lock inflight;
	uint64_t *l2_allocating;		/* L1 indexes getting a table */
	unsigned int nr_l2_allocating, cap_l2_allocating;
	struct exec_waitq l2_alloc_wq;		/* an L1 index got its table */

	bool flushing;			/* L1/L2 changes wait: a flush orders them */
	struct exec_waitq flush_wq;
	/*
	 * Recoverable devices' group write-back (io.c): modifying requests
	 * being served, write-backs started and finished, and the finished
	 * requests that wait for one.  Under lock.
	 */
	unsigned int rec_active;
	uint64_t rec_started, rec_done;
	int rec_err;
	struct exec_waitq rec_wq;

	/* Host clusters freed in memory, released after the next L2 write-back. */
	struct qcow2_free *frees;
	size_t nr_frees, cap_frees;

	/*
	 * Data I/O to host clusters found in L2, counted per epoch: a freed
	 * cluster is punched and reused only after every I/O that could
	 * still target it (an older epoch) has finished.
	 */
	unsigned int epoch;
	unsigned long epoch_io[2];
	struct exec_waitq epoch_wq;

	/*
	 * Persistent dirty bitmaps (bitmap.c, README.md "Dirty bitmaps").
	 * bm_lock (a plain mutex, never held across exec_*) guards the bits
	 * and bm_marking: a write marks the enabled bitmaps under it, only
	 * while bm_marking says that every enabled bitmap is in_use on disk.
	 * bm_mutex serializes stores and changes of the list, which readers
	 * of the list outside a store take too.  bm_active (atomic): some
	 * bitmap is enabled, so writes must look.
	 */
	struct qcow2_bitmap *bms;
	unsigned int nr_bms;
	pthread_mutex_t bm_lock;
	struct exec_mutex bm_mutex;
	bool bm_marking;
	bool bm_active;
	bool bm_loaded;			/* the directory was read at open */
	struct tgt_bitmap_info *bm_info;	/* for ->bitmap_list */
	/*
	 * Lazy refcounts (compatible bit 0, on a read-write open): refcount
	 * blocks are written only when the image is made clean; the dirty
	 * bit covers the tables written before them.  Under alloc_mutex.
	 */
	bool lazy;
	bool lazy_dirty;		/* we set the dirty bit on disk */

	/* Allocator: under alloc_mutex (which also serializes flushes). */
	struct exec_mutex alloc_mutex;
	uint64_t free_hint;		/* clusters below are in use */
	uint64_t end_cluster;		/* clusters from here on were never allocated */
	uint64_t file_bytes;		/* the file's size, grown ahead in steps */

	struct exec_mutex hdr_mutex;	/* header rewrites */

	/*
	 * Compressed writes (compress.c).  comp_next, the byte after the last
	 * compressed cluster (0: start a new host cluster), is under
	 * alloc_mutex: a free that empties its host cluster resets it.  The
	 * copy of the dio_align block holding it is under comp_mutex, which
	 * is held across each compressed cluster's allocation and write.
	 */
	struct exec_mutex comp_mutex;
	uint64_t comp_next;
	uint64_t comp_blk_off;		/* UINT64_MAX: no copy */
	uint8_t comp_blk[4096];
	void *zero_buf;			/* QCOW2_ZERO_BUF_BYTES of zeros */

	/* The snapshot table (nb_snapshots entries); changed only by verbs. */
	struct qcow2_snapshot *snaps;
	/*
	 * The bytes the table at snapshots_offset takes in the file, kept
	 * with nb_snapshots by snapshot.c so that overlap.c, below it, need
	 * not walk the entries.
	 */
	uint64_t snap_table_bytes;
	struct tgt_snapshot_info *snap_info;	/* for ->snapshot_list */
};

/*
 * W1: owns guest clusters [@first, @last] for an allocation, a discard or
 * a zeroing; sleeps while another owner holds any of them.  A second
 * writer of the same clusters so finds them allocated, never allocates
 * them twice.  Not with q->lock held.  Released by qcow2_clusters_unlock().
 */
static inline void qcow2_clusters_lock(struct qcow2 *q, struct range_entry *e,
				       uint64_t first, uint64_t last)
{
	range_lock(&q->inflight, e, first << q->cluster_bits,
		   (last - first + 1) << q->cluster_bits);
}

static inline void qcow2_clusters_unlock(struct qcow2 *q, struct range_entry *e)
{
	range_unlock(&q->inflight, e);
}

/*
 * Reads whole [off, off + len) from @f; zeros past end of file (every
 * layer reads tables and data this way).  Returns 0 or -errno.
 */
static inline int qcow2_read_at(struct bfile *f, void *buf, uint64_t len, uint64_t off)
{
	ssize_t n = bfile_pread(f, buf, len, off);

	if (n < 0)
		return n;
	memset((char *)buf + n, 0, len - n);
	return 0;
}

#define QCOW2_ZERO_BUF_BYTES	(1U << 20)

/*
 * The file grows ahead of allocation in steps of this size, with blocks
 * reserved (bfile_grow()), and back to its last cluster at close: a
 * write past the end of a file is slow on common filesystems (ext4
 * journals every such O_DIRECT write), and so is one into a hole, which
 * must allocate on its own; one into reserved blocks is not.
 */
#define QCOW2_GROW_BYTES	(8U << 20)

/* Helpers on geometry. */
static inline uint64_t qcow2_off_in_cluster(const struct qcow2 *q, uint64_t off)
{
	return off & (q->cluster_size - 1);
}

static inline uint64_t qcow2_l2_entries(const struct qcow2 *q)
{
	return 1ULL << q->l2_bits;
}

static inline uint64_t qcow2_l1_index(const struct qcow2 *q, uint64_t gc)
{
	return gc >> q->l2_bits;
}

static inline unsigned int qcow2_l2_index(const struct qcow2 *q, uint64_t gc)
{
	return gc & (qcow2_l2_entries(q) - 1);
}

/*
 * L2 entry @i of an in-memory (host order) table: its descriptor and, for
 * extended L2, its subcluster bitmap (0 otherwise).
 */
static inline uint64_t qcow2_l2_get(const struct qcow2 *q, const uint64_t *l2, uint64_t i)
{
	return l2[i << q->extl2];
}

static inline uint64_t qcow2_l2_get_bitmap(const struct qcow2 *q, const uint64_t *l2, uint64_t i)
{
	return q->extl2 ? l2[(i << 1) + 1] : 0;
}

static inline void qcow2_l2_set(const struct qcow2 *q, uint64_t *l2, uint64_t i, uint64_t e,
				uint64_t bitmap)
{
	l2[i << q->extl2] = e;
	if (q->extl2)
		l2[(i << 1) + 1] = bitmap;
}

/* header.c */
int qcow2_read_header(struct qcow2 *q, const char *file, unsigned int open_flags);
int qcow2_write_header_fields(struct qcow2 *q);
/*
 * Sets the bitmaps extension to @nb bitmaps in the directory at @dir_off
 * (@dir_size bytes), inserting it or (@nb 0) dropping it, and the
 * autoclear bitmaps bit with it (set: the extension is consistent), in
 * one synced header write.  Under hdr_mutex.  Returns 0 or -errno.
 */
int qcow2_write_bitmaps_ext(struct qcow2 *q, uint32_t nb, uint64_t dir_off,
			    uint64_t dir_size);
/*
 * Sets or clears the dirty bit (incompatible feature bit 0) with a synced
 * header write, under hdr_mutex.  Returns 0 or -errno.
 */
int qcow2_set_dirty_bit(struct qcow2 *q, bool dirty);
const char *qcow2_feature_name(struct qcow2 *q, unsigned int type, unsigned int bit);
void qcow2_header_free(struct qcow2 *q);
/*
 * Records that the image is corrupt (@why, logged once): the corrupt bit
 * goes to disk (v3, read-write) and every later write fails.  Not with
 * q->lock held.  Returns -EIO, for the caller to return.
 */
int qcow2_mark_corrupt(struct qcow2 *q, const char *why);

static inline bool qcow2_is_corrupt(struct qcow2 *q)
{
	return __atomic_load_n(&q->corrupt, __ATOMIC_ACQUIRE);
}

/* Full disk encryption header pointer extension (0x0537be77). */
struct qcow2_crypto_ext {
	uint64_t offset;		/* 0: the LUKS header's clusters */
	uint64_t length;		/* 8: bytes */
} __attribute__((packed));

/* crypt.c */
/*
 * Reads the encryption header an encrypted image names and unlocks it
 * with the image's secret (not with TGT_O_NO_IO: the header only, for
 * info).  Legacy AES images become read-only, and are refused with
 * TGT_O_FIXED_SIZE (a device).  Prints one line on failure.  Returns 0
 * (also when the image is not encrypted), -ENOKEY (no secret), -EACCES
 * (wrong passphrase), -EINVAL, -ENOTSUP or -errno.
 */
int qcow2_crypt_open(struct qcow2 *q, unsigned int flags);
/* Wipes and frees the cipher state. */
void qcow2_crypt_close(struct qcow2 *q);

static inline bool qcow2_encrypted(const struct qcow2 *q)
{
	return q->crypt != NULL;
}

/*
 * Decrypts in place @len bytes read from host offset @host, guest offset
 * @goff (all sector-aligned).  Returns 0, -EINVAL (unaligned) or -EIO.
 */
int qcow2_crypt_read(struct qcow2 *q, uint64_t host, uint64_t goff, void *buf, uint64_t len);
/*
 * Encrypts @len bytes of guest data at @goff from @src into @dst (may be
 * @src), for host offset @host.  Returns 0, -EROFS (legacy AES), -EINVAL
 * (unaligned) or -EIO.
 */
int qcow2_crypt_write(struct qcow2 *q, uint64_t host, uint64_t goff, const void *src,
		      void *dst, uint64_t len);
/*
 * Reads @len bytes of guest data at @goff from host offset @host of the
 * data file and decrypts them; any alignment (whole sectors are read
 * around a partial one).  Returns 0 or -errno.
 */
int qcow2_crypt_pread(struct qcow2 *q, void *buf, uint64_t len, uint64_t host, uint64_t goff);
/*
 * Encrypts @len bytes of guest data at @goff (sector-aligned) for host
 * offset @host and writes them there, through a bounce buffer (@buf is
 * left as it was).  Returns @len or -errno.
 */
ssize_t qcow2_crypt_pwrite(struct qcow2 *q, const void *buf, uint64_t len, uint64_t host,
			   uint64_t goff, int rwf);
/*
 * The "encrypt" block of `info`: qemu-img's text lines (indented from
 * column 0) in *@text, its JSON object in *@json, both held by the
 * image until it is closed.  Returns 0 or -ENOMEM.
 */
int qcow2_crypt_info(struct qcow2 *q, const char **text, const char **json);

/* overlap.c */
int qcow2_ovl_add(struct qcow2 *q, uint64_t off, enum qcow2_meta kind);
void qcow2_ovl_del(struct qcow2 *q, uint64_t off, enum qcow2_meta kind);
int qcow2_ovl_rebuild(struct qcow2 *q);
int qcow2_ovl_init(struct qcow2 *q);
void qcow2_ovl_free(struct qcow2 *q);
int qcow2_overlap_check(struct qcow2 *q, unsigned int ign, uint64_t off, uint64_t len);
/*
 * exec_pwrite() of metadata to the image file, behind the overlap check
 * (@ign as there): a write that would cover other metadata is not made.
 * Returns @len or -errno.
 */
ssize_t qcow2_pwrite_checked(struct qcow2 *q, unsigned int ign, const void *buf,
			     size_t len, uint64_t off);

/*
 * The check for guest data going to @off: with an external data file it
 * goes to another file, where there is no metadata to overlap.
 */
static inline int qcow2_overlap_check_data(struct qcow2 *q, uint64_t off, uint64_t len)
{
	return q->data_file ? 0 : qcow2_overlap_check(q, 0, off, len);
}

/* cluster.c */
enum qcow2_kind qcow2_l2_kind(const struct qcow2 *q, uint64_t l2e);
enum qcow2_kind qcow2_sc_kind(const struct qcow2 *q, uint64_t l2e, uint64_t bitmap,
			      unsigned int sc);
bool qcow2_sc_bitmap_valid(const struct qcow2 *q, uint64_t l2e, uint64_t bitmap);
uint64_t qcow2_sc_mask(unsigned int first, unsigned int last);
uint64_t qcow2_l2_host(const struct qcow2 *q, uint64_t l2e);
bool qcow2_l2_valid(const struct qcow2 *q, uint64_t l2e);
void qcow2_compressed_range(const struct qcow2 *q, uint64_t l2e, uint64_t *off,
			    uint64_t *len);

/*
 * A mapping of a guest run: @bytes from the guest offset all of one kind,
 * host-contiguous for NORMAL and ZERO_ALLOC.
 */
struct qcow2_map {
	enum qcow2_kind kind;
	bool copied;
	uint64_t l2e;			/* the first cluster's entry */
	uint64_t host;			/* host offset of the guest offset itself */
	uint64_t bytes;
	unsigned int epoch;		/* held for NORMAL, COMPRESSED, ZERO_ALLOC */
};

int qcow2_map(struct qcow2 *q, uint64_t off, uint64_t len, struct qcow2_map *m);
int qcow2_read_compressed(struct qcow2 *q, uint64_t l2e, void *cluster_buf);
int qcow2_l2_get_for_write(struct qcow2 *q, uint64_t gc, struct qcow2_cslot **slot);
void qcow2_epoch_get(struct qcow2 *q, unsigned int *epoch);
void qcow2_epoch_put(struct qcow2 *q, unsigned int epoch);

/* cache.c */
int qcow2_cache_init(struct qcow2_cache *c, unsigned int nr, bool is_l2,
		     int (*ordered_writeback)(struct qcow2 *q));
void qcow2_cache_destroy(struct qcow2 *q, struct qcow2_cache *c);
int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off,
		    bool fresh, struct qcow2_cslot **out);
/*
 * The slot caching the table at @off if it is loaded, else NULL, under
 * q->lock and valid only while it is held: no pin is taken.
 */
struct qcow2_cslot *qcow2_cache_lookup_locked(struct qcow2_cache *c, uint64_t off);
void qcow2_cache_put(struct qcow2 *q, struct qcow2_cache *c, struct qcow2_cslot *s);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, struct qcow2_cslot *s);
void qcow2_l2_mark_dirty(struct qcow2 *q, struct qcow2_cslot *s, uint64_t i, uint64_t n);
void qcow2_rb_mark_dirty(struct qcow2 *q, struct qcow2_cslot *s, uint64_t i);
int qcow2_cache_writeback(struct qcow2 *q, struct qcow2_cache *c);

/* refcount.c */
uint64_t qcow2_rb_get(const struct qcow2 *q, const void *rb, uint64_t i);
void qcow2_rb_set(const struct qcow2 *q, void *rb, uint64_t i, uint64_t v);
int qcow2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *val);
int qcow2_refcount_update(struct qcow2 *q, uint64_t off, uint64_t len, int delta);
int qcow2_load_refcount_table(struct qcow2 *q);

/* alloc.c */
int64_t qcow2_alloc_clusters(struct qcow2 *q, uint64_t n, uint64_t *got, bool *fresh);
int64_t qcow2_alloc_end(struct qcow2 *q, uint64_t n);
int64_t qcow2_alloc_contig(struct qcow2 *q, uint64_t n);
void qcow2_free_later(struct qcow2 *q, uint64_t off, uint64_t len);

/*
 * Queues a data cluster (or compressed range) dropped from an L2 entry.
 * With an external data file data clusters are not refcounted: nothing to
 * release (the guest cluster keeps its place in the data file).
 */
static inline void qcow2_free_data_later(struct qcow2 *q, uint64_t off, uint64_t len)
{
	if (!q->data_file)
		qcow2_free_later(q, off, len);
}
int qcow2_release_frees(struct qcow2 *q);

/* flush.c */
int qcow2_flush_meta(struct qcow2 *q);
int qcow2_writeback_recoverable(struct qcow2 *q);
int qcow2_flush_l2_cache(struct qcow2 *q);
int qcow2_mark_clean(struct qcow2 *q);
int qcow2_write_table_sectors(struct qcow2 *q, enum qcow2_meta kind, uint64_t table_off,
			      const uint64_t *table, uint8_t *dirty, uint64_t nr_sectors);
void qcow2_commit_begin(struct qcow2 *q);
void qcow2_commit_end(struct qcow2 *q);
bool qcow2_meta_dirty(struct qcow2 *q);

/* cow.c */
int qcow2_write_alloc(struct qcow2 *q, const void *buf, uint64_t off, uint64_t len,
		      uint64_t *done);

/* compress.c */
int64_t qcow2_write_compressed(struct qcow2 *q, const void *buf, uint64_t len, uint64_t off);

/* bitmap.c */
/*
 * Reads the bitmap directory at open (the bits are read when first
 * needed).  A directory QEMU would refuse is refused.  Returns 0 or
 * -errno (printed).
 */
int qcow2_bitmaps_load(struct qcow2 *q);
/*
 * Marks guest bytes [@off, @off + @len) in every enabled bitmap, before
 * the write, discard or write zeroes that changes them; the first such
 * call stores the bitmaps in_use (D0).  Not with q->lock held.  Returns 0
 * or -errno (the write must fail).
 */
int qcow2_bitmaps_track(struct qcow2 *q, uint64_t off, uint64_t len);
/* D1-D4, under bm_mutex: see bitmap.c. */
int qcow2_bitmaps_store(struct qcow2 *q, bool in_use);
/* At close: stores the bitmaps clean if anything changed.  Returns 0 or -errno. */
int qcow2_bitmaps_close(struct qcow2 *q);
/*
 * Resizes every bitmap to @size_bytes (grown bits clean), before the
 * image's size changes; the tables are rewritten by the next store.
 * Refused (-EBUSY) with an inconsistent bitmap.  Returns 0 or -errno.
 */
int qcow2_bitmaps_resize(struct qcow2 *q, uint64_t size_bytes);
/* Frees the bitmaps in memory, at close or after a failed load.  Cannot fail. */
void qcow2_bitmaps_free(struct qcow2 *q);
int qcow2_bitmap_list(struct tgt *t, const struct tgt_bitmap_info **list);
int qcow2_bitmap(struct tgt *t, enum tgt_bitmap_op op, const char *name,
		 struct tgt_bitmap_args *a);
int64_t qcow2_bitmap_status(struct tgt *t, const char *name, uint64_t off, uint64_t len,
			    bool *dirty);

/* io.c */
int qcow2_before_write(struct qcow2 *q);
int qcow2_read(struct tgt *t, void *buf, uint32_t len, uint64_t off);
int qcow2_write(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
		unsigned int flags);
int qcow2_flush(struct tgt *t);
int qcow2_discard(struct tgt *t, uint64_t off, uint64_t len);
int qcow2_write_zeroes(struct tgt *t, uint64_t off, uint64_t len, unsigned int flags);
int64_t qcow2_block_status(struct tgt *t, uint64_t off, uint64_t len,
			   struct tgt_extent *ext);

/* snapshot.c */
int qcow2_load_snapshots(struct qcow2 *q);
void qcow2_free_snapshots(struct qcow2 *q);
int qcow2_open_snapshot(struct qcow2 *q, const char *which);
int qcow2_snapshot_list(struct tgt *t, const struct tgt_snapshot_info **list);
int qcow2_snapshot(struct tgt *t, enum tgt_snapshot_op op, const char *name);
/*
 * Writes @entries of @l1 (host order; COPIED stripped if asked) to new
 * contiguous clusters, refcount 1 in the cache.  Returns the offset or -errno.
 */
int64_t qcow2_write_l1_copy(struct qcow2 *q, const uint64_t *l1, uint64_t entries,
			    bool strip_copied);

/* resize.c */
int qcow2_resize(struct tgt *t, uint64_t size_bytes, unsigned int flags);
int qcow2_make_empty(struct tgt *t);

/* backing.c */
int qcow2_set_backing(struct tgt *t, const char *name, const char *fmt);

/* amend.c */
int qcow2_amend(struct tgt *t, char *const *options, unsigned int nr_options);

/* check.c */
int qcow2_check(struct tgt *t, unsigned int fix, struct tgt_check_result *r);

/* create.c */
int qcow2_create(const struct tgt_create_opts *o);
/* Fills @f (QCOW2_FEATURE_TABLE_ENTRIES) with the feature-name table we write; returns the count. */
#define QCOW2_FEATURE_TABLE_ENTRIES	8
unsigned int qcow2_feature_table_fill(struct qcow2_feature_name *f);

#endif
