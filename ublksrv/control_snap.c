// SPDX-License-Identifier: GPL-2.0
/*
 * Snapshots of a running device, as control commands with QEMU's names:
 * blockdev-snapshot-internal-sync and blockdev-snapshot-delete-internal-sync
 * (a qcow2 internal snapshot of the top image, taken under a drain),
 * blockdev-snapshot-sync (an external snapshot: a new overlay becomes the
 * top, the old top its read-only backing file) and query-snapshots (the
 * top's internal snapshots).  The block layer does the drained work
 * (block/chain.c); this file checks the request, creates the overlay and
 * keeps the state file naming the image the device serves.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block.h"
#include "control.h"
#include "job.h"
#include "state.h"
#include "ublk.h"
#include "util.h"

static struct json_object *snap_json_i64(int64_t v)
{
	return json_object_new_int64(v);
}

/*
 * How long the change held I/O (held_ns) and how much of that went to
 * waiting for the requests in flight (drain_ns), added to @o (NULL: a
 * new object), which is returned.
 */
static struct json_object *snap_json_held(struct json_object *o,
					  const struct blk_chain_change *c)
{
	if (!o)
		o = json_object_new_object();
	json_object_object_add(o, "held_ns", snap_json_i64(c->held_ns));
	json_object_object_add(o, "drain_ns", snap_json_i64(c->drain_ns));
	return o;
}

/* QEMU's SnapshotInfo. */
static struct json_object *snap_json_info(const struct tgt_snapshot_info *si)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_string(si->id));
	json_object_object_add(o, "name", json_object_new_string(si->name));
	json_object_object_add(o, "vm-state-size", snap_json_i64(si->vm_state_bytes));
	json_object_object_add(o, "date-sec", snap_json_i64(si->date_sec));
	json_object_object_add(o, "date-nsec", snap_json_i64(si->date_nsec));
	json_object_object_add(o, "vm-clock-sec", snap_json_i64(si->vm_clock_nsec / 1000000000));
	json_object_object_add(o, "vm-clock-nsec", snap_json_i64(si->vm_clock_nsec % 1000000000));
	if (si->icount != UINT64_MAX)
		json_object_object_add(o, "icount", snap_json_i64(si->icount));
	return o;
}

/*
 * The snapshot list, and the one entry looked for: by @id and/or @name
 * (both given: both must match; QEMU's rule), copied out while the list
 * is valid.
 */
struct snap_find {
	const char *id, *name;
	struct json_object *list;	/* every entry, when wanted */
	struct json_object *found;	/* the match, or NULL */
	char found_name[1024];
};

static void snap_find_fn(void *ctx, const struct tgt_snapshot_info *list, int n)
{
	struct snap_find *f = ctx;
	int i;

	for (i = 0; i < n; i++) {
		const struct tgt_snapshot_info *si = &list[i];

		if (f->list)
			json_object_array_add(f->list, snap_json_info(si));
		if (f->found || (!f->id && !f->name))
			continue;
		if ((!f->id || !strcmp(f->id, si->id)) && (!f->name || !strcmp(f->name, si->name))) {
			f->found = snap_json_info(si);
			snprintf(f->found_name, sizeof(f->found_name), "%s", si->name);
		}
	}
}

static const char *snap_dev_name(struct ublk_dev *dev, char *buf, size_t len)
{
	snprintf(buf, len, "ublkb%u", dev->info.dev_id);
	return buf;
}

/*
 * QEMU's commands name the device; ours serve one.  Returns 0 or -ENODEV
 * (reason set).
 */
static int snap_check_device(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	const char *want = ctl_arg_str(call, "device", NULL);
	char name[32];

	snap_dev_name(dev, name, sizeof(name));
	if (!want || !strcmp(want, name) ||
	    (!strncmp(want, "/dev/", 5) && !strcmp(want + 5, name)))
		return 0;
	return ctl_fail(call, -ENODEV, "Device '%s' not found: this is %s", want, name);
}

