// SPDX-License-Identifier: GPL-2.0
/*
 * The device's block jobs on its control channel (docs/control.md):
 * drive-backup and drive-mirror, which create (or open) the target and
 * start the job in block/, query-block-jobs and block-job-pause, -resume,
 * -cancel, -complete and -set-speed, and the jobs' events in QMP's shape.
 * The state file names the running job, so that `recover` after a
 * server's death can say which job went with it; a mirror's pivot
 * records its new top there before the device serves it.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "block.h"
#include "control.h"
#include "job.h"
#include "state.h"
#include "ublk.h"
#include "util.h"

/* The granule of the jobs' bitmaps: a guest write copies at most this much extra. */
#define JOB_GRAN_BYTES	4096U
/*
 * A backup's granule, at least: its copy-before-write then allocates a
 * cluster of the target in one write instead of filling it a piece at a
 * time, and a guest writing near where it wrote pays once (QEMU's backup
 * copies 64 KiB clusters too).
 */
#define JOB_BACKUP_GRAN_BYTES	65536U

static void json_add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v));
}

static int job_state_line(struct ublk_state *s, void *job)
{
	snprintf(s->job, sizeof(s->job), "%s", (const char *)job);
	return 0;
}

/* Records @job ("TYPE ID TARGET", empty: none) in the device's state file. */
static void job_state_set(struct ublk_dev *dev, const char *job)
{
	int ret = ublk_state_update(dev->info.dev_id, job_state_line, (void *)job);

	/* No state file: the device is going away; nothing to record in. */
	if (ret && ret != -ENOENT)
		img_err("device %u: cannot record the job in the state file", dev->info.dev_id);
}

/* The state file names job @id (NULL: the device's name) of @type on @file. */
static void job_state_start(struct ublk_dev *dev, const char *type, const char *id,
			    const char *file)
{
	char job[PATH_MAX + 96];

	if (id)
		snprintf(job, sizeof(job), "%s %s %s", type, id, file);
	else
		snprintf(job, sizeof(job), "%s ublkb%u %s", type, dev->info.dev_id, file);
	job_state_set(dev, job);
}

/* The job's members common to query-block-jobs and the events. */
static struct json_object *job_json(const struct blk_job_info *j)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "type", json_object_new_string(j->type));
	/* QEMU names a job by its id in "device" too. */
	json_object_object_add(o, "device", json_object_new_string(j->id));
	json_object_object_add(o, "id", json_object_new_string(j->id));
	json_add_u64(o, "len", j->len);
	json_add_u64(o, "offset", j->offset);
	json_add_u64(o, "speed", j->speed);
	return o;
}

static void job_event(void *ctx, const struct blk_job_info *j, int type, const char *err)
{
	struct ublk_dev *dev = ctx;
	struct json_object *d;

	switch (type) {
	case BLK_JOB_EV_READY:
		ctl_event(dev->ctl, "BLOCK_JOB_READY", job_json(j));
		break;
	case BLK_JOB_EV_ERROR:
		d = json_object_new_object();
		json_object_object_add(d, "device", json_object_new_string(j->id));
		json_object_object_add(d, "operation", json_object_new_string(err ? err : "write"));
		json_object_object_add(d, "action", json_object_new_string("report"));
		ctl_event(dev->ctl, "BLOCK_JOB_ERROR", d);
		break;
	case BLK_JOB_EV_COMPLETED:
	case BLK_JOB_EV_CANCELLED:
		job_state_set(dev, "");
		d = job_json(j);
		if (err)
			json_object_object_add(d, "error", json_object_new_string(err));
		ctl_event(dev->ctl, type == BLK_JOB_EV_COMPLETED ? "BLOCK_JOB_COMPLETED" :
			  "BLOCK_JOB_CANCELLED", d);
		break;
	}
}

void ublk_job_events_start(struct ublk_dev *dev)
{
	blk_job_set_event_fn(&dev->blk, job_event, dev);
}

static int job_state_top(struct ublk_state *s, void *top)
{
	const struct tgt *t = top;

	if (!realpath(t->cfg.file, s->file))
		return -errno;
	snprintf(s->target, sizeof(s->target), "%s", t->ops->name);
	return 0;
}

