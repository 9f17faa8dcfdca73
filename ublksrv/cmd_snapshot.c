// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk snapshot`: list, create, apply and delete internal snapshots,
 * with qemu-img snapshot's options, table and exit codes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

struct snapshot_ctx {
	const char *file;
	const char *fmt;
	int op;				/* 'l', 'c', 'a', 'd' */
	const char *name;
	bool force_share;		/* -U: with -l only */
};

/* One row of qemu-img's snapshot table; @si NULL: the header row. */
static void snapshot_row(const struct tgt_snapshot_info *si)
{
	char date[32], clock[48], vm[32], icount[32] = "";
	uint64_t secs;
	struct tm tm;
	time_t ti;

	if (!si) {
		printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
		       "VM CLOCK", "ICOUNT");
		return;
	}
	ti = si->date_sec;
	localtime_r(&ti, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	secs = si->vm_clock_nsec / 1000000000ULL;
	snprintf(clock, sizeof(clock), "%02" PRIu64 ":%02u:%02u.%03u", secs / 3600,
		 (unsigned int)(secs / 60 % 60), (unsigned int)(secs % 60),
		 (unsigned int)(si->vm_clock_nsec / 1000000 % 1000));
	format_size(si->vm_state_bytes, vm, sizeof(vm));
	if (si->icount != UINT64_MAX)
		snprintf(icount, sizeof(icount), "%" PRIu64, si->icount);
	printf("%-9s %-16s %8s%20s%13s%11s\n", si->id, si->name, vm, date, clock, icount);
}

static int snapshot_body(void *arg)
{
	struct snapshot_ctx *c = arg;
	const struct tgt_snapshot_info *list;
	enum tgt_snapshot_op op;
	struct tgt t = { 0 };
	int n, i, ret;

	/* -U with a change is refused by the framework, as qemu-img does. */
	if (tgt_open_file(&t, c->file, c->fmt,
			  (c->op == 'l' ? TGT_O_RDONLY | TGT_O_BUFFERED : 0) |
			  (c->force_share ? TGT_O_FORCE_SHARE : 0)))
		return CLI_EXIT_ERR;
	if (c->op == 'l') {
		n = t.ops->snapshot_list ? t.ops->snapshot_list(&t, &list) : 0;
		if (n < 0)
			img_err("snapshot: %s: %s", c->file, strerror(-n));
		if (n > 0) {
			printf("Snapshot list:\n");
			snapshot_row(NULL);
			for (i = 0; i < n; i++)
				snapshot_row(&list[i]);
		}
		tgt_close(&t);
		return n < 0 ? CLI_EXIT_ERR : CLI_EXIT_OK;
	}
	if (!t.ops->snapshot) {
		img_err("snapshot: the %s format has no internal snapshots", t.ops->name);
		tgt_close(&t);
		return CLI_EXIT_ERR;
	}
	op = c->op == 'c' ? TGT_SNAPSHOT_CREATE :
	     c->op == 'a' ? TGT_SNAPSHOT_APPLY : TGT_SNAPSHOT_DELETE;
	ret = t.ops->snapshot(&t, op, c->name);
	if (ret)
		img_err("Could not %s snapshot '%s': %s",
			op == TGT_SNAPSHOT_CREATE ? "create" :
			op == TGT_SNAPSHOT_APPLY ? "apply" : "delete", c->name,
			ret == -ENOENT ? "snapshot not found" : strerror(-ret));
	if (tgt_close(&t) || ret)
		return CLI_EXIT_ERR;
	return CLI_EXIT_OK;
}

int cli_cmd_snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_SECRET_OPTIONS,
		{ "format", required_argument, NULL, 'f' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct snapshot_ctx c = { 0 };
	int opt;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":f:lc:a:d:qUh", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			c.fmt = optarg;
			break;
		case 'l':
		case 'c':
		case 'a':
		case 'd':
			if (c.op) {
				img_err("snapshot: give only one of -l, -c, -a, -d");
				return CLI_EXIT_USAGE;
			}
			c.op = opt;
			c.name = optarg;
			break;
		case 'q':
			/* qemu-img's quiet: nothing to do here. */
			break;
		case 'U':
			c.force_share = true;
			break;
		case CLI_OPT_KEY_FILE:
		case CLI_OPT_OBJECT:
			if (cli_secret_opt(opt, optarg))
				return CLI_EXIT_ERR;
			break;
		case 'h':
			puts(cli_find("snapshot")->usage);
			return CLI_EXIT_OK;
		default:
			img_err("snapshot: bad option '%s' (see imgblk snapshot --help)",
				argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		img_err("snapshot: give one FILE");
		return CLI_EXIT_USAGE;
	}
	if (!c.op)
		c.op = 'l';
	c.file = argv[optind];
	return cli_run(snapshot_body, &c);
}
