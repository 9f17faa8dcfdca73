/* SPDX-License-Identifier: GPL-2.0 */
/*
 * An in-memory bitmap of granules for block jobs: mirror's dirty bitmap
 * (a bit per granule a guest wrote since it was copied) and backup's
 * map of granules already saved.  Bits change with atomics, from the
 * queue threads (write notifiers, copy-before-write) and the job's
 * thread at once; the count of set bits follows them.
 */
#ifndef IMGBLK_JOBMAP_H
#define IMGBLK_JOBMAP_H

#include <stdbool.h>
#include <stdint.h>

struct jobmap {
	uint64_t *words;
	uint64_t nbits;
	unsigned int gran_shift;	/* a bit covers 1 << gran_shift bytes */
	uint64_t nset;			/* atomic */
};

/*
 * A bitmap of a device of @size_bytes with granules of 1 << @gran_shift
 * bytes, all clear.  Returns 0 or -ENOMEM.
 */
int jobmap_init(struct jobmap *m, uint64_t size_bytes, unsigned int gran_shift);
void jobmap_free(struct jobmap *m);

/* Sets the bits of the granules [off, off + len) touches. */
void jobmap_set_range(struct jobmap *m, uint64_t off, uint64_t len);
/* Sets bit @i.  Returns whether it was clear. */
bool jobmap_set(struct jobmap *m, uint64_t i);
/* Clears bit @i.  Returns whether it was set. */
bool jobmap_clear(struct jobmap *m, uint64_t i);
bool jobmap_test(const struct jobmap *m, uint64_t i);
/* The first set bit at or after @i, or m->nbits when none. */
uint64_t jobmap_next_set(const struct jobmap *m, uint64_t i);
/* The first clear bit at or after @i, or m->nbits when none. */
uint64_t jobmap_next_clear(const struct jobmap *m, uint64_t i);
/* How many bits are set now. */
uint64_t jobmap_count(const struct jobmap *m);

#endif
