// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 ->set_backing: a new backing file name and backing-format
 * extension, every other extension (known or not) kept byte for byte.
 *
 * The order (B1-B3, README.md) never lets the header on disk name half of
 * a change: the new name goes where the old header does not look, then one
 * synced write of the first block switches to it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

/* Bytes an extension of @len data bytes takes, header and padding included. */
static uint64_t qcow2_ext_bytes(uint32_t len)
{
	return 8 + ALIGN_UP((uint64_t)len, 8);
}

/*
 * Builds in @nb (a copy of the first cluster @ob) the new extension list:
 * the backing format first when @fmt is set (where QEMU puts it), then
 * every old extension but the old backing format, then the end marker.
 * Sets *@new_end to the byte after the end marker and *@old_end to the
 * byte after the last byte the old list used (its end marker included).
 * Returns 0, or -ENOSPC if it does not fit in @limit bytes.
 */
static int qcow2_build_extensions(const struct qcow2 *q, const uint8_t *ob, uint8_t *nb,
				  uint64_t old_limit, uint64_t limit, const char *fmt,
				  uint64_t *new_end, uint64_t *old_end)
{
	uint64_t pos = q->header_length, out = q->header_length;

	if (fmt) {
		uint32_t len = strlen(fmt);

		if (out + qcow2_ext_bytes(len) > limit)
			return -ENOSPC;
		put_be32(nb + out, QCOW2_EXT_BACKING_FORMAT);
		put_be32(nb + out + 4, len);
		memset(nb + out + 8, 0, ALIGN_UP((uint64_t)len, 8));
		memcpy(nb + out + 8, fmt, len);
		out += qcow2_ext_bytes(len);
	}
	/* The old list was validated at open: every length fits before old_limit. */
	while (pos + 8 <= old_limit) {
		uint32_t type = get_be32(ob + pos);
		uint64_t n = qcow2_ext_bytes(get_be32(ob + pos + 4));

		if (type == QCOW2_EXT_END) {
			pos += 8;
			break;
		}
		n = MIN(n, old_limit - pos);
		if (type != QCOW2_EXT_BACKING_FORMAT) {
			if (out + n > limit)
				return -ENOSPC;
			memmove(nb + out, ob + pos, n);
			out += n;
		}
		pos += n;
	}
	if (out + 8 > limit)
		return -ENOSPC;
	memset(nb + out, 0, 8);
	*new_end = out + 8;
	*old_end = MIN(pos, old_limit);
	return 0;
}

/* Writes the dio_align blocks of @buf covering [@from, @to), then fdatasync. */
static int qcow2_write_hdr_range(struct qcow2 *q, const uint8_t *buf, uint64_t from,
				 uint64_t to)
{
	uint64_t a = ALIGN_DOWN(from, (uint64_t)q->dio_align);
	uint64_t b = ALIGN_UP(to, (uint64_t)q->dio_align);
	ssize_t n;

	if (from >= to)
		return 0;
	n = bfile_pwrite(q->file, buf + a, b - a, a, 0);
	if (n < 0)
		return n;
	return bfile_flush(q->file);
}

/* The first and one-past-last byte where @a and @b differ in [0, @len); false if none. */
static bool qcow2_diff_range(const uint8_t *a, const uint8_t *b, uint64_t len,
			     uint64_t *first, uint64_t *last)
{
	uint64_t i = 0, j = len;

	while (i < len && a[i] == b[i])
		i++;
	if (i == len)
		return false;
	while (j > i && a[j - 1] == b[j - 1])
		j--;
	*first = i;
	*last = j;
	return true;
}

