// SPDX-License-Identifier: GPL-2.0
/*
 * The device's control channel: its command table and the start and stop
 * that server.c calls.  A device command is one entry of ublk_ctl_cmds[]
 * (control.h, struct ctl_cmd); its handler gets the struct ublk_dev as
 * @call->ctx.  docs/control.md documents each command.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "block.h"
#include "control.h"
#include "exec.h"
#include "state.h"
#include "ublk.h"
#include "util.h"

/* A json int of a uint64 counter (json-c's ints are int64). */
static struct json_object *ublk_json_u64(uint64_t v)
{
	return json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static void ublk_json_add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, ublk_json_u64(v));
}

static void ublk_json_add_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, json_object_new_string(v));
}

static struct json_object *ublk_json_hist(const struct blk_op_stats *s)
{
	struct json_object *h = json_object_new_object();
	struct json_object *bounds = json_object_new_array();
	struct json_object *bins = json_object_new_array();
	unsigned int i;

	for (i = 0; i < BLK_HIST_BOUNDS; i++)
		json_object_array_add(bounds, ublk_json_u64(blk_hist_bounds_ns[i]));
	for (i = 0; i < BLK_HIST_BINS; i++)
		json_object_array_add(bins, ublk_json_u64(s->hist[i]));
	json_object_object_add(h, "boundaries", bounds);
	json_object_object_add(h, "bins", bins);
	return h;
}

/*
 * query-blockstats' "stats" object.  As in QEMU, write-zeroes count as
 * writes (zero_* has them alone) and discards as unmaps; the kernel
 * merges requests before we see them, so *_merged is 0.
 */
static struct json_object *ublk_json_stats(const struct blk_stats *st, int64_t now_ns)
{
	const struct blk_op_stats *rd = &st->op[BLK_OP_READ], *wr = &st->op[BLK_OP_WRITE];
	const struct blk_op_stats *fl = &st->op[BLK_OP_FLUSH], *un = &st->op[BLK_OP_DISCARD];
	const struct blk_op_stats *wz = &st->op[BLK_OP_WRITE_ZEROES];
	struct json_object *o = json_object_new_object();

	ublk_json_add_u64(o, "rd_bytes", rd->bytes);
	ublk_json_add_u64(o, "wr_bytes", wr->bytes + wz->bytes);
	ublk_json_add_u64(o, "unmap_bytes", un->bytes);
	ublk_json_add_u64(o, "zero_bytes", wz->bytes);
	ublk_json_add_u64(o, "rd_operations", rd->ops);
	ublk_json_add_u64(o, "wr_operations", wr->ops + wz->ops);
	ublk_json_add_u64(o, "flush_operations", fl->ops);
	ublk_json_add_u64(o, "unmap_operations", un->ops);
	ublk_json_add_u64(o, "zero_operations", wz->ops);
	ublk_json_add_u64(o, "rd_merged", 0);
	ublk_json_add_u64(o, "wr_merged", 0);
	ublk_json_add_u64(o, "unmap_merged", 0);
	ublk_json_add_u64(o, "failed_rd_operations", rd->failed);
	ublk_json_add_u64(o, "failed_wr_operations", wr->failed + wz->failed);
	ublk_json_add_u64(o, "failed_flush_operations", fl->failed);
	ublk_json_add_u64(o, "failed_unmap_operations", un->failed);
	ublk_json_add_u64(o, "rd_total_time_ns", rd->total_ns);
	ublk_json_add_u64(o, "wr_total_time_ns", wr->total_ns + wz->total_ns);
	ublk_json_add_u64(o, "flush_total_time_ns", fl->total_ns);
	ublk_json_add_u64(o, "unmap_total_time_ns", un->total_ns);
	if (st->last_done_ns)
		ublk_json_add_u64(o, "idle_time_ns", now_ns - (int64_t)st->last_done_ns);
	ublk_json_add_u64(o, "inflight", st->inflight);
	json_object_object_add(o, "rd_latency_histogram", ublk_json_hist(rd));
	json_object_object_add(o, "wr_latency_histogram", ublk_json_hist(wr));
	json_object_object_add(o, "flush_latency_histogram", ublk_json_hist(fl));
	json_object_object_add(o, "unmap_latency_histogram", ublk_json_hist(un));
	return o;
}

