// SPDX-License-Identifier: GPL-2.0
/*
 * Changing a running device's node chain (blk_dev.top and the backing
 * links below it), as QEMU's bdrv_append, bdrv_replace_node and
 * bdrv_drop_intermediate do: an overlay pushed on top (external
 * snapshot), the top replaced (a pivot: mirror, active commit), images
 * dropped from the middle (stream, commit).  Each change runs under a
 * drain, so a request sees one chain from its start to its end, and
 * under the chain lock, so changes and the targets' ticks never overlap.
 * Internal snapshots of the top run the same way: they change no node,
 * but rewrite its metadata while nothing else may use it.
 * docs/block-layer.md ("Changing the chain") says why a node opened on
 * any thread serves every queue thread.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

/* What one change does, run in a coroutine by blk_chain_run(). */
struct blk_chain_call {
	struct blk_dev *d;
	struct blk_chain_change *c;
	int (*fn)(struct blk_chain_call *call);
	/* The arguments of the changes. */
	struct tgt *node, *base;
	const char *name;
	struct tgt **out;
	enum tgt_snapshot_op snap_op;
	void (*list_fn)(void *ctx, const struct tgt_snapshot_info *list, int n);
	void *list_ctx;
};

static const char *blk_node_name(const struct tgt *t)
{
	return t && t->cfg.file ? t->cfg.file : "(none)";
}

/* Publishes @top to the queues; the drain's atomics order it before the gate opens. */
static void blk_set_top(struct blk_dev *d, struct tgt *top)
{
	__atomic_store_n(&d->top, top, __ATOMIC_RELEASE);
}

/* Asks the caller to record @top as the device's image; 0 without a hook. */
static int blk_chain_record(struct blk_chain_call *call, const struct tgt *top)
{
	struct blk_chain_change *c = call->c;

	return c && c->record ? c->record(c->ctx, top) : 0;
}

/*
 * @t could not even be opened again as it was (tgt_reopen()'s -EIO), and
 * the chain reads through it: no request may reach it.  The gate stays
 * closed for good (a drain never ended) and the device fails what waits
 * and what comes, as at shutdown; only deleting it helps.
 */
static void blk_chain_broken(struct blk_dev *d, const struct tgt *t)
{
	img_err("device %u: chain: %s is unusable; the device fails all I/O from now on",
		d->id, blk_node_name(t));
	blk_drain_begin(d);
	blk_shutdown(d);
}

static int blk_flush_node(struct tgt *t)
{
	return t->ops->flush && !t->caps.read_only ? t->ops->flush(t) : 0;
}

static int blk_chain_fn(void *arg)
{
	struct blk_chain_call *call = arg;
	struct blk_dev *d = call->d;
	int64_t start;
	int ret;

	exec_mutex_lock(&d->chain_lock);
	/* A device going away, or broken by an earlier change, changes no more. */
	pthread_mutex_lock(&d->lock);
	ret = d->dying ? -ENODEV : 0;
	pthread_mutex_unlock(&d->lock);
	if (ret) {
		exec_mutex_unlock(&d->chain_lock);
		return ret;
	}
	/*
	 * A flush while the device still runs writes back most of what the
	 * drained one would, so the gate stays closed for less.  Its result
	 * does not matter: the drained step flushes again and decides.
	 */
	blk_flush_node(d->top);
	start = blk_now_ns();
	blk_drain_begin(d);
	if (call->c)
		call->c->drain_ns = blk_now_ns() - start;
	ret = call->fn(call);
	/* The top, its backing file or its mode may have changed. */
	blk_update_copy_on_read(d);
	blk_drain_end(d);
	if (call->c)
		call->c->held_ns = blk_now_ns() - start;
	exec_mutex_unlock(&d->chain_lock);
	return ret;
}

static int blk_chain_run(struct blk_chain_call *call)
{
	if (call->c)
		call->c->held_ns = call->c->drain_ns = 0;
	return exec_run_sync(blk_chain_fn, call);
}

/* Number of nodes from @t down. */
static unsigned int blk_chain_len(const struct tgt *t)
{
	unsigned int n = 0;

	for (; t; t = t->backing)
		n++;
	return n;
}

