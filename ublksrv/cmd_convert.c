// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk convert`: copy the guest-visible content of an image (through
 * its whole backing chain) into a new image of any format.  Ranges that
 * read as zeros are skipped, not written: the new image reads zeros there
 * already, and stays sparse.  With -c every cluster of the output that
 * is not all zeros is written compressed (whole clusters: the output's
 * cluster size sets the unit).
 *
 * With a backing file for the output (-B, -o backing_file=) zeros are
 * written too, so that the backing file does not show through.  With
 * --bitmap NAME only the ranges INPUT's persistent bitmap NAME marks are
 * copied: the incremental backup of a stopped image, into an OUTPUT
 * whose backing file is the previous backup.  INPUT is only read: the
 * bitmap is left as it is (`imgblk bitmap --clear` starts the next
 * period).  qemu-img has no such option.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bfile.h"
#include "cli.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

#define CONVERT_CHUNK_BYTES	CLI_CHUNK_BYTES
#define MAX_CONVERT_OPTS	32

struct convert_ctx {
	const char *in_file;
	const char *in_fmt;
	const char *out_file;
	const char *out_fmt;
	const char *snapshot;		/* -l: read this internal snapshot */
	char *opts[MAX_CONVERT_OPTS];
	unsigned int nr_opts;
	bool progress;
	bool compress;			/* -c */
	bool force_share;		/* -U: for INPUT */
	bool bitmaps;			/* --bitmaps: copy the persistent bitmaps */
	bool skip_broken;		/* --skip-broken-bitmaps: leave in-use ones out */
	const char *bitmap;		/* --bitmap: copy only what it marks */
	const char *backing;		/* -B, -o backing_file= */
	const char *backing_fmt;	/* -F, -o backing_fmt= */
	bool zeros;			/* write zeros too: OUTPUT has a backing file */
};

/*
 * --bitmaps: every persistent bitmap of @in made again in @out, with its
 * granularity and enabled state, marking what it marks in @in; after the
 * data, so that the copy's own writes mark nothing.  An inconsistent
 * (in-use) bitmap stops the copy, or is left out with --skip-broken-
 * bitmaps, as in qemu-img.  Returns 0 or -errno (printed).
 */
static int convert_bitmaps(const struct convert_ctx *c, struct tgt *in, struct tgt *out)
{
	const struct tgt_bitmap_info *list;
	int n, i, ret;

	if (!in->ops->bitmap_list || !out->ops->bitmap) {
		img_err("convert: --bitmaps needs persistent bitmaps in both formats (%s to %s)",
			in->ops->name, out->ops->name);
		return -ENOTSUP;
	}
	n = in->ops->bitmap_list(in, &list);
	if (n < 0)
		return n;
	for (i = 0; i < n; i++) {
		struct tgt_bitmap_args a = {
			.granularity_bytes = list[i].granularity_bytes,
			.disabled = !list[i].enabled,
			.src = in,
			.src_name = list[i].name,
		};

		if (list[i].in_use) {
			if (c->skip_broken)
				continue;
			img_err("convert: cannot copy inconsistent bitmap '%s'; "
				"try --skip-broken-bitmaps, or remove it", list[i].name);
			return -EBUSY;
		}
		ret = out->ops->bitmap(out, TGT_BITMAP_ADD, list[i].name, &a);
		if (!ret)
			ret = out->ops->bitmap(out, TGT_BITMAP_MERGE, list[i].name, &a);
		if (ret)
			return ret;
	}
	return 0;
}

static void convert_progress(const struct convert_ctx *c, uint64_t done, uint64_t total)
{
	if (c->progress) {
		printf("    (%.2f/100%%)\r", total ? done * 100.0 / total : 100.0);
		fflush(stdout);
	}
}

