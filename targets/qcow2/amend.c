// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 ->amend: change creation options of an existing image
 * (`imgblk amend -o KEY=VALUE,... FILE`).
 *
 * Done: lazy_refcounts=on|off on a v3 image; compat= and refcount_bits=
 * equal to what the image has (nothing to do).  A compat change or a
 * refcount width change is refused with a message for now.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

/* Returns the value of @opt if its key is @key, else NULL. */
static const char *qcow2_amend_val(const char *opt, const char *key)
{
	size_t n = strlen(key);

	return !strncmp(opt, key, n) && opt[n] == '=' ? opt + n + 1 : NULL;
}

/*
 * Turns lazy refcounts on or off (A1/A2 in README.md).  Returns 0 or
 * -errno (printed).
 */
static int qcow2_amend_lazy(struct qcow2 *q, bool on)
{
	int ret;

	if (!!(q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) == on)
		return 0;
	/*
	 * A2 (off): every refcount on disk and the dirty bit clear first
	 * (Z2), then the compatible bit goes with a synced header write.  A
	 * crash in between leaves a clean image that still says lazy.
	 */
	ret = q->lazy ? qcow2_mark_clean(q) : qcow2_flush_meta(q);
	if (ret)
		return ret;
	exec_mutex_lock(&q->hdr_mutex);
	if (on)
		q->compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;	/* A1: one synced write */
	else
		q->compat &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
	ret = qcow2_write_header_fields(q);
	exec_mutex_unlock(&q->hdr_mutex);
	/* This session goes on with eager refcounts either way: close is a clean point. */
	q->lazy = false;
	return ret;
}

int qcow2_amend(struct tgt *t, char *const *options, unsigned int nr_options)
{
	struct qcow2 *q = t->priv;
	int lazy = -1;
	unsigned int i;
	const char *v;
	int ret;

	if (q->read_only) {
		img_err("%s: cannot amend: %s", t->cfg.file, q->no_write_reason ?: "read-only");
		return -EROFS;
	}
	for (i = 0; i < nr_options; i++) {
		const char *o = options[i];

		if ((v = qcow2_amend_val(o, "lazy_refcounts"))) {
			if (!strcmp(v, "on") || !strcmp(v, "true")) {
				lazy = 1;
			} else if (!strcmp(v, "off") || !strcmp(v, "false")) {
				lazy = 0;
			} else {
				img_err("amend: lazy_refcounts must be on or off, not '%s'", v);
				return -EINVAL;
			}
		} else if ((v = qcow2_amend_val(o, "compat"))) {
			unsigned int ver = !strcmp(v, "0.10") || !strcmp(v, "v2") ? 2 :
					   !strcmp(v, "1.1") || !strcmp(v, "v3") ? 3 : 0;

			if (!ver) {
				img_err("amend: invalid compat '%s' (0.10 or 1.1)", v);
				return -EINVAL;
			}
			if (ver != q->version) {
				img_err("%s: amend: changing compat is not supported yet", t->cfg.file);
				return -ENOTSUP;
			}
		} else if ((v = qcow2_amend_val(o, "refcount_bits"))) {
			char *end;
			unsigned long bits = strtoul(v, &end, 10);

			if (*end || !bits || bits > 64 || (bits & (bits - 1))) {
				img_err("amend: refcount_bits must be a power of 2 up to 64");
				return -EINVAL;
			}
			if (bits != 1UL << q->refcount_order) {
				img_err("%s: amend: changing refcount_bits is not supported yet",
					t->cfg.file);
				return -ENOTSUP;
			}
		} else {
			img_err("amend: option '%s' cannot be amended on qcow2 "
				"(lazy_refcounts, compat, refcount_bits can)", o);
			return -EINVAL;
		}
	}
	if (lazy == 1 && q->version < 3) {
		/* As QEMU: lazy refcounts need compat=1.1. */
		img_err("%s: amend: lazy refcounts only supported with compatibility level 1.1 "
			"and above (use compat=1.1 or greater)", t->cfg.file);
		return -EINVAL;
	}
	if (lazy >= 0) {
		ret = qcow2_amend_lazy(q, lazy);
		if (ret) {
			img_err("%s: amend: cannot write the header: %s", t->cfg.file,
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}
