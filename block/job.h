/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Block jobs: long copies that run inside the server while the device
 * serves I/O (QEMU's block jobs): backup, mirror, and later commit and
 * stream.  A job belongs to one device (one job per device at a time),
 * runs on a thread of its own with its own executor, and is driven from
 * the control thread: pause, resume, cancel, complete, set-speed, query.
 * What it reports goes to the device's event function as
 * BLOCK_JOB_READY, BLOCK_JOB_COMPLETED, BLOCK_JOB_CANCELLED and
 * BLOCK_JOB_ERROR.  job.c tells the design; docs/block-layer.md the rest.
 *
 * Threads: the blk_job_*() control functions run on any thread but a
 * queue thread or the job's own; the driver helpers (blk_job_yield(),
 * blk_job_io_begin(), ...) run in a coroutine of the job's thread.
 */
#ifndef IMGBLK_JOB_H
#define IMGBLK_JOB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "block.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

#define BLK_JOB_ID_MAX		64
/* Bytes a job copies per I/O, and how many copies it keeps in flight. */
#define BLK_JOB_CHUNK_BYTES	(1U << 20)
#define BLK_JOB_WORKERS		4

/* QEMU's JobStatus, as far as our jobs go through it. */
enum blk_job_status {
	BLK_JOB_CREATED,
	BLK_JOB_RUNNING,
	BLK_JOB_PAUSED,
	BLK_JOB_READY,
	BLK_JOB_STANDBY,	/* paused while ready */
	BLK_JOB_ABORTING,
	BLK_JOB_CONCLUDED,
};

enum blk_job_event_type {
	BLK_JOB_EV_READY,
	BLK_JOB_EV_COMPLETED,	/* also a ready mirror cancelled: the target is a copy */
	BLK_JOB_EV_CANCELLED,
	BLK_JOB_EV_ERROR,	/* an I/O error stopped the job (it then completes with it) */
};

/* A job as query-block-jobs shows it, copied out under the job's lock. */
struct blk_job_info {
	char id[BLK_JOB_ID_MAX];
	const char *type;
	enum blk_job_status status;
	uint64_t len, offset, speed;
	bool busy, paused, ready;
	char error[256];	/* empty: none */
};

struct blk_job;

struct blk_job_driver {
	const char *type;		/* "backup", "mirror", ... */
	/*
	 * Required.  Does the job, in a coroutine of the job's thread.
	 * Returns 0 when done (the job completes), -ECANCELED when it
	 * stopped for a cancel, or -errno after blk_job_error() said why.
	 */
	int (*run)(struct blk_job *job);
	/* Required.  Releases what the driver holds, once ->run returned. */
	void (*free)(struct blk_job *job);
	/* Converges and waits in READY for a complete (mirror). */
	bool can_complete;
};

struct blk_job {
	struct blk_dev *dev;
	const struct blk_job_driver *drv;
	void *priv;			/* the driver's */
	char id[BLK_JOB_ID_MAX];
	uint32_t cluster_bytes;		/* the smallest speed is one of these a second */
	bool can_complete;		/* drv->can_complete, and the driver can switch */
	/*
	 * Progress, atomic: guest requests count it (copy-before-write, a
	 * mirror's notifier) and must not wait for the job's lock.
	 */
	uint64_t len, offset;

	pthread_mutex_t lock;		/* the fields below */
	struct exec_waitq wq;		/* the job's coroutines waiting for a change */
	enum blk_job_status status;
	uint64_t speed;
	unsigned int pause_count;	/* pauses asked for (a user's, a drain's) */
	bool cancel, force, complete;
	bool ready, busy;
	char error[256];
	int64_t rate_next_ns;		/* the rate limit's clock (blk_job_rate()) */

	/* The job thread holds a drain: its I/O does not wait at the gate. */
	bool in_drain;
	pthread_t thread;
};

/*
 * Where a job's events go (blk_job_event_fn, block.h; @type an enum
 * blk_job_event_type): the plane sets it once per device, before any job
 * starts.  Called from the job's thread; must not block.  @err is the
 * job's error (NULL: none) for COMPLETED, the failed operation for ERROR.
 */
void blk_job_set_event_fn(struct blk_dev *d, blk_job_event_fn fn, void *ctx);