/* The pivot's record: the state file names the image the device serves from now on. */
static int job_record_top(void *ctx, const struct tgt *top)
{
	struct ublk_dev *dev = ctx;

	return ublk_state_update(dev->info.dev_id, job_state_top, (void *)top);
}

static int job_pivot(void *ctx, struct tgt *target, struct tgt **old)
{
	struct ublk_dev *dev = ctx;
	struct blk_chain_change c = { .record = job_record_top, .ctx = dev };
	int ret = blk_chain_replace_top(&dev->blk, target, old, &c);

	if (!ret)
		img_log("device %u: pivot to %s held I/O for %.1f ms", dev->info.dev_id,
			target->cfg.file, c.held_ns / 1e6);
	return ret;
}

/* What a backup or mirror is asked for, and the target opened for it. */
struct job_start {
	struct ublk_dev *dev;
	bool mirror;
	const char *file;
	const char *fmt;		/* NULL: the top's format */
	bool existing;
	bool sync_top;
	const char *bitmap;		/* sync incremental/bitmap: the copy set */
	const char *backing;		/* a new target's backing file (the previous backup) */
	struct tgt *target;
	uint32_t cluster_bytes;
	bool zeroed;
	char why[512];
};

/*
 * Bytes the copy will write, from the chain's allocation: what the top
 * allocates (sync top), or all data that does not read as zeros.
 * Returns the estimate, or -errno.
 */
static int64_t job_estimate(struct tgt *top, bool sync_top)
{
	uint64_t size = top->caps.size_bytes, off = 0, need = 0;

	while (off < size) {
		struct tgt_extent ext;
		struct tgt *layer;
		unsigned int depth;
		int64_t n = tgt_chain_status(top, off, size - off, &ext, &depth, &layer);

		if (n <= 0)
			return n ? n : -EIO;
		if (sync_top ? layer == top : layer && !(ext.flags & TGT_EXT_ZERO))
			need += n;
		off += n;
	}
	return need;
}

/* Refuses a target whose filesystem cannot hold the copy.  Returns 0 or -ENOSPC. */
static int job_check_room(struct job_start *js, struct tgt *top)
{
	char dir[PATH_MAX];
	struct statvfs sv;
	int64_t need = job_estimate(top, js->sync_top);
	uint64_t avail;
	char a[32], n[32];

	if (need < 0)
		return (int)need;
	snprintf(dir, sizeof(dir), "%s", js->file);
	if (statvfs(dirname(dir), &sv))
		return 0;	/* the create will say what is wrong */
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (avail >= (uint64_t)need)
		return 0;
	format_size(avail, a, sizeof(a));
	format_size(need, n, sizeof(n));
	snprintf(js->why, sizeof(js->why),
		 "not enough room for %s: its filesystem has %s free, the copy needs about %s",
		 js->file, a, n);
	return -ENOSPC;
}

/*
 * An incremental backup's bitmap must exist, record writes and be
 * consistent and free, or the backup would miss changes: one line says
 * which it is not.  In a coroutine.  Returns 0 or -errno.
 */
static int job_check_bitmap(struct job_start *js, struct tgt *top)
{
	const struct tgt_bitmap_info *bm;
	int n = top->ops->bitmap_list ? top->ops->bitmap_list(top, &bm) : -EOPNOTSUPP;
	const char *bad = NULL;

	if (n == -EOPNOTSUPP) {
		snprintf(js->why, sizeof(js->why), "the %s format has no persistent bitmaps",
			 top->ops->name);
		return n;
	}
	if (n < 0)
		return n;
	while (n-- && strcmp(bm[n].name, js->bitmap))
		;
	if (n < 0) {
		snprintf(js->why, sizeof(js->why), "Dirty bitmap '%s' not found", js->bitmap);
		return -ENOENT;
	}
	if (bm[n].in_use)
		bad = "is inconsistent (its writer stopped without storing it): take a full "
		      "backup and start a new bitmap";
	else if (!bm[n].enabled)
		bad = "is disabled: it does not record the writes an incremental backup needs";
	else if (bm[n].busy)
		bad = "is currently in use by another operation and cannot be used";
	if (!bad)
		return 0;
	snprintf(js->why, sizeof(js->why), "Bitmap '%s' %s", js->bitmap, bad);
	return -EBUSY;
}

