/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Targets: what a ublk device or an image verb reads and writes.
 *
 * One ops table per target (null, raw, and the image formats), listed in
 * tgt_table[] in targets/targets.c.  The same table serves the ublk queue
 * threads and the host-side verbs (io, bench, convert), so a format engine
 * is written once.  Capabilities (what the target can do) decide the ublk
 * device parameters, in the manner of nbdkit's can_* hooks.
 */
#ifndef IMGBLK_TGT_H
#define IMGBLK_TGT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "imglock.h"

/* Open flags. */
#define TGT_O_RDONLY	(1U << 0)	/* never write the file */
#define TGT_O_BUFFERED	(1U << 1)	/* use the page cache instead of O_DIRECT */
/*
 * Open for `check`: accept images marked corrupt or dirty or needing a
 * check, and do not repair them on open; ->check decides what to fix.
 */
#define TGT_O_CHECK	(1U << 2)
/*
 * Do not open the backing chain: for changing the backing file's name
 * (rebase -u), which must work when the old one is gone.
 */
#define TGT_O_NO_BACKING	(1U << 3)
/*
 * Image locks (include/imglock.h).  Every image file and backing file is
 * locked as QEMU 7.2 locks it, from its open to its close; these flags
 * say what the caller does with it, as QEMU's open flags do.
 *
 * FORCE_SHARE is qemu-img's -U: others may do anything, even write; we
 * only read, and take no lock that stands in anyone's way.  Read-only
 * opens only.  Inherited by the backing chain.
 */
#define TGT_O_FORCE_SHARE	(1U << 4)
/*
 * The caller reads metadata, never guest data (info, as QEMU's
 * BDRV_O_NO_IO): no consistent-read permission is taken, and backing
 * files, which info opens only to name them, take no locks.  Inherited.
 */
#define TGT_O_NO_IO		(1U << 5)
/*
 * The file must keep its size while open: a device, whose size the kernel
 * was told.  Others may not resize it (what qemu-nbd refuses them).
 */
#define TGT_O_FIXED_SIZE	(1U << 6)
/* The caller changes the file's size (resize): take that permission. */
#define TGT_O_RESIZE		(1U << 7)
/*
 * A device that outlives its server (add --recoverable): a write, discard
 * or write zeroes completes only once the metadata it changed is in the
 * file (written, not synced), so that a new server sees it.
 */
#define TGT_O_RECOVERABLE	(1U << 8)
/*
 * The file's name was read from an image (a backing file's, set by
 * tgt_open_backing()), not given by the user: it may not make its protocol
 * read local files (an NBD URI's tls-psk-file).  Everything else is a
 * user's name: names from images enter only through tgt_open_backing()
 * and a format's data file, where the backing policy is applied too.
 */
#define TGT_O_FROM_IMAGE	(1U << 9)

/* Longest backing chain we open: deeper is an error, like a loop. */
#define TGT_MAX_CHAIN	64

/* Options a target accepts on the command line (struct tgt_ops.options). */
#define TGT_OPT_FILE		(1U << 0)	/* -f FILE is required */
#define TGT_OPT_SIZE		(1U << 1)	/* --size SIZE is required */
#define TGT_OPT_BUFFERED	(1U << 2)	/* --buffered */

/* Write flags. */
#define TGT_W_FUA	(1U << 0)	/* durable before completion */
/*
 * Store each cluster compressed (caps.can_compress): @off is cluster
 * aligned and @len whole clusters, the last one may end at the end of the
 * device.  A cluster that does not shrink, or that this layer already
 * allocates, is written normally.  For `convert -c`; other targets never
 * see it.
 */
#define TGT_W_COMPRESS	(1U << 1)
/*
 * The data the image reads there already (copy-on-read): not a change of
 * the guest's content, so dirty bitmaps do not mark it (as in QEMU).
 */
#define TGT_W_SAME_DATA	(1U << 2)

/*
 * Which backing files an image may make us open (`add --backing=`): an
 * image from an untrusted source must not turn the server into a reader
 * of arbitrary host files.
 */
enum tgt_backing_policy {
	TGT_BACKING_ANY,	/* wherever the image says (the default, as QEMU) */
	TGT_BACKING_SAME_DIR,	/* only files in the overlay's own directory */
	TGT_BACKING_NONE,	/* an image with a backing file is refused */
};

