// SPDX-License-Identifier: GPL-2.0
/*
 * The device commands: add (and add --tab, the devices of imgblktab),
 * del, list, recover, and the udev helpers udev-chown and udev-name.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "disk.h"
#include "json.h"
#include "secret.h"
#include "state.h"
#include "tab.h"
#include "ublk.h"
#include "util.h"

static int cli_number(const char *cmd, const char *what, const char *s,
		      uint64_t min, uint64_t max, uint64_t *out)
{
	if (parse_uint(s, min, max, out) == 0)
		return 0;
	img_err("%s: %s must be a number from %llu to %llu, not '%s'", cmd, what,
		(unsigned long long)min, (unsigned long long)max, s);
	return -EINVAL;
}

/* An option as it was given, for add --tab to give again. */
struct add_given {
	const struct cli_opt *opt;
	char *arg;
};

/* The options add --tab gives again over each entry's; more is a usage error. */
#define ADD_MAX_GIVEN	64

/* What add's options fill in beside struct ublk_add_opts. */
struct add_parse {
	struct ublk_add_opts *o;
	const char *type;
	const char *size;
	unsigned int given;	/* TGT_OPT_*: for the target to accept */
	bool tab;		/* --tab: the devices are imgblktab's */
	/* Every option, in order (the first ADD_MAX_GIVEN), and their count. */
	struct add_given opts[ADD_MAX_GIVEN];
	unsigned int nr_opts;
};

