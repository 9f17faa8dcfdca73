// SPDX-License-Identifier: GPL-2.0
/* The device commands: add, del, list. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "disk.h"
#include "json.h"
#include "state.h"
#include "tab.h"
#include "ublk.h"
#include "util.h"


enum {
	OPT_BUFFERED = 0x100,
	OPT_SIZE,
	OPT_FOREGROUND,
	OPT_RECOVERABLE,
	OPT_BACKING,
	OPT_L2_CACHE,
	OPT_DISCARD,
	OPT_COR,
	OPT_BURST,
	OPT_SNAPSHOT,
	OPT_PINNED,
	OPT_WERROR,
	OPT_RERROR,
	OPT_FORCE,
	OPT_LOG_LEVEL,
	OPT_NAME,
	OPT_TAB,
	OPT_THROTTLE,		/* + enum throttle_kind; last */
};

/* Prints the one-line complaint of getopt_long() about argv[optind - 1]. */
static int cli_bad_option(const char *cmd, int c, char **argv)
{
	const char *arg = argv[optind - 1];
	char letter[3];

	/*
	 * A short option may sit in a cluster ("-xr", "-rq"), where
	 * argv[optind - 1] is the word before it, or the whole cluster:
	 * name the letter getopt stopped at.
	 */
	if (optopt > 0 && optopt < 0x100 && strncmp(arg, "--", 2)) {
		snprintf(letter, sizeof(letter), "-%c", optopt);
		arg = letter;
	}
	if (c == ':')
		img_err("%s: option '%s' needs a value (see imgblk %s --help)", cmd,
			arg, cmd);
	else
		img_err("%s: unknown option '%s' (see imgblk %s --help)", cmd, arg, cmd);
	return -EINVAL;
}

static int cli_number(const char *cmd, const char *what, const char *s,
		      uint64_t min, uint64_t max, uint64_t *out)
{
	if (parse_uint(s, min, max, out) == 0)
		return 0;
	img_err("%s: %s must be a number from %llu to %llu, not '%s'", cmd, what,
		(unsigned long long)min, (unsigned long long)max, s);
	return -EINVAL;
}

