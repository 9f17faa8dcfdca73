// SPDX-License-Identifier: GPL-2.0
/*
 * Creating a QED image: one header cluster (the header, then the backing
 * file name), then an empty L1 table.  The layout QEMU's qemu-img create
 * makes, so that either tool can open what the other created.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qed.h"
#include "util.h"

/* Parses the -o options.  Prints the first bad one.  Returns 0 or -EINVAL. */
static int qed_create_parse(const struct tgt_create_opts *o, uint64_t *cluster_size,
			    uint64_t *table_size)
{
	unsigned int i;

	for (i = 0; i < o->nr_options; i++) {
		const char *opt = o->options[i];
		const char *eq = strchr(opt, '=');
		size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
		int ret;

		if (eq && klen == strlen("cluster_size") && !strncmp(opt, "cluster_size", klen)) {
			ret = parse_size(eq + 1, cluster_size);
			if (ret || !qed_cluster_size_ok(*cluster_size)) {
				img_err("create: qed: cluster_size must be a power of 2 in %u..%u, not '%s'",
					QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE, eq + 1);
				return -EINVAL;
			}
		} else if (eq && klen == strlen("table_size") && !strncmp(opt, "table_size", klen)) {
			ret = parse_uint(eq + 1, QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE, table_size);
			if (ret || !qed_table_size_ok(*table_size)) {
				img_err("create: qed: table_size must be a power of 2 in %u..%u clusters, not '%s'",
					QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE, eq + 1);
				return -EINVAL;
			}
		} else {
			img_err("create: qed: unknown option '%.*s' (known: cluster_size, table_size)",
				(int)klen, opt);
			return -EINVAL;
		}
	}
	return 0;
}

/* The size of the backing image, for an overlay created without a size. */
static int qed_backing_size(const struct tgt_create_opts *o, uint64_t *size)
{
	struct tgt b = { 0 };
	char *path;
	int ret;

	path = malloc(PATH_MAX);
	if (!path)
		return -ENOMEM;
	tgt_resolve_path(o->file, o->backing_file, path, PATH_MAX);
	b.ops = o->backing_fmt ? tgt_find(o->backing_fmt) : tgt_probe_file(path);
	if (!b.ops) {
		free(path);
		return -EINVAL;
	}
	b.cfg.file = path;
	/* Only its size is read: no lock, as qemu-img create takes none. */
	b.cfg.open_flags = TGT_O_RDONLY | TGT_O_BUFFERED | TGT_O_NO_IO | TGT_O_FORCE_SHARE;
	ret = tgt_open(&b);
	if (!ret) {
		*size = b.caps.size_bytes;
		tgt_close(&b);
	}
	free(path);
	return ret;
}

int qed_create(const struct tgt_create_opts *o)
{
	uint64_t cluster_size = QED_DEFAULT_CLUSTER_SIZE, table_size = QED_DEFAULT_TABLE_SIZE;
	uint64_t size = o->size_bytes, max, file_bytes;
	size_t name_len = o->backing_file ? strlen(o->backing_file) : 0;
	const struct tgt_ops *bops;
	struct qed_header h;
	char *buf;
	int fd, ret;

	ret = qed_create_parse(o, &cluster_size, &table_size);
	if (ret)
		return ret;
	if (o->backing_fmt && !o->backing_file) {
		img_err("create: a backing format needs a backing file");
		return -EINVAL;
	}
	if (o->backing_fmt) {
		bops = tgt_find(o->backing_fmt);
		if (!bops || (bops != &raw_tgt_ops && !bops->probe)) {
			img_err("create: unknown backing format '%s'", o->backing_fmt);
			return -EINVAL;
		}
	}
	if (name_len && (name_len >= PATH_MAX || sizeof(h) + name_len > cluster_size)) {
		img_err("create: backing file name too long for a %llu-byte header cluster",
			(unsigned long long)cluster_size);
		return -ENAMETOOLONG;
	}
	if (!size && o->backing_file) {
		ret = qed_backing_size(o, &size);
		if (ret)
			return ret;
	}
	/* As qemu-img: the size is rounded up to whole sectors. */
	size = ALIGN_UP(size, 512ULL);
	max = qed_max_image_size(cluster_size, table_size);
	if (size > max) {
		img_err("create: qed: size %llu exceeds %llu, the most cluster_size=%llu, table_size=%llu can map",
			(unsigned long long)size, (unsigned long long)max,
			(unsigned long long)cluster_size, (unsigned long long)table_size);
		return -EINVAL;
	}

	memset(&h, 0, sizeof(h));
	put_le32(&h.magic, QED_MAGIC);
	put_le32(&h.cluster_size, cluster_size);
	put_le32(&h.table_size, table_size);
	put_le32(&h.header_size, 1);
	/* The L1 table right after the header cluster. */
	put_le64(&h.l1_table_offset, cluster_size);
	put_le64(&h.image_size, size);
	if (name_len) {
		uint64_t features = QED_F_BACKING_FILE;

		/* A raw backing file is never probed: its first bytes are guest data. */
		if (o->backing_fmt && !strcmp(o->backing_fmt, "raw"))
			features |= QED_F_BACKING_RAW;
		put_le64(&h.features, features);
		put_le32(&h.backing_filename_offset, sizeof(h));
		put_le32(&h.backing_filename_size, name_len);
	}

	buf = calloc(1, sizeof(h) + name_len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), o->backing_file ? o->backing_file : "", name_len);

	fd = tgt_create_file(o->file);
	if (fd < 0) {
		ret = fd;
		if (ret != -EBUSY)
			img_err("create: %s: %s", o->file, strerror(-ret));
		goto out_free;
	}
	/* The rest of the header cluster and the L1 table are zeros: a sparse file. */
	file_bytes = (1 + table_size) * cluster_size;
	/* Through the executor's helpers, so a crash-state replay sees what create writes. */
	ret = exec_file_write(fd, buf, sizeof(h) + name_len, 0);
	if (!ret && ftruncate(fd, file_bytes))
		ret = -errno;
	if (!ret)
		ret = exec_file_sync(fd);
	if (ret) {
		img_err("create: %s: %s", o->file, strerror(-ret));
		close(fd);
		goto out_free;
	}
	ret = close(fd) ? -errno : 0;
out_free:
	free(buf);
	return ret;
}