/* Creates (unless existing) and opens the target, in a coroutine. */
static int job_open_target(void *arg)
{
	struct job_start *js = arg;
	struct tgt *top = js->dev->blk.top, *backing = js->sync_top ? top->backing : NULL;
	const struct tgt_ops *ops = js->fmt ? tgt_find(js->fmt) : top->ops;
	const struct tgt_ops *bops = NULL;
	char backing_path[PATH_MAX];
	struct tgt_info *info;
	struct tgt *t;
	int ret;

	if (js->bitmap) {
		ret = job_check_bitmap(js, top);
		if (ret)
			return ret;
	}
	if (js->backing && !js->existing) {
		/* The previous backup: the target reads it where the bitmap marks nothing. */
		bops = tgt_probe_file(js->backing);
		if (!bops || !realpath(js->backing, backing_path)) {
			snprintf(js->why, sizeof(js->why), "cannot open the backing file %s",
				 js->backing);
			return -ENOENT;
		}
	}
	if (!ops || !tgt_is_format(ops)) {
		snprintf(js->why, sizeof(js->why), "unknown image format '%s'", js->fmt);
		return -EINVAL;
	}
	if (!js->existing) {
		struct tgt_create_opts co = {
			.file = js->file,
			.size_bytes = top->caps.size_bytes,
		};

		if (!ops->create) {
			snprintf(js->why, sizeof(js->why), "format %s cannot create images", ops->name);
			return -EOPNOTSUPP;
		}
		/* An incremental copy's size is its bitmap's: no estimate from the chain. */
		ret = js->bitmap ? 0 : job_check_room(js, top);
		if (ret)
			return ret;
		if (bops) {
			co.backing_file = backing_path;
			co.backing_fmt = bops->name;
		} else if (backing) {
			if (!realpath(backing->cfg.file, backing_path)) {
				ret = -errno;
				snprintf(js->why, sizeof(js->why), "%s: %s", backing->cfg.file,
					 strerror(errno));
				return ret;
			}
			co.backing_file = backing_path;
			co.backing_fmt = backing->ops->name;
		}
		ret = ops->create(&co);
		if (ret) {
			snprintf(js->why, sizeof(js->why), ret == -EBUSY ?
				 "cannot create %s: the image is in use by another process" :
				 "cannot create %s (see the device's log)", js->file);
			return ret;
		}
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->cfg.file = strdup(js->file);
	if (!t->cfg.file) {
		free(t);
		return -ENOMEM;
	}
	/* A mirror's target becomes the device's image: its size is fixed from now. */
	ret = tgt_open_file(t, t->cfg.file, ops->name, js->mirror ? TGT_O_FIXED_SIZE : 0);
	if (ret) {
		snprintf(js->why, sizeof(js->why), ret == -EBUSY ?
			 "%s is in use: another process holds its image lock" :
			 "cannot open %s: %s", js->file, strerror(-ret));
		free((char *)t->cfg.file);
		free(t);
		return ret;
	}
	if (t->caps.size_bytes < top->caps.size_bytes || t->caps.read_only) {
		snprintf(js->why, sizeof(js->why), t->caps.read_only ? "%s is read-only" :
			 "%s is smaller than the device", js->file);
		blk_copy_target_free(t);
		return -EINVAL;
	}
	js->cluster_bytes = 4096;
	info = calloc(1, sizeof(*info));
	if (info && t->ops->info) {
		t->ops->info(t, info);
		if (info->cluster_size)
			js->cluster_bytes = info->cluster_size;
	}
	free(info);
	js->zeroed = !js->existing && !t->backing;
	js->target = t;
	return 0;
}

/* drive-backup and drive-mirror. */
static int job_drive(struct ctl_call *call, bool mirror)
{
	struct ublk_dev *dev = call->ctx;
	const char *sync = ctl_arg_str(call, "sync", mirror ? "full" : NULL);
	const char *mode = ctl_arg_str(call, "mode", "absolute-paths");
	const char *want = ctl_arg_str(call, "device", NULL);
	const char *bm_mode = ctl_arg_str(call, "bitmap-mode", NULL);
	int64_t speed = ctl_arg_int(call, "speed", 0);
	struct job_start js = {
		.dev = dev,
		.mirror = mirror,
		.file = ctl_arg_str(call, "target", NULL),
		.fmt = ctl_arg_str(call, "format", NULL),
	};
	struct blk_copy_opts o = { .id = ctl_arg_str(call, "job-id", NULL) };
	struct blk_job_info info;
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "ublkb%u", dev->info.dev_id);
	if (want && strcmp(want, name) && !(!strncmp(want, "/dev/", 5) && !strcmp(want + 5, name)))
		return ctl_fail(call, -ENODEV, "Device '%s' not found: this is %s", want, name);
	js.bitmap = ctl_arg_str(call, "bitmap", NULL);
	js.backing = ctl_arg_str(call, "backing", NULL);
	if (!sync || (strcmp(sync, "full") && strcmp(sync, "top") &&
		      (mirror || (strcmp(sync, "incremental") && strcmp(sync, "bitmap")))))
		return ctl_fail(call, -EINVAL, mirror ? "sync must be full or top" :
				"sync must be full, top, incremental or bitmap");
	/* QEMU's rules: incremental is bitmap with on-success; bitmap names its mode. */
	if (!!js.bitmap != (!strcmp(sync, "incremental") || !strcmp(sync, "bitmap")))
		return ctl_fail(call, -EINVAL, js.bitmap ? "a bitmap goes with sync incremental "
				"or bitmap" : "sync %s needs a bitmap", sync);
	if (!strcmp(sync, "bitmap") && !bm_mode)
		return ctl_fail(call, -EINVAL, "sync bitmap needs a bitmap-mode");
	if (bm_mode && (!js.bitmap || (strcmp(bm_mode, "on-success") && strcmp(bm_mode, "never"))))
		return ctl_fail(call, -EINVAL, js.bitmap ? "bitmap-mode must be on-success or never" :
				"bitmap-mode goes with a bitmap");
	if (!strcmp(sync, "incremental") && bm_mode && strcmp(bm_mode, "on-success"))
		return ctl_fail(call, -EINVAL, "sync incremental is bitmap-mode on-success");
	if (strcmp(mode, "absolute-paths") && strcmp(mode, "existing"))
		return ctl_fail(call, -EINVAL, "mode must be absolute-paths or existing");
	if (speed < 0)
		return ctl_fail(call, -EINVAL, "speed must not be negative");
	if (o.id && (!*o.id || strlen(o.id) >= BLK_JOB_ID_MAX))
		return ctl_fail(call, -EINVAL, "job-id must be 1 to %d characters",
				BLK_JOB_ID_MAX - 1);
	if (!blk_job_query(&dev->blk, &info))
		return ctl_fail(call, -EBUSY, "device %s already runs job '%s' (%s)", name,
				info.id, info.type);
	/* A backup only reads the device; a mirror ends by writing to its target. */
	if (mirror && dev->blk.top->caps.read_only)
		return ctl_fail(call, -EROFS, "device %s is read-only", name);
	js.existing = !strcmp(mode, "existing");
	if (js.backing && (js.existing || mirror))
		return ctl_fail(call, -EINVAL, "backing is for a new backup target");
	js.sync_top = !strcmp(sync, "top") && dev->blk.top->backing;

	ret = exec_run_sync(job_open_target, &js);
	if (ret)
		return ctl_fail(call, ret, "%s", js.why[0] ? js.why : strerror(-ret));
	o.speed = speed;
	o.target = js.target;
	o.sync_top = js.sync_top;
	o.bitmap = js.bitmap;
	o.bitmap_keep = bm_mode && !strcmp(bm_mode, "never");
	o.target_zeroed = js.zeroed;
	o.gran_bytes = JOB_GRAN_BYTES;
	if (!mirror)
		o.gran_bytes = 1U << ilog2_u64(MIN(MAX(JOB_BACKUP_GRAN_BYTES, js.cluster_bytes),
						   BLK_JOB_CHUNK_BYTES));
	o.cluster_bytes = js.cluster_bytes;
	if (mirror) {
		o.pivot = job_pivot;
		o.pivot_ctx = dev;
	}
	/* Named in the state file before it runs, so `recover` can tell of it. */
	job_state_start(dev, mirror ? "mirror" : "backup", o.id, js.file);
	ret = mirror ? blk_mirror_start(&dev->blk, &o, js.why, sizeof(js.why)) :
		       blk_backup_start(&dev->blk, &o, js.why, sizeof(js.why));
	if (ret) {
		job_state_set(dev, "");
		blk_copy_target_free(js.target);
		return ctl_fail(call, ret, "%s", js.why);
	}
	return 0;
}

