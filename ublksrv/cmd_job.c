// SPDX-License-Identifier: GPL-2.0
/*
 * The block job verbs, clients of a running device's control channel
 * (docs/control.md): `backup` (drive-backup), `mirror` (drive-mirror),
 * `stream` (block-stream), `commit -n ID` (block-commit; cmd_commit.c
 * hands it over) and `job` (query-block-jobs, block-job-*).  Each can wait for the job's end
 * (--wait: from the job's events; the exit status says whether it
 * completed) and draw its progress (-p, as convert -p).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "control.h"
#include "job.h"
#include "state.h"
#include "ublk.h"
#include "util.h"

/* A start may wait for a drain and a scan of the image's allocation. */
#define JOB_CALL_TIMEOUT_MS	120000
/* How often a waiting verb looks at the job (progress, a lost server). */
#define JOB_POLL_MS		200

struct job_opts {
	const char *verb;
	unsigned int id;
	bool have_id;
	const char *fmt;
	const char *sync;
	const char *bitmap;		/* backup --sync incremental|differential */
	bool existing;
	bool have_speed;
	uint64_t speed;
	const char *job_id;
	bool wait;
	bool pivot;
	bool force;
	bool progress;
	const char *action;		/* job: list, pause, ... */
	const char *arg;		/* TARGET, or the job's id */
	char target[PATH_MAX];		/* TARGET made absolute */
	const char *top, *base;		/* commit, stream */
};

/*
 * The option callback of the job verbs; the table gives each verb its
 * own options, but commit's table entry also holds those of the offline
 * commit of a FILE, which a running device's has no use for.
 */
static int job_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct job_opts *o = ctx;
	char name[64];
	uint64_t v;

	switch (opt->key) {
	case 'n':
		if (parse_uint(arg, 0, UBLK_MAX_DEV_ID, &v)) {
			img_err("%s: the device id (-n) must be a number, not '%s'", o->verb, arg);
			return -EINVAL;
		}
		o->id = v;
		o->have_id = true;
		return 0;
	case 'f':
		/* commit's -f is the offline one's: a FILE's format. */
		if (strcmp(o->verb, "commit")) {
			o->fmt = arg;
			return 0;
		}
		break;
	case CLI_K_SYNC:
		if (strcmp(arg, "full") && strcmp(arg, "top") &&
		    (strcmp(o->verb, "backup") ||
		     (strcmp(arg, "incremental") && strcmp(arg, "differential")))) {
			img_err("%s: --sync must be full%s or top, not '%s'", o->verb,
				strcmp(o->verb, "backup") ? "" : ", incremental, differential", arg);
			return -EINVAL;
		}
		o->sync = arg;
		return 0;
	case CLI_K_BITMAP:
		o->bitmap = arg;
		return 0;
	case CLI_K_EXISTING:
		o->existing = true;
		return 0;
	case CLI_K_SPEED:
		if (parse_size(arg, &v) || v > INT64_MAX) {
			img_err("%s: --speed must be a number of bytes a second (0: no limit), not '%s'",
				o->verb, arg);
			return -EINVAL;
		}
		o->speed = v;
		o->have_speed = true;
		return 0;
	case CLI_K_JOB_ID:
		o->job_id = arg;
		return 0;
	case CLI_K_WAIT:
		o->wait = true;
		return 0;
	case CLI_K_PIVOT:
		o->pivot = true;
		return 0;
	case CLI_K_FORCE:
		o->force = true;
		return 0;
	case CLI_K_TOP:
		o->top = arg;
		return 0;
	case 'b':
		o->base = arg;
		return 0;
	case 'p':
		o->progress = true;
		return 0;
	}
	img_err("commit: %s is for an image FILE, not a running device (-n ID)",
		cli_opt_name(opt, name, sizeof(name)));
	return -EINVAL;
}

/*
 * Parses the options and operands of @cmd into @o.  Returns 0, CLI_HELP
 * after printing the help, or -EINVAL after printing what is wrong.
 */