static int add_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct add_parse *p = ctx;
	struct ublk_add_opts *o = p->o;
	char name[64];
	uint64_t v;

	if (p->nr_opts < ADD_MAX_GIVEN)
		p->opts[p->nr_opts] = (struct add_given){ opt, arg };
	p->nr_opts++;
	switch (opt->key) {
	case 't':
		p->type = arg;
		break;
	case 'f':
		o->cfg.file = arg;
		break;
	case 'n':
		if (cli_number("add", "the device id (-n)", arg, 0, UBLK_MAX_DEV_ID, &v))
			return -EINVAL;
		o->dev_id = v;
		break;
	case 'q':
		if (cli_number("add", "the number of queues (-q)", arg, 1, UBLK_MAX_QUEUES, &v))
			return -EINVAL;
		o->nr_queues = v;
		break;
	case 'd':
		if (cli_number("add", "the queue depth (-d)", arg, 1, UBLK_MAX_QUEUE_DEPTH, &v))
			return -EINVAL;
		o->depth = v;
		break;
	case 'r':
		o->cfg.open_flags |= TGT_O_RDONLY;
		break;
	case CLI_K_BUFFERED:
		o->cfg.open_flags |= TGT_O_BUFFERED;
		p->given |= TGT_OPT_BUFFERED;
		break;
	case CLI_K_SIZE:
		p->size = arg;
		p->given |= TGT_OPT_SIZE;
		break;
	case CLI_K_FOREGROUND:
		o->foreground = true;
		break;
	case CLI_K_RECOVERABLE:
		o->recoverable = true;
		break;
	case CLI_K_DISCARD:
		if (!strcmp(arg, "ignore")) {
			o->feat.blk.discard_ignore = true;
		} else if (!strcmp(arg, "unmap")) {
			o->feat.blk.discard_ignore = false;
		} else {
			img_err("add: --discard must be ignore or unmap, not '%s'", arg);
			return -EINVAL;
		}
		break;
	case CLI_K_COR:
		o->feat.blk.copy_on_read = true;
		break;
	case CLI_K_BURST:
		if (cli_number("add", "--throttle-burst-ms", arg, 1, 60000, &v))
			return -EINVAL;
		o->feat.blk.throttle.burst_ms = v;
		break;
	case CLI_K_THROTTLE + THR_BPS_TOTAL:
	case CLI_K_THROTTLE + THR_BPS_READ:
	case CLI_K_THROTTLE + THR_BPS_WRITE:
		if (parse_size(arg, &v) || !v) {
			img_err("add: %s needs a non-zero number of bytes per second, not '%s'",
				cli_opt_name(opt, name, sizeof(name)), arg);
			return -EINVAL;
		}
		o->feat.blk.throttle.rate[opt->key - CLI_K_THROTTLE] = v;
		break;
	case CLI_K_THROTTLE + THR_IOPS_TOTAL:
	case CLI_K_THROTTLE + THR_IOPS_READ:
	case CLI_K_THROTTLE + THR_IOPS_WRITE:
		if (cli_number("add", "an iops limit", arg, 1, UINT32_MAX, &v))
			return -EINVAL;
		o->feat.blk.throttle.rate[opt->key - CLI_K_THROTTLE] = v;
		break;
	case CLI_K_SNAPSHOT:
		o->cfg.snapshot = arg;
		break;
	case CLI_K_PINNED:
		if (parse_size(arg, &o->feat.pinned_bytes) ||
		    o->feat.pinned_bytes > UBLK_MAX_PINNED_BYTES) {
			img_err("add: --pinned-buffers must be a size from 0 to 1G, not '%s'", arg);
			return -EINVAL;
		}
		break;
	case CLI_K_WERROR:
		if (blk_err_action_parse(arg, &o->feat.blk.werror)) {
			img_err("add: --werror must be enospc, stop, report or ignore, not '%s'",
				arg);
			return -EINVAL;
		}
		break;
	case CLI_K_RERROR:
		if (blk_err_action_parse(arg, &o->feat.blk.rerror) ||
		    o->feat.blk.rerror == BLK_ERR_ENOSPC) {
			img_err("add: --rerror must be stop, report or ignore, not '%s'", arg);
			return -EINVAL;
		}
		break;
	case CLI_K_L2_CACHE:
		if (parse_size(arg, &o->cfg.l2_cache_bytes) || !o->cfg.l2_cache_bytes) {
			img_err("add: bad --l2-cache-size '%s'", arg);
			return -EINVAL;
		}
		break;
	case CLI_K_LOG_LEVEL:
		if (img_log_parse_level(arg, &o->log_level)) {
			img_err("add: --log-level must be err, warning, info or debug, not '%s'",
				arg);
			return -EINVAL;
		}
		break;
	case CLI_K_NAME:
		if (!ublk_name_valid(arg)) {
			img_err("add: --name must be 1 to %d letters, digits, '.', '_' or '-', not '%s'",
				UBLK_NAME_MAX, arg);
			return -EINVAL;
		}
		o->name = arg;
		break;
	case CLI_K_TAB:
		p->tab = true;
		break;
	case CLI_K_BACKING:
		if (!strcmp(arg, "any")) {
			o->cfg.backing_policy = TGT_BACKING_ANY;
		} else if (!strcmp(arg, "same-dir")) {
			o->cfg.backing_policy = TGT_BACKING_SAME_DIR;
		} else if (!strcmp(arg, "none")) {
			o->cfg.backing_policy = TGT_BACKING_NONE;
		} else {
			img_err("add: --backing must be any, same-dir or none, not '%s'", arg);
			return -EINVAL;
		}
		break;
	}
	return 0;
}

/* add's defaults, into @p and @o, before the options. */
static void add_defaults(struct add_parse *p, struct ublk_add_opts *o)
{
	memset(p, 0, sizeof(*p));
	p->o = o;
	memset(o, 0, sizeof(*o));
	o->dev_id = -1;
	o->nr_queues = UBLK_DEF_QUEUES;
	o->depth = UBLK_DEF_DEPTH;
	o->feat.pinned_bytes = UBLK_DEF_PINNED_BYTES;
	/* QEMU's defaults: hold writes while the host is out of space. */
	o->feat.blk.werror = BLK_ERR_ENOSPC;
	o->feat.blk.rerror = BLK_ERR_REPORT;
}

/*
 * The checks of one device's options once all are in (@a the operands:
 * none without --tab), and its target.  Returns 0 or -EINVAL (printed).
 */
