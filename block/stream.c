// SPDX-License-Identifier: GPL-2.0
/*
 * The jobs that copy data down or up a running device's own chain and
 * then drop images from it (job.h): stream (QEMU's block-stream) and the
 * intermediate commit (block-commit of an image below the active one).
 * The active commit is a mirror into the base (mirror.c).
 *
 * stream: the top gets whatever the images between it and @base provide
 * where it allocates nothing; then its header names @base and those
 * images leave the chain.  The guest writes the top meanwhile, so each
 * chunk is copied under the range lock the guest's writes take then
 * (blk_dev.lock_writes: the copy-on-read lock), and only where the top
 * still allocates nothing: a copy never overwrites newer guest data.
 *
 * commit: @base gets whatever @top and the images between provide; then
 * the image above @top names @base.  Nothing else writes those images
 * (the guest writes the active one only), and what the copy writes into
 * @base is what the device reads there already, through the images
 * above: no lock is needed.  @base is reopened read-write for the job
 * and read-only again at its end.
 *
 * Crash order, both (each step keeps every image consistent and the
 * device's content the same whichever of the two chains a restart opens):
 *   C1  the copy: the written image gains data that the images above it
 *       already show (stream: the top, where it had none; commit: the
 *       base, under the images that shadow it);
 *   C2  the written image is flushed (stream: by blk_chain_drop(), which
 *       flushes the top first; commit: here, before it);
 *   C3  the header of the image above (stream: the top; commit: the
 *       overlay of @top) names @base, and is flushed (blk_chain_drop());
 *   C4  the state file records the chain (blk_chain_drop()'s record).
 * A crash before C3 leaves the old chain, which reads the same; after C3
 * the new one, whose data C2 made durable.  The dropped images are left
 * as they were, consistent, for the user to delete.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "util.h"

struct chainjob {
	struct blk_job job;
	struct blk_chain_opts o;
	bool stream;
	struct tgt *above;		/* commit: the image whose backing is o.top */
	uint64_t size;
	uint64_t cursor;		/* next byte for the workers (job thread only) */
	bool base_rw;			/* commit: o.base reopened read-write */
};

static struct chainjob *chainjob_of(struct blk_job *job)
{
	return container_of(job, struct chainjob, job);
}

/* Whether @layer lies in @from's chain above @base (@from included). */
static bool chain_between(const struct tgt *from, const struct tgt *layer,
			  const struct tgt *base)
{
	const struct tgt *l;

	for (l = from; l && l != base; l = l->backing)
		if (l == layer)
			return true;
	return false;
}

/*
 * Copies what must move in [@off, @off + @len) through @buf.  Stream:
 * into the top, under the guests' write lock, where the top allocates
 * nothing; commit: into the base.  Returns 0 or -errno (the job told).
 */
static int chainjob_chunk(struct chainjob *c, uint64_t off, uint64_t len, void *buf)
{
	struct blk_dev *d = c->job.dev;
	struct tgt *from = c->stream ? c->o.top->backing : c->o.top;
	struct tgt *dst = c->stream ? c->o.top : c->o.base;
	uint64_t pos = off, end = off + len;
	struct range_entry e;
	const char *op = "read";
	int ret = 0;

	if (c->stream && d->top != c->o.top) {
		blk_job_error(&c->job, "read", "the device's chain changed under the job");
		return -ESTALE;
	}
	if (c->stream)
		range_lock(&d->cor_lock, &e, off, len);
	while (pos < end) {
		struct tgt_extent ext;
		struct tgt *layer;
		unsigned int depth;
		int64_t n = tgt_chain_status(c->o.top, pos, end - pos, &ext, &depth, &layer);

		if (n <= 0) {
			ret = n ? (int)n : -EIO;
			break;
		}
		if (layer && chain_between(from, layer, c->o.base)) {
			op = "read";
			ret = c->o.top->ops->read(c->o.top, buf, n, pos);
			if (ret >= 0) {
				op = "write";
				if (buf_is_zero(buf, n) && dst->caps.can_write_zeroes)
					ret = dst->ops->write_zeroes(dst, pos, n, 0);
				else
					ret = dst->ops->write(dst, buf, n, pos, 0);
			}
			if (ret < 0)
				break;
			ret = 0;
		}
		pos += n;
	}
	if (c->stream)
		range_unlock(&d->cor_lock, &e);
	if (ret)
		blk_job_error(&c->job, op, "copying the data at %llu failed (%s): %s",
			      (unsigned long long)pos, op, strerror(-ret));
	return ret;
}

static int chainjob_worker(struct blk_job *job, void *arg)
{
	struct chainjob *c = chainjob_of(job);
	void *buf;
	int ret = 0;

	(void)arg;
	if (posix_memalign(&buf, 4096, BLK_JOB_CHUNK_BYTES))
		return -ENOMEM;
	for (;;) {
		uint64_t off = c->cursor, len;

		ret = blk_job_yield(job);
		if (ret || off >= c->size)
			break;
		len = MIN(c->size - off, (uint64_t)BLK_JOB_CHUNK_BYTES);
		c->cursor = off + len;
		blk_job_rate(job, len);
		ret = blk_job_io_begin(job);
		if (ret)
			break;
		ret = chainjob_chunk(c, off, len, buf);
		blk_job_io_end(job);
		if (ret)
			break;
		blk_job_progress(job, len);
	}
	free(buf);
	return ret;
}

