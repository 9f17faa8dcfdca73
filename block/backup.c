// SPDX-License-Identifier: GPL-2.0
/*
 * The backup job (job.h, blk_backup_start()): the target receives the
 * device's content as of the job's start while the guest goes on
 * writing, by copy-before-write, as QEMU's backup job.
 *
 * A bitmap has a bit per granule that still holds data of the start
 * moment not yet saved.  The job's workers save granules in order; a
 * hook that runs before every guest write, discard or write-zeroes
 * (struct blk_before_write) saves the granules that request is about to
 * change first.  Each save holds a range lock on its granules while it
 * reads them from the device and clears their bits, so a guest write
 * waits for a read in progress, a save never reads data newer than the
 * start, and each granule is saved exactly once, by whoever comes first.
 * The save writes the target after it let go of the lock, from its
 * buffer: a guest write never waits for the target, which is where a
 * save spends its time (a new image allocates as it is written), and a
 * job's chunk does not hold a megabyte of the device for that long.  The
 * job's workers take the gate before the lock (a drain never waits for a
 * worker that waits for the gate while holding a granule a guest write
 * needs).
 *
 * A failed save (the target is full, say) fails the job, never the
 * guest's write: the backup is broken, the device goes on.  That is
 * QEMU's on-cbw-error=break-snapshot, chosen because a backup must not
 * take the guest down.
 *
 * An incremental or differential backup (o->bitmap) copies only what a
 * persistent bitmap of the top image marks.  Under the start's drain the
 * target lends the job the bitmap's bits and the bitmap goes on
 * recording from that moment (TGT_BITMAP_TAKE, QEMU's successor): those
 * bits are the set to save, with the same copy-before-write.  At the end
 * the bitmap is released, its taken bits marked again unless an
 * incremental backup succeeded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "jobmap.h"
#include "util.h"

struct backup {
	struct blk_job job;
	struct blk_copy_opts o;
	struct jobmap map;		/* set: to save */
	struct range_lock locks;	/* granules being saved */
	struct blk_before_write hook;
	bool hooked;
	struct blk_job_walk walk;	/* the job's saves, over map */
	char *bm_name;			/* o.bitmap's copy: the caller's goes with its call */
	bool bm_taken;			/* the bitmap is lent to the job */
	bool ok;			/* the job succeeded: the bitmap's old marks go */
};

static struct backup *backup_of(struct blk_job *job)
{
	return container_of(job, struct backup, job);
}

/* Granules one save takes at most: a walk's chunk, or a piece of a guest request. */
#define BACKUP_SAVE_MAX		(BLK_JOB_CHUNK_BYTES >> 12)

/*
 * Saves those of granules [@i, @i + @n) still to save, through @buf
 * (@n granules, @n <= BACKUP_SAVE_MAX).  Called by the walk (inside the
 * gate) and the hook (inside the guest request).  Returns 0 or -errno
 * (recorded in b->walk.failed, the job told).
 */