static int add_finish(const struct cli_cmd *cmd, struct add_parse *p,
		      const struct cli_args *a)
{
	struct ublk_add_opts *o = p->o;

	if (a->argc)
		return cli_usage_err(cmd, "unexpected argument '%s'", a->argv[0]);
	if (!p->type && !o->cfg.file)
		return cli_usage_err(cmd, "give -t TYPE, or -f FILE to detect its format");
	if (p->type) {
		o->ops = tgt_find(p->type);
		if (!o->ops) {
			img_err("add: unknown target '%s' (see imgblk help for the targets)",
				p->type);
			return -EINVAL;
		}
	} else {
		/* No -t: the image's own magic decides, raw when it has none. */
		o->ops = tgt_probe_file(o->cfg.file);
		if (!o->ops)
			return -EINVAL;
	}
	if (o->cfg.file)
		p->given |= TGT_OPT_FILE;
	if (p->given & ~o->ops->options) {
		img_err("add: target %s does not take %s", o->ops->name,
			(p->given & ~o->ops->options & TGT_OPT_FILE) ? "-f FILE" :
			(p->given & ~o->ops->options & TGT_OPT_SIZE) ? "--size" :
			"--buffered");
		return -EINVAL;
	}
	if ((o->ops->options & TGT_OPT_FILE) && !o->cfg.file) {
		img_err("add: target %s needs -f FILE", o->ops->name);
		return -EINVAL;
	}
	if (o->cfg.file && strchr(o->cfg.file, '\n')) {
		img_err("add: file names with a newline are not supported");
		return -EINVAL;
	}
	if (o->ops->options & TGT_OPT_SIZE) {
		if (!p->size) {
			img_err("add: target %s needs --size SIZE", o->ops->name);
			return -EINVAL;
		}
		if (parse_size(p->size, &o->cfg.size_bytes) || !o->cfg.size_bytes ||
		    o->cfg.size_bytes % 512) {
			img_err("add: --size must be a non-zero multiple of 512 bytes, not '%s'",
				p->size);
			return -EINVAL;
		}
	}
	return 0;
}

int cli_parse_add(int argc, char **argv, struct ublk_add_opts *o)
{
	const struct cli_cmd *cmd = cli_find("add");
	struct add_parse p;
	struct cli_args a;
	int ret;

	add_defaults(&p, o);
	ret = cli_parse(cmd, argc, argv, add_opt, &p, &a);
	if (ret)
		return ret;
	/* Here from the command line (cli_cmd_add() keeps it) or an entry. */
	if (p.tab)
		return cli_usage_err(cmd, "--tab is not an option of an imgblktab entry");
	return add_finish(cmd, &p, &a);
}

/* What del's and list's options fill in. */
struct dev_parse {
	const char *verb;
	bool have_id;
	unsigned int id;
	bool all;
	bool json;
	bool foreground;
	bool force;
	bool tab;
};

static int dev_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct dev_parse *p = ctx;
	uint64_t v;

	switch (opt->key) {
	case 'n':
		if (cli_number(p->verb, "the device id (-n)", arg, 0, UBLK_MAX_DEV_ID, &v))
			return -EINVAL;
		p->id = v;
		p->have_id = true;
		break;
	case 'a':
		p->all = true;
		break;
	case CLI_K_JSON:
		p->json = true;
		break;
	case CLI_K_FOREGROUND:
		p->foreground = true;
		break;
	case CLI_K_FORCE:
		p->force = true;
		break;
	case CLI_K_TAB:
		p->tab = true;
		break;
	}
	return 0;
}

int cli_parse_del(int argc, char **argv, struct cli_del_opts *o)
{
	const struct cli_cmd *cmd = cli_find("del");
	struct dev_parse p = { .verb = "del" };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, dev_opt, &p, &a);

	if (ret)
		return ret;
	if (p.tab && (p.have_id || p.all))
		return cli_usage_err(cmd, "--tab takes the devices from imgblktab: no -n or -a");
	if (!p.tab && a.argc)
		return cli_usage_err(cmd, "unexpected argument '%s'", a.argv[0]);
	if (!p.tab && p.have_id == p.all)
		return cli_usage_err(cmd, "give exactly one of -n ID and -a");
	memset(o, 0, sizeof(*o));
	o->all = p.all;
	o->id = p.id;
	o->force = p.force;
	o->tab = p.tab;
	o->tab_name = a.argc ? a.argv[0] : NULL;
	return 0;
}

