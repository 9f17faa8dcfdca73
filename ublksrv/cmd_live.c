// SPDX-License-Identifier: GPL-2.0
/*
 * The verbs for a running device, each a client of its control channel
 * (docs/control.md): `stats` (query-blockstats, once or every interval,
 * like iostat), `query` (query-block and query-status), `set` (throttle
 * limits and error policy), `pause` and `resume` (stop and cont).  Also
 * the pause state that `list` shows.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "block.h"
#include "cli.h"
#include "control.h"
#include "state.h"
#include "ublk.h"
#include "util.h"

/* A command may wait for a drain of the requests in flight. */
#define LIVE_CALL_TIMEOUT_MS	60000
/* `list` asks each device; a server that does not answer soon is not waited for. */
#define LIVE_LIST_TIMEOUT_MS	2000

struct live_opts {
	const char *verb;
	unsigned int id;
	bool have_id;
	bool json;
	unsigned int interval_s;	/* stats: 0 = once */
	unsigned int count;		/* stats: intervals; 0 = until interrupted */
	/* set: what was given */
	struct json_object *throttle;	/* block_set_io_throttle's arguments */
	struct json_object *policy;	/* block-set-error-policy's */
};

static void live_free(struct live_opts *o)
{
	json_object_put(o->throttle);
	json_object_put(o->policy);
}

/* The option callback of every live verb: each takes only its own (cli_table.c). */
static int live_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct live_opts *o = ctx;
	enum blk_err_action a;
	char name[64];
	uint64_t v;

	cli_opt_name(opt, name, sizeof(name));
	switch (opt->key) {
	case 'n':
		if (parse_uint(arg, 0, UBLK_MAX_DEV_ID, &v)) {
			img_err("%s: the device id (-n) must be a number, not '%s'", o->verb, arg);
			return -EINVAL;
		}
		o->id = v;
		o->have_id = true;
		break;
	case CLI_K_JSON:
		o->json = true;
		break;
	case CLI_K_INTERVAL:
	case CLI_K_COUNT:
		if (parse_uint(arg, 1, 86400, &v)) {
			img_err("%s: %s must be a number from 1 to 86400, not '%s'", o->verb,
				name, arg);
			return -EINVAL;
		}
		if (opt->key == CLI_K_INTERVAL)
			o->interval_s = v;
		else
			o->count = v;
		break;
	case CLI_K_WERROR:
	case CLI_K_RERROR:
		if (blk_err_action_parse(arg, &a) ||
		    (opt->key == CLI_K_RERROR && a == BLK_ERR_ENOSPC)) {
			img_err("set: %s must be %s, not '%s'", name,
				opt->key == CLI_K_WERROR ? "enospc, stop, report or ignore" :
				"stop, report or ignore", arg);
			return -EINVAL;
		}
		if (!o->policy)
			o->policy = json_object_new_object();
		json_object_object_add(o->policy, opt->key == CLI_K_WERROR ? "werror" : "rerror",
				       json_object_new_string(arg));
		break;
	case CLI_K_BURST:
		if (parse_uint(arg, 1, 60000, &v)) {
			img_err("set: --throttle-burst-ms must be a number from 1 to 60000, not '%s'",
				arg);
			return -EINVAL;
		}
		if (!o->throttle)
			o->throttle = json_object_new_object();
		json_object_object_add(o->throttle, "burst_ms", json_object_new_int64(v));
		break;
	case CLI_K_THROTTLE + THR_BPS_TOTAL:
	case CLI_K_THROTTLE + THR_BPS_READ:
	case CLI_K_THROTTLE + THR_BPS_WRITE:
	case CLI_K_THROTTLE + THR_IOPS_TOTAL:
	case CLI_K_THROTTLE + THR_IOPS_READ:
	case CLI_K_THROTTLE + THR_IOPS_WRITE:
		/* 0 lifts the limit. */
		if (opt->key - CLI_K_THROTTLE <= THR_BPS_WRITE ? parse_size(arg, &v) :
		    parse_uint(arg, 0, UINT32_MAX, &v)) {
			img_err("set: %s must be a number (0 lifts the limit), not '%s'", name, arg);
			return -EINVAL;
		}
		if (!o->throttle)
			o->throttle = json_object_new_object();
		json_object_object_add(o->throttle, ublk_thr_args[opt->key - CLI_K_THROTTLE],
				       json_object_new_int64(v));
		break;
	}
	return 0;
}

/*
 * Parses the options of verb @cmd into @o.  Returns 0, CLI_HELP after
 * printing the help, or -EINVAL after printing what is wrong.
 */
