// SPDX-License-Identifier: GPL-2.0
/*
 * The block job framework (job.h): a job's life, its control from the
 * control thread, and the helpers its driver copies with.
 *
 * Design.  A job runs on a thread of its own with an executor of its
 * own (lib/exec.c), like the housekeeping thread, not on a queue thread:
 * a queue thread's coroutines serve the guest, and a long copy there
 * would share its ring and its CPU with them and could not block in a
 * drain.  The job calls the device's targets directly, from its own
 * coroutines: every target op may run on several threads at once
 * (include/tgt.h), the queues' included.  The device's chain changes only
 * under a drain, so the job's own I/O counts itself into the drain as a
 * request does (blk_job_io_begin(): @job_inflight beside the queues'
 * counters, then a look at the gate), and waits at a closed gate: a
 * user's pause or a drain stops the job's I/O too, and the chain never
 * changes under a chunk.  When the job changes the chain itself (a
 * mirror's pivot) it drains from its thread, with none of its own I/O in
 * flight, and its I/O passes the gate while it holds that drain.
 *
 * Guest writes and the job's copies of the same range are ordered by
 * each driver (backup: a range lock per granule, taken by the
 * copy-before-write hook and by the job's copy; mirror: the dirty bit is
 * cleared before the copy reads, so a racing write dirties it again).
 *
 * One job per device: a second one is refused (-EBUSY).  A job ends by
 * itself: its thread releases the driver's state (targets closed), then
 * sends COMPLETED or CANCELLED, then leaves the device, so a client that
 * saw the event finds the target closed and the device free for the next
 * job.  Lock order: blk_dev.lock, then blk_job.lock.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "jobmap.h"
#include "util.h"

/* A sleeping job looks at the clock and its flags this often. */
#define JOB_SLICE_MS		20
/* Longest burst the rate limit lets pass after an idle time. */
#define JOB_RATE_BURST_NS	(100 * 1000000LL)

static const char *const job_status_names[] = {
	[BLK_JOB_CREATED] = "created",
	[BLK_JOB_RUNNING] = "running",
	[BLK_JOB_PAUSED] = "paused",
	[BLK_JOB_READY] = "ready",
	[BLK_JOB_STANDBY] = "standby",
	[BLK_JOB_ABORTING] = "aborting",
	[BLK_JOB_CONCLUDED] = "concluded",
};

const char *blk_job_status_name(enum blk_job_status s)
{
	return (unsigned int)s < ARRAY_SIZE(job_status_names) ? job_status_names[s] : "?";
}

void blk_job_set_event_fn(struct blk_dev *d, blk_job_event_fn fn, void *ctx)
{
	pthread_mutex_lock(&d->lock);
	d->job_event_fn = fn;
	d->job_event_ctx = ctx;
	pthread_mutex_unlock(&d->lock);
}

/* Caller holds job->lock. */
static void job_info_locked(struct blk_job *job, struct blk_job_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", job->id);
	out->type = job->drv->type;
	out->status = job->status;
	out->offset = __atomic_load_n(&job->offset, __ATOMIC_RELAXED);
	out->len = MAX(__atomic_load_n(&job->len, __ATOMIC_RELAXED), out->offset);
	out->speed = job->speed;
	out->busy = job->busy;
	out->paused = job->pause_count > 0;
	out->ready = job->ready;
	snprintf(out->error, sizeof(out->error), "%s", job->error);
}

static void job_emit(struct blk_job *job, enum blk_job_event_type type, const char *err)
{
	struct blk_dev *d = job->dev;
	struct blk_job_info info;
	blk_job_event_fn fn;
	void *ctx;

	pthread_mutex_lock(&d->lock);
	fn = d->job_event_fn;
	ctx = d->job_event_ctx;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&job->lock);
	job_info_locked(job, &info);
	pthread_mutex_unlock(&job->lock);
	if (fn)
		fn(ctx, &info, type, err);
}