struct tgt_config {
	const char *file;
	uint64_t size_bytes;
	unsigned int open_flags;
	/* Backing format named by the overlay; NULL means probe. */
	const char *format;
	/* Inherited by the whole backing chain. */
	enum tgt_backing_policy backing_policy;
	/* Most bytes of L2 tables a format keeps cached; 0: its default. */
	uint64_t l2_cache_bytes;
	/*
	 * Internal snapshot (id or name) to serve instead of the current
	 * state, read-only; NULL: the current state.  Not inherited by the
	 * backing chain.  Only formats with ->snapshot_list accept it.
	 */
	const char *snapshot;
};

/*
 * What the opened target can do; filled by ->open.  The ublk device
 * parameters are derived from this (ublksrv/params.c).
 */
struct tgt_caps {
	uint64_t size_bytes;
	unsigned int logical_bs_shift;	/* 9..12 */
	unsigned int physical_bs_shift;
	unsigned int io_opt_shift;	/* 0: no preference */
	uint32_t max_io_bytes;		/* 0: no limit of the target's own */
	bool read_only;
	bool can_flush;			/* has a volatile cache: FLUSH means something */
	bool can_fua;
	bool can_discard;
	bool can_write_zeroes;
	bool can_compress;		/* ->write takes TGT_W_COMPRESS */
	uint32_t discard_granularity_bytes;
};

/*
 * What an open image is to this process, which decides its image locks
 * with the open flags.  An image changes role with tgt_set_role().
 */
enum tgt_role {
	/* Opened by the caller: read, or written unless TGT_O_RDONLY. */
	TGT_ROLE_IMAGE,
	/*
	 * Read under an overlay: many readers may share it, and nobody may
	 * write or resize it, which would change what the overlay reads.
	 */
	TGT_ROLE_BACKING,
	/*
	 * A backing file that this process writes through a second handle
	 * (commit): read here, and nothing refused to others, so the second
	 * handle, which takes a writer's locks, can open it.
	 */
	TGT_ROLE_WRITTEN_BASE,
};

struct tgt {
	const struct tgt_ops *ops;
	struct tgt_config cfg;
	struct tgt_caps caps;
	void *priv;			/* the target's own state */
	/* Backing chain: the image below (opened by the format), the one above. */
	struct tgt *backing;
	const struct tgt *overlay;
	unsigned int chain_depth;	/* 0 for the top image */
	dev_t st_dev;			/* identity of the file, for loop detection */
	ino_t st_ino;
	/* Set and held by the framework from open to close (tgt_open()). */
	enum tgt_role role;
	struct img_lock lock;		/* the image file's */
	struct img_lock data_lock;	/* an external data file's (tgt_lock_data_file()) */
};

/* Allocation status of a range (->block_status), as qemu-img map reports it. */
#define TGT_EXT_ALLOCATED	(1U << 0)	/* this layer decides the content */
#define TGT_EXT_ZERO		(1U << 1)	/* reads as zeros */
#define TGT_EXT_DATA		(1U << 2)	/* backed by host data */
#define TGT_EXT_OFFSET_VALID	(1U << 3)	/* host_off is the raw data's place */

struct tgt_extent {
	unsigned int flags;
	uint64_t host_off;
};

/* Result of ->check, with qemu-img check's accounting. */
struct tgt_check_result {
	uint64_t corruptions;
	uint64_t leaks;
	uint64_t check_errors;
	uint64_t corruptions_fixed;
	uint64_t leaks_fixed;
	uint64_t total_clusters;
	uint64_t allocated_clusters;
	uint64_t fragmented_clusters;
	uint64_t compressed_clusters;
	uint64_t image_end_offset;
};

/* What ->check may repair (qemu-img check -r leaks|all). */
#define TGT_FIX_LEAKS	(1U << 0)
#define TGT_FIX_ERRORS	(1U << 1)

/* Flags of ->resize. */
#define TGT_RESIZE_SHRINK	(1U << 0)	/* cutting the end off is wanted */

/* Options of `imgblk create`. */
struct tgt_create_opts {
	const char *file;
	uint64_t size_bytes;		/* 0 with a backing file: its size */
	const char *backing_file;
	const char *backing_fmt;
	/* -o options not consumed by the generic layer, "key=value" each. */
	char **options;
	unsigned int nr_options;
};