static int job_parse(const struct cli_cmd *cmd, int argc, char **argv, struct job_opts *o)
{
	static const char *const actions[] = {
		"list", "pause", "resume", "cancel", "complete", "wait", "set-speed",
	};
	struct cli_args a;
	unsigned int i;
	int ret = cli_parse(cmd, argc, argv, job_opt, o, &a);

	if (ret)
		return ret;
	if (!o->have_id)
		return cli_usage_err(cmd, "give the device with -n ID");
	if (!strcmp(o->verb, "commit")) {
		if (a.argc)
			return cli_usage_err(cmd, "a running device (-n ID) takes no FILE");
		return 0;
	}
	if (strcmp(o->verb, "job")) {
		/* backup, mirror: TARGET; stream: nothing (the table counts them). */
		o->arg = a.argc ? a.argv[0] : NULL;
		if (!strcmp(o->verb, "backup") && !o->sync)
			return cli_usage_err(cmd, "give --sync full, top, incremental or differential");
		if (o->sync && (!strcmp(o->sync, "incremental") ||
				!strcmp(o->sync, "differential")) != !!o->bitmap)
			return cli_usage_err(cmd, o->bitmap ? "--bitmap goes with --sync incremental "
					     "or differential" : "--sync %s needs --bitmap NAME",
					     o->sync);
		if (!strcmp(o->verb, "backup") && o->base && (!o->bitmap || o->existing))
			return cli_usage_err(cmd, "-b PREV makes a new incremental backup's TARGET "
					     "(not with --existing)");
		return 0;
	}
	o->action = a.argc ? a.argv[0] : "list";
	o->arg = a.argc > 1 ? a.argv[1] : NULL;
	for (i = 0; i < ARRAY_SIZE(actions) && strcmp(o->action, actions[i]); i++)
		;
	if (i == ARRAY_SIZE(actions))
		return cli_usage_err(cmd, "unknown action '%s' (list, pause, resume, cancel, "
				     "complete, wait, set-speed)", o->action);
	if (!strcmp(o->action, "set-speed") != o->have_speed)
		return cli_usage_err(cmd, o->have_speed ? "--speed goes with set-speed" :
				     "set-speed needs --speed BYTES_PER_S");
	return 0;
}

/* Connects to device @id's channel, saying why not.  Returns 0 or -errno. */
static int job_open(const char *verb, unsigned int id, struct ctl_client **c)
{
	struct ublk_state s;
	int ret = ctl_client_open(id, c);

	if (!ret)
		return 0;
	if (ublk_state_read(id, &s))
		img_err("%s: no imgblk device with id %u", verb, id);
	else
		img_err("%s: device %u: its server does not answer (see imgblk list)", verb, id);
	return ret;
}

/* Runs @cmd; prints the server's reason on failure.  Returns 0 or -errno. */
static int job_call(const char *verb, struct ctl_client *c, const char *cmd,
		    struct json_object *args, struct json_object **ret)
{
	int err = ctl_client_call(c, cmd, args, JOB_CALL_TIMEOUT_MS, ret);
	struct json_object *desc;

	if (!err)
		return 0;
	if (err == -EREMOTEIO && json_object_object_get_ex(*ret, "desc", &desc))
		img_err("%s: %s", verb, json_object_get_string(desc));
	else
		img_err("%s: %s: %s", verb, cmd, strerror(-err));
	json_object_put(*ret);
	*ret = NULL;
	return err;
}