/*
 * A block job holds nodes of the chain and changes it at its end: as
 * QEMU's op blockers do, a snapshot waits for it to be gone.  The control
 * channel runs one command at a time, so no job starts meanwhile.
 * Returns 0 or -EBUSY (reason set).
 */
static int snap_check_job(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct blk_job_info info;
	char name[32];

	if (blk_job_query(&dev->blk, &info))
		return 0;
	return ctl_fail(call, -EBUSY, "Node '%s' is busy: block device is in use by block job: %s",
			snap_dev_name(dev, name, sizeof(name)), info.type);
}

/* Refusals shared by the internal snapshot commands.  Returns 0 or -errno (reason set). */
static int snap_internal_check(struct ctl_call *call, const struct tgt *t)
{
	struct ublk_dev *dev = call->ctx;
	char name[32];

	if (snap_check_device(call))
		return -ENODEV;
	if (snap_check_job(call))
		return -EBUSY;
	snap_dev_name(dev, name, sizeof(name));
	if (!t->ops->snapshot)
		return ctl_fail(call, -ENOTSUP,
				"Block format '%s' used by device '%s' does not support internal snapshots",
				t->ops->name, name);
	if (t->caps.read_only)
		return ctl_fail(call, -EROFS, "Device '%s' is read only", name);
	return 0;
}

static int ublk_ctl_snapshot_internal(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	const char *name = ctl_arg_str(call, "name", NULL);
	struct snap_find f = { .name = name };
	struct blk_chain_change c = { 0 };
	char dname[32];
	int ret;

	ret = snap_internal_check(call, dev->blk.top);
	if (ret)
		return ret;
	snap_dev_name(dev, dname, sizeof(dname));
	if (!name[0])
		return ctl_fail(call, -EINVAL, "Name is empty");
	/* QEMU refuses a second snapshot of one name on a device; so do we. */
	ret = blk_snapshot_list(&dev->blk, snap_find_fn, &f);
	if (ret)
		return ctl_fail(call, ret, "cannot list the snapshots: %s", strerror(-ret));
	if (f.found) {
		json_object_put(f.found);
		return ctl_fail(call, -EEXIST, "Snapshot with name '%s' already exists on device '%s'",
				name, dname);
	}
	ret = blk_snapshot_internal(&dev->blk, TGT_SNAPSHOT_CREATE, name, &c);
	if (ret)
		return ctl_fail(call, ret, "Failed to create snapshot '%s' on device '%s': %s",
				name, dname, strerror(-ret));
	call->ret = snap_json_held(NULL, &c);
	return 0;
}

static int ublk_ctl_snapshot_delete(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct snap_find f = {
		.id = ctl_arg_str(call, "id", NULL),
		.name = ctl_arg_str(call, "name", NULL),
	};
	struct blk_chain_change c = { 0 };
	char dname[32];
	int ret;

	ret = snap_internal_check(call, dev->blk.top);
	if (ret)
		return ret;
	snap_dev_name(dev, dname, sizeof(dname));
	if (!f.id && !f.name)
		return ctl_fail(call, -EINVAL, "Name or id must be provided");
	ret = blk_snapshot_list(&dev->blk, snap_find_fn, &f);
	if (ret)
		return ctl_fail(call, ret, "cannot list the snapshots: %s", strerror(-ret));
	if (!f.found)
		return ctl_fail(call, -ENOENT, "Snapshot with id '%s' and name '%s' does not exist on device '%s'",
				f.id ? f.id : "", f.name ? f.name : "", dname);
	/* The format deletes the first of that name: the one found, names being unique here. */
	ret = blk_snapshot_internal(&dev->blk, TGT_SNAPSHOT_DELETE, f.found_name, &c);
	if (ret) {
		json_object_put(f.found);
		return ctl_fail(call, ret, "Failed to delete snapshot '%s' on device '%s': %s",
				f.found_name, dname, strerror(-ret));
	}
	call->ret = snap_json_held(f.found, &c);
	return 0;
}