/* One internal snapshot, as `imgblk snapshot -l` lists it. */
struct tgt_snapshot_info {
	const char *id;
	const char *name;
	uint64_t vm_state_bytes;
	uint32_t date_sec;
	uint32_t date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t icount;		/* UINT64_MAX: not recorded */
	uint64_t size_bytes;		/* the guest size when it was taken */
};

/* What ->snapshot does. */
enum tgt_snapshot_op {
	TGT_SNAPSHOT_CREATE,		/* take one named @name */
	TGT_SNAPSHOT_APPLY,		/* revert to the one with id or name @name */
	TGT_SNAPSHOT_DELETE,		/* delete the first one named @name */
};

/* One persistent dirty bitmap, as `imgblk info` lists it (qemu-img's fields). */
struct tgt_bitmap_info {
	const char *name;
	uint64_t granularity_bytes;
	bool in_use;			/* found in use: inconsistent, only removable */
	bool enabled;			/* "auto": every write marks it */
	bool busy;			/* taken by a running backup (TGT_BITMAP_TAKE) */
};

/* What ->bitmap does (qemu-img bitmap's operations, QMP's block-dirty-bitmap-*). */
enum tgt_bitmap_op {
	TGT_BITMAP_ADD,			/* new, empty, enabled unless @disabled */
	TGT_BITMAP_REMOVE,
	TGT_BITMAP_CLEAR,
	TGT_BITMAP_ENABLE,
	TGT_BITMAP_DISABLE,
	TGT_BITMAP_MERGE,		/* marks what @src's bitmap @src_name marks */
	TGT_BITMAP_FLUSH,		/* stores every bitmap now, in_use cleared */
	/*
	 * An incremental backup's start (QEMU's bitmap successor): the
	 * bits as they are now are kept aside and lent to the caller
	 * (@bits, @nr_bits, @granularity_bytes), read-only until RELEASE;
	 * with @clear the bitmap then records only the writes from now on.
	 * The bitmap is busy: the other ops refuse it.  What is stored on
	 * disk meanwhile is both sets, so a crash loses nothing.  Refused
	 * (-EBUSY) for a disabled, inconsistent or busy bitmap.
	 */
	TGT_BITMAP_TAKE,
	/* The backup's end: with @restore the taken bits are marked again. */
	TGT_BITMAP_RELEASE,
};

struct tgt_bitmap_args {
	uint64_t granularity_bytes;	/* ADD; 0: the format's default */
	bool disabled;			/* ADD: created disabled */
	struct tgt *src;		/* MERGE: the source image (may be @t) */
	const char *src_name;
	bool clear;			/* TAKE */
	bool restore;			/* RELEASE */
	const uint64_t *bits;		/* TAKE: out, the bits taken (bit i: granule i) */
	uint64_t nr_bits;		/* TAKE: out */
};

/*
 * Format-specific facts for `imgblk info`, appended by ->info as
 * key/value pairs; the verb prints them as text or JSON.
 */
#define TGT_INFO_MAX	32
struct tgt_info {
	unsigned int n;
	struct {
		const char *key;
		char value[256];
		bool is_string;		/* quote it in JSON */
		/*
		 * No value: the verb prints a list here from the target's
		 * own member named by @key ("bitmaps": ->bitmap_list).
		 */
		bool is_list;
		/*
		 * A nested block instead of value (qcow2's "encrypt"): its
		 * text lines, indented from column 0, and its JSON object.
		 * Owned by the target, valid while it is open.
		 */
		const char *block_text;
		const char *block_json;
	} kv[TGT_INFO_MAX];
	bool encrypted;			/* "encrypted: yes" */
	uint64_t cluster_size;		/* 0: not a clustered format */
	/* The backing file as the image names it, and its declared format. */
	const char *backing_file;
	const char *backing_fmt;
	/* Left open while being changed (qcow2's dirty bit): qemu-img's "dirty-flag". */
	bool dirty;
};

/*
 * A target.  Unless said otherwise, I/O members run inside a coroutine of
 * the calling thread's executor (lib/exec.c), may be called from several
 * threads at once, and return 0 (or the byte count for reads and writes)
 * on success and -errno on failure.  Offsets and lengths are in bytes and
 * lie within the device; the ublk layer has already checked them.
 */
struct tgt_ops {
	/* Required.  Name given to -t. */
	const char *name;
	/* Required.  One line for `imgblk help`. */
	const char *summary;
	/* Required.  TGT_OPT_* bits this target accepts. */
	unsigned int options;