static const char *job_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static int64_t job_int(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

/* The job @id as query-block-jobs shows it (NULL: the device's only one), or NULL. */
static struct json_object *job_find(struct json_object *list, const char *id)
{
	size_t i;

	for (i = 0; i < json_object_array_length(list); i++) {
		struct json_object *j = json_object_array_get_idx(list, i);

		if (!id || !strcmp(job_str(j, "device"), id))
			return j;
	}
	return NULL;
}

static void job_progress(struct json_object *j)
{
	int64_t len = job_int(j, "len"), off = job_int(j, "offset");

	printf("    (%.2f/100%%)\r", len ? off * 100.0 / len : 0.0);
	fflush(stdout);
}

/* job_wait()'s answer when the job became ready. */
#define JOB_READY	3

/*
 * Waits for job @id's end, or its READY if @until_ready.  Returns the
 * exit status: 0 completed, 1 failed, cancelled, or lost; or JOB_READY.
 */
static int job_wait(const char *verb, struct ctl_client *c, const char *id, bool until_ready,
		    bool progress)
{
	struct json_object *ev, *data, *list;
	int ret = CLI_EXIT_ERR;
	bool taken = false;	/* ev is an event taken after a call */

	for (;;) {
		int err = taken ? 0 : ctl_client_next(c, JOB_POLL_MS, &ev);

		taken = false;

		if (!err) {
			const char *name = job_str(ev, "event");

			if (!json_object_object_get_ex(ev, "data", &data) ||
			    strcmp(job_str(data, "device"), id) || strncmp(name, "BLOCK_JOB_", 10)) {
				json_object_put(ev);
				continue;
			}
			if (!strcmp(name, "BLOCK_JOB_READY") && until_ready) {
				ret = JOB_READY;
			} else if (!strcmp(name, "BLOCK_JOB_COMPLETED")) {
				if (json_object_object_get_ex(data, "error", NULL))
					img_err("%s: job %s failed: %s", verb, id,
						job_str(data, "error"));
				else
					ret = CLI_EXIT_OK;
			} else if (!strcmp(name, "BLOCK_JOB_CANCELLED")) {
				img_err("%s: job %s was cancelled", verb, id);
			} else {
				json_object_put(ev);
				continue;
			}
			json_object_put(ev);
			break;
		}
		if (err != -ETIMEDOUT) {
			img_err("%s: the server went away before job %s ended", verb, id);
			break;
		}
		if (job_call(verb, c, "query-block-jobs", NULL, &list))
			break;
		/* Its end event comes before it leaves the list: gone means lost. */
		if (!job_find(list, id)) {
			json_object_put(list);
			if (!ctl_client_next(c, 0, &ev)) {
				/* The event arrived during the call: look at it. */
				taken = true;
				continue;
			}
			img_err("%s: job %s ended without telling how", verb, id);
			break;
		}
		if (progress)
			job_progress(job_find(list, id));
		json_object_put(list);
	}
	if (progress)
		printf("\n");
	return ret;
}

/* @path made absolute: the server's working directory is not ours. */
static int job_abs_path(const char *path, char *out, size_t len)
{
	char a[PATH_MAX], b[PATH_MAX], dir[PATH_MAX];

	if (path[0] == '/') {
		snprintf(out, len, "%s", path);
		return 0;
	}
	snprintf(a, sizeof(a), "%s", path);
	snprintf(b, sizeof(b), "%s", path);
	if (!realpath(dirname(a), dir))
		return -errno;
	if ((size_t)snprintf(out, len, "%.*s/%s", PATH_MAX / 2, dir, basename(b)) >= len) {
		errno = ENAMETOOLONG;
		return -ENAMETOOLONG;
	}
	return 0;
}

/* The QMP start of @o->verb's job: its command, and its arguments in @args. */
static const char *job_start_args(struct job_opts *o, struct json_object *args)
{
	char path[PATH_MAX];

	if (o->job_id)
		json_object_object_add(args, "job-id", json_object_new_string(o->job_id));
	if (o->have_speed)
		json_object_object_add(args, "speed", json_object_new_int64(o->speed));
	if (!strcmp(o->verb, "stream") || !strcmp(o->verb, "commit")) {
		if (o->base && !job_abs_path(o->base, path, sizeof(path)))
			json_object_object_add(args, "base", json_object_new_string(path));
		if (o->top && !job_abs_path(o->top, path, sizeof(path)))
			json_object_object_add(args, "top", json_object_new_string(path));
		return !strcmp(o->verb, "stream") ? "block-stream" : "block-commit";
	}
	json_object_object_add(args, "target", json_object_new_string(o->target));
	/* QEMU has no "differential": it is sync bitmap that never clears the bitmap. */
	if (o->sync && !strcmp(o->sync, "differential")) {
		json_object_object_add(args, "sync", json_object_new_string("bitmap"));
		json_object_object_add(args, "bitmap-mode", json_object_new_string("never"));
	} else {
		json_object_object_add(args, "sync", json_object_new_string(o->sync ? o->sync :
									    "full"));
	}
	if (o->bitmap)
		json_object_object_add(args, "bitmap", json_object_new_string(o->bitmap));
	if (o->base && !job_abs_path(o->base, path, sizeof(path)))
		json_object_object_add(args, "backing", json_object_new_string(path));
	json_object_object_add(args, "mode", json_object_new_string(o->existing ? "existing" :
								    "absolute-paths"));
	if (o->fmt)
		json_object_object_add(args, "format", json_object_new_string(o->fmt));
	return !strcmp(o->verb, "mirror") ? "drive-mirror" : "drive-backup";
}

/*
 * backup, mirror, stream, commit: start the job, then wait as asked: for
 * its end, or for a job that converges (mirror, active commit) its
 * READY, and with --pivot, complete it and wait for its end.
 */
static int job_start(struct job_opts *o, struct ctl_client *c)
{
	struct json_object *args = json_object_new_object(), *r;
	char id[128];
	const char *cmd;
	int ret;

	if (o->arg && job_abs_path(o->arg, o->target, sizeof(o->target))) {
		img_err("%s: %s: %s", o->verb, o->arg, strerror(errno));
		json_object_put(args);
		return CLI_EXIT_ERR;
	}
	cmd = job_start_args(o, args);
	ret = job_call(o->verb, c, cmd, args, &r);
	json_object_put(args);
	if (ret)
		return CLI_EXIT_ERR;
	json_object_put(r);
	/* Without --job-id the server names the job after the device. */
	if (o->job_id)
		snprintf(id, sizeof(id), "%s", o->job_id);
	else
		snprintf(id, sizeof(id), "ublkb%u", o->id);
	if (!o->wait && !o->pivot && !o->progress)
		return CLI_EXIT_OK;
	ret = job_wait(o->verb, c, id, true, o->progress);
	if (ret != JOB_READY)
		return ret;
	if (!o->pivot)
		return CLI_EXIT_OK;
	args = json_object_new_object();
	json_object_object_add(args, "device", json_object_new_string(id));
	ret = job_call(o->verb, c, "block-job-complete", args, &r);
	json_object_put(args);
	if (ret)
		return CLI_EXIT_ERR;
	json_object_put(r);
	return job_wait(o->verb, c, id, false, o->progress);
}

static void job_list(struct json_object *list)
{
	size_t i;

	if (!json_object_array_length(list)) {
		printf("no block job\n");
		return;
	}
	printf("%-16s %-8s %-10s %14s %14s %6s %12s\n", "id", "type", "status", "offset", "len",
	       "done", "speed");
	for (i = 0; i < json_object_array_length(list); i++) {
		struct json_object *j = json_object_array_get_idx(list, i);
		int64_t len = job_int(j, "len"), off = job_int(j, "offset");

		printf("%-16s %-8s %-10s %14lld %14lld %5.1f%% %12lld\n", job_str(j, "device"),
		       job_str(j, "type"), job_str(j, "status"), (long long)off, (long long)len,
		       len ? off * 100.0 / len : 0.0, (long long)job_int(j, "speed"));
		if (*job_str(j, "error"))
			printf("  error: %s\n", job_str(j, "error"));
	}
}

/* job: one action on the device's job. */
static int job_action(struct job_opts *o, struct ctl_client *c)
{
	struct json_object *list, *j, *args, *r;
	const char *cmd = NULL;
	char id[BLK_JOB_ID_MAX + 1];
	int ret;

	if (job_call("job", c, "query-block-jobs", NULL, &list))
		return CLI_EXIT_ERR;
	if (!strcmp(o->action, "list")) {
		job_list(list);
		json_object_put(list);
		return CLI_EXIT_OK;
	}
	j = job_find(list, o->arg);
	if (!j) {
		if (o->arg)
			img_err("job: no block job '%s' runs on device %u", o->arg, o->id);
		else
			img_err("job: no block job runs on device %u", o->id);
		json_object_put(list);
		return CLI_EXIT_ERR;
	}
	snprintf(id, sizeof(id), "%s", job_str(j, "device"));
	json_object_put(list);

	if (!strcmp(o->action, "pause"))
		cmd = "block-job-pause";
	else if (!strcmp(o->action, "resume"))
		cmd = "block-job-resume";
	else if (!strcmp(o->action, "cancel"))
		cmd = "block-job-cancel";
	else if (!strcmp(o->action, "complete"))
		cmd = "block-job-complete";
	else if (!strcmp(o->action, "set-speed"))
		cmd = "block-job-set-speed";
	if (cmd) {
		args = json_object_new_object();
		json_object_object_add(args, "device", json_object_new_string(id));
		if (o->force)
			json_object_object_add(args, "force", json_object_new_boolean(true));
		if (o->have_speed)
			json_object_object_add(args, "speed", json_object_new_int64(o->speed));
		ret = job_call("job", c, cmd, args, &r);
		json_object_put(args);
		if (ret)
			return CLI_EXIT_ERR;
		json_object_put(r);
		/* Pause, resume and set-speed take effect at once: nothing to wait for. */
		if (!o->wait && !o->progress)
			return CLI_EXIT_OK;
		if (!strcmp(o->action, "pause") || !strcmp(o->action, "resume") ||
		    !strcmp(o->action, "set-speed"))
			return CLI_EXIT_OK;
	}
	return job_wait("job", c, id, false, o->progress);
}

static int job_main(const struct cli_cmd *cmd, int argc, char **argv,
		    int (*fn)(struct job_opts *o, struct ctl_client *c))
{
	struct job_opts o = { .verb = cmd->name };
	struct ctl_client *c;
	int ret = job_parse(cmd, argc, argv, &o);

	if (ret)
		return cli_parse_status(cmd, ret);
	if (job_open(cmd->name, o.id, &c))
		return CLI_EXIT_ERR;
	ret = fn(&o, c);
	ctl_client_close(c);
	return ret;
}

int cli_cmd_job_start(const struct cli_cmd *cmd, int argc, char **argv)
{
	return job_main(cmd, argc, argv, job_start);
}

int cli_cmd_job(const struct cli_cmd *cmd, int argc, char **argv)
{
	return job_main(cmd, argc, argv, job_action);
}