static int blk_push_overlay_fn(struct blk_chain_call *call)
{
	struct blk_dev *d = call->d;
	struct tgt *overlay = call->node, *old = d->top;
	int ret;

	/*
	 * What the old top acknowledged is made durable before anything
	 * names the overlay: from the record on, a crash serves the
	 * overlay, which reads the old top.  Written back and made read-only
	 * first: the flush of a format's in-place switch (->set_read_only)
	 * is that flush, so the gate stays closed for one instead of two.
	 * Without the in-place switch the reopen closes the image, and the
	 * explicit flush keeps the order whatever ->close does.
	 */
	ret = old->ops->set_read_only ? 0 : blk_flush_node(old);
	if (!ret)
		ret = tgt_reopen(old, TGT_ROLE_BACKING, true);
	if (ret) {
		if (!old->priv)
			blk_chain_broken(d, old);
		goto fail;
	}
	ret = blk_chain_record(call, overlay);
	if (ret) {
		/* Nothing names the overlay: the old top serves on, writable again. */
		if (tgt_reopen(old, TGT_ROLE_IMAGE, false) && !old->priv)
			blk_chain_broken(d, old);
		goto fail;
	}
	overlay->cfg.open_flags &= ~TGT_O_NO_BACKING;
	tgt_link_backing(overlay, old);
	blk_set_top(d, overlay);
	img_log("device %u: chain: %s (%s) is the top, over %s, now read-only", d->id,
		blk_node_name(overlay), overlay->ops->name, blk_node_name(old));
	return 0;
fail:
	img_err("device %u: chain: cannot put %s over %s: %s", d->id, blk_node_name(overlay),
		blk_node_name(old), strerror(-ret));
	return ret;
}

/*
 * Sets @out to a name for the temporary file @file is made in: hidden,
 * in @file's directory (link() stays within one filesystem), unique per
 * process.  Returns 0 or -ENAMETOOLONG.
 */
