// SPDX-License-Identifier: GPL-2.0
/* Device parameters derived from what the target says it can do. */
#include <string.h>

#include "ublk.h"
#include "util.h"

void ublk_params_from_caps(const struct tgt_caps *caps, uint32_t max_io_bytes,
			   struct ublk_params *p)
{
	struct ublk_param_basic *b = &p->basic;
	uint32_t max_bytes = max_io_bytes;

	memset(p, 0, sizeof(*p));
	p->types = UBLK_PARAM_TYPE_BASIC;

	if (caps->max_io_bytes && caps->max_io_bytes < max_bytes)
		max_bytes = caps->max_io_bytes;
	b->logical_bs_shift = caps->logical_bs_shift;
	b->physical_bs_shift = MAX(caps->physical_bs_shift, caps->logical_bs_shift);
	b->io_min_shift = b->logical_bs_shift;
	b->io_opt_shift = MAX(caps->io_opt_shift, (unsigned int)b->physical_bs_shift);
	b->max_sectors = max_bytes >> 9;
	b->dev_sectors = caps->size_bytes >> 9;

	/*
	 * Without a volatile cache the block layer never sends FLUSH, and
	 * without FUA it emulates it with a flush after the write: claim each
	 * only when the target implements it.
	 */
	if (caps->can_flush) {
		b->attrs |= UBLK_ATTR_VOLATILE_CACHE;
		if (caps->can_fua)
			b->attrs |= UBLK_ATTR_FUA;
	}
	if (caps->read_only)
		b->attrs |= UBLK_ATTR_READ_ONLY;

	if (!caps->read_only && (caps->can_discard || caps->can_write_zeroes)) {
		struct ublk_param_discard *d = &p->discard;
		/* A whole number of granules that fits one request. */
		uint32_t gran = MAX(caps->discard_granularity_bytes,
				    1U << b->logical_bs_shift);
		uint32_t max_sectors = ALIGN_DOWN(UINT32_MAX >> 9, gran >> 9);

		p->types |= UBLK_PARAM_TYPE_DISCARD;
		d->discard_granularity = gran;
		if (caps->can_discard) {
			d->max_discard_sectors = max_sectors;
			/* The driver supports single-segment discards only. */
			d->max_discard_segments = 1;
		}
		if (caps->can_write_zeroes)
			d->max_write_zeroes_sectors = max_sectors;
	}
}
