// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk measure [-O FMT] [-o OPTS] [--output=json] (--size SIZE | [-f FMT] FILE)`:
 * how large a new image of format FMT would be, as qemu-img measure says.
 *
 * "required": the file holding FILE's content (or an empty image of SIZE)
 * with nothing preallocated; "fully allocated": every cluster present.
 * For qcow2 the accounting is QEMU's: one header cluster, the L2 and L1
 * tables of the whole (cluster-rounded) size, refcount blocks and table
 * found as a fixed point of counting themselves, plus data; "required"
 * subtracts the data clusters FILE does not allocate (zeros and holes
 * skipped, a run counted to the end of its last cluster).  A v3 qcow2
 * output with a qcow2 input adds "bitmaps size" (its persistent bitmaps,
 * directory and tables).  QEMU 7.2 cannot measure QED: ours counts the
 * header cluster, the L1 table, the L2 tables a run of data needs, and
 * the data, the layout QEMU's (and our) qed create and allocator make.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

#define MEASURE_MAX_OPTS	32

/* QEMU's limits and defaults for a new qcow2 image. */
#define QCOW2_M_DEFAULT_CLUSTER	(64U << 10)
#define QCOW2_M_MAX_L1_BYTES	(32U << 20)
#define QED_M_DEFAULT_CLUSTER	(64U << 10)
#define QED_M_DEFAULT_TABLE	4U

struct measure_ctx {
	const char *file;
	const char *fmt;
	const char *out_fmt;
	bool has_size;
	uint64_t size_bytes;
	bool json;
	char *opts[MEASURE_MAX_OPTS];
	unsigned int nr_opts;
	bool force_share;
};

struct measure_result {
	uint64_t required;
	uint64_t fully_allocated;
	bool has_bitmaps;
	uint64_t bitmaps;
};

/* Output options, qcow2's superset; which apply depends on the format. */
struct measure_opts {
	uint64_t cluster_size;
	unsigned int version;		/* qcow2: 2 or 3 */
	unsigned int refcount_bits;
	bool extended_l2;
	bool prealloc_full;		/* preallocation=full|falloc */
	bool has_backing;
	uint64_t table_size;		/* qed: clusters per table */
};

static bool measure_key(const char *opt, const char *key, const char **val)
{
	size_t n = strlen(key);

	if (strncmp(opt, key, n) || opt[n] != '=')
		return false;
	*val = opt + n + 1;
	return true;
}

static int measure_bool(const char *key, const char *v, bool *b)
{
	if (!strcmp(v, "on") || !strcmp(v, "true")) {
		*b = true;
	} else if (!strcmp(v, "off") || !strcmp(v, "false")) {
		*b = false;
	} else {
		img_err("measure: %s must be on or off, not '%s'", key, v);
		return -EINVAL;
	}
	return 0;
}