/*
 * Fills the generic part of @job (zeroed by the caller, with @priv set)
 * for driver @drv on device @d.  @id NULL: the job takes the device's
 * name ("ublkbN"), as QEMU takes the device's.  @speed in bytes/s, 0
 * unlimited.  Returns 0, or -EINVAL when @speed is below one
 * @cluster_bytes a second (reason in @why, @why_len bytes).
 */
int blk_job_init(struct blk_job *job, struct blk_dev *d, const struct blk_job_driver *drv,
		 const char *id, uint64_t speed, uint32_t cluster_bytes, char *why,
		 size_t why_len);

/*
 * Starts @job on its own thread, once the driver set up what it needs.
 * The job then owns itself: it frees itself (->free, then free(@job):
 * allocate it with malloc) when it ends.  Returns 0, or -EBUSY when the
 * device already runs a job, or -errno; on failure nothing was started
 * and the caller still owns @job.
 */
int blk_job_start(struct blk_job *job);

/*
 * Control of the device's job, by id (NULL: whichever runs).  Each
 * returns 0, -ENOENT when no such job runs, or: pause -EALREADY (paused
 * already), resume -EALREADY (not paused), complete -EBUSY (not ready)
 * or -EOPNOTSUPP (a job that does not converge), set_speed -EINVAL
 * (below one cluster a second).
 *
 * cancel: a job that is not ready stops where it is (CANCELLED); a ready
 * one that converges first makes the target a consistent copy of this
 * moment and ends COMPLETED without switching (QEMU's mirror), unless
 * @force, which stops at once (CANCELLED).
 */
int blk_job_pause(struct blk_dev *d, const char *id);
int blk_job_resume(struct blk_dev *d, const char *id);
int blk_job_cancel(struct blk_dev *d, const char *id, bool force);
int blk_job_complete(struct blk_dev *d, const char *id);
int blk_job_set_speed(struct blk_dev *d, const char *id, uint64_t speed);

/* Copies the running job's state into @out.  Returns 0 or -ENOENT. */
int blk_job_query(struct blk_dev *d, struct blk_job_info *out);

/*
 * The device is going away: cancels its job (force) and waits until it
 * has ended.  Before blk_shutdown(), so a job waiting at a closed gate
 * sees the cancel.
 */
void blk_job_shutdown(struct blk_dev *d);

/* "running", "ready", ... as QEMU's JobStatus. */
const char *blk_job_status_name(enum blk_job_status s);

/*
 * Driver helpers, in a coroutine of the job's thread.
 *
 * blk_job_yield(): between two pieces of work: sleeps while the job is
 * paused.  Returns 0, or -ECANCELED when the job must stop (a cancel
 * before ready, a forced one, or the device going away).
 */
int blk_job_yield(struct blk_job *job);
/* True once a cancel (or complete, with @complete) was asked for. */
bool blk_job_cancel_requested(struct blk_job *job, bool *force);
bool blk_job_complete_requested(struct blk_job *job);
/*
 * Counts @bytes of work against the speed limit, sleeping as long as the
 * limit asks (waking for a cancel or a change of speed).
 */
void blk_job_rate(struct blk_job *job, uint64_t bytes);
/* Progress: the work is @len bytes; @bytes more of it are done. */
void blk_job_set_len(struct blk_job *job, uint64_t len);
void blk_job_progress(struct blk_job *job, uint64_t bytes);
/* The job converged: READY, and the event. */
void blk_job_set_ready(struct blk_job *job);
/* Records why the job fails (kept for the COMPLETED event) and sends BLOCK_JOB_ERROR. */
void blk_job_error(struct blk_job *job, const char *op, const char *fmt, ...) __printf(3, 4);
/*
 * Sleeps until something changes for the job (a pause, cancel,
 * complete, speed) or @ms pass.
 */
void blk_job_wait(struct blk_job *job, unsigned int ms);

/*
 * The job's own I/O on the device's chain passes the gate as a request
 * does: it waits while the device is drained or paused, and a drain
 * waits for it, so the chain does not change under it.  Returns 0, or
 * -ECANCELED when the job must stop while waiting.  Inside the job's own
 * drain (blk_job_drain_begin()) both are no-ops.
 */