int blk_job_init(struct blk_job *job, struct blk_dev *d, const struct blk_job_driver *drv,
		 const char *id, uint64_t speed, uint32_t cluster_bytes, char *why,
		 size_t why_len)
{
	if (speed && speed < cluster_bytes) {
		snprintf(why, why_len, "speed %llu is below one cluster (%u bytes) a second",
			 (unsigned long long)speed, cluster_bytes);
		return -EINVAL;
	}
	job->dev = d;
	job->drv = drv;
	job->cluster_bytes = cluster_bytes;
	job->can_complete = drv->can_complete;
	job->speed = speed;
	job->status = BLK_JOB_CREATED;
	if (id)
		snprintf(job->id, sizeof(job->id), "%s", id);
	else
		snprintf(job->id, sizeof(job->id), "ublkb%u", d->id);
	pthread_mutex_init(&job->lock, NULL);
	exec_waitq_init(&job->wq);
	return 0;
}

/* Caller holds job->lock: something changed; sleepers look again. */
static void job_kick_locked(struct blk_job *job)
{
	exec_waitq_wake_all(&job->wq);
}

/*
 * Caller holds job->lock.  Whether the job must stop now: a forced
 * cancel, or a cancel of a job that is not in the converged state where
 * a cancel means "finish without switching".
 */
static bool job_must_stop_locked(struct blk_job *job)
{
	return job->cancel && (job->force || !job->ready || !job->drv->can_complete);
}

/*
 * The job's coroutine on its thread: runs the driver, releases it, says
 * how it ended, leaves the device.
 */
static void job_main(void *arg)
{
	struct blk_job *job = arg;
	struct blk_dev *d = job->dev;
	enum blk_job_event_type ev;
	char err[256] = "";
	int ret;

	pthread_mutex_lock(&job->lock);
	job->busy = true;
	pthread_mutex_unlock(&job->lock);

	ret = job->drv->run(job);

	pthread_mutex_lock(&job->lock);
	job->status = ret && ret != -ECANCELED ? BLK_JOB_ABORTING : job->status;
	if (ret == -ECANCELED) {
		ev = BLK_JOB_EV_CANCELLED;
	} else {
		ev = BLK_JOB_EV_COMPLETED;
		if (ret && !job->error[0])
			snprintf(job->error, sizeof(job->error), "%s", strerror(-ret));
		if (ret)
			snprintf(err, sizeof(err), "%s", job->error);
	}
	pthread_mutex_unlock(&job->lock);

	/* Targets closed before anyone hears the job ended. */
	job->drv->free(job);
	pthread_mutex_lock(&job->lock);
	job->status = BLK_JOB_CONCLUDED;
	job->busy = false;
	pthread_mutex_unlock(&job->lock);
	if (ret)
		img_log("device %u: job %s (%s) %s%s%s", d->id, job->id, job->drv->type,
			ev == BLK_JOB_EV_CANCELLED ? "cancelled" : "failed",
			err[0] ? ": " : "", err);
	else
		img_log("device %u: job %s (%s) completed", d->id, job->id, job->drv->type);
	job_emit(job, ev, err[0] ? err : NULL);

	pthread_mutex_lock(&d->lock);
	d->job = NULL;
	pthread_cond_broadcast(&d->job_done);
	pthread_mutex_unlock(&d->lock);
}

static void *job_thread(void *arg)
{
	struct blk_job *job = arg;
	struct blk_dev *d = job->dev;
	struct img_exec e;

	if (exec_init(&e, 64) || exec_spawn(&e, job_main, job)) {
		/* Nothing ran: the job leaves the device as it came. */
		img_err("device %u: job %s: cannot set up its executor", d->id, job->id);
		job->drv->free(job);
		pthread_mutex_lock(&d->lock);
		d->job = NULL;
		pthread_cond_broadcast(&d->job_done);
		pthread_mutex_unlock(&d->lock);
	} else {
		exec_run(&e);
	}
	exec_exit(&e);
	pthread_mutex_destroy(&job->lock);
	free(job);
	return NULL;
}