/* Parses -o for @fmt into @mo.  Prints the first bad option.  Returns 0 or -EINVAL. */
static int measure_parse_opts(struct measure_ctx *c, struct measure_opts *mo)
{
	bool qcow2 = !strcmp(c->out_fmt, "qcow2"), qed = !strcmp(c->out_fmt, "qed");
	bool refcount_given = false;
	unsigned int i;

	mo->cluster_size = qed ? QED_M_DEFAULT_CLUSTER : QCOW2_M_DEFAULT_CLUSTER;
	mo->version = 3;
	mo->refcount_bits = 16;
	mo->table_size = QED_M_DEFAULT_TABLE;
	for (i = 0; i < c->nr_opts; i++) {
		const char *o = c->opts[i], *v;
		uint64_t n;
		bool b;

		if (measure_key(o, "preallocation", &v)) {
			if (strcmp(v, "off") && strcmp(v, "metadata") && strcmp(v, "falloc") &&
			    strcmp(v, "full")) {
				img_err("measure: unknown preallocation mode '%s'", v);
				return -EINVAL;
			}
			mo->prealloc_full = !strcmp(v, "full") || !strcmp(v, "falloc");
			continue;
		}
		if (qcow2 || qed) {
			if (measure_key(o, "backing_file", &v)) {
				mo->has_backing = true;
				continue;
			}
			if (measure_key(o, "backing_fmt", &v))
				continue;
			if (measure_key(o, "cluster_size", &v)) {
				if (parse_size(v, &n) || n & (n - 1) ||
				    n < (qed ? 4096U : 512U) || n > (qed ? 64U << 20 : 2U << 20)) {
					img_err("measure: invalid cluster_size '%s'", v);
					return -EINVAL;
				}
				mo->cluster_size = n;
				continue;
			}
		}
		if (qed && measure_key(o, "table_size", &v)) {
			if (parse_size(v, &n) || !n || n & (n - 1) || n > 16) {
				img_err("measure: invalid table_size '%s'", v);
				return -EINVAL;
			}
			mo->table_size = n;
			continue;
		}
		if (qcow2) {
			if (measure_key(o, "compat", &v)) {
				if (!strcmp(v, "0.10") || !strcmp(v, "v2")) {
					mo->version = 2;
				} else if (!strcmp(v, "1.1") || !strcmp(v, "v3")) {
					mo->version = 3;
				} else {
					img_err("measure: invalid compat '%s'", v);
					return -EINVAL;
				}
				continue;
			}
			if (measure_key(o, "refcount_bits", &v)) {
				if (parse_size(v, &n) || !n || n > 64 || n & (n - 1)) {
					img_err("measure: refcount_bits must be a power of 2 up to 64");
					return -EINVAL;
				}
				mo->refcount_bits = n;
				refcount_given = true;
				continue;
			}
			if (measure_key(o, "extended_l2", &v)) {
				if (measure_bool("extended_l2", v, &mo->extended_l2))
					return -EINVAL;
				continue;
			}
			if (measure_key(o, "lazy_refcounts", &v)) {
				if (measure_bool("lazy_refcounts", v, &b))
					return -EINVAL;
				continue;
			}
			if (measure_key(o, "compression_type", &v)) {
				/* Compression changes no sizes here: QEMU counts none. */
				if (strcmp(v, "zlib") && strcmp(v, "zstd")) {
					img_err("measure: unknown compression_type '%s'", v);
					return -EINVAL;
				}
				continue;
			}
		}
		img_err("measure: invalid option '%s' for format '%s'", o, c->out_fmt);
		return -EINVAL;
	}
	if (qcow2 && mo->version == 2 && refcount_given && mo->refcount_bits != 16) {
		img_err("measure: compat=0.10 only supports refcount_bits=16");
		return -EINVAL;
	}
	if (qcow2 && mo->extended_l2 && mo->cluster_size < (16U << 10)) {
		img_err("measure: extended_l2 needs a cluster size of at least 16k");
		return -EINVAL;
	}
	if (qcow2 && mo->extended_l2 && mo->version == 2) {
		img_err("measure: extended_l2 needs compat=1.1");
		return -EINVAL;
	}
	return 0;
}

/*
 * QEMU's refcount metadata for @clusters clusters: blocks and table
 * clusters counting themselves, found as a fixed point.  Returns bytes.
 */
static uint64_t measure_refcount_bytes(uint64_t clusters, uint64_t cs,
				       unsigned int refcount_bits)
{
	uint64_t per_block = cs * 8 / refcount_bits, per_table = cs / 8;
	uint64_t table = 0, blocks = 0, n = 0, last;

	do {
		last = n;
		blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
		table = DIV_ROUND_UP(blocks, per_table);
		n = clusters + blocks + table;
	} while (n != last);
	return (blocks + table) * cs;
}

/* A fully allocated qcow2 image of @size_bytes (cluster-rounded), as QEMU counts it. */
static uint64_t measure_qcow2_full(uint64_t size_bytes, const struct measure_opts *mo)
{
	uint64_t cs = mo->cluster_size, l2e = mo->extended_l2 ? 16 : 8;
	uint64_t meta = cs, nl2e, nl1e;

	nl2e = ALIGN_UP(size_bytes / cs, cs / l2e);
	meta += nl2e * l2e;
	nl1e = ALIGN_UP(nl2e * l2e / cs, cs / 8);
	meta += nl1e * 8;
	meta += measure_refcount_bytes((meta + size_bytes) / cs, cs, mo->refcount_bits);
	return meta + size_bytes;
}

