// SPDX-License-Identifier: GPL-2.0
/*
 * ublk_params_from_caps(): the device parameters the kernel gets must
 * follow from what the target says it can do.  Claiming a volatile cache
 * or FUA that the target does not honour loses data on power failure;
 * claiming discard on a read-only device makes the kernel send requests
 * we must refuse.
 */
#include <linux/ublk_cmd.h>

#include "ublk.h"
#include "util.h"

#include "kselftest_harness.h"

#define KiB	1024U
#define MiB	(1024U * 1024U)

FIXTURE(params) {
	struct ublk_params p;
};

FIXTURE_VARIANT(params) {
	struct tgt_caps caps;
	uint32_t max_io_bytes;		/* the device's max_io_buf_bytes */
	/* Expected. */
	unsigned int attrs;
	unsigned int physical_bs_shift;
	unsigned int io_opt_shift;
	uint32_t max_sectors;
	bool discard_params;
	uint32_t discard_granularity;
};

/* A raw file on a 4K filesystem: everything. */
FIXTURE_VARIANT_ADD(params, raw_4k) {
	.caps = {
		.size_bytes = 1ULL << 30,
		.logical_bs_shift = 9,
		.physical_bs_shift = 12,
		.can_flush = true,
		.can_fua = true,
		.can_discard = true,
		.can_write_zeroes = true,
		.discard_granularity_bytes = 4096,
	},
	.max_io_bytes = 512 * KiB,
	.attrs = UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA,
	.physical_bs_shift = 12,
	.io_opt_shift = 12,
	.max_sectors = 1024,
	.discard_params = true,
	.discard_granularity = 4096,
};

/* The same file opened read-only: no discard, no write zeroes. */
FIXTURE_VARIANT_ADD(params, raw_read_only) {
	.caps = {
		.size_bytes = 1ULL << 30,
		.logical_bs_shift = 9,
		.physical_bs_shift = 12,
		.read_only = true,
		.can_flush = true,
		.can_fua = true,
		.can_discard = true,
		.can_write_zeroes = true,
		.discard_granularity_bytes = 4096,
	},
	.max_io_bytes = 512 * KiB,
	.attrs = UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA | UBLK_ATTR_READ_ONLY,
	.physical_bs_shift = 12,
	.io_opt_shift = 12,
	.max_sectors = 1024,
	.discard_params = false,
};

/* null: no cache at all, so neither FLUSH nor FUA. */
FIXTURE_VARIANT_ADD(params, null) {
	.caps = {
		.size_bytes = 100 * MiB,
		.logical_bs_shift = 9,
		.physical_bs_shift = 12,
		.can_discard = true,
		.can_write_zeroes = true,
		.discard_granularity_bytes = 4096,
	},
	.max_io_bytes = 512 * KiB,
	.attrs = 0,
	.physical_bs_shift = 12,
	.io_opt_shift = 12,
	.max_sectors = 1024,
	.discard_params = true,
	.discard_granularity = 4096,
};

/* FUA without a volatile cache means nothing: the kernel must not see it. */
FIXTURE_VARIANT_ADD(params, fua_without_flush) {
	.caps = {
		.size_bytes = 1 * MiB,
		.logical_bs_shift = 9,
		.physical_bs_shift = 9,
		.can_fua = true,
	},
	.max_io_bytes = 512 * KiB,
	.attrs = 0,
	.physical_bs_shift = 9,
	.io_opt_shift = 9,
	.max_sectors = 1024,
	.discard_params = false,
};

/* Flush without FUA: the block layer emulates FUA with a flush. */
FIXTURE_VARIANT_ADD(params, flush_without_fua) {
	.caps = {
		.size_bytes = 1 * MiB,
		.logical_bs_shift = 9,
		.physical_bs_shift = 9,
		.can_flush = true,
	},
	.max_io_bytes = 512 * KiB,
	.attrs = UBLK_ATTR_VOLATILE_CACHE,
	.physical_bs_shift = 9,
	.io_opt_shift = 9,
	.max_sectors = 1024,
	.discard_params = false,
};

/*
 * 4K logical blocks, a target limit below the buffer size, a preferred
 * I/O size above the physical block, and a physical block below the
 * logical one (raised to it).
 */
FIXTURE_VARIANT_ADD(params, lbs_4k_target_limit) {
	.caps = {
		.size_bytes = (1ULL << 40) + 4096,
		.logical_bs_shift = 12,
		.physical_bs_shift = 9,
		.io_opt_shift = 16,
		.max_io_bytes = 64 * KiB,
		.can_flush = true,
		.can_fua = true,
		.can_write_zeroes = true,
	},
	.max_io_bytes = 512 * KiB,
	.attrs = UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA,
	.physical_bs_shift = 12,
	.io_opt_shift = 16,
	.max_sectors = 128,
	.discard_params = true,
	/* No granularity given: the logical block. */
	.discard_granularity = 4096,
};

/* The target's limit is larger than the device's: the device's wins. */
FIXTURE_VARIANT_ADD(params, device_limit_wins) {
	.caps = {
		.size_bytes = 512,
		.logical_bs_shift = 9,
		.physical_bs_shift = 9,
		.max_io_bytes = 4 * MiB,
		.can_discard = true,
		.discard_granularity_bytes = 64 * KiB,
	},
	.max_io_bytes = 256 * KiB,
	.attrs = 0,
	.physical_bs_shift = 9,
	.io_opt_shift = 9,
	.max_sectors = 512,
	.discard_params = true,
	.discard_granularity = 64 * KiB,
};

