// SPDX-License-Identifier: GPL-2.0
/*
 * Image maintenance verbs: resize, rebase, amend.
 *
 * Safe rebase (no -u) keeps what FILE reads: wherever FILE does not
 * allocate a range itself and the old backing chain reads differently
 * from the new one there, the old chain's data is copied into FILE.
 * Crash safety: FILE is flushed before ->set_backing records the new
 * name, so until then FILE still reads the old chain, and the ranges
 * copied so far hold exactly what the old chain reads there.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

#define REBASE_CHUNK_BYTES	CLI_CHUNK_BYTES

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

	if (tgt_open_file(&t, c->file, c->fmt, TGT_O_RESIZE))
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

static int resize_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct resize_ctx *c = ctx;

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case CLI_K_SHRINK:
		c->flags |= TGT_RESIZE_SHRINK;
		break;
	case 'q':
		c->quiet = true;
		break;
	}
	return 0;
}

int cli_cmd_resize(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct resize_ctx c = { 0 };
	struct cli_args a;
	/* "-1G" is a size, not an option: the table stops options at FILE. */
	int ret = cli_parse(cmd, argc, argv, resize_opt, &c, &a);

	if (ret)
		return cli_parse_status(cmd, ret);
	c.file = a.argv[0];
	c.size_arg = a.argv[1];
	return cli_run(resize_body, &c);
}

struct rebase_ctx {
	const char *file;
	const char *fmt;
	const char *backing;
	const char *backing_fmt;
	bool unsafe;
	bool progress;
};

/* Reads @len bytes at @off through the chain @b (NULL: zeros).  Returns 0 or -errno. */
static int rebase_read_chain(struct tgt *b, void *buf, uint32_t len, uint64_t off)
{
	int ret;

	if (!b) {
		memset(buf, 0, len);
		return 0;
	}
	ret = tgt_read_backing(b, buf, len, off);
	return ret < 0 ? ret : 0;
}

/*
 * Copies into @t, over [@off, @off + @len) which @t does not allocate,
 * the 512-byte runs where @old_buf and @new_buf differ.
 * Returns 0 or -errno.
 */
static int rebase_copy_diff(struct tgt *t, const uint8_t *old_buf, const uint8_t *new_buf,
			    uint32_t len, uint64_t off)
{
	uint32_t i = 0;

	while (i < len) {
		uint32_t j, step = MIN(512U, len - i);
		bool differ = memcmp(old_buf + i, new_buf + i, step) != 0;
		int ret;

		/* A run of sectors that all differ, or all agree. */
		for (j = i + step; j < len; j += step) {
			step = MIN(512U, len - j);
			if ((memcmp(old_buf + j, new_buf + j, step) != 0) != differ)
				break;
		}
		if (differ) {
			ret = t->ops->write(t, old_buf + i, j - i, off + i, 0);
			if (ret < 0)
				return ret;
		}
		i = j;
	}
	return 0;
}

/*
 * Safe rebase: copies into the open @t what its old chain reads where the
 * new chain @nb (NULL: none) reads differently and @t allocates nothing.
 * Returns 0 or -errno (printed).
 */
static int rebase_copy(struct rebase_ctx *c, struct tgt *t, struct tgt *nb)
{
	uint64_t size = t->caps.size_bytes, off = 0;
	uint8_t *old_buf = NULL, *new_buf = NULL;
	int ret = 0;

	if (posix_memalign((void **)&old_buf, 4096, REBASE_CHUNK_BYTES) ||
	    posix_memalign((void **)&new_buf, 4096, REBASE_CHUNK_BYTES)) {
		free(old_buf);
		img_err("rebase: out of memory");
		return -ENOMEM;
	}
	while (off < size) {
		struct tgt_extent ext;
		int64_t n = t->ops->block_status(t, off, MIN(size - off,
						 (uint64_t)REBASE_CHUNK_BYTES), &ext);

		if (n <= 0) {
			ret = n ? n : -EIO;
			break;
		}
		/* FILE decides this range itself: no backing file shows through. */
		if (!(ext.flags & TGT_EXT_ALLOCATED)) {
			ret = rebase_read_chain(t->backing, old_buf, n, off);
			if (!ret)
				ret = rebase_read_chain(nb, new_buf, n, off);
			if (!ret)
				ret = rebase_copy_diff(t, old_buf, new_buf, n, off);
			if (ret)
				break;
		}
		off += n;
		if (c->progress) {
			printf("    (%.2f/100%%)\r", off * 100.0 / size);
			fflush(stdout);
		}
	}
	if (c->progress)
		printf("\n");
	/* The copies are durable before the header names the new chain. */
	if (!ret && t->ops->flush)
		ret = t->ops->flush(t);
	if (ret)
		img_err("rebase: %s at offset %llu: %s", c->file, (unsigned long long)off,
			strerror(-ret));
	free(old_buf);
	free(new_buf);
	return ret;
}

