// SPDX-License-Identifier: GPL-2.0
/*
 * Image verbs with qemu-img's options, output and exit codes: create,
 * info, check, map.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bfile.h"
#include "cli.h"
#include "exec.h"
#include "json.h"
#include "tgt.h"
#include "util.h"

/* qemu-img check's exit codes. */
#define CHECK_EXIT_CLEAN	0
#define CHECK_EXIT_ERROR	1
#define CHECK_EXIT_CORRUPT	2
#define CHECK_EXIT_LEAKS	3
#define CHECK_EXIT_UNSUPPORTED	63

#define MAX_CREATE_OPTS		32

/* ---- create ---- */

struct create_ctx {
	const char *fmt;
	struct tgt_create_opts o;
	char *opts[MAX_CREATE_OPTS];
	bool size_given;
	bool quiet;
};

/* Splits a -o list ("a=1,b=2") into @c->opts; the generic keys are ours. */
static int create_add_options(struct create_ctx *c, char *list)
{
	char *save, *kv;

	for (kv = strtok_r(list, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		if (!strncmp(kv, "backing_file=", 13)) {
			c->o.backing_file = kv + 13;
		} else if (!strncmp(kv, "backing_fmt=", 12)) {
			c->o.backing_fmt = kv + 12;
		} else if (!strncmp(kv, "size=", 5)) {
			if (parse_size(kv + 5, &c->o.size_bytes)) {
				img_err("create: bad size '%s'", kv + 5);
				return -EINVAL;
			}
			c->size_given = true;
		} else if (!strchr(kv, '=')) {
			img_err("create: option '%s' needs a value (KEY=VALUE)", kv);
			return -EINVAL;
		} else {
			if (c->o.nr_options == MAX_CREATE_OPTS) {
				img_err("create: too many -o options");
				return -EINVAL;
			}
			c->opts[c->o.nr_options++] = kv;
		}
	}
	return 0;
}

static int create_body(void *arg)
{
	struct create_ctx *c = arg;
	const struct tgt_ops *ops = tgt_find(c->fmt);

	if (!ops || !tgt_is_format(ops) || !ops->create) {
		img_err("create: unknown or unsupported format '%s'", c->fmt);
		return CLI_EXIT_ERR;
	}
	/* The formats create through a local descriptor: never a file named "nbd:..." */
	if (bfile_name_remote(c->o.file)) {
		img_err("create: %s: images are created on local paths only; use qemu-img create "
			"for NBD or RBD", c->o.file);
		return CLI_EXIT_ERR;
	}
	/* No size: the backing file's, as qemu-img does. */
	if (!c->size_given && c->o.backing_file) {
		struct tgt b = { 0 };
		char path[PATH_MAX];

		tgt_resolve_path(c->o.file, c->o.backing_file, path, sizeof(path));
		/*
		 * Only its size is read: like qemu-img create, take no lock,
		 * so a base that another process writes can still get overlays.
		 */
		if (tgt_open_file(&b, path, c->o.backing_fmt, TGT_O_RDONLY | TGT_O_BUFFERED |
				  TGT_O_NO_IO | TGT_O_FORCE_SHARE))
			return CLI_EXIT_ERR;
		c->o.size_bytes = b.caps.size_bytes;
		tgt_close(&b);
	} else if (!c->size_given) {
		img_err("create: give a SIZE (or a backing file to take it from)");
		return CLI_EXIT_ERR;
	}
	if (!c->quiet) {
		printf("Formatting '%s', fmt=%s size=%llu\n", c->o.file, ops->name,
		       (unsigned long long)c->o.size_bytes);
	}
	return ops->create(&c->o) ? CLI_EXIT_ERR : CLI_EXIT_OK;
}

static int create_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct create_ctx *c = ctx;

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case 'b':
		c->o.backing_file = arg;
		break;
	case 'F':
		c->o.backing_fmt = arg;
		break;
	case 'o':
		return create_add_options(c, arg);
	case 'u':
		/* Unsafe: qemu-img's flag to not open the backing file; we only read its size. */
		break;
	case 'q':
		c->quiet = true;
		break;
	}
	return 0;
}