static int ublk_ctl_query_blockstats(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct json_object *list = json_object_new_array();
	struct json_object *dev_o = json_object_new_object();
	struct json_object *queues = json_object_new_array();
	int64_t now = blk_now_ns();
	struct blk_stats st;
	char name[32];
	unsigned int i;

	snprintf(name, sizeof(name), "ublkb%u", dev->info.dev_id);
	ublk_json_add_str(dev_o, "device", name);
	blk_stats_read(&dev->blk, -1, &st);
	json_object_object_add(dev_o, "stats", ublk_json_stats(&st, now));
	for (i = 0; i < dev->blk.nr_queues; i++) {
		struct json_object *q = json_object_new_object();

		blk_stats_read(&dev->blk, i, &st);
		json_object_object_add(q, "queue", json_object_new_int(i));
		json_object_object_add(q, "stats", ublk_json_stats(&st, now));
		json_object_array_add(queues, q);
	}
	json_object_object_add(dev_o, "queues", queues);
	json_object_array_add(list, dev_o);
	call->ret = list;
	return 0;
}

/* The pause, as query-status and query-block report it. */
static const char *ublk_run_state(struct ublk_dev *dev, int *err, enum blk_op *op,
				  unsigned int *held)
{
	switch (blk_paused(&dev->blk, err, op, held)) {
	case BLK_PAUSED_USER:
		return "paused";
	case BLK_PAUSED_ERROR:
		return "io-error";
	default:
		return "running";
	}
}

/*
 * QEMU's query-status: "running", or "paused" (stop) or "io-error" (an
 * error held requests); the latter says which and why.
 */
static int ublk_ctl_query_status(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct json_object *r = json_object_new_object();
	unsigned int held;
	enum blk_op op;
	const char *s;
	int err;

	s = ublk_run_state(dev, &err, &op, &held);
	json_object_object_add(r, "running", json_object_new_boolean(!strcmp(s, "running")));
	ublk_json_add_str(r, "status", s);
	if (!strcmp(s, "io-error")) {
		ublk_json_add_str(r, "operation", blk_op_name(op));
		ublk_json_add_str(r, "error", strerror(-err));
		json_object_object_add(r, "nospace",
				       json_object_new_boolean(err == -ENOSPC || err == -EDQUOT));
		ublk_json_add_u64(r, "held", held);
	}
	call->ret = r;
	return 0;
}

/* QEMU's stop: pauses the device once its requests have left. */
static int ublk_ctl_qmp_stop(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;

	blk_pause(&dev->blk);
	return 0;
}

/* QEMU's cont: retries what is held and lets new requests through. */
static int ublk_ctl_qmp_cont(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;

	blk_resume(&dev->blk);
	return 0;
}

/* The image and what is below it, as query-block's "image". */
static struct json_object *ublk_json_image(const struct tgt *t)
{
	struct json_object *o = json_object_new_object();

	ublk_json_add_str(o, "filename", t->cfg.file ? t->cfg.file : "");
	ublk_json_add_str(o, "format", t->ops->name);
	ublk_json_add_u64(o, "virtual-size", t->caps.size_bytes);
	json_object_object_add(o, "ro", json_object_new_boolean(t->caps.read_only));
	if (t->backing)
		json_object_object_add(o, "backing-image", ublk_json_image(t->backing));
	return o;
}

/* query-block's "dirty-bitmaps" of one image, made in a coroutine. */
struct ublk_bm_json {
	struct tgt *t;
	struct json_object *list;
};

/*
 * Lists @t's persistent bitmaps as QEMU's BlockDirtyInfo: "count" is the
 * bytes marked (with what a running backup took), from the bitmap's
 * runs.  Returns 0 or -errno.
 */
