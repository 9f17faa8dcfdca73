/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The block layer: what every request of a device passes through between
 * the plane that carries it (ublksrv/) and the image chain that serves it
 * (targets/), as QEMU's block.c sits between its devices and its drivers.
 *
 * It owns, per device: the node chain (the open images, top to base),
 * the gate that drain and pause close, throttling, copy-on-read, the
 * error policy (werror/rerror: report, ignore, or hold the request and
 * pause the device), the statistics, and the write notifiers that later
 * work (block jobs, dirty bitmaps) hooks into.  It knows nothing of ublk:
 * the ublk queue turns a descriptor into a blk_submit() call and commits
 * whatever it returns.  docs/block-layer.md tells the request's path.
 *
 * Threads: blk_submit() runs in a coroutine of a queue's executor, one
 * struct blk_queue per queue thread.  The control functions (drain, pause,
 * resume, settings, statistics) run on any other thread, never on a queue
 * thread: they may sleep until the queues' requests leave.
 */
#ifndef IMGBLK_BLOCK_H
#define IMGBLK_BLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "exec.h"
#include "rangelock.h"
#include "tgt.h"
#include "throttle.h"

enum blk_op {
	BLK_OP_READ,
	BLK_OP_WRITE,
	BLK_OP_FLUSH,
	BLK_OP_DISCARD,
	BLK_OP_WRITE_ZEROES,
	BLK_OP_NR,
};

/* Request flags. */
#define BLK_REQ_FUA	(1U << 0)	/* durable before completion */

/*
 * What to do with a failed request (QEMU's BlockdevOnError).  REPORT
 * fails it; IGNORE completes it as if it had succeeded (a read returns
 * whatever the buffer holds, a write is lost: only for those who know);
 * STOP holds it and pauses the device until blk_resume() retries it;
 * ENOSPC stops on ENOSPC and EDQUOT (the host ran out of room, which
 * freeing space cures) and reports anything else.
 */
enum blk_err_action {
	BLK_ERR_REPORT,
	BLK_ERR_IGNORE,
	BLK_ERR_STOP,
	BLK_ERR_ENOSPC,
};

struct blk_config {
	bool discard_ignore;	/* complete discards, change nothing */
	/*
	 * Backing data a read gets is written to the top: asked for the
	 * device, whatever its chain is now (blk_dev.copy_on_read: in force).
	 */
	bool copy_on_read;
	struct throttle_cfg throttle;
	enum blk_err_action werror;	/* writes, discards, write-zeroes, flushes */
	enum blk_err_action rerror;	/* reads */
	/*
	 * Longest a request may wait in a pause, in ms from its arrival:
	 * held for an error, it then fails with that error and the pause
	 * ends; waiting at a closed gate, it fails with EIO and the pause
	 * stays.  0: no limit.  For planes whose kernel side gives up on a
	 * request it waited for too long (ublk kills an unprivileged
	 * server, see docs/block-layer.md).
	 */
	unsigned int hold_limit_ms;
};

/*
 * Latency histogram: bin i counts requests that took less than
 * blk_hist_bounds_ns[i] (and at least the bound before it); the last bin
 * the rest.
 */
#define BLK_HIST_BOUNDS	18
#define BLK_HIST_BINS	(BLK_HIST_BOUNDS + 1)
extern const uint64_t blk_hist_bounds_ns[BLK_HIST_BOUNDS];

/* Counters of one kind of request, with query-blockstats' meanings. */
struct blk_op_stats {
	uint64_t ops;		/* completed successfully (or ignored) */
	uint64_t bytes;		/* of those */
	uint64_t failed;	/* completed with an error */
	uint64_t total_ns;	/* time from arrival to completion, successful ones */
	uint64_t hist[BLK_HIST_BINS];
};

struct blk_stats {
	struct blk_op_stats op[BLK_OP_NR];
	uint64_t inflight;	/* requests inside the layer now */
	uint64_t last_done_ns;	/* CLOCK_MONOTONIC of the last completion, 0: none */
};

/*
 * One queue's share of a device.  Only its queue thread writes it; its
 * counters are stored with relaxed atomics so that readers on other
 * threads see whole values.  Aligned apart so queues do not share lines.
 */
