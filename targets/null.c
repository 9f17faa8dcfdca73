// SPDX-License-Identifier: GPL-2.0
/*
 * The null target: a device of --size bytes that reads zeros and drops
 * writes.  It measures the cost of the ublk path itself.
 */
#include <errno.h>
#include <string.h>

#include "tgt.h"
#include "util.h"

static int null_open(struct tgt *t)
{
	if (!t->cfg.size_bytes || t->cfg.size_bytes % 512) {
		img_err("null: the size must be a non-zero multiple of 512 bytes");
		return -EINVAL;
	}
	t->caps.size_bytes = t->cfg.size_bytes;
	t->caps.logical_bs_shift = 9;
	t->caps.physical_bs_shift = 12;
	t->caps.read_only = t->cfg.open_flags & TGT_O_RDONLY;
	t->caps.can_discard = true;
	t->caps.can_write_zeroes = true;
	t->caps.discard_granularity_bytes = 4096;
	return 0;
}

static int null_close(struct tgt *t)
{
	(void)t;
	return 0;
}

static int null_read(struct tgt *t, void *buf, uint32_t len, uint64_t off)
{
	(void)t;
	(void)off;
	memset(buf, 0, len);
	return len;
}

static int null_write(struct tgt *t, const void *buf, uint32_t len,
		      uint64_t off, unsigned int flags)
{
	(void)t;
	(void)buf;
	(void)off;
	(void)flags;
	return len;
}

static int null_discard(struct tgt *t, uint64_t off, uint64_t len)
{
	(void)t;
	(void)off;
	(void)len;
	return 0;
}

static int null_write_zeroes(struct tgt *t, uint64_t off, uint64_t len,
			     unsigned int flags)
{
	(void)flags;
	return null_discard(t, off, len);
}

const struct tgt_ops null_tgt_ops = {
	.name		= "null",
	.summary	= "reads zeros, drops writes (--size SIZE)",
	.options	= TGT_OPT_SIZE,
	.open		= null_open,
	.close		= null_close,
	.read		= null_read,
	.write		= null_write,
	.discard	= null_discard,
	.write_zeroes	= null_write_zeroes,
};