static int live_parse(const struct cli_cmd *cmd, int argc, char **argv, struct live_opts *o)
{
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, live_opt, o, &a);

	if (ret)
		return ret;
	if (!o->have_id)
		return cli_usage_err(cmd, "give the device with -n ID");
	if (o->count && !o->interval_s)
		return cli_usage_err(cmd, "--count needs --interval");
	if (!strcmp(cmd->name, "set") && !o->throttle && !o->policy)
		return cli_usage_err(cmd, "nothing to change");
	return 0;
}

/* Connects to device @id's channel, saying why not.  Returns 0 or -errno. */
static int live_open(const char *verb, unsigned int id, struct ctl_client **c)
{
	struct ublk_state s;
	int ret = ctl_client_open(id, c);

	if (!ret)
		return 0;
	if (ublk_state_read(id, &s))
		img_err("%s: no imgblk device with id %u", verb, id);
	else if (ret == -ENOENT || ret == -ECONNREFUSED)
		img_err("%s: device %u: its server does not answer (see imgblk list)", verb, id);
	else
		img_err("%s: device %u: %s", verb, id, strerror(-ret));
	return ret;
}

/* Runs @cmd; prints the server's reason on failure.  Returns 0 or -errno. */
static int live_call(const char *verb, struct ctl_client *c, const char *cmd,
		     struct json_object *args, struct json_object **ret)
{
	int err = ctl_client_call(c, cmd, args, LIVE_CALL_TIMEOUT_MS, ret);
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

static int64_t live_int(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static const char *live_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

/* Mean latency in us of @ops operations that took @ns in all. */
static double live_avg_us(int64_t ns, int64_t ops)
{
	return ops ? ns / 1000.0 / ops : 0.0;
}

static void live_stats_row(const char *name, struct json_object *st)
{
	int64_t rd = live_int(st, "rd_operations"), wr = live_int(st, "wr_operations");

	printf("%-8s %10lld %12lld %10lld %12lld %8lld %8lld %7lld %8lld %9.1f %9.1f\n", name,
	       (long long)rd, (long long)live_int(st, "rd_bytes"), (long long)wr,
	       (long long)live_int(st, "wr_bytes"), (long long)live_int(st, "flush_operations"),
	       (long long)live_int(st, "unmap_operations"),
	       (long long)(live_int(st, "failed_rd_operations") +
			   live_int(st, "failed_wr_operations") +
			   live_int(st, "failed_flush_operations") +
			   live_int(st, "failed_unmap_operations")),
	       (long long)live_int(st, "inflight"),
	       live_avg_us(live_int(st, "rd_total_time_ns"), rd),
	       live_avg_us(live_int(st, "wr_total_time_ns"), wr));
}

/* The device row and one row per queue. */
static void live_stats_table(struct json_object *r)
{
	struct json_object *dev = json_object_array_get_idx(r, 0), *st, *queues;
	size_t i;

	printf("%-8s %10s %12s %10s %12s %8s %8s %7s %8s %9s %9s\n", "", "rd_ops", "rd_bytes",
	       "wr_ops", "wr_bytes", "flush", "unmap", "failed", "inflight", "rd_avg_us",
	       "wr_avg_us");
	if (json_object_object_get_ex(dev, "stats", &st))
		live_stats_row(live_str(dev, "device"), st);
	if (!json_object_object_get_ex(dev, "queues", &queues))
		return;
	for (i = 0; i < json_object_array_length(queues); i++) {
		struct json_object *q = json_object_array_get_idx(queues, i);
		char name[16];

		snprintf(name, sizeof(name), "q%lld", (long long)live_int(q, "queue"));
		if (json_object_object_get_ex(q, "stats", &st))
			live_stats_row(name, st);
	}
}

/* One iostat-like line: rates over the @secs since @prev. */
static void live_stats_line(struct json_object *prev, struct json_object *cur, double secs)
{
	struct json_object *p, *c;
	int64_t drd, dwr, dfl;
	char stamp[16];
	time_t now = time(NULL);

	p = json_object_array_get_idx(prev, 0);
	c = json_object_array_get_idx(cur, 0);
	json_object_object_get_ex(p, "stats", &p);
	json_object_object_get_ex(c, "stats", &c);
	drd = live_int(c, "rd_operations") - live_int(p, "rd_operations");
	dwr = live_int(c, "wr_operations") - live_int(p, "wr_operations");
	dfl = live_int(c, "flush_operations") - live_int(p, "flush_operations");
	strftime(stamp, sizeof(stamp), "%H:%M:%S", localtime(&now));
	printf("%-8s %9.1f %9.2f %9.1f %9.2f %8.1f %7lld %8lld %9.1f %9.1f\n", stamp,
	       drd / secs,
	       (live_int(c, "rd_bytes") - live_int(p, "rd_bytes")) / secs / (1 << 20),
	       dwr / secs,
	       (live_int(c, "wr_bytes") - live_int(p, "wr_bytes")) / secs / (1 << 20),
	       dfl / secs,
	       (long long)(live_int(c, "failed_rd_operations") +
			   live_int(c, "failed_wr_operations") -
			   live_int(p, "failed_rd_operations") -
			   live_int(p, "failed_wr_operations")),
	       (long long)live_int(c, "inflight"),
	       live_avg_us(live_int(c, "rd_total_time_ns") - live_int(p, "rd_total_time_ns"), drd),
	       live_avg_us(live_int(c, "wr_total_time_ns") - live_int(p, "wr_total_time_ns"), dwr));
	fflush(stdout);
}

static int live_stats(struct live_opts *o, struct ctl_client *c)
{
	struct json_object *prev = NULL, *cur;
	unsigned int n = 0;
	int ret;

	ret = live_call("stats", c, "query-blockstats", NULL, &cur);
	if (ret)
		return CLI_EXIT_ERR;
	if (!o->interval_s) {
		if (o->json)
			puts(json_object_to_json_string_ext(cur, JSON_C_TO_STRING_SPACED));
		else
			live_stats_table(cur);
		json_object_put(cur);
		return CLI_EXIT_OK;
	}
	if (!o->json)
		printf("%-8s %9s %9s %9s %9s %8s %7s %8s %9s %9s\n", "time", "r/s", "rMiB/s",
		       "w/s", "wMiB/s", "flush/s", "failed", "inflight", "r_avg_us",
		       "w_avg_us");
	for (;;) {
		prev = cur;
		sleep(o->interval_s);
		ret = live_call("stats", c, "query-blockstats", NULL, &cur);
		if (ret) {
			json_object_put(prev);
			return CLI_EXIT_ERR;
		}
		if (o->json) {
			puts(json_object_to_json_string_ext(cur, JSON_C_TO_STRING_SPACED));
			fflush(stdout);
		} else {
			live_stats_line(prev, cur, o->interval_s);
		}
		json_object_put(prev);
		if (o->count && ++n >= o->count)
			break;
	}
	json_object_put(cur);
	return CLI_EXIT_OK;
}

/* Human sizes for `query`. */
static void live_size(char *buf, size_t len, int64_t bytes)
{
	static const char units[] = "KMGTP";
	double v = bytes;
	int u = -1;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%lld B", (long long)bytes);
	else
		snprintf(buf, len, "%.4g %ciB", v, units[u]);
}

static void live_print_status(struct json_object *st)
{
	const char *s = live_str(st, "status");

	if (!strcmp(s, "io-error"))
		printf("status:       paused after a %s error: %s (%lld request%s held)\n",
		       live_str(st, "operation"), live_str(st, "error"),
		       (long long)live_int(st, "held"), live_int(st, "held") == 1 ? "" : "s");
	else
		printf("status:       %s\n", s);
}

/* query-block's "dirty-bitmaps", one line each. */
static void live_print_bitmaps(struct json_object *ins)
{
	struct json_object *bms;
	size_t i, n;

	if (!json_object_object_get_ex(ins, "dirty-bitmaps", &bms))
		return;
	n = json_object_array_length(bms);
	printf("bitmaps:%s\n", n ? "" : "      none");
	for (i = 0; i < n; i++) {
		struct json_object *b = json_object_array_get_idx(bms, i);

		printf("  %s: granularity %lld, %s, %lld bytes dirty%s%s\n", live_str(b, "name"),
		       (long long)live_int(b, "granularity"),
		       live_int(b, "recording") ? "recording" : "disabled",
		       (long long)live_int(b, "count"), live_int(b, "busy") ? ", busy" : "",
		       live_int(b, "inconsistent") ? ", inconsistent" : "");
	}
}

static int live_query(struct live_opts *o, struct ctl_client *c)
{
	struct json_object *blk, *st, *dev, *ins, *img, *out;
	char size[32];
	int depth = 0;
	unsigned int k;
	bool any = false;

	if (live_call("query", c, "query-block", NULL, &blk))
		return CLI_EXIT_ERR;
	if (live_call("query", c, "query-status", NULL, &st)) {
		json_object_put(blk);
		return CLI_EXIT_ERR;
	}
	dev = json_object_array_get_idx(blk, 0);
	if (o->json) {
		out = json_object_get(dev);
		json_object_object_add(out, "run-status", json_object_get(st));
		puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_SPACED));
		json_object_put(out);
		goto out;
	}
	printf("device:       /dev/%s\n", live_str(dev, "device"));
	live_print_status(st);
	printf("queues:       %lld, depth %lld\n", (long long)live_int(dev, "queues"),
	       (long long)live_int(dev, "depth"));
	printf("werror:       %s\nrerror:       %s\n", live_str(dev, "werror"),
	       live_str(dev, "rerror"));
	printf("discard:      %s\ncopy-on-read: %s\n", live_str(dev, "discard"),
	       live_int(dev, "copy-on-read") ? "on" : "off");
	json_object_object_get_ex(dev, "inserted", &ins);
	printf("throttle:    ");
	for (k = 0; k < THR_NR; k++) {
		int64_t v = live_int(ins, ublk_thr_args[k]);

		if (v) {
			printf(" %s=%lld", ublk_thr_args[k], (long long)v);
			any = true;
		}
	}
	printf("%s\n", any ? "" : " none");
	printf("chain:\n");
	json_object_object_get_ex(ins, "image", &img);
	while (img) {
		live_size(size, sizeof(size), live_int(img, "virtual-size"));
		printf("  %*s%s (%s, %s%s)\n", 2 * depth, "", live_str(img, "filename"),
		       live_str(img, "format"), size, live_int(img, "ro") ? ", read-only" : "");
		depth++;
		if (!json_object_object_get_ex(img, "backing-image", &img))
			img = NULL;
	}
	live_print_bitmaps(ins);
out:
	json_object_put(blk);
	json_object_put(st);
	return CLI_EXIT_OK;
}

