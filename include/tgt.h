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
#include <stdint.h>

/* Open flags. */
#define TGT_O_RDONLY	(1U << 0)	/* never write the file */
#define TGT_O_BUFFERED	(1U << 1)	/* use the page cache instead of O_DIRECT */

/* Options a target accepts on the command line (struct tgt_ops.options). */
#define TGT_OPT_FILE		(1U << 0)	/* -f FILE is required */
#define TGT_OPT_SIZE		(1U << 1)	/* --size SIZE is required */
#define TGT_OPT_BUFFERED	(1U << 2)	/* --buffered */

/* Write flags. */
#define TGT_W_FUA	(1U << 0)	/* durable before completion */

struct tgt_config {
	const char *file;
	uint64_t size_bytes;
	unsigned int open_flags;
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
	uint32_t discard_granularity_bytes;
};

struct tgt {
	const struct tgt_ops *ops;
	struct tgt_config cfg;
	struct tgt_caps caps;
	void *priv;			/* the target's own state */
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
	 * Required.  Opens @t->cfg and fills @t->caps and @t->priv.  Called
	 * once, from the main thread, outside any coroutine.  On failure it
	 * prints one line saying why (naming the file) and returns -errno.
	 */
	int (*open)(struct tgt *t);
	/* Required.  Releases what ->open acquired; main thread. */
	void (*close)(struct tgt *t);

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
};

/* Returns the target named @name, or NULL. */
const struct tgt_ops *tgt_find(const char *name);

extern const struct tgt_ops *const tgt_table[];
extern const unsigned int tgt_table_len;

extern const struct tgt_ops null_tgt_ops;
extern const struct tgt_ops raw_tgt_ops;

#endif
