// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk snapshot`: list, create, apply and delete internal snapshots,
 * with qemu-img snapshot's options, table and exit codes.  With -n ID it
 * works on a running device through its control channel instead: -l,
 * -c and -d on the top image's internal snapshots, --external NEW for an
 * external snapshot, and --freeze to freeze the filesystems mounted from
 * the device around either.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <linux/fs.h>

#include "cli.h"
#include "control.h"
#include "exec.h"
#include "state.h"
#include "tgt.h"
#include "ublk.h"
#include "util.h"

/* A snapshot waits for a drain and the metadata writes: a minute is plenty. */
#define SNAP_CALL_TIMEOUT_MS	60000

struct snapshot_ctx {
	const char *file;
	const char *fmt;
	int op;				/* 'l', 'c', 'a', 'd' */
	const char *name;
	bool force_share;		/* -U: with -l only */
	/* Live: a running device. */
	bool live;			/* -n given */
	unsigned int id;
	const char *external;		/* --external NEW */
	bool freeze;			/* --freeze */
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

/* Filesystems frozen by --freeze: one open directory per filesystem. */
#define SNAP_MAX_FROZEN	64
struct snap_frozen {
	int fd[SNAP_MAX_FROZEN];
	dev_t dev[SNAP_MAX_FROZEN];
	unsigned int n;
	sigset_t old_mask;
};

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void snap_unescape(char *s)
{
	char *d = s;

	for (; *s; s++, d++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d = (s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0');
			s += 3;
		} else {
			*d = *s;
		}
	}
	*d = '\0';
}

/* Is block device @maj:@min ublkb@id or one of its partitions?  Asked of sysfs. */
static bool snap_dev_is_ours(unsigned int id, unsigned int maj, unsigned int min)
{
	char link[64], path[PATH_MAX], name[32], *base;

	snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", maj, min);
	if (!realpath(link, path))
		return false;
	snprintf(name, sizeof(name), "ublkb%u", id);
	base = strrchr(path, '/');
	if (!base)
		return false;
	if (!strcmp(base + 1, name))
		return true;
	/* A partition's directory lies in its disk's. */
	*base = '\0';
	base = strrchr(path, '/');
	return base && !strcmp(base + 1, name);
}

/* Thaws what snap_freeze() froze, and lets the blocked signals in. */
static void snap_thaw(struct snap_frozen *f)
{
	while (f->n) {
		int fd = f->fd[--f->n];

		if (ioctl(fd, FITHAW, 0))
			img_err("snapshot: cannot thaw a filesystem of the device: %s",
				strerror(errno));
		close(fd);
	}
	sigprocmask(SIG_SETMASK, &f->old_mask, NULL);
}

/*
 * FIFREEZE on every filesystem mounted from device @id or a partition of
 * it (found in /proc/self/mountinfo by major:minor; a filesystem mounted
 * twice is frozen once).  The signals that would end us are held until
 * snap_thaw(), so that nothing leaves a filesystem frozen.  Returns 0
 * (nothing mounted is fine) or -errno after thawing what it froze.
 */
static int snap_freeze(unsigned int id, struct snap_frozen *f)
{
	char line[2 * PATH_MAX];
	sigset_t block;
	FILE *mi;
	int ret = 0;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGQUIT);
	sigprocmask(SIG_BLOCK, &block, &f->old_mask);
	f->n = 0;
	mi = fopen("/proc/self/mountinfo", "r");
	if (!mi) {
		ret = -errno;
		img_err("snapshot: /proc/self/mountinfo: %s", strerror(errno));
		goto out;
	}
	while (!ret && fgets(line, sizeof(line), mi)) {
		unsigned int maj, min, i;
		char mnt[PATH_MAX];
		dev_t dev;
		int fd;

		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mnt) != 3 ||
		    !snap_dev_is_ours(id, maj, min))
			continue;
		dev = makedev(maj, min);
		for (i = 0; i < f->n && f->dev[i] != dev; i++)
			;
		if (i < f->n)
			continue;
		if (f->n == SNAP_MAX_FROZEN) {
			ret = -E2BIG;
			img_err("snapshot: more than %d filesystems to freeze", SNAP_MAX_FROZEN);
			break;
		}
		snap_unescape(mnt);
		fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || ioctl(fd, FIFREEZE, 0)) {
			ret = -errno;
			img_err("snapshot: cannot freeze %s: %s", mnt, strerror(errno));
			if (fd >= 0)
				close(fd);
			break;
		}
		f->fd[f->n] = fd;
		f->dev[f->n++] = dev;
	}
	fclose(mi);
	/* Said, so that a snapshot believed consistent is not taken unawares. */
	if (!ret && !f->n)
		img_err("snapshot: --freeze: no filesystem of /dev/ublkb%u is mounted", id);
out:
	if (ret)
		snap_thaw(f);
	return ret;
}

/* NEW as an absolute name, for the server, whose directory is not ours. */
static int snap_abs_path(const char *file, char *out, size_t len)
{
	char *d = strdup(file), *b = strdup(file), dir[PATH_MAX];
	int ret = 0;

	if (!d || !b) {
		ret = -ENOMEM;
	} else if (!realpath(dirname(d), dir)) {
		ret = -errno;
		img_err("snapshot: %s: %s", file, strerror(errno));
	} else if ((size_t)snprintf(out, len, "%s/%s", dir, basename(b)) >= len) {
		ret = -ENAMETOOLONG;
		img_err("snapshot: %s: name too long", file);
	}
	free(d);
	free(b);
	return ret;
}