struct blk_queue {
	struct blk_dev *dev;
	struct blk_stats st;
	unsigned int inflight;		/* atomic; what drain waits for */
} __attribute__((aligned(64)));

/* What happened, for blk_dev's event callback. */
enum blk_event_type {
	BLK_EV_IO_ERROR,	/* a request failed: @action says what was done */
	BLK_EV_STOP,		/* the device paused (an error with action stop, or blk_pause()) */
	BLK_EV_RESUME,		/* blk_resume(), or the hold limit ended an error pause */
};

struct blk_event {
	enum blk_event_type type;
	enum blk_op op;
	enum blk_err_action action;	/* REPORT, IGNORE or STOP */
	int err;			/* -errno of the request */
	uint64_t off, len;
	bool user;			/* STOP, RESUME: asked for, not an error */
};

/*
 * Called after a write, discard or write-zeroes reached the top image
 * (@ret its result), before it completes: dirty tracking hooks in here.
 * Runs in the request's coroutine, on any queue thread at once.
 */
struct blk_write_notifier {
	void (*notify)(struct blk_write_notifier *n, enum blk_op op, uint64_t off,
		       uint64_t len, int ret);
	struct blk_write_notifier *next;
};

/*
 * Called before a write, discard or write-zeroes reaches the top image,
 * in the request's coroutine, on any queue thread at once: backup's
 * copy-before-write saves the old data here.  The request waits for it,
 * and proceeds whatever it did (a hook that cannot do its work fails its
 * own user, never the guest's write).  No hook costs a request one load.
 */
struct blk_before_write {
	void (*fn)(struct blk_before_write *h, enum blk_op op, uint64_t off, uint64_t len);
	struct blk_before_write *next;
};

/* job.h: where a job's events go (@type an enum blk_job_event_type). */
struct blk_job;
struct blk_job_info;
typedef void (*blk_job_event_fn)(void *ctx, const struct blk_job_info *job, int type,
				 const char *err);

/*
 * A request waiting in a pause (held, or at the closed gate), on its
 * coroutine's stack in one of blk_dev's lists, so that blk_tick() knows
 * how long each has waited since it arrived.
 */
struct blk_waiter {
	int64_t arrived_ns;
	bool expired;			/* blk_tick(): fail it */
	struct blk_waiter *prev, *next;
};

/* Why a device is paused. */
enum blk_pause_reason {
	BLK_RUNNING,
	BLK_PAUSED_USER,	/* blk_pause() */
	BLK_PAUSED_ERROR,	/* a request failed with action stop */
};

struct blk_dev {
	/*
	 * The node chain: the top image, the rest through tgt->backing.
	 * Changed only by block/chain.c, under @chain_lock and a drain, so a
	 * request sees one chain from start to end.
	 */
	struct tgt *top;
	struct exec_mutex chain_lock;
	unsigned int id;		/* for log lines */
	struct blk_config cfg;		/* werror, rerror change under @lock */
	struct throttle thr;
	/*
	 * Copy-on-read in force: asked for (@cfg), and the top has a backing
	 * file to copy from and is writable.  A property of the device, as
	 * QEMU's copy-on-read filter node above the image is: when a chain
	 * change gives the top a backing file (an external snapshot), it
	 * copies into the new top; when the top loses its last (stream,
	 * commit), there is nothing left to copy.  Set at init and by every
	 * chain change, under its drain (blk_update_copy_on_read()).
	 */
	bool copy_on_read;
	/* With copy-on-read: writes and populating reads lock their range. */
	struct range_lock cor_lock;
	/*
	 * Writes lock their range in @cor_lock without copy-on-read too: a
	 * stream job copies backing data into the top under it.  Changed
	 * under a drain.
	 */
	bool lock_writes;
	struct blk_queue *queues;
	unsigned int nr_queues;