static int ublk_bm_json_fn(void *arg)
{
	struct ublk_bm_json *c = arg;
	const struct tgt_bitmap_info *bm;
	struct tgt *t = c->t;
	int n = t->ops->bitmap_list(t, &bm), i;

	for (i = 0; i < n; i++) {
		struct json_object *o = json_object_new_object();
		uint64_t count = 0, off = 0;

		while (!bm[i].in_use && off < t->caps.size_bytes) {
			bool dirty;
			int64_t r = t->ops->bitmap_status(t, bm[i].name, off,
							  t->caps.size_bytes - off, &dirty);

			if (r <= 0)
				break;
			count += dirty ? r : 0;
			off += r;
		}
		ublk_json_add_str(o, "name", bm[i].name);
		json_object_object_add(o, "recording", json_object_new_boolean(bm[i].enabled));
		json_object_object_add(o, "persistent", json_object_new_boolean(true));
		json_object_object_add(o, "busy", json_object_new_boolean(bm[i].busy));
		ublk_json_add_u64(o, "granularity", bm[i].granularity_bytes);
		ublk_json_add_u64(o, "count", count);
		/* QEMU sends "inconsistent" only when true. */
		if (bm[i].in_use)
			json_object_object_add(o, "inconsistent", json_object_new_boolean(true));
		json_object_array_add(c->list, o);
	}
	return n < 0 ? n : 0;
}

static int ublk_ctl_query_block(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct blk_dev *b = &dev->blk;
	struct json_object *list = json_object_new_array();
	struct json_object *o = json_object_new_object();
	struct json_object *ins = json_object_new_object();
	struct throttle_cfg thr;
	enum blk_err_action werror, rerror;
	const struct tgt *t;
	unsigned int held, depth = 0;
	enum blk_op op;
	const char *s;
	char name[32];
	int err;

	snprintf(name, sizeof(name), "ublkb%u", dev->info.dev_id);
	ublk_json_add_str(o, "device", name);
	s = ublk_run_state(dev, &err, &op, &held);
	ublk_json_add_str(o, "io-status", strcmp(s, "io-error") ? "ok" :
			  (err == -ENOSPC || err == -EDQUOT) ? "nospace" : "failed");
	ublk_json_add_str(o, "status", s);
	json_object_object_add(o, "queues", json_object_new_int(dev->info.nr_hw_queues));
	json_object_object_add(o, "depth", json_object_new_int(dev->info.queue_depth));
	blk_get_config(b, &thr, &werror, &rerror);
	ublk_json_add_str(o, "werror", blk_err_action_name(werror));
	ublk_json_add_str(o, "rerror", blk_err_action_name(rerror));
	json_object_object_add(o, "copy-on-read", json_object_new_boolean(b->copy_on_read));
	ublk_json_add_str(o, "discard", b->cfg.discard_ignore ? "ignore" : "unmap");

	t = b->top;
	for (const struct tgt *l = t->backing; l; l = l->backing)
		depth++;
	ublk_json_add_str(ins, "file", t->cfg.file ? t->cfg.file : "");
	ublk_json_add_str(ins, "drv", t->ops->name);
	json_object_object_add(ins, "ro", json_object_new_boolean(t->caps.read_only));
	ublk_json_add_u64(ins, "backing_file_depth", depth);
	if (t->backing && t->backing->cfg.file)
		ublk_json_add_str(ins, "backing_file", t->backing->cfg.file);
	ublk_json_add_u64(ins, "bps", thr.rate[THR_BPS_TOTAL]);
	ublk_json_add_u64(ins, "bps_rd", thr.rate[THR_BPS_READ]);
	ublk_json_add_u64(ins, "bps_wr", thr.rate[THR_BPS_WRITE]);
	ublk_json_add_u64(ins, "iops", thr.rate[THR_IOPS_TOTAL]);
	ublk_json_add_u64(ins, "iops_rd", thr.rate[THR_IOPS_READ]);
	ublk_json_add_u64(ins, "iops_wr", thr.rate[THR_IOPS_WRITE]);
	ublk_json_add_u64(ins, "burst_ms", thr.burst_ms);
	json_object_object_add(ins, "image", ublk_json_image(t));
	if (t->ops->bitmap_list && t->ops->bitmap_status) {
		struct ublk_bm_json c = { (struct tgt *)t, json_object_new_array() };

		exec_run_sync(ublk_bm_json_fn, &c);
		json_object_object_add(ins, "dirty-bitmaps", c.list);
	}
	json_object_object_add(o, "inserted", ins);
	json_object_array_add(list, o);
	call->ret = list;
	return 0;
}

const char *const ublk_thr_args[THR_NR] = {
	[THR_BPS_TOTAL] = "bps",
	[THR_BPS_READ] = "bps_rd",
	[THR_BPS_WRITE] = "bps_wr",
	[THR_IOPS_TOTAL] = "iops",
	[THR_IOPS_READ] = "iops_rd",
	[THR_IOPS_WRITE] = "iops_wr",
};

