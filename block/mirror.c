// SPDX-License-Identifier: GPL-2.0
/*
 * The mirror job (job.h, blk_mirror_start()): copies the device to a
 * target while it serves I/O, converges, and then either switches the
 * device to the target (complete) or leaves the target as a consistent
 * copy (cancel once ready), as QEMU's drive-mirror.
 *
 * A dirty bitmap has a bit per granule the target does not have yet: at
 * the start every granule the scan says to copy, then every granule a
 * guest write, discard or write-zeroes touched (a write notifier, after
 * the request reached the image).  A copy clears the bits of its
 * granules before it reads the device: a guest write that lands after
 * the read began sets them again after it, so it is copied again, and
 * nothing is lost without a lock on the guest's path.  Copies of the
 * same granules are ordered by a range lock, so an older read is never
 * written over a newer one.
 *
 * Convergence: the first pass copies everything the scan marked.  Then,
 * until a pass ends with nothing dirty, the notifier also copies what it
 * dirtied itself before the guest's request completes (QEMU's
 * copy-mode=write-blocking): a guest that writes faster than the job
 * copies would otherwise keep the bitmap from ever emptying.  Then the
 * job is ready, and the guest's writes are copied in the background
 * again, which costs the guest less.  A complete or a cancel once ready
 * converges the same way before the end.  The end, complete or a cancel once ready, runs under a drain
 * of the device from the job's thread: copy what is still dirty, flush
 * the target, and for complete hand the target to the pivot, which
 * makes it the device's top.  The drain is what makes the target equal
 * the device at that moment.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "jobmap.h"
#include "util.h"

/* A converged mirror looks at its bitmap this often. */
#define MIRROR_IDLE_MS	50

struct mirror {
	struct blk_job job;
	struct blk_copy_opts o;
	struct jobmap dirty;		/* set: the target lacks the granule's data */
	struct range_lock locks;	/* granules being copied */
	struct blk_write_notifier notifier;
	bool notified;
	bool active;			/* atomic: the notifier copies too (converging) */
	bool pivoted;			/* the target is the device's now */
	struct tgt *old;		/* the chain the pivot replaced, to free */
	struct blk_job_walk walk;	/* the job's passes over dirty */
};

static struct mirror *mirror_of(struct blk_job *job)
{
	return container_of(job, struct mirror, job);
}

/*
 * Copies the dirty granules of [@i, @i + @n) through @buf (@n granules).
 * Inside the gate, a guest request, or the job's drain.  Returns 0 or
 * -errno (recorded, the job told; the bits stay set).
 */
static int mirror_copy(struct blk_job *job, uint64_t i, uint64_t n, void *buf)
{
	struct mirror *m = mirror_of(job);
	struct blk_dev *d = m->job.dev;
	unsigned int shift = m->dirty.gran_shift;
	uint64_t size = d->top->caps.size_bytes, end = i + n, j, k, x;
	struct range_entry e;
	const char *op = "";
	int ret = 0;

	range_lock(&m->locks, &e, i << shift, n << shift);
	for (j = jobmap_next_set(&m->dirty, i); j < end; j = jobmap_next_set(&m->dirty, k)) {
		uint64_t off = j << shift, len;

		k = MIN(jobmap_next_clear(&m->dirty, j), end);
		len = MIN(k << shift, size) - off;
		/* Cleared first: a write racing with the read dirties it again. */
		for (x = j; x < k; x++)
			jobmap_clear(&m->dirty, x);
		ret = blk_job_copy(d, m->o.target, (char *)buf + ((j - i) << shift), off, len,
				   false, &op);
		if (ret) {
			for (x = j; x < k; x++)
				jobmap_set(&m->dirty, x);
			break;
		}
		blk_job_progress(&m->job, len);
	}
	range_unlock(&m->locks, &e);
	if (ret)
		blk_job_walk_fail(&m->job, &m->walk, "copying", op, j << shift, ret);
	return ret;
}