/* Read-only, nothing else: only the basic parameters. */
FIXTURE_VARIANT_ADD(params, read_only_bare) {
	.caps = {
		.size_bytes = 8 * MiB,
		.logical_bs_shift = 9,
		.physical_bs_shift = 12,
		.read_only = true,
	},
	.max_io_bytes = 512 * KiB,
	.attrs = UBLK_ATTR_READ_ONLY,
	.physical_bs_shift = 12,
	.io_opt_shift = 12,
	.max_sectors = 1024,
	.discard_params = false,
};

FIXTURE_SETUP(params)
{
	/* Garbage first: the function must clear what it does not set. */
	memset(&self->p, 0xa5, sizeof(self->p));
	ublk_params_from_caps(&variant->caps, variant->max_io_bytes, &self->p);
}

FIXTURE_TEARDOWN(params)
{
}

TEST_F(params, basic)
{
	const struct ublk_param_basic *b = &self->p.basic;

	ASSERT_TRUE((bool)(self->p.types & UBLK_PARAM_TYPE_BASIC));
	ASSERT_EQ(variant->caps.size_bytes >> 9, b->dev_sectors);
	ASSERT_EQ(variant->caps.logical_bs_shift, b->logical_bs_shift);
	ASSERT_EQ(variant->physical_bs_shift, b->physical_bs_shift);
	ASSERT_EQ(variant->caps.logical_bs_shift, b->io_min_shift);
	ASSERT_EQ(variant->io_opt_shift, b->io_opt_shift);
	ASSERT_EQ(variant->max_sectors, b->max_sectors);
	ASSERT_EQ(0U, b->chunk_sectors);
	ASSERT_EQ(0ULL, b->virt_boundary_mask);
	/* A request of max_sectors fits the per-tag buffer. */
	ASSERT_LE((uint64_t)b->max_sectors << 9, (uint64_t)variant->max_io_bytes);
	/* The physical block is never smaller than the logical one. */
	ASSERT_GE(b->physical_bs_shift, b->logical_bs_shift);
}

TEST_F(params, attrs)
{
	unsigned int attrs = self->p.basic.attrs;

	ASSERT_EQ(variant->attrs, attrs);
	/* The rules themselves, whatever the variant. */
	ASSERT_EQ(variant->caps.can_flush, !!(attrs & UBLK_ATTR_VOLATILE_CACHE));
	ASSERT_EQ(variant->caps.can_flush && variant->caps.can_fua,
		  !!(attrs & UBLK_ATTR_FUA));
	ASSERT_EQ(variant->caps.read_only, !!(attrs & UBLK_ATTR_READ_ONLY));
	ASSERT_FALSE((bool)(attrs & UBLK_ATTR_ROTATIONAL));
}

TEST_F(params, discard)
{
	const struct ublk_param_discard *d = &self->p.discard;
	const struct tgt_caps *c = &variant->caps;
	uint32_t gran_sectors;

	ASSERT_EQ(variant->discard_params,
		  !!(self->p.types & UBLK_PARAM_TYPE_DISCARD));
	/* Nothing but BASIC and DISCARD is claimed. */
	ASSERT_EQ(0U, self->p.types & ~(UBLK_PARAM_TYPE_BASIC |
					 UBLK_PARAM_TYPE_DISCARD));
	if (!variant->discard_params) {
		/* Not claimed, and not left as garbage either. */
		ASSERT_EQ(0U, d->max_discard_sectors);
		ASSERT_EQ(0U, d->max_write_zeroes_sectors);
		return;
	}
	ASSERT_EQ(variant->discard_granularity, d->discard_granularity);
	ASSERT_EQ(0U, d->discard_alignment);
	gran_sectors = d->discard_granularity >> 9;
	ASSERT_NE(0U, gran_sectors);

	if (c->can_discard) {
		ASSERT_NE(0U, d->max_discard_sectors);
		ASSERT_EQ(0U, d->max_discard_sectors % gran_sectors);
		ASSERT_EQ(1, d->max_discard_segments);
	} else {
		ASSERT_EQ(0U, d->max_discard_sectors);
		ASSERT_EQ(0, d->max_discard_segments);
	}
	if (c->can_write_zeroes) {
		ASSERT_NE(0U, d->max_write_zeroes_sectors);
		ASSERT_EQ(0U, d->max_write_zeroes_sectors % gran_sectors);
	} else {
		ASSERT_EQ(0U, d->max_write_zeroes_sectors);
	}
}

/* A size that is not a whole number of sectors is rounded down, not up. */
TEST(size_rounds_down)
{
	struct tgt_caps caps = {
		.size_bytes = 4096 + 511,
		.logical_bs_shift = 9,
		.physical_bs_shift = 9,
	};
	struct ublk_params p;

	ublk_params_from_caps(&caps, 512 * KiB, &p);
	ASSERT_EQ(8ULL, p.basic.dev_sectors);
}

TEST_HARNESS_MAIN