int blk_job_start(struct blk_job *job)
{
	struct blk_dev *d = job->dev;
	pthread_attr_t attr;
	sigset_t all, old;
	int ret;

	pthread_mutex_lock(&d->lock);
	if (d->job || d->dying) {
		pthread_mutex_unlock(&d->lock);
		return d->job ? -EBUSY : -ENODEV;
	}
	d->job = job;
	pthread_mutex_unlock(&d->lock);
	/* Running from the caller's view at once: a pause may follow the start. */
	pthread_mutex_lock(&job->lock);
	job->status = BLK_JOB_RUNNING;
	pthread_mutex_unlock(&job->lock);

	/* The job's thread takes no signal: the server's main thread handles them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = -pthread_create(&job->thread, &attr, job_thread, job);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		pthread_mutex_lock(&d->lock);
		d->job = NULL;
		pthread_mutex_unlock(&d->lock);
		return ret;
	}
	img_log("device %u: job %s (%s) started", d->id, job->id, job->drv->type);
	return 0;
}

/*
 * The running job if @id names it (NULL: any), returned with d->lock and
 * its own lock held (the lock order), for job_unlock(); NULL, with
 * nothing held, when there is none.
 */
static struct blk_job *job_lock(struct blk_dev *d, const char *id)
{
	struct blk_job *job;

	pthread_mutex_lock(&d->lock);
	job = d->job;
	if (!job || (id && strcmp(id, job->id))) {
		pthread_mutex_unlock(&d->lock);
		return NULL;
	}
	pthread_mutex_lock(&job->lock);
	return job;
}

static void job_unlock(struct blk_job *job)
{
	pthread_mutex_unlock(&job->lock);
	pthread_mutex_unlock(&job->dev->lock);
}

int blk_job_pause(struct blk_dev *d, const char *id)
{
	struct blk_job *job = job_lock(d, id);
	int ret = 0;

	if (!job)
		return -ENOENT;
	if (job->pause_count) {
		ret = -EALREADY;
	} else {
		job->pause_count = 1;
		if (job->status == BLK_JOB_RUNNING)
			job->status = BLK_JOB_PAUSED;
		else if (job->status == BLK_JOB_READY)
			job->status = BLK_JOB_STANDBY;
		job_kick_locked(job);
	}
	job_unlock(job);
	return ret;
}

int blk_job_resume(struct blk_dev *d, const char *id)
{
	struct blk_job *job = job_lock(d, id);
	int ret = 0;

	if (!job)
		return -ENOENT;
	if (!job->pause_count) {
		ret = -EALREADY;
	} else {
		job->pause_count = 0;
		if (job->status == BLK_JOB_PAUSED)
			job->status = BLK_JOB_RUNNING;
		else if (job->status == BLK_JOB_STANDBY)
			job->status = BLK_JOB_READY;
		job_kick_locked(job);
	}
	job_unlock(job);
	return ret;
}

int blk_job_cancel(struct blk_dev *d, const char *id, bool force)
{
	struct blk_job *job = job_lock(d, id);

	if (!job)
		return -ENOENT;
	job->cancel = true;
	job->force |= force;
	job_kick_locked(job);
	/* The job may wait at a closed gate: it looks at its flags there too. */
	exec_waitq_wake_all(&d->gate);
	job_unlock(job);
	return 0;
}

int blk_job_complete(struct blk_dev *d, const char *id)
{
	struct blk_job *job = job_lock(d, id);
	int ret = 0;

	if (!job)
		return -ENOENT;
	if (!job->can_complete)
		ret = -EOPNOTSUPP;
	else if (!job->ready || job->cancel)
		ret = -EBUSY;
	else
		job->complete = true;
	job_kick_locked(job);
	job_unlock(job);
	return ret;
}

int blk_job_set_speed(struct blk_dev *d, const char *id, uint64_t speed)
{
	struct blk_job *job = job_lock(d, id);
	int ret = 0;

	if (!job)
		return -ENOENT;
	if (speed && speed < job->cluster_bytes) {
		ret = -EINVAL;
	} else {
		job->speed = speed;
		job->rate_next_ns = 0;
		job_kick_locked(job);
	}
	job_unlock(job);
	return ret;
}

int blk_job_query(struct blk_dev *d, struct blk_job_info *out)
{
	struct blk_job *job;

	pthread_mutex_lock(&d->lock);
	job = d->job;
	if (job) {
		pthread_mutex_lock(&job->lock);
		job_info_locked(job, out);
		pthread_mutex_unlock(&job->lock);
	}
	pthread_mutex_unlock(&d->lock);
	return job ? 0 : -ENOENT;
}

void blk_job_shutdown(struct blk_dev *d)
{
	if (blk_job_cancel(d, NULL, true))
		return;
	pthread_mutex_lock(&d->lock);
	while (d->job)
		pthread_cond_wait(&d->job_done, &d->lock);
	pthread_mutex_unlock(&d->lock);
}

/* ---- driver helpers, on the job's thread ---- */

int blk_job_yield(struct blk_job *job)
{
	int ret = 0;

	pthread_mutex_lock(&job->lock);
	while (job->pause_count && !job->cancel) {
		job->busy = false;
		exec_waitq_sleep(&job->wq, &job->lock);
	}
	job->busy = true;
	if (job_must_stop_locked(job))
		ret = -ECANCELED;
	pthread_mutex_unlock(&job->lock);
	return ret;
}

bool blk_job_cancel_requested(struct blk_job *job, bool *force)
{
	bool c;

	pthread_mutex_lock(&job->lock);
	c = job->cancel;
	if (force)
		*force = job->force;
	pthread_mutex_unlock(&job->lock);
	return c;
}

bool blk_job_complete_requested(struct blk_job *job)
{
	bool c;

	pthread_mutex_lock(&job->lock);
	c = job->complete;
	pthread_mutex_unlock(&job->lock);
	return c;
}

void blk_job_wait(struct blk_job *job, unsigned int ms)
{
	int64_t end = blk_now_ns() + (int64_t)ms * 1000000;
	bool stop = false;

	pthread_mutex_lock(&job->lock);
	job->busy = false;
	pthread_mutex_unlock(&job->lock);
	/*
	 * Short naps rather than a timed wait on the queue: the executor has
	 * no timed waitq, and a job that waits (a converged mirror) looks
	 * at its dirty bitmap at this pace anyway.
	 */
	while (!stop && blk_now_ns() < end) {
		exec_sleep_ms(MIN(ms, JOB_SLICE_MS));
		pthread_mutex_lock(&job->lock);
		stop = job->cancel || job->complete || job->pause_count;
		pthread_mutex_unlock(&job->lock);
	}
	pthread_mutex_lock(&job->lock);
	job->busy = true;
	pthread_mutex_unlock(&job->lock);
}

void blk_job_rate(struct blk_job *job, uint64_t bytes)
{
	int64_t now = blk_now_ns(), wait_ns;

	pthread_mutex_lock(&job->lock);
	if (!job->speed) {
		pthread_mutex_unlock(&job->lock);
		return;
	}
	/* An idle time earns at most a short burst. */
	if (job->rate_next_ns < now - JOB_RATE_BURST_NS)
		job->rate_next_ns = now - JOB_RATE_BURST_NS;
	job->rate_next_ns += (int64_t)(bytes * 1000000000.0 / job->speed);
	wait_ns = job->rate_next_ns - now;
	job->busy = false;
	pthread_mutex_unlock(&job->lock);
	while (wait_ns > 0) {
		exec_sleep_ms(MIN((uint64_t)wait_ns / 1000000 + 1, JOB_SLICE_MS));
		pthread_mutex_lock(&job->lock);
		/* A new speed restarts the clock (rate_next_ns 0); a cancel ends the wait. */
		wait_ns = job_must_stop_locked(job) || !job->speed || !job->rate_next_ns ? 0 :
			  job->rate_next_ns - blk_now_ns();
		pthread_mutex_unlock(&job->lock);
	}
	pthread_mutex_lock(&job->lock);
	job->busy = true;
	pthread_mutex_unlock(&job->lock);
}

void blk_job_set_len(struct blk_job *job, uint64_t len)
{
	__atomic_store_n(&job->len, len, __ATOMIC_RELAXED);
}

void blk_job_progress(struct blk_job *job, uint64_t bytes)
{
	/* The work shown is never less than what is done (job_info_locked()). */
	__atomic_add_fetch(&job->offset, bytes, __ATOMIC_RELAXED);
}

void blk_job_set_ready(struct blk_job *job)
{
	pthread_mutex_lock(&job->lock);
	job->ready = true;
	job->status = job->pause_count ? BLK_JOB_STANDBY : BLK_JOB_READY;
	pthread_mutex_unlock(&job->lock);
	img_log("device %u: job %s (%s) is ready", job->dev->id, job->id, job->drv->type);
	job_emit(job, BLK_JOB_EV_READY, NULL);
}

void blk_job_error(struct blk_job *job, const char *op, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&job->lock);
	if (!job->error[0])
		snprintf(job->error, sizeof(job->error), "%s", msg);
	pthread_mutex_unlock(&job->lock);
	img_err("device %u: job %s (%s): %s", job->dev->id, job->id, job->drv->type, msg);
	job_emit(job, BLK_JOB_EV_ERROR, op);
}

