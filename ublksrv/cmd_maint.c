// SPDX-License-Identifier: GPL-2.0
/* Image maintenance verbs: resize, rebase. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

struct resize_ctx {
	const char *file;
	const char *fmt;
	const char *size_arg;
	unsigned int flags;
	bool quiet;
};

static int resize_body(void *arg)
{
	struct resize_ctx *c = arg;
	const char *s = c->size_arg;
	struct tgt t = { 0 };
	uint64_t delta, size;
	int ret;

	if (tgt_open_file(&t, c->file, c->fmt, 0))
		return CLI_EXIT_ERR;
	if (!t.ops->resize) {
		img_err("resize: the %s format cannot be resized", t.ops->name);
		goto err;
	}
	/* [+|-]SIZE: relative to the current size when signed, as in qemu-img. */
	if (parse_size(s + (*s == '+' || *s == '-'), &delta)) {
		img_err("resize: bad size '%s'", s);
		goto err;
	}
	if (*s == '+') {
		size = t.caps.size_bytes + delta;
	} else if (*s == '-') {
		if (delta > t.caps.size_bytes) {
			img_err("resize: cannot shrink %s below zero", c->file);
			goto err;
		}
		size = t.caps.size_bytes - delta;
	} else {
		size = delta;
	}
	if (size % 512) {
		img_err("resize: the size must be a multiple of 512 bytes");
		goto err;
	}
	ret = t.ops->resize(&t, size, c->flags);
	if (tgt_close(&t) || ret)
		return CLI_EXIT_ERR;
	if (!c->quiet)
		printf("Image resized.\n");
	return CLI_EXIT_OK;
err:
	tgt_close(&t);
	return CLI_EXIT_ERR;
}

int cli_cmd_resize(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "shrink", no_argument, NULL, 'S' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct resize_ctx c = { 0 };
	int opt;

	optind = 0;
	opterr = 0;
	/* "-1G" is a size, not an option: stop option parsing at FILE. */
	while ((opt = getopt_long(argc, argv, "+:f:qh", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			c.fmt = optarg;
			break;
		case 'S':
			c.flags |= TGT_RESIZE_SHRINK;
			break;
		case 'q':
			c.quiet = true;
			break;
		case 'h':
			puts(cli_find("resize")->usage);
			return CLI_EXIT_OK;
		default:
			img_err("resize: bad option '%s' (see imgblk resize --help)",
				argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		img_err("resize: give FILE and [+|-]SIZE");
		return CLI_EXIT_USAGE;
	}
	c.file = argv[optind];
	c.size_arg = argv[optind + 1];
	return cli_run(resize_body, &c);
}

struct rebase_ctx {
	const char *file;
	const char *fmt;
	const char *backing;
	const char *backing_fmt;
};

static int rebase_body(void *arg)
{
	struct rebase_ctx *c = arg;
	const char *name = *c->backing ? c->backing : NULL;
	const char *bfmt = c->backing_fmt;
	struct tgt t = { 0 };
	char path[PATH_MAX];
	struct stat st;
	int ret;

	if (tgt_open_file(&t, c->file, c->fmt, TGT_O_NO_BACKING))
		return CLI_EXIT_ERR;
	if (!t.ops->set_backing) {
		img_err("rebase: the %s format has no backing file", t.ops->name);
		tgt_close(&t);
		return CLI_EXIT_ERR;
	}
	/* No -F: record the new file's format when it is there to look at. */
	if (name && !bfmt) {
		tgt_resolve_path(c->file, name, path, sizeof(path));
		if (stat(path, &st) == 0) {
			const struct tgt_ops *ops = tgt_probe_file(path);

			if (ops)
				bfmt = ops->name;
		}
	}
	if (bfmt && (!tgt_find(bfmt) || !tgt_is_format(tgt_find(bfmt)))) {
		img_err("rebase: unknown backing format '%s'", bfmt);
		tgt_close(&t);
		return CLI_EXIT_ERR;
	}
	ret = t.ops->set_backing(&t, name, bfmt);
	if (tgt_close(&t) || ret)
		return CLI_EXIT_ERR;
	return CLI_EXIT_OK;
}

int cli_cmd_rebase(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "backing", required_argument, NULL, 'b' },
		{ "backing-format", required_argument, NULL, 'F' },
		{ "unsafe", no_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct rebase_ctx c = { 0 };
	bool unsafe = false;
	int opt;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:b:F:uh", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			c.fmt = optarg;
			break;
		case 'b':
			c.backing = optarg;
			break;
		case 'F':
			c.backing_fmt = optarg;
			break;
		case 'u':
			unsafe = true;
			break;
		case 'h':
			puts(cli_find("rebase")->usage);
			return CLI_EXIT_OK;
		default:
			img_err("rebase: bad option '%s' (see imgblk rebase --help)",
				argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind != 1 || !c.backing) {
		img_err("rebase: give -b BACKING (\"\" for none) and FILE");
		return CLI_EXIT_USAGE;
	}
	if (!unsafe) {
		img_err("rebase: only -u is supported so far: it records the new name and copies no data");
		return CLI_EXIT_USAGE;
	}
	c.file = argv[optind];
	return cli_run(rebase_body, &c);
}