static int job_drive_backup(struct ctl_call *call)
{
	return job_drive(call, false);
}

static int job_drive_mirror(struct ctl_call *call)
{
	return job_drive(call, true);
}

/*
 * The node of the device's chain that @file names (the same file, by
 * realpath), or NULL.
 */
static struct tgt *job_node(struct ublk_dev *dev, const char *file)
{
	char want[PATH_MAX], have[PATH_MAX];
	struct tgt *t;

	if (!realpath(file, want))
		return NULL;
	for (t = dev->blk.top; t; t = t->backing)
		if (t->cfg.file && realpath(t->cfg.file, have) && !strcmp(want, have))
			return t;
	return NULL;
}

struct job_info_call {
	struct tgt *t;
	struct tgt_info info;
};

static int job_info_fn(void *arg)
{
	struct job_info_call *c = arg;

	c->t->ops->info(c->t, &c->info);
	return 0;
}

/* The cluster of @t, 4096 for an unclustered one. */
static uint32_t job_cluster(struct tgt *t)
{
	struct job_info_call *c = calloc(1, sizeof(*c));
	uint32_t cl = 4096;

	if (c && t->ops->info) {
		c->t = t;
		if (!exec_run_sync(job_info_fn, c) && c->info.cluster_size)
			cl = c->info.cluster_size;
	}
	free(c);
	return cl;
}