int cli_cmd_create(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct create_ctx c = { .fmt = "raw" };
	struct cli_args a;
	int ret;

	c.o.options = c.opts;
	ret = cli_parse(cmd, argc, argv, create_opt, &c, &a);
	if (ret)
		return cli_parse_status(cmd, ret);
	c.o.file = a.argv[0];
	if (a.argc == 2) {
		if (parse_size(a.argv[1], &c.o.size_bytes)) {
			img_err("create: bad size '%s'", a.argv[1]);
			return CLI_EXIT_ERR;
		}
		c.size_given = true;
	}
	return cli_run(create_body, &c);
}

/* ---- info ---- */

struct info_ctx {
	const char *file;
	const char *fmt;
	bool json;
	bool chain;
	bool force_share;
};

/* qemu-img's text for a list in the format-specific data: "bitmaps". */
static void info_list_text(struct tgt *t, const char *key)
{
	const struct tgt_bitmap_info *bm;
	int n, i, f;

	if (strcmp(key, "bitmaps") || !t->ops->bitmap_list)
		return;
	n = t->ops->bitmap_list(t, &bm);
	printf("    bitmaps:\n");
	for (i = 0; i < n; i++) {
		printf("        [%d]:\n            flags:\n", i);
		f = 0;
		if (bm[i].in_use)
			printf("                [%d]: in-use\n", f++);
		if (bm[i].enabled)
			printf("                [%d]: auto\n", f++);
		printf("            name: %s\n            granularity: %llu\n", bm[i].name,
		       (unsigned long long)bm[i].granularity_bytes);
	}
}

/* The same in JSON: qemu-img's "bitmaps" array (name, granularity, flags). */
static void info_list_json(struct tgt *t, const char *key)
{
	const struct tgt_bitmap_info *bm;
	int n, i;

	if (strcmp(key, "bitmaps") || !t->ops->bitmap_list) {
		printf("[]");
		return;
	}
	n = t->ops->bitmap_list(t, &bm);
	printf("[");
	for (i = 0; i < n; i++) {
		printf("%s\n                {\n                    \"flags\": [", i ? "," : "");
		if (bm[i].in_use)
			printf("\n                        \"in-use\"%s", bm[i].enabled ? "," : "");
		if (bm[i].enabled)
			printf("\n                        \"auto\"");
		printf("\n                    ],\n                    \"name\": ");
		json_put_string(stdout, bm[i].name);
		printf(",\n                    \"granularity\": %llu\n                }",
		       (unsigned long long)bm[i].granularity_bytes);
	}
	printf("\n            ]");
}

/* qemu-img info's "snapshots" array, its members named as there. */
static void info_snapshots_json(int n, const struct tgt_snapshot_info *sn)
{
	int i;

	printf("\n    \"snapshots\": [");
	for (i = 0; i < n; i++) {
		printf("%s\n        {\n", i ? "," : "");
		if (sn[i].icount != UINT64_MAX)
			printf("            \"icount\": %llu,\n", (unsigned long long)sn[i].icount);
		printf("            \"vm-clock-nsec\": %llu,\n            \"name\": ",
		       (unsigned long long)(sn[i].vm_clock_nsec % 1000000000ULL));
		json_put_string(stdout, sn[i].name);
		printf(",\n            \"date-sec\": %u,\n            \"date-nsec\": %u,\n"
		       "            \"vm-clock-sec\": %llu,\n            \"id\": ",
		       sn[i].date_sec, sn[i].date_nsec,
		       (unsigned long long)(sn[i].vm_clock_nsec / 1000000000ULL));
		json_put_string(stdout, sn[i].id);
		printf(",\n            \"vm-state-size\": %llu\n        }",
		       (unsigned long long)sn[i].vm_state_bytes);
	}
	printf("\n    ],");
}

/* Prints a nested block's lines under its key, 8 columns in, as qemu-img. */
static void info_print_block(const char *text)
{
	printf(":\n");
	while (*text) {
		size_t n = strcspn(text, "\n");

		printf("        %.*s\n", (int)n, text);
		text += n + (text[n] == '\n');
	}
}