int cli_parse_list(int argc, char **argv, struct cli_list_opts *o)
{
	struct dev_parse p = { .verb = "list" };
	struct cli_args a;
	int ret = cli_parse(cli_find("list"), argc, argv, dev_opt, &p, &a);

	if (ret)
		return ret;
	memset(o, 0, sizeof(*o));
	o->json = p.json;
	o->have_id = p.have_id;
	o->id = p.id;
	return 0;
}

/*
 * The imgblktab entries a command acts on: all, or the one named @name
 * (NULL: all); the bad lines are reported and counted in *@bad.  Returns
 * their count (*@tab malloc'ed), or -errno after saying why.
 */
static int cli_tab_select(const char *name, struct ublk_tab_entry **tab, unsigned int *bad)
{
	const char *path = ublk_tab_path();
	int n, i;

	n = ublk_tab_read(path, tab, bad);
	if (n < 0 || !name)
		return n;
	for (i = 0; i < n; i++) {
		if (!strcmp((*tab)[i].name, name)) {
			memmove(*tab, *tab + i, sizeof(**tab));
			return 1;
		}
	}
	free(*tab);
	img_err("%s: no device named '%s'", path, name);
	return -ENOENT;
}

/* Points the messages at imgblktab entry @e's line ("PATH:LINE: "); NULL: at none. */
static void cli_tab_context(const struct ublk_tab_entry *e)
{
	char ctx[PATH_MAX + 16];

	if (!e) {
		img_log_context(NULL);
		return;
	}
	snprintf(ctx, sizeof(ctx), "%s:%u: ", ublk_tab_path(), e->line);
	img_log_context(ctx);
}

/*
 * Brings up imgblktab entry @e: add's words for its line, then the
 * options of the command line (@cl, less --tab) as words again, parsed
 * by cli_parse_add(); a device of that name already served is left
 * alone, one whose --recoverable server died is recovered.  Messages
 * name the entry's line.  Returns 0, or 1 after saying why.
 */
static int cli_add_entry(const struct ublk_tab_entry *e, const struct add_parse *cl)
{
	char *argv[1 + 64 + ADD_MAX_GIVEN + 1];
	char buf[2048], words[4096];
	struct ublk_add_opts o;
	struct ublk_state s;
	unsigned int i;
	size_t at = 0;
	int n, id, ret = 1;

	cli_tab_context(e);
	/* This entry's keys, and the command line's given again: no other entry's. */
	secret_wipe_all();
	argv[0] = "add";
	n = ublk_tab_argv(e, argv + 1, 64, buf, sizeof(buf));
	if (n < 0) {
		img_err("too many options");
		goto out;
	}
	n++;
	for (i = 0; i < cl->nr_opts; i++) {
		const struct cli_opt *opt = cl->opts[i].opt;
		const char *arg = cl->opts[i].arg;
		int w;

		if (opt->key == CLI_K_TAB)
			continue;
		if (opt->name)
			w = snprintf(words + at, sizeof(words) - at, "--%s%s%s", opt->name,
				     arg ? "=" : "", arg ? arg : "");
		else
			w = snprintf(words + at, sizeof(words) - at, "-%c%s", opt->key,
				     arg ? arg : "");
		if (w < 0 || (size_t)w >= sizeof(words) - at) {
			img_err("the command line's options are too long");
			goto out;
		}
		argv[n++] = words + at;
		at += w + 1;
	}
	argv[n] = NULL;
	if (cli_parse_add(n, argv, &o))
		goto out;

	id = ublk_state_find_name(e->name);
	if (id >= 0 && ublk_state_read(id, &s) == 0) {
		if (s.pid > 0 && kill(s.pid, 0) == 0) {
			img_log("%s: already attached as " UBLK_BDEV_FMT, e->name, id);
			ret = 0;
			goto out;
		}
		if (!s.recoverable) {
			img_err("%s: the server of " UBLK_BDEV_FMT " died; imgblk del -n %d first",
				e->name, id, id);
			goto out;
		}
		/* A foreground server's own messages are not about the line. */
		if (o.foreground)
			cli_tab_context(NULL);
		ret = ublk_recover(id, o.foreground);
	} else {
		if (o.foreground)
			cli_tab_context(NULL);
		ret = ublk_add(&o);
	}
out:
	cli_tab_context(NULL);
	return ret ? 1 : 0;
}

