// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk commit [-b BASE] [-d] [-p] FILE`: merge an overlay down its
 * backing chain, as qemu-img commit does (`commit -n ID`, the job on a
 * running device, is cmd_job.c's).  Every range that a layer above
 * BASE (FILE's backing file by default) allocates is copied into BASE,
 * zeros included (they must hide what BASE holds there); BASE grows to
 * FILE's size if it is smaller.  Then, unless -b or -d was given, FILE is
 * emptied so that it reads BASE again.
 *
 * Crash safety: BASE is flushed before FILE is emptied, so a crash at any
 * point leaves FILE's view intact (BASE changed only below allocated
 * ranges of FILE, which still hide it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

#define COMMIT_CHUNK_BYTES	CLI_CHUNK_BYTES

struct commit_ctx {
	const char *file;
	const char *fmt;
	const char *base;		/* -b */
	bool keep;			/* -d, or implied by -b */
	bool progress;
	bool quiet;
};

/* The depth below @top of the layer that is the file @name; -ENOENT if none. */
static int commit_find_base(struct tgt *top, const char *name)
{
	struct stat st;
	struct tgt *l;
	int d;

	if (stat(name, &st)) {
		img_err("commit: %s: %s", name, strerror(errno));
		return -errno;
	}
	for (l = top->backing, d = 1; l; l = l->backing, d++)
		if (l->st_dev == st.st_dev && l->st_ino == st.st_ino)
			return d;
	img_err("commit: %s is not in the backing chain of %s", name, top->cfg.file);
	return -ENOENT;
}

static int commit_copy(struct tgt *top, struct tgt *base, void *buf, uint64_t off,
		       uint64_t len)
{
	while (len) {
		uint32_t n = MIN(len, (uint64_t)COMMIT_CHUNK_BYTES);
		int ret = top->ops->read(top, buf, n, off);

		if (ret < 0)
			return ret;
		ret = base->ops->write(base, buf, n, off, 0);
		if (ret < 0)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

static int commit_body(void *arg)
{
	struct commit_ctx *c = arg;
	struct tgt top = { 0 }, base = { 0 }, *bl;
	uint64_t off = 0, size;
	void *buf = NULL;
	int depth, i, ret = 0, status = CLI_EXIT_ERR;

	if (tgt_open_file(&top, c->file, c->fmt, 0))
		return CLI_EXIT_ERR;
	if (!top.backing) {
		img_err("commit: %s has no backing file", c->file);
		goto out_top;
	}
	depth = c->base ? commit_find_base(&top, c->base) : 1;
	if (depth < 0)
		goto out_top;
	for (bl = &top, i = 0; i < depth; i++)
		bl = bl->backing;
	/*
	 * The chain holds BASE read-only; a second, writable handle (with its
	 * own backing chain, for the COW of partial clusters) writes it.  The
	 * chain's handle stops refusing writers first, or its locks would keep
	 * the second one out; the second one's refuse everyone else.
	 */
	if (tgt_set_role(bl, TGT_ROLE_WRITTEN_BASE))
		goto out_top;
	/* Its name is the chain's: from an image, and as little trusted. */
	if (tgt_open_file(&base, bl->cfg.file, bl->ops->name,
			  bl->cfg.open_flags & TGT_O_FROM_IMAGE))
		goto out_top;
	size = top.caps.size_bytes;
	if (base.caps.size_bytes < size) {
		if (!base.ops->resize || base.ops->resize(&base, size, 0)) {
			img_err("commit: cannot grow %s to the size of %s", base.cfg.file, c->file);
			goto out_base;
		}
	}
	if (!c->keep && !top.ops->make_empty) {
		img_err("commit: the %s format cannot be emptied; use -d", top.ops->name);
		goto out_base;
	}
	if (posix_memalign(&buf, 4096, COMMIT_CHUNK_BYTES)) {
		img_err("commit: out of memory");
		goto out_base;
	}

	while (off < size) {
		struct tgt_extent ext;
		struct tgt *layer;
		unsigned int d;
		int64_t n = tgt_chain_status(&top, off, size - off, &ext, &d, &layer);

		if (n <= 0) {
			ret = n ? n : -EIO;
			break;
		}
		/* Decided above BASE: BASE must read the same afterwards. */
		if (layer && d < (unsigned int)depth) {
			if (ext.flags & TGT_EXT_ZERO)
				ret = base.ops->write_zeroes ?
				      base.ops->write_zeroes(&base, off, n, 0) :
				      -EOPNOTSUPP;
			else
				ret = commit_copy(&top, &base, buf, off, n);
			if (ret == -EOPNOTSUPP)
				ret = commit_copy(&top, &base, buf, off, n);
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
	if (!ret && base.ops->flush)
		ret = base.ops->flush(&base);
	if (ret) {
		img_err("commit: at offset %llu: %s", (unsigned long long)off, strerror(-ret));
		goto out_base;
	}
	/* BASE is durable: only now may FILE stop hiding it. */
	if (!c->keep && top.ops->make_empty(&top))
		goto out_base;
	status = CLI_EXIT_OK;
out_base:
	free(buf);
	if (tgt_close(&base))
		status = CLI_EXIT_ERR;
out_top:
	if (tgt_close(&top))
		status = CLI_EXIT_ERR;
	if (status == CLI_EXIT_OK && !c->quiet)
		printf("Image committed.\n");
	return status;
}

static int commit_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct commit_ctx *c = ctx;
	char name[64];

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case 'b':
		c->base = arg;
		/* As qemu-img: an explicit base leaves FILE as it is. */
		c->keep = true;
		break;
	case 'd':
		c->keep = true;
		break;
	case 'p':
		c->progress = true;
		break;
	case 'q':
		c->quiet = true;
		break;
	default:
		/* cli_parse() has acted on these. */
		if (cli_opt_shared(opt->key))
			break;
		/* The options of a running device's commit (cmd_job.c). */
		img_err("commit: %s needs a running device (-n ID)",
			cli_opt_name(opt, name, sizeof(name)));
		return -EINVAL;
	}
	return 0;
}

/* Notes whether -n was given. */
static int commit_live_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	(void)arg;
	if (opt->key == 'n')
		*(bool *)ctx = true;
	return 0;
}

/*
 * One table entry serves both commits: with -n ID the job on a running
 * device, without it this one of an image FILE.  A first look at a copy
 * of @argv (cli_scan() reorders it) tells which.
 */
int cli_cmd_commit(const struct cli_cmd *cmd, int argc, char **argv)
{
	char **scan = calloc(argc + 1, sizeof(*scan));
	struct commit_ctx c = { 0 };
	struct cli_args a;
	bool live = false;
	int ret;

	if (!scan) {
		img_err("commit: %s", strerror(ENOMEM));
		return CLI_EXIT_ERR;
	}
	memcpy(scan, argv, argc * sizeof(*scan));
	ret = cli_scan(cmd, argc, scan, commit_live_opt, &live, &a);
	free(scan);
	if (ret)
		return cli_parse_status(cmd, ret);
	if (live)
		return cli_cmd_job_start(cmd, argc, argv);
	ret = cli_parse(cmd, argc, argv, commit_opt, &c, &a);
	if (ret)
		return cli_parse_status(cmd, ret);
	if (a.argc != 1)
		return cli_parse_status(cmd, cli_usage_err(cmd,
					"give FILE, or -n ID for a running device"));
	c.file = a.argv[0];
	return cli_run(commit_body, &c);
}
