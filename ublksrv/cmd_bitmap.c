// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk bitmap`: persistent dirty bitmaps, with qemu-img bitmap's
 * options and behaviour (several operations in one call, applied in the
 * order given), offline on FILE or live on device -n ID through its
 * control channel (QMP's block-dirty-bitmap-* commands).
 */
#include <errno.h>
#include <getopt.h>
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

enum {
	OPT_ADD = 0x100,
	OPT_REMOVE,
	OPT_CLEAR,
	OPT_ENABLE,
	OPT_DISABLE,
	OPT_MERGE,
	OPT_FLUSH,
};

int cli_cmd_bitmap(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "add", no_argument, NULL, OPT_ADD },
		{ "remove", no_argument, NULL, OPT_REMOVE },
		{ "clear", no_argument, NULL, OPT_CLEAR },
		{ "enable", no_argument, NULL, OPT_ENABLE },
		{ "disable", no_argument, NULL, OPT_DISABLE },
		{ "merge", required_argument, NULL, OPT_MERGE },
		{ "flush", no_argument, NULL, OPT_FLUSH },
		{ "granularity", required_argument, NULL, 'g' },
		{ "format", required_argument, NULL, 'f' },
		{ "source-file", required_argument, NULL, 'b' },
		{ "source-format", required_argument, NULL, 'F' },
		{ "number", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bitmap_ctx c = { 0 };
	bool has_add = false, merge = false, flush_only = true;
	unsigned int i;
	uint64_t v;
	int opt;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":g:f:b:F:n:qh", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_ADD ... OPT_FLUSH:
			if (c.nr_ops == BITMAP_MAX_OPS) {
				img_err("bitmap: at most %u operations", BITMAP_MAX_OPS);
				return CLI_EXIT_USAGE;
			}
			c.ops[c.nr_ops].op = opt - OPT_ADD;
			c.ops[c.nr_ops++].source = opt == OPT_MERGE ? optarg : NULL;
			has_add |= opt == OPT_ADD;
			break;
		case 'g':
			if (parse_size(optarg, &c.granularity) || !c.granularity) {
				img_err("bitmap: invalid granularity '%s'", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'f':
			c.fmt = optarg;
			break;
		case 'b':
			c.src_file = optarg;
			break;
		case 'F':
			c.src_fmt = optarg;
			break;
		case 'n':
			if (parse_uint(optarg, 0, UBLK_MAX_DEV_ID, &v)) {
				img_err("bitmap: the device id (-n) must be a number, not '%s'",
					optarg);
				return CLI_EXIT_USAGE;
			}
			c.id = v;
			c.live = true;
			break;
		case 'q':
			break;
		case 'h':
			puts(cli_find("bitmap")->usage);
			return CLI_EXIT_OK;
		default:
			img_err("bitmap: bad option '%s' (see imgblk bitmap --help)",
				argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	/* qemu-img bitmap's own refusals. */
	if (!c.nr_ops) {
		img_err("bitmap: need at least one of --add, --remove, --clear, --enable, "
			"--disable, --merge%s", c.live ? ", --flush" : "");
		return CLI_EXIT_USAGE;
	}
	if (c.granularity && !has_add) {
		img_err("bitmap: granularity only supported with --add");
		return CLI_EXIT_USAGE;
	}
	if (c.src_fmt && !c.src_file) {
		img_err("bitmap: -F only supported with -b");
		return CLI_EXIT_USAGE;
	}
	for (i = 0; i < c.nr_ops; i++) {
		merge |= c.ops[i].op == TGT_BITMAP_MERGE;
		flush_only &= c.ops[i].op == TGT_BITMAP_FLUSH;
	}
	if (c.src_file && !c.live && !merge) {
		img_err("bitmap: -b only supported with --merge");
		return CLI_EXIT_USAGE;
	}
	if (c.live) {
		if (c.src_file || c.fmt) {
			img_err("bitmap: -b, -F and -f are for images, not with -n");
			return CLI_EXIT_USAGE;
		}
		if (argc - optind > 1 || (argc == optind && !flush_only)) {
			img_err("bitmap: with -n give BITMAP (only --flush goes without)");
			return CLI_EXIT_USAGE;
		}
		c.name = argc > optind ? argv[optind] : "";
		return bitmap_live(&c);
	}
	if (argc - optind != 2) {
		img_err("bitmap: give FILE and BITMAP");
		return CLI_EXIT_USAGE;
	}
	for (i = 0; i < c.nr_ops; i++) {
		if (c.ops[i].op == TGT_BITMAP_FLUSH) {
			img_err("bitmap: --flush is for a running device (-n ID)");
			return CLI_EXIT_USAGE;
		}
	}
	c.file = argv[optind];
	c.name = argv[optind + 1];
	return cli_run(bitmap_body, &c);
}