static int backup_save(struct blk_job *job, uint64_t i, uint64_t n, void *buf)
{
	struct backup *b = backup_of(job);
	struct blk_dev *d = b->job.dev;
	unsigned int shift = b->map.gran_shift;
	uint64_t size = d->top->caps.size_bytes, end = i + n, j, k, x, at = i;
	bool skip_zero = b->o.target_zeroed && !b->o.sync_top;
	uint64_t words[(BACKUP_SAVE_MAX + 63) / 64] = { 0 };
	/* What this save took (bit x: granule i + x), in the bitmap code's terms. */
	struct jobmap taken = { .words = words, .nbits = n, .gran_shift = shift };
	struct range_entry e;
	const char *op = "read";
	int ret = 0;

	/*
	 * The old data is read and its granules taken under the lock; the
	 * target is written after, from @buf, so a guest write to them
	 * waits for the read only.
	 */
	range_lock(&b->locks, &e, i << shift, n << shift);
	for (j = jobmap_next_set(&b->map, i); j < end; j = jobmap_next_set(&b->map, k)) {
		uint64_t off = j << shift;

		k = MIN(jobmap_next_clear(&b->map, j), end);
		at = j;
		ret = d->top->ops->read(d->top, (char *)buf + ((j - i) << shift),
					MIN(k << shift, size) - off, off);
		if (ret < 0)
			break;
		ret = 0;
		for (x = j; x < k; x++) {
			jobmap_clear(&b->map, x);
			jobmap_set(&taken, x - i);
		}
	}
	range_unlock(&b->locks, &e);

	op = "write";
	for (x = jobmap_next_set(&taken, 0); !ret && x < n; x = jobmap_next_set(&taken, k)) {
		uint64_t off = (i + x) << shift, len;

		at = i + x;
		k = jobmap_next_clear(&taken, x);
		len = MIN((i + k) << shift, size) - off;
		ret = blk_job_write_out(b->o.target, (char *)buf + (x << shift), off, len,
					skip_zero);
		if (!ret)
			blk_job_progress(&b->job, len);
	}
	if (ret)
		blk_job_walk_fail(&b->job, &b->walk, "saving", op, at << shift, ret);
	return ret;
}
/* Copy-before-write: saves what the request is about to change. */
static void backup_before_write(struct blk_before_write *h, enum blk_op op, uint64_t off,
				uint64_t len)
{
	struct backup *b = container_of(h, struct backup, hook);
	unsigned int shift = b->map.gran_shift;
	uint64_t first = off >> shift, last, i, n;
	void *buf = NULL;

	(void)op;
	if (!len || __atomic_load_n(&b->walk.failed, __ATOMIC_SEQ_CST))
		return;
	last = MIN((off + len - 1) >> shift, b->map.nbits - 1);
	i = jobmap_next_set(&b->map, first);
	if (i > last)
		return;
	/* Only requests that meet unsaved granules pay for a buffer. */
	n = MIN(last - i + 1, (uint64_t)BACKUP_SAVE_MAX);
	if (posix_memalign(&buf, 4096, n << shift)) {
		blk_job_walk_fail(&b->job, &b->walk, "saving", "read", i << shift, -ENOMEM);
		return;
	}
	for (; i <= last; i += n) {
		n = MIN(last - i + 1, (uint64_t)BACKUP_SAVE_MAX);
		if (backup_save(&b->job, i, n, buf))
			break;
	}
	free(buf);
}

static int backup_run(struct blk_job *job)
{
	struct backup *b = backup_of(job);
	int ret, flush;

	ret = blk_job_walk(job, &b->walk);
	/* Every worker is done: the hook may go (a drain from this thread). */
	blk_remove_before_write(job->dev, &b->hook);
	b->hooked = false;
	/* A save takes its granules before it writes them: a failed one may leave none set. */
	if (!ret)
		ret = __atomic_load_n(&b->walk.failed, __ATOMIC_SEQ_CST);
	if (!ret && jobmap_count(&b->map))
		ret = -EIO;
	if (!ret && b->o.target->ops->flush) {
		flush = b->o.target->ops->flush(b->o.target);
		if (flush < 0) {
			blk_job_error(job, "write", "flushing the target failed: %s",
				      strerror(-flush));
			ret = flush;
		}
	}
	b->ok = !ret;
	return ret;
}

/* Gives the bitmap back (TGT_BITMAP_RELEASE), in a coroutine. */
static int backup_bitmap_release_fn(void *arg)
{
	struct backup *b = arg;
	struct tgt *top = b->job.dev->top;
	struct tgt_bitmap_args a = { .restore = b->o.bitmap_keep ? false : !b->ok };

	return top->ops->bitmap(top, TGT_BITMAP_RELEASE, b->bm_name, &a);
}

/*
 * The job's end with a bitmap: nothing to do for a differential backup
 * (the bitmap kept its marks); an incremental one keeps only the writes
 * since the start if it succeeded, else gets the taken marks back.  No
 * job changes the chain while a backup runs, so the top is the one the
 * bitmap was taken from.
 */
static void backup_bitmap_release(struct backup *b)
{
	int ret;

	if (!b->bm_taken)
		return;
	ret = exec_run_sync(backup_bitmap_release_fn, b);
	if (ret)
		img_err("device %u: bitmap '%s': cannot release it: %s", b->job.dev->id,
			b->bm_name, strerror(-ret));
	b->bm_taken = false;
}

static void backup_free(struct blk_job *job)
{
	struct backup *b = backup_of(job);

	backup_bitmap_release(b);
	free(b->bm_name);
	if (b->hooked)
		blk_remove_before_write(job->dev, &b->hook);
	blk_copy_target_free(b->o.target);
	jobmap_free(&b->map);
	range_lock_destroy(&b->locks);
}