/* Common checks of the chain jobs; sets *@id.  Returns 0 or -errno (reason set). */
static int job_chain_check(struct ctl_call *call, const char **id)
{
	struct ublk_dev *dev = call->ctx;
	const char *want = ctl_arg_str(call, "device", NULL);
	struct blk_job_info info;
	char name[32];

	*id = ctl_arg_str(call, "job-id", NULL);
	snprintf(name, sizeof(name), "ublkb%u", dev->info.dev_id);
	if (want && strcmp(want, name) && !(!strncmp(want, "/dev/", 5) && !strcmp(want + 5, name)))
		return ctl_fail(call, -ENODEV, "Device '%s' not found: this is %s", want, name);
	if (ctl_arg_int(call, "speed", 0) < 0)
		return ctl_fail(call, -EINVAL, "speed must not be negative");
	if (*id && (!**id || strlen(*id) >= BLK_JOB_ID_MAX))
		return ctl_fail(call, -EINVAL, "job-id must be 1 to %d characters",
				BLK_JOB_ID_MAX - 1);
	if (!blk_job_query(&dev->blk, &info))
		return ctl_fail(call, -EBUSY, "device %s already runs job '%s' (%s)", name,
				info.id, info.type);
	if (dev->blk.top->caps.read_only)
		return ctl_fail(call, -EROFS, "device %s is read-only", name);
	return 0;
}

/* A named node of the chain, or the reason it is not one.  Returns 0 or -errno. */
static int job_chain_node(struct ctl_call *call, const char *arg, struct tgt **out)
{
	struct ublk_dev *dev = call->ctx;
	const char *file = ctl_arg_str(call, arg, NULL);

	*out = NULL;
	if (!file)
		return 0;
	*out = job_node(dev, file);
	if (!*out)
		return ctl_fail(call, -ENOENT, "%s is not an image of ublkb%u's chain", file,
				dev->info.dev_id);
	return 0;
}

/* QEMU's block-stream: the top takes the data of the images above base. */
static int job_block_stream(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct tgt *top = dev->blk.top, *base;
	struct blk_chain_opts o = { 0 };
	char why[512];
	int ret;

	if (job_chain_check(call, &o.id) || job_chain_node(call, "base", &base))
		return -EINVAL;
	if (!top->ops->set_backing)
		return ctl_fail(call, -EOPNOTSUPP,
				"%s is %s: stream needs a top image that names a backing file",
				top->cfg.file, top->ops->name);
	if (!top->backing)
		return ctl_fail(call, -EINVAL, "nothing to stream: %s has no backing file",
				top->cfg.file);
	if (base == top || top->backing == base)
		return ctl_fail(call, -EINVAL, "nothing to stream: %s is %s", base->cfg.file,
				base == top ? "the top" : "already the top's backing file");
	o.speed = ctl_arg_int(call, "speed", 0);
	o.cluster_bytes = job_cluster(top);
	o.top = top;
	o.base = base;
	o.record = job_record_top;
	o.record_ctx = dev;
	job_state_start(dev, "stream", o.id, top->cfg.file);
	ret = blk_stream_start(&dev->blk, &o, why, sizeof(why));
	if (ret) {
		job_state_set(dev, "");
		return ctl_fail(call, ret, "%s", why);
	}
	return 0;
}