int cli_parse_add(int argc, char **argv, struct ublk_add_opts *o)
{
	static const struct option opts[] = {
		{ "type", required_argument, NULL, 't' },
		{ "file", required_argument, NULL, 'f' },
		{ "number", required_argument, NULL, 'n' },
		{ "queues", required_argument, NULL, 'q' },
		{ "depth", required_argument, NULL, 'd' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "buffered", no_argument, NULL, OPT_BUFFERED },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "foreground", no_argument, NULL, OPT_FOREGROUND },
		{ "recoverable", no_argument, NULL, OPT_RECOVERABLE },
		{ "backing", required_argument, NULL, OPT_BACKING },
		{ "l2-cache-size", required_argument, NULL, OPT_L2_CACHE },
		{ "discard", required_argument, NULL, OPT_DISCARD },
		{ "copy-on-read", no_argument, NULL, OPT_COR },
		{ "snapshot", required_argument, NULL, OPT_SNAPSHOT },
		{ "bps-total", required_argument, NULL, OPT_THROTTLE + THR_BPS_TOTAL },
		{ "bps-read", required_argument, NULL, OPT_THROTTLE + THR_BPS_READ },
		{ "bps-write", required_argument, NULL, OPT_THROTTLE + THR_BPS_WRITE },
		{ "iops-total", required_argument, NULL, OPT_THROTTLE + THR_IOPS_TOTAL },
		{ "iops-read", required_argument, NULL, OPT_THROTTLE + THR_IOPS_READ },
		{ "iops-write", required_argument, NULL, OPT_THROTTLE + THR_IOPS_WRITE },
		{ "throttle-burst-ms", required_argument, NULL, OPT_BURST },
		{ "pinned-buffers", required_argument, NULL, OPT_PINNED },
		{ "werror", required_argument, NULL, OPT_WERROR },
		{ "rerror", required_argument, NULL, OPT_RERROR },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "tab", no_argument, NULL, OPT_TAB },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *type = NULL, *size = NULL;
	unsigned int given = 0;
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->dev_id = -1;
	o->nr_queues = UBLK_DEF_QUEUES;
	o->depth = UBLK_DEF_DEPTH;
	o->feat.pinned_bytes = UBLK_DEF_PINNED_BYTES;
	/* QEMU's defaults: hold writes while the host is out of space. */
	o->feat.blk.werror = BLK_ERR_ENOSPC;
	o->feat.blk.rerror = BLK_ERR_REPORT;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":t:f:n:q:d:rh", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			type = optarg;
			break;
		case 'f':
			o->cfg.file = optarg;
			break;
		case 'n':
			if (cli_number("add", "the device id (-n)", optarg, 0,
				       UBLK_MAX_DEV_ID, &v))
				return -EINVAL;
			o->dev_id = v;
			break;
		case 'q':
			if (cli_number("add", "the number of queues (-q)", optarg, 1,
				       UBLK_MAX_QUEUES, &v))
				return -EINVAL;
			o->nr_queues = v;
			break;
		case 'd':
			if (cli_number("add", "the queue depth (-d)", optarg, 1,
				       UBLK_MAX_QUEUE_DEPTH, &v))
				return -EINVAL;
			o->depth = v;
			break;
		case 'r':
			o->cfg.open_flags |= TGT_O_RDONLY;
			break;
		case OPT_BUFFERED:
			o->cfg.open_flags |= TGT_O_BUFFERED;
			given |= TGT_OPT_BUFFERED;
			break;
		case OPT_SIZE:
			size = optarg;
			given |= TGT_OPT_SIZE;
			break;
		case OPT_FOREGROUND:
			o->foreground = true;
			break;
		case OPT_RECOVERABLE:
			o->recoverable = true;
			break;
		case OPT_DISCARD:
			if (!strcmp(optarg, "ignore")) {
				o->feat.blk.discard_ignore = true;
			} else if (!strcmp(optarg, "unmap")) {
				o->feat.blk.discard_ignore = false;
			} else {
				img_err("add: --discard must be ignore or unmap, not '%s'", optarg);
				return -EINVAL;
			}
			break;
		case OPT_COR:
			o->feat.blk.copy_on_read = true;
			break;
		case OPT_BURST:
			if (cli_number("add", "--throttle-burst-ms", optarg, 1, 60000, &v))
				return -EINVAL;
			o->feat.blk.throttle.burst_ms = v;
			break;
		case OPT_THROTTLE + THR_BPS_TOTAL:
		case OPT_THROTTLE + THR_BPS_READ:
		case OPT_THROTTLE + THR_BPS_WRITE:
			if (parse_size(optarg, &v) || !v) {
				img_err("add: %s needs a non-zero number of bytes per second, not '%s'",
					argv[optind - 1], optarg);
				return -EINVAL;
			}
			o->feat.blk.throttle.rate[c - OPT_THROTTLE] = v;
			break;
		case OPT_THROTTLE + THR_IOPS_TOTAL:
		case OPT_THROTTLE + THR_IOPS_READ:
		case OPT_THROTTLE + THR_IOPS_WRITE:
			if (cli_number("add", "an iops limit", optarg, 1, UINT32_MAX, &v))
				return -EINVAL;
			o->feat.blk.throttle.rate[c - OPT_THROTTLE] = v;
			break;
		case OPT_SNAPSHOT:
			o->cfg.snapshot = optarg;
			break;
		case OPT_PINNED:
			if (parse_size(optarg, &o->feat.pinned_bytes) ||
			    o->feat.pinned_bytes > UBLK_MAX_PINNED_BYTES) {
				img_err("add: --pinned-buffers must be a size from 0 to 1G, not '%s'",
					optarg);
				return -EINVAL;
			}
			break;
		case OPT_WERROR:
			if (blk_err_action_parse(optarg, &o->feat.blk.werror)) {
				img_err("add: --werror must be enospc, stop, report or ignore, not '%s'",
					optarg);
				return -EINVAL;
			}
			break;
		case OPT_RERROR:
			if (blk_err_action_parse(optarg, &o->feat.blk.rerror) ||
			    o->feat.blk.rerror == BLK_ERR_ENOSPC) {
				img_err("add: --rerror must be stop, report or ignore, not '%s'",
					optarg);
				return -EINVAL;
			}
			break;
		case OPT_L2_CACHE:
			if (parse_size(optarg, &o->cfg.l2_cache_bytes) || !o->cfg.l2_cache_bytes) {
				img_err("add: bad --l2-cache-size '%s'", optarg);
				return -EINVAL;
			}
			break;
		case OPT_BACKING:
			if (!strcmp(optarg, "any")) {
				o->cfg.backing_policy = TGT_BACKING_ANY;
			} else if (!strcmp(optarg, "same-dir")) {
				o->cfg.backing_policy = TGT_BACKING_SAME_DIR;
			} else if (!strcmp(optarg, "none")) {
				o->cfg.backing_policy = TGT_BACKING_NONE;
			} else {
				img_err("add: --backing must be any, same-dir or none, not '%s'",
					optarg);
				return -EINVAL;
			}
			break;
		case OPT_LOG_LEVEL:
			if (img_log_parse_level(optarg, &o->log_level)) {
				img_err("add: --log-level must be err, warning, info or debug, not '%s'",
					optarg);
				return -EINVAL;
			}
			break;
		case OPT_NAME:
			if (!ublk_name_valid(optarg)) {
				img_err("add: --name must be 1 to %d letters, digits, '.', '_' or '-', not '%s'",
					UBLK_NAME_MAX, optarg);
				return -EINVAL;
			}
			o->name = optarg;
			break;
		case OPT_TAB:
			o->tab = true;
			break;
		case 'h':
			puts(cli_find("add")->usage);
			return CLI_HELP;
		default:
			return cli_bad_option("add", c, argv);
		}
	}
	/* The rest comes from imgblktab (cli_add_tab()); getopt put NAME last. */
	if (o->tab) {
		if (argc - optind > 1) {
			img_err("add: --tab takes at most one NAME");
			return -EINVAL;
		}
		o->tab_name = optind < argc ? argv[optind] : NULL;
		o->tab_words = optind;
		return 0;
	}
	if (optind < argc) {
		img_err("add: unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (!type && !o->cfg.file) {
		img_err("add: give -t TYPE, or -f FILE to detect its format");
		return -EINVAL;
	}
	if (type) {
		o->ops = tgt_find(type);
		if (!o->ops) {
			img_err("add: unknown target '%s' (see imgblk help for the targets)",
				type);
			return -EINVAL;
		}
	} else {
		/* No -t: the image's own magic decides, raw when it has none. */
		o->ops = tgt_probe_file(o->cfg.file);
		if (!o->ops)
			return -EINVAL;
	}
	if (o->cfg.file)
		given |= TGT_OPT_FILE;
	if (given & ~o->ops->options) {
		img_err("add: target %s does not take %s", o->ops->name,
			(given & ~o->ops->options & TGT_OPT_FILE) ? "-f FILE" :
			(given & ~o->ops->options & TGT_OPT_SIZE) ? "--size" :
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
		if (!size) {
			img_err("add: target %s needs --size SIZE", o->ops->name);
			return -EINVAL;
		}
		if (parse_size(size, &o->cfg.size_bytes) || !o->cfg.size_bytes ||
		    o->cfg.size_bytes % 512) {
			img_err("add: --size must be a non-zero multiple of 512 bytes, not '%s'",
				size);
			return -EINVAL;
		}
	}
	return 0;
}

int cli_parse_del(int argc, char **argv, struct cli_del_opts *o)
{
	static const struct option opts[] = {
		{ "number", required_argument, NULL, 'n' },
		{ "all", no_argument, NULL, 'a' },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "tab", no_argument, NULL, OPT_TAB },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_id = false;
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:ah", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (cli_number("del", "the device id (-n)", optarg, 0,
				       UBLK_MAX_DEV_ID, &v))
				return -EINVAL;
			o->id = v;
			have_id = true;
			break;
		case 'a':
			o->all = true;
			break;
		case OPT_FORCE:
			o->force = true;
			break;
		case OPT_TAB:
			o->tab = true;
			break;
		case 'h':
			puts(cli_find("del")->usage);
			return CLI_HELP;
		default:
			return cli_bad_option("del", c, argv);
		}
	}
	if (o->tab) {
		if (have_id || o->all || argc - optind > 1) {
			img_err("del: --tab takes at most one NAME, and neither -n nor -a");
			return -EINVAL;
		}
		o->tab_name = optind < argc ? argv[optind] : NULL;
		return 0;
	}
	if (optind < argc) {
		img_err("del: unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (have_id == o->all) {
		img_err("del: give exactly one of -n ID and -a");
		return -EINVAL;
	}
	return 0;
}