int qcow2_set_backing(struct tgt *t, const char *name, const char *fmt)
{
	struct qcow2 *q = t->priv;
	uint64_t cs = q->cluster_size, old_bf_off, old_bf_end, old_limit;
	uint64_t new_end, old_end, looked, name_off = 0, first, last;
	uint32_t len = name ? strlen(name) : 0;
	uint8_t *ob = q->hdr_buf, *p1 = NULL, *p2 = NULL;
	char *nname = NULL, *nfmt = NULL;
	int ret;

	if (q->read_only) {
		img_err("%s: cannot change the backing file: %s", t->cfg.file,
			q->no_write_reason ?: "opened read-only");
		return -EROFS;
	}
	if (len > QCOW2_MAX_BACKING_NAME) {
		img_err("%s: backing file name longer than %u bytes", t->cfg.file,
			QCOW2_MAX_BACKING_NAME);
		return -ENAMETOOLONG;
	}
	if (!name)
		fmt = NULL;	/* a format without a file means nothing */
	if (fmt && strlen(fmt) > 63) {
		img_err("%s: backing format name too long", t->cfg.file);
		return -EINVAL;
	}
	nname = name ? strdup(name) : NULL;
	nfmt = fmt ? strdup(fmt) : NULL;
	if ((name && !nname) || (fmt && !nfmt) || posix_memalign((void **)&p1, 4096, cs) ||
	    posix_memalign((void **)&p2, 4096, cs)) {
		ret = -ENOMEM;
		goto out;
	}

	old_bf_off = get_be64(ob + offsetof(struct qcow2_header_disk, backing_file_offset));
	old_bf_end = old_bf_off ? old_bf_off +
		     get_be32(ob + offsetof(struct qcow2_header_disk, backing_file_size)) : 0;
	old_limit = old_bf_off ? old_bf_off : cs;

	/* p2: the header as it will be, name not placed yet. */
	memcpy(p2, ob, cs);
	ret = qcow2_build_extensions(q, ob, p2, old_limit, cs, fmt, &new_end, &old_end);
	if (ret || new_end + len > cs) {
		img_err("%s: the header, its extensions and the backing file name (%u bytes) "
			"do not fit in the first cluster (%llu bytes)", t->cfg.file, len,
			(unsigned long long)cs);
		ret = -ENOSPC;
		goto out;
	}
	/*
	 * Where the name goes: past everything the old header looks at (its
	 * extensions, their end marker, its name) and past the new extension
	 * list, so B1 can write it before anything points at it.  If it does
	 * not fit there, right after the new list (as QEMU does): B2 then
	 * writes it with the switch.
	 */
	looked = MAX(old_end, old_bf_end);
	if (name) {
		name_off = ALIGN_UP(MAX(looked, new_end), 8);
		if (name_off + len > cs)
			name_off = new_end;
	}

	/*
	 * B1: the new name, where neither the old header nor the new
	 * extension list is.  p1 is the old first cluster plus the name.
	 */
	memcpy(p1, ob, cs);
	if (name && name_off >= looked) {
		memcpy(p1 + name_off, name, len);
		ret = qcow2_write_hdr_range(q, p1, name_off, name_off + len);
		if (ret)
			goto err_io;
	}

	/*
	 * B2: the switch.  p2 = p1 with the new extension list and fields;
	 * only the bytes that differ are written, in one synced write.  When
	 * the backing format only changes its value (not its padded length),
	 * or the list ends inside the first block, that is one block: the
	 * header is never seen half-changed.
	 */
	memcpy(p2 + new_end, p1 + new_end, cs - new_end);
	if (name)
		memcpy(p2 + name_off, name, len);
	put_be64(p2 + offsetof(struct qcow2_header_disk, backing_file_offset), name_off);
	put_be32(p2 + offsetof(struct qcow2_header_disk, backing_file_size), len);
	if (qcow2_diff_range(p1, p2, cs, &first, &last)) {
		ret = qcow2_write_hdr_range(q, p2, first, last);
		if (ret)
			goto err_io;
	}

	/*
	 * B3: tidy up.  Zero what the new header does not look at (the old
	 * name, the tail of a list that shrank): nothing reads those bytes
	 * any more, so this write cannot hurt, and QEMU finds the cluster as
	 * it would have left it.
	 */
	memcpy(p1, p2, cs);
	if (name) {
		memset(p2 + new_end, 0, name_off - new_end);
		memset(p2 + name_off + len, 0, cs - name_off - len);
	} else {
		memset(p2 + new_end, 0, cs - new_end);
	}
	if (qcow2_diff_range(p1, p2, cs, &first, &last)) {
		ret = qcow2_write_hdr_range(q, p2, first, last);
		if (ret)
			goto err_io;
	}

	/* The cluster in memory is what is on disk now. */
	memcpy(ob, p2, cs);
	free(q->backing_name);
	free(q->backing_fmt);
	q->backing_name = nname;
	q->backing_fmt = nfmt;
	nname = nfmt = NULL;
	ret = 0;
	goto out;
err_io:
	img_err("%s: cannot write the header: %s", t->cfg.file, strerror(-ret));
out:
	free(p1);
	free(p2);
	free(nname);
	free(nfmt);
	return ret;
}