/*
 * QEMU's commands name the device; ours serve one.  A name given must be
 * ours ("ublkbN" or "/dev/ublkbN").  Returns 0 or -ENODEV (reason set).
 */
static int ublk_ctl_check_device(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	const char *want = ctl_arg_str(call, "device", NULL);
	char name[32];

	snprintf(name, sizeof(name), "ublkb%u", dev->info.dev_id);
	if (!want || !strcmp(want, name) ||
	    (!strncmp(want, "/dev/", 5) && !strcmp(want + 5, name)))
		return 0;
	return ctl_fail(call, -ENODEV, "Device '%s' not found: this is %s", want, name);
}

static int ublk_ctl_state_settings(struct ublk_state *s, void *ctx)
{
	struct ublk_dev *dev = ctx;
	struct throttle_cfg thr;

	blk_get_config(&dev->blk, &thr, &s->werror, &s->rerror);
	memcpy(s->throttle, thr.rate, sizeof(s->throttle));
	s->throttle_burst_ms = thr.burst_ms;
	return 0;
}

/* Records the device's live settings in its state file, for `recover`. */
static void ublk_ctl_save_settings(struct ublk_dev *dev)
{
	int ret = ublk_state_update(dev->info.dev_id, ublk_ctl_state_settings, dev);

	if (ret && ret != -ENOENT)
		img_err("device %u: cannot record the new settings", dev->info.dev_id);
}

/*
 * QEMU's block_set_io_throttle, with every limit optional: those given
 * change (0 lifts one), the others stay.
 */
static int ublk_ctl_set_throttle(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct throttle_cfg thr;
	enum blk_err_action we, re;
	unsigned int k;

	if (ublk_ctl_check_device(call))
		return -ENODEV;
	blk_get_config(&dev->blk, &thr, &we, &re);
	for (k = 0; k < THR_NR; k++) {
		int64_t v = ctl_arg_int(call, ublk_thr_args[k], -1);

		if (v < -1 || (v < 0 && ctl_arg(call, ublk_thr_args[k])))
			return ctl_fail(call, -EINVAL, "%s must not be negative", ublk_thr_args[k]);
		if (v >= 0)
			thr.rate[k] = v;
	}
	if (ctl_arg(call, "burst_ms")) {
		int64_t v = ctl_arg_int(call, "burst_ms", 0);

		if (v < 1 || v > 60000)
			return ctl_fail(call, -EINVAL, "burst_ms must be from 1 to 60000");
		thr.burst_ms = v;
	}
	blk_set_throttle(&dev->blk, &thr);
	ublk_ctl_save_settings(dev);
	return 0;
}

/* werror and rerror of a running device. */
static int ublk_ctl_set_error_policy(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	const char *w = ctl_arg_str(call, "werror", NULL);
	const char *r = ctl_arg_str(call, "rerror", NULL);
	struct throttle_cfg thr;
	enum blk_err_action we, re;

	if (ublk_ctl_check_device(call))
		return -ENODEV;
	blk_get_config(&dev->blk, &thr, &we, &re);
	if (w && blk_err_action_parse(w, &we))
		return ctl_fail(call, -EINVAL,
				"werror must be enospc, stop, report or ignore, not '%s'", w);
	if (r && (blk_err_action_parse(r, &re) || re == BLK_ERR_ENOSPC))
		return ctl_fail(call, -EINVAL, "rerror must be stop, report or ignore, not '%s'", r);
	blk_set_error_policy(&dev->blk, we, re);
	ublk_ctl_save_settings(dev);
	return 0;
}

/*
 * The dirty-bitmap commands (QEMU's block-dirty-bitmap-*): "node", when
 * given, names the device as "device" does elsewhere.  The target's
 * ->bitmap runs here, on a temporary executor of the control thread,
 * beside the queues' requests (the engine takes its own locks); a store
 * is a few synced writes.
 */
struct ublk_bm_call {
	struct tgt *t;
	enum tgt_bitmap_op op;
	const char *name;
	struct tgt_bitmap_args a;
	const char *const *srcs;
	size_t nr_srcs;
};

