// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk bitmap`: persistent dirty bitmaps, with qemu-img bitmap's
 * options and behaviour (several operations in one call, applied in the
 * order given), offline on FILE or live on device -n ID through its
 * control channel (QMP's block-dirty-bitmap-* commands).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "control.h"
#include "exec.h"
#include "tgt.h"
#include "ublk.h"
#include "util.h"

#define BITMAP_MAX_OPS		32
#define BITMAP_CALL_TIMEOUT_MS	60000

struct bitmap_op {
	enum tgt_bitmap_op op;
	const char *source;		/* --merge */
};

struct bitmap_ctx {
	const char *file;
	const char *fmt;
	const char *name;
	const char *src_file;		/* -b */
	const char *src_fmt;		/* -F */
	uint64_t granularity;		/* -g */
	bool live;
	unsigned int id;
	struct bitmap_op ops[BITMAP_MAX_OPS];
	unsigned int nr_ops;
};

static const char *const bitmap_op_names[] = {
	[TGT_BITMAP_ADD] = "add",
	[TGT_BITMAP_REMOVE] = "remove",
	[TGT_BITMAP_CLEAR] = "clear",
	[TGT_BITMAP_ENABLE] = "enable",
	[TGT_BITMAP_DISABLE] = "disable",
	[TGT_BITMAP_MERGE] = "merge",
	[TGT_BITMAP_FLUSH] = "flush",
};

/* QMP's command for each operation, as the device's channel names them. */
static const char *const bitmap_qmp_names[] = {
	[TGT_BITMAP_ADD] = "block-dirty-bitmap-add",
	[TGT_BITMAP_REMOVE] = "block-dirty-bitmap-remove",
	[TGT_BITMAP_CLEAR] = "block-dirty-bitmap-clear",
	[TGT_BITMAP_ENABLE] = "block-dirty-bitmap-enable",
	[TGT_BITMAP_DISABLE] = "block-dirty-bitmap-disable",
	[TGT_BITMAP_MERGE] = "block-dirty-bitmap-merge",
	[TGT_BITMAP_FLUSH] = "x-block-dirty-bitmap-flush",
};

static int bitmap_body(void *arg)
{
	struct bitmap_ctx *c = arg;
	struct tgt t = { 0 }, src = { 0 };
	bool src_open = false;
	unsigned int i;
	int ret = 0;

	if (tgt_open_file(&t, c->file, c->fmt, 0))
		return CLI_EXIT_ERR;
	if (!t.ops->bitmap) {
		img_err("bitmap: the %s format has no persistent bitmaps", t.ops->name);
		tgt_close(&t);
		return CLI_EXIT_ERR;
	}
	if (c->src_file) {
		if (tgt_open_file(&src, c->src_file, c->src_fmt, TGT_O_RDONLY)) {
			tgt_close(&t);
			return CLI_EXIT_ERR;
		}
		src_open = true;
	}
	for (i = 0; !ret && i < c->nr_ops; i++) {
		struct tgt_bitmap_args a = {
			.granularity_bytes = c->granularity,
			.src = src_open ? &src : &t,
			.src_name = c->ops[i].source,
		};

		ret = t.ops->bitmap(&t, c->ops[i].op, c->name, &a);
		if (ret)
			img_err("Operation %s on bitmap %s failed", bitmap_op_names[c->ops[i].op],
				c->name);
	}
	if (src_open)
		tgt_close(&src);
	if (tgt_close(&t) || ret)
		return CLI_EXIT_ERR;
	return CLI_EXIT_OK;
}

/* The same operations on a running device, one QMP command each. */
static int bitmap_live(struct bitmap_ctx *c)
{
	struct ctl_client *cl;
	unsigned int i;
	int ret;

	ret = ctl_client_open(c->id, &cl);
	if (ret) {
		img_err("bitmap: device %u: its control channel does not answer: %s", c->id,
			strerror(-ret));
		return CLI_EXIT_ERR;
	}
	for (i = 0; !ret && i < c->nr_ops; i++) {
		enum tgt_bitmap_op op = c->ops[i].op;
		struct json_object *args = json_object_new_object(), *r = NULL, *desc;
		char node[32];

		snprintf(node, sizeof(node), "ublkb%u", c->id);
		json_object_object_add(args, "node", json_object_new_string(node));
		if (op == TGT_BITMAP_MERGE) {
			struct json_object *srcs = json_object_new_array();

			json_object_array_add(srcs, json_object_new_string(c->ops[i].source));
			json_object_object_add(args, "target", json_object_new_string(c->name));
			json_object_object_add(args, "bitmaps", srcs);
		} else if (op != TGT_BITMAP_FLUSH) {
			json_object_object_add(args, "name", json_object_new_string(c->name));
		}
		if (op == TGT_BITMAP_ADD && c->granularity)
			json_object_object_add(args, "granularity",
					       json_object_new_int64(c->granularity));
		ret = ctl_client_call(cl, bitmap_qmp_names[op], args, BITMAP_CALL_TIMEOUT_MS, &r);
		json_object_put(args);
		if (ret == -EREMOTEIO && json_object_object_get_ex(r, "desc", &desc))
			img_err("Operation %s on bitmap %s failed: %s", bitmap_op_names[op],
				c->name, json_object_get_string(desc));
		else if (ret)
			img_err("Operation %s on bitmap %s failed: %s", bitmap_op_names[op],
				c->name, strerror(-ret));
		json_object_put(r);
	}
	ctl_client_close(cl);
	return ret ? CLI_EXIT_ERR : CLI_EXIT_OK;
}

/*
 * One option: the operations are recorded in the order given, as
 * qemu-img bitmap applies them.
 */
static int bitmap_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct bitmap_ctx *c = ctx;
	uint64_t v;

	switch (opt->key) {
	case CLI_K_BITMAP_OP ... CLI_K_BITMAP_OP_END:
		if (c->nr_ops == BITMAP_MAX_OPS) {
			img_err("bitmap: at most %u operations", BITMAP_MAX_OPS);
			return -EINVAL;
		}
		c->ops[c->nr_ops].op = opt->key - CLI_K_BITMAP_OP;
		c->ops[c->nr_ops++].source = arg;	/* --merge's SOURCE, else NULL */
		break;
	case 'g':
		if (parse_size(arg, &c->granularity) || !c->granularity) {
			img_err("bitmap: invalid granularity '%s'", arg);
			return -EINVAL;
		}
		break;
	case 'f':
		c->fmt = arg;
		break;
	case 'b':
		c->src_file = arg;
		break;
	case 'F':
		c->src_fmt = arg;
		break;
	case 'n':
		if (parse_uint(arg, 0, UBLK_MAX_DEV_ID, &v)) {
			img_err("bitmap: the device id (-n) must be a number, not '%s'", arg);
			return -EINVAL;
		}
		c->id = v;
		c->live = true;
		break;
	case 'q':
		break;
	}
	return 0;
}