/*
 * add --tab [NAME]: brings up the imgblktab's devices, or the one named,
 * in the file's order, with the options given beside --tab over each
 * entry's.  A bad line, a bad entry or one that does not come up is
 * reported, naming its line, and the others still come up: one broken
 * entry must not keep the rest from booting.  Returns the exit status:
 * 1 if any line or entry failed.
 */
static int cli_add_tab(const struct cli_cmd *cmd, const struct add_parse *cl,
		       const struct cli_args *a)
{
	const char *name = a->argc ? a->argv[0] : NULL;
	struct ublk_tab_entry *tab;
	unsigned int i, bad, failed;
	char opt[64];
	int n;

	if (cl->nr_opts > ADD_MAX_GIVEN)
		return cli_parse_status(cmd, cli_usage_err(cmd, "too many options for --tab"));
	for (i = 0; i < cl->nr_opts; i++) {
		int k = cl->opts[i].opt->key;

		/* The entry names the device and its image. */
		if (k == 't' || k == 'f' || k == 'n' || k == CLI_K_NAME)
			return cli_parse_status(cmd, cli_usage_err(cmd,
				"--tab takes the device from imgblktab: no %s",
				cli_opt_name(cl->opts[i].opt, opt, sizeof(opt))));
	}
	if (cl->o->foreground && !name)
		return cli_parse_status(cmd, cli_usage_err(cmd,
			"--foreground --tab serves one device: give its NAME"));
	n = cli_tab_select(name, &tab, &bad);
	if (n < 0)
		return CLI_EXIT_ERR;
	failed = bad;
	for (i = 0; i < (unsigned int)n; i++)
		failed += cli_add_entry(&tab[i], cl);
	free(tab);
	return failed ? CLI_EXIT_ERR : CLI_EXIT_OK;
}

int cli_cmd_add(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct ublk_add_opts o;
	struct add_parse p;
	struct cli_args a;
	int ret;

	add_defaults(&p, &o);
	ret = cli_parse(cmd, argc, argv, add_opt, &p, &a);
	if (!ret && p.tab)
		return cli_add_tab(cmd, &p, &a);
	if (!ret)
		ret = add_finish(cmd, &p, &a);
	if (ret)
		return cli_parse_status(cmd, ret);
	return ublk_add(&o);
}

/*
 * del --tab [NAME]: deletes the attached devices of imgblktab, or the one
 * named; as add --tab, past a bad line or a device that will not go.
 * Returns the exit status.
 */
static int cli_del_tab(const struct cli_del_opts *d)
{
	struct ublk_tab_entry *tab;
	unsigned int bad, failed;
	int n, i, id;

	n = cli_tab_select(d->tab_name, &tab, &bad);
	if (n < 0)
		return CLI_EXIT_ERR;
	failed = bad;
	for (i = 0; i < n; i++) {
		id = ublk_state_find_name(tab[i].name);
		cli_tab_context(&tab[i]);
		if (id >= 0 && ublk_del(id, d->force))
			failed++;
	}
	cli_tab_context(NULL);
	free(tab);
	return failed ? CLI_EXIT_ERR : CLI_EXIT_OK;
}

int cli_cmd_del(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct cli_del_opts o;
	int ret = cli_parse_del(argc, argv, &o);

	if (ret)
		return cli_parse_status(cmd, ret);
	if (o.tab)
		return cli_del_tab(&o);
	return o.all ? ublk_del_all(o.force) : ublk_del(o.id, o.force);
}