/* -l on a running device: query-snapshots as qemu-img's table. */
static int snapshot_live_list(struct ctl_client *cl, struct json_object *list)
{
	size_t i, n = json_object_array_length(list);

	(void)cl;
	if (!n)
		return CLI_EXIT_OK;
	printf("Snapshot list:\n");
	cli_snapshot_row(NULL);
	for (i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(list, i), *v;
		struct tgt_snapshot_info si = { .icount = UINT64_MAX };

#define SNAP_GET(key) (json_object_object_get_ex(e, key, &v) ? v : NULL)
		si.id = json_object_get_string(SNAP_GET("id"));
		si.name = json_object_get_string(SNAP_GET("name"));
		si.vm_state_bytes = json_object_get_int64(SNAP_GET("vm-state-size"));
		si.date_sec = json_object_get_int64(SNAP_GET("date-sec"));
		si.date_nsec = json_object_get_int64(SNAP_GET("date-nsec"));
		si.vm_clock_nsec = json_object_get_int64(SNAP_GET("vm-clock-sec")) * 1000000000ULL +
				   json_object_get_int64(SNAP_GET("vm-clock-nsec"));
		if (SNAP_GET("icount"))
			si.icount = json_object_get_int64(v);
#undef SNAP_GET
		cli_snapshot_row(&si);
	}
	return CLI_EXIT_OK;
}

/*
 * The live verbs: one control command, with the device's filesystems
 * frozen around it for --freeze (always thawed, whatever the outcome).
 */
static int snapshot_live(struct snapshot_ctx *c)
{
	struct json_object *args = json_object_new_object(), *ret = NULL, *desc;
	struct snap_frozen frozen = { .n = 0 };
	struct ctl_client *cl;
	struct ublk_state st;
	char path[PATH_MAX];
	const char *cmd;
	int err;

	if (c->external) {
		cmd = "blockdev-snapshot-sync";
		if (snap_abs_path(c->external, path, sizeof(path)))
			goto fail_args;
		json_object_object_add(args, "snapshot-file", json_object_new_string(path));
		json_object_object_add(args, "format",
				       json_object_new_string(c->fmt ? c->fmt : "qcow2"));
	} else if (c->op == 'c') {
		cmd = "blockdev-snapshot-internal-sync";
		json_object_object_add(args, "name", json_object_new_string(c->name));
	} else if (c->op == 'd') {
		cmd = "blockdev-snapshot-delete-internal-sync";
		json_object_object_add(args, "name", json_object_new_string(c->name));
	} else {
		cmd = "query-snapshots";
	}
	err = ctl_client_open(c->id, &cl);
	if (err) {
		if (ublk_state_read(c->id, &st))
			img_err("snapshot: no imgblk device with id %u", c->id);
		else
			img_err("snapshot: device %u: its server does not answer (see imgblk list)",
				c->id);
		goto fail_args;
	}
	if (c->freeze && snap_freeze(c->id, &frozen)) {
		ctl_client_close(cl);
		goto fail_args;
	}
	err = ctl_client_call(cl, cmd, args, SNAP_CALL_TIMEOUT_MS, &ret);
	if (c->freeze)
		snap_thaw(&frozen);
	json_object_put(args);
	if (err == -EREMOTEIO && json_object_object_get_ex(ret, "desc", &desc))
		img_err("snapshot: %s", json_object_get_string(desc));
	else if (err)
		img_err("snapshot: %s: %s", cmd, strerror(-err));
	else if (!strcmp(cmd, "query-snapshots"))
		err = snapshot_live_list(cl, ret);
	json_object_put(ret);
	ctl_client_close(cl);
	return err ? CLI_EXIT_ERR : CLI_EXIT_OK;
fail_args:
	json_object_put(args);
	return CLI_EXIT_ERR;
}

/* The live options' combinations.  Returns 0 or -EINVAL after saying why. */
static int snapshot_live_check(const struct cli_cmd *cmd, struct snapshot_ctx *c, int nargs)
{
	if (nargs)
		return cli_usage_err(cmd, "with -n ID, give no FILE");
	if (c->op == 'a')
		return cli_usage_err(cmd, "-a cannot revert a running device: take it down first");
	if (c->force_share)
		return cli_usage_err(cmd, "-U is for image files, not with -n");
	if (c->external && c->op)
		return cli_usage_err(cmd, "give --external or one of -l, -c, -d, not both");
	if (c->fmt && !c->external)
		return cli_usage_err(cmd, "with -n, -f is the format of --external NEW");
	if (c->freeze && !c->external && c->op != 'c')
		return cli_usage_err(cmd, "--freeze goes with -c or --external");
	return 0;
}

static int snapshot_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct snapshot_ctx *c = ctx;
	uint64_t v;

	switch (opt->key) {
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
	case 'n':
		if (parse_uint(arg, 0, UBLK_MAX_DEV_ID, &v)) {
			img_err("snapshot: bad device id '%s'", arg);
			return -EINVAL;
		}
		c->id = v;
		c->live = true;
		break;
	case CLI_K_EXTERNAL:
		c->external = arg;
		break;
	case CLI_K_FREEZE:
		c->freeze = true;
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
	if (c.live) {
		ret = snapshot_live_check(cmd, &c, a.argc);
		return ret ? cli_parse_status(cmd, ret) : snapshot_live(&c);
	}
	if (c.external || c.freeze)
		return cli_parse_status(cmd, cli_usage_err(cmd,
			"--external and --freeze need a running device (-n ID)"));
	if (a.argc != 1)
		return cli_parse_status(cmd, cli_usage_err(cmd, "give one FILE"));
	if (!c.op)
		c.op = 'l';
	c.file = a.argv[0];
	return cli_run(snapshot_body, &c);
}