/* Dirty tracking, and once the first pass is done, the copy too. */
static void mirror_notify(struct blk_write_notifier *n, enum blk_op op, uint64_t off,
			  uint64_t len, int ret)
{
	struct mirror *m = container_of(n, struct mirror, notifier);
	unsigned int shift = m->dirty.gran_shift;
	uint64_t first, last;
	void *buf;

	(void)op;
	(void)ret;		/* a failed write may have changed part of the range */
	if (!len)
		return;
	jobmap_set_range(&m->dirty, off, len);
	blk_job_set_len(&m->job, __atomic_load_n(&m->job.offset, __ATOMIC_RELAXED) +
				 (jobmap_count(&m->dirty) << shift));
	if (!__atomic_load_n(&m->active, __ATOMIC_SEQ_CST) ||
	    __atomic_load_n(&m->walk.failed, __ATOMIC_SEQ_CST))
		return;
	first = off >> shift;
	last = MIN((off + len - 1) >> shift, m->dirty.nbits - 1);
	if (posix_memalign(&buf, 4096, (last - first + 1) << shift))
		return;		/* the job copies it */
	mirror_copy(&m->job, first, last - first + 1, buf);
	free(buf);
}

/*
 * The end of a converged mirror, under the job's drain: nothing is
 * written meanwhile, so what is dirty now is all the target lacks.
 * Copies it, flushes the target, and pivots when @pivot.  Returns 0 or
 * -errno.
 */
static int mirror_finish(struct mirror *m, bool pivot)
{
	struct blk_job *job = &m->job;
	struct tgt *t = m->o.target;
	uint64_t i = 0, n;
	void *buf;
	int ret = 0;

	if (posix_memalign(&buf, 4096, BLK_JOB_CHUNK_BYTES))
		return -ENOMEM;
	while (!ret && (i = jobmap_next_set(&m->dirty, i)) < m->dirty.nbits) {
		n = MIN(jobmap_next_clear(&m->dirty, i) - i,
			(uint64_t)(BLK_JOB_CHUNK_BYTES >> m->dirty.gran_shift));
		ret = mirror_copy(&m->job, i, n, buf);
		i += n;
	}
	free(buf);
	if (!ret && t->ops->flush) {
		ret = t->ops->flush(t);
		if (ret < 0)
			blk_job_error(job, "write", "flushing the target failed: %s",
				      strerror(-ret));
	}
	if (!ret && pivot) {
		ret = m->o.pivot(m->o.pivot_ctx, t, &m->old);
		if (ret)
			blk_job_error(job, "pivot", "switching the device to the target failed: %s",
				      strerror(-ret));
		else
			m->pivoted = true;
	}
	return ret;
}

static int mirror_run(struct blk_job *job)
{
	struct mirror *m = mirror_of(job);
	bool ready = false, force, end;
	int64_t t0;
	int ret;

	for (;;) {
		m->walk.cursor = 0;
		ret = blk_job_walk(job, &m->walk);
		if (ret)
			break;
		end = blk_job_complete_requested(job) ||
		      (ready && blk_job_cancel_requested(job, &force) && !force);
		/*
		 * To converge (ready, or the end), the guest's writes are
		 * copied as they come, so the bitmap can empty whatever the
		 * write rate; once ready they are copied in the background
		 * again, which costs the guest less.
		 */
		if (!ready || end) {
			if (!__atomic_load_n(&m->active, __ATOMIC_SEQ_CST)) {
				__atomic_store_n(&m->active, true, __ATOMIC_SEQ_CST);
				continue;
			}
			if (jobmap_count(&m->dirty))
				continue;
			if (end)
				break;
			ready = true;
			__atomic_store_n(&m->active, false, __ATOMIC_SEQ_CST);
			blk_job_set_ready(job);
		}
		ret = blk_job_yield(job);
		if (ret)
			break;
		if (!jobmap_count(&m->dirty))
			blk_job_wait(job, MIRROR_IDLE_MS);
	}

	t0 = blk_now_ns();
	blk_job_drain_begin(job);
	if (!ret)
		ret = mirror_finish(m, blk_job_complete_requested(job));
	blk_remove_write_notifier(job->dev, &m->notifier);
	m->notified = false;
	blk_job_drain_end(job);
	if (!ret)
		img_log("device %u: job %s held I/O for %.1f ms to finish", job->dev->id, job->id,
			(blk_now_ns() - t0) / 1e6);
	/* Closing the old images does not hold the guest's I/O. */
	if (m->old)
		tgt_free_chain(m->old);
	m->old = NULL;
	return ret;
}