int cli_parse_list(int argc, char **argv, struct cli_list_opts *o)
{
	static const struct option opts[] = {
		{ "number", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (cli_number("list", "the device id (-n)", optarg, 0,
				       UBLK_MAX_DEV_ID, &v))
				return -EINVAL;
			o->id = v;
			o->have_id = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			puts(cli_find("list")->usage);
			return CLI_HELP;
		default:
			return cli_bad_option("list", c, argv);
		}
	}
	if (optind < argc) {
		img_err("list: unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static int cli_status(int parse_ret)
{
	return parse_ret == CLI_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

/*
 * The imgblktab entries a command acts on: all, or the one named @name.
 * Returns their count (*@tab malloc'ed), or -errno after saying why.
 */
static int cli_tab_select(const char *name, struct ublk_tab_entry **tab)
{
	const char *path = ublk_tab_path();
	int n, i;

	n = ublk_tab_read(path, tab);
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

/*
 * The options of imgblktab entry @e, then those of the command line
 * (@cl_argv[1..@cl->tab_words - 1], less --tab), parsed as add's into @o.
 * Returns 0 or -EINVAL after saying which line is wrong.
 */
static int cli_tab_opts(const struct ublk_tab_entry *e, char **cl_argv,
			const struct ublk_add_opts *cl, struct ublk_add_opts *o,
			char *buf, size_t len)
{
	char *argv[96];
	int n, i, ret;

	argv[0] = "add";
	n = ublk_tab_argv(e, argv + 1, 64, buf, len);
	if (n < 0) {
		img_err("%s:%u: too many options", ublk_tab_path(), e->line);
		return -EINVAL;
	}
	n++;
	for (i = 1; i < cl->tab_words && n < 95; i++) {
		if (strcmp(cl_argv[i], "--tab"))
			argv[n++] = cl_argv[i];
	}
	argv[n] = NULL;
	ret = cli_parse_add(n, argv, o);
	if (ret || o->tab) {
		img_err("%s:%u: in the options of '%s'", ublk_tab_path(), e->line, e->name);
		return -EINVAL;
	}
	return 0;
}

/*
 * add --tab [NAME]: adds the imgblktab's devices, or the one named, in
 * the file's order.  One already attached is skipped; one whose
 * recoverable server died is recovered (systemd restarting
 * imgblk@NAME.service).  Every entry is checked before any is added.
 * Returns the exit status.
 */
static int cli_add_tab(char **argv, const struct ublk_add_opts *cl)
{
	struct ublk_tab_entry *tab;
	struct ublk_add_opts o;
	char buf[2048];
	int n, i, id, status = CLI_EXIT_OK;

	n = cli_tab_select(cl->tab_name, &tab);
	if (n < 0)
		return n == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_ERR;
	if (cl->foreground && n != 1) {
		img_err("add: --foreground --tab serves one device: give its NAME");
		free(tab);
		return CLI_EXIT_USAGE;
	}
	for (i = 0; i < n; i++) {
		if (cli_tab_opts(&tab[i], argv, cl, &o, buf, sizeof(buf))) {
			free(tab);
			return CLI_EXIT_USAGE;
		}
	}
	for (i = 0; i < n; i++) {
		struct ublk_state s;
		int ret;

		id = ublk_state_find_name(tab[i].name);
		if (id >= 0 && ublk_state_read(id, &s) == 0) {
			if (s.pid > 0 && kill(s.pid, 0) == 0) {
				img_log("%s: already attached as " UBLK_BDEV_FMT, tab[i].name, id);
				continue;
			}
			if (!s.recoverable) {
				img_err("%s: the server of " UBLK_BDEV_FMT " died; imgblk del -n %d first",
					tab[i].name, id, id);
				status = CLI_EXIT_ERR;
				continue;
			}
			ret = ublk_recover(id, cl->foreground);
		} else {
			cli_tab_opts(&tab[i], argv, cl, &o, buf, sizeof(buf));
			ret = ublk_add(&o);
		}
		if (ret)
			status = CLI_EXIT_ERR;
	}
	free(tab);
	return status;
}

/*
 * del --tab [NAME]: deletes the attached devices of imgblktab, or the one
 * named.  Returns the exit status.
 */
static int cli_del_tab(const struct cli_del_opts *d)
{
	struct ublk_tab_entry *tab;
	int n, i, id, status = CLI_EXIT_OK;

	n = cli_tab_select(d->tab_name, &tab);
	if (n < 0)
		return n == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_ERR;
	for (i = 0; i < n; i++) {
		id = ublk_state_find_name(tab[i].name);
		if (id >= 0 && ublk_del(id, d->force))
			status = CLI_EXIT_ERR;
	}
	free(tab);
	return status;
}

int cli_cmd_add(int argc, char **argv)
{
	struct ublk_add_opts o;
	int ret = cli_parse_add(argc, argv, &o);

	if (ret)
		return cli_status(ret);
	if (o.tab)
		return cli_add_tab(argv, &o);
	return ublk_add(&o);
}

int cli_cmd_del(int argc, char **argv)
{
	struct cli_del_opts o;
	int ret = cli_parse_del(argc, argv, &o);

	if (ret)
		return cli_status(ret);
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

int cli_cmd_list(int argc, char **argv)
{
	struct cli_list_opts o;
	struct ublk_ctrl ctrl, *c = NULL;
	unsigned int *ids = NULL;
	int ret, n, i, shown = 0;

	ret = cli_parse_list(argc, argv, &o);
	if (ret)
		return cli_status(ret);
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

int cli_cmd_recover(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "number", required_argument, NULL, 'n' },
		{ "foreground", no_argument, NULL, OPT_FOREGROUND },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_id = false, foreground = false;
	unsigned int id = 0;
	uint64_t v;
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (cli_number("recover", "the device id (-n)", optarg, 0,
				       UBLK_MAX_DEV_ID, &v))
				return CLI_EXIT_USAGE;
			id = v;
			have_id = true;
			break;
		case OPT_FOREGROUND:
			foreground = true;
			break;
		case 'h':
			puts(cli_find("recover")->usage);
			return CLI_EXIT_OK;
		default:
			cli_bad_option("recover", c, argv);
			return CLI_EXIT_USAGE;
		}
	}
	if (!have_id || optind < argc) {
		img_err("recover: give -n ID and nothing else");
		return CLI_EXIT_USAGE;
	}
	return ublk_recover(id, foreground);
}

/*
 * udev-chown NAME: run by udev (as root) for each new ublkcN and ublkbN
 * node: a device added by a user becomes that user's, so its server can
 * open the char device and the user the disk.  Devices added by root are
 * left as they are.
 */
int cli_cmd_udev_chown(int argc, char **argv)
{
	struct ublksrv_ctrl_dev_info info;
	struct ublk_ctrl ctrl;
	const char *name;
	char path[64];
	uint64_t id;
	int ret;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		puts(cli_find("udev-chown")->usage);
		return CLI_EXIT_OK;
	}
	if (argc != 2) {
		img_err("udev-chown: give the device name (ublkcN or ublkbN)");
		return CLI_EXIT_USAGE;
	}
	name = argv[1];
	if (!strncmp(name, "/dev/", 5))
		name += 5;
	if ((strncmp(name, "ublkc", 5) && strncmp(name, "ublkb", 5)) ||
	    parse_uint(name + 5, 0, UBLK_MAX_DEV_ID, &id)) {
		img_err("udev-chown: '%s' is not a ublk device name", argv[1]);
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
int cli_cmd_udev_name(int argc, char **argv)
{
	struct ublk_state s;
	const char *name, *p;
	uint64_t id, part = 0;
	char num[16];
	size_t n;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		puts(cli_find("udev-name")->usage);
		return CLI_EXIT_OK;
	}
	if (argc != 2) {
		img_err("udev-name: give the device name (ublkbN or ublkbNpM)");
		return CLI_EXIT_USAGE;
	}
	name = argv[1];
	if (!strncmp(name, "/dev/", 5))
		name += 5;
	p = name + 5;
	n = strspn(p, "0123456789");
	if (strncmp(name, "ublkb", 5) || !n || n >= sizeof(num) ||
	    (p[n] && (p[n] != 'p' || parse_uint(p + n + 1, 1, 1U << 20, &part)))) {
		img_err("udev-name: '%s' is not a ublk disk or partition name", argv[1]);
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