	/* Drain and pause.  @quiesce is read without the lock (atomics). */
	pthread_mutex_t lock;
	pthread_cond_t idle;		/* a request left while the gate was closed */
	unsigned int quiesce;		/* drains + pause: > 0 closes the gate */
	struct exec_waitq gate;		/* requests waiting for the gate to open */
	enum blk_pause_reason paused;
	int pause_err;			/* the -errno that paused it */
	enum blk_op pause_op;
	int64_t paused_ns;		/* when */
	unsigned int held;		/* requests held for an error */
	/* Lists (heads) of the held requests and of those at the gate. */
	struct blk_waiter held_list, gate_list;
	/*
	 * Held requests a resume woke that have not finished their retry:
	 * the gate stays closed to new requests until they have, so held
	 * ones go first.  @resume_gen tells a held request it was counted.
	 */
	unsigned int retrying;
	unsigned int resume_gen;
	unsigned int release_gen;	/* bumped when held requests must fail */
	bool dying;			/* blk_shutdown(): fail what waits */

	struct blk_write_notifier *notifiers;	/* changed under drain */
	struct blk_before_write *before_write;	/* changed under drain */

	/*
	 * The device's block job (job.h), under @lock; @job_done is
	 * signalled when it ends.  @job_inflight counts its I/O inside the
	 * layer, which a drain waits for as for requests.
	 */
	struct blk_job *job;
	pthread_cond_t job_done;
	unsigned int job_inflight;
	blk_job_event_fn job_event_fn;
	void *job_event_ctx;

	void (*event_fn)(void *ctx, const struct blk_event *ev);
	void *event_ctx;

	/* Rate limit of the error log lines. */
	pthread_mutex_t log_lock;
	int64_t log_window_ns;
	unsigned int log_count;
	unsigned int log_suppressed;
};

/*
 * Sets up @d for @nr_queues queues serving the chain whose top is @top.
 * Copy-on-read asked for in @cfg is in force while the top has a backing
 * file and is writable (blk_dev.copy_on_read).  Returns 0 or -errno.
 */
int blk_dev_init(struct blk_dev *d, unsigned int id, struct tgt *top,
		 const struct blk_config *cfg, unsigned int nr_queues);
/*
 * Sets blk_dev.copy_on_read from the chain @d serves now.  Called with
 * no request in flight (init, or a chain change under its drain).
 */
void blk_update_copy_on_read(struct blk_dev *d);
/* Frees what blk_dev_init() allocated; no request may be left. */
void blk_dev_exit(struct blk_dev *d);

/*
 * Serves one request of queue @q: @op at byte @off for @len bytes, data in
 * @buf (reads and writes), BLK_REQ_* @flags.  Runs in a coroutine of @q's
 * thread.  Returns @len for reads and writes, 0 for the others, or -errno;
 * under the error policy it may first hold the request through a pause.
 */
int blk_submit(struct blk_queue *q, enum blk_op op, unsigned int flags, void *buf,
	       uint64_t off, uint64_t len);

/*
 * Closes the gate and waits until no request of any queue is inside the
 * layer: new ones wait at the gate, held ones stay held.  Nests.  Not on a
 * queue thread.
 */
void blk_drain_begin(struct blk_dev *d);
/* Opens the gate again once every drain has ended. */
void blk_drain_end(struct blk_dev *d);

/*
 * Pauses the device as QMP's `stop` does: drains and keeps the gate
 * closed until blk_resume().  Returns 0, or -EALREADY if it was paused.
 */
int blk_pause(struct blk_dev *d);
/*
 * Ends a pause, whatever its reason (QMP's `cont`): held requests are
 * retried in the order they failed, then new ones go through.  Returns 0,
 * or -EALREADY if it was running.
 */
int blk_resume(struct blk_dev *d);

/*
 * Called by the plane every second, or every quarter of
 * cfg.hold_limit_ms when that is shorter, to enforce the limit: when a held request has
 * waited longer than it since its arrival, the held requests fail with
 * their errors and the device runs again; a request that waited at the
 * closed gate for longer fails with EIO, and a user's pause stays.
 */
void blk_tick(struct blk_dev *d);
/* Changes cfg.hold_limit_ms; takes effect at the next blk_tick(). */
void blk_set_hold_limit(struct blk_dev *d, unsigned int ms);

/*
 * The device is going away: held and waiting requests fail with -EIO and
 * new ones fail at once, so the plane can stop it.
 */
void blk_shutdown(struct blk_dev *d);