static int live_set(struct live_opts *o, struct ctl_client *c)
{
	struct json_object *r;

	if (o->throttle) {
		if (live_call("set", c, "block_set_io_throttle", o->throttle, &r))
			return CLI_EXIT_ERR;
		json_object_put(r);
	}
	if (o->policy) {
		if (live_call("set", c, "block-set-error-policy", o->policy, &r))
			return CLI_EXIT_ERR;
		json_object_put(r);
	}
	return CLI_EXIT_OK;
}

/* pause and resume: refused when there is nothing to do, so scripts notice. */
static int live_pause_resume(struct live_opts *o, struct ctl_client *c)
{
	bool pause = !strcmp(o->verb, "pause");
	struct json_object *st, *r;
	bool running;

	if (live_call(o->verb, c, "query-status", NULL, &st))
		return CLI_EXIT_ERR;
	running = !strcmp(live_str(st, "status"), "running");
	json_object_put(st);
	if (pause == !running) {
		img_err("%s: device %u is %s", o->verb, o->id,
			pause ? "already paused" : "not paused");
		return CLI_EXIT_ERR;
	}
	if (live_call(o->verb, c, pause ? "stop" : "cont", NULL, &r))
		return CLI_EXIT_ERR;
	json_object_put(r);
	return CLI_EXIT_OK;
}