	/*
	 * Required.  Opens @t->cfg and fills @t->caps and @t->priv (and
	 * @t->backing for a format with a backing file).  Called once, in a
	 * coroutine, before any I/O.  On failure it prints one line saying
	 * why (naming the file), releases what it acquired and returns -errno.
	 */
	int (*open)(struct tgt *t);
	/*
	 * Required.  Writes back what is dirty and releases what ->open
	 * acquired (not the backing chain: tgt_close() does that).  Called in
	 * a coroutine once no other I/O is in flight.
	 */
	int (*close)(struct tgt *t);

	/* Required.  Reads @len bytes at @off into @buf; returns @len or -errno. */
	int (*read)(struct tgt *t, void *buf, uint32_t len, uint64_t off);
	/* Required unless always read-only.  Returns @len or -errno. */
	int (*write)(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
		     unsigned int flags);
	/* Optional (caps.can_flush).  Makes every completed write durable. */
	int (*flush)(struct tgt *t);
	/* Optional (caps.can_discard).  The range may read back as anything. */
	int (*discard)(struct tgt *t, uint64_t off, uint64_t len);
	/* Optional (caps.can_write_zeroes).  The range reads back as zeros. */
	int (*write_zeroes)(struct tgt *t, uint64_t off, uint64_t len,
			    unsigned int flags);

	/*
	 * Image formats.  Optional unless said otherwise; a target without
	 * them is not an image format (null).
	 */

	/*
	 * How sure the target is that @buf, the first @len bytes of a file
	 * (up to 4096), is in its format: 0 no, 100 certain (a magic number).
	 * Plain; no coroutine needed.
	 */
	int (*probe)(const void *buf, size_t len);
	/* Creates an image file; prints one line on failure. */
	int (*create)(const struct tgt_create_opts *o);
	/*
	 * Describes the run starting at @off (at most @len bytes) that has one
	 * status in this layer.  Returns its length in bytes (> 0) or -errno.
	 */
	int64_t (*block_status)(struct tgt *t, uint64_t off, uint64_t len,
				struct tgt_extent *ext);
	/* Checks the open image's metadata, repairing what @fix allows. */
	int (*check)(struct tgt *t, unsigned int fix, struct tgt_check_result *r);
	/* Appends format-specific facts for `imgblk info`. */
	void (*info)(struct tgt *t, struct tgt_info *info);
	/*
	 * Changes the virtual size to @size_bytes, a multiple of 512 (grow;
	 * shrink only with TGT_RESIZE_SHRINK).  The image is open read-write
	 * and nothing else uses it.  Prints one line on failure.
	 */
	int (*resize)(struct tgt *t, uint64_t size_bytes, unsigned int flags);
	/*
	 * Records @name (NULL: none) as the backing file, with format @fmt
	 * (NULL: probe when opened), without touching any data.  The image is
	 * open read-write, with TGT_O_NO_BACKING (rebase -u) or with its old
	 * chain (rebase, which copied and flushed what differs first), and
	 * nothing else uses it.  Prints one line on failure.
	 */
	int (*set_backing)(struct tgt *t, const char *name, const char *fmt);
	/*
	 * Changes creation options of the image (`amend -o`), given as
	 * "key=value" strings.  The image is open read-write and nothing else
	 * uses it.  Prints one line on failure (-ENOTSUP: an option this
	 * target cannot change yet).
	 */
	int (*amend)(struct tgt *t, char *const *options, unsigned int nr_options);
	/*
	 * Makes every cluster of this layer unallocated, so the image reads
	 * its backing file again (commit empties the overlay).  The image is
	 * open read-write and nothing else uses it.  Prints one line on failure.
	 */
	int (*make_empty)(struct tgt *t);
	/*
	 * Called about once a second, in a coroutine of the server's
	 * housekeeping thread, while a device serves the target (not by the
	 * one-shot verbs, whose ->close does the same work): deferred
	 * metadata work such as QED's clearing of need-check after 5 s
	 * without allocating writes.
	 */
	void (*tick)(struct tgt *t);
	/*
	 * Optional: internal snapshots.  ->snapshot_list sets *@list to an
	 * array owned by the target (valid until the next snapshot call or
	 * close) and returns its length, or -errno.  ->snapshot runs @op on
	 * an image open read-write that nothing else uses; it prints one line
	 * on failure (-ENOENT: no such snapshot) and returns 0 or -errno.
	 */
	int (*snapshot_list)(struct tgt *t, const struct tgt_snapshot_info **list);
	int (*snapshot)(struct tgt *t, enum tgt_snapshot_op op, const char *name);
	/*
	 * Optional: persistent dirty bitmaps.  ->bitmap_list sets *@list to
	 * an array owned by the target (valid until the next bitmap call or
	 * close) and returns its length, or -errno.  ->bitmap runs @op on
	 * bitmap @name of an image open read-write (it may be served: the
	 * change is made while requests run); it prints one line on failure
	 * (-ENOENT: no such bitmap, -EEXIST: @name exists, -EBUSY: the
	 * bitmap is in use) and returns 0 or -errno.  ->bitmap_status
	 * describes the run at @off (at most @len bytes) of bitmap @name:
	 * *@dirty says whether its granules are marked; it returns the run
	 * length (> 0) or -errno.
	 */
	int (*bitmap_list)(struct tgt *t, const struct tgt_bitmap_info **list);
	int (*bitmap)(struct tgt *t, enum tgt_bitmap_op op, const char *name,
		      struct tgt_bitmap_args *a);
	int64_t (*bitmap_status)(struct tgt *t, const char *name, uint64_t off, uint64_t len,
				 bool *dirty);
	/*
	 * Optional.  Makes the open image, which was written, read-only in
	 * place: on disk as ->close leaves it (metadata written back, clean,
	 * the file cut back to its last cluster), in memory still open, its
	 * caches kept, with caps.read_only set.  Nothing else uses it
	 * meanwhile; it is never written again.  Without it tgt_reopen()
	 * closes the format and opens it again, which costs a cold cache and
	 * the open's reads while the device's I/O is held.
	 */
	int (*set_read_only)(struct tgt *t);
};