/* Changes the throttle limits of a running device. */
void blk_set_throttle(struct blk_dev *d, const struct throttle_cfg *cfg);
/* Changes the error policy of a running device. */
void blk_set_error_policy(struct blk_dev *d, enum blk_err_action werror,
			  enum blk_err_action rerror);

/* The live settings: throttle limits and the error policy. */
void blk_get_config(struct blk_dev *d, struct throttle_cfg *thr,
		    enum blk_err_action *werror, enum blk_err_action *rerror);

/*
 * Where events go: @fn(@ctx, event) from any thread, the queues'
 * included; it must not block.  NULL: nowhere.
 */
void blk_set_event_fn(struct blk_dev *d, void (*fn)(void *ctx, const struct blk_event *ev),
		      void *ctx);

/* Adds @n to the write notifiers; the caller holds a drain. */
void blk_add_write_notifier(struct blk_dev *d, struct blk_write_notifier *n);
/* Removes @n; the caller holds a drain. */
void blk_remove_write_notifier(struct blk_dev *d, struct blk_write_notifier *n);

/*
 * Adds @h to the hooks run before each change of data, and removes it.
 * Each drains the device around the change (drains nest), so no request
 * sees half a list and none that started without the hook is still
 * running once it is in place.  Not on a queue thread.
 */
void blk_add_before_write(struct blk_dev *d, struct blk_before_write *h);
void blk_remove_before_write(struct blk_dev *d, struct blk_before_write *h);

/*
 * Reads the statistics of queue @q_id, or the sum of all queues when
 * @q_id < 0, into @out.
 */
void blk_stats_read(const struct blk_dev *d, int q_id, struct blk_stats *out);

/* The pause state, for queries: reason, the errno and op that paused it. */
enum blk_pause_reason blk_paused(struct blk_dev *d, int *err, enum blk_op *op,
				 unsigned int *held);

/* "read", "write", "flush", "discard", "write-zeroes". */
const char *blk_op_name(enum blk_op op);
/* "report", "ignore", "stop", "enospc"; parsing returns -EINVAL on others. */
const char *blk_err_action_name(enum blk_err_action a);
int blk_err_action_parse(const char *s, enum blk_err_action *a);

/*
 * Changing the chain (block/chain.c).  Each change runs under the chain
 * lock and a drain that it takes itself, from a thread that is not a
 * queue thread (plain code or a coroutine of its own executor), and
 * leaves the device serving the new chain when it returns, or the old
 * one unchanged on failure; should a node that changes role fail even
 * to reopen as it was (tgt_reopen()'s -EIO), the device fails all its
 * I/O from then on rather than touch it, and says so.  Every node of a
 * device's chain is
 * allocated as tgt_open_backing() allocates backing files (the struct
 * and its cfg.file malloc'ed), so that a node the chain drops can be
 * handed back and freed with tgt_free_chain().  Nodes are shared by all
 * queue threads: a target keeps no per-thread state and issues its I/O
 * on the calling thread's executor, so a node opened on any thread
 * serves every queue from the moment the drain ends (docs/block-layer.md,
 * "Changing the chain").  Each change logs one line.
 */
struct blk_chain_change {
	/*
	 * Optional.  Called under the drain once the change is prepared and
	 * before the device sees it, with the image the device will then be
	 * serving: the plane writes it down (the state file, for recover).
	 * A failure (-errno) cancels the change.  If a later step fails it
	 * is called again with the old top.
	 */
	int (*record)(void *ctx, const struct tgt *top);
	void *ctx;
	/* Out: how long the gate was closed (I/O held), in ns ... */
	int64_t held_ns;
	/* ... of which waiting for the requests in flight to leave. */
	int64_t drain_ns;
};

/*
 * External snapshot: @overlay, opened read-write in TGT_ROLE_IMAGE with
 * TGT_O_NO_BACKING (no backing yet) from a file whose header names the
 * current top as its backing file, becomes the top.  Under the drain:
 * the old top is written back, flushed and reopened read-only with a
 * backing file's locks (tgt_reopen()), @c->record(@overlay), the old top
 * is linked under @overlay, and @overlay published.  Returns 0, @overlay
 * then belongs to the chain; or -errno (-ELOOP: too deep) with the old
 * top serving as before and @overlay still the caller's to close.
 */