static int ublk_ctl_query_snapshots(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	struct snap_find f = { .list = json_object_new_array() };
	int ret;

	if (snap_check_device(call)) {
		json_object_put(f.list);
		return -ENODEV;
	}
	ret = blk_snapshot_list(&dev->blk, snap_find_fn, &f);
	/* A format without internal snapshots has none to list. */
	if (ret && ret != -ENOTSUP) {
		json_object_put(f.list);
		return ctl_fail(call, ret, "cannot list the snapshots: %s", strerror(-ret));
	}
	call->ret = f.list;
	return 0;
}

/*
 * External snapshot.  What a crash (the server killed, `recover` then
 * run) leaves at each step, E1-E5 (the device's content is always what
 * the guest last saw; `qemu-img check` is clean on every image):
 *
 * E1 NEW is created under a temporary name beside it (header naming the
 *    old top by absolute path and format, no data) and synced, then
 *    linked as NEW, which fails if NEW exists, and the directory synced
 *    (blk_overlay_create() in block/chain.c: the order for a power cut).
 *    The state file names the old top: recover serves it.  A crash while
 *    the header is written leaves only the hidden temporary file, never a
 *    half-made NEW; after the link NEW is a stray empty overlay that
 *    nothing names (remove it, or use it: it shows the same data).
 * E2 NEW is opened read-write; writes nothing yet.  As E1.
 * E3 (drained) the old top is written back, flushed and made read-only
 *    (in place where the format can; its metadata's own crash order
 *    holds inside): everything it acknowledged is durable, so NEW, which
 *    reads through to it, shows it after a crash, and a guest FLUSH sent
 *    to NEW later needs nothing from it.  A crash: as E1.
 * E4 (drained) the state file names NEW (rename: all or nothing).  From
 *    here recover serves NEW over the old top: the same data, since NEW
 *    is still empty; requests the dead server had taken are reissued to
 *    the new one and land in NEW.
 * E5 (drained) NEW is linked over the old top and published, and the
 *    drain ends: writes go to NEW only.  A crash: as E4.
 * A failure at E3-E4 leaves the device on the old top, read-write again,
 * the state file naming it; NEW is closed and removed.
 */
struct snap_record_ctx {
	struct ublk_dev *dev;
};

static int snap_state_top(struct ublk_state *s, void *top)
{
	const struct tgt *t = top;

	snprintf(s->target, sizeof(s->target), "%s", t->ops->name);
	if (!realpath(t->cfg.file, s->file))
		return -errno;
	return 0;
}

/* block/chain.c's record hook: the state file names @top. */
static int snap_record(void *ctx, const struct tgt *top)
{
	struct snap_record_ctx *c = ctx;

	return ublk_state_update(c->dev->info.dev_id, snap_state_top, (void *)top);
}

/*
 * E1-E2 (blk_overlay_create()): @file as a @ops image over @top, opened.
 * Returns 0 with *@out, or -errno with the reason set and nothing left
 * on disk.
 */
static int snap_make_overlay(struct ctl_call *call, const struct tgt *top,
			     const struct tgt_ops *ops, const char *file, struct tgt **out)
{
	char why[256];
	int ret = blk_overlay_create(top, ops, file, out, why, sizeof(why));

	return ret ? ctl_fail(call, ret, "%s", why) : 0;
}

/*
 * The device's --backing policy applies to the new overlay as to any
 * image it serves, and `recover` will open NEW under it: refuse now what
 * it would refuse then.  Returns 0 or -EPERM (reason set).
 */
static int snap_policy_check(struct ctl_call *call, const struct tgt *top, const char *file)
{
	char top_dir[PATH_MAX], new_dir[PATH_MAX], *copy, *slash;
	bool same;

	switch (top->cfg.backing_policy) {
	case TGT_BACKING_ANY:
		return 0;
	case TGT_BACKING_NONE:
		return ctl_fail(call, -EPERM,
				"the device was added with --backing=none: it cannot serve an image with a backing file");
	case TGT_BACKING_SAME_DIR:
		break;
	}
	copy = strdup(file);
	if (!copy)
		return ctl_fail(call, -ENOMEM, "%s", strerror(ENOMEM));
	same = realpath(top->cfg.file, top_dir) && realpath(dirname(copy), new_dir);
	free(copy);
	slash = same ? strrchr(top_dir, '/') : NULL;
	if (slash)
		*slash = '\0';
	if (!same || strcmp(top_dir, new_dir))
		return ctl_fail(call, -EPERM,
				"%s is outside the directory of %s, and --backing=same-dir forbids it",
				file, top->cfg.file);
	return 0;
}