static int rebase_body(void *arg)
{
	struct rebase_ctx *c = arg;
	const char *name = *c->backing ? c->backing : NULL;
	const char *bfmt = c->backing_fmt;
	struct tgt t = { 0 }, nb = { 0 };
	bool nb_open = false;
	char path[PATH_MAX];
	struct stat st;
	int ret, status = CLI_EXIT_ERR;

	if (bfmt && (!tgt_find(bfmt) || !tgt_is_format(tgt_find(bfmt)))) {
		img_err("rebase: unknown backing format '%s'", bfmt);
		return CLI_EXIT_ERR;
	}
	/* Safe mode reads through the old chain: it must be there. */
	if (tgt_open_file(&t, c->file, c->fmt, c->unsafe ? TGT_O_NO_BACKING : 0))
		return CLI_EXIT_ERR;
	if (!t.ops->set_backing) {
		img_err("rebase: the %s format has no backing file", t.ops->name);
		goto out;
	}
	if (name)
		tgt_resolve_path(c->file, name, path, sizeof(path));
	if (name && !c->unsafe) {
		/* The new chain, read-only, resolved against FILE's directory. */
		if (tgt_open_file(&nb, path, bfmt, TGT_O_RDONLY))
			goto out;
		nb_open = true;
		if (!bfmt)
			bfmt = nb.ops->name;
	} else if (name && !bfmt && stat(path, &st) == 0) {
		/* No -F: record the new file's format when it is there to look at. */
		const struct tgt_ops *ops = tgt_probe_file(path);

		if (ops)
			bfmt = ops->name;
	}
	if (!c->unsafe && rebase_copy(c, &t, nb_open ? &nb : NULL))
		goto out;
	ret = t.ops->set_backing(&t, name, bfmt);
	if (!ret)
		status = CLI_EXIT_OK;
out:
	if (nb_open && tgt_close(&nb))
		status = CLI_EXIT_ERR;
	if (tgt_close(&t))
		status = CLI_EXIT_ERR;
	return status;
}

static int rebase_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct rebase_ctx *c = ctx;

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case 'b':
		c->backing = arg;
		break;
	case 'F':
		c->backing_fmt = arg;
		break;
	case 'u':
		c->unsafe = true;
		break;
	case 'p':
		c->progress = true;
		break;
	}
	return 0;
}

int cli_cmd_rebase(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct rebase_ctx c = { 0 };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, rebase_opt, &c, &a);

	if (!ret && !c.backing)
		ret = cli_usage_err(cmd, "give -b BACKING (\"\" for none)");
	if (ret)
		return cli_parse_status(cmd, ret);
	c.file = a.argv[0];
	return cli_run(rebase_body, &c);
}

struct amend_ctx {
	const char *file;
	const char *fmt;
	char *opts[32];
	unsigned int nr_opts;
};

static int amend_body(void *arg)
{
	struct amend_ctx *c = arg;
	struct tgt t = { 0 };
	int ret;

	/* The backing chain is not read: amend works when it is gone. */
	if (tgt_open_file(&t, c->file, c->fmt, TGT_O_NO_BACKING))
		return CLI_EXIT_ERR;
	if (!t.ops->amend) {
		img_err("amend: the %s format has no options to amend", t.ops->name);
		tgt_close(&t);
		return CLI_EXIT_ERR;
	}
	ret = t.ops->amend(&t, c->opts, c->nr_opts);
	if (tgt_close(&t) || ret)
		return CLI_EXIT_ERR;
	return CLI_EXIT_OK;
}

static int amend_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct amend_ctx *c = ctx;
	char *save = NULL, *kv;

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case 'o':
		for (kv = strtok_r(arg, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
			if (c->nr_opts == ARRAY_SIZE(c->opts)) {
				img_err("amend: too many -o options");
				return -EINVAL;
			}
			c->opts[c->nr_opts++] = kv;
		}
		break;
	}
	/* -q: qemu-img's quiet; amend prints nothing anyway. */
	return 0;
}

int cli_cmd_amend(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct amend_ctx c = { 0 };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, amend_opt, &c, &a);

	if (!ret && !c.nr_opts)
		ret = cli_usage_err(cmd, "give -o OPTIONS");
	if (ret)
		return cli_parse_status(cmd, ret);
	c.file = a.argv[0];
	return cli_run(amend_body, &c);
}