int blk_chain_push_overlay(struct blk_dev *d, struct tgt *overlay,
			   struct blk_chain_change *c);

/*
 * What blk_chain_push_overlay() takes: creates @file, which must not
 * exist, as an empty @ops image of @top's size whose header names @top
 * (by absolute path, and format), durably (its name included: the
 * power-cut order is beside the code), and opens it read-write with
 * TGT_O_NO_BACKING as @top is served.  Returns 0 with *@out (malloc'ed,
 * cfg.file too), or -errno with the reason in @why and nothing left on
 * disk (-EEXIST: @file exists, and stays).
 */
int blk_overlay_create(const struct tgt *top, const struct tgt_ops *ops, const char *file,
		       struct tgt **out, char *why, size_t why_len);

/*
 * Pivot: @new_top becomes the top.  Either it is a node of the chain
 * below the top (active commit's base: reopened read-write in
 * TGT_ROLE_IMAGE if it was read-only, and the nodes above it are
 * detached), or the top of an independent chain the caller opened
 * read-write (mirror's target; the whole old chain is detached).  The
 * caller guarantees both show the same data.  Under the drain: the old
 * top is flushed, @c->record(@new_top), the reopen if needed, the switch.
 * Returns 0 with *@old the detached chain (its top; the caller frees it
 * with tgt_free_chain() when it likes, outside any drain), or -errno
 * (-EROFS: an independent @new_top is read-only) with nothing changed
 * and *@old NULL.
 */
int blk_chain_replace_top(struct blk_dev *d, struct tgt *new_top, struct tgt **old,
			  struct blk_chain_change *c);

/*
 * Stream and commit's end (QEMU's bdrv_drop_intermediate): @above, a
 * node of the chain, reads @base (a node below it, NULL: nothing) and
 * the nodes between leave the chain.  Under the drain: @above is
 * reopened read-write if it was read-only, flushed (the data a job
 * copied into it is durable first), its header names @base (->set_backing,
 * with @name or, when NULL, @base's absolute path, and @base's format),
 * flushed again, reopened read-only if it was, and @c->record(top).
 * Returns 0 with *@dropped the detached nodes (a chain ending in NULL,
 * for tgt_free_chain()), or -errno with nothing changed in memory:
 * -EINVAL (@base not below @above, or nothing between), -EOPNOTSUPP
 * (@above's format cannot name a backing file: raw).  A failure after
 * the header write leaves the header naming @base, which shows the same
 * data, as the job guarantees.
 */
int blk_chain_drop(struct blk_dev *d, struct tgt *above, struct tgt *base, const char *name,
		   struct tgt **dropped, struct blk_chain_change *c);

/*
 * Takes (TGT_SNAPSHOT_CREATE) or deletes (TGT_SNAPSHOT_DELETE) the
 * internal snapshot @name of the top image, under the chain lock and a
 * drain, so the format changes its tables while no request runs; the
 * format's order makes it crash-safe.  @c (may be NULL): only its
 * held_ns and drain_ns are used, to say how long I/O was held.  Same threads as the chain changes.  Returns 0 or -errno:
 * -ENOTSUP (the top's format has no internal snapshots), -EROFS (the top
 * is read-only), -ENOENT (no such snapshot to delete), -EINVAL (APPLY:
 * reverting a device under its users is not offered).
 */
int blk_snapshot_internal(struct blk_dev *d, enum tgt_snapshot_op op, const char *name,
			  struct blk_chain_change *c);

/*
 * Calls @fn(@ctx, list, n) with the top image's internal snapshots, under
 * the chain lock (the list is valid only during the call).  Returns 0, or
 * -ENOTSUP when the top's format has none, or -errno.
 */
int blk_snapshot_list(struct blk_dev *d,
		      void (*fn)(void *ctx, const struct tgt_snapshot_info *list, int n),
		      void *ctx);

/*
 * The housekeeping tick: the top target's ->tick, under the chain lock
 * so that it never meets a change.  In a coroutine.
 */
void blk_chain_tick(struct blk_dev *d);

/* CLOCK_MONOTONIC in ns. */
int64_t blk_now_ns(void);

#endif