static const struct blk_job_driver backup_drv = {
	.type = "backup",
	.run = backup_run,
	.free = backup_free,
};

/*
 * Takes bitmap @b->bm_name of the top (in the start's drain: no write runs)
 * and marks in the job's map every granule its marks touch.  Returns 0
 * or -errno (the target printed why).
 */
static int backup_bitmap_take(struct backup *b)
{
	struct tgt *top = b->job.dev->top;
	struct tgt_bitmap_args a = { .clear = !b->o.bitmap_keep };
	uint64_t size = top->caps.size_bytes, w, i;
	int ret;

	if (!top->ops->bitmap)
		return -EOPNOTSUPP;
	ret = top->ops->bitmap(top, TGT_BITMAP_TAKE, b->bm_name, &a);
	if (ret)
		return ret;
	b->bm_taken = true;
	for (w = 0; w < DIV_ROUND_UP(a.nr_bits, 64); w++) {
		for (i = w * 64; a.bits[w] && i < MIN(w * 64 + 64, a.nr_bits); i++) {
			uint64_t off = i * a.granularity_bytes;

			if (a.bits[w] >> (i % 64) & 1 && off < size)
				jobmap_set_range(&b->map, off,
						 MIN(a.granularity_bytes, size - off));
		}
	}
	return 0;
}

/* Under the start's drain: fixes the moment. */
static int backup_setup(void *arg)
{
	struct backup *b = arg;
	struct blk_dev *d = b->job.dev;
	int ret;

	/* Files on disk hold the moment too, for a reader with -U. */
	if (d->top->ops->flush && !d->top->caps.read_only) {
		ret = d->top->ops->flush(d->top);
		if (ret < 0)
			return ret;
	}
	return b->bm_name ? backup_bitmap_take(b) : blk_job_scan(d, &b->o, &b->map);
}

int blk_backup_start(struct blk_dev *d, const struct blk_copy_opts *o, char *why,
		     size_t why_len)
{
	struct backup *b = calloc(1, sizeof(*b));
	int ret;

	why[0] = '\0';
	if (!b)
		return -ENOMEM;
	b->o = *o;
	ret = blk_job_init(&b->job, d, &backup_drv, o->id, o->speed, o->cluster_bytes, why,
			   why_len);
	if (ret) {
		free(b);
		return ret;
	}
	ret = jobmap_init(&b->map, d->top->caps.size_bytes, ilog2_u64(o->gran_bytes));
	if (ret) {
		snprintf(why, why_len, "no memory for the bitmap");
		free(b);
		return ret;
	}
	range_lock_init(&b->locks);
	b->hook.fn = backup_before_write;
	b->walk.map = &b->map;
	b->walk.copy = backup_save;
	if (o->bitmap && !(b->bm_name = strdup(o->bitmap))) {
		ret = -ENOMEM;
		goto out;
	}

	/* Refused before the drain; blk_job_start() checks again under it. */
	ret = blk_job_query(d, &(struct blk_job_info){ 0 }) ? 0 : -EBUSY;
	if (ret)
		goto out;
	blk_drain_begin(d);
	ret = exec_run_sync(backup_setup, b);
	if (ret) {
		if (o->bitmap)
			snprintf(why, why_len, "cannot take bitmap '%s': %s", o->bitmap,
				 strerror(-ret));
		else
			snprintf(why, why_len, "reading the device's allocation failed: %s",
				 strerror(-ret));
	} else {
		blk_job_set_len(&b->job, MIN(jobmap_count(&b->map) << b->map.gran_shift,
					     d->top->caps.size_bytes));
		blk_add_before_write(d, &b->hook);
		b->hooked = true;
		ret = blk_job_start(&b->job);
		if (ret)
			blk_remove_before_write(d, &b->hook);
	}
	blk_drain_end(d);
out:
	if (ret == -EBUSY)
		snprintf(why, why_len, "the device already runs a job");
	else if (ret && !why[0])
		snprintf(why, why_len, "cannot start the job: %s", strerror(-ret));
	if (ret) {
		backup_bitmap_release(b);
		free(b->bm_name);
		jobmap_free(&b->map);
		range_lock_destroy(&b->locks);
		pthread_mutex_destroy(&b->job.lock);
		free(b);
	}
	return ret;
}