static void info_one(struct tgt *t, bool json, bool first)
{
	const struct tgt_snapshot_info *snaps = NULL;
	int nr_snaps = 0;
	struct tgt_info info = { 0 };
	struct stat st;
	uint64_t disk = 0;
	char vs[32], ds[32];
	unsigned int i;

	if (t->ops->info)
		t->ops->info(t, &info);
	if (t->ops->snapshot_list)
		nr_snaps = MAX(t->ops->snapshot_list(t, &snaps), 0);
	if (stat(t->cfg.file, &st) == 0)
		disk = (uint64_t)st.st_blocks * 512;
	format_size(t->caps.size_bytes, vs, sizeof(vs));
	format_size(disk, ds, sizeof(ds));

	if (!json) {
		if (!first)
			printf("\n");
		printf("image: %s\nfile format: %s\nvirtual size: %s (%llu bytes)\ndisk size: %s\n",
		       t->cfg.file, t->ops->name, vs, (unsigned long long)t->caps.size_bytes, ds);
		if (info.encrypted)
			printf("encrypted: yes\n");
		if (info.cluster_size)
			printf("cluster_size: %llu\n", (unsigned long long)info.cluster_size);
		if (info.dirty)
			printf("cleanly shut down: no\n");
		if (info.backing_file) {
			printf("backing file: %s", info.backing_file);
			if (t->backing && strcmp(t->backing->cfg.file, info.backing_file))
				printf(" (actual path: %s)", t->backing->cfg.file);
			printf("\n");
		}
		if (info.backing_fmt)
			printf("backing file format: %s\n", info.backing_fmt);
		if (nr_snaps) {
			printf("Snapshot list:\n");
			cli_snapshot_row(NULL);
			for (i = 0; i < (unsigned int)nr_snaps; i++)
				cli_snapshot_row(&snaps[i]);
		}
		if (info.n) {
			printf("Format specific information:\n");
			for (i = 0; i < info.n; i++) {
				const char *k;

				if (info.kv[i].is_list) {
					info_list_text(t, info.kv[i].key);
					continue;
				}
				/* qemu-img's text spells "lazy-refcounts" as "lazy refcounts". */
				printf("    ");
				for (k = info.kv[i].key; *k; k++)
					putchar(*k == '-' ? ' ' : *k);
				if (info.kv[i].block_text) {
					info_print_block(info.kv[i].block_text);
					continue;
				}
				printf(": %s\n", info.kv[i].value);
			}
		}
		return;
	}
	printf("%s{", first ? "" : ",\n");
	if (nr_snaps)
		info_snapshots_json(nr_snaps, snaps);
	printf("\n    \"virtual-size\": %llu,\n    \"filename\": ",
	       (unsigned long long)t->caps.size_bytes);
	json_put_string(stdout, t->cfg.file);
	printf(",\n    \"format\": \"%s\",\n    \"actual-size\": %llu", t->ops->name,
	       (unsigned long long)disk);
	if (info.cluster_size)
		printf(",\n    \"cluster-size\": %llu", (unsigned long long)info.cluster_size);
	if (info.backing_file) {
		printf(",\n    \"backing-filename\": ");
		json_put_string(stdout, info.backing_file);
		if (t->backing) {
			printf(",\n    \"full-backing-filename\": ");
			json_put_string(stdout, t->backing->cfg.file);
		}
	}
	if (info.backing_fmt) {
		printf(",\n    \"backing-filename-format\": ");
		json_put_string(stdout, info.backing_fmt);
	}
	if (info.n) {
		printf(",\n    \"format-specific\": {\n        \"type\": \"%s\",\n        \"data\": {",
		       t->ops->name);
		for (i = 0; i < info.n; i++) {
			printf("%s\n            ", i ? "," : "");
			json_put_string(stdout, info.kv[i].key);
			printf(": ");
			if (info.kv[i].is_list)
				info_list_json(t, info.kv[i].key);
			else if (info.kv[i].block_json)
				printf("%s", info.kv[i].block_json);
			else if (info.kv[i].is_string)
				json_put_string(stdout, info.kv[i].value);
			else
				printf("%s", info.kv[i].value);
		}
		printf("\n        }\n    }");
	}
	if (info.encrypted)
		printf(",\n    \"encrypted\": true");
	printf(",\n    \"dirty-flag\": %s\n}", info.dirty ? "true" : "false");
}

static int info_body(void *arg)
{
	struct info_ctx *c = arg;
	struct tgt t = { 0 }, *l;

	/* Metadata only, as qemu-img info: it may describe an image in use. */
	if (tgt_open_file(&t, c->file, c->fmt, TGT_O_RDONLY | TGT_O_BUFFERED | TGT_O_CHECK |
			  TGT_O_NO_IO | (c->force_share ? TGT_O_FORCE_SHARE : 0)))
		return CLI_EXIT_ERR;
	if (c->json && c->chain)
		printf("[");
	for (l = &t; l; l = c->chain ? l->backing : NULL)
		info_one(l, c->json, l == &t);
	if (c->json)
		printf("%s\n", c->chain ? "]" : "");
	tgt_close(&t);
	return CLI_EXIT_OK;
}