static void mirror_free(struct blk_job *job)
{
	struct mirror *m = mirror_of(job);

	if (m->notified) {
		blk_drain_begin(job->dev);
		blk_remove_write_notifier(job->dev, &m->notifier);
		blk_drain_end(job->dev);
	}
	if (m->o.base && !m->pivoted) {
		/* Active commit given up: the base is a backing file again. */
		blk_drain_begin(job->dev);
		if (tgt_reopen(m->o.base, TGT_ROLE_BACKING, true))
			img_err("device %u: %s stays open read-write", job->dev->id,
				m->o.base->cfg.file);
		blk_drain_end(job->dev);
	} else if (!m->pivoted) {
		blk_copy_target_free(m->o.target);
	}
	jobmap_free(&m->dirty);
	range_lock_destroy(&m->locks);
}

static const struct blk_job_driver mirror_drv = {
	.type = "mirror",
	.run = mirror_run,
	.free = mirror_free,
	.can_complete = true,
};

/* The active commit is a mirror into the base; QEMU calls it a commit job. */
static const struct blk_job_driver active_commit_drv = {
	.type = "commit",
	.run = mirror_run,
	.free = mirror_free,
	.can_complete = true,
};

static int mirror_base_ro(void *arg)
{
	struct mirror *m = arg;

	return tgt_reopen(m->o.base, TGT_ROLE_BACKING, true);
}

static int mirror_setup(void *arg)
{
	struct mirror *m = arg;
	int ret;

	/* Active commit: the base is written from now on, and will be the device's image. */
	if (m->o.base) {
		m->o.base->cfg.open_flags |= TGT_O_FIXED_SIZE;
		ret = tgt_reopen(m->o.base, TGT_ROLE_IMAGE, false);
		if (ret)
			return ret;
	}
	ret = blk_job_scan(m->job.dev, &m->o, &m->dirty);
	if (ret && m->o.base)
		tgt_reopen(m->o.base, TGT_ROLE_BACKING, true);
	return ret;
}

int blk_mirror_start(struct blk_dev *d, const struct blk_copy_opts *o, char *why,
		     size_t why_len)
{
	struct mirror *m = calloc(1, sizeof(*m));
	int ret;

	why[0] = '\0';
	if (!m)
		return -ENOMEM;
	m->o = *o;
	if (o->base)
		m->o.target = o->base;
	ret = blk_job_init(&m->job, d, o->base ? &active_commit_drv : &mirror_drv, o->id, o->speed, o->cluster_bytes, why,
			   why_len);
	if (ret) {
		free(m);
		return ret;
	}
	ret = jobmap_init(&m->dirty, d->top->caps.size_bytes, ilog2_u64(o->gran_bytes));
	if (ret) {
		snprintf(why, why_len, "no memory for the dirty bitmap");
		pthread_mutex_destroy(&m->job.lock);
		free(m);
		return ret;
	}
	range_lock_init(&m->locks);
	m->notifier.notify = mirror_notify;
	m->walk.map = &m->dirty;
	m->walk.copy = mirror_copy;
	m->job.can_complete = o->pivot != NULL;

	/* Refused before the drain; blk_job_start() checks again under it. */
	ret = blk_job_query(d, &(struct blk_job_info){ 0 }) ? 0 : -EBUSY;
	if (ret)
		goto out;
	/* The scan and the notifier start at one moment: no write falls between. */
	blk_drain_begin(d);
	ret = exec_run_sync(mirror_setup, m);
	if (ret) {
		if (o->base)
			snprintf(why, why_len, "opening %s read-write or reading the chain failed: %s",
				 o->base->cfg.file, strerror(-ret));
		else
			snprintf(why, why_len, "reading the device's allocation failed: %s",
				 strerror(-ret));
	} else {
		blk_job_set_len(&m->job, MIN(jobmap_count(&m->dirty) << m->dirty.gran_shift,
					     d->top->caps.size_bytes));
		blk_add_write_notifier(d, &m->notifier);
		m->notified = true;
		ret = blk_job_start(&m->job);
		if (ret)
			blk_remove_write_notifier(d, &m->notifier);
		if (ret && o->base)
			exec_run_sync(mirror_base_ro, m);
	}
	blk_drain_end(d);
out:
	if (ret == -EBUSY)
		snprintf(why, why_len, "the device already runs a job");
	else if (ret && !why[0])
		snprintf(why, why_len, "cannot start the job: %s", strerror(-ret));
	if (ret) {
		jobmap_free(&m->dirty);
		range_lock_destroy(&m->locks);
		pthread_mutex_destroy(&m->job.lock);
		free(m);
	}
	return ret;
}