/*
 * Every tgt_ops member runs inside a coroutine, ->open and ->close
 * included (they read and write metadata through the executor).  These
 * wrappers run them from plain code too, on a temporary executor when the
 * calling thread has none.  tgt_open() fills the generic fields of @t
 * (file identity) and takes the image locks of TGT_ROLE_IMAGE before
 * calling ->open, so an image another process holds is refused before a
 * byte of it is read; tgt_close() closes the backing chain after ->close
 * and then drops the locks.  Both return 0 or -errno (-EBUSY: another
 * process holds the image, after one line saying which lock).
 */
int tgt_open(struct tgt *t);
int tgt_close(struct tgt *t);

/*
 * Closes and frees @t and the chain below it (every node allocated as
 * tgt_open_backing() allocates them: the struct and cfg.file malloc'ed),
 * for a chain detached from a device.  NULL is a no-op.  Returns 0 or
 * the first -errno of a ->close.
 */
int tgt_free_chain(struct tgt *t);

/*
 * Makes @b (NULL: none) the backing image of @overlay in memory only:
 * links both ways and renumbers chain_depth below.  The caller has made
 * @overlay's header name @b, or will.  Returns 0, or -ELOOP when the
 * chain would be deeper than TGT_MAX_CHAIN (nothing changed).
 */
int tgt_link_backing(struct tgt *overlay, struct tgt *b);

/*
 * Reopens the open image @t in @role, read-only or read-write, as QEMU's
 * bdrv_reopen does when a node changes role: the old top of an external
 * snapshot becomes a read-only backing file (TGT_ROLE_BACKING, true), a
 * base that a commit pivots to becomes the written top (TGT_ROLE_IMAGE,
 * false).  ->close writes the metadata back (the image is clean on disk,
 * as qemu-img check wants of a backing file) and the format is opened
 * again with or without TGT_O_RDONLY, keeping @t->backing (the chain is
 * not reopened from the name).  Locks stay on the same descriptor:
 * those gained are taken before ->close, those given up dropped after
 * it, each change the union first, so the file is never unprotected.
 * Nothing may use @t meanwhile (the device is drained).  Runs in a
 * coroutine.  Returns 0; or -errno (-EBUSY: another process holds a lock
 * the new role needs) with @t open again as it was; or -EIO, after one
 * line, when not even that worked: @t->priv is NULL and @t unusable.
 */
int tgt_reopen(struct tgt *t, enum tgt_role role, bool read_only);

/*
 * Opens @file as format @fmt (NULL: probe) with TGT_O_* @flags into @t,
 * which the caller zeroes.  Prints one line on failure.  Returns 0 or
 * -errno.
 */
