// SPDX-License-Identifier: GPL-2.0
/* Granule bitmaps for block jobs (jobmap.h). */
#include <errno.h>
#include <stdlib.h>

#include "jobmap.h"
#include "util.h"

int jobmap_init(struct jobmap *m, uint64_t size_bytes, unsigned int gran_shift)
{
	m->gran_shift = gran_shift;
	m->nbits = DIV_ROUND_UP(size_bytes, 1ULL << gran_shift);
	m->nset = 0;
	m->words = calloc(DIV_ROUND_UP(m->nbits, 64) + 1, sizeof(*m->words));
	return m->words ? 0 : -ENOMEM;
}

void jobmap_free(struct jobmap *m)
{
	free(m->words);
	m->words = NULL;
}

bool jobmap_set(struct jobmap *m, uint64_t i)
{
	uint64_t bit = 1ULL << (i & 63);

	if (__atomic_fetch_or(&m->words[i / 64], bit, __ATOMIC_SEQ_CST) & bit)
		return false;
	__atomic_add_fetch(&m->nset, 1, __ATOMIC_RELAXED);
	return true;
}

bool jobmap_clear(struct jobmap *m, uint64_t i)
{
	uint64_t bit = 1ULL << (i & 63);

	if (!(__atomic_fetch_and(&m->words[i / 64], ~bit, __ATOMIC_SEQ_CST) & bit))
		return false;
	__atomic_sub_fetch(&m->nset, 1, __ATOMIC_RELAXED);
	return true;
}

bool jobmap_test(const struct jobmap *m, uint64_t i)
{
	return __atomic_load_n(&m->words[i / 64], __ATOMIC_SEQ_CST) & (1ULL << (i & 63));
}

void jobmap_set_range(struct jobmap *m, uint64_t off, uint64_t len)
{
	uint64_t i, last;

	if (!len)
		return;
	last = MIN((off + len - 1) >> m->gran_shift, m->nbits - 1);
	for (i = off >> m->gran_shift; i <= last; i++)
		jobmap_set(m, i);
}

/* The first bit at or after @i whose value is @set (words read whole). */
static uint64_t jobmap_next(const struct jobmap *m, uint64_t i, bool set)
{
	while (i < m->nbits) {
		uint64_t w = __atomic_load_n(&m->words[i / 64], __ATOMIC_SEQ_CST);

		if (!set)
			w = ~w;
		w &= ~0ULL << (i & 63);
		if (w)
			return MIN(ALIGN_DOWN(i, 64) + __builtin_ctzll(w), m->nbits);
		i = ALIGN_DOWN(i, 64) + 64;
	}
	return m->nbits;
}

uint64_t jobmap_next_set(const struct jobmap *m, uint64_t i)
{
	return jobmap_next(m, i, true);
}

uint64_t jobmap_next_clear(const struct jobmap *m, uint64_t i)
{
	return jobmap_next(m, i, false);
}

uint64_t jobmap_count(const struct jobmap *m)
{
	return __atomic_load_n(&m->nset, __ATOMIC_RELAXED);
}