/*
 * Where the layer's file itself has a hole at @host_off (a cluster QEMU
 * zeroed with fallocate before writing part of it): QEMU's block status
 * asks the file under a format layer and counts such a run as zeros.
 * Shortens *@n to the file's run; returns true if it is a hole.
 */
static bool measure_file_hole(int fd, uint64_t host_off, int64_t *n)
{
	off_t data = lseek(fd, host_off, SEEK_DATA), hole;

	if (data < 0)
		return errno == ENXIO;	/* past the last data: a hole to the end */
	if ((uint64_t)data > host_off) {
		*n = MIN((uint64_t)*n, (uint64_t)data - host_off);
		return true;
	}
	hole = lseek(fd, host_off, SEEK_HOLE);
	if (hole > 0 && (uint64_t)hole > host_off)
		*n = MIN((uint64_t)*n, (uint64_t)hole - host_off);
	return false;
}

/*
 * Walks @in's content through its whole chain and calls @fn for each run
 * of data, cluster-rounded (QEMU's walk: zeros and holes are skipped, a
 * data run is counted to the end of its last cluster and the walk resumes
 * there).  Returns 0 or -errno.
 */
static int measure_walk(struct tgt *in, uint64_t cs,
			void (*fn)(void *arg, uint64_t off, uint64_t len), void *arg)
{
	uint64_t size = in->caps.size_bytes, off = 0;
	struct tgt *fd_layer = NULL;
	int fd = -1;

	while (off < size) {
		struct tgt_extent ext;
		struct tgt *layer;
		unsigned int depth;
		int64_t n = tgt_chain_status(in, off, size - off, &ext, &depth, &layer);
		bool data;

		if (n <= 0) {
			if (fd >= 0)
				close(fd);
			return n ? n : -EIO;
		}
		data = !(ext.flags & TGT_EXT_ZERO) && (ext.flags & TGT_EXT_DATA) && layer;
		if (data && (ext.flags & TGT_EXT_OFFSET_VALID)) {
			if (layer != fd_layer) {
				if (fd >= 0)
					close(fd);
				fd = open(layer->cfg.file, O_RDONLY | O_CLOEXEC);
				fd_layer = layer;
			}
			if (fd >= 0 && measure_file_hole(fd, ext.host_off, &n))
				data = false;
		}
		if (data) {
			uint64_t end = ALIGN_UP(off + n, cs);

			fn(arg, ALIGN_DOWN(off, cs), end - ALIGN_DOWN(off, cs));
			n = end - off;
		}
		off += n;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

static void measure_add_bytes(void *arg, uint64_t off, uint64_t len)
{
	(void)off;
	*(uint64_t *)arg += len;
}

/* QED: data clusters and the L2 tables they need. */
struct measure_qed_acc {
	uint64_t data;
	uint64_t l2_span;		/* guest bytes one L2 table maps */
	uint64_t last_l2;		/* index + 1 of the last table counted; 0: none */
	uint64_t tables;
};

static void measure_qed_add(void *arg, uint64_t off, uint64_t len)
{
	struct measure_qed_acc *a = arg;
	uint64_t first = off / a->l2_span, last = (off + len - 1) / a->l2_span;

	a->data += len;
	/* Runs come in order: a table already counted is the previous run's last. */
	if (a->last_l2 && first == a->last_l2 - 1)
		first++;
	if (last >= first)
		a->tables += last - first + 1;
	a->last_l2 = last + 1;
}

/*
 * The persistent bitmaps of the qcow2 file @file (v3) as QEMU sizes them
 * for a new image with clusters of @cs bytes: each bitmap's data and its
 * table, whole clusters, plus the directory.  Sets *@has if @file is v3.
 * Returns 0 or -errno.
 */
static int measure_qcow2_bitmaps(const char *file, uint64_t vsize, uint64_t cs,
				 bool *has, uint64_t *bytes)
{
	uint8_t h[4096], *dir = NULL;
	uint64_t hl, pos, dir_off = 0, dir_size = 0, dir_entries = 0, i, total = 0;
	uint32_t nb = 0;
	ssize_t n;
	int fd, ret = 0;

	*bytes = 0;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, h, sizeof(h), 0);
	/* A v2 image cannot hold bitmaps: QEMU then prints no bitmaps size. */
	if (n < 104 || get_be32(h + 4) < 3)
		goto out;
	*has = true;
	hl = get_be32(h + 100);
	for (pos = hl; pos + 8 <= (uint64_t)n;) {
		uint32_t type = get_be32(h + pos), len = get_be32(h + pos + 4);

		if (!type)
			break;
		if (type == 0x23852875 && len >= 24 && pos + 32 <= (uint64_t)n) {
			nb = get_be32(h + pos + 8);
			dir_size = get_be64(h + pos + 16);
			dir_off = get_be64(h + pos + 24);
		}
		pos += 8 + ALIGN_UP((uint64_t)len, 8);
	}
	if (!nb || !dir_size || dir_size > (64U << 20))
		goto out;
	dir = malloc(dir_size);
	if (!dir) {
		ret = -ENOMEM;
		goto out;
	}
	if (pread(fd, dir, dir_size, dir_off) != (ssize_t)dir_size) {
		ret = -EIO;
		goto out;
	}
	for (pos = 0, i = 0; i < nb && pos + 24 <= dir_size; i++) {
		unsigned int gbits = dir[pos + 17];
		uint16_t name_size = get_be16(dir + pos + 18);
		uint32_t extra = get_be32(dir + pos + 20);
		uint64_t bits = gbits < 64 ? DIV_ROUND_UP(vsize, 1ULL << gbits) : 1;
		uint64_t clusters = DIV_ROUND_UP(DIV_ROUND_UP(bits, 8), cs);

		total += clusters * cs + ALIGN_UP(clusters * 8, cs);
		/* A new directory entry: no extra data, the name. */
		dir_entries += ALIGN_UP(24 + (uint64_t)name_size, 8);
		pos += ALIGN_UP(24 + (uint64_t)extra + name_size, 8);
	}
	*bytes = total + ALIGN_UP(dir_entries, cs);
out:
	free(dir);
	close(fd);
	return ret;
}

static int measure_compute(struct measure_ctx *c, struct tgt *in, struct measure_result *r)
{
	struct measure_opts mo = { 0 };
	uint64_t vsize, required = 0;
	int ret;

	ret = measure_parse_opts(c, &mo);
	if (ret)
		return ret;
	if (!strcmp(c->out_fmt, "raw")) {
		/* A raw file is its content: holes count, as in QEMU. */
		r->required = in ? in->caps.size_bytes : ALIGN_UP(c->size_bytes, 512ULL);
		r->fully_allocated = r->required;
		return 0;
	}
	vsize = ALIGN_UP(in ? in->caps.size_bytes : c->size_bytes, mo.cluster_size);

	if (!strcmp(c->out_fmt, "qcow2")) {
		uint64_t l2e = mo.extended_l2 ? 16 : 8;
		uint64_t l2_tables = DIV_ROUND_UP(vsize / mo.cluster_size, mo.cluster_size / l2e);

		if (l2_tables * 8 > QCOW2_M_MAX_L1_BYTES) {
			img_err("measure: the image size is too large (try using a larger cluster size)");
			return -EFBIG;
		}
		if (in && mo.has_backing) {
			/* Nothing known about what the new backing file shares: all of it. */
			required = vsize;
		} else if (in) {
			ret = measure_walk(in, mo.cluster_size, measure_add_bytes, &required);
			if (ret)
				goto err_walk;
		}
		if (mo.prealloc_full)
			required = vsize;
		r->fully_allocated = measure_qcow2_full(vsize, &mo);
		r->required = r->fully_allocated - vsize + required;
		if (mo.version >= 3 && in && !strcmp(in->ops->name, "qcow2")) {
			ret = measure_qcow2_bitmaps(in->cfg.file, in->caps.size_bytes,
						    mo.cluster_size, &r->has_bitmaps, &r->bitmaps);
			if (ret)
				goto err_walk;
		}
		return 0;
	}
	if (!strcmp(c->out_fmt, "qed")) {
		uint64_t cs = mo.cluster_size, tbytes = mo.table_size * cs;
		struct measure_qed_acc a = { .l2_span = tbytes / 8 * cs };
		uint64_t meta = cs + tbytes;	/* header cluster, L1 table */
		uint64_t max = (tbytes / 8) * (tbytes / 8) * cs;

		if (vsize > max) {
			img_err("measure: qed: size exceeds %" PRIu64 " bytes, the most these "
				"cluster and table sizes map", max);
			return -EFBIG;
		}
		if (in && mo.has_backing) {
			a.data = vsize;
			a.tables = DIV_ROUND_UP(vsize, a.l2_span);
		} else if (in) {
			ret = measure_walk(in, cs, measure_qed_add, &a);
			if (ret)
				goto err_walk;
		}
		if (mo.prealloc_full) {
			a.data = vsize;
			a.tables = DIV_ROUND_UP(vsize, a.l2_span);
		}
		r->required = meta + a.tables * tbytes + a.data;
		r->fully_allocated = meta + DIV_ROUND_UP(vsize, a.l2_span) * tbytes + vsize;
		return 0;
	}
	img_err("measure: the %s format cannot be measured (raw, qcow2, qed can)", c->out_fmt);
	return -ENOTSUP;
err_walk:
	img_err("measure: reading %s: %s", c->file, strerror(-ret));
	return ret;
}

static int measure_body(void *arg)
{
	struct measure_ctx *c = arg;
	struct measure_result r = { 0 };
	struct tgt in = { 0 };
	bool opened = false;
	int ret;

	if (c->file) {
		if (tgt_open_file(&in, c->file, c->fmt, TGT_O_RDONLY | TGT_O_BUFFERED |
				  (c->force_share ? TGT_O_FORCE_SHARE : 0)))
			return CLI_EXIT_ERR;
		opened = true;
	}
	ret = measure_compute(c, opened ? &in : NULL, &r);
	if (opened && tgt_close(&in))
		ret = ret ?: -EIO;
	if (ret)
		return CLI_EXIT_ERR;
	if (c->json) {
		printf("{\n");
		if (r.has_bitmaps)
			printf("    \"bitmaps\": %" PRIu64 ",\n", r.bitmaps);
		printf("    \"required\": %" PRIu64 ",\n", r.required);
		printf("    \"fully-allocated\": %" PRIu64 "\n}\n", r.fully_allocated);
	} else {
		printf("required size: %" PRIu64 "\n", r.required);
		printf("fully allocated size: %" PRIu64 "\n", r.fully_allocated);
		if (r.has_bitmaps)
			printf("bitmaps size: %" PRIu64 "\n", r.bitmaps);
	}
	return CLI_EXIT_OK;
}

/* Splits a -o list into c->opts (in place). */
static int measure_add_opts(struct measure_ctx *c, char *list)
{
	char *save = NULL, *kv;

	for (kv = strtok_r(list, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		if (c->nr_opts == MEASURE_MAX_OPTS) {
			img_err("measure: too many -o options");
			return -EINVAL;
		}
		c->opts[c->nr_opts++] = kv;
	}
	return 0;
}

static int measure_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct measure_ctx *c = ctx;

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case 'O':
		c->out_fmt = arg;
		break;
	case 'o':
		return measure_add_opts(c, arg);
	case CLI_K_SIZE:
		if (parse_size(arg, &c->size_bytes)) {
			img_err("measure: bad size '%s'", arg);
			return -EINVAL;
		}
		c->has_size = true;
		break;
	case 'U':
		c->force_share = true;
		break;
	case CLI_K_OUTPUT:
		if (!strcmp(arg, "json")) {
			c->json = true;
		} else if (strcmp(arg, "human")) {
			img_err("measure: --output must be human or json");
			return -EINVAL;
		}
		break;
	}
	return 0;
}

int cli_cmd_measure(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct measure_ctx c = { .out_fmt = "raw" };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, measure_opt, &c, &a);

	if (!ret && (a.argc == 1) == c.has_size)
		ret = cli_usage_err(cmd, "give either --size SIZE or FILE");
	if (ret)
		return cli_parse_status(cmd, ret);
	if (a.argc == 1)
		c.file = a.argv[0];
	if (!tgt_find(c.out_fmt) || !tgt_is_format(tgt_find(c.out_fmt))) {
		img_err("measure: unknown format '%s'", c.out_fmt);
		return CLI_EXIT_ERR;
	}
	return cli_run(measure_body, &c);
}