/*
 * The state of a device as the kernel sees it; a device the kernel no
 * longer has, or whose server is gone, is DEAD.
 */
static const char *cli_dev_state(struct ublk_ctrl *ctrl, const struct ublk_state *s)
{
	struct ublksrv_ctrl_dev_info info;

	if (ctrl && ublk_ctrl_get_dev_info(ctrl, s->id, &info) == 0)
		return ublk_state_name(info.state);
	if (!ctrl && s->pid > 0 && kill(s->pid, 0) == 0)
		return "LIVE";
	return "DEAD";
}

int cli_cmd_list(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct cli_list_opts o;
	struct ublk_ctrl ctrl, *c = NULL;
	unsigned int *ids = NULL;
	int ret, n, i, shown = 0;

	ret = cli_parse_list(argc, argv, &o);
	if (ret)
		return cli_parse_status(cmd, ret);
	n = ublk_state_ids(&ids);
	if (n < 0) {
		img_err("%s: %s", ublk_state_dir(), strerror(-n));
		return CLI_EXIT_ERR;
	}
	/* Without the control device (not root) the state comes from the pid. */
	if (ublk_ctrl_open(&ctrl) == 0)
		c = &ctrl;

	if (o.json)
		printf("[");
	else
		printf("%-4s %-8s %-6s %-5s %-8s %-7s %-13s %s\n", "ID", "TARGET",
		       "QUEUES", "DEPTH", "STATE", "PID", "DEV", "FILE");
	for (i = 0; i < n; i++) {
		struct ublk_state s;
		char dev[32], reason[256] = "";
		unsigned int parts[UBLK_MAX_PARTS];
		const char *state;
		int np, p;

		if (o.have_id && ids[i] != o.id)
			continue;
		if (ublk_state_read(ids[i], &s))
			continue;
		snprintf(dev, sizeof(dev), UBLK_BDEV_FMT, s.id);
		state = cli_dev_state(c, &s);
		np = ublk_disk_partitions(s.id, parts);
		/* A live device may be paused: only its server knows. */
		if (!strcmp(state, "LIVE") && cli_live_pause_state(s.id, reason, sizeof(reason)))
			state = "PAUSED";
		if (o.json) {
			printf("%s\n  {\"id\": %u, \"target\": ", shown ? "," : "", s.id);
			json_put_string(stdout, s.target);
			printf(", \"file\": ");
			json_put_string(stdout, s.file);
			printf(", \"queues\": %u, \"depth\": %u, \"state\": \"%s\", \"pid\": %d, \"dev\": \"%s\", \"read_only\": %s",
			       s.queues, s.depth, state, (int)s.pid, dev,
			       s.read_only ? "true" : "false");
			if (reason[0]) {
				printf(", \"reason\": ");
				json_put_string(stdout, reason);
			}
			printf(", \"name\": ");
			if (s.name[0])
				json_put_string(stdout, s.name);
			else
				printf("null");
			printf(", \"partitions\": [");
			for (p = 0; p < np; p++)
				printf("%s\"%sp%u\"", p ? ", " : "", dev, parts[p]);
			printf("]}");
		} else {
			printf("%-4u %-8s %-6u %-5u %-8s %-7d %-13s %s\n", s.id, s.target,
			       s.queues, s.depth, state, (int)s.pid, dev, s.file);
			/* The reason on a line of its own, under the row. */
			if (reason[0])
				printf("     paused: %s\n", reason);
			if (s.name[0])
				printf("     name: %s\n", s.name);
			/* The partitions too, on a line under the row. */
			if (np) {
				printf("     partitions:");
				for (p = 0; p < np; p++)
					printf(" %sp%u", dev, parts[p]);
				printf("\n");
			}
		}
		shown++;
	}
	if (o.json)
		printf("%s]\n", shown ? "\n" : "");
	if (c)
		ublk_ctrl_close(c);
	free(ids);
	if (o.have_id && !shown) {
		img_err("no imgblk device with id %u", o.id);
		return CLI_EXIT_ERR;
	}
	return CLI_EXIT_OK;
}