/* The job's I/O leaves the layer; the last one out tells a waiting drainer. */
static void job_io_leave(struct blk_dev *d)
{
	if (__atomic_sub_fetch(&d->job_inflight, 1, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&d->quiesce, __ATOMIC_SEQ_CST)) {
		pthread_mutex_lock(&d->lock);
		pthread_cond_broadcast(&d->idle);
		pthread_mutex_unlock(&d->lock);
	}
}

/* Caller holds d->lock: the job must give up waiting at the gate. */
static bool job_gate_stop_locked(struct blk_job *job)
{
	bool stop;

	pthread_mutex_lock(&job->lock);
	stop = job_must_stop_locked(job);
	pthread_mutex_unlock(&job->lock);
	return stop || job->dev->dying;
}

int blk_job_io_begin(struct blk_job *job)
{
	struct blk_dev *d = job->dev;
	bool stop;

	if (job->in_drain)
		return 0;
	for (;;) {
		/* The request's protocol (block.c): count in first, look second. */
		__atomic_add_fetch(&d->job_inflight, 1, __ATOMIC_SEQ_CST);
		if (likely(!__atomic_load_n(&d->quiesce, __ATOMIC_SEQ_CST)))
			return 0;
		job_io_leave(d);
		pthread_mutex_lock(&d->lock);
		while (d->quiesce && !(stop = job_gate_stop_locked(job)))
			exec_waitq_sleep(&d->gate, &d->lock);
		stop = job_gate_stop_locked(job);
		pthread_mutex_unlock(&d->lock);
		if (stop)
			return -ECANCELED;
	}
}