static int ublk_bm_run(void *arg)
{
	struct ublk_bm_call *c = arg;
	size_t i;
	int ret;

	if (c->op != TGT_BITMAP_MERGE)
		return c->t->ops->bitmap(c->t, c->op, c->name, &c->a);
	for (i = 0, ret = 0; !ret && i < c->nr_srcs; i++) {
		c->a.src_name = c->srcs[i];
		ret = c->t->ops->bitmap(c->t, c->op, c->name, &c->a);
	}
	return ret;
}

static int ublk_bm_busy_fn(void *arg)
{
	struct ublk_bm_call *c = arg;
	const struct tgt_bitmap_info *bm;
	int n = c->t->ops->bitmap_list(c->t, &bm);

	while (n-- > 0)
		if (!strcmp(bm[n].name, c->name))
			return bm[n].busy;
	return 0;
}

/* Is bitmap @name of @t lent to a backup job? */
static bool ublk_bm_busy(struct tgt *t, const char *name)
{
	struct ublk_bm_call c = { .t = t, .name = name };

	return exec_run_sync(ublk_bm_busy_fn, &c) > 0;
}

static int ublk_ctl_bitmap(struct ctl_call *call, enum tgt_bitmap_op op)
{
	struct ublk_dev *dev = call->ctx;
	const char *node = ctl_arg_str(call, "node", NULL);
	struct json_object *srcs = ctl_arg(call, "bitmaps");
	const char *names[64];
	struct ublk_bm_call c = {
		.t = dev->blk.top,
		.op = op,
		.name = ctl_arg_str(call, op == TGT_BITMAP_MERGE ? "target" : "name", ""),
	};
	char own[32];
	int ret;

	snprintf(own, sizeof(own), "ublkb%u", dev->info.dev_id);
	if (node && strcmp(node, own) && !(!strncmp(node, "/dev/", 5) && !strcmp(node + 5, own)))
		return ctl_fail(call, -ENODEV, "Cannot find device='%s' nor node-name='%s'",
				node, node);
	if (!c.t->ops->bitmap)
		return ctl_fail(call, -ENOTSUP, "the %s format has no persistent bitmaps",
				c.t->ops->name);
	if (op == TGT_BITMAP_ADD) {
		c.a.granularity_bytes = ctl_arg_int(call, "granularity", 0);
		c.a.disabled = ctl_arg_bool(call, "disabled", false);
		if (!ctl_arg_bool(call, "persistent", true))
			return ctl_fail(call, -ENOTSUP, "only persistent bitmaps are kept");
	}
	if (op == TGT_BITMAP_MERGE) {
		size_t i;

		c.nr_srcs = srcs ? json_object_array_length(srcs) : 0;
		if (!c.nr_srcs || c.nr_srcs > ARRAY_SIZE(names))
			return ctl_fail(call, -EINVAL, "'bitmaps' must name 1 to %zu bitmaps",
					ARRAY_SIZE(names));
		for (i = 0; i < c.nr_srcs; i++) {
			struct json_object *e = json_object_array_get_idx(srcs, i);

			/* QMP's BlockDirtyBitmapOrStr: a name, or {"node", "name"} of ours. */
			if (json_object_is_type(e, json_type_object)) {
				struct json_object *n;

				if (!json_object_object_get_ex(e, "name", &n))
					return ctl_fail(call, -EINVAL, "a source bitmap has no name");
				e = n;
			}
			if (!json_object_is_type(e, json_type_string))
				return ctl_fail(call, -EINVAL, "source bitmaps are names");
			names[i] = json_object_get_string(e);
		}
		c.srcs = names;
		c.a.src = c.t;
	}
	if (op != TGT_BITMAP_FLUSH && !*c.name)
		return ctl_fail(call, -EINVAL, "Parameter '%s' is missing",
				op == TGT_BITMAP_MERGE ? "target" : "name");
	ret = exec_run_sync(ublk_bm_run, &c);
	switch (ret) {
	case 0:
		return 0;
	case -ENOENT:
		return ctl_fail(call, ret, "Dirty bitmap '%s' not found", c.name);
	case -EEXIST:
		return ctl_fail(call, ret, "Bitmap already exists: %s", c.name);
	case -EBUSY:
		return ctl_fail(call, ret, "Bitmap '%s' is %s and cannot be used", c.name,
				ublk_bm_busy(c.t, c.name) ? "busy (a backup job uses it)" :
				"inconsistent");
	default:
		return ctl_fail(call, ret, "%s: %s", c.name, strerror(-ret));
	}
}