static int ublk_ctl_snapshot_external(struct ctl_call *call)
{
	struct ublk_dev *dev = call->ctx;
	const char *file = ctl_arg_str(call, "snapshot-file", NULL);
	const char *fmt = ctl_arg_str(call, "format", "qcow2");
	const char *mode = ctl_arg_str(call, "mode", "absolute-paths");
	struct snap_record_ctx rc = { .dev = dev };
	struct blk_chain_change c = { .record = snap_record, .ctx = &rc };
	const struct tgt_ops *ops = tgt_find(fmt);
	struct tgt *top = dev->blk.top, *ov;
	char dname[32];
	int ret;

	if (snap_check_device(call))
		return -ENODEV;
	if (snap_check_job(call))
		return -EBUSY;
	snap_dev_name(dev, dname, sizeof(dname));
	if (strcmp(mode, "absolute-paths"))
		return ctl_fail(call, -ENOTSUP, "mode '%s' is not supported: only absolute-paths",
				mode);
	if (!ops || (ops != &qcow2_tgt_ops && ops != &qed_tgt_ops))
		return ctl_fail(call, -EINVAL,
				"format '%s' cannot be an overlay: use qcow2 or qed", fmt);
	/* The client resolved it: the server's working directory is not the user's. */
	if (file[0] != '/')
		return ctl_fail(call, -EINVAL, "snapshot-file must be an absolute path");
	if (!top->cfg.file || !tgt_is_format(top->ops))
		return ctl_fail(call, -ENOTSUP,
				"Device '%s' serves the %s target, which cannot be a backing file",
				dname, top->ops->name);
	if (top->cfg.snapshot)
		return ctl_fail(call, -EROFS,
				"Device '%s' serves an internal snapshot, read-only", dname);
	if (top->caps.read_only)
		return ctl_fail(call, -EROFS, "Device '%s' is read only", dname);
	ret = snap_policy_check(call, top, file);
	if (ret)
		return ret;
	ret = snap_make_overlay(call, top, ops, file, &ov);
	if (ret)
		return ret;
	ret = blk_chain_push_overlay(&dev->blk, ov, &c);
	if (ret) {
		tgt_free_chain(ov);
		unlink(file);
		return ctl_fail(call, ret, "cannot switch %s to %s: %s", dname, file,
				strerror(-ret));
	}
	call->ret = snap_json_held(NULL, &c);
	return 0;
}

const struct ctl_cmd ublk_ctl_snap_cmds[UBLK_CTL_SNAP_CMDS] = {
	{
		.name = "blockdev-snapshot-internal-sync",
		.handler = ublk_ctl_snapshot_internal,
		.args = {
			{ "device", CTL_STR, false },
			{ "name", CTL_STR, true },
		},
		.help = "take internal snapshot NAME of the top image (qcow2), under a drain",
	},
	{
		.name = "blockdev-snapshot-delete-internal-sync",
		.handler = ublk_ctl_snapshot_delete,
		.args = {
			{ "device", CTL_STR, false },
			{ "id", CTL_STR, false },
			{ "name", CTL_STR, false },
		},
		.help = "delete an internal snapshot of the top image, by id and/or name",
	},
	{
		.name = "query-snapshots",
		.handler = ublk_ctl_query_snapshots,
		.args = {
			{ "device", CTL_STR, false },
		},
		.help = "the internal snapshots of the top image",
	},
	{
		.name = "blockdev-snapshot-sync",
		.handler = ublk_ctl_snapshot_external,
		.args = {
			{ "device", CTL_STR, false },
			{ "snapshot-file", CTL_STR, true },
			{ "format", CTL_STR, false },
			{ "mode", CTL_STR, false },
		},
		.help = "external snapshot: a new overlay becomes the top, the old top its backing file",
	},
};