int tgt_open_file(struct tgt *t, const char *file, const char *fmt,
		  unsigned int flags);

/* True if @ops is an image format (or raw): something a file can hold. */
bool tgt_is_format(const struct tgt_ops *ops);

/*
 * Status of the run at @off (at most @len bytes) through the whole chain
 * below and including @t: the first layer that allocates it decides.
 * Sets *@depth to that layer's depth below @t (when no layer allocates
 * it: the depth of the last layer asked) and *@layer to it (NULL then).
 * Returns the run length (> 0) or -errno.
 */
int64_t tgt_chain_status(struct tgt *t, uint64_t off, uint64_t len,
			 struct tgt_extent *ext, unsigned int *depth,
			 struct tgt **layer);

/*
 * Guesses the format of @file, a name the user gave, from its first
 * bytes: the target whose ->probe is surest, raw when none claims it.
 * Returns NULL (having printed why) if the file cannot be read.
 */
const struct tgt_ops *tgt_probe_file(const char *file);

/*
 * The BFILE_* flag for opening @t's file: BFILE_USER_NAME unless its name
 * came from an image (TGT_O_FROM_IMAGE).
 */
unsigned int tgt_bfile_name_flags(const struct tgt *t);

/*
 * Changes the role of the open image @t, and so its image locks: the new
 * locks are taken and checked before the old ones are dropped, and a
 * refused change leaves @t as it was.  Returns 0, or -EBUSY after
 * printing which lock another process holds, or -errno.
 */
int tgt_set_role(struct tgt *t, enum tgt_role role);

/*
 * Locks @path, the external data file of the image @t (which holds the
 * raw guest data), as QEMU locks one, in @t->data_lock; called by a
 * format's ->open before it reads the file.  The framework changes it
 * with @t's role and drops it at close.  Returns 0 or -errno after
 * printing why.
 */
int tgt_lock_data_file(struct tgt *t, const char *path);

/*
 * Closes and frees the backing chain below @t, locks included, for a
 * format whose ->open fails after tgt_open_backing() succeeded (tgt_close()
 * is not called after a failed open).  Runs in a coroutine.
 */
void tgt_drop_backing(struct tgt *t);

/*
 * Opens the backing file @name of @overlay with format @fmt (NULL: probe;
 * "raw" is never probed), read-only, with the locks of TGT_ROLE_BACKING.  A relative @name is relative to the
 * overlay's directory.  Refuses loops and chains deeper than TGT_MAX_CHAIN
 * with -ELOOP.  On success @overlay->backing is set.  Prints one line on
 * failure.  Returns 0 or -errno.  Runs in a coroutine.
 */
int tgt_open_backing(struct tgt *overlay, const char *name, const char *fmt);

/*
 * Applies @overlay's backing policy (cfg.backing_policy) and
 * --allow-protocol to @path, a file its image names (@what: "backing
 * file", "data file"); whatever the policy, such a name may not make its
 * protocol read a local file (bfile_nbd_local_param()).  Returns 0 or
 * -EPERM (or the -errno of resolving @path) after printing why.
 */
int tgt_file_allowed(const struct tgt *overlay, const char *path, const char *what);

/*
 * Opens @file for a format's ->create, read-write, creating it (mode 0644)
 * if missing, and empties it only once the image locks show that no other
 * process uses it: an image in use is never truncated (what QEMU's create
 * checks too).  The locks (write and resize used, resize refused) live on
 * the returned descriptor and go with its close.  Returns the descriptor,
 * -EBUSY after printing which lock is held, or another -errno, not printed.
 */
int tgt_create_file(const char *file);

/*
 * Reads @len bytes at @off from the backing image @b, zeros past its end
 * (a backing file shorter than the overlay).  Returns @len or -errno.
 */
int tgt_read_backing(struct tgt *b, void *buf, uint32_t len, uint64_t off);

/* Resolves @name against the directory of @base into @out (PATH_MAX). */
void tgt_resolve_path(const char *base, const char *name, char *out, size_t len);

/* Returns the target named @name, or NULL. */
const struct tgt_ops *tgt_find(const char *name);

extern const struct tgt_ops *const tgt_table[];
extern const unsigned int tgt_table_len;

extern const struct tgt_ops null_tgt_ops;
extern const struct tgt_ops raw_tgt_ops;
extern const struct tgt_ops qed_tgt_ops;
extern const struct tgt_ops qcow2_tgt_ops;

#endif