/*
 * QEMU's block-commit: top (default the active image) and what lies down
 * to base (default the bottom) go into base.  The active image's is a
 * mirror into base that pivots on complete; another's ends by itself.
 */
static int job_block_commit(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct tgt *top, *base, *l;
	char why[512];
	const char *id;
	int ret;

	if (job_chain_check(call, &id) || job_chain_node(call, "top", &top) ||
	    job_chain_node(call, "base", &base))
		return -EINVAL;
	if (!top)
		top = dev->blk.top;
	if (!top->backing)
		return ctl_fail(call, -EINVAL, "nothing to commit: %s has no backing file",
				top->cfg.file);
	if (!base)
		for (base = top->backing; base->backing; base = base->backing)
			;
	for (l = top->backing; l && l != base; l = l->backing)
		;
	if (!l)
		return ctl_fail(call, -EINVAL, "%s is not below %s", base->cfg.file, top->cfg.file);
	if (base->caps.size_bytes < dev->blk.top->caps.size_bytes)
		return ctl_fail(call, -EINVAL, "%s is smaller than the device: resize it first",
				base->cfg.file);
	job_state_start(dev, "commit", id, base->cfg.file);
	if (top == dev->blk.top) {
		struct blk_copy_opts o = {
			.id = id,
			.speed = ctl_arg_int(call, "speed", 0),
			.base = base,
			.gran_bytes = JOB_GRAN_BYTES,
			.cluster_bytes = job_cluster(base),
			.pivot = job_pivot,
			.pivot_ctx = dev,
		};

		ret = blk_mirror_start(&dev->blk, &o, why, sizeof(why));
	} else {
		struct blk_chain_opts o = {
			.id = id,
			.speed = ctl_arg_int(call, "speed", 0),
			.cluster_bytes = job_cluster(base),
			.top = top,
			.base = base,
			.record = job_record_top,
			.record_ctx = dev,
		};

		ret = blk_commit_start(&dev->blk, &o, why, sizeof(why));
	}
	if (ret) {
		job_state_set(dev, "");
		return ctl_fail(call, ret, "%s", why);
	}
	return 0;
}

static int job_query(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct json_object *list = json_object_new_array(), *o;
	struct blk_job_info j;

	if (!blk_job_query(&dev->blk, &j)) {
		o = job_json(&j);
		json_object_object_add(o, "busy", json_object_new_boolean(j.busy));
		json_object_object_add(o, "paused", json_object_new_boolean(j.paused));
		json_object_object_add(o, "ready", json_object_new_boolean(j.ready));
		json_object_object_add(o, "status",
				       json_object_new_string(blk_job_status_name(j.status)));
		json_object_object_add(o, "io-status",
				       json_object_new_string(j.error[0] ? "failed" : "ok"));
		json_object_object_add(o, "auto-finalize", json_object_new_boolean(true));
		json_object_object_add(o, "auto-dismiss", json_object_new_boolean(true));
		if (j.error[0])
			json_object_object_add(o, "error", json_object_new_string(j.error));
		json_object_array_add(list, o);
	}
	call->ret = list;
	return 0;
}

/* A control verb's errors in words: @what is the verb ("pause", ...). */
static int job_ctl_result(struct ctl_call *call, int ret, const char *what)
{
	struct ublk_dev *dev = call->ctx;
	const char *id = ctl_arg_str(call, "device", NULL);

	switch (ret) {
	case 0:
		return 0;
	case -ENOENT:
		if (id)
			return ctl_fail(call, ret, "no block job '%s' runs on ublkb%u", id,
					dev->info.dev_id);
		return ctl_fail(call, ret, "no block job runs on ublkb%u", dev->info.dev_id);
	case -EALREADY:
		return ctl_fail(call, ret, "the job is %s", !strcmp(what, "pause") ?
				"already paused" : "not paused");
	case -EBUSY:
		return ctl_fail(call, ret, "the job is not ready yet: it can be completed once it is");
	case -EOPNOTSUPP:
		return ctl_fail(call, ret, "this job cannot be completed: it ends by itself");
	case -EINVAL:
		return ctl_fail(call, ret, "speed is below one cluster of the target a second");
	default:
		return ctl_fail(call, ret, "%s: %s", what, strerror(-ret));
	}
}

