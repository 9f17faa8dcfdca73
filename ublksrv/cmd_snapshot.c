// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk snapshot`: list, create, apply and delete internal snapshots,
 * with qemu-img snapshot's options, table and exit codes.
 */
#include <errno.h>
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

void cli_snapshot_row(const struct tgt_snapshot_info *si)
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
			cli_snapshot_row(NULL);
			for (i = 0; i < n; i++)
				cli_snapshot_row(&list[i]);
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

static int snapshot_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct snapshot_ctx *c = ctx;

	switch (opt->key) {
	case CLI_K_KEY_FILE:
	case CLI_K_OBJECT:
		return cli_secret_opt(opt->key, arg);
	case CLI_K_ALLOW_PROTOCOL:
	case CLI_K_RECONNECT_DELAY:
	case CLI_K_OPEN_TIMEOUT:
	case CLI_K_RBD_CONF:
	case CLI_K_RBD_ID:
		return cli_protocol_opt(opt->key, arg);
	case 'f':
		c->fmt = arg;
		break;
	case 'l':
	case 'c':
	case 'a':
	case 'd':
		if (c->op) {
			img_err("snapshot: give only one of -l, -c, -a, -d");
			return -EINVAL;
		}
		c->op = opt->key;
		c->name = arg;
		break;
	case 'U':
		c->force_share = true;
		break;
	}
	/* -q: qemu-img's quiet; nothing to do here. */
	return 0;
}

int cli_cmd_snapshot(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct snapshot_ctx c = { 0 };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, snapshot_opt, &c, &a);

	if (ret)
		return cli_parse_status(cmd, ret);
	if (!c.op)
		c.op = 'l';
	c.file = a.argv[0];
	return cli_run(snapshot_body, &c);
}