/*
 * qemu-img bitmap's own refusals, and the operands of each form: FILE
 * BITMAP, or with -n only BITMAP (none for --flush alone).  Returns 0 or
 * -EINVAL (printed).
 */
static int bitmap_check(const struct cli_cmd *cmd, struct bitmap_ctx *c,
			const struct cli_args *a)
{
	bool add = false, merge = false, flush = false, flush_only = true;
	unsigned int i;

	for (i = 0; i < c->nr_ops; i++) {
		add |= c->ops[i].op == TGT_BITMAP_ADD;
		merge |= c->ops[i].op == TGT_BITMAP_MERGE;
		flush |= c->ops[i].op == TGT_BITMAP_FLUSH;
		flush_only &= c->ops[i].op == TGT_BITMAP_FLUSH;
	}
	if (!c->nr_ops)
		return cli_usage_err(cmd, "need at least one of --add, --remove, --clear, "
				     "--enable, --disable, --merge%s", c->live ? ", --flush" : "");
	if (c->granularity && !add)
		return cli_usage_err(cmd, "granularity only supported with --add");
	if (c->src_fmt && !c->src_file)
		return cli_usage_err(cmd, "-F only supported with -b");
	if (c->live) {
		if (c->src_file || c->fmt)
			return cli_usage_err(cmd, "-b, -F and -f are for images, not with -n");
		if (a->argc > 1 || (!a->argc && !flush_only))
			return cli_usage_err(cmd, "with -n give BITMAP (only --flush goes without)");
		c->name = a->argc ? a->argv[0] : "";
		return 0;
	}
	if (c->src_file && !merge)
		return cli_usage_err(cmd, "-b only supported with --merge");
	if (flush)
		return cli_usage_err(cmd, "--flush is for a running device (-n ID)");
	if (a->argc != 2)
		return cli_usage_err(cmd, "give FILE and BITMAP");
	c->file = a->argv[0];
	c->name = a->argv[1];
	return 0;
}

int cli_cmd_bitmap(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct bitmap_ctx c = { 0 };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, bitmap_opt, &c, &a);

	if (!ret)
		ret = bitmap_check(cmd, &c, &a);
	if (ret)
		return cli_parse_status(cmd, ret);
	return c.live ? bitmap_live(&c) : cli_run(bitmap_body, &c);
}