int blk_job_io_begin(struct blk_job *job);
void blk_job_io_end(struct blk_job *job);
/* Drains the device from the job's thread: no job I/O may be in flight. */
void blk_job_drain_begin(struct blk_job *job);
void blk_job_drain_end(struct blk_job *job);

/*
 * Runs @fn(@job, @arg) in @n coroutines of the job's thread and waits
 * for all.  Returns 0, or the first -errno one of them returned.
 */
int blk_job_workers(struct blk_job *job, unsigned int n,
		    int (*fn)(struct blk_job *job, void *arg), void *arg);

/* What backup and mirror copy to. */
struct blk_copy_opts {
	const char *id;			/* NULL: the device's name */
	uint64_t speed;			/* bytes/s, 0: unlimited */
	/*
	 * Open read-write, as large as the device.  From a successful start
	 * the job owns it: it flushes, closes and frees it (and its
	 * cfg.file) at the end, or hands it to @pivot.  Both malloc'ed.
	 */
	struct tgt *target;
	/*
	 * Only what the top image allocates is copied: the target's
	 * backing file (the top's) provides the rest.  Else the device's
	 * whole content.
	 */
	bool sync_top;
	/* The target reads zeros where nothing was written (a new image without backing). */
	bool target_zeroed;
	/*
	 * Active commit: the target is @base, a node of the device's own
	 * chain.  Only what the images above it provide is copied; the job
	 * reopens it read-write for its run and read-only at its end unless
	 * it pivoted to it, and never closes it.
	 */
	struct tgt *base;
	/*
	 * Backup only: copy just what persistent bitmap @bitmap of the
	 * device's top marks (QEMU's sync=bitmap; the job keeps a copy of
	 * the name), NULL: as @sync_top says.
	 * The bitmap is taken at the start (TGT_BITMAP_TAKE) and records
	 * the writes from then on; @bitmap_keep (bitmap-mode=never, a
	 * differential backup) keeps its marks whatever happens, else
	 * (on-success, an incremental backup) they go when the job
	 * succeeds and come back when it fails or is cancelled.
	 */
	const char *bitmap;
	bool bitmap_keep;
	/* Granule of the job's bitmap: a power of two >= 4096, at most BLK_JOB_CHUNK_BYTES. */
	uint32_t gran_bytes;
	/* The target's cluster (4096 for raw): the smallest speed is one a second. */
	uint32_t cluster_bytes;
	/*
	 * Mirror only: called on the job's thread under its drain when a
	 * ready mirror completes, with every byte copied and the target
	 * flushed, to make @target the device's top (blk_chain_replace_top()).
	 * Returns 0, the target the chain's now and *@old the chain it
	 * replaced, which the job frees once its drain is over; or -errno
	 * (the device stays on its image; the job fails).  NULL: complete
	 * is refused.
	 */
	int (*pivot)(void *ctx, struct tgt *target, struct tgt **old);
	void *pivot_ctx;
};

/*
 * Closes an open copy target as struct blk_copy_opts.target holds it
 * (the struct and its cfg.file malloc'ed) and frees both.
 */
void blk_copy_target_free(struct tgt *t);

/*
 * Helpers of the copy jobs, in a coroutine, inside the gate (or a drain).
 *
 * blk_job_scan(): sets in @m the granules the job must copy from the
 * device @d: what the top allocates (@o->sync_top), else everything but
 * what reads as zeros when the target does too.  Returns 0 or -errno.
 */
struct jobmap;
int blk_job_scan(struct blk_dev *d, const struct blk_copy_opts *o, struct jobmap *m);
/*
 * Copies [@off, @off + @len) of the device (its top, through the chain)
 * to @dst through @buf (@len bytes, aligned): zeros are written as
 * write-zeroes where @dst can, or not at all when @skip_zero (the range
 * reads zeros already).  Returns 0, or -errno with *@op the side that
 * failed ("read", "write").
 */
int blk_job_copy(struct blk_dev *d, struct tgt *dst, void *buf, uint64_t off, uint64_t len,
		 bool skip_zero, const char **op);
/*
 * The write half of blk_job_copy(): @len bytes of @buf to @dst at @off,
 * as write-zeroes where they are zeros and @dst can, or not at all when
 * @skip_zero.  Returns 0 or -errno.
 */
int blk_job_write_out(struct tgt *dst, const void *buf, uint64_t off, uint64_t len,
		      bool skip_zero);