void blk_job_io_end(struct blk_job *job)
{
	if (!job->in_drain)
		job_io_leave(job->dev);
}

void blk_job_drain_begin(struct blk_job *job)
{
	blk_drain_begin(job->dev);
	job->in_drain = true;
}

void blk_job_drain_end(struct blk_job *job)
{
	job->in_drain = false;
	blk_drain_end(job->dev);
}

struct job_workers {
	struct blk_job *job;
	int (*fn)(struct blk_job *job, void *arg);
	void *arg;
	struct coro *parent;
	unsigned int left;
	int ret;
};

static void job_worker_main(void *arg)
{
	struct job_workers *w = arg;
	int ret = w->fn(w->job, w->arg);

	if (ret && !w->ret)
		w->ret = ret;
	if (--w->left == 0)
		exec_wake(w->parent);
}

int blk_job_workers(struct blk_job *job, unsigned int n,
		    int (*fn)(struct blk_job *job, void *arg), void *arg)
{
	/* All on this thread: the counters need no lock. */
	struct job_workers w = { .job = job, .fn = fn, .arg = arg, .parent = exec_self() };
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (exec_spawn(exec_current(), job_worker_main, &w)) {
			if (!w.ret)
				w.ret = -ENOMEM;
			break;
		}
		w.left++;
	}
	while (w.left)
		exec_sleep();
	return w.ret;
}