static int blk_overlay_tmp_name(const char *file, char *out, size_t len)
{
	const char *base = strrchr(file, '/');
	int n;

	if (base)
		n = snprintf(out, len, "%.*s.%s.imgblk-%d", (int)(base + 1 - file), file,
			     base + 1, (int)getpid());
	else
		n = snprintf(out, len, ".%s.imgblk-%d", file, (int)getpid());
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/*
 * Power-cut order of the overlay's creation (E1 in ublksrv/control_snap.c;
 * tests/host/crash_replay.c replays it, docs/crash-replay.md):
 *   O1  ->create writes the header under the temporary name and fsyncs
 *       it: the content is durable before any name but the hidden one
 *       can reach it;
 *   O2  link() to @file (refusing one that exists), unlink() of the
 *       temporary name: either may or may not survive a power cut yet,
 *       and @file, if it does, names the complete header of O1;
 *   O3  the directory is fsynced: @file survives, before anything writes
 *       into it (the switch comes later, under the drain), so no write
 *       acknowledged from the overlay can sit behind a name that vanishes.
 * After a power cut the image to open is @file if it exists (an empty
 * overlay reads the old top), else the old top.  A leftover temporary
 * file is garbage (a later snapshot of a server with the same pid
 * removes it).
 */
int blk_overlay_create(const struct tgt *top, const struct tgt_ops *ops, const char *file,
		       struct tgt **out, char *why, size_t why_len)
{
	struct tgt_create_opts co = { .size_bytes = top->caps.size_bytes };
	char backing[PATH_MAX], tmp[PATH_MAX];
	struct tgt *t;
	int ret;

	/*
	 * QEMU writes the old top's name as it was opened; the server's
	 * working directory is not the user's, so ours is always absolute.
	 */
	if (!realpath(top->cfg.file, backing)) {
		ret = -errno;
		snprintf(why, why_len, "%s: %s", top->cfg.file, strerror(-ret));
		return ret;
	}
	co.backing_file = backing;
	co.backing_fmt = top->ops->name;
	if (!access(file, F_OK)) {
		snprintf(why, why_len, "%s: file exists", file);
		return -EEXIST;
	}
	/*
	 * Made whole under a temporary name, then linked: the server may be
	 * killed while ->create writes, and a half-written NEW would be an
	 * image qemu-img check calls corrupt.  link() also refuses to
	 * replace a NEW that appeared meanwhile.
	 */
	ret = blk_overlay_tmp_name(file, tmp, sizeof(tmp));
	if (ret) {
		snprintf(why, why_len, "%s: %s", file, strerror(-ret));
		return ret;
	}
	co.file = tmp;
	unlink(tmp);	/* left by a killed server of the same pid */
	ret = ops->create(&co);		/* O1 */
	if (!ret)
		ret = exec_link(tmp, file);	/* O2 */
	exec_unlink(tmp);
	if (!ret)
		ret = exec_sync_dir(file);	/* O3 */
	if (ret) {
		if (ret != -EEXIST)
			unlink(file);
		snprintf(why, why_len, "cannot create %s: %s", file,
			 ret == -EEXIST ? "file exists" : strerror(-ret));
		return ret;
	}
	t = calloc(1, sizeof(*t));
	if (!t || !(t->cfg.file = strdup(file))) {
		free(t);
		unlink(file);
		snprintf(why, why_len, "%s", strerror(ENOMEM));
		return -ENOMEM;
	}
	t->ops = ops;
	t->cfg.format = ops->name;
	/* As the top was served; its backing is linked by the switch. */
	t->cfg.open_flags = (top->cfg.open_flags & (TGT_O_BUFFERED | TGT_O_RECOVERABLE)) |
			    TGT_O_FIXED_SIZE | TGT_O_NO_BACKING;
	t->cfg.backing_policy = top->cfg.backing_policy;
	t->cfg.l2_cache_bytes = top->cfg.l2_cache_bytes;
	ret = tgt_open(t);
	if (!ret && t->caps.size_bytes != top->caps.size_bytes) {
		tgt_close(t);
		ret = -EINVAL;
	}
	if (ret) {
		free((char *)t->cfg.file);
		free(t);
		unlink(file);
		snprintf(why, why_len, "cannot open %s: %s", file, strerror(-ret));
		return ret;
	}
	*out = t;
	return 0;
}

int blk_chain_push_overlay(struct blk_dev *d, struct tgt *overlay, struct blk_chain_change *c)
{
	struct blk_chain_call call = { .d = d, .c = c, .fn = blk_push_overlay_fn,
				       .node = overlay };

	if (overlay->backing || overlay->caps.read_only)
		return -EINVAL;
	if (1 + blk_chain_len(d->top) > TGT_MAX_CHAIN) {
		img_err("device %u: the chain would be deeper than %d images", d->id,
			TGT_MAX_CHAIN);
		return -ELOOP;
	}
	return blk_chain_run(&call);
}

/* The node of @d's chain whose backing is @t, NULL when @t is the top or not in it. */
static struct tgt *blk_overlay_of(struct blk_dev *d, const struct tgt *t)
{
	struct tgt *l;

	for (l = d->top; l; l = l->backing)
		if (l->backing == t)
			return l;
	return NULL;
}

static int blk_replace_top_fn(struct blk_chain_call *call)
{
	struct blk_dev *d = call->d;
	struct tgt *top = call->node, *old = d->top, *above = blk_overlay_of(d, top);
	int ret;

	ret = blk_flush_node(old);
	if (!ret)
		ret = blk_chain_record(call, top);
	/* A node of the chain was read-only under the top: it is written now. */
	if (!ret && above && top->caps.read_only) {
		/* The device's size stays fixed whatever image serves it. */
		top->cfg.open_flags |= old->cfg.open_flags & TGT_O_FIXED_SIZE;
		ret = tgt_reopen(top, TGT_ROLE_IMAGE, false);
		if (ret)
			blk_chain_record(call, old);
		if (ret && !top->priv)
			blk_chain_broken(d, top);
	}
	if (ret) {
		img_err("device %u: chain: cannot make %s the top: %s", d->id,
			blk_node_name(top), strerror(-ret));
		return ret;
	}
	if (above) {
		above->backing = NULL;
		top->overlay = NULL;
		top->chain_depth = 0;
		tgt_link_backing(top, top->backing);
	}
	blk_set_top(d, top);
	*call->out = old;
	img_log("device %u: chain: %s (%s) replaces %s as the top", d->id,
		blk_node_name(top), top->ops->name, blk_node_name(old));
	return 0;
}

int blk_chain_replace_top(struct blk_dev *d, struct tgt *new_top, struct tgt **old,
			  struct blk_chain_change *c)
{
	struct blk_chain_call call = { .d = d, .c = c, .fn = blk_replace_top_fn,
				       .node = new_top, .out = old };

	*old = NULL;
	if (new_top == d->top)
		return -EINVAL;
	/* An independent chain must be writable already; a node of ours is made so. */
	if (new_top->caps.read_only && !blk_overlay_of(d, new_top))
		return -EROFS;
	return blk_chain_run(&call);
}

static int blk_drop_fn(struct blk_chain_call *call)
{
	struct blk_dev *d = call->d;
	struct tgt *above = call->node, *base = call->base, *first = above->backing, *last;
	bool was_ro = above->caps.read_only;	/* then: reopened read-write for this */
	char *path = NULL;
	const char *name = call->name;
	int ret = 0;

	if (base && !name) {
		path = realpath(base->cfg.file, NULL);
		if (!path)
			return -errno;
		name = path;
	}
	/*
	 * Crash order: what the job copied into @above is durable before its
	 * header stops naming the images it came from (QEMU's stream: data
	 * first, then the backing name).  A read-only node is written through
	 * a reopen in between, under the same drain.
	 */
	if (was_ro) {
		ret = tgt_reopen(above, TGT_ROLE_IMAGE, false);
		was_ro = !ret;
	}
	if (!ret)
		ret = blk_flush_node(above);
	if (!ret)
		ret = above->ops->set_backing(above, name, base ? base->ops->name : NULL);
	if (!ret)
		ret = blk_flush_node(above);
	if (was_ro && above->priv) {
		int r = tgt_reopen(above, TGT_ROLE_BACKING, true);

		if (!ret)
			ret = r;
	}
	if (!above->priv)
		blk_chain_broken(d, above);
	if (!ret)
		ret = blk_chain_record(call, d->top);
	free(path);
	if (ret) {
		img_err("device %u: chain: cannot make %s the backing file of %s: %s", d->id,
			blk_node_name(base), blk_node_name(above), strerror(-ret));
		return ret;
	}
	/* In memory: the nodes between go, as one chain ending in NULL. */
	for (last = first; last && last->backing != base; last = last->backing)
		;
	if (last && last != base) {
		last->backing = NULL;
		*call->out = first;
	}
	tgt_link_backing(above, base);
	img_log("device %u: chain: %s now reads %s; dropped %s to %s", d->id,
		blk_node_name(above), blk_node_name(base), blk_node_name(first),
		blk_node_name(last));
	return 0;
}

int blk_chain_drop(struct blk_dev *d, struct tgt *above, struct tgt *base, const char *name,
		   struct tgt **dropped, struct blk_chain_change *c)
{
	struct blk_chain_call call = { .d = d, .c = c, .fn = blk_drop_fn, .node = above,
				       .base = base, .name = name, .out = dropped };
	struct tgt *l;

	*dropped = NULL;
	if (!above->ops->set_backing)
		return -EOPNOTSUPP;
	/* @base must lie below @above, and something must be between. */
	for (l = above->backing; l && l != base; l = l->backing)
		;
	if (l != base || above->backing == base)
		return -EINVAL;
	for (l = d->top; l && l != above; l = l->backing)
		;
	if (!l)
		return -EINVAL;
	return blk_chain_run(&call);
}

static int blk_snapshot_fn(struct blk_chain_call *call)
{
	struct blk_dev *d = call->d;
	struct tgt *t = d->top;
	int ret;

	/* The format's own order (qcow2: S1-S4) makes the change crash-safe. */
	ret = t->ops->snapshot(t, call->snap_op, call->name);
	if (!ret)
		img_log("device %u: %s internal snapshot '%s' of %s", d->id,
			call->snap_op == TGT_SNAPSHOT_CREATE ? "took" : "deleted", call->name,
			blk_node_name(t));
	return ret;
}

int blk_snapshot_internal(struct blk_dev *d, enum tgt_snapshot_op op, const char *name,
			  struct blk_chain_change *c)
{
	struct blk_chain_change none = { 0 };
	struct blk_chain_call call = { .d = d, .c = c ? c : &none, .fn = blk_snapshot_fn,
				       .name = name, .snap_op = op };

	if (op == TGT_SNAPSHOT_APPLY)
		return -EINVAL;
	if (!d->top->ops->snapshot)
		return -ENOTSUP;
	if (d->top->caps.read_only)
		return -EROFS;
	call.c->record = NULL;
	return blk_chain_run(&call);
}

static int blk_snapshot_list_fn(void *arg)
{
	struct blk_chain_call *call = arg;
	struct blk_dev *d = call->d;
	const struct tgt_snapshot_info *list = NULL;
	struct tgt *t;
	int n;

	exec_mutex_lock(&d->chain_lock);
	t = d->top;
	n = t->ops->snapshot_list ? t->ops->snapshot_list(t, &list) : -ENOTSUP;
	if (n >= 0)
		call->list_fn(call->list_ctx, list, n);
	exec_mutex_unlock(&d->chain_lock);
	return n < 0 ? n : 0;
}

int blk_snapshot_list(struct blk_dev *d,
		      void (*fn)(void *ctx, const struct tgt_snapshot_info *list, int n),
		      void *ctx)
{
	struct blk_chain_call call = { .d = d, .list_fn = fn, .list_ctx = ctx };

	return exec_run_sync(blk_snapshot_list_fn, &call);
}

void blk_chain_tick(struct blk_dev *d)
{
	struct tgt *t;

	exec_mutex_lock(&d->chain_lock);
	t = d->top;
	if (t->ops->tick)
		t->ops->tick(t);
	exec_mutex_unlock(&d->chain_lock);
}