/*
 * A copy job's walk over its bitmap (backup: the granules still to save;
 * mirror: the dirty ones).  The bitmap may hold any set of bits when the
 * walk starts (a scan, a dirty bitmap) and change under it.
 */
struct blk_job_walk {
	struct jobmap *map;
	/*
	 * Required.  Copies those of granules [@i, @i + @n) still set in
	 * @map, through @buf (@n granules, aligned), taking their bits
	 * out.  Called in the gate, on the job's thread.  Returns 0, or
	 * -errno once blk_job_walk_fail() recorded it.
	 */
	int (*copy)(struct blk_job *job, uint64_t i, uint64_t n, void *buf);
	uint64_t cursor;		/* the next granule to look at (the job's thread) */
	int failed;			/* atomic: the first failed copy's -errno */
};

/*
 * Copies every granule set in @w->map at or after @w->cursor, in order,
 * by @w->copy in BLK_JOB_WORKERS coroutines, at most BLK_JOB_CHUNK_BYTES
 * per call, each under the speed limit and inside the gate.  Bits set
 * behind the cursor meanwhile wait for the next walk (reset the cursor).
 * Returns 0 when no bit is left ahead of the cursor, -ECANCELED for a
 * cancel, or the first failure's -errno.
 */
int blk_job_walk(struct blk_job *job, struct blk_job_walk *w);

/*
 * Records that copying @what ("saving", "copying") the data at @off
 * failed in @op ("read", "write") with @err.  The first failure of a
 * walk stops it and is the job's error (BLOCK_JOB_ERROR); later ones
 * are its echoes and only return.  Any thread.
 */
void blk_job_walk_fail(struct blk_job *job, struct blk_job_walk *w, const char *what,
		       const char *op, uint64_t off, int err);

/*
 * backup: a point-in-time copy of the device into @o->target.  Under a
 * drain it flushes the top image (so that the files on disk hold that
 * moment for anyone reading them with -U), marks what to copy and puts
 * its copy-before-write hook in place; the job then copies the rest
 * while the guest writes.  Returns 0 once the moment is fixed and the
 * job runs, or -errno with @why set (-EBUSY: the device runs a job).
 */
int blk_backup_start(struct blk_dev *d, const struct blk_copy_opts *o, char *why,
		     size_t why_len);

/*
 * mirror: copies the device into @o->target while tracking the guest's
 * writes in a dirty bitmap, re-copies them until nothing is dirty, then
 * is ready (BLOCK_JOB_READY) and keeps the target in step.  complete:
 * drain, last copy, @o->pivot; cancel once ready: drain, last copy, the
 * target a consistent copy of that moment, no switch.  Returns as
 * blk_backup_start().
 */
int blk_mirror_start(struct blk_dev *d, const struct blk_copy_opts *o, char *why,
		     size_t why_len);

/* What stream and commit work on: nodes of the device's chain. */
struct blk_chain_opts {
	const char *id;			/* NULL: the device's name */
	uint64_t speed;
	uint32_t cluster_bytes;		/* the smallest speed is one a second */
	/*
	 * stream: the device's top, which receives the data; commit: the
	 * image whose data (with the images down to @base) goes into @base,
	 * below the active image.
	 */
	struct tgt *top;
	/* stream: the new backing file (NULL: none); commit: receives the data. */
	struct tgt *base;
	/* blk_chain_drop()'s record hook: the plane writes the chain down. */
	int (*record)(void *ctx, const struct tgt *top);
	void *record_ctx;
};

/*
 * stream (QEMU's block-stream): copies into the top what the images
 * between it and @o->base provide where the top allocates nothing, while
 * the guest writes, then makes @o->base the top's backing file and drops
 * those images (stream.c gives the crash order).  commit, intermediate
 * (QEMU's block-commit with top below the active image): copies into
 * @o->base what @o->top and the images down to it provide, then makes
 * @o->base the backing file of the image above @o->top and drops the
 * images between.  Each returns 0 once the job runs, or -errno with
 * @why set.
 */
int blk_stream_start(struct blk_dev *d, const struct blk_chain_opts *o, char *why,
		     size_t why_len);
int blk_commit_start(struct blk_dev *d, const struct blk_chain_opts *o, char *why,
		     size_t why_len);

#endif