/* Parses --output=human|json.  Returns 0 or -EINVAL after printing why. */
static int cli_output_json(const char *cmd, const char *arg, bool *json)
{
	if (!strcmp(arg, "json"))
		*json = true;
	else if (!strcmp(arg, "human"))
		*json = false;
	else {
		img_err("%s: --output must be human or json, not '%s'", cmd, arg);
		return -EINVAL;
	}
	return 0;
}

static int info_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct info_ctx *c = ctx;

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case 'U':
		c->force_share = true;
		break;
	case CLI_K_OUTPUT:
		return cli_output_json("info", arg, &c->json);
	case CLI_K_BACKING_CHAIN:
		c->chain = true;
		break;
	}
	return 0;
}

int cli_cmd_info(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct info_ctx c = { 0 };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, info_opt, &c, &a);

	if (ret)
		return cli_parse_status(cmd, ret);
	c.file = a.argv[0];
	return cli_run(info_body, &c);
}

/* ---- check ---- */

struct check_ctx {
	const char *file;
	const char *fmt;
	unsigned int fix;
	bool json;
	bool quiet;
	bool force_share;
};

static void check_print(const struct check_ctx *c, const struct tgt *t,
			const struct tgt_check_result *r)
{
	if (c->json) {
		printf("{\n    \"image-end-offset\": %llu,\n    \"total-clusters\": %llu,\n"
		       "    \"check-errors\": %llu,\n",
		       (unsigned long long)r->image_end_offset,
		       (unsigned long long)r->total_clusters,
		       (unsigned long long)r->check_errors);
		if (r->leaks)
			printf("    \"leaks\": %llu,\n", (unsigned long long)r->leaks);
		if (r->corruptions)
			printf("    \"corruptions\": %llu,\n", (unsigned long long)r->corruptions);
		if (r->leaks_fixed)
			printf("    \"leaks-fixed\": %llu,\n", (unsigned long long)r->leaks_fixed);
		if (r->corruptions_fixed)
			printf("    \"corruptions-fixed\": %llu,\n",
			       (unsigned long long)r->corruptions_fixed);
		printf("    \"allocated-clusters\": %llu,\n    \"filename\": ",
		       (unsigned long long)r->allocated_clusters);
		json_put_string(stdout, c->file);
		printf(",\n    \"format\": \"%s\",\n    \"fragmented-clusters\": %llu,\n"
		       "    \"compressed-clusters\": %llu\n}\n", t->ops->name,
		       (unsigned long long)r->fragmented_clusters,
		       (unsigned long long)r->compressed_clusters);
		return;
	}
	if (c->quiet)
		return;
	if (!r->corruptions && !r->leaks && !r->check_errors)
		printf("No errors were found on the image.\n");
	if (r->corruptions)
		printf("\n%llu errors were found on the image.\n"
		       "Data may be corrupted, or further writes to the image may corrupt it.\n",
		       (unsigned long long)r->corruptions);
	if (r->leaks)
		printf("\n%llu leaked clusters were found on the image.\n"
		       "This means waste of disk space, but no harm to data.\n",
		       (unsigned long long)r->leaks);
	if (r->check_errors)
		printf("\n%llu internal errors have occurred during the check.\n",
		       (unsigned long long)r->check_errors);
	if (r->total_clusters)
		printf("%llu/%llu = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\n",
		       (unsigned long long)r->allocated_clusters,
		       (unsigned long long)r->total_clusters,
		       r->allocated_clusters * 100.0 / r->total_clusters,
		       r->allocated_clusters ? r->fragmented_clusters * 100.0 / r->allocated_clusters : 0,
		       r->allocated_clusters ? r->compressed_clusters * 100.0 / r->allocated_clusters : 0);
	if (r->image_end_offset)
		printf("Image end offset: %llu\n", (unsigned long long)r->image_end_offset);
}