static int job_pause(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;

	return job_ctl_result(call, blk_job_pause(&dev->blk, ctl_arg_str(call, "device", NULL)),
			      "pause");
}

static int job_resume(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;

	return job_ctl_result(call, blk_job_resume(&dev->blk, ctl_arg_str(call, "device", NULL)),
			      "resume");
}

static int job_cancel(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;

	return job_ctl_result(call, blk_job_cancel(&dev->blk, ctl_arg_str(call, "device", NULL),
						   ctl_arg_bool(call, "force", false)),
			      "cancel");
}

static int job_complete(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;

	return job_ctl_result(call, blk_job_complete(&dev->blk,
						     ctl_arg_str(call, "device", NULL)),
			      "complete");
}

static int job_set_speed(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	int64_t speed = ctl_arg_int(call, "speed", 0);

	if (speed < 0)
		return ctl_fail(call, -EINVAL, "speed must not be negative");
	return job_ctl_result(call, blk_job_set_speed(&dev->blk, ctl_arg_str(call, "device", NULL),
						      speed),
			      "set-speed");
}

#define JOB_DRIVE_ARGS					\
	{ "device", CTL_STR, false },			\
	{ "job-id", CTL_STR, false },			\
	{ "target", CTL_STR, true },			\
	{ "format", CTL_STR, false },			\
	{ "mode", CTL_STR, false },			\
	{ "speed", CTL_INT, false }

const struct ctl_cmd ublk_job_cmds[UBLK_JOB_CMDS] = {
	{
		.name = "drive-backup",
		.handler = job_drive_backup,
		.args = { JOB_DRIVE_ARGS, { "sync", CTL_STR, true }, { "bitmap", CTL_STR, false },
			  { "bitmap-mode", CTL_STR, false }, { "backing", CTL_STR, false } },
		.help = "point-in-time copy of the device into target (sync full, top, or "
			"incremental/bitmap: what bitmap marks, target backed by backing)",
	},
	{
		.name = "drive-mirror",
		.handler = job_drive_mirror,
		.args = { JOB_DRIVE_ARGS, { "sync", CTL_STR, false } },
		.help = "copy the device into target and keep it in step; complete switches to it",
	},
	{
		.name = "block-stream",
		.handler = job_block_stream,
		.args = {
			{ "device", CTL_STR, false },
			{ "job-id", CTL_STR, false },
			{ "base", CTL_STR, false },
			{ "speed", CTL_INT, false },
		},
		.help = "copy into the top what the images above base provide, then drop them",
	},
	{
		.name = "block-commit",
		.handler = job_block_commit,
		.args = {
			{ "device", CTL_STR, false },
			{ "job-id", CTL_STR, false },
			{ "top", CTL_STR, false },
			{ "base", CTL_STR, false },
			{ "speed", CTL_INT, false },
		},
		.help = "merge top (default: the active image) down into base, then drop what was between",
	},
	{
		.name = "query-block-jobs",
		.handler = job_query,
		.help = "the device's block job, if one runs",
	},
	{
		.name = "block-job-pause",
		.handler = job_pause,
		.args = { { "device", CTL_STR, false } },
		.help = "pause the job (device: its id)",
	},
	{
		.name = "block-job-resume",
		.handler = job_resume,
		.args = { { "device", CTL_STR, false } },
		.help = "resume a paused job",
	},
	{
		.name = "block-job-cancel",
		.handler = job_cancel,
		.args = { { "device", CTL_STR, false }, { "force", CTL_BOOL, false } },
		.help = "stop the job; a ready mirror first makes its target a copy (unless force)",
	},
	{
		.name = "block-job-complete",
		.handler = job_complete,
		.args = { { "device", CTL_STR, false } },
		.help = "end a ready mirror: switch the device to its target",
	},
	{
		.name = "block-job-set-speed",
		.handler = job_set_speed,
		.args = { { "device", CTL_STR, false }, { "speed", CTL_INT, true } },
		.help = "change the job's speed limit in bytes/s (0: none)",
	},
};