static int ublk_ctl_bm_add(struct ctl_call *call)
{
	return ublk_ctl_bitmap(call, TGT_BITMAP_ADD);
}

static int ublk_ctl_bm_remove(struct ctl_call *call)
{
	return ublk_ctl_bitmap(call, TGT_BITMAP_REMOVE);
}

static int ublk_ctl_bm_clear(struct ctl_call *call)
{
	return ublk_ctl_bitmap(call, TGT_BITMAP_CLEAR);
}

static int ublk_ctl_bm_enable(struct ctl_call *call)
{
	return ublk_ctl_bitmap(call, TGT_BITMAP_ENABLE);
}

static int ublk_ctl_bm_disable(struct ctl_call *call)
{
	return ublk_ctl_bitmap(call, TGT_BITMAP_DISABLE);
}

static int ublk_ctl_bm_merge(struct ctl_call *call)
{
	return ublk_ctl_bitmap(call, TGT_BITMAP_MERGE);
}

static int ublk_ctl_bm_flush(struct ctl_call *call)
{
	return ublk_ctl_bitmap(call, TGT_BITMAP_FLUSH);
}

static const struct ctl_cmd ublk_ctl_cmds[] = {
	{
		.name = "query-status",
		.handler = ublk_ctl_query_status,
		.help = "running, paused (stop) or io-error (requests held after an error)",
	},
	{
		.name = "query-block",
		.handler = ublk_ctl_query_block,
		.help = "the device, its settings and its image chain",
	},
	{
		.name = "query-blockstats",
		.handler = ublk_ctl_query_blockstats,
		.help = "I/O statistics of the device and of each queue",
	},
	{
		.name = "stop",
		.handler = ublk_ctl_qmp_stop,
		.help = "pause the device once its requests in flight are done",
	},
	{
		.name = "cont",
		.handler = ublk_ctl_qmp_cont,
		.help = "resume: retry the held requests, then serve new ones",
	},
	{
		.name = "block_set_io_throttle",
		.handler = ublk_ctl_set_throttle,
		.args = {
			{ "device", CTL_STR, false },
			{ "bps", CTL_INT, false },
			{ "bps_rd", CTL_INT, false },
			{ "bps_wr", CTL_INT, false },
			{ "iops", CTL_INT, false },
			{ "iops_rd", CTL_INT, false },
			{ "iops_wr", CTL_INT, false },
			{ "burst_ms", CTL_INT, false },
		},
		.help = "change the limits given (0 lifts one); the others stay",
	},
	{
		.name = "block-set-error-policy",
		.handler = ublk_ctl_set_error_policy,
		.args = {
			{ "device", CTL_STR, false },
			{ "werror", CTL_STR, false },
			{ "rerror", CTL_STR, false },
		},
		.help = "change werror (enospc, stop, report, ignore) or rerror",
	},
	{
		.name = "block-dirty-bitmap-add",
		.handler = ublk_ctl_bm_add,
		.args = {
			{ "node", CTL_STR, false },
			{ "name", CTL_STR, true },
			{ "granularity", CTL_INT, false },
			{ "persistent", CTL_BOOL, false },
			{ "disabled", CTL_BOOL, false },
		},
		.help = "a new persistent dirty bitmap, tracking writes unless disabled",
	},
	{
		.name = "block-dirty-bitmap-remove",
		.handler = ublk_ctl_bm_remove,
		.args = { { "node", CTL_STR, false }, { "name", CTL_STR, true } },
		.help = "delete a dirty bitmap (an inconsistent one too)",
	},
	{
		.name = "block-dirty-bitmap-clear",
		.handler = ublk_ctl_bm_clear,
		.args = { { "node", CTL_STR, false }, { "name", CTL_STR, true } },
		.help = "mark nothing in a dirty bitmap",
	},
	{
		.name = "block-dirty-bitmap-enable",
		.handler = ublk_ctl_bm_enable,
		.args = { { "node", CTL_STR, false }, { "name", CTL_STR, true } },
		.help = "start tracking writes in a dirty bitmap",
	},
	{
		.name = "block-dirty-bitmap-disable",
		.handler = ublk_ctl_bm_disable,
		.args = { { "node", CTL_STR, false }, { "name", CTL_STR, true } },
		.help = "stop tracking writes in a dirty bitmap",
	},
	{
		.name = "block-dirty-bitmap-merge",
		.handler = ublk_ctl_bm_merge,
		.args = {
			{ "node", CTL_STR, false },
			{ "target", CTL_STR, true },
			{ "bitmaps", CTL_ARRAY, true },
		},
		.help = "also mark in target what each of bitmaps marks",
	},
	{
		.name = "x-block-dirty-bitmap-flush",
		.handler = ublk_ctl_bm_flush,
		.args = { { "node", CTL_STR, false } },
		.help = "store every bitmap in the image now, in_use cleared until the next write",
	},
};