static int check_body(void *arg)
{
	struct check_ctx *c = arg;
	struct tgt_check_result r = { 0 };
	unsigned int flags = TGT_O_CHECK | (c->fix ? 0 : TGT_O_RDONLY) |
			     (c->force_share ? TGT_O_FORCE_SHARE : 0);
	struct tgt t = { 0 };
	int ret, status;

	if (tgt_open_file(&t, c->file, c->fmt, flags))
		return CHECK_EXIT_ERROR;
	if (!t.ops->check) {
		img_err("check: the %s format does not support checks", t.ops->name);
		tgt_close(&t);
		return CHECK_EXIT_UNSUPPORTED;
	}
	ret = t.ops->check(&t, c->fix, &r);
	if (!ret && c->fix && (r.leaks_fixed || r.corruptions_fixed)) {
		/* Like qemu-img: report the repair, then judge the image afresh. */
		if (!c->json && !c->quiet)
			printf("The following inconsistencies were found and repaired:\n\n"
			       "    %llu leaked clusters\n    %llu corruptions\n\n"
			       "Double checking the fixed image now...\n",
			       (unsigned long long)r.leaks_fixed,
			       (unsigned long long)r.corruptions_fixed);
		memset(&r, 0, sizeof(r));
		ret = t.ops->check(&t, 0, &r);
	}
	if (ret) {
		img_err("check: %s: %s", c->file, strerror(-ret));
		tgt_close(&t);
		return CHECK_EXIT_ERROR;
	}
	check_print(c, &t, &r);
	if (tgt_close(&t))
		return CHECK_EXIT_ERROR;
	if (r.check_errors)
		status = CHECK_EXIT_ERROR;
	else if (r.corruptions)
		status = CHECK_EXIT_CORRUPT;
	else if (r.leaks)
		status = CHECK_EXIT_LEAKS;
	else
		status = CHECK_EXIT_CLEAN;
	return status;
}

static int check_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct check_ctx *c = ctx;

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case 'r':
		if (!strcmp(arg, "leaks")) {
			c->fix = TGT_FIX_LEAKS;
		} else if (!strcmp(arg, "all")) {
			c->fix = TGT_FIX_LEAKS | TGT_FIX_ERRORS;
		} else {
			img_err("check: -r must be leaks or all, not '%s'", arg);
			return -EINVAL;
		}
		break;
	case CLI_K_OUTPUT:
		return cli_output_json("check", arg, &c->json);
	case 'q':
		c->quiet = true;
		break;
	case 'U':
		c->force_share = true;
		break;
	}
	return 0;
}

int cli_cmd_check(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct check_ctx c = { 0 };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, check_opt, &c, &a);

	/* A usage error is 1, as in qemu-img: 2 and 3 describe the image. */
	if (ret)
		return cli_parse_status(cmd, ret);
	c.file = a.argv[0];
	return cli_run(check_body, &c);
}

/* ---- map ---- */

struct map_ctx {
	const char *file;
	const char *fmt;
	const char *bitmap;		/* --bitmap: its extents, not the data's */
	bool json;
	bool force_share;
};

/*
 * map --bitmap NAME: the guest runs bitmap NAME marks dirty, in qemu-img
 * map's shape.  JSON lists every run, {"start", "length", "dirty"},
 * adjacent runs of one state merged; the human form lists the dirty
 * ones only (Offset, Length).  Returns the exit status.
 */
static int map_bitmap(const struct map_ctx *c, struct tgt *t)
{
	uint64_t off = 0, start = 0, size = t->caps.size_bytes;
	bool first = true, cur = false, have = false;

	if (!t->ops->bitmap_status) {
		img_err("map: the %s format has no persistent bitmaps", t->ops->name);
		return CLI_EXIT_ERR;
	}
	if (!c->json)
		printf("%-15s %s\n", "Offset", "Length");
	while (off <= size) {
		bool dirty = false;
		int64_t n = 0;

		if (off < size) {
			n = t->ops->bitmap_status(t, c->bitmap, off, size - off, &dirty);
			if (n <= 0) {
				img_err("map: %s: bitmap '%s': %s", c->file, c->bitmap,
					strerror(n ? -n : EIO));
				return CLI_EXIT_ERR;
			}
		}
		if (have && (off == size || dirty != cur)) {
			if (c->json)
				printf("%s{ \"start\": %llu, \"length\": %llu, \"dirty\": %s}",
				       first ? "[" : ",\n", (unsigned long long)start,
				       (unsigned long long)(off - start), cur ? "true" : "false");
			else if (cur)
				printf("%#-15llx %#llx\n", (unsigned long long)start,
				       (unsigned long long)(off - start));
			first = false;
			start = off;
		}
		have = true;
		cur = dirty;
		if (off == size)
			break;
		off += n;
	}
	if (c->json)
		printf("%s]\n", first ? "[" : "");
	return CLI_EXIT_OK;
}