void blk_job_walk_fail(struct blk_job *job, struct blk_job_walk *w, const char *what,
		       const char *op, uint64_t off, int err)
{
	int zero = 0;

	if (__atomic_compare_exchange_n(&w->failed, &zero, err, false, __ATOMIC_SEQ_CST,
					__ATOMIC_SEQ_CST))
		blk_job_error(job, op, "%s the data at %llu failed (%s): %s", what,
			      (unsigned long long)off, op, strerror(-err));
}

/* One worker of a walk: the cursor hands out runs of set bits. */
static int job_walk_worker(struct blk_job *job, void *arg)
{
	struct blk_job_walk *w = arg;
	unsigned int shift = w->map->gran_shift;
	uint64_t max = BLK_JOB_CHUNK_BYTES >> shift;
	void *buf;
	int ret = 0;

	if (posix_memalign(&buf, 4096, BLK_JOB_CHUNK_BYTES))
		return -ENOMEM;
	for (;;) {
		uint64_t i, n;

		ret = blk_job_yield(job);
		if (!ret)
			ret = __atomic_load_n(&w->failed, __ATOMIC_SEQ_CST);
		if (ret)
			break;
		/* The cursor is this thread's alone: no coroutine runs between these lines. */
		i = jobmap_next_set(w->map, w->cursor);
		if (i >= w->map->nbits)
			break;
		n = MIN(jobmap_next_clear(w->map, i) - i, max);
		w->cursor = i + n;
		blk_job_rate(job, n << shift);
		ret = blk_job_io_begin(job);
		if (ret)
			break;
		ret = w->copy(job, i, n, buf);
		blk_job_io_end(job);
		if (ret)
			break;
	}
	free(buf);
	return ret;
}

int blk_job_walk(struct blk_job *job, struct blk_job_walk *w)
{
	return blk_job_workers(job, BLK_JOB_WORKERS, job_walk_worker, w);
}

/* Whether @layer lies in @from's chain above @base (@from included). */
static bool job_above(const struct tgt *from, const struct tgt *layer, const struct tgt *base)
{
	const struct tgt *l;

	for (l = from; l && l != base; l = l->backing)
		if (l == layer)
			return true;
	return false;
}

int blk_job_scan(struct blk_dev *d, const struct blk_copy_opts *o, struct jobmap *m)
{
	struct tgt *top = d->top;
	uint64_t size = top->caps.size_bytes, off = 0;

	while (off < size) {
		struct tgt_extent ext;
		struct tgt *layer;
		unsigned int depth;
		int64_t n = tgt_chain_status(top, off, size - off, &ext, &depth, &layer);
		bool need;

		if (n <= 0)
			return n ? (int)n : -EIO;
		if (o->base)
			need = layer && job_above(top, layer, o->base);
		else if (o->sync_top)
			need = layer == top;
		else
			need = !o->target_zeroed || (layer && !(ext.flags & TGT_EXT_ZERO));
		if (need)
			jobmap_set_range(m, off, n);
		off += n;
	}
	return 0;
}

int blk_job_write_out(struct tgt *dst, const void *buf, uint64_t off, uint64_t len,
		      bool skip_zero)
{
	int ret;

	if (buf_is_zero(buf, len)) {
		if (skip_zero)
			return 0;
		if (dst->caps.can_write_zeroes) {
			ret = dst->ops->write_zeroes(dst, off, len, 0);
			return ret < 0 ? ret : 0;
		}
	}
	ret = dst->ops->write(dst, buf, len, off, 0);
	return ret < 0 ? ret : 0;
}

int blk_job_copy(struct blk_dev *d, struct tgt *dst, void *buf, uint64_t off, uint64_t len,
		 bool skip_zero, const char **op)
{
	struct tgt *src = d->top;
	int ret;

	*op = "read";
	ret = src->ops->read(src, buf, len, off);
	if (ret < 0)
		return ret;
	*op = "write";
	return blk_job_write_out(dst, buf, off, len, skip_zero);
}

void blk_copy_target_free(struct tgt *t)
{
	tgt_close(t);
	free((char *)t->cfg.file);
	free(t);
}