/*
 * The block layer's events as QMP events.  BLOCK_IO_ERROR has QEMU's
 * members (operation, action, nospace, reason) and the range; STOP and
 * RESUME name the device and whether an error or a command caused them.
 */
static void ublk_ctl_blk_event(void *ctx, const struct blk_event *ev)
{
	struct ublk_dev *dev = ctx;
	struct json_object *d = json_object_new_object();
	char name[32];

	snprintf(name, sizeof(name), "ublkb%u", dev->info.dev_id);
	ublk_json_add_str(d, "device", name);
	switch (ev->type) {
	case BLK_EV_IO_ERROR:
		ublk_json_add_str(d, "operation", blk_op_name(ev->op));
		ublk_json_add_str(d, "action", blk_err_action_name(ev->action));
		json_object_object_add(d, "nospace", json_object_new_boolean(
					       ev->err == -ENOSPC || ev->err == -EDQUOT));
		ublk_json_add_str(d, "reason", strerror(-ev->err));
		ublk_json_add_u64(d, "offset", ev->off);
		ublk_json_add_u64(d, "length", ev->len);
		ctl_event(dev->ctl, "BLOCK_IO_ERROR", d);
		break;
	case BLK_EV_STOP:
		ublk_json_add_str(d, "reason", ev->user ? "stop" : "io-error");
		ctl_event(dev->ctl, "STOP", d);
		break;
	case BLK_EV_RESUME:
		ctl_event(dev->ctl, "RESUME", d);
		break;
	}
}

int ublk_ctl_start(struct ublk_dev *dev)
{
	/* One server per process: the joined table is built once, then only read. */
	static struct ctl_cmd cmds[ARRAY_SIZE(ublk_ctl_cmds) + UBLK_CTL_SNAP_CMDS +
				   UBLK_JOB_CMDS];
	struct ctl_table table = {
		.cmds = cmds,
		.nr_cmds = ARRAY_SIZE(cmds),
		.ctx = dev,
	};
	char path[PATH_MAX];
	int ret;

	memcpy(cmds, ublk_ctl_cmds, sizeof(ublk_ctl_cmds));
	memcpy(cmds + ARRAY_SIZE(ublk_ctl_cmds), ublk_ctl_snap_cmds, sizeof(ublk_ctl_snap_cmds));
	memcpy(cmds + ARRAY_SIZE(ublk_ctl_cmds) + UBLK_CTL_SNAP_CMDS, ublk_job_cmds,
	       sizeof(ublk_job_cmds));

	ret = ublk_state_mkdir();
	if (ret) {
		img_err("%s: %s", ublk_state_dir(), strerror(-ret));
		return ret;
	}
	ret = ublk_ctl_path(dev->info.dev_id, path, sizeof(path));
	if (ret) {
		img_err("the control socket's path in %s is too long for a socket",
			ublk_state_dir());
		return ret;
	}
	ret = ctl_server_start(&dev->ctl, path, &table);
	if (!ret) {
		blk_set_event_fn(&dev->blk, ublk_ctl_blk_event, dev);
		ublk_job_events_start(dev);
	}
	return ret;
}

void ublk_ctl_stop(struct ublk_dev *dev)
{
	if (!dev->ctl)
		return;
	blk_set_event_fn(&dev->blk, NULL, NULL);
	ctl_event(dev->ctl, "SHUTDOWN", NULL);
	ctl_server_stop(dev->ctl);
	dev->ctl = NULL;
}