struct map_entry {
	uint64_t start, length, offset;
	unsigned int depth, flags;
	bool present;
	const char *filename;
};

static void map_print(const struct map_ctx *c, const struct map_entry *e, bool first)
{
	bool data = e->flags & TGT_EXT_DATA, zero = e->flags & TGT_EXT_ZERO;

	if (c->json) {
		printf("%s{ \"start\": %llu, \"length\": %llu, \"depth\": %u, \"present\": %s, \"zero\": %s, \"data\": %s",
		       first ? "[" : ",\n", (unsigned long long)e->start,
		       (unsigned long long)e->length, e->depth,
		       e->present ? "true" : "false", zero ? "true" : "false",
		       data ? "true" : "false");
		if (e->flags & TGT_EXT_OFFSET_VALID)
			printf(", \"offset\": %llu", (unsigned long long)e->offset);
		printf("}");
		return;
	}
	/* The human format lists only what has data at a known place. */
	if (data && (e->flags & TGT_EXT_OFFSET_VALID))
		printf("%#-15llx %#-15llx %#-15llx %s\n", (unsigned long long)e->start,
		       (unsigned long long)e->length, (unsigned long long)e->offset,
		       e->filename);
}

/* Adjacent runs merge when nothing but their length differs. */
static bool map_mergeable(const struct map_entry *a, const struct map_entry *b)
{
	if (a->flags != b->flags || a->depth != b->depth || a->present != b->present ||
	    a->filename != b->filename)
		return false;
	return !(a->flags & TGT_EXT_OFFSET_VALID) || a->offset + a->length == b->offset;
}

static int map_body(void *arg)
{
	struct map_ctx *c = arg;
	struct tgt t = { 0 };
	struct map_entry cur = { 0 };
	bool have = false, first = true;
	uint64_t off = 0;
	int status = CLI_EXIT_OK;

	if (tgt_open_file(&t, c->file, c->fmt, TGT_O_RDONLY | TGT_O_BUFFERED |
			  (c->force_share ? TGT_O_FORCE_SHARE : 0)))
		return CLI_EXIT_ERR;
	if (c->bitmap) {
		status = map_bitmap(c, &t);
		tgt_close(&t);
		return status;
	}
	if (!c->json)
		printf("%-15s %-15s %-15s %s\n", "Offset", "Length", "Mapped to", "File");
	while (off < t.caps.size_bytes) {
		struct tgt_extent ext;
		struct map_entry e;
		struct tgt *layer;
		unsigned int depth;
		int64_t n = tgt_chain_status(&t, off, t.caps.size_bytes - off, &ext,
					     &depth, &layer);

		if (n <= 0) {
			img_err("map: %s: %s", c->file, strerror(n ? -n : EIO));
			status = CLI_EXIT_ERR;
			break;
		}
		e = (struct map_entry){
			.start = off, .length = n, .offset = ext.host_off,
			.depth = depth, .flags = ext.flags & ~TGT_EXT_ALLOCATED,
			.present = layer != NULL,
			.filename = layer ? layer->cfg.file : NULL,
		};
		if (have && map_mergeable(&cur, &e)) {
			cur.length += e.length;
		} else {
			if (have) {
				map_print(c, &cur, first);
				first = false;
			}
			cur = e;
			have = true;
		}
		off += n;
	}
	if (have && !status)
		map_print(c, &cur, first);
	if (c->json)
		printf("%s]\n", have ? "" : "[");
	tgt_close(&t);
	return status;
}

static int map_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct map_ctx *c = ctx;

	switch (opt->key) {
	case 'f':
		c->fmt = arg;
		break;
	case 'U':
		c->force_share = true;
		break;
	case CLI_K_OUTPUT:
		return cli_output_json("map", arg, &c->json);
	case CLI_K_BITMAP:
		c->bitmap = arg;
		break;
	}
	return 0;
}

int cli_cmd_map(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct map_ctx c = { 0 };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, map_opt, &c, &a);

	if (ret)
		return cli_parse_status(cmd, ret);
	c.file = a.argv[0];
	return cli_run(map_body, &c);
}
