// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk io`, a qemu-io for our engines: runs -c commands in order on an
 * image, through the same target code a device uses.  Requests of any
 * alignment are accepted; unaligned ones are read-modify-written here, on
 * sector-aligned bounce buffers, since targets see whole sectors only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

#define IO_MAX_CMDS	256
/* Largest piece handed to a target at once. */
#define IO_CHUNK_BYTES	CLI_CHUNK_BYTES
#define SECTOR		512ULL

struct io_ctx {
	const char *file;
	const char *fmt;
	unsigned int flags;
	enum tgt_backing_policy backing_policy;
	char *cmds[IO_MAX_CMDS];
	unsigned int nr_cmds;
	struct tgt t;
	void *bounce;
};

/* Reads [off, off+len) of any alignment into @buf.  Returns 0 or -errno. */
static int io_read(struct io_ctx *c, void *buf, uint64_t off, uint64_t len)
{
	while (len) {
		uint64_t a_off = ALIGN_DOWN(off, SECTOR);
		uint64_t a_end = MIN(ALIGN_UP(off + len, SECTOR), a_off + IO_CHUNK_BYTES);
		uint64_t n = MIN(len, a_end - off);
		int ret = c->t.ops->read(&c->t, c->bounce, a_end - a_off, a_off);

		if (ret < 0)
			return ret;
		memcpy(buf, (char *)c->bounce + (off - a_off), n);
		buf = (char *)buf + n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Writes @buf to [off, off+len) of any alignment.  Returns 0 or -errno. */
static int io_write(struct io_ctx *c, const void *buf, uint64_t off, uint64_t len)
{
	while (len) {
		uint64_t a_off = ALIGN_DOWN(off, SECTOR);
		uint64_t a_end = MIN(ALIGN_UP(off + len, SECTOR), a_off + IO_CHUNK_BYTES);
		uint64_t n = MIN(len, a_end - off);
		int ret;

		/* Partial sectors at either end: fetch what we do not overwrite. */
		if (a_off != off || n != a_end - a_off) {
			ret = c->t.ops->read(&c->t, c->bounce, a_end - a_off, a_off);
			if (ret < 0)
				return ret;
		}
		memcpy((char *)c->bounce + (off - a_off), buf, n);
		ret = c->t.ops->write(&c->t, c->bounce, a_end - a_off, a_off, 0);
		if (ret < 0)
			return ret;
		buf = (const char *)buf + n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Zeros [off, off+len): whole sectors through ->write_zeroes when possible. */
static int io_zero(struct io_ctx *c, uint64_t off, uint64_t len, bool discard)
{
	uint64_t head_end = MIN(ALIGN_UP(off, SECTOR), off + len);
	uint64_t tail_start = MAX(ALIGN_DOWN(off + len, SECTOR), head_end);
	void *zeros;
	int ret = 0;

	zeros = calloc(1, IO_CHUNK_BYTES);
	if (!zeros)
		return -ENOMEM;
	if (head_end > off)
		ret = io_write(c, zeros, off, head_end - off);
	if (!ret && tail_start > head_end) {
		uint64_t o = head_end, l = tail_start - head_end;

		if (discard)
			ret = c->t.ops->discard(&c->t, o, l);
		else if (c->t.caps.can_write_zeroes)
			ret = c->t.ops->write_zeroes(&c->t, o, l, 0);
		else
			for (; !ret && l; ) {
				uint64_t n = MIN(l, (uint64_t)IO_CHUNK_BYTES);

				ret = io_write(c, zeros, o, n);
				o += n;
				l -= n;
			}
	}
	if (!ret && off + len > tail_start)
		ret = io_write(c, zeros, tail_start, off + len - tail_start);
	free(zeros);
	return ret;
}

static int io_parse_pattern(const char *s, int *pat)
{
	char *end;
	long v = strtol(s, &end, 0);

	if (*end || v < 0 || v > 255)
		return -EINVAL;
	*pat = v;
	return 0;
}

/* Splits @cmd into words in @argv (at most @max).  Returns the count. */
static int io_split(char *cmd, char **argv, int max)
{
	int n = 0;
	char *tok, *save;

	for (tok = strtok_r(cmd, " \t", &save); tok && n < max - 1;
	     tok = strtok_r(NULL, " \t", &save))
		argv[n++] = tok;
	argv[n] = NULL;
	return n;
}

/*
 * Runs one command.  Returns 0, 1 on a pattern mismatch, or -errno
 * (having printed why).
 */
static int io_run_cmd(struct io_ctx *c, char *cmd)
{
	char *argv[16];
	int argc = io_split(cmd, argv, ARRAY_SIZE(argv));
	int pat = -1, i = 1, ret;
	bool zero = false, quiet = false;
	uint64_t off, len, k;
	unsigned char *buf;

	if (argc == 0)
		return 0;
	if (!strcmp(argv[0], "flush")) {
		ret = c->t.ops->flush ? c->t.ops->flush(&c->t) : 0;
		if (ret)
			img_err("flush failed: %s", strerror(-ret));
		return ret;
	}
	if (!strcmp(argv[0], "sleep")) {
		/* qemu-io's: keeps the image open (and locked) for a while. */
		struct timespec ts;

		if (argc != 2 || parse_uint(argv[1], 0, UINT32_MAX, &k)) {
			img_err("io: usage: sleep MILLISECONDS");
			return -EINVAL;
		}
		ts.tv_sec = k / 1000;
		ts.tv_nsec = k % 1000 * 1000000;
		/* Nothing else runs on this executor: blocking it is harmless. */
		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
		return 0;
	}
	if (strcmp(argv[0], "read") && strcmp(argv[0], "write") &&
	    strcmp(argv[0], "discard")) {
		img_err("io: unknown command '%s' (read, write, discard, flush, sleep)",
			argv[0]);
		return -EINVAL;
	}
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-P") && i + 1 < argc) {
			if (io_parse_pattern(argv[++i], &pat)) {
				img_err("io: bad pattern '%s'", argv[i]);
				return -EINVAL;
			}
		} else if (!strcmp(argv[i], "-z") && !strcmp(argv[0], "write")) {
			zero = true;
		} else if (!strcmp(argv[i], "-q")) {
			quiet = true;
		} else {
			img_err("io: %s: unknown option '%s'", argv[0], argv[i]);
			return -EINVAL;
		}
	}
	if (argc - i != 2 || parse_size(argv[i], &off) || parse_size(argv[i + 1], &len)) {
		img_err("io: usage: %s [-P PATTERN]%s OFFSET LENGTH", argv[0],
			!strcmp(argv[0], "write") ? " [-z]" : "");
		return -EINVAL;
	}
	if (off > c->t.caps.size_bytes || len > c->t.caps.size_bytes - off) {
		img_err("io: %s: range %llu+%llu is past the end of the image (%llu bytes)",
			argv[0], (unsigned long long)off, (unsigned long long)len,
			(unsigned long long)c->t.caps.size_bytes);
		return -EINVAL;
	}
	if (strcmp(argv[0], "read") && c->t.caps.read_only) {
		img_err("io: %s: the image is open read-only", argv[0]);
		return -EROFS;
	}

	if (!strcmp(argv[0], "discard") || zero) {
		if (!strcmp(argv[0], "discard") && !c->t.caps.can_discard) {
			img_err("io: discard: not supported by this image");
			return -EOPNOTSUPP;
		}
		ret = io_zero(c, off, len, !zero);
		if (ret) {
			img_err("io: %s failed: %s", argv[0], strerror(-ret));
			return ret;
		}
		if (!quiet)
			printf("%s %llu/%llu bytes at offset %llu\n",
			       zero ? "wrote" : "discard", (unsigned long long)len,
			       (unsigned long long)len, (unsigned long long)off);
		return 0;
	}

	buf = malloc(MAX(len, 1));
	if (!buf)
		return -ENOMEM;
	ret = 0;
	if (!strcmp(argv[0], "write")) {
		/* qemu-io writes 0xcd when no pattern is given. */
		memset(buf, pat < 0 ? 0xcd : pat, len);
		ret = io_write(c, buf, off, len);
		if (ret)
			img_err("io: write failed: %s", strerror(-ret));
		else if (!quiet)
			printf("wrote %llu/%llu bytes at offset %llu\n",
			       (unsigned long long)len, (unsigned long long)len,
			       (unsigned long long)off);
	} else {
		ret = io_read(c, buf, off, len);
		if (ret) {
			img_err("io: read failed: %s", strerror(-ret));
		} else {
			for (k = 0; pat >= 0 && k < len; k++) {
				if (buf[k] != pat) {
					printf("Pattern verification failed at offset %llu, %llu bytes\n",
					       (unsigned long long)(off + k),
					       (unsigned long long)len);
					ret = 1;
					break;
				}
			}
			if (!quiet)
				printf("read %llu/%llu bytes at offset %llu\n",
				       (unsigned long long)len, (unsigned long long)len,
				       (unsigned long long)off);
		}
	}
	free(buf);
	return ret;
}

static int io_body(void *arg)
{
	struct io_ctx *c = arg;
	unsigned int i;
	int ret, status = 0;

	c->t.cfg.backing_policy = c->backing_policy;
	ret = tgt_open_file(&c->t, c->file, c->fmt, c->flags);
	if (ret)
		return CLI_EXIT_ERR;
	ret = -posix_memalign(&c->bounce, 4096, IO_CHUNK_BYTES);
	if (ret)
		goto out;
	for (i = 0; i < c->nr_cmds; i++) {
		/*
		 * qemu-io 7.2 runs every command, after a failed one too,
		 * and exits 1 if any failed or mismatched.
		 */
		if (io_run_cmd(c, c->cmds[i]))
			status = CLI_EXIT_ERR;
	}
	free(c->bounce);
out:
	ret = tgt_close(&c->t);
	if (ret) {
		img_err("%s: closing failed: %s", c->file, strerror(-ret));
		status = CLI_EXIT_ERR;
	}
	return status;
}

static int io_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct io_ctx *c = ctx;

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case 'c':
		if (c->nr_cmds == IO_MAX_CMDS) {
			img_err("io: at most %d commands", IO_MAX_CMDS);
			return -EINVAL;
		}
		c->cmds[c->nr_cmds++] = arg;
		break;
	case 'r':
		c->flags |= TGT_O_RDONLY;
		break;
	case 'U':
		c->flags |= TGT_O_FORCE_SHARE;
		break;
	case 't':
		if (!strcmp(arg, "writeback")) {
			c->flags |= TGT_O_BUFFERED;
		} else if (strcmp(arg, "none")) {
			img_err("io: cache mode must be none or writeback, not '%s'", arg);
			return -EINVAL;
		}
		break;
	case CLI_K_BACKING:
		/* The policy `add --backing=` applies, testable without a device. */
		if (!strcmp(arg, "any")) {
			c->backing_policy = TGT_BACKING_ANY;
		} else if (!strcmp(arg, "same-dir")) {
			c->backing_policy = TGT_BACKING_SAME_DIR;
		} else if (!strcmp(arg, "none")) {
			c->backing_policy = TGT_BACKING_NONE;
		} else {
			img_err("io: --backing must be any, same-dir or none, not '%s'", arg);
			return -EINVAL;
		}
		break;
	}
	return 0;
}

int cli_cmd_io(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct io_ctx c = { 0 };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, io_opt, &c, &a);

	if (ret)
		return cli_parse_status(cmd, ret);
	c.file = a.argv[0];
	return cli_run(io_body, &c);
}