/* Makes [off, off+len) of @out read zeros (its backing file must not show). */
static int convert_zero(struct tgt *out, void *buf, uint64_t off, uint64_t len)
{
	if (out->caps.can_write_zeroes)
		return out->ops->write_zeroes(out, off, len, 0);
	memset(buf, 0, MIN(len, (uint64_t)CONVERT_CHUNK_BYTES));
	while (len) {
		uint32_t n = MIN(len, (uint64_t)CONVERT_CHUNK_BYTES);
		int ret = out->ops->write(out, buf, n, off, 0);

		if (ret < 0)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * Copies [off, off+len) from @in to @out; all-zero chunks are skipped,
 * or zeroed with @zeros.
 */
static int convert_copy(struct tgt *in, struct tgt *out, void *buf, uint64_t off,
			uint64_t len, bool zeros)
{
	while (len) {
		uint32_t n = MIN(len, (uint64_t)CONVERT_CHUNK_BYTES);
		int ret = in->ops->read(in, buf, n, off);

		if (ret < 0)
			return ret;
		if (!buf_is_zero(buf, n))
			ret = out->ops->write(out, buf, n, off, 0);
		else if (zeros)
			ret = convert_zero(out, buf, off, n);
		if (ret < 0)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * -c: writes the clusters of @out touching [off, off+len) compressed,
 * from *@done_to on (a cluster is written once when runs share it), each
 * read whole from @in.  @buf holds CONVERT_CHUNK_BYTES or a cluster,
 * whichever is larger.  Returns 0 or -errno.
 */
static int convert_compress(struct tgt *in, struct tgt *out, void *buf, uint64_t cs,
			    uint64_t chunk, uint64_t size, uint64_t off, uint64_t len,
			    uint64_t *done_to)
{
	uint64_t a = MAX(ALIGN_DOWN(off, cs), *done_to), b = MIN(ALIGN_UP(off + len, cs), size);

	while (a < b) {
		uint64_t n = MIN(b - a, chunk), c, w;
		int ret = in->ops->read(in, buf, n, a);

		if (ret < 0)
			return ret;
		/* All-zero clusters are left out: the new image reads zeros there. */
		for (c = 0; c < n; c += w) {
			w = MIN(cs, n - c);
			if (buf_is_zero((char *)buf + c, w))
				continue;
			ret = out->ops->write(out, (char *)buf + c, w, a + c, TGT_W_COMPRESS);
			if (ret < 0)
				return ret;
		}
		a += n;
	}
	*done_to = MAX(*done_to, b);
	return 0;
}

/*
 * --bitmap: INPUT's bitmap @c->bitmap must exist and be consistent (an
 * in-use one may miss writes).  Returns 0 or -errno (printed).
 */
static int convert_check_bitmap(const struct convert_ctx *c, struct tgt *in)
{
	const struct tgt_bitmap_info *bm;
	int n;

	if (!in->ops->bitmap_list || !in->ops->bitmap_status) {
		img_err("convert: %s: the %s format has no persistent bitmaps", c->in_file,
			in->ops->name);
		return -ENOTSUP;
	}
	n = in->ops->bitmap_list(in, &bm);
	while (n-- > 0 && strcmp(bm[n].name, c->bitmap))
		;
	if (n < 0) {
		img_err("convert: Dirty bitmap '%s' not found", c->bitmap);
		return -ENOENT;
	}
	if (bm[n].in_use) {
		img_err("convert: Bitmap '%s' is inconsistent and cannot be used", c->bitmap);
		return -EBUSY;
	}
	return 0;
}

/* --bitmap: copies what INPUT's bitmap marks, zeros included.  Returns 0 or -errno. */
static int convert_marked(const struct convert_ctx *c, struct tgt *in, struct tgt *out,
			  void *buf, uint64_t size, uint64_t *off)
{
	while (*off < size) {
		bool dirty;
		int64_t n = in->ops->bitmap_status(in, c->bitmap, *off, size - *off, &dirty);
		int ret;

		if (n <= 0)
			return n ? n : -EIO;
		if (dirty) {
			ret = convert_copy(in, out, buf, *off, n, true);
			if (ret)
				return ret;
		}
		*off += n;
		convert_progress(c, *off, size);
	}
	return 0;
}

static int convert_body(void *arg)
{
	struct convert_ctx *c = arg;
	struct tgt in = { 0 }, out = { 0 };
	struct tgt_create_opts co = { 0 };
	const struct tgt_ops *out_ops;
	uint64_t off = 0, size, cs = 0, chunk = CONVERT_CHUNK_BYTES, done_to = 0;
	int ret, status = CLI_EXIT_ERR;
	void *buf = NULL;

	out_ops = tgt_find(c->out_fmt);
	if (!out_ops || !tgt_is_format(out_ops) || !out_ops->create) {
		img_err("convert: unknown or unsupported output format '%s'", c->out_fmt);
		return CLI_EXIT_ERR;
	}
	/* The formats create through a local descriptor: never a file named "nbd:..." */
	if (bfile_name_remote(c->out_file)) {
		img_err("convert: %s: the output is created on a local path only", c->out_file);
		return CLI_EXIT_ERR;
	}
	in.cfg.snapshot = c->snapshot;
	if (tgt_open_file(&in, c->in_file, c->in_fmt, TGT_O_RDONLY | TGT_O_BUFFERED |
			  (c->force_share ? TGT_O_FORCE_SHARE : 0)))
		return CLI_EXIT_ERR;
	size = in.caps.size_bytes;
	if (c->bitmap && convert_check_bitmap(c, &in))
		goto out_in;
	co.file = c->out_file;
	co.size_bytes = size;
	co.options = c->opts;
	co.nr_options = c->nr_opts;
	co.backing_file = c->backing;
	co.backing_fmt = c->backing_fmt;
	if (c->backing && !c->backing_fmt) {
		char path[PATH_MAX];
		const struct tgt_ops *bops;

		tgt_resolve_path(c->out_file, c->backing, path, sizeof(path));
		bops = tgt_probe_file(path);
		if (!bops)
			goto out_in;
		co.backing_fmt = bops->name;
	}
	if (out_ops->create(&co))
		goto out_in;
	/* Through the page cache: one flush at the end makes it all durable. */
	if (tgt_open_file(&out, c->out_file, c->out_fmt, TGT_O_BUFFERED))
		goto out_in;
	if (out.caps.size_bytes < size) {
		img_err("convert: %s came out smaller than %s", c->out_file, c->in_file);
		goto out_out;
	}
	if (c->compress) {
		struct tgt_info info = { 0 };

		if (!out.caps.can_compress || !out.ops->info) {
			img_err("convert: the %s format cannot store compressed data", c->out_fmt);
			goto out_out;
		}
		out.ops->info(&out, &info);
		cs = info.cluster_size;
		/* Whole clusters per read; the clusters of one chunk go out one by one. */
		chunk = ALIGN_DOWN(MAX((uint64_t)CONVERT_CHUNK_BYTES, cs), cs);
	}
	if (posix_memalign(&buf, 4096, chunk)) {
		img_err("convert: out of memory");
		goto out_out;
	}

	c->zeros = out.backing;
	convert_progress(c, 0, size);
	if (c->bitmap) {
		ret = convert_marked(c, &in, &out, buf, size, &off);
		if (ret)
			goto err_io;
	}
	while (off < size) {
		struct tgt_extent ext;
		struct tgt *layer;
		unsigned int depth;
		int64_t n = tgt_chain_status(&in, off, size - off, &ext, &depth, &layer);

		if (n <= 0) {
			ret = n ? n : -EIO;
			goto err_io;
		}
		if (!(ext.flags & TGT_EXT_ZERO)) {
			if (c->compress)
				ret = convert_compress(&in, &out, buf, cs, chunk, size, off, n,
						       &done_to);
			else
				ret = convert_copy(&in, &out, buf, off, n, c->zeros);
			if (ret)
				goto err_io;
		} else if (c->zeros) {
			ret = convert_zero(&out, buf, off, n);
			if (ret)
				goto err_io;
		}
		off += n;
		convert_progress(c, off, size);
	}
	if (c->bitmaps && convert_bitmaps(c, &in, &out))
		goto out_out;
	ret = out.ops->flush ? out.ops->flush(&out) : 0;
	if (ret)
		goto err_io;
	if (c->progress)
		printf("    (100.00/100%%)\n");
	status = CLI_EXIT_OK;
	goto out_out;

err_io:
	if (c->progress)
		printf("\n");
	img_err("convert: at offset %llu: %s", (unsigned long long)off, strerror(-ret));
out_out:
	free(buf);
	if (tgt_close(&out))
		status = CLI_EXIT_ERR;
out_in:
	tgt_close(&in);
	return status;
}

static int convert_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct convert_ctx *c = ctx;
	char *save, *kv;

	switch (opt->key) {
	case 'f':
		c->in_fmt = arg;
		break;
	case 'O':
		c->out_fmt = arg;
		break;
	case 'o':
		for (kv = strtok_r(arg, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
			/* The output's backing file is this verb's business, as in create. */
			if (!strncmp(kv, "backing_file=", 13)) {
				c->backing = kv + 13;
				continue;
			}
			if (!strncmp(kv, "backing_fmt=", 12)) {
				c->backing_fmt = kv + 12;
				continue;
			}
			if (c->nr_opts == MAX_CONVERT_OPTS) {
				img_err("convert: too many -o options");
				return -EINVAL;
			}
			c->opts[c->nr_opts++] = kv;
		}
		break;
	case 'l':
		/* qemu-img's snapshot.name=NAME, snapshot.id=ID, or a bare name. */
		if (!strncmp(arg, "snapshot.name=", 14))
			c->snapshot = arg + 14;
		else if (!strncmp(arg, "snapshot.id=", 12))
			c->snapshot = arg + 12;
		else
			c->snapshot = arg;
		break;
	case 's':
		c->snapshot = arg;
		break;
	case 'p':
		c->progress = true;
		break;
	case 'c':
		c->compress = true;
		break;
	case 'q':
		c->progress = false;
		break;
	case 'U':
		c->force_share = true;
		break;
	case CLI_K_BITMAPS:
		c->bitmaps = true;
		break;
	case CLI_K_SKIP_BROKEN:
		c->skip_broken = true;
		break;
	case CLI_K_BITMAP:
		c->bitmap = arg;
		break;
	case 'B':
		c->backing = arg;
		break;
	case 'F':
		c->backing_fmt = arg;
		break;
	}
	return 0;
}

int cli_cmd_convert(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct convert_ctx c = { .out_fmt = "raw" };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, convert_opt, &c, &a);

	if (!ret && c.skip_broken && !c.bitmaps)
		ret = cli_usage_err(cmd, "--skip-broken-bitmaps only makes sense with --bitmaps");
	if (!ret && c.compress && (c.backing || c.bitmap))
		ret = cli_usage_err(cmd, "-c writes a whole image: not with a backing file or "
				    "--bitmap");
	if (!ret && c.backing_fmt && !c.backing)
		ret = cli_usage_err(cmd, "-F names the format of a backing file (-B)");
	if (ret)
		return cli_parse_status(cmd, ret);
	c.in_file = a.argv[0];
	c.out_file = a.argv[1];
	return cli_run(convert_body, &c);
}