int cli_cmd_recover(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct dev_parse p = { .verb = "recover" };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, dev_opt, &p, &a);

	if (ret)
		return cli_parse_status(cmd, ret);
	if (!p.have_id)
		return cli_parse_status(cmd, cli_usage_err(cmd, "give -n ID"));
	return ublk_recover(p.id, p.foreground);
}

/*
 * udev-chown NAME: run by udev (as root) for each new ublkcN and ublkbN
 * node: a device added by a user becomes that user's, so its server can
 * open the char device and the user the disk.  Devices added by root are
 * left as they are.
 */
int cli_cmd_udev_chown(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct ublksrv_ctrl_dev_info info;
	struct ublk_ctrl ctrl;
	struct cli_args a;
	const char *name;
	char path[64];
	uint64_t id;
	int ret;

	ret = cli_parse(cmd, argc, argv, NULL, NULL, &a);
	if (ret)
		return cli_parse_status(cmd, ret);
	name = a.argv[0];
	if (!strncmp(name, "/dev/", 5))
		name += 5;
	if ((strncmp(name, "ublkc", 5) && strncmp(name, "ublkb", 5)) ||
	    parse_uint(name + 5, 0, UBLK_MAX_DEV_ID, &id)) {
		img_err("udev-chown: '%s' is not a ublk device name", a.argv[0]);
		return CLI_EXIT_USAGE;
	}
	ret = ublk_ctrl_open(&ctrl);
	if (ret) {
		ublk_ctrl_explain(ret);
		return CLI_EXIT_ERR;
	}
	ret = ublk_ctrl_get_dev_info(&ctrl, id, &info);
	ublk_ctrl_close(&ctrl);
	if (ret) {
		img_err("udev-chown: device %llu: %s", (unsigned long long)id, strerror(-ret));
		return CLI_EXIT_ERR;
	}
	if (!(info.flags & UBLK_F_UNPRIVILEGED_DEV))
		return CLI_EXIT_OK;
	snprintf(path, sizeof(path), "/dev/%s", name);
	if (chown(path, info.owner_uid, info.owner_gid) || chmod(path, 0600)) {
		img_err("udev-chown: %s: %s", path, strerror(errno));
		return CLI_EXIT_ERR;
	}
	return CLI_EXIT_OK;
}

/*
 * udev-name NAME: run by udev for each ublkbN and ublkbNpM (data/udev/
 * 60-imgblk.rules); prints the stable name the device was added with,
 * "NAME" for the disk and "NAME-partM" for a partition, which the rule
 * links from /dev/disk/by-imgblk/.  Exits 1, printing nothing, for a
 * device without a name.
 */
int cli_cmd_udev_name(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct ublk_state s;
	struct cli_args a;
	const char *name, *p;
	uint64_t id, part = 0;
	char num[16];
	size_t n;
	int ret;

	ret = cli_parse(cmd, argc, argv, NULL, NULL, &a);
	if (ret)
		return cli_parse_status(cmd, ret);
	name = a.argv[0];
	if (!strncmp(name, "/dev/", 5))
		name += 5;
	p = strncmp(name, "ublkb", 5) ? name : name + 5;
	n = p == name ? 0 : strspn(p, "0123456789");
	if (!n || n >= sizeof(num) ||
	    (p[n] && (p[n] != 'p' || parse_uint(p + n + 1, 1, 1U << 20, &part)))) {
		img_err("udev-name: '%s' is not a ublk disk or partition name", a.argv[0]);
		return CLI_EXIT_USAGE;
	}
	memcpy(num, p, n);
	num[n] = '\0';
	if (parse_uint(num, 0, UBLK_MAX_DEV_ID, &id) || ublk_state_read(id, &s) ||
	    !s.name[0])
		return CLI_EXIT_ERR;
	if (part)
		printf("%s-part%llu\n", s.name, (unsigned long long)part);
	else
		printf("%s\n", s.name);
	return CLI_EXIT_OK;
}