/* Under the job's drain: commit's base goes back to a read-only backing file. */
static int chainjob_base_ro(struct chainjob *c)
{
	int ret = 0;

	if (c->base_rw) {
		ret = tgt_reopen(c->o.base, TGT_ROLE_BACKING, true);
		if (ret)
			blk_job_error(&c->job, "write", "reopening %s read-only failed: %s",
				      c->o.base->cfg.file, strerror(-ret));
		c->base_rw = false;
	}
	return ret;
}

static int chainjob_run(struct blk_job *job)
{
	struct chainjob *c = chainjob_of(job);
	struct blk_dev *d = job->dev;
	struct blk_chain_change ch = { .record = c->o.record, .ctx = c->o.record_ctx };
	struct tgt *dropped = NULL;
	void *buf = NULL;
	int ret, r;

	ret = blk_job_workers(job, BLK_JOB_WORKERS, chainjob_worker, NULL);

	blk_job_drain_begin(job);
	if (!ret && c->stream && d->top != c->o.top)
		ret = -ESTALE;
	/*
	 * Stream: nothing writes now; one more pass copies what a guest's
	 * discard may have handed back to the images that go (it finds
	 * nothing otherwise, and only reads metadata).
	 */
	if (!ret && c->stream && posix_memalign(&buf, 4096, BLK_JOB_CHUNK_BYTES))
		ret = -ENOMEM;
	for (c->cursor = 0; !ret && c->stream && c->cursor < c->size;
	     c->cursor += BLK_JOB_CHUNK_BYTES)
		ret = chainjob_chunk(c, c->cursor,
				     MIN(c->size - c->cursor, (uint64_t)BLK_JOB_CHUNK_BYTES), buf);
	free(buf);
	if (c->stream)
		d->lock_writes = false;
	/* C2 for commit: the base's new data is durable before a header names it. */
	if (!ret && !c->stream && c->o.base->ops->flush) {
		ret = c->o.base->ops->flush(c->o.base);
		if (ret < 0)
			blk_job_error(job, "write", "flushing %s failed: %s", c->o.base->cfg.file,
				      strerror(-ret));
	}
	r = chainjob_base_ro(c);
	if (!ret)
		ret = r;
	/* C2 (stream), C3, C4. */
	if (!ret) {
		ret = blk_chain_drop(d, c->stream ? c->o.top : c->above, c->o.base, NULL,
				     &dropped, &ch);
		if (ret)
			blk_job_error(job, "write", "dropping the images from the chain failed: %s",
				      strerror(-ret));
	}
	blk_job_drain_end(job);
	if (dropped)
		tgt_free_chain(dropped);
	return ret;
}

/* Both end in ->run (the base reopened, the chain changed): nothing is left. */
static void chainjob_free(struct blk_job *job)
{
	(void)job;
}

static const struct blk_job_driver stream_drv = {
	.type = "stream",
	.run = chainjob_run,
	.free = chainjob_free,
};

static const struct blk_job_driver commit_drv = {
	.type = "commit",
	.run = chainjob_run,
	.free = chainjob_free,
};

static int chainjob_reopen_rw(void *arg)
{
	struct chainjob *c = arg;

	return tgt_reopen(c->o.base, TGT_ROLE_IMAGE, false);
}

static int chainjob_reopen_ro(void *arg)
{
	return chainjob_base_ro(arg);
}

static int chainjob_start(struct blk_dev *d, const struct blk_chain_opts *o, bool stream,
			  char *why, size_t why_len)
{
	struct chainjob *c = calloc(1, sizeof(*c));
	int ret;

	why[0] = '\0';
	if (!c)
		return -ENOMEM;
	c->o = *o;
	c->stream = stream;
	c->size = d->top->caps.size_bytes;
	ret = blk_job_init(&c->job, d, stream ? &stream_drv : &commit_drv, o->id, o->speed,
			   o->cluster_bytes, why, why_len);
	if (ret) {
		free(c);
		return ret;
	}
	blk_job_set_len(&c->job, c->size);
	if (!stream) {
		for (c->above = d->top; c->above && c->above->backing != o->top;
		     c->above = c->above->backing)
			;
		if (!c->above || o->top == d->top) {
			snprintf(why, why_len, "%s is not below the active image",
				 o->top->cfg.file);
			ret = -EINVAL;
			goto out;
		}
	}
	ret = blk_job_query(d, &(struct blk_job_info){ 0 }) ? 0 : -EBUSY;
	if (ret)
		goto out;
	blk_drain_begin(d);
	if (stream) {
		d->lock_writes = true;
	} else {
		ret = exec_run_sync(chainjob_reopen_rw, c);
		if (ret)
			snprintf(why, why_len, "%s cannot be opened read-write: %s",
				 o->base->cfg.file, strerror(-ret));
		c->base_rw = !ret;
	}
	if (!ret) {
		ret = blk_job_start(&c->job);
		if (ret && stream)
			d->lock_writes = false;
		if (ret && c->base_rw)
			exec_run_sync(chainjob_reopen_ro, c);
	}
	blk_drain_end(d);
out:
	if (ret == -EBUSY)
		snprintf(why, why_len, "the device already runs a job");
	else if (ret && !why[0])
		snprintf(why, why_len, "cannot start the job: %s", strerror(-ret));
	if (ret) {
		pthread_mutex_destroy(&c->job.lock);
		free(c);
	}
	return ret;
}

int blk_stream_start(struct blk_dev *d, const struct blk_chain_opts *o, char *why,
		     size_t why_len)
{
	return chainjob_start(d, o, true, why, why_len);
}

int blk_commit_start(struct blk_dev *d, const struct blk_chain_opts *o, char *why,
		     size_t why_len)
{
	return chainjob_start(d, o, false, why, why_len);
}