static int live_main(const struct cli_cmd *cmd, int argc, char **argv,
		     int (*fn)(struct live_opts *o, struct ctl_client *c))
{
	struct live_opts o = { .verb = cmd->name };
	struct ctl_client *c;
	int ret = live_parse(cmd, argc, argv, &o);

	if (ret) {
		live_free(&o);
		return cli_parse_status(cmd, ret);
	}
	if (live_open(cmd->name, o.id, &c)) {
		live_free(&o);
		return CLI_EXIT_ERR;
	}
	ret = fn(&o, c);
	ctl_client_close(c);
	live_free(&o);
	return ret;
}

int cli_cmd_stats(const struct cli_cmd *cmd, int argc, char **argv)
{
	return live_main(cmd, argc, argv, live_stats);
}

int cli_cmd_query(const struct cli_cmd *cmd, int argc, char **argv)
{
	return live_main(cmd, argc, argv, live_query);
}

int cli_cmd_set(const struct cli_cmd *cmd, int argc, char **argv)
{
	return live_main(cmd, argc, argv, live_set);
}

int cli_cmd_pause(const struct cli_cmd *cmd, int argc, char **argv)
{
	return live_main(cmd, argc, argv, live_pause_resume);
}

int cli_cmd_resume(const struct cli_cmd *cmd, int argc, char **argv)
{
	return live_main(cmd, argc, argv, live_pause_resume);
}

int cli_live_pause_state(unsigned int id, char *reason, size_t len)
{
	struct json_object *st;
	struct ctl_client *c;
	const char *s;
	int ret;

	reason[0] = '\0';
	if (ctl_client_open(id, &c))
		return 0;
	ret = ctl_client_call(c, "query-status", NULL, LIVE_LIST_TIMEOUT_MS, &st);
	ctl_client_close(c);
	if (ret) {
		json_object_put(st);
		return 0;
	}
	s = live_str(st, "status");
	ret = strcmp(s, "running") != 0;
	if (!strcmp(s, "io-error"))
		snprintf(reason, len, "%s error: %s, %lld held", live_str(st, "operation"),
			 live_str(st, "error"), (long long)live_int(st, "held"));
	else if (ret)
		snprintf(reason, len, "paused by imgblk pause");
	json_object_put(st);
	return ret;
}
