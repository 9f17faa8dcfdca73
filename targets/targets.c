// SPDX-License-Identifier: GPL-2.0
/* The one list of targets: add a new target's ops table here. */
#include <string.h>

#include "tgt.h"
#include "util.h"

const struct tgt_ops *const tgt_table[] = {
	&null_tgt_ops,
	&raw_tgt_ops,
	&qed_tgt_ops,
	&qcow2_tgt_ops,
};

const unsigned int tgt_table_len = ARRAY_SIZE(tgt_table);

const struct tgt_ops *tgt_find(const char *name)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(tgt_table); i++)
		if (!strcmp(tgt_table[i]->name, name))
			return tgt_table[i];
	return NULL;
}
